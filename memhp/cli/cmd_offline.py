"""``memhp offline``: set memory offline, chmem-compatible (``chmem --disable``)."""

from __future__ import annotations

import argparse
import sys

from memhp.cli.cmd_remove import _timeout
from memhp.cli.common import add_root_option, guarded, open_root, run_change


def run(args: argparse.Namespace) -> int:
    """chmem -d, with each blocking write bounded by ``--timeout``."""
    if args.timeout is None:
        return run_change(args, enable=False)
    from memhp.host.interrupt import WriteGuard

    root = None

    def get_root() -> int:
        nonlocal root
        root = open_root(args)
        return 0

    if guarded("memhp offline", get_root) or root is None:
        return 1
    with WriteGuard(args.timeout, catch_stop=False) as guard:
        fs = root.fs
        root.fs = guard.wrap(fs)
        args.root = root
        try:
            rc = run_change(args, enable=False)
        finally:
            root.fs = fs
    if guard.expired and rc:
        print(
            f"memhp offline: timed out after {args.timeout:g}s: an offline was still blocked "
            "in the kernel (it retries migrating the pages until the writer is interrupted); "
            "those blocks stay online ('memhp why BLOCK' tells why)",
            file=sys.stderr,
        )
    return rc


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
    p.add_argument(
        "--timeout",
        type=_timeout,
        metavar="SECONDS",
        help="interrupt an offline still blocked after SECONDS (Linux retries until the "
        "writer gets a signal); it fails with EINTR and the block stays online",
    )
    add_root_option(p)
    p.set_defaults(func=run)
