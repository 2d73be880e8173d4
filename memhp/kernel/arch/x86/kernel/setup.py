"""x86 setup_arch() (arch/x86/kernel/setup.c): firmware map and memblock memory.

e820 entries become the firmware memmap (firmware_memmap_init ->
firmware_map_add_early, the untrimmed table); boot RAM of the trimmed table
(e820__memblock_setup(): no first page, no PC BIOS area) is added to memblock
per node (numa_init -> memblock_set_node) and its sections are marked present
(sparse_init -> memblocks_present).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memhp.abi.layout import PAGE_SIZE, pfn_to_section_nr
from memhp.kernel.arch.x86.kernel.e820 import e820_reserve_resources, memblock_memory

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel


def setup_arch(k: Kernel) -> None:
    """setup_arch(): e820 -> firmware map; memblock RAM per section, node of each section."""
    for e in k.spec.e820:
        k.fwmap.firmware_map_add_early(e.start, e.end, e.type)
    k.iomem = e820_reserve_resources(k)  # and the kernel image: /proc/iomem
    for start, end, nid in memblock_memory(k):  # (the trimmed e820_table)
        pfn, epfn = -(-start // PAGE_SIZE), end // PAGE_SIZE
        k.pa.add_ram_range(pfn, epfn, nid)
        k.sparse.memory_present(pfn_to_section_nr(pfn), pfn_to_section_nr(epfn - 1) + 1)
