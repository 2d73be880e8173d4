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

import pytest

from memhp.abi.layout import MiB
from memhp.abi.paths import block_dir
from memhp.kernel.mm.mmzone import ZoneType
from memhp.kernel.mm.page_alloc import PageState
from memhp.sim import procfs
from memhp.sim.machine import SimMachine
from tests.support.sim import DIMM_BLOCKS, dimm_machine, machine, pin

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
    ones it had (set_migratetype_isolate()) and the 1000 migrated away from it
    (__free_one_page() into an isolated block).  The signal undoes the isolation
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
    during = (before[0] - 4 * hidden, before[1] - 4 * hidden, before[2] - hidden)
    assert seen == [(during, hidden, True), (during, hidden, True)]
    assert _free(m) == before
    assert not pa.iso
    assert pa.counts[PageState.FREE, 32] == hidden
    assert 32 not in user[0].extents and user[0].nr_pages == 1000
    assert m.sysfs.read(f"{block_dir(32)}/state") == b"online\n"


def test_migration_targets_stop_at_the_isolated_zones_watermark() -> None:
    """Three owners of 3300 movable pages in memory32 (node 1's ZONE_MOVABLE, the
    only zone of node 1); the other three blocks leave ``min + 700`` free pages.
    Offlining memory32 migrates them (alloc_migration_target() -> __alloc_pages()):
    the zone's NR_FREE_PAGES lacks the isolated block's free pages, so its
    watermark check (__zone_watermark_ok()) lets 700 pages be taken there and the
    other 2600 come from the next zone of node 1's zonelist, node 0's DMA32.  (The
    model used to count the isolated block's free pages and drain the zone to 0.)"""
    m = dimm_machine()
    k, pa = m.kernel, m.kernel.pa
    pa.ensure_watermarks()
    mov = k.pgdats[1].zone(ZoneType.MOVABLE)
    dma32 = k.pgdats[0].zone(ZoneType.DMA32)
    wmin = mov.watermark_min
    # (6.1: ZONE_MOVABLE's share of min_free_kbytes; 6.12 would cap it at 128)
    assert mov.managed_pages == 4 * PAGES and wmin > 128
    owners = [
        m.fill(n, start=32 * BLOCK, end=33 * BLOCK, owner=f"w{i}")[0]
        for i, n in enumerate((900, 1100, 1300))
    ]
    m.fill(3 * PAGES - wmin - 700, start=33 * BLOCK, end=36 * BLOCK, owner="rest")
    assert pa.zone_free(mov) == PAGES - 3300 + wmin + 700
    dma32_free = pa.zone_free(dma32)
    assert pa.zone_free(dma32) - dma32.watermark_min - dma32.lowmem_reserve[ZoneType.MOVABLE] > 2600
    m.sysfs.write(f"{block_dir(32)}/state", b"offline")
    on = {
        o.owner: (
            sum(n for s, n in o.extents.items() if pa.nid[s] == 1),
            sum(n for s, n in o.extents.items() if pa.nid[s] == 0),
        )
        for o in owners
    }
    # Owners in id order, each from where the previous one left the walk.
    assert on == {"w0 (movable)": (700, 200), "w1 (movable)": (0, 1100), "w2 (movable)": (0, 1300)}
    assert pa.zone_free(mov) == wmin
    assert pa.zone_free(dma32) == dma32_free - 2600
    assert _field(procfs.node_meminfo(k, 1), "MemFree:") == 4 * wmin
