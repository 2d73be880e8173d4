"""QEMU 7.2's ``pc`` machine as far as memory devices go: backends, pc-dimm rules.

One place for what QEMU checks when a memory backend is created (``object-add``)
and a pc-dimm is plugged (``device_add``), in QEMU's order and with QEMU's
messages, used by :class:`memhp.sim.machine.SimMachine` (the Python API) and by
the QMP server alike:

- backends/hostmem-ram.c, softmmu/physmem.c (``qemu_ram_alloc`` ->
  ``ram_block_add`` -> ``qemu_anon_ram_alloc``): the RAM block of a
  ``memory-backend-ram`` is one anonymous mmap of its size (plus the 2 MiB
  alignment slack of ``qemu_ram_mmap``).  QEMU reports a failed mmap as
  ``cannot set up guest memory 'ID': Cannot allocate memory``.  Whether a large
  mmap succeeds depends on the host's overcommit policy, which the simulator
  does not model; what no policy allows is a mapping larger than the host's
  user address space (x86-64, 4-level paging: 128 TiB), which is the limit
  applied here (:data:`HOST_USER_ADDRESS_SPACE`).
- hw/mem/pc-dimm.c (``pc_dimm_pre_plug``, ``pc_dimm_get_free_slot``,
  ``pc_dimm_realize``) and hw/mem/memory-device.c (``memory_device_pre_plug``,
  ``memory_device_check_addable``, ``memory_device_get_free_addr``): slots,
  space, alignment, address.  The device memory region is the machine's
  hotplug window (pc_memory_init: ROUND_UP(4 GiB + above-4G RAM, 1 GiB), of
  ``maxmem - ram`` plus 1 GiB per slot); the space check counts the plugged
  DIMMs only, against ``maxmem - ram``.  The alignment of a DIMM is its
  backend's: a ``memory-backend-ram`` RAM block is aligned to
  ``QEMU_VMALLOC_ALIGN`` (2 MiB on x86-64), a memfd to its page size.
  QEMU knows nothing of the guest's memory block size: a DIMM the guest cannot
  use whole is plugged, and the guest kernel decides (Linux's add_memory()
  refuses a range that is not a memory-block multiple).

Pure model: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memhp.kernel.machine import MachineSpec
from memhp.platform.acpi import AcpiPlatform, Dimm
from memhp.platform.glib_ghash import GHashTable
from memhp.platform.hostmem import (
    BACKEND_PROPS,
    BACKEND_TYPE_PROPS,
    BACKEND_TYPES,
    QEMU_VMALLOC_ALIGN,
    Backend,
    backend_align,
    check_backend_complete,
    check_backend_props,
)
from memhp.platform.qerror import QemuError

if TYPE_CHECKING:
    from memhp.platform.virtio_mem import VirtioPciBus

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

#: The user address space of an x86-64 process with 4-level paging (TASK_SIZE ~ 2^47):
#: no mmap() larger than this can succeed, whatever vm.overcommit_memory says.
HOST_USER_ADDRESS_SPACE = 1 << 47
#: pc-dimm's qdev properties (hw/mem/pc-dimm.c) and their visitor types.
PC_DIMM_PROPS: dict[str, str] = {"addr": "uint", "node": "uint", "slot": "int", "memdev": "str"}


def node_memdev_id(index: int) -> str:
    """The id of the boot RAM backend of the machine's ``index``-th node on QEMU's
    command line (``-object memory-backend-ram,id=m<index>``, memhp.bench.vm)."""
    return f"m{index}"


@dataclass
class QemuPcMachine:
    """The memory-device side of a QEMU pc machine over its ACPI hotplug slots."""

    platform: AcpiPlatform
    nr_nodes: int
    ram_size: int
    maxram_size: int
    backends: dict[str, Backend] = field(default_factory=dict)
    _dimm_seq: int = 0
    #: The virtio-mem devices (memhp.platform.virtio_mem), None: not wired.
    virtio_bus: VirtioPciBus | None = None
    #: The boot RAM backends of the NUMA nodes (``-numa node,memdev=ID``): their node.
    numa_memdevs: dict[str, int] = field(default_factory=dict)
    #: The machine's CPUs (``-smp``): a backend's default prealloc-threads.
    cpus: int = 1
    #: Each NUMA node's CPU indexes and boot memory (``-numa node,cpus=,memdev=``).
    node_cpus: list[list[int]] = field(default_factory=list)
    node_mem: list[int] = field(default_factory=list)
    #: The children of ``/objects`` in their container's property table.
    objects: GHashTable = field(default_factory=GHashTable)
    #: DIMMs plugged by plug_dimm() with their own backend ``mem-ID``: DIMM id ->
    #: backend id.  The backend leaves /objects once its DIMM is gone, as the
    #: management side (the bench, ``memhp vm``) object-dels it after the eject.
    implicit: dict[str, str] = field(default_factory=dict)
    #: The devices with an id, children of ``/machine/peripheral``, in its table.
    peripheral: GHashTable = field(default_factory=GHashTable)

    @classmethod
    def for_machine(cls, spec: MachineSpec, platform: AcpiPlatform) -> QemuPcMachine:
        """``-m RAM,slots=N,maxmem=MAX`` of a machine file, over its platform, with a
        memory-backend-ram per node with boot memory (node_memdev_id()), mapped as the
        node's RAM: object-add cannot add it again, object-del cannot delete it and
        a device naming it finds it busy."""
        ram = sum(e - s for n in spec.nodes for s, e in n.memory)
        m = cls(platform, len(spec.nodes), ram, spec.maxmem)
        m.cpus = max(1, sum(len(n.cpus) for n in spec.nodes))
        m.node_cpus = [sorted(n.cpus) for n in spec.nodes]
        m.node_mem = [sum(e - s for s, e in n.memory) for n in spec.nodes]
        platform.on_eject = m._dimm_ejected
        for i, n in enumerate(spec.nodes):
            if size := sum(e - s for s, e in n.memory):
                oid = node_memdev_id(i)
                m._add_backend(Backend(oid, "memory-backend-ram", size, cpus=m.cpus))
                m.numa_memdevs[oid] = n.id
        return m

    # ------------------------------------------------------------ objects
    def _add_backend(self, b: Backend) -> None:
        """object_property_try_add_child(/objects, ID, backend)."""
        self.backends[b.id] = b
        self.objects.insert(b.id)

    def remove_backend(self, oid: str) -> None:
        """object_unparent() of a backend: it leaves /objects."""
        del self.backends[oid]
        self.objects.remove(oid)

    def _dimm_ejected(self, d: Dimm) -> None:
        """The OS ejected ``d``: it leaves /machine/peripheral, and the backend
        plug_dimm() gave it leaves /objects (the management side's object-del)."""
        self.peripheral.remove(d.id)
        oid = self.implicit.pop(d.id, None)
        if oid is not None and oid in self.backends:
            self.remove_backend(oid)

    def object_add(self, qom_type: str, oid: str, props: dict[str, Any]) -> Backend:
        """user_creatable_add_type() of a memory backend: complete() allocates its RAM."""
        # the properties' setters, then the id in /objects, then complete()
        check_backend_props(qom_type, props)
        if oid in self.backends:
            raise QemuError(
                f"attempt to add duplicate property '{oid}' to object (type 'container')"
            )
        check_backend_complete(props)
        size = int(props["size"])
        align = backend_align(qom_type, props)
        if size + align > HOST_USER_ADDRESS_SPACE:  # qemu_ram_mmap(): size + align
            if qom_type == "memory-backend-ram":
                raise QemuError(f"cannot set up guest memory '{oid}': Cannot allocate memory")
            raise QemuError("unable to map backing store for guest RAM: Cannot allocate memory")
        given = {k: v for k, v in props.items() if k not in ("id", "qom-type")}
        b = Backend(oid, qom_type, size, align, given, self.cpus)
        self._add_backend(b)
        return b

    def object_del(self, oid: str) -> None:
        """user_creatable_del(): not found / in use (a plugged DIMM maps it)."""
        if oid not in self.backends:
            raise QemuError(f"object '{oid}' not found")
        if self.backend_user(oid) is not None:
            raise QemuError(f"object '{oid}' is in use, can not be deleted")
        self.remove_backend(oid)

    def resolve_path(self, path: str) -> tuple[str, str] | None:
        """object_resolve_path() over the objects this model has: ("backend", ID)
        under /objects, ("device", ID) under /machine/peripheral, or one of those two
        containers ("container", its path); a partial path (no leading /) matches the
        end of exactly one of them (ambiguous: None)."""
        known = [("/objects", ("container", "/objects"))]
        known += [("/machine/peripheral", ("container", "/machine/peripheral"))]
        known += [(f"/objects/{b}", ("backend", b)) for b in self.objects]
        known += [(f"/machine/peripheral/{d}", ("device", d)) for d in self.peripheral]
        if path.startswith("/"):
            return next((what for p, what in known if p == path.rstrip("/")), None)
        found = [what for p, what in known if p.endswith("/" + path)]
        return found[0] if len(found) == 1 else None

    def add_peripheral(self, did: str) -> None:
        """qdev_set_id(): a device with an id becomes /machine/peripheral/ID."""
        self.peripheral.insert(did)

    def qom_list(self, path: str) -> list[dict[str, str]]:
        """qmp_qom_list() of a container or a backend: object_property_iter_next()
        walks the instance's properties (children of a container), then each class's
        own up to ``object`` (its ``type``), every table in GHashTable order; the
        list is prepended to.  QemuError as qmp_qom_list() reports it."""
        found = self.resolve_path(path)
        if found is None:
            raise QemuError(f"Device '{path}' not found", "DeviceNotFound")
        kind, name = found
        props: list[tuple[str, str]] = []
        if kind == "container":
            if name == "/objects":
                props += [(o, f"child<{self.backends[o].qom_type}>") for o in self.objects]
            else:
                props += [(d, f"child<{self._device_type(d)}>") for d in self.peripheral]
        elif kind == "backend":
            # its RAM block's MemoryRegion, a child named after it
            # (memory_region_init_ram*() -> object_property_add_child(owner, "ID[*]"))
            props.append((f"{name}[0]", "child<memory-region>"))
            props += self.backends[name].class_properties()
        else:
            raise QemuError(f"memhp: qom-list of a device ('{path}') is not modelled")
        props.append(("type", "string"))  # (TYPE_OBJECT's class property)
        return [{"name": n, "type": t} for n, t in reversed(props)]

    def _device_type(self, did: str) -> str:
        return "pc-dimm" if self.platform.slot_of(did) is not None else "virtio-mem-pci"

    def memdev_list(self) -> list[dict[str, Any]]:
        """qmp_query_memdev(): each backend prepended as /objects is walked."""
        return [self.backends[oid].memdev_info() for oid in self.objects][::-1]

    def backend_user(self, oid: str) -> str | None:
        if oid in self.numa_memdevs:
            return f"numa node {self.numa_memdevs[oid]}"
        for s in self.platform.slots:
            if s.dimm is not None and s.dimm.memdev == oid:
                return s.dimm.id
        for v in self.virtio_bus.devices if self.virtio_bus else []:
            if v.memdev == oid:
                return v.id
        return None

    def _other_ranges(self) -> list[tuple[int, int, str]]:
        """Memory devices other than DIMMs: (start, end, id)."""
        vb = self.virtio_bus
        return [(v.addr, v.addr + v.region_size, v.id) for v in vb.devices] if vb else []

    # ------------------------------------------------------------ pc-dimm
    def device_add(
        self,
        id: str | None,
        memdev: str | None,
        node: int = 0,
        addr: int = 0,
        slot: int = -1,
    ) -> Dimm:
        """qdev_device_add() of a pc-dimm whose memdev is a backend of this machine."""
        if id is not None and self.platform.slot_of(id) is not None:
            raise QemuError(f"Duplicate ID '{id}' for device")
        if memdev is not None and memdev not in self.backends:
            raise QemuError(f"Device '{memdev}' not found", "DeviceNotFound")
        backend = self.backends[memdev] if memdev is not None else None
        return self._plug(
            backend.size if backend else None,
            node,
            id,
            addr,
            slot,
            memdev,
            backend.align if backend else QEMU_VMALLOC_ALIGN,
            check_busy=True,
        )

    def plug_dimm(
        self,
        size: int,
        node: int,
        id: str | None = None,
        addr: int | None = None,
        slot: int | None = None,
        memdev: str | None = None,
        align: int = QEMU_VMALLOC_ALIGN,
    ) -> Dimm:
        """Plug a pc-dimm with its own memory-backend-ram of ``size`` (``mem-ID``, as
        ``object-add`` then ``device_add``; the backend goes when the DIMM does)."""
        if id is not None and self.platform.slot_of(id) is not None:
            raise QemuError(f"Duplicate ID '{id}' for device")
        if size <= 0:
            raise QemuError("can't create backend with size 0")
        if memdev is None and id is not None and f"mem-{id}" in self.backends:
            raise QemuError(
                f"attempt to add duplicate property 'mem-{id}' to object (type 'container')"
            )
        d = self._plug(
            size,
            node,
            id,
            addr or 0,
            -1 if slot is None else slot,
            memdev,
            align,
            check_busy=False,
        )
        if memdev is None and d.memdev not in self.backends:
            self._add_backend(Backend(d.memdev, "memory-backend-ram", size, align, cpus=self.cpus))
            self.implicit[d.id] = d.memdev
        return d

    def _plug(
        self,
        size: int | None,
        node: int,
        id: str | None,
        addr: int,
        slot: int,
        memdev: str | None,
        align: int,
        check_busy: bool,
    ) -> Dimm:
        p = self.platform
        # pc_dimm_pre_plug() -> pc_dimm_get_free_slot()
        nslots = len(p.slots)
        if slot >= 0:
            if slot >= nslots:
                raise QemuError(f"invalid slot number {slot}, valid range is [0-{nslots - 1}]")
            if p.slots[slot].dimm is not None:
                raise QemuError(f"slot {slot} is busy")
        else:
            free = p.free_slot()
            if free is None:
                raise QemuError("no free slots available")
            slot = free
        # memory_device_pre_plug(): the region, the space, the address
        if size is None:
            raise QemuError("'memdev' property is not set")
        self.check_addable(size)
        addr = self.get_free_addr(addr or None, align, size)
        # pc_dimm_realize(): the node first (QEMU 6.2+), then the memdev
        if node >= self.nr_nodes:
            raise QemuError(
                f"'DIMM property node has value {node}' which exceeds the number of numa "
                f"nodes: {self.nr_nodes}"
            )
        if check_busy and memdev is not None and self.backend_user(memdev) is not None:
            raise QemuError(f"can't use already busy memdev: {memdev}")
        if id is None:
            self._dimm_seq += 1
            id = f"dimm{self._dimm_seq}"
        d = Dimm(id=id, memdev=memdev or f"mem-{id}", addr=addr, size=size, node=node, slot=slot)
        self.add_peripheral(d.id)
        p.plug(d)  # pc_dimm_plug() -> acpi_memory_plug_cb(): the guest is notified
        return d

    @property
    def device_memory_size(self) -> int:
        """maxram_size - ram_size: what memory_device_check_addable() allows."""
        return self.maxram_size - self.ram_size

    def check_addable(self, size: int) -> None:
        """memory_device_check_addable(): DIMMs only, against maxmem - ram."""
        used = sum(s.dimm.size for s in self.platform.slots if s.dimm)
        used += sum(e - s for s, e, _ in self._other_ranges())  # whole virtio-mem regions
        if used + size > self.device_memory_size:
            raise QemuError(
                f"not enough space, currently {used:#x} in use of total space for memory "
                f"devices {self.device_memory_size:#x}"
            )

    def get_free_addr(self, hint: int | None, align: int, size: int) -> int:
        """memory_device_get_free_addr() in the device memory region."""
        p = self.platform
        lo, hi = p.window_start, p.window_end
        if hint is not None and hint % align:
            raise QemuError(f"address must be aligned to {align:#x} bytes")
        if size % align:
            raise QemuError(f"backend memory size must be multiple of {align:#x}")
        if hint is not None:
            if hint < lo or hint + size > hi:
                raise QemuError(
                    f"can't add memory device [{hint:#x}:{size:#x}], usable range for memory "
                    f"devices [{lo:#x}:{hi - lo:#x}]"
                )
            for s in p.slots:
                d = s.dimm
                if d is not None and hint < d.addr + d.size and d.addr < hint + size:
                    raise QemuError(f"address range conflicts with memory device id='{d.id}'")
            for vs, ve, vid in self._other_ranges():
                if hint < ve and vs < hint + size:
                    raise QemuError(f"address range conflicts with memory device id='{vid}'")
            return hint
        found = p.find_addr(size, align, [(s, e) for s, e, _ in self._other_ranges()])
        if found is None:
            raise QemuError(
                "could not find position in guest address space for memory device - memory "
                "fragmented due to alignments"
            )
        return found

    def device_del(self, id: str) -> None:
        """qmp_device_del(): send the eject request; the guest decides."""
        name = id.removeprefix("/machine/peripheral/")
        if self.virtio_bus is not None and self.virtio_bus.find(name) is not None:
            # pc_virtio_md_pci_unplug_request()
            raise QemuError("virtio based memory devices cannot be unplugged.")
        s = self.platform.slot_of(name)
        if s is None:
            raise QemuError(f"Device '{id}' not found", "DeviceNotFound")
        self.platform.request_eject(s.index)

    # ------------------------------------------------------------ queries
    def memory_devices(self) -> list[dict[str, object]]:
        """qmp_memory_device_list(): DIMMs sorted by address (memory_device_build_list)."""
        dimms = sorted((s.dimm for s in self.platform.slots if s.dimm), key=lambda d: d.addr)
        out: list[tuple[int, dict[str, object]]] = [
            (
                d.addr,
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
                },
            )
            for d in dimms
        ]
        out += (
            [(v.addr, v.memory_device_info()) for v in self.virtio_bus.devices]
            if self.virtio_bus
            else []
        )
        return [info for _, info in sorted(out, key=lambda t: t[0])]

    def ospm_status(self) -> list[dict[str, object]]:
        """qmp_query_acpi_ospm_status() -> piix4_ospm_status(): each memory slot
        (acpi_memory_ospm_status()), then each possible CPU (acpi_cpu_ospm_status():
        the guest's _INI switched CPU hotplug to its modern interface at boot; boot
        CPUs have no device id and no _OST)."""
        out = [self.platform.ost_info(s.index) for s in self.platform.slots]
        out += [
            {"source": 0, "status": 0, "slot": str(i), "slot-type": "CPU"} for i in range(self.cpus)
        ]
        return out

    def memory_size_summary(self) -> dict[str, int]:
        plugged = sum(s.dimm.size for s in self.platform.slots if s.dimm)
        plugged += sum(v.size for v in self.virtio_bus.devices) if self.virtio_bus else 0
        return {"base-memory": self.ram_size, "plugged-memory": plugged}


__all__ = [
    "BACKEND_PROPS",
    "BACKEND_TYPES",
    "BACKEND_TYPE_PROPS",
    "HOST_USER_ADDRESS_SPACE",
    "PC_DIMM_PROPS",
    "QEMU_VMALLOC_ALIGN",
    "Backend",
    "QemuError",
    "QemuPcMachine",
    "backend_align",
    "node_memdev_id",
]
