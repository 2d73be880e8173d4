"""Boot-time memory reservations (mm/memblock.c and its callers in setup_arch()).

What memblock hands out before the buddy allocator exists, checked page for page
against ``memblock=debug`` boots of Debian's 6.1 and 6.12 (the bench's 1G guest):
the RAM of the first MiB, the kernel image with the brk it used, each node's memmap
buffer (sparse_init_nid) and pgdat (alloc_node_data), the mem_section roots and
their index pages (sparse_init, sparse_index_alloc), the pgdat of each node without
boot memory (free_area_init -> arch_alloc_nodedata; 6.12 alloc_offline_node_data),
the fixmap's page tables (spp_getpage), the first percpu chunk per node with CPUs,
the dentry and inode hash tables when one node has memory (dcache_init_early,
inode_init_early -> alloc_large_system_hash), the swiotlb bounce buffer
(NUMA_NO_NODE, top-down below 4 GiB) and its slot array (swiotlb_init_remap).  The
pages are PG_reserved allocations of the page allocator (:func:`memblock_reserve`
and :func:`memblock_alloc_try_nid`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from memhp.abi.layout import (
    DMA32_END,
    PAGE_SHIFT,
    PAGE_SIZE,
    PAGES_PER_SECTION,
    SECTION_SIZE,
    SECTION_SIZE_BITS,
    MiB,
    pfn_to_section_nr,
)
from memhp.kernel.arch.x86.kernel.e820 import memblock_memory
from memhp.kernel.drivers.acpi.numa.srat import NUMA_NO_NODE
from memhp.kernel.mm.mmzone import PGDAT_PAGES
from memhp.kernel.mm.page_alloc import Allocation, AllocError, PageAllocator, PageState
from memhp.kernel.mm.sparse import MEMMAP_PAGES_PER_SECTION

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel

#: sizeof(struct mem_section) with CONFIG_PAGE_EXTENSION (Debian): section_mem_map,
#: usage, page_ext, pad; SECTIONS_PER_ROOT sections share one index page.
MEM_SECTION_BYTES = 32
SECTIONS_PER_ROOT = PAGE_SIZE // MEM_SECTION_BYTES
#: MAX_PHYSMEM_BITS: 46 with 4-level paging, 52 with 5 (pgtable_l5_enabled()).
MAX_PHYSMEM_BITS_4LEVEL, MAX_PHYSMEM_BITS_5LEVEL = 46, 52


def mem_section_roots_pages(la57: bool) -> int:
    """sparse_alloc_section_roots(): NR_SECTION_ROOTS pointers, in pages (8 with
    4-level paging, 512 with 5: NR_MEM_SECTIONS follows MAX_PHYSMEM_BITS)."""
    bits = MAX_PHYSMEM_BITS_5LEVEL if la57 else MAX_PHYSMEM_BITS_4LEVEL
    roots = -(-(1 << (bits - SECTION_SIZE_BITS)) // SECTIONS_PER_ROOT)
    return -(-roots * 8 // PAGE_SIZE)


#: spp_getpage(): the page tables set_pte_vaddr() builds for the fixmap at boot.
FIXMAP_PGTABLE_PAGES = 3
#: The allocations smaller than a page: each node's usemap (sparse_init_nid, on its
#: node), with which, on the first node, the firmware map entries, ACPI and IO-APIC
#: names, cpumasks, percpu maps... pack, SMP_CACHE_BYTES-aligned: a page a node.
USEMAP_PAGES = 1
#: IO_TLB_SHIFT: a swiotlb slab is 2 KiB; sizeof(struct io_tlb_slot) (orig_addr,
#: alloc_size, list and, 6.12, pad_slots: 24 bytes with padding).
IO_TLB_SHIFT = 11
IO_TLB_SLOT_BYTES = 24
#: alloc_large_system_hash(): ADAPT_SCALE_BASE (64 GiB) in pages, ADAPT_SCALE_SHIFT.
ADAPT_SCALE_NPAGES = (64 << 30) >> PAGE_SHIFT
ADAPT_SCALE_SHIFT = 2
#: sizeof(struct page): the memmap estimate of calc_memmap_size().
STRUCT_PAGE_BYTES = 64
#: The hash tables dcache_init_early() and inode_init_early() allocate from memblock
#: (HASH_EARLY): name, bucket size (an hlist head: 8 bytes), scale, low limit.
EARLY_HASHES = (("Dentry cache", 8, 13, 2), ("Inode-cache", 8, 14, 0))


def memblock_reserve(
    pa: PageAllocator, start_pfn: int, nr_pages: int, owner: str, kind: str, nid: int
) -> Allocation:
    """memblock_reserve() of an exact pfn range at boot: PG_reserved pages (as many of
    each section's as are RAM and not taken yet)."""
    a = pa._new(owner, kind, PageState.RESERVED, nid)
    pfn, end = start_pfn, start_pfn + nr_pages
    while pfn < end:
        sec = pfn_to_section_nr(pfn)
        sec_end = (sec + 1) * PAGES_PER_SECTION
        n = min(end, sec_end) - pfn
        n = min(n, int(pa.ram[sec]) - int(pa.counts[:, sec].sum()))
        if n > 0:
            pa.counts[PageState.RESERVED, sec] += n
            pa._index_add(a, sec, n)
        pfn = sec_end
    return a


class Memblock:
    """The memblock reservations the rest of the kernel refers to later."""

    def __init__(self) -> None:
        #: The kernel image's reservation (its brk holds the first page tables).
        self.kernel_image: Allocation | None = None

    def reserve_boot(self, k: Kernel) -> None:
        """memblock_reserve() / memblock_alloc*() calls of setup_arch() and mm_init()."""
        spec = k.spec
        pa = k.pa
        movable_node = k.hotplug.movable_node
        first_nid = spec.boot_ram[0][2]
        # The first 1 MiB (x86 reserves all of low memory, 5.13+): its RAM pages.
        memblock_reserve(
            pa, 0, ram_pages(k, 0, MiB), "low memory (BIOS, real mode)", "memblock", first_nid
        )
        # The kernel image.
        img = spec.kernel_image_start >> PAGE_SHIFT
        img_nid = next(
            (n for s, e, n in spec.boot_ram if s <= spec.kernel_image_start < e), first_nid
        )
        self.kernel_image = memblock_reserve(
            pa,
            img,
            -(-spec.kernel_image_size // PAGE_SIZE),
            "kernel image (text, data, bss)",
            "kernel_image",
            img_nid,
        )
        # With movable_node, memblock allocates bottom-up above the kernel image and
        # never from hotpluggable memory (memblock_set_bottom_up(), MEMBLOCK_HOTPLUG).
        exclude = None
        min_pfn = 0
        if movable_node:
            exclude = np.zeros(k.nr_sections, np.bool_)
            for n in spec.nodes:
                for hs, he in n.hotplug:
                    exclude[hs // SECTION_SIZE : -(-he // SECTION_SIZE)] = True
            min_pfn = (spec.kernel_image_start + spec.kernel_image_size) >> PAGE_SHIFT
        boot_nids = sorted({n for _, _, n in spec.boot_ram})
        # sparse_init_nid(): one memmap buffer per node, on that node if it can.
        for nid in boot_nids:
            nsec = k.sparse.present_sections_of(k, nid)
            k.sparse.boot_memmap[nid] = memblock_alloc_try_nid(
                pa,
                nsec * MEMMAP_PAGES_PER_SECTION,
                nid,
                f"memmap of boot memory of node {nid}",
                "memmap",
                bottom_up=movable_node,
                exclude=exclude,
                min_pfn=min_pfn,
            )
            # NODE_DATA (alloc_node_data): pgdat on its own node.
            memblock_alloc_try_nid(
                pa,
                PGDAT_PAGES,
                nid,
                f"pgdat of node {nid}",
                "pgdat",
                bottom_up=movable_node,
                exclude=exclude,
                min_pfn=min_pfn,
            )
        # sparse_init(): the mem_section root array (NUMA_NO_NODE) and, per root with
        # boot sections, its index page on the node of the root's first section.
        memblock_alloc_try_nid(
            pa, mem_section_roots_pages(spec.la57), NUMA_NO_NODE, "mem_section roots", "memblock"
        )
        present = np.flatnonzero(k.sparse.present)
        roots, firsts = np.unique(present // SECTIONS_PER_ROOT, return_index=True)
        for root, first in zip(roots.tolist(), present[firsts].tolist(), strict=True):
            memblock_alloc_try_nid(
                pa, 1, int(pa.nid[first]), f"mem_section index {root}", "memblock"
            )
        # free_area_init(): a node without boot memory gets its pg_data_t from memblock
        # (arch_alloc_nodedata; 6.12 alloc_offline_node_data), NUMA_NO_NODE.
        if k.profile.pgdat_preallocated:
            for n in spec.nodes:
                if n.id not in boot_nids:
                    memblock_alloc_try_nid(
                        pa, PGDAT_PAGES, NUMA_NO_NODE, f"pgdat of node {n.id}", "pgdat"
                    )
        for nid in boot_nids:
            memblock_alloc_try_nid(
                pa,
                USEMAP_PAGES,
                nid,
                f"usemap and small early allocations of node {nid}",
                "memblock",
                bottom_up=movable_node,
                exclude=exclude,
                min_pfn=min_pfn,
            )
        # setup_per_cpu_areas() -> pcpu_embed_first_chunk(): one group per node with
        # CPUs, allocated on that node (pcpu_fc_alloc -> memblock_alloc_try_nid); the
        # unused tail of each unit is given back, so each CPU keeps percpu_per_cpu.
        for n in spec.nodes:
            if n.cpus and spec.percpu_per_cpu:
                memblock_alloc_try_nid(
                    pa,
                    -(-spec.percpu_per_cpu * len(n.cpus) // PAGE_SIZE),
                    n.id,
                    f"percpu first chunk of node {n.id}",
                    "memblock",
                    bottom_up=movable_node,
                    exclude=exclude,
                    min_pfn=min_pfn,
                )
        # vfs_caches_init_early(): the dentry and inode hash tables, from memblock
        # unless hashdist (page_alloc_init(): off when one node has memory); they are
        # cache-line aligned, so together they straddle one page more than their size.
        if len(k.nodes.node_states["N_MEMORY"]) == 1:
            kernel_pages = nr_kernel_pages(k)
            size = sum(early_hash_bytes(kernel_pages, *h[1:]) for h in EARLY_HASHES)
            memblock_alloc_try_nid(
                pa,
                -(-size // PAGE_SIZE) + 1,
                NUMA_NO_NODE,
                "dentry and inode hash tables",
                "memblock",
            )
        # mm_init(): the fixmap's page tables (set_pte_vaddr -> spp_getpage).
        memblock_alloc_try_nid(
            pa, FIXMAP_PGTABLE_PAGES, NUMA_NO_NODE, "fixmap page tables", "pagetable"
        )
        # swiotlb bounce buffer: swiotlb_init_remap() -> memblock_alloc_low():
        # NUMA_NO_NODE, top-down below 4 GiB, so on whichever node owns the highest
        # free memory there (not node 0 first).
        if spec.swiotlb_size:
            try:
                memblock_alloc_try_nid(
                    pa,
                    spec.swiotlb_size >> PAGE_SHIFT,
                    NUMA_NO_NODE,
                    "swiotlb bounce buffer",
                    "memblock",
                    limit_pfn=DMA32_END >> PAGE_SHIFT,
                )
            except AllocError:
                # swiotlb_init() warns and runs without a bounce buffer
                k.log("boot", "swiotlb: cannot allocate the bounce buffer below 4G")
            else:
                # ... and mem->slots: one struct io_tlb_slot per 2 KiB slab, page aligned
                slabs = spec.swiotlb_size >> IO_TLB_SHIFT
                memblock_alloc_try_nid(
                    pa,
                    -(-slabs * IO_TLB_SLOT_BYTES // PAGE_SIZE),
                    NUMA_NO_NODE,
                    "swiotlb slots",
                    "memblock",
                )


def ram_pages(k: Kernel, start: int, end: int) -> int:
    """The whole pages of boot RAM (memblock.memory) in [start, end)."""
    n = 0
    for s, e, _nid in memblock_memory(k):
        a, b = max(-(-s // PAGE_SIZE), start // PAGE_SIZE), min(e, end) // PAGE_SIZE
        n += max(0, b - a)
    return n


def nr_kernel_pages(k: Kernel) -> int:
    """free_area_init_core()'s nr_kernel_pages: the present pages of each boot zone
    (no highmem on x86_64: ZONE_MOVABLE counts too) less calc_memmap_size() (of the
    spanned pages, or the present ones when holes make up more than a sixteenth)."""
    total = 0
    for pgdat in k.pgdats.values():
        for zone in pgdat.node_zones:
            if not zone.present_pages:
                continue
            span, present = zone.spanned_pages, zone.present_pages
            pages = present if span > present + (present >> 4) else span
            memmap = -(-pages * STRUCT_PAGE_BYTES // PAGE_SIZE)
            total += present - memmap if present >= memmap else present
    return total


def early_hash_bytes(kernel_pages: int, bucketsize: int, scale: int, low_limit: int) -> int:
    """alloc_large_system_hash() with no command-line size, given nr_kernel_pages (also
    nr_all_pages: no highmem on x86_64): one bucket per 2^scale bytes of kernel memory
    (rounded up to a MiB; the scale grows by one per fourfold beyond 64 GiB), a power
    of two, at least ``low_limit``, at most 1/16 of memory; its size in bytes."""
    numentries = kernel_pages
    numentries = -(-numentries // (MiB // PAGE_SIZE)) * (MiB // PAGE_SIZE)
    adapt = ADAPT_SCALE_NPAGES
    while adapt < numentries:
        scale += 1
        adapt <<= ADAPT_SCALE_SHIFT
    if scale > PAGE_SHIFT:
        numentries >>= scale - PAGE_SHIFT
    else:
        numentries <<= PAGE_SHIFT - scale
    if numentries * bucketsize < PAGE_SIZE:
        numentries = PAGE_SIZE // bucketsize
    numentries = 1 << max(0, (numentries - 1).bit_length())
    limit = min((kernel_pages << PAGE_SHIFT) >> 4, 0x80000000 * bucketsize) // bucketsize
    numentries = min(max(numentries, low_limit), limit)
    return bucketsize << (numentries.bit_length() - 1)


def memblock_alloc_try_nid(
    pa: PageAllocator,
    nr_pages: int,
    nid: int,
    owner: str,
    kind: str,
    limit_pfn: int | None = None,
    *,
    bottom_up: bool = False,
    exclude: npt.NDArray[np.bool_] | None = None,
    min_pfn: int = 0,
) -> Allocation:
    """memblock_alloc_try_nid(): PG_reserved pages in the node's boot memory, below ``limit_pfn``.

    Top-down by default (memblock_find_in_range_node); bottom-up from
    ``min_pfn`` (the end of the kernel image) when movable_node set
    memblock_set_bottom_up(); sections in ``exclude`` (MEMBLOCK_HOTPLUG regions
    under movable_node) are skipped.  When the node has no room, any node is
    tried (the NUMA_NO_NODE fallback of memblock_alloc_internal).
    """
    a = pa._new(owner, kind, PageState.RESERVED, nid)
    need = nr_pages
    for node_pass in (True, False):
        mask = (pa.nid == nid) if node_pass else (pa.nid >= 0)
        if exclude is not None:
            mask = mask & ~exclude
        secs = np.flatnonzero(mask)
        order = secs if bottom_up else secs[::-1]
        for sec in order.tolist():
            if limit_pfn is not None and sec * PAGES_PER_SECTION >= limit_pfn:
                continue
            if (sec + 1) * PAGES_PER_SECTION <= min_pfn:
                continue
            room = int(pa.ram[sec]) - int(pa.counts[:, sec].sum())
            take = min(room, need)
            if take > 0:
                pa.counts[PageState.RESERVED, sec] += take
                pa._index_add(a, sec, take)
                need -= take
            if need == 0:
                return a
    pa.free(a)
    raise AllocError(f"memblock: cannot allocate {nr_pages} pages on node {nid} for {owner}")
