"""``memhp pgtables``: the kernel page tables of a simulated machine.

Prints what /sys/kernel/debug/page_tables/kernel shows for the direct map and
the vmemmap (ranges, size, leaf level), then the counters: DirectMap4k/2M/1G,
page-table pages per level, vmemmap pages, TLB flushes, sync_global_pgds.
Optionally hot-adds (and hot-removes) memory first, through the kernel's
add_memory / remove_memory, so the tables built and freed can be compared.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys

from memhp.kernel.machine import MachineError, parse_size
from memhp.sim.config import builtin_machine_path, load_machine


def _range(text: str) -> tuple[int, int]:
    """SIZE@ADDR, e.g. 1G@0x100000000."""
    size, _, addr = text.partition("@")
    if not addr:
        raise argparse.ArgumentTypeError(f"expected SIZE@ADDR, got {text!r}")
    try:
        return parse_size(addr, "ADDR"), parse_size(size, "SIZE")
    except MachineError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _err(ret: int) -> str:
    """-EEXIST as the other commands print an errno: ``EEXIST (File exists)``."""
    code = -ret
    return f"{errno.errorcode.get(code, str(code))} ({os.strerror(code)})"


def run(args: argparse.Namespace) -> int:
    from memhp.kernel.kernel import Kernel  # the 'sim' extra (numpy)
    from memhp.kernel.mm import memory_hotplug as mh

    try:
        spec = load_machine(builtin_machine_path(args.machine))
    except MachineError as e:
        print(f"memhp pgtables: {e}", file=sys.stderr)
        return 1
    from memhp.kernel.mm.page_alloc import AllocError

    try:
        k = Kernel(spec)
    except AllocError as e:
        print(f"memhp pgtables: {spec.name}: cannot boot: {e}", file=sys.stderr)
        return 1
    pt = k.pgtables
    for start, size in args.add:
        ret = mh.add_memory(k, args.node, start, size)
        if ret:
            print(f"memhp pgtables: add_memory {size:#x}@{start:#x}: {_err(ret)}", file=sys.stderr)
            return 1
    for start, size in args.remove:
        ret = mh.remove_memory(k, start, size)
        if ret:
            print(
                f"memhp pgtables: remove_memory {size:#x}@{start:#x}: {_err(ret)}", file=sys.stderr
            )
            return 1
    if args.json:
        out = {
            "counters": pt.counters(),
            "ranges": [
                {"start": s, "end": e, "level": lv.name.lower(), "mapped": m}
                for area in (
                    (0xFFFF888000000000, 0xFFFFC88000000000),
                    (0xFFFFEA0000000000, 0xFFFFEB0000000000),
                )
                for s, e, lv, m in pt.ranges(*area)
                if m
            ],
        }
        print(json.dumps(out, indent=2))
    elif args.counters:
        for key, val in pt.counters().items():
            print(f"{key:24s} {val}")
    else:
        sys.stdout.write(pt.dump())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "pgtables",
        help="show the kernel page tables (direct map, vmemmap) of a simulated machine",
        description="Boot MACHINE (a machines/*.toml file or its name), optionally hot-add "
        "and hot-remove memory, and print the direct map and vmemmap page tables like "
        "/sys/kernel/debug/page_tables/kernel, with the page-table counters.",
    )
    p.add_argument("machine", metavar="MACHINE.toml")
    p.add_argument(
        "--add",
        metavar="SIZE@ADDR",
        type=_range,
        action="append",
        default=[],
        help="hot-add SIZE bytes at ADDR (add_memory) before printing; repeatable",
    )
    p.add_argument(
        "--remove",
        metavar="SIZE@ADDR",
        type=_range,
        action="append",
        default=[],
        help="then hot-remove SIZE bytes at ADDR (remove_memory); repeatable",
    )
    p.add_argument("--node", type=int, default=1, help="node of hot-added memory (default 1)")
    p.add_argument("--counters", action="store_true", help="print only the counters")
    p.add_argument("-J", "--json", action="store_true", help="JSON: counters and mapped ranges")
    p.set_defaults(func=run)
