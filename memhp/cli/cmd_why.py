"""``memhp why BLOCK``: why a block cannot be offlined or removed."""

from __future__ import annotations

import argparse
import sys

from memhp.cli.common import add_root_option, guarded, open_root


def parse_block(text: str) -> int:
    from memhp.host.errors import UsageError

    t = text.strip()
    if t.startswith("memory"):
        t = t[6:]
    if not (t.isascii() and t.isdigit()):
        raise UsageError(f"invalid block: {text} (expected N or memoryN)")
    return int(t)


def run(args: argparse.Namespace) -> int:
    def go() -> int:
        import json

        from memhp.host.diagnose import diagnose, format_diagnosis

        root = open_root(args)
        d = diagnose(root, parse_block(args.block))
        if args.json:
            sys.stdout.write(json.dumps(d.to_json(), indent=3) + "\n")
        else:
            sys.stdout.write(format_diagnosis(d))
        return 0

    return guarded("memhp why", go)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "why",
        help="explain why a block cannot be offlined or removed",
        description="Diagnose a memory block: state, zone, spanning zones or nodes, holes, "
        "memmap-on-memory, the pages the kernel uses (from /proc/kpageflags), and whether "
        "the pages to migrate have room elsewhere (MemAvailable).",
    )
    p.add_argument("block", metavar="BLOCK", help="block number or memoryN")
    p.add_argument("-J", "--json", action="store_true", help="use JSON output format")
    add_root_option(p)
    p.set_defaults(func=run)
