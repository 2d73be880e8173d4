"""Boot-time zone and node initialisation (mm/mm_init.c and mm/page_alloc.c of 6.1).

free_area_init() sizes the zones of boot memory (with movable_node's
find_zone_movable_pfns_for_nodes()), build_zonelists() orders the nodes, and
memblock_free_all() hands boot RAM to the buddy allocator zone by zone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from memhp.abi.layout import (
    DMA32_END,
    DMA_END,
    PAGE_SHIFT,
    PAGES_PER_SECTION,
    pfn_to_section_nr,
)
from memhp.kernel.arch.x86.kernel.e820 import memblock_memory
from memhp.kernel.mm.mmzone import Zone, ZoneType
from memhp.kernel.mm.page_alloc import PageState

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel


def build_zonelists(k: Kernel) -> None:
    """build_zonelists() node order: by SLIT distance, then node id."""
    ids = [n.id for n in k.spec.nodes]
    for n in k.spec.nodes:
        order = sorted(k.spec.nodes, key=lambda m: (n.distance[ids.index(m.id)], m.id))
        k.pa.node_order[n.id] = [m.id for m in order]
    k.pa.zonelists_changed()


def _node_has_above_4g(k: Kernel, nid: int) -> bool:
    return any(e > DMA32_END for s, e, n in k.spec.boot_ram if n == nid)


def find_zone_movable_pfn(k: Kernel, nid: int) -> int | None:
    """find_zone_movable_pfns_for_nodes() with movable_node: hotpluggable boot memory."""
    if not k.hotplug.movable_node:
        return None
    node = k.spec.node(nid)
    starts = [
        max(ms, hs)
        for ms, me in node.memory
        for hs, he in node.hotplug
        if max(ms, hs) < min(me, he)
    ]
    if not starts:
        return None
    # Memory below the highest kernel zone's start stays in the kernel zones.
    return max(min(starts), DMA32_END if _node_has_above_4g(k, nid) else DMA_END) >> PAGE_SHIFT


def free_area_init(k: Kernel) -> None:
    """free_area_init(): zone spans and present pages of boot memory; N_MEMORY and
    N_NORMAL_MEMORY of the nodes with boot memory."""
    node_states = k.nodes.node_states
    for nid, pgdat in k.pgdats.items():
        ranges = [(s, e) for s, e, n in memblock_memory(k) if n == nid]
        if not ranges:
            continue
        node_states["N_MEMORY"].add(nid)
        lo = min(s for s, _ in ranges) >> PAGE_SHIFT
        hi = max(e for _, e in ranges) >> PAGE_SHIFT
        mov = find_zone_movable_pfn(k, nid)
        bounds = {
            ZoneType.DMA: (0, DMA_END >> PAGE_SHIFT),
            ZoneType.DMA32: (DMA_END >> PAGE_SHIFT, DMA32_END >> PAGE_SHIFT),
            ZoneType.NORMAL: (DMA32_END >> PAGE_SHIFT, 1 << 62),
        }
        if mov is not None:
            bounds[ZoneType.MOVABLE] = (mov, 1 << 62)
            for z in (ZoneType.DMA, ZoneType.DMA32, ZoneType.NORMAL):
                b0, b1 = bounds[z]
                bounds[z] = (b0, min(b1, mov))
        for z, (b0, b1) in bounds.items():
            s, e = max(lo, b0), min(hi, b1)
            if s >= e:
                continue
            present = 0
            for rs, re_ in ranges:
                rs_, re2 = max(rs >> PAGE_SHIFT, s), min(re_ >> PAGE_SHIFT, e)
                if rs_ < re2:
                    present += re2 - rs_
            zone = pgdat.zone(z)
            if present:
                zone.zone_start_pfn, zone.spanned_pages = s, e - s
                zone.present_pages = present
        pgdat.update_span()
        if any(
            pgdat.zone(z).present_pages for z in (ZoneType.DMA, ZoneType.DMA32, ZoneType.NORMAL)
        ):
            node_states["N_NORMAL_MEMORY"].add(nid)


def _boot_zones_of_sections(k: Kernel, secs: npt.NDArray[np.intp]) -> npt.NDArray[np.int8]:
    """The zone each boot section's pages belong to (the highest zone it overlaps)."""
    out = np.zeros(secs.size, np.int8)
    pfn0 = secs.astype(np.int64) * PAGES_PER_SECTION
    pfn1 = pfn0 + PAGES_PER_SECTION
    nids = k.pa.nid[secs]
    for nid, pgdat in k.pgdats.items():
        mine = nids == nid
        for zone in pgdat.node_zones:
            if zone.is_empty():
                continue
            hit = mine & (pfn0 < zone.zone_end_pfn) & (zone.zone_start_pfn < pfn1)
            out[hit] = np.maximum(out[hit], int(zone.idx))
    return out


def _reserved_in_zone(k: Kernel, zone: Zone) -> int:
    if zone.is_empty():
        return 0
    s0 = pfn_to_section_nr(zone.zone_start_pfn)
    s1 = pfn_to_section_nr(zone.zone_end_pfn - 1) + 1
    mask = (k.pa.zone[s0:s1] == int(zone.idx)) & (k.pa.nid[s0:s1] == zone.nid)
    return int(k.pa.counts[PageState.RESERVED, s0:s1][mask].sum())


def memblock_free_all(k: Kernel) -> None:
    """memblock_free_all(): boot RAM to the buddy allocator, zone by zone; the zones'
    managed pages (present minus PG_reserved) and min watermarks."""
    present = np.flatnonzero(k.sparse.present)
    zones = _boot_zones_of_sections(k, present)
    k.sparse.set_online(present, True)
    k.pa.sections_online(present, zones)
    for pgdat in k.pgdats.values():
        for zone in pgdat.node_zones:
            zone.managed_pages = zone.present_pages - _reserved_in_zone(k, zone)
    k.pa.init_per_zone_wmark_min()
