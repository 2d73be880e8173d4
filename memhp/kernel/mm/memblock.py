"""Boot-time memory reservations (mm/memblock.c and its callers in setup_arch()).

What memblock hands out before the buddy allocator exists: the first MiB, the
kernel image, each node's memmap buffer (sparse_init_nid) and pgdat
(alloc_node_data), the first percpu chunk per node with CPUs, the swiotlb bounce
buffer (NUMA_NO_NODE, top-down below 4 GiB).  The pages are PG_reserved
allocations of the page allocator (:meth:`PageAllocator.memblock_reserve` and
:func:`memblock_alloc_try_nid`).
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
    MiB,
    pfn_to_section_nr,
)
from memhp.kernel.drivers.acpi.numa.srat import NUMA_NO_NODE
from memhp.kernel.mm.mmzone import PGDAT_PAGES
from memhp.kernel.mm.page_alloc import Allocation, AllocError, PageAllocator, PageState
from memhp.kernel.mm.sparse import MEMMAP_PAGES_PER_SECTION

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel


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
        # The first 1 MiB (x86 reserves all of low memory, 5.13+).
        memblock_reserve(
            pa, 0, (1 * MiB) >> PAGE_SHIFT, "low memory (BIOS, real mode)", "memblock", first_nid
        )
        # The kernel image.
        img = spec.kernel_image_start >> PAGE_SHIFT
        img_nid = next(
            (n for s, e, n in spec.boot_ram if s <= spec.kernel_image_start < e), first_nid
        )
        self.kernel_image = memblock_reserve(
            pa,
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
        if movable_node:
            exclude = np.zeros(k.nr_sections, np.bool_)
            for n in spec.nodes:
                for hs, he in n.hotplug:
                    exclude[hs // SECTION_SIZE : -(-he // SECTION_SIZE)] = True
            min_pfn = (spec.kernel_image_start + spec.kernel_image_size) >> PAGE_SHIFT
        # sparse_init_nid(): one memmap buffer per node, on that node if it can.
        for nid in sorted({n for _, _, n in spec.boot_ram}):
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
