"""A QMP server for a simulated machine: the memory-hotplug subset of QEMU's QMP.

Speaks the QEMU Machine Protocol (docs/interop/qmp-spec.rst) on a unix socket,
with QEMU 7.2's argument and reply shapes, so that management code written
for QEMU (the ``qemu.qmp`` library, libvirt-style scripts, ``memhp.bench``)
drives a simulated machine unchanged:

- the greeting ``{"QMP": {"version": ..., "capabilities": ["oob"]}}`` and the
  capabilities negotiation (``qmp_capabilities``, optionally enabling oob);
- ``object-add`` / ``object-del`` of memory backends (``memory-backend-ram``,
  ``memory-backend-memfd``);
- ``device_add`` / ``device_del`` of ``pc-dimm`` (id, memdev, node, addr, slot);
- ``query-memory-devices``, ``query-memory-size-summary``, ``query-version``,
  ``query-commands``, ``query-status``, ``quit``;
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

from memhp.kernel.mm.page_alloc import Allocation, AllocError
from memhp.sim.machine import PlatformError, SimMachine, WorkloadMix

log = logging.getLogger("memhp.sim.qmp")

#: What ``query-version`` and the greeting report (the QEMU of the reference).
QEMU_VERSION = {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "memhp-sim"}

#: Backend types object-add accepts, with their optional properties (qapi/qom.json).
BACKEND_TYPES = ("memory-backend-ram", "memory-backend-memfd")
BACKEND_PROPS: dict[str, str] = {
    "size": "size",
    "dump": "bool",
    "host-nodes": "list",
    "merge": "bool",
    "policy": "str",
    "prealloc": "bool",
    "prealloc-threads": "uint",
    "prealloc-context": "str",
    "share": "bool",
    "reserve": "bool",
    "x-use-canonical-path-for-ramblock-id": "bool",
    "hugetlb": "bool",
    "hugetlbsize": "size",
    "seal": "bool",
}
#: pc-dimm's qdev properties (hw/mem/pc-dimm.c) and their visitor types.
PC_DIMM_PROPS: dict[str, str] = {"addr": "uint", "node": "uint", "slot": "int", "memdev": "str"}

_EXPECTED = {
    "str": "string",
    "int": "integer",
    "uint": "integer",
    "size": "size",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
    "number": "number",
}


class QMPError(Exception):
    """A command failure, sent as ``{"error": {"class": cls, "desc": desc}}``."""

    def __init__(self, desc: str, cls: str = "GenericError") -> None:
        super().__init__(desc)
        self.cls = cls
        self.desc = desc


def _check_type(name: str, value: object, kind: str) -> None:
    """The qobject input visitor's type check (Invalid parameter type ...)."""
    ok: bool
    if kind == "str":
        ok = isinstance(value, str)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    elif kind in ("uint", "size"):
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64
    elif kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "list":
        ok = isinstance(value, list)
    elif kind == "dict":
        ok = isinstance(value, dict)
    else:  # any
        ok = True
    if not ok:
        raise QMPError(
            f"Invalid parameter type for '{name}', expected: {_EXPECTED.get(kind, kind)}"
        )


def parse_args(
    args: dict[str, Any], required: dict[str, str], optional: dict[str, str] | None = None
) -> dict[str, Any]:
    """Check a command's arguments as the generated QAPI visitors do."""
    optional = optional or {}
    for name, kind in required.items():
        if name not in args:
            raise QMPError(f"Parameter '{name}' is missing")
        _check_type(name, args[name], kind)
    for name, value in args.items():
        if name in required:
            continue
        if name not in optional:
            raise QMPError(f"Parameter '{name}' is unexpected")
        _check_type(name, value, optional[name])
    return args


@dataclass
class Backend:
    """A memory backend object (/objects/ID)."""

    id: str
    qom_type: str
    size: int


@dataclass(eq=False)
class _Session:
    writer: asyncio.StreamWriter
    negotiated: bool = False
    oob: bool = False


Handler = Callable[[dict[str, Any]], object]


@dataclass
class QMPServer:
    """Serve QMP for ``sim`` on the unix socket ``path`` (in a background thread)."""

    sim: SimMachine
    path: str
    on_quit: Callable[[], None] | None = None
    backends: dict[str, Backend] = field(default_factory=dict)
    allocations: dict[int, Allocation] = field(default_factory=dict)
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
            "object-add": self._cmd_object_add,
            "object-del": self._cmd_object_del,
            "device_add": self._cmd_device_add,
            "device_del": self._cmd_device_del,
            "query-memory-devices": self._cmd_query_memory_devices,
            "query-memory-size-summary": self._cmd_query_memory_size_summary,
            "x-memhp-fill": self._cmd_fill,
            "x-memhp-free": self._cmd_free,
            "x-memhp-snapshot": self._cmd_snapshot,
            "x-memhp-check-invariants": self._cmd_check_invariants,
            "x-memhp-kernel-log": self._cmd_kernel_log,
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

    # ================================================================ objects
    def _cmd_object_add(self, args: dict[str, Any]) -> object:
        """qmp_object_add() -> user_creatable_add_qapi() (qom/object_interfaces.c)."""
        if "qom-type" not in args:
            raise QMPError("Parameter 'qom-type' is missing")
        _check_type("qom-type", args["qom-type"], "str")
        qtype = args["qom-type"]
        if qtype not in BACKEND_TYPES:
            raise QMPError(f"Parameter 'qom-type' does not accept value '{qtype}'")
        props = dict(args)
        del props["qom-type"]
        parse_args(props, {"id": "str"}, BACKEND_PROPS)
        oid = props["id"]
        if not _id_wellformed(oid):
            raise QMPError("Parameter 'id' expects an identifier")
        with self.sim.lock:
            if oid in self.backends:
                raise QMPError(
                    f"attempt to add duplicate property '{oid}' to object (type 'container')"
                )
            size = int(props.get("size", 0))
            if size == 0:
                raise QMPError("can't create backend with size 0")
            self.backends[oid] = Backend(oid, qtype, size)
        return {}

    def _cmd_object_del(self, args: dict[str, Any]) -> object:
        """user_creatable_del(): not found / in use (a plugged DIMM maps it)."""
        parse_args(args, {"id": "str"})
        oid = args["id"]
        with self.sim.lock:
            if oid not in self.backends:
                raise QMPError(f"object '{oid}' not found")
            if self._backend_user(oid) is not None:
                raise QMPError(f"object '{oid}' is in use, can not be deleted")
            del self.backends[oid]
        return {}

    def _backend_user(self, oid: str) -> str | None:
        for s in self.sim.platform.slots:
            if s.dimm is not None and s.dimm.memdev == oid:
                return s.dimm.id
        return None

    # ================================================================ devices
    def _cmd_device_add(self, args: dict[str, Any]) -> object:
        """qmp_device_add() for driver pc-dimm: qdev properties, pre_plug, realize."""
        if "driver" not in args:
            raise QMPError("Parameter 'driver' is missing")
        _check_type("driver", args["driver"], "str")
        driver = args["driver"]
        if driver != "pc-dimm":
            raise QMPError(f"'{driver}' is not a valid device model name")
        props = {k: v for k, v in args.items() if k not in ("driver", "bus", "id")}
        if "bus" in args:
            raise QMPError(f"Bus '{args['bus']}' not found", "GenericError")
        dev_id = args.get("id")
        if dev_id is not None:
            if not isinstance(dev_id, str):
                raise QMPError("Invalid parameter type for 'id', expected: string")
            if not _id_wellformed(dev_id):
                raise QMPError("Parameter 'id' expects an identifier")
        for k, v in props.items():
            if k not in PC_DIMM_PROPS:
                raise QMPError(f"Property 'pc-dimm.{k}' not found")
            _check_type(k, v, PC_DIMM_PROPS[k])
        with self.sim.lock:
            p = self.sim.platform
            if dev_id is not None and p.slot_of(dev_id) is not None:
                raise QMPError(f"Duplicate ID '{dev_id}' for device")
            memdev = props.get("memdev")
            if memdev is not None and memdev not in self.backends:
                raise QMPError(f"Device '{memdev}' not found", "DeviceNotFound")
            slot = props.get("slot")
            nslots = len(p.slots)
            if slot is not None and slot >= 0:
                if slot >= nslots:
                    raise QMPError(f"invalid slot number {slot}, valid range is [0-{nslots - 1}]")
                if p.slots[slot].dimm is not None:
                    raise QMPError(f"slot {slot} is busy")
            elif p.free_slot() is None:
                raise QMPError("no free slots available")
            if memdev is None:
                raise QMPError("'memdev' property is not set")
            user = self._backend_user(memdev)
            if user is not None:
                raise QMPError(f"can't use already busy memdev: {memdev}")
            node = int(props.get("node", 0))
            nodes = len(self.sim.spec.nodes)
            if node >= nodes:
                raise QMPError(
                    f"'DIMM property node has value {node}' which exceeds the number of "
                    f"numa nodes: {nodes}"
                )
            size = self.backends[memdev].size
            addr = props.get("addr")
            try:
                self.sim.device_add(
                    size,
                    node,
                    id=dev_id,
                    addr=addr if addr else None,
                    slot=slot if slot is not None and slot >= 0 else None,
                    memdev=memdev,
                )
            except PlatformError as e:
                raise QMPError(str(e)) from None
        return {}

    def _cmd_device_del(self, args: dict[str, Any]) -> object:
        """qmp_device_del(): send the eject request; the guest decides (events tell)."""
        parse_args(args, {"id": "str"})
        dev_id = args["id"]
        if dev_id.startswith("/machine/peripheral/"):
            dev_id = dev_id[len("/machine/peripheral/") :]
        with self.sim.lock:
            if self.sim.platform.slot_of(dev_id) is None:
                raise QMPError(f"Device '{args['id']}' not found", "DeviceNotFound")
            try:
                self.sim.device_del(dev_id)
            except PlatformError as e:
                raise QMPError(str(e)) from None
        return {}

    def _cmd_query_memory_devices(self, args: dict[str, Any]) -> object:
        """qmp_memory_device_list(): DIMMs sorted by address (memory_device_build_list)."""
        parse_args(args, {})
        with self.sim.lock:
            dimms = sorted(
                (s.dimm for s in self.sim.platform.slots if s.dimm), key=lambda d: d.addr
            )
            return [
                {
                    "type": "dimm",
                    "data": {
                        "id": d.id,
                        "addr": d.addr,
                        "size": d.size,
                        "slot": d.slot,
                        "node": d.node,
                        "memdev": f"/objects/{d.memdev}",
                        "hotplugged": d.hotplugged,
                        "hotpluggable": True,
                    },
                }
                for d in dimms
            ]

    def _cmd_query_memory_size_summary(self, args: dict[str, Any]) -> object:
        parse_args(args, {})
        with self.sim.lock:
            base = sum(e - s for n in self.sim.spec.nodes for s, e in n.memory)
            plugged = sum(s.dimm.size for s in self.sim.platform.slots if s.dimm)
        return {"base-memory": base, "plugged-memory": plugged}

    # ================================================================ x-memhp-*
    def _cmd_fill(self, args: dict[str, Any]) -> object:
        """x-memhp-fill: allocate a workload (all or nothing); returns allocation ids."""
        parse_args(
            args,
            {},
            {
                "pages": "uint",
                "size": "size",
                "node": "uint",
                "zone": "str",
                "start": "uint",
                "end": "uint",
                "unmovable": "number",
                "pinned": "number",
                "seed": "int",
                "owner": "str",
            },
        )
        if ("pages" in args) == ("size" in args):
            raise QMPError("Exactly one of 'pages' and 'size' must be given")
        if ("start" in args) != ("end" in args):
            raise QMPError("'start' and 'end' go together")
        if "node" in args and "start" in args:
            raise QMPError("'node' and 'start'/'end' exclude each other")
        if "zone" in args and "start" in args:
            raise QMPError("'zone' and 'start'/'end' exclude each other")
        nr = int(args["pages"]) if "pages" in args else int(args["size"]) // 4096
        try:
            mix = WorkloadMix(float(args.get("unmovable", 0.0)), float(args.get("pinned", 0.0)))
            mix.split(0)
        except ValueError as e:
            raise QMPError(str(e)) from None
        try:
            allocs = self.sim.fill(
                nr,
                node=args.get("node"),
                zone=args.get("zone"),
                start=args.get("start"),
                end=args.get("end"),
                mix=mix,
                seed=int(args.get("seed", 0)),
                owner=str(args.get("owner", "workload")),
            )
        except AllocError as e:
            raise QMPError(f"cannot allocate {nr} pages: {e}") from None
        except ValueError as e:
            raise QMPError(str(e)) from None
        with self.sim.lock:
            for a in allocs:
                self.allocations[a.id] = a
        return {"pages": nr, "allocations": [a.id for a in allocs]}

    def _cmd_free(self, args: dict[str, Any]) -> object:
        parse_args(args, {"allocations": "list"})
        ids = args["allocations"]
        for i, v in enumerate(ids):
            _check_type(f"allocations[{i}]", v, "int")
        with self.sim.lock:
            missing = [i for i in ids if i not in self.allocations]
            if missing:
                raise QMPError(f"unknown allocation {missing[0]}")
            self.sim.free([self.allocations.pop(i) for i in ids])
        return {}

    def _cmd_snapshot(self, args: dict[str, Any]) -> object:
        """x-memhp-snapshot: the sysfs tree as {path: Entry.to_json()}."""
        from memhp.abi.tree import MEMORY_ROOTS, capture

        parse_args(args, {}, {"roots": "list"})
        roots = args.get("roots", list(MEMORY_ROOTS))
        for i, r in enumerate(roots):
            _check_type(f"roots[{i}]", r, "str")
        with self.sim.lock:
            snap = capture(self.sim.sysfs, roots)
        return {p: snap[p].to_json() for p in sorted(snap)}

    def _cmd_check_invariants(self, args: dict[str, Any]) -> object:
        """x-memhp-check-invariants: {"ok": true} or {"ok": false, "message": ...}."""
        parse_args(args, {})
        try:
            from memhp.kernel.invariants import check_invariants
        except ImportError:
            raise QMPError(
                "the invariant checker (memhp.kernel.invariants) is not available"
            ) from None
        with self.sim.lock:
            try:
                check_invariants(self.sim.kernel)
            except Exception as e:  # InvariantError / AssertionError
                return {"ok": False, "message": str(e) or type(e).__name__}
        return {"ok": True}

    def _cmd_kernel_log(self, args: dict[str, Any]) -> object:
        """x-memhp-kernel-log: the kernel's event log from index ``since``."""
        parse_args(args, {}, {"since": "uint"})
        since = int(args.get("since", 0))
        with self.sim.lock:
            evs = self.sim.kernel.events
            out = [{"what": e.what, "detail": e.detail} for e in evs[since:]]
            return {"events": out, "next": len(evs)}


def _id_wellformed(oid: str) -> bool:
    """id_wellformed() of util/id.c: a letter, then letters, digits, '-', '.', '_'."""
    return (
        bool(oid)
        and oid[0].isascii()
        and oid[0].isalpha()
        and all(c.isascii() and (c.isalnum() or c in "-._") for c in oid)
    )


def _utf8_len(lead: int) -> int:
    if lead >= 0xF0:
        return 4
    if lead >= 0xE0:
        return 3
    if lead >= 0xC0:
        return 2
    return 1


class JsonSplitter:
    """Split a byte stream into JSON texts the way QEMU's json-streamer does.

    Objects and arrays end when their brackets balance (strings and escapes
    respected); a bare scalar ends at whitespace.  A stray closing bracket
    yields a :class:`QMPError` instead of a text.
    """

    MAX_SIZE = 64 << 20

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.depth = 0
        self.in_str: str | None = None
        self.esc = False
        self.scalar = False
        self._pending = b""

    def feed(self, data: bytes) -> list[str | QMPError]:
        data = self._pending + data
        # Keep an incomplete UTF-8 sequence for the next read.
        cut = len(data)
        for back in range(1, min(4, len(data)) + 1):
            b = data[-back]
            if b & 0xC0 == 0x80:
                continue
            if b & 0x80 and len(data) - back + _utf8_len(b) > len(data):
                cut = len(data) - back
            break
        self._pending = data[cut:]
        text = data[:cut].decode("utf-8", errors="replace")
        out: list[str | QMPError] = []
        for ch in text:
            if self.in_str is not None:
                self.buf.append(ch)
                if self.esc:
                    self.esc = False
                elif ch == "\\":
                    self.esc = True
                elif ch == self.in_str:
                    self.in_str = None
                continue
            if self.scalar and (ch.isspace() or ch in "{}[]"):
                out.append("".join(self.buf))
                self.buf, self.scalar = [], False
            if ch in "\"'":
                self.in_str = ch
                self.buf.append(ch)
            elif ch in "{[":
                self.depth += 1
                self.buf.append(ch)
            elif ch in "}]":
                if self.depth == 0:
                    out.append(QMPError("JSON parse error, expecting value"))
                    continue
                self.depth -= 1
                self.buf.append(ch)
                if self.depth == 0:
                    out.append("".join(self.buf))
                    self.buf = []
            elif ch.isspace():
                if self.depth:
                    self.buf.append(ch)
            else:
                if self.depth == 0:
                    self.scalar = True
                self.buf.append(ch)
            if len(self.buf) > self.MAX_SIZE:
                out.append(QMPError("JSON parse error, message too big"))
                self.buf, self.depth, self.in_str = [], 0, None
        return out


__all__ = ["BACKEND_TYPES", "JsonSplitter", "QMPError", "QMPServer", "parse_args"]
