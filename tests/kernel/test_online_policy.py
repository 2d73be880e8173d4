"""The online policies of mm/memory_hotplug.c (contig-zones, auto-movable), the
memory_hotplug module parameters, memory groups of ACPI memory devices, and the
hugetlb ``demote`` attribute's parsing, on the real model."""

from __future__ import annotations

import errno
from dataclasses import replace

import pytest

from memhp.abi.layout import MiB
from memhp.abi.paths import MODULE_MEMORY_HOTPLUG, block_dir
from memhp.kernel.machine import MachineError, parse_machine
from memhp.sim.machine import SimMachine
from tests.support.sim import machine

P = MODULE_MEMORY_HOTPLUG


def _sim(**kw: object) -> SimMachine:
    return SimMachine(replace(machine("qemu-linux-6.1"), **kw))  # type: ignore[arg-type]


def _zones(m: SimMachine, b: int) -> str:
    return m.sysfs.read(f"{block_dir(b)}/valid_zones").decode().strip()


def _errno(m: SimMachine, path: str, value: bytes) -> int:
    try:
        m.sysfs.write(path, value)
    except OSError as e:
        return e.errno or 0
    return 0


def test_parameters_show_the_defaults_with_kernel_modes() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    assert m.sysfs.read(f"{P}/online_policy") == b"contig-zones\n"
    assert m.sysfs.read(f"{P}/auto_movable_ratio") == b"301\n"
    assert m.sysfs.read(f"{P}/auto_movable_numa_aware") == b"Y\n"
    assert m.sysfs.lstat(f"{P}/online_policy").mode == 0o644
    assert m.sysfs.lstat(f"{P}/auto_movable_ratio").mode == 0o644
    assert m.sysfs.lstat(f"{P}/memmap_on_memory").mode == 0o444


def test_parameters_parse_like_the_kernel() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    assert _errno(m, f"{P}/online_policy", b"movable") == errno.EINVAL
    assert _errno(m, f"{P}/online_policy", b"auto-movable\n") == 0
    assert m.sysfs.read(f"{P}/online_policy") == b"auto-movable\n"
    assert _errno(m, f"{P}/auto_movable_ratio", b"abc") == errno.EINVAL
    assert _errno(m, f"{P}/auto_movable_ratio", b"-1") == errno.EINVAL
    assert _errno(m, f"{P}/auto_movable_ratio", b"4294967296") == errno.ERANGE
    assert _errno(m, f"{P}/auto_movable_ratio", b"99999999999999999999") == errno.ERANGE
    assert _errno(m, f"{P}/auto_movable_ratio", b"0x33\n") == 0
    assert m.sysfs.read(f"{P}/auto_movable_ratio") == b"51\n"
    assert _errno(m, f"{P}/auto_movable_numa_aware", b"maybe") == errno.EINVAL
    assert _errno(m, f"{P}/auto_movable_numa_aware", b"off") == 0
    assert m.sysfs.read(f"{P}/auto_movable_numa_aware") == b"N\n"
    assert _errno(m, f"{P}/auto_movable_numa_aware", b"t") == 0  # recorded: 6.1 and 6.12
    assert m.sysfs.read(f"{P}/auto_movable_numa_aware") == b"Y\n"


@pytest.mark.parametrize(
    ("value", "online"),
    [
        (b"true", True),
        (b"T", True),
        (b"yes please", True),
        (b"10", True),
        (b"ON", True),
        (b"false", False),
        (b"F\n", False),
        (b"0x1", False),
        (b"oF", False),
        (b"n", False),
        (b"Enable", None),
        (b"disable", None),
        (b"o", None),
        (b"2", None),
        (b"-1", None),
        (b" 1", None),
    ],
)
def test_online_file_parses_like_kstrtobool(value: bytes, online: bool | None) -> None:
    """A block's ``online`` (online_store(): kstrtobool()), as recorded on 6.1 and 6.12
    (tests/scenarios/sysfs-write-parsing.toml): YyTt1 and NnFf0 by the first character,
    on/off by the first two, anything else EINVAL and nothing changes."""
    m = SimMachine(replace(machine("qemu-linux-6.1"), auto_online_blocks="offline"))
    m.device_add(512 * MiB, 1, id="dimm1")
    before = m.sysfs.read(f"{block_dir(32)}/state")
    assert before == b"offline\n"
    for start in (b"0", b"1"):
        assert _errno(m, f"{block_dir(32)}/online", start) == 0
        was = m.sysfs.read(f"{block_dir(32)}/state")
        rc = _errno(m, f"{block_dir(32)}/online", value)
        state = m.sysfs.read(f"{block_dir(32)}/state")
        if online is None:
            assert (rc, state) == (errno.EINVAL, was)
        else:
            assert (rc, state) == (0, b"online\n" if online else b"offline\n")


def test_auto_movable_ratio_against_present_early_kernel_pages() -> None:
    # node 0: 3998 + 258016 present early pages; a 512M DIMM is 131072 pages.
    m = _sim(online_policy="auto-movable")
    m.device_add(512 * MiB, 0, id="dimm1")
    assert _zones(m, 32) == "Movable Normal"
    m.sysfs.write(f"{P}/auto_movable_ratio", b"50")
    assert _zones(m, 32) == "Normal Movable"
    m.sysfs.write(f"{P}/auto_movable_ratio", b"51")
    assert _zones(m, 32) == "Movable Normal"
    m.sysfs.write(f"{P}/auto_movable_ratio", b"0")
    assert _zones(m, 32) == "Normal Movable"


def test_static_group_is_all_movable_or_all_kernel() -> None:
    m = _sim(online_policy="auto-movable")
    m.device_add(512 * MiB, 0, id="dimm1")
    group = m.kernel.memory.blocks[32].group
    assert group is not None and group.max_pages == 131072
    assert [m.kernel.memory.blocks[b].group for b in (33, 34, 35)] == [group] * 3
    m.sysfs.write(f"{block_dir(32)}/state", b"online_kernel")
    assert group.present_kernel_pages == 32768
    assert _zones(m, 33) == "Normal Movable"


def test_auto_online_fills_the_ratio_then_goes_kernel() -> None:
    m = _sim(online_policy="auto-movable", auto_online_blocks="online")
    m.device_add(2048 * MiB, 0, id="dimm1")
    m.device_add(2048 * MiB, 0, id="dimm2")
    assert {_zones(m, b) for b in range(32, 48)} == {"Movable"}
    assert {_zones(m, b) for b in range(48, 64)} == {"Normal"}


def test_numa_aware_needs_kernel_memory_on_the_node() -> None:
    m = _sim(online_policy="auto-movable")
    m.device_add(512 * MiB, 1, id="dimm1")
    assert _zones(m, 32) == "Normal Movable"  # node 1 has no early kernel memory
    m.sysfs.write(f"{P}/auto_movable_numa_aware", b"N")
    assert _zones(m, 32) == "Movable Normal"


def test_group_unregistered_with_the_device() -> None:
    m = _sim(online_policy="auto-movable")
    m.device_add(512 * MiB, 1, id="dimm1")
    assert list(m.kernel.memory.groups) == [0]
    m.device_del("dimm1")
    assert m.kernel.memory.groups == {}
    m.device_add(256 * MiB, 1, id="dimm2")
    assert list(m.kernel.memory.groups) == [0]


def test_contig_zones_is_the_default() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(512 * MiB, 0, id="dimm1")
    assert _zones(m, 32) == "Normal Movable"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("online_policy", "movable", "expected one of contig-zones, auto-movable"),
        ("auto_movable_ratio", -1, "expected an integer 0..4294967295"),
        ("auto_movable_ratio", True, "expected an integer"),
        ("auto_movable_numa_aware", "yes", "expected true or false"),
    ],
)
def test_machine_file_checks_the_policy(key: str, value: object, problem: str) -> None:
    doc = {"node": [{"id": 0, "cpus": [0], "memory": [["0", "1G"]]}], key: value}
    with pytest.raises(MachineError) as e:
        parse_machine(doc)
    assert e.value.key == key
    assert problem in e.value.problem


def test_old_profile_has_no_online_policy() -> None:
    doc = {
        "profile": "linux-3.8-hotremove",
        "node": [{"id": 0, "cpus": [0], "memory": [["0", "1G"]]}],
        "online_policy": "auto-movable",
    }
    with pytest.raises(MachineError, match="no online policies"):
        parse_machine(doc)


def test_demote_parses_like_kstrtoul() -> None:
    m = SimMachine(replace(machine("qemu-linux-6.1"), gbpages=True))
    d = "/sys/devices/system/node/node0/hugepages/hugepages-1048576kB"
    assert _errno(m, f"{d}/demote", b"x") == errno.EINVAL
    assert _errno(m, f"{d}/demote", b"-1") == errno.EINVAL
    assert _errno(m, f"{d}/demote", b"18446744073709551616") == errno.ERANGE
    assert _errno(m, f"{d}/demote", b"0x1") == errno.EINVAL  # base 10
    assert _errno(m, f"{d}/demote", b"3\n") == 0  # nothing to demote: no error
