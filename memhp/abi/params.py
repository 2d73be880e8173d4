"""Values of the memory_hotplug module parameters (mm/memory_hotplug.c).

``/sys/module/memory_hotplug/parameters/online_policy`` shows and takes these
names (``online_policy_to_str[]``); the index is the kernel's ``enum``.
``auto_movable_ratio`` defaults to 301 and ``auto_movable_numa_aware`` to Y.
"""

from __future__ import annotations

#: online_policy_to_str[]: ONLINE_POLICY_CONTIG_ZONES = 0, ONLINE_POLICY_AUTO_MOVABLE = 1.
ONLINE_POLICIES = ("contig-zones", "auto-movable")
#: The default of memory_hotplug.auto_movable_ratio (MOVABLE:KERNEL in percent).
AUTO_MOVABLE_RATIO_DEFAULT = 301
