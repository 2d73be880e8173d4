"""The hotplug lifecycle on both example machines, invariants after every step."""

from __future__ import annotations

import errno

import pytest

from memhp.kernel.drivers.base.memory import MemState
from memhp.kernel.invariants import check_invariants
from memhp.sim.machine import PlatformError, SimMachine
from tests.conftest import machine

MEM = "/sys/devices/system/memory"


def block_state(m: SimMachine, block: int) -> MemState:
    """The model's state of a block (a call: mypy does not narrow it across writes)."""
    return m.kernel.memory.blocks[block].state


def write(m: SimMachine, path: str, value: str) -> int:
    try:
        m.sysfs.write(path, value.encode() + b"\n")
        return 0
    except OSError as e:
        assert e.errno is not None
        return e.errno


@pytest.mark.parametrize("name", ["qemu-linux-6.1", "seed"])
def test_full_lifecycle(name: str) -> None:
    m = SimMachine(machine(name))
    k = m.kernel
    check_invariants(k)
    boot_blocks = set(k.memory.blocks)
    fw_before = [(e.index, e.start, e.end, e.type) for e in k.fwmap.entries]
    d = m.device_add(512 << 20, 1, id="dimm1")
    check_invariants(k)
    ids = list(range(d.addr >> 27, (d.addr + d.size) >> 27))
    assert set(k.memory.blocks) == boot_blocks | set(ids)
    assert 1 in k.nodes.registered_nodes
    for b in ids:
        assert write(m, f"{MEM}/memory{b}/state", "online") == 0
        check_invariants(k)
    for b in reversed(ids):
        assert write(m, f"{MEM}/memory{b}/state", "offline") == 0
        check_invariants(k)
    assert write(m, "/sys/bus/acpi/devices/PNP0C80:00/eject", "1") == 0
    check_invariants(k)
    assert set(k.memory.blocks) == boot_blocks
    assert 1 not in k.nodes.registered_nodes and 1 not in k.nodes.node_states["N_ONLINE"]
    assert [(e.index, e.start, e.end, e.type) for e in k.fwmap.entries] == fw_before
    pgdat = k.pgdats[1]
    assert pgdat.node_spanned_pages == 0 and pgdat.node_present_pages == 0
    # Memory comes back to node 1: the pgdat is reused and a new firmware index is used.
    allocation_before = pgdat.allocation
    d2 = m.device_add(256 << 20, 1, id="dimm2")
    check_invariants(k)
    assert k.pgdats[1] is pgdat and pgdat.init_count == 2
    assert pgdat.allocation == allocation_before  # 3.8: kept, reset (seed patches 14, 15)
    idx = [e.index for e in k.fwmap.entries if e.start == d2.addr]
    assert idx == [len(fw_before) + 1]
    assert any("reused" in e.detail for e in k.events if e.what == "hotadd_new_pgdat")


def test_errno_cases(qemu_spec: object) -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(512 << 20, 1, id="dimm1")
    assert write(m, f"{MEM}/memory32/state", "offline") == errno.EINVAL  # already offline
    assert write(m, f"{MEM}/memory32/state", "online_movable") == 0
    assert write(m, f"{MEM}/memory32/state", "online") == errno.EINVAL  # already online
    assert write(m, f"{MEM}/memory32/state", "onlinex") == errno.EINVAL
    assert write(m, f"{MEM}/memory32/state", "") == errno.EINVAL  # "\n"
    assert m.sysfs.write(f"{MEM}/memory32/state", b"") == 0  # empty writes never reach the store
    assert write(m, f"{MEM}/memory32/online", "maybe") == errno.EINVAL
    assert write(m, f"{MEM}/memory32/online", "1") == 0  # online_store: already online is fine
    # the 6.1 zone rules (default_zone_for_pfn): a range in no zone defaults to Normal
    assert m.sysfs.read(f"{MEM}/memory33/valid_zones") == b"Normal Movable\n"
    assert m.sysfs.read(f"{MEM}/memory32/valid_zones") == b"Movable\n"
    assert write(m, f"{MEM}/memory33/state", "online_kernel") == 0
    assert m.sysfs.read(f"{MEM}/memory33/valid_zones") == b"Normal\n"
    # memory0 spans DMA and DMA32: EINVAL ("none" zones)
    assert m.sysfs.read(f"{MEM}/memory0/valid_zones") == b"none\n"
    assert write(m, f"{MEM}/memory0/state", "offline") == errno.EINVAL
    # memory7 ends in an e820 "Reserved" hole: EINVAL (memory holes)
    assert write(m, f"{MEM}/memory7/state", "offline") == errno.EINVAL
    assert m.kernel.hotplug.last_offline_failure is not None
    assert m.kernel.hotplug.last_offline_failure.reason == "memory holes"
    # read-only and write-only attributes
    assert write(m, f"{MEM}/memory7/phys_index", "1") == errno.EACCES
    with pytest.raises(OSError) as ei:
        m.sysfs.read(f"{MEM}/soft_offline_page")
    assert ei.value.errno == errno.EACCES
    with pytest.raises(OSError) as ei:
        m.sysfs.read(f"{MEM}/memory99/state")
    assert ei.value.errno == errno.ENOENT
    # auto_online_blocks
    assert write(m, f"{MEM}/auto_online_blocks", "bogus") == errno.EINVAL
    assert write(m, f"{MEM}/auto_online_blocks", "online_movable") == 0
    assert m.sysfs.read(f"{MEM}/auto_online_blocks") == b"online_movable\n"
    check_invariants(m.kernel)


def test_kernel_memory_gives_ebusy_with_owner() -> None:
    m = SimMachine(machine("seed"))
    # memblock is top-down: the boot memmap and the kernel's slab sit in memory7
    assert write(m, f"{MEM}/memory7/state", "offline") == errno.EBUSY
    why = m.kernel.hotplug.last_offline_failure
    assert why is not None and why.errno == errno.EBUSY
    assert any("memmap of boot memory of node 0" in o for o in why.owners)
    assert m.kernel.memory.blocks[7].state is MemState.MEM_ONLINE
    # memory2 holds nothing of the kernel's: it goes offline and comes back
    assert write(m, f"{MEM}/memory2/state", "offline") == 0
    assert write(m, f"{MEM}/memory2/state", "online") == 0
    check_invariants(m.kernel)


def test_remove_with_online_blocks_is_refused_without_eject() -> None:
    from memhp.kernel.mm import memory_hotplug as mh

    m = SimMachine(machine("qemu-linux-6.1"))
    d = m.device_add(512 << 20, 1, id="dimm1")
    assert write(m, f"{MEM}/memory33/state", "online_movable") == 0
    assert mh.remove_memory(m.kernel, d.addr, d.size) == -errno.EBUSY
    check_invariants(m.kernel)
    assert 33 in m.kernel.memory.blocks


def test_eject_busy_reports_ost_and_rolls_back() -> None:
    """6.1: acpi_scan_try_to_offline() fails -> blocks it offlined come back online, _OST busy."""
    m = SimMachine(machine("qemu-linux-6.1"))
    d = m.device_add(512 << 20, 1, id="dimm1")
    for b in range(32, 36):
        assert write(m, f"{MEM}/memory{b}/state", "online_kernel") == 0
    m.fill(
        64,
        start=d.addr + (128 << 20),
        end=d.addr + (256 << 20),
        owner="driver buffer",
        mix=__import__("memhp.sim.machine", fromlist=["WorkloadMix"]).WorkloadMix(unmovable=1.0),
    )
    before = {b: m.kernel.memory.blocks[b].state for b in range(32, 36)}
    m.device_del("dimm1")
    check_invariants(m.kernel)
    assert {b: m.kernel.memory.blocks[b].state for b in range(32, 36)} == before
    last = m.platform.events[-1]
    assert last.data["info"]["status"] == 0x82  # type: ignore[index]  # ACPI_OST_SC_DEVICE_BUSY
    assert m.platform.slot_of("dimm1") is not None


def test_platform_refuses_bad_requests() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    with pytest.raises(PlatformError):
        m.device_add(101 << 20, 1)  # not a multiple of the backend's 2 MiB alignment
    with pytest.raises(PlatformError):
        m.device_add(128 << 20, 7)  # no such node
    with pytest.raises(PlatformError):
        m.device_add(16 << 30, 1)  # more than maxmem
    with pytest.raises(PlatformError):
        m.device_del("nope")
    m.device_add(128 << 20, 1, id="a")
    with pytest.raises(PlatformError):
        m.device_add(128 << 20, 1, id="a")
    check_invariants(m.kernel)


def test_auto_online_blocks() -> None:
    import dataclasses

    spec = dataclasses.replace(machine("qemu-linux-6.1"), auto_online_blocks="online_movable")
    m = SimMachine(spec)
    m.device_add(256 << 20, 1, id="d")
    assert all(m.kernel.memory.blocks[b].state is MemState.MEM_ONLINE for b in (32, 33))
    assert m.sysfs.read(f"{MEM}/memory32/valid_zones") == b"Movable\n"
    check_invariants(m.kernel)


def test_notifier_error_injection_leaves_state_unchanged() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(256 << 20, 1, id="d")
    inj = "/sys/kernel/debug/notifier-error-inject/memory/actions"
    assert write(m, f"{inj}/MEM_GOING_ONLINE/error", "-12") == 0
    assert write(m, f"{MEM}/memory32/state", "online") == errno.ENOMEM
    assert block_state(m, 32) is MemState.MEM_OFFLINE
    check_invariants(m.kernel)
    assert write(m, f"{inj}/MEM_GOING_ONLINE/error", "0") == 0
    assert write(m, f"{MEM}/memory32/state", "online") == 0
    assert write(m, f"{inj}/MEM_GOING_OFFLINE/error", "-16") == 0
    assert write(m, f"{MEM}/memory32/state", "offline") == errno.EBUSY
    assert block_state(m, 32) is MemState.MEM_ONLINE
    assert write(m, f"{inj}/MEM_GOING_OFFLINE/error", "5") == errno.EINVAL
    check_invariants(m.kernel)


def test_probe_interface_of_the_38_profile() -> None:
    """probe_store(): a block hot-added at a physical address, without an ACPI device."""
    m = SimMachine(machine("seed"))
    k = m.kernel
    probe = f"{MEM}/probe"
    assert m.sysfs.lstat(probe).mode == 0o200
    assert write(m, probe, "0x40000000") == 0
    assert 8 in k.memory.blocks and k.memory.blocks[8].state is MemState.MEM_OFFLINE
    # memory_add_physaddr_to_nid(): node 1's SRAT hotplug window lies above max_pfn,
    # so numa_cleanup_meminfo() left it out of numa_meminfo: the first entry's node.
    assert k.memory.blocks[8].nid == 0 and 1 not in k.nodes.registered_nodes
    assert any(e.start == 0x40000000 for e in k.fwmap.entries)
    assert write(m, probe, "0x40000000") == errno.EEXIST
    assert write(m, probe, "0x41000000") == errno.EINVAL  # not block aligned
    assert write(m, probe, "lots") == errno.EINVAL
    assert write(m, probe, "0x0") == errno.EEXIST  # boot RAM
    check_invariants(k)
    assert write(m, f"{MEM}/memory8/state", "online") == 0
    check_invariants(k)
    # Linux 6.1 as Debian builds it has no probe interface
    m61 = SimMachine(machine("qemu-linux-6.1"))
    with pytest.raises(OSError) as ei:
        m61.sysfs.lstat(probe)
    assert ei.value.errno == errno.ENOENT
