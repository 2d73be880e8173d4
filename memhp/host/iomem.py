"""Reading /proc/iomem (the grammar is :mod:`memhp.abi.iomem`).

The lines become a tree again (their indentation is their nesting); the tool uses
it to find each virtio-mem device's region ("virtioN") and the memory the driver
added inside it ("System RAM (virtio_mem)").  A reader without CAP_SYS_ADMIN sees
zeros for every address: such a view is reported as unusable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memhp.abi.iomem import is_virtio_parent, parse_line
from memhp.abi.paths import PROC_IOMEM
from memhp.abi.virtio import VIRTIO_MEM_RESOURCE_NAME
from memhp.host.errors import SysfsError
from memhp.host.root import SysfsRoot


@dataclass
class IomemNode:
    """One resource: [start, end] (end inclusive), name, children in order."""

    start: int
    end: int
    name: str
    children: list[IomemNode] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.end - self.start + 1


def parse_iomem(text: str) -> list[IomemNode]:
    """The top-level resources of a /proc/iomem text (lines of another shape are skipped)."""
    top: list[IomemNode] = []
    stack: list[tuple[int, IomemNode]] = []
    for raw in text.splitlines():
        p = parse_line(raw)
        if p is None:
            continue
        node = IomemNode(p.start, p.end, p.name)
        while stack and stack[-1][0] >= p.depth:
            stack.pop()
        (stack[-1][1].children if stack else top).append(node)
        stack.append((p.depth, node))
    return top


def walk(nodes: list[IomemNode]) -> list[IomemNode]:
    """Every resource, depth first."""
    out: list[IomemNode] = []
    for n in nodes:
        out.append(n)
        out.extend(walk(n.children))
    return out


@dataclass(frozen=True)
class VirtioRegion:
    """A virtio-mem device region and the ranges its driver added (inclusive ends)."""

    name: str
    start: int
    end: int
    added: tuple[tuple[int, int], ...]

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def contains(self, addr: int) -> bool:
        return self.start <= addr <= self.end


def read_iomem(root: SysfsRoot) -> list[IomemNode] | None:
    """The parsed /proc/iomem of the root; None when absent or all zeros."""
    try:
        text = root.read_str(PROC_IOMEM)
    except SysfsError:
        return None
    nodes = parse_iomem(text)
    if nodes and all(n.end == 0 for n in walk(nodes)):
        return None  # read without CAP_SYS_ADMIN
    return nodes


def virtio_regions(root: SysfsRoot) -> dict[str, VirtioRegion]:
    """``virtioN`` -> its region, from /proc/iomem (empty when unreadable)."""
    nodes = read_iomem(root)
    out: dict[str, VirtioRegion] = {}
    for n in walk(nodes or []):
        if is_virtio_parent(n.name):
            added = tuple(
                (c.start, c.end) for c in n.children if c.name == VIRTIO_MEM_RESOURCE_NAME
            )
            out[n.name] = VirtioRegion(n.name, n.start, n.end, added)
    return out
