"""Page-table model benchmark (issue 4).

Building and tearing down the kernel page tables of a 1 TiB hot-add (direct map
and vmemmap: 8192 sections, 8192 vmemmap 2 MiB blocks of the page allocator),
target < 1 s, with and without gbpages (without: 524288 PMD entries in 1024 PMD
tables).  Also times the whole add_memory + remove_memory path for reference.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._common import best_of, peak_rss_mib, record
from memhp.abi.layout import SECTION_SIZE, GiB, TiB
from memhp.kernel.kernel import Kernel
from memhp.kernel.machine import MachineSpec
from memhp.kernel.mm import memory_hotplug as mh
from memhp.sim.config import load_machine

MACHINES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "machines")
START = 1 * TiB
SIZE = 1 * TiB


def spec(gbpages: bool) -> MachineSpec:
    """The QEMU machine with a 1 TiB hotplug window at 1 TiB on node 1."""
    base = load_machine(os.path.join(MACHINES, "qemu-linux-6.1.toml"))
    n1 = dataclasses.replace(base.node(1), hotplug=((START, START + SIZE),))
    nodes = tuple(n1 if n.id == 1 else n for n in base.nodes)
    # Node 0 needs room for 8192 vmemmap blocks (16 GiB) and the tables.
    n0 = dataclasses.replace(base.node(0), memory=((0, 64 * GiB),))
    nodes = tuple(n0 if n.id == 0 else n for n in nodes)
    e820 = (
        *tuple(e for e in base.e820 if e.start < GiB),
        dataclasses.replace(base.e820[0], start=4 * GiB, end=64 * GiB, type="System RAM"),
    )
    return dataclasses.replace(base, nodes=nodes, e820=e820, maxmem=4 * TiB, gbpages=gbpages)


def tables_cycle(k: Kernel) -> None:
    """init_memory_mapping + vmemmap_populate of 8192 sections, then vmemmap_free +
    kernel_physical_mapping_remove: what arch_add_memory / arch_remove_memory do."""
    pt = k.pgtables
    first, end = START // SECTION_SIZE, (START + SIZE) // SECTION_SIZE
    assert pt.init_memory_mapping(START, START + SIZE) == 0
    assert pt.vmemmap_populate_sections(first, end, 1) == 0
    pt.vmemmap_free_sections(first, end)
    pt.kernel_physical_mapping_remove(START, START + SIZE)


def main() -> None:
    rows = []
    for gb in (True, False):
        k = Kernel(spec(gb))
        # 6.1 keeps the PUD tables of the new PGD entries (remove_p4d_table): warm up.
        tables_cycle(k)
        before = k.pgtables.layout()
        t = best_of(lambda k=k: tables_cycle(k), repeat=5)  # type: ignore[misc]
        assert k.pgtables.layout() == before
        rows.append(
            {
                "what": f"1 TiB hot-add page tables built and torn down (gbpages={gb})",
                "value": t,
                "unit": "s",
                "target": 1.0,
                "ok": t < 1.0,
            }
        )
        # Peak number of tables while mapped.
        pt = k.pgtables
        first, end = START // SECTION_SIZE, (START + SIZE) // SECTION_SIZE
        pt.init_memory_mapping(START, START + SIZE)
        pt.vmemmap_populate_sections(first, end, 1)
        c = pt.counters()
        rows.append(
            {
                "what": f"page-table pages with 1 TiB mapped (gbpages={gb})",
                "value": c["pagetable_pages"],
                "unit": "pages",
            }
        )
        pt.vmemmap_free_sections(first, end)
        pt.kernel_physical_mapping_remove(START, START + SIZE)
        t0 = time.perf_counter()
        assert mh.add_memory(k, 1, START, SIZE) == 0
        t1 = time.perf_counter()
        assert mh.remove_memory(k, START, SIZE) == 0
        t2 = time.perf_counter()
        rows.append(
            {
                "what": f"add_memory of 1 TiB, whole path (gbpages={gb})",
                "value": t1 - t0,
                "unit": "s",
            }
        )
        rows.append(
            {
                "what": f"remove_memory of 1 TiB, whole path (gbpages={gb})",
                "value": t2 - t1,
                "unit": "s",
            }
        )
        assert k.pgtables.layout() == before
    rows.append({"what": "peak RSS", "value": peak_rss_mib(), "unit": "MiB"})
    record("pgtable", rows)


if __name__ == "__main__":
    main()
