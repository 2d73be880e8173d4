"""Linux 3.8 with the seed's memory hot-remove patches."""

from memhp.kernel.profiles.base import KernelProfile

PROFILE = KernelProfile(
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
    # Not recorded for 3.8: 6.1's layout (only the names matter here).
    kernel_image_layout=(
        (0, 0xE01D32),
        (0x1000000, 0x18EB000),
        (0x1A00000, 0x1C48980),
        (0x2310000, 0x3400000),
    ),
    sysfs_memory_hotplug_params=False,
    online_policies=False,
    longterm_pin_migrates_movable=False,
    free_to_tail=False,
    pgtable_free_pud_tables=True,
    pgtable_split_needs_warning=False,
    sysfs_crash_hotplug=False,
    sysfs_node_memory_failure=False,
    unaccepted_memory_stats=False,
    vmstat_iommu_and_pgdemote=False,
    node_meminfo_file_huge_aligned=False,
    memmap_on_memory_force=False,
    default_online_type="offline",
    online_refuses_hwpoison=False,
)
