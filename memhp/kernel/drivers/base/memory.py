"""Memory block devices (drivers/base/memory.c), all of it.

A memory block is the unit user space onlines and offlines: ``block_size``
bytes, ``sections_per_block`` sections.  This module holds

* the block devices (:class:`MemorySubsys`: the blocks, per-node block counts,
  memory_dev_init, create/remove_memory_block_devices, find_memory_block);
* the memory notifier chain (memory_notify, register_memory_notifier) with
  lib/memory-notifier-error-inject.c in front;
* onlining and offlining a block (device_online/device_offline ->
  memory_subsys_online/offline -> memory_block_change_state ->
  memory_block_online/offline);
* the attribute logic of /sys/devices/system/memory (state_store,
  online_store of drivers/base/core.c, removable_show, valid_zones_show,
  probe_store, auto_online_blocks_store);
* memory groups (memory_group_register_static/dynamic, memory_group_unregister,
  memory_group_find_by_id, walk_dynamic_memory_groups).  Parsing a store's buffer is left to
  the sysfs front end; the functions here take parsed values.

The mm side of onlining and offlining lives in :mod:`memhp.kernel.mm.memory_hotplug`.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import TYPE_CHECKING

import numpy as np

from memhp.abi.fs import EHWPOISON
from memhp.abi.layout import PAGE_SHIFT, SECTION_SIZE, section_nr_to_pfn
from memhp.kernel.drivers.acpi.numa.srat import NUMA_NO_NODE
from memhp.kernel.lib.xarray import XArray
from memhp.kernel.mm.mmzone import ZoneType
from memhp.kernel.mm.page_alloc import PageState

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


@dataclass(eq=False)
class MemoryGroup:
    """struct memory_group: blocks added and removed together (static: one ACPI
    memory device, ``max_pages``; dynamic: e.g. virtio-mem, in ``unit_pages``)."""

    mgid: int
    nid: int
    is_dynamic: bool = False
    max_pages: int = 0
    unit_pages: int = 0
    present_kernel_pages: int = 0
    present_movable_pages: int = 0
    memory_blocks: list[int] = field(default_factory=list)


@dataclass(slots=True)
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
    #: mem->group: the memory group (ACPI device) the block belongs to, if any.
    group: MemoryGroup | None = None
    early: bool = False
    #: Nodes this block is linked under (memoryN/nodeX links); usually one.
    nodes: set[int] = field(default_factory=set)
    #: Name of the ACPI device bound to this block (firmware_node link), if any.
    acpi_device: str | None = None
    #: mem->nr_hwpoison: pages of the block poisoned by memory_failure()
    #: (memblk_nr_poison_inc()); kept while the block exists, offline or not.
    nr_hwpoison: int = 0

    @property
    def name(self) -> str:
        return f"memory{self.id}"

    @property
    def online(self) -> bool:
        """dev->offline == false."""
        return self.state is MemState.MEM_ONLINE


# ================================================================ notifier chain
class MemAction(Enum):
    """The MEM_* actions of include/linux/memory.h."""

    MEM_ONLINE = 1 << 0
    MEM_GOING_OFFLINE = 1 << 1
    MEM_OFFLINE = 1 << 2
    MEM_GOING_ONLINE = 1 << 3
    MEM_CANCEL_ONLINE = 1 << 4
    MEM_CANCEL_OFFLINE = 1 << 5


@dataclass(frozen=True)
class MemoryNotify:
    """struct memory_notify."""

    start_pfn: int
    nr_pages: int
    nid: int
    status_change_nid: int
    status_change_nid_normal: int


#: A callback returns 0 (NOTIFY_OK) or a negative errno (notifier_from_errno).
MemoryNotifierFn = Callable[[MemAction, MemoryNotify], int]


@dataclass
class NotifierBlock:
    name: str
    fn: MemoryNotifierFn
    priority: int = 0


class MemoryChain:
    """memory_chain: blocking_notifier_call_chain() over callbacks, by priority."""

    def __init__(self) -> None:
        self.blocks: list[NotifierBlock] = []

    def register(self, name: str, fn: MemoryNotifierFn, priority: int = 0) -> None:
        """register_memory_notifier()."""
        self.blocks.append(NotifierBlock(name, fn, priority))
        self.blocks.sort(key=lambda b: -b.priority)

    def unregister(self, name: str) -> None:
        """unregister_memory_notifier()."""
        self.blocks = [b for b in self.blocks if b.name != name]

    def call(self, action: MemAction, arg: MemoryNotify) -> int:
        """Call each callback; stop at the first error (NOTIFY_STOP_MASK) and return it."""
        for b in self.blocks:
            ret = b.fn(action, arg)
            if ret:
                return ret
        return 0


# ================================================================ block devices
@dataclass
class _EarlyBlock:
    """The memory block device of boot block ``bid``, built on first access (its
    facts computed by memory_dev_init() for all blocks at once)."""

    spb: int
    nid_of: list[int]
    zone_of: list[int]
    zones: dict[int, ZoneType | None]
    mixed_nodes: dict[int, set[int]]

    def __call__(self, bid: int) -> MemoryBlock:
        nid = self.nid_of[bid]
        nodes = self.mixed_nodes[bid] if nid == NUMA_NO_NODE else {nid}
        zone = self.zones[self.zone_of[bid]]
        return MemoryBlock(
            bid, bid * self.spb, MemState.MEM_ONLINE, nid, zone=zone, early=True, nodes=nodes
        )


class MemorySubsys:
    """memory_subsys: the memory block devices and the memory notifier chain."""

    def __init__(self, k: Kernel, block_size: int) -> None:
        self.k = k
        #: memory_block_size_bytes().
        self.block_size = block_size
        #: sections_per_block.
        self.sections_per_block = block_size // SECTION_SIZE
        self.pages_per_block = block_size >> PAGE_SHIFT
        #: memory_blocks (the xarray of block devices), by block id.
        self.blocks: XArray[MemoryBlock] = XArray()
        #: mem->nid of the boot blocks not built yet (-1: see _early_mixed), by block id.
        self._early_nid: list[int] = []
        self._early_mixed: dict[int, set[int]] = {}
        #: Memory blocks per node id (mem->nid), so that node checks never scan all blocks.
        self.node_blocks: dict[int, int] = {}
        self.chain = MemoryChain()
        #: memory_groups (the xarray), by memory group id.
        self.groups: dict[int, MemoryGroup] = {}
        #: Errors injected into the next notifier calls (memory-notifier-error-inject).
        self.notifier_error_inject: dict[MemAction, int] = {}

    def memory_notify(self, action: MemAction, arg: MemoryNotify) -> int:
        """memory_notify(): the chain, with memory-notifier-error-inject in front.

        lib/memory-notifier-error-inject.c registers a notifier at the highest
        priority that returns the errno set in debugfs for an action, on every call
        until it is set back to 0.
        """
        inj = self.notifier_error_inject.get(action, 0)
        if inj:
            return inj
        return self.chain.call(action, arg)

    def blocks_in_range(self, start: int, size: int) -> list[MemoryBlock]:
        """find_memory_block() of each block of [start, start + size) that exists."""
        first = start // self.block_size
        last = (start + size - 1) // self.block_size
        return [self.blocks[b] for b in range(first, last + 1) if b in self.blocks]

    def node_block_ids(self, nid: int) -> list[int]:
        """The blocks linked under node ``nid`` (register_memory_block_under_node()),
        in block order; builds no block object."""
        en, mixed = self._early_nid, self._early_mixed
        out = []
        for bid, m in self.blocks.raw_items():
            if m is not None:
                if nid in m.nodes:
                    out.append(bid)
            elif en[bid] == nid or (en[bid] == NUMA_NO_NODE and nid in mixed[bid]):
                out.append(bid)
        return out

    def _register(self, mem: MemoryBlock) -> None:
        """__add_memory_block() -> device_register()."""
        self.blocks[mem.id] = mem
        self.node_blocks[mem.nid] = self.node_blocks.get(mem.nid, 0) + 1
        self.k.objects.emit("memory_block", mem.id, True)

    def _unregister(self, bid: int) -> None:
        """remove_memory_block() -> device_unregister()."""
        mem = self.blocks.pop(bid)
        self.node_blocks[mem.nid] -= 1
        self.k.objects.emit("memory_block", bid, False)

    def memory_dev_init(self) -> None:
        """memory_dev_init(): one block device per present block, online.

        A block's zone is set only when all of it lies in one zone of one node
        (early_node_zone_for_memory_block()); otherwise it cannot be offlined.
        The per-block facts are computed for all blocks at once (numpy); the block
        objects are built on first access (:class:`~memhp.kernel.lib.xarray.XArray`).
        """
        k = self.k
        spb = self.sections_per_block
        present = k.sparse.present.reshape(-1, spb)
        bids = np.flatnonzero(present.any(axis=1))
        pres = present[bids]
        nids = np.where(k.sparse.present, k.pa.nid, -1).reshape(-1, spb)[bids]
        first = nids[np.arange(len(bids)), pres.argmax(axis=1)]
        mixed = ((nids != first[:, None]) & pres).any(axis=1)
        ppb = self.pages_per_block
        pfn0 = bids * ppb
        nhit = np.zeros(len(bids), np.int64)
        zone = np.full(len(bids), -1, np.int64)
        for nid, p in k.pgdats.items():
            for z in p.node_zones:
                if not z.is_empty():
                    hit = (first == nid) & (pfn0 < z.zone_end_pfn) & (z.zone_start_pfn < pfn0 + ppb)
                    nhit += hit
                    zone[hit] = z.idx
        zone[(nhit != 1) | mixed] = -1
        zones: dict[int, ZoneType | None] = {-1: None}
        zones.update({int(x): ZoneType(x) for x in np.unique(zone) if x >= 0})
        mem_nid = np.where(mixed, NUMA_NO_NODE, first)
        mixed_nodes = {
            int(bids[j]): {int(x) for x in np.unique(nids[j][pres[j]])}
            for j in np.flatnonzero(mixed)
        }
        size = int(bids[-1]) + 1 if len(bids) else 0
        nid_of, zone_of = [0] * size, [-1] * size
        for bid, nid, zi in zip(bids.tolist(), mem_nid.tolist(), zone.tolist(), strict=True):
            nid_of[bid], zone_of[bid] = nid, zi
        make = _EarlyBlock(spb, nid_of, zone_of, zones, mixed_nodes)
        self.blocks.store_lazy(bids.tolist(), make)
        self._early_nid, self._early_mixed = nid_of, mixed_nodes
        for nid in mem_nid.tolist():  # __add_memory_block(): the per-node counts
            self.node_blocks[nid] = self.node_blocks.get(nid, 0) + 1
        for bid in bids.tolist():
            self.k.objects.emit("memory_block", bid, True)

    def create_memory_block_devices(
        self, start: int, size: int, vmemmap_pages: int, nid: int, group: MemoryGroup | None = None
    ) -> list[MemoryBlock]:
        """create_memory_block_devices(): offline blocks for a hot-added range, in ``group``."""
        out = []
        for bid in range(start // self.block_size, (start + size) // self.block_size):
            mem = MemoryBlock(
                bid,
                bid * self.sections_per_block,
                MemState.MEM_OFFLINE,
                nid,
                nr_vmemmap_pages=vmemmap_pages,
                group=group,
            )
            if group is not None:
                group.memory_blocks.append(bid)
            self._register(mem)
            out.append(mem)
        self.k.log(
            "create_memory_block_devices",
            f"memory{out[0].id}..memory{out[-1].id} created (offline)"
            if len(out) > 1
            else f"memory{out[0].id} created (offline)",
        )
        return out

    def remove_memory_block_devices(self, start: int, size: int) -> None:
        """remove_memory_block_devices(): unregister blocks and their node links."""
        ids = [m.id for m in self.blocks_in_range(start, size)]
        for bid in ids:
            group = self.blocks[bid].group
            if group is not None:  # remove_memory_block(): list_del(&mem->group_next)
                group.memory_blocks.remove(bid)
            self._unregister(bid)
        if ids:
            self.k.log("remove_memory_block_devices", f"memory{ids[0]}..memory{ids[-1]} removed")


# ================================================================ online / offline
def memory_block_online(k: Kernel, mem: MemoryBlock) -> int:
    """memory_block_online(): zone_for_pfn_range(), online_pages() of the block
    after its vmemmap pages, then the vmemmap pages join the zone (mem->zone set)."""
    from memhp.kernel.mm import memory_hotplug as mh

    if k.profile.online_refuses_hwpoison and mem.nr_hwpoison:
        return -EHWPOISON  # memblk_nr_poison() (6.2+)
    start_pfn = section_nr_to_pfn(mem.start_section_nr)
    nr_pages = k.memory.pages_per_block
    zone = mh.zone_for_pfn_range(k, mem.online_type, mem.nid, start_pfn, nr_pages, mem.group)
    vm = mem.nr_vmemmap_pages
    ret = mh.online_pages(k, start_pfn + vm, nr_pages - vm, zone)
    if ret:
        return ret
    if vm:
        # The altmap pages belong to the block's zone once it is online.
        zone.present_pages += vm
        mh.move_pfn_range_to_zone(k, zone, start_pfn, vm)
    adjust_present_page_count(k, mem, zone.nid, zone.idx, nr_pages)
    mem.zone = zone.idx
    k.log("online", f"{mem.name} online in {zone.name} (node {zone.nid})")
    return 0


def memory_block_offline(k: Kernel, mem: MemoryBlock) -> int:
    """memory_block_offline(): offline_pages() of the block's zone.

    6.1 (``profile.block_zone_tracking``) offlines ``mem->zone``, the zone the
    block was onlined to; a block without one (it spans zones or nodes) cannot be
    offlined (-EINVAL).  3.8 has no mem->zone: memory_block_action() hands the
    range to offline_pages(), which finds the zone from the first page
    (page_zone()) and refuses a range in several zones (test_pages_in_a_zone()).
    """
    from memhp.kernel.mm import memory_hotplug as mh

    if mem.zone is None:
        # 6.1: no mem->zone; 3.8: test_pages_in_a_zone() fails (same errno).
        k.hotplug.last_offline_failure = mh.OfflineFailure(
            mem.id, "block spans zones or nodes", errno.EINVAL, []
        )
        return -errno.EINVAL
    start_pfn = section_nr_to_pfn(mem.start_section_nr)
    vm = mem.nr_vmemmap_pages
    if k.profile.block_zone_tracking:
        zone = k.pgdats[mem.nid].zone(mem.zone)
    else:
        sec = mem.start_section_nr
        zone = k.pgdats[int(k.pa.nid[sec])].zone(ZoneType(int(k.pa.zone[sec])))
    if vm:
        zone.present_pages -= vm
    ret = mh.offline_pages(k, start_pfn + vm, k.memory.pages_per_block - vm, zone, mem.id)
    if ret:
        if vm:
            zone.present_pages += vm
        return ret
    if vm and k.profile.shrink_spans_on_offline:
        mh.remove_pfn_range_from_zone(k, zone, start_pfn, vm)
    adjust_present_page_count(k, mem, zone.nid, zone.idx, -k.memory.pages_per_block)
    mem.zone = None
    k.log("offline", f"{mem.name} offline")
    return 0


def adjust_present_page_count(
    k: Kernel, mem: MemoryBlock, nid: int, zidx: ZoneType, nr_pages: int
) -> None:
    """adjust_present_page_count() (mm/memory_hotplug.c), the part beyond
    zone->present_pages: the present pages of hot-added (not early) sections per
    zone, from which present_early_pages follows, and the group's kernel/movable
    pages.  Called for the whole block (vmemmap pages included), as 6.1 does."""
    if not mem.early:
        key = (nid, int(zidx))
        k.hotplug.hotplug_present[key] = k.hotplug.hotplug_present.get(key, 0) + nr_pages
    if mem.group is not None:
        if zidx is ZoneType.MOVABLE:
            mem.group.present_movable_pages += nr_pages
        else:
            mem.group.present_kernel_pages += nr_pages


def memory_block_change_state(k: Kernel, mem: MemoryBlock, to: MemState, frm: MemState) -> int:
    """memory_block_change_state(): 0 or a negative errno."""
    if mem.state is not frm:
        return -errno.EINVAL
    if to is MemState.MEM_OFFLINE:
        mem.state = MemState.MEM_GOING_OFFLINE
    change = memory_block_online if to is MemState.MEM_ONLINE else memory_block_offline
    ret = change(k, mem)
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


# ================================================================ attributes
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


def online_store(k: Kernel, mem: MemoryBlock, online: bool) -> int:
    """online_store() of drivers/base/core.c after kstrtobool: device_online/offline,
    "already in that state" is success."""
    ret = device_online(k, mem) if online else device_offline(k, mem)
    return ret if ret < 0 else 0


def removable_show(k: Kernel, mem: MemoryBlock) -> bool:
    """removable_show(): always 1 in 6.1; 3.8's is_mem_section_removable() heuristic
    (no pageblock holds unmovable or reserved pages)."""
    if not k.profile.removable_heuristic:
        return True
    if mem.state is not MemState.MEM_ONLINE:
        return True
    spb = k.memory.sections_per_block
    for sec in range(mem.start_section_nr, mem.start_section_nr + spb):
        c = k.pa.counts[:, sec]
        if c[PageState.UNMOVABLE] or c[PageState.RESERVED] or c[PageState.PINNED]:
            return False
    return True


def valid_zones_show(k: Kernel, mem: MemoryBlock) -> list[str] | None:
    """valid_zones_show(): zone names, default first; None for "none"."""
    from memhp.kernel.mm import memory_hotplug as mh

    start_pfn = section_nr_to_pfn(mem.start_section_nr)
    nr = k.memory.pages_per_block
    if mem.state is MemState.MEM_ONLINE:
        if mem.zone is None:
            return None
        return [k.pgdats[mem.nid].zone(mem.zone).name]
    default = mh.zone_for_pfn_range(k, MMOP.MMOP_ONLINE, mem.nid, start_pfn, nr, mem.group)
    names = [default.name]
    for t in (MMOP.MMOP_ONLINE_KERNEL, MMOP.MMOP_ONLINE_MOVABLE):
        z = mh.zone_for_pfn_range(k, t, mem.nid, start_pfn, nr, mem.group)
        if z is not default:
            names.append(z.name)
    return names


def auto_online_blocks_store(k: Kernel, online_type: MMOP) -> int:
    """auto_online_blocks_store() after parsing: the default online type of new memory."""
    k.hotplug.mhp_default_online_type = online_type
    return 0


def probe_store(k: Kernel, addr: int) -> int:
    """probe_store() after parsing: add one block at ``addr``, no ACPI device.

    The ``probe`` interface (CONFIG_ARCH_MEMORY_PROBE) tells the kernel that
    memory exists there, whether or not the platform has any: a testing aid.
    """
    from memhp.kernel.arch.x86.mm.numa import memory_add_physaddr_to_nid
    from memhp.kernel.mm import memory_hotplug as mh

    if addr % k.memory.block_size:
        return -errno.EINVAL
    nid = memory_add_physaddr_to_nid(k, addr)
    return mh.add_memory(k, nid, addr, k.memory.block_size)


# ================================================================ memory groups
def memory_group_register(k: Kernel, group: MemoryGroup) -> int:
    """memory_group_register(): the lowest free id (xa_alloc), or -EINVAL."""
    if group.nid not in k.nodes.node_states["N_POSSIBLE"]:
        return -errno.EINVAL
    groups = k.memory.groups
    group.mgid = next(i for i in range(len(groups) + 1) if i not in groups)
    groups[group.mgid] = group
    return group.mgid


def memory_group_register_static(k: Kernel, nid: int, max_pages: int) -> int:
    """memory_group_register_static(): all of a unit (a DIMM) added and removed at once."""
    if not max_pages:
        return -errno.EINVAL
    return memory_group_register(k, MemoryGroup(-1, nid, max_pages=max_pages))


def memory_group_register_dynamic(k: Kernel, nid: int, unit_pages: int) -> int:
    """memory_group_register_dynamic(): memory added and removed in ``unit_pages``."""
    if (
        not unit_pages
        or unit_pages & (unit_pages - 1)
        or unit_pages < k.memory.block_size >> PAGE_SHIFT
    ):
        return -errno.EINVAL
    return memory_group_register(k, MemoryGroup(-1, nid, True, unit_pages=unit_pages))


def memory_group_unregister(k: Kernel, mgid: int) -> int:
    """memory_group_unregister(): -EINVAL for an unknown id, -EBUSY while it has blocks."""
    group = k.memory.groups.get(mgid) if mgid >= 0 else None
    if group is None:
        return -errno.EINVAL
    if group.memory_blocks:
        return -errno.EBUSY
    del k.memory.groups[mgid]
    return 0


def memory_group_find_by_id(k: Kernel, mgid: int) -> MemoryGroup | None:
    """memory_group_find_by_id()."""
    return k.memory.groups.get(mgid)


def walk_dynamic_memory_groups(
    k: Kernel, nid: int, excluded: MemoryGroup | None
) -> list[MemoryGroup]:
    """walk_dynamic_memory_groups(): the dynamic groups of ``nid`` (any node for
    NUMA_NO_NODE) except ``excluded``, in id order."""
    return [
        g
        for _, g in sorted(k.memory.groups.items())
        if g.is_dynamic and g is not excluded and (nid == NUMA_NO_NODE or g.nid == nid)
    ]
