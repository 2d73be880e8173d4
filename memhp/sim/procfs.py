"""Formatting of meminfo, numastat, vmstat, /proc/iomem and /proc/kpageflags from the model.

drivers/base/node.c (node_read_meminfo, node_read_numastat, node_read_vmstat),
fs/proc/meminfo.c (meminfo_proc_show) and fs/proc/page.c (kpageflags_read,
stable_page_flags).  Counts the model does not track (file pages, dirty...)
are 0: the model has anonymous user memory, kernel allocations and free pages.
"""

from __future__ import annotations

import numpy as np

from memhp.abi.kpageflags import (
    KPF_ANON,
    KPF_BUDDY,
    KPF_COMPOUND_HEAD,
    KPF_DIRTY,
    KPF_HUGE,
    KPF_HWPOISON,
    KPF_LRU,
    KPF_MMAP,
    KPF_NOPAGE,
    KPF_OFFLINE,
    KPF_PGTABLE,
    KPF_RESERVED,
    KPF_SLAB,
    KPF_SWAPBACKED,
    KPF_UNEVICTABLE,
)
from memhp.abi.layout import PAGE_SIZE, PAGES_PER_SECTION
from memhp.kernel.kernel import Kernel
from memhp.kernel.mm.page_alloc import PageState


def _kb(pages: int) -> int:
    return pages * (PAGE_SIZE >> 10)


def _kind_pages(k: Kernel, nid: int | None, kinds: tuple[str, ...]) -> int:
    total = 0
    for a in k.pa.allocs.values():
        if a.kind in kinds and a.state is PageState.UNMOVABLE:
            if nid is None:
                total += a.nr_pages
            else:
                total += sum(n for s, n in a.extents.items() if int(k.pa.nid[s]) == nid)
    return total


#: Unmovable kernel pages that are neither slab nor page tables: a hot-added
#: section's memmap (vmemmap_alloc_block() -> alloc_pages_node()), the seed's
#: page_cgroup tables (alloc_pages_exact_nid()) and the workloads' unmovable pages
#: (the bench guest's pipe buffers: alloc_page() in pipe_write(); a driver's
#: alloc_pages()).  /proc/meminfo counts them in no line (6.12: the memmap in
#: nr_memmap_pages of /proc/vmstat).  The rest (kmalloc and kmem caches, large
#: kmallocs such as a hot-added node's pgdat) is Slab.
NOT_SLAB = ("memmap", "page_cgroup", "workload")


def _kernel_pages(k: Kernel, nid: int | None, unmovable: int) -> dict[str, int]:
    """Of ``unmovable`` pages (of node ``nid``; None: all nodes), the page tables and
    the Slab (the rest but :data:`NOT_SLAB`), from one pass over the allocations."""
    pagetables = not_slab = 0
    for a in k.pa.allocs.values():
        if a.state is PageState.UNMOVABLE and (a.kind == "pagetable" or a.kind in NOT_SLAB):
            if nid is None:
                n = a.nr_pages
            else:
                n = sum(c for s, c in a.extents.items() if int(k.pa.nid[s]) == nid)
            if a.kind == "pagetable":
                pagetables += n
            else:
                not_slab += n
    return {"pagetables": pagetables, "slab": unmovable - pagetables - not_slab}


def node_counts(k: Kernel, nid: int) -> dict[str, int]:
    mi = k.nodes.node_meminfo(nid)
    mi.update(_kernel_pages(k, nid, mi["unmovable"]))
    return mi


#: The transparent huge page lines of both meminfo files: the model has no THP.
THP_ROWS: tuple[tuple[str, int], ...] = (
    ("AnonHugePages", 0),
    ("ShmemHugePages", 0),
    ("ShmemPmdMapped", 0),
    ("FileHugePages", 0),
    ("FilePmdMapped", 0),
)


#: "Unaccepted:" (CONFIG_UNACCEPTED_MEMORY, 6.5+): the model accepts all memory.
UNACCEPTED_ROWS: tuple[tuple[str, int], ...] = (("Unaccepted", 0),)


def user_pages(k: Kernel, c: dict[str, int]) -> dict[str, int]:
    """The user pages of node counts ``c`` (:meth:`Nodes.node_meminfo`, or their
    sum) as the kernel's counters see them.

    ``anon``: NR_ANON_MAPPED (a task's pages, pinned ones too; not tmpfs, not the
    huge page pools); ``shmem``: NR_SHMEM, also in NR_FILE_PAGES (Cached) and, being
    swap-backed, on the anon LRU; ``unevictable``: the pinned pages, which the model
    keeps off the active/inactive lists (KPF_UNEVICTABLE in kpageflags); the rest of
    the anon LRU is active or inactive as the profile's kernel puts a new page
    (``lru_anon_fault_active``, ``lru_shmem_write_active``; the model does no
    reclaim, so pages never age).  ``committed``: vm_committed_as of the model's
    pages (a task's memory and tmpfs files: shmem_acct_block())."""
    p = k.profile
    shmem, pinned = c["shmem"], c["pinned"]
    task = c["movable"] - c["hugetlb"] - shmem  # evictable anonymous pages
    active = (task if p.lru_anon_fault_active else 0) + (shmem if p.lru_shmem_write_active else 0)
    return {
        "anon": task + pinned,
        "shmem": shmem,
        "active_anon": active,
        "inactive_anon": task + shmem - active,
        "unevictable": pinned,
        "committed": task + pinned + shmem,
    }


def _lru_rows(u: dict[str, int]) -> list[tuple[str, int]]:
    """The LRU lines shared by /proc/meminfo and node meminfo (:func:`user_pages`):
    no file LRU in the model (tmpfs pages are swap-backed: anon LRU)."""
    return [
        ("Active", _kb(u["active_anon"])),
        ("Inactive", _kb(u["inactive_anon"])),
        ("Active(anon)", _kb(u["active_anon"])),
        ("Inactive(anon)", _kb(u["inactive_anon"])),
        ("Active(file)", 0),
        ("Inactive(file)", 0),
        ("Unevictable", _kb(u["unevictable"])),
        ("Mlocked", 0),
    ]


def node_meminfo(k: Kernel, nid: int) -> str:
    """node_read_meminfo()."""
    c = node_counts(k, nid)
    u = user_pages(k, c)
    rows: list[tuple[str, int]] = [
        ("MemTotal", _kb(c["total"])),
        ("MemFree", _kb(c["free"])),
        ("MemUsed", _kb(c["total"] - c["free"])),
        ("SwapCached", 0),
        *_lru_rows(u),
        ("Dirty", 0),
        ("Writeback", 0),
        ("FilePages", _kb(u["shmem"])),
        ("Mapped", 0),
        ("AnonPages", _kb(u["anon"])),
        ("Shmem", _kb(u["shmem"])),
        ("KernelStack", 0),
        ("PageTables", _kb(c["pagetables"])),
        ("SecPageTables", 0),
        ("NFS_Unstable", 0),
        ("Bounce", 0),
        ("WritebackTmp", 0),
        ("KReclaimable", 0),
        ("Slab", _kb(c["slab"])),
        ("SReclaimable", 0),
        ("SUnreclaim", _kb(c["slab"])),
        *THP_ROWS,
        *UNACCEPTED_ROWS[: int(k.profile.unaccepted_memory_stats)],
    ]
    out = []
    for label, val in rows:
        # "Node %d MemTotal:       %8lu kB": the label and colon padded to 16 columns,
        # except (6.1) the two *Pages lines whose format has one space less.
        short = label in ("FileHugePages", "FilePmdMapped")
        pad = 15 if short and not k.profile.node_meminfo_file_huge_aligned else 16
        out.append(f"Node {nid} {(label + ':').ljust(pad)}{val:8d} kB\n")
    for label in ("HugePages_Total", "HugePages_Free", "HugePages_Surp"):
        out.append(f"Node {nid} {label}: {0:5d}\n")
    return "".join(out)


def node_numastat(k: Kernel, nid: int) -> str:
    """node_read_numastat(): allocation counters (the model counts its allocations)."""
    c = node_counts(k, nid)
    hit = c["movable"] + c["pinned"] + c["unmovable"]
    return (
        f"numa_hit {hit}\nnuma_miss 0\nnuma_foreign 0\ninterleave_hit 0\n"
        f"local_node {hit}\nother_node 0\n"
    )


#: node_read_vmstat(): zone items, the NUMA events, then node items (mm/vmstat.c
#: vmstat_text order for 6.1); slab counters are printed in pages.
VMSTAT_ZONE = (
    "nr_free_pages",
    "nr_zone_inactive_anon",
    "nr_zone_active_anon",
    "nr_zone_inactive_file",
    "nr_zone_active_file",
    "nr_zone_unevictable",
    "nr_zone_write_pending",
    "nr_mlock",
    "nr_bounce",
    "nr_zspages",
    "nr_free_cma",
)
VMSTAT_NUMA = (
    "numa_hit",
    "numa_miss",
    "numa_foreign",
    "numa_interleave",
    "numa_local",
    "numa_other",
)
VMSTAT_NODE = (
    "nr_inactive_anon",
    "nr_active_anon",
    "nr_inactive_file",
    "nr_active_file",
    "nr_unevictable",
    "nr_slab_reclaimable",
    "nr_slab_unreclaimable",
    "nr_isolated_anon",
    "nr_isolated_file",
    "workingset_nodes",
    "workingset_refault_anon",
    "workingset_refault_file",
    "workingset_activate_anon",
    "workingset_activate_file",
    "workingset_restore_anon",
    "workingset_restore_file",
    "workingset_nodereclaim",
    "nr_anon_pages",
    "nr_mapped",
    "nr_file_pages",
    "nr_dirty",
    "nr_writeback",
    "nr_writeback_temp",
    "nr_shmem",
    "nr_shmem_hugepages",
    "nr_shmem_pmdmapped",
    "nr_file_hugepages",
    "nr_file_pmdmapped",
    "nr_anon_transparent_hugepages",
    "nr_vmscan_write",
    "nr_vmscan_immediate_reclaim",
    "nr_dirtied",
    "nr_written",
    "nr_throttled_written",
    "nr_kernel_misc_reclaimable",
    "nr_foll_pin_acquired",
    "nr_foll_pin_released",
    "nr_kernel_stack",
    "nr_page_table_pages",
    "nr_sec_page_table_pages",
    "nr_swapcached",
    "pgpromote_success",
    "pgpromote_candidate",
)


def node_vmstat(k: Kernel, nid: int) -> str:
    """node_read_vmstat(): the counters the model knows; the others are 0."""
    known = node_vmstat_values(k, nid)
    return "".join(f"{n} {known.get(n, 0)}\n" for n in vmstat_names(k))


def zone_stat_values(k: Kernel, c: dict[str, int]) -> dict[str, int]:
    """The vm_zone_stat items and NUMA events the model knows (by vmstat_text name)
    of counts ``c`` (:meth:`Nodes.zone_counts` of a zone, or their sum over a node)."""
    u = user_pages(k, c)
    hit = c["movable"] + c["pinned"] + c["unmovable"]
    return {
        "nr_free_pages": c["free"],
        "nr_zone_inactive_anon": u["inactive_anon"],
        "nr_zone_active_anon": u["active_anon"],
        "nr_zone_unevictable": u["unevictable"],
        "numa_hit": hit,
        "numa_local": hit,
    }


def node_vmstat_values(k: Kernel, nid: int) -> dict[str, int]:
    """The node's vmstat counters the model knows (by vmstat_text name)."""
    c = node_counts(k, nid)
    u = user_pages(k, c)
    known = {
        **zone_stat_values(k, c),
        "nr_inactive_anon": u["inactive_anon"],
        "nr_active_anon": u["active_anon"],
        "nr_unevictable": u["unevictable"],
        "nr_slab_unreclaimable": c["slab"],
        "nr_anon_pages": u["anon"],
        "nr_file_pages": u["shmem"],
        "nr_shmem": u["shmem"],
        "nr_page_table_pages": c["pagetables"],
    }
    return known


def vmstat_names(k: Kernel) -> tuple[str, ...]:
    """vmstat_text[] of the profile's kernel: 6.1's items plus the newer ones."""
    p = k.profile
    zone = VMSTAT_ZONE + (("nr_unaccepted",) if p.unaccepted_memory_stats else ())
    node: tuple[str, ...] = VMSTAT_NODE
    if p.vmstat_iommu_and_pgdemote:
        i = node.index("nr_sec_page_table_pages") + 1
        node = (*node[:i], "nr_iommu_pages", *node[i:], *VMSTAT_PGDEMOTE)
    return zone + VMSTAT_NUMA + node


#: pgdemote_* as node items (6.9+, after pgpromote_candidate).
VMSTAT_PGDEMOTE = ("pgdemote_kswapd", "pgdemote_direct", "pgdemote_khugepaged")


def _mem_available(k: Kernel, free: int) -> int:
    """si_mem_available(): free pages less totalreserve_pages (each zone's high
    watermark and largest lowmem_reserve), plus the reclaimable part of the file
    LRU and of reclaimable slab, which the model does not have (tmpfs pages are
    swap-backed: anon LRU); never below 0."""
    k.pa.ensure_watermarks()
    return max(0, free - k.pa.wmarks.totalreserve_pages)


def meminfo(k: Kernel) -> str:
    """meminfo_proc_show() (fs/proc/meminfo.c) + hugetlb_report_meminfo() +
    arch_report_meminfo() (DirectMap lines), summed over nodes."""
    tot: dict[str, int] = {}
    for nid in k.pgdats:
        for key, v in k.nodes.node_meminfo(nid).items():
            tot[key] = tot.get(key, 0) + v
    kernel = _kernel_pages(k, None, tot["unmovable"])
    pagetables, slab = kernel["pagetables"], kernel["slab"]
    huge = k.hugetlb.nr_huge_pages(None, 2048)  # the default huge page size
    huge_pages = sum(len(p) * sz // 4 for (_n, sz), p in k.hugetlb.pools.items())
    u = user_pages(k, tot)
    commit_limit = (tot["total"] - huge_pages) * 50 // 100
    pt = k.pgtables.counters()
    rows: list[tuple[str, int | None]] = [
        ("MemTotal", _kb(tot["total"])),
        ("MemFree", _kb(tot["free"])),
        ("MemAvailable", _kb(_mem_available(k, tot["free"]))),
        ("Buffers", 0),
        ("Cached", _kb(u["shmem"])),  # NR_FILE_PAGES - swap cache - buffers
        ("SwapCached", 0),
        *_lru_rows(u),
        ("SwapTotal", 0),
        ("SwapFree", 0),
        ("Zswap", 0),
        ("Zswapped", 0),
        ("Dirty", 0),
        ("Writeback", 0),
        ("AnonPages", _kb(u["anon"])),
        ("Mapped", 0),
        ("Shmem", _kb(u["shmem"])),
        ("KReclaimable", 0),
        ("Slab", _kb(slab)),
        ("SReclaimable", 0),
        ("SUnreclaim", _kb(slab)),
        ("KernelStack", 0),
        ("PageTables", _kb(pagetables)),
        ("SecPageTables", 0),
        ("NFS_Unstable", 0),
        ("Bounce", 0),
        ("WritebackTmp", 0),
        ("CommitLimit", _kb(commit_limit)),
        ("Committed_AS", _kb(u["committed"])),
        ("VmallocTotal", 34359738367),
        ("VmallocUsed", 0),
        ("VmallocChunk", 0),
        ("Percpu", 0),
        ("HardwareCorrupted", None),
        *THP_ROWS,
        *UNACCEPTED_ROWS[: int(k.profile.unaccepted_memory_stats)],
    ]
    out = []
    for label, val in rows:
        if val is None:  # "HardwareCorrupted: %5lu kB"
            out.append(f"HardwareCorrupted: {_kb(len(k.hwpoison)):5d} kB\n")  # num_poisoned_pages
        else:
            out.append(f"{(label + ':').ljust(15)} {val:8d} kB\n")
    for label, n in (
        ("HugePages_Total", huge),
        ("HugePages_Free", huge),
        ("HugePages_Rsvd", 0),
        ("HugePages_Surp", 0),
    ):
        out.append(f"{(label + ':').ljust(16)}   {n:5d}\n")
    out.append(f"{'Hugepagesize:':<15} {2048:8d} kB\n")
    out.append(f"{'Hugetlb:':<15} {huge_pages * 4:8d} kB\n")
    out.append(f"{'DirectMap4k:':<15} {pt['direct_4k'] * 4:8d} kB\n")
    out.append(f"{'DirectMap2M:':<15} {pt['direct_2m'] * 2048:8d} kB\n")
    if k.spec.gbpages:
        out.append(f"{'DirectMap1G:':<15} {pt['direct_1g'] * 1048576:8d} kB\n")
    return "".join(out)


#: stable_page_flags() (fs/proc/page.c) of the kernel's unmovable pages by owner kind:
#: page tables carry PG_table (KPF_PGTABLE, pgtable_pte_page_ctor()), slab pages
#: PG_slab; a poisoned page PG_hwpoison; what the page allocator hands out directly
#: (the memmap of hot-added memory: vmemmap_alloc_block() -> alloc_pages_node(); a
#: pgdat or page_cgroup table: kmalloc_large()/alloc_pages_exact()) carries no flag
#: at all.  Any other kernel allocation of the model is a slab page (kmalloc).
_UNMOVABLE_FLAGS: dict[str, int] = {
    "pagetable": 1 << KPF_PGTABLE,
    "hwpoison": 1 << KPF_HWPOISON,
    "memmap": 0,
    "pgdat": 0,
    "page_cgroup": 0,
    "slab": 1 << KPF_SLAB,
}


def _section_flags(k: Kernel, sec: int, flags: np.ndarray) -> None:
    """stable_page_flags() of every page of one section, in a deterministic layout,
    written into ``flags`` (the section's uint64 entries).

    Offline or absent pages are KPF_NOPAGE (pfn_to_online_page() is NULL); in an
    online section: the altmap first, then reserved, the kernel's unmovable pages
    by owner (page tables, poisoned, unflagged, slab: :data:`_UNMOVABLE_FLAGS`),
    pinned, anonymous, tmpfs, huge and free pages, PG_offline pages, then holes (PG_reserved).
    In a virtio-mem Sub-Block Mode block the PG_offline pages are moved to the
    unplugged sub-blocks (:func:`_unplugged_pages`) and the rest keeps its order in
    the plugged ones.  stable_page_flags() reports PageOffline() as KPF_OFFLINE.
    """
    if sec >= k.nr_sections or not k.sparse.online[sec]:
        flags[:] = 1 << KPF_NOPAGE
        return
    c = k.pa.counts[:, sec]
    owners = k.pa.by_section.get(sec, {})
    huge = sum(n for aid, n in owners.items() if k.pa.allocs[aid].kind == "hugetlb")
    # a tmpfs file's pages: swap-backed page cache, neither anonymous nor mapped
    shmem = sum(n for aid, n in owners.items() if k.pa.allocs[aid].kind == "shmem")
    # PG_offline (virtio-mem's fake-offline sub-blocks): KPF_OFFLINE, at the end of
    # the section (the driver unplugs a block from its last sub-block).
    offline = sum(n for aid, n in owners.items() if k.pa.allocs[aid].kind == "offline")
    unmovable = {flag: 0 for flag in (1 << KPF_PGTABLE, 1 << KPF_HWPOISON, 0, 1 << KPF_SLAB)}
    for aid, n in owners.items():
        a = k.pa.allocs[aid]
        if a.state is PageState.UNMOVABLE:
            unmovable[_UNMOVABLE_FLAGS.get(a.kind, 1 << KPF_SLAB)] += n
    seq = [
        (int(c[PageState.ALTMAP]), 1 << KPF_RESERVED),
        (int(c[PageState.RESERVED]) - offline, 1 << KPF_RESERVED),
        *((n, f) for f, n in unmovable.items()),
        (
            int(c[PageState.PINNED]),
            (1 << KPF_LRU)
            | (1 << KPF_ANON)
            | (1 << KPF_MMAP)
            | (1 << KPF_SWAPBACKED)
            | (1 << KPF_UNEVICTABLE),
        ),
        (
            int(c[PageState.MOVABLE]) - huge - shmem,
            (1 << KPF_LRU) | (1 << KPF_ANON) | (1 << KPF_MMAP) | (1 << KPF_SWAPBACKED),
        ),
        (shmem, (1 << KPF_LRU) | (1 << KPF_SWAPBACKED)),
        (huge, (1 << KPF_HUGE) | (1 << KPF_COMPOUND_HEAD)),
        (int(c[PageState.FREE]), 1 << KPF_BUDDY),
        (offline, 1 << KPF_OFFLINE),
    ]
    pos = 0
    for n, f in seq:
        flags[pos : pos + n] = f
        pos += n
    flags[pos:] = 1 << KPF_RESERVED
    if offline:
        pages = _unplugged_pages(k, sec)
        if pages is not None and int(np.count_nonzero(pages)) == offline:
            # The PG_offline pages where the driver's bitmap says, the rest in order.
            rest = np.delete(flags, np.s_[pos - offline : pos])
            unplugged = pages != 0
            flags[~unplugged] = rest
            flags[unplugged] = pages[unplugged]


def _unplugged_pages(k: Kernel, sec: int) -> np.ndarray | None:
    """The flags of the pages of section ``sec`` in sub-blocks virtio-mem holds
    unplugged (``vm->sbm.sb_states``, virtio_mem_sbm_test_sb_unplugged()), 0 for the
    others; None outside Sub-Block Mode blocks.  virtio_mem_set_fake_offline() marks
    exactly those pages PageOffline() (KPF_OFFLINE); those kept back by
    virtio_mem_online_page() when the block was onlined (``onlined`` false) also get
    SetPageDirty() (KPF_DIRTY), those virtio_mem_fake_offline() took later with
    alloc_contig_range() do not."""
    spb = k.memory.sections_per_block
    mb = sec // spb
    for vm in k.virtio.mem.vms:
        bits = vm.sb_plugged.get(mb) if vm.in_sbm else None
        if bits is None:
            continue
        never = vm.sb_never_onlined.get(mb, set())
        sb_flags = [
            0 if p else (1 << KPF_OFFLINE) | ((1 << KPF_DIRTY) if i in never else 0)
            for i, p in enumerate(bits)
        ]
        first = (sec - mb * spb) * PAGES_PER_SECTION
        per_page = np.repeat(np.array(sb_flags, dtype=np.uint64), vm.sb_size // PAGE_SIZE)
        return per_page[first : first + PAGES_PER_SECTION]
    return None


def kpageflags(k: Kernel, offset: int, size: int) -> bytes:
    """kpageflags_read(): 8 bytes per pfn from ``offset`` (a multiple of 8)."""
    if offset % 8 or size % 8:
        size -= size % 8
    max_pfn = k.nr_sections * PAGES_PER_SECTION
    first = offset // 8
    last = min(max_pfn, (offset + size) // 8)
    if first >= last:
        return b""
    s0 = first // PAGES_PER_SECTION
    s1 = -(-last // PAGES_PER_SECTION)
    flags = np.empty((s1 - s0) * PAGES_PER_SECTION, np.uint64)  # (whole sections)
    for sec in range(s0, s1):
        lo = (sec - s0) * PAGES_PER_SECTION
        _section_flags(k, sec, flags[lo : lo + PAGES_PER_SECTION])
    base = s0 * PAGES_PER_SECTION
    return flags[first - base : last - base].tobytes()


def iomem(k: Kernel, cap_sys_admin: bool = True) -> str:
    """/proc/iomem (kernel/resource.c ioresources_init() -> r_show() over
    iomem_resource): the model's resource tree.  The simulation has no reader
    credentials, so it answers as to root; without CAP_SYS_ADMIN 6.1 prints zeros."""
    return k.iomem.render(show_addresses=cap_sys_admin)
