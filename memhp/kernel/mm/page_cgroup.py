"""page_cgroup of CONFIG_MEMCG in Linux 3.8 (mm/page_cgroup.c), the seed's problem.

With SPARSEMEM, 3.8 keeps one ``struct page_cgroup`` (16 bytes) per page in a
per-section table.  page_cgroup_callback() allocates the tables of a range on
MEM_GOING_ONLINE (online_page_cgroup -> init_section_page_cgroup ->
alloc_page_cgroup -> alloc_pages_exact_nid(nid, ...)) and frees them on
MEM_OFFLINE and MEM_CANCEL_ONLINE (offline_page_cgroup).  The allocation
prefers the block's own node and falls back along the zonelist, so the table of
the second block of a node lands in the first one: the first cannot be offlined
while the second is online.

With the seed's proposed fix (memmap_on_memory, "allocate the memory from the
memory block they are describing"), the table is carved from the block itself
and freed with it, so no block depends on another.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from memhp.abi.layout import PAGE_SIZE, PAGES_PER_SECTION, pfn_to_section_nr
from memhp.kernel.drivers.base.memory import MemAction, MemoryNotify
from memhp.kernel.mm.page_alloc import AllocError, PageState

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel


class PageCgroup:
    """The page_cgroup memory notifier (priority SLAB_CALLBACK_PRI = 1)."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.table_pages = PAGES_PER_SECTION * k.profile.page_cgroup_bytes_per_page // PAGE_SIZE

    def register(self) -> None:
        self.k.memory.chain.register("page_cgroup", self.callback, priority=1)

    def callback(self, action: MemAction, arg: MemoryNotify) -> int:
        """page_cgroup_callback()."""
        if action is MemAction.MEM_GOING_ONLINE:
            return self.online_page_cgroup(arg)
        if action in (MemAction.MEM_OFFLINE, MemAction.MEM_CANCEL_ONLINE):
            self.offline_page_cgroup(arg)
        return 0

    def _sections(self, arg: MemoryNotify) -> range:
        return range(
            pfn_to_section_nr(arg.start_pfn),
            pfn_to_section_nr(arg.start_pfn + arg.nr_pages - 1) + 1,
        )

    def online_page_cgroup(self, arg: MemoryNotify) -> int:
        k = self.k
        done: list[int] = []
        for sec in self._sections(arg):
            if sec in k.sparse.page_cgroup or not k.sparse.present[sec]:
                continue
            nid = int(k.pa.nid[sec])
            if (
                k.memory.blocks.get(sec // k.memory.sections_per_block) is not None
                and k.memory.blocks[sec // k.memory.sections_per_block].nr_vmemmap_pages
            ):
                # The seed's idea: the table was carved from the block itself at
                # hot-add (part of its altmap), so nothing is allocated elsewhere.
                continue
            try:
                (a,) = k.pa.alloc(
                    self.table_pages,
                    PageState.UNMOVABLE,
                    f"page_cgroup of section {sec}",
                    "page_cgroup",
                    nid,
                )
            except AllocError:
                for s in done:
                    k.pa.free(k.pa.allocs[k.sparse.page_cgroup.pop(s)])
                return -errno.ENOMEM
            k.sparse.page_cgroup[sec] = a.id
            done.append(sec)
            where = sorted({int(k.pa.nid[s]) for s in a.extents})
            blocks = sorted({s // k.memory.sections_per_block for s in a.extents})
            k.log(
                "page_cgroup",
                f"page_cgroup of section {sec} ({self.table_pages * PAGE_SIZE >> 10} KiB) "
                f"allocated on node {','.join(map(str, where))} in "
                + ", ".join(f"memory{b}" for b in blocks),
            )
        return 0

    def offline_page_cgroup(self, arg: MemoryNotify) -> None:
        k = self.k
        for sec in self._sections(arg):
            aid = k.sparse.page_cgroup.pop(sec, 0)
            if aid:
                k.pa.free(k.pa.allocs[aid])
                k.log("page_cgroup", f"page_cgroup of section {sec} freed")
