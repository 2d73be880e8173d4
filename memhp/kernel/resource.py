"""The iomem resource tree (kernel/resource.c) and /proc/iomem.

``iomem_resource`` is the root of a tree of [start, end] ranges (end inclusive):
children are sorted, disjoint and inside their parent.  What the model puts in it
is what concerns memory: the e820 map and the kernel image at boot
(memhp.kernel.arch.x86.kernel.e820), hot-added "System RAM"
(mm/memory_hotplug.c register_memory_resource()), the virtio-mem device region
"virtioN" and its "System RAM (virtio_mem)" children (drivers/virtio/virtio_mem.c);
PCI windows, BARs and ROMs are not modelled.

* :meth:`Iomem.request_resource` is request_resource_conflict() (__request_resource:
  a place among the root's children, or the conflicting resource);
* :meth:`Iomem.insert_resource` is insert_resource() (__insert_resource: descends
  into a resource that contains the new one, adopts the resources it contains);
* :meth:`Iomem.request_region` is __request_region(): like request_resource, but
  descending into conflicting resources that are not IORESOURCE_BUSY;
* :meth:`Iomem.release_resource` is release_resource() (with its children),
  :meth:`Iomem.release_mem_region_adjustable` the remove path of memory hotplug;
* :meth:`Iomem.reserve_region_with_split` is reserve_region_with_split();
* :meth:`Iomem.walk` is r_start()/r_next() (next_resource(): depth first) and
  :meth:`Iomem.render` is r_show() for /proc/iomem.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field

from memhp.abi.iomem import SYSTEM_RAM, format_line

# include/linux/ioport.h
IORESOURCE_MEM = 0x00000200
IORESOURCE_SYSRAM = 0x01000000
IORESOURCE_SYSRAM_DRIVER_MANAGED = 0x02000000
IORESOURCE_SYSRAM_MERGEABLE = 0x04000000
IORESOURCE_EXCLUSIVE = 0x08000000
IORESOURCE_BUSY = 0x80000000
IORESOURCE_SYSTEM_RAM = IORESOURCE_MEM | IORESOURCE_SYSRAM
#: resource_type(): the type bits a region inherits from its parent.
IORESOURCE_TYPE_BITS = 0x00001F00


@dataclass(eq=False)
class Resource:
    """struct resource: [start, end] (end inclusive), name, flags, the tree links."""

    start: int
    end: int
    name: str
    flags: int = IORESOURCE_MEM
    parent: Resource | None = field(default=None, repr=False)
    #: The children, sorted by start (the kernel's child/sibling list).
    children: list[Resource] = field(default_factory=list, repr=False)

    @property
    def busy(self) -> bool:
        return bool(self.flags & IORESOURCE_BUSY)

    def _slot(self, start: int) -> int:
        """Index of the first child starting after ``start``."""
        return bisect_right(self.children, start, key=lambda r: r.start)


class Iomem:
    """iomem_resource and the functions of kernel/resource.c on it."""

    def __init__(self, end: int = (1 << 64) - 1) -> None:
        self.root = Resource(0, end, "PCI mem", IORESOURCE_MEM)

    # ------------------------------------------------------------------ placing
    @staticmethod
    def _conflict(parent: Resource, new: Resource) -> Resource | None:
        """__request_resource() without linking: the root itself when ``new`` is not
        inside it, the first overlapping child, or None (it fits)."""
        if new.end < new.start or new.start < parent.start or new.end > parent.end:
            return parent
        i = parent._slot(new.end)  # children[:i] start at or before new.end
        if i and parent.children[i - 1].end >= new.start:
            # the first overlapping one: walk back while they still overlap
            j = i - 1
            while j and parent.children[j - 1].end >= new.start:
                j -= 1
            return parent.children[j]
        return None

    @staticmethod
    def _link(parent: Resource, new: Resource) -> None:
        parent.children.insert(parent._slot(new.start), new)
        new.parent = parent

    def request_resource(self, parent: Resource, new: Resource) -> Resource | None:
        """request_resource_conflict(): link ``new`` under ``parent``; the conflict or None."""
        c = self._conflict(parent, new)
        if c is None:
            self._link(parent, new)
        return c

    def insert_resource(self, new: Resource, parent: Resource | None = None) -> Resource | None:
        """insert_resource_conflict() -> __insert_resource(): None when inserted,
        else the resource it partly overlaps."""
        parent = parent or self.root
        while True:
            first = self._conflict(parent, new)
            if first is None:
                self._link(parent, new)
                return None
            if first is parent or first is new:
                return first
            if first.start > new.start or first.end < new.end:
                break
            if first.start == new.start and first.end == new.end:
                break
            parent = first  # first contains new: go down
        # new contains first and maybe its next siblings: adopt them
        i = parent.children.index(first)
        j = i
        while j < len(parent.children) and parent.children[j].start <= new.end:
            nxt = parent.children[j]
            if nxt.start < new.start or nxt.end > new.end:
                return nxt  # partial overlap: bad, and unfixable
            j += 1
        adopted = parent.children[i:j]
        del parent.children[i:j]
        new.children = adopted + new.children
        for r in adopted:
            r.parent = new
        self._link(parent, new)
        return None

    def insert_resource_expand_to_fit(self, new: Resource) -> None:
        """insert_resource_expand_to_fit(): grow ``new`` over the resources it
        partly overlaps until it can be inserted (not past the root's own ones)."""
        while True:
            c = self.insert_resource(new)
            if c is None:
                return
            if c is self.root:
                return  # "Unable to expand"
            new.start = min(new.start, c.start)
            new.end = max(new.end, c.end)

    def request_region(self, start: int, n: int, name: str, flags: int) -> Resource | None:
        """__request_region() on iomem_resource: BUSY, the parent's type, descending
        into conflicting resources that are not busy; None on conflict (-EBUSY)."""
        parent = self.root
        res = Resource(start, start + n - 1, name)
        while True:
            res.flags = (parent.flags & IORESOURCE_TYPE_BITS) | IORESOURCE_BUSY | flags
            c = self.request_resource(parent, res)
            if c is None:
                return res
            if c is not parent and not c.busy:
                parent = c
                continue
            return None

    def region_available(self, start: int, n: int) -> bool:
        """Whether :meth:`request_region` of [start, start+n) would succeed (the
        check register_memory_resource() makes before add_memory_resource())."""
        parent, res = self.root, Resource(start, start + n - 1, "")
        while True:
            c = self._conflict(parent, res)
            if c is None:
                return True
            if c is parent or c.busy:
                return False
            parent = c

    def register_memory_resource(
        self, start: int, size: int, name: str, merge: bool = False
    ) -> Resource | None:
        """The request of mm/memory_hotplug.c register_memory_resource(): busy System
        RAM, driver managed unless named "System RAM" (None: -EEXIST).  ``merge``
        (MHP_MERGE_RESOURCE): add_memory_resource() then calls
        merge_system_ram_resource() once the memory is added."""
        flags = IORESOURCE_SYSTEM_RAM | IORESOURCE_BUSY
        if name != SYSTEM_RAM:
            flags |= IORESOURCE_SYSRAM_DRIVER_MANAGED
        res = self.request_region(start, size, name, flags)
        if merge and res is not None:
            self.merge_system_ram_resource(res)
        return res

    def merge_system_ram_resource(self, res: Resource) -> None:
        """merge_system_ram_resource(): mark ``res`` mergeable and fold it into its
        next, then its previous sibling when system_ram_resources_mergeable() (same
        flags, name, adjacent, no children); release_mem_region_adjustable() splits
        again on remove."""
        want = IORESOURCE_SYSTEM_RAM | IORESOURCE_BUSY
        parent = res.parent
        if res.flags & want != want or parent is None:
            return
        res.flags |= IORESOURCE_SYSRAM_MERGEABLE
        i = parent.children.index(res)
        if i + 1 < len(parent.children) and _mergeable(res, parent.children[i + 1]):
            nxt = parent.children.pop(i + 1)
            res.end = nxt.end
            nxt.parent = None
        if i > 0 and _mergeable(parent.children[i - 1], res):
            parent.children[i - 1].end = res.end
            del parent.children[i]
            res.parent = None

    # ------------------------------------------------------------------ releasing
    def release_resource(self, old: Resource) -> None:
        """release_resource() -> __release_resource(old, true): ``old`` leaves the
        tree with its children."""
        p = old.parent
        if p is None:
            return
        p.children.remove(old)
        old.parent = None

    def release_mem_region_adjustable(self, start: int, size: int) -> None:
        """release_mem_region_adjustable(): find the busy memory resource holding
        [start, start+size) (descending through non-busy ones) and free, shrink or
        split it."""
        end = start + size - 1
        parent = self.root
        while True:
            # children are sorted and disjoint: only the last one starting at or
            # before ``start`` can hold the range
            i = parent._slot(start) - 1
            if i < 0:
                return
            res = parent.children[i]
            if res.end < end or not res.flags & IORESOURCE_MEM:
                return
            if not res.busy:
                parent = res
                continue
            if res.start == start and res.end == end:
                del parent.children[i]
                res.parent = None
            elif res.start == start:
                res.start = end + 1
            elif res.end == end:
                res.end = start - 1
            else:
                tail = Resource(end + 1, res.end, res.name, res.flags, parent)
                res.end = start - 1
                parent.children.insert(i + 1, tail)
            return

    def reserve_region_with_split(self, start: int, end: int, name: str) -> None:
        """reserve_region_with_split() at the root: fill the parts of [start, end]
        that no top-level resource covers (BUSY), splitting around conflicts."""
        todo = [(start, end)]
        while todo:
            s, e = todo.pop()
            res = Resource(s, e, name, IORESOURCE_MEM | IORESOURCE_BUSY)
            c = self.request_resource(self.root, res)
            if c is None:
                continue
            if c is self.root or (c.start <= s and c.end >= e):
                continue
            if c.start > s:
                if c.end < e:
                    todo.append((c.end + 1, e))
                todo.append((s, c.start - 1))
            else:
                todo.append((c.end + 1, e))

    # ------------------------------------------------------------------ reading
    def walk(self) -> Iterator[tuple[int, Resource]]:
        """r_start()/r_next(): every resource depth first, with its depth (0: a
        child of the root)."""
        stack: list[tuple[int, Resource]] = [(0, r) for r in reversed(self.root.children)]
        while stack:
            d, r = stack.pop()
            yield d, r
            stack.extend((d + 1, c) for c in reversed(r.children))

    def find(self, name: str) -> Resource | None:
        """The first resource named ``name`` in walk order."""
        return next((r for _, r in self.walk() if r.name == name), None)

    def render(self, show_addresses: bool = True) -> str:
        """/proc/iomem (r_show()): zeros instead of addresses for a reader without
        CAP_SYS_ADMIN (``show_addresses`` False)."""
        lines = [
            format_line(d, r.start if show_addresses else 0, r.end if show_addresses else 0, r.name)
            for d, r in self.walk()
        ]
        return "".join(line + "\n" for line in lines)


def _mergeable(r1: Resource, r2: Resource) -> bool:
    """system_ram_resources_mergeable(): r1 directly before r2, alike, childless."""
    return (
        r1.flags == r2.flags
        and r1.end + 1 == r2.start
        and r1.name == r2.name
        and not r1.children
        and not r2.children
    )
