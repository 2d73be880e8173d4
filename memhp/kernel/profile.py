"""Kernel profiles: the only place where kernel versions differ.

A :class:`KernelProfile` is a frozen set of named switches.  Model code asks the
profile ("does MEM_GOING_ONLINE allocate page_cgroup?") and never compares kernel
versions itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KernelProfile:
    """Behavioural switches of one kernel version of the memory hotplug code."""

    name: str
    #: Bytes of page_cgroup per page allocated on MEM_GOING_ONLINE when MEMCG is on
    #: (mm/page_cgroup.c online_page_cgroup in 3.8; gone since 3.19).
    page_cgroup_bytes_per_page: int
    #: ``removable`` is the is_mem_section_removable() heuristic (3.8) instead of
    #: the constant 1 of drivers/base/memory.c removable_show() (6.1).
    removable_heuristic: bool
    #: Zone and pgdat spans shrink when memory is offlined (6.1:
    #: remove_pfn_range_from_zone from offline_pages) rather than when the
    #: sections are removed (3.8: __remove_zone from __remove_section).
    shrink_spans_on_offline: bool
    #: offline_pages() gives up after this many simulated seconds with EAGAIN
    #: (3.8: offline_pages(start, nr, 120 * HZ)); None: retry until interrupted.
    offline_timeout_s: float | None
    #: do_migrate_range() failures tolerated before EBUSY (3.8 retry_max = 5).
    offline_migrate_retry_max: int | None
    #: remove_memory() itself offlines the range in two passes (seed patch 1);
    #: otherwise the ACPI eject path does it (acpi_scan_try_to_offline, 6.1).
    remove_memory_offlines: bool
    #: Memory block sysfs has valid_zones and the device core ``online`` file.
    sysfs_valid_zones: bool
    sysfs_online_attr: bool
    #: /sys/devices/system/memory/auto_online_blocks exists (4.7+).
    sysfs_auto_online_blocks: bool
    #: ``end_phys_index`` exists in the block directory (removed in 5.x).
    sysfs_end_phys_index: bool
    #: NODE_DATA of every possible node is allocated at boot (6.1); in 3.8 a
    #: hot-added node's pgdat is allocated (arch_alloc_nodedata) from kernel memory.
    pgdat_preallocated: bool
    #: Offline keeps the zone of an online block in ``mem->zone`` (5.x+): a block
    #: that spans zones cannot be offlined (EINVAL).
    block_zone_tracking: bool
    #: memmap-on-memory is per block for any range (the seed's proposal: every
    #: block carries its own metadata) rather than only for a range of exactly
    #: one block (6.1 mhp_supports_memmap_on_memory()).
    memmap_on_memory_any_size: bool
    #: /sys/devices/system/memory/probe (CONFIG_ARCH_MEMORY_PROBE: def_bool on
    #: x86_64 in 3.8, not set in Debian's 6.1).
    sysfs_probe: bool
    #: /sys/devices/system/node/has_generic_initiator (5.10+) and the nodes'
    #: empty ``x86`` group directory (SGX, 5.11+).
    sysfs_generic_initiator: bool
    sysfs_node_x86: bool


LINUX_6_1 = KernelProfile(
    name="linux-6.1",
    page_cgroup_bytes_per_page=0,
    removable_heuristic=False,
    shrink_spans_on_offline=True,
    offline_timeout_s=None,
    offline_migrate_retry_max=None,
    remove_memory_offlines=False,
    sysfs_valid_zones=True,
    sysfs_online_attr=True,
    sysfs_auto_online_blocks=True,
    sysfs_end_phys_index=False,
    pgdat_preallocated=True,
    block_zone_tracking=True,
    memmap_on_memory_any_size=False,
    sysfs_probe=False,
    sysfs_generic_initiator=True,
    sysfs_node_x86=True,
)

LINUX_3_8_HOTREMOVE = KernelProfile(
    name="linux-3.8-hotremove",
    page_cgroup_bytes_per_page=16,
    removable_heuristic=True,
    shrink_spans_on_offline=False,
    offline_timeout_s=120.0,
    offline_migrate_retry_max=5,
    remove_memory_offlines=True,
    sysfs_valid_zones=False,
    sysfs_online_attr=False,
    sysfs_auto_online_blocks=False,
    sysfs_end_phys_index=True,
    pgdat_preallocated=False,
    block_zone_tracking=False,
    memmap_on_memory_any_size=True,
    sysfs_probe=True,
    sysfs_generic_initiator=False,
    sysfs_node_x86=False,
)

PROFILES: dict[str, KernelProfile] = {p.name: p for p in (LINUX_6_1, LINUX_3_8_HOTREMOVE)}
