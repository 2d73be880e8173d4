"""The mm side of memory hotplug (mm/memory_hotplug.c).

Functions are named after the kernel functions they model, take the Kernel (the kernel's
globals) first and return 0 or a negative errno, as the kernel does; nothing does I/O.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from memhp.abi.layout import (
    PAGE_SHIFT,
    PAGEBLOCK_NR_PAGES,
    PAGES_PER_SECTION,
    PMD_SIZE,
    STRUCT_PAGE_SIZE,
    pfn_to_section_nr,
    section_nr_to_pfn,
)
from memhp.abi.params import ONLINE_POLICIES
from memhp.kernel.drivers.acpi.numa.srat import NUMA_NO_NODE
from memhp.kernel.drivers.base.memory import (
    MMOP,
    ONLINE_TYPE_TO_STR,
    MemAction,
    MemoryBlock,
    MemoryNotify,
    MemState,
    device_offline,
    device_online,
    memory_group_find_by_id,
)
from memhp.kernel.mm.memory_hotplug_zones import (
    auto_movable_zone_for_pfn,
    default_kernel_zone_for_pfn,
    default_zone_for_pfn,
    zone_for_pfn_range,
)
from memhp.kernel.mm.migrate import MIGRATE_PAGE_COST_S, migrate_sections, offline_target_args
from memhp.kernel.mm.mmzone import PGDAT_PAGES, Zone, ZoneType
from memhp.kernel.mm.page_alloc import AllocError, PageState
from memhp.kernel.mm.page_isolation import start_isolate_page_range, undo_isolate_page_range

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel
    from memhp.kernel.machine import MachineSpec

#: The zone choice lives in memory_hotplug_zones (this file's size); callers use mh.*.
__all__ = [
    "auto_movable_zone_for_pfn",
    "default_kernel_zone_for_pfn",
    "default_zone_for_pfn",
    "zone_for_pfn_range",
]


class OfflineFailure:
    """Why the last offline_pages() failed (for diagnosis), kept on ``k.hotplug``."""

    def __init__(self, block: int, reason: str, errno_: int, owners: list[str]) -> None:
        self.block = block
        self.reason = reason
        self.errno = errno_
        self.owners = owners

    def __repr__(self) -> str:
        return f"OfflineFailure(memory{self.block}, {self.reason}, {self.errno}, {self.owners})"


class MemoryHotplug:
    """The globals and parameters of mm/memory_hotplug.c, and the model's timing knobs."""

    def __init__(self, spec: MachineSpec) -> None:
        #: movable_node (kernel command line): hotpluggable memory is ZONE_MOVABLE.
        self.movable_node = spec.movable_node
        #: memory_hotplug.memmap_on_memory (module parameter).
        self.memmap_on_memory = spec.memmap_on_memory
        #: mhp_default_online_type (auto_online_blocks, memhp_default_state=).
        self.mhp_default_online_type = MMOP(
            list(ONLINE_TYPE_TO_STR.values()).index(spec.auto_online_blocks)
        )
        #: Simulated time migrating one page costs.
        self.migrate_page_cost_s = MIGRATE_PAGE_COST_S
        #: Simulated time one failed migration round costs (the loop's cond_resched/yield).
        self.migrate_retry_cost_s = 0.01
        #: In 6.1, a writer blocked in offline_pages() gets a signal after this long
        #: (when no :attr:`retry_wait` is installed).
        self.signal_after_s = 120.0
        #: The writing task as a 6.1 offline_pages() sees it between two failed
        #: migration rounds (its cond_resched() and signal_pending(current) check):
        #: called once per failed round, it may let other actors run (free or
        #: unpin pages: the next round sees it) and returns True when the writer
        #: has a signal pending, which ends the offline with -EINTR ("signal
        #: backoff").  A FUSE server installs one that waits until the writing
        #: process is interrupted; in-process callers install their own
        #: cancellation hook.  None: the writer gets a signal after
        #: ``signal_after_s`` of simulated time.
        self.retry_wait: Callable[[], bool] | None = None
        self.last_offline_failure: OfflineFailure | None = None
        #: online_page_callback (set_online_page_callback()): online_pages_range()'s
        #: (pfn, nr_pages), once the pages reached the buddy here and before they count
        #: as managed; None: generic_online_page() (virtio_mem keeps some pages out).
        self.online_page_callback: Callable[[int, int], None] | None = None
        #: online_policy (index into ONLINE_POLICIES), auto_movable_ratio (uint),
        #: auto_movable_numa_aware: module parameters, also on the command line.
        self.online_policy = ONLINE_POLICIES.index(spec.online_policy)
        self.auto_movable_ratio = spec.auto_movable_ratio
        self.auto_movable_numa_aware = spec.auto_movable_numa_aware
        #: Present pages of hot-added (not early) memory per (nid, zone index);
        #: zone->present_early_pages is present_pages minus these.
        self.hotplug_present: dict[tuple[int, int], int] = {}


# ----------------------------------------------------------------- nodes
def hotadd_init_pgdat(k: Kernel, nid: int) -> int:
    """__try_online_node() -> hotadd_init_pgdat(): (re)initialise the pgdat of a node
    coming online.

    6.1 keeps every possible node's pgdat from boot.  In the 3.8 profile the
    pgdat is allocated from kernel memory the first time (arch_alloc_nodedata)
    and kept, reset, when the node goes offline (seed patches 14 and 15).
    """
    pgdat = k.pgdats[nid]
    if not k.profile.pgdat_preallocated and pgdat.allocation is None:
        try:
            (a,) = k.pa.alloc(
                PGDAT_PAGES, PageState.UNMOVABLE, f"pgdat of node {nid}", "pgdat", nid
            )
        except AllocError:
            return -errno.ENOMEM
        pgdat.allocation = a.id
        k.log("hotadd_new_pgdat", f"pgdat of node {nid} allocated ({PGDAT_PAGES} pages)")
    elif pgdat.init_count:
        k.log("hotadd_new_pgdat", f"pgdat of node {nid} reused (reset)")
    pgdat.reset()
    return 0


def rollback_node_hotadd(k: Kernel, nid: int) -> None:
    """rollback_node_hotadd(): undo a pgdat allocated for a failed hot-add."""
    pgdat = k.pgdats[nid]
    if pgdat.allocation is not None and pgdat.init_count == 1:
        k.pa.free(k.pa.allocs[pgdat.allocation])
        pgdat.allocation = None
        pgdat.init_count = 0


# ----------------------------------------------------------------- spans
def move_pfn_range_to_zone(k: Kernel, zone: Zone, start_pfn: int, nr_pages: int) -> None:
    """move_pfn_range_to_zone(): grow zone and node spans, tag the sections' zone."""
    pgdat = k.pgdats[zone.nid]
    zone.resize_range(start_pfn, nr_pages)
    pgdat.update_span()


def _section_in_zone(k: Kernel, sec: int, zone: Zone) -> bool:
    return bool(
        k.sparse.online[sec] and k.pa.zone[sec] == int(zone.idx) and k.pa.nid[sec] == zone.nid
    )


def shrink_zone_span(k: Kernel, zone: Zone, start_pfn: int, end_pfn: int) -> None:
    """shrink_zone_span(): drop [start, end) from either edge of the zone span.

    The new edge is the next online section of the zone (find_smallest_section_pfn /
    find_biggest_section_pfn); a range in the middle leaves the span alone.
    """
    if zone.is_empty():
        return
    s_first = pfn_to_section_nr(zone.zone_start_pfn)
    s_last = pfn_to_section_nr(zone.zone_end_pfn - 1)
    if zone.zone_start_pfn == start_pfn:
        for sec in range(pfn_to_section_nr(end_pfn), s_last + 1):
            if _section_in_zone(k, sec, zone):
                pfn = section_nr_to_pfn(sec)
                zone.spanned_pages = zone.zone_end_pfn - pfn
                zone.zone_start_pfn = pfn
                return
        zone.zone_start_pfn = zone.spanned_pages = 0
    elif zone.zone_end_pfn == end_pfn:
        for sec in range(pfn_to_section_nr(start_pfn) - 1, s_first - 1, -1):
            if _section_in_zone(k, sec, zone):
                zone.spanned_pages = section_nr_to_pfn(sec + 1) - zone.zone_start_pfn
                return
        zone.zone_start_pfn = zone.spanned_pages = 0


def shrink_spans_for_removal(k: Kernel, sec: int) -> None:
    """3.8 __remove_section() -> __remove_zone(): shrink the zone spanning a removed section."""
    nid = int(k.pa.nid[sec])
    if nid < 0:
        return
    pfn = section_nr_to_pfn(sec)
    for zone in k.pgdats[nid].node_zones:
        if zone.spans(pfn):
            shrink_zone_span(k, zone, pfn, pfn + PAGES_PER_SECTION)
    k.pgdats[nid].update_span()


def remove_pfn_range_from_zone(k: Kernel, zone: Zone, start_pfn: int, nr_pages: int) -> None:
    """remove_pfn_range_from_zone(): shrink the zone span, then update_pgdat_span()."""
    shrink_zone_span(k, zone, start_pfn, start_pfn + nr_pages)
    k.pgdats[zone.nid].update_span()


# ----------------------------------------------------------------- node states
def _status_change_online(k: Kernel, zone: Zone) -> tuple[int, int]:
    """node_states_check_changes_online()."""
    nid = zone.nid
    change = nid if nid not in k.nodes.node_states["N_MEMORY"] else NUMA_NO_NODE
    change_normal = NUMA_NO_NODE
    if zone.idx <= ZoneType.NORMAL and nid not in k.nodes.node_states["N_NORMAL_MEMORY"]:
        change_normal = nid
    return change, change_normal


def _status_change_offline(k: Kernel, zone: Zone, nr_pages: int) -> tuple[int, int]:
    """node_states_check_changes_offline()."""
    pgdat = k.pgdats[zone.nid]
    present = sum(
        pgdat.zone(z).present_pages for z in (ZoneType.DMA, ZoneType.DMA32, ZoneType.NORMAL)
    )
    change_normal = NUMA_NO_NODE
    if zone.idx <= ZoneType.NORMAL and nr_pages >= present:
        change_normal = zone.nid
    present += pgdat.zone(ZoneType.MOVABLE).present_pages
    change = zone.nid if nr_pages >= present else NUMA_NO_NODE
    return change, change_normal


# ----------------------------------------------------------------- online
def online_pages(k: Kernel, pfn: int, nr_pages: int, zone: Zone) -> int:
    """online_pages(): move the range to ``zone``, notify, hand its pages to the buddy."""
    if nr_pages <= 0 or pfn % PAGEBLOCK_NR_PAGES or (pfn + nr_pages) % PAGES_PER_SECTION:
        return -errno.EINVAL
    nid = zone.nid
    pgdat = k.pgdats[nid]
    saved_span = (
        zone.zone_start_pfn,
        zone.spanned_pages,
        pgdat.node_start_pfn,
        pgdat.node_spanned_pages,
    )
    move_pfn_range_to_zone(k, zone, pfn, nr_pages)
    change, change_normal = _status_change_online(k, zone)
    arg = MemoryNotify(pfn, nr_pages, nid, change, change_normal)
    ret = k.memory.memory_notify(MemAction.MEM_GOING_ONLINE, arg)
    if ret:
        k.memory.memory_notify(MemAction.MEM_CANCEL_ONLINE, arg)
        if k.profile.shrink_spans_on_offline:
            remove_pfn_range_from_zone(k, zone, pfn, nr_pages)
        else:
            # 3.8 set the spans when the memory was added, not here: nothing to undo.
            (
                zone.zone_start_pfn,
                zone.spanned_pages,
                pgdat.node_start_pfn,
                pgdat.node_spanned_pages,
            ) = saved_span
        k.log(
            "online_pages",
            f"[mem {pfn << PAGE_SHIFT:#012x}-"
            f"{((pfn + nr_pages) << PAGE_SHIFT) - 1:#012x}] failed: notifier {ret}",
        )
        return ret
    # online_pages_range(): sections online, pages to the buddy allocator.
    first = pfn_to_section_nr(pfn)
    last = pfn_to_section_nr(pfn + nr_pages - 1)
    k.sparse.set_online(range(first, last + 1), True)
    k.pa.section_online(first, last + 1, nid, zone.idx)
    if (callback := k.hotplug.online_page_callback) is not None:
        callback(pfn, nr_pages)
    # adjust_present_page_count() and the managed pages the buddy now holds.
    zone.present_pages += nr_pages
    zone.managed_pages += nr_pages
    if change >= 0:
        k.nodes.node_states["N_MEMORY"].add(nid)
    if change_normal >= 0:
        k.nodes.node_states["N_NORMAL_MEMORY"].add(nid)
    k.pa.init_per_zone_wmark_min()
    k.memory.memory_notify(MemAction.MEM_ONLINE, arg)
    return 0


# ----------------------------------------------------------------- offline
def _unmovable_owners(k: Kernel, secs: range, zone: Zone) -> list[str]:
    """has_unmovable_pages(): owners of pages isolation refuses (none in ZONE_MOVABLE)."""
    if zone.idx is ZoneType.MOVABLE:
        return []
    out: list[str] = []
    for a, sec, n in k.pa.owners_in(secs):
        if a.kind in ("hwpoison", "offline"):
            continue  # HWPoison and PageOffline pages are skipped by offlining
        if a.state in (PageState.UNMOVABLE, PageState.RESERVED):
            out.append(f"{a.owner} ({n} pages in section {sec})")
    return out


def offline_pages(k: Kernel, start_pfn: int, nr_pages: int, zone: Zone, block: int) -> int:
    """offline_pages(): isolate, notify, migrate, dissolve free huge pages, check,
    take out of the buddy.  In 6.1 the migration loop never gives up by itself: a
    range whose pages cannot be migrated keeps the writer in the kernel until it gets
    a signal (``signal_pending(current)`` -> -EINTR, "signal backoff"); each round is
    a call of :attr:`MemoryHotplug.retry_wait`.  The 3.8 profile gives up after
    ``offline_migrate_retry_max`` failed migrations (-EBUSY) or ``offline_timeout_s``
    (-EAGAIN), in simulated time."""
    end_pfn = start_pfn + nr_pages
    first, last = pfn_to_section_nr(start_pfn), pfn_to_section_nr(end_pfn - 1)
    secs = range(first, last + 1)
    prof = k.profile

    def fail(reason: str, err: int, owners: list[str] | None = None) -> int:
        k.hotplug.last_offline_failure = OfflineFailure(block, reason, err, owners or [])
        k.log(
            "offline_pages",
            f"memory{block} offlining failed due to {reason}"
            + (f": {owners[0]}" if owners else ""),
        )
        return -err

    if nr_pages <= 0 or start_pfn % PAGEBLOCK_NR_PAGES or end_pfn % PAGES_PER_SECTION:
        return fail("misaligned range", errno.EINVAL)
    pa = k.pa
    span = slice(first, last + 1)  # walk_system_ram_range(): no holes.
    if sum(pa.ram[span].tolist()) - sum(pa.counts[PageState.ALTMAP, span].tolist()) != nr_pages:
        return fail("memory holes", errno.EINVAL)
    if set(pa.zone[span].tolist()) != {int(zone.idx)} or set(pa.nid[span].tolist()) != {zone.nid}:
        return fail("multizone range", errno.EINVAL)
    # start_isolate_page_range() -> has_unmovable_pages().
    owners = _unmovable_owners(k, secs, zone)
    if owners:
        return fail("failure to isolate range", errno.EBUSY, owners)
    start_isolate_page_range(k.pa, secs)
    change, change_normal = _status_change_offline(k, zone, nr_pages)
    arg = MemoryNotify(start_pfn, nr_pages, zone.nid, change, change_normal)

    def undo(reason: str, err: int, owners_: list[str] | None = None) -> int:
        undo_isolate_page_range(k.pa, secs)
        k.memory.memory_notify(MemAction.MEM_CANCEL_OFFLINE, arg)
        return fail(reason, err, owners_)

    ret = k.memory.memory_notify(MemAction.MEM_GOING_OFFLINE, arg)
    if ret:
        return undo("notifier failure", -ret)
    # The migration loop: scan_movable_pages() + do_migrate_range(), repeated.
    start_clock = k.clock
    retries = 0
    while True:
        failed = 0
        for moved, f in migrate_sections(k.pa, secs, *offline_target_args(k), hugetlb=False):
            k.clock += moved * k.hotplug.migrate_page_cost_s
            failed += f
        if prof.dissolve_free_huge_pages:
            k.hugetlb.dissolve_free_huge_pages(secs)
        held = list(pa.owners_in(secs))
        leftovers = [
            f"{a.owner} ({n} pages in section {s})"
            for a, s, n in held
            if a.state not in (PageState.FREE, PageState.ALTMAP) and a.kind != "hwpoison"
        ]
        if not leftovers:
            break
        # Something could not be migrated (pinned, no room) or is not movable at all.
        retries += 1
        k.clock += k.hotplug.migrate_retry_cost_s
        if prof.offline_migrate_retry_max is not None and failed:
            if retries >= prof.offline_migrate_retry_max:
                return undo("migration failure", errno.EBUSY, leftovers)
            continue
        if prof.offline_timeout_s is not None:
            # 3.8: the loop gives up after the timeout with -EAGAIN.
            k.clock = max(k.clock, start_clock + prof.offline_timeout_s)
            return undo("timeout", errno.EAGAIN, leftovers)
        # 6.1: retried until the writer gets a signal (the do { ... } while loop
        # checks signal_pending(current) first thing in each round).
        wait = k.hotplug.retry_wait
        if wait is None:
            k.clock = max(k.clock, start_clock + k.hotplug.signal_after_s)
            return undo("signal backoff", errno.EINTR, leftovers)
        if wait():
            return undo("signal backoff", errno.EINTR, leftovers)
    # __offline_isolated_pages(): sections offline, free pages leave the buddy;
    # poisoned pages (of the last round's owners) are dropped with them.
    for a, sec, n in [x for x in held if x[0].kind == "hwpoison"]:
        pa.free(a, sec, n)
    k.pa.section_offline(secs.start, secs.stop)
    k.sparse.set_online(secs, False)
    zone.managed_pages -= nr_pages
    zone.present_pages -= nr_pages
    k.pa.init_per_zone_wmark_min()
    if change_normal >= 0:
        k.nodes.node_states["N_NORMAL_MEMORY"].discard(zone.nid)
    if change >= 0:
        k.nodes.node_states["N_MEMORY"].discard(zone.nid)
    k.memory.memory_notify(MemAction.MEM_OFFLINE, arg)
    if prof.shrink_spans_on_offline:
        remove_pfn_range_from_zone(k, zone, start_pfn, nr_pages)
    return 0


# ----------------------------------------------------------------- add
def check_hotplug_memory_range(k: Kernel, start: int, size: int) -> int:
    """check_hotplug_memory_range(): block-size aligned, non-empty."""
    bs = k.memory.block_size
    if not size or start % bs or size % bs:
        return -errno.EINVAL
    return 0


def altmap_pages_per_block(k: Kernel) -> int:
    """Pages of per-block metadata kept in the block itself with memmap-on-memory.

    The memmap (64 bytes per page) and, where the profile allocates it, the
    page_cgroup table (16 bytes per page), rounded up to whole pageblocks.
    """
    per_page = STRUCT_PAGE_SIZE
    if k.profile.page_cgroup_bytes_per_page and k.spec.memcg:
        per_page += k.profile.page_cgroup_bytes_per_page
    nbytes = k.memory.pages_per_block * per_page
    pb = PAGEBLOCK_NR_PAGES << PAGE_SHIFT
    return -(-nbytes // pb) * pb >> PAGE_SHIFT


def mhp_supports_memmap_on_memory(k: Kernel, size: int) -> bool:
    """mhp_supports_memmap_on_memory(): the vmemmap fills whole PMDs and, in 6.1,
    the range is exactly one memory block."""
    vmemmap = (size >> PAGE_SHIFT) * STRUCT_PAGE_SIZE
    remaining = size - vmemmap
    if not k.hotplug.memmap_on_memory:
        return False
    if k.profile.memmap_on_memory_any_size:
        return size % k.memory.block_size == 0
    return (
        size == k.memory.block_size
        and vmemmap % PMD_SIZE == 0
        and remaining % (PAGEBLOCK_NR_PAGES << PAGE_SHIFT) == 0
    )


def add_memory(
    k: Kernel,
    nid: int,
    start: int,
    size: int,
    memmap_on_memory: bool = False,
    mgid: bool = False,
    merge_resource: bool = False,
    resource_name: str = "System RAM",
) -> int:
    """__add_memory() -> add_memory_resource(): sections, blocks, node, firmware entry.
    With ``mgid`` (MHP_NID_IS_MGID) ``nid`` is a memory group id; ``merge_resource``:
    MHP_MERGE_RESOURCE; a name other than "System RAM": no firmware_map_add_hotplug()."""
    group = memory_group_find_by_id(k, nid) if mgid else None
    if mgid:
        if group is None:
            return -errno.EINVAL
        nid = group.nid
    ret = check_hotplug_memory_range(k, start, size)
    if ret:
        return ret
    if nid not in k.nodes.node_states["N_POSSIBLE"]:
        return -errno.EINVAL
    # register_memory_resource(): the range must not overlap System RAM.
    first = start >> (PAGE_SHIFT + 15)
    last = (start + size - 1) >> (PAGE_SHIFT + 15)
    if last >= k.nr_sections:
        return -errno.E2BIG
    if k.sparse.present[first : last + 1].any() or not k.iomem.region_available(start, size):
        return -errno.EEXIST
    for e in k.spec.e820:  # other iomem resources of the firmware map
        if e.start < start + size and start < e.end:
            return -errno.EEXIST
    new_node = False
    if nid not in k.nodes.node_states["N_ONLINE"]:
        ret = hotadd_init_pgdat(k, nid)
        if ret:
            return ret
        new_node = True
    altmap_pages = 0
    if memmap_on_memory:
        if not mhp_supports_memmap_on_memory(k, size):
            return -errno.EINVAL
        altmap_pages = altmap_pages_per_block(k)
    ret = k.sparse.arch_add_memory(k, nid, first, last + 1, altmap_pages)
    if ret:
        if new_node:
            rollback_node_hotadd(k, nid)
        return ret
    k.iomem.register_memory_resource(start, size, resource_name, merge_resource)  # checked
    blocks = k.memory.create_memory_block_devices(start, size, altmap_pages, nid, group)
    if new_node:
        k.nodes.node_set_online(nid)
        k.nodes.register_one_node(nid)
    for mem in blocks:
        mem.nodes.add(nid)
    if resource_name == "System RAM":  # add_memory_resource(): no entry when driver managed
        entry = k.fwmap.firmware_map_add_hotplug(start, start + size, "System RAM")
        k.log(
            "firmware_map_add_hotplug",
            f"/sys/firmware/memmap/{entry.index}: {entry.start:#x}-{entry.end:#x} {entry.type}",
        )
    if k.hotplug.mhp_default_online_type is not MMOP.MMOP_OFFLINE:
        for mem in blocks:
            mem.online_type = k.hotplug.mhp_default_online_type
            device_online(k, mem)
    return 0


# ----------------------------------------------------------------- remove
def try_offline_node(k: Kernel, nid: int) -> None:
    """try_offline_node(): offline and unregister a node left without memory and CPUs."""
    pgdat = k.pgdats[nid]
    if k.nodes.cpus_of(nid):
        return  # check_cpu_on_node()
    if k.profile.shrink_spans_on_offline:
        if pgdat.node_spanned_pages:
            return
    elif k.sparse.present_sections_of(k, nid):
        return  # 3.8: any present section of the node keeps it
    # check_no_memblock_for_node_cb() over all blocks, kept as a per-node count.
    if k.memory.node_blocks.get(nid, 0):
        return
    k.nodes.node_set_offline(nid)
    k.nodes.unregister_one_node(nid)


def try_remove_memory(k: Kernel, start: int, size: int) -> int:
    """try_remove_memory(): every block offline, then tear everything down."""
    ret = check_hotplug_memory_range(k, start, size)
    if ret:
        return ret
    blocks = k.memory.blocks_in_range(start, size)
    nid = NUMA_NO_NODE
    for mem in blocks:
        nid = mem.nid
        if mem.state is not MemState.MEM_OFFLINE:
            k.log("remove_memory", f"removing memory fails, because {mem.name} is onlined")
            return -errno.EBUSY
    vm = sum(m.nr_vmemmap_pages for m in blocks)
    if vm and size != k.memory.block_size and not k.profile.memmap_on_memory_any_size:
        return -errno.EINVAL
    try:
        entry = k.fwmap.firmware_map_remove(start, start + size, "System RAM")
        k.log(
            "firmware_map_remove",
            f"/sys/firmware/memmap/{entry.index}: {entry.start:#x}-{entry.end:#x} removed",
        )
    except LookupError:
        pass
    k.memory.remove_memory_block_devices(start, size)
    first = pfn_to_section_nr(start >> PAGE_SHIFT)
    last = pfn_to_section_nr((start + size - 1) >> PAGE_SHIFT)
    k.sparse.arch_remove_memory(k, first, last + 1)
    k.iomem.release_mem_region_adjustable(start, size)
    if nid != NUMA_NO_NODE:
        try_offline_node(k, nid)
    return 0


def offline_blocks_two_passes(k: Kernel, blocks: list[MemoryBlock]) -> list[MemoryBlock]:
    """Offline ``blocks`` twice, ignoring first-pass errors (seed patch 1, the 3.8
    remove_memory()); returns the blocks still online."""
    for _pass in (1, 2):
        for mem in blocks:
            if mem.state is MemState.MEM_ONLINE:
                device_offline(k, mem)
    return [m for m in blocks if m.state is MemState.MEM_ONLINE]


def remove_memory(k: Kernel, start: int, size: int) -> int:
    """remove_memory(): in the 3.8 profile it offlines the range first (two passes)."""
    if k.profile.remove_memory_offlines:
        still = offline_blocks_two_passes(k, k.memory.blocks_in_range(start, size))
        if still:
            return -errno.EBUSY
    return try_remove_memory(k, start, size)


def add_memory_driver_managed(
    k: Kernel, nid: int, start: int, size: int, name: str, mgid: bool
) -> int:
    """add_memory_driver_managed(): ``name`` in /proc/iomem, no firmware memmap entry."""
    return add_memory(k, nid, start, size, mgid=mgid, merge_resource=True, resource_name=name)


def offline_and_remove_memory(k: Kernel, start: int, size: int) -> int:
    """offline_and_remove_memory(): offline the online blocks (re-online on failure)."""
    blocks = k.memory.blocks_in_range(start, size)
    offlined: list[MemoryBlock] = []
    for mem in blocks:
        if mem.state is MemState.MEM_ONLINE:
            ret = device_offline(k, mem)
            if ret < 0:
                for m in offlined:  # try_reonline_memory_block()
                    device_online(k, m)
                return ret
            offlined.append(mem)
    return try_remove_memory(k, start, size)
