"""The zone watermarks of mm/page_alloc.c: calculate_min_free_kbytes() and
__setup_per_zone_wmarks().  Part of mm/page_alloc.c, kept in its own module for
size; :class:`memhp.kernel.mm.page_alloc.PageAllocator` calls it."""

from __future__ import annotations

import math

from memhp.abi.layout import PAGE_SIZE
from memhp.kernel.mm.mmzone import KERNEL_ZONES, PgData, ZoneType


def setup_per_zone_wmarks(pgdats: dict[int, PgData]) -> None:
    """calculate_min_free_kbytes() + __setup_per_zone_wmarks() over every zone."""
    lowmem = 0
    for pgdat in pgdats.values():
        for z in KERNEL_ZONES:
            lowmem += pgdat.zone(z).managed_pages
    lowmem_kb = lowmem * (PAGE_SIZE >> 10)
    min_free_kbytes = int(math.sqrt(lowmem_kb * 16))
    min_free_kbytes = max(128, min(min_free_kbytes, 262144))
    pages_min = min_free_kbytes >> 2  # kB -> pages
    for pgdat in pgdats.values():
        for zone in pgdat.node_zones:
            managed = zone.managed_pages
            if zone.idx is ZoneType.MOVABLE:
                wmin = max(32, min(managed // 1024, 128)) if managed else 0
            else:
                wmin = pages_min * managed // lowmem if lowmem else 0
            delta = max(wmin >> 2, managed * 10 // 10000)
            zone.watermark_min = wmin
            zone.watermark_low = wmin + delta
            zone.watermark_high = wmin + 2 * delta
