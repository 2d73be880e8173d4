"""Formatting of meminfo, numastat, vmstat and /proc/kpageflags from the model.

drivers/base/node.c (node_read_meminfo, node_read_numastat, node_read_vmstat),
fs/proc/meminfo.c (meminfo_proc_show) and fs/proc/page.c (kpageflags_read,
stable_page_flags).  Counts the model does not track (file pages, dirty...)
are 0: the model has anonymous user memory, kernel allocations and free pages.
"""

from __future__ import annotations

import numpy as np

from memhp.kernel.constants import PAGE_SIZE, PAGES_PER_SECTION
from memhp.kernel.kernel import Kernel
from memhp.kernel.page_alloc import PageState

KPF_LRU = 5
KPF_SLAB = 7
KPF_BUDDY = 10
KPF_MMAP = 11
KPF_ANON = 12
KPF_SWAPBACKED = 14
KPF_UNEVICTABLE = 18
KPF_HWPOISON = 19
KPF_NOPAGE = 20
KPF_OFFLINE = 23
KPF_PGTABLE = 26
KPF_RESERVED = 32


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


def node_counts(k: Kernel, nid: int) -> dict[str, int]:
    mi = k.node_meminfo(nid)
    mi["pagetables"] = _kind_pages(k, nid, ("pagetable",))
    mi["slab"] = mi["unmovable"] - mi["pagetables"]
    return mi


def node_meminfo(k: Kernel, nid: int) -> str:
    """node_read_meminfo()."""
    c = node_counts(k, nid)
    anon = c["movable"] + c["pinned"]
    rows: list[tuple[str, int]] = [
        ("MemTotal", _kb(c["total"])),
        ("MemFree", _kb(c["free"])),
        ("MemUsed", _kb(c["total"] - c["free"])),
        ("SwapCached", 0),
        ("Active", _kb(anon)),
        ("Inactive", 0),
        ("Active(anon)", _kb(anon)),
        ("Inactive(anon)", 0),
        ("Active(file)", 0),
        ("Inactive(file)", 0),
        ("Unevictable", _kb(c["pinned"])),
        ("Mlocked", 0),
        ("Dirty", 0),
        ("Writeback", 0),
        ("FilePages", 0),
        ("Mapped", 0),
        ("AnonPages", _kb(anon)),
        ("Shmem", 0),
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
        ("AnonHugePages", 0),
        ("ShmemHugePages", 0),
        ("ShmemPmdMapped", 0),
        ("FileHugePages", 0),
        ("FilePmdMapped", 0),
    ]
    out = []
    for label, val in rows:
        # "Node %d MemTotal:       %8lu kB": the label and colon padded to 16 columns,
        # except the two *Pages lines whose format has one space less.
        pad = 15 if label in ("FileHugePages", "FilePmdMapped") else 16
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


def node_vmstat(k: Kernel, nid: int) -> str:
    """node_read_vmstat(): the zone and node counters the model knows."""
    c = node_counts(k, nid)
    anon = c["movable"] + c["pinned"]
    rows = [
        ("nr_free_pages", c["free"]),
        ("nr_zone_inactive_anon", 0),
        ("nr_zone_active_anon", anon),
        ("nr_zone_inactive_file", 0),
        ("nr_zone_active_file", 0),
        ("nr_zone_unevictable", c["pinned"]),
        ("nr_zone_write_pending", 0),
        ("nr_mlock", 0),
        ("nr_bounce", 0),
        ("nr_zspages", 0),
        ("nr_free_cma", 0),
        ("nr_inactive_anon", 0),
        ("nr_active_anon", anon),
        ("nr_unevictable", c["pinned"]),
        ("nr_anon_pages", anon),
        ("nr_slab_unreclaimable_B", _kb(c["slab"]) * 1024),
        ("nr_page_table_pages", c["pagetables"]),
    ]
    return "".join(f"{n} {v}\n" for n, v in rows)


def meminfo(k: Kernel) -> str:
    """meminfo_proc_show(): the first lines, summed over nodes."""
    tot = {"total": 0, "free": 0, "movable": 0, "pinned": 0, "unmovable": 0}
    for nid in k.pgdats:
        for key, v in k.node_meminfo(nid).items():
            tot[key] += v
    anon = tot["movable"] + tot["pinned"]
    rows = [
        ("MemTotal", _kb(tot["total"])),
        ("MemFree", _kb(tot["free"])),
        ("MemAvailable", _kb(tot["free"])),
        ("Buffers", 0),
        ("Cached", 0),
        ("SwapCached", 0),
        ("Active", _kb(anon)),
        ("Inactive", 0),
        ("Active(anon)", _kb(anon)),
        ("Inactive(anon)", 0),
        ("Active(file)", 0),
        ("Inactive(file)", 0),
        ("Unevictable", _kb(tot["pinned"])),
        ("Mlocked", 0),
        ("SwapTotal", 0),
        ("SwapFree", 0),
        ("AnonPages", _kb(anon)),
        ("Slab", _kb(tot["unmovable"])),
        ("SUnreclaim", _kb(tot["unmovable"])),
    ]
    return "".join(f"{(label + ':').ljust(15)} {v:8d} kB\n" for label, v in rows)


def _section_flags(k: Kernel, sec: int) -> np.ndarray:
    """stable_page_flags() of every page of one section, in a deterministic layout.

    Offline or absent pages are KPF_NOPAGE (pfn_to_online_page() is NULL); in an
    online section: the altmap first, then reserved, kernel, pinned, movable and
    free pages, then holes (PG_reserved).
    """
    flags = np.full(PAGES_PER_SECTION, 1 << KPF_NOPAGE, np.uint64)
    if sec >= k.nr_sections or not k.sparse.online[sec]:
        return flags
    c = k.pa.counts[:, sec]
    pt = sum(
        n for aid, n in k.pa.by_section.get(sec, {}).items() if k.pa.allocs[aid].kind == "pagetable"
    )
    seq = [
        (int(c[PageState.ALTMAP]), 1 << KPF_RESERVED),
        (int(c[PageState.RESERVED]), 1 << KPF_RESERVED),
        (pt, 1 << KPF_PGTABLE),
        (int(c[PageState.UNMOVABLE]) - pt, 1 << KPF_SLAB),
        (
            int(c[PageState.PINNED]),
            (1 << KPF_LRU)
            | (1 << KPF_ANON)
            | (1 << KPF_MMAP)
            | (1 << KPF_SWAPBACKED)
            | (1 << KPF_UNEVICTABLE),
        ),
        (
            int(c[PageState.MOVABLE]),
            (1 << KPF_LRU) | (1 << KPF_ANON) | (1 << KPF_MMAP) | (1 << KPF_SWAPBACKED),
        ),
        (int(c[PageState.FREE]), 1 << KPF_BUDDY),
    ]
    pos = 0
    for n, f in seq:
        flags[pos : pos + n] = f
        pos += n
    flags[pos:] = 1 << KPF_RESERVED
    return flags


def kpageflags(k: Kernel, offset: int, size: int) -> bytes:
    """kpageflags_read(): 8 bytes per pfn from ``offset`` (a multiple of 8)."""
    if offset % 8 or size % 8:
        size -= size % 8
    max_pfn = k.nr_sections * PAGES_PER_SECTION
    first = offset // 8
    last = min(max_pfn, (offset + size) // 8)
    if first >= last:
        return b""
    out = []
    pfn = first
    while pfn < last:
        sec = pfn // PAGES_PER_SECTION
        lo = pfn - sec * PAGES_PER_SECTION
        hi = min(PAGES_PER_SECTION, last - sec * PAGES_PER_SECTION)
        out.append(_section_flags(k, sec)[lo:hi].tobytes())
        pfn = sec * PAGES_PER_SECTION + hi
    return b"".join(out)
