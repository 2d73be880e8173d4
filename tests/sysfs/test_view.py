"""The sysfs view of the model: formats, links, captured trees read by util-linux lsmem."""

from __future__ import annotations

import errno
import shutil
import subprocess

import pytest

from memhp.abi.tree import capture, write_tree
from memhp.kernel.invariants import check_invariants
from memhp.sim.machine import SimMachine, WorkloadMix
from tests.conftest import machine

MEM = "/sys/devices/system/memory"


def test_links_resolve_through_acpi_device() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(256 << 20, 1, id="d")
    fs = m.sysfs
    dev = "/sys/bus/acpi/devices/PNP0C80:00"
    assert fs.readlink(dev) == "../../../devices/LNXSYSTM:00/LNXSYBUS:00/PNP0A06:04/PNP0C80:00"
    assert fs.readlink(dev + "/physical_node") == "../../../../system/memory/memory32"
    assert fs.readlink(dev + "/physical_node1") == "../../../../system/memory/memory33"
    assert fs.read(dev + "/physical_node1/phys_index") == b"00000021\n"
    assert fs.read(dev + "/status") == b"15\n"
    assert fs.read(dev + "/hid") == b"PNP0C80\n"
    assert fs.lstat(dev + "/eject").mode == 0o200
    assert fs.read(f"{MEM}/memory33/firmware_node/path") == b"\\_SB_.MHPC.MP00\n"
    assert sorted(fs.listdir("/sys/devices/system/node/node1")) == sorted(
        [
            "memory32", "memory33", "uevent", "cpumap", "cpulist", "distance", "meminfo",
            "numastat", "vmstat", "x86", "subsystem", "compact", "hugepages",
        ]
    )  # fmt: skip
    assert "cpu0" in fs.listdir("/sys/devices/system/node/node0")
    assert fs.readlink("/sys/devices/system/node/node0/cpu1") == "../../cpu/cpu1"
    assert fs.read("/sys/devices/system/node/node1/cpumap") == b"0\n"
    assert fs.read("/sys/devices/system/node/node0/cpumap") == b"3\n"
    assert fs.read("/sys/devices/LNXSYSTM:00/LNXSYBUS:00/PNP0A06:04/PNP0C80:01/status") == b"0\n"
    with pytest.raises(OSError) as ei:
        fs.write("/sys/bus/acpi/devices/PNP0C80:01/eject", b"1")
    assert ei.value.errno == errno.ENODEV  # nothing plugged: no driver bound
    with pytest.raises(OSError) as ei:
        fs.write("/sys/bus/acpi/devices/PNP0C80:00/eject", b"2")
    assert ei.value.errno == errno.EINVAL


def test_node_meminfo_follows_pages() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(256 << 20, 1, id="d")
    for b in (32, 33):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
    info = m.sysfs.read("/sys/devices/system/node/node1/meminfo").decode()
    assert "Node 1 MemTotal:         262144 kB" in info
    m.fill(25600, node=1, mix=WorkloadMix(pinned=0.0), owner="app")
    info = m.sysfs.read("/sys/devices/system/node/node1/meminfo").decode()
    assert "Node 1 MemFree:          159744 kB" in info
    assert "Node 1 AnonPages:        102400 kB" in info
    total = m.sysfs.read("/proc/meminfo").decode().splitlines()[0]
    assert total.startswith("MemTotal:") and total.endswith(" kB")


def test_kpageflags_describes_the_pages() -> None:
    import numpy as np

    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(128 << 20, 1, id="d")
    m.sysfs.write(f"{MEM}/memory32/state", b"online_movable")
    m.fill(1000, start=4 << 30, end=(4 << 30) + (128 << 20), owner="x")
    pfn0 = (4 << 30) >> 12
    raw = m.sysfs.read_at("/proc/kpageflags", pfn0 * 8, 32768 * 8)
    flags = np.frombuffer(raw, np.uint64)
    lru = int(np.count_nonzero(flags & np.uint64(1 << 5)))
    buddy = int(np.count_nonzero(flags & np.uint64(1 << 10)))
    assert lru == 1000 and buddy == 32768 - 1000
    raw = m.sysfs.read_at("/proc/kpageflags", ((5 << 30) >> 12) * 8, 8)
    assert np.frombuffer(raw, np.uint64)[0] == 1 << 20  # NOPAGE: nothing there


def test_kpageflags_reads_across_sections_and_off_the_end() -> None:
    """A read spanning parts of several sections (online, offline, past the last
    one) gives each pfn's entry as a read of that pfn alone does."""
    import numpy as np

    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(256 << 20, 1, id="d")
    m.sysfs.write(f"{MEM}/memory32/state", b"online_movable")  # memory33 stays offline
    m.fill(32000, start=4 << 30, end=(4 << 30) + (128 << 20), owner="x")
    pfn0 = ((4 << 30) >> 12) + 30000
    n = 2 * 32768 + 100
    raw = m.sysfs.read_at("/proc/kpageflags", pfn0 * 8, n * 8)
    flags = np.frombuffer(raw, np.uint64)
    assert len(flags) == n
    for i in (0, 1999, 2000, 2767, 2768, 2769, 32768 + 2767, 32768 + 2768, n - 1):
        one = m.sysfs.read_at("/proc/kpageflags", (pfn0 + i) * 8, 8)
        assert int(flags[i]) == int(np.frombuffer(one, np.uint64)[0]), i
    assert int(flags[1999]) & (1 << 5) and int(flags[2000]) & (1 << 10)  # LRU, then buddy
    assert int(flags[2767]) & (1 << 10)
    assert set(flags[2768:].tolist()) == {1 << 20}  # memory33 (offline), then none: NOPAGE
    end = m.kernel.nr_sections * 32768
    tail = m.sysfs.read_at("/proc/kpageflags", (end - 3) * 8, 80)
    assert len(tail) == 24  # (nothing past max_pfn)


def test_memory_failure_poisons_free_pages_only() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(128 << 20, 1, id="d")
    m.sysfs.write(f"{MEM}/memory32/state", b"online_movable")
    addr = (4 << 30) + (64 << 20)
    assert m.sysfs.write(f"{MEM}/soft_offline_page", f"{addr:#x}".encode()) > 0
    with pytest.raises(OSError) as ei:
        m.sysfs.write(f"{MEM}/hard_offline_page", b"nonsense")
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(OSError) as ei:
        m.sysfs.write(f"{MEM}/hard_offline_page", b"0x200000000")  # offline/absent: 8G
    assert ei.value.errno == errno.ENXIO  # pfn_to_online_page() is NULL
    check_invariants(m.kernel)
    # poisoned pages do not stop offlining
    m.sysfs.write(f"{MEM}/memory32/state", b"offline")
    check_invariants(m.kernel)


LSMEM = shutil.which("lsmem")


@pytest.mark.skipif(LSMEM is None, reason="util-linux lsmem is not installed")
@pytest.mark.parametrize("name", ["qemu-linux-6.1", "seed"])
def test_lsmem_reads_a_captured_simulated_tree(name: str, tmp_path: object) -> None:
    m = SimMachine(machine(name))
    d = m.device_add(512 << 20, 1, id="d")
    first = d.addr >> 27
    m.sysfs.write(f"{MEM}/memory{first}/state", b"online")
    dest = str(tmp_path)
    write_tree(capture(m.sysfs), dest)
    assert LSMEM is not None
    out = subprocess.run(
        [LSMEM, "--sysroot", dest, "-o", "RANGE,SIZE,STATE,BLOCK,NODE"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{first}" in out and "online" in out and "offline" in out
    summ = subprocess.run(
        [LSMEM, "--sysroot", dest, "--summary=only", "-b"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    online_bytes = sum(128 << 20 for b in m.kernel.memory.blocks.values() if b.online)
    assert (
        f"Total online memory:  {online_bytes}" in summ.replace("   ", "  ")
        or str(online_bytes) in summ
    )
