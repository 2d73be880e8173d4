"""Zones and nodes (include/linux/mmzone.h: struct zone, struct pglist_data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

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
            z.watermark_min = z.watermark_low = z.watermark_high = 0
        self.node_start_pfn = self.node_spanned_pages = 0
        self.init_count += 1


#: sizeof(pg_data_t) on a 6.1 x86_64 build, rounded to pages (about 170 KiB).
PGDAT_PAGES = 43
