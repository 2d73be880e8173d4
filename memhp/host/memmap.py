"""The physical memory map of a sysfs root, as data (what ``memhp map`` draws).

The drawing side (address axis, binning, text map) is :mod:`memhp.host.memmap_view`,
which re-exports everything here.

:func:`read_memory_map` turns any :class:`~memhp.host.root.SysfsRoot` (``/sys``, a
captured tree, a simulated machine) into a :class:`MemoryMap`: the memory blocks
with their state, zone, node and device, the memory devices (ACPI PNP0C80, from
their ``physical_node`` links, or the blocks' ``firmware_node`` links), the firmware
memmap ranges with their types, the virtio-mem device regions with their plugged and
unplugged sub-blocks (:mod:`memhp.host.memmap_virtio`), and the holes (address
ranges no block covers). :class:`AddressScale` maps addresses to a drawing axis
where large holes are compressed, and :func:`bin_blocks` aggregates blocks into
columns when there are more blocks than can be drawn one by one (both in
memmap_view).

A simulated machine can add what the host cannot see (:mod:`memhp.viz.model`):
what each block contains (:class:`BlockContents`) and which block holds the
metadata of which (:class:`Dependency`).  Nothing here imports matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from memhp.abi.acpi import MEMORY_DEVICE_HID
from memhp.abi.paths import SYS_ACPI_DEVICES, SYS_MEMORY, SYS_NODE
from memhp.abi.zones import VALID_ZONES_NONE, ZONE_NAMES
from memhp.host.devices import device_block_indices
from memhp.host.errors import SysfsError
from memhp.host.memmap_virtio import VirtioRegionMap, read_virtio_map
from memhp.host.memory import block_indices, block_size, firmware_memmap, node_ids
from memhp.host.root import SysfsRoot

# -- block categories (state and zone) -------------------------------------------------

#: Block categories in legend order: (key, label, text-map character).
CATEGORIES: tuple[tuple[str, str, str], ...] = (
    ("online:DMA", "online, zone DMA", "D"),
    ("online:DMA32", "online, zone DMA32", "d"),
    ("online:Normal", "online, zone Normal", "N"),
    ("online:Movable", "online, zone Movable", "M"),
    ("online:Device", "online, zone Device", "V"),
    ("online:several", "online, several zones (valid_zones none)", "X"),
    ("online", "online, zone unknown", "O"),
    ("going-offline", "going offline", "~"),
    ("offline", "offline", "."),
    ("unknown", "state unreadable", "?"),
)
CATEGORY_KEYS: tuple[str, ...] = tuple(c[0] for c in CATEGORIES)
CATEGORY_LABEL: dict[str, str] = {c[0]: c[1] for c in CATEGORIES}
CATEGORY_CHAR: dict[str, str] = {c[0]: c[2] for c in CATEGORIES}
CATEGORY_INDEX: dict[str, int] = {k: i for i, k in enumerate(CATEGORY_KEYS)}
#: Zones that have a category of their own (the others are "online, zone unknown").
_ZONES = tuple(z for z in ZONE_NAMES if f"online:{z}" in CATEGORY_LABEL)


def block_category(state: str | None, valid_zones: Sequence[str] | None) -> str:
    """The category of a block from its ``state`` and ``valid_zones``."""
    if state is None:
        return "unknown"
    if state == "online":
        if not valid_zones:
            return "online"
        z = valid_zones[0]
        if z == VALID_ZONES_NONE:
            return "online:several"
        return f"online:{z}" if z in _ZONES else "online"
    if state == "going-offline":
        return "going-offline"
    if state == "offline":
        return "offline"
    return "unknown"


# -- content kinds (simulated machines) ------------------------------------------------

#: What a block's pages are used for, in drawing order (bottom to top).
CONTENT_KINDS: tuple[tuple[str, str], ...] = (
    ("free", "free"),
    ("movable", "movable (user, LRU)"),
    ("pinned", "pinned (long-term)"),
    ("runtime_slab", "kernel at run time: slab (inodes, page-cache nodes...)"),
    ("runtime_pagetable", "kernel at run time: page tables"),
    ("memmap", "unmovable: memmap (struct page)"),
    ("altmap", "memmap on the block itself (altmap)"),
    ("page_cgroup", "unmovable: page_cgroup"),
    ("pagetable", "unmovable: page tables"),
    ("slab", "unmovable: slab / kernel data (boot)"),
    ("pgdat", "unmovable: pgdat"),
    ("unmovable", "unmovable: other"),
    ("offline", "logically offline: virtio-mem unplugged (PG_offline)"),
    ("kernel_image", "reserved: kernel image"),
    ("reserved", "reserved: memblock / firmware"),
)
CONTENT_KEYS: tuple[str, ...] = tuple(c[0] for c in CONTENT_KINDS)
CONTENT_LABEL: dict[str, str] = dict(CONTENT_KINDS)


@dataclass(frozen=True)
class MapBlock:
    """One memory block as the map shows it."""

    index: int
    start: int
    size: int
    state: str | None
    valid_zones: tuple[str, ...] | None
    node: int | None
    device: str | None

    @property
    def end(self) -> int:
        """Exclusive end address."""
        return self.start + self.size

    @property
    def name(self) -> str:
        return f"memory{self.index}"

    @property
    def category(self) -> str:
        return block_category(self.state, self.valid_zones)


@dataclass(frozen=True)
class MapDevice:
    """A memory device and the blocks bound to it."""

    name: str
    kind: str
    blocks: tuple[int, ...]
    start: int  # lowest address
    end: int  # exclusive end address
    ejectable: bool

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class FirmwareRange:
    """A ``/sys/firmware/memmap`` entry, end exclusive."""

    start: int
    end: int
    type: str


@dataclass(frozen=True)
class Hole:
    """An address range inside the map that no memory block covers."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class BlockContents:
    """Pages of one block by content kind (:data:`CONTENT_KEYS`)."""

    pages: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.pages.values())

    def used(self) -> int:
        return self.total - self.pages.get("free", 0)


@dataclass(frozen=True)
class Dependency:
    """Metadata of blocks ``src_first..src_last`` lives in block ``dst``."""

    src_first: int
    src_last: int
    dst: int
    kinds: tuple[str, ...]  # "memmap", "page_cgroup"
    pages: int
    dst_last: int = -1  # with many dependencies: blocks dst..dst_last

    @property
    def dst_blocks(self) -> range:
        return range(self.dst, max(self.dst, self.dst_last) + 1)

    @property
    def label(self) -> str:
        def rng(a: int, b: int) -> str:
            return f"memory{a}" if b <= a else f"memory{a}-{b}"

        return (
            f"{rng(self.src_first, self.src_last)} -> {rng(self.dst, self.dst_last)}: "
            f"{', '.join(self.kinds)}"
        )


@dataclass
class MemoryMap:
    """The physical memory map of a root."""

    title: str
    block_size: int
    blocks: list[MapBlock]
    devices: list[MapDevice]
    firmware: list[FirmwareRange]
    nodes: list[int]
    contents: dict[int, BlockContents] | None = None
    deps: list[Dependency] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: virtio-mem device regions (:mod:`memhp.host.memmap_virtio`).
    virtio: list[VirtioRegionMap] = field(default_factory=list)

    def node_virtio(self, node: int | None) -> list[VirtioRegionMap]:
        return [r for r in self.virtio if r.node == node]

    def node_blocks(self, node: int | None) -> list[MapBlock]:
        return [b for b in self.blocks if b.node == node]

    def band_nodes(self) -> list[int | None]:
        """The bands to draw: every node with blocks or listed, then blocks without node."""
        seen: set[int] = set(self.nodes)
        seen.update(b.node for b in self.blocks if b.node is not None)
        out: list[int | None] = list(sorted(seen))
        if any(b.node is None for b in self.blocks) or any(r.node is None for r in self.virtio):
            out.append(None)
        return out

    def category_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.blocks:
            c = b.category
            out[c] = out.get(c, 0) + 1
        return out

    def span(self) -> tuple[int, int]:
        """[lowest, highest) address of blocks and firmware ranges."""
        ranges = [(b.start, b.end) for b in self.blocks] + [(f.start, f.end) for f in self.firmware]
        ranges += [(r.start, r.end) for r in self.virtio]
        if not ranges:
            return 0, self.block_size or 1
        return min(a for a, _ in ranges), max(b for _, b in ranges)

    def holes(self) -> list[Hole]:
        """Address ranges between the lowest and highest block that no block covers."""
        out: list[Hole] = []
        cur: int | None = None
        for b in sorted(self.blocks, key=lambda x: x.start):
            if cur is not None and b.start > cur:
                out.append(Hole(cur, b.start))
            cur = b.end if cur is None else max(cur, b.end)
        return out


# -- reading a sysfs root ----------------------------------------------------------------


def _block_nodes(root: SysfsRoot) -> dict[int, int]:
    """Block index -> node, from the ``nodeN/memoryM`` links (one listdir per node)."""
    out: dict[int, int] = {}
    for nid in node_ids(root):
        try:
            names = root.listdir(f"{SYS_NODE}/node{nid}")
        except SysfsError:
            continue
        for n in names:
            if n.startswith("memory") and n[6:].isdigit():
                out.setdefault(int(n[6:]), nid)
    return out


def _devices(root: SysfsRoot, bsize: int, indices: Sequence[int]) -> list[MapDevice]:
    """ACPI memory devices: ``physical_node`` links, else the blocks' ``firmware_node``."""
    found: dict[str, list[int]] = {}
    paths: dict[str, str] = {}
    try:
        names = sorted(root.listdir(SYS_ACPI_DEVICES))
    except SysfsError:
        names = []
    for name in names:
        if not name.startswith(MEMORY_DEVICE_HID + ":"):
            continue
        link = f"{SYS_ACPI_DEVICES}/{name}"
        path = root.link_target(link) or link
        idx = device_block_indices(root, path)
        if idx:
            found[name] = idx
            paths[name] = path
    if not found:
        for i in indices:
            target = root.link_target(f"{SYS_MEMORY}/memory{i}/firmware_node")
            if target:
                name = target.rsplit("/", 1)[-1]
                found.setdefault(name, []).append(i)
                paths.setdefault(name, target)
    present = set(indices)
    out = []
    for name, idx in sorted(found.items()):
        blocks = tuple(sorted(i for i in set(idx) if i in present))
        if not blocks:
            continue
        ejectable = False
        try:
            ejectable = bool(root.lstat(f"{paths[name]}/eject").mode & 0o222)
        except SysfsError:
            pass
        out.append(
            MapDevice(
                name,
                "acpi",
                blocks,
                blocks[0] * bsize,
                (blocks[-1] + 1) * bsize,
                ejectable,
            )
        )
    return out


def read_memory_map(root: SysfsRoot, title: str | None = None) -> MemoryMap:
    """The memory map of ``root`` (raises :class:`~memhp.host.errors.UsageError`
    when the root has no memory blocks)."""
    bsize = block_size(root)
    indices = block_indices(root)
    nodes = _block_nodes(root)
    read = root.dir_reader(SYS_MEMORY)
    try:
        devices = _devices(root, bsize, indices)
        dev_of = {i: d.name for d in devices for i in d.blocks}
        with_zones = True
        blocks: list[MapBlock] = []
        for i in indices:
            try:
                state: str | None = read(f"memory{i}/state").decode(errors="replace").strip()
            except SysfsError:
                state = None
            zones: tuple[str, ...] | None = None
            if with_zones:
                try:
                    zones = tuple(read(f"memory{i}/valid_zones").decode(errors="replace").split())
                except SysfsError:
                    with_zones = bool(blocks)  # an old kernel has none at all
            blocks.append(MapBlock(i, i * bsize, bsize, state, zones, nodes.get(i), dev_of.get(i)))
    finally:
        root.close()
    virtio = read_virtio_map(root, ((b.index, b.start, b.end, b.state, b.node) for b in blocks))
    in_region = {i: r.name for r in virtio for i in r.blocks}
    blocks = [
        MapBlock(b.index, b.start, b.size, b.state, b.valid_zones, b.node, in_region[b.index])
        if b.index in in_region and b.device is None
        else b
        for b in blocks
    ]
    fw = [FirmwareRange(e.start, e.end + 1, e.type) for e in firmware_memmap(root)]
    return MemoryMap(
        title=title if title is not None else f"memory map of {root.name}",
        block_size=bsize,
        blocks=blocks,
        devices=devices,
        firmware=fw,
        nodes=node_ids(root),
        virtio=virtio,
    )
