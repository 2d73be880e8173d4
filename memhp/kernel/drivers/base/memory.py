"""Memory block devices (drivers/base/memory.c).

A memory block is the unit user space onlines and offlines: ``block_size``
bytes, ``sections_per_block`` sections.  This module holds the block objects and
the device-core side of onlining/offlining (device_online/device_offline and
memory_block_change_state); the mm side lives in :mod:`memory_hotplug`.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import TYPE_CHECKING

from memhp.kernel.mm.mmzone import ZoneType

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel


class MemState(Enum):
    """mem->state: MEM_ONLINE / MEM_GOING_OFFLINE / MEM_OFFLINE."""

    MEM_ONLINE = "online"
    MEM_GOING_OFFLINE = "going-offline"
    MEM_OFFLINE = "offline"


class MMOP(IntEnum):
    """Online types (include/linux/memory_hotplug.h), in online_type_to_str[] order."""

    MMOP_OFFLINE = 0
    MMOP_ONLINE = 1
    MMOP_ONLINE_KERNEL = 2
    MMOP_ONLINE_MOVABLE = 3


#: online_type_to_str[] of drivers/base/memory.c.
ONLINE_TYPE_TO_STR: dict[MMOP, str] = {
    MMOP.MMOP_OFFLINE: "offline",
    MMOP.MMOP_ONLINE: "online",
    MMOP.MMOP_ONLINE_KERNEL: "online_kernel",
    MMOP.MMOP_ONLINE_MOVABLE: "online_movable",
}

NUMA_NO_NODE = -1


@dataclass
class MemoryBlock:
    """struct memory_block."""

    id: int
    start_section_nr: int
    state: MemState
    nid: int
    online_type: MMOP = MMOP.MMOP_OFFLINE
    #: The single zone of an online block; None when offline or spanning zones.
    zone: ZoneType | None = None
    nr_vmemmap_pages: int = 0
    group: int | None = None
    early: bool = False
    #: Nodes this block is linked under (memoryN/nodeX links); usually one.
    nodes: set[int] = field(default_factory=set)
    #: Name of the ACPI device bound to this block (firmware_node link), if any.
    acpi_device: str | None = None

    @property
    def name(self) -> str:
        return f"memory{self.id}"

    @property
    def online(self) -> bool:
        """dev->offline == false."""
        return self.state is MemState.MEM_ONLINE


def memory_block_change_state(k: Kernel, mem: MemoryBlock, to: MemState, frm: MemState) -> int:
    """memory_block_change_state(): 0 or a negative errno."""
    if mem.state is not frm:
        return -errno.EINVAL
    if to is MemState.MEM_OFFLINE:
        mem.state = MemState.MEM_GOING_OFFLINE
    from memhp.kernel.mm import memory_hotplug as mh

    if to is MemState.MEM_ONLINE:
        ret = mh.memory_block_online(k, mem)
    else:
        ret = mh.memory_block_offline(k, mem)
    mem.state = frm if ret else to
    return ret


def device_online(k: Kernel, mem: MemoryBlock) -> int:
    """device_online() -> memory_subsys_online(): 1 if already online, 0, or -errno."""
    if mem.state is MemState.MEM_ONLINE:
        return 1
    if mem.online_type is MMOP.MMOP_OFFLINE:
        mem.online_type = MMOP.MMOP_ONLINE
    ret = memory_block_change_state(k, mem, MemState.MEM_ONLINE, MemState.MEM_OFFLINE)
    mem.online_type = MMOP.MMOP_OFFLINE
    return ret


def device_offline(k: Kernel, mem: MemoryBlock) -> int:
    """device_offline() -> memory_subsys_offline(): 1 if already offline, 0, or -errno."""
    if mem.state is MemState.MEM_OFFLINE:
        return 1
    return memory_block_change_state(k, mem, MemState.MEM_OFFLINE, MemState.MEM_ONLINE)


def state_store(k: Kernel, mem: MemoryBlock, online_type: MMOP) -> int:
    """state_store() after parsing: 0 or -errno (EINVAL when already in that state)."""
    if online_type is MMOP.MMOP_OFFLINE:
        ret = device_offline(k, mem)
    else:
        mem.online_type = online_type
        ret = device_online(k, mem)
    if ret < 0:
        return ret
    if ret:
        return -errno.EINVAL
    return 0
