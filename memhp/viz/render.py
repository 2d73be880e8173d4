"""Drawing a :class:`~memhp.host.memmap_view.MemoryMap` with matplotlib (PNG, SVG).

Layout, top to bottom: the firmware memmap (one colour per type), then one band per
NUMA node: its blocks coloured by state and zone, and on a simulated machine a
second row with what each block contains (stacked by kind: free, movable, pinned,
unmovable by owner...). Memory devices are outlined and labelled (virtio-mem regions
with their not-plugged part and sub-blocks: :mod:`memhp.viz.render_virtio`); holes
are hatched; large holes are drawn narrower (their size is written on them); arrows
show which block holds the memmap / page_cgroup of which. When a band has more runs
of blocks than the axis has room for, blocks are counted per column and each column
is stacked by category.

matplotlib is imported inside the functions (Agg backend), so importing this
module costs nothing.  Every drawn block element carries a ``gid``
(``block:<category>:<first>-<last>:<count>``), which the SVG output keeps as the
``id`` of its group: tests and other tools can count what was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memhp.host.memmap_view import (
    CATEGORY_KEYS,
    CATEGORY_LABEL,
    CONTENT_KEYS,
    CONTENT_LABEL,
    AddressScale,
    Cell,
    MemoryMap,
    bin_blocks,
    human,
    map_scale,
)
from memhp.viz.render_virtio import draw_regions, legend_handles

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CATEGORY_COLORS: dict[str, str] = {
    "online:DMA": "#807dba",
    "online:DMA32": "#6baed6",
    "online:Normal": "#2171b5",
    "online:Movable": "#41ab5d",
    "online:Device": "#969696",
    "online:several": "#fd8d3c",
    "online": "#4292c6",
    "going-offline": "#fed976",
    "offline": "#e0e0e0",
    "unknown": "#bdbdbd",
}
CONTENT_COLORS: dict[str, str] = {
    "free": "#f7fbff",
    "movable": "#74c476",
    "pinned": "#fd8d3c",
    "memmap": "#6a51a3",
    "altmap": "#9e9ac8",
    "page_cgroup": "#e31a1c",
    "runtime_slab": "#ae017e",
    "runtime_pagetable": "#543005",
    "pagetable": "#8c510a",
    "slab": "#f768a1",
    "pgdat": "#dfc27d",
    "unmovable": "#525252",
    "offline": "#fec44f",
    "kernel_image": "#252525",
    "reserved": "#969696",
}
FIRMWARE_COLORS: dict[str, str] = {
    "System RAM": "#c7e9c0",
    "Reserved": "#737373",
    "ACPI Tables": "#fdae6b",
    "ACPI Non-volatile Storage": "#a6611a",
    "Persistent Memory": "#9e9ac8",
    "Persistent Memory (legacy)": "#9e9ac8",
    "Soft Reserved": "#fbb4b9",
    "Unusable memory": "#cb181d",
}
DEP_COLORS: dict[str, str] = {"page_cgroup": "#e31a1c", "memmap": "#6a51a3"}
HOLE_HATCH = "////"

#: Columns of the axis when blocks must be aggregated.
DEFAULT_COLUMNS = 500
#: Below this many blocks in a band every block is drawn on its own.
SINGLE_BLOCKS = 256
#: A used content kind is drawn at least this fraction of a row high.
MIN_CONTENT_SHARE = 0.08

_FW_H = 0.45
_ROW_H = 1.0
_GAP = 0.75


@dataclass
class RenderInfo:
    """What was drawn (for tests and for the command's summary)."""

    blocks_per_category: dict[str, int] = field(default_factory=dict)
    block_artists: int = 0
    aggregated: bool = False
    legend: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    arrows: list[str] = field(default_factory=list)
    bands: list[str] = field(default_factory=list)
    holes: int = 0
    #: virtio-mem: not-plugged ranges drawn, plugged and unplugged sub-blocks.
    virtio: dict[str, int] = field(default_factory=dict)
    path: str | None = None


def _rect(ax: Axes, x: float, y: float, w: float, h: float, **kw: Any) -> Any:
    from matplotlib.patches import Rectangle

    r = Rectangle((x, y), w, h, **kw)
    ax.add_patch(r)
    return r


def _contents_sum(m: MemoryMap, first: int, last: int) -> dict[str, int]:
    out: dict[str, int] = {}
    assert m.contents is not None
    if last - first > 4 * len(m.contents):
        items = [c for i, c in m.contents.items() if first <= i <= last]
    else:
        items = [c for i in range(first, last + 1) if (c := m.contents.get(i)) is not None]
    for c in items:
        for k, n in c.pages.items():
            out[k] = out.get(k, 0) + n
    return out


def _shares(pages: dict[str, int]) -> list[tuple[str, float]]:
    """Drawn fractions of a contents row: used kinds at least MIN_CONTENT_SHARE."""
    total = sum(pages.values())
    if total <= 0:
        return []
    used = [(k, pages[k] / total) for k in CONTENT_KEYS if k != "free" and pages.get(k, 0) > 0]
    shown = [(k, max(f, MIN_CONTENT_SHARE)) for k, f in used]
    s = sum(f for _, f in shown)
    if s > 1.0:
        shown = [(k, f / s) for k, f in shown]
        s = 1.0
    free = 1.0 - s
    return ([("free", free)] if free > 1e-9 else []) + shown


def draw_on(
    ax: Axes,
    m: MemoryMap,
    scale: AddressScale | None = None,
    columns: int = DEFAULT_COLUMNS,
) -> RenderInfo:
    """Draw ``m`` on ``ax`` (x: axis units of ``scale``, y: rows, downwards)."""
    scale = scale or map_scale(m)
    info = RenderInfo()
    cats_used: set[str] = set()
    kinds_used: set[str] = set()
    fw_used: set[str] = set()
    dep_kinds: set[str] = set()
    yticks: list[tuple[float, str]] = []
    # firmware row
    y = 0.0
    if m.firmware:
        for f in m.firmware:
            x0, x1 = scale.x(f.start), scale.x(f.end)
            w = max(x1 - x0, 0.002)
            _rect(
                ax,
                x0,
                y,
                w,
                _FW_H,
                facecolor=FIRMWARE_COLORS.get(f.type, "#fdd0a2"),
                edgecolor="none",
                zorder=1 if f.type == "System RAM" else 2,
                gid=f"firmware:{f.type}:{f.start:#x}-{f.end - 1:#x}",
            )
            fw_used.add(f.type)
        yticks.append((y + _FW_H / 2, "firmware memmap"))
        y += _FW_H + _GAP
    # node bands
    band_rows: dict[int | None, tuple[float, float]] = {}  # node -> (top, bottom)
    block_pos: dict[int, tuple[float, float, float]] = {}  # block -> (x centre, top, bottom)
    for nid in m.band_nodes():
        blocks = m.node_blocks(nid)
        top = y
        name = f"node {nid}" if nid is not None else "no node"
        info.bands.append(name)
        yticks.append((y + _ROW_H / 2, name))
        single = len(blocks) <= SINGLE_BLOCKS
        if not blocks:
            ax.text(
                0.5,
                y + _ROW_H / 2,
                "no memory blocks",
                ha="center",
                va="center",
                fontsize=8,
                color="#737373",
            )
        if single:
            cells = [
                Cell(
                    scale.x(b.start),
                    scale.x(b.end),
                    b.index,
                    b.index,
                    tuple(1 if k == b.category else 0 for k in CATEGORY_KEYS),
                )
                for b in blocks
            ]
            aggregated = False
        else:
            cells, aggregated = bin_blocks(blocks, scale, columns)
        info.aggregated |= aggregated
        for c in cells:
            h0 = y
            total = c.nr_blocks
            for ci, n in enumerate(c.counts):
                if not n:
                    continue
                key = CATEGORY_KEYS[ci]
                h = _ROW_H * n / total
                _rect(
                    ax,
                    c.x0,
                    h0,
                    max(c.x1 - c.x0, 0.0008),
                    h,
                    facecolor=CATEGORY_COLORS[key],
                    edgecolor="white" if single and len(blocks) <= 64 else "none",
                    linewidth=0.6,
                    gid=f"block:{key}:{c.first}-{c.last}:{n}",
                )
                h0 += h
                info.block_artists += 1
                info.blocks_per_category[key] = info.blocks_per_category.get(key, 0) + n
                cats_used.add(key)
        for b in blocks:
            block_pos[b.index] = ((scale.x(b.start) + scale.x(b.end)) / 2, y, y + _ROW_H)
        # block names when there is room
        if single:
            for b in blocks:
                x0, x1 = scale.x(b.start), scale.x(b.end)
                if x1 - x0 >= 0.045:
                    dark = b.category in ("online:Normal", "online:DMA", "online")
                    ax.text(
                        (x0 + x1) / 2,
                        y + _ROW_H / 2,
                        b.name,
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if dark else "black",
                    )
        y += _ROW_H
        if m.contents is not None:
            yticks.append((y + _ROW_H / 2, f"node {nid} contents"))
            for c in cells:
                pages = _contents_sum(m, c.first, c.last)
                h0 = y
                for key, frac in _shares(pages):
                    _rect(
                        ax,
                        c.x0,
                        h0,
                        max(c.x1 - c.x0, 0.0008),
                        _ROW_H * frac,
                        facecolor=CONTENT_COLORS[key],
                        edgecolor="none",
                        gid=f"content:{key}:{c.first}-{c.last}:{pages.get(key, 0)}",
                    )
                    h0 += _ROW_H * frac
                    kinds_used.add(key)
                if single and len(blocks) <= 64:
                    _rect(
                        ax,
                        c.x0,
                        y,
                        c.x1 - c.x0,
                        _ROW_H,
                        fill=False,
                        edgecolor="#bdbdbd",
                        linewidth=0.6,
                    )
            y += _ROW_H
        band_rows[nid] = (top, y)
        info.devices += draw_regions(ax, m.node_virtio(nid), scale, top, _ROW_H, y, info.virtio)
        # devices of this band
        for d in m.devices:
            mine = [b for b in blocks if b.device == d.name]
            if not mine:
                continue
            x0, x1 = scale.x(d.start), scale.x(d.end)
            _rect(
                ax,
                x0,
                top - 0.06,
                x1 - x0,
                y - top + 0.12,
                fill=False,
                edgecolor="black",
                linewidth=1.8,
                gid=f"device:{d.name}",
            )
            ax.text(
                x0,
                y + 0.1,
                f"{d.name}  {human(d.size)}  memory{d.blocks[0]}-{d.blocks[-1]}",
                ha="left",
                va="top",
                fontsize=8,
                fontweight="bold",
            )
            if d.name not in info.devices:
                info.devices.append(d.name)
        y += _GAP
    bottom = y - _GAP
    # holes: between blocks to scale, and the compressed segments
    for hole in m.holes():
        x0, x1 = scale.x(hole.start), scale.x(hole.end)
        _rect(
            ax,
            x0,
            _FW_H + _GAP if m.firmware else 0.0,
            x1 - x0,
            bottom - (_FW_H + _GAP if m.firmware else 0.0),
            facecolor="none",
            edgecolor="#bdbdbd",
            hatch=HOLE_HATCH,
            linewidth=0,
            gid=f"hole:{hole.start:#x}-{hole.end - 1:#x}",
        )
        info.holes += 1
    for s in scale.segments:
        if s.compressed:
            _rect(ax, s.x0, -0.1, s.x1 - s.x0, bottom + 0.2, facecolor="white", edgecolor="none")
            _rect(
                ax,
                s.x0,
                -0.1,
                s.x1 - s.x0,
                bottom + 0.2,
                facecolor="none",
                edgecolor="#969696",
                hatch="xx",
                linewidth=0,
            )
            ax.text(
                (s.x0 + s.x1) / 2,
                bottom / 2,
                f"{human(s.end - s.start)} not to scale",
                rotation=90,
                ha="center",
                va="center",
                fontsize=7,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
            )
    # dependencies
    for dep in m.deps:
        src = [block_pos[i] for i in range(dep.src_first, dep.src_last + 1) if i in block_pos]
        dsts = [block_pos[i] for i in dep.dst_blocks if i in block_pos]
        if not src or not dsts:
            continue
        dst = (sum(p[0] for p in dsts) / len(dsts), dsts[0][1], dsts[0][2])
        sx = sum(p[0] for p in src) / len(src)
        s_top = src[0][1]
        dx, d_top, d_bot = dst
        color = DEP_COLORS.get(dep.kinds[0], "black") if len(dep.kinds) == 1 else "#67000d"
        if abs(d_top - s_top) < 1e-9:  # same band: an arc above it
            start, end, rad = (sx, s_top), (dx, d_top), 0.5 if dx < sx else -0.5
        elif d_top < s_top:  # destination band above
            start, end, rad = (sx, s_top), (dx, d_bot), 0.15
        else:
            start, end, rad = (sx, src[0][2]), (dx, d_top), 0.15
        ann = ax.annotate(
            "",
            xy=end,
            xytext=start,
            arrowprops={
                "arrowstyle": "-|>",
                "color": color,
                "linewidth": 1.6,
                "shrinkA": 2,
                "shrinkB": 2,
                "connectionstyle": f"arc3,rad={rad}",
            },
            gid=f"dep:{dep.src_first}-{dep.src_last}:{dep.dst}:{','.join(dep.kinds)}",
        )
        if ann.arrow_patch is not None:
            ann.arrow_patch.set_gid(f"{ann.get_gid()}:arrow")
        info.arrows.append(dep.label)
        dep_kinds.update(dep.kinds if len(dep.kinds) == 1 else ("both",))
    # axes
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(bottom + 0.4, -0.9)
    ticks = scale.ticks()
    ax.set_xticks([t for t, _ in ticks], [lbl for _, lbl in ticks], fontsize=8)
    ax.set_yticks([t for t, _ in yticks], [lbl for _, lbl in yticks], fontsize=9)
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel("physical address", fontsize=9)
    # legend
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = []
    for key in CATEGORY_KEYS:
        if key in cats_used:
            handles.append(Patch(facecolor=CATEGORY_COLORS[key], label=CATEGORY_LABEL[key]))
    for t in sorted(fw_used):
        handles.append(Patch(facecolor=FIRMWARE_COLORS.get(t, "#fdd0a2"), label=f"firmware: {t}"))
    for key in CONTENT_KEYS:
        if key in kinds_used:
            handles.append(
                Patch(facecolor=CONTENT_COLORS[key], edgecolor="#bdbdbd", label=CONTENT_LABEL[key])
            )
    if info.holes or any(s.compressed for s in scale.segments):
        handles.append(
            Patch(facecolor="white", edgecolor="#969696", hatch=HOLE_HATCH, label="hole")
        )
    handles += legend_handles(info.virtio)
    if info.devices:
        handles.append(
            Patch(facecolor="white", edgecolor="black", linewidth=1.8, label="memory device")
        )
    for k in ("memmap", "page_cgroup", "both"):
        if k in dep_kinds:
            what = "memmap and page_cgroup" if k == "both" else k
            handles.append(
                Line2D(
                    [],
                    [],
                    color=DEP_COLORS.get(k, "#67000d"),
                    marker=">",
                    label=f"{what} of a block lives in another block",
                )
            )
    info.legend = [str(h.get_label()) for h in handles]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.005, 1.0),
        ncol=1,
        fontsize=8,
        frameon=False,
    )
    title = m.title + (f"  ({'; '.join(m.notes)})" if m.notes else "")
    nb = len(m.blocks)
    sub = f"{nb} blocks of {human(m.block_size)}"
    if info.aggregated:
        sub += f", aggregated into {columns} columns"
    if m.contents is not None:
        sub += f"; contents: used kinds drawn at least {MIN_CONTENT_SHARE:.0%} high"
    ax.set_title(f"{title}\n{sub}", fontsize=10, loc="left")
    return info


def _figure_height(m: MemoryMap) -> float:
    rows = len(m.band_nodes()) * (2 if m.contents is not None else 1)
    return 2.6 + 0.75 * rows + (0.4 if m.firmware else 0.0)


def figure(
    m: MemoryMap, columns: int = DEFAULT_COLUMNS, width: float = 14.0
) -> tuple[Figure, RenderInfo]:
    """A new figure with ``m`` drawn on it (not attached to pyplot)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, _figure_height(m)), layout="constrained")
    ax = fig.add_subplot()
    info = draw_on(ax, m, columns=columns)
    return fig, info


def save_map(m: MemoryMap, path: str, columns: int = DEFAULT_COLUMNS, dpi: int = 110) -> RenderInfo:
    """Write ``m`` to ``path`` (PNG or SVG by extension)."""
    fig, info = figure(m, columns)
    _save(fig, path, dpi)
    info.path = path
    return info


def save_maps(
    maps: list[MemoryMap], path: str, columns: int = DEFAULT_COLUMNS, dpi: int = 110
) -> list[RenderInfo]:
    """Several maps stacked in one picture on one common address axis (before/after)."""
    from matplotlib.figure import Figure

    from memhp.host.memmap_view import AddressScale

    major: list[tuple[int, int]] = []
    minor: list[tuple[int, int]] = []
    regions: list[tuple[int, int]] = []
    for m in maps:
        major += [(b.start, b.end) for b in m.blocks]
        major += [(f.start, f.end) for f in m.firmware if f.type == "System RAM"]
        minor += [(f.start, f.end) for f in m.firmware if f.type != "System RAM"]
        regions += [p for r in m.virtio for p in r.not_added()]
    scale = AddressScale(major, minor, regions=regions)
    heights = [_figure_height(m) for m in maps]
    fig = Figure(figsize=(14.0, sum(heights)), layout="constrained")
    axes = fig.subplots(len(maps), 1, height_ratios=heights, squeeze=False)
    infos = [draw_on(axes[i][0], m, scale, columns) for i, m in enumerate(maps)]
    _save(fig, path, dpi)
    for i in infos:
        i.path = path
    return infos


def _save(fig: Figure, path: str, dpi: int) -> None:
    import os

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fmt = "svg" if path.lower().endswith(".svg") else "png"
    fig.savefig(path, format=fmt, dpi=dpi)
