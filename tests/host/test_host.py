"""The host library on synthetic and reference trees and on a behaving fake kernel."""

from __future__ import annotations

import errno
import struct
from pathlib import Path

import pytest
from memhp_trees import synthetic_snapshots, trace_snapshots

from memhp.abi.fs import DirectoryFS
from memhp.abi.tree import write_tree
from memhp.host import chmem
from memhp.host.devices import device_of_block, find_device, list_devices
from memhp.host.diagnose import KPF_BUDDY, KPF_LRU, KPF_RESERVED, KPF_SLAB, classify, diagnose
from memhp.host.errors import Busy, InvalidArgument, NotFound, SysfsError, UsageError
from memhp.host.memory import block_indices, block_size, firmware_memmap, read_block
from memhp.host.remove import online_value, remove_device
from memhp.host.root import SysfsRoot
from memhp.host.scols import size_to_human_string
from memhp.host.testing import FakeBlock, FakeKernel, make_snapshot

MEM = "/sys/devices/system/memory"


def dimm_machine(**kw: object) -> FakeKernel:
    """8 boot blocks on node 0 and a 4-block DIMM (PNP0C80:00, blocks 32-35) on node 1."""
    blocks = [FakeBlock(0, valid_zones="none")]
    blocks += [FakeBlock(i, valid_zones="DMA32") for i in range(1, 8)]
    blocks += [
        FakeBlock(i, valid_zones="Movable", node=1, device="PNP0C80:00") for i in range(32, 36)
    ]
    return FakeKernel(make_snapshot(blocks), **kw)  # type: ignore[arg-type]


@pytest.fixture
def trace() -> dict[str, SysfsRoot]:
    snaps = trace_snapshots()
    if not snaps:
        pytest.skip("reference trace not available")
    return {k: SysfsRoot(FakeKernel(v)) for k, v in snaps.items()}


def test_size_to_human_string() -> None:
    assert size_to_human_string(0) == "0B"
    assert size_to_human_string(128 << 20) == "128M"
    assert size_to_human_string(1536 << 20) == "1.5G"
    assert size_to_human_string(1408 << 20) == "1.4G"
    assert size_to_human_string((1 << 30) - 1) == "1024M"
    assert size_to_human_string(3 << 40) == "3T"


def test_root_errors_are_typed(tmp_path: Path) -> None:
    root = SysfsRoot(DirectoryFS(str(tmp_path)))
    with pytest.raises(NotFound) as ei:
        root.read_str("/sys/nothing")
    assert ei.value.errno == errno.ENOENT and ei.value.path == "/sys/nothing"
    assert ei.value.op == "read"
    assert "cannot read /sys/nothing" in str(ei.value)
    assert root.read_str_optional("/sys/nothing") is None


def test_blocks_of_reference_trace(trace: dict[str, SysfsRoot]) -> None:
    root = trace["trace-1-after-hotadd-dimm1-node1"]
    assert block_size(root) == 128 << 20
    assert block_indices(root) == [0, 1, 2, 3, 4, 5, 6, 7, 32, 33, 34, 35]
    b = read_block(root, 32)
    assert b.state == "offline" and b.valid_zones == ("Normal", "Movable")
    assert b.node == 1 and b.start == 0x100000000
    assert b.firmware_node is not None and b.firmware_node.endswith("PNP0C80:00")
    b0 = read_block(root, 0)
    assert b0.spans_zones and b0.zone == "none"
    entries = firmware_memmap(root)
    assert any(e.start == 0x100000000 and e.type == "System RAM" for e in entries)
    with pytest.raises(UsageError, match="memory block 9 does not exist"):
        read_block(root, 9)


def test_devices_of_reference_trace(trace: dict[str, SysfsRoot]) -> None:
    root = trace["trace-2-after-online"]
    devs = list_devices(root)
    assert [d.name for d in devs] == ["PNP0C80:00"]
    d = devs[0]
    assert [b.index for b in d.blocks] == [32, 33, 34, 35]
    assert d.online_blocks == 4 and d.nodes == (1,) and d.ejectable
    assert d.zones == ("Normal", "Movable")
    assert device_of_block(root, 33) == "PNP0C80:00"
    assert device_of_block(root, 3) is None
    assert list_devices(trace["trace-4-after-eject-dimm1"]) == []
    with pytest.raises(UsageError):
        find_device(root, "PNP0C80:07")


def test_online_size_lowest_first_prefers_movable() -> None:
    k = dimm_machine()
    root = SysfsRoot(k)
    for i in range(32, 36):
        k.store_state(i, "offline")
    k.writes.clear()
    res = chmem.change(root, "256M", enable=True, verbose=True)
    assert res.code == 0
    assert res.done == [32, 33]
    assert [w[1] for w in k.writes] == ["online_movable", "online_movable"]
    assert res.messages[0].startswith("Memory Block 32 (0x0000000100000000-0x0000000107ffffff)")
    assert res.messages[0].endswith("enabled")


def test_offline_size_highest_first_and_partial() -> None:
    k = dimm_machine(fail_offline={33: (errno.EBUSY, None)})
    root = SysfsRoot(k)
    res = chmem.change(root, "384m", enable=False)
    # 35 and 34 go, 33 fails, then 32 goes: 384M done
    assert res.done == [35, 34, 32] and res.code == 0
    res = chmem.change(root, "1g", enable=False)
    assert res.code == 64 and "Could only disable" in res.warnings[-1]


def test_range_and_block_selection() -> None:
    k = dimm_machine()
    root = SysfsRoot(k)
    res = chmem.change(root, "0x110000000-0x11fffffff", enable=False, verbose=True)
    assert res.done == [34, 35] and res.code == 0
    res = chmem.change(root, "34-35", enable=False, use_blocks=True, verbose=True)
    assert res.already == [34, 35] and res.code == 0
    assert "already disabled" in res.messages[0]
    res = chmem.change(root, "32-35", enable=True, use_blocks=True, zone="Movable")
    assert res.done == [34, 35] and res.code == 0
    assert k.state(34) == "online"


def test_zone_mismatch_is_reported() -> None:
    k = dimm_machine()
    root = SysfsRoot(k)
    res = chmem.change(root, "1-2", enable=False, use_blocks=True, zone="Movable")
    assert res.code == 1 and res.done == []
    assert "Zone mismatch" in res.warnings[0]


@pytest.mark.parametrize(
    ("param", "blocks", "message"),
    [
        ("100M", False, "aligned"),
        ("64g", False, "larger than all memory"),
        ("0x1000-0x8000000", False, "aligned"),
        ("100000000-11fffffff", False, "Invalid start address format"),
        ("9", True, "memory block 9 does not exist"),
        ("12-20", True, "no memory blocks in range"),
        ("5-3", True, "Invalid range"),
        ("1-2-3", True, "Invalid parameter"),
        ("x", False, "Failed to parse size"),
    ],
)
def test_bad_selection_changes_nothing(param: str, blocks: bool, message: str) -> None:
    k = dimm_machine()
    with pytest.raises(UsageError, match=message):
        chmem.change(SysfsRoot(k), param, enable=False, use_blocks=blocks)
    assert k.writes == []


def test_unknown_zone() -> None:
    k = dimm_machine()
    with pytest.raises(UsageError, match="unknown memory zone"):
        chmem.change(SysfsRoot(k), "32", enable=True, use_blocks=True, zone="Bogus")
    assert k.writes == []


def test_parse_size() -> None:
    assert chmem.parse_size("512") == 512 << 20
    assert chmem.parse_size("512M") == 512 << 20
    assert chmem.parse_size("2g") == 2 << 30
    assert chmem.parse_size("1GiB") == 1 << 30
    assert chmem.parse_size("1GB") == 10**9


def test_remove_success_ejects_and_waits() -> None:
    k = dimm_machine()
    root = SysfsRoot(k)
    res = remove_device(root, "PNP0C80:00", sleep=lambda s: None)
    assert res.code == 0 and res.removed and res.ejected
    assert res.plan == [35, 34, 33, 32]
    assert [w for w in k.writes if w[1] == "offline"] == [
        (f"{MEM}/memory{i}/state", "offline") for i in (35, 34, 33, 32)
    ]
    assert block_indices(root) == list(range(8))


def test_remove_needs_second_pass() -> None:
    """memory35 fails once (depends on 34 being offline): the second pass gets it."""
    k = dimm_machine(fail_offline={35: (errno.EBUSY, 1)})
    res = remove_device(SysfsRoot(k), "PNP0C80:00", sleep=lambda s: None)
    assert res.code == 0 and res.passes == 2 and res.removed


def test_remove_fails_on_one_block_and_rolls_back() -> None:
    k = dimm_machine(fail_offline={33: (errno.EBUSY, None)})
    k.store_state(34, "offline")
    k.store_state(34, "online_kernel")  # 34 was in a kernel zone: rollback must keep it
    root = SysfsRoot(k)
    t = [0.0]

    def clock() -> float:
        t[0] += 1.0
        return t[0]

    res = remove_device(root, "PNP0C80:00", timeout=5, sleep=lambda s: None, clock=clock)
    assert res.code == 1 and not res.ejected
    assert res.passes >= 2
    assert [f.index for f in res.failures] == [33]
    assert isinstance(res.failures[0].error, Busy)
    assert res.failures[0].diagnosis is not None
    assert sorted(res.rolled_back) == [32, 34, 35]
    assert all(k.state(i) == "online" for i in (32, 33, 34, 35))
    # each block went back to the zone it had
    assert (f"{MEM}/memory34/state", "online_kernel") in k.writes
    assert (f"{MEM}/memory35/state", "online_movable") in k.writes
    assert all(root.exists(f"{MEM}/memory{i}") for i in (32, 33, 34, 35))


def test_remove_keep_offline_is_partial() -> None:
    k = dimm_machine(fail_offline={33: (errno.EBUSY, None)})
    res = remove_device(
        SysfsRoot(k), "PNP0C80:00", timeout=0, keep_offline=True, sleep=lambda s: None
    )
    assert res.code == 64 and res.rolled_back == []
    assert k.state(35) == "offline" and k.state(33) == "online"


def test_remove_dry_run_changes_nothing() -> None:
    k = dimm_machine()
    res = remove_device(SysfsRoot(k), "PNP0C80:00", dry_run=True)
    assert res.plan == [35, 34, 33, 32] and k.writes == []


def test_remove_eject_timeout() -> None:
    k = dimm_machine(eject_removes=False)
    t = [0.0]

    def clock() -> float:
        t[0] += 0.5
        return t[0]

    res = remove_device(SysfsRoot(k), "PNP0C80:00", timeout=2, sleep=lambda s: None, clock=clock)
    assert res.code == 1 and res.ejected and not res.removed
    assert "has not removed memory blocks" in res.message


def test_online_value() -> None:
    assert online_value("Movable") == "online_movable"
    assert online_value("Normal") == "online_kernel"
    assert online_value(None) == "online"


def test_classify_kpageflags() -> None:
    assert classify(1 << KPF_BUDDY) == "free"
    assert classify(1 << KPF_SLAB) == "slab"
    assert classify(1 << KPF_RESERVED) == "reserved"
    assert classify(1 << KPF_LRU) == "lru"
    assert classify(0) == "other"


def test_why_counts_pages_and_explains() -> None:
    k = dimm_machine()
    base = 0x118000000 // 4096  # memory35
    flags = {base + i: 1 << KPF_BUDDY for i in range(32768)}
    for i in range(10):
        flags[base + i] = 1 << KPF_SLAB
    for i in range(10, 13):
        flags[base + i] = 1 << KPF_RESERVED
    k.kpageflags = flags
    d = diagnose(SysfsRoot(k), 35)
    assert d.pages is not None
    assert d.pages["slab"] == 10 and d.pages["reserved"] == 3
    assert d.pages["free"] == 32768 - 13
    assert not d.offlinable
    assert any("10 slab" in r and "3 reserved" in r for r in d.reasons)
    d0 = diagnose(SysfsRoot(k), 0)
    assert any("spans several zones" in r for r in d0.reasons)
    assert d0.pages == {"other": 32768}  # flags 0: in use, kind unknown


def test_why_on_written_tree(tmp_path: Path) -> None:
    snaps = synthetic_snapshots()
    write_tree(snaps["two-nodes-mixed"], str(tmp_path))
    root = SysfsRoot.open(str(tmp_path))
    d = diagnose(root, 3)
    assert d.block.zone == "DMA32" and d.pages is None
    assert any("not Movable" in r for r in d.reasons)
    assert "No such file" in (d.pages_error or "")


def test_kpageflags_read_at_on_directory(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/kpageflags").write_bytes(struct.pack("<4Q", 1, 2, 4, 1 << KPF_SLAB))
    root = SysfsRoot.open(str(tmp_path))
    assert root.read_at("/proc/kpageflags", 24, 8) == struct.pack("<Q", 1 << KPF_SLAB)


def test_write_errors_are_typed() -> None:
    k = dimm_machine()
    root = SysfsRoot(k)
    with pytest.raises(InvalidArgument) as ei:
        root.write(f"{MEM}/memory0/state", "offline")
    assert ei.value.op == "write" and ei.value.data == "offline"
    assert "cannot write 'offline'" in str(ei.value)
    with pytest.raises(SysfsError):
        root.write(f"{MEM}/memory0/nothing", "1")
