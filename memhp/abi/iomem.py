"""/proc/iomem: the names the kernel gives memory resources, and the line grammar.

kernel/resource.c r_show() prints one resource per line, ``%*s%0*llx-%0*llx : %s``:
two spaces per nesting level, start and end (inclusive) in hex, at least 8 digits
for iomem, then the name.  Readers without CAP_SYS_ADMIN see zeros for both
addresses.  The names of memory resources come from arch/x86/kernel/e820.c
(e820_type_to_string(), :data:`memhp.abi.e820.E820_TYPES`), arch/x86/kernel/setup.c
(the kernel image), mm/memory_hotplug.c (hot-added "System RAM") and
drivers/virtio/virtio_mem.c ("virtioN" and "System RAM (virtio_mem)").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memhp.abi.e820 import E820_TYPES
from memhp.abi.virtio import VIRTIO_MEM_RESOURCE_NAME

SYSTEM_RAM = "System RAM"
#: arch/x86/kernel/setup.c code_resource, rodata_resource, data_resource, bss_resource.
KERNEL_CODE = "Kernel code"
KERNEL_RODATA = "Kernel rodata"
KERNEL_DATA = "Kernel data"
KERNEL_BSS = "Kernel bss"
KERNEL_IMAGE_NAMES = (KERNEL_CODE, KERNEL_RODATA, KERNEL_DATA, KERNEL_BSS)
#: e820__reserve_resources_late(): RAM padded up to an alignment.
RAM_BUFFER = "RAM buffer"
#: The width r_show() pads addresses to for iomem (root->end >= 0x10000).
IOMEM_WIDTH = 8
#: MAX_IORES_LEVEL: deeper resources are indented as this level.
MAX_IORES_LEVEL = 5

_VIRTIO_PARENT = re.compile(r"virtio\d+\Z")
_LINE = re.compile(r"( *)([0-9a-f]+)-([0-9a-f]+) : (.*)\Z")


def is_virtio_parent(name: str) -> bool:
    """``virtioN``: the device region virtio_mem_create_resource() requests."""
    return _VIRTIO_PARENT.match(name) is not None


def is_memory_resource(name: str) -> bool:
    """True for the names of RAM, firmware-reserved ranges, the kernel image,
    hot-added memory and virtio-mem device regions (not PCI windows, BARs, ROMs)."""
    return (
        name in E820_TYPES
        or name in KERNEL_IMAGE_NAMES
        or name in (RAM_BUFFER, VIRTIO_MEM_RESOURCE_NAME)
        or is_virtio_parent(name)
    )


def format_line(depth: int, start: int, end: int, name: str) -> str:
    """One r_show() line (without the newline); ``end`` is inclusive."""
    d = min(depth, MAX_IORES_LEVEL)
    return f"{'':{d * 2}}{start:0{IOMEM_WIDTH}x}-{end:0{IOMEM_WIDTH}x} : {name}"


@dataclass(frozen=True)
class IomemLine:
    """One parsed /proc/iomem line: nesting depth, [start, end] inclusive, name."""

    depth: int
    start: int
    end: int
    name: str

    @property
    def size(self) -> int:
        return self.end - self.start + 1


def parse_line(line: str) -> IomemLine | None:
    """The inverse of :func:`format_line`; None for a line of another shape."""
    m = _LINE.match(line.rstrip("\n"))
    if m is None:
        return None
    return IomemLine(len(m.group(1)) // 2, int(m.group(2), 16), int(m.group(3), 16), m.group(4))
