"""Page migration (mm/migrate.c) of the movable pages of isolated sections."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, NamedTuple

from memhp.abi.layout import PAGES_PER_SECTION
from memhp.kernel.mm.mmzone import ZoneType
from memhp.kernel.mm.page_alloc import Allocation, AllocError, PageAllocator, PageState

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel

#: Simulated cost of migrating one 4 KiB page, in seconds.  Linux migrates base
#: pages at well under 1 GB/s single-threaded (Yan et al., "Nimble Page Management
#: for Tiered Memory Systems", ASPLOS 2019, Fig. 2: ~0.5-1 GB/s for 4 KiB pages
#: with move_pages/migrate_pages), i.e. about 4 us per page.
MIGRATE_PAGE_COST_S = 4e-6

_FREE, _MOVABLE = int(PageState.FREE), int(PageState.MOVABLE)
_UNMOVABLE, _RESERVED = int(PageState.UNMOVABLE), int(PageState.RESERVED)


class Target(NamedTuple):
    """struct migration_target_control as alloc_migration_target() uses it: the
    preferred node (``mtc->nid``), the nodemask applied to its zonelist (None: all
    of it) and gfp_zone() of the request."""

    nid: int
    nodes: tuple[int, ...] | None
    highest: ZoneType


def migration_target(
    pa: PageAllocator, sec: int, n_memory: Collection[int] | None, local: int | None = None
) -> Target:
    """Where the pages of section ``sec`` (one node, one zone) migrate to:
    alloc_migration_target() asks GFP_USER | __GFP_MOVABLE, plus __GFP_HIGHMEM only
    for a page of ZONE_MOVABLE (or highmem), so pages leaving a kernel zone never
    land in ZONE_MOVABLE; the preferred node is the page's own.  With ``n_memory``
    (N_MEMORY: offline_pages()' do_migrate_range()) the nodemask is the nodes with
    memory less that node, the node itself only when no other has memory; the
    allocation keeps it to the end (GFP_USER reclaims, so ALLOC_CPUSET stays set and
    __alloc_pages_slowpath() never drops ac->nodemask): with the other nodes full,
    migration fails even where the page's own node has room.  Without
    (alloc_contig_range()'s __alloc_contig_migrate_range()) no nodemask.  With
    ``local`` (3.8's alloc_migrate_target(): alloc_page(GFP_USER | __GFP_MOVABLE))
    the zonelist of the writer's node ``local``, up to ZONE_NORMAL whatever the page's
    zone."""
    if local is not None:
        return Target(local, None, ZoneType.NORMAL)
    nid, zone = pa._nv[sec], pa._zv[sec]
    highest = ZoneType.MOVABLE if zone == int(ZoneType.MOVABLE) else ZoneType.NORMAL
    nodes = None
    if n_memory is not None:
        order = pa.node_order.get(nid, [nid])
        nodes = tuple(n for n in order if n != nid and n in n_memory) or (nid,)
    return Target(nid, nodes, highest)


def offline_target_args(k: Kernel) -> tuple[Collection[int] | None, int | None]:
    """(n_memory, local) of :func:`migration_target` for offline_pages() under the
    kernel's profile; 3.8's writer is taken to run on CPU 0's node."""
    if k.profile.migrate_to_other_nodes:
        return k.nodes.node_states["N_MEMORY"], None
    return None, next((n.id for n in k.spec.nodes if 0 in n.cpus), 0)


def move_pages(pa: PageAllocator, a: Allocation, sec: int, n: int, t: Target) -> None:
    """``n`` pages of ``a`` in ``sec`` move to pages allocated for ``t`` (the plan of
    an alloc(), whose new allocation's id is used up, then absorbed into ``a``); the
    old ones are freed where they are, on no free list and not in NR_FREE_PAGES (an
    isolated section: __free_one_page()).  AllocError when there is no room:
    nothing changes then."""
    plan = pa._plan(n, a.state, a.owner, t.nid, nodes=t.nodes, highest=t.highest)
    pa._next_id += 1
    pa._take(a, plan, a.state)
    pa._taken_all(plan, a.state)
    pa._move(sec, a.state, PageState.FREE, n)
    pa._index_sub(a, sec, n)


def migrate_section(pa: PageAllocator, sec: int) -> tuple[int, int]:
    """alloc_contig_range()'s migration of one isolated section (no nodemask), owner
    by owner (allocation id order), as :func:`migrate_sections`.  Returns (pages
    migrated, pages that could not be migrated: pinned or no room)."""
    ((moved, failed),) = migrate_sections(pa, [sec])
    return moved, failed


def migrate_sections(
    pa: PageAllocator,
    secs: Sequence[int],
    n_memory: Collection[int] | None = None,
    local: int | None = None,
    hugetlb: bool = True,
) -> list[tuple[int, int]]:
    """do_migrate_range() -> migrate_pages(alloc_migration_target) over the isolated
    sections ``secs`` of one zone, in turn; (moved, failed) per section.

    Every MOVABLE page gets a new page allocated for the range's
    :func:`migration_target` (isolated sections excluded, their free pages not
    counted for the watermarks: __alloc_pages() -> zone_watermark_ok()) and its
    owner's extents follow it (:func:`move_pages`).  Consecutive owners are given
    their new pages by one walk of the zonelist when that provably picks the pages
    one walk per owner would (:func:`_move_group`); otherwise, and when there is no
    room for all of them, owner by owner.  ``hugetlb``: False for offline_pages(),
    whose scan_movable_pages() skips free huge pages (not HPageMigratable, and
    nothing maps the model's pool pages); alloc_contig_range() replaces them on
    their own node first (:func:`_replace_huge_page`; not a migration: no
    PGMIGRATE_SUCCESS), and fails where it cannot.
    """
    t = migration_target(pa, secs[0], n_memory, local)
    res = [[0, 0] for _ in secs]
    todo: list[tuple[int, int, Allocation, int]] = []  # (index, section, owner, pages)
    huge: list[tuple[int, int, Allocation, int]] = []  # (free huge pages of the pool)
    pinned = 0
    no_room = False
    by, allocs = pa.by_section, pa.allocs
    for i, sec in enumerate(secs):  # (isolated: no section's owners change meanwhile)
        if not (d := by.get(sec)):
            continue
        for aid, n in sorted(d.items()) if len(d) > 1 else d.items():
            a = allocs[aid]
            if a.state is PageState.PINNED:
                res[i][1] += n
                pinned += n
            elif a.kind == "hugetlb":
                if hugetlb:
                    huge.append((i, sec, a, n))
            elif a.state is PageState.MOVABLE:
                todo.append((i, sec, a, n))
    replaced = 0
    for i, sec, a, n in huge:  # (isolate_migratepages_block(), before migrate_pages())
        try:
            _replace_huge_page(pa, a, sec, n)
        except AllocError:
            res[i][1] += n
            continue
        res[i][0] += n
        replaced += n
    why = _move_group(pa, todo, t) if len(todo) > 1 else "one owner"
    if why is None:
        for i, _sec, _a, n in todo:
            res[i][0] += n
    else:
        for i, sec, a, n in todo:  # owner by owner
            try:
                move_pages(pa, a, sec, n, t)
            except AllocError:
                res[i][1] += n
                no_room = True
                continue
            res[i][0] += n
    pa.migrated_pages += sum(r[0] for r in res) - replaced
    # PGMIGRATE_FAIL: migrate_pages() counts a pinned page (-EAGAIN after its
    # retries) once per call, and stops at the first page it finds no new page for
    # (-ENOMEM: "don't bother to try to migrate other pages"), counting that one.
    pa.migrate_failed_pages += pinned + no_room
    return [(m, f) for m, f in res]


def _replace_huge_page(pa: PageAllocator, a: Allocation, sec: int, n: int) -> None:
    """isolate_or_dissolve_huge_page() -> alloc_and_dissolve_hugetlb_folio() of a free
    huge page: a fresh one on the same node (htlb_alloc_mask() | __GFP_THISNODE: up
    to ZONE_MOVABLE), then the old one dissolved; a gigantic page is never replaced
    (-ENOMEM).  AllocError when there is no room on the node."""
    if a.nr_pages > PAGES_PER_SECTION:
        raise AllocError(f"{a.owner}: a gigantic page is not replaced (-ENOMEM)")
    nid = int(pa.nid[sec])
    move_pages(pa, a, sec, n, Target(nid, (nid,), ZoneType.MOVABLE))


def _move_group(
    pa: PageAllocator, group: list[tuple[int, int, Allocation, int]], t: Target
) -> str | None:
    """:func:`move_pages` of each (owner, section, pages) of ``group`` (MOVABLE, one
    target) from one walk of the zonelist for all their pages, cut
    into consecutive parts in owner order.  None when done; else why not (nothing
    changed): not provably what one walk per owner picks, or no room for all.

    One walk per owner takes up the walk where the previous owner left it: its
    sections are used up except the last, which goes to the head of the lists
    (_taken(), expand()) and, a movable section, is the next walk's first
    candidate.  Where a zone's watermark limits what is taken, each owner's walk
    takes up to what the previous ones left above it, as the shared walk does:
    the zone's NR_FREE_PAGES (:meth:`PageAllocator.nr_free_pages`) drops by what
    they took and does not count the old pages they free (into isolated
    sections: __free_one_page()), also in the zone of the isolated sections.  One
    thing could differ and is excluded: an owner's part ending inside a section
    with unmovable pages (the next walk would leave it to the fallback).
    """
    total = sum(n for *_, n in group)
    first = group[0][2]
    try:  # (the _plan() of move_pages(), once for all the group's pages)
        plan = pa._plan(
            total, PageState.MOVABLE, first.owner, t.nid, nodes=t.nodes, highest=t.highest
        )
    except AllocError:
        return "no room"
    cv, uv = pa._cv, pa._uv
    parts: list[list[tuple[int, int]]] = []
    it = iter(plan)
    sec = left = 0
    for k, (_i, _s, _a, n) in enumerate(group):
        part: list[tuple[int, int]] = []
        while n:
            if not left:
                sec, left = next(it)
            part.append((sec, take := min(n, left)))
            n -= take
            left -= take
        if (
            left
            and k < len(group) - 1
            and (cv[_UNMOVABLE, sec] + cv[_RESERVED, sec] > 0 or uv[sec])
        ):
            return "unmovable"
        parts.append(part)
    # move_pages() of each owner in turn, its parts of the plan: _take() and
    # _taken_all(), then the old pages freed where they are (_move(), _index_sub()).
    # The new pages' counts are changed once per planned section (sums); whether a
    # planned section is used up after an owner's part (_taken()) is followed here.
    # The section counts change as _move() changes them; the zone totals (which
    # nothing reads meanwhile) once per zone at the end, by the sum of its moves.
    zv, nv, by, fa = pa._zv, pa._nv, pa.by_section, pa.free_area
    fleft = {sec: cv[_FREE, sec] for sec, _ in plan}
    zmoved: dict[tuple[int, int], int] = {}  # pages FREE -> MOVABLE per zone
    urv = pa._urv
    for sec, m in plan:
        if urv[sec] or m > cv[_FREE, sec]:  # (as _take() does)
            pa._room_taken(sec, m, False)
        cv[_FREE, sec] -= m
        cv[_MOVABLE, sec] += m
        if (zi := zv[sec]) >= 0:
            key = (nv[sec], zi)
            zmoved[key] = zmoved.get(key, 0) + m
    # (a plan naming each section once: an owner's part names each once too, and
    # each section's placement can follow its own extents at once)
    once = len(fleft) == len(plan)
    for (_i, old, a, n), part in zip(group, parts, strict=True):
        pa._next_id += 1  # (move_pages(): the new allocation's id is used up)
        ext, aid = a.extents, a.id
        if once:
            for sec, m in part:
                ext[sec] = ext.get(sec, 0) + m
                if (d := by.get(sec)) is None:
                    by[sec] = {aid: m}
                else:
                    d[aid] = d.get(aid, 0) + m
                zi = zv[sec]
                if f := fleft[sec] - m:
                    fleft[sec] = f
                    if zi >= 0:
                        fa.to_head((nv[sec], zi), sec)
                else:
                    fa.remove(sec, (nv[sec], zi) if zi >= 0 else None)
        else:
            for sec, m in part:
                ext[sec] = ext.get(sec, 0) + m
                if (d := by.get(sec)) is None:
                    by[sec] = {aid: m}
                else:
                    d[aid] = d.get(aid, 0) + m
                fleft[sec] -= m
            for sec in dict.fromkeys(s for s, _ in part):
                zi = zv[sec]
                if fleft[sec] == 0:
                    fa.remove(sec, (nv[sec], zi) if zi >= 0 else None)
                elif zi >= 0:
                    fa.to_head((nv[sec], zi), sec)
        # _move(old, MOVABLE, FREE, n), _index_sub(a, old, n)
        cv[_MOVABLE, old] -= n
        cv[_FREE, old] += n
        if (zi := zv[old]) >= 0:
            key = (nv[old], zi)
            zmoved[key] = zmoved.get(key, 0) - n
        if left := ext[old] - n:
            ext[old] = left
        else:
            del ext[old]
        if left := (d := by[old])[aid] - n:
            d[aid] = left
        else:
            del d[aid]
            if not d:
                del by[old]
    for (nid, zi), m in zmoved.items():
        v = pa._zview(nid, zi)
        v[_FREE] -= m
        v[_MOVABLE] += m
    return None
