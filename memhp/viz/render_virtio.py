"""Drawing virtio-mem device regions on a node band (see :mod:`memhp.viz.render`).

Each region is outlined like a memory device and labelled ``virtioN``.  The parts
of the region no memory block was added for are a pale hatched band across the
block row ("not plugged"); within the device's online blocks a strip along the
bottom of the row shows the sub-blocks (:data:`~memhp.host.memmap_virtio.SUB_BLOCK`),
plugged dark and unplugged (PG_offline, fake offline) yellow.  Every element has a
``gid`` the SVG keeps as its ``id``:

- ``virtio:not-plugged:<name>:<first>-<last>`` (inclusive addresses),
- ``subblocks:<plugged|unplugged>:<name>:<first>-<last>:<count>``,
- ``device:<name>`` (the outline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from memhp.host.memmap_view import AddressScale, human
from memhp.host.memmap_virtio import SUB_BLOCK, VirtioRegionMap

if TYPE_CHECKING:
    from matplotlib.axes import Axes

NOT_PLUGGED_COLOR = "#fff7bc"
NOT_PLUGGED_HATCH = ".."
SUBBLOCK_COLORS: dict[str, str] = {"plugged": "#01665e", "unplugged": "#fec44f"}
#: The sub-block strip's share of the block row (at its bottom).
STRIP = 0.3

LEGEND: dict[str, str] = {
    "not-plugged": "virtio-mem region without memory block (not plugged)",
    "plugged": f"virtio-mem sub-block ({human(SUB_BLOCK)}) plugged",
    "unplugged": f"virtio-mem sub-block ({human(SUB_BLOCK)}) unplugged (PG_offline)",
}


def draw_regions(
    ax: Axes,
    regions: Sequence[VirtioRegionMap],
    scale: AddressScale,
    top: float,
    row_h: float,
    bottom: float,
    used: dict[str, int],
) -> list[str]:
    """Draw ``regions`` on the band whose block row is [top, top + row_h) and which
    ends at ``bottom``; counts what was drawn in ``used`` (not-plugged ranges,
    plugged and unplugged sub-blocks).  Returns the names of the regions drawn."""
    from matplotlib.patches import Rectangle

    def rect(x0: float, y: float, w: float, h: float, **kw: Any) -> None:
        ax.add_patch(Rectangle((x0, y), w, h, **kw))

    names = []
    for r in regions:
        for a, b in r.not_added():
            x0, x1 = scale.x(a), scale.x(b)
            rect(
                x0,
                top,
                max(x1 - x0, 0.0008),
                row_h,
                facecolor=NOT_PLUGGED_COLOR,
                edgecolor="#bdbdbd",
                hatch=NOT_PLUGGED_HATCH,
                linewidth=0,
                zorder=3,
                gid=f"virtio:not-plugged:{r.name}:{a:#x}-{b - 1:#x}",
            )
            used["not-plugged"] = used.get("not-plugged", 0) + 1
        for a, b, plugged in r.runs():
            key = "plugged" if plugged else "unplugged"
            x0, x1 = scale.x(a), scale.x(b)
            rect(
                x0,
                top + row_h * (1 - STRIP),
                max(x1 - x0, 0.0008),
                row_h * STRIP,
                facecolor=SUBBLOCK_COLORS[key],
                edgecolor="none",
                zorder=3,
                gid=f"subblocks:{key}:{r.name}:{a:#x}-{b - 1:#x}:{(b - a) // SUB_BLOCK}",
            )
            used[key] = used.get(key, 0) + (b - a) // SUB_BLOCK
        x0, x1 = scale.x(r.start), scale.x(r.end)
        rect(
            x0,
            top - 0.06,
            x1 - x0,
            bottom - top + 0.12,
            fill=False,
            edgecolor="black",
            linewidth=1.8,
            zorder=4,
            gid=f"device:{r.name}",
        )
        blocks = f"memory{r.blocks[0]}-{r.blocks[-1]}" if r.blocks else "no memory block added"
        ax.text(
            x0,
            bottom + 0.1,
            f"{r.name}  virtio-mem {human(r.size)}  {blocks}",
            ha="left",
            va="top",
            fontsize=8,
            fontweight="bold",
            zorder=4,
        )
        names.append(r.name)
    return names


def legend_handles(used: dict[str, int]) -> list[Any]:
    """Legend entries for what :func:`draw_regions` drew."""
    from matplotlib.patches import Patch

    out: list[Any] = []
    if used.get("not-plugged"):
        out.append(
            Patch(
                facecolor=NOT_PLUGGED_COLOR,
                edgecolor="#bdbdbd",
                hatch=NOT_PLUGGED_HATCH,
                label=LEGEND["not-plugged"],
            )
        )
    for key in ("plugged", "unplugged"):
        if used.get(key):
            out.append(Patch(facecolor=SUBBLOCK_COLORS[key], label=LEGEND[key]))
    return out
