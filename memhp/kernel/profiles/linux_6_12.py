"""Linux 6.12 (Debian 12's linux-image-6.12.*+deb12-amd64, bookworm security).

What differs from 6.1 and why is listed in docs/kernels.md; each field's comment in
:mod:`memhp.kernel.profiles.base` names the kernel function.  memmap_on_memory is
per memory block (create_altmaps_and_memory_blocks(): one altmap per block, any
multiple of the block size), which the seed's any-size switch models.
"""

from memhp.kernel.profiles.base import KernelProfile

PROFILE = KernelProfile(
    name="linux-6.12",
    page_cgroup_bytes_per_page=0,
    removable_heuristic=False,
    shrink_spans_on_offline=True,
    offline_timeout_s=None,
    offline_migrate_retry_max=None,
    migrate_to_other_nodes=True,
    dissolve_free_huge_pages=True,
    remove_memory_offlines=False,
    sysfs_valid_zones=True,
    sysfs_online_attr=True,
    sysfs_auto_online_blocks=True,
    sysfs_end_phys_index=False,
    pgdat_preallocated=True,
    block_zone_tracking=True,
    memmap_on_memory_any_size=True,
    sysfs_probe=False,
    sysfs_generic_initiator=True,
    sysfs_node_x86=True,
    # Debian's 6.12 (nokaslr /proc/iomem: code 0x1000000-0x1ffffff ...).
    kernel_image_layout=(
        (0, 0x1000000),
        (0x1000000, 0x1B71000),
        (0x1C00000, 0x1E70F80),
        (0x2736000, 0x2C00000),
    ),
    sysfs_memory_hotplug_params=True,
    online_policies=True,
    free_to_tail=True,
    movable_min_wmark_capped=True,
    lru_anon_fault_active=True,
    lru_shmem_write_active=True,
    zoneinfo_promo=True,
    longterm_pin_migrates_movable=True,
    pgtable_free_pud_tables=False,
    pgtable_split_needs_warning=True,
    sysfs_crash_hotplug=True,
    sysfs_node_memory_failure=True,
    unaccepted_memory_stats=True,
    vmstat_iommu_and_pgdemote=True,
    vmstat_memmap_pages=True,
    vmstat_events_612=True,
    node_meminfo_file_huge_aligned=True,
    memmap_on_memory_force=True,
    default_online_type="online",
    online_refuses_hwpoison=True,
)
