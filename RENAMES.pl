#!/usr/bin/perl -pi
# Re-applies the kernel-structure renames (see RENAMES.md) to Python files:
#   perl -pi RENAMES.pl $(git ls-files '*.py')
# A "kernel expression" is k, kernel, self.k, m.kernel, self.sim.kernel, ...
BEGIN { $K = qr/(?<![\w.])((?:[A-Za-z_]\w*\.)*(?:k|kernel))/; }
# Kernel attributes that moved into a subsystem object.
s/$K\.(blocks|node_blocks|block_size|sections_per_block|pages_per_block|chain|notifier_error_inject|memory_notify|blocks_in_range|create_memory_block_devices|remove_memory_block_devices)\b/$1.memory.$2/g;
s/$K\.(node_states|registered_nodes|cpus_of|node_set_online|node_set_offline|register_one_node|unregister_one_node|node_meminfo)\b/$1.nodes.$2/g;
s/$K\.(movable_node|memmap_on_memory|mhp_default_online_type|migrate_page_cost_s|migrate_retry_cost_s|signal_after_s|last_offline_failure)\b/$1.hotplug.$2/g;
s/$K\.hugetlb_pool\b/$1.hugetlb.pools/g;
s/$K\.(set_max_huge_pages|huge_page_sizes|nr_huge_pages)\b/$1.hugetlb.$2/g;
s/$K\.(page_cgroup|altmaps|boot_memmap)\b/$1.sparse.$2/g;
s/$K\.kernel_image\b/$1.memblock.kernel_image/g;
# Kernel methods that became module functions (the kernel is the first argument).
s/$K\.removable\(/memory.removable_show($1, /g;
s/$K\.probe_memory\(/memory.probe_store($1, /g;
s/$K\.memory_add_physaddr_to_nid\(/memory.memory_add_physaddr_to_nid($1, /g;
s/$K\.memory_failure\(/memory_failure.memory_failure($1, /g;
s/$K\.present_sections_of\(/$1.sparse.present_sections_of($1, /g;
s/$K\.hotadd_init_pgdat\(/memory_hotplug.hotadd_init_pgdat($1, /g;
s/$K\.release_new_pgdat\(/memory_hotplug.rollback_node_hotadd($1, /g;
# memory_hotplug functions that are drivers/base/memory.c's.
s/\bmh\.valid_zones\(/memory.valid_zones_show(/g;
s/\bmh\.memory_block_(online|offline)\(/memory.memory_block_$1(/g;
s/\bmemory_hotplug\.valid_zones\b/memory.valid_zones_show/g;
# Modules.
s/\bmemhp\.kernel\.notifier\b/memhp.kernel.drivers.base.memory/g;
s/\bmemhp\.kernel\.arch\.x86\.pgtable\b/memhp.kernel.arch.x86.mm.init_64/g;
s/\bmemhp\.kernel\.profile\b/memhp.kernel.profiles/g;
