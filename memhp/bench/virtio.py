"""virtio-mem on both sides of the bench: QMP commands, waiting for a resize, events.

A ``qom-set vm0 requested-size S`` returns at once; the guest's driver then plugs or
unplugs in steps (virtio_mem_run_wq), and may stop short (sub-blocks it cannot
unplug, retried by a timer every 50 s and more).  Both sides wait the same way:
until the device's ``size`` equals ``requested-size`` or has not moved for
``settle`` seconds (the model lets the same simulated time pass, so its retry
timer fires exactly when the real one would within that time).

QEMU rate-limits ``MEMORY_DEVICE_SIZE_CHANGE`` per device (monitor/monitor.c,
monitor_qapi_event_conf: 1 s per qom-path): the first change is sent at once, the
later ones within the second only as the latest, when the throttle timer fires.
How many intermediate events a resize gives thus depends on the guest's speed;
:func:`comparable_events` keeps, per device and step, the first and the last one.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memhp.bench.agent import GuestFS
    from memhp.bench.qmp import QMPPlatform
    from memhp.sim.machine import SimMachine

#: QEMU's MEMORY_DEVICE_SIZE_CHANGE throttle (monitor_qapi_event_conf), seconds.
SIZE_CHANGE_THROTTLE = 1.0
SIZE_CHANGE = "MEMORY_DEVICE_SIZE_CHANGE"
#: How often the real side polls ``qom-get size``.
POLL = 0.25


def model_qmp(m: SimMachine, cmd: str, args: dict[str, Any]) -> tuple[bool, Any]:
    """A QMP command on the simulated machine, through the QMP server's handlers."""
    from memhp.sim.qmp_commands import QMPCommands
    from memhp.sim.qmp_protocol import QMPError

    handler = QMPCommands(m).table().get(cmd)
    if handler is None:
        return False, f"CommandNotFound: The command {cmd} has not been found"
    try:
        ret = handler(dict(args))
    except QMPError as e:
        return False, f"{e.cls}: {e.desc}"
    finally:
        m.sysfs.notify_changed()
    return True, json.loads(json.dumps(ret))


def _model_sizes(m: SimMachine, id: str) -> tuple[int, int] | None:
    dev = m.virtio.find(id)
    return None if dev is None else (dev.size, dev.requested_size)


def model_settle(m: SimMachine, id: str, settle: float, timeout: float) -> None:
    """Let simulated time pass, ``settle`` seconds at a time, until the size is the
    requested one or did not move during the last ``settle`` seconds (the driver's
    retry timer fires in :meth:`SimMachine.advance`)."""
    waited = 0.0
    while waited < timeout:
        now = _model_sizes(m, id)
        if now is None or now[0] == now[1]:
            m.advance(SIZE_CHANGE_THROTTLE)  # the real side's wait for the last event
            return
        m.advance(settle)
        waited += settle
        after = _model_sizes(m, id)
        if after is None or after[0] == now[0]:
            return


def _real_sizes(p: QMPPlatform, id: str) -> tuple[int, int] | None:
    from memhp.bench.qmp import QMPError

    try:
        for dev in p.execute("query-memory-devices") or []:
            data = dev.get("data") or {}
            if dev.get("type") == "virtio-mem" and data.get("id") == id:
                return int(data["size"]), int(data["requested-size"])
    except QMPError:
        return None
    return None


def _guest_blocks(fs: GuestFS) -> str:
    r = fs.run("cat /sys/devices/system/memory/memory*/state 2>/dev/null | sort | uniq -c")
    return r.text


def real_settle(p: QMPPlatform, fs: GuestFS | None, id: str, settle: float, timeout: float) -> None:
    """Poll ``query-memory-devices`` until the size is the requested one or has not
    moved for ``settle`` seconds; then wait out the event throttle and until the
    guest's memory blocks stop changing (the last block is added after its plug)."""
    deadline = time.monotonic() + timeout
    last = _real_sizes(p, id)
    moved = time.monotonic()
    while last is not None and last[0] != last[1] and time.monotonic() < deadline:
        time.sleep(POLL)
        now = _real_sizes(p, id)
        if now is None:
            break
        if now[0] != last[0]:
            moved = time.monotonic()
        elif time.monotonic() - moved >= settle:
            break
        last = now
    time.sleep(SIZE_CHANGE_THROTTLE + 0.2)
    if fs is None:
        return
    before = _guest_blocks(fs)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now_blocks = _guest_blocks(fs)
        if now_blocks == before:
            return
        before = now_blocks


def comparable_events(events: list[str]) -> list[str]:
    """The events of one step as compared: of each device's MEMORY_DEVICE_SIZE_CHANGE
    events only the first and the last (QEMU's throttle decides the ones between)."""
    size_idx: dict[str, list[int]] = {}
    for i, e in enumerate(events):
        name, _, data = e.partition(" ")
        if name == SIZE_CHANGE:
            try:
                key = str(json.loads(data).get("qom-path"))
            except ValueError:
                continue
            size_idx.setdefault(key, []).append(i)
    drop = {i for idx in size_idx.values() for i in idx[1:-1]}
    return [e for i, e in enumerate(events) if i not in drop]


__all__ = ["comparable_events", "model_qmp", "model_settle", "real_settle"]
