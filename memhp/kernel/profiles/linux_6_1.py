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
    sysfs_memory_hotplug_params=True,
    longterm_pin_migrates_movable=True,
    free_to_tail=True,
    pgtable_free_pud_tables=False,
    pgtable_split_needs_warning=True,
)
