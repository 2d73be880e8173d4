"""How ``memhp map`` lays out a memory map: the address axis, binning, the text map.

:class:`AddressScale` maps addresses to a drawing axis where large holes are
compressed, :func:`bin_blocks` aggregates blocks into columns when there are more
blocks than can be drawn one by one, and :func:`text_map` prints the map as text.
The map itself (:class:`MemoryMap`, :func:`read_memory_map`) is
:mod:`memhp.host.memmap`, re-exported here.  Nothing here imports matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from memhp.abi.units import human_size as human
from memhp.host.memmap import (
    CATEGORIES,
    CATEGORY_CHAR,
    CATEGORY_INDEX,
    CATEGORY_KEYS,
    CATEGORY_LABEL,
    CONTENT_KEYS,
    CONTENT_KINDS,
    CONTENT_LABEL,
    BlockContents,
    Dependency,
    FirmwareRange,
    Hole,
    MapBlock,
    MapDevice,
    MemoryMap,
    block_category,
    read_memory_map,
)
from memhp.host.memmap_virtio import (
    VirtioRegionMap,
    mark_not_added,
    not_added_label,
    subblock_row,
    text_legend,
)

__all__ = [
    "CATEGORIES",
    "CATEGORY_CHAR",
    "CATEGORY_INDEX",
    "CATEGORY_KEYS",
    "CATEGORY_LABEL",
    "CONTENT_KEYS",
    "CONTENT_KINDS",
    "CONTENT_LABEL",
    "AddressScale",
    "BlockContents",
    "Cell",
    "Dependency",
    "FirmwareRange",
    "Hole",
    "MapBlock",
    "MapDevice",
    "MemoryMap",
    "Segment",
    "VirtioRegionMap",
    "bin_blocks",
    "block_category",
    "human",
    "map_scale",
    "read_memory_map",
    "text_map",
]


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
    ranges (other firmware memmap types), ``regions`` (like minor ranges, but kept
    apart from them: virtio-mem regions without memory block) and holes are drawn
    to scale too, unless
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
        regions: Iterable[tuple[int, int]] = (),
    ) -> None:
        majors = _merge(major)
        minors = _merge(minor)
        extras = _merge(regions)
        if not majors and not minors:
            majors = [(0, 1)]
        bounds = sorted({p for a, b in majors + minors + extras for p in (a, b)})
        total = sum(b - a for a, b in majors) or (bounds[-1] - bounds[0])
        # [start, end, class] 0 major, 1 minor, 2 gap, 3 region (a minor of its own)
        pieces: list[list[int]] = []
        for a, b in pairwise(bounds):
            cls = (
                0
                if _covered(majors, a)
                else 3
                if _covered(extras, a)
                else 1
                if _covered(minors, a)
                else 2
            )
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
    """The axis of a map: blocks and System RAM to scale, other firmware ranges,
    virtio-mem regions without memory block and holes compressed when large."""
    major = [(b.start, b.end) for b in m.blocks] + [
        (f.start, f.end) for f in m.firmware if f.type == "System RAM"
    ]
    minor = [(f.start, f.end) for f in m.firmware if f.type != "System RAM"]
    return AddressScale(major, minor, regions=[p for r in m.virtio for p in r.not_added()])


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
        [len("firmware")]
        + [len(f"node{n}") if n is not None else 7 for n in m.band_nodes()]
        + [len(r.name) for r in m.virtio if r.subblocks]
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
        regions = m.node_virtio(nid)
        mark_not_added(row, regions, scale.x)
        name = f"node{nid}" if nid is not None else "no node"
        lines.append(f"{name:<{label_w}} |{''.join(row)}|")
        devs: list[MapDevice | VirtioRegionMap] = [
            d for d in m.devices if any(m_b.device == d.name for m_b in blocks)
        ]
        devs += regions
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
        for r in regions:
            sub = subblock_row(r, scale.x, width)
            if sub is not None:
                lines.append(f"{r.name:<{label_w}} |{sub}|")
    # the axis: labels of the start and end of each segment that fit.
    axis = [" "] * (width + 2)
    for xv, text in scale.ticks(target=max(2, width // 14)):
        pos = min(width + 1 - len(text), int(xv * width) + 1)
        if all(ch == " " for ch in axis[max(0, pos - 1) : pos + len(text) + 1]):
            axis[pos : pos + len(text)] = list(text)
    lines.append(f"{'':<{label_w}} {''.join(axis).rstrip()}")
    for s in scale.segments:
        if s.compressed:
            what = not_added_label(m.virtio, s.start, s.end) or "hole"
            lines.append(
                f"{'':<{label_w}}  ({what} {human(s.start)}-{human(s.end)}, "
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
    tags = {name: chr(ord("a") + i % 26) for i, name in enumerate(dev_names)}
    lines += text_legend([r for r in m.virtio if r.name in tags], tags)
    for i, name in enumerate(dev_names):
        acpi = next((x for x in m.devices if x.name == name), None)
        if acpi is None:
            continue  # a virtio-mem region: in text_legend
        lines.append(
            f"  [{chr(ord('a') + i % 26)}-]  device {name}: memory{acpi.blocks[0]}-"
            f"memory{acpi.blocks[-1]} ({human(acpi.size)})"
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
