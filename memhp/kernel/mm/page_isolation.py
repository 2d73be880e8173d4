"""Page block isolation (mm/page_isolation.c), per memory section."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from memhp.kernel.mm.page_alloc import PageAllocator, PageState


def set_isolate(pa: PageAllocator, sec: int, on: bool) -> None:
    """The MIGRATE_ISOLATE type of one section's page blocks, set or cleared, and
    its free pages out of or back into the zone's NR_FREE_PAGES:
    set_migratetype_isolate() moves them to the isolate lists
    (move_freepages_block()) and subtracts them (__mod_zone_freepage_state(zone,
    -nr_pages, mt)); pages freed there meanwhile are not counted
    (__free_one_page(): only if !is_migrate_isolate(); free_unref_page() frees
    them with free_one_page(), not to the per-cpu lists);
    unset_migratetype_isolate() adds all of them back.  6.12 does the same in
    account_freepages() (nothing for MIGRATE_ISOLATE), from
    move_freepages_block_isolate() and __free_one_page().  The model keeps the
    isolated sections of each zone (:attr:`PageAllocator.iso`) and subtracts their
    free pages where NR_FREE_PAGES is read (:meth:`PageAllocator.nr_free_pages`)."""
    iv = pa._iv  # (the allocator's views of its arrays: Python ints)
    if iv[sec] == on:
        return
    iv[sec] = on
    if (z := pa._zv[sec]) < 0:
        return
    key = (pa._nv[sec], z)
    if on:
        pa.iso.setdefault(key, []).append(sec)
    else:
        secs = pa.iso[key]
        secs.remove(sec)
        if not secs:
            del pa.iso[key]


def start_isolate_page_range(pa: PageAllocator, secs: Iterable[int]) -> None:
    """start_isolate_page_range() -> set_migratetype_isolate() (:func:`set_isolate`):
    the free pages move to the MIGRATE_ISOLATE lists, where no allocation finds
    them, and leave NR_FREE_PAGES."""
    iv, zv, nv, iso = pa._iv, pa._zv, pa._nv, pa.iso
    for sec in secs:  # (set_isolate(pa, sec, True), inline)
        if iv[sec]:
            continue
        iv[sec] = True
        if (z := zv[sec]) >= 0:
            if (lst := iso.get(key := (nv[sec], z))) is None:
                iso[key] = [sec]
            else:
                lst.append(sec)


def undo_isolate_page_range(pa: PageAllocator, secs: Iterable[int]) -> None:
    """undo_isolate_page_range() -> unset_migratetype_isolate(): the free pages go
    back with move_freepages_block() (move_to_free_list(): list_move_tail) and
    __putback_isolated_page() (FPI_TO_TAIL), i.e. to the tail of the lists (5.10+),
    and into NR_FREE_PAGES (:func:`set_isolate`), including the pages a failed
    offline had already migrated away from; the page blocks become
    MIGRATE_MOVABLE (offline_pages() passes it)."""
    for sec in secs:
        set_isolate(pa, sec, False)
        pa.unmovable_block[sec] = False
        pa.unmovable_free[sec] = 0
        if pa.zone[sec] >= 0 and pa.counts[PageState.FREE, sec] > 0:
            key = (int(pa.nid[sec]), int(pa.zone[sec]))
            pa.free_area.to_tail(key, np.array([sec], np.int64))
