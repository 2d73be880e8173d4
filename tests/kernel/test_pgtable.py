"""x86_64 kernel page tables (memhp.kernel.arch.x86.mm): built on hot-add, freed on remove."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections import Counter

import numpy as np
import pytest

from memhp.abi.layout import SECTION_SIZE, GiB, MiB
from memhp.kernel.arch.x86.mm.init_64 import KernelPageTables, split_mem_range
from memhp.kernel.arch.x86.mm.pgtable import PAGE_OFFSET, Level, Table
from memhp.kernel.drivers.base.memory import MemState, device_offline
from memhp.kernel.invariants import check_invariants
from memhp.kernel.kernel import Kernel
from memhp.kernel.machine import MachineError, MachineSpec, parse_machine, parse_size
from memhp.kernel.mm import memory_hotplug as mh
from memhp.sim import snapshot as copies
from tests.conftest import ROOT, machine


def spec_with(name: str, **kw: object) -> MachineSpec:
    return dataclasses.replace(machine(name), **kw)  # type: ignore[arg-type]


def movable_node_spec() -> MachineSpec:
    """machines/movable-node.toml (node 1's boot memory hotpluggable, movable_node).

    Until machine validation accepts a node whose memory is also its hotplug
    window, the window is attached after parsing.
    """
    path = os.path.join(ROOT, "machines", "movable-node.toml")
    try:
        return machine("movable-node")
    except MachineError:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
        hp = {n["id"]: n.pop("hotplug", []) for n in doc["node"]}
        spec = parse_machine(doc)
        nodes = tuple(
            dataclasses.replace(
                n, hotplug=tuple((parse_size(a, "s"), parse_size(b, "e")) for a, b in hp[n.id])
            )
            for n in spec.nodes
        )
        return dataclasses.replace(spec, nodes=nodes)


def snapshot(k: Kernel) -> tuple[object, ...]:
    """What must come back after hot-remove: tables, leaves, vmemmap, allocator state."""
    mine = [a for a in k.pa.allocs.values() if a.kind in ("pagetable", "memmap")]
    owners = Counter((a.owner, a.kind, a.state, a.nr_pages) for a in mine)
    where = Counter((a.kind, a.state, sec, n) for a in mine for sec, n in a.extents.items())
    return (k.pgtables.layout(), owners, where)


def leaf_sizes(pt: KernelPageTables, start: int, end: int) -> set[Level]:
    return {lv for _s, _e, lv, m in pt.ranges(PAGE_OFFSET + start, PAGE_OFFSET + end) if m}


def vmemmap_mapped(pt: KernelPageTables, first: int, end: int) -> bool:
    s, _ = pt.section_vmemmap(first)
    _, e = pt.section_vmemmap(end - 1)
    return pt.mapped(s, e)


# ----------------------------------------------------------------- split_mem_range
def test_split_mem_range_rules() -> None:
    # An e820 range like QEMU's: 4k head to 2M, 2M up to the unaligned end, 4k tail.
    assert split_mem_range(0x100000, 0x3FFE0000, True) == [
        (0x100000, 0x200000, Level.PTE),
        (0x200000, 0x3FE00000, Level.PMD),
        (0x3FE00000, 0x3FFE0000, Level.PTE),
    ]
    assert split_mem_range(1 * GiB, 3 * GiB, True) == [(1 * GiB, 3 * GiB, Level.PUD)]
    assert split_mem_range(1 * GiB, 3 * GiB, False) == [(1 * GiB, 3 * GiB, Level.PMD)]
    r = split_mem_range(GiB + 128 * MiB, 3 * GiB + 256 * MiB, True)
    assert r == [
        (GiB + 128 * MiB, 2 * GiB, Level.PMD),
        (2 * GiB, 3 * GiB, Level.PUD),
        (3 * GiB, 3 * GiB + 256 * MiB, Level.PMD),
    ]


def test_boot_direct_map_from_e820() -> None:
    k = Kernel(machine("qemu-linux-6.1"))
    pt = k.pgtables
    # [0, 1M) ISA and the 1M..2M head in 4k pages, 2M pages, 4k tail to 0x3ffe0000.
    assert leaf_sizes(pt, 0, 2 * MiB) == {Level.PTE}
    assert leaf_sizes(pt, 2 * MiB, 0x3FE00000) == {Level.PMD}
    assert leaf_sizes(pt, 0x3FE00000, 0x3FFE0000) == {Level.PTE}
    assert not pt.mapped(PAGE_OFFSET + 0x3FFE0000, PAGE_OFFSET + GiB)
    c = pt.counters()
    assert c["direct_4k"] == (2 * MiB + 0x1E0000) // 4096
    assert c["vmemmap_pages_bootmem"] == 8 * 512
    assert "Low Kernel Mapping" in pt.dump() and "vmemmap" in pt.dump()


# ----------------------------------------------------------------- add / remove
CASES = [
    # (machine, start offset in the hotplug window, size, gbpages, memmap_on_memory)
    ("qemu-linux-6.1", 0, 512 * MiB, True, False),  # not 1G-aligned size
    ("qemu-linux-6.1", 0, 2 * GiB, True, False),  # 1G leaves
    ("qemu-linux-6.1", 0, 2 * GiB, False, False),  # 2M leaves only
    ("qemu-linux-6.1", 128 * MiB, GiB + 128 * MiB, True, False),  # unaligned both ends
    ("qemu-linux-6.1", 384 * MiB, 128 * MiB, True, True),  # memmap on memory (6.1: 1 block)
    ("seed", 0, 512 * MiB, True, False),
    ("seed", 128 * MiB, GiB + 256 * MiB, True, True),  # seed: altmap for any size
    ("seed", 0, 2 * GiB, False, True),
]


@pytest.mark.parametrize(("name", "off", "size", "gb", "mom"), CASES)
def test_hot_add_then_remove_restores_layout(
    name: str, off: int, size: int, gb: bool, mom: bool
) -> None:
    k = Kernel(spec_with(name, gbpages=gb, memmap_on_memory=mom))
    pt = k.pgtables
    window = k.spec.node(1).hotplug[0][0]
    start = window + off
    first, end = start // SECTION_SIZE, (start + size) // SECTION_SIZE
    before = snapshot(k)
    assert not pt.mapped(PAGE_OFFSET + start, PAGE_OFFSET + start + size)
    assert mh.add_memory(k, 1, start, size, memmap_on_memory=mom) == 0
    check_invariants(k)
    # Every byte of the range is mapped, with 1G leaves exactly where allowed.
    runs = list(pt.ranges(PAGE_OFFSET + start, PAGE_OFFSET + start + size))
    assert all(m for *_r, m in runs)
    has_1g_slot = -(-start // GiB) * GiB + GiB <= start + size
    assert (Level.PUD in leaf_sizes(pt, start, start + size)) == (gb and has_1g_slot)
    assert Level.PTE not in leaf_sizes(pt, start, start + size)
    assert vmemmap_mapped(pt, first, end)
    kinds = {
        t.backing[t.index(pt.section_vmemmap(s)[0])].kind
        for s in range(first, end)
        for hit in [pt.walk_leaf(pt.section_vmemmap(s)[0])]
        if hit is not None
        for t in [hit[1]]
    }
    assert kinds == ({"altmap"} if mom else {"buddy"})
    if not mom:
        owners = {k.pa.allocs[int(k.sparse.memmap_alloc[s])].owner for s in range(first, end)}
        assert owners == {f"vmemmap of section {s}" for s in range(first, end)}
    assert mh.try_remove_memory(k, start, size) == 0
    check_invariants(k)
    assert not pt.mapped(PAGE_OFFSET + start, PAGE_OFFSET + start + size)
    for s in range(first, end):
        assert pt.walk_leaf(pt.section_vmemmap(s)[0]) is None
    assert snapshot(k) == before
    assert pt.tlb_flushes > 0


def test_fallback_to_base_pages_when_no_2m_block() -> None:
    k = Kernel(machine("qemu-linux-6.1"))
    pt = k.pgtables
    before = snapshot(k)
    pt.fail_page_alloc_min_order = 9  # fail_page_alloc: order-9 allocations fail
    start = 4 * GiB
    assert mh.add_memory(k, 1, start, 256 * MiB) == 0
    check_invariants(k)
    c = pt.counters()
    assert c["pte_tables"] == before[0][2] + 2  # type: ignore[index]
    s, _ = pt.section_vmemmap(start // SECTION_SIZE)
    hit = pt.walk_leaf(s)
    assert hit is not None and hit[0] == Level.PTE
    assert mh.try_remove_memory(k, start, 256 * MiB) == 0
    check_invariants(k)
    assert snapshot(k) == before


def test_vmemmap_falls_back_to_another_node() -> None:
    k = Kernel(machine("qemu-linux-6.1"))  # node 1 has no memory: blocks come from node 0
    assert mh.add_memory(k, 1, 4 * GiB, 256 * MiB) == 0
    a = k.pa.allocs[int(k.sparse.memmap_alloc[32])]
    assert a.nid == 1 and all(k.pa.nid[s] == 0 for s in a.extents)


def test_sub_pmd_vmemmap_page_unused_marking() -> None:
    """vmemmap_use_new_sub_pmd / vmemmap_pmd_is_unused: a 2 MiB block shared by two
    sub-section ranges is freed only when both are gone (PAGE_UNUSED)."""
    k = Kernel(machine("qemu-linux-6.1"))
    pt = k.pgtables
    before = snapshot(k)
    s, e = pt.section_vmemmap(40)
    mid = s + 1 * MiB
    assert pt.vmemmap_populate(s, mid, 0) == 0
    hit = pt.walk_leaf(s)
    assert hit is not None
    _, t, i = hit
    assert bin(t.unused[i]).count("1") == 256  # second half marked PAGE_UNUSED
    assert pt.vmemmap_populate(mid, e, 0) == 0  # vmemmap_use_sub_pmd: reuse the block
    assert i not in t.unused
    pt.vmemmap_free(s, mid)
    assert pt.mapped(s, e) and pt.mapped(s, mid)  # first half PAGE_UNUSED, block kept
    assert bin(t.unused[i]).count("1") == 256
    pt.vmemmap_free(mid, e)
    assert not pt.mapped(s, e)
    assert snapshot(k)[0] == before[0] and snapshot(k)[1] == before[1]


def test_hundred_cycles_zero_growth() -> None:
    k = Kernel(machine("qemu-linux-6.1"))
    pt = k.pgtables
    before = snapshot(k)
    nallocs = len(k.pa.allocs)
    for _ in range(100):
        assert mh.add_memory(k, 1, 4 * GiB + 128 * MiB, GiB + 256 * MiB) == 0
        assert mh.try_remove_memory(k, 4 * GiB + 128 * MiB, GiB + 256 * MiB) == 0
        assert len(k.pa.allocs) == nallocs
    assert snapshot(k) == before
    check_invariants(k)
    assert pt.counters()["sync_global_pgds"] > 100


def test_pud_table_kept_by_6_1_freed_by_seed() -> None:
    """remove_p4d_table() keeps PUD tables with 4-level paging (6.1); the seed's
    free_pud_table() frees them and syncs the global page directories."""
    for name, kept in (("qemu-linux-6.1", True), ("seed", False)):
        base = machine(name)
        n1 = dataclasses.replace(base.node(1), hotplug=((512 * GiB, 514 * GiB),))
        nodes = tuple(n1 if n.id == 1 else n for n in base.nodes)
        k = Kernel(dataclasses.replace(base, nodes=nodes, maxmem=1024 * GiB))
        pt = k.pgtables
        puds = pt.counters()["pud_tables"]
        assert mh.add_memory(k, 1, 512 * GiB, 2 * GiB) == 0
        assert pt.counters()["pud_tables"] == puds + 1  # a new PGD entry
        syncs = pt.sync_global_pgds_calls
        assert mh.remove_memory(k, 512 * GiB, 2 * GiB) == 0
        assert pt.counters()["pud_tables"] == puds + (1 if kept else 0)
        assert (pt.sync_global_pgds_calls > syncs) == (not kept)
        assert not pt.mapped(PAGE_OFFSET + 512 * GiB, PAGE_OFFSET + 514 * GiB)


# ----------------------------------------------------------------- boot memory
def offline_range(k: Kernel, start: int, size: int) -> None:
    for mem in k.memory.blocks_in_range(start, size):
        assert device_offline(k, mem) == 0, k.hotplug.last_offline_failure
        assert mem.state is MemState.MEM_OFFLINE


@pytest.mark.parametrize("gb", [True, False])
def test_remove_boot_memory_frees_bootmem_memmap(gb: bool) -> None:
    k = Kernel(dataclasses.replace(movable_node_spec(), gbpages=gb))
    pt = k.pgtables
    check_invariants(k)
    buf = k.sparse.boot_memmap[1]
    pages0 = buf.nr_pages
    c0 = pt.counters()
    assert leaf_sizes(pt, 4 * GiB, 6 * GiB) == ({Level.PUD} if gb else {Level.PMD})
    # A whole GiB: whole leaves cleared, no split.
    offline_range(k, 4 * GiB, GiB)
    assert mh.try_remove_memory(k, 4 * GiB, GiB) == 0
    check_invariants(k)
    assert not pt.mapped(PAGE_OFFSET + 4 * GiB, PAGE_OFFSET + 5 * GiB)
    assert not vmemmap_mapped(pt, 32, 40)
    assert pt.splits == 0
    # put_page_bootmem(): the 8 sections' 2 MiB blocks went back to the buddy allocator.
    assert buf.nr_pages == pages0 - 8 * 512
    assert pt.counters()["vmemmap_pages_bootmem"] == c0["vmemmap_pages_bootmem"] - 8 * 512
    # Half of the next GiB: the 1G leaf is split (gbpages), the rest stays mapped.
    offline_range(k, 5 * GiB, 512 * MiB)
    assert mh.try_remove_memory(k, 5 * GiB, 512 * MiB) == 0
    check_invariants(k)
    assert not pt.mapped(PAGE_OFFSET + 5 * GiB, PAGE_OFFSET + 5 * GiB + 512 * MiB)
    assert leaf_sizes(pt, 5 * GiB + 512 * MiB, 6 * GiB) == {Level.PMD}
    assert pt.splits == (1 if gb else 0)
    assert buf.nr_pages == pages0 - 12 * 512
    assert np.all(~k.sparse.present[32:44])
    # sparse_remove_section() of each removed section, and of no other.
    assert np.all(~k.sparse.online[32:44]) and not k.sparse.memmap_alloc[32:44].any()
    assert not k.pa.ram[32:44].any() and np.all(k.pa.nid[32:44] == -1)
    assert k.sparse.present[44] and k.pa.ram[44] and k.pa.nid[44] != -1


def test_movable_node_layout_equals_never_present() -> None:
    """After removing node 1's boot GiB [4G, 5G), the tables equal those of the same
    machine booted without it."""
    spec = movable_node_spec()
    k = Kernel(spec)
    offline_range(k, 4 * GiB, GiB)
    assert mh.try_remove_memory(k, 4 * GiB, GiB) == 0
    e820 = tuple(
        dataclasses.replace(e, start=5 * GiB) if e.start == 4 * GiB else e for e in spec.e820
    )
    n1 = dataclasses.replace(spec.node(1), memory=((5 * GiB, 6 * GiB),))
    other = Kernel(
        dataclasses.replace(
            spec, e820=e820, nodes=tuple(n1 if n.id == 1 else n for n in spec.nodes)
        )
    )
    assert k.pgtables.layout() == other.pgtables.layout()


def _tables(t: Table) -> list[Table]:
    return [t, *(x for c in t.children.values() for x in _tables(c))]


def _leaves(k: Kernel) -> list[tuple[object, ...]]:
    return [
        (t.level, t.base, i, s.kind, s.alloc and s.alloc.id, s.nr_pages, s.pieces, s.magic, s.refs)
        for t in _tables(k.pgtables.pgd)
        for i, s in t.backing.items()
    ]


def test_a_copy_rebuilds_the_boot_vmemmap_leaves_when_it_first_uses_them() -> None:
    """A copy (memhp.sim.snapshot, a study's per-run machine) keeps the sources of boot
    memory's vmemmap leaves packed until first used: then they are the original's,
    with the copy's own allocations; a copy of a copy that never used them too."""
    spec = parse_machine(
        {
            "name": "m16",
            "profile": "linux-6.1",
            "node": [{"id": 0, "cpus": [0], "memory": [["0", "16G"]]}],
        }
    )
    k = Kernel(spec)
    copy = copies.loads(copies.dumps(k))
    assert [t for t in _tables(copy.pgtables.pgd) if t._packed is not None]
    again = copies.loads(copies.dumps(copies.loads(copies.dumps(k))))
    assert _leaves(copy) == _leaves(k) == _leaves(again)
    for t in _tables(copy.pgtables.pgd):
        assert t._packed is None
        for s in t.backing.values():
            if s.alloc is not None and s.alloc.id in copy.pa.allocs:
                assert s.alloc is copy.pa.allocs[s.alloc.id]
