"""Huge page pools (mm/hugetlb.c): nr_hugepages of each huge page size, per node."""

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
        #: next_nid_to_alloc / next_nid_to_free of each hstate: ("alloc"|"free", size).
        self.next_nid: dict[tuple[str, int], int] = {}
        #: nr_overcommit_huge_pages of each hstate (stored; surplus pages come only
        #: from faults, which the model has none of).
        self.overcommit: dict[int, int] = {}

    def huge_page_sizes(self) -> tuple[int, ...]:
        """hugetlb_add_hstate(): 2 MiB, and 1 GiB where the CPU has gbpages."""
        return (2048, 1048576) if self.k.spec.gbpages else (2048,)

    def hugetlb_init(self) -> None:
        """hugetlb_add_hstate(): each hstate's round-robin nodes start at
        first_memory_node (the first node with memory at boot)."""
        first = min(self.k.nodes.node_states["N_MEMORY"], default=0)
        for sz in self.huge_page_sizes():
            self.next_nid[("alloc", sz)] = self.next_nid[("free", sz)] = first

    def _next_node(self, which: str, size_kb: int, allowed: list[int]) -> int:
        """hstate_next_node_to_alloc()/_to_free(): get_valid_node_allowed() of the
        saved node, which then moves on to next_node_in() of the mask."""

        def next_node_in(n: int) -> int:
            return next((m for m in allowed if m > n), allowed[0])

        nid = self.next_nid.get((which, size_kb), allowed[0])
        if nid not in allowed:
            nid = next_node_in(nid)
        self.next_nid[(which, size_kb)] = next_node_in(nid)
        return nid

    def _nodes_allowed(self, nid: int | None) -> list[int]:
        """nodes_allowed of a write: the node, or N_MEMORY (``nid`` None)."""
        return sorted(self.k.nodes.node_states["N_MEMORY"]) if nid is None else [nid]

    def _next_node_to_free(self, size_kb: int, allowed: list[int]) -> int | None:
        """for_each_node_mask_to_free(): the next node in turn with a pool page of
        ``size_kb`` (remove_pool_huge_page(), demote_pool_huge_page()); None: none."""
        for _ in allowed:
            node = self._next_node("free", size_kb, allowed)
            if self.pools.get((node, size_kb)):
                return node
        return None

    def set_max_huge_pages(self, nid: int | None, count: int, size_kb: int = 2048) -> None:
        """set_max_huge_pages(): the pool of one huge page size to ``count`` pages,
        system-wide (``nid`` None: nodes_allowed is N_MEMORY) or on one node (the
        node's count made a global one, nodes_allowed that node alone).

        Grows with alloc_pool_huge_page(): one fresh huge page at a time from the
        nodes allowed in turn (for_each_node_mask_to_alloc(), from the hstate's
        next_nid_to_alloc; each with __GFP_THISNODE), stopping when no node gives one;
        shrinks with remove_pool_huge_page(): the last page enqueued on the next node
        in turn that has one (for_each_node_mask_to_free()).  A partly satisfied
        request is no error.  2 MiB huge pages are movable on x86_64
        (hugepage_movable_supported(): htlb_alloc_mask() is GFP_HIGHUSER_MOVABLE), so
        they may come from ZONE_MOVABLE; gigantic ones are not (GFP_HIGHUSER: up to
        ZONE_NORMAL; alloc_contig_pages()).  At offline the free ones are dissolved
        (:meth:`dissolve_free_huge_pages`).
        """
        pa = self.k.pa
        allowed = self._nodes_allowed(nid)
        total = self.nr_huge_pages(None, size_kb)
        if nid is not None:
            count += total - self.nr_huge_pages(nid, size_kb)
        pages = size_kb * 1024 // PAGE_SIZE
        while total < count and allowed:
            for _ in allowed:
                node = self._next_node("alloc", size_kb, allowed)
                try:
                    (a,) = pa.alloc(
                        pages,
                        PageState.MOVABLE,
                        f"hugetlb page ({size_kb} kB) of node {node}",
                        "hugetlb",
                        node,
                        this_node=True,
                        highest=ZoneType.NORMAL if pages > PAGES_PER_SECTION else None,
                    )
                except AllocError:
                    continue
                self.pools.setdefault((node, size_kb), []).append(a)
                total += 1
                break
            else:
                break
        while total > count and (src := self._next_node_to_free(size_kb, allowed)) is not None:
            a = self.pools[(src, size_kb)].pop()
            if a.id in pa.allocs:
                pa.free(a)
            total -= 1
        self.k.log("hugetlb", f"{total} huge pages of {size_kb} kB")

    def nr_huge_pages(self, nid: int | None = None, size_kb: int | None = None) -> int:
        """Huge pages in the pools, optionally of one node and/or size."""
        return sum(
            len(p)
            for (n, sz), p in self.pools.items()
            if (nid is None or n == nid) and (size_kb is None or sz == size_kb)
        )

    def demote(self, nid: int | None, size_kb: int, target_kb: int, nr: int) -> int:
        """demote_store() -> demote_pool_huge_page(): up to ``nr`` free huge pages of
        the node (``nid`` None: of the nodes with memory in turn,
        for_each_node_mask_to_free()) become huge pages of ``target_kb`` in the same
        place (every pool page is free in the model: nothing maps hugetlb pages);
        returns how many."""
        pa = self.k.pa
        allowed = self._nodes_allowed(nid)
        done = 0
        while done < nr and (node := self._next_node_to_free(size_kb, allowed)) is not None:
            pool = self.pools[(node, size_kb)]
            smaller = self.pools.setdefault((node, target_kb), [])
            pa.free(pool.pop())
            try:
                smaller += pa.alloc(
                    target_kb * 1024 // PAGE_SIZE,
                    PageState.MOVABLE,
                    f"hugetlb page ({target_kb} kB) of node {node}",
                    "hugetlb",
                    node,
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
        if not any(self.pools.values()):  # (offline_pages() calls it every round)
            return 0
        pa = self.k.pa
        gone = {a.id for a, _sec, _n in pa.owners_in(secs) if a.kind == "hugetlb"}
        if not gone:
            return 0
        for pool in self.pools.values():
            for a in [a for a in pool if a.id in gone]:
                pool.remove(a)
                pa.free(a)
        return len(gone)
