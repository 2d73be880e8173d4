"""The kernel profile: every behaviour in which the modelled kernel versions differ.

A :class:`KernelProfile` is a frozen set of named switches.  Model code asks the
profile ("does MEM_GOING_ONLINE allocate page_cgroup?") and never compares kernel
versions or profile names itself.  Each profile is one module of this package
(see :mod:`memhp.kernel.profiles`).
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
    #: do_migrate_range() allocates the new pages on the other nodes with memory
    #: (a nodemask of N_MEMORY less the page's node, 4.9+: new_node_page(), then
    #: alloc_migration_target()), with __GFP_HIGHMEM for a ZONE_MOVABLE page; 3.8's
    #: alloc_migrate_target() is alloc_page(GFP_USER | __GFP_MOVABLE): the writer's
    #: local node and any node after it, up to ZONE_NORMAL on x86_64 (no highmem).
    migrate_to_other_nodes: bool
    #: offline_pages() dissolves the free huge pages of the range once nothing is left
    #: to migrate (dissolve_free_huge_pages(), 3.12+: the pool shrinks); 3.8 neither
    #: migrates nor dissolves hugetlb pages, which keep the range from going offline.
    dissolve_free_huge_pages: bool
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
    #: Where the kernel build puts its sections, as offsets from _text: the
    #: [start, end) of "Kernel code", "Kernel rodata", "Kernel data" and "Kernel
    #: bss" in /proc/iomem (arch/x86/kernel/setup.c code_resource... from _etext,
    #: __start_rodata, __end_rodata, _sdata, _edata, __bss_start, __bss_stop).
    kernel_image_layout: tuple[tuple[int, int], ...]
    #: /sys/module/memory_hotplug/parameters exists (memmap_on_memory, 5.12+ as a
    #: module parameter of mm/memory_hotplug.c).
    sysfs_memory_hotplug_params: bool
    #: The memory_hotplug.online_policy, auto_movable_ratio and
    #: auto_movable_numa_aware parameters with the auto-movable zone choice
    #: (auto_movable_zone_for_pfn) and memory groups (memory_group_register_static
    #: per ACPI memory device, MHP_NID_IS_MGID): 5.14+, so in 6.1; 3.8 has only
    #: the contig-zones behaviour and no memory groups.
    online_policies: bool
    #: FOLL_LONGTERM pins migrate pages out of ZONE_MOVABLE first (5.7+,
    #: check_and_migrate_movable_pages), so long-term pinned pages never sit in
    #: ZONE_MOVABLE; in 3.8 a pin may land there and block offlining.
    longterm_pin_migrates_movable: bool
    #: Pages onlined or released at boot (__free_pages_core()) and pages whose
    #: isolation is undone (move_to_free_list(), __putback_isolated_page()) go to
    #: the tail of the free lists, so fresh memory is used last and lowest address
    #: first (5.10+, FPI_TO_TAIL); in 3.8 they go to the head: highest first.
    free_to_tail: bool
    #: ZONE_MOVABLE takes no share of min_free_kbytes: its min watermark is
    #: managed/1024 clamped to 32..128 pages, also when empty (6.12
    #: __setup_per_zone_wmarks()); in 6.1 and 3.8 it is a zone like the others.
    movable_min_wmark_capped: bool
    #: A task's new anonymous page goes to the active anon LRU: 3.8's
    #: page_add_new_anon_rmap() (LRU_ACTIVE_ANON); 6.12 with the multi-gen LRU on
    #: (Debian: CONFIG_LRU_GEN_ENABLED), folio_add_lru() sets it active in a fault,
    #: lru_gen_add_folio() puts it in the youngest generation, which
    #: lru_gen_is_active() counts as active.  6.1 (classic LRU, since 5.9):
    #: folio_add_lru() leaves it inactive.
    lru_anon_fault_active: bool
    #: A page written to a tmpfs file counts as active anon (6.12, multi-gen LRU:
    #: lru_gen_add_folio() gives a swap-backed folio not in the swap cache the
    #: second youngest generation, still "active"); 3.8 (lru_cache_add_anon()) and
    #: 6.1 (folio_add_lru()) put it on the inactive anon list.
    lru_shmem_write_active: bool
    #: /proc/zoneinfo prints each zone's ``promo`` watermark (high + the watermark
    #: distance, for memory tiering: zoneinfo_show_print() in 6.12; 6.1 has no line).
    zoneinfo_promo: bool
    #: remove_pagetable() frees empty PUD tables and syncs the global page
    #: directories (the seed's free_pud_table + sync_global_pgds); 6.1's
    #: remove_p4d_table() keeps PUD tables with 4-level paging.
    pgtable_free_pud_tables: bool
    #: 6.1's remove_pud_table() has no split for a partly covered 1 GiB leaf (it
    #: would walk the leaf as if it were a PMD table); the model splits it as the
    #: seed does and logs a warning.
    pgtable_split_needs_warning: bool
    #: /sys/devices/system/memory/crash_hotplug, "0" with no crash kernel loaded
    #: (CONFIG_CRASH_HOTPLUG, 6.5+: crash_hotplug_show() in drivers/base/memory.c,
    #: crash_check_hotplug_support()); Debian's 6.12 has it, 6.1 not.
    sysfs_crash_hotplug: bool
    #: nodeN/memory_failure/{total,ignored,failed,delayed,recovered} (6.4+:
    #: memory_failure_attr_group of mm/memory-failure.c in node_dev_groups[]).
    sysfs_node_memory_failure: bool
    #: "Unaccepted:" in /proc/meminfo and nodeN/meminfo and the zone item
    #: nr_unaccepted in nodeN/vmstat (CONFIG_UNACCEPTED_MEMORY, 6.5+:
    #: meminfo_proc_show(), node_read_meminfo(), vmstat_text[]).
    unaccepted_memory_stats: bool
    #: nodeN/vmstat has the node item nr_iommu_pages (6.11+, NR_IOMMU_PAGES) and
    #: the pgdemote_{kswapd,direct,khugepaged} node items (6.9+: moved from the
    #: vm events into the node stats, mm/vmstat.c vmstat_text[]).
    vmstat_iommu_and_pgdemote: bool
    #: /proc/vmstat has nr_memmap_pages and nr_memmap_boot_pages after the dirty
    #: thresholds (6.11+: NR_MEMMAP_PAGES, NR_MEMMAP_BOOT_PAGES of enum vm_stat_item,
    #: memmap_pages_add() in populate_section_memmap()/depopulate_section_memmap(),
    #: memmap_boot_pages_add() in sparse_init_nid()/free_map_bootmem()).
    vmstat_memmap_pages: bool
    #: The VM events of Debian's 6.12 that 6.1 lacks (pgsteal_khugepaged,
    #: pgscan_khugepaged, zone_reclaim_success, thp_underused_split_page,
    #: swpin_zero, swpout_zero, zswpwb in vm_event_item / vmstat_text[]), and
    #: pgdemote_* no longer among them (see ``vmstat_iommu_and_pgdemote``).
    vmstat_events_612: bool
    #: nodeN/meminfo prints FileHugePages/FilePmdMapped aligned like the other
    #: lines (6.12 node_read_meminfo(): "FileHugePages:  %8lu"); 6.1's format has
    #: one space less.
    node_meminfo_file_huge_aligned: bool
    #: memory_hotplug.memmap_on_memory also takes "force" and then reads back
    #: "force" (6.6+: set_memmap_mode()/get_memmap_mode(), MEMMAP_ON_MEMORY_FORCE:
    #: the memmap is padded to whole pageblocks, memory_block_memmap_on_memory_pages());
    #: in 6.1 it is a plain bool parameter.
    memmap_on_memory_force: bool
    #: auto_online_blocks when memhp_default_state= is not given: "offline" (6.1,
    #: Debian's CONFIG_MEMORY_HOTPLUG_DEFAULT_ONLINE unset) or "online" (Debian's 6.12:
    #: CONFIG_MHP_DEFAULT_ONLINE_TYPE_ONLINE_AUTO, mhp_get_default_online_type()).
    default_online_type: str
    #: memory_block_online() refuses a block with hwpoisoned pages (-EHWPOISON,
    #: memblk_nr_poison(): per-block poison counter, 6.2+); 6.1 onlines it.
    online_refuses_hwpoison: bool
