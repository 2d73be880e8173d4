"""The invariant checker: every page, section, block, zone, node, firmware entry
and kernel allocation of a simulated kernel agrees with every other.

:func:`check_invariants` raises :class:`InvariantError` listing every violation.
Tests call it after every step; it is vectorised so that it stays cheap on
machines with hundreds of thousands of sections.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

from memhp.abi.layout import PAGES_PER_SECTION, section_nr_to_pfn
from memhp.kernel.drivers.base.memory import MemState
from memhp.kernel.mm.mmzone import KERNEL_ZONES
from memhp.kernel.mm.page_alloc import NR_STATES, PageState

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel


class InvariantError(AssertionError):
    """The model is inconsistent; ``problems`` lists what is wrong."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "; ".join(problems[:20])
            + (f" (+{len(problems) - 20} more)" if len(problems) > 20 else "")
        )
        self.problems = problems


def check_invariants(k: Kernel) -> None:
    """Check the whole model; raise :class:`InvariantError` on any inconsistency."""
    p: list[str] = []
    pa, sp = k.pa, k.sparse
    counts = pa.counts
    total = counts.sum(axis=0)

    # ---------------------------------------------------------------- sections
    if (counts < 0).any():
        bad = np.argwhere(counts < 0)[:3]
        p.append(f"negative page counts at (state, section) {bad.tolist()}")
    online = sp.online
    present = sp.present
    if (online & ~present).any():
        p.append("online section not present")
    bad = np.flatnonzero(online & (total != pa.ram))
    if bad.size:
        s = int(bad[0])
        p.append(f"section {s}: page states sum to {int(total[s])}, RAM pages {int(pa.ram[s])}")
    offline_present = present & ~online
    bad = np.flatnonzero(offline_present & (total != counts[PageState.ALTMAP]))
    if bad.size:
        s = int(bad[0])
        p.append(f"offline section {s} has pages in use: {counts[:, s].tolist()}")
    if (~present & ((pa.ram != 0) | (total != 0))).any():
        p.append(
            f"absent section with pages: {np.flatnonzero(~present & (total != 0))[:3].tolist()}"
        )
    if ((pa.zone >= 0) != online).any():
        p.append(
            "zone tag and online flag disagree in sections "
            f"{np.flatnonzero((pa.zone >= 0) != online)[:3].tolist()}"
        )
    if (present & (pa.nid < 0)).any():
        p.append("present section without a node")
    if (pa.isolated & ~online).any() or pa.isolated.any() or pa.iso:
        p.append(f"sections left isolated: {np.flatnonzero(pa.isolated)[:3].tolist()}")
    if (counts[PageState.ALTMAP] > 0).any():
        for alt_sec in np.flatnonzero(counts[PageState.ALTMAP] > 0).tolist():
            bfirst = alt_sec - alt_sec % k.memory.sections_per_block
            if bfirst not in k.sparse.altmaps:
                p.append(f"section {alt_sec}: altmap pages without an altmap owner")

    # ---------------------------------------------------------------- allocations
    acc = np.zeros((NR_STATES, k.nr_sections), np.int64)
    index_ok = True
    for a in pa.allocs.values():
        if not a.extents:
            p.append(f"allocation {a.id} ({a.owner}) is empty")
        for sec, n in a.extents.items():
            acc[a.state, sec] += n
            if pa.by_section.get(sec, {}).get(a.id) != n:
                index_ok = False
    if not index_ok or sum(len(d) for d in pa.by_section.values()) != sum(
        len(a.extents) for a in pa.allocs.values()
    ):
        p.append("section index of allocations disagrees with their extents")
    for st in (
        PageState.MOVABLE,
        PageState.PINNED,
        PageState.UNMOVABLE,
        PageState.RESERVED,
        PageState.ALTMAP,
    ):
        bad = np.flatnonzero(acc[st] != counts[st])
        if bad.size:
            s = int(bad[0])
            p.append(
                f"section {s}: {st.name} pages {int(counts[st, s])} "
                f"but owners hold {int(acc[st, s])}"
            )

    # zone-level counters
    zacc: dict[tuple[int, int], np.ndarray] = defaultdict(lambda: np.zeros(NR_STATES, np.int64))
    for on_sec in np.flatnonzero(online).tolist():
        zacc[(int(pa.nid[on_sec]), int(pa.zone[on_sec]))] += counts[:, on_sec]
    for key in set(zacc) | set(pa.zstate):
        want = zacc.get(key, np.zeros(NR_STATES, np.int64))
        have = pa.zstate.get(key, np.zeros(NR_STATES, np.int64))
        if not np.array_equal(want, have):
            p.append(
                f"zone counters of node {key[0]} zone {key[1]}: {have.tolist()} != {want.tolist()}"
            )

    # owners must still exist
    for a in pa.allocs.values():
        if a.kind == "memmap" and a.state is PageState.UNMOVABLE:
            secs = [s for s in np.flatnonzero(sp.memmap_alloc == a.id)]
            if not secs:
                p.append(f"{a.owner}: memmap allocation of no present section")
        if a.kind == "page_cgroup":
            pcg_sec = next((x for x, aid in k.sparse.page_cgroup.items() if aid == a.id), None)
            if pcg_sec is None or not online[pcg_sec]:
                p.append(f"{a.owner} outlives its section being online")
    for sec, aid in k.sparse.page_cgroup.items():
        if aid not in pa.allocs:
            p.append(f"page_cgroup of section {sec} points to a freed allocation")
    for mm_sec in np.flatnonzero(sp.memmap_alloc).tolist():
        if not present[mm_sec]:
            p.append(f"memmap of absent section {mm_sec} not freed")
        elif int(sp.memmap_alloc[mm_sec]) not in pa.allocs:
            p.append(f"memmap of section {mm_sec} freed while present")

    # ---------------------------------------------------------------- blocks
    spb = k.memory.sections_per_block
    block_of_present = {int(s) // spb for s in np.flatnonzero(present)}
    if block_of_present != set(k.memory.blocks):
        missing = sorted(block_of_present - set(k.memory.blocks))[:3]
        extra = sorted(set(k.memory.blocks) - block_of_present)[:3]
        p.append(
            f"blocks and present sections disagree (no block for {missing}, "
            f"block without sections {extra})"
        )
    for bid, mem in k.memory.blocks.items():
        bsecs = [x for x in range(mem.start_section_nr, mem.start_section_nr + spb) if present[x]]
        on = [bool(online[x]) for x in bsecs]
        if mem.state is MemState.MEM_ONLINE and not all(on):
            p.append(f"{mem.name} online with offline sections")
        if mem.state is MemState.MEM_OFFLINE and any(on):
            p.append(f"{mem.name} offline with online sections")
        if mem.state is MemState.MEM_GOING_OFFLINE:
            p.append(f"{mem.name} stuck in going-offline")
        if mem.zone is not None:
            zs = {int(pa.zone[x]) for x in bsecs}
            if zs != {int(mem.zone)}:
                p.append(f"{mem.name} zone {mem.zone.name} but sections in {sorted(zs)}")
        if mem.state is MemState.MEM_OFFLINE and mem.zone is not None:
            p.append(f"{mem.name} offline but has a zone")
        for nid in mem.nodes:
            if nid not in k.nodes.registered_nodes:
                p.append(f"{mem.name} linked under unregistered node{nid}")
        if mem.acpi_device is not None:
            dev = k.acpi.device(mem.acpi_device)
            if dev is None or bid not in dev.physical_nodes:
                p.append(f"{mem.name}: firmware_node {mem.acpi_device} does not list it")

    # ---------------------------------------------------------------- zones & nodes
    for nid, pgdat in k.pgdats.items():
        node_secs = np.flatnonzero(online & (pa.nid == nid))
        ram_online = int(pa.ram[node_secs].sum())
        if pgdat.node_present_pages != ram_online:
            p.append(
                f"node {nid}: present pages {pgdat.node_present_pages} != RAM online {ram_online}"
            )
        reserved = int(
            counts[PageState.RESERVED, node_secs].sum() + counts[PageState.ALTMAP, node_secs].sum()
        )
        if pgdat.node_managed_pages != ram_online - reserved:
            p.append(
                f"node {nid}: managed pages {pgdat.node_managed_pages} != {ram_online - reserved}"
            )
        for zone in pgdat.node_zones:
            if zone.present_pages < 0 or zone.managed_pages < 0 or zone.spanned_pages < 0:
                p.append(f"node {nid} zone {zone.name}: negative counters")
            if zone.present_pages and zone.is_empty():
                p.append(f"node {nid} zone {zone.name}: present pages without a span")
            zsecs = node_secs[pa.zone[node_secs] == int(zone.idx)]
            for s in zsecs[:1].tolist() + zsecs[-1:].tolist():
                pfn = section_nr_to_pfn(int(s))
                # a boot section may straddle DMA/DMA32: the section is tagged with the higher zone
                if not zone.intersects(pfn, PAGES_PER_SECTION):
                    p.append(f"node {nid}: online section {int(s)} outside the {zone.name} span")
            if (
                not zone.is_empty()
                and pgdat.node_spanned_pages
                and not (
                    pgdat.node_start_pfn <= zone.zone_start_pfn
                    and zone.zone_end_pfn <= pgdat.node_end_pfn
                )
            ):
                p.append(f"node {nid}: zone {zone.name} outside the node span")
        has_mem = pgdat.node_present_pages > 0
        if has_mem != (nid in k.nodes.node_states["N_MEMORY"]):
            p.append(
                f"node {nid}: N_MEMORY is {nid in k.nodes.node_states['N_MEMORY']} "
                f"with {pgdat.node_present_pages} present pages"
            )
        has_normal = any(pgdat.zone(z).present_pages for z in KERNEL_ZONES)
        if has_normal != (nid in k.nodes.node_states["N_NORMAL_MEMORY"]):
            p.append(f"node {nid}: N_NORMAL_MEMORY disagrees with its kernel zones")
    ns = k.nodes.node_states
    if k.nodes.registered_nodes != ns["N_ONLINE"]:
        p.append(
            f"registered nodes {sorted(k.nodes.registered_nodes)} "
            f"!= online {sorted(ns['N_ONLINE'])}"
        )
    if not (ns["N_MEMORY"] | ns["N_CPU"]) <= ns["N_ONLINE"]:
        p.append("a node with memory or CPUs is offline")
    per_node: dict[int, int] = {}
    for mem in k.memory.blocks.values():
        per_node[mem.nid] = per_node.get(mem.nid, 0) + 1
    if {n: c for n, c in k.memory.node_blocks.items() if c} != per_node:
        p.append(f"per-node block counts {k.memory.node_blocks} != {per_node}")
    for mem in k.memory.blocks.values():
        if mem.nid >= 0 and mem.nid not in ns["N_ONLINE"]:
            p.append(f"{mem.name} on offline node {mem.nid}")

    # ---------------------------------------------------------------- firmware map & ACPI
    idx = [e.index for e in k.fwmap.entries]
    if len(set(idx)) != len(idx) or (idx and max(idx) >= k.fwmap.next_index):
        p.append("firmware map indices reused or out of range")
    boot_entries = len(k.spec.e820)
    sec_bytes = PAGES_PER_SECTION << 12
    for e in k.fwmap.entries:
        if (
            e.index >= boot_entries
            and not present[e.start // sec_bytes : e.end // sec_bytes + 1].all()
        ):
            p.append(f"firmware entry {e.index} ({e.start:#x}-{e.end:#x}) outlives its memory")
    fw_ranges = {(e.start, e.end) for e in k.fwmap.entries}
    for d in k.acpi.devices:
        for i in d.infos:
            if i.enabled and (i.start_addr, i.start_addr + i.length - 1) not in fw_ranges:
                p.append(f"{d.name}: range {i.start_addr:#x} has no firmware map entry")
    for d in k.acpi.devices:
        if d.bound and not k.acpi.sta(d):
            p.append(f"{d.name} bound but its slot is empty")
        for bid in d.physical_nodes:
            bound = k.memory.blocks.get(bid)
            if bound is None or bound.acpi_device != d.name:
                p.append(f"{d.name}: physical node memory{bid} missing or not bound back")
        for i in d.infos:
            if i.enabled:
                first = i.start_addr // (PAGES_PER_SECTION << 12)
                last = (i.start_addr + i.length - 1) // (PAGES_PER_SECTION << 12)
                if not present[first : last + 1].all():
                    p.append(f"{d.name}: range {i.start_addr:#x} enabled but sections absent")
    if p:
        raise InvariantError(p)
