"""The simulated kernel: boot, global state, and the glue between subsystems.

:class:`Kernel` holds what the real kernel keeps in globals (node states,
NODE_DATA, mem_section, the memory block devices, the firmware map, the memory
notifier chain) and boots from a :class:`~memhp.kernel.machine.MachineSpec` the
way x86_64 setup_arch() + mm_init() + memory_dev_init() do.  It never does I/O.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from memhp.abi.layout import (
    DMA32_END,
    DMA_END,
    PAGE_SHIFT,
    PAGE_SIZE,
    PAGES_PER_SECTION,
    SECTION_SIZE,
    MiB,
    pfn_to_section_nr,
    section_nr_to_pfn,
)
from memhp.kernel.arch.x86.pgtable import KernelPageTables
from memhp.kernel.drivers.base.memory import (
    MMOP,
    NUMA_NO_NODE,
    ONLINE_TYPE_TO_STR,
    MemoryBlock,
    MemState,
)
from memhp.kernel.drivers.firmware.memmap import FirmwareMap
from memhp.kernel.firmware import NO_FIRMWARE, Firmware
from memhp.kernel.machine import MachineSpec
from memhp.kernel.mm import memory_hotplug as mh
from memhp.kernel.mm.mmzone import PgData, Zone, ZoneType
from memhp.kernel.mm.page_alloc import (
    MIGRATE_PAGE_COST_S,
    Allocation,
    AllocError,
    PageAllocator,
    PageState,
)
from memhp.kernel.mm.sparse import MEMMAP_PAGES_PER_SECTION, SparseMem
from memhp.kernel.notifier import MemAction, MemoryChain, MemoryNotify

#: sizeof(pg_data_t) on a 6.1 x86_64 build, rounded to pages (about 170 KiB).
PGDAT_PAGES = 43


@dataclass(frozen=True)
class LogEntry:
    """One thing the kernel did, for the demo and for tests."""

    what: str
    detail: str


class Kernel:
    """A booted simulated kernel."""

    def __init__(self, spec: MachineSpec, firmware: Firmware = NO_FIRMWARE) -> None:
        self.spec = spec
        #: The hardware's firmware interfaces, given by the machine (never built here).
        self.firmware = firmware
        self.profile = spec.profile
        self.block_size = spec.block_size
        self.sections_per_block = spec.block_size // SECTION_SIZE
        self.pages_per_block = spec.block_size >> PAGE_SHIFT
        self.movable_node = spec.movable_node
        self.memmap_on_memory = spec.memmap_on_memory
        self.mhp_default_online_type = MMOP(
            list(ONLINE_TYPE_TO_STR.values()).index(spec.auto_online_blocks)
        )
        top = max(
            [e.end for e in spec.e820 if e.type == "System RAM"]
            + [he for n in spec.nodes for _, he in n.hotplug]
            + [SECTION_SIZE]
        )
        self.nr_sections = -(-top // SECTION_SIZE)
        self.nr_sections += (-self.nr_sections) % self.sections_per_block
        self.pa = PageAllocator(
            self.nr_sections, pin_excludes_movable=self.profile.name != "linux-3.8-hotremove"
        )
        self.sparse = SparseMem(self.nr_sections)
        self.fwmap = FirmwareMap()
        self.chain = MemoryChain()
        self.pgdats: dict[int, PgData] = {}
        self.pa.pgdats = self.pgdats
        self.blocks: dict[int, MemoryBlock] = {}
        #: Memory blocks per node id (mem->nid), so that node checks never scan all blocks.
        self.node_blocks: dict[int, int] = {}
        #: The 2 MiB hugetlb pool of each node (one allocation per huge page).
        self.hugetlb_pool: dict[tuple[int, int], list[Allocation]] = {}
        self.node_states: dict[str, set[int]] = {
            s: set() for s in ("N_POSSIBLE", "N_ONLINE", "N_NORMAL_MEMORY", "N_MEMORY", "N_CPU")
        }
        self.registered_nodes: set[int] = set()
        self.altmaps: dict[int, int] = {}
        self.page_cgroup: dict[int, int] = {}  # section -> allocation id (3.8 + MEMCG)
        self.events: list[LogEntry] = []
        #: Bumped whenever a sysfs object appears or vanishes (blocks, nodes, firmware
        #: entries, ACPI bindings): caches of the sysfs tree key on it.
        self.topology_gen = 0
        self.clock = 0.0
        self.migrate_page_cost_s = MIGRATE_PAGE_COST_S
        #: Simulated time one failed migration round costs (the loop's cond_resched/yield).
        self.migrate_retry_cost_s = 0.01
        #: In 6.1, a writer blocked in offline_pages() gets a signal after this long.
        self.signal_after_s = 120.0
        self.last_offline_failure: mh.OfflineFailure | None = None
        #: Errors injected into the next notifier calls (memory-notifier-error-inject).
        self.notifier_error_inject: dict[MemAction, int] = {}
        self.pgtable_hooks: list[Callable[[str, int, int, int], None]] = []
        self.pgtables = KernelPageTables(self)
        from memhp.kernel.drivers.acpi.acpi_memhotplug import AcpiBus

        self.acpi = AcpiBus(self, firmware.acpi_memory)
        self._boot()

    # ================================================================ logging
    def log(self, what: str, detail: str) -> None:
        self.events.append(LogEntry(what, detail))

    # ================================================================ boot
    def _boot(self) -> None:
        spec = self.spec
        # e820 -> firmware map (firmware_memmap_init -> firmware_map_add_early).
        for e in spec.e820:
            self.fwmap.firmware_map_add_early(e.start, e.end, e.type)
        # memblock: RAM per section, node of each section.
        for start, end, nid in spec.boot_ram:
            pfn, epfn = -(-start // PAGE_SIZE), end // PAGE_SIZE
            s0, s1 = pfn_to_section_nr(pfn), pfn_to_section_nr(epfn - 1)
            if s0 == s1:
                self.pa.ram[s0] += epfn - pfn
            else:
                self.pa.ram[s0] += section_nr_to_pfn(s0 + 1) - pfn
                self.pa.ram[s0 + 1 : s1] += PAGES_PER_SECTION
                self.pa.ram[s1] += epfn - section_nr_to_pfn(s1)
            self.pa.nid[s0 : s1 + 1] = nid
            self.sparse.present[s0 : s1 + 1] = True
            self.sparse.early[s0 : s1 + 1] = True
        self.node_states["N_POSSIBLE"] = {n.id for n in spec.nodes}
        for n in spec.nodes:
            self.pgdats[n.id] = PgData(n.id)
        self._build_node_order()
        self._init_zones()
        self._memblock_reservations()
        # memblock_free_all(): boot RAM to the buddy allocator, zone by zone.
        present = np.flatnonzero(self.sparse.present)
        zones = self._boot_zones_of_sections(present)
        self.sparse.online[present] = True
        self.pa.sections_online(present, zones)
        for pgdat in self.pgdats.values():
            for zone in pgdat.node_zones:
                zone.managed_pages = zone.present_pages - self._reserved_in_zone(zone)
        self.pa.init_per_zone_wmark_min()
        # The kernel's runtime allocations at boot (slab, percpu, page tables...).
        for nid in sorted(self.node_states["N_MEMORY"]):
            nr = self.spec.boot_slab_per_node // PAGE_SIZE
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
        # node states.
        for n in spec.nodes:
            if n.cpus:
                self.node_states["N_CPU"].add(n.id)
                self.node_states["N_ONLINE"].add(n.id)
        self.node_states["N_ONLINE"] |= self.node_states["N_MEMORY"]
        for nid in sorted(self.node_states["N_ONLINE"]):
            self.pgdats[nid].init_count = 1
            self.register_one_node(nid)
        self._memory_dev_init()
        self.pgtable_boot()
        if self.profile.page_cgroup_bytes_per_page and spec.memcg:
            from memhp.kernel.mm.page_cgroup import PageCgroup

            PageCgroup(self).register()
        self.acpi.scan()
        self.log(
            "boot",
            f"{spec.name}: {len(self.blocks)} memory blocks, "
            f"nodes online {sorted(self.node_states['N_ONLINE'])}",
        )

    def _build_node_order(self) -> None:
        """build_zonelists() node order: by SLIT distance, then node id."""
        for n in self.spec.nodes:
            order = sorted(
                self.spec.nodes, key=lambda m: (n.distance[self._node_index(m.id)], m.id)
            )
            self.pa.node_order[n.id] = [m.id for m in order]

    def _node_index(self, nid: int) -> int:
        return [n.id for n in self.spec.nodes].index(nid)

    def _movable_start_pfn(self, nid: int) -> int | None:
        """find_zone_movable_pfns_for_nodes() with movable_node: hotpluggable boot memory."""
        if not self.movable_node:
            return None
        node = self.spec.node(nid)
        starts = [
            max(ms, hs)
            for ms, me in node.memory
            for hs, he in node.hotplug
            if max(ms, hs) < min(me, he)
        ]
        if not starts:
            return None
        # Memory below the highest kernel zone's start stays in the kernel zones.
        return (
            max(min(starts), DMA32_END if self._node_has_above_4g(nid) else DMA_END) >> PAGE_SHIFT
        )

    def _node_has_above_4g(self, nid: int) -> bool:
        return any(e > DMA32_END for s, e, n in self.spec.boot_ram if n == nid)

    def _init_zones(self) -> None:
        """free_area_init(): zone spans and present pages of boot memory."""
        for nid, pgdat in self.pgdats.items():
            ranges = [(s, e) for s, e, n in self.spec.boot_ram if n == nid]
            if not ranges:
                continue
            self.node_states["N_MEMORY"].add(nid)
            lo = min(s for s, _ in ranges) >> PAGE_SHIFT
            hi = max(e for _, e in ranges) >> PAGE_SHIFT
            mov = self._movable_start_pfn(nid)
            bounds = {
                ZoneType.DMA: (0, DMA_END >> PAGE_SHIFT),
                ZoneType.DMA32: (DMA_END >> PAGE_SHIFT, DMA32_END >> PAGE_SHIFT),
                ZoneType.NORMAL: (DMA32_END >> PAGE_SHIFT, 1 << 62),
            }
            if mov is not None:
                bounds[ZoneType.MOVABLE] = (mov, 1 << 62)
                for z in (ZoneType.DMA, ZoneType.DMA32, ZoneType.NORMAL):
                    b0, b1 = bounds[z]
                    bounds[z] = (b0, min(b1, mov))
            for z, (b0, b1) in bounds.items():
                s, e = max(lo, b0), min(hi, b1)
                if s >= e:
                    continue
                present = 0
                for rs, re_ in ranges:
                    rs_, re2 = max(rs >> PAGE_SHIFT, s), min(re_ >> PAGE_SHIFT, e)
                    if rs_ < re2:
                        present += re2 - rs_
                zone = pgdat.zone(z)
                if present:
                    zone.zone_start_pfn, zone.spanned_pages = s, e - s
                    zone.present_pages = present
            pgdat.update_span()
            if any(
                pgdat.zone(z).present_pages for z in (ZoneType.DMA, ZoneType.DMA32, ZoneType.NORMAL)
            ):
                self.node_states["N_NORMAL_MEMORY"].add(nid)

    def _boot_zones_of_sections(self, secs: npt.NDArray[np.intp]) -> npt.NDArray[np.int8]:
        """The zone each boot section's pages belong to (the highest zone it overlaps)."""
        out = np.zeros(secs.size, np.int8)
        pfn0 = secs.astype(np.int64) * PAGES_PER_SECTION
        pfn1 = pfn0 + PAGES_PER_SECTION
        nids = self.pa.nid[secs]
        for nid, pgdat in self.pgdats.items():
            mine = nids == nid
            for zone in pgdat.node_zones:
                if zone.is_empty():
                    continue
                hit = mine & (pfn0 < zone.zone_end_pfn) & (zone.zone_start_pfn < pfn1)
                out[hit] = np.maximum(out[hit], int(zone.idx))
        return out

    def _reserved_in_zone(self, zone: Zone) -> int:
        if zone.is_empty():
            return 0
        s0 = pfn_to_section_nr(zone.zone_start_pfn)
        s1 = pfn_to_section_nr(zone.zone_end_pfn - 1) + 1
        mask = (self.pa.zone[s0:s1] == int(zone.idx)) & (self.pa.nid[s0:s1] == zone.nid)
        return int(self.pa.counts[PageState.RESERVED, s0:s1][mask].sum())

    def _memblock_reservations(self) -> None:
        """What memblock hands out before the buddy allocator exists."""
        spec = self.spec
        first_nid = spec.boot_ram[0][2]
        # The first 1 MiB (x86 reserves all of low memory, 5.13+).
        self.pa.memblock_reserve(
            0, (1 * MiB) >> PAGE_SHIFT, "low memory (BIOS, real mode)", "memblock", first_nid
        )
        # The kernel image.
        img = spec.kernel_image_start >> PAGE_SHIFT
        img_nid = next(
            (n for s, e, n in spec.boot_ram if s <= spec.kernel_image_start < e), first_nid
        )
        self.kernel_image = self.pa.memblock_reserve(
            img,
            spec.kernel_image_size >> PAGE_SHIFT,
            "kernel image (text, data, bss)",
            "kernel_image",
            img_nid,
        )
        # With movable_node, memblock allocates bottom-up above the kernel image and
        # never from hotpluggable memory (memblock_set_bottom_up(), MEMBLOCK_HOTPLUG).
        exclude = None
        min_pfn = 0
        if self.movable_node:
            exclude = np.zeros(self.nr_sections, np.bool_)
            for n in spec.nodes:
                for hs, he in n.hotplug:
                    exclude[hs // SECTION_SIZE : -(-he // SECTION_SIZE)] = True
            min_pfn = (spec.kernel_image_start + spec.kernel_image_size) >> PAGE_SHIFT
        # sparse_init_nid(): one memmap buffer per node, on that node if it can.
        self.boot_memmap: dict[int, Allocation] = {}
        for nid in sorted({n for _, _, n in spec.boot_ram}):
            nsec = int(np.count_nonzero(self.sparse.present & (self.pa.nid == nid)))
            self.boot_memmap[nid] = self.pa.memblock_alloc_top_down(
                nsec * MEMMAP_PAGES_PER_SECTION,
                nid,
                f"memmap of boot memory of node {nid}",
                "memmap",
                bottom_up=self.movable_node,
                exclude=exclude,
                min_pfn=min_pfn,
            )
            # NODE_DATA (alloc_node_data): pgdat on its own node.
            self.pa.memblock_alloc_top_down(
                PGDAT_PAGES,
                nid,
                f"pgdat of node {nid}",
                "pgdat",
                bottom_up=self.movable_node,
                exclude=exclude,
                min_pfn=min_pfn,
            )
        # swiotlb bounce buffer: memblock_alloc_low(), below 4 GiB.
        if spec.swiotlb_size:
            try:
                self.pa.memblock_alloc_top_down(
                    spec.swiotlb_size >> PAGE_SHIFT,
                    first_nid,
                    "swiotlb bounce buffer",
                    "memblock",
                    limit_pfn=DMA32_END >> PAGE_SHIFT,
                )
            except AllocError:
                # swiotlb_init() warns and runs without a bounce buffer
                self.log("boot", "swiotlb: cannot allocate the bounce buffer below 4G")

    def _memory_dev_init(self) -> None:
        """memory_dev_init(): one block device per present block, online.

        A block's zone is set only when all of it lies in one zone of one node
        (early_node_zone_for_memory_block()); otherwise it cannot be offlined.
        """
        spb = self.sections_per_block
        present = self.sparse.present.reshape(-1, spb)
        nids = np.where(self.sparse.present, self.pa.nid, -1).reshape(-1, spb)
        bids = np.flatnonzero(present.any(axis=1))
        ppb = self.pages_per_block
        zone_bounds = {
            nid: [
                (z.idx, z.zone_start_pfn, z.zone_end_pfn) for z in p.node_zones if not z.is_empty()
            ]
            for nid, p in self.pgdats.items()
        }
        for bid in bids.tolist():
            row = nids[bid][present[bid]]
            nid = int(row[0])
            mixed = bool((row != nid).any())
            mem = MemoryBlock(
                bid, bid * spb, MemState.MEM_ONLINE, NUMA_NO_NODE if mixed else nid, early=True
            )
            mem.nodes = {int(x) for x in np.unique(row)} if mixed else {nid}
            if not mixed:
                pfn0 = bid * ppb
                hit = [z for z, s, e in zone_bounds[nid] if pfn0 < e and s < pfn0 + ppb]
                if len(hit) == 1:
                    mem.zone = hit[0]
            self.blocks[bid] = mem
            self.node_blocks[mem.nid] = self.node_blocks.get(mem.nid, 0) + 1

    # ================================================================ notifier
    def memory_notify(self, action: MemAction, arg: MemoryNotify) -> int:
        """memory_notify(): the chain, with memory-notifier-error-inject in front.

        lib/memory-notifier-error-inject.c registers a notifier at the highest
        priority that returns the errno set in debugfs for an action, on every call
        until it is set back to 0.
        """
        inj = self.notifier_error_inject.get(action, 0)
        if inj:
            return inj
        return self.chain.call(action, arg)

    # ================================================================ nodes
    def present_sections_of(self, nid: int) -> int:
        """Present sections of node ``nid`` (vectorised: no per-section Python work)."""
        return int(np.count_nonzero(self.sparse.present & (self.pa.nid == nid)))

    def cpus_of(self, nid: int) -> tuple[int, ...]:
        return self.spec.node(nid).cpus

    def node_set_online(self, nid: int) -> None:
        self.node_states["N_ONLINE"].add(nid)

    def node_set_offline(self, nid: int) -> None:
        self.node_states["N_ONLINE"].discard(nid)
        self.log("try_offline_node", f"node {nid} offline")

    def register_one_node(self, nid: int) -> None:
        """register_one_node(): /sys/devices/system/node/nodeN appears."""
        self.registered_nodes.add(nid)
        self.topology_gen += 1
        self.log("register_one_node", f"/sys/devices/system/node/node{nid} created")

    def unregister_one_node(self, nid: int) -> None:
        self.registered_nodes.discard(nid)
        self.topology_gen += 1
        self.log("unregister_one_node", f"/sys/devices/system/node/node{nid} removed")

    def hotadd_init_pgdat(self, nid: int) -> int:
        """__try_online_node(): (re)initialise the pgdat of a node coming online.

        6.1 keeps every possible node's pgdat from boot.  In the 3.8 profile the
        pgdat is allocated from kernel memory the first time (arch_alloc_nodedata)
        and kept, reset, when the node goes offline (seed patches 14 and 15).
        """
        pgdat = self.pgdats[nid]
        if not self.profile.pgdat_preallocated and pgdat.allocation is None:
            try:
                (a,) = self.pa.alloc(
                    PGDAT_PAGES, PageState.UNMOVABLE, f"pgdat of node {nid}", "pgdat", nid
                )
            except AllocError:
                return -errno.ENOMEM
            pgdat.allocation = a.id
            self.log("hotadd_new_pgdat", f"pgdat of node {nid} allocated ({PGDAT_PAGES} pages)")
        elif pgdat.init_count:
            self.log("hotadd_new_pgdat", f"pgdat of node {nid} reused (reset)")
        pgdat.reset()
        return 0

    def release_new_pgdat(self, nid: int) -> None:
        """rollback_node_hotadd(): undo a pgdat allocated for a failed hot-add."""
        pgdat = self.pgdats[nid]
        if pgdat.allocation is not None and pgdat.init_count == 1:
            self.pa.free(self.pa.allocs[pgdat.allocation])
            pgdat.allocation = None
            pgdat.init_count = 0

    # ================================================================ blocks
    def blocks_in_range(self, start: int, size: int) -> list[MemoryBlock]:
        first = start // self.block_size
        last = (start + size - 1) // self.block_size
        return [self.blocks[b] for b in range(first, last + 1) if b in self.blocks]

    def create_memory_block_devices(
        self, start: int, size: int, vmemmap_pages: int, nid: int
    ) -> list[MemoryBlock]:
        """create_memory_block_devices(): offline blocks for a hot-added range."""
        self.topology_gen += 1
        out = []
        for bid in range(start // self.block_size, (start + size) // self.block_size):
            mem = MemoryBlock(
                bid,
                bid * self.sections_per_block,
                MemState.MEM_OFFLINE,
                nid,
                nr_vmemmap_pages=vmemmap_pages,
            )
            self.blocks[bid] = mem
            self.node_blocks[nid] = self.node_blocks.get(nid, 0) + 1
            out.append(mem)
        self.log(
            "create_memory_block_devices",
            f"memory{out[0].id}..memory{out[-1].id} created (offline)"
            if len(out) > 1
            else f"memory{out[0].id} created (offline)",
        )
        return out

    def remove_memory_block_devices(self, start: int, size: int) -> None:
        """remove_memory_block_devices(): unregister blocks and their node links."""
        self.topology_gen += 1
        ids = [m.id for m in self.blocks_in_range(start, size)]
        for bid in ids:
            mem = self.blocks.pop(bid)
            self.node_blocks[mem.nid] -= 1
        if ids:
            self.log("remove_memory_block_devices", f"memory{ids[0]}..memory{ids[-1]} removed")

    def shrink_spans_for_removal(self, sec: int) -> None:
        """3.8 __remove_zone(): shrink the zone spanning a removed section."""
        nid = int(self.pa.nid[sec])
        if nid < 0:
            return
        pfn = section_nr_to_pfn(sec)
        for zone in self.pgdats[nid].node_zones:
            if zone.spans(pfn):
                mh.shrink_zone_span(self, zone, pfn, pfn + PAGES_PER_SECTION)
        self.pgdats[nid].update_span()

    # ================================================================ page tables
    def pgtable_boot(self) -> None:
        """paging_init() + sparse_init() + mem_init(): boot page tables, boot vmemmap,
        register_page_bootmem_info() (memhp.kernel.arch.x86.pgtable), then the hooks."""
        self.pgtables.boot()
        for hook in self.pgtable_hooks:
            hook("boot", 0, 0, 0)

    def pgtable_add(self, nid: int, first: int, end: int) -> None:
        """End of arch_add_memory(): the tables of sections [first, end) exist
        (built by SparseMem.arch_add_memory through ``self.pgtables``)."""
        for hook in self.pgtable_hooks:
            hook("add", nid, first, end)

    def pgtable_remove(self, first: int, end: int) -> None:
        """arch_remove_memory(): the tables of sections [first, end) are gone
        (torn down by SparseMem.arch_remove_memory through ``self.pgtables``)."""
        for hook in self.pgtable_hooks:
            hook("remove", -1, first, end)

    # ================================================================ probe
    def memory_add_physaddr_to_nid(self, addr: int) -> int:
        """memory_add_physaddr_to_nid() (x86): the SRAT node of the address, else the first."""
        for n in self.spec.nodes:
            for s, e in (*n.memory, *n.hotplug):
                if s <= addr < e:
                    return n.id
        return self.spec.nodes[0].id

    def probe_memory(self, addr: int) -> int:
        """probe_store() after parsing: add one block at ``addr``, no ACPI device.

        The ``probe`` interface (CONFIG_ARCH_MEMORY_PROBE) tells the kernel that
        memory exists there, whether or not the platform has any: a testing aid.
        """
        if addr % self.block_size:
            return -errno.EINVAL
        nid = self.memory_add_physaddr_to_nid(addr)
        return mh.add_memory(self, nid, addr, self.block_size)

    # ================================================================ hugetlb
    def set_max_huge_pages(self, nid: int, count: int, size_kb: int = 2048) -> None:
        """set_max_huge_pages() for one node and huge page size (nr_hugepages store).

        Grows the pool with fresh huge pages from the node itself
        (alloc_fresh_huge_page with __GFP_THISNODE; 1 GiB pages come from
        alloc_contig_pages) as far as memory allows, or shrinks it; like the kernel,
        a partly satisfied request is no error.  Huge pages are movable on x86_64
        (hugepage_movable_supported), so they may come from ZONE_MOVABLE and
        migrate when their memory goes offline.
        """
        pool = self.hugetlb_pool.setdefault((nid, size_kb), [])
        pages = size_kb * 1024 // PAGE_SIZE
        while len(pool) > count:
            a = pool.pop()
            if a.id in self.pa.allocs:
                self.pa.free(a)
        while len(pool) < count:
            try:
                (a,) = self.pa.alloc(
                    pages,
                    PageState.MOVABLE,
                    f"hugetlb page ({size_kb} kB) of node {nid}",
                    "hugetlb",
                    nid,
                    this_node=True,
                )
            except AllocError:
                break
            pool.append(a)
        self.log("hugetlb", f"node {nid}: {len(pool)} huge pages of {size_kb} kB")

    def huge_page_sizes(self) -> tuple[int, ...]:
        """hugetlb_add_hstate(): 2 MiB, and 1 GiB where the CPU has gbpages."""
        return (2048, 1048576) if self.spec.gbpages else (2048,)

    def nr_huge_pages(self, nid: int | None = None, size_kb: int | None = None) -> int:
        """Huge pages in the pools, optionally of one node and/or size."""
        return sum(
            len(p)
            for (n, sz), p in self.hugetlb_pool.items()
            if (nid is None or n == nid) and (size_kb is None or sz == size_kb)
        )

    # ================================================================ removable, poison
    def removable(self, mem: MemoryBlock) -> bool:
        """removable_show(): always 1 in 6.1; 3.8's is_mem_section_removable() heuristic
        (no pageblock holds unmovable or reserved pages)."""
        if not self.profile.removable_heuristic:
            return True
        if mem.state is not MemState.MEM_ONLINE:
            return True
        secs = range(mem.start_section_nr, mem.start_section_nr + self.sections_per_block)
        for sec in secs:
            c = self.pa.counts[:, sec]
            if c[PageState.UNMOVABLE] or c[PageState.RESERVED] or c[PageState.PINNED]:
                return False
        return True

    def memory_failure(self, pfn: int, soft: bool) -> int:
        """soft_offline_page() / memory_failure() of one pfn: 0 or -errno.

        A free page is taken off the buddy; a movable page is migrated first (soft)
        or its contents lost (hard); kernel pages cannot be handled (-EBUSY).  The
        poisoned page is held by a "hwpoison" allocation, which offlining skips.
        """
        sec = pfn_to_section_nr(pfn)
        if pfn < 0 or sec >= self.nr_sections or not self.sparse.present[sec]:
            return -errno.ENXIO
        if not self.sparse.online[sec]:
            return -errno.EIO
        from memhp.kernel.mm.page_alloc import page_state_at

        st = page_state_at(self.pa, sec, pfn - section_nr_to_pfn(sec))
        if st is None or st in (PageState.RESERVED, PageState.ALTMAP, PageState.UNMOVABLE):
            return -errno.EBUSY
        if st is PageState.PINNED and soft:
            return -errno.EBUSY
        if st in (PageState.MOVABLE, PageState.PINNED):
            owner = next(
                self.pa.allocs[a] for a in self.pa.by_section[sec] if self.pa.allocs[a].state is st
            )
            if soft:
                try:
                    dst = self.pa.alloc(1, st, owner.owner, owner.kind, owner.nid)[0]
                except AllocError:
                    return -errno.EBUSY
                self.pa.absorb(owner, dst)
            self.pa.free(owner, sec, 1)
        a = self.pa.alloc_in_sections(
            [sec],
            1,
            PageState.UNMOVABLE,
            f"hwpoisoned page pfn {pfn:#x}",
            "hwpoison",
            int(self.pa.nid[sec]),
        )
        del a
        self.log("memory_failure", f"pfn {pfn:#x} poisoned ({'soft' if soft else 'hard'})")
        return 0

    # ================================================================ info
    def node_meminfo(self, nid: int) -> dict[str, int]:
        """si_meminfo_node() and node_page_state(): page counts of a node."""
        total = free = movable = pinned = unmovable = 0
        for zone in self.pgdats[nid].node_zones:
            total += zone.managed_pages
            free += self.pa.zone_count(zone, PageState.FREE)
            movable += self.pa.zone_count(zone, PageState.MOVABLE)
            pinned += self.pa.zone_count(zone, PageState.PINNED)
            unmovable += self.pa.zone_count(zone, PageState.UNMOVABLE)
        return {
            "total": total,
            "free": free,
            "movable": movable,
            "pinned": pinned,
            "unmovable": unmovable,
        }
