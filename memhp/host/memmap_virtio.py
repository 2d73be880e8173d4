"""virtio-mem devices in the memory map: their regions and sub-blocks.

A virtio-mem device owns a region of guest physical addresses up to its maximum
size ("virtioN" in /proc/iomem, virtio_mem_create_resource()).  The driver adds
memory blocks inside it as it plugs ("System RAM (virtio_mem)",
add_memory_driver_managed()); the rest of the region has no memory block: it is
not plugged.  Within an online block of Sub-Block Mode the driver keeps the
unplugged sub-blocks fake offline (virtio_mem_set_fake_offline(): PageOffline(),
reported as KPF_OFFLINE by fs/proc/page.c stable_page_flags()), so
/proc/kpageflags shows which sub-blocks are plugged.  The guest does not see the
device block size; the map works in pageblock-sized units (2 MiB on x86), the
smallest sub-block 6.1 uses (``vm->sbm.sb_size`` is at least a pageblock), so each
unit is wholly plugged or wholly unplugged.

:func:`read_virtio_map` reads this from a sysfs root; :mod:`memhp.viz.model` builds
the same from a simulated machine's driver state.  :func:`text_rows` and
:func:`text_legend` are the text map's part.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from memhp.abi.kpageflags import KPF_ENTRY_SIZE, KPF_OFFLINE
from memhp.abi.layout import PAGE_SIZE, PAGEBLOCK_NR_PAGES
from memhp.abi.paths import PROC_KPAGEFLAGS
from memhp.abi.units import human_size as human
from memhp.host.errors import SysfsError
from memhp.host.iomem import virtio_regions
from memhp.host.root import SysfsRoot
from memhp.host.virtio_mem import SUB_BLOCK as SUB_BLOCK  # bytes per drawn sub-block

#: Text map characters: the region with no memory block (node row) and the
#: sub-block row's plugged / unplugged / both-in-one-column.
NOT_ADDED_CHAR = "_"
PLUGGED_CHAR = "#"
UNPLUGGED_CHAR = "_"
MIXED_CHAR = "+"
#: Partly plugged blocks listed one by one in the text legend.
MAX_BLOCK_LINES = 8


@dataclass(frozen=True)
class SubBlocks:
    """The plugged state of an online block's sub-blocks (one per :data:`SUB_BLOCK`)."""

    block: int
    start: int
    plugged: tuple[bool, ...]

    @property
    def end(self) -> int:
        return self.start + len(self.plugged) * SUB_BLOCK

    @property
    def nr_plugged(self) -> int:
        return sum(self.plugged)

    def runs(self) -> list[tuple[int, int, bool]]:
        """[start, end) address runs of equal state."""
        out: list[tuple[int, int, bool]] = []
        for i, p in enumerate(self.plugged):
            a = self.start + i * SUB_BLOCK
            if out and out[-1][2] == p:
                out[-1] = (out[-1][0], a + SUB_BLOCK, p)
            else:
                out.append((a, a + SUB_BLOCK, p))
        return out


@dataclass(frozen=True)
class VirtioRegionMap:
    """One virtio-mem device region as the map draws it (end addresses exclusive)."""

    name: str
    start: int
    end: int
    node: int | None
    added: tuple[tuple[int, int], ...]
    blocks: tuple[int, ...]  # its memory blocks present in sysfs
    subblocks: tuple[SubBlocks, ...]  # its online blocks, when their pages were read
    unread: tuple[int, ...] = ()  # online blocks whose pages could not be read

    @property
    def size(self) -> int:
        return self.end - self.start

    def not_added(self) -> list[tuple[int, int]]:
        """The parts of the region no memory block was added for (not plugged)."""
        out: list[tuple[int, int]] = []
        cur = self.start
        for a, b in sorted(self.added):
            if a > cur:
                out.append((cur, a))
            cur = max(cur, b)
        if cur < self.end:
            out.append((cur, self.end))
        return out

    def runs(self) -> list[tuple[int, int, bool]]:
        """Sub-block runs over all its online blocks, adjacent equal runs merged."""
        out: list[tuple[int, int, bool]] = []
        for sb in sorted(self.subblocks, key=lambda s: s.start):
            for a, b, p in sb.runs():
                if out and out[-1][1] == a and out[-1][2] == p:
                    out[-1] = (out[-1][0], b, p)
                else:
                    out.append((a, b, p))
        return out


def _subblocks(root: SysfsRoot, block: int, start: int, size: int) -> SubBlocks | None:
    """The sub-blocks of one online block from /proc/kpageflags (None: unreadable)."""
    try:
        raw = root.read_at(
            PROC_KPAGEFLAGS, start // PAGE_SIZE * KPF_ENTRY_SIZE, size // PAGE_SIZE * KPF_ENTRY_SIZE
        )
    except SysfsError:
        return None
    flags = array("Q")
    flags.frombytes(raw[: len(raw) - len(raw) % KPF_ENTRY_SIZE])
    if sys.byteorder != "little":
        flags.byteswap()
    if len(flags) * PAGE_SIZE < size:
        return None
    bit = 1 << KPF_OFFLINE
    plugged = tuple(
        not all(f & bit for f in flags[i : i + PAGEBLOCK_NR_PAGES])
        for i in range(0, size // PAGE_SIZE, PAGEBLOCK_NR_PAGES)
    )
    return SubBlocks(block, start, plugged)


def merge_spans(spans: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Adjacent ranges joined (one "System RAM (virtio_mem)" per added block)."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return tuple(out)


def read_virtio_map(
    root: SysfsRoot, blocks: Iterable[tuple[int, int, int, str | None, int | None]]
) -> list[VirtioRegionMap]:
    """The virtio-mem regions of ``root`` (from /proc/iomem; empty when unreadable).

    ``blocks`` are the map's memory blocks as (index, start, end, state, node).
    """
    regions = virtio_regions(root)
    if not regions:
        return []
    blist = list(blocks)
    out = []
    for name, r in sorted(regions.items(), key=lambda kv: kv[1].start):
        added = merge_spans((a, b + 1) for a, b in r.added)
        mine = [b for b in blist if any(a <= b[1] < e for a, e in added)]
        subs: list[SubBlocks] = []
        unread: list[int] = []
        for idx, start, end, state, _node in mine:
            if state != "online":
                continue
            sb = _subblocks(root, idx, start, end - start)
            if sb is None:
                unread.append(idx)
            else:
                subs.append(sb)
        nodes = sorted({b[4] for b in mine if b[4] is not None})
        out.append(
            VirtioRegionMap(
                name,
                r.start,
                r.end + 1,
                nodes[0] if nodes else None,
                added,
                tuple(b[0] for b in mine),
                tuple(subs),
                tuple(unread),
            )
        )
    return out


# -- the text map's part -------------------------------------------------------------------


def _columns(a: int, b: int, x: Callable[[int], float], width: int) -> range:
    """The columns whose centre [a, b) covers (at least one)."""
    col_w = 1.0 / width
    x0, x1 = x(a) / col_w, x(b) / col_w
    c0, c1 = math.ceil(x0 - 0.5), math.floor(x1 - 0.5)  # as the node rows
    if c1 < c0:
        c0 = c1 = min(width - 1, int((x0 + x1) / 2))
    return range(max(0, c0), min(width - 1, c1) + 1)


def mark_not_added(
    row: list[str], regions: Sequence[VirtioRegionMap], x: Callable[[int], float]
) -> bool:
    """Put :data:`NOT_ADDED_CHAR` in the empty columns of a node row that the regions'
    parts without memory block cover; True when any was marked."""
    used = False
    for r in regions:
        for a, b in r.not_added():
            for c in _columns(a, b, x, len(row)):
                if row[c] == " ":
                    row[c] = NOT_ADDED_CHAR
                    used = True
    return used


def subblock_row(r: VirtioRegionMap, x: Callable[[int], float], width: int) -> str | None:
    """The sub-block row of a region (None when it has no online block read)."""
    if not r.subblocks:
        return None
    cols: list[set[bool]] = [set() for _ in range(width)]
    for a, b, p in r.runs():
        for c in _columns(a, b, x, width):
            cols[c].add(p)
    chars = {
        frozenset(): " ",
        frozenset({True}): PLUGGED_CHAR,
        frozenset({False}): UNPLUGGED_CHAR,
        frozenset({True, False}): MIXED_CHAR,
    }
    return "".join(chars[frozenset(c)] for c in cols)


def _span(a: int, b: int) -> str:
    return f"{a:#x}-{b - 1:#x}"


def _blocks(idx: Sequence[int]) -> str:
    if not idx:
        return "no memory block added"
    first, last = min(idx), max(idx)
    names = f"memory{first}" if first == last else f"memory{first}-{last}"
    return f"{names} added ({len(idx)} blocks)"


def text_legend(regions: Sequence[VirtioRegionMap], tags: dict[str, str]) -> list[str]:
    """The legend lines of the regions: the characters, then each device's ranges."""
    if not regions:
        return []
    lines = [f"  {NOT_ADDED_CHAR!r} virtio-mem region without memory block (not plugged)"]
    if any(r.subblocks for r in regions):
        lines.append(
            f"  virtioN rows: the device's sub-blocks of {human(SUB_BLOCK)} in online blocks"
        )
        lines.append(
            f"     {PLUGGED_CHAR} plugged, {UNPLUGGED_CHAR} unplugged (PG_offline in "
            f"/proc/kpageflags: fake offline), {MIXED_CHAR} both in one column"
        )
    for r in regions:
        node = f"node {r.node}" if r.node is not None else "node unknown"
        lines.append(
            f"  [{tags.get(r.name, '?')}-]  device {r.name}: virtio-mem region "
            f"{_span(r.start, r.end)} ({human(r.size)}), {node}, {_blocks(r.blocks)}"
        )
        partial = [s for s in r.subblocks if not all(s.plugged)]
        for s in partial[:MAX_BLOCK_LINES]:
            holes = ", ".join(_span(a, b) for a, b, p in s.runs() if not p)
            lines.append(
                f"        memory{s.block}: {s.nr_plugged} of {len(s.plugged)} sub-blocks "
                f"plugged, unplugged {holes} (PG_offline)"
            )
        if len(partial) > MAX_BLOCK_LINES:
            lines.append(
                f"        ... and {len(partial) - MAX_BLOCK_LINES} more partly plugged blocks"
            )
        for a, b in r.not_added():
            lines.append(f"        not plugged: {_span(a, b)} ({human(b - a)}), no memory block")
        if r.unread:
            lines.append(
                f"        sub-blocks unknown in {len(r.unread)} online blocks: "
                "/proc/kpageflags unreadable (root only)"
            )
    return lines


def not_added_label(regions: Sequence[VirtioRegionMap], start: int, end: int) -> str | None:
    """``virtioN not plugged`` when [start, end) lies in a region's part without block."""
    for r in regions:
        if any(a <= start and end <= b for a, b in r.not_added()):
            return f"{r.name} not plugged"
    return None
