"""Huge page pools (mm/hugetlb.c): per-node nr_hugepages of each huge page size."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memhp.abi.layout import PAGE_SIZE, PAGES_PER_SECTION
from memhp.kernel.mm.mmzone import ZoneType
from memhp.kernel.mm.page_alloc import Allocation, AllocError, PageState

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel


class Hugetlb:
    """hstates[] and their per-node pools (one allocation per huge page)."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        #: The pool of each (node, huge page size in kB).
        self.pools: dict[tuple[int, int], list[Allocation]] = {}

    def huge_page_sizes(self) -> tuple[int, ...]:
        """hugetlb_add_hstate(): 2 MiB, and 1 GiB where the CPU has gbpages."""
        return (2048, 1048576) if self.k.spec.gbpages else (2048,)

    def set_max_huge_pages(self, nid: int, count: int, size_kb: int = 2048) -> None:
        """set_max_huge_pages() for one node and huge page size (nr_hugepages store).

        Grows the pool with fresh huge pages from the node itself
        (alloc_fresh_huge_page with __GFP_THISNODE; 1 GiB pages come from
        alloc_contig_pages) as far as memory allows, or shrinks it; like the kernel,
        a partly satisfied request is no error.  2 MiB huge pages are movable on
        x86_64 (hugepage_movable_supported(): htlb_alloc_mask() is
        GFP_HIGHUSER_MOVABLE), so they may come from ZONE_MOVABLE; gigantic ones are
        not (GFP_HIGHUSER: up to ZONE_NORMAL).  At offline the free ones are
        dissolved (:meth:`dissolve_free_huge_pages`).
        """
        pa = self.k.pa
        pool = self.pools.setdefault((nid, size_kb), [])
        pages = size_kb * 1024 // PAGE_SIZE
        while len(pool) > count:
            a = pool.pop()
            if a.id in pa.allocs:
                pa.free(a)
        while len(pool) < count:
            try:
                (a,) = pa.alloc(
                    pages,
                    PageState.MOVABLE,
                    f"hugetlb page ({size_kb} kB) of node {nid}",
                    "hugetlb",
                    nid,
                    this_node=True,
                    highest=ZoneType.NORMAL if pages > PAGES_PER_SECTION else None,
                )
            except AllocError:
                break
            pool.append(a)
        self.k.log("hugetlb", f"node {nid}: {len(pool)} huge pages of {size_kb} kB")

    def nr_huge_pages(self, nid: int | None = None, size_kb: int | None = None) -> int:
        """Huge pages in the pools, optionally of one node and/or size."""
        return sum(
            len(p)
            for (n, sz), p in self.pools.items()
            if (nid is None or n == nid) and (size_kb is None or sz == size_kb)
        )

    def demote(self, nid: int, size_kb: int, target_kb: int, nr: int) -> int:
        """demote_store() -> demote_pool_huge_page(): up to ``nr`` free huge pages of
        the node become huge pages of ``target_kb`` in the same place (every pool
        page is free in the model: nothing maps hugetlb pages); returns how many."""
        pa = self.k.pa
        pool = self.pools.get((nid, size_kb), [])
        smaller = self.pools.setdefault((nid, target_kb), [])
        done = 0
        while done < nr and pool:
            pa.free(pool.pop())
            try:
                smaller += pa.alloc(
                    target_kb * 1024 // PAGE_SIZE,
                    PageState.MOVABLE,
                    f"hugetlb page ({target_kb} kB) of node {nid}",
                    "hugetlb",
                    nid,
                    this_node=True,
                    chunks=size_kb // target_kb,
                )
            except AllocError:  # the watermarks, in the model only: the page is gone
                break
            done += 1
        return done

    def dissolve_free_huge_pages(self, secs: range) -> int:
        """dissolve_free_huge_pages() of offline_pages(): each free huge page with a
        page in the sections leaves its pool (remove_hugetlb_folio(),
        max_huge_pages--) and goes back to the buddy allocator whole (a gigantic
        page too: dissolve_free_huge_page() works on the head); returns how many.
        In use, a huge page would have been migrated first (HPageMigratable): the
        model's pool pages are all free."""
        pa = self.k.pa
        gone = {a.id for a, _sec, _n in pa.owners_in(secs) if a.kind == "hugetlb"}
        if not gone:
            return 0
        for pool in self.pools.values():
            for a in [a for a in pool if a.id in gone]:
                pool.remove(a)
                pa.free(a)
        return len(gone)
