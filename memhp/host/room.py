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
"""

from __future__ import annotations

from dataclasses import dataclass

from memhp.abi.layout import PAGE_SIZE
from memhp.abi.paths import PROC_MEMINFO
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
    #: the /proc/meminfo line ``available`` comes from
    source: str

    @property
    def elsewhere(self) -> int:
        """Pages available outside the blocks."""
        return max(0, self.available - self.free_inside)

    @property
    def enough(self) -> bool:
        return self.to_migrate <= self.elsewhere

    def describe(self) -> str:
        return (
            f"{_mib(self.to_migrate)} to migrate, about {_mib(self.elsewhere)} available "
            f"elsewhere ({self.source} less the blocks' free pages)"
        )

    def reason(self, what: str = "it holds") -> str:
        """Why ``what`` ("it holds", "its blocks hold") will not go offline."""
        return (
            f"{what} {_mib(self.to_migrate)} "
            f"of pages to migrate, but only about {_mib(self.elsewhere)} is available elsewhere "
            f"({self.source}): offline_pages() would keep retrying until interrupted (EINTR); "
            "free memory elsewhere (stop tasks, delete tmpfs files) or offline fewer blocks"
        )

    def to_json(self) -> dict[str, int | bool | str]:
        return {
            "to_migrate_bytes": self.to_migrate * PAGE_SIZE,
            "free_inside_bytes": self.free_inside * PAGE_SIZE,
            "available_elsewhere_bytes": self.elsewhere * PAGE_SIZE,
            "source": self.source,
            "enough": self.enough,
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


def room_for(
    root: SysfsRoot, pages: list[dict[str, int]], also: tuple[str, ...] = ()
) -> Room | None:
    """The room for the pages of blocks counted by kind (``count_pages()`` of each),
    ``also`` kinds counted as pages to migrate too; None without /proc/meminfo."""
    avail = available_pages(root)
    if avail is None:
        return None
    kinds = MIGRATED_KINDS + also
    return Room(
        to_migrate=sum(p.get(k, 0) for p in pages for k in kinds),
        free_inside=sum(p.get("free", 0) for p in pages),
        available=avail[0],
        source=avail[1],
    )
