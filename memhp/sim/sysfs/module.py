"""/sys/module/memory_hotplug/parameters: mm/memory_hotplug.c module_param_cb.

``memmap_on_memory`` is read-only (0444) once booted; the 3.8 profile has no
such parameters (the seed's idea there is a machine option, not a parameter).
"""

from __future__ import annotations

from memhp.kernel.kernel import Kernel
from memhp.sim.sysfs.kernfs import ATTR_RO, AttrGroup, Dir, group_dir, static_dir

#: The parameters of the memory_hotplug "module" (built in).
memory_hotplug_params: AttrGroup[None] = {
    "memmap_on_memory": ATTR_RO(lambda k, _o: memmap_on_memory_show(k)),
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
