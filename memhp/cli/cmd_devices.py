"""``memhp devices``: the memory devices, their range, node, blocks and zones."""

from __future__ import annotations

import argparse
import sys

from memhp.cli.common import add_root_option, guarded, open_root


def run(args: argparse.Namespace) -> int:
    def go() -> int:
        import json

        from memhp.host.devices import list_devices
        from memhp.host.memory import block_size
        from memhp.host.scols import Column, render, size_to_human_string

        root = open_root(args)
        block_size(root)  # a root without memory blocks is an error
        from memhp.cli.cmd_remove import note_previous_run

        note_previous_run(args, root, "memhp devices")
        devs = list_devices(root, with_empty=args.all)
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
        if rows or not args.noheadings:  # no devices: the header alone, as lsblk does
            sys.stdout.write(render(cols, rows, "human", args.noheadings))
        if not rows:
            print("memhp devices: no memory devices", file=sys.stderr)
        return 0

    return guarded("memhp devices", go)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "devices",
        help="list memory devices (ACPI PNP0C80 DIMMs)",
        description="List hot-pluggable memory devices with their range, node, blocks "
        "online/total, zones and whether they can be ejected.",
    )
    p.add_argument("-J", "--json", action="store_true", help="use JSON output format")
    p.add_argument("-a", "--all", action="store_true", help="include empty slots")
    p.add_argument("-b", "--bytes", action="store_true", help="print SIZE in bytes")
    p.add_argument("-n", "--noheadings", action="store_true", help="don't print headings")
    add_root_option(p)
    p.set_defaults(func=run)
