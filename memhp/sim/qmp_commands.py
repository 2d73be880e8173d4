"""The QMP commands of a simulated machine: QEMU 7.2's memory-hotplug subset.

Each handler takes the command's ``arguments`` and returns its ``return`` value
or raises :class:`~memhp.sim.qmp_protocol.QMPError`.  What QEMU decides about
backends and pc-dimms lives in :mod:`memhp.platform.qemu_pc`; the handlers
check the arguments as the QAPI visitors do and translate its errors.
Simulator-only commands use the ``x-memhp-`` prefix.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from memhp.kernel.mm.page_alloc import Allocation, AllocError
from memhp.platform.qemu_pc import (
    BACKEND_PROPS,
    BACKEND_TYPE_PROPS,
    BACKEND_TYPES,
    PC_DIMM_PROPS,
    QemuError,
)
from memhp.platform.virtio_mem import VIRTIO_MEM_PCI_PROPS, virtio_mem_device_add
from memhp.sim.machine import SimMachine, WorkloadMix
from memhp.sim.qmp_protocol import QMPError, check_type, id_wellformed, parse_args

Handler = Callable[[dict[str, Any]], object]

#: virtio-mem's qdev properties in QEMU 7.2 (hw/virtio/virtio-mem.c virtio_mem_properties):
#: fixed once the device is realized.
VIRTIO_MEM_QDEV_PROPS = ("memaddr", "node", "prealloc", "memdev", "unplugged-inaccessible")


class QMPCommands:
    """The command handlers over one :class:`SimMachine` (and its workload allocations)."""

    def __init__(self, sim: SimMachine) -> None:
        self.sim = sim
        self.allocations: dict[int, Allocation] = {}

    def table(self) -> dict[str, Handler]:
        """Command name -> handler (the server adds the protocol-level commands)."""
        return {
            "object-add": self.object_add,
            "object-del": self.object_del,
            "device_add": self.device_add,
            "device_del": self.device_del,
            "qom-get": self.qom_get,
            "qom-set": self.qom_set,
            "qom-list": self.qom_list,
            "query-memory-devices": self.query_memory_devices,
            "query-memory-size-summary": self.query_memory_size_summary,
            "query-memdev": self.query_memdev,
            "query-acpi-ospm-status": self.query_acpi_ospm_status,
            "human-monitor-command": self.human_monitor_command,
            "x-memhp-fill": self._cmd_fill,
            "x-memhp-free": self._cmd_free,
            "x-memhp-tmpfs-write": self._cmd_tmpfs_write,
            "x-memhp-tmpfs-remove": self._cmd_tmpfs_remove,
            "x-memhp-kernel-allocs": self._cmd_kernel_allocs,
            "x-memhp-snapshot": self._cmd_snapshot,
            "x-memhp-check-invariants": self._cmd_check_invariants,
            "x-memhp-kernel-log": self._cmd_kernel_log,
        }

    # ================================================================ objects
    def object_add(self, args: dict[str, Any]) -> object:
        """qmp_object_add() -> user_creatable_add_qapi() (qom/object_interfaces.c)."""
        if "qom-type" not in args:
            raise QMPError("Parameter 'qom-type' is missing")
        check_type("qom-type", args["qom-type"], "str")
        qtype = args["qom-type"]
        if qtype not in BACKEND_TYPES:
            raise QMPError(f"Parameter 'qom-type' does not accept value '{qtype}'")
        props = dict(args)
        del props["qom-type"]
        required, own = BACKEND_TYPE_PROPS[qtype]
        parse_args(props, {"id": "str", **required}, {**BACKEND_PROPS, **own})
        oid = props["id"]
        if not id_wellformed(oid):
            raise QMPError("Parameter 'id' expects an identifier")
        with self.sim.lock, _qemu_errors():
            self.sim.qemu.object_add(qtype, oid, props)
        return {}

    def object_del(self, args: dict[str, Any]) -> object:
        parse_args(args, {"id": "str"})
        with self.sim.lock, _qemu_errors():
            self.sim.qemu.object_del(args["id"])
        return {}

    # ================================================================ devices
    def device_add(self, args: dict[str, Any]) -> object:
        """qmp_device_add() for driver pc-dimm: qdev properties, pre_plug, realize."""
        if "driver" not in args:
            raise QMPError("Parameter 'driver' is missing")
        check_type("driver", args["driver"], "str")
        driver = args["driver"]
        if driver not in ("pc-dimm", "virtio-mem-pci"):
            raise QMPError(f"'{driver}' is not a valid device model name")
        props = {k: v for k, v in args.items() if k not in ("driver", "bus", "id")}
        if "bus" in args:
            raise QMPError(f"Bus '{args['bus']}' not found", "GenericError")
        dev_id = args.get("id")
        if dev_id is not None:
            if not isinstance(dev_id, str):
                raise QMPError("Invalid parameter type for 'id', expected: string")
            if not id_wellformed(dev_id):
                raise QMPError("Parameter 'id' expects an identifier")
            # qdev_set_id() (before any property is set): the peripheral container
            # has a child of that name
            if self.sim.platform.slot_of(dev_id) or self.sim.virtio.find(dev_id):
                raise QMPError(f"Duplicate device ID '{dev_id}'")
        if driver == "virtio-mem-pci":
            return self._virtio_mem_add(dev_id, props)
        for k, v in props.items():
            if k not in PC_DIMM_PROPS:
                raise QMPError(f"Property 'pc-dimm.{k}' not found")
            check_type(k, v, PC_DIMM_PROPS[k])
        with self.sim.lock, _qemu_errors():
            self.sim.qemu.device_add(
                dev_id,
                props.get("memdev"),
                node=int(props.get("node", 0)),
                addr=int(props.get("addr", 0)),
                slot=int(props.get("slot", -1)),
            )
        return {}

    def _virtio_mem_add(self, dev_id: str | None, props: dict[str, Any]) -> object:
        """device_add driver=virtio-mem-pci (hotplug is allowed on pc in 7.2)."""
        for k, v in props.items():
            if k not in VIRTIO_MEM_PCI_PROPS:
                raise QMPError(f"Property 'virtio-mem-pci.{k}' not found")
            check_type(k, v, VIRTIO_MEM_PCI_PROPS[k])
        with self.sim.lock, _qemu_errors():
            virtio_mem_device_add(
                self.sim.qemu,
                self.sim.virtio,
                dev_id,
                props.get("memdev"),
                node=int(props.get("node", 0)),
                requested_size=int(props.get("requested-size", 0)),
                block_size=props.get("block-size"),
                memaddr=props.get("memaddr"),
                unplugged_inaccessible=props.get("unplugged-inaccessible", "auto"),
            )
        self.sim.sysfs.notify_changed()
        return {}

    def _qom_resolve(self, path: str) -> tuple[str, str]:
        """qmp_qom_get()/qmp_qom_set(): object_resolve_path(), DeviceNotFound if it
        finds nothing or more than one object."""
        found = self.sim.qemu.resolve_path(path)
        if found is None:
            raise QMPError(f"Device '{path}' not found", "DeviceNotFound")
        return found

    def qom_list(self, args: dict[str, Any]) -> object:
        """qmp_qom_list() of /objects, /machine/peripheral or a backend."""
        parse_args(args, {"path": "str"})
        with self.sim.lock, _qemu_errors():
            return self.sim.qemu.qom_list(args["path"])

    def qom_get(self, args: dict[str, Any]) -> object:
        """qom-get of a backend's properties (memhp.platform.hostmem), of a pc-dimm's
        or a virtio-mem-pci's (theirs, and DeviceState's hotpluggable, hotplugged and
        realized)."""
        parse_args(args, {"path": "str", "property": "str"})
        prop = args["property"]
        with self.sim.lock:
            kind, name = self._qom_resolve(args["path"])
            if kind == "container":
                if prop != "type":
                    raise QMPError(f"Property 'container.{prop}' not found")
                return "container"
            if kind == "backend":
                with _qemu_errors():
                    return self.sim.qemu.backends[name].get(prop)
            slot = self.sim.platform.slot_of(name)
            if slot is not None and slot.dimm is not None:
                d = slot.dimm
                typ, values = (
                    "pc-dimm",
                    {
                        "addr": d.addr,
                        "node": d.node,
                        "slot": d.slot,
                        "size": d.size,
                        "memdev": f"/objects/{d.memdev}",
                        "hotplugged": d.hotplugged,
                    },
                )
            else:
                dev = self.sim.virtio.find(name)
                assert dev is not None  # (resolve_path() found it)
                typ, values = (
                    "virtio-mem-pci",
                    {
                        "size": dev.size,
                        "requested-size": dev.requested_size,
                        "block-size": dev.block_size,
                        "memaddr": dev.addr,
                        "node": dev.node,
                        "memdev": f"/objects/{dev.memdev}",
                        "hotplugged": dev.hotplugged,
                        # PCIDevice's devfn (DEFINE_PROP_PCI_DEVFN): slot << 3
                        "addr": dev.pci_slot << 3,
                    },
                )
            values |= {"hotpluggable": True, "realized": True}
            if prop not in values:
                raise QMPError(f"Property '{typ}.{prop}' not found")
            return values[prop]

    def qom_set(self, args: dict[str, Any]) -> object:
        """qom-set of a backend's property, or PATH requested-size VALUE of a
        virtio-mem-pci: virtio_mem_set_requested_size()."""
        parse_args(args, {"path": "str", "property": "str", "value": "any"})
        prop, value = args["property"], args["value"]
        with self.sim.lock:
            kind, name = self._qom_resolve(args["path"])
            if kind == "container":
                if prop != "type":
                    raise QMPError(f"Property 'container.{prop}' not found")
                raise QMPError("Property 'container.type' is not writable")
            if kind == "backend":
                b = self.sim.qemu.backends[name]
                check_type(prop, value, b.kind_of(prop))
                with _qemu_errors():
                    b.set(prop, value)
                return {}
            dev = self.sim.virtio.find(name)
            typ = "pc-dimm" if dev is None else "virtio-mem-pci"
            if prop in ("hotplugged", "hotpluggable") or (prop == "size" and dev is None):
                raise QMPError(f"Property '{typ}.{prop}' is not writable")  # (getters only)
            if prop == "realized":  # device_set_realized(): on again changes nothing
                check_type(prop, value, "bool")
                if value:
                    return {}
                raise QMPError("memhp: unrealizing a device is not modelled")
            if dev is None:  # a pc-dimm: its qdev properties are fixed once realized
                if prop in PC_DIMM_PROPS:
                    raise QMPError(
                        f"Attempt to set property '{prop}' on device '{name}' "
                        "(type 'pc-dimm') after it was realized"
                    )
                raise QMPError(f"Property 'pc-dimm.{prop}' not found")
            if prop == "addr":  # the PCI proxy's own qdev property
                raise QMPError(
                    f"Attempt to set property 'addr' on device '{name}' "
                    "(type 'virtio-mem-pci') after it was realized"
                )
            # virtio-mem-pci aliases the virtio-mem device's properties: errors
            # name the anonymous virtio-mem child (virtio_instance_init_common())
            if prop == "block-size":
                raise QMPError("'block-size' cannot be changed")
            if prop == "size":  # (a getter only)
                raise QMPError("Property 'virtio-mem.size' is not writable")
            if prop in VIRTIO_MEM_QDEV_PROPS:  # field_prop_setter() after realize
                raise QMPError(
                    f"Attempt to set property '{prop}' on anonymous device "
                    "(type 'virtio-mem') after it was realized"
                )
            if prop != "requested-size":
                raise QMPError(f"Property 'virtio-mem-pci.{prop}' not found")
            check_type(prop, value, "size")
            with _qemu_errors():
                dev.set_requested_size(int(value))
        self.sim.sysfs.notify_changed()
        return {}

    def device_del(self, args: dict[str, Any]) -> object:
        """qmp_device_del(): send the eject request; the guest decides (events tell)."""
        parse_args(args, {"id": "str"})
        with self.sim.lock, _qemu_errors():
            self.sim.qemu.device_del(args["id"])
        return {}

    def query_memory_devices(self, args: dict[str, Any]) -> object:
        parse_args(args, {})
        with self.sim.lock:
            return self.sim.qemu.memory_devices()

    def query_memdev(self, args: dict[str, Any]) -> object:
        """qmp_query_memdev(): every memory backend under /objects."""
        parse_args(args, {})
        with self.sim.lock:
            return self.sim.qemu.memdev_list()

    def human_monitor_command(self, args: dict[str, Any]) -> object:
        """qmp_human_monitor_command(): an HMP command line (memhp.sim.hmp_commands)."""
        from memhp.sim.hmp_commands import HMP

        parse_args(args, {"command-line": "str"}, {"cpu-index": "int"})
        with self.sim.lock:  # (an RLock: the QMP handlers it runs take it too)
            return HMP(self.table(), self.sim).run(args["command-line"])

    def query_acpi_ospm_status(self, args: dict[str, Any]) -> object:
        """qmp_query_acpi_ospm_status(): the last _OST of every hotplug slot."""
        parse_args(args, {})
        with self.sim.lock:
            return self.sim.qemu.ospm_status()

    def query_memory_size_summary(self, args: dict[str, Any]) -> object:
        parse_args(args, {})
        with self.sim.lock:
            return self.sim.qemu.memory_size_summary()

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

    def _cmd_tmpfs_write(self, args: dict[str, Any]) -> object:
        """x-memhp-tmpfs-write: a task on ``node`` writes a ``size``-byte tmpfs file."""
        parse_args(args, {"size": "size", "file": "str"}, {"node": "uint"})
        try:
            allocs = self.sim.tmpfs_write(args["file"], int(args["size"]), args.get("node", 0))
        except AllocError as e:
            raise QMPError(f"cannot write {args['file']}: {e}") from None
        except OSError as e:  # the node's tmpfs mount refused
            raise QMPError(f"mount {errno.errorcode.get(e.errno or 0, e.errno)}") from None
        except ValueError as e:
            raise QMPError(str(e)) from None
        return {"pages": sum(a.nr_pages for a in allocs)}

    def _cmd_tmpfs_remove(self, args: dict[str, Any]) -> object:
        """x-memhp-tmpfs-remove: rm of a file written by x-memhp-tmpfs-write."""
        parse_args(args, {"file": "str"})
        try:
            self.sim.tmpfs_remove(args["file"])
        except ValueError as e:
            raise QMPError(str(e)) from None
        return {}

    def _cmd_kernel_allocs(self, args: dict[str, Any]) -> object:
        """x-memhp-kernel-allocs: the run-time kernel allocation knobs (k.kalloc);
        with no argument, only reports them; ``advance`` moves simulated time on."""
        parse_args(
            args,
            {},
            {
                "enabled": "bool",
                "rate": "number",
                "keep": "number",
                "seed": "int",
                "advance": "number",
            },
        )
        with self.sim.lock:
            ka = self.sim.kernel.kalloc
            try:
                ka.configure(
                    args.get("enabled"), args.get("rate"), args.get("keep"), args.get("seed")
                )
            except ValueError as e:
                raise QMPError(str(e)) from None
            adv = float(args.get("advance", 0.0))
            if adv < 0:
                raise QMPError("'advance' must be >= 0")
            if adv:
                self.sim.kernel.clock += adv
                ka.advance(self.sim.kernel.clock)
            return {
                "enabled": ka.enabled,
                "rate": ka.rate_pages_per_s,
                "keep": ka.keep,
                "seed": ka.seed,
                "kept-pages": sum(a.nr_pages for a in ka.kept),
            }

    def _cmd_free(self, args: dict[str, Any]) -> object:
        parse_args(args, {"allocations": "list"})
        ids = args["allocations"]
        for i, v in enumerate(ids):
            check_type(f"allocations[{i}]", v, "int")
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
            check_type(f"roots[{i}]", r, "str")
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


class _qemu_errors:
    """Raise a :class:`QemuError` of the platform as the QMP error it is."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, QemuError):
            raise QMPError(exc.desc, exc.cls) from None


__all__ = ["Handler", "QMPCommands"]
