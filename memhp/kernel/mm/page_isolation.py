"""Page block isolation (mm/page_isolation.c), per memory section."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from memhp.kernel.mm.page_alloc import PageAllocator, PageState


def start_isolate_page_range(pa: PageAllocator, secs: Iterable[int]) -> None:
    """start_isolate_page_range() -> set_migratetype_isolate(): the free pages move
    to the MIGRATE_ISOLATE lists, where no allocation finds them."""
    for sec in secs:
        pa.isolated[sec] = True


def undo_isolate_page_range(pa: PageAllocator, secs: Iterable[int]) -> None:
    """undo_isolate_page_range() -> unset_migratetype_isolate(): the free pages go
    back with move_freepages_block() (move_to_free_list(): list_move_tail) and
    __putback_isolated_page() (FPI_TO_TAIL), i.e. to the tail of the lists (5.10+),
    including the pages a failed offline had already migrated away from; the page
    blocks become MIGRATE_MOVABLE (offline_pages() passes it)."""
    for sec in secs:
        pa.isolated[sec] = False
        pa.unmovable_block[sec] = False
        if pa.zone[sec] >= 0 and pa.counts[PageState.FREE, sec] > 0:
            key = (int(pa.nid[sec]), int(pa.zone[sec]))
            pa.free_area.to_tail(key, np.array([sec], np.int64))
