"""The zone choice of mm/memory_hotplug.c: zone_for_pfn_range() and the online policies.

``memory_hotplug.online_policy`` is ``contig-zones`` (default_zone_for_pfn():
inherit the neighbouring zone, else a kernel zone, or ZONE_MOVABLE with
movable_node) or ``auto-movable`` (auto_movable_zone_for_pfn(): ZONE_MOVABLE as
long as MOVABLE:KERNEL_EARLY stays within ``auto_movable_ratio`` percent, over all
nodes and, with ``auto_movable_numa_aware``, on the node; a static memory group,
one ACPI memory device, is onlined all movable or all kernel).  Part of
mm/memory_hotplug.c, kept in its own module for size; :mod:`memory_hotplug`
re-exports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memhp.abi.layout import PAGES_PER_SECTION, pfn_to_section_nr
from memhp.abi.params import ONLINE_POLICIES
from memhp.kernel.drivers.acpi.numa.srat import NUMA_NO_NODE
from memhp.kernel.drivers.base.memory import (
    MMOP,
    MemoryGroup,
    walk_dynamic_memory_groups,
)
from memhp.kernel.mm.mmzone import Zone, ZoneType

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel


def default_kernel_zone_for_pfn(k: Kernel, nid: int, start_pfn: int, nr_pages: int) -> Zone:
    """default_kernel_zone_for_pfn(): the first kernel zone the range intersects, else Normal."""
    pgdat = k.pgdats[nid]
    for z in (ZoneType.DMA, ZoneType.DMA32):
        zone = pgdat.zone(z)
        if zone.intersects(start_pfn, nr_pages):
            return zone
    return pgdat.zone(ZoneType.NORMAL)


def present_early_pages(k: Kernel, zone: Zone) -> int:
    """zone->present_early_pages: adjust_present_page_count() adds only early sections."""
    return zone.present_pages - k.hotplug.hotplug_present.get((zone.nid, int(zone.idx)), 0)


def auto_movable_can_online_movable(
    k: Kernel, nid: int, group: MemoryGroup | None, nr_pages: int
) -> bool:
    """auto_movable_can_online_movable(): MOVABLE:KERNEL_EARLY of the node (all nodes
    for NUMA_NO_NODE, no CMA) within auto_movable_ratio with ``nr_pages`` more?"""
    ratio = k.hotplug.auto_movable_ratio
    pgdats = k.pgdats.values() if nid == NUMA_NO_NODE else [k.pgdats[nid]]
    kernel_early = movable = 0
    for zone in (z for p in pgdats for z in p.node_zones if z.populated()):
        if zone.idx is ZoneType.MOVABLE:
            movable += zone.present_pages
        else:
            kernel_early += present_early_pages(k, zone)
    req_kernel = group_movable = 0
    for g in walk_dynamic_memory_groups(k, nid, group):
        if ratio:  # the kernel only avoids the division by zero here
            req_kernel += max(0, g.present_movable_pages * 100 // ratio - g.present_kernel_pages)
        group_movable += g.present_movable_pages
    if kernel_early <= req_kernel:
        return False
    kernel_early -= req_kernel
    movable -= group_movable
    if group is not None and group.is_dynamic:
        kernel_early += group.present_kernel_pages
    return movable + nr_pages <= ratio * kernel_early // 100


def auto_movable_zone_for_pfn(
    k: Kernel, nid: int, group: MemoryGroup | None, pfn: int, nr_pages: int
) -> Zone:
    """auto_movable_zone_for_pfn(): MOVABLE if the rest of the unit (static group,
    dynamic group's unit, else the range) fits the global and node ratio now."""
    online = 0
    if not k.hotplug.auto_movable_ratio:
        return default_kernel_zone_for_pfn(k, nid, pfn, nr_pages)
    if group is not None and not group.is_dynamic:
        max_pages = group.max_pages
        online = group.present_movable_pages
        if group.present_kernel_pages:  # anything !MOVABLE: the rest !MOVABLE
            return default_kernel_zone_for_pfn(k, nid, pfn, nr_pages)
    elif group is None or group.unit_pages == nr_pages:
        max_pages = nr_pages
    else:
        max_pages = group.unit_pages
        pfn -= pfn % group.unit_pages
        end_pfn = pfn + group.unit_pages
        while pfn < end_pfn:
            sec = pfn_to_section_nr(pfn)
            if k.sparse.online[sec]:  # pfn_to_online_page()
                if k.pa.zone[sec] != int(ZoneType.MOVABLE):
                    return default_kernel_zone_for_pfn(k, nid, pfn, nr_pages)
                online += PAGES_PER_SECTION
            pfn += PAGES_PER_SECTION
    nr_pages = max_pages - online
    if not auto_movable_can_online_movable(k, NUMA_NO_NODE, group, nr_pages) or (
        k.hotplug.auto_movable_numa_aware
        and not auto_movable_can_online_movable(k, nid, group, nr_pages)
    ):
        return default_kernel_zone_for_pfn(k, nid, pfn, nr_pages)
    return k.pgdats[nid].zone(ZoneType.MOVABLE)


def default_zone_for_pfn(k: Kernel, nid: int, start_pfn: int, nr_pages: int) -> Zone:
    """default_zone_for_pfn(): inherit a non-overlapping neighbour zone, else the policy."""
    kernel_zone = default_kernel_zone_for_pfn(k, nid, start_pfn, nr_pages)
    movable_zone = k.pgdats[nid].zone(ZoneType.MOVABLE)
    in_kernel = kernel_zone.intersects(start_pfn, nr_pages)
    in_movable = movable_zone.intersects(start_pfn, nr_pages)
    if in_kernel ^ in_movable:
        return kernel_zone if in_kernel else movable_zone
    return movable_zone if k.hotplug.movable_node else kernel_zone


def zone_for_pfn_range(
    k: Kernel,
    online_type: MMOP,
    nid: int,
    start_pfn: int,
    nr_pages: int,
    group: MemoryGroup | None = None,
) -> Zone:
    """zone_for_pfn_range(): the zone an online of this type uses, by online_policy."""
    if online_type is MMOP.MMOP_ONLINE_KERNEL:
        return default_kernel_zone_for_pfn(k, nid, start_pfn, nr_pages)
    if online_type is MMOP.MMOP_ONLINE_MOVABLE:
        return k.pgdats[nid].zone(ZoneType.MOVABLE)
    if k.profile.online_policies and ONLINE_POLICIES[k.hotplug.online_policy] == "auto-movable":
        return auto_movable_zone_for_pfn(k, nid, group, start_pfn, nr_pages)
    return default_zone_for_pfn(k, nid, start_pfn, nr_pages)
