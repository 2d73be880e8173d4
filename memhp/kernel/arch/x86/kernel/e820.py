"""The e820 resources of /proc/iomem (arch/x86/kernel/e820.c, setup.c).

setup_arch() trims the firmware's table into the kernel's ``e820_table``
(trim_bios_range(): the first page becomes Reserved, RAM between 640K and 1M goes;
e820__update_table() sorts and merges), inserts the kernel image resources into
iomem_resource, then e820__reserve_resources() inserts every entry the kernel marks
busy (do_mark_busy(): everything below 1M and all but reserved/persistent types
above), named by e820_type_to_string(); "System RAM" adopts the kernel image.
e820__reserve_resources_late() (at pcibios_resource_survey() time) inserts the
rest with insert_resource_expand_to_fit() and pads each RAM entry with a
"RAM buffer" up to ram_alignment().  The firmware memmap (/sys/firmware/memmap)
keeps the untrimmed table (firmware_map_add_early(), memhp.kernel.arch.x86.kernel.setup).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memhp.abi.iomem import KERNEL_IMAGE_NAMES, RAM_BUFFER, SYSTEM_RAM
from memhp.abi.layout import PAGE_SIZE, MiB
from memhp.kernel.resource import (
    IORESOURCE_BUSY,
    IORESOURCE_MEM,
    IORESOURCE_SYSTEM_RAM,
    Iomem,
    Resource,
)

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel

#: BIOS_BEGIN, BIOS_END: the legacy PC BIOS area.
BIOS_BEGIN = 0xA0000
BIOS_END = 0x100000
RESERVED = "Reserved"


def e820_table(entries: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """trim_bios_range() then e820__update_table(): [start, end) entries, sorted,
    adjacent entries of one type merged."""
    out: list[tuple[int, int, str]] = []
    for s, e, t in entries:
        if t != SYSTEM_RAM:
            out.append((s, e, t))
            continue
        # e820__range_update(0, PAGE_SIZE, RAM, RESERVED)
        if s < PAGE_SIZE:
            out.append((s, min(e, PAGE_SIZE), RESERVED))
            s = PAGE_SIZE
        # e820__range_remove(BIOS_BEGIN, BIOS_END - BIOS_BEGIN, RAM)
        for a, b in ((s, min(e, BIOS_BEGIN)), (max(s, BIOS_END), e)):
            if a < b:
                out.append((a, b, t))
    out.sort()
    merged: list[tuple[int, int, str]] = []
    for s, e, t in out:
        if merged and merged[-1][2] == t and merged[-1][1] == s:
            merged[-1] = (merged[-1][0], e, t)
        else:
            merged.append((s, e, t))
    return merged


def memblock_memory(k: Kernel) -> list[tuple[int, int, int]]:
    """(start, end, nid) of memblock.memory at boot: the boot RAM of the machine
    (SRAT ranges of e820 System RAM) as e820__memblock_setup() adds it from the
    trimmed ``e820_table``: without the first page (trim_bios_range()) and the PC
    BIOS area.  Zone spans and present pages come from it (free_area_init())."""
    out: list[tuple[int, int, int]] = []
    for s, e, nid in k.spec.boot_ram:
        s = max(s, PAGE_SIZE)
        for a, b in ((s, min(e, BIOS_BEGIN)), (max(s, BIOS_END), e)):
            if a < b:
                out.append((a, b, nid))
    return out


def do_mark_busy(start: int, typ: str) -> bool:
    """do_mark_busy(): below 1M always; above, all but the reserved/persistent types."""
    if start < (1 << 20):
        return True
    return typ not in (
        RESERVED,
        "Soft Reserved",
        "Persistent Memory (legacy)",
        "Persistent Memory",
    )


def ram_alignment(pos: int) -> int:
    """ram_alignment(): 64K in the first MB, 1M in the first 16M, then 64M."""
    mb = pos >> 20
    if not mb:
        return 64 * 1024
    if mb < 16:
        return MiB
    return 64 * MiB


def e820_reserve_resources(k: Kernel) -> Iomem:
    """setup_arch()'s kernel image resources, e820__reserve_resources() and
    e820__reserve_resources_late(): the boot content of iomem_resource."""
    iomem = Iomem()
    text = k.spec.kernel_image_start
    layout = k.spec.kernel_image_layout or k.profile.kernel_image_layout
    for name, (a, b) in zip(KERNEL_IMAGE_NAMES, layout, strict=True):
        iomem.insert_resource(
            Resource(text + a, text + b - 1, name, IORESOURCE_SYSTEM_RAM | IORESOURCE_BUSY)
        )
    table = e820_table([(e.start, e.end, e.type) for e in k.spec.e820])
    late: list[Resource] = []
    for s, e, t in table:
        flags = IORESOURCE_SYSTEM_RAM if t == SYSTEM_RAM else IORESOURCE_MEM
        res = Resource(s, e - 1, t, flags)
        if do_mark_busy(s, t):
            res.flags |= IORESOURCE_BUSY
            iomem.insert_resource(res)
        else:
            late.append(res)
    for res in late:  # e820__reserve_resources_late()
        iomem.insert_resource_expand_to_fit(res)
    for _s, e, t in table:
        if t != SYSTEM_RAM:
            continue
        end = -(-e // ram_alignment(e)) * ram_alignment(e) - 1
        if e < end:
            iomem.reserve_region_with_split(e, end, RAM_BUFFER)
    return iomem
