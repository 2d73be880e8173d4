"""x86_64 kernel page tables as data: the table tree, its pages, and views of it.

The tree (arch/x86/include/asm/pgtable*.h, init_mm.pgd) is here; the functions
that build and tear it down (arch/x86/mm/init_64.c) are in
:mod:`memhp.kernel.arch.x86.mm.init_64`.

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
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from memhp.abi.layout import (
    PAGES_PER_SECTION,
    SECTION_SIZE,
    STRUCT_PAGE_SIZE,
    GiB,
    MiB,
)
from memhp.kernel.mm.page_alloc import Allocation, PageState

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


@dataclass(eq=False, slots=True)
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

    def __reduce__(self) -> tuple[type[PageSrc], tuple[object, ...]]:
        # (a copy is rebuilt with __init__: much cheaper than the slots dataclass's
        # __setstate__, and a booted machine holds about a thousand of these)
        return PageSrc, (self.kind, self.alloc, self.nr_pages, self.pieces, self.magic, self.refs)


class Table:
    """One page-table page: 512 entries, sparse children and leaf backings."""

    __slots__ = ("_backing", "_packed", "base", "children", "kind", "level", "src", "unused")

    def __init__(self, level: Level, base: int, src: PageSrc) -> None:
        self.level = level
        self.base = base
        self.src = src
        self.kind: npt.NDArray[np.int8] = np.zeros(PTRS_PER_TABLE, np.int8)
        self.children: dict[int, Table] = {}
        self._backing: dict[int, PageSrc] | None = {}
        #: A copy's backing until first used (see __getstate__).
        self._packed: tuple[list[Allocation | None], bytes] | None = None
        #: vmemmap 2 MiB leaves partly PAGE_UNUSED: bitmask of unused 4 KiB pages.
        self.unused: dict[int, int] = {}

    @property
    def backing(self) -> dict[int, PageSrc]:
        """vmemmap leaves: the page(s) each one maps."""
        b = self._backing
        if b is None:
            assert self._packed is not None
            allocs, rows = self._packed
            b = self._backing = {
                i: PageSrc(kind, allocs[a], n, list(pieces), magic, refs)
                for i, kind, a, n, pieces, magic, refs in pickle.loads(rows)
            }
            self._packed = None
        return b

    def __getstate__(self) -> tuple[None, dict[str, object]]:
        """A copy (pickle) of a table of boot memory's vmemmap keeps its leaves'
        sources as one string, rebuilt when the copy first uses them: a study's
        runs copy a booted machine for each run, and the memmap of boot memory
        (~500 leaves a 64 GiB machine) is rarely removed.  Each PageSrc is one
        leaf's only (every leaf gets a new one), so rebuilding them one by one
        gives the same objects; their allocations are the copy's own."""
        b = self.backing
        packed = None
        if len(b) >= 64 and all(s.kind == "bootmem" for s in b.values()):
            allocs: list[Allocation | None] = []
            where: dict[int, int] = {}
            rows = []
            for i, s in b.items():
                if (j := where.get(id(s.alloc))) is None:
                    j = where[id(s.alloc)] = len(allocs)
                    allocs.append(s.alloc)
                rows.append((i, s.kind, j, s.nr_pages, tuple(s.pieces), s.magic, s.refs))
            packed = (allocs, pickle.dumps(rows, pickle.HIGHEST_PROTOCOL))
        state = {n: getattr(self, n) for n in ("base", "children", "kind", "level", "src")}
        state |= {"unused": self.unused, "_backing": None if packed else b, "_packed": packed}
        return None, state

    @property
    def entry_size(self) -> int:
        return 1 << ENTRY_SHIFT[self.level]

    def index(self, va: int) -> int:
        return (va - self.base) >> ENTRY_SHIFT[self.level]

    def empty(self) -> bool:
        return not np.count_nonzero(self.kind)  # (no ndarray.any() wrapper: hot)


def _fmt_size(delta: int) -> str:
    """ptdump's size column: the largest unit that divides the size exactly."""
    units = "KMGTPE"
    delta >>= 10
    u = 0
    while delta and not delta & 1023 and u < len(units) - 1:
        delta >>= 10
        u += 1
    return f"{delta:9d}{units[u]}"


class PageTableTree:
    """init_mm's kernel page tables: the tree, the pages its tables come from, counters
    and views (ptdump).  :class:`~memhp.kernel.arch.x86.mm.init_64.KernelPageTables`
    adds the functions of arch/x86/mm/init_64.c."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.profile = k.profile
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
            return PageSrc("image", k.memblock.kernel_image, 1)
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
        k.pa.change_state(a, PageState.RESERVED)
        self._adjust_managed(sec, -1)
        return PageSrc("bootmem", a, 1, [(sec, 1)])

    def _adjust_managed(self, sec: int, delta: int) -> None:
        """adjust_managed_page_count() for PG_reserved pages of an online section."""
        z = int(self.k.pa.zone[sec])
        if z >= 0:
            zone = self.k.pgdats[int(self.k.pa.nid[sec])].node_zones[z]
            self.k.pa.adjust_managed_page_count(zone, delta)

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

    def _free_vmemmap_leaf(self, t: Table, i: int) -> None:
        """free_hugepage_table(): the 2 MiB block to the altmap, bootmem or buddy."""
        src = t.backing.pop(i)
        t.unused.pop(i, None)
        self.vmemmap_pages[src.kind] -= src.nr_pages
        self._free_src(src)

    def _free_vmemmap_leaves(self, t: Table, idx: list[int]) -> None:
        """:meth:`_free_vmemmap_leaf` of the leaves ``idx`` of ``t`` in turn
        (remove_pmd_table()).  When each is a buddy allocation of its own (a
        hot-added block's memmap), the frees free_pagetable() makes (highest
        section first) are done in one loop, each as PageAllocator.free() does it
        (same counts, same free-list placements in the same order)."""
        pa = self.k.pa
        backing = t.backing
        srcs = [backing[i] for i in idx]
        allocs = [s.alloc for s in srcs if s.kind == "buddy" and s.alloc is not None]
        if (
            len(allocs) != len(srcs)
            or len({a.id for a in allocs}) != len(allocs)
            or not {a.state for a in allocs}.isdisjoint((PageState.RESERVED, PageState.ALTMAP))
        ):
            for i in idx:
                self._free_vmemmap_leaf(t, i)
            return
        for i in idx:
            del backing[i]
        if unused := t.unused:
            for i in idx:
                unused.pop(i, None)
        live, zv, nv, iv, by = pa.allocs, pa._zv, pa._nv, pa._iv, pa.by_section
        # PageAllocator.free(a, sec, n) of each leaf's pages in turn (highest section
        # first): the owners' extents (_index_sub()) as it goes, the counts and
        # free-list placements of each run of consecutive frees into one section at
        # once at the end (neither reads the other; each owner is a leaf's own).
        runs: list[list[int]] = []  # [state, section, pages, frees]
        run: list[int] = [-1, -1, 0, 0]
        nr = 0
        for src, a in zip(srcs, allocs, strict=True):
            nr += src.nr_pages
            if (aid := a.id) not in live:
                continue
            ext, st = a.extents, a.state
            if len(ext) == 1 and (n := src.nr_pages) > 0:  # (a section's memmap)
                ((sec, m),) = ext.items()
                if n < m:
                    ext[sec] = m - n
                else:
                    n = m
                    del ext[sec], live[aid]
                d = by[sec]
                if left := d[aid] - n:
                    d[aid] = left
                else:
                    del d[aid]
                    if not d:
                        del by[sec]
                if run[1] == sec and run[0] == st:
                    run[2] += n
                    run[3] += 1
                else:
                    runs.append(run := [st, sec, n, 1])
                continue
            items: list[tuple[int, int]] = []
            left = src.nr_pages
            for sec in sorted(ext, reverse=True):
                if left <= 0:
                    break
                items.append((sec, n := min(left, ext[sec])))
                left -= n
            for sec, n in items:
                if left := ext[sec] - n:
                    ext[sec] = left
                else:
                    del ext[sec]
                d = by[sec]
                if left := d[aid] - n:
                    d[aid] = left
                else:
                    del d[aid]
                    if not d:
                        del by[sec]
                if run[1] == sec and run[0] == st:
                    run[2] += n
                    run[3] += 1
                else:
                    runs.append(run := [st, sec, n, 1])
            if not ext:
                del live[aid]
        self.vmemmap_pages["buddy"] -= nr
        fa = pa.free_area
        for state, sec, n, k in runs:
            pa._move(sec, PageState(state), PageState.FREE, n)
            if (z := zv[sec]) >= 0 and not iv[sec]:  # (to the head, as a free does)
                fa.to_head_times((nv[sec], z), sec, k)

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

    def vmemmap_fill(self, sec: int, end: int, blocks: dict[int, PageSrc]) -> int:
        """What vmemmap_populate() (init_64.py) does for each section of [sec, end), up
        to the end of their PMD table, when the table exists with all their entries
        empty and every section's 2 MiB block is in ``blocks`` (keyed by the
        section's vmemmap address; taken from it): a leaf per section, no
        allocation; here as one slice operation.  Returns the sections done (0: the
        case does not hold, nothing done)."""
        step = SECTION_MEMMAP_BYTES
        va0 = VMEMMAP_START + sec * step
        vas = range(va0, va0 + (min(end, (sec | 511) + 1) - sec) * step, step)
        t = self.pgd
        while t.level > Level.PMD and t.kind[t.index(va0)] == TABLE:
            t = t.children[t.index(va0)]
        i0 = t.index(va0)
        i1 = i0 + len(vas)
        if t.level != Level.PMD or i1 > PTRS_PER_TABLE or np.count_nonzero(t.kind[i0:i1]):
            return 0
        if not all(va in blocks for va in vas):
            return 0
        srcs = [blocks.pop(va) for va in vas]
        t.kind[i0:i1] = LEAF
        t.backing.update(zip(range(i0, i1), srcs, strict=True))
        for src in srcs:
            self.vmemmap_pages[src.kind] += 512
        self.sync_global_pgds_calls += len(vas)  # (one per vmemmap_populate() call)
        self._pgd_changed = False
        self._pool_drain()
        self.vmemmap_sec[sec : sec + len(vas)] = True
        return len(vas)

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
