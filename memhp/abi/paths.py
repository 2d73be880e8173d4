"""Where the memory hotplug ABI lives: sysfs and procfs paths, block names.

Paths are absolute within a sysfs root (``/`` on a real machine).  The kernel
model serves them, the tool reads them, the bench captures them: each is spelled
once, here (Documentation/admin-guide/mm/memory-hotplug.rst,
Documentation/ABI/testing/sysfs-devices-memory, Documentation/admin-guide/mm/pagemap.rst).
"""

from __future__ import annotations

#: drivers/base/memory.c: one ``memoryN`` directory per memory block.
SYS_MEMORY = "/sys/devices/system/memory"
#: drivers/base/node.c: one ``nodeN`` directory per NUMA node.
SYS_NODE = "/sys/devices/system/node"
#: The nodes with memory (node_states[N_MEMORY], a node list such as "0-1,3").
NODE_HAS_MEMORY = f"{SYS_NODE}/has_memory"
#: drivers/acpi: the ACPI devices (links to their /sys/devices directories).
SYS_ACPI_DEVICES = "/sys/bus/acpi/devices"
#: drivers/firmware/memmap.c: the firmware (e820) memory map.
SYS_FIRMWARE_MEMMAP = "/sys/firmware/memmap"
#: s390: ``config`` and ``memmap_on_memory`` per block (drivers/s390/char/sclp_mem.c).
SYS_FIRMWARE_MEMORY = "/sys/firmware/memory"
#: mm/memory_hotplug.c module parameters (``memmap_on_memory``, ``online_policy``...).
MODULE_MEMORY_HOTPLUG = "/sys/module/memory_hotplug/parameters"
#: fs/proc/page.c: 8 bytes of stable page flags per pfn.
PROC_KPAGEFLAGS = "/proc/kpageflags"
PROC_MEMINFO = "/proc/meminfo"
PROC_ZONEINFO = "/proc/zoneinfo"
PROC_IOMEM = "/proc/iomem"
PROC_BUDDYINFO = "/proc/buddyinfo"
#: mm/vmstat.c vmstat_op: the global counters, then the VM events.
PROC_VMSTAT = "/proc/vmstat"

#: The parts of sysfs the memory hotplug subsystem owns (what the trace dumps).
MEMORY_ROOTS: tuple[str, ...] = (SYS_MEMORY, SYS_NODE, SYS_FIRMWARE_MEMMAP, SYS_ACPI_DEVICES)

#: Directory-name prefixes: ``memory32``, ``node1``.
BLOCK_PREFIX = "memory"
NODE_PREFIX = "node"


def block_dir(index: int) -> str:
    """``/sys/devices/system/memory/memory<index>``."""
    return f"{SYS_MEMORY}/{BLOCK_PREFIX}{index}"


def node_dir(nid: int) -> str:
    """``/sys/devices/system/node/node<nid>``."""
    return f"{SYS_NODE}/{NODE_PREFIX}{nid}"


#: drivers/virtio/virtio.c: one ``virtioN`` link per virtio device, and the drivers.
SYS_VIRTIO_DEVICES = "/sys/bus/virtio/devices"
SYS_VIRTIO_DRIVERS = "/sys/bus/virtio/drivers"
#: The PCI root the virtio-pci devices of QEMU's pc machine hang under.
SYS_PCI_ROOT = "/sys/devices/pci0000:00"


def pci_dev_dir(slot: int, fn: int = 0) -> str:
    """``/sys/devices/pci0000:00/0000:00:SS.F``."""
    return f"{SYS_PCI_ROOT}/0000:00:{slot:02x}.{fn}"
