"""/proc/zoneinfo (mm/vmstat.c: zoneinfo_show() -> zoneinfo_show_print()) and
/proc/vmstat (vmstat_start(), vmstat_show()) and /proc/buddyinfo (frag_show()), at
the end of this module.

Every zone of every online node, ZONE_DEVICE included (all zones are printed,
populated or not, for lowmem_reserve_ratio's sake): the zone's free pages, watermarks
(6.12 adds ``promo``), spans and managed pages, its lowmem reserves ("protection"),
then, for a populated zone, its counters, the NUMA events, the per-CPU pagesets and
the node's reclaim state; the node's own counters come with its first populated zone.

What the model has no counterpart for prints 0: watermark boosting, CMA, the file
LRU, the per-CPU lists' page counts.  The pagesets' ``batch`` is zone_batchsize()
and their ``high`` zone_highsize() (from the low watermark and the node's CPUs, as
setup_per_zone_wmarks() -> zone_pcp_update() leave them; 6.12 auto-tunes ``high``
between that and a larger bound as pages come and go, which the model does not
follow), ``vm stats threshold`` calculate_normal_threshold(): the batch and the
threshold from the managed pages of the last init_per_zone_wmark_min()
(``Zone.pcp_managed``), as the kernel computes them only there.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from memhp.abi.layout import NR_ORDERS, PAGE_SIZE, PAGES_PER_SECTION, STRUCT_PAGE_SIZE
from memhp.kernel.kernel import Kernel
from memhp.kernel.mm.mmzone import Zone
from memhp.kernel.mm.page_alloc import PageState
from memhp.sim.procfs import (
    VMSTAT_NODE,
    VMSTAT_NUMA,
    VMSTAT_PGDEMOTE,
    node_vmstat_values,
    vmstat_names,
    zone_stat_values,
)

#: SZ_1M / PAGE_SIZE: zone_batchsize()'s cap.
_BATCH_CAP = 256
#: Not modelled: ZONE_DEVICE, printed as an empty zone after ZONE_MOVABLE.
_DEVICE = "Device"


def _fls(x: int) -> int:
    """fls(): the 1-based index of the highest set bit, 0 for 0."""
    return x.bit_length()


def _rounddown_pow_of_two(x: int) -> int:
    return 1 << (x.bit_length() - 1)


def zone_batchsize(zone: Zone) -> int:
    """zone_batchsize(): ~0.1% of the zone or 1 MiB, as 2^n - 1 (at least 1 in use)."""
    batch = min(zone.pcp_managed >> 10, _BATCH_CAP) // 4
    batch = max(batch, 1)
    return max(1, _rounddown_pow_of_two(batch + batch // 2) - 1)


def zone_highsize(zone: Zone, batch: int, node_cpus: int, online_cpus: int) -> int:
    """zone_highsize() with percpu_pagelist_high_fraction 0: the low watermark split
    over the node's CPUs (all online CPUs for a node without), at least 4 batches."""
    split = node_cpus or online_cpus
    return max(zone.watermark_low // split, batch << 2)


def calculate_normal_threshold(zone: Zone, online_cpus: int) -> int:
    """calculate_normal_threshold(): 2 * fls(cpus) * (1 + fls(managed in 128 MiB)),
    at most 125."""
    mem = zone.pcp_managed >> 15
    return min(125, 2 * _fls(online_cpus) * (1 + _fls(mem)))


def _zone_items(k: Kernel, counts: dict[str, int]) -> list[tuple[str, int]]:
    """A zone's vm_zone_stat items (vmstat_text order) and NUMA events, of its
    :meth:`Nodes.zone_counts`."""
    known = zone_stat_values(k, counts)
    names = vmstat_names(k)
    zone_names = names[: names.index(VMSTAT_NUMA[0])]
    return [(n, known.get(n, 0)) for n in (*zone_names, *VMSTAT_NUMA)]


def _item(name: str, value: int) -> str:
    """'\\n      %-12s %lu'"""
    return f"\n      {name:<12} {value}"


def zoneinfo(k: Kernel) -> str:
    """zoneinfo_show() over the online nodes (for_each_online_pgdat()), in node order."""
    k.pa.ensure_watermarks()
    promo = k.profile.zoneinfo_promo
    cpus_of = {n.id: len(n.cpus) for n in k.spec.nodes}
    online = sorted({c for n in k.spec.nodes for c in n.cpus})
    out: list[str] = []
    for nid in sorted(k.nodes.node_states["N_ONLINE"] & set(k.pgdats)):
        zones = list(k.pgdats[nid].node_zones)
        counts = k.nodes.zone_counts(nid)
        first = next((z for z in zones if z.populated()), None)
        for zone in zones:
            out.append(f"Node {nid}, zone {zone.name:>8}")
            if zone is first:
                out.append("\n  per-node stats")
                values = node_vmstat_values(k, nid)
                out.extend(_item(n, values.get(n, 0)) for n in node_item_names(k))
            marks = [
                ("pages free", k.pa.zone_free(zone)),
                ("boost", 0),
                ("min", zone.watermark_min),
                ("low", zone.watermark_low),
                ("high", zone.watermark_high),
            ]
            if promo:
                marks.append(("promo", 2 * zone.watermark_high - zone.watermark_low))
            marks += [
                ("spanned", zone.spanned_pages),
                ("present", zone.present_pages),
                ("managed", zone.managed_pages),
                ("cma", 0),
            ]
            out.append(f"\n  {marks[0][0]}     {marks[0][1]}")
            out.extend(f"\n        {name:<8} {v}" for name, v in marks[1:])
            res = list(zone.lowmem_reserve)
            res.append(res[-1] if int(zone.idx) < len(res) - 1 else 0)  # ZONE_DEVICE
            out.append(f"\n        protection: ({', '.join(map(str, res))})")
            if not zone.populated():
                out.append("\n")
                continue
            out.extend(_item(n, v) for n, v in _zone_items(k, counts[int(zone.idx)]))
            out.append("\n  pagesets")
            batch = zone_batchsize(zone)
            high = zone_highsize(zone, batch, cpus_of.get(nid, 0), len(online))
            threshold = calculate_normal_threshold(zone, len(online))
            for cpu in online:
                out.append(
                    f"\n    cpu: {cpu}"
                    f"\n              count: 0"
                    f"\n              high:  {high}"
                    f"\n              batch: {batch}"
                    f"\n  vm stats threshold: {threshold}"
                )
            out.append(
                f"\n  node_unreclaimable:  0\n  start_pfn:           {zone.zone_start_pfn}\n"
            )
        out.append(_device_zone(nid, promo, len(zones[0].lowmem_reserve) + 1))
    return "".join(out)


def node_item_names(k: Kernel) -> tuple[str, ...]:
    """The node items of the profile's vmstat_text (6.12 has more than 6.1)."""
    names = vmstat_names(k)
    return names[names.index(VMSTAT_NODE[0]) :]


def _device_zone(nid: int, promo: bool, nr_zones: int) -> str:
    """ZONE_DEVICE: no memory of its own in the model, printed as an empty zone."""
    lines = [f"Node {nid}, zone {_DEVICE:>8}", "\n  pages free     0"]
    names = ["boost", "min", "low", "high", *(["promo"] if promo else [])]
    names += ["spanned", "present", "managed", "cma"]
    lines.extend(f"\n        {n:<8} 0" for n in names)
    lines.append(f"\n        protection: ({', '.join(['0'] * nr_zones)})\n")
    return "".join(lines)


# ---------------------------------------------------------------- /proc/vmstat
#: enum writeback_stat_item: what global_dirty_limits() computes.
VMSTAT_WRITEBACK = ("nr_dirty_threshold", "nr_dirty_background_threshold")
#: 6.11+: the memmap's pages (enum vm_stat_item after the writeback items).
VMSTAT_MEMMAP = ("nr_memmap_pages", "nr_memmap_boot_pages")
#: vm_event_item names (vmstat_text[] under CONFIG_VM_EVENT_COUNTERS) of Debian's 6.1
#: config (NUMA balancing, migration, compaction, hugetlb, THP, balloon, swap, KSM,
#: zswap, x86's direct map splits; no CMA, no TLB-flush debugging).
VM_EVENTS = (
    "pgpgin", "pgpgout", "pswpin", "pswpout",
    "pgalloc_dma", "pgalloc_dma32", "pgalloc_normal", "pgalloc_movable", "pgalloc_device",
    "allocstall_dma", "allocstall_dma32", "allocstall_normal", "allocstall_movable",
    "allocstall_device",
    "pgskip_dma", "pgskip_dma32", "pgskip_normal", "pgskip_movable", "pgskip_device",
    "pgfree", "pgactivate", "pgdeactivate", "pglazyfree", "pgfault", "pgmajfault",
    "pglazyfreed", "pgrefill", "pgreuse", "pgsteal_kswapd", "pgsteal_direct",
    "pgdemote_kswapd", "pgdemote_direct", "pgscan_kswapd", "pgscan_direct",
    "pgscan_direct_throttle", "pgscan_anon", "pgscan_file", "pgsteal_anon", "pgsteal_file",
    "zone_reclaim_failed", "pginodesteal", "slabs_scanned", "kswapd_inodesteal",
    "kswapd_low_wmark_hit_quickly", "kswapd_high_wmark_hit_quickly", "pageoutrun",
    "pgrotated", "drop_pagecache", "drop_slab", "oom_kill",
    "numa_pte_updates", "numa_huge_pte_updates", "numa_hint_faults",
    "numa_hint_faults_local", "numa_pages_migrated",
    "pgmigrate_success", "pgmigrate_fail",
    "thp_migration_success", "thp_migration_fail", "thp_migration_split",
    "compact_migrate_scanned", "compact_free_scanned", "compact_isolated", "compact_stall",
    "compact_fail", "compact_success", "compact_daemon_wake",
    "compact_daemon_migrate_scanned", "compact_daemon_free_scanned",
    "htlb_buddy_alloc_success", "htlb_buddy_alloc_fail",
    "unevictable_pgs_culled", "unevictable_pgs_scanned", "unevictable_pgs_rescued",
    "unevictable_pgs_mlocked", "unevictable_pgs_munlocked", "unevictable_pgs_cleared",
    "unevictable_pgs_stranded",
    "thp_fault_alloc", "thp_fault_fallback", "thp_fault_fallback_charge",
    "thp_collapse_alloc", "thp_collapse_alloc_failed", "thp_file_alloc",
    "thp_file_fallback", "thp_file_fallback_charge", "thp_file_mapped", "thp_split_page",
    "thp_split_page_failed", "thp_deferred_split_page", "thp_split_pmd",
    "thp_scan_exceed_none_pte", "thp_scan_exceed_swap_pte", "thp_scan_exceed_share_pte",
    "thp_split_pud", "thp_zero_page_alloc", "thp_zero_page_alloc_failed", "thp_swpout",
    "thp_swpout_fallback",
    "balloon_inflate", "balloon_deflate", "balloon_migrate",
    "swap_ra", "swap_ra_hit", "ksm_swpin_copy", "cow_ksm", "zswpin", "zswpout",
    "direct_map_level2_splits", "direct_map_level3_splits",
)  # fmt: skip
#: Debian 6.12's further events, each after the one named.
VM_EVENTS_612 = (
    ("pgsteal_khugepaged", "pgsteal_direct"),
    ("pgscan_khugepaged", "pgscan_direct"),
    ("zone_reclaim_success", "pgsteal_file"),
    ("thp_underused_split_page", "thp_deferred_split_page"),
    ("swpin_zero", "swap_ra_hit"),
    ("swpout_zero", "swpin_zero"),
    ("zswpwb", "zswpout"),
)


def vm_event_names(k: Kernel) -> tuple[str, ...]:
    """The profile's vm_event_item names in vmstat_text[] order."""
    p = k.profile
    names = list(VM_EVENTS)
    if p.vmstat_iommu_and_pgdemote:
        names = [n for n in names if n not in VMSTAT_PGDEMOTE]
    if p.vmstat_events_612:
        for name, after in VM_EVENTS_612:
            names.insert(names.index(after) + 1, name)
    return tuple(names)


def dirty_limits(free: int, totalreserve: int, file_lru: int) -> tuple[int, int]:
    """global_dirty_limits() -> domain_dirty_limits() (mm/page-writeback.c) with the
    default vm.dirty_ratio 20 and dirty_background_ratio 10, as per-PAGE_SIZE ratios
    of global_dirtyable_memory() (free pages less totalreserve_pages, plus the file
    LRU, plus one); returns (thresh, bg_thresh)."""
    avail = free - min(free, totalreserve) + file_lru + 1
    thresh = (20 * PAGE_SIZE // 100) * avail // PAGE_SIZE
    bg = (10 * PAGE_SIZE // 100) * avail // PAGE_SIZE
    return thresh, bg if bg < thresh else thresh // 2


def vmstat(k: Kernel) -> str:
    """vmstat_start() / vmstat_show(): the zone counters, NUMA events and node
    counters summed over the nodes (global_zone_page_state() and friends), the dirty
    thresholds, (6.12) the memmap pages, the VM events, then the deprecated
    ``nr_unstable 0``.

    Of the events the model counts the migration's (pgmigrate_success: every page
    moved; pgmigrate_fail as migrate_pages() counts its nr_failed_pages, see
    memhp.kernel.mm.migrate); the others print 0.
    """
    known: dict[str, int] = {}
    for nid in k.pgdats:
        for name, v in node_vmstat_values(k, nid).items():
            known[name] = known.get(name, 0) + v
    lines = [f"{n} {known.get(n, 0)}\n" for n in vmstat_names(k)]
    file_lru = known.get("nr_inactive_file", 0) + known.get("nr_active_file", 0)
    k.pa.ensure_watermarks()
    free = known.get("nr_free_pages", 0)
    thresh, bg = dirty_limits(free, k.pa.wmarks.totalreserve_pages, file_lru)
    lines += [f"{VMSTAT_WRITEBACK[0]} {thresh}\n", f"{VMSTAT_WRITEBACK[1]} {bg}\n"]
    if k.profile.vmstat_memmap_pages:
        # DIV_ROUND_UP(PAGES_PER_SECTION * sizeof(struct page), PAGE_SIZE) per present
        # section: hot-added ones (memmap_pages_add(), altmap or not) and boot ones.
        per_sec = -(-PAGES_PER_SECTION * STRUCT_PAGE_SIZE // PAGE_SIZE)
        sp = k.sparse
        boot = int(np.count_nonzero(sp.present & sp.early))
        added = int(np.count_nonzero(sp.present & ~sp.early))
        lines += [f"{VMSTAT_MEMMAP[0]} {added * per_sec}\n"]
        lines += [f"{VMSTAT_MEMMAP[1]} {boot * per_sec}\n"]
    events = {"pgmigrate_success": k.pa.migrated_pages, "pgmigrate_fail": k.pa.migrate_failed_pages}
    lines += [f"{n} {events.get(n, 0)}\n" for n in vm_event_names(k)]
    lines.append("nr_unstable 0\n")
    return "".join(lines)


# ---------------------------------------------------------------- /proc/buddyinfo


def free_blocks(free: npt.NDArray[np.int64]) -> list[int]:
    """Free blocks per order of sections with ``free`` free pages each.

    The model keeps free pages per section, not per page: each section's free pages
    are taken as one run aligned at its end, what expand() leaves of whole order-10
    blocks after allocations from one side (the kernel takes the lowest pages of the
    block it splits): f // 1024 blocks of order 10, then one block per set bit of the
    rest.  The kernel's low orders also hold what frees scatter (pages back from the
    per-CPU lists, partly freed allocations), which the model does not track."""
    top = 1 << (NR_ORDERS - 1)
    out = [0] * NR_ORDERS
    out[-1] = int((free // top).sum())
    rest = free % top
    for order in range(NR_ORDERS - 1):
        out[order] = int(np.count_nonzero(rest & (1 << order)))
    return out


def buddyinfo(k: Kernel) -> str:
    """frag_show() -> frag_show_print(): the number of free blocks of each order in
    every populated zone of every online node (walk_zones_in_node(), populated only);
    :func:`free_blocks` of the zone's sections, isolated ones included (their pages
    are on the MIGRATE_ISOLATE lists, counted in free_area[order].nr_free too)."""
    pa = k.pa
    free = pa.counts[PageState.FREE].astype(np.int64)
    out: list[str] = []
    for nid in sorted(k.nodes.node_states["N_ONLINE"] & set(k.pgdats)):
        for zone in k.pgdats[nid].node_zones:
            if not zone.populated():
                continue
            secs = (pa.zone == int(zone.idx)) & (pa.nid == nid)
            counts = free_blocks(free[secs])
            out.append(f"Node {nid}, zone {zone.name:>8} " + "".join(f"{n:6d} " for n in counts))
            out.append("\n")
    return "".join(out)
