"""The physical memory map of a sysfs root, as data (what ``memhp map`` draws).

:func:`read_memory_map` turns any :class:`~memhp.host.root.SysfsRoot` (``/sys``, a
captured tree, a simulated machine) into a :class:`MemoryMap`: the memory blocks
with their state, zone, node and device, the memory devices (ACPI PNP0C80, from
their ``physical_node`` links, or the blocks' ``firmware_node`` links), the
firmware memmap ranges with their types, and the holes (address ranges no block
covers).  :class:`AddressScale` maps addresses to a drawing axis where large holes
are compressed, and :func:`bin_blocks` aggregates blocks into columns when there
are more blocks than can be drawn one by one.

A simulated machine can add what the host cannot see (:mod:`memhp.viz.model`):
what each block contains (:class:`BlockContents`) and which block holds the
metadata of which (:class:`Dependency`).  Nothing here imports matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from memhp.host.devices import ACPI_MEMORY_HID, device_block_indices
from memhp.host.errors import SysfsError
from memhp.host.memory import block_indices, block_size, firmware_memmap, node_ids
from memhp.host.root import SYS_ACPI_DEVICES, SYS_MEMORY, SYS_NODE, SysfsRoot

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
_ZONES = ("DMA", "DMA32", "Normal", "Movable", "Device")


def block_category(state: str | None, valid_zones: Sequence[str] | None) -> str:
    """The category of a block from its ``state`` and ``valid_zones``."""
    if state is None:
        return "unknown"
    if state == "online":
        if not valid_zones:
            return "online"
        z = valid_zones[0]
        if z == "none":
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
    ("memmap", "unmovable: memmap (struct page)"),
    ("altmap", "memmap on the block itself (altmap)"),
    ("page_cgroup", "unmovable: page_cgroup"),
    ("pagetable", "unmovable: page tables"),
    ("slab", "unmovable: slab / kernel data"),
    ("pgdat", "unmovable: pgdat"),
    ("unmovable", "unmovable: other"),
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

    def node_blocks(self, node: int | None) -> list[MapBlock]:
        return [b for b in self.blocks if b.node == node]

    def band_nodes(self) -> list[int | None]:
        """The bands to draw: every node with blocks or listed, then blocks without node."""
        seen: set[int] = set(self.nodes)
        seen.update(b.node for b in self.blocks if b.node is not None)
        out: list[int | None] = list(sorted(seen))
        if any(b.node is None for b in self.blocks):
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
        if not name.startswith(ACPI_MEMORY_HID + ":"):
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
    fw = [FirmwareRange(e.start, e.end + 1, e.type) for e in firmware_memmap(root)]
    return MemoryMap(
        title=title if title is not None else f"memory map of {root.name}",
        block_size=bsize,
        blocks=blocks,
        devices=devices,
        firmware=fw,
        nodes=node_ids(root),
    )


# -- human units -------------------------------------------------------------------------

_UNITS = ((1 << 60, "E"), (1 << 50, "P"), (1 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"))


def human(n: int) -> str:
    """``n`` bytes (or an address) in binary units: ``0``, ``640K``, ``1.5G``, ``16T``."""
    if n == 0:
        return "0"
    for unit, sfx in (*_UNITS, (1 << 10, "K")):
        if abs(n) >= unit:
            v = n / unit
            if n % unit == 0:
                return f"{n // unit}{sfx}"
            text = f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"
            return f"{text.rstrip('0').rstrip('.')}{sfx}"
    return f"{n}B"


# -- the address axis --------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A piece of the axis: addresses [start, end) drawn over [x0, x1)."""

    start: int
    end: int
    x0: float
    x1: float
    compressed: bool  # a large hole drawn narrower than to scale


class AddressScale:
    """Addresses to axis units (0..1).

    ``major`` ranges (memory blocks, System RAM) are drawn to scale.  ``minor``
    ranges (other firmware memmap types) and holes are drawn to scale too, unless
    larger than ``hole_fraction`` of the major address space: those are drawn
    ``hole_width`` wide (``compressed``), so that a far-away reserved range or a
    1 TiB hole does not squeeze the memory into a corner.
    """

    def __init__(
        self,
        major: Iterable[tuple[int, int]],
        minor: Iterable[tuple[int, int]] = (),
        hole_fraction: float = 0.15,
        hole_width: float = 0.04,
    ) -> None:
        majors = _merge(major)
        minors = _merge(minor)
        if not majors and not minors:
            majors = [(0, 1)]
        bounds = sorted({p for a, b in majors + minors for p in (a, b)})
        total = sum(b - a for a, b in majors) or (bounds[-1] - bounds[0])
        pieces: list[list[int]] = []  # [start, end, class] 0 major, 1 minor, 2 gap
        for a, b in pairwise(bounds):
            cls = 0 if _covered(majors, a) else 1 if _covered(minors, a) else 2
            if pieces and pieces[-1][2] == cls:
                pieces[-1][1] = b
            else:
                pieces.append([a, b, cls])
        flagged = [(a, b, cls != 0 and b - a > hole_fraction * total) for a, b, cls in pieces]
        linear = sum(b - a for a, b, c in flagged if not c) or 1
        n_comp = sum(1 for p in flagged if p[2])
        lin_width = max(0.2, 1.0 - n_comp * hole_width)
        comp_width = (1.0 - lin_width) / n_comp if n_comp else 0.0
        segs: list[Segment] = []
        x = 0.0
        for a, b, c in flagged:
            w = comp_width if c else lin_width * (b - a) / linear
            segs.append(Segment(a, b, x, x + w, c))
            x += w
        self.segments = segs
        self.start = segs[0].start
        self.end = segs[-1].end

    def x(self, addr: int) -> float:
        """Axis position of ``addr`` (clamped to the scale)."""
        segs = self.segments
        if addr <= self.start:
            return 0.0
        if addr >= self.end:
            return segs[-1].x1
        lo, hi = 0, len(segs) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if segs[mid].end <= addr:
                lo = mid + 1
            else:
                hi = mid
        s = segs[lo]
        return s.x0 + (s.x1 - s.x0) * (addr - s.start) / (s.end - s.start)

    def ticks(self, target: int = 10) -> list[tuple[float, str]]:
        """Tick positions and labels in human units: power-of-two steps on the linear
        parts, the boundaries of compressed holes."""
        linear = sum(s.end - s.start for s in self.segments if not s.compressed)
        step = 1 << max(12, math.ceil(math.log2(max(1, linear // target))))
        out: dict[float, str] = {}
        min_dx = 0.045
        for s in self.segments:
            if s.compressed:
                continue
            first = -(-s.start // step) * step
            for addr in [s.start, *range(first, s.end + 1, step), s.end]:
                xv = self.x(addr)
                if all(abs(xv - k) >= min_dx for k in out):
                    out[xv] = human(addr)
        return sorted(out.items())


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted((a, b) for a, b in spans if b > a):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _covered(spans: Sequence[tuple[int, int]], addr: int) -> bool:
    return any(a <= addr < b for a, b in spans)


def map_scale(m: MemoryMap) -> AddressScale:
    """The axis of a map: blocks and System RAM to scale, other firmware ranges and
    holes compressed when large."""
    major = [(b.start, b.end) for b in m.blocks] + [
        (f.start, f.end) for f in m.firmware if f.type == "System RAM"
    ]
    minor = [(f.start, f.end) for f in m.firmware if f.type != "System RAM"]
    return AddressScale(major, minor)


# -- aggregation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """What one drawn column of a node's band holds.

    ``x0``/``x1`` are axis units, ``counts`` blocks per category (index in
    :data:`CATEGORY_KEYS`), ``blocks`` the block indices [first, last] it covers.
    """

    x0: float
    x1: float
    first: int
    last: int
    counts: tuple[int, ...]

    @property
    def nr_blocks(self) -> int:
        return sum(self.counts)

    @property
    def majority(self) -> str:
        best = max(range(len(self.counts)), key=lambda i: self.counts[i])
        return CATEGORY_KEYS[best]


def bin_blocks(
    blocks: Sequence[MapBlock], scale: AddressScale, columns: int
) -> tuple[list[Cell], bool]:
    """Group ``blocks`` (one node's) into at most about ``columns`` cells.

    Runs of consecutive blocks with the same category and device become one cell;
    when there are still more than ``columns`` cells, blocks are counted per
    column of the axis instead (``aggregated`` is then True).  Returns
    (cells, aggregated).
    """
    runs: list[Cell] = []
    n = len(CATEGORY_KEYS)
    prev: MapBlock | None = None
    counts = [0] * n
    first = 0
    x0 = 0.0
    for b in sorted(blocks, key=lambda x: x.start):
        ci = CATEGORY_INDEX[b.category]
        if (
            prev is not None
            and b.start == prev.end
            and b.category == prev.category
            and b.device == prev.device
        ):
            counts[ci] += 1
        else:
            if prev is not None:
                runs.append(Cell(x0, scale.x(prev.end), first, prev.index, tuple(counts)))
            counts = [0] * n
            counts[ci] = 1
            first = b.index
            x0 = scale.x(b.start)
        prev = b
    if prev is not None:
        runs.append(Cell(x0, scale.x(prev.end), first, prev.index, tuple(counts)))
    if len(runs) <= columns:
        return runs, False
    width = 1.0 / columns
    bins: dict[int, list[int]] = {}
    span: dict[int, list[int]] = {}
    for b in blocks:
        col = min(columns - 1, int(scale.x(b.start + b.size // 2) / width))
        c = bins.setdefault(col, [0] * n)
        c[CATEGORY_INDEX[b.category]] += 1
        sp = span.setdefault(col, [b.index, b.index])
        sp[0] = min(sp[0], b.index)
        sp[1] = max(sp[1], b.index)
    cells = [
        Cell(col * width, (col + 1) * width, span[col][0], span[col][1], tuple(c))
        for col, c in sorted(bins.items())
    ]
    return cells, True


# -- the text map ------------------------------------------------------------------------

HOLE_CHAR = " "
FIRMWARE_CHARS: dict[str, str] = {
    "System RAM": "=",
    "Reserved": "r",
    "ACPI Tables": "a",
    "ACPI Non-volatile Storage": "n",
    "Persistent Memory": "p",
    "Persistent Memory (legacy)": "p",
    "Soft Reserved": "s",
    "Unusable memory": "u",
}


def text_map(m: MemoryMap, width: int = 72) -> str:
    """A compact terminal map: one line per node, a character per block or group of
    blocks (the group's majority), a line marking devices, an axis and a legend."""
    scale = map_scale(m)
    width = max(8, width)
    col_w = 1.0 / width
    label_w = max(
        [len("firmware")] + [len(f"node{n}") if n is not None else 7 for n in m.band_nodes()]
    )
    lines = [m.title]
    nb = len(m.blocks)
    per_col = max(1, math.ceil(nb / max(1, width)))
    # firmware line: the type covering most of each column (small ranges win over RAM).
    if m.firmware:
        row = [HOLE_CHAR] * width
        for f in sorted(m.firmware, key=lambda e: e.end - e.start, reverse=True):
            c0 = min(width - 1, int(scale.x(f.start) / col_w))
            c1 = max(c0, min(width - 1, int((scale.x(f.end) - 1e-12) / col_w)))
            ch = FIRMWARE_CHARS.get(f.type, "o")
            for c in range(c0, c1 + 1):
                row[c] = ch
        lines.append(f"{'firmware':<{label_w}} |{''.join(row)}|")
    used_cats: set[str] = set()
    dev_names: list[str] = []
    for nid in m.band_nodes():
        blocks = m.node_blocks(nid)
        cols: list[list[int]] = [[0] * len(CATEGORY_KEYS) for _ in range(width)]
        for b in blocks:
            ci = CATEGORY_INDEX[b.category]
            x0, x1 = scale.x(b.start) / col_w, scale.x(b.end) / col_w
            c0, c1 = math.ceil(x0 - 0.5), math.floor(x1 - 0.5)  # columns whose centre it covers
            if c1 < c0:
                c0 = c1 = min(width - 1, int((x0 + x1) / 2))
            for c in range(max(0, c0), min(width - 1, c1) + 1):
                cols[c][ci] += 1
        row = []
        for cnt in cols:
            if not any(cnt):
                row.append(HOLE_CHAR)
                continue
            key = CATEGORY_KEYS[max(range(len(cnt)), key=lambda i: cnt[i])]
            used_cats.add(key)
            row.append(CATEGORY_CHAR[key])
        name = f"node{nid}" if nid is not None else "no node"
        lines.append(f"{name:<{label_w}} |{''.join(row)}|")
        devs = [d for d in m.devices if any(m_b.device == d.name for m_b in blocks)]
        if devs:
            drow = [" "] * width
            for d in devs:
                if d.name not in dev_names:
                    dev_names.append(d.name)
                tag = chr(ord("a") + dev_names.index(d.name) % 26)
                c0 = min(width - 1, int(scale.x(d.start) / col_w))
                c1 = max(c0, min(width - 1, int((scale.x(d.end) - 1e-12) / col_w)))
                for c in range(c0, c1 + 1):
                    drow[c] = "-"
                drow[c0] = "["
                drow[c1] = "]" if c1 > c0 else tag
                if c1 - c0 >= 2:
                    drow[c0 + 1] = tag
            lines.append(f"{'':<{label_w}}  {''.join(drow).rstrip()}")
    # the axis: labels of the start and end of each segment that fit.
    axis = [" "] * (width + 2)
    for xv, text in scale.ticks(target=max(2, width // 14)):
        pos = min(width + 1 - len(text), int(xv * width) + 1)
        if all(ch == " " for ch in axis[max(0, pos - 1) : pos + len(text) + 1]):
            axis[pos : pos + len(text)] = list(text)
    lines.append(f"{'':<{label_w}} {''.join(axis).rstrip()}")
    for s in scale.segments:
        if s.compressed:
            lines.append(
                f"{'':<{label_w}}  (hole {human(s.start)}-{human(s.end)}, "
                f"{human(s.end - s.start)}, drawn narrower)"
            )
    lines.append("")
    unit = "one block or less" if per_col == 1 else f"up to {per_col} blocks: the majority"
    lines.append(f"legend: a character per column of the address axis ({unit})")
    for key in CATEGORY_KEYS:
        if key in used_cats:
            lines.append(f"  {CATEGORY_CHAR[key]}  {CATEGORY_LABEL[key]}")
    lines.append(f"  {HOLE_CHAR!r} no memory block (hole)")
    if m.firmware:
        types = sorted({f.type for f in m.firmware})
        lines.append("  firmware: " + ", ".join(f"{FIRMWARE_CHARS.get(t, 'o')} {t}" for t in types))
    for i, name in enumerate(dev_names):
        d = next(x for x in m.devices if x.name == name)
        lines.append(
            f"  [{chr(ord('a') + i % 26)}-]  device {name}: memory{d.blocks[0]}-"
            f"memory{d.blocks[-1]} ({human(d.size)})"
        )
    counts = m.category_counts()
    lines.append(
        f"{nb} blocks of {human(m.block_size)}: "
        + ", ".join(f"{counts[k]} {CATEGORY_LABEL[k]}" for k in CATEGORY_KEYS if k in counts)
    )
    for dep in m.deps[:12]:
        lines.append(f"  dependency: {dep.label}")
    if len(m.deps) > 12:
        lines.append(f"  ... and {len(m.deps) - 12} more dependencies")
    return "\n".join(lines) + "\n"
