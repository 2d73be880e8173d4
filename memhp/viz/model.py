"""The memory map of a simulated machine, with what the host cannot see.

Reads the model directly (this is not the host tool): the blocks, their zones
(also on a 3.8 kernel, whose sysfs has no ``valid_zones``), the pages of each
block by owner kind (from ``k.pa.counts`` and the allocation registry
``k.pa.by_section``; the kernel's run-time allocations, ``k.kalloc``, are kinds of
their own), and the dependencies between blocks: the memmap of a
hot-added section (``k.sparse.memmap_alloc``) and its page_cgroup table
(``k.sparse.page_cgroup``, 3.8 + MEMCG) are allocations whose extents may lie in other
blocks; the block holding them cannot be offlined while the described block is
online.  In the seed scenario the page_cgroup of memory9..11 lives in memory8.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from memhp.host.memmap_view import (
    BlockContents,
    Dependency,
    FirmwareRange,
    MapBlock,
    MapDevice,
    MemoryMap,
)
from memhp.host.memmap_virtio import SUB_BLOCK, SubBlocks, VirtioRegionMap, merge_spans

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel
    from memhp.sim.machine import SimMachine

#: Dependencies drawn one by one up to this many; beyond, consecutive sources merge.
MAX_SINGLE_DEPS = 16

_KIND_OF: dict[str, str] = {
    "memmap": "memmap",
    "page_cgroup": "page_cgroup",
    "pagetable": "pagetable",
    "slab": "slab",
    "pgdat": "pgdat",
    "kernel_image": "kernel_image",
    "memblock": "reserved",
    "offline": "offline",  # virtio-mem's fake-offline sub-blocks
}


def _content_kind(kind: str, state_name: str) -> str:
    if state_name == "MOVABLE":
        return "movable"
    if state_name == "PINNED":
        return "pinned"
    if state_name == "ALTMAP":
        return "altmap"
    if state_name == "FREE":
        return "free"
    if kind == "offline":
        return "offline"
    k = _KIND_OF.get(kind)
    if k is not None:
        return k
    return "reserved" if state_name == "RESERVED" else "unmovable"


def block_contents(k: Kernel) -> dict[int, BlockContents]:
    """Pages of every present block by content kind."""
    from memhp.kernel.mm.page_alloc import PageState

    spb = k.memory.sections_per_block
    pa = k.pa
    out: dict[int, dict[str, int]] = {}
    free = pa.counts[PageState.FREE]
    for bid in k.memory.blocks:
        s0 = bid * spb
        n = int(free[s0 : s0 + spb].sum())
        out[bid] = {"free": n} if n else {}
    runtime = k.kalloc.allocation_ids()
    for sec, owners in pa.by_section.items():
        d = out.get(sec // spb)
        if d is None:
            continue
        for aid, n in owners.items():
            a = pa.allocs[aid]
            key = _content_kind(a.kind, a.state.name)
            if aid in runtime and key in ("slab", "pagetable"):
                key = f"runtime_{key}"
            d[key] = d.get(key, 0) + n
    return {b: BlockContents(d) for b, d in out.items()}


def dependencies(k: Kernel, max_single: int = MAX_SINGLE_DEPS) -> list[Dependency]:
    """Which block holds the memmap / page_cgroup of which other block."""
    spb = k.memory.sections_per_block
    raw: dict[tuple[int, int], dict[str, int]] = {}

    def add(sec: int, aid: int, kind: str) -> None:
        a = k.pa.allocs.get(aid)
        if a is None:
            return
        src = sec // spb
        for dsec, n in a.extents.items():
            dst = dsec // spb
            if dst != src and dst in k.memory.blocks:
                d = raw.setdefault((src, dst), {})
                d[kind] = d.get(kind, 0) + n

    for sec in k.sparse.memmap_alloc.nonzero()[0].tolist():
        add(int(sec), int(k.sparse.memmap_alloc[sec]), "memmap")
    for sec, aid in sorted(k.sparse.page_cgroup.items()):
        add(sec, aid, "page_cgroup")
    singles = [
        Dependency(src, src, dst, tuple(sorted(kinds)), sum(kinds.values()))
        for (src, dst), kinds in sorted(raw.items())
    ]
    if len(singles) <= max_single:
        return singles
    # Merge runs of consecutive sources with the same destination and kinds.
    merged: list[Dependency] = []
    for d in sorted(singles, key=lambda x: (x.dst, x.kinds, x.src_first)):
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.dst == d.dst
            and last.kinds == d.kinds
            and last.src_last + 1 == d.src_first
        ):
            merged[-1] = Dependency(
                last.src_first, d.src_last, d.dst, d.kinds, last.pages + d.pages
            )
        else:
            merged.append(d)
    merged.sort(key=lambda x: (x.src_first, x.dst))
    if len(merged) <= max_single:
        return merged
    # Still many: merge neighbouring sources whose destinations are neighbours too.
    out: list[Dependency] = []
    for d in sorted(merged, key=lambda x: (x.kinds, x.src_first)):
        last = out[-1] if out else None
        if last is not None and last.kinds == d.kinds and d.src_first <= last.src_last + 1:
            lo, hi = last.dst, max(last.dst, last.dst_last)
            if lo - 1 <= d.dst <= hi + 1:
                out[-1] = Dependency(
                    last.src_first,
                    max(last.src_last, d.src_last),
                    min(lo, d.dst),
                    d.kinds,
                    last.pages + d.pages,
                    max(hi, d.dst),
                )
                continue
        out.append(d)
    return sorted(out, key=lambda x: (x.src_first, x.dst))


def virtio_regions(k: Kernel) -> list[VirtioRegionMap]:
    """The virtio-mem device regions from the driver's state (struct virtio_mem):
    ``addr``/``region_size``, the memory blocks added in it, and for its online blocks
    the plugged sub-blocks (Sub-Block Mode: ``vm->sbm.sb_states``; Big-Block Mode adds
    whole big blocks, all plugged), in :data:`SUB_BLOCK` units."""
    from memhp.kernel.drivers.base.memory import MemState

    bs = k.memory.block_size
    out = []
    for vm in sorted(k.virtio.mem.vms, key=lambda v: v.addr):
        end = vm.addr + vm.region_size
        mine = sorted(b for b in k.memory.blocks if vm.addr <= b * bs < end)
        subs = []
        for b in mine:
            if k.memory.blocks[b].state is not MemState.MEM_ONLINE:
                continue
            units = bs // SUB_BLOCK
            bits = vm.sb_plugged.get(b) if vm.in_sbm else None
            if bits is None:
                plugged = (True,) * units
            else:
                plugged = tuple(p for p in bits for _ in range(vm.sb_size // SUB_BLOCK))
            subs.append(SubBlocks(b, b * bs, plugged))
        added = merge_spans((b * bs, (b + 1) * bs) for b in mine)
        out.append(VirtioRegionMap(vm.name, vm.addr, end, vm.nid, added, tuple(mine), tuple(subs)))
    return out


def machine_map(m: SimMachine | Kernel, title: str | None = None) -> MemoryMap:
    """The map of a simulated machine at this instant, with contents and dependencies.

    The result is a snapshot: later changes to the machine do not affect it.
    """
    from memhp.kernel.kernel import Kernel as _Kernel
    from memhp.kernel.mm.mmzone import ZONE_NAMES

    k = m if isinstance(m, _Kernel) else m.kernel
    with_lock = not isinstance(m, _Kernel)
    if with_lock:
        m.lock.acquire()  # type: ignore[union-attr]
    try:
        bs = k.memory.block_size
        blocks: list[MapBlock] = []
        for bid in sorted(k.memory.blocks):
            b = k.memory.blocks[bid]
            state = b.state.value
            zones: tuple[str, ...] | None = None
            if state == "online":
                zones = (ZONE_NAMES[b.zone],) if b.zone is not None else ("none",)
            node = min(b.nodes) if b.nodes else (b.nid if b.nid >= 0 else None)
            blocks.append(MapBlock(bid, bid * bs, bs, state, zones, node, b.acpi_device))
        by_dev: dict[str, list[int]] = {}
        for mb in blocks:
            if mb.device is not None:
                by_dev.setdefault(mb.device, []).append(mb.index)
        devices = [
            MapDevice(name, "acpi", tuple(idx), idx[0] * bs, (idx[-1] + 1) * bs, True)
            for name, idx in sorted(by_dev.items())
        ]
        virtio = virtio_regions(k)
        in_region = {i: r.name for r in virtio for i in r.blocks}
        blocks = [
            replace(b, device=in_region[b.index]) if b.index in in_region else b for b in blocks
        ]
        fw = [FirmwareRange(e.start, e.end + 1, e.type) for e in k.fwmap.entries]
        fw.sort(key=lambda f: f.start)
        return MemoryMap(
            title=title if title is not None else f"simulated machine {k.spec.name}",
            block_size=bs,
            blocks=blocks,
            devices=devices,
            firmware=fw,
            nodes=sorted(k.nodes.node_states["N_POSSIBLE"]),
            contents=block_contents(k),
            deps=dependencies(k),
            notes=[f"{k.profile.name}, MEMCG {'on' if k.spec.memcg else 'off'}"],
            virtio=virtio,
        )
    finally:
        if with_lock:
            m.lock.release()  # type: ignore[union-attr]
