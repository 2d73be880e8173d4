"""The host library on captured and hand-built trees and on the simulated kernel."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest

from memhp.abi.fs import DirectoryFS
from memhp.abi.kpageflags import KPF_BUDDY, KPF_LRU, KPF_RESERVED, KPF_SLAB
from memhp.abi.layout import PAGE_SIZE
from memhp.abi.tree import write_tree
from memhp.cli.main import build_parser
from memhp.host import chmem
from memhp.host.devices import device_of_block, find_device, list_devices
from memhp.host.diagnose import classify, diagnose, format_diagnosis
from memhp.host.errors import InvalidArgument, NotFound, UsageError
from memhp.host.memory import (
    MemoryBlock,
    block_indices,
    block_size,
    firmware_memmap,
    read_block,
    read_block_state,
)
from memhp.host.remove import online_value, remove_device
from memhp.host.root import SysfsRoot
from memhp.host.scols import size_to_human_string
from memhp.sim.machine import SimMachine
from tests.support.sim import (
    RecordingFS,
    dimm_machine,
    machine,
    pin,
    recording_root,
    state,
)
from tests.support.trees import reference_steps, synthetic_snapshots

MEM = "/sys/devices/system/memory"
PROC_KPAGEFLAGS = "/proc/kpageflags"
PAGES_PER_BLOCK = (128 << 20) // PAGE_SIZE


@pytest.fixture
def trace(tmp_path: Path) -> dict[str, SysfsRoot]:
    snaps = reference_steps()
    if not snaps:
        pytest.skip("neither the reference trace nor its real capture is available")
    out = {}
    for k, v in snaps.items():
        write_tree(v, str(tmp_path / k))
        out[k] = SysfsRoot.open(str(tmp_path / k))
    return out


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


def test_brief_device_has_the_state_and_zones_of_the_full_one(
    trace: dict[str, SysfsRoot], tmp_path: Path
) -> None:
    root = trace["trace-2-after-online"]
    full, brief = find_device(root, "PNP0C80:00"), find_device(root, "PNP0C80:00", brief=True)
    assert (brief.name, brief.path, brief.ejectable, brief.status) == (
        full.name,
        full.path,
        full.ejectable,
        full.status,
    )
    assert [(b.index, b.start, b.size, b.state, b.valid_zones) for b in brief.blocks] == [
        (b.index, b.start, b.size, b.state, b.valid_zones) for b in full.blocks
    ]
    assert brief.zones == full.zones == ("Normal", "Movable")
    assert all(
        (b.node, b.removable, b.phys_device, b.firmware_node) == (None, None, None, None)
        for b in brief.blocks
    )
    with pytest.raises(UsageError, match="memory block 9 does not exist"):
        read_block_state(root, 9, block_size(root))
    # A block without a state attribute is still a block (as read_block has it).
    (tmp_path / "sys/devices/system/memory/memory5").mkdir(parents=True)
    (tmp_path / "sys/devices/system/memory/memory5/valid_zones").write_text("Normal\n")
    b5 = read_block_state(SysfsRoot(DirectoryFS(str(tmp_path))), 5, 1 << 27)
    assert (b5.state, b5.valid_zones, b5.start) == (None, ("Normal",), 5 << 27)


def test_online_size_lowest_first_prefers_movable() -> None:
    m = dimm_machine()
    root, fs = recording_root(m)
    for i in range(32, 36):
        root.write(f"{MEM}/memory{i}/state", "offline")
    fs.writes.clear()
    res = chmem.change(root, "256M", enable=True, verbose=True)
    assert res.code == 0
    assert res.done == [32, 33]
    assert [w[1] for w in fs.writes] == ["online_movable", "online_movable"]
    assert res.messages[0].startswith("Memory Block 32 (0x0000000100000000-0x0000000107ffffff)")
    assert res.messages[0].endswith("enabled")


def test_offline_size_highest_first_and_partial() -> None:
    m = dimm_machine()
    pin(m, 33)  # ZONE_MOVABLE: migration retried until a signal, EINTR
    root = SysfsRoot(m.sysfs)
    res = chmem.change(root, "384m", enable=False)
    # 35 and 34 go, 33 fails, then 32 goes: 384M done
    assert res.done == [35, 34, 32] and res.code == 0
    res = chmem.change(root, "1g", enable=False)
    assert res.code == 64 and "Could only disable" in res.warnings[-1]


def test_range_and_block_selection() -> None:
    m = dimm_machine()
    root = SysfsRoot(m.sysfs)
    res = chmem.change(root, "0x110000000-0x11fffffff", enable=False, verbose=True)
    assert res.done == [34, 35] and res.code == 0
    res = chmem.change(root, "34-35", enable=False, use_blocks=True, verbose=True)
    assert res.already == [34, 35] and res.code == 0
    assert "already disabled" in res.messages[0]
    res = chmem.change(root, "32-35", enable=True, use_blocks=True, zone="Movable")
    assert res.done == [34, 35] and res.code == 0
    assert state(m, 34) == "online"


def test_zone_mismatch_is_reported() -> None:
    root, fs = recording_root(dimm_machine())
    res = chmem.change(root, "1-2", enable=False, use_blocks=True, zone="Movable")
    assert res.code == 1 and res.done == []
    assert "Zone mismatch" in res.warnings[0]
    assert fs.writes == []


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
    root, fs = recording_root(dimm_machine())
    with pytest.raises(UsageError, match=message):
        chmem.change(root, param, enable=False, use_blocks=blocks)
    assert fs.writes == []


def test_unknown_zone() -> None:
    root, fs = recording_root(dimm_machine())
    with pytest.raises(UsageError, match="unknown memory zone"):
        chmem.change(root, "32", enable=True, use_blocks=True, zone="Bogus")
    assert fs.writes == []


def test_parse_size() -> None:
    assert chmem.parse_size("512") == 512 << 20
    assert chmem.parse_size("512M") == 512 << 20
    assert chmem.parse_size("2g") == 2 << 30
    assert chmem.parse_size("1GiB") == 1 << 30
    assert chmem.parse_size("1GB") == 10**9
    with pytest.raises(UsageError, match="Failed to parse size: '1Q'"):
        chmem.parse_size("1Q")


def test_remove_success_ejects_and_waits() -> None:
    m = dimm_machine()
    root, fs = recording_root(m)
    res = remove_device(root, "PNP0C80:00", sleep=lambda s: None)
    assert res.code == 0 and res.removed and res.ejected
    assert res.plan == [35, 34, 33, 32]
    assert [w for w in fs.writes if w[1] == "offline"] == [
        (f"{MEM}/memory{i}/state", "offline") for i in (35, 34, 33, 32)
    ]
    assert block_indices(root) == list(range(8))
    assert m.platform.slot_of("dimm1") is None  # the platform got the eject


def test_remove_needs_second_pass() -> None:
    """Blocks onlined highest first: memory11 holds memory8's page_cgroup, so it
    can only go once memory8 is offline, in the second pass."""
    m = SimMachine(machine("seed"))
    m.device_add(512 << 20, 1, id="dimm1", addr=1 << 30)
    for b in (11, 10, 9, 8):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online")
    res = remove_device(SysfsRoot(m.sysfs), "PNP0C80:00", sleep=lambda s: None)
    assert res.code == 0 and res.passes == 2 and res.removed
    assert res.offlined == [10, 9, 8, 11]


class Clock:
    """A clock that advances ``step`` seconds at each reading."""

    def __init__(self, step: float = 1.0) -> None:
        self.t = 0.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_remove_fails_on_one_block_and_rolls_back() -> None:
    # 34 in a kernel zone: rollback must put it back there
    m = dimm_machine(("online_movable", "online_movable", "online_kernel", "online_movable"))
    pin(m, 33)
    root, fs = recording_root(m)
    res = remove_device(root, "PNP0C80:00", timeout=5, sleep=lambda s: None, clock=Clock())
    assert res.code == 1 and not res.ejected
    assert res.passes == 5  # one clock reading per pass: until the 5 s deadline
    assert [f.index for f in res.failures] == [33]
    # ZONE_MOVABLE: the pinned pages are retried until the writer gets a signal
    assert res.failures[0].error.errno == errno.EINTR
    assert res.failures[0].diagnosis is not None
    assert sorted(res.rolled_back) == [32, 34, 35]
    assert all(state(m, i) == "online" for i in (32, 33, 34, 35))
    # each block went back to the zone it had
    assert (f"{MEM}/memory34/state", "online_kernel") in fs.writes
    assert (f"{MEM}/memory35/state", "online_movable") in fs.writes
    assert m.sysfs.read(f"{MEM}/memory34/valid_zones") == b"Normal\n"
    assert m.sysfs.read(f"{MEM}/memory35/valid_zones") == b"Movable\n"
    assert all(root.exists(f"{MEM}/memory{i}") for i in (32, 33, 34, 35))


def test_remove_in_kernel_zone_fails_with_ebusy() -> None:
    """Unmovable pages in a kernel zone: start_isolate_page_range() refuses (EBUSY)."""
    m = dimm_machine(("online_movable", "online_movable", "online_kernel", "online_movable"))
    pin(m, 34)
    res = remove_device(SysfsRoot(m.sysfs), "PNP0C80:00", timeout=0, sleep=lambda s: None)
    assert [(f.index, f.error.errno) for f in res.failures] == [(34, errno.EBUSY)]


def test_remove_keep_offline_is_partial() -> None:
    m = dimm_machine()
    pin(m, 33)
    res = remove_device(
        SysfsRoot(m.sysfs), "PNP0C80:00", timeout=0, keep_offline=True, sleep=lambda s: None
    )
    assert res.code == 64 and res.rolled_back == []
    assert state(m, 35) == "offline" and state(m, 33) == "online"


def test_remove_dry_run_changes_nothing() -> None:
    root, fs = recording_root(dimm_machine())
    res = remove_device(root, "PNP0C80:00", dry_run=True)
    assert res.plan == [35, 34, 33, 32] and fs.writes == []


def test_remove_eject_timeout() -> None:
    """A udev rule onlines memory32 again just before the eject and a driver pins
    it: the kernel's hot-remove fails (_OST), the blocks stay."""
    m = dimm_machine()

    def race(path: str, value: str) -> None:
        if path.endswith("/eject"):
            m.sysfs.write(f"{MEM}/memory32/state", b"online_movable")
            pin(m, 32)

    root = SysfsRoot(RecordingFS(m.sysfs, before_write=race))
    res = remove_device(root, "PNP0C80:00", timeout=2, sleep=lambda s: None, clock=Clock(0.5))
    assert res.code == 1 and res.ejected and not res.removed
    assert "has not removed memory blocks 32,33,34,35" in res.message
    assert m.platform.slot_of("dimm1") is not None


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
    m = dimm_machine()
    pin(m, 35, pages=10)
    d = diagnose(SysfsRoot(m.sysfs), 35)
    assert d.pages == {"slab": 10, "free": PAGES_PER_BLOCK - 10}
    assert not d.offlinable
    why = "the kernel allocated pages here at run time that it cannot migrate: 10 slab"
    assert why in d.reasons
    d0 = diagnose(SysfsRoot(m.sysfs), 0)
    assert any("spans several zones" in r for r in d0.reasons)
    assert d0.pages is not None and sum(d0.pages.values()) == PAGES_PER_BLOCK
    assert d0.pages["reserved"] > 0  # the first page, the BIOS area


def test_why_reads_only_the_blocks_kpageflags() -> None:
    """8 bytes per page of the block, not the whole /proc/kpageflags."""
    m = dimm_machine()
    root, fs = recording_root(m)
    diagnose(root, 35)
    assert fs.bytes_read[PROC_KPAGEFLAGS] == 8 * PAGES_PER_BLOCK


def test_why_on_a_tib_machine(capsys: pytest.CaptureFixture[str]) -> None:
    """1 TiB of boot memory: /proc/kpageflags is 2 GiB; one block's part is read."""
    m = SimMachine(machine("tib-4node"))
    root, fs = recording_root(m)
    bs = block_size(root)
    idx = block_indices(root)[-1]
    d = diagnose(root, idx)
    assert d.pages is not None and sum(d.pages.values()) == bs // PAGE_SIZE
    assert fs.bytes_read[PROC_KPAGEFLAGS] == 8 * (bs // PAGE_SIZE)
    # memhp why, in-process on the same machine
    args = build_parser("why").parse_args(["why", str(idx)])
    args.root = root
    assert args.func(args) == 0
    assert capsys.readouterr().out.startswith(f"memory{idx} (")
    assert fs.bytes_read[PROC_KPAGEFLAGS] == 2 * 8 * (bs // PAGE_SIZE)


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
    root = SysfsRoot(dimm_machine().sysfs)
    with pytest.raises(InvalidArgument) as ei:
        root.write(f"{MEM}/memory0/state", "offline")  # spans DMA and DMA32
    assert ei.value.errno == errno.EINVAL
    assert ei.value.op == "write" and ei.value.data == "offline"
    assert "cannot write 'offline'" in str(ei.value)
    with pytest.raises(NotFound):
        root.write(f"{MEM}/memory0/nothing", "1")


def test_why_names_run_time_kernel_allocations() -> None:
    """A tmpfs file written on a node with CPUs after its hot-added memory went to
    ZONE_NORMAL: the file's xarray nodes are slab pages (KPF_SLAB) in memory32, the
    page tables of a process PG_table pages (KPF_PGTABLE), named as on Linux."""
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(1 << 30, 0, id="dimm1")
    for b in range(32, 40):
        m.sysfs.write(f"/sys/devices/system/memory/memory{b}/state", b"online_kernel")
    m.tmpfs_write("data", 256 << 20, 0)
    # the slab pages stole one 4 MiB block (1024 pages) of memory32; the file's pages
    # take the rest of memory32 (its movable blocks come first), then memory33...
    d = diagnose(SysfsRoot(m.sysfs), 32)
    assert d.pages == {"slab": 150, "lru": PAGES_PER_BLOCK - 1024, "free": 1024 - 150}
    assert not d.offlinable
    assert "the kernel allocated pages here at run time that it cannot migrate: 150 slab" in (
        d.reasons
    )
    assert d.to_json()["runtime_kernel_pages"] == {"slab": 150}
    assert "slab (kernel objects)" in format_diagnosis(d)
    d33 = diagnose(SysfsRoot(m.sysfs), 33)
    assert d33.pages == {"lru": PAGES_PER_BLOCK}
    assert d33.to_json()["runtime_kernel_pages"] == {}
    [pt] = m.kernel.kalloc.process_page_tables("proc:1", 1 << 18, 0)
    assert pt.extents == {32: 514}  # the rest of the slab's stolen block
    d = diagnose(SysfsRoot(m.sysfs), 32)
    assert d.pages == {
        "pagetable": 514,
        "slab": 150,
        "lru": PAGES_PER_BLOCK - 1024,
        "free": 1024 - 664,
    }
    assert d.reasons[-1] == (
        "the kernel allocated pages here at run time that it cannot migrate: "
        "150 slab, 514 page tables"
    )


def test_quiet_reader_closes_its_descriptors_in_batches_and_only_its_own(
    tmp_path: Path,
) -> None:
    """quiet_reader leaves descriptors open and closes them in runs (close_range):
    every read sees its own file, nothing leaks, and a descriptor opened by someone
    else in the middle of a batch stays open."""
    for i in range(400):
        (tmp_path / f"f{i}").write_text(f"{i}\n")
    root = SysfsRoot.open(str(tmp_path))
    read = root.quiet_reader("/")
    before = set(os.listdir("/proc/self/fd"))
    assert [read(f"f{i}") for i in range(5)] == [f"{i}\n".encode() for i in range(5)]
    foreign = os.open(str(tmp_path / "f0"), os.O_RDONLY)  # splits the run
    try:
        assert [read(f"f{i}") for i in range(5, 400)] == [f"{i}\n".encode() for i in range(5, 400)]
        assert read("missing") is None
        root.close()
        assert os.read(foreign, 16) == b"0\n"
        assert set(os.listdir("/proc/self/fd")) - before == {str(foreign)}
    finally:
        os.close(foreign)


def test_read_table_reads_every_file_once_and_closes_only_its_own(tmp_path: Path) -> None:
    """read_table gives each file's bytes (None where it cannot be read) in row
    order across several batches, whatever breaks a batch (a missing file, a
    directory, a file longer than a first read or exactly as long), and leaves
    no descriptor of its own open; probe_table finds dangling links too."""
    want: list[bytes | None] = []
    for i in range(150):
        d = tmp_path / f"b{i}"
        d.mkdir()
        for a in ("x", "y"):
            data = f"{i}{a}\n".encode()
            if i == 40 and a == "y":
                data = b"z" * 300
            if i == 41 and a == "x":
                data = b"z" * 256
            if i == 90 and a == "x":
                (d / a).mkdir()
                want.append(None)
                continue
            if i == 120 and a == "y":
                want.append(None)
                continue
            (d / a).write_bytes(data)
            want.append(data)
    os.symlink("nowhere", tmp_path / "b7/link")
    root = SysfsRoot.open(str(tmp_path))
    foreign = os.open(str(tmp_path / "b0/x"), os.O_RDONLY)
    before = set(os.listdir("/proc/self/fd"))
    try:
        names = [f"b{i}" for i in range(150)]
        assert root.read_table("/", names, ("x", "y")) == want
        assert root.probe_table("/", ["b7", "b8", "nope"], "/link") == [True, False, False]
        root.close()
        assert os.read(foreign, 16) == b"0x\n"
        assert set(os.listdir("/proc/self/fd")) == before
    finally:
        os.close(foreign)


def test_count_pages_reads_in_batches_and_counts_what_the_file_lacks(tmp_path: Path) -> None:
    """count_pages() reads KPAGEFLAGS_BATCH entries at a time; runs of one value and
    mixed runs across the batch edges count as entry by entry; entries past the end
    of the file are "nopage"."""
    from memhp.host.diagnose import KPAGEFLAGS_BATCH, count_pages

    lru, buddy, slab = 1 << KPF_LRU, 1 << KPF_BUDDY, 1 << KPF_SLAB
    first = 3 * KPAGEFLAGS_BATCH // 2  # (the block starts inside a batch of the file)
    total = 2 * KPAGEFLAGS_BATCH + 1000  # the block's pages in the file
    flags = [0] * first + [buddy] * total
    edge = first + KPAGEFLAGS_BATCH  # the second read of the block starts here
    for i in range(edge - 700, edge + 300):  # a run across the edge
        flags[i] = lru
    for i in range(edge + 5000, edge + 5600, 3):  # mixed values inside runs of 512
        flags[i] = slab
    flags[-1] = 1 << KPF_RESERVED
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "kpageflags").write_bytes(struct.pack(f"<{len(flags)}Q", *flags))
    block = MemoryBlock(
        index=0,
        start=first * PAGE_SIZE,
        size=(total + 24) * PAGE_SIZE,  # 24 pages past the file's end
        state="online",
        valid_zones=None,
        node=None,
        removable=None,
        phys_device=None,
        firmware_node=None,
    )
    want: dict[str, int] = {}
    for f in flags[first:]:
        want[classify(f)] = want.get(classify(f), 0) + 1
    want["nopage"] = 24
    got = count_pages(SysfsRoot.open(str(tmp_path)), block)
    assert got == want
    assert list(got) == list(want)  # kinds in the order of their first page
