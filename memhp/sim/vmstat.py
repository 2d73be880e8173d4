"""/proc/zoneinfo (mm/vmstat.c: zoneinfo_show() -> zoneinfo_show_print()).

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
follow), ``vm stats threshold`` calculate_normal_threshold().
"""

from __future__ import annotations

from memhp.kernel.kernel import Kernel
from memhp.kernel.mm.mmzone import Zone
from memhp.sim.procfs import (
    VMSTAT_NODE,
    VMSTAT_NUMA,
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
    batch = min(zone.managed_pages >> 10, _BATCH_CAP) // 4
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
    mem = zone.managed_pages >> 15
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
