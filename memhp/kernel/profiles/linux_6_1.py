"""Linux 6.1 (Debian 12's kernel): the default profile."""

from memhp.kernel.profiles.base import KernelProfile

PROFILE = KernelProfile(
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
    # Debian 6.1.0-57-amd64 (nokaslr /proc/iomem: code 0x1000000-0x1e01d31 ...).
    kernel_image_layout=(
        (0, 0xE01D32),
        (0x1000000, 0x18EB000),
        (0x1A00000, 0x1C48980),
        (0x2310000, 0x3400000),
    ),
    sysfs_memory_hotplug_params=True,
    online_policies=True,
    longterm_pin_migrates_movable=True,
    free_to_tail=True,
    pgtable_free_pud_tables=False,
    pgtable_split_needs_warning=True,
    sysfs_crash_hotplug=False,
    sysfs_node_memory_failure=False,
    unaccepted_memory_stats=False,
    vmstat_iommu_and_pgdemote=False,
    node_meminfo_file_huge_aligned=False,
    memmap_on_memory_force=False,
    default_online_type="offline",
    online_refuses_hwpoison=False,
)
