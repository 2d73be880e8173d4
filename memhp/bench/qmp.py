"""Drive memory hotplug hardware over QMP: a real QEMU or the simulated platform.

:class:`Platform` is what a scenario needs from the hardware: hot-add a DIMM, ask for
its removal, see the events.  :class:`QMPPlatform` implements it with the
``qemu.qmp`` library over a QMP socket, so the same code drives QEMU (real Linux
in the guest) and the simulated machine (which answers the same QMP commands on a
unix socket).

QMP sequence for a hot-add (what QEMU 7.2 accepts)::

    object-add qom-type=memory-backend-ram id=mem-dimm1 size=536870912
    device_add driver=pc-dimm id=dimm1 memdev=mem-dimm1 node=1 [addr=..] [slot=..]
    -> event ACPI_DEVICE_OST {device: dimm1, source: 1 (insert), status: 0}

and for a platform-initiated removal::

    device_del id=dimm1
    -> ACPI_DEVICE_OST {source: 3 (eject request), status: 132 (in progress)}
    -> DEVICE_DELETED {device: dimm1}   (once the guest has offlined and ejected it)
    object-del id=mem-dimm1
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from qemu.qmp.legacy import QEMUMonitorProtocol

#: ACPI _OST source codes (ACPI spec 6.3.5) and statuses QEMU reports.
OST_SOURCE_INSERT = 1
OST_SOURCE_EJECT_REQUEST = 3
OST_SOURCE_EJECT = 0x103
OST_STATUS_SUCCESS = 0
OST_STATUS_EJECT_IN_PROGRESS = 0x84


@dataclass(frozen=True)
class QmpEvent:
    """One QMP event."""

    name: str
    data: Mapping[str, Any]
    timestamp: float  # seconds since the epoch (QEMU's clock)

    @staticmethod
    def from_msg(msg: Mapping[str, Any]) -> QmpEvent:
        ts = msg.get("timestamp") or {}
        secs = float(ts.get("seconds", 0)) + float(ts.get("microseconds", 0)) / 1e6
        return QmpEvent(str(msg.get("event", "")), dict(msg.get("data") or {}), secs)

    def to_json(self) -> dict[str, Any]:
        return {"event": self.name, "data": dict(self.data), "timestamp": self.timestamp}

    @property
    def device(self) -> str | None:
        """The device id an event is about (DEVICE_DELETED or ACPI_DEVICE_OST)."""
        if "device" in self.data:
            return str(self.data["device"])
        info = self.data.get("info")
        if isinstance(info, Mapping) and "device" in info:
            return str(info["device"])
        return None


@dataclass(frozen=True)
class MemoryDevice:
    """One entry of ``query-memory-devices``."""

    id: str
    type: str
    addr: int
    size: int
    node: int
    slot: int
    memdev: str
    hotplugged: bool
    hotpluggable: bool

    @staticmethod
    def from_qmp(d: Mapping[str, Any]) -> MemoryDevice:
        data = d.get("data") or {}
        return MemoryDevice(
            id=str(data.get("id", "")),
            type=str(d.get("type", "")),
            addr=int(data.get("addr", 0)),
            size=int(data.get("size", 0)),
            node=int(data.get("node", 0)),
            slot=int(data.get("slot", -1)),
            memdev=str(data.get("memdev", "")),
            hotplugged=bool(data.get("hotplugged", False)),
            hotpluggable=bool(data.get("hotpluggable", False)),
        )


class QMPError(RuntimeError):
    """A QMP command failed or an awaited event did not come."""


@runtime_checkable
class Platform(Protocol):
    """What the bench needs from memory-hotplug hardware (QEMU or the model)."""

    def hot_add_dimm(
        self, size: int, node: int, id: str, addr: int | None = None, slot: int | None = None
    ) -> MemoryDevice:
        """Plug a DIMM of ``size`` bytes on ``node``; returns it as the platform sees it."""
        ...

    def device_del(self, id: str) -> None:
        """Ask the guest to release device ``id`` (ACPI eject request)."""
        ...

    def events(self) -> list[QmpEvent]:
        """Events received so far and not yet taken (drains the queue)."""
        ...

    def wait_event(
        self, name: str, timeout: float, match: Callable[[QmpEvent], bool] | None = None
    ) -> QmpEvent:
        """Wait for the first event ``name`` that ``match`` accepts."""
        ...

    def memory_devices(self) -> list[MemoryDevice]:
        """``query-memory-devices``."""
        ...


@dataclass
class QMPPlatform:
    """A :class:`Platform` speaking QMP (``qemu.qmp``) over a socket.

    ``address`` is a unix socket path or a ``(host, port)`` pair.  Every event seen
    is kept in :attr:`log` (with the commands) and queued for :meth:`events`.
    """

    address: str | tuple[str, int]
    log: list[dict[str, Any]] = field(default_factory=list)
    _qmp: QEMUMonitorProtocol | None = None
    _queue: list[QmpEvent] = field(default_factory=list)

    def connect(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            qmp = QEMUMonitorProtocol(self.address)
            try:
                qmp.connect(negotiate=True)
                self._qmp = qmp
                return
            except Exception:  # qemu.qmp raises several types for "not yet there"
                qmp.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None

    def __enter__(self) -> QMPPlatform:
        if self._qmp is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def qmp(self) -> QEMUMonitorProtocol:
        if self._qmp is None:
            raise QMPError("QMP not connected")
        return self._qmp

    # --- commands --------------------------------------------------------------

    def execute(self, cmd: str, **args: Any) -> Any:
        """Run one QMP command; raise :class:`QMPError` with QEMU's message on error."""
        resp = self.qmp.cmd_raw(cmd, args or None)
        self._pull()
        entry: dict[str, Any] = {"cmd": cmd, "args": args}
        if "error" in resp:
            entry["error"] = resp["error"]
            self.log.append(entry)
            err = resp["error"]
            raise QMPError(f"{cmd}: {err.get('class')}: {err.get('desc')}")
        entry["return"] = resp.get("return")
        self.log.append(entry)
        return resp.get("return")

    def _pull(self, wait: bool | float = False) -> None:
        msgs = self.qmp.get_events(wait=wait)
        while msgs:
            for msg in msgs:
                ev = QmpEvent.from_msg(msg)
                self._queue.append(ev)
                self.log.append(
                    {"event": ev.name, "data": dict(ev.data), "timestamp": ev.timestamp}
                )
            msgs = self.qmp.get_events(wait=False)

    def hot_add_dimm(
        self, size: int, node: int, id: str, addr: int | None = None, slot: int | None = None
    ) -> MemoryDevice:
        memdev = f"mem-{id}"
        self.execute("object-add", **{"qom-type": "memory-backend-ram", "id": memdev, "size": size})
        args: dict[str, Any] = {"driver": "pc-dimm", "id": id, "memdev": memdev, "node": node}
        if addr is not None:
            args["addr"] = addr
        if slot is not None:
            args["slot"] = slot
        try:
            self.execute("device_add", **args)
        except QMPError:
            self.execute("object-del", id=memdev)
            raise
        for dev in self.memory_devices():
            if dev.id == id:
                return dev
        raise QMPError(f"{id} not in query-memory-devices after device_add")

    def device_del(self, id: str) -> None:
        self.execute("device_del", id=id)

    def release_backend(self, id: str) -> None:
        """``object-del`` the RAM backend of a DIMM that is gone (frees host memory)."""
        self.execute("object-del", id=f"mem-{id}")

    def memory_devices(self) -> list[MemoryDevice]:
        ret = self.execute("query-memory-devices")
        return [MemoryDevice.from_qmp(d) for d in ret or []]

    def memory_size_summary(self) -> dict[str, int]:
        ret = self.execute("query-memory-size-summary")
        return {str(k): int(v) for k, v in (ret or {}).items()}

    def events(self) -> list[QmpEvent]:
        self._pull()
        out, self._queue = self._queue, []
        return out

    def wait_quiet(self, quiet: float, timeout: float) -> None:
        """Wait until no event came for ``quiet`` seconds (at most ``timeout``): what
        a command made the guest do is in :attr:`log` when this returns."""
        deadline = time.monotonic() + timeout
        seen, since = len(self.log), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet:
            time.sleep(0.1)
            self._pull()
            if len(self.log) != seen:
                seen, since = len(self.log), time.monotonic()

    def wait_for(self, match: Callable[[QmpEvent], bool], timeout: float, what: str) -> QmpEvent:
        """Wait for (and take from the queue) the first event ``match`` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self._queue):
                if match(ev):
                    del self._queue[i]
                    return ev
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QMPError(f"no {what} within {timeout:.0f}s")
            try:
                self._pull(wait=min(remaining, 1.0))
            except TimeoutError:
                pass
            except Exception as e:  # qemu.qmp legacy raises its own timeout types
                if "imeout" not in type(e).__name__:
                    raise

    def wait_event(
        self, name: str, timeout: float, match: Callable[[QmpEvent], bool] | None = None
    ) -> QmpEvent:
        """Wait for (and take from the queue) the first matching event ``name``."""
        return self.wait_for(
            lambda e: e.name == name and (match is None or match(e)), timeout, f"{name} event"
        )

    def wait_removal(self, id: str, timeout: float) -> bool:
        """After an eject request or a guest eject: True once ``id`` is gone.

        Waits for ``DEVICE_DELETED`` and then for the guest's final ``_OST`` (success);
        returns False early when the guest reports the eject failed (``_OST`` with a
        failure status, e.g. 0x80 when a block would not go offline), and raises
        :class:`QMPError` when nothing conclusive came within ``timeout``.
        """

        def conclusive(e: QmpEvent) -> bool:
            if e.name == "DEVICE_DELETED":
                return e.device == id
            info = e.data.get("info") or {}
            return (
                e.name == "ACPI_DEVICE_OST"
                and e.device == id
                and info.get("source") in (OST_SOURCE_EJECT_REQUEST, OST_SOURCE_EJECT)
                and info.get("status") not in (OST_STATUS_SUCCESS, OST_STATUS_EJECT_IN_PROGRESS)
            )

        ev = self.wait_for(conclusive, timeout, f"removal of {id}")
        if ev.name != "DEVICE_DELETED":
            return False

        def final_ost(e: QmpEvent) -> bool:
            info = e.data.get("info") or {}
            return (
                e.name == "ACPI_DEVICE_OST"
                and info.get("source") in (OST_SOURCE_EJECT_REQUEST, OST_SOURCE_EJECT)
                and info.get("status") == OST_STATUS_SUCCESS
            )

        with contextlib.suppress(QMPError):
            self.wait_for(final_ost, 10.0, "final _OST")
        return True

    def wait_deleted(self, id: str, timeout: float) -> QmpEvent:
        """Wait for ``DEVICE_DELETED`` of ``id``."""
        return self.wait_event("DEVICE_DELETED", timeout, lambda e: e.device == id)

    def quit(self) -> None:
        with contextlib.suppress(Exception):
            self.qmp.cmd_raw("quit")
