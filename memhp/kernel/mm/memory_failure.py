"""Poisoning pages (mm/memory-failure.c): memory_failure() and soft_offline_page()."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from memhp.abi.fs import EHWPOISON
from memhp.abi.layout import pfn_to_section_nr, section_nr_to_pfn
from memhp.kernel.mm.page_alloc import AllocError, PageAllocator, PageState

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel


#: The order in which a section's pages are laid out when a single pfn must be
#: named (kpageflags, memory_failure): the model counts pages, it does not place them.
LAYOUT_ORDER = (
    PageState.ALTMAP,
    PageState.RESERVED,
    PageState.UNMOVABLE,
    PageState.PINNED,
    PageState.MOVABLE,
    PageState.FREE,
)


def page_state_at(pa: PageAllocator, sec: int, index: int) -> PageState | None:
    """The state of page ``index`` of section ``sec`` in the canonical layout (None: hole)."""
    pos = 0
    for st in LAYOUT_ORDER:
        pos += int(pa.counts[st, sec])
        if index < pos:
            return st
    return None


def memory_failure(k: Kernel, pfn: int, soft: bool) -> int:
    """soft_offline_page() / memory_failure() of one pfn: 0 or -errno.

    A free page is taken off the buddy; a movable page is migrated first (soft)
    or its contents lost (hard).  The poisoned page is held by a "hwpoison"
    allocation, which offlining skips.  A page already poisoned: soft 0 ("page
    already poisoned"), hard -EHWPOISON.  A kernel page (reserved, slab, page
    tables...) is not HWPoisonHandlable(): get_any_page() gives up after three
    shake_page() rounds, so soft_offline_page() fails with -EIO and leaves it;
    memory_failure() has set PG_hwpoison first (TestSetPageHWPoison()) and fails
    with -EBUSY (action_result(MF_IGNORED)), the page staying poisoned in use.
    """
    pa = k.pa
    sec = pfn_to_section_nr(pfn)
    if pfn < 0 or sec >= k.nr_sections or not k.sparse.present[sec]:
        return -errno.ENXIO
    if not k.sparse.online[sec]:
        return -errno.EIO
    if pfn in k.hwpoison:  # PageHWPoison()
        return 0 if soft else -EHWPOISON
    st = page_state_at(pa, sec, pfn - section_nr_to_pfn(sec))
    if st is None or st in (PageState.RESERVED, PageState.ALTMAP, PageState.UNMOVABLE):
        if soft:
            return -errno.EIO
        k.hwpoison.add(pfn)
        num_poisoned_pages_inc(k, pfn)
        update_per_node_mf_stats(k, sec, "ignored")
        k.log("memory_failure", f"pfn {pfn:#x}: kernel page poisoned, ignored")
        return -errno.EBUSY
    if st is PageState.PINNED and soft:
        return -errno.EBUSY
    if st in (PageState.MOVABLE, PageState.PINNED):
        owner = next(pa.allocs[a] for a in pa.by_section[sec] if pa.allocs[a].state is st)
        if soft:
            try:
                dst = pa.alloc(1, st, owner.owner, owner.kind, owner.nid)[0]
            except AllocError:
                return -errno.EBUSY
            pa.absorb(owner, dst)
        pa.free(owner, sec, 1)
    pa.alloc_in_sections(
        [sec],
        1,
        PageState.UNMOVABLE,
        f"hwpoisoned page pfn {pfn:#x}",
        "hwpoison",
        int(pa.nid[sec]),
    )
    k.log("memory_failure", f"pfn {pfn:#x} poisoned ({'soft' if soft else 'hard'})")
    k.hwpoison.add(pfn)
    num_poisoned_pages_inc(k, pfn)
    if not soft:  # a free (buddy) or clean movable page is recovered
        update_per_node_mf_stats(k, sec, "recovered")
    return 0


def update_per_node_mf_stats(k: Kernel, sec: int, result: str) -> None:
    """action_result() -> update_per_node_mf_stats() (6.4+): the node's counters."""
    stats = k.pgdats[int(k.pa.nid[sec])].mf_stats
    stats["total"] += 1
    stats[result] += 1


def num_poisoned_pages_inc(k: Kernel, pfn: int) -> None:
    """num_poisoned_pages_inc() -> memblk_nr_poison_inc(): the block's counter."""
    mem = k.memory.blocks.get(pfn // k.memory.pages_per_block)
    if mem is not None:
        mem.nr_hwpoison += 1
