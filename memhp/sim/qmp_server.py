"""A QMP server for a simulated machine: the memory-hotplug subset of QEMU's QMP.

Speaks the QEMU Machine Protocol (docs/interop/qmp-spec.rst) on a unix socket,
with QEMU 7.2's argument and reply shapes, so that management code written
for QEMU (the ``qemu.qmp`` library, libvirt-style scripts, ``memhp.bench``)
drives a simulated machine unchanged:

- the greeting ``{"QMP": {"version": ..., "capabilities": ["oob"]}}`` and the
  capabilities negotiation (``qmp_capabilities``, optionally enabling oob);
- ``object-add`` / ``object-del`` of memory backends (``memory-backend-ram``,
  ``memory-backend-memfd``, ``memory-backend-file``);
- ``device_add`` / ``device_del`` of ``pc-dimm`` (id, memdev, node, addr, slot);
- ``qom-get`` / ``qom-set`` of backends (``/objects/ID``), pc-dimms and
  virtio-mem-pci devices; ``qom-list`` of ``/objects``, ``/machine/peripheral``
  and backends;
- ``query-memory-devices``, ``query-memory-size-summary``, ``query-memdev``,
  ``query-acpi-ospm-status``, ``human-monitor-command`` (the monitor's memory
  hotplug commands), ``query-version``, ``query-commands``,
  ``query-status``, ``quit``;
- the events the OS causes: ``ACPI_DEVICE_OST`` and ``DEVICE_DELETED``, with
  timestamps, sent to every negotiated client, after the reply of the command
  that caused them (QEMU's guest answers asynchronously);
- errors as ``{"error": {"class", "desc"}}`` with QEMU's classes and messages
  (qapi/qmp-dispatch.c, qobject-input-visitor.c, qom/object_interfaces.c,
  softmmu/qdev-monitor.c, hw/mem/pc-dimm.c); malformed JSON, unknown commands
  and wrong argument types get an error and the connection stays open;
- simulator-only commands under the ``x-memhp-`` prefix: fill memory with a
  workload, free it, snapshot the sysfs tree, check the model's invariants,
  read the kernel's event log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from memhp.platform.qemu_pc import BACKEND_TYPES
from memhp.sim.machine import SimMachine
from memhp.sim.qmp_commands import Handler, QMPCommands
from memhp.sim.qmp_protocol import JsonSplitter, QMPError, parse_args

log = logging.getLogger("memhp.sim.qmp")

#: What ``query-version`` and the greeting report (the QEMU of the reference).
QEMU_VERSION = {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "memhp-sim"}


@dataclass(eq=False)
class _Session:
    writer: asyncio.StreamWriter
    negotiated: bool = False
    oob: bool = False


@dataclass
class QMPServer:
    """Serve QMP for ``sim`` on the unix socket ``path`` (in a background thread)."""

    sim: SimMachine
    path: str
    on_quit: Callable[[], None] | None = None
    _sessions: set[_Session] = field(default_factory=set)
    _event_idx: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.AbstractServer | None = None
    _poller: asyncio.Task[None] | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None

    def __post_init__(self) -> None:
        self._event_idx = len(self.sim.platform.events)
        self.handlers = QMPCommands(self.sim)
        self.commands: dict[str, Handler] = {
            "qmp_capabilities": self._cmd_capabilities_again,
            "query-version": lambda a: (parse_args(a, {}), dict(QEMU_VERSION))[1],
            "query-commands": lambda a: (
                parse_args(a, {}),
                [{"name": n} for n in sorted(self.commands)],
            )[1],
            "query-status": lambda a: (
                parse_args(a, {}),
                {"status": "running", "singlestep": False, "running": True},
            )[1],
            "quit": self._cmd_quit,
            **self.handlers.table(),
        }

    # ================================================================ lifecycle
    def start(self, timeout: float = 10.0) -> None:
        """Listen on the socket from a daemon thread; return once listening."""
        self._thread = threading.Thread(target=self._run, name="memhp-qmp", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("QMP server did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except BaseException as e:  # reported to start()
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if os.path.exists(self.path) and not os.path.isdir(self.path):
                os.unlink(self.path)
        old = os.umask(0o077)  # the socket is private to this user
        try:
            self._server = await asyncio.start_unix_server(self._client, path=self.path)
        except OSError as e:  # name the path: "[Errno 2] No such file or directory" alone is not
            raise OSError(e.errno, f"cannot listen on {self.path}: {e.strerror or e}") from None
        finally:
            os.umask(old)
        self._poller = asyncio.get_running_loop().create_task(self._event_poller())

    async def _shutdown(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._server is not None:
            self._server.close()
        for s in list(self._sessions):
            s.writer.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def stop(self) -> None:
        """Close every connection and the socket; join the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # ================================================================ events
    def _flush_events(self) -> None:
        evs = self.sim.platform.events
        n = len(evs)
        if n <= self._event_idx:
            return
        new = evs[self._event_idx : n]
        self._event_idx = n
        for ev in new:
            now = time.time()
            msg = {
                "timestamp": {"seconds": int(now), "microseconds": int((now % 1) * 1e6)},
                "event": ev.event,
                "data": ev.data,
            }
            self._broadcast(msg)

    def _broadcast(self, msg: dict[str, Any]) -> None:
        line = (json.dumps(msg) + "\r\n").encode()
        for s in list(self._sessions):
            if s.negotiated and not s.writer.is_closing():
                s.writer.write(line)

    async def _event_poller(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self._flush_events()

    # ================================================================ protocol
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sess = _Session(writer)
        self._sessions.add(sess)
        try:
            self._send(sess, {"QMP": {"version": QEMU_VERSION, "capabilities": ["oob"]}})
            await writer.drain()
            splitter = JsonSplitter()
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for chunk in splitter.feed(data):
                    await self._handle_chunk(sess, chunk)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._sessions.discard(sess)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _send(self, sess: _Session, msg: object) -> None:
        if not sess.writer.is_closing():
            sess.writer.write((json.dumps(msg) + "\r\n").encode())

    async def _handle_chunk(self, sess: _Session, chunk: str | QMPError) -> None:
        if isinstance(chunk, QMPError):
            self._send(sess, {"error": {"class": chunk.cls, "desc": chunk.desc}})
            return
        try:
            req = json.loads(chunk)
        except (json.JSONDecodeError, RecursionError) as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else "nesting too deep"
            self._send(
                sess,
                {"error": {"class": "GenericError", "desc": f"JSON parse error, {msg.lower()}"}},
            )
            return
        reply = await self.dispatch(sess, req)
        if reply is not None:
            self._send(sess, reply)
            await sess.writer.drain()
        self._flush_events()

    async def dispatch(self, sess: _Session, req: object) -> dict[str, Any] | None:
        """qmp_dispatch(): check the request object, run the command, build the reply."""
        rid: object = None
        has_id = False
        try:
            if not isinstance(req, dict):
                raise QMPError("QMP input must be a JSON object")
            has_id = "id" in req
            rid = req.get("id")
            exec_key: str | None = None
            for key, val in req.items():
                if key == "execute" or (key == "exec-oob" and sess.oob):
                    if not isinstance(val, str):
                        raise QMPError(f"QMP input member '{key}' must be a string")
                    if exec_key:
                        raise QMPError(f"QMP input member '{key}' clashes with '{exec_key}'")
                    exec_key = key
                elif key == "arguments":
                    if not isinstance(val, dict):
                        raise QMPError("QMP input member 'arguments' must be an object")
                elif key == "id":
                    continue
                else:
                    raise QMPError(f"QMP input member '{key}' is unexpected")
            if exec_key is None:
                raise QMPError("QMP input lacks member 'execute'")
            name = str(req[exec_key])
            args: dict[str, Any] = dict(req.get("arguments") or {})
            if not sess.negotiated:
                if name != "qmp_capabilities":
                    raise QMPError(
                        "Expecting capabilities negotiation with 'qmp_capabilities'",
                        "CommandNotFound",
                    )
                result: object = self._negotiate(sess, args)
            else:
                handler = self.commands.get(name)
                if handler is None:
                    raise QMPError(f"The command {name} has not been found", "CommandNotFound")
                if exec_key == "exec-oob":
                    raise QMPError(f"The command {name} does not support OOB")
                try:
                    result = handler(args)
                    if isinstance(result, Awaitable):
                        result = await result
                finally:
                    # objects the command removed are gone from a FUSE mount on reply
                    self.sim.sysfs.settle()
            out: dict[str, Any] = {"return": result}
        except QMPError as e:
            out = {"error": {"class": e.cls, "desc": e.desc}}
        except Exception as e:  # a bug: report it, keep serving
            log.exception("QMP command failed")
            out = {"error": {"class": "GenericError", "desc": f"internal error: {e}"}}
        if has_id:
            out["id"] = rid
        return out

    def _negotiate(self, sess: _Session, args: dict[str, Any]) -> dict[str, Any]:
        parse_args(args, {}, {"enable": "list"})
        for cap in args.get("enable", []):
            if not isinstance(cap, str):
                raise QMPError("Invalid parameter type for 'enable[0]', expected: string")
            if cap != "oob":
                raise QMPError(f"Parameter 'enable' does not accept value '{cap}'")
            sess.oob = True
        sess.negotiated = True
        return {}

    def _cmd_capabilities_again(self, args: dict[str, Any]) -> object:
        raise QMPError(
            "Capabilities negotiation is already complete, command ignored", "CommandNotFound"
        )

    def _cmd_quit(self, args: dict[str, Any]) -> object:
        parse_args(args, {})
        if self.on_quit is not None:
            loop = asyncio.get_running_loop()
            now = time.time()
            msg = {
                "timestamp": {"seconds": int(now), "microseconds": int((now % 1) * 1e6)},
                "event": "SHUTDOWN",
                "data": {"guest": False, "reason": "host-qmp-quit"},
            }
            loop.call_soon(self._broadcast, msg)
            loop.call_later(0.05, self.on_quit)
        return {}


__all__ = ["BACKEND_TYPES", "JsonSplitter", "QMPError", "QMPServer", "parse_args"]
