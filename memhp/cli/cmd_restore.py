"""``memhp restore``: online again the blocks an interrupted ``memhp remove`` left offline.

``memhp remove`` journals each block (and its zone) before offlining it; a run
killed before it could roll back (SIGKILL, a crash, a second Ctrl-C) leaves the
journal behind.  ``memhp restore`` onlines each journalled block that is still
offline in the zone it had (``online_movable`` / ``online_kernel``), then drops
the journal.
"""

from __future__ import annotations

import argparse
import sys

from memhp.cli.common import add_root_option, guarded, open_root


def run(args: argparse.Namespace) -> int:
    def go() -> int:
        from memhp.cli.cmd_remove import _sysroot_opt, open_journal, previous_run
        from memhp.host.errors import SysfsError, UsageError
        from memhp.host.journal import pid_alive
        from memhp.host.memory import set_state
        from memhp.host.remove import block_ranges, online_value

        root = open_root(args)
        journal = open_journal(args, root)
        if journal is None or journal.path is None:
            raise UsageError("no journal here (set XDG_RUNTIME_DIR, or run as root for /run/memhp)")
        entry, left = previous_run(root, journal)
        if entry is None:
            print("memhp restore: nothing to restore (no interrupted memhp remove)")
            return 0
        if pid_alive(entry.pid):
            raise UsageError(
                f"memhp remove (pid {entry.pid}) is still running; it rolls back by itself "
                f"(or stop it: kill {entry.pid})"
            )
        failed: list[tuple[int, SysfsError]] = []
        done: list[int] = []
        for idx in sorted(left, reverse=True):
            zone = left[idx] or None
            try:
                set_state(root, idx, online_value(zone))
                done.append(idx)
                if args.verbose:
                    print(f"memory{idx}: onlined ({zone or 'default zone'})")
            except SysfsError as e:
                failed.append((idx, e))
        for idx, err in failed:
            print(f"memhp restore: memory{idx}: {err}", file=sys.stderr)
        if failed:
            entry.blocks = {i: z for i, z in entry.blocks.items() if i in dict(failed)}
            journal.save(entry)
            print(
                f"memhp restore: {len(failed)} block(s) still offline; rerun "
                f"'memhp restore{_sysroot_opt(args)}' when their cause is gone",
                file=sys.stderr,
            )
            return 1
        journal.clear()
        if done:
            print(
                f"memhp restore: onlined memory{block_ranges(done)} again "
                f"(left offline by memhp remove of {entry.device}, pid {entry.pid})"
            )
        else:
            print(f"memhp restore: nothing to restore ({entry.device}: no block left offline)")
        return 0

    return guarded("memhp restore", go)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "restore",
        help="online again the blocks an interrupted memhp remove left offline",
        description="Online again, each in the zone it had, the memory blocks that a memhp "
        "remove killed before it could roll back left offline (from its journal in "
        "$XDG_RUNTIME_DIR/memhp or /run/memhp). Exit: 0 restored or nothing to do, 1 failed.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="list each block onlined")
    add_root_option(p)
    p.set_defaults(func=run)
