"""Zones and nodes (include/linux/mmzone.h: struct zone, struct pglist_data)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from memhp.abi import zones


class ZoneType(IntEnum):
    """enum zone_type on x86_64 (no HIGHMEM, no DEVICE zone modelled)."""

    DMA = 0
    DMA32 = 1
    NORMAL = 2
    MOVABLE = 3


#: zone_names[] of mm/page_alloc.c, as valid_zones shows them.
ZONE_NAMES: dict[ZoneType, str] = {
    ZoneType.DMA: zones.ZONE_DMA,
    ZoneType.DMA32: zones.ZONE_DMA32,
    ZoneType.NORMAL: zones.ZONE_NORMAL,
    ZoneType.MOVABLE: zones.ZONE_MOVABLE,
}

KERNEL_ZONES = (ZoneType.DMA, ZoneType.DMA32, ZoneType.NORMAL)


@dataclass
class Zone:
    """struct zone: span, present and managed pages, watermarks, free counters.

    ``zone_start_pfn``/``spanned_pages`` describe the span (holes included),
    ``present_pages`` the RAM pages within it that are online, ``managed_pages``
    the pages the buddy allocator manages (present minus PG_reserved).
    """

    nid: int
    idx: ZoneType
    zone_start_pfn: int = 0
    spanned_pages: int = 0
    present_pages: int = 0
    managed_pages: int = 0
    #: Pages of memory-on-memory vmemmap counted in present_pages (6.1 accounting).
    watermark_min: int = 0
    watermark_low: int = 0
    watermark_high: int = 0
    #: lowmem_reserve[j]: pages kept from allocations whose highest zone is j
    #: (setup_per_zone_lowmem_reserve(); /proc/zoneinfo "protection").
    lowmem_reserve: tuple[int, ...] = (0, 0, 0, 0)
    #: managed_pages at the last init_per_zone_wmark_min(): what zone_pcp_update()
    #: (the pagesets' batch and high) and refresh_zone_stat_thresholds() read.
    pcp_managed: int = 0

    @property
    def name(self) -> str:
        return ZONE_NAMES[self.idx]

    @property
    def zone_end_pfn(self) -> int:
        return self.zone_start_pfn + self.spanned_pages

    def is_empty(self) -> bool:
        """zone_is_empty(): nothing spanned."""
        return self.spanned_pages == 0

    def populated(self) -> bool:
        """populated_zone(): has present pages."""
        return self.present_pages > 0

    def intersects(self, start_pfn: int, nr_pages: int) -> bool:
        """zone_intersects()."""
        if self.is_empty():
            return False
        return start_pfn < self.zone_end_pfn and self.zone_start_pfn < start_pfn + nr_pages

    def spans(self, pfn: int) -> bool:
        """zone_spans_pfn()."""
        return self.zone_start_pfn <= pfn < self.zone_end_pfn

    def resize_range(self, start_pfn: int, nr_pages: int) -> None:
        """resize_zone_range(): grow the span to include [start, start+nr)."""
        end = start_pfn + nr_pages
        if self.is_empty() or start_pfn < self.zone_start_pfn:
            old_end = self.zone_end_pfn if not self.is_empty() else end
            self.zone_start_pfn = start_pfn
            self.spanned_pages = max(old_end, end) - start_pfn
        else:
            self.spanned_pages = max(self.zone_end_pfn, end) - self.zone_start_pfn


#: The memory_failure_stats counters, in nodeN/memory_failure (mm/memory-failure.c).
MF_STATS = ("total", "ignored", "failed", "delayed", "recovered")


@dataclass
class PgData:
    """struct pglist_data: one NUMA node's zones and span."""

    node_id: int
    node_zones: list[Zone] = field(default_factory=list)
    node_start_pfn: int = 0
    node_spanned_pages: int = 0
    #: The kernel allocation holding this pgdat in the 3.8 profile (None: static).
    allocation: int | None = None
    #: Times this pgdat was (re)initialised by hotadd_init_pgdat().
    init_count: int = 0
    #: struct memory_failure_stats mf_stats (6.4+): memory_failure() results on
    #: this node (update_per_node_mf_stats()); not reset by a hot-add.
    mf_stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MF_STATS, 0))

    def __post_init__(self) -> None:
        if not self.node_zones:
            self.node_zones = [Zone(self.node_id, z) for z in ZoneType]

    def zone(self, z: ZoneType) -> Zone:
        return self.node_zones[z]

    @property
    def node_present_pages(self) -> int:
        return sum(z.present_pages for z in self.node_zones)

    @property
    def node_managed_pages(self) -> int:
        return sum(z.managed_pages for z in self.node_zones)

    @property
    def node_end_pfn(self) -> int:
        return self.node_start_pfn + self.node_spanned_pages

    def update_span(self) -> None:
        """update_pgdat_span(): the node spans the union of its zones' spans."""
        start, end = None, 0
        for z in self.node_zones:
            if z.is_empty():
                continue
            if start is None or z.zone_start_pfn < start:
                start = z.zone_start_pfn
            end = max(end, z.zone_end_pfn)
        if start is None:
            self.node_start_pfn, self.node_spanned_pages = 0, 0
        else:
            self.node_start_pfn, self.node_spanned_pages = start, end - start

    def reset(self) -> None:
        """hotadd_init_pgdat() of a node that was offline: empty zones, no span."""
        for z in self.node_zones:
            z.zone_start_pfn = z.spanned_pages = z.present_pages = z.managed_pages = 0
            z.watermark_min = z.watermark_low = z.watermark_high = z.pcp_managed = 0
            z.lowmem_reserve = (0,) * len(self.node_zones)
        self.node_start_pfn = self.node_spanned_pages = 0
        self.init_count += 1


#: sizeof(pg_data_t) on a 6.1 x86_64 build, rounded to pages (about 170 KiB).
PGDAT_PAGES = 43


class _Ranked:
    """A list of (section, rank) entries; an entry is valid while the section's rank
    is still the one recorded (lazy deletion)."""

    __slots__ = ("ranks", "secs", "start")

    def __init__(self) -> None:
        self.secs: list[int] = []
        self.ranks: list[int] = []
        self.start = 0  # entries before it are known invalid

    def compact(self, rank: memoryview) -> None:
        keep = [
            (s, r)
            for s, r in zip(self.secs[self.start :], self.ranks[self.start :], strict=True)
            if rank[s] == r
        ]
        self.secs, self.ranks, self.start = [s for s, _ in keep], [r for _, r in keep], 0


class FreeArea:
    """The order of the free lists (struct free_area free_area[MAX_ORDER] of each
    zone), kept per memory section rather than per page block.

    Every section with free pages on a free list has a rank: pages freed to the
    head of the lists (free_pages -> __free_one_page() without FPI_TO_TAIL, the
    remainder of a split: expand()) get decreasing negative ranks, pages placed at
    the tail (__free_pages_core() when memory is onlined or memblock_free_all()
    releases boot memory, __putback_isolated_page() and move_to_free_list() when an
    isolation is undone, all FPI_TO_TAIL/list_move_tail since 5.10) get increasing
    positive ranks; 0 means on no free list.  The allocator takes from the head: the
    most recent head entry first, then the tail entries oldest first.  Head entries
    live in an insertion-ordered dict per zone (a section placed again moves to the
    end), tail entries in an append-only list per zone; both are dropped lazily when
    a section's rank changes (a head entry at once when its section leaves the lists
    through :meth:`remove` or :meth:`to_tail`), so placing and walking cost
    O(entries touched), never O(zone).  Plain Python per entry: a walk usually stops
    after the first few.
    """

    def __init__(self, nr_sections: int, free_to_tail: bool = True) -> None:
        #: False (before 5.10): "tail" placements go to the head, in the same order.
        self.free_to_tail = free_to_tail
        self.rank: npt.NDArray[np.int64] = np.zeros(nr_sections, np.int64)
        self._rv = self.rank.data  # per-entry access (Python ints)
        self._head = 0
        self._tail = 0
        self._heads: dict[tuple[int, int], dict[int, int]] = {}  # section -> rank
        self._limit: dict[tuple[int, int], int] = {}
        self._tails: dict[tuple[int, int], _Ranked] = {}

    def __getstate__(self) -> dict[str, object]:
        """A copy (pickle) holds the rank array; its view is made again from it."""
        return {k: v for k, v in self.__dict__.items() if k != "_rv"}

    def __setstate__(self, state: dict[str, object]) -> None:
        for k, v in state.items():  # (one by one: see memhp.sim.snapshot)
            setattr(self, k, v)
        self._rv = self.rank.data

    def to_head(self, key: tuple[int, int], sec: int) -> None:
        """Free pages of ``sec`` go to the head of the lists (most recent first)."""
        self._head -= 1
        self._rv[sec] = self._head
        d = self._heads.get(key)
        if d is None:
            d = self._heads[key] = {}
        d.pop(sec, None)
        d[sec] = self._head
        if len(d) >= self._limit.get(key, 64):
            self._drop_stale(key, d)

    def to_head_times(self, key: tuple[int, int], sec: int, times: int) -> None:
        """:meth:`to_head` of ``sec`` ``times`` times in a row: only the last counts
        (the rank it gets, its place in the dict; when stale entries are dropped is
        decided by the first, as no later one adds an entry)."""
        self._head -= times - 1
        self.to_head(key, sec)

    def _drop_stale(self, key: tuple[int, int], d: dict[int, int]) -> None:
        """(when to drop stale head entries changes no result, only a walk's cost)"""
        rank = self._rv
        d = self._heads[key] = {s: r for s, r in d.items() if rank[s] == r}
        self._limit[key] = max(64, 4 * len(d))

    def to_tail(self, key: tuple[int, int], secs: npt.NDArray[np.int64]) -> None:
        """Free pages of ``secs`` (in that order) go to the tail of the lists."""
        if secs.size == 0:
            return
        if not self.free_to_tail:
            heads = np.arange(self._head - 1, self._head - 1 - secs.size, -1, dtype=np.int64)
            self._head -= secs.size
            self.rank[secs] = heads
            d = self._heads.setdefault(key, {})
            for sec, r in zip(secs.tolist(), heads.tolist(), strict=True):
                d.pop(sec, None)
                d[sec] = r
            if len(d) >= self._limit.get(key, 64):
                self._drop_stale(key, d)
            return
        ranks = np.arange(self._tail + 1, self._tail + 1 + secs.size, dtype=np.int64)
        self._tail += secs.size
        self.rank[secs] = ranks
        if hd := self._heads.get(key):
            for sec in secs.tolist():
                hd.pop(sec, None)  # (its head entry, else dropped lazily)
        lst = self._tails.get(key)
        if lst is None:
            lst = self._tails[key] = _Ranked()
        lst.secs.extend(secs.tolist())
        lst.ranks.extend(ranks.tolist())

    def remove(self, sec: int, key: tuple[int, int] | None = None) -> None:
        """``sec`` (of zone ``key``, if known) has no free pages left on the lists."""
        self._rv[sec] = 0
        if key is not None and (d := self._heads.get(key)):
            d.pop(sec, None)  # (else dropped lazily)

    def heads(self, key: tuple[int, int]) -> Iterator[int]:
        """Sections at the head of the lists, most recently placed first (lazily: a
        walk usually stops after the first few)."""
        d = self._heads.get(key)
        if d:
            rank = self._rv
            for sec, r in reversed(d.items()):
                if rank[sec] == r:
                    yield sec

    def tails(self, key: tuple[int, int]) -> Iterator[int]:
        """Sections placed at the tail, oldest first, one at a time (lazily: a walk
        usually stops after the first few, and each entry is checked only when the
        walk gets to it)."""
        lst = self._tails.get(key)
        if lst is None:
            return
        rank, secs, ranks = self._rv, lst.secs, lst.ranks
        i, end = lst.start, len(secs)
        while i < end and rank[secs[i]] != ranks[i]:
            i += 1  # (entries before the first valid one never become valid again)
        lst.start = i
        seen = 0
        while i < end:
            if rank[s := secs[i]] == ranks[i]:
                seen += 1
                yield s
            i += 1
        rest = end - lst.start
        if (lst.start > 4096 and lst.start > rest) or 4 * seen + 64 < rest:
            lst.compact(rank)  # (mostly stale entries walked to the end)
