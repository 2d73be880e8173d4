"""SPARSEMEM with vmemmap (mm/sparse.c, mm/sparse-vmemmap.c, arch/x86/mm/init_64.c).

Sections are tracked in numpy arrays indexed by section number.  Each present
section has a memmap (64 bytes of struct page per page: 2 MiB per section) that
is a kernel allocation of the model: from the buddy allocator for hot-added
sections (vmemmap_populate -> vmemmap_alloc_block_buf on the section's node,
falling back along the zonelist), from the hot-added range itself with
memmap-on-memory (vmem_altmap), or from memblock at boot (sparse_init_nid).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from memhp.kernel.constants import PAGE_SIZE, PAGES_PER_SECTION, STRUCT_PAGE_SIZE
from memhp.kernel.page_alloc import AllocError, PageState

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel

#: Pages of struct page per section (section_map_size(): 2 MiB).
MEMMAP_PAGES_PER_SECTION = PAGES_PER_SECTION * STRUCT_PAGE_SIZE // PAGE_SIZE


class SparseMem:
    """mem_section[]: present / online / early flags and each section's memmap owner."""

    def __init__(self, nr_sections: int) -> None:
        self.nr_sections = nr_sections
        self.present: npt.NDArray[np.bool_] = np.zeros(nr_sections, np.bool_)
        self.online: npt.NDArray[np.bool_] = np.zeros(nr_sections, np.bool_)
        self.early: npt.NDArray[np.bool_] = np.zeros(nr_sections, np.bool_)
        #: Allocation id of each hot-added section's memmap (0: none / boot / altmap).
        self.memmap_alloc: npt.NDArray[np.int64] = np.zeros(nr_sections, np.int64)

    def present_sections(self) -> list[int]:
        return [int(s) for s in np.flatnonzero(self.present)]

    def sparse_add_section(self, k: Kernel, nid: int, sec: int, altmap: bool) -> int:
        """sparse_add_section() -> section_activate() -> populate_section_memmap()."""
        if self.present[sec]:
            return -errno.EEXIST
        if not altmap:
            try:
                (a,) = k.pa.alloc(
                    MEMMAP_PAGES_PER_SECTION,
                    PageState.UNMOVABLE,
                    f"memmap of section {sec}",
                    "memmap",
                    nid,
                )
            except AllocError:
                return -errno.ENOMEM
            self.memmap_alloc[sec] = a.id
        self.present[sec] = True
        k.pa.nid[sec] = nid
        k.pa.ram[sec] = PAGES_PER_SECTION
        return 0

    def sparse_remove_section(self, k: Kernel, sec: int) -> None:
        """sparse_remove_section() -> section_deactivate(): free the memmap."""
        aid = int(self.memmap_alloc[sec])
        if aid:
            k.pa.free(k.pa.allocs[aid])
            self.memmap_alloc[sec] = 0
        self.present[sec] = False
        self.online[sec] = False
        k.pa.ram[sec] = 0
        k.pa.nid[sec] = -1

    def arch_add_memory(self, k: Kernel, nid: int, first: int, end: int, altmap_pages: int) -> int:
        """arch_add_memory() -> __add_pages(): add sections [first, end), all or nothing."""
        done: list[int] = []
        for sec in range(first, end):
            ret = self.sparse_add_section(k, nid, sec, altmap=altmap_pages > 0)
            if ret:
                for s in reversed(done):
                    self.sparse_remove_section(k, s)
                k.log("add_memory", f"section {sec}: cannot allocate memmap ({ret})")
                return ret
            done.append(sec)
        if altmap_pages:
            # vmem_altmap: each block's metadata sits at the start of the block.
            for bfirst in range(first, end, k.sections_per_block):
                a = k.pa.memblock_reserve(
                    bfirst * PAGES_PER_SECTION,
                    altmap_pages,
                    f"memmap (altmap) of memory{bfirst // k.sections_per_block}",
                    "memmap",
                    nid,
                )
                for sec, n in a.extents.items():
                    k.pa.counts[PageState.RESERVED, sec] -= n
                    k.pa.counts[PageState.ALTMAP, sec] += n
                a.state = PageState.ALTMAP
                k.altmaps[bfirst] = a.id
        k.pgtable_add(nid, first, end)
        k.log(
            "arch_add_memory",
            f"sections {first}-{end - 1} present on node {nid}, memmap "
            + ("in the range itself (altmap)" if altmap_pages else "allocated")
            + f": {(end - first) * MEMMAP_PAGES_PER_SECTION * PAGE_SIZE >> 20} MiB",
        )
        return 0

    def arch_remove_memory(self, k: Kernel, first: int, end: int) -> None:
        """arch_remove_memory() -> __remove_pages(): memmap, sections, page tables."""
        for bfirst in range(first, end, k.sections_per_block):
            aid = k.altmaps.pop(bfirst, 0)
            if aid:
                k.pa.free(k.pa.allocs[aid])
        for sec in range(first, end):
            if not k.profile.shrink_spans_on_offline:
                k.shrink_spans_for_removal(sec)
            self.sparse_remove_section(k, sec)
        k.pgtable_remove(first, end)
        k.log(
            "arch_remove_memory",
            f"sections {first}-{end - 1} removed, memmap freed: "
            f"{(end - first) * MEMMAP_PAGES_PER_SECTION * PAGE_SIZE >> 20} MiB",
        )
