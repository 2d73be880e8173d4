"""The zone watermarks and reserves of mm/page_alloc.c: init_per_zone_wmark_min()
(calculate_min_free_kbytes(), __setup_per_zone_wmarks(),
setup_per_zone_lowmem_reserve(), calculate_totalreserve_pages()) and the
transparent-hugepage floor of mm/khugepaged.c (set_recommended_min_free_kbytes()).
Part of mm/page_alloc.c, kept in its own module for size, as are the zonelists
(build_zonelists() + gfp_zone(): :class:`ZonelistOps`);
:class:`memhp.kernel.mm.page_alloc.PageAllocator` calls them.

Checked against the guests' /proc/zoneinfo (min, low, high, protection) in the
recorded scenarios of Debian's 6.1 and 6.12 (tests/kernel/test_watermarks.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from memhp.abi.layout import PAGE_SIZE, PAGEBLOCK_NR_PAGES
from memhp.kernel.mm.mmzone import KERNEL_ZONES, PgData, Zone, ZoneType

if TYPE_CHECKING:
    from memhp.kernel.mm.page_alloc import PageState

#: sysctl_lowmem_reserve_ratio[MAX_NR_ZONES] (mm/page_alloc.c) at boot: a zone keeps
#: 1/ratio of the managed pages of the zones above it from allocations that may use
#: those (0: nothing).  DMA, DMA32, Normal, Movable and Device (CONFIG_ZONE_DEVICE).
LOWMEM_RESERVE_RATIO = (256, 256, 32, 0, 0)
#: MIGRATE_PCPTYPES (unmovable, movable, reclaimable).
MIGRATE_PCPTYPES = 3
#: SWAP_CLUSTER_MAX: the smallest min watermark of a capped zone.
SWAP_CLUSTER_MAX = 32
#: watermark_scale_factor's default (0.1% of a zone between two watermarks) and its
#: sysctl range (6.1, 6.12: 1..3000).
WATERMARK_SCALE_FACTOR = 10
WATERMARK_SCALE_FACTOR_MAX = 3000


def nr_free_buffer_pages(pgdats: dict[int, PgData]) -> int:
    """nr_free_buffer_pages() -> nr_free_zone_pages(gfp_zone(GFP_USER)): the managed
    pages above the high watermark of every zone up to ZONE_NORMAL (the zonelist
    reaches every node); the high watermarks are those of the last computation."""
    total = 0
    for pgdat in pgdats.values():
        for z in KERNEL_ZONES:
            zone = pgdat.zone(z)
            total += max(0, zone.managed_pages - zone.watermark_high)
    return total


def calculate_min_free_kbytes(pgdats: dict[int, PgData]) -> int:
    """calculate_min_free_kbytes(): sqrt(lowmem kB * 16) (init_per_zone_wmark_min()
    clamps it to 128 kB..256 MiB, unless a value set by the sysctl is not below it)."""
    lowmem_kb = nr_free_buffer_pages(pgdats) * (PAGE_SIZE >> 10)
    return math.isqrt(lowmem_kb * 16)


def recommended_min_free_kbytes(pgdats: dict[int, PgData]) -> int:
    """set_recommended_min_free_kbytes() (mm/khugepaged.c, THP enabled): two free
    pageblocks per populated zone up to ZONE_NORMAL plus MIGRATE_PCPTYPES^2 more,
    at most 5% of nr_free_buffer_pages()."""
    nr_zones = sum(
        1 for pgdat in pgdats.values() for z in KERNEL_ZONES if pgdat.zone(z).populated()
    )
    pages = PAGEBLOCK_NR_PAGES * nr_zones * 2
    pages += PAGEBLOCK_NR_PAGES * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
    pages = min(pages, nr_free_buffer_pages(pgdats) // 20)
    return pages * (PAGE_SIZE >> 10)


def setup_per_zone_wmarks(
    pgdats: dict[int, PgData],
    min_free_kbytes: int,
    movable_capped: bool,
    scale_factor: int = WATERMARK_SCALE_FACTOR,
) -> None:
    """__setup_per_zone_wmarks(): each zone's share of min_free_kbytes as its min
    watermark, low and high a quarter of that share (at least ``scale_factor`` in
    10,000 of the zone: watermark_scale_factor) above it.  ``movable_capped`` (6.12):
    ZONE_MOVABLE is left out of the shares and its min is managed/1024 clamped to
    32..128 pages, empty or not; 6.1 treats it as the other zones."""
    pages_min = min_free_kbytes >> 2  # kB -> pages
    lowmem = sum(
        z.managed_pages
        for pgdat in pgdats.values()
        for z in pgdat.node_zones
        if not (movable_capped and z.idx is ZoneType.MOVABLE)
    )
    for pgdat in pgdats.values():
        for zone in pgdat.node_zones:
            managed = zone.managed_pages
            share = pages_min * managed // lowmem if lowmem else 0
            if movable_capped and zone.idx is ZoneType.MOVABLE:
                wmin = max(SWAP_CLUSTER_MAX, min(managed // 1024, 128))
            else:
                wmin = share
            delta = max(share >> 2, managed * scale_factor // 10000)
            zone.watermark_min = wmin
            zone.watermark_low = wmin + delta
            zone.watermark_high = wmin + 2 * delta


def setup_per_zone_lowmem_reserve(
    pgdats: dict[int, PgData], ratios: tuple[int, ...] = LOWMEM_RESERVE_RATIO
) -> None:
    """setup_per_zone_lowmem_reserve(): lowmem_reserve[j] of a zone is the managed
    pages of the zones above it up to j over the zone's ratio (0 for an empty zone
    and for a ratio of 0, ZONE_MOVABLE's)."""
    for pgdat in pgdats.values():
        zones = pgdat.node_zones
        for i, zone in enumerate(zones):
            ratio = ratios[int(zone.idx)]
            reserve = [0] * len(zones)
            if ratio and zone.managed_pages:
                above = 0
                for j in range(i + 1, len(zones)):
                    above += zones[j].managed_pages
                    reserve[j] = above // ratio
            zone.lowmem_reserve = tuple(reserve)


def totalreserve_pages(pgdats: dict[int, PgData]) -> int:
    """calculate_totalreserve_pages(): per zone its largest lowmem_reserve plus its
    high watermark, at most its managed pages; the sum over all zones."""
    total = 0
    for pgdat in pgdats.values():
        for zone in pgdat.node_zones:
            total += min(
                max(zone.lowmem_reserve[zone.idx :], default=0) + zone.watermark_high,
                zone.managed_pages,
            )
    return total


#: Results of :meth:`Watermarks.compute` by its inputs (min_free_kbytes,
#: totalreserve_pages and each zone's watermarks and lowmem_reserve).
_COMPUTED: dict[
    tuple[object, ...], tuple[int, int, list[tuple[int, int, int, tuple[int, ...]]]]
] = {}


class Watermarks:
    """The watermark state of a page allocator: its switches and the results of
    the last init_per_zone_wmark_min() (:meth:`compute`).  The kernel computes on every
    online/offline; here the computation (O(zones)) waits (``dirty``) for the next
    allocation that checks a watermark, a reader of /proc, or a change of the
    managed pages outside online/offline (adjust_managed_page_count(), which does
    not recompute: the computation must see the count of the online/offline), so
    that onlining 100,000 blocks in a row does not redo it each time."""

    def __init__(self, thp: bool, movable_capped: bool) -> None:
        #: Transparent hugepages enabled (khugepaged raises min_free_kbytes).
        self.thp = thp
        #: ZONE_MOVABLE's min watermark capped (6.12 __setup_per_zone_wmarks()).
        self.movable_capped = movable_capped
        self.dirty = True
        self.min_free_kbytes = 0
        self.totalreserve_pages = 0
        #: The vm sysctls: min_free_kbytes as last written (-1: never),
        #: watermark_scale_factor, lowmem_reserve_ratio.
        self.user_min_free_kbytes = -1
        self.scale_factor = WATERMARK_SCALE_FACTOR
        self.lowmem_reserve_ratio: tuple[int, ...] = LOWMEM_RESERVE_RATIO

    def compute(self, pgdats: dict[int, PgData]) -> None:
        """init_per_zone_wmark_min() (at boot and on every online/offline): a new
        min_free_kbytes unless the one written to the sysctl is not below it, the
        watermarks, the lowmem reserves; then khugepaged_min_free_kbytes_update() when
        THP is enabled (set_recommended_min_free_kbytes(): its floor, then the
        watermarks again).

        A pure function of the switches, the sysctls, min_free_kbytes and each
        zone's managed and present pages and high watermark (nr_free_buffer_pages()
        reads the last one): its results are kept per process for those inputs
        (:data:`_COMPUTED`; a study's runs offline the same blocks in the same order)."""
        self.dirty = False
        zones = [z for pgdat in pgdats.values() for z in pgdat.node_zones]
        key = (
            self.thp,
            self.movable_capped,
            self.scale_factor,
            self.lowmem_reserve_ratio,
            self.user_min_free_kbytes,
            self.min_free_kbytes,
            tuple(pgdats),
            tuple([(z.idx, z.managed_pages, z.present_pages, z.watermark_high) for z in zones]),
        )
        done = _COMPUTED.get(key)
        if done is None:
            self._compute(pgdats)
            if len(_COMPUTED) >= 4096:
                _COMPUTED.clear()
            _COMPUTED[key] = (
                self.min_free_kbytes,
                self.totalreserve_pages,
                [
                    (z.watermark_min, z.watermark_low, z.watermark_high, z.lowmem_reserve)
                    for z in zones
                ],
            )
            return
        self.min_free_kbytes, self.totalreserve_pages, marks = done
        for z, (wmin, low, high, reserve) in zip(zones, marks, strict=True):
            z.watermark_min, z.watermark_low, z.watermark_high = wmin, low, high
            z.lowmem_reserve = reserve
            z.pcp_managed = z.managed_pages

    def _compute(self, pgdats: dict[int, PgData]) -> None:
        new = calculate_min_free_kbytes(pgdats)
        if new > self.user_min_free_kbytes:  # (else pr_warn "... user defined value")
            self.min_free_kbytes = max(128, min(new, 262144))
        self._wmarks(pgdats)
        setup_per_zone_lowmem_reserve(pgdats, self.lowmem_reserve_ratio)
        if self.thp:
            self.min_free_kbytes = max(self.min_free_kbytes, recommended_min_free_kbytes(pgdats))
            self._wmarks(pgdats)
        self.totalreserve_pages = totalreserve_pages(pgdats)
        # setup_per_zone_wmarks() -> zone_pcp_update(), refresh_zone_stat_thresholds()
        for pgdat in pgdats.values():
            for zone in pgdat.node_zones:
                zone.pcp_managed = zone.managed_pages

    def _wmarks(self, pgdats: dict[int, PgData]) -> None:
        setup_per_zone_wmarks(pgdats, self.min_free_kbytes, self.movable_capped, self.scale_factor)

    def sysctl(
        self,
        pgdats: dict[int, PgData],
        min_free_kbytes: int | None = None,
        scale_factor: int | None = None,
        lowmem_reserve_ratio: tuple[int, ...] | None = None,
    ) -> None:
        """min_free_kbytes_sysctl_handler() (the value is also user_min_free_kbytes),
        watermark_scale_factor_sysctl_handler() (then setup_per_zone_wmarks()) and
        lowmem_reserve_ratio_sysctl_handler() (ratios below 1 become 0, then
        setup_per_zone_lowmem_reserve()); either brings totalreserve_pages up to date.
        No init_per_zone_wmark_min(): the pagesets' batch and the vmstat thresholds
        stay those of the last one."""
        if self.dirty:
            self.compute(pgdats)
        if min_free_kbytes is not None:
            self.min_free_kbytes = self.user_min_free_kbytes = min_free_kbytes
        if scale_factor is not None:
            self.scale_factor = scale_factor
        if min_free_kbytes is not None or scale_factor is not None:
            self._wmarks(pgdats)
        if lowmem_reserve_ratio is not None:
            self.lowmem_reserve_ratio = tuple(r if r >= 1 else 0 for r in lowmem_reserve_ratio)
            setup_per_zone_lowmem_reserve(pgdats, self.lowmem_reserve_ratio)
        self.totalreserve_pages = totalreserve_pages(pgdats)


class WatermarkOps:
    """The page allocator's watermark operations (a base of
    :class:`memhp.kernel.mm.page_alloc.PageAllocator`)."""

    wmarks: Watermarks
    pgdats: dict[int, PgData]

    def nr_free_pages(self, nid: int, z: int) -> int:
        raise NotImplementedError

    def watermark_room(self, z: Zone, highest: ZoneType, mark: int | None = None) -> int:
        """__zone_watermark_ok(): the pages an allocation whose highest zone is ``highest``
        may take from ``z``, NR_FREE_PAGES above ``mark`` (min) + lowmem_reserve."""
        mark = z.watermark_min if mark is None else mark
        return self.nr_free_pages(z.nid, int(z.idx)) - mark - z.lowmem_reserve[highest]

    def init_per_zone_wmark_min(self) -> None:
        """init_per_zone_wmark_min(), on every online/offline (:class:`Watermarks`)."""
        self.wmarks.dirty = True

    def adjust_managed_page_count(self, zone: Zone, delta: int) -> None:
        """adjust_managed_page_count(): no recomputation; a pending one reads the old count."""
        self.ensure_watermarks()
        zone.managed_pages += delta

    def ensure_watermarks(self) -> None:
        """Bring the watermarks up to date if an online/offline changed them."""
        if self.wmarks.dirty:
            self.wmarks.compute(self.pgdats)


class ZonelistOps:
    """The zones an allocation may use, in order (a base of
    :class:`memhp.kernel.mm.page_alloc.PageAllocator`)."""

    pgdats: dict[int, PgData]
    node_order: dict[int, list[int]]
    #: zonelist() results by their arguments (the node order and the nodes are set at
    #: boot: build_zonelists() calls :meth:`zonelists_changed`).
    _zonelists: dict[tuple[object, ...], tuple[Zone, ...]]

    def highest_zoneidx(self, state: PageState) -> ZoneType:
        raise NotImplementedError

    def zonelist(
        self,
        nid: int,
        state: PageState,
        this_node: bool = False,
        only: ZoneType | None = None,
        nodes: Sequence[int] | None = None,
        highest: ZoneType | None = None,
    ) -> list[Zone]:
        """build_zonelists() + gfp_zone(): the zones an allocation may use, in order.

        ``only`` restricts it to one zone type (a workload placed in one zone); a
        zone the allocation type may not use stays excluded.  ``nodes`` (a nodemask
        applied to ``nid``'s zonelist) and ``highest`` (gfp_zone()) override.
        """
        return list(
            self._zonelist(
                nid, state, this_node, only, None if nodes is None else tuple(nodes), highest
            )
        )

    def _zonelist(
        self,
        nid: int,
        state: PageState,
        this_node: bool,
        only: ZoneType | None,
        nodes: tuple[int, ...] | None,
        highest: ZoneType | None,
    ) -> tuple[Zone, ...]:
        """:meth:`zonelist`, computed once per arguments (it depends on nothing else
        that changes after boot: :meth:`zonelists_changed` when it does)."""
        movable = (highest or self.highest_zoneidx(state)) is ZoneType.MOVABLE
        key = (nid, movable, this_node, only, nodes)
        zl = self._zonelists.get(key)
        if zl is not None:
            return zl
        if movable:
            zones: tuple[ZoneType, ...] = (ZoneType.MOVABLE, ZoneType.NORMAL, ZoneType.DMA32)
        else:
            zones = (ZoneType.NORMAL, ZoneType.DMA32)
        if only is not None:
            zones = tuple(z for z in zones if z is only)
        order = nodes
        if order is None:
            order = (nid,) if this_node else tuple(self.node_order.get(nid, [nid]))
        pg = self.pgdats
        zl = self._zonelists[key] = tuple(
            pg[n].node_zones[z] for n in order if n in pg for z in zones
        )
        return zl

    def zonelists_changed(self) -> None:
        """The node order or the nodes changed (build_zonelists())."""
        self._zonelists.clear()
