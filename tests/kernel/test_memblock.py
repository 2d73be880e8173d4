"""memblock's boot reservations (memhp/kernel/mm/memblock.py): what Linux keeps of
RAM at boot, checked against the real guests' MemTotal."""

from __future__ import annotations

import os
import re

import pytest

from memhp.abi.layout import PAGE_SIZE, MiB
from memhp.abi.paths import PROC_MEMINFO
from memhp.bench.recording import Recording, recording_path
from memhp.bench.runner import model_driver, on_real_build
from memhp.bench.scenario import load_scenario
from memhp.kernel.machine import parse_machine
from memhp.kernel.mm.memblock import early_hash_bytes, mem_section_roots_pages, nr_kernel_pages
from memhp.sim.machine import SimMachine
from tests.bench.test_diff_units import RECORDINGS
from tests.conftest import ROOT
from tests.support.replay import real_text
from tests.support.sim import machine

#: Recorded guests of each kind: one node (with and without a node of hotplug memory
#: only), two and three nodes of boot memory (hashdist: no early hash tables), a
#: `-cpu max` guest (LA57: 5-level paging), on both kernels.
GUESTS = [
    ("online-policy-ratios", "6.1"),
    ("boot-blocks-3g", "6.1"),  # 3G: hash tables of 4 MiB and 2 MiB
    ("boot-blocks-3g", "6.12"),
    ("hotadd-memoryless-node", "6.1"),
    ("hotadd-memoryless-node", "6.12"),
    ("boot-blocks-2node", "6.1"),
    ("boot-blocks-2node", "6.12"),
    ("boot-blocks-3node-swiotlb", "6.1"),
    ("nodes-without-srat-entry", "6.12"),
    ("memhp-list-vs-lsmem", "6.1"),
    ("memhp-list-vs-lsmem", "6.12"),
]


def _memtotal(text: str) -> int:
    m = re.search(r"^MemTotal:\s+(\d+) kB$", text, re.MULTILINE)
    assert m is not None
    return int(m.group(1))


@pytest.mark.parametrize(("name", "kernel"), GUESTS, ids=[f"{n}@{k}" for n, k in GUESTS])
def test_memtotal_at_boot_is_the_real_guests(name: str, kernel: str) -> None:
    """MemTotal after boot within 2 pages of Linux's (it was 553 pages above before the
    hash tables, the swiotlb slots, offline nodes' pgdat, the mem_section roots and the
    brk were modelled): what is left is how sub-page allocations share pages."""
    sc = load_scenario(os.path.join(ROOT, "tests", "scenarios", f"{name}.toml"))
    sc = sc.for_kernel(kernel)
    rec = Recording.load(recording_path(sc, RECORDINGS))
    text = real_text(rec, "boot", PROC_MEMINFO)
    assert text is not None
    real = _memtotal(text)
    m = model_driver(on_real_build(sc, rec)).m
    model = _memtotal(m.sysfs.read(PROC_MEMINFO).decode())
    assert abs(model - real) <= 2 * PAGE_SIZE // 1024, (model, real)


def _one_node(boot: str, **extra: object) -> SimMachine:
    doc: dict[str, object] = {
        "profile": "linux-6.1",
        "node": [{"id": 0, "cpus": [0, 1], "memory": [["0", boot]]}],
        **extra,
    }
    return SimMachine(parse_machine(doc))


def _reserved(m: SimMachine, owner: str) -> int:
    return sum(
        sum(a.extents.values()) for a in m.kernel.pa.allocs.values() if a.owner.startswith(owner)
    )


def test_hash_tables_follow_the_kernel_pages() -> None:
    """alloc_large_system_hash(): Dentry 1 MiB and Inode-cache 512 KiB on a 1 GiB
    machine (the boot log's "order: 8, 1048576 bytes" and "order: 7, 524288 bytes"),
    four times as many entries per quadrupling up to 64 GiB, then one scale step
    more per quadrupling beyond (ADAPT_SCALE_BASE)."""
    small = _one_node("1G")
    assert early_hash_bytes(nr_kernel_pages(small.kernel), 8, 13, 2) == MiB
    assert early_hash_bytes(nr_kernel_pages(small.kernel), 8, 14, 0) == MiB // 2
    assert _reserved(small, "dentry and inode hash tables") == (MiB + MiB // 2) // PAGE_SIZE + 1
    big = _one_node("256G", hotplug={"maxmem": "256G"})
    # ~66.06M kernel pages: scale 13 + 2 (past 16M and 64M pages), so 2^(15-12) pages
    # a bucket: 8.26M, rounded up to 16M buckets of 8 bytes
    assert early_hash_bytes(nr_kernel_pages(big.kernel), 8, 13, 2) == (16 << 20) * 8


def test_two_nodes_of_memory_distribute_the_hashes() -> None:
    """page_alloc_init(): hashdist stays on with more than one node of memory, and
    dcache_init_early()/inode_init_early() leave the tables to vmalloc later."""
    doc: dict[str, object] = {
        "profile": "linux-6.1",
        "node": [
            {"id": 0, "cpus": [0], "memory": [["0", "1G"]]},
            {"id": 1, "cpus": [1], "memory": [["1G", "2G"]]},
        ],
    }
    m = SimMachine(parse_machine(doc))
    assert _reserved(m, "dentry and inode hash tables") == 0
    assert _reserved(m, "usemap") == 2  # one page on each node


def test_mem_section_roots_follow_the_paging_levels() -> None:
    """NR_SECTION_ROOTS pointers: 2^19 sections / 128 a root with 4-level paging, 2^25
    with 5-level (LA57, `-cpu max`): 8 and 512 pages."""
    assert (mem_section_roots_pages(False), mem_section_roots_pages(True)) == (8, 512)
    assert _reserved(_one_node("1G"), "mem_section roots") == 8
    assert _reserved(_one_node("1G", la57=True), "mem_section roots") == 512


def test_swiotlb_slots_and_offline_node_pgdat() -> None:
    """swiotlb_init_remap(): 24 bytes per 2 KiB slab (64 MiB: 192 pages), none without a
    bounce buffer; a node with only hotplug memory gets its pgdat from memblock."""
    assert _reserved(_one_node("1G"), "swiotlb slots") == 192
    assert _reserved(_one_node("1G", kernel={"swiotlb": 0}), "swiotlb slots") == 0
    doc: dict[str, object] = {
        "profile": "linux-6.1",
        "node": [
            {"id": 0, "cpus": [0], "memory": [["0", "1G"]]},
            {"id": 1, "cpus": [], "hotplug": [["4G", "8G"]]},
        ],
        "hotplug": {"slots": 1, "maxmem": "8G"},
    }
    assert _reserved(SimMachine(parse_machine(doc)), "pgdat of node 1") == 43
    # the RAM pages of the first MiB: 0x1000-0x9efff on QEMU's pc (DMA present 3998 =
    # 158 + 3840 on the real guests), not the 256 pages of the range
    assert _reserved(SimMachine(machine("qemu-linux-6.1")), "low memory") == 158
