"""Before/after pictures of the seed scenario (``make demo``, the README picture).

``write_demo_pictures(outdir, before, after)`` takes two maps (or machines, captured
at the time of the call) and writes ``before.png``, ``after.png`` and
``before-after.png`` (both on one address axis) plus ``before.txt``/``after.txt``
text maps.  :func:`seed_scenario_maps` runs the scenario itself: the device on
node 1 at [1G, 1.5G) onlined block by block (the page_cgroup of memory9..11 lands
in memory8), then ejected.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from memhp.host.memmap_view import MemoryMap, text_map

if TYPE_CHECKING:
    from memhp.kernel.machine import MachineSpec
    from memhp.sim.machine import SimMachine

GiB = 1 << 30
MiB = 1 << 20


def _as_map(x: MemoryMap | SimMachine, title: str) -> MemoryMap:
    if isinstance(x, MemoryMap):
        return x
    from memhp.viz.model import machine_map

    return machine_map(x, title=title)


def write_demo_pictures(
    outdir: str, before: MemoryMap | SimMachine, after: MemoryMap | SimMachine
) -> list[str]:
    """Write the before/after pictures into ``outdir``; returns the paths written.

    A :class:`~memhp.sim.machine.SimMachine` is captured when this is called, so pass maps
    (:func:`memhp.viz.model.machine_map`) taken at the right moments when one
    machine goes through both states.
    """
    from memhp.viz.render import save_map, save_maps

    b = _as_map(before, "before: device PNP0C80:00 online")
    a = _as_map(after, "after: hot-remove")
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for name, m in (("before", b), ("after", a)):
        p = os.path.join(outdir, f"{name}.png")
        save_map(m, p)
        paths.append(p)
        t = os.path.join(outdir, f"{name}.txt")
        with open(t, "w") as f:
            f.write(text_map(m))
        paths.append(t)
    p = os.path.join(outdir, "before-after.png")
    save_maps([b, a], p)
    paths.append(p)
    return paths


def seed_scenario_maps(spec: MachineSpec | None = None) -> tuple[MemoryMap, MemoryMap]:
    """Run the seed scenario; the maps with the device online and after its eject."""
    from memhp.sim.config import builtin_machine_path, load_machine
    from memhp.sim.machine import SimMachine

    spec = spec or load_machine(builtin_machine_path("seed"))
    m = SimMachine(spec)
    m.device_add(512 * MiB, 1, id="dimm1", addr=1 * GiB)
    for b in range(8, 12):
        m.sysfs.write(f"/sys/devices/system/memory/memory{b}/state", b"online\n")
    from memhp.viz.model import machine_map

    before = machine_map(
        m, title=f"{spec.name}: device PNP0C80:00 on node 1 online (memory8..memory11)"
    )
    m.sysfs.write("/sys/bus/acpi/devices/PNP0C80:00/eject", b"1\n")
    after = machine_map(m, title=f"{spec.name}: after echo 1 > PNP0C80:00/eject")
    return before, after
