"""``memhp remove DEVICE``: offline a memory device's blocks reliably, then eject it."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import TYPE_CHECKING

from memhp.abi.layout import PAGE_SIZE
from memhp.cli.common import add_root_option, guarded, open_root
from memhp.host.errors import SysfsError, UsageError

if TYPE_CHECKING:
    from memhp.host.journal import Entry, Journal
    from memhp.host.root import SysfsRoot


def _sysroot_opt(args: argparse.Namespace) -> str:
    sysroot = getattr(args, "sysroot", None)
    return f" -s {shlex.quote(sysroot)}" if sysroot else ""


def restore_commands(blocks: dict[int, str], sysroot_opt: str) -> list[str]:
    """``memhp online`` commands that put ``blocks`` back in their zones."""
    from memhp.host.remove import block_ranges

    by_zone: dict[str, list[int]] = {}
    for idx, zone in blocks.items():
        by_zone.setdefault(zone, []).append(idx)
    return [
        f"memhp online -b {block_ranges(idx)}" + (f" -z {zone}" if zone else "") + sysroot_opt
        for zone, idx in sorted(by_zone.items())
    ]


def open_journal(args: argparse.Namespace, root: SysfsRoot) -> Journal | None:
    """The journal of the sysroot (None for an in-process root)."""
    from memhp.host.journal import Journal

    if root.real_path("/") is None:
        return None
    return Journal(getattr(args, "sysroot", None))


def previous_run(root: SysfsRoot, journal: Journal | None) -> tuple[Entry | None, dict[int, str]]:
    """The entry a previous run left and its blocks that are still offline."""
    from memhp.host.memory import block_state

    entry = journal.load() if journal is not None else None
    if entry is None:
        return None, {}
    left: dict[int, str] = {}
    for idx, zone in entry.blocks.items():
        try:
            if block_state(root, idx) == "offline":
                left[idx] = zone
        except SysfsError:
            continue  # removed since
    return entry, left


def note_previous_run(args: argparse.Namespace, root: SysfsRoot, prog: str) -> None:
    """Say on stderr which blocks an interrupted ``memhp remove`` left offline."""
    from memhp.host.journal import JournalError, pid_alive
    from memhp.host.remove import block_ranges

    try:
        entry, left = previous_run(root, open_journal(args, root))
    except JournalError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return
    if entry is None or not left:
        return
    if pid_alive(entry.pid):
        print(
            f"{prog}: memhp remove of {entry.device} (pid {entry.pid}) is running; "
            f"memory{block_ranges(list(left))} offline meanwhile",
            file=sys.stderr,
        )
        return
    print(
        f"{prog}: a previous memhp remove of {entry.device} (pid {entry.pid}) was killed and "
        f"left memory{block_ranges(list(left))} offline; 'memhp restore{_sysroot_opt(args)}' "
        "onlines them again",
        file=sys.stderr,
    )


def run(args: argparse.Namespace) -> int:
    def go() -> int:
        from memhp.host.interrupt import WriteGuard, signal_name
        from memhp.host.journal import RunJournal, pid_alive
        from memhp.host.remove import block_ranges, remove_device

        root = open_root(args)
        tty = sys.stderr.isatty() and not args.quiet
        opt = _sysroot_opt(args)

        def progress(msg: str) -> None:
            if tty:
                sys.stderr.write("\r\033[K" + msg)
                sys.stderr.flush()

        journal = open_journal(args, root)
        inherited: dict[int, str] = {}
        if not args.dry_run:
            entry, inherited = previous_run(root, journal)
            if entry is not None and entry.pid != os.getpid() and pid_alive(entry.pid):
                raise UsageError(
                    f"another memhp remove (pid {entry.pid}, {entry.device}) is working on "
                    "this system; wait for it or stop it"
                )
            if inherited and entry is not None:
                print(
                    f"memhp remove: a previous memhp remove of {entry.device} (pid {entry.pid}) "
                    f"left memory{block_ranges(list(inherited))} offline; "
                    f"'memhp restore{opt}' onlines them again",
                    file=sys.stderr,
                )
        rj = RunJournal(journal, "?", inherited) if not args.dry_run else None
        guard = WriteGuard(args.timeout, catch_stop=True) if not args.dry_run else None
        try:
            res = remove_device(
                root,
                args.device,
                timeout=args.timeout,
                keep_offline=args.keep_offline,
                dry_run=args.dry_run,
                progress=progress,
                guard=guard,
                journal=rj,
                count_migration=True,
            )
        finally:
            if tty:
                sys.stderr.write("\r\033[K")
                sys.stderr.flush()
        if args.dry_run:
            print(f"would offline, in this order: {' '.join(f'memory{i}' for i in res.plan)}")
            print(f"then write 1 to the eject attribute of {res.device}")
            if res.room is not None:
                print(f"room: {res.room.describe()}")
                if not res.room.enough:
                    print(f"warning: {res.room.reason('its blocks hold')}")
            if res.hugetlb_pages:
                from memhp.host.diagnose import hugetlb_note

                print(f"note: in its blocks {hugetlb_note(res.hugetlb_pages)}")
            return 0
        for f in res.failures:
            print(
                f"memhp remove: memory{f.index}: offline failed: {f.error.errname} "
                f"({f.error.strerror})",
                file=sys.stderr,
            )
            if res.timed_out and f.error.errname == "EINTR":
                print(
                    f"  - the write was still blocked after --timeout {args.timeout:g}s: "
                    "the kernel retries migrating the block's pages until the writer is "
                    "interrupted",
                    file=sys.stderr,
                )
            if f.diagnosis is not None:
                for reason in f.diagnosis.reasons:
                    print(f"  - {reason}", file=sys.stderr)
        if res.failures and res.migration is not None and any(res.migration):
            print(f"memhp remove: meanwhile {_migration(res.migration)}", file=sys.stderr)
        for idx, e in res.rollback_failures:
            print(f"memhp remove: memory{idx}: could not be onlined again: {e}", file=sys.stderr)
        if res.rolled_back:
            zones = {i: res_zone for i, res_zone in res.zones.items() if i in res.rolled_back}
            back = ", ".join(
                f"memory{block_ranges([i for i in res.rolled_back if zones.get(i) == z])}"
                f" ({z or 'default zone'})"
                for z in sorted({zones.get(i) or "" for i in res.rolled_back})
            )
            print(
                f"memhp remove: rolled back: onlined {len(res.rolled_back)} block(s) again: {back}",
                file=sys.stderr,
            )
        if res.message:
            print(f"memhp remove: {res.message}", file=sys.stderr)
        left = res.left_offline
        if res.aborted is not None:
            print(
                f"memhp remove: aborted by a second {signal_name(res.aborted)}"
                + (
                    f": memory{block_ranges(left)} left offline"
                    if left
                    else ": nothing left offline"
                ),
                file=sys.stderr,
            )
        if left and not args.keep_offline:
            cmds = restore_commands({i: res.zones.get(i) or "" for i in left}, opt)
            print(
                "memhp remove: to online them again, run: "
                + (
                    f"memhp restore{opt}"
                    if journal is not None and journal.path
                    else " && ".join(cmds)
                ),
                file=sys.stderr,
            )
        elif args.keep_offline and res.code != 0 and res.offlined:
            text = " ".join(f"memory{i}" for i in sorted(res.offlined))
            print(f"memhp remove: left offline (--keep-offline): {text}", file=sys.stderr)
        elif args.verbose:
            moved = f"; {_migration(res.migration)}" if res.migration is not None else ""
            print(f"{res.device}: {len(res.offlined)} block(s) offlined, ejected, removed{moved}")
        return res.code

    return guarded("memhp remove", go)


def _migration(counts: tuple[int, int]) -> str:
    """What /proc/vmstat's migration events say about the run."""
    moved, failed = counts
    text = f"{moved} pages migrated ({moved * PAGE_SIZE / (1 << 20):.1f} MiB)"
    if failed:
        text += f", {failed} migration failures (pinned pages, or no page to move them to)"
    return text


def _timeout(text: str) -> float:
    import math

    try:
        t = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got '{text}'") from None
    if not math.isfinite(t) or t < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got '{text}'")
    return t


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "remove",
        help="hot-remove a memory device (offline its blocks, then eject)",
        description="Offline the device's blocks (highest first, retried in several passes "
        "until --timeout), re-online them if that fails (unless --keep-offline) and explain "
        "why, else eject the device and wait until it is gone. "
        "Exit: 0 removed, 1 failed, 64 partly offline (--keep-offline).",
    )
    p.add_argument("device", metavar="DEVICE", help="memory device, e.g. PNP0C80:00")
    p.add_argument(
        "--timeout", type=_timeout, default=30.0, metavar="SECONDS", help="seconds (default 30)"
    )
    p.add_argument("--keep-offline", action="store_true", help="do not re-online on failure")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="show the plan and the room for the pages to migrate, change nothing",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on a terminal")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="report success and the pages the offlines migrated (/proc/vmstat)",
    )
    add_root_option(p)
    p.set_defaults(func=run)
