"""Page state and the page allocator (mm/page_alloc.c, mm/memblock.c).

No Python object per page: pages are counted per section in numpy arrays, one row per
:class:`PageState`; :class:`Allocation` objects record who owns which pages
(section-granular extents), so that a failure can name the owner.

Placement follows the buddy allocator's observable rules, deterministically:

* zonelists (build_zonelists): nodes by distance, then zones from the highest allowed
  down; kernel allocations never use ZONE_MOVABLE (gfp_zone()), long-term pinned
  pages neither where the profile says so (FOLL_LONGTERM migrates them out, 5.7+);
* watermarks (__zone_watermark_ok): free pages (NR_FREE_PAGES: not those of
  isolated sections) above the low watermark plus the zone's lowmem_reserve for
  the allocation's highest zone in each zone of the zonelist first (the fast
  path: a node's pages stop at its low watermark and the next node's begin), then
  above min (the slow path, once every zone is at low; no reclaim is modelled);
  min_free_kbytes includes khugepaged's floor when THP is enabled
  (:mod:`memhp.kernel.mm.page_alloc_watermarks`);
* within a zone, the order of the free lists (:class:`FreeArea`): pages freed
  by a task (exit, munmap, the source of a migration) go to the head and are
  reused first; memory released at boot and memory onlined go to the tail
  (FPI_TO_TAIL, 5.10+), lowest address first, as do pages whose isolation is
  undone; fragments (partly used sections) before whole blocks
  (__rmqueue_smallest), and kernel allocations first in sections that already
  hold unmovable pages or did (stolen blocks stay MIGRATE_UNMOVABLE when freed:
  steal_suitable_fallback), else by stealing the largest free block first
  (__rmqueue_fallback): a whole section, or one split last with 4 MiB free;
* memblock allocations at boot are top-down (memblock_find_in_range_node).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from memhp.abi.layout import MAX_ORDER_NR_PAGES, PAGE_SIZE, PAGES_PER_SECTION, pfn_to_section_nr
from memhp.kernel.mm.mmzone import FreeArea, PgData, Zone, ZoneType
from memhp.kernel.mm.page_alloc_watermarks import WatermarkOps, Watermarks, ZonelistOps


class PageState(IntEnum):
    """What a present page is used for."""

    FREE = 0  # in the buddy allocator
    MOVABLE = 1  # user / LRU pages: migratable
    PINNED = 2  # movable type, but long-term pinned: migration fails
    UNMOVABLE = 3  # kernel allocations: slab, page tables, memmap, page_cgroup...
    RESERVED = 4  # PG_reserved: memblock/bootmem (kernel image, boot memmap...)
    ALTMAP = 5  # memmap-on-memory: the block's own vmemmap (vmem_altmap)


NR_STATES = len(PageState)
#: Plain int indices (cheaper for numpy than the enum): FREE, UNMOVABLE, RESERVED, ALTMAP.
_FREE, _UNMOVABLE, _RESERVED, _ALTMAP = (int(s) for s in PageState if s.name[0] in "FURA")


class AllocError(Exception):
    """An allocation could not be satisfied (the kernel's -ENOMEM)."""

    errno = errno.ENOMEM


@dataclass
class Allocation:
    """Pages held by one owner: section-granular extents (section -> pages)."""

    id: int
    owner: str
    kind: str  # "memmap", "page_cgroup", "pagetable", "slab", "workload", "memblock"...
    state: PageState
    nid: int  # the node the allocation was made for
    extents: dict[int, int] = field(default_factory=dict)

    @property
    def nr_pages(self) -> int:
        return sum(self.extents.values())

    def __reduce__(self) -> tuple[type[Allocation], tuple[object, ...]]:
        # (a copy is rebuilt with __init__, cheaper to unpickle than its __dict__)
        return Allocation, (self.id, self.owner, self.kind, self.state, self.nid, self.extents)


class PageAllocator(WatermarkOps, ZonelistOps):
    """Per-section page counters, the allocation registry and placement rules."""

    def __init__(
        self,
        nr_sections: int,
        pin_excludes_movable: bool,
        free_to_tail: bool = True,
        thp: bool = True,
        movable_wmark_capped: bool = False,
    ) -> None:
        self.nr_sections = nr_sections
        self.pin_excludes_movable = pin_excludes_movable
        self.wmarks = Watermarks(thp, movable_wmark_capped)
        #: counts[state, section]: pages of each state in each section.
        self.counts: npt.NDArray[np.int32] = np.zeros((NR_STATES, nr_sections), np.int32)
        #: RAM pages (non-holes) per section.
        self.ram: npt.NDArray[np.int32] = np.zeros(nr_sections, np.int32)
        #: Zone of each online section (-1 when offline or absent).
        self.zone: npt.NDArray[np.int8] = np.full(nr_sections, -1, np.int8)
        self.nid: npt.NDArray[np.int16] = np.full(nr_sections, -1, np.int16)
        self.isolated: npt.NDArray[np.bool_] = np.zeros(nr_sections, np.bool_)
        #: The isolated sections of each zone (nid, zone) (few at a time): their free
        #: pages are in :attr:`zstate` but not in NR_FREE_PAGES (:meth:`nr_free_pages`).
        self.iso: dict[tuple[int, int], list[int]] = {}
        #: Sections with MIGRATE_UNMOVABLE blocks since online (steal_suitable_fallback).
        self.unmovable_block: npt.NDArray[np.bool_] = np.zeros(nr_sections, np.bool_)
        #: Free pages in those blocks: what unmovable requests take before stealing
        #: (a steal converts a whole MAX_ORDER-1 block), movable ones last.
        self.unmovable_free: npt.NDArray[np.int64] = np.zeros(nr_sections, np.int64)
        #: The order of the free lists, per section.
        self.free_area = FreeArea(nr_sections, free_to_tail)
        #: Zone-level totals zstate[state, nid, zone] kept in step with counts.
        self.zstate: dict[tuple[int, int], npt.NDArray[np.int64]] = {}
        self.allocs: dict[int, Allocation] = {}
        self.by_section: dict[int, dict[int, int]] = {}
        self._next_id = 1
        self.pgdats: dict[int, PgData] = {}
        self.node_order: dict[int, list[int]] = {}
        #: Pages migrated, and not, by migration passes (PGMIGRATE_SUCCESS, _FAIL).
        self.migrated_pages = self.migrate_failed_pages = 0
        self._views()

    def _views(self) -> None:
        """Views of the same buffers for per-section access (a Python int per read,
        several times cheaper than numpy scalar indexing; the arrays stay the state)."""
        self._cv, self._zv, self._nv = self.counts.data, self.zone.data, self.nid.data
        self._iv, self._uv, self._rv = self.isolated.data, self.unmovable_block.data, self.ram.data
        self._urv = self.unmovable_free.data
        self._zsv: dict[tuple[int, int], memoryview] = {k: a.data for k, a in self.zstate.items()}
        #: zonelist() results by their arguments (node order and nodes are set at boot).
        self._zonelists: dict[tuple[object, ...], tuple[Zone, ...]] = {}

    def __getstate__(self) -> dict[str, object]:
        """A copy (pickle) holds the arrays; the views are made again from them."""
        views = ("_cv", "_zv", "_nv", "_iv", "_uv", "_rv", "_urv", "_zsv", "_zonelists")
        return {k: v for k, v in self.__dict__.items() if k not in views}

    def __setstate__(self, state: dict[str, object]) -> None:
        for k, v in state.items():  # (one by one: see memhp.sim.snapshot)
            setattr(self, k, v)
        self._views()

    def _zkey(self, nid: int, z: int) -> npt.NDArray[np.int64]:
        key = (nid, z)
        arr = self.zstate.get(key)
        if arr is None:
            arr = self.zstate[key] = np.zeros(NR_STATES, np.int64)
            self._zsv[key] = arr.data
        return arr

    def _zview(self, nid: int, z: int) -> memoryview:
        v = self._zsv.get((nid, z))
        return v if v is not None else self._zkey(nid, z).data

    def zone_count(self, zone: Zone, state: PageState) -> int:
        return self._zview(zone.nid, int(zone.idx))[state]

    def zone_free(self, zone: Zone) -> int:
        """zone_page_state(zone, NR_FREE_PAGES) (:meth:`nr_free_pages`)."""
        return self.nr_free_pages(zone.nid, int(zone.idx))

    def nr_free_pages(self, nid: int, z: int) -> int:
        """The zone's NR_FREE_PAGES, what watermarks and MemFree read: its free pages
        except those of isolated page blocks, which set_migratetype_isolate() takes
        out (__mod_zone_freepage_state(zone, -nr_pages)) and __free_one_page() does
        not count when freed into one (6.12: account_freepages())."""
        n = self._zview(nid, z)[_FREE]
        if self.iso and (secs := self.iso.get((nid, z))):
            cv = self._cv
            for s in secs:
                n -= cv[_FREE, s]
        return n

    def _move(self, sec: int, src: PageState, dst: PageState, n: int) -> None:
        """Move ``n`` pages of section ``sec`` from state ``src`` to ``dst``."""
        if n == 0:
            return
        cv = self._cv
        cv[src, sec] -= n
        cv[dst, sec] += n
        if (z := self._zv[sec]) >= 0:
            v = self._zview(self._nv[sec], z)
            v[src] -= n
            v[dst] += n

    def _index_add(self, a: Allocation, sec: int, n: int) -> None:
        a.extents[sec] = a.extents.get(sec, 0) + n
        d = self.by_section.setdefault(sec, {})
        d[a.id] = d.get(a.id, 0) + n

    def _index_sub(self, a: Allocation, sec: int, n: int) -> None:
        left = a.extents[sec] - n
        if left:
            a.extents[sec] = left
        else:
            del a.extents[sec]
        if left := (d := self.by_section[sec])[a.id] - n:
            d[a.id] = left
        else:
            del d[a.id]
            if not d:
                del self.by_section[sec]

    def _new(self, owner: str, kind: str, state: PageState, nid: int) -> Allocation:
        a = Allocation(self._next_id, owner, kind, state, nid)
        self._next_id += 1
        self.allocs[a.id] = a
        return a

    def change_state(self, a: Allocation, state: PageState) -> None:
        """Retag every page of ``a`` as ``state`` (e.g. a boot page-table page
        becoming PG_reserved, or a memblock reservation becoming the altmap)."""
        for sec, n in a.extents.items():
            self._move(sec, a.state, state, n)
        a.state = state

    # ------------------------------------------------------------------ sections
    def set_section_ram(self, first: int, end: int, pages: int, nid: int | None = None) -> None:
        """The RAM pages (and, if given, the node) of sections [first, end): what the
        memmap of a present section describes (memmap_init_range / sparse_add_section)."""
        self.ram[first:end] = pages
        if nid is not None:
            self.nid[first:end] = nid

    def add_ram_range(self, start_pfn: int, end_pfn: int, nid: int) -> None:
        """memblock_add_node() of boot RAM [start_pfn, end_pfn): pages per section."""
        s0, s1 = pfn_to_section_nr(start_pfn), pfn_to_section_nr(end_pfn - 1)
        if s0 == s1:
            self.ram[s0] += end_pfn - start_pfn
        else:
            self.ram[s0] += (s0 + 1) * PAGES_PER_SECTION - start_pfn
            self.ram[s0 + 1 : s1] += PAGES_PER_SECTION
            self.ram[s1] += end_pfn - s1 * PAGES_PER_SECTION
        self.nid[s0 : s1 + 1] = nid

    def section_online(self, first: int, end: int, nid: int, zone: ZoneType) -> None:
        """Hand the RAM pages of sections [first, end) to the buddy allocator
        (online_pages_range -> generic_online_page -> __free_pages_core(): to the
        tail, lowest address first).  Pages already in use (the memmap-on-memory
        altmap) stay as they are."""
        secs = slice(first, end)
        self.zone[secs] = int(zone)
        self.nid[secs] = nid
        self.unmovable_block[secs] = False
        self.unmovable_free[secs] = 0
        c = self.counts[:, secs]
        n = self.ram[secs] - c.sum(axis=0)
        arr = self._zkey(nid, int(zone))
        arr += c.sum(axis=1)
        c[_FREE] += n
        arr[_FREE] += int(n.sum())
        self.free_area.to_tail((nid, int(zone)), np.arange(first, end, dtype=np.int64))

    def sections_online(self, secs: npt.NDArray[np.intp], zones: npt.NDArray[np.int8]) -> None:
        """section_online() for many sections at once (boot: memblock_free_all)."""
        self.zone[secs] = zones
        free = self.ram[secs] - self.counts[:, secs].sum(axis=0)
        self.counts[PageState.FREE, secs] += free
        nids = self.nid[secs]
        for nid in np.unique(nids).tolist():
            for z in np.unique(zones[nids == nid]).tolist():
                sel = secs[(nids == nid) & (zones == z)]
                arr = self._zkey(int(nid), int(z))
                arr += self.counts[:, sel].sum(axis=1)
                # memblock_free_all(): ascending, each range to the tail (FPI_TO_TAIL)
                self.free_area.to_tail((int(nid), int(z)), np.sort(sel).astype(np.int64))

    def section_offline(self, first: int, end: int) -> None:
        """Take the (all free) pages of sections [first, end), all of one zone, out of the
        buddy, undo their isolation (__offline_isolated_pages; NR_FREE_PAGES never had them)."""
        secs = slice(first, end)
        c = self.counts[:, secs]
        key = (self._nv[first], self._zv[first])
        if left := [s for s in self.iso.pop(key, ()) if not first <= s < end]:
            self.iso[key] = left
        v = self._zview(*key)  # (sums of Python ints: a numpy reduction costs more here)
        for st, row in enumerate(c.tolist()):
            v[st] -= sum(row)
        c[_FREE] = 0
        self.zone[secs] = -1
        self.isolated[secs] = False
        self.unmovable_free[secs] = 0
        self.free_area.rank[secs] = 0  # FreeArea.remove()

    def _taken(self, sec: int) -> None:
        """Pages were allocated from ``sec``: what is left is a split remainder,
        at the head (expand()); a section with nothing left is on no list."""
        z = self._zv[sec]
        if self._cv[_FREE, sec] == 0:
            self.free_area.remove(sec, (self._nv[sec], z) if z >= 0 else None)
        elif z >= 0:
            self.free_area.to_head((self._nv[sec], z), sec)

    def owners_in(self, secs: Iterable[int]) -> Iterator[tuple[Allocation, int, int]]:
        """(allocation, section, pages) of every owner with pages in ``secs``."""
        by, allocs = self.by_section, self.allocs
        for sec in secs:
            if d := by.get(sec):
                for aid, n in sorted(d.items()):
                    yield allocs[aid], sec, n

    # --------------------------------------------------------------- allocation
    def highest_zoneidx(self, state: PageState) -> ZoneType:
        """gfp_zone() of an allocation of ``state``: ZONE_MOVABLE for movable pages
        (GFP_HIGHUSER_MOVABLE, and a pin that may stay in ZONE_MOVABLE), else
        ZONE_NORMAL (GFP_KERNEL)."""
        pin = state is PageState.PINNED and not self.pin_excludes_movable
        if state == PageState.MOVABLE or pin:
            return ZoneType.MOVABLE
        return ZoneType.NORMAL

    def _walk(self, zone: Zone, state: PageState, want: int, plan: list[tuple[int, int]]) -> int:
        """Plan up to ``want`` pages of ``zone`` in the order the buddy allocator uses
        them; returns the pages planned.  __rmqueue_smallest(): first free pages in
        blocks of the request's migratetype (:attr:`unmovable_free` for unmovable
        requests, the rest for the others; most recently split or freed first), then
        whole blocks in free-list order (head, then tail oldest first), last the other
        migratetype's (__rmqueue_fallback()); an unmovable request finding none of
        its type steals the largest free block at the head of the list: a whole free
        section or a head entry with room for one of order MAX_ORDER-1."""
        if zone.spanned_pages == 0:  # zone_is_empty()
            return 0
        key = (zone.nid, int(zone.idx))
        cv, iv, urv, rv = self._cv, self._iv, self._urv, self._rv
        wu = state is PageState.UNMOVABLE
        used = 0
        whole: list[tuple[int, int]] = []
        other: list[tuple[int, int]] = []
        fa = self.free_area
        # Each candidate: plan min(free, still wanted) pages; stop when the request is met.
        if d := fa._heads.get(key):
            rank = fa._rv
            for sec, r in reversed(d.items()):  # (FreeArea.heads(), inline)
                if rank[sec] != r:
                    continue
                f = cv[_FREE, sec]
                if f > 0 and not iv[sec]:
                    ur = min(urv[sec], f)  # (free in its unmovable blocks)
                    if not ur and rv[sec] - f - cv[_ALTMAP, sec] == 0:
                        whole.append((sec, f))
                        continue
                    mine, theirs = (ur, f - ur) if wu else (f - ur, ur)
                    if mine:
                        if mine >= want - used:
                            plan.append((sec, want - used))
                            return want
                        plan.append((sec, mine))
                        used += mine
                    if theirs:  # (an unmovable steal: the largest block first)
                        big = wu and theirs >= MAX_ORDER_NR_PAGES
                        (whole if big else other).append((sec, theirs))
        for sec, f in whole:
            if f >= want - used:
                plan.append((sec, want - used))
                return want
            plan.append((sec, f))
            used += f
        for sec in fa.tails(key):  # (_tail_free(), inline)
            if (f := cv[_FREE, sec]) > 0 and not iv[sec]:
                if f >= want - used:
                    plan.append((sec, want - used))
                    return want
                plan.append((sec, f))
                used += f
        for sec, f in other:
            if f >= want - used:
                plan.append((sec, want - used))
                return want
            plan.append((sec, f))
            used += f
        return used

    def alloc(
        self,
        nr_pages: int,
        state: PageState,
        owner: str,
        kind: str,
        nid: int,
        *,
        this_node: bool = False,
        chunks: int = 1,
        chunk_owner: Callable[[int], str] | None = None,
        zone: ZoneType | None = None,
        highest: ZoneType | None = None,
    ) -> list[Allocation]:
        """Allocate ``chunks`` allocations of ``nr_pages`` each (all or nothing);
        ``highest``: gfp_zone() of the request when not that of ``state``.

        Raises :class:`AllocError` when the zonelist cannot provide them above the
        watermarks; nothing is allocated then.
        """
        plan = self._plan(nr_pages * chunks, state, owner, nid, this_node, zone, highest=highest)
        if chunks == 1:  # (the loop below for one chunk: the whole plan)
            a = self._new(chunk_owner(0) if chunk_owner else owner, kind, state, nid)
            self._take(a, plan, state)
            self._taken_all(plan, state)
            return [a]
        out: list[Allocation] = []
        it = iter(plan)
        sec = left = 0
        for c in range(chunks):  # each chunk: the next nr_pages of the plan
            part, need = (plan, 0) if chunks == 1 else ([], nr_pages)
            while need:
                if not left:
                    sec, left = next(it)
                part.append((sec, take := min(need, left)))
                need -= take
                left -= take
            out.append(self._new(chunk_owner(c) if chunk_owner else owner, kind, state, nid))
            self._take(out[-1], part, state)
        self._taken_all(plan, state)
        return out

    def _room_taken(self, sec: int, n: int, unmovable: bool) -> None:
        """Before ``n`` free pages of ``sec`` are taken: an unmovable request takes
        :attr:`unmovable_free`, then steals whole MAX_ORDER-1 blocks
        (change_pageblock_range()), a movable one the other free pages, then those."""
        f0 = self._cv[_FREE, sec]
        ur = min(self._urv[sec], f0)
        if unmovable:
            if n > ur:
                ur += min(f0 - ur, -(-(n - ur) // MAX_ORDER_NR_PAGES) * MAX_ORDER_NR_PAGES)
            self._urv[sec] = ur - n
        elif n > f0 - ur:
            self._urv[sec] = ur - (n - (f0 - ur))

    def _take(self, a: Allocation, plan: list[tuple[int, int]], state: int) -> None:
        """Free pages of the plan become ``a``'s (_move() and _index_add() of each entry)."""
        cv, zv, nv, ext, by = self._cv, self._zv, self._nv, a.extents, self.by_section
        aid, zsv, wu, urv = a.id, self._zsv, state == _UNMOVABLE, self._urv
        for sec, n in plan:
            if wu or urv[sec] or n > cv[_FREE, sec]:  # (else it changes nothing)
                self._room_taken(sec, n, wu)
            cv[_FREE, sec] -= n
            cv[state, sec] += n
            if (z := zv[sec]) >= 0:
                v = zsv.get((nv[sec], z)) or self._zview(nv[sec], z)
                v[_FREE] -= n
                v[state] += n
            ext[sec] = ext.get(sec, 0) + n
            if (d := by.get(sec)) is None:
                by[sec] = {aid: n}
            else:
                d[aid] = d.get(aid, 0) + n

    def _taken_all(self, plan: list[tuple[int, int]], state: PageState) -> None:
        cv, zv, nv, fa = self._cv, self._zv, self._nv, self.free_area
        for sec in [plan[0][0]] if len(plan) == 1 else dict.fromkeys(s for s, _ in plan):
            z = zv[sec]  # (_taken(), inline)
            if cv[_FREE, sec] == 0:
                fa.remove(sec, (nv[sec], z) if z >= 0 else None)
            elif z >= 0:
                fa.to_head((nv[sec], z), sec)
        if state is PageState.UNMOVABLE:
            uv = self._uv
            for sec, _ in plan:
                uv[sec] = True

    def _plan(
        self,
        total: int,
        state: PageState,
        owner: str,
        nid: int,
        this_node: bool = False,
        zone: ZoneType | None = None,
        nodes: Sequence[int] | None = None,
        highest: ZoneType | None = None,
    ) -> list[tuple[int, int]]:
        """(section, pages) to take, in allocation order; AllocError when the zonelist
        (:meth:`zonelist`) cannot provide ``total`` pages above the watermarks.
        get_page_from_freelist() page by page: the fast path takes from each zone in
        zonelist order down to its low watermark, then the slow path down to min
        (ALLOC_WMARK_MIN), again in order, each zone's walk going on where it was."""
        plan: list[tuple[int, int]] = []
        need = total
        self.ensure_watermarks()
        hi = highest or self.highest_zoneidx(state)
        zl = self._zonelist(
            nid, state, this_node, zone, None if nodes is None else tuple(nodes), hi
        )
        got = [0] * len(zl)
        for i, z in enumerate(zl):
            if need and (avail := self.watermark_room(z, hi, z.watermark_low)) > 0:
                got[i] = self._walk(z, state, min(need, avail), plan)
                need -= got[i]
        for i, z in enumerate(zl):  # (a walk of more pages begins as the shorter one)
            if need and (avail := self.watermark_room(z, hi) - got[i]) > 0:
                more: list[tuple[int, int]] = []
                need -= self._walk(z, state, got[i] + min(need, avail), more) - got[i]
                skip = got[i]  # (what the first pass planned already)
                for sec, n in more:
                    if skip < n:
                        plan.append((sec, n - skip))
                    skip = max(0, skip - n)
        if need:
            raise AllocError(
                f"cannot allocate {total * PAGE_SIZE >> 10} kB on node {nid} for {owner} "
                f"({'this node only' if this_node else 'with fallback'})"
            )
        return plan

    def alloc_in_sections(
        self,
        secs: Iterable[int],
        nr_pages: int,
        state: PageState,
        owner: str,
        kind: str,
        nid: int,
    ) -> Allocation:
        """Take free pages from the given sections (in order), e.g. a workload on a range."""
        a = self._new(owner, kind, state, nid)
        need = nr_pages
        for sec in secs:
            take = min(need, int(self.counts[PageState.FREE, sec]))
            if take > 0:
                self._move(sec, PageState.FREE, state, take)
                self._index_add(a, sec, take)
                self._taken(sec)
                need -= take
            if need == 0:
                break
        if need:
            self.free(a)
            raise AllocError(f"range has {nr_pages - need} free pages, {nr_pages} requested")
        return a

    def free(self, a: Allocation, sec: int | None = None, nr: int | None = None) -> None:
        """Free an allocation (or ``nr`` of its pages in section ``sec``)."""
        items = (
            [(sec, nr if nr is not None else a.extents[sec])]
            if sec is not None
            else list(a.extents.items())
        )
        st, cv, zv, nv = a.state, self._cv, self._zv, self._nv
        ext, aid, by = a.extents, a.id, self.by_section
        for s, n in items:
            if st is PageState.RESERVED or st is PageState.ALTMAP:
                # free_reserved_page()/put_page_bootmem(): to the buddy if online,
                # where they become managed pages (adjust_managed_page_count).
                self.counts[a.state, s] -= n
                if self.zone[s] >= 0:
                    self.counts[PageState.FREE, s] += n
                    arr = self._zkey(int(self.nid[s]), int(self.zone[s]))
                    arr[a.state] -= n
                    arr[PageState.FREE] += n
                    if a.state is PageState.RESERVED and (g := self.pgdats.get(nv[s])):
                        self.adjust_managed_page_count(g.zone(ZoneType(zv[s])), n)
            elif n:  # _move(s, st, FREE, n)
                cv[st, s] -= n
                cv[_FREE, s] += n
                if st is PageState.UNMOVABLE:  # (back to its unmovable block)
                    self._urv[s] += n
                if (z := zv[s]) >= 0:
                    v = self._zsv.get((nv[s], z)) or self._zview(nv[s], z)
                    v[st] -= n
                    v[_FREE] += n
            if left := ext[s] - n:  # _index_sub(a, s, n)
                ext[s] = left
            else:
                del ext[s]
            if left := (d := by[s])[aid] - n:
                d[aid] = left
            else:
                del d[aid]
                if not d:
                    del by[s]
            # (__free_one_page() without FPI_TO_TAIL: to the head, unless isolated)
            if (z := zv[s]) >= 0 and not self._iv[s]:
                self.free_area.to_head((nv[s], z), s)
        if not ext:
            del self.allocs[aid]

    def absorb(self, owner: Allocation, new: Allocation) -> None:
        """Hand the pages of ``new`` to ``owner`` (a migrated page keeps its owner)."""
        for sec, n in list(new.extents.items()):
            self._index_sub(new, sec, n)
            self._index_add(owner, sec, n)
        del self.allocs[new.id]
