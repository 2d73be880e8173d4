"""``memhp devices``: the memory devices, their range, node, blocks and zones."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from memhp.cli.common import add_root_option, guarded, open_root

if TYPE_CHECKING:
    from memhp.host.virtio_mem import VirtioMemDevice


def run(args: argparse.Namespace) -> int:
    def go() -> int:
        import json

        from memhp.host.devices import list_devices
        from memhp.host.memory import block_size
        from memhp.host.scols import Column, render, size_to_human_string
        from memhp.host.virtio_mem import list_virtio_mem

        root = open_root(args)
        block_size(root)  # a root without memory blocks is an error
        from memhp.cli.cmd_remove import note_previous_run

        note_previous_run(args, root, "memhp devices")
        devs = list_devices(root, with_empty=args.all)
        vdevs = list_virtio_mem(root)
        if args.json:
            data = {
                "devices": [
                    {
                        "device": d.name,
                        "type": d.kind,
                        "start": d.start,
                        "end": d.end,
                        "size": d.size,
                        "nodes": list(d.nodes),
                        "blocks": [b.index for b in d.blocks],
                        "online": d.online_blocks,
                        "zones": list(d.zones),
                        "ejectable": d.ejectable and bool(d.blocks),
                    }
                    for d in devs
                ]
                + [virtio_json(v) for v in vdevs]
            }
            sys.stdout.write(json.dumps(data, indent=3) + "\n")
            return 0
        cols = [
            Column("DEVICE"),
            Column("RANGE"),
            Column("SIZE", 5, True),
            Column("NODE", 0, True),
            Column("BLOCKS", 0, True),
            Column("ONLINE", 0, True),
            Column("ZONES", 0, True),
            Column("EJECT", 0, True),
        ]
        rows = []
        for d in devs:
            if d.blocks:
                rng = f"0x{d.start:016x}-0x{d.end:016x}"
                first, last = d.blocks[0].index, d.blocks[-1].index
                blk = str(first) if first == last else f"{first}-{last}"
            else:
                rng = blk = ""
            rows.append(
                [
                    d.name,
                    rng,
                    size_to_human_string(d.size) if not args.bytes else str(d.size),
                    ",".join(map(str, d.nodes)),
                    blk,
                    f"{d.online_blocks}/{len(d.blocks)}",
                    "/".join(d.zones),
                    # an empty slot holds nothing to eject
                    ("yes" if d.ejectable else "no") if d.blocks else "-",
                ]
            )
        rows += [virtio_row(v, args.bytes) for v in vdevs]
        if rows or not args.noheadings:  # no devices: the header alone, as lsblk does
            sys.stdout.write(render(cols, rows, "human", args.noheadings))
        for v in vdevs:
            sys.stdout.write(virtio_summary(v))
        if not rows:
            print("memhp devices: no memory devices", file=sys.stderr)
        return 0

    return guarded("memhp devices", go)


def _blocks_text(v: VirtioMemDevice) -> str:
    if not v.blocks:
        return ""
    first, last = v.blocks[0].block.index, v.blocks[-1].block.index
    return str(first) if first == last else f"{first}-{last}"


def virtio_row(v: VirtioMemDevice, in_bytes: bool) -> list[str]:
    """The ``memhp devices`` row of a virtio-mem device: RANGE is its region, SIZE
    what is plugged, EJECT ``-`` (the hypervisor resizes it: memhp vm resize)."""
    from memhp.host.scols import size_to_human_string

    r = v.region
    online = sum(1 for b in v.blocks if b.block.online)
    return [
        v.name,
        f"0x{r.start:016x}-0x{r.end:016x}" if r is not None else "",
        str(v.plugged) if in_bytes else size_to_human_string(v.plugged),
        ",".join(map(str, v.nodes)),
        _blocks_text(v),
        f"{online}/{len(v.blocks)}",
        "/".join(v.zones),
        "-",
    ]


def virtio_summary(v: VirtioMemDevice) -> str:
    """What could be unplugged from a virtio-mem device now, and what holds the rest."""
    from memhp.host.scols import size_to_human_string as h

    if v.region is None:
        why = "not bound to virtio_mem" if v.driver is None else "no region in /proc/iomem"
        return f"{v.name}: virtio-mem, {why}\n"
    lines = [
        f"{v.name}: virtio-mem, region {h(v.region.size)}, plugged {h(v.plugged)} in "
        f"{len(v.blocks)} blocks, could unplug now {h(v.unpluggable)}"
    ]
    for b in v.blocks:
        if b.held:
            lines.append(f"  {b.block.name} holds {h(b.held)}: {'; '.join(b.reasons)}")
    return "\n".join(lines) + "\n"


def virtio_json(v: VirtioMemDevice) -> dict[str, object]:
    r = v.region
    return {
        "device": v.name,
        "type": "virtio-mem",
        "driver": v.driver,
        "start": r.start if r is not None else None,
        "end": r.end if r is not None else None,
        "size": v.plugged,
        "region_size": r.size if r is not None else None,
        "nodes": list(v.nodes),
        "blocks": [b.block.index for b in v.blocks],
        "online": sum(1 for b in v.blocks if b.block.online),
        "zones": list(v.zones),
        "ejectable": False,
        "unpluggable": v.unpluggable,
        "held": [
            {"block": b.block.index, "bytes": b.held, "reasons": list(b.reasons)}
            for b in v.blocks
            if b.held
        ],
    }


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "devices",
        help="list memory devices (ACPI PNP0C80 DIMMs, virtio-mem)",
        description="List hot-pluggable memory devices with their range, node, blocks "
        "online/total, zones and whether they can be ejected.  virtio-mem devices show "
        "their region, the plugged size, and how much of it could be unplugged now "
        "with what holds the rest.",
    )
    p.add_argument("-J", "--json", action="store_true", help="use JSON output format")
    p.add_argument("-a", "--all", action="store_true", help="include empty slots")
    p.add_argument("-b", "--bytes", action="store_true", help="print SIZE in bytes")
    p.add_argument("-n", "--noheadings", action="store_true", help="don't print headings")
    add_root_option(p)
    p.set_defaults(func=run)
