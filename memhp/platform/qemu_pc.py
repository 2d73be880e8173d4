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

if TYPE_CHECKING:
    from memhp.platform.virtio_mem import VirtioPciBus

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

#: QEMU_VMALLOC_ALIGN on an x86-64 Linux host: anonymous RAM blocks are 2 MiB aligned.
QEMU_VMALLOC_ALIGN = 2 * MiB
#: The host's base page size (qemu_real_host_page_size()).
HOST_PAGE_SIZE = 4 * KiB
#: The user address space of an x86-64 process with 4-level paging (TASK_SIZE ~ 2^47):
#: no mmap() larger than this can succeed, whatever vm.overcommit_memory says.
HOST_USER_ADDRESS_SPACE = 1 << 47

#: Backend types object-add accepts (qapi/qom.json, ObjectOptions of QEMU 7.2).
BACKEND_TYPES = ("memory-backend-ram", "memory-backend-memfd", "memory-backend-file")
#: MemoryBackendProperties, the optional properties of every backend type.
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
}
#: Each type's own properties: (required, optional) (MemoryBackendMemfdProperties,
#: MemoryBackendFileProperties; memory-backend-ram has none).
BACKEND_TYPE_PROPS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "memory-backend-ram": ({}, {}),
    "memory-backend-memfd": ({}, {"hugetlb": "bool", "hugetlbsize": "size", "seal": "bool"}),
    "memory-backend-file": (
        {"mem-path": "str"},
        {"align": "size", "discard-data": "bool", "pmem": "bool", "readonly": "bool"},
    ),
}
#: pc-dimm's qdev properties (hw/mem/pc-dimm.c) and their visitor types.
PC_DIMM_PROPS: dict[str, str] = {"addr": "uint", "node": "uint", "slot": "int", "memdev": "str"}


class QemuError(Exception):
    """A request QEMU refuses: ``desc`` is QEMU's message, ``cls`` its QMP error class."""

    def __init__(self, desc: str, cls: str = "GenericError") -> None:
        super().__init__(desc)
        self.desc = desc
        self.cls = cls


def node_memdev_id(index: int) -> str:
    """The id of the boot RAM backend of the machine's ``index``-th node on QEMU's
    command line (``-object memory-backend-ram,id=m<index>``, memhp.bench.vm)."""
    return f"m{index}"


@dataclass
class Backend:
    """A memory backend object (/objects/ID) and the alignment of its RAM block."""

    id: str
    qom_type: str
    size: int
    align: int = QEMU_VMALLOC_ALIGN


def backend_align(qom_type: str, props: dict[str, Any]) -> int:
    """memory_region_get_alignment() of the backend's RAM block."""
    if qom_type == "memory-backend-memfd":
        if props.get("hugetlb"):
            return int(props.get("hugetlbsize") or 2 * MiB)
        return HOST_PAGE_SIZE
    if qom_type == "memory-backend-file":
        # file_ram_alloc(): the file's page size (a tmpfs or disk file: the host's
        # base page; a hugetlbfs path is not modelled), or a larger ``align``
        return max(HOST_PAGE_SIZE, int(props.get("align") or 0))
    return QEMU_VMALLOC_ALIGN


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

    @classmethod
    def for_machine(cls, spec: MachineSpec, platform: AcpiPlatform) -> QemuPcMachine:
        """``-m RAM,slots=N,maxmem=MAX`` of a machine file, over its platform, with a
        memory-backend-ram per node with boot memory (node_memdev_id()), mapped as the
        node's RAM: object-add cannot add it again, object-del cannot delete it and
        a device naming it finds it busy."""
        ram = sum(e - s for n in spec.nodes for s, e in n.memory)
        m = cls(platform, len(spec.nodes), ram, spec.maxmem)
        for i, n in enumerate(spec.nodes):
            if size := sum(e - s for s, e in n.memory):
                oid = node_memdev_id(i)
                m.backends[oid] = Backend(oid, "memory-backend-ram", size)
                m.numa_memdevs[oid] = n.id
        return m

    # ------------------------------------------------------------ objects
    def object_add(self, qom_type: str, oid: str, props: dict[str, Any]) -> Backend:
        """user_creatable_add_type() of a memory backend: complete() allocates its RAM."""
        if oid in self.backends:
            raise QemuError(
                f"attempt to add duplicate property '{oid}' to object (type 'container')"
            )
        if "size" in props and int(props["size"]) == 0:  # host_memory_backend_set_size()
            raise QemuError(f"property 'size' of {qom_type} doesn't take value '0'")
        size = int(props.get("size", 0))
        if size == 0:  # (not given: host_memory_backend_memory_complete())
            raise QemuError("can't create backend with size 0")
        align = backend_align(qom_type, props)
        if size + align > HOST_USER_ADDRESS_SPACE:  # qemu_ram_mmap(): size + align
            if qom_type == "memory-backend-ram":
                raise QemuError(f"cannot set up guest memory '{oid}': Cannot allocate memory")
            raise QemuError("unable to map backing store for guest RAM: Cannot allocate memory")
        b = Backend(oid, qom_type, size, align)
        self.backends[oid] = b
        return b

    def object_del(self, oid: str) -> None:
        """user_creatable_del(): not found / in use (a plugged DIMM maps it)."""
        if oid not in self.backends:
            raise QemuError(f"object '{oid}' not found")
        if self.backend_user(oid) is not None:
            raise QemuError(f"object '{oid}' is in use, can not be deleted")
        del self.backends[oid]

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
        """Plug a pc-dimm with an implicit memory-backend-ram of ``size`` (``mem-ID``)."""
        if id is not None and self.platform.slot_of(id) is not None:
            raise QemuError(f"Duplicate ID '{id}' for device")
        if size <= 0:
            raise QemuError("can't create backend with size 0")
        return self._plug(
            size,
            node,
            id,
            addr or 0,
            -1 if slot is None else slot,
            memdev,
            align,
            check_busy=False,
        )

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
