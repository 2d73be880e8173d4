"""x86_64 memory-model constants (arch/x86/include/asm/{page_types,sparsemem}.h)."""

from __future__ import annotations

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
#: SECTION_SIZE_BITS on x86_64: 128 MiB sections.
SECTION_SIZE_BITS = 27
SECTION_SIZE = 1 << SECTION_SIZE_BITS
PAGES_PER_SECTION = SECTION_SIZE // PAGE_SIZE
#: pageblock_order = HUGETLB_PAGE_ORDER = 9 on x86_64 (2 MiB pageblocks).
PAGEBLOCK_NR_PAGES = 512
#: MAX_ORDER (6.1) = MAX_PAGE_ORDER + 1 (6.12): free_area[] orders 0-10.
NR_ORDERS = 11
#: Pages of a free block of the largest order (4 MiB).
MAX_ORDER_NR_PAGES = 1 << (NR_ORDERS - 1)
#: sizeof(struct page) on x86_64.
STRUCT_PAGE_SIZE = 64
#: sizeof(struct page_cgroup) in Linux 3.8 (flags + mem_cgroup pointer).
PAGE_CGROUP_SIZE = 16
PMD_SIZE = 2 << 20
PUD_SIZE = 1 << 30
#: The default memory block size on x86_64 (MIN_MEMORY_BLOCK_SIZE).
DEFAULT_BLOCK_SIZE = SECTION_SIZE
#: x86_64 MAX_PHYSMEM_BITS with 4-level paging.
MAX_PHYSMEM_BITS = 46

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

# x86_64 zone boundaries (MAX_DMA_PFN, MAX_DMA32_PFN).
DMA_END = 16 * MiB
DMA32_END = 4 * GiB


def pfn_to_section_nr(pfn: int) -> int:
    return pfn >> (SECTION_SIZE_BITS - PAGE_SHIFT)


def section_nr_to_pfn(nr: int) -> int:
    return nr << (SECTION_SIZE_BITS - PAGE_SHIFT)


def phys_to_pfn(addr: int) -> int:
    return addr >> PAGE_SHIFT


def pfn_to_phys(pfn: int) -> int:
    return pfn << PAGE_SHIFT
