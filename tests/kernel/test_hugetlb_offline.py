"""Huge pages at offline: offline_pages() -> dissolve_free_huge_pages() (mm/hugetlb.c).

The real-kernel side is tests/scenarios/hugetlb-dissolve-at-offline.toml (Linux 6.1
and 6.12 under QEMU: 200 -> 192 -> 128 huge pages, then 0 at device_del)."""

from __future__ import annotations

import errno

import pytest

from memhp.abi.layout import SECTION_SIZE, GiB, MiB
from memhp.cli.main import run_with_sysfs
from memhp.host.remove import remove_device
from memhp.host.root import SysfsRoot
from memhp.kernel.invariants import check_invariants
from memhp.kernel.machine import parse_machine
from memhp.kernel.mm.mmzone import ZoneType
from memhp.sim.machine import SimMachine
from tests.conftest import machine
from tests.platform.test_virtio_mem import vm_machine

MEM = "/sys/devices/system/memory"
HP1 = "/sys/devices/system/node/node1/hugepages/hugepages-2048kB"


def _node1_pool(count: int = 200) -> SimMachine:
    """qemu-linux-6.1 with a 512M DIMM on memory-less node 1 (blocks 32-35)
    online_movable and ``count`` huge pages of 2M for node 1 (lowest address first)."""
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(512 * MiB, 1, id="d")
    for b in range(32, 36):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
    m.sysfs.write(f"{HP1}/nr_hugepages", str(count).encode())
    return m


def _count(m: SimMachine) -> int:
    return int(m.sysfs.read(f"{HP1}/nr_hugepages"))


def test_offline_dissolves_the_free_huge_pages_of_the_block() -> None:
    m = _node1_pool()
    k = m.kernel
    assert _count(m) == 200
    migrated = k.pa.migrated_pages
    m.sysfs.write(f"{MEM}/memory35/state", b"offline")
    assert _count(m) == 192  # its 8 huge pages went back to the buddy allocator
    m.sysfs.write(f"{MEM}/memory32/state", b"offline")
    assert _count(m) == 128
    assert k.pa.migrated_pages == migrated  # dissolved, not migrated
    meminfo = m.sysfs.read("/proc/meminfo").decode()
    assert "HugePages_Total:     128" in meminfo
    # only blocks 33-34 are left: a larger pool finds no more room on node 1
    m.sysfs.write(f"{HP1}/nr_hugepages", b"300")
    assert _count(m) == 128
    check_invariants(k)
    m.device_del("d")
    assert "node1" not in m.sysfs.listdir("/sys/devices/system/node")
    assert k.hugetlb.nr_huge_pages() == 0
    check_invariants(k)


def test_virtio_mem_unplug_replaces_huge_pages_on_their_node() -> None:
    """alloc_contig_range() replaces a free huge page by a fresh one on the same node
    (alloc_and_dissolve_hugetlb_folio(), __GFP_THISNODE), then dissolves the old one:
    the pool keeps its size and its node; where the node has no room left the
    sub-block stays plugged."""
    m = vm_machine(300 * MiB)
    k = m.kernel
    for b in (32, 33, 34):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
    m.sysfs.write(f"{HP1}/nr_hugepages", b"16")  # 32 MiB at the start of memory32
    migrated = k.pa.migrated_pages
    m.virtio_mem_resize("vm0", 100 * MiB)
    assert k.hugetlb.nr_huge_pages(1) == 16
    m.virtio_mem_resize("vm0", 0)
    m.advance(60)
    assert k.hugetlb.nr_huge_pages(1) == 16  # still on node 1: the device keeps them
    assert all(
        a.nid == 1 and set(k.pa.nid[list(a.extents)].tolist()) == {1}
        for a in k.hugetlb.pools[(1, 2048)]
    )
    assert m.kernel.virtio.mem.vms[0].plugged_size >= 32 * MiB
    assert k.pa.migrated_pages == migrated  # replacements are no migrations
    check_invariants(k)


def test_the_38_profile_neither_migrates_nor_dissolves_huge_pages() -> None:
    """3.8 had no hugepage migration and no dissolve_free_huge_pages() (3.12): a block
    holding huge pages does not go offline."""
    m = SimMachine(machine("seed"))
    m.device_add(512 * MiB, 1, id="d", addr=1 << 30)
    for b in range(8, 12):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
    m.sysfs.write(f"{HP1}/nr_hugepages", b"64")
    k = m.kernel
    sec = min(s for a in k.hugetlb.pools[(1, 2048)] for s in a.extents)
    block = sec * SECTION_SIZE // k.memory.block_size  # (3.8 onlines to the free lists' head)
    with pytest.raises(OSError) as e:
        m.sysfs.write(f"{MEM}/memory{block}/state", b"offline")
    assert e.value.errno in (errno.EBUSY, errno.EAGAIN)
    assert int(m.sysfs.read(f"{HP1}/nr_hugepages")) == 64


def test_the_tool_says_what_offlining_does_to_the_pool() -> None:
    m = _node1_pool(count=100)
    rc, out, _ = run_with_sysfs(["why", "32"], m.sysfs)
    assert rc == 0 and "128 MiB are huge pages of the hugetlb pool" in out
    assert "verdict:          can be offlined" in out
    res = remove_device(SysfsRoot(m.sysfs, "sim"), "PNP0C80:00", dry_run=True)
    assert res.hugetlb_pages * 4096 == 200 * MiB
    rc, out, _ = run_with_sysfs(["remove", "PNP0C80:00", "--dry-run"], m.sysfs)
    assert rc == 0 and "note: in its blocks 200 MiB are huge pages" in out
    rc, _, err = run_with_sysfs(["remove", "PNP0C80:00"], m.sysfs)
    assert rc == 0, err
    assert m.kernel.hugetlb.nr_huge_pages() == 0


def test_gigantic_pages_never_come_from_zone_movable() -> None:
    """hugepage_movable_supported() is false for 1 GiB pages: GFP_HIGHUSER, up to
    ZONE_NORMAL.  A node whose memory is all ZONE_MOVABLE has none to give."""
    spec = parse_machine(
        {
            "name": "t",
            "profile": "linux-6.1",
            "gbpages": True,
            "node": [
                {"id": 0, "cpus": [0, 1], "memory": [["0", "4G"]]},
                {"id": 1, "hotplug": [["4G", "8G"]]},
            ],
            "hotplug": {"slots": 2, "maxmem": "8G"},
        }
    )
    m = SimMachine(spec)
    m.device_add(2 * GiB, 1, id="d")
    for b in range(32, 48):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
    giga = "/sys/devices/system/node/node{}/hugepages/hugepages-1048576kB/nr_hugepages"
    m.sysfs.write(giga.format(1), b"1")
    assert m.sysfs.read(giga.format(1)) == b"0\n"
    m.sysfs.write(f"{HP1}/nr_hugepages", b"1")  # a 2 MiB one does
    assert _count(m) == 1
    m.sysfs.write(giga.format(0), b"1")
    assert m.sysfs.read(giga.format(0)) == b"1\n"
    (a,) = m.kernel.hugetlb.pools[(0, 1048576)]
    assert {ZoneType(int(m.kernel.pa.zone[s])) for s in a.extents} <= {
        ZoneType.DMA32,
        ZoneType.NORMAL,
    }


def _two_nodes() -> SimMachine:
    """QEMU nodes 0 (CPUs, 1G) and 1 (512M): both have memory."""
    return SimMachine(
        parse_machine(
            {
                "name": "t",
                "platform": "qemu-pc",
                "profile": "linux-6.1",
                "gbpages": False,
                "node": [{"id": 0, "cpus": [0, 1], "size": "1G"}, {"id": 1, "size": "512M"}],
            }
        )
    )


GLOBAL = "/sys/kernel/mm/hugepages/hugepages-2048kB"


def _per_node(m: SimMachine) -> list[int]:
    return [m.kernel.hugetlb.nr_huge_pages(n, 2048) for n in (0, 1)]


def test_the_system_wide_pool_takes_and_gives_back_node_by_node() -> None:
    """set_max_huge_pages() over N_MEMORY: one huge page from each node in turn, from
    the hstate's next node (tests/scenarios/hugetlb-global-interleave.toml, recorded)."""
    m = _two_nodes()
    m.sysfs.write("/proc/sys/vm/nr_hugepages", b"101\n")
    assert _per_node(m) == [51, 50]  # from first_memory_node
    m.sysfs.write(f"{HP1}/nr_hugepages", b"10")
    assert _per_node(m) == [51, 10]
    m.sysfs.write(f"{GLOBAL}/nr_hugepages", b"31")  # node 1 first (next_nid_to_free)
    assert _per_node(m) == [31, 0]
    m.sysfs.write(f"{GLOBAL}/nr_hugepages_mempolicy", b"40")
    assert _per_node(m) == [35, 5]  # on from node 1 (101 allocations ended on node 0)
    assert m.sysfs.read("/proc/sys/vm/nr_hugepages") == b"40\n"
    assert m.sysfs.read(f"{GLOBAL}/free_hugepages") == b"40\n"
    assert "HugePages_Total:      40" in m.sysfs.read("/proc/meminfo").decode()


def test_the_hugetlb_files_parse_like_the_kernel() -> None:
    m = _two_nodes()
    for path, bad, err in (
        ("/proc/sys/vm/nr_hugepages", b"-1", errno.EINVAL),  # proc_doulongvec_minmax()
        ("/proc/sys/vm/nr_hugepages", b"12abc", errno.EINVAL),
        (f"{GLOBAL}/nr_hugepages", b" 5", errno.EINVAL),  # kstrtoul()
        (f"{GLOBAL}/nr_hugepages", b"99999999999999999999", errno.ERANGE),
        (f"{GLOBAL}/nr_overcommit_hugepages", b"x", errno.EINVAL),
    ):
        with pytest.raises(OSError) as e:
            m.sysfs.write(path, bad)
        assert e.value.errno == err, (path, bad)
    m.sysfs.write("/proc/sys/vm/nr_hugepages", b"  010\n")  # C's base 0: octal
    assert m.sysfs.read(f"{GLOBAL}/nr_hugepages") == b"8\n"
    m.sysfs.write("/proc/sys/vm/nr_overcommit_hugepages", b"7")
    assert m.sysfs.read(f"{GLOBAL}/nr_overcommit_hugepages") == b"7\n"
    assert m.sysfs.read(f"{GLOBAL}/resv_hugepages") == b"0\n"
    assert m.sysfs.lstat(f"{GLOBAL}/nr_hugepages").mode & 0o777 == 0o644
    assert m.sysfs.lstat(f"{GLOBAL}/free_hugepages").mode & 0o777 == 0o444
    vm = m.sysfs.listdir("/proc/sys/vm")
    assert {"nr_hugepages", "nr_hugepages_mempolicy", "nr_overcommit_hugepages"} <= set(vm)
    assert vm == sorted(vm)
