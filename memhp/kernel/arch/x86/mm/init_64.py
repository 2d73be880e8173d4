"""x86_64 memory init: mapping and unmapping the direct map and the vmemmap
(arch/x86/mm/init_64.c, with split_mem_range() of arch/x86/mm/init.c).

The page-table tree itself is :class:`~memhp.kernel.arch.x86.mm.pgtable.PageTableTree`;
see :mod:`memhp.kernel.arch.x86.mm.pgtable` for what is modelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from memhp.abi.layout import (
    PAGE_SHIFT,
    PAGE_SIZE,
)
from memhp.kernel.arch.x86.mm.pgtable import (
    IDENT_MAP_END,
    ISA_END_ADDRESS,
    LEAF,
    MIX_SECTION_INFO,
    NONE,
    PAGE_OFFSET,
    PTRS_PER_TABLE,
    SECTION_INFO,
    SECTION_MEMMAP_BYTES,
    TABLE,
    VMEMMAP_START,
    Level,
    PageSrc,
    PageTableTree,
    Table,
)
from memhp.kernel.mm.page_alloc import Allocation, AllocError, PageState

if TYPE_CHECKING:
    pass


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


class KernelPageTables(PageTableTree):
    """init_mm's kernel page tables with the functions of arch/x86/mm/init_64.c."""

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
        done = first  # (sections before it mapped by vmemmap_fill(): a PMD table at once)
        for sec in range(first, end):
            s, e = self.section_vmemmap(sec)
            if sec < done:
                continue
            if s in blocks and (nr := self.vmemmap_fill(sec, end, blocks)):
                done = sec + nr
                continue
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
            if self.profile.pgtable_free_pud_tables and pud.empty():
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
            n = int(np.count_nonzero(leaves))  # (no ndarray.sum() wrapper: hot)
            if n:
                if not direct:
                    tb = t.backing
                    backed = (
                        [j for j in range(f0, f1) if j in tb]
                        if f1 - f0 < len(tb)
                        else [j for j in tb if f0 <= j < f1]
                    )
                    self._free_vmemmap_leaves(t, backed)
                else:
                    self.direct_pages[lv] -= n
                seg[leaves] = NONE
        for j in t.kind[i0:i1].nonzero()[0].tolist():  # (the entries not NONE)
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
            tb = t.backing
            for j in present.tolist():
                src = tb.pop(j + i0)
                self._free_src(src, 1)
                self.vmemmap_pages[src.kind] -= 1
        else:
            self.direct_pages[Level.PTE] -= int(present.size)
        seg[present] = NONE
        self.tlb_flushes += 1

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
        if lv == Level.PUD and self.profile.pgtable_split_needs_warning:
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
        for nid, buf in sorted(k.sparse.boot_memmap.items()):
            secs = np.flatnonzero(k.sparse.present & (k.pa.nid[: k.nr_sections] == nid))
            chunks = self._carve(buf, len(secs))
            if len(chunks) != len(secs):
                raise ValueError(f"node {nid}: memmap buffer too small for its sections")
            for g in np.split(secs, np.flatnonzero(np.diff(secs >> 9)) + 1) if len(secs) else []:
                self._boot_vmemmap_run(g, chunks[: len(g)], nid)
                chunks = chunks[len(g) :]
        self.after_bootmem = True
        for nid in sorted(k.nodes.node_states["N_ONLINE"]):
            self.register_page_bootmem_info_node(nid)

    def _boot_vmemmap_run(
        self, secs: npt.NDArray[np.intp], chunks: list[PageSrc], nid: int
    ) -> None:
        """vmemmap_populate() of each section of ``secs`` (all under one PMD table:
        1 GiB of vmemmap, 512 sections) with its 2 MiB block of the memmap buffer.

        The first section takes the general path (it may populate the PUD and PMD
        tables); the others only fill empty PMD entries with leaves, which is what
        the general path does for them, done as one slice operation.
        """
        first, _ = self.section_vmemmap(int(secs[0]))
        self.vmemmap_populate(first, first + SECTION_MEMMAP_BYTES, nid, {first: chunks[0]})
        self.vmemmap_sec[secs[0]] = True
        rest, srcs = secs[1:], chunks[1:]
        t = self.pgd
        while t.level > Level.PMD and t.kind[t.index(first)] == TABLE:
            t = t.children[t.index(first)]
        idx = (rest - int(secs[0])) + t.index(first) if t.level == Level.PMD else rest
        if t.level != Level.PMD or (t.kind[idx] != NONE).any():
            for sec, src in zip(rest.tolist(), srcs, strict=True):  # the general path
                s, e = self.section_vmemmap(sec)
                self.vmemmap_populate(s, e, nid, {s: src})
                self.vmemmap_sec[sec] = True
            return
        t.kind[idx] = LEAF
        t.backing.update(zip(idx.tolist(), srcs, strict=True))
        self.vmemmap_pages["bootmem"] += 512 * len(srcs)
        self.sync_global_pgds_calls += len(srcs)
        self.vmemmap_sec[rest] = True

    @staticmethod
    def _carve(buf: Allocation, n: int) -> list[PageSrc]:
        """sparse_buffer_alloc(): 2 MiB pieces of a node's memmap buffer, lowest first."""
        out: list[PageSrc] = []
        pieces: list[tuple[int, int]] = []
        need = 512
        for sec in sorted(buf.extents):
            have = buf.extents[sec]
            while have and len(out) < n:
                if need == 512 and have >= 512:  # whole pieces inside this section
                    m = min(have // 512, n - len(out))
                    out.extend(PageSrc("bootmem", buf, 512, [(sec, 512)]) for _ in range(m))
                    have -= 512 * m
                    continue
                take = min(have, need)
                pieces.append((sec, take))
                have -= take
                need -= take
                if not need:
                    out.append(PageSrc("bootmem", buf, 512, pieces))
                    pieces, need = [], 512
        return out[:n]

    def register_page_bootmem_info_node(self, nid: int) -> None:
        """register_page_bootmem_info_node(): register_page_bootmem_memmap() of each
        present section of the node, a PMD table's sections (1 GiB of vmemmap) at once."""
        k = self.k
        secs = np.flatnonzero(k.sparse.present & (k.pa.nid[: k.nr_sections] == nid))
        for g in np.split(secs, np.flatnonzero(np.diff(secs >> 9)) + 1) if len(secs) else []:
            self.register_page_bootmem_memmap(g.tolist())

    def register_page_bootmem_memmap(self, secs: list[int]) -> None:
        """register_page_bootmem_memmap() of sections under one PMD table: get_page_bootmem()
        on the vmemmap page tables (MIX_SECTION_INFO: the PUD table twice, via pgd_page
        and the folded p4d_page) and on every page of each section's 2 MiB memmap
        block (SECTION_INFO: the v6 fix, "Repeatedly register bootmem pages when
        using hugepage")."""
        s, _ = self.section_vmemmap(secs[0])
        t = self.pgd
        while True:
            i = t.index(s)
            if t.kind[i] != TABLE:
                break
            c = t.children[i]
            gets = 2 if c.level == Level.PUD else 1
            self.get_page_bootmem(c.src, MIX_SECTION_INFO, gets * len(secs))
            t = c
            if t.level == Level.PMD:
                break
        if t.level == Level.PMD:
            idx = [i - secs[0] + t.index(s) for i in secs]
            for i, leaf in zip(idx, (t.kind[idx] == LEAF).tolist(), strict=True):
                src = t.backing.get(i)
                if leaf and src is not None:
                    self.get_page_bootmem(src, SECTION_INFO)

    @staticmethod
    def get_page_bootmem(src: PageSrc, magic: int, times: int = 1) -> None:
        """get_page_bootmem() (``times`` times): tag the page(s) and take a reference
        each time (bootmem only)."""
        if src.kind != "bootmem":
            return
        src.magic = magic
        src.refs += times
