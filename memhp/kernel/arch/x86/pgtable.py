"""x86_64 kernel page tables: the direct map and the vmemmap (arch/x86/mm/init_64.c).

The kernel page tables are modelled as data: 4 levels (PGD, PUD, PMD, PTE; the
P4D level is folded as with 4-level paging), 512 entries a table, each table a
4 KiB page of the model.  A table keeps its entries in a numpy array of kinds
(none / table / leaf); child tables and the backing pages of vmemmap leaves are
kept sparsely in dicts, so the cost of mapping or unmapping a GiB is a few slice
operations, never a Python object per 4 KiB entry.

What is modelled, after the kernel functions named in each docstring:

* the direct map of boot RAM (init_mem_mapping -> init_memory_mapping of each
  memblock memory region, with adjust_range_page_size_mask's "largest aligned
  leaf inside the region" rule) and of each hot-added range (arch_add_memory ->
  init_memory_mapping -> split_mem_range -> kernel_physical_mapping_init):
  1 GiB leaves where alignment and ``gbpages`` allow, else 2 MiB, else 4 KiB;
* the sparse-vmemmap memmap (vmemmap_populate -> vmemmap_populate_hugepages):
  one 2 MiB leaf per section backed by a 2 MiB block from the section's node
  (with zonelist fallback), 4 KiB pages when no 2 MiB block can be had
  (vmemmap_populate_basepages), or the block's own altmap with memmap-on-memory;
  at boot the blocks come from the node's memmap buffer (sparse_buffer_alloc);
* bootmem registration (register_page_bootmem_info_node ->
  register_page_bootmem_memmap with the seed's v6 fix: every page under a 2 MiB
  leaf is registered) and freeing through put_page_bootmem;
* hot-remove (remove_pagetable and its remove_{pud,pmd,pte}_table helpers):
  whole leaves are cleared, a partly covered direct-map leaf is split (the
  seed's __split_large_page), a partly unused 2 MiB vmemmap leaf is marked
  PAGE_UNUSED (0xFD) and freed only once all of it is unused, empty PTE and PMD
  tables are freed (free_pte_table / free_pmd_table), TLB flushes and
  sync_global_pgds calls are counted.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from memhp.abi.layout import (
    PAGE_SHIFT,
    PAGE_SIZE,
    PAGES_PER_SECTION,
    SECTION_SIZE,
    STRUCT_PAGE_SIZE,
    GiB,
    MiB,
)
from memhp.kernel.mm.page_alloc import Allocation, AllocError, PageState

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel

#: __PAGE_OFFSET_BASE_L4: start of the direct map (no KASLR).
PAGE_OFFSET = 0xFFFF888000000000
#: VMEMMAP_START with 4-level paging (no KASLR); the area is 1 TiB.
VMEMMAP_START = 0xFFFFEA0000000000
VMEMMAP_END = VMEMMAP_START + (1 << 40)
#: End of the direct-map area (64 TiB of physical address space).
DIRECT_MAP_END = PAGE_OFFSET + (1 << 46)
PTRS_PER_TABLE = 512
#: ISA_END_ADDRESS: init_mem_mapping() maps [0, 1M) with 4 KiB pages first.
ISA_END_ADDRESS = 1 * MiB
#: INIT_PGT_BUF_SIZE: the first page tables at boot come from the kernel's brk.
INIT_PGT_BUF_PAGES = 6
#: PAGE_UNUSED (6.1) / PAGE_INUSE (3.8): the byte unused parts of a vmemmap page hold.
PAGE_UNUSED = 0xFD
#: Bytes of memmap per section: one 2 MiB vmemmap leaf.
SECTION_MEMMAP_BYTES = PAGES_PER_SECTION * STRUCT_PAGE_SIZE
#: head_64.S maps [0, 1G) at boot; remove_pte_table() never removes those PTEs.
IDENT_MAP_END = 1 * GiB

# bootmem_type (include/linux/bootmem_info.h)
SECTION_INFO = 1
MIX_SECTION_INFO = 2
NODE_INFO = 3


class Level(IntEnum):
    """Page-table levels, named after the entries a table of that level holds."""

    PTE = 1
    PMD = 2
    PUD = 3
    PGD = 4


#: Address bits an entry of each level covers (PGDIR_SHIFT, PUD_SHIFT, ...).
ENTRY_SHIFT = {Level.PGD: 39, Level.PUD: 30, Level.PMD: 21, Level.PTE: 12}
LEVEL_NAME = {Level.PGD: "pgd", Level.PUD: "pud", Level.PMD: "pmd", Level.PTE: "pte"}
LEAF_NAME = {Level.PUD: "1G", Level.PMD: "2M", Level.PTE: "4k"}

# Entry kinds.
NONE, TABLE, LEAF = 0, 1, 2


@dataclass(frozen=True)
class PgtableBehaviour:
    """The page-table switches of a kernel profile (one row per profile name).

    ``free_pud_tables``: remove_pagetable() frees empty PUD tables and syncs the
    global page directories (the seed's free_pud_table + sync_global_pgds); 6.1's
    remove_p4d_table() keeps PUD tables with 4-level paging.
    ``split_needs_warning``: 6.1's remove_pud_table() has no split for a partly
    covered 1 GiB leaf (it would walk the leaf as if it were a PMD table); the
    model splits it as the seed does and logs a warning.
    """

    free_pud_tables: bool
    split_needs_warning: bool


PGTABLE_BEHAVIOUR: dict[str, PgtableBehaviour] = {
    "linux-6.1": PgtableBehaviour(free_pud_tables=False, split_needs_warning=True),
    "linux-3.8-hotremove": PgtableBehaviour(free_pud_tables=True, split_needs_warning=False),
}


@dataclass(eq=False)
class PageSrc:
    """Where the page(s) of a table or of a vmemmap leaf come from, and how to free them.

    ``kind``: "buddy" (a page-allocator allocation of its own), "bootmem" (pages of
    a memblock allocation: ``pieces`` says in which sections), "altmap" (the hot-added
    block's own vmem_altmap: nothing to free), "image" (swapper_pg_dir, never freed).
    ``nr_pages`` pages; a "buddy" 4 KiB vmemmap page shares the section's allocation.
    """

    kind: str
    alloc: Allocation | None
    nr_pages: int
    pieces: list[tuple[int, int]] = field(default_factory=list)
    #: page->index of bootmem pages after get_page_bootmem(): SECTION_INFO, MIX_SECTION_INFO.
    magic: int = 0
    #: page refcount of bootmem pages: 1, plus one per get_page_bootmem().
    refs: int = 1


class Table:
    """One page-table page: 512 entries, sparse children and leaf backings."""

    __slots__ = ("backing", "base", "children", "kind", "level", "src", "unused")

    def __init__(self, level: Level, base: int, src: PageSrc) -> None:
        self.level = level
        self.base = base
        self.src = src
        self.kind: npt.NDArray[np.int8] = np.zeros(PTRS_PER_TABLE, np.int8)
        self.children: dict[int, Table] = {}
        #: vmemmap leaves: the page(s) each one maps.
        self.backing: dict[int, PageSrc] = {}
        #: vmemmap 2 MiB leaves partly PAGE_UNUSED: bitmask of unused 4 KiB pages.
        self.unused: dict[int, int] = {}

    @property
    def entry_size(self) -> int:
        return 1 << ENTRY_SHIFT[self.level]

    def index(self, va: int) -> int:
        return (va - self.base) >> ENTRY_SHIFT[self.level]

    def empty(self) -> bool:
        return not self.kind.any()


def _fmt_size(delta: int) -> str:
    """ptdump's size column: the largest unit that divides the size exactly."""
    units = "KMGTPE"
    delta >>= 10
    u = 0
    while delta and not delta & 1023 and u < len(units) - 1:
        delta >>= 10
        u += 1
    return f"{delta:9d}{units[u]}"


def split_mem_range(start: int, end: int, gbpages: bool) -> list[tuple[int, int, Level]]:
    """split_mem_range(): [start, end) as ranges mapped with 4k, 2M, 1G leaves.

    Head to the next 2 MiB boundary in 4 KiB pages, then 2 MiB pages up to the
    next 1 GiB boundary, 1 GiB pages (with gbpages), 2 MiB pages, a 4 KiB tail;
    adjacent ranges of the same page size are merged.  Returns (start, end, the
    largest leaf level allowed).
    """
    pmd, pud = 1 << 21, 1 << 30
    out: list[tuple[int, int, Level]] = []

    def save(s: int, e: int, lvl: Level) -> None:
        if s < e:
            if out and out[-1][1] == s and out[-1][2] == lvl:
                out[-1] = (out[-1][0], e, lvl)
            else:
                out.append((s, e, lvl))

    start &= ~(PAGE_SIZE - 1)
    end &= ~(PAGE_SIZE - 1)
    pos = start
    head_end = min(-(-pos // pmd) * pmd, end)
    save(pos, head_end, Level.PTE)
    pos = max(pos, head_end)
    big_lvl = Level.PUD if gbpages else Level.PMD
    s2 = -(-pos // pmd) * pmd
    e2 = min(-(-pos // pud) * pud, end // pmd * pmd)
    if s2 < e2:
        save(s2, e2, Level.PMD)
        pos = e2
    s1, e1 = -(-pos // pud) * pud, end // pud * pud
    if s1 < e1:
        save(s1, e1, big_lvl)
        pos = e1
    s2, e2 = -(-pos // pmd) * pmd, end // pmd * pmd
    if s2 < e2:
        save(s2, e2, Level.PMD)
        pos = e2
    save(pos, end, Level.PTE)
    return out


class KernelPageTables:
    """init_mm's kernel page tables: direct map and vmemmap, with their counters."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.behaviour = PGTABLE_BEHAVIOUR.get(k.profile.name, PGTABLE_BEHAVIOUR["linux-6.1"])
        self.gbpages = k.spec.gbpages
        #: swapper_pg_dir: part of the kernel image, never allocated or freed.
        self.pgd = Table(Level.PGD, 0xFFFF000000000000, PageSrc("image", None, 1))
        self.after_bootmem = False
        #: Tables currently in the tree, per level.
        self.nr_tables: dict[Level, int] = {lv: 0 for lv in (Level.PUD, Level.PMD, Level.PTE)}
        #: update_page_count(): direct-map leaves per level (DirectMap4k/2M/1G).
        self.direct_pages: dict[Level, int] = {lv: 0 for lv in (Level.PUD, Level.PMD, Level.PTE)}
        #: Pages backing the vmemmap, per source ("buddy", "bootmem", "altmap").
        self.vmemmap_pages: dict[str, int] = {"buddy": 0, "bootmem": 0, "altmap": 0}
        self.tlb_flushes = 0
        self.sync_global_pgds_calls = 0
        self.splits = 0
        #: Bootmem pages unmapped whose refcount did not drop to 1 (never freed).
        self.bootmem_unfreed_pages = 0
        #: fail_page_alloc's min-order: buddy allocations of this order or more fail.
        self.fail_page_alloc_min_order: int | None = None
        #: Sections whose memmap vmemmap_populate_sections() mapped.
        self.vmemmap_sec: npt.NDArray[np.bool_] = np.zeros(k.nr_sections, np.bool_)
        self._pool: dict[int, list[Allocation]] = {}
        self._pool_next: dict[int, int] = {}
        self._brk_used = 0
        self._pgd_changed = False
        self.local_nid = next((n.id for n in k.spec.nodes if 0 in n.cpus), k.spec.nodes[0].id)

    # ================================================================ page sources
    def _table_page(self, level: Level, what: str, nid: int) -> PageSrc:
        """One zeroed page for a table on ``nid`` (zonelist fallback).

        After boot: alloc_low_page() / vmemmap_alloc_block_zero() from the buddy
        allocator.  At boot: the kernel's brk buffer for the first direct-map tables
        (INIT_PGT_BUF_SIZE), then memblock; this model boots the page tables after
        memblock_free_all(), so a boot table is a buddy page turned PG_reserved.
        """
        k = self.k
        if not self.after_bootmem and what == "direct map" and self._brk_used < INIT_PGT_BUF_PAGES:
            self._brk_used += 1
            return PageSrc("image", k.kernel_image, 1)
        pool = self._pool.setdefault(nid, [])
        if not pool:
            n = self._pool_next.get(nid, 1)
            self._pool_next[nid] = min(n * 2, 4096)
            pool.extend(
                k.pa.alloc(1, PageState.UNMOVABLE, "page table", "pagetable", nid, chunks=n)[::-1]
            )
        a = pool.pop()
        a.owner = f"{LEVEL_NAME[level].upper()} table of the {what}"
        if self.after_bootmem:
            return PageSrc("buddy", a, 1)
        a.owner += " (boot)"
        (sec,) = a.extents
        k.pa._move(sec, PageState.UNMOVABLE, PageState.RESERVED, 1)
        a.state = PageState.RESERVED
        self._adjust_managed(sec, -1)
        return PageSrc("bootmem", a, 1, [(sec, 1)])

    def _adjust_managed(self, sec: int, delta: int) -> None:
        """adjust_managed_page_count() for PG_reserved pages of an online section."""
        z = int(self.k.pa.zone[sec])
        if z >= 0:
            self.k.pgdats[int(self.k.pa.nid[sec])].node_zones[z].managed_pages += delta

    def _pool_drain(self) -> None:
        for pool in self._pool.values():
            for a in pool:
                self.k.pa.free(a)
        self._pool = {}
        self._pool_next = {}

    def _free_src(self, src: PageSrc, nr: int | None = None) -> None:
        """free_pagetable(): bootmem pages via put_page_bootmem / free_reserved_page,
        others back to the buddy allocator; altmap pages via vmem_altmap_free."""
        k = self.k
        if src.kind in ("image", "altmap"):
            return
        if src.kind == "bootmem":
            if src.magic in (SECTION_INFO, MIX_SECTION_INFO):
                # put_page_bootmem(): freed when only the initial reference is left.
                src.refs -= 1
                if src.refs > 1:
                    self.bootmem_unfreed_pages += src.nr_pages
                    return
            assert src.alloc is not None
            for sec, n in src.pieces:
                k.pa.free(src.alloc, sec, n)  # free_reserved_page(): managed again
            src.pieces = []
            return
        a = src.alloc
        assert a is not None
        if a.id not in k.pa.allocs:
            return
        left = src.nr_pages if nr is None else nr
        for sec in sorted(a.extents, reverse=True):
            if left <= 0:
                break
            n = min(left, a.extents[sec])
            k.pa.free(a, sec, n)
            left -= n

    # ================================================================ tree walking
    def _child(self, t: Table, i: int, what: str, nid: int) -> Table:
        """Populate entry ``i`` of ``t`` with a new table (pud/pmd/pte_populate)."""
        lv = Level(t.level - 1)
        c = Table(lv, t.base + i * t.entry_size, self._table_page(lv, what, nid))
        t.children[i] = c
        t.kind[i] = TABLE
        self.nr_tables[lv] += 1
        if t.level == Level.PGD:
            self._pgd_changed = True
        return c

    def _drop_table(self, parent: Table, i: int) -> None:
        """free_pte_table()/free_pmd_table()/free_pud_table(): unlink and free."""
        c = parent.children.pop(i)
        parent.kind[i] = NONE
        self.nr_tables[c.level] -= 1
        self._free_src(c.src)

    def walk_leaf(self, va: int) -> tuple[Level, Table, int] | None:
        """lookup_address(): the leaf mapping ``va`` (level, table, index), or None."""
        t = self.pgd
        while True:
            i = t.index(va)
            kd = int(t.kind[i])
            if kd == NONE:
                return None
            if kd == LEAF:
                return t.level, t, i
            t = t.children[i]

    # ================================================================ direct map
    def kernel_physical_mapping_init(self, start: int, end: int, leaf: Level) -> None:
        """kernel_physical_mapping_init(): map [start, end) with leaves up to ``leaf``."""
        self._pgd_changed = False
        self._map_direct(self.pgd, PAGE_OFFSET + start, PAGE_OFFSET + end, leaf)
        if self._pgd_changed:
            self.sync_global_pgds_calls += 1

    def _map_direct(self, t: Table, va0: int, va1: int, leaf: Level) -> None:
        """phys_p4d_init / phys_pud_init / phys_pmd_init / phys_pte_init."""
        sz = t.entry_size
        i0, i1 = t.index(va0), t.index(va1 - 1) + 1
        if t.level <= leaf:
            f0, f1 = t.index(va0 + sz - 1), t.index(va1)  # fully covered entries
            if f0 < f1:
                seg = t.kind[f0:f1]
                none = seg == NONE
                n = int(none.sum())
                seg[none] = LEAF
                self.direct_pages[t.level] += n
                for j in np.flatnonzero(seg == TABLE).tolist():
                    i = j + f0
                    self._map_direct(
                        t.children[i],
                        max(va0, t.base + i * sz),
                        min(va1, t.base + (i + 1) * sz),
                        leaf,
                    )
            partial = [i for i in {i0, i1 - 1} if not f0 <= i < f1]
        else:
            partial = list(range(i0, i1))
        for i in sorted(partial):
            i = int(i)
            kd = int(t.kind[i])
            if kd == LEAF:
                continue  # an existing large mapping covers it
            c = t.children[i] if kd == TABLE else self._child(t, i, "direct map", self.local_nid)
            self._map_direct(c, max(va0, t.base + i * sz), min(va1, t.base + (i + 1) * sz), leaf)

    def init_memory_mapping(self, start: int, end: int) -> int:
        """init_memory_mapping(): split_mem_range() then kernel_physical_mapping_init()."""
        try:
            for s, e, lv in split_mem_range(start, end, self.gbpages):
                self.kernel_physical_mapping_init(s, e, lv)
        except AllocError:
            self._pool_drain()
            return -12
        self._pool_drain()
        return 0

    def _boot_direct_map(self) -> None:
        """init_mem_mapping(): [0, ISA_END) in 4 KiB pages, then each memblock memory
        region (e820 RAM, adjacent ranges merged), each mapped with the largest aligned
        leaves inside the region (adjust_range_page_size_mask)."""
        k = self.k
        self.kernel_physical_mapping_init(0, ISA_END_ADDRESS, Level.PTE)
        regions: list[list[int]] = []
        for s, e, _nid in k.spec.boot_ram:
            s, e = -(-s // PAGE_SIZE) * PAGE_SIZE, e // PAGE_SIZE * PAGE_SIZE
            if regions and regions[-1][1] == s:
                regions[-1][1] = e
            elif s < e:
                regions.append([s, e])
        for s, e in regions:
            s = max(s, ISA_END_ADDRESS)
            if s < e:
                for rs, re_, lv in split_mem_range(s, e, self.gbpages):
                    self.kernel_physical_mapping_init(rs, re_, lv)

    def kernel_physical_mapping_remove(self, start: int, end: int) -> None:
        """kernel_physical_mapping_remove(): remove_pagetable(__va(start), __va(end), direct)."""
        self.remove_pagetable(PAGE_OFFSET + start, PAGE_OFFSET + end, direct=True)

    # ================================================================ vmemmap
    @staticmethod
    def section_vmemmap(sec: int) -> tuple[int, int]:
        """The vmemmap virtual range of a section's memmap (pfn_to_page)."""
        s = VMEMMAP_START + sec * SECTION_MEMMAP_BYTES
        return s, s + SECTION_MEMMAP_BYTES

    def _vmemmap_block(self, sec: int, nid: int) -> PageSrc | None:
        """vmemmap_alloc_block_buf(PMD_SIZE, node, NULL): an order-9 block, zonelist fallback."""
        if self.fail_page_alloc_min_order is not None and self.fail_page_alloc_min_order <= 9:
            return None
        try:
            (a,) = self.k.pa.alloc(
                512, PageState.UNMOVABLE, f"vmemmap of section {sec}", "memmap", nid
            )
        except AllocError:
            return None
        return PageSrc("buddy", a, 512)

    def vmemmap_populate(
        self,
        start: int,
        end: int,
        nid: int,
        blocks: dict[int, PageSrc] | None = None,
        altmap: Allocation | None = None,
    ) -> int:
        """vmemmap_populate() -> vmemmap_populate_hugepages(): 2 MiB leaves over [start, end).

        ``blocks`` maps a PMD-aligned address to a pre-allocated 2 MiB block (the
        batch path and boot's sparse buffer); without one a block is allocated on
        ``nid``.  With ``altmap`` the block comes from the altmap and there is no
        fallback; otherwise a failed 2 MiB allocation falls back to 4 KiB pages
        (vmemmap_populate_basepages).  Returns 0 or -ENOMEM.
        """
        self._pgd_changed = False
        pmd = 1 << 21
        addr = start
        try:
            while addr < end:
                nxt = min((addr // pmd + 1) * pmd, end)
                t = self.pgd
                while t.level > Level.PMD:  # vmemmap_pgd/p4d/pud_populate
                    i = t.index(addr)
                    kd = int(t.kind[i])
                    t = t.children[i] if kd == TABLE else self._child(t, i, "vmemmap", nid)
                i = t.index(addr)
                kd = int(t.kind[i])
                sec = (addr - VMEMMAP_START) // SECTION_MEMMAP_BYTES
                if kd == NONE:
                    base = addr - addr % pmd
                    src: PageSrc | None
                    if altmap is not None:
                        src = PageSrc("altmap", altmap, 512)
                    elif blocks is not None and base in blocks:
                        src = blocks.pop(base)
                    else:
                        src = self._vmemmap_block(sec, nid)
                    if src is not None:
                        t.kind[i] = LEAF
                        t.backing[i] = src
                        self.vmemmap_pages[src.kind] += 512
                        if addr % pmd or nxt % pmd:
                            # vmemmap_use_new_sub_pmd(): the rest of the block is unused.
                            used = self._mask(addr - base, nxt - base)
                            t.unused[i] = ((1 << 512) - 1) & ~used
                        addr = nxt
                        continue
                    if altmap is not None:
                        return -12
                elif kd == LEAF:
                    # vmemmap_use_sub_pmd(): this part of the block is in use again.
                    if i in t.unused:
                        base = addr - addr % pmd
                        t.unused[i] &= ~self._mask(addr - base, nxt - base)
                        if not t.unused[i]:
                            del t.unused[i]
                    addr = nxt
                    continue
                self._populate_basepages(t, i, addr, nxt, sec, nid)
                addr = nxt
        except AllocError:
            self._pool_drain()
            return -12
        # vmemmap_populate(): sync_global_pgds(start, end - 1) on success.
        self.sync_global_pgds_calls += 1
        self._pool_drain()
        return 0

    @staticmethod
    def _mask(off0: int, off1: int) -> int:
        """Bitmask of the 4 KiB pages of a 2 MiB block that [off0, off1) touches."""
        p0, p1 = off0 >> PAGE_SHIFT, -(-off1 // PAGE_SIZE)
        return ((1 << (p1 - p0)) - 1) << p0

    def _populate_basepages(
        self, pmd_t: Table, i: int, addr: int, end: int, sec: int, nid: int
    ) -> None:
        """vmemmap_populate_basepages(): a PTE table and 4 KiB pages (order 0) on ``nid``."""
        pte_t = (
            pmd_t.children[i] if pmd_t.kind[i] == TABLE else self._child(pmd_t, i, "vmemmap", nid)
        )
        j0, j1 = pte_t.index(addr), pte_t.index(end - 1) + 1
        todo = [j for j in range(j0, j1) if pte_t.kind[j] == NONE]
        if not todo:
            return
        (a,) = self.k.pa.alloc(
            len(todo), PageState.UNMOVABLE, f"vmemmap of section {sec} (4 KiB pages)", "memmap", nid
        )
        for j in todo:
            pte_t.kind[j] = LEAF
            pte_t.backing[j] = PageSrc("buddy", a, 1)
        self.vmemmap_pages["buddy"] += len(todo)

    def vmemmap_populate_sections(
        self, first: int, end: int, nid: int, altmaps: dict[int, Allocation] | None = None
    ) -> int:
        """populate_section_memmap() of sections [first, end) (sparse_add_section's loop).

        The 2 MiB blocks are allocated in one batch when that succeeds (same pages
        as one allocation per section); each section is then populated as the
        kernel does, one vmemmap_populate() per section.  ``altmaps``: section ->
        the altmap allocation of its block.  Returns 0 or -ENOMEM (nothing mapped).
        """
        k = self.k
        blocks: dict[int, PageSrc] = {}
        n = end - first
        if (
            not altmaps
            and n > 1
            and (self.fail_page_alloc_min_order is None or self.fail_page_alloc_min_order > 9)
        ):
            try:
                allocs = k.pa.alloc(
                    512,
                    PageState.UNMOVABLE,
                    "vmemmap",
                    "memmap",
                    nid,
                    chunks=n,
                    chunk_owner=lambda c: f"vmemmap of section {first + c}",
                )
            except AllocError:
                allocs = []
            for c, a in enumerate(allocs):
                blocks[self.section_vmemmap(first + c)[0]] = PageSrc("buddy", a, 512)
        for sec in range(first, end):
            s, e = self.section_vmemmap(sec)
            am = altmaps.get(sec) if altmaps else None
            ret = self.vmemmap_populate(s, e, nid, blocks, am)
            if ret:
                for src in blocks.values():
                    self._free_src(src)
                self.vmemmap_sec[sec] = True
                self.vmemmap_free_sections(first, sec + 1)
                return ret
            self.vmemmap_sec[sec] = True
        return 0

    def memmap_alloc_of(self, sec: int) -> int:
        """The allocation id of a section's buddy-allocated memmap (0: boot/altmap/none)."""
        s, _ = self.section_vmemmap(sec)
        hit = self.walk_leaf(s)
        if hit is None:
            return 0
        _lv, t, i = hit
        src = t.backing.get(i)
        if src is None or src.kind != "buddy" or src.alloc is None:
            return 0
        return src.alloc.id

    def vmemmap_free(self, start: int, end: int) -> None:
        """vmemmap_free(): remove_pagetable(start, end, false, altmap)."""
        self.remove_pagetable(start, end, direct=False)

    def vmemmap_free_sections(self, first: int, end: int) -> None:
        """depopulate_section_memmap() of each mapped section in [first, end).

        The kernel calls vmemmap_free() once per section.  Sections' memmaps are
        whole, adjacent 2 MiB ranges, so one walk over a run of consecutive mapped
        sections clears, frees and splits exactly what the per-section walks would;
        the per-call TLB flushes are then counted for each section of the run.
        """
        sec = first
        while sec < end:
            if not self.vmemmap_sec[sec]:
                sec += 1
                continue
            run_end = sec
            while run_end < end and self.vmemmap_sec[run_end]:
                run_end += 1
            s, _ = self.section_vmemmap(sec)
            _, e = self.section_vmemmap(run_end - 1)
            flushes = self.tlb_flushes
            self.vmemmap_free(s, e)
            # one flush_tlb_all() per remove_pagetable() call of the kernel
            self.tlb_flushes = flushes + (run_end - sec) * (self.tlb_flushes - flushes)
            self.vmemmap_sec[sec:run_end] = False
            sec = run_end

    # ================================================================ removal
    def remove_pagetable(self, start: int, end: int, direct: bool) -> None:
        """remove_pagetable(): walk [start, end) and clear, split or free; flush the TLB."""
        self._pgd_changed = False
        pgd = self.pgd
        for i in range(pgd.index(start), pgd.index(end - 1) + 1):
            if pgd.kind[i] != TABLE:
                continue
            pud = pgd.children[i]
            lo, hi = max(start, pud.base), min(end, pud.base + pgd.entry_size)
            self._remove(pud, lo, hi, direct)
            if self.behaviour.free_pud_tables and pud.empty():
                # free_pud_table(): the PGD entry changes.
                self._drop_table(pgd, i)
                self._pgd_changed = True
        if self._pgd_changed:
            self.sync_global_pgds_calls += 1
        self.tlb_flushes += 1
        self._pool_drain()

    def _remove(self, t: Table, va0: int, va1: int, direct: bool) -> None:
        """remove_pud_table / remove_pmd_table / remove_pte_table over [va0, va1)."""
        sz = t.entry_size
        lv = t.level
        i0, i1 = t.index(va0), t.index(va1 - 1) + 1
        if lv == Level.PTE:
            self._remove_pte(t, i0, i1, direct)
            return
        f0, f1 = t.index(va0 + sz - 1), t.index(va1)
        if f0 < f1:
            seg = t.kind[f0:f1]
            leaves = seg == LEAF
            n = int(leaves.sum())
            if n:
                if not direct:
                    backed = (
                        [j for j in range(f0, f1) if j in t.backing]
                        if f1 - f0 < len(t.backing)
                        else [j for j in t.backing if f0 <= j < f1]
                    )
                    for i in backed:
                        self._free_vmemmap_leaf(t, i)
                else:
                    self.direct_pages[lv] -= n
                seg[leaves] = NONE
        for j in np.flatnonzero(t.kind[i0:i1] != NONE).tolist():
            i = j + i0
            lo, hi = max(va0, t.base + i * sz), min(va1, t.base + (i + 1) * sz)
            if t.kind[i] == LEAF:
                # A leaf [va0, va1) covers only in part.
                if direct:
                    self._split(t, i)
                elif lv == Level.PMD:
                    self._vmemmap_pmd_unused(t, i, lo, hi)
                    continue
                else:
                    continue
            c = t.children[i]
            self._remove(c, lo, hi, direct)
            if c.empty():
                self._drop_table(t, i)

    def _remove_pte(self, t: Table, i0: int, i1: int, direct: bool) -> None:
        """remove_pte_table(): clear the PTEs (free the vmemmap pages), flush the TLB."""
        seg = t.kind[i0:i1]
        present = np.flatnonzero(seg == LEAF)
        if not present.size:
            self.tlb_flushes += 1
            return
        if direct and t.base + (i0 + int(present[0])) * PAGE_SIZE - PAGE_OFFSET < IDENT_MAP_END:
            return  # "We mapped [0,1G) memory as identity mapping when initializing"
        if not direct:
            for j in present.tolist():
                src = t.backing.pop(j + i0)
                self._free_src(src, 1)
                self.vmemmap_pages[src.kind] -= 1
        else:
            self.direct_pages[Level.PTE] -= int(present.size)
        seg[present] = NONE
        self.tlb_flushes += 1

    def _free_vmemmap_leaf(self, t: Table, i: int) -> None:
        """free_hugepage_table(): the 2 MiB block to the altmap, bootmem or buddy."""
        src = t.backing.pop(i)
        t.unused.pop(i, None)
        self.vmemmap_pages[src.kind] -= src.nr_pages
        self._free_src(src)

    def _vmemmap_pmd_unused(self, t: Table, i: int, lo: int, hi: int) -> None:
        """vmemmap_pmd_is_unused(): memset(PAGE_UNUSED) the range; free the leaf when
        the whole 2 MiB block is unused (memchr_inv)."""
        base = t.base + i * t.entry_size
        t.unused[i] = t.unused.get(i, 0) | self._mask(lo - base, hi - base)
        if t.unused[i] == (1 << 512) - 1:
            self._free_vmemmap_leaf(t, i)
            t.kind[i] = NONE

    def _split(self, t: Table, i: int) -> None:
        """__split_large_page() (seed): replace a large direct-map leaf by a table of
        512 smaller leaves, allocated like alloc_low_page(); flush_tlb_all()."""
        lv = t.level
        if lv == Level.PUD and self.behaviour.split_needs_warning:
            self.k.log(
                "remove_pagetable",
                "partly removed 1G leaf at "
                f"{t.base + i * t.entry_size:#x}: 6.1 has no split here; split as the seed does",
            )
        t.kind[i] = NONE
        c = self._child(t, i, "direct map", self.local_nid)
        c.kind[:] = LEAF
        self.direct_pages[lv] -= 1
        self.direct_pages[Level(lv - 1)] += PTRS_PER_TABLE
        self.splits += 1
        self.tlb_flushes += 1

    # ================================================================ boot
    def boot(self) -> None:
        """paging_init()/sparse_init()/mem_init(): boot direct map, boot vmemmap from
        each node's memmap buffer, then register_page_bootmem_info()."""
        k = self.k
        self._boot_direct_map()
        pmd = 1 << 21
        for nid, buf in sorted(k.boot_memmap.items()):
            secs = [
                int(s)
                for s in np.flatnonzero(k.sparse.present & (k.pa.nid[: k.nr_sections] == nid))
            ]
            chunks = self._carve(buf, len(secs))
            blocks = {self.section_vmemmap(s)[0]: c for s, c in zip(secs, chunks, strict=True)}
            for sec in secs:
                s, e = self.section_vmemmap(sec)
                assert s % pmd == 0
                self.vmemmap_populate(s, e, nid, blocks)
                self.vmemmap_sec[sec] = True
        self.after_bootmem = True
        for nid in sorted(k.node_states["N_ONLINE"]):
            self.register_page_bootmem_info_node(nid)

    @staticmethod
    def _carve(buf: Allocation, n: int) -> list[PageSrc]:
        """sparse_buffer_alloc(): 2 MiB pieces of a node's memmap buffer, lowest first."""
        out: list[PageSrc] = []
        pieces: list[tuple[int, int]] = []
        need = 512
        for sec in sorted(buf.extents):
            have = buf.extents[sec]
            while have:
                take = min(have, need)
                pieces.append((sec, take))
                have -= take
                need -= take
                if not need:
                    out.append(PageSrc("bootmem", buf, 512, pieces))
                    pieces, need = [], 512
        return out[:n]

    def register_page_bootmem_info_node(self, nid: int) -> None:
        """register_page_bootmem_info_node(): each present section of the node."""
        k = self.k
        for sec in np.flatnonzero(k.sparse.present & (k.pa.nid[: k.nr_sections] == nid)):
            self.register_page_bootmem_memmap(int(sec))

    def register_page_bootmem_memmap(self, sec: int) -> None:
        """register_page_bootmem_memmap(): get_page_bootmem() on the vmemmap page tables
        (MIX_SECTION_INFO: the PUD table twice, via pgd_page and the folded p4d_page)
        and on every page of the section's 2 MiB memmap block (SECTION_INFO: the v6
        fix, "Repeatedly register bootmem pages when using hugepage")."""
        s, _ = self.section_vmemmap(sec)
        t = self.pgd
        while True:
            i = t.index(s)
            if t.kind[i] != TABLE:
                break
            c = t.children[i]
            gets = 2 if c.level == Level.PUD else 1
            for _ in range(gets):
                self.get_page_bootmem(c.src, MIX_SECTION_INFO)
            t = c
            if t.level == Level.PMD:
                break
        if t.level == Level.PMD:
            i = t.index(s)
            src = t.backing.get(i)
            if t.kind[i] == LEAF and src is not None:
                self.get_page_bootmem(src, SECTION_INFO)

    @staticmethod
    def get_page_bootmem(src: PageSrc, magic: int) -> None:
        """get_page_bootmem(): tag the page(s) and take a reference (bootmem only)."""
        if src.kind != "bootmem":
            return
        src.magic = magic
        src.refs += 1

    # ================================================================ views
    def counters(self) -> dict[str, int]:
        """Page-table pages per level, direct-map leaves, vmemmap pages, flushes, syncs."""
        return {
            "pud_tables": self.nr_tables[Level.PUD],
            "pmd_tables": self.nr_tables[Level.PMD],
            "pte_tables": self.nr_tables[Level.PTE],
            "pagetable_pages": sum(self.nr_tables.values()),
            "direct_1g": self.direct_pages[Level.PUD],
            "direct_2m": self.direct_pages[Level.PMD],
            "direct_4k": self.direct_pages[Level.PTE],
            "vmemmap_pages": sum(self.vmemmap_pages.values()),
            "vmemmap_pages_buddy": self.vmemmap_pages["buddy"],
            "vmemmap_pages_bootmem": self.vmemmap_pages["bootmem"],
            "vmemmap_pages_altmap": self.vmemmap_pages["altmap"],
            "tlb_flushes": self.tlb_flushes,
            "sync_global_pgds": self.sync_global_pgds_calls,
            "splits": self.splits,
            "bootmem_unfreed_pages": self.bootmem_unfreed_pages,
        }

    def layout(self) -> tuple[int, int, int, int, int, int, int]:
        """What must be equal to the never-hot-added layout: tables and leaves."""
        c = self.counters()
        return (
            c["pud_tables"],
            c["pmd_tables"],
            c["pte_tables"],
            c["direct_1g"],
            c["direct_2m"],
            c["direct_4k"],
            c["vmemmap_pages"],
        )

    def ranges(self, start: int, end: int) -> Iterator[tuple[int, int, Level, bool]]:
        """(start, end, level, mapped) runs over [start, end): leaves and holes, merged."""
        cur: tuple[int, int, Level, bool] | None = None
        for s, e, lv, m in self._runs(self.pgd, start, end):
            if cur is not None and cur[1] == s and cur[2] == lv and cur[3] == m:
                cur = (cur[0], e, lv, m)
                continue
            if cur is not None:
                yield cur
            cur = (s, e, lv, m)
        if cur is not None:
            yield cur

    def _runs(self, t: Table, start: int, end: int) -> Iterator[tuple[int, int, Level, bool]]:
        sz = t.entry_size
        i0, i1 = t.index(max(start, t.base)), t.index(min(end, t.base + sz * 512) - 1) + 1
        kinds = t.kind[i0:i1]
        # runs of equal kind
        cuts = np.flatnonzero(np.diff(kinds)) + 1
        bounds = [0, *cuts.tolist(), len(kinds)]
        for a, b in itertools.pairwise(bounds):
            kd = int(kinds[a])
            s, e = t.base + (i0 + a) * sz, t.base + (i0 + b) * sz
            if kd == TABLE:
                for i in range(i0 + a, i0 + b):
                    yield from self._runs(t.children[i], start, end)
            else:
                yield max(s, start), min(e, end), t.level, kd == LEAF

    def mapped(self, start: int, end: int) -> bool:
        """Whether any leaf maps a byte of [start, end) (virtual addresses)."""
        return any(m for _s, _e, _lv, m in self.ranges(start, end))

    def dump(self) -> str:
        """/sys/kernel/debug/page_tables/kernel for the direct map and the vmemmap."""
        out: list[str] = []
        top = max(self.k.nr_sections * SECTION_SIZE, 1 << 30)
        areas = (
            ("Low Kernel Mapping", PAGE_OFFSET, PAGE_OFFSET + -(-top // (1 << 39)) * (1 << 39)),
            ("vmemmap", VMEMMAP_START, VMEMMAP_END),
        )
        for name, s, e in areas:
            out.append(f"---[ {name} ]---")
            for rs, re_, lv, m in self.ranges(s, e):
                flags = (
                    (
                        "    RW                 GLB NX "
                        if lv == Level.PTE
                        else "    RW         PSE     GLB NX "
                    )
                    if m
                    else " " * 30
                )
                out.append(
                    f"0x{rs:016x}-0x{re_:016x}   {_fmt_size(re_ - rs)} {flags}{LEVEL_NAME[lv]}"
                )
        c = self.counters()
        out.append("---[ counters ]---")
        out.append(f"DirectMap4k:    {c['direct_4k'] * 4:12d} kB")
        out.append(f"DirectMap2M:    {c['direct_2m'] * 2048:12d} kB")
        out.append(f"DirectMap1G:    {c['direct_1g'] * 1048576:12d} kB")
        out.append(
            f"page-table pages: PUD {c['pud_tables']}, PMD {c['pmd_tables']}, "
            f"PTE {c['pte_tables']} (total {c['pagetable_pages']})"
        )
        out.append(
            f"vmemmap pages: {c['vmemmap_pages']} (buddy {c['vmemmap_pages_buddy']}, "
            f"bootmem {c['vmemmap_pages_bootmem']}, altmap {c['vmemmap_pages_altmap']})"
        )
        out.append(
            f"TLB flushes: {c['tlb_flushes']}, sync_global_pgds: {c['sync_global_pgds']}, "
            f"splits: {c['splits']}, bootmem pages still referenced: "
            f"{c['bootmem_unfreed_pages']}"
        )
        return "\n".join(out) + "\n"
