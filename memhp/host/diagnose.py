"""Why a block will not go offline or be removed (``memhp why``).

Looks at what the kernel exposes: the block's state and zone (an online block whose
``valid_zones`` is ``none`` spans several zones and is refused with EINVAL by
``offline_pages``), its node links, whether the firmware memmap covers it fully
(holes), ``memory_hotplug.memmap_on_memory`` (the memmap of hot-added memory may
live on the memory itself), and, when ``/proc/kpageflags`` is readable under the
root, the pages in the block counted by kind (KPF_* bits from
include/uapi/linux/kernel-page-flags.h and include/linux/kernel-page-flags.h).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from memhp.abi.iomem import is_virtio_parent
from memhp.abi.kpageflags import (
    KPF_BUDDY,
    KPF_ENTRY_SIZE,
    KPF_HUGE,
    KPF_HWPOISON,
    KPF_LRU,
    KPF_MLOCKED,
    KPF_NOPAGE,
    KPF_OFFLINE,
    KPF_PGTABLE,
    KPF_RESERVED,
    KPF_SLAB,
    KPF_THP,
    KPF_UNEVICTABLE,
)
from memhp.abi.layout import PAGE_SIZE
from memhp.abi.paths import PROC_KPAGEFLAGS, SYS_MEMORY
from memhp.abi.zones import ZONE_MOVABLE
from memhp.host.devices import device_of_block
from memhp.host.errors import SysfsError
from memhp.host.memory import (
    MemoryBlock,
    block_size,
    firmware_memmap,
    memmap_on_memory_param,
    read_block,
)
from memhp.host.room import Room, room_for
from memhp.host.root import SysfsRoot

#: Page kinds, in the order they are decided (first match wins).
PAGE_KINDS: tuple[tuple[str, int], ...] = (
    ("nopage", 1 << KPF_NOPAGE),
    ("offline", 1 << KPF_OFFLINE),
    ("hwpoison", 1 << KPF_HWPOISON),
    ("free", 1 << KPF_BUDDY),
    ("reserved", 1 << KPF_RESERVED),
    ("slab", 1 << KPF_SLAB),
    ("pagetable", 1 << KPF_PGTABLE),
    ("hugetlb", 1 << KPF_HUGE),
    ("unevictable", (1 << KPF_UNEVICTABLE) | (1 << KPF_MLOCKED)),
    ("thp", 1 << KPF_THP),
    ("lru", 1 << KPF_LRU),
)
#: Kinds that offline_pages cannot migrate away (the others usually can be).  Mlocked
#: and unevictable pages are migrated like any LRU page; only the kernel's own pages
#: (and pinned ones, which /proc/kpageflags does not show) block offlining.  A
#: poisoned page is skipped by offline_pages (do_migrate_range(),
#: test_pages_isolated() with MEMORY_OFFLINE).
UNMOVABLE_KINDS = ("reserved", "slab", "pagetable", "other")
#: The kernel's own allocations made after boot, by owner: pages with PG_slab (kmalloc
#: and the object caches: inodes, dentries, page-cache xarray nodes...), with
#: PG_table (page tables), or with no flag at all (alloc_pages() of the kernel: the
#: memmap of hot-added memory, large kmalloc, vmalloc).  ``reserved`` pages are boot
#: reservations (memblock: kernel image, boot memmap, firmware) or the memmap that
#: memmap_on_memory placed on the block itself.
RUNTIME_KINDS = ("slab", "pagetable", "other")
#: The kind of pages none of :data:`PAGE_KINDS` matches (kernel pages from
#: alloc_pages() carry no flag; so do free pages on the per-CPU lists).
UNFLAGGED = "other"
#: How each kind is named in the report.
KIND_LABELS: dict[str, str] = {
    "nopage": "no page (offline or hole)",
    "offline": "offline (logically offline: balloon, virtio-mem)",
    "hwpoison": "poisoned (hwpoison)",
    "free": "free",
    "reserved": "reserved (boot reservation, memmap on memory)",
    "slab": "slab (kernel objects)",
    "pagetable": "page tables",
    "hugetlb": "hugetlb",
    "unevictable": "unevictable / mlocked",
    "thp": "transparent huge pages",
    "lru": "user / page cache (LRU)",
    "other": "kernel, no page flag (alloc_pages)",
}
#: The owner of each unmovable kind, in the reasons.
_OWNER: dict[str, str] = {
    "slab": "slab",
    "pagetable": "page tables",
    "other": "unflagged kernel pages",
    "reserved": "reserved",
}


def classify(flags: int) -> str:
    for kind, mask in PAGE_KINDS:
        if flags & mask:
            return kind
    return "other"


@dataclass
class Diagnosis:
    block: MemoryBlock
    device: str | None
    nodes: list[int]
    memmap_on_memory: bool | None
    holes: bool | None  # None when there is no firmware memmap
    pages: dict[str, int] | None  # None when /proc/kpageflags is not readable
    pages_error: str | None = None
    reasons: list[str] = field(default_factory=list)
    offlinable: bool = True
    #: the room for its pages elsewhere (an online block with readable kpageflags)
    room: Room | None = None

    def to_json(self) -> dict[str, object]:
        b = self.block
        return {
            "block": b.index,
            "range": [b.start, b.end],
            "state": b.state,
            "valid_zones": list(b.valid_zones) if b.valid_zones is not None else None,
            "zone": b.zone,
            "spans_zones": b.spans_zones,
            "nodes": self.nodes,
            "removable": b.removable,
            "device": self.device,
            "memmap_on_memory": self.memmap_on_memory,
            "holes": self.holes,
            "pages": self.pages,
            "runtime_kernel_pages": (
                {k: self.pages[k] for k in RUNTIME_KINDS if self.pages.get(k)}
                if self.pages is not None
                else None
            ),
            "room": self.room.to_json() if self.room is not None else None,
            "offlinable": self.offlinable,
            "reasons": self.reasons,
        }


#: kpageflags entries compared at a time by :func:`count_pages`.
_RUN = 512
#: kpageflags entries read at a time: tools/mm/page-types.c's walk_pfn() reads
#: KPAGEFLAGS_BATCH (64k) entries per pread() (a 2 GiB block is 8 reads of 512 KiB,
#: not one of 4 MiB).  A multiple of :data:`_RUN`.
KPAGEFLAGS_BATCH = 64 << 10


def count_pages(root: SysfsRoot, block: MemoryBlock) -> dict[str, int]:
    """Pages of ``block`` by kind, from ``/proc/kpageflags`` (raises SysfsError).

    Kinds appear in the order of their first page.  The entries are read
    :data:`KPAGEFLAGS_BATCH` at a time and compared in runs of :data:`_RUN` (a run
    of identical flags, the common case, is counted at once); each distinct flags
    value is classified once.  Entries the file does not have (past the last pfn)
    are "nopage".
    """
    npages = block.size // PAGE_SIZE
    first = block.start // PAGE_SIZE
    counts: dict[str, int] = {}
    kinds: dict[int, str] = {}
    step = _RUN * KPF_ENTRY_SIZE
    n = 0  # entries read
    while n < npages:
        want = min(KPAGEFLAGS_BATCH, npages - n)
        raw = root.read_at(PROC_KPAGEFLAGS, (first + n) * KPF_ENTRY_SIZE, want * KPF_ENTRY_SIZE)
        got = len(raw) // KPF_ENTRY_SIZE
        end = got * KPF_ENTRY_SIZE
        for pos in range(0, end, step):
            run = raw[pos : min(pos + step, end)]
            m = len(run) // KPF_ENTRY_SIZE
            if run == run[:KPF_ENTRY_SIZE] * m:  # one flags value throughout
                values: tuple[int, ...] = struct.unpack_from("<Q", run)
                weight = m
            else:
                values, weight = struct.unpack(f"<{m}Q", run), 1
            for flags in values:
                kind = kinds.get(flags)
                if kind is None:
                    kind = kinds[flags] = classify(flags)
                counts[kind] = counts.get(kind, 0) + weight
        n += got
        if got < want:
            break
    if n < npages:
        counts["nopage"] = counts.get("nopage", 0) + npages - n
    return counts


def diagnose(root: SysfsRoot, index: int) -> Diagnosis:
    """Everything that explains whether block ``index`` can be offlined/removed."""
    bs = block_size(root)
    blk = read_block(root, index, bs)
    try:
        nodes = sorted(
            int(e[4:])
            for e in root.listdir(f"{SYS_MEMORY}/memory{index}")
            if e.startswith("node") and e[4:].isdigit()
        )
    except SysfsError:
        nodes = []
    device = device_of_block(root, index)
    entries = firmware_memmap(root)
    holes: bool | None = None
    # memory a driver added (virtio-mem) has no firmware memmap entry by design
    if entries and not is_virtio_parent(device or ""):
        covered = 0
        for e in entries:
            if e.type != "System RAM":
                continue
            lo, hi = max(e.start, blk.start), min(e.end, blk.end)
            if lo <= hi:
                covered += hi - lo + 1
        holes = covered < blk.size
    pages: dict[str, int] | None = None
    pages_error = None
    try:
        pages = count_pages(root, blk)
    except SysfsError as e:
        pages_error = str(e)
    d = Diagnosis(blk, device, nodes, memmap_on_memory_param(root), holes, pages, pages_error)
    r = d.reasons
    if blk.state == "offline":
        r.append("the block is already offline")
        d.offlinable = False
    elif blk.state is None:
        r.append("the block's state cannot be read")
    elif blk.state == "going-offline":
        r.append("an offline of this block is in progress")
    if blk.spans_zones:
        r.append(
            "it spans several zones (valid_zones is 'none'): the kernel refuses to "
            "offline it (EINVAL)"
        )
        d.offlinable = False
    elif blk.zone is not None and blk.zone != ZONE_MOVABLE:
        r.append(
            f"it is in zone {blk.zone}, not Movable: the kernel's own unmovable pages there "
            "make the offline fail (EBUSY, has_unmovable_pages), pages pinned by a driver "
            "or I/O make it retry until the writer is interrupted (EINTR)"
        )
    if len(nodes) > 1:
        r.append(f"it spans several nodes ({', '.join(map(str, nodes))})")
        d.offlinable = False
    if holes:
        r.append("the firmware memmap does not cover it fully as System RAM (holes)")
        d.offlinable = False
    if blk.removable is False and blk.online:
        r.append("the kernel reports it as not removable (removable=0)")
    if d.memmap_on_memory and device is not None:
        r.append(
            "memmap_on_memory is enabled: the memmap of hot-added memory may live on the "
            "memory itself, so the device's blocks can only be removed together"
        )
    if device is None and blk.online:
        r.append("it belongs to no hot-pluggable device (boot memory): it cannot be ejected")
    if pages is not None and blk.online:
        movable = blk.zone == ZONE_MOVABLE and not blk.spans_zones
        runtime = [
            (k, pages.get(k, 0))
            for k in RUNTIME_KINDS
            if pages.get(k, 0) and not (movable and k == UNFLAGGED)
        ]
        if runtime:
            desc = ", ".join(f"{v} {_OWNER[k]}" for k, v in runtime)
            r.append(f"the kernel allocated pages here at run time that it cannot migrate: {desc}")
            d.offlinable = False
        if movable and pages.get(UNFLAGGED, 0):
            r.append(
                f"{pages[UNFLAGGED]} pages carry no flag memhp classifies: in ZONE_MOVABLE "
                "they are not kernel allocations (gfp_zone() gives those a kernel zone) but "
                "free pages on the per-CPU lists or pages off the LRU for a moment "
                "(reclaim, compaction); counted as pages to migrate"
            )
        d.room = room_for(
            root,
            [pages],
            also=(UNFLAGGED,) if movable else (),
            node=nodes[0] if len(nodes) == 1 else None,
            kernel_zone=blk.zone is not None and not movable,
        )
        if d.room is not None and not d.room.enough:
            r.append(d.room.reason())
            d.offlinable = False
        if pages.get("hugetlb", 0):
            r.append(hugetlb_note(pages["hugetlb"]))
        if pages.get("reserved", 0):
            r.append(
                f"{pages['reserved']} reserved pages (boot reservations, or the memmap "
                "that memmap_on_memory put on the block)"
            )
            d.offlinable = d.offlinable and device is not None and bool(d.memmap_on_memory)
    return d


def hugetlb_note(pages: int) -> str:
    """What offline_pages() does with huge pages of the hugetlb pool (KPF_HUGE)."""
    return (
        f"{pages * PAGE_SIZE / (1 << 20):.0f} MiB are huge pages of the hugetlb pool: "
        "offlining dissolves the free ones, so the node's nr_hugepages drops by as many "
        "(dissolve_free_huge_pages()); huge pages in use are migrated first"
    )


def format_diagnosis(d: Diagnosis) -> str:
    b = d.block
    lines = [f"memory{b.index} (0x{b.start:016x}-0x{b.end:016x})"]
    verdict = "can be offlined" if d.offlinable else "cannot be offlined"
    lines.append(f"  verdict:          {verdict}")
    lines.append(f"  state:            {b.state or '?'}")
    if b.valid_zones is not None:
        lines.append(f"  valid_zones:      {' '.join(b.valid_zones)}")
    if b.zone is not None:
        lines.append(f"  zone:             {'several (none)' if b.spans_zones else b.zone}")
    lines.append(f"  node:             {','.join(map(str, d.nodes)) or '-'}")
    if b.removable is not None:
        lines.append(f"  removable:        {'yes' if b.removable else 'no'}")
    lines.append(f"  device:           {d.device or '-'}")
    if d.memmap_on_memory is not None:
        lines.append(f"  memmap_on_memory: {'yes' if d.memmap_on_memory else 'no'}")
    if d.holes is not None:
        lines.append(f"  holes:            {'yes' if d.holes else 'no'}")
    if d.pages is not None:
        total = sum(d.pages.values())
        lines.append(f"  pages ({total}):")
        for kind, n in sorted(d.pages.items(), key=lambda kv: -kv[1]):
            lines.append(f"    {KIND_LABELS.get(kind, kind):<36} {n:>8}")
    else:
        lines.append(f"  pages:            unknown ({d.pages_error})")
    if d.room is not None:
        lines.append(f"  room:             {d.room.describe()}")
    if d.reasons:
        lines.append("why:" if not d.offlinable else "notes (none prevents offlining):")
        lines.extend(f"  - {x}" for x in d.reasons)
    else:
        lines.append("why: nothing found that prevents offlining this block")
    return "\n".join(lines) + "\n"
