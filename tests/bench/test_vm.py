"""Real Linux 6.1 under QEMU: boot, agent, QMP hot-add/remove, sysfs results.

One guest boot for the whole module (TCG boot takes ~5 s).  Needs
qemu-system-x86_64, busybox-static and Debian's kernel (``bash .ci/qemu-deps.sh``).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest

from memhp.abi.fs import Kind, SysfsFS
from memhp.abi.tree import capture as walk_capture
from memhp.bench.qmp import Platform
from memhp.bench.vm import GuestVM, NodeConfig, VMConfig, bench_available

MISSING = bench_available()
pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(MISSING is not None, reason=f"QEMU bench unavailable: {MISSING}"),
]

MEM = "/sys/devices/system/memory"


@pytest.fixture(scope="module")
def vm() -> Iterator[GuestVM]:
    cfg = VMConfig(
        nodes=(NodeConfig(cpus=2, mem=1 << 30), NodeConfig()),
        slots=4,
        maxmem=8 << 30,
        memhp_default_state="offline",
    )
    with GuestVM(cfg) as guest:
        yield guest


def test_boot(vm: GuestVM) -> None:
    assert vm.boot is not None and vm.boot.accel in ("kvm", "tcg")
    fs = vm.fs
    assert isinstance(fs, SysfsFS)
    assert isinstance(vm.platform, Platform)
    assert fs.read(f"{MEM}/block_size_bytes") == b"8000000\n"
    assert fs.read(f"{MEM}/auto_online_blocks") == b"offline\n"
    blocks = sorted(n for n in fs.listdir(MEM) if n.startswith("memory"))
    assert blocks == [f"memory{i}" for i in range(8)]
    assert fs.read("/sys/devices/system/node/possible") == b"0-1\n"
    assert fs.read("/sys/devices/system/node/online") == b"0\n"
    assert vm.platform.memory_size_summary() == {"base-memory": 1 << 30, "plugged-memory": 0}


def test_fs_errors(vm: GuestVM) -> None:
    fs = vm.fs
    with pytest.raises(OSError) as e:
        fs.read(f"{MEM}/soft_offline_page")  # write-only attribute
    assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        fs.read(f"{MEM}/memory999/state")
    assert e.value.errno == errno.ENOENT
    with pytest.raises(OSError) as e:
        fs.write(f"{MEM}/memory1/state", b"bogus\n")
    assert e.value.errno == errno.EINVAL
    # memory0 spans DMA and DMA32: offline is refused with EINVAL
    assert vm.fs.write_status(f"{MEM}/memory0/state", "offline") == errno.EINVAL
    st = fs.lstat(f"{MEM}/soft_offline_page")
    assert st.kind is Kind.FILE and st.mode == 0o200
    assert fs.lstat(f"{MEM}/memory1/node0").kind is Kind.LINK
    assert fs.readlink(f"{MEM}/memory1/node0") == "../../node/node0"
    with pytest.raises(OSError) as e:
        fs.listdir(f"{MEM}/block_size_bytes")
    assert e.value.errno == errno.ENOTDIR


def test_bulk_capture_equals_file_by_file_walk(vm: GuestVM) -> None:
    roots = [f"{MEM}/memory1", "/sys/firmware/memmap", "/sys/devices/system/node/node0/hugepages"]
    bulk = vm.fs.capture(roots, follow=(), exclude_dirs=("power",))
    slow = {p: e for p, e in walk_capture(vm.fs, roots).items() if "/power" not in p}
    bulk_only = {p: e for p, e in bulk.items() if p in slow or not p.startswith("/sys/")}
    assert set(slow) <= set(bulk)
    for path, entry in slow.items():
        got = bulk_only[path]
        assert (got.kind, got.value, got.read_errno, got.target) == (
            entry.kind,
            entry.value,
            entry.read_errno,
            entry.target,
        ), path


def test_hot_add_online_offline_eject(vm: GuestVM) -> None:
    p, fs = vm.platform, vm.fs
    dev = p.hot_add_dimm(512 << 20, node=1, id="dimm1")
    assert (dev.addr, dev.size, dev.node) == (1 << 32, 512 << 20, 1)
    ev = p.wait_event("ACPI_DEVICE_OST", 30, lambda e: e.device == "dimm1")
    assert ev.data["info"]["source"] == 1 and ev.data["info"]["status"] == 0
    snap = fs.capture()
    for b in range(32, 36):
        assert snap[f"{MEM}/memory{b}/state"].value == "offline\n"
        assert snap[f"{MEM}/memory{b}/valid_zones"].value == "Normal Movable\n"
        assert snap[f"{MEM}/memory{b}/node1"].target == "../../node/node1"
    assert snap["/sys/devices/system/node/online"].value == "0-1\n"
    assert snap["/sys/firmware/memmap/7/start"].value == "0x100000000\n"
    assert snap["/sys/firmware/memmap/7/end"].value == "0x11fffffff\n"
    pnp = "/sys/devices/LNXSYSTM:00/LNXSYBUS:00/PNP0A06:04/PNP0C80:00"
    assert snap[f"{pnp}/physical_node3"].kind is Kind.LINK
    assert snap[f"{pnp}/eject"].read_errno == errno.EACCES
    assert not any("/power" in path for path in snap)

    assert fs.write_status(f"{MEM}/memory32/state", "online_movable\n") == 0
    assert fs.write_status(f"{MEM}/memory33/state", "online_kernel\n") == 0
    assert fs.write_status(f"{MEM}/memory33/state", "online\n") == errno.EINVAL
    assert fs.read(f"{MEM}/memory32/valid_zones") == b"Movable\n"
    assert fs.read(f"{MEM}/memory33/valid_zones") == b"Normal\n"
    assert fs.write_status(f"{MEM}/memory33/state", "offline\n") == 0
    assert fs.write_status(f"{MEM}/memory33/state", "offline\n") == errno.EINVAL
    assert fs.read(f"{MEM}/memory33/state") == b"offline\n"

    # eject with memory32 still online: the kernel offlines it and removes the DIMM
    assert fs.write_status("/sys/bus/acpi/devices/PNP0C80:00/eject", "1\n") == 0
    assert p.wait_removal("dimm1", 60) is True
    p.release_backend("dimm1")
    after = fs.capture()
    assert not any(f"{MEM}/memory{b}" in after for b in range(32, 36))
    assert "/sys/devices/system/node/node1" not in after
    assert "/sys/firmware/memmap/7" not in after
    assert p.memory_devices() == []


def test_device_del_platform_eject(vm: GuestVM) -> None:
    p, fs = vm.platform, vm.fs
    p.hot_add_dimm(1 << 30, node=0, id="dimm2")
    p.wait_event("ACPI_DEVICE_OST", 30, lambda e: e.device == "dimm2")
    assert fs.read(f"{MEM}/memory39/state") == b"offline\n"
    snap = fs.capture(["/sys/firmware/memmap"], follow=())
    ends = {path.rsplit("/", 1)[0] for path, e in snap.items() if e.value == "0x13fffffff\n"}
    assert len(ends) == 1
    p.device_del("dimm2")
    assert p.wait_removal("dimm2", 60) is True
    p.release_backend("dimm2")
    with pytest.raises(OSError) as e:
        fs.lstat(f"{MEM}/memory32")
    assert e.value.errno == errno.ENOENT
