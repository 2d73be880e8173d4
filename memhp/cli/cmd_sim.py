"""``memhp sim``: run a simulated machine as a process (FUSE-mounted sysfs, QMP socket).

``memhp sim start MACHINE.toml --mount DIR [--qmp SOCKET] [--foreground]``
boots the machine and mounts its sysfs at ``DIR/sys`` (and ``DIR/proc``);
``memhp sim stop DIR`` stops it and removes any stale mount;
``memhp sim status DIR`` tells whether it runs.
"""

from __future__ import annotations

import argparse
import json
import sys

from memhp.kernel.machine import MachineError


def _start(args: argparse.Namespace) -> int:
    import signal

    from memhp.sim.config import builtin_machine_path
    from memhp.sim.daemon import SimDaemonError, SimStartInterrupted, start

    got: list[int] = []

    def on_term(signum: int, _frame: object) -> None:
        got.append(signum)
        raise SimStartInterrupted("SIGTERM")

    # Detached, SIGTERM while the daemon boots stops it like Ctrl-C does.
    old = None if args.foreground else signal.signal(signal.SIGTERM, on_term)
    try:
        st = start(builtin_machine_path(args.machine), args.mount, args.qmp, args.foreground)
    except SimStartInterrupted as e:
        print(f"memhp sim: {e}", file=sys.stderr)
        return 128 + (got[0] if got else signal.SIGINT)
    except (SimDaemonError, MachineError) as e:
        print(f"memhp sim: {e}", file=sys.stderr)
        return 1
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    if st is not None:
        print(
            f"memhp sim: {args.machine} mounted at {st.mount} (pid {st.pid})"
            + (f", QMP at {st.qmp}" if st.qmp else "")
        )
    return 0


def _stop(args: argparse.Namespace) -> int:
    from memhp.sim.daemon import SimDaemonError, stop

    try:
        print(stop(args.mount, args.timeout))
    except SimDaemonError as e:
        print(f"memhp sim: {e}", file=sys.stderr)
        return 1
    return 0


def _status(args: argparse.Namespace) -> int:
    from memhp.sim.daemon import status

    st = status(args.mount)
    if args.json:
        print(json.dumps(st, indent=2, sort_keys=True))
    elif st["running"]:
        print(
            f"{st['mount']}: running (pid {st['pid']}), machine {st['machine']}"
            + (f", QMP at {st['qmp']}" if st.get("qmp") else "")
        )
    elif st.get("stale"):
        print(f"{st['mount']}: stale mount, no simulator (run 'memhp sim stop {st['mount']}')")
    else:
        print(f"{st['mount']}: not running")
    return 0 if st["running"] else 3


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "sim",
        help="run a simulated machine: sysfs mounted with FUSE, hardware over QMP",
        description="Run a simulated machine as a process. Its sysfs is mounted with FUSE at "
        "DIR/sys (and DIR/proc), so lsmem --sysroot DIR, chmem (with DIR/sys bind-mounted over "
        "/sys) and scripts work on it; its pc-dimm hotplug is driven over a QMP socket.",
    )
    sub = p.add_subparsers(dest="sim_command", metavar="ACTION")
    sub.required = True
    s = sub.add_parser("start", help="boot a machine and mount its sysfs")
    s.add_argument("machine", metavar="MACHINE.toml", help="machine file (or a name in machines/)")
    s.add_argument("--mount", required=True, metavar="DIR", help="empty directory to mount at")
    s.add_argument("--qmp", metavar="SOCKET", help="serve QMP on this unix socket")
    s.add_argument(
        "--foreground",
        action="store_true",
        help="stay in the foreground (Ctrl-C unmounts and exits)",
    )
    s.set_defaults(func=_start)
    t = sub.add_parser("stop", help="stop the machine mounted at DIR (and remove a stale mount)")
    t.add_argument("mount", metavar="DIR")
    t.add_argument("--timeout", type=float, default=10.0, help="seconds before SIGKILL (10)")
    t.set_defaults(func=_stop)
    u = sub.add_parser("status", help="tell whether a machine runs at DIR (exit 3 if not)")
    u.add_argument("mount", metavar="DIR")
    u.add_argument("-J", "--json", action="store_true", help="JSON output")
    u.set_defaults(func=_status)
