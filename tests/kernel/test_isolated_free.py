"""The free pages of isolated page blocks are not NR_FREE_PAGES, on the real model.

Linux 6.1 set_migratetype_isolate() takes a block's free pages out of the zone's
NR_FREE_PAGES (move_freepages_block() -> __mod_zone_freepage_state(zone, -nr_pages)),
__free_one_page() does not count pages freed into an isolated block (the source
pages of offline_pages()' migration), unset_migratetype_isolate() adds them all
back, and __offline_isolated_pages() takes them out of the buddy without touching
the counter (6.12: account_freepages() returns early for MIGRATE_ISOLATE).  MemFree
(si_meminfo(), si_meminfo_node(), node vmstat nr_free_pages) and the watermark checks
of allocations (__zone_watermark_ok() reads zone_page_state(z, NR_FREE_PAGES)),
migration's alloc_migration_target() included, all read that counter.
"""

from __future__ import annotations

import errno
from dataclasses import replace

import pytest

from memhp.abi.layout import MiB
from memhp.abi.paths import block_dir
from memhp.kernel.mm.mmzone import ZoneType
from memhp.kernel.mm.page_alloc import PageState
from memhp.kernel.profiles import PROFILES
from memhp.sim import procfs
from memhp.sim.machine import SimMachine
from tests.support.sim import DIMM_BLOCKS, dimm_machine, fill_kernel_zone, machine, pin

BLOCK = 128 * MiB
PAGES = BLOCK >> 12  # pages of a memory block (one section)


def _field(text: str, label: str) -> int:
    """The kB (or page) value of ``label`` in a meminfo/vmstat text."""
    for line in text.splitlines():
        words = line.split()
        if label in words:
            return int(words[words.index(label) + 1])
    raise AssertionError(f"{label} not in {text!r}")


def _free(m: SimMachine) -> tuple[int, int, int]:
    """(MemFree kB, node 1 MemFree kB, node 1 nr_free_pages) as procfs shows them."""
    k = m.kernel
    return (
        _field(procfs.meminfo(k), "MemFree:"),
        _field(procfs.node_meminfo(k, 1), "MemFree:"),
        _field(procfs.node_vmstat(k, 1), "nr_free_pages"),
    )


@pytest.mark.parametrize("name", ["qemu-linux-6.1", "qemu-linux-6.12"])
def test_blocked_offline_hides_the_blocks_free_pages_until_undone(name: str) -> None:
    """offline_pages() of memory32 (ZONE_MOVABLE, node 1) with 100 unmovable pages
    in it retries migration until the writer gets a signal; meanwhile MemFree,
    the node's MemFree and nr_free_pages lack every free page of the block: the
    ones it had (set_migratetype_isolate()) and the 1000 migrated away from it, to
    node 0 (__free_one_page() into an isolated block).  The signal undoes the isolation
    (unset_migratetype_isolate()): all of them count again, the 1000 pages stay
    where migration put them.  6.1 and 6.12 (account_freepages()) alike."""
    m = SimMachine(machine(name))
    m.device_add(512 * MiB, 1, id="dimm1")
    for b in DIMM_BLOCKS:
        m.sysfs.write(f"{block_dir(b)}/state", b"online_movable")
    k, pa = m.kernel, m.kernel.pa
    pin(m, 32, 100)
    user = m.fill(1000, start=32 * BLOCK, end=33 * BLOCK, owner="user")
    assert [(a.state, a.extents) for a in user] == [(PageState.MOVABLE, {32: 1000})]
    before = _free(m)
    seen: list[tuple[tuple[int, int, int], int, bool]] = []

    def signal() -> bool:  # offline_pages(): signal_pending() at the next round
        seen.append((_free(m), int(pa.counts[PageState.FREE, 32]), bool(pa.isolated[32])))
        return len(seen) == 2

    k.hotplug.retry_wait = signal
    with pytest.raises(OSError) as e:
        m.sysfs.write(f"{block_dir(32)}/state", b"offline")
    assert e.value.errno == errno.EINTR
    hidden = PAGES - 100  # the block's free pages: all but the pinned ones
    # (the 1000 migrated to node 0: do_migrate_range()'s nodemask leaves node 1 out)
    gone = 1000
    during = (before[0] - 4 * hidden, before[1] - 4 * (hidden - gone), before[2] - hidden + gone)
    assert seen == [(during, hidden, True), (during, hidden, True)]
    assert _free(m) == (before[0], before[1] + 4 * gone, before[2] + gone)
    assert not pa.iso
    assert pa.counts[PageState.FREE, 32] == hidden
    assert 32 not in user[0].extents and user[0].nr_pages == 1000
    assert {int(pa.nid[s]) for s in user[0].extents} == {0}
    assert m.sysfs.read(f"{block_dir(32)}/state") == b"online\n"


def test_migration_targets_stop_at_the_isolated_zones_watermark() -> None:
    """Three owners of 3300 movable pages in memory32 of a DIMM onlined movable on
    node 0 (node 1 has no memory, so do_migrate_range()'s nodemask is node 0
    itself); the DIMM's other three blocks leave ``low + 700`` free pages.
    Offlining memory32 migrates them (alloc_migration_target() -> __alloc_pages()):
    ZONE_MOVABLE's NR_FREE_PAGES lacks the isolated block's free pages, so its
    watermark check (__zone_watermark_ok(), the fast path's at low) lets 700 pages be
    taken there and the
    other 2600 come from the next zone of node 0's zonelist, DMA32.  (The model used
    to count the isolated block's free pages and drain the zone to 0.)"""
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(512 * MiB, 0, id="dimm1")
    for b in DIMM_BLOCKS:
        m.sysfs.write(f"{block_dir(b)}/state", b"online_movable")
    k, pa = m.kernel, m.kernel.pa
    pa.ensure_watermarks()
    mov = k.pgdats[0].zone(ZoneType.MOVABLE)
    dma32 = k.pgdats[0].zone(ZoneType.DMA32)
    assert k.nodes.node_states["N_MEMORY"] == {0}
    wmin, wlow = mov.watermark_min, mov.watermark_low
    # (6.1: ZONE_MOVABLE's share of min_free_kbytes; 6.12 would cap it at 128)
    assert mov.managed_pages == 4 * PAGES and wmin > 128
    owners = [
        m.fill(n, start=32 * BLOCK, end=33 * BLOCK, owner=f"w{i}")[0]
        for i, n in enumerate((900, 1100, 1300))
    ]
    m.fill(3 * PAGES - wlow - 700, start=33 * BLOCK, end=36 * BLOCK, owner="rest")
    assert pa.zone_free(mov) == PAGES - 3300 + wlow + 700
    dma32_free = pa.zone_free(dma32)
    assert pa.zone_free(dma32) - dma32.watermark_min - dma32.lowmem_reserve[ZoneType.MOVABLE] > 2600
    m.sysfs.write(f"{block_dir(32)}/state", b"offline")
    on = {
        o.owner: (
            sum(n for s, n in o.extents.items() if pa.zone[s] == ZoneType.MOVABLE),
            sum(n for s, n in o.extents.items() if pa.zone[s] == ZoneType.DMA32),
        )
        for o in owners
    }
    # Owners in id order, each from where the previous one left the walk.
    assert on == {"w0 (movable)": (700, 200), "w1 (movable)": (0, 1100), "w2 (movable)": (0, 1300)}
    assert pa.zone_free(mov) == wlow  # (DMA32 is above its own low watermark)
    assert pa.zone_free(dma32) == dma32_free - 2600


def test_offline_migrates_to_the_other_nodes_only() -> None:
    """do_migrate_range(): the nodemask is N_MEMORY less the offlined block's node,
    kept through __alloc_pages_slowpath() (GFP_USER: ALLOC_CPUSET), so pages leave
    node 1 for node 0 although node 1's other blocks have room; with node 0 full
    above its watermarks migration fails and 6.1 retries until the writer's signal,
    while node 1 still has room.  A kernel zone's pages (GFP_USER | __GFP_MOVABLE,
    no __GFP_HIGHMEM) never land in ZONE_MOVABLE."""
    m = dimm_machine()
    k, pa = m.kernel, m.kernel.pa
    (a,) = m.fill(2000, start=32 * BLOCK, end=33 * BLOCK, owner="a")
    m.sysfs.write(f"{block_dir(32)}/state", b"offline")
    assert {int(pa.nid[s]) for s in a.extents} == {0}
    # node 0 full: nothing above its zones' min watermarks (+ lowmem reserves)
    (b,) = m.fill(2000, start=33 * BLOCK, end=34 * BLOCK, owner="b")
    hi = ZoneType.MOVABLE
    room = sum(max(0, pa.watermark_room(z, hi)) for z in pa.zonelist(0, PageState.MOVABLE, True))
    m.fill(room, node=0, owner="rest")
    k.hotplug.retry_wait = lambda: True
    with pytest.raises(OSError) as e:
        m.sysfs.write(f"{block_dir(33)}/state", b"offline")
    assert e.value.errno == errno.EINTR
    assert b.extents == {33: 2000}  # node 1's blocks 34-35 were free all along
    assert pa.zone_free(k.pgdats[1].zone(ZoneType.MOVABLE)) >= 2 * PAGES


@pytest.mark.parametrize(("how", "lands"), [("online_kernel", None), ("online_movable", 0)])
def test_pages_of_a_kernel_zone_never_migrate_into_zone_movable(
    how: str, lands: int | None
) -> None:
    """alloc_migration_target(): __GFP_HIGHMEM only for a page of ZONE_MOVABLE, so
    the pages of a block onlined to ZONE_NORMAL (node 1) may go to node 0's DMA32
    and Normal but not to its ZONE_MOVABLE: with DMA32 full, the offline blocks
    (6.1: until the writer's signal) though node 0's ZONE_MOVABLE is free; the same
    pages in a ZONE_MOVABLE block move there."""
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(512 * MiB, 0, id="dimm0")  # blocks 32-35, node 0
    m.device_add(512 * MiB, 1, id="dimm1")  # blocks 36-39, node 1
    for b in DIMM_BLOCKS:
        m.sysfs.write(f"{block_dir(b)}/state", b"online_movable")
    m.sysfs.write(f"{block_dir(36)}/state", how.encode())
    k, pa = m.kernel, m.kernel.pa
    (a,) = m.fill(1000, start=36 * BLOCK, end=37 * BLOCK, owner="a")
    fill_kernel_zone(m, 0, ZoneType.DMA32)  # (a migration's target sees the same reserve)
    assert not k.pgdats[0].zone(ZoneType.NORMAL).present_pages
    k.hotplug.retry_wait = lambda: True
    if lands is None:
        with pytest.raises(OSError) as e:
            m.sysfs.write(f"{block_dir(36)}/state", b"offline")
        assert e.value.errno == errno.EINTR
        assert a.extents == {36: 1000}
    else:
        m.sysfs.write(f"{block_dir(36)}/state", b"offline")
        assert {(int(pa.nid[s]), int(pa.zone[s])) for s in a.extents} == {
            (lands, int(ZoneType.MOVABLE))
        }
    assert pa.zone_free(k.pgdats[0].zone(ZoneType.MOVABLE)) > PAGES


@pytest.mark.parametrize(
    ("name", "zones"),
    [("linux-6.1", {ZoneType.MOVABLE}), ("linux-3.8-hotremove", {ZoneType.DMA32})],
)
def test_where_a_movable_blocks_pages_go_by_kernel(name: str, zones: set[ZoneType]) -> None:
    """4.9+ (new_node_page(), alloc_migration_target()): a ZONE_MOVABLE page is asked
    for with __GFP_HIGHMEM, on the other nodes with memory (node 0 here, whose own
    ZONE_MOVABLE comes first).  3.8 (alloc_migrate_target(): alloc_page(GFP_USER |
    __GFP_MOVABLE)): from the writer's node up to ZONE_NORMAL only, so the same pages
    land in node 0's DMA32 although its ZONE_MOVABLE is free."""
    m = SimMachine(replace(machine("qemu-linux-6.1"), profile=PROFILES[name]))
    m.device_add(512 * MiB, 0, id="dimm0")  # blocks 32-35, node 0
    m.device_add(512 * MiB, 1, id="dimm1")  # blocks 36-39, node 1
    for b in (32, 33, 36, 37):
        m.sysfs.write(f"{block_dir(b)}/state", b"online_movable")
    pa = m.kernel.pa
    (a,) = m.fill(1000, start=37 * BLOCK, end=38 * BLOCK, owner="a")
    m.sysfs.write(f"{block_dir(37)}/state", b"offline")
    assert {int(pa.nid[s]) for s in a.extents} == {0}
    assert {ZoneType(int(pa.zone[s])) for s in a.extents} == zones
