"""``memhp offline``: set memory offline, chmem-compatible (``chmem --disable``)."""

from __future__ import annotations

import argparse

from memhp.cli.common import add_root_option, run_change


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "offline",
        help="set memory blocks offline (chmem -d)",
        description="Set a size or range of memory offline. SIZE: 512M, 2G (a plain number "
        "is MiB), highest blocks first; RANGE: 0xSTART-0xEND; with -b: BLOCK or FIRST-LAST. "
        "Exit: 0 all done, 1 failed, 64 partly done.",
    )
    p.add_argument("selection", metavar="SIZE|RANGE|BLOCKRANGE")
    p.add_argument(
        "-d", "--disable", action="store_true", help="accepted for chmem habits (implied)"
    )
    p.add_argument(
        "-e",
        "--enable",
        dest="contrary",
        action="store_true",
        help=argparse.SUPPRESS,
    )
    p.add_argument("-b", "--blocks", action="store_true", help="use memory blocks")
    p.add_argument("-z", "--zone", help="only offline blocks in this zone")
    p.add_argument("-v", "--verbose", action="store_true", help="verbose output")
    add_root_option(p)
    p.set_defaults(func=lambda args: run_change(args, enable=False))
