"""/sys/module/memory_hotplug/parameters: mm/memory_hotplug.c module_param_cb.

``memmap_on_memory`` is read-only (0444) once booted; ``online_policy``
(module_param_cb with set_online_policy/get_online_policy), ``auto_movable_ratio``
(uint) and ``auto_movable_numa_aware`` (bool) are 0644 (5.14+, profile field
``online_policies``).  A store goes through param_attr_store() to the param ops.
The 3.8 profile has no such parameters.
"""

from __future__ import annotations

import errno

from memhp.abi.params import ONLINE_POLICIES
from memhp.kernel.kernel import Kernel
from memhp.sim.sysfs.attrs import kstrtobool, kstrtoul, sysfs_streq
from memhp.sim.sysfs.kernfs import ATTR_RO, ATTR_RW, AttrGroup, Dir, group_dir, static_dir


def set_online_policy(k: Kernel, _o: None, buf: bytes) -> int:
    """set_online_policy(): sysfs_match_string(online_policy_to_str) or -EINVAL."""
    for i, name in enumerate(ONLINE_POLICIES):
        if sysfs_streq(buf, name):
            k.hotplug.online_policy = i
            return 0
    return -errno.EINVAL


def param_set_uint(k: Kernel, _o: None, buf: bytes) -> int:
    """param_set_uint() of auto_movable_ratio: kstrtouint(val, 0), -EINVAL/-ERANGE."""
    v = kstrtoul(buf, 0)
    if v < 0:
        return v
    if v >= 1 << 32:
        return -errno.ERANGE
    k.hotplug.auto_movable_ratio = v
    return 0


def param_set_bool(k: Kernel, _o: None, buf: bytes) -> int:
    """param_set_bool() of auto_movable_numa_aware: kstrtobool() or -EINVAL."""
    v = kstrtobool(buf)
    if v is None:
        return -errno.EINVAL
    k.hotplug.auto_movable_numa_aware = v
    return 0


def _policies(k: Kernel, _o: None) -> bool:
    return k.profile.online_policies


#: The parameters of the memory_hotplug "module" (built in), in sysfs order.
memory_hotplug_params: AttrGroup[None] = {
    "auto_movable_numa_aware": ATTR_RW(
        lambda k, _o: "Y\n" if k.hotplug.auto_movable_numa_aware else "N\n",
        param_set_bool,
        _policies,
    ),
    "auto_movable_ratio": ATTR_RW(
        lambda k, _o: f"{k.hotplug.auto_movable_ratio}\n", param_set_uint, _policies
    ),
    "memmap_on_memory": ATTR_RO(lambda k, _o: memmap_on_memory_show(k)),
    "online_policy": ATTR_RW(
        lambda k, _o: f"{ONLINE_POLICIES[k.hotplug.online_policy]}\n",
        set_online_policy,
        _policies,
    ),
}


def memmap_on_memory_show(k: Kernel) -> str:
    """get_memmap_mode() (6.6+: "force" for MEMMAP_ON_MEMORY_FORCE), else the bool."""
    if k.spec.memmap_on_memory_force:
        return "force\n"
    return "Y\n" if k.hotplug.memmap_on_memory else "N\n"


def module_dir(k: Kernel) -> Dir | None:
    if not k.profile.sysfs_memory_hotplug_params:
        return None
    params = group_dir(k, None, memory_hotplug_params)
    return static_dir({"memory_hotplug": lambda: static_dir({"parameters": lambda: params})})
