"""Page migration (mm/migrate.c) of the movable pages of one isolated section."""

from __future__ import annotations

from memhp.kernel.mm.page_alloc import AllocError, PageAllocator, PageState

#: Simulated cost of migrating one 4 KiB page, in seconds.  Linux migrates base
#: pages at well under 1 GB/s single-threaded (Yan et al., "Nimble Page Management
#: for Tiered Memory Systems", ASPLOS 2019, Fig. 2: ~0.5-1 GB/s for 4 KiB pages
#: with move_pages/migrate_pages), i.e. about 4 us per page.
MIGRATE_PAGE_COST_S = 4e-6


def migrate_section(pa: PageAllocator, sec: int) -> tuple[int, int]:
    """do_migrate_range() -> migrate_pages(alloc_migration_target) over one isolated
    section, owner by owner (allocation id order).

    Every MOVABLE page gets a new page allocated by the usual rules (isolated
    sections excluded) and its owner's extents follow it
    (:meth:`PageAllocator.move_pages`).  Returns (pages migrated, pages that could
    not be migrated: pinned or no room).
    """
    moved = failed = 0
    for aid, n in sorted(pa.by_section.get(sec, {}).items()):
        a = pa.allocs[aid]
        if a.state is PageState.PINNED:
            failed += n
            continue
        if a.state is not PageState.MOVABLE:
            continue
        try:
            pa.move_pages(a, sec, n)
        except AllocError:
            failed += n
            continue
        moved += n
    pa.migrated_pages += moved
    return moved, failed
