"""Free-list order (issue 14 part 2) and the kernel's run-time allocations (part 3)."""

from __future__ import annotations

import errno
import os

import pytest

from memhp.abi.layout import MiB
from memhp.abi.paths import SYS_MEMORY
from memhp.cli.main import main
from memhp.kernel.mm.page_alloc import PageState
from memhp.kernel.mm.page_isolation import start_isolate_page_range, undo_isolate_page_range
from memhp.sim.machine import SimMachine
from tests.support.sim import machine

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _onlined(how: str = "online_kernel") -> SimMachine:
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(1024 * MiB, 0, id="dimm1")
    for b in range(32, 40):
        m.sysfs.write(f"{SYS_MEMORY}/memory{b}/state", how.encode())
    return m


def _movable_in(m: SimMachine, block: int) -> int:
    return int(m.kernel.pa.counts[PageState.MOVABLE, block])


def test_onlined_memory_is_used_lowest_address_first() -> None:
    """__free_pages_core() puts onlined pages at the tail: the lowest block fills first."""
    m = _onlined("online_movable")
    m.fill(40000, node=0, zone="Movable")
    assert _movable_in(m, 32) == 32768
    assert _movable_in(m, 33) == 40000 - 32768
    assert all(_movable_in(m, b) == 0 for b in range(34, 40))


def test_freed_pages_are_reused_first() -> None:
    """Pages freed by a task go to the head of the lists: the next allocation takes them."""
    m = _onlined("online_movable")
    (a,) = m.fill(32768 * 3, node=0, zone="Movable")
    m.free([a])
    m.fill(100, node=0, zone="Movable")
    # block 34 was split last, its pages freed last: at the head
    assert _movable_in(m, 34) == 100
    assert _movable_in(m, 32) == 0


def test_undone_isolation_goes_to_the_tail() -> None:
    """unset_migratetype_isolate(): the block's free pages go back at the tail."""
    m = _onlined("online_movable")
    pa = m.kernel.pa
    start_isolate_page_range(pa, [32])
    undo_isolate_page_range(pa, [32])
    m.fill(100, node=0, zone="Movable")
    assert _movable_in(m, 33) == 100
    assert _movable_in(m, 32) == 0


def test_a_stolen_block_stays_unmovable_when_freed() -> None:
    """steal_suitable_fallback() -> change_pageblock_range(): the block an unmovable
    allocation stole (a whole block of order MAX_ORDER-1, 1024 pages) stays
    MIGRATE_UNMOVABLE when its pages are freed; movable allocations take the rest of
    the section (their blocks, at the head of the lists) and not that block, the next
    kernel allocation comes back to it, until undo_isolate_page_range(MIGRATE_MOVABLE)
    (a failed offline) or online.  (Linux 6.1 in QEMU: study-qemu-validation-c2-s0,
    unmovable-steals-split-block, benchmarks/NOTES.md.)"""
    m = _onlined()
    pa = m.kernel.pa
    [slab] = pa.alloc(8, PageState.UNMOVABLE, "slab", "slab", 0)
    assert slab.extents == {32: 8}
    assert int(pa.unmovable_free[32]) == 1024 - 8
    pa.free(slab)
    assert bool(pa.unmovable_block[32])
    assert int(pa.unmovable_free[32]) == 1024
    m.fill(40000, node=0)
    assert _movable_in(m, 32) == 32768 - 1024
    assert (_movable_in(m, 33), _movable_in(m, 34)) == (40000 - 31744, 0)
    [pt] = pa.alloc(4, PageState.UNMOVABLE, "page tables", "pagetable", 0)
    assert pt.extents == {32: 4}
    pa.free(pt)
    start_isolate_page_range(pa, [32])
    undo_isolate_page_range(pa, [32])
    assert not pa.unmovable_block[32]
    assert int(pa.unmovable_free[32]) == 0


def test_tmpfs_file_kernel_objects_pin_the_lowest_block() -> None:
    """The file's xarray nodes steal a whole free block (the lowest hot-added one):
    that block refuses to go offline, the page-cache blocks migrate (as on 6.1)."""
    m = _onlined()
    m.tmpfs_write("a", 256 * MiB, 0)
    pa = m.kernel.pa
    # 1041 xarray nodes (1024 + 16 + 1), 7 per page: 149 pages, + 1 for the inode
    assert int(pa.counts[PageState.UNMOVABLE, 32]) == 150
    owners = {a.owner for a, _s, _n in pa.owners_in([32]) if a.state is PageState.UNMOVABLE}
    assert owners == {
        "slab (radix_tree_node: tmpfs:a)",
        "slab (shmem_inode_cache, dentry: tmpfs:a)",
    }
    with pytest.raises(OSError) as e:
        m.sysfs.write(f"{SYS_MEMORY}/memory32/state", b"offline")
    assert e.value.errno == errno.EBUSY
    for b in range(33, 40):
        m.sysfs.write(f"{SYS_MEMORY}/memory{b}/state", b"offline")
    m.tmpfs_remove("a")
    m.sysfs.write(f"{SYS_MEMORY}/memory32/state", b"offline")


def test_kernel_allocations_never_in_movable_and_knobs() -> None:
    m = _onlined("online_movable")
    ka = m.kernel.kalloc
    ka.configure(rate_pages_per_s=1000.0, keep=0.5, seed=3)
    m.kernel.clock += 10.0
    ka.advance(m.kernel.clock)
    assert ka.kept
    assert int(m.kernel.pa.counts[PageState.UNMOVABLE, 32:40].sum()) == 0
    with pytest.raises(ValueError, match="keep must be"):
        ka.configure(keep=2.0)


def test_kernel_allocations_are_deterministic() -> None:
    def run() -> list[tuple[int, int]]:
        m = _onlined()
        m.kernel.kalloc.configure(rate_pages_per_s=200.0, seed=7)
        m.kernel.clock += 30.0
        m.kernel.kalloc.advance(m.kernel.clock)
        return [(s, n) for a in m.kernel.kalloc.kept for s, n in a.extents.items()]

    assert run() == run()


def test_recorded_fill_scenario_replays(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "bench",
            "diff",
            "-q",
            "--replay",
            os.path.join(ROOT, "tests", "data", "real", "scenarios"),
            os.path.join(ROOT, "tests", "scenarios", "fill-hotadded-offline-each.toml"),
        ]
    )
    assert rc == 0, capsys.readouterr().out


def _one_block(how: str, seed: int) -> SimMachine:
    m = SimMachine(machine("qemu-linux-6.1"))
    m.kernel.kalloc.configure(seed=seed)
    m.device_add(512 * MiB, 0, id="dimm1")  # memory32-35 on node 0 (DMA, DMA32 only)
    m.sysfs.write(f"{SYS_MEMORY}/memory35/state", how.encode())
    return m


@pytest.mark.parametrize("seed", range(5))
def test_churn_slabs_land_in_a_new_normal_zone_within_a_second(seed: int) -> None:
    """Node 0 of the QEMU guest has DMA and DMA32 only: a block onlined to ZONE_NORMAL
    becomes the zonelist's first choice for the CPUs' GFP_KERNEL allocations, the
    churn's slabs in use land there and the block refuses to go offline (EBUSY), as
    Linux 6.1 and 6.12 do 0.65 s later (tests/scenarios/random-online-offline.toml).
    Right after the online it goes offline; a Movable block never holds them."""
    m = _one_block("online_kernel", seed)
    m.sysfs.write(f"{SYS_MEMORY}/memory35/state", b"offline")  # no time passed
    m.sysfs.write(f"{SYS_MEMORY}/memory35/state", b"online_kernel")
    m.advance(0.65)
    churn = [a for pool in m.kernel.kalloc.churn.values() for a in pool]
    assert churn and any(35 in a.extents for a in churn)  # (128 MiB sections: section 35)
    with pytest.raises(OSError) as e:
        m.sysfs.write(f"{SYS_MEMORY}/memory35/state", b"offline")
    assert e.value.errno == errno.EBUSY
    mv = _one_block("online_movable", seed)
    mv.advance(60.0)
    assert int(mv.kernel.pa.counts[PageState.UNMOVABLE, 35]) == 0
    mv.sysfs.write(f"{SYS_MEMORY}/memory35/state", b"offline")


def test_churn_holds_the_newest_slabs_only() -> None:
    """However long the time, each CPU holds CHURN_SLABS slabs of the churn (8 pages
    each), the oldest freed first; what stays for good is the ``keep`` fraction."""
    from memhp.kernel.mm.slab import CHURN_SLABS

    m = _onlined("online_movable")
    ka = m.kernel.kalloc
    before = int(m.kernel.pa.counts[PageState.UNMOVABLE].sum())
    for _ in range(50):
        m.advance(10.0)
    cpus = len(ka.churn)
    assert cpus == 2
    assert all(len(pool) == CHURN_SLABS for pool in ka.churn.values())
    held = sum(a.nr_pages for pool in ka.churn.values() for a in pool)
    kept = sum(a.nr_pages for a in ka.kept)
    assert held == cpus * CHURN_SLABS * 8
    # 500 s x 2 CPUs x 64 pages/s x 1.25% kept: 800 pages expected (Poisson)
    assert 500 <= kept <= 1100
    assert int(m.kernel.pa.counts[PageState.UNMOVABLE].sum()) == before + held + kept
    assert {a.id for pool in ka.churn.values() for a in pool} <= ka.allocation_ids()
