"""``memhp remove DEVICE``: offline a memory device's blocks reliably, then eject it."""

from __future__ import annotations

import argparse
import sys

from memhp.cli.common import add_root_option, guarded, open_root


def run(args: argparse.Namespace) -> int:
    def go() -> int:
        from memhp.host.remove import remove_device

        root = open_root(args)
        tty = sys.stderr.isatty() and not args.quiet

        def progress(msg: str) -> None:
            if tty:
                sys.stderr.write("\r\033[K" + msg)
                sys.stderr.flush()

        res = remove_device(
            root,
            args.device,
            timeout=args.timeout,
            keep_offline=args.keep_offline,
            dry_run=args.dry_run,
            progress=progress,
        )
        if tty:
            sys.stderr.write("\r\033[K")
        if args.dry_run:
            print(f"would offline, in this order: {' '.join(f'memory{i}' for i in res.plan)}")
            print(f"then write 1 to the eject attribute of {res.device}")
            return 0
        for f in res.failures:
            print(
                f"memhp remove: memory{f.index}: offline failed: {f.error.errname} "
                f"({f.error.strerror})",
                file=sys.stderr,
            )
            if f.diagnosis is not None:
                for reason in f.diagnosis.reasons:
                    print(f"  - {reason}", file=sys.stderr)
        for idx, e in res.rollback_failures:
            print(f"memhp remove: memory{idx}: could not be onlined again: {e}", file=sys.stderr)
        if res.rolled_back:
            print(
                f"memhp remove: rolled back: onlined {len(res.rolled_back)} block(s) again",
                file=sys.stderr,
            )
        if res.message:
            print(f"memhp remove: {res.message}", file=sys.stderr)
        if args.keep_offline and res.code != 0 and res.offlined:
            left = " ".join(f"memory{i}" for i in sorted(res.offlined))
            print(f"memhp remove: left offline (--keep-offline): {left}", file=sys.stderr)
        elif args.verbose:
            print(f"{res.device}: {len(res.offlined)} block(s) offlined, ejected, removed")
        return res.code

    return guarded("memhp remove", go)


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
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on a terminal")
    p.add_argument("-v", "--verbose", action="store_true", help="report success")
    add_root_option(p)
    p.set_defaults(func=run)
