"""x86 NUMA memory ranges (arch/x86/mm/numa.c; mm/numa_memblks.c from 6.12).

numa_cleanup_meminfo() keeps of the SRAT's memory affinity entries those that
overlap RAM (memblock.memory), cut at max_pfn; the rest (hotplug windows above
the boot RAM) move to numa_reserved_meminfo.  memory_add_physaddr_to_nid() looks
an address up in what was kept and falls back to the first entry's node: a
hot-added DIMM whose _PXM has no SRAT entry, or a virtio-mem device without
VIRTIO_MEM_F_ACPI_PXM, lands on that node, not on the node of the hotplug window
it sits in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memhp.kernel.drivers.acpi.numa.srat import Srat
from memhp.kernel.machine import MachineSpec

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel


def numa_cleanup_meminfo(srat: Srat, spec: MachineSpec) -> tuple[tuple[int, int, int], ...]:
    """numa_meminfo after numa_cleanup_meminfo(): (start, end, node) of the memory
    affinity entries that overlap RAM, cut at PFN_PHYS(max_pfn), in table order
    (the merge of neighbours keeps the first entry first)."""
    ram = [(e.start, e.end) for e in spec.e820 if e.type == "System RAM"]
    high = max((e for _, e in ram), default=0)  # e820__end_of_ram_pfn()
    out: list[tuple[int, int, int]] = []
    for s, e, nid in srat.memblks:
        if not any(rs < e and s < re_ for rs, re_ in ram):  # memblock_overlaps_region()
            continue
        e = min(e, high)
        if s < e:
            out.append((s, e, nid))
    return tuple(out)


def memory_add_physaddr_to_nid(k: Kernel, addr: int) -> int:
    """memory_add_physaddr_to_nid(): the node of the numa_meminfo entry holding
    ``addr``, else that of the first entry (numa_meminfo.blk[0].nid)."""
    mi = k.numa_meminfo
    for s, e, nid in mi:  # meminfo_to_nid()
        if s <= addr < e:
            return nid
    return mi[0][2] if mi else 0
