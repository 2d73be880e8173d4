"""SPARSEMEM with vmemmap (mm/sparse.c, mm/sparse-vmemmap.c, arch/x86/mm/init_64.c).

Sections are tracked in numpy arrays indexed by section number.  Each present
section has a memmap (64 bytes of struct page per page: 2 MiB per section) that
is a kernel allocation of the model: from the buddy allocator for hot-added
sections (vmemmap_populate -> vmemmap_alloc_block_buf on the section's node,
falling back along the zonelist), from the hot-added range itself with
memmap-on-memory (vmem_altmap), or from memblock at boot (sparse_init_nid).

The memmap is mapped, and its pages allocated and freed, by the page-table
model (:mod:`memhp.kernel.arch.x86.mm.init_64`: vmemmap_populate / vmemmap_free); the
direct map of a hot-added range is built first (init_memory_mapping) and torn
down last (kernel_physical_mapping_remove), as x86_64 arch_add_memory and
arch_remove_memory do.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from memhp.abi.layout import (
    PAGE_SIZE,
    PAGES_PER_SECTION,
    SECTION_SIZE,
    STRUCT_PAGE_SIZE,
    section_nr_to_pfn,
)
from memhp.kernel.mm.page_alloc import Allocation, PageState

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel

#: Pages of struct page per section (section_map_size(): 2 MiB).
MEMMAP_PAGES_PER_SECTION = PAGES_PER_SECTION * STRUCT_PAGE_SIZE // PAGE_SIZE


class SparseMem:
    """mem_section[]: the per-section state of SPARSEMEM, owned here.

    ``present`` (SECTION_MARKED_PRESENT), ``online`` (SECTION_IS_ONLINE),
    ``early`` (SECTION_IS_EARLY), each section's memmap owner, its page_cgroup
    table (3.8 + MEMCG: mem_section.page_cgroup) and the vmem_altmap of each
    memmap-on-memory block.  Others read these arrays and change them only
    through the methods here; the page allocator's per-section counters are
    changed only through its public methods.
    """

    def __init__(self, nr_sections: int) -> None:
        self.nr_sections = nr_sections
        self.present: npt.NDArray[np.bool_] = np.zeros(nr_sections, np.bool_)
        self.online: npt.NDArray[np.bool_] = np.zeros(nr_sections, np.bool_)
        self.early: npt.NDArray[np.bool_] = np.zeros(nr_sections, np.bool_)
        #: Allocation id of each hot-added section's memmap (0: none / boot / altmap).
        self.memmap_alloc: npt.NDArray[np.int64] = np.zeros(nr_sections, np.int64)
        #: mem_section.page_cgroup (3.8 + MEMCG): section -> allocation id.
        self.page_cgroup: dict[int, int] = {}
        #: vmem_altmap of each memmap-on-memory block: first section -> allocation id.
        self.altmaps: dict[int, int] = {}
        #: sparse_init_nid()'s memmap buffer of boot memory (sparsemap_buf), per node.
        self.boot_memmap: dict[int, Allocation] = {}

    def present_sections(self) -> list[int]:
        return [int(s) for s in np.flatnonzero(self.present)]

    def memory_present(self, first: int, end: int) -> None:
        """memblocks_present() -> memory_present(): boot sections [first, end) are
        present and early (SECTION_IS_EARLY)."""
        self.present[first:end] = True
        self.early[first:end] = True

    def set_online(self, secs: range | npt.NDArray[np.intp] | int, online: bool) -> None:
        """online_mem_sections() / offline_mem_sections(): SECTION_IS_ONLINE."""
        if isinstance(secs, range):
            self.online[secs.start : secs.stop] = online
        else:
            self.online[secs] = online

    def present_sections_of(self, k: Kernel, nid: int) -> int:
        """Present sections of node ``nid`` (vectorised: no per-section Python work)."""
        return int(np.count_nonzero(self.present & (k.pa.nid == nid)))

    def sparse_add_section(self, k: Kernel, nid: int, sec: int, altmap: bool) -> int:
        """sparse_add_section() -> section_activate() -> populate_section_memmap()."""
        return self._add_sections(k, nid, sec, sec + 1, altmap)

    def _add_sections(self, k: Kernel, nid: int, first: int, end: int, altmap: bool) -> int:
        """sparse_add_section() of each section of [first, end): memmap via vmemmap_populate.

        With ``altmap`` the memmap comes from the altmap of the section's block
        (``self.altmaps``), which must have been reserved.  All or nothing.
        """
        if self.present[first:end].any():
            return -errno.EEXIST
        altmaps: dict[int, Allocation] | None = None
        if altmap:
            spb = k.memory.sections_per_block
            altmaps = {s: k.pa.allocs[self.altmaps[s - s % spb]] for s in range(first, end)}
        ret = k.pgtables.vmemmap_populate_sections(first, end, nid, altmaps)
        if ret:
            return -errno.ENOMEM
        for sec in range(first, end):
            self.memmap_alloc[sec] = k.pgtables.memmap_alloc_of(sec)
        self.present[first:end] = True
        k.pa.set_section_ram(first, end, PAGES_PER_SECTION, nid)
        return 0

    def sparse_remove_section(self, k: Kernel, sec: int) -> None:
        """sparse_remove_section() -> section_deactivate() -> depopulate_section_memmap():
        vmemmap_free() of the section's memmap (buddy, bootmem or altmap pages)."""
        k.pgtables.vmemmap_free_sections(sec, sec + 1)
        self.memmap_alloc[sec] = 0
        self.present[sec] = False
        self.online[sec] = False
        k.pa.set_section_ram(sec, sec + 1, 0, -1)

    def _reserve_altmap(self, k: Kernel, nid: int, bfirst: int, altmap_pages: int) -> None:
        """vmem_altmap: the block's metadata sits at the start of the block."""
        spb = k.memory.sections_per_block
        k.pa.set_section_ram(bfirst, bfirst + spb, PAGES_PER_SECTION)
        from memhp.kernel.mm.memblock import memblock_reserve  # (memblock imports sparse)

        a = memblock_reserve(
            k.pa,
            bfirst * PAGES_PER_SECTION,
            altmap_pages,
            f"memmap (altmap) of memory{bfirst // spb}",
            "memmap",
            nid,
        )
        k.pa.change_state(a, PageState.ALTMAP)
        self.altmaps[bfirst] = a.id

    def _release_altmaps(self, k: Kernel, first: int, end: int) -> None:
        for bfirst in range(first, end, k.memory.sections_per_block):
            aid = self.altmaps.pop(bfirst, 0)
            if aid:
                k.pa.free(k.pa.allocs[aid])

    def arch_add_memory(self, k: Kernel, nid: int, first: int, end: int, altmap_pages: int) -> int:
        """arch_add_memory(): init_memory_mapping() of the range, then __add_pages()
        -> sparse_add_section() of each section (all or nothing)."""
        pt = k.pgtables
        ret = pt.init_memory_mapping(first * SECTION_SIZE, end * SECTION_SIZE)
        if ret:
            k.log("add_memory", f"init_memory_mapping: cannot allocate page tables ({ret})")
            return ret
        if altmap_pages:
            for bfirst in range(first, end, k.memory.sections_per_block):
                self._reserve_altmap(k, nid, bfirst, altmap_pages)
        ret = self._add_sections(k, nid, first, end, altmap=altmap_pages > 0)
        if ret:
            self._release_altmaps(k, first, end)
            k.pa.set_section_ram(first, end, 0)
            # x86_64 arch_add_memory() leaves the new direct mapping in place.
            k.log("add_memory", f"sections {first}-{end - 1}: cannot allocate memmap ({ret})")
            return ret
        c = pt.counters()
        k.log(
            "arch_add_memory",
            f"sections {first}-{end - 1} present on node {nid}, memmap "
            + ("in the range itself (altmap)" if altmap_pages else "allocated")
            + f": {(end - first) * MEMMAP_PAGES_PER_SECTION * PAGE_SIZE >> 20} MiB; "
            f"page tables: {c['pagetable_pages']} pages (PUD {c['pud_tables']}, "
            f"PMD {c['pmd_tables']}, PTE {c['pte_tables']})",
        )
        return 0

    def arch_remove_memory(self, k: Kernel, first: int, end: int) -> None:
        """arch_remove_memory(): __remove_pages() (sparse_remove_section() -> vmemmap_free()
        of each section), then kernel_physical_mapping_remove() of the range."""
        from memhp.kernel.mm import memory_hotplug as mh

        pt = k.pgtables
        before = pt.counters()
        pt.vmemmap_free_sections(first, end)
        if k.profile.shrink_spans_on_offline:
            # The memmaps are freed above, so what each section's
            # sparse_remove_section() leaves to do is the same for all: at once.
            self.memmap_alloc[first:end] = 0
            self.present[first:end] = False
            self.online[first:end] = False
            k.pa.set_section_ram(first, end, 0, -1)
        else:
            for sec in range(first, end):
                mh.shrink_spans_for_removal(k, sec)
                self.sparse_remove_section(k, sec)
        self._release_altmaps(k, first, end)
        # clear_hwpoisoned_pages() (6.1) / memblk_nr_poison_sub() (6.12): the removed
        # memmap takes its PG_hwpoison pages out of num_poisoned_pages.
        lo, hi = section_nr_to_pfn(first), section_nr_to_pfn(end)
        k.hwpoison -= {pfn for pfn in k.hwpoison if lo <= pfn < hi}
        pt.kernel_physical_mapping_remove(first * SECTION_SIZE, end * SECTION_SIZE)
        after = pt.counters()
        k.log(
            "arch_remove_memory",
            f"sections {first}-{end - 1} removed, memmap freed: "
            f"{(end - first) * MEMMAP_PAGES_PER_SECTION * PAGE_SIZE >> 20} MiB; page tables "
            f"freed: {before['pagetable_pages'] - after['pagetable_pages']} pages, "
            f"vmemmap pages unmapped: {before['vmemmap_pages'] - after['vmemmap_pages']}, "
            f"TLB flushes: {after['tlb_flushes'] - before['tlb_flushes']}",
        )
