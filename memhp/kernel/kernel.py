"""The simulated kernel: a composition of its subsystems, and the boot order.

:class:`Kernel` holds one object per kernel subsystem (what the real kernel keeps
in the globals of that subsystem's file) and boots from a
:class:`~memhp.kernel.machine.MachineSpec` in the order of x86_64
start_kernel(): setup_arch(), mm_init(), driver_init() -> memory_dev_init(),
acpi_scan_init().  The behaviour lives in the modules named after the kernel's
files; it never does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from memhp.abi.layout import PAGE_SIZE, SECTION_SIZE
from memhp.kernel.arch.x86.kernel.setup import setup_arch
from memhp.kernel.arch.x86.mm.init_64 import KernelPageTables
from memhp.kernel.arch.x86.mm.numa import numa_cleanup_meminfo
from memhp.kernel.drivers.acpi.acpi_memhotplug import AcpiBus
from memhp.kernel.drivers.acpi.numa.srat import acpi_numa_init
from memhp.kernel.drivers.base.memory import MemorySubsys
from memhp.kernel.drivers.base.node import Nodes
from memhp.kernel.drivers.firmware.memmap import FirmwareMap
from memhp.kernel.drivers.virtio.virtio import VirtioBusDriver
from memhp.kernel.firmware import NO_FIRMWARE, Firmware
from memhp.kernel.lib.kobject_uevent import ObjectEvents
from memhp.kernel.machine import MachineSpec
from memhp.kernel.mm import mm_init
from memhp.kernel.mm.hugetlb import Hugetlb
from memhp.kernel.mm.memblock import Memblock
from memhp.kernel.mm.memory_hotplug import MemoryHotplug
from memhp.kernel.mm.mmzone import PgData
from memhp.kernel.mm.page_alloc import AllocError, PageAllocator, PageState
from memhp.kernel.mm.page_cgroup import PageCgroup
from memhp.kernel.mm.slab import KernelAllocations
from memhp.kernel.mm.sparse import SparseMem
from memhp.kernel.resource import Iomem


@dataclass(frozen=True)
class LogEntry:
    """One thing the kernel did, for the demo and for tests."""

    what: str
    detail: str


class Kernel:
    """A booted simulated kernel: its subsystems and the log of what it did."""

    def __init__(self, spec: MachineSpec, firmware: Firmware = NO_FIRMWARE) -> None:
        #: The firmware's description, its [[node]] ids proximity domains.
        self.firmware_spec = spec
        # setup_arch() -> initmem_init() -> x86_acpi_numa_init(): from here on the
        # kernel's node ids (see memhp.kernel.drivers.acpi.numa.srat).
        self.srat, spec = acpi_numa_init(spec)
        #: The machine with the kernel's node ids.
        self.spec = spec
        #: numa_meminfo (arch/x86/mm/numa.c), for memory_add_physaddr_to_nid().
        self.numa_meminfo = numa_cleanup_meminfo(self.srat, spec)
        self.profile = spec.profile
        top = max(
            [e.end for e in spec.e820 if e.type == "System RAM"]
            + [he for n in spec.nodes for _, he in n.hotplug]
            + [SECTION_SIZE]
        )
        spb = spec.block_size // SECTION_SIZE
        nr = -(-top // SECTION_SIZE)
        #: NR_MEM_SECTIONS of this machine (a whole number of memory blocks).
        self.nr_sections = nr + (-nr) % spb
        #: Add/remove events of sysfs-visible objects (kobject_uevent).
        self.objects = ObjectEvents()
        self.events: list[LogEntry] = []
        #: Simulated time, in seconds.
        self.clock = 0.0
        self.pa = PageAllocator(
            self.nr_sections,
            pin_excludes_movable=self.profile.longterm_pin_migrates_movable,
            free_to_tail=self.profile.free_to_tail,
            thp=spec.transparent_hugepage != "never",
            movable_wmark_capped=self.profile.movable_min_wmark_capped,
        )
        #: NODE_DATA(): the pgdat of each possible node.
        self.pgdats: dict[int, PgData] = {}
        self.pa.pgdats = self.pgdats
        self.sparse = SparseMem(self.nr_sections)
        #: The pfns with PG_hwpoison set (memory_failure(), soft_offline_page()); their
        #: count is num_poisoned_pages (HardwareCorrupted).  Gone with their memmap.
        self.hwpoison: set[int] = set()
        self.memblock = Memblock()
        self.fwmap = FirmwareMap(objects=self.objects)
        #: iomem_resource (kernel/resource.c): filled by setup_arch().
        self.iomem = Iomem()
        self.memory = MemorySubsys(self, spec.block_size)
        self.nodes = Nodes(self)
        self.hotplug = MemoryHotplug(spec)
        self.hugetlb = Hugetlb(self)
        self.pgtables = KernelPageTables(self)
        self.acpi = AcpiBus(self, firmware.acpi_memory)
        #: The kernel's own allocations at run time (slab, page tables).
        self.kalloc = KernelAllocations(self)
        #: The virtio bus and the virtio_mem driver (drivers/virtio).
        self.virtio = VirtioBusDriver(self, firmware.virtio)
        self._boot()

    def advance(self, seconds: float) -> None:
        """Simulated time passes: the kernel's timers fire (virtio_mem retries), then
        its run-time allocations (:attr:`kalloc`) catch up with the clock."""
        self.clock += seconds
        self.virtio.mem.run_timers()
        self.kalloc.advance(self.clock)

    def log(self, what: str, detail: str) -> None:
        self.events.append(LogEntry(what, detail))

    def _boot(self) -> None:
        """start_kernel(), as far as memory is concerned."""
        spec = self.spec
        states = self.nodes.node_states
        setup_arch(self)
        states["N_POSSIBLE"] = {n.id for n in spec.nodes}
        for n in spec.nodes:
            self.pgdats[n.id] = PgData(n.id)
        mm_init.build_zonelists(self)
        mm_init.free_area_init(self)
        self.memblock.reserve_boot(self)
        mm_init.memblock_free_all(self)
        # The kernel's runtime allocations at boot (slab, percpu, page tables...).
        for nid in sorted(states["N_MEMORY"]):
            nr = spec.boot_slab_per_node // PAGE_SIZE
            try:
                self.pa.alloc(
                    nr,
                    PageState.UNMOVABLE,
                    f"slab and kernel data of node {nid}",
                    "slab",
                    nid,
                    this_node=True,
                )
            except AllocError:
                # a node whose memory is all ZONE_MOVABLE holds no kernel data
                self.log("boot", f"node {nid}: no kernel memory for slab (movable only)")
        for n in spec.nodes:
            if n.cpus:
                states["N_CPU"].add(n.id)
                states["N_ONLINE"].add(n.id)
        states["N_ONLINE"] |= states["N_MEMORY"]
        for nid in sorted(states["N_ONLINE"]):
            self.pgdats[nid].init_count = 1
            self.nodes.register_one_node(nid)
        self.memory.memory_dev_init()
        # paging_init() + sparse_init() + mem_init(): boot page tables, boot vmemmap,
        # register_page_bootmem_info().
        self.pgtables.boot()
        if self.profile.page_cgroup_bytes_per_page and spec.memcg:
            PageCgroup(self).register()
        self.hugetlb.hugetlb_init()  # (subsys_initcall: before the ACPI scan's devices)
        self.acpi.scan()
        self.virtio.scan()
        self.log(
            "boot",
            f"{spec.name}: {len(self.memory.blocks)} memory blocks, "
            f"nodes online {sorted(states['N_ONLINE'])}",
        )
