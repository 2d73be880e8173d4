"""Room to migrate to: will the pages of the blocks being offlined find a place?

offline_pages() (mm/memory_hotplug.c) isolates the blocks' page blocks, then
do_migrate_range() moves every LRU page out: alloc_migration_target() asks for a new
page with ``GFP_USER | __GFP_MOVABLE | __GFP_RETRY_MAYFAIL`` on any node and zone
the page may use (reclaim allowed, no OOM kill).  When no page can be had the
migration fails and offline_pages() tries again, round after round, until the
writer is interrupted (EINTR, what ``memhp remove --timeout`` does); the free pages
of the isolated blocks themselves are no room (set_migratetype_isolate() takes them
out of NR_FREE_PAGES).

The estimate here: the pages to migrate are the blocks' LRU pages (user memory,
page cache, unevictable and mlocked pages, transparent huge pages) from
/proc/kpageflags; the room is ``MemAvailable`` (si_mem_available(): free pages above
the zones' high watermarks and reserves, plus the page cache and slab reclaim could
free), less the free pages of the blocks themselves.  It errs on the safe side by
the difference between the high and min watermarks (what si_mem_available() keeps
back and an allocation may still use).  Free huge pages are not counted: offlining
dissolves them.

Where the new pages may come from (do_migrate_range(), alloc_migration_target()):
the nodemask is the nodes with memory less the block's own node (the node itself
only when no other node has memory), and the allocation keeps it to the end
(GFP_USER reclaims: ALLOC_CPUSET stays set); a page of a kernel zone is asked for
without __GFP_HIGHMEM, so it never lands in ZONE_MOVABLE.  When that leaves out
memory MemAvailable counts (a block's own node on a machine with several nodes with
memory; another node's or its own ZONE_MOVABLE for a kernel-zone block), the room is
taken zone by zone from /proc/zoneinfo instead: for each zone the allocation may use,
its free pages above its min watermark and the lowmem reserve it keeps from such an
allocation (what __zone_watermark_ok() lets the slow path take), plus its file
pages less min(half of them, its low watermark) (what reclaim may free, as
si_mem_available() counts them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memhp.abi.layout import PAGE_SIZE
from memhp.abi.paths import NODE_HAS_MEMORY, PROC_MEMINFO, PROC_ZONEINFO
from memhp.host.errors import SysfsError
from memhp.host.root import SysfsRoot

#: Page kinds (:data:`memhp.host.diagnose.PAGE_KINDS`) that offline_pages() migrates.
MIGRATED_KINDS = ("lru", "unevictable", "thp")


@dataclass(frozen=True)
class Room:
    """Pages the blocks must move out, and the room for them elsewhere."""

    #: pages offline_pages() must migrate out of the blocks
    to_migrate: int
    #: free pages in the blocks (no room once isolated)
    free_inside: int
    #: MemAvailable (MemFree on kernels before 3.14), in pages
    available: int
    #: where ``available`` comes from (a /proc/meminfo line, or /proc/zoneinfo)
    source: str
    #: the nodes the pages may go to when not all the nodes with memory (None: any)
    nodes: tuple[int, ...] | None = None
    #: a kernel zone's pages: kernel zones only
    kernel_only: bool = False
    #: of blocks in both kinds of zone, the room of those in kernel zones (whose pages
    #: may go to kernel zones only); this Room is then that of all the pages
    kernel_part: Room | None = None

    @property
    def elsewhere(self) -> int:
        """Pages available outside the blocks."""
        return max(0, self.available - self.free_inside)

    @property
    def enough(self) -> bool:
        return self.to_migrate <= self.elsewhere and (
            self.kernel_part is None or self.kernel_part.enough
        )

    def describe(self) -> str:
        less = " less the blocks' free pages" if self.free_inside else ""
        own = (
            f"{_mib(self.to_migrate)} to migrate, about {_mib(self.elsewhere)} available "
            f"elsewhere ({self.source}{less}{self.where()})"
        )
        if self.kernel_part is None:
            return own
        return f"{own}; of those, from blocks in kernel zones: {self.kernel_part.describe()}"

    def where(self) -> str:
        """The allocation's limits, as a clause ("" when none)."""
        parts = []
        if self.nodes is not None:
            names = ", ".join(map(str, self.nodes))
            parts.append(f"only to node{'s' if len(self.nodes) > 1 else ''} {names}")
        if self.kernel_only:
            parts.append("only to kernel zones (the pages are in one)")
        if not parts:
            return ""
        return "; the kernel migrates them " + " and ".join(parts)

    def reason(self, what: str = "it holds") -> str:
        """Why ``what`` ("it holds", "its blocks hold") will not go offline."""
        k = self.kernel_part
        if k is not None and not k.enough and self.to_migrate <= self.elsewhere:
            return k.reason(what.replace("its blocks", "its blocks in kernel zones"))
        return (
            f"{what} {_mib(self.to_migrate)} "
            f"of pages to migrate, but only about {_mib(self.elsewhere)} is available elsewhere "
            f"({self.source}{self.where()}): offline_pages() would keep retrying until "
            "interrupted (EINTR); free memory elsewhere (stop tasks, delete tmpfs files) or "
            "offline fewer blocks"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "to_migrate_bytes": self.to_migrate * PAGE_SIZE,
            "free_inside_bytes": self.free_inside * PAGE_SIZE,
            "available_elsewhere_bytes": self.elsewhere * PAGE_SIZE,
            "source": self.source,
            "nodes": list(self.nodes) if self.nodes is not None else None,
            "kernel_only": self.kernel_only,
            "enough": self.enough,
            "kernel_part": self.kernel_part.to_json() if self.kernel_part is not None else None,
        }


def _mib(pages: int) -> str:
    return f"{pages * PAGE_SIZE / (1 << 20):.1f} MiB"


def available_pages(root: SysfsRoot) -> tuple[int, str] | None:
    """(MemAvailable, "MemAvailable") in pages, else (MemFree, "MemFree"); None when
    /proc/meminfo cannot be read or has neither."""
    found = root.read_values(PROC_MEMINFO, ("MemAvailable", "MemFree"))
    for name in ("MemAvailable", "MemFree"):
        if found and name in found:
            return found[name] * 1024 // PAGE_SIZE, name
    return None


@dataclass(frozen=True)
class ZoneRoom:
    """One zone of /proc/zoneinfo, in pages: what a migration may take from it."""

    node: int
    name: str
    #: the zone's index in its node (DMA, DMA32, Normal, Movable, Device)
    index: int
    free: int
    min: int
    low: int
    #: "protection": lowmem_reserve[] by the allocation's highest zone index
    protection: tuple[int, ...]
    #: nr_zone_active_file + nr_zone_inactive_file
    file: int

    def room(self, highest: int) -> int:
        """Pages an allocation whose highest zone index is ``highest`` may have here."""
        reserve = self.protection[highest] if highest < len(self.protection) else 0
        return max(0, self.free - self.min - reserve) + self.file - min(self.file // 2, self.low)


_ZONE = re.compile(r"^Node (\d+), zone\s+(\S+)$")


def parse_zoneinfo(text: str) -> list[ZoneRoom]:
    """The zones of a /proc/zoneinfo text (zoneinfo_show_print()); ValueError when a
    zone lacks a field read here."""
    out: list[ZoneRoom] = []
    node, name, index = -1, "", -1
    fields: dict[str, str] = {}
    pagesets = False  # (past a zone's "pagesets": the per-CPU lines repeat names)

    def close() -> None:
        if node < 0:
            return
        try:
            prot = tuple(int(x) for x in str(fields["protection"]).strip("()").split(","))
            file = int(fields.get("nr_zone_active_file", 0))
            file += int(fields.get("nr_zone_inactive_file", 0))
            out.append(
                ZoneRoom(
                    node, name, index, int(fields["pages free"]), int(fields["min"]),
                    int(fields["low"]), prot, file,
                )
            )  # fmt: skip
        except (KeyError, ValueError) as e:
            raise ValueError(f"zone {name} of node {node}: {e}") from None

    for line in text.splitlines():
        if m := _ZONE.match(line):
            close()
            nid = int(m.group(1))
            index = index + 1 if nid == node else 0
            node, name, fields, pagesets = nid, m.group(2), {}, False
            continue
        s = line.strip()
        if s.startswith("protection:"):
            fields["protection"] = s.split(":", 1)[1].strip()
        elif s.startswith("pages free"):
            fields["pages free"] = s.split()[-1]
        elif s.startswith("pagesets"):
            pagesets = True
        elif not pagesets:
            parts = s.split()
            if len(parts) == 2 and parts[0] not in fields:
                fields[parts[0]] = parts[1]
    close()
    return out


def parse_nodelist(text: str) -> list[int]:
    """A node list such as "0-1,3" (bitmap_print_to_pagebuf() as a list)."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def migration_nodes(root: SysfsRoot, node: int) -> tuple[int, ...] | None:
    """do_migrate_range()'s nodemask for a block of ``node``: the nodes with memory
    less ``node``, or ``node`` alone; None when has_memory cannot be read."""
    try:
        memory = parse_nodelist(root.read_str(NODE_HAS_MEMORY))
    except (SysfsError, ValueError):
        return None
    return tuple(n for n in memory if n != node) or (node,)


def _read_zones(root: SysfsRoot) -> list[ZoneRoom] | None:
    """/proc/zoneinfo's zones; None when it cannot be read or parsed."""
    try:
        return parse_zoneinfo(root.read_str(PROC_ZONEINFO))
    except (SysfsError, ValueError):
        return None


def _zone_room(zones: list[ZoneRoom], nodes: tuple[int, ...], kernel_only: bool) -> int:
    """The room in the zones of ``nodes`` an allocation may use (with ``kernel_only``
    up to ZONE_NORMAL, else up to ZONE_MOVABLE)."""
    top = "Normal" if kernel_only else "Movable"
    total = 0
    for z in zones:
        names = [y.name for y in zones if y.node == z.node]
        if z.node in nodes and top in names and z.index <= (highest := names.index(top)):
            total += z.room(highest)
    return total


def room_for(
    root: SysfsRoot,
    pages: list[dict[str, int]],
    also: tuple[str, ...] = (),
    node: int | None = None,
    kernel_zone: bool = False,
) -> Room | None:
    """The room for the pages of blocks of ``node`` counted by kind (``count_pages()``
    of each), ``also`` kinds counted as pages to migrate too; ``kernel_zone``: the
    blocks are in a kernel zone.  None without /proc/meminfo (MemAvailable is also
    what counts where /proc/zoneinfo or has_memory cannot be read)."""
    kinds = MIGRATED_KINDS + also
    to_migrate = sum(p.get(k, 0) for p in pages for k in kinds)
    free_inside = sum(p.get("free", 0) for p in pages)
    nodes = migration_nodes(root, node) if node is not None else None
    limited = nodes is not None and node not in nodes
    # (a kernel zone's pages on an unknown node: MemAvailable, as without limits)
    if node is not None and (limited or kernel_zone):
        targets = nodes or (node,)
        zones = _read_zones(root)
        # MemAvailable is wrong where it counts another node, or a ZONE_MOVABLE
        # a kernel zone's pages cannot use
        if zones is not None and (
            limited or _zone_room(zones, targets, False) > _zone_room(zones, targets, True)
        ):
            return Room(
                to_migrate=to_migrate,
                free_inside=0 if limited else free_inside,
                available=_zone_room(zones, targets, kernel_zone),
                source="free pages above min and reserves, and file pages, in /proc/zoneinfo",
                nodes=nodes if limited else None,
                kernel_only=kernel_zone,
            )
    avail = available_pages(root)
    if avail is None:
        return None
    return Room(to_migrate, free_inside, avail[0], avail[1])
