"""virtio-mem devices as the guest sees them.

``/sys/bus/virtio/devices/virtioN`` with ``device`` 0x0018 (VIRTIO_ID_MEM) and its
``driver`` link name the devices; /proc/iomem gives each bound device's region
("virtioN", virtio_mem_create_resource()) and the memory blocks the driver added
in it ("System RAM (virtio_mem)", add_memory_driver_managed()); the memory blocks
are those of ``/sys/devices/system/memory`` inside the added ranges.

Linux exposes no plugged size in the guest.  It is estimated from the blocks: an
offline block counts whole (the driver may hold it partly plugged), in an online
block the sub-blocks the driver unplugged are PG_offline pages in /proc/kpageflags
(fake offline).  The unplug estimate looks at the pages of each online block in
pageblock-sized sub-blocks (the sub-block size of a device with QEMU's default 2 MiB
block size): a sub-block holding a page the kernel cannot migrate (the unmovable
kinds of :mod:`memhp.host.diagnose`) stays plugged, the others can go.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from memhp.abi.kpageflags import KPF_ENTRY_SIZE
from memhp.abi.layout import PAGE_SIZE, PAGEBLOCK_NR_PAGES
from memhp.abi.paths import PROC_KPAGEFLAGS, SYS_VIRTIO_DEVICES
from memhp.abi.virtio import VIRTIO_ID_MEM
from memhp.host.diagnose import KIND_LABELS, UNMOVABLE_KINDS, classify
from memhp.host.errors import SysfsError, UsageError
from memhp.host.iomem import VirtioRegion, virtio_regions
from memhp.host.memory import MemoryBlock, block_indices, block_size, read_block
from memhp.host.root import SysfsRoot

#: The sub-block size the estimate works in (pageblock_order pages).
SUB_BLOCK = PAGEBLOCK_NR_PAGES * PAGE_SIZE


@dataclass(frozen=True)
class BlockUnplug:
    """What the driver could do with one of its memory blocks now."""

    block: MemoryBlock
    plugged: int  # bytes plugged (offline block: the whole block)
    unpluggable: int  # bytes of it that could be unplugged now
    reasons: tuple[str, ...]  # why the rest is held

    @property
    def held(self) -> int:
        return self.plugged - self.unpluggable


@dataclass(frozen=True)
class VirtioMemDevice:
    """One virtio-mem device of the guest."""

    name: str  # virtio0
    driver: str | None
    region: VirtioRegion | None  # None: not bound, or /proc/iomem unreadable
    blocks: tuple[BlockUnplug, ...]

    @property
    def plugged(self) -> int:
        return sum(b.plugged for b in self.blocks)

    @property
    def unpluggable(self) -> int:
        return sum(b.unpluggable for b in self.blocks)

    @property
    def nodes(self) -> tuple[int, ...]:
        return tuple(sorted({b.block.node for b in self.blocks if b.block.node is not None}))

    @property
    def zones(self) -> tuple[str, ...]:
        out: list[str] = []
        for b in self.blocks:
            z = b.block.zone
            if z is not None and z not in out:
                out.append(z)
        return tuple(out)


def _is_virtio_mem(root: SysfsRoot, name: str) -> bool:
    text = root.read_str_optional(f"{SYS_VIRTIO_DEVICES}/{name}/device")
    try:
        return text is not None and int(text.strip(), 16) == VIRTIO_ID_MEM
    except ValueError:
        return False


def block_unplug(root: SysfsRoot, blk: MemoryBlock) -> BlockUnplug:
    """The plugged and unpluggable bytes of one block and what holds the rest."""
    if not blk.online:
        return BlockUnplug(blk, blk.size, blk.size, ())
    try:
        raw = root.read_at(
            PROC_KPAGEFLAGS, blk.start // PAGE_SIZE * KPF_ENTRY_SIZE, blk.size // PAGE_SIZE * 8
        )
    except SysfsError as e:
        return BlockUnplug(blk, blk.size, 0, (f"its pages cannot be read ({e})",))
    n = len(raw) // KPF_ENTRY_SIZE
    kinds = [classify(f) for f in struct.unpack(f"<{n}Q", raw[: n * KPF_ENTRY_SIZE])]
    plugged = unpluggable = held_sbs = 0
    held: dict[str, int] = {}
    for i in range(0, n, PAGEBLOCK_NR_PAGES):
        sub = kinds[i : i + PAGEBLOCK_NR_PAGES]
        if all(k == "offline" for k in sub):
            continue  # unplugged: fake offline
        plugged += SUB_BLOCK
        stuck = [k for k in sub if k in UNMOVABLE_KINDS]
        if not stuck:
            unpluggable += SUB_BLOCK
            continue
        held_sbs += 1
        for k in stuck:
            held[k] = held.get(k, 0) + 1
    reasons: tuple[str, ...] = ()
    if held_sbs:
        what = ", ".join(f"{v} {KIND_LABELS.get(k, k)}" for k, v in sorted(held.items()))
        reasons = (f"{held_sbs} sub-blocks hold pages alloc_contig_range() cannot move: {what}",)
    return BlockUnplug(blk, plugged, unpluggable, reasons)


def list_virtio_mem(root: SysfsRoot) -> list[VirtioMemDevice]:
    """The virtio-mem devices of the root, by name."""
    try:
        names = root.listdir(SYS_VIRTIO_DEVICES)
    except SysfsError:
        return []
    names = sorted((n for n in names if _is_virtio_mem(root, n)), key=lambda n: int(n[6:] or 0))
    if not names:
        return []
    regions = virtio_regions(root)
    try:
        bsize = block_size(root)
        indices = block_indices(root)
    except UsageError:
        bsize, indices = 0, []
    out = []
    for name in names:
        target = root.link_target(f"{SYS_VIRTIO_DEVICES}/{name}/driver")
        driver = target.rsplit("/", 1)[-1] if target else None
        region = regions.get(name)
        blocks: list[BlockUnplug] = []
        if region is not None and bsize:
            for i in indices:
                start = i * bsize
                if any(a <= start <= b for a, b in region.added):
                    try:
                        blocks.append(block_unplug(root, read_block(root, i, bsize)))
                    except UsageError:
                        continue  # a block going away
        out.append(VirtioMemDevice(name, driver, region, tuple(blocks)))
    return out


def find_virtio_mem(root: SysfsRoot, spec: str) -> VirtioMemDevice:
    """The virtio-mem device named ``spec`` (``virtioN`` or its sysfs path)."""
    name = spec.rstrip("/").rsplit("/", 1)[-1]
    for d in list_virtio_mem(root):
        if d.name == name:
            return d
    raise UsageError(f"unknown virtio-mem device: {spec}")
