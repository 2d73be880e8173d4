"""Pages, migration, the page_cgroup dependency and the two-pass offline (issue 3)."""

from __future__ import annotations

import dataclasses
import errno

import numpy as np

from memhp.abi.layout import PAGES_PER_SECTION
from memhp.kernel.drivers.base.memory import MemState
from memhp.kernel.invariants import check_invariants
from memhp.kernel.mm.page_alloc import PageState
from memhp.sim.machine import SimMachine, WorkloadMix
from tests.conftest import machine

MEM = "/sys/devices/system/memory"
GiB = 1 << 30
MiB = 1 << 20


def write(m: SimMachine, path: str, value: str) -> int:
    try:
        m.sysfs.write(path, value.encode() + b"\n")
        return 0
    except OSError as e:
        assert e.errno is not None
        return e.errno


def seed_online(memmap_on_memory: bool = False) -> SimMachine:
    spec = dataclasses.replace(machine("seed"), memmap_on_memory=memmap_on_memory)
    m = SimMachine(spec)
    m.device_add(512 * MiB, 1, id="dimm1", addr=1 * GiB)
    for b in range(8, 12):
        assert write(m, f"{MEM}/memory{b}/state", "online") == 0
        check_invariants(m.kernel)
    return m


def snapshot_state(m: SimMachine) -> tuple[object, ...]:
    k = m.kernel
    return (
        {b: (mem.state, mem.zone) for b, mem in k.memory.blocks.items()},
        k.pa.counts.copy().tobytes(),
        {
            n: [
                (z.zone_start_pfn, z.spanned_pages, z.present_pages, z.managed_pages)
                for z in p.node_zones
            ]
            for n, p in k.pgdats.items()
        },
        {s: set(v) for s, v in k.nodes.node_states.items()},
    )


def test_seed_memory8_is_busy_with_the_others_page_cgroup() -> None:
    m = seed_online()
    k = m.kernel
    # page_cgroup of memory9..11 landed in memory8 (node 1's only memory when each came up)
    for sec in (9, 10, 11):
        a = k.pa.allocs[k.sparse.page_cgroup[sec]]
        assert set(a.extents) == {8}
        assert a.nr_pages == PAGES_PER_SECTION * 16 // 4096
    before = snapshot_state(m)
    assert write(m, f"{MEM}/memory8/state", "offline") == errno.EBUSY
    why = k.hotplug.last_offline_failure
    assert why is not None and any("page_cgroup of section 9" in o for o in why.owners)
    assert snapshot_state(m) == before  # rollback: nothing changed
    check_invariants(k)


def test_seed_two_pass_eject_succeeds() -> None:
    m = seed_online()
    assert write(m, "/sys/bus/acpi/devices/PNP0C80:00/eject", "1") == 0
    check_invariants(m.kernel)
    assert not any(b in m.kernel.memory.blocks for b in range(8, 12))
    ost = [e.data["info"] for e in m.platform.events if e.event == "ACPI_DEVICE_OST"]
    assert ost[-1]["status"] == 0  # type: ignore[index]


def test_seed_reverse_order_succeeds() -> None:
    m = seed_online()
    for b in (11, 10, 9, 8):
        assert write(m, f"{MEM}/memory{b}/state", "offline") == 0
        check_invariants(m.kernel)
    assert not m.kernel.sparse.page_cgroup.get(8)


def test_seed_memmap_on_memory_any_order() -> None:
    m = seed_online(memmap_on_memory=True)
    assert not m.kernel.sparse.page_cgroup  # tables live in each block's own altmap
    for b in (8, 10, 9, 11):
        assert write(m, f"{MEM}/memory{b}/state", "offline") == 0
        check_invariants(m.kernel)
    assert write(m, "/sys/bus/acpi/devices/PNP0C80:00/eject", "1") == 0
    check_invariants(m.kernel)


def test_linux61_has_no_page_cgroup_and_memmap_on_memory_is_per_block() -> None:
    spec = dataclasses.replace(machine("qemu-linux-6.1"), memmap_on_memory=True)
    m = SimMachine(spec)
    m.device_add(128 * MiB, 1, id="one")  # exactly one block: memmap on memory
    m.device_add(256 * MiB, 1, id="two")  # two blocks: 6.1 refuses the altmap
    k = m.kernel
    assert k.memory.blocks[32].nr_vmemmap_pages == 512
    assert k.memory.blocks[33].nr_vmemmap_pages == 0
    assert write(m, f"{MEM}/memory32/state", "online") == 0
    assert (
        k.pgdats[1]
        .zone(__import__("memhp.kernel.mm.mmzone", fromlist=["ZoneType"]).ZoneType.NORMAL)
        .present_pages
        == PAGES_PER_SECTION
    )
    assert not k.sparse.page_cgroup
    check_invariants(k)


def test_movable_block_90_percent_full_offlines_and_pages_move() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    d = m.device_add(1 * GiB, 1, id="d")
    for b in range(32, 40):
        assert write(m, f"{MEM}/memory{b}/state", "online_movable") == 0
    nr = PAGES_PER_SECTION * 9 // 10
    (wl,) = m.fill(nr, start=d.addr + 3 * 128 * MiB, end=d.addr + 4 * 128 * MiB, owner="db")
    assert wl.extents == {35: nr}
    clock = m.kernel.clock
    assert write(m, f"{MEM}/memory35/state", "offline") == 0
    check_invariants(m.kernel)
    assert 35 not in wl.extents and wl.nr_pages == nr  # every page found elsewhere
    # do_migrate_range(): to the other nodes first (node 1 left out of the nodemask)
    assert all(int(m.kernel.pa.nid[s]) == 0 for s in wl.extents)
    assert m.kernel.clock - clock >= nr * m.kernel.hotplug.migrate_page_cost_s
    assert m.kernel.pa.migrated_pages >= nr


def test_no_room_to_migrate_follows_the_profile() -> None:
    for name, err in (("qemu-linux-6.1", errno.EINTR), ("seed", errno.EBUSY)):
        m = SimMachine(machine(name))
        d = m.device_add(
            256 * MiB, 1, id="d", addr=4 * GiB if name == "qemu-linux-6.1" else 1 * GiB
        )
        first = d.addr >> 27
        for b in (first, first + 1):
            assert write(m, f"{MEM}/memory{b}/state", "online_movable") == 0
        # fill everything that movable allocations can use, so nothing can move
        k = m.kernel
        k.pa.ensure_watermarks()
        hi = k.pa.highest_zoneidx(PageState.MOVABLE)  # each zone down to min + lowmem_reserve
        room = sum(max(0, k.pa.watermark_room(z, hi)) for z in k.pa.zonelist(1, PageState.MOVABLE))
        big = m.fill(room, node=1, owner="hog") if room else []
        rest = int(k.pa.counts[PageState.FREE, first + 1])
        if rest:
            m.fill(rest, start=d.addr + 128 * MiB, end=d.addr + 256 * MiB, owner="rest")
        del big
        before = snapshot_state(m)
        ret = write(m, f"{MEM}/memory{first + 1}/state", "offline")
        assert ret == err, (name, errno.errorcode.get(ret))
        check_invariants(k)
        assert k.memory.blocks[first + 1].state is MemState.MEM_ONLINE
        # the pages that could be moved were moved, but the block, zones and nodes are as before
        after = snapshot_state(m)
        assert after[0] == before[0] and after[2] == before[2] and after[3] == before[3]


def test_pinned_pages_follow_the_profile() -> None:
    for name, err in (("qemu-linux-6.1", errno.EINTR), ("seed", errno.EBUSY)):
        m = SimMachine(machine(name))
        d = m.device_add(128 * MiB, 1, id="d")
        b = d.addr >> 27
        assert write(m, f"{MEM}/memory{b}/state", "online_movable") == 0
        m.fill(1000, start=d.addr, end=d.addr + d.size, mix=WorkloadMix(pinned=0.1), owner="rdma")
        t0 = m.kernel.clock
        assert write(m, f"{MEM}/memory{b}/state", "offline") == err
        why = m.kernel.hotplug.last_offline_failure
        assert why is not None and any("pinned" in o for o in why.owners)
        if name == "qemu-linux-6.1":
            assert m.kernel.clock - t0 >= m.kernel.hotplug.signal_after_s
        check_invariants(m.kernel)


def test_kernel_allocations_never_use_zone_movable() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(512 * MiB, 1, id="d")
    for b in range(32, 36):
        assert write(m, f"{MEM}/memory{b}/state", "online_movable") == 0
    k = m.kernel
    allocs = m.fill(20000, node=1, mix=WorkloadMix(unmovable=0.5), owner="mixed")
    for a in allocs:
        zones = {int(k.pa.zone[s]) for s in a.extents}
        if a.state is PageState.UNMOVABLE:
            assert 3 not in zones  # ZONE_MOVABLE
        else:
            assert zones == {3}  # node 1 Movable first for user pages
    check_invariants(k)


def test_workload_is_deterministic_and_all_or_nothing() -> None:
    a = SimMachine(machine("qemu-linux-6.1"))
    b = SimMachine(machine("qemu-linux-6.1"))
    wa = a.fill(50000, start=0, end=1 * GiB, mix=WorkloadMix(unmovable=0.2, pinned=0.1), seed=7)
    wb = b.fill(50000, start=0, end=1 * GiB, mix=WorkloadMix(unmovable=0.2, pinned=0.1), seed=7)
    assert [x.extents for x in wa] == [x.extents for x in wb]
    before = a.kernel.pa.counts.copy()
    import pytest

    from memhp.kernel.mm.page_alloc import AllocError

    with pytest.raises(AllocError):
        a.fill(10**9, node=0)
    assert np.array_equal(before, a.kernel.pa.counts)
    check_invariants(a.kernel)


def test_fill_a_zone() -> None:
    import pytest

    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(512 * MiB, 1, id="d")
    m.sysfs.write(f"{MEM}/memory32/state", b"online_kernel")
    for b in (33, 34, 35):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
    k = m.kernel
    (a,) = m.fill(1000, node=1, zone="Normal", owner="kernel-zone app")
    assert set(a.extents) == {32}
    (mov,) = m.fill(1000, node=1, zone="Movable", owner="movable app")
    assert set(mov.extents) <= {33, 34, 35}
    # kernel allocations never come from ZONE_MOVABLE, even when asked
    from memhp.kernel.mm.page_alloc import AllocError

    with pytest.raises(AllocError):
        m.fill(10, node=1, zone="Movable", mix=WorkloadMix(unmovable=1.0))
    with pytest.raises(ValueError):
        m.fill(10, node=1, zone="HighMem")
    check_invariants(k)
