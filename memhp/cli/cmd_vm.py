"""``memhp vm resize DEVICE SIZE --sock QMP``: resize a virtio-mem device.

The hypervisor's side of virtio-mem, over QMP (a QEMU 7.2 monitor or ``memhp sim
start --qmp``): ``qom-set DEVICE requested-size SIZE``, then ``qom-get DEVICE size``
until the size reaches the request or stops moving (``--settle`` seconds without
change; the guest driver retries a blocked unplug only every 50 s or more), with a
progress bar on a terminal.  With ``--sysroot`` (the guest's root) it then explains
from the guest's side what holds the memory that did not go (``memhp devices``).
Exit status: 0 when the size was reached, 1 on bad input or QMP errors, 3 when the
device stopped short of the request.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from memhp.cli.common import guarded

if TYPE_CHECKING:
    from memhp.bench.qmp import QMPPlatform

#: Exit status when the device stopped before reaching the requested size.
EXIT_SHORT = 3


def _virtio_mem_devices(qmp: QMPPlatform) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for d in qmp.execute("query-memory-devices") or []:
        data = d.get("data") or {}
        if d.get("type") == "virtio-mem" and "id" in data:
            out[str(data["id"])] = data
    return out


def _bar(size: int, start: int, target: int, width: int = 30) -> str:
    from memhp.abi.units import size_to_human_string as h

    span = abs(target - start)
    frac = 1.0 if span == 0 else min(1.0, abs(size - start) / span)
    fill = int(frac * width)
    return f"[{'#' * fill}{'.' * (width - fill)}] {h(size)} -> {h(target)}"


def follow(
    qmp: QMPPlatform, dev: str, target: int, timeout: float, settle: float, tty: bool
) -> int:
    """Poll ``size`` until it equals ``target``, stops moving for ``settle`` seconds,
    or ``timeout`` passes; the last size."""
    start = size = int(qmp.execute("qom-get", path=dev, property="size"))
    t0 = last_move = time.monotonic()
    while size != target:
        now = time.monotonic()
        if now - last_move >= settle or now - t0 >= timeout:
            break
        time.sleep(0.05)
        new = int(qmp.execute("qom-get", path=dev, property="size"))
        if new != size:
            size, last_move = new, time.monotonic()
        if tty:
            sys.stderr.write("\r" + _bar(size, start, target))
            sys.stderr.flush()
    if tty:
        sys.stderr.write("\r" + _bar(size, start, target) + "\n")
    return size


def resize(args: argparse.Namespace) -> int:
    from memhp.abi.units import parse_size, size_to_human_string
    from memhp.bench.qmp import QMPError, QMPPlatform
    from memhp.host.errors import UsageError

    prog = "memhp vm resize"
    try:
        target = parse_size(args.size)
    except ValueError as e:
        raise UsageError(f"invalid size: {args.size!r} (e.g. 1G, 512M, 0)") from e
    if args.timeout <= 0 or args.settle <= 0:
        raise UsageError("--timeout and --settle must be positive")
    qmp = QMPPlatform(args.sock)
    try:
        qmp.connect(timeout=2.0)
    except Exception as e:  # qemu.qmp raises OSError, ConnectError...
        raise UsageError(f"cannot talk QMP on {args.sock}: {e}") from None
    try:
        devs = _virtio_mem_devices(qmp)
        if args.device not in devs:
            known = ", ".join(sorted(devs)) or "none"
            raise UsageError(f"unknown virtio-mem device: {args.device} (devices: {known})")
        try:
            qmp.execute("qom-set", path=args.device, property="requested-size", value=target)
        except QMPError as e:
            raise UsageError(str(e)) from None
        size = follow(qmp, args.device, target, args.timeout, args.settle, sys.stderr.isatty())
        info = _virtio_mem_devices(qmp).get(args.device, {})
    finally:
        qmp.close()
    h = size_to_human_string
    if size == target:
        print(f"{args.device}: size {h(size)} (requested {h(target)})")
        return 0
    short = abs(target - size)
    verb = "plugged" if target > size else "unplugged"
    print(
        f"{args.device}: size {h(size)}, requested {h(target)}: {h(short)} not {verb} "
        f"(the size stopped moving)"
    )
    if args.sysroot:
        explain(args, prog, info)
    return EXIT_SHORT


def explain(args: argparse.Namespace, prog: str, info: dict[str, Any]) -> None:
    """The guest's view of the device whose region starts at ``memaddr``."""
    from memhp.cli.cmd_devices import virtio_summary
    from memhp.cli.common import open_root
    from memhp.host.virtio_mem import list_virtio_mem

    root = open_root(args)
    addr = info.get("memaddr")
    for v in list_virtio_mem(root):
        if v.region is not None and v.region.start == addr:
            sys.stdout.write("in the guest: " + virtio_summary(v))
            return
    print(f"{prog}: no virtio-mem device at {addr:#x} in {args.sysroot}", file=sys.stderr)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from memhp.cli.common import add_root_option

    p = subparsers.add_parser(
        "vm",
        help="the hypervisor's side: resize a virtio-mem device over QMP",
        description="Commands for the hypervisor's side of a (simulated or QEMU) machine.",
    )
    sub = p.add_subparsers(dest="vm_command", metavar="COMMAND")
    sub.required = True
    r = sub.add_parser(
        "resize",
        help="set a virtio-mem device's requested-size and follow its size",
        description=(__doc__ or "").split("\n\n", 1)[1].split("Exit status")[0].strip(),
    )
    r.add_argument("device", metavar="DEVICE", help="the virtio-mem-pci device id (e.g. vm0)")
    r.add_argument("size", metavar="SIZE", help="the requested size (e.g. 1G, 512M, 0)")
    r.add_argument("--sock", required=True, metavar="QMP", help="the QMP unix socket")
    r.add_argument("--timeout", type=float, default=60.0, metavar="S", help="give up after S s")
    r.add_argument(
        "--settle",
        type=float,
        default=2.0,
        metavar="S",
        help="stop when the size has not moved for S seconds (default 2)",
    )
    add_root_option(r)
    r.set_defaults(func=lambda a: guarded("memhp vm resize", lambda: resize(a)))
