"""/sys/devices/system/memory: drivers/base/memory.c.

``memory_memblk_attrs`` (one ``memoryN`` directory per memory block) and
``memory_root_attrs`` (the memory subsystem's global files), declared as
attribute tables (:mod:`memhp.sim.sysfs.kernfs`).
"""

from __future__ import annotations

import errno

from memhp.abi.acpi import ACPI_MEMORY_PARENT
from memhp.abi.fs import oserror
from memhp.abi.layout import PAGE_SHIFT
from memhp.kernel.drivers.base import memory
from memhp.kernel.drivers.base.memory import (
    MMOP,
    ONLINE_TYPE_TO_STR,
    MemoryBlock,
    state_store,
)
from memhp.kernel.kernel import Kernel
from memhp.kernel.mm import memory_failure
from memhp.sim.sysfs.attrs import kstrtobool, kstrtoull, sysfs_streq
from memhp.sim.sysfs.kernfs import (
    ATTR_RO,
    ATTR_RW,
    ATTR_WO,
    LINK,
    UEVENT,
    AttrGroup,
    Dir,
    Entry,
    Link,
    Node,
    group_entries,
    indexed_dir,
    lazy_group_dir,
    profile,
)


def parse_online_type(buf: bytes) -> MMOP | None:
    """mhp_online_type_from_str()."""
    for t, s in ONLINE_TYPE_TO_STR.items():
        if sysfs_streq(buf, s):
            return t
    return None


# ---------------------------------------------------------------- memoryN
def _block(k: Kernel, mem: MemoryBlock) -> MemoryBlock:
    """The block as it is now (removed while the file was open: ENODEV)."""
    cur = k.memory.blocks.get(mem.id)
    if cur is None:
        raise oserror(errno.ENODEV, mem.name)
    return cur


def phys_index_show(k: Kernel, mem: MemoryBlock) -> str:
    return f"{mem.start_section_nr // k.memory.sections_per_block:08x}\n"


def end_phys_index_show(k: Kernel, mem: MemoryBlock) -> str:
    spb = k.memory.sections_per_block
    return f"{(mem.start_section_nr + spb - 1) // spb:08x}\n"


def state_show(_k: Kernel, mem: MemoryBlock) -> str:
    return mem.state.value + "\n"


def memblk_state_store(k: Kernel, mem: MemoryBlock, buf: bytes) -> int:
    """state_store()."""
    t = parse_online_type(buf)
    if t is None:
        return -errno.EINVAL
    return state_store(k, _block(k, mem), t)


def online_show(_k: Kernel, mem: MemoryBlock) -> str:
    return f"{int(mem.online)}\n"


def online_store(k: Kernel, mem: MemoryBlock, buf: bytes) -> int:
    """online_store() of drivers/base/core.c: kstrtobool, then device_online/offline."""
    val = kstrtobool(buf)
    if val is None:
        return -errno.EINVAL
    return memory.online_store(k, _block(k, mem), val)


def valid_zones_show(k: Kernel, mem: MemoryBlock) -> str:
    zones = memory.valid_zones_show(k, mem)
    return ("none" if zones is None else " ".join(zones)) + "\n"


#: memory_memblk_attrs[] (+ the device core's uevent and subsystem).
memblk_attrs: AttrGroup[MemoryBlock] = {
    "uevent": UEVENT,
    "phys_index": ATTR_RO(phys_index_show),
    "state": ATTR_RW(state_show, memblk_state_store),
    "phys_device": ATTR_RO(lambda k, mem: "0\n"),
    "removable": ATTR_RO(lambda k, mem: f"{memory.removable_show(k, mem):d}\n"),
    "subsystem": LINK(lambda k, mem: "../../../../bus/memory"),
    "end_phys_index": ATTR_RO(end_phys_index_show, profile("sysfs_end_phys_index")),
    "online": ATTR_RW(online_show, online_store, profile("sysfs_online_attr")),
    "valid_zones": ATTR_RO(valid_zones_show, profile("sysfs_valid_zones")),
}


def block_dir(k: Kernel, mem: MemoryBlock) -> Dir:
    def links() -> dict[str, Entry]:
        e: dict[str, Entry] = {}
        # register_memory_block_under_node(): a link per node the block spans
        for nid in sorted(mem.nodes):
            if nid in k.nodes.registered_nodes or nid == mem.nid:
                e[f"node{nid}"] = _link(f"../../node/node{nid}")
        if mem.acpi_device is not None:  # acpi_bind_one()
            e["firmware_node"] = _link(f"../../../{ACPI_MEMORY_PARENT}/{mem.acpi_device}")
        return e

    return lazy_group_dir(k, mem, memblk_attrs, links)


def _link(target: str) -> Entry:
    return lambda: Link(target)


# ---------------------------------------------------------------- global files
def _phys_addr_store(k: Kernel, buf: bytes, soft: bool) -> int:
    """soft_offline_page_store() / hard_offline_page_store(): a physical address."""
    addr = kstrtoull(buf, 0)
    if addr is None:
        return -errno.EINVAL
    return memory_failure.memory_failure(k, addr >> PAGE_SHIFT, soft)


def probe_store(k: Kernel, _o: None, buf: bytes) -> int:
    """probe_store(): hot-add one memory block at a physical address (no device)."""
    addr = kstrtoull(buf, 0)
    if addr is None:
        return -errno.EINVAL
    return memory.probe_store(k, addr)


def auto_online_blocks_store(k: Kernel, _o: None, buf: bytes) -> int:
    t = parse_online_type(buf)
    if t is None:
        return -errno.EINVAL
    return memory.auto_online_blocks_store(k, t)


#: memory_root_attrs[] (CONFIG_MEMORY_FAILURE; CONFIG_ARCH_MEMORY_PROBE and
#: CONFIG_CRASH_HOTPLUG by profile).
memory_root_attrs: AttrGroup[None] = {
    "block_size_bytes": ATTR_RO(lambda k, _o: f"{k.memory.block_size:x}\n"),
    "uevent": UEVENT,
    "soft_offline_page": ATTR_WO(lambda k, _o, b: _phys_addr_store(k, b, soft=True)),
    "hard_offline_page": ATTR_WO(lambda k, _o, b: _phys_addr_store(k, b, soft=False)),
    "probe": ATTR_WO(probe_store, profile("sysfs_probe")),
    "auto_online_blocks": ATTR_RW(
        lambda k, _o: ONLINE_TYPE_TO_STR[k.hotplug.mhp_default_online_type] + "\n",
        auto_online_blocks_store,
        profile("sysfs_auto_online_blocks"),
    ),
    # crash_hotplug_show(): crash_check_hotplug_support(); no crash kernel is loaded.
    "crash_hotplug": ATTR_RO(lambda k, _o: "0\n", profile("sysfs_crash_hotplug")),
}


def memory_dir(k: Kernel) -> Dir:
    """/sys/devices/system/memory: ``memoryN`` per block, then the global files."""

    def child(bid: int) -> Node | None:
        mem = k.memory.blocks.get(bid)
        return block_dir(k, mem) if mem is not None else None

    return indexed_dir(
        "memory", lambda: list(k.memory.blocks), child, group_entries(k, None, memory_root_attrs)
    )
