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


def demo_device(spec: MachineSpec) -> tuple[int, int, int]:
    """(node, address, size) of the seed scenario's device on ``spec``.

    Four blocks (512M with 128M blocks) at the lowest address of a node's SRAT
    hotplug window that no boot RAM uses: [1G, 1.5G) on node 1 of the seed.
    Raises :class:`~memhp.host.errors.UsageError` (one line) when the machine has
    no room for it.
    """
    from memhp.host.errors import UsageError

    size = 4 * spec.block_size
    if spec.slots == 0:
        raise UsageError(f"{spec.name}: no DIMM slot ([hotplug] slots = 0), nothing to hot-plug")
    boot = sum(e - s for s, e, _ in spec.boot_ram)
    if spec.maxmem - boot < size:
        raise UsageError(f"{spec.name}: maxmem leaves less than {size >> 20}M for a memory device")
    bs = spec.block_size
    for n in spec.nodes:
        for hs, he in n.hotplug:
            addr = -(-hs // bs) * bs
            for s, e, _ in spec.boot_ram:  # sorted by start
                if addr < e and s < addr + size:
                    addr = -(-e // bs) * bs
            if addr + size <= he:
                return n.id, addr, size
    raise UsageError(
        f"{spec.name}: no node has {size >> 20}M free in its hotplug window for a memory device"
    )


def seed_scenario_maps(spec: MachineSpec | None = None) -> tuple[MemoryMap, MemoryMap]:
    """Run the seed scenario; the maps with the device online and after its eject."""
    from memhp.sim.config import builtin_machine_path, load_machine
    from memhp.sim.machine import SimMachine

    spec = spec or load_machine(builtin_machine_path("seed"))
    nid, addr, size = demo_device(spec)
    m = SimMachine(spec)
    m.device_add(size, nid, id="dimm1", addr=addr)
    first, last = addr // spec.block_size, (addr + size) // spec.block_size - 1
    for b in range(first, last + 1):
        m.sysfs.write(f"/sys/devices/system/memory/memory{b}/state", b"online\n")
    from memhp.viz.model import machine_map

    before = machine_map(
        m,
        title=f"{spec.name}: device PNP0C80:00 on node {nid} online (memory{first}..memory{last})",
    )
    m.sysfs.write("/sys/bus/acpi/devices/PNP0C80:00/eject", b"1\n")
    after = machine_map(m, title=f"{spec.name}: after echo 1 > PNP0C80:00/eject")
    return before, after


def kernel_pages_map(spec: MachineSpec | None = None) -> MemoryMap:
    """A workload on a node with CPUs after its hot-added memory went to a kernel zone.

    A 1G DIMM on the first node with CPUs, its blocks onlined to ZONE_NORMAL lowest
    first (``online_kernel``); a task on that node writes a 256M tmpfs file, then a
    minute of simulated time passes
    (the background slab churn of ``k.kalloc``).  The file's xarray nodes and the
    kept background slabs are unmovable kernel pages in hot-added memory (the
    situation of tests/scenarios/fill-hotadded-offline-each.toml on Linux 6.1).
    Raises :class:`~memhp.host.errors.UsageError` when the machine cannot do it.
    """
    from memhp.host.errors import UsageError
    from memhp.kernel.mm.page_alloc import AllocError
    from memhp.sim.config import builtin_machine_path, load_machine
    from memhp.sim.machine import PlatformError, SimMachine
    from memhp.viz.model import machine_map

    spec = spec or load_machine(builtin_machine_path("qemu-linux-6.1"))
    size = GiB
    nid = next((n.id for n in spec.nodes if n.cpus), None)
    if nid is None:
        raise UsageError(f"{spec.name}: no node has CPUs")
    try:
        m = SimMachine(spec)
        m.device_add(size, nid, id="dimm1")
        blocks = sorted(b for b, blk in m.kernel.memory.blocks.items() if not blk.online)
        for b in blocks:
            m.sysfs.write(f"/sys/devices/system/memory/memory{b}/state", b"online_kernel\n")
        m.tmpfs_write("data", 256 * MiB, m.kernel.srat.pxm_to_node(nid))  # (a node id)
        with m.lock:
            k = m.kernel
            k.clock += 60.0
            k.kalloc.advance(k.clock)
    except (AllocError, PlatformError, OSError, ValueError) as e:
        raise UsageError(f"{spec.name}: {e}") from None
    first, last = (blocks[0], blocks[-1]) if blocks else (0, -1)
    return machine_map(
        m,
        title=f"{spec.name}: 1G DIMM on node {nid} online_kernel (memory{first}..memory{last}), "
        "256M tmpfs file written, 60 s later",
    )


def virtio_mem_map(spec: MachineSpec | None = None) -> MemoryMap:
    """A virtio-mem device partly plugged, with an online block partly unplugged.

    The machine's first ``[[virtio_mem]]`` device is asked for 300M: the driver adds
    memory blocks to its region and plugs them lowest first (with 128M blocks and
    2M sub-blocks: two whole blocks and 22 sub-blocks of the third, whose other
    sub-blocks stay fake offline when it is onlined).  The added blocks are onlined
    to ZONE_MOVABLE, then 280M is requested: the driver unplugs 10 more sub-blocks
    of the online third block (alloc_contig_range(), PG_offline).
    Raises :class:`~memhp.host.errors.UsageError` when the machine cannot do it.
    """
    from memhp.host.errors import UsageError
    from memhp.kernel.mm.page_alloc import AllocError
    from memhp.platform.qemu_pc import QemuError
    from memhp.sim.config import builtin_machine_path, load_machine
    from memhp.sim.machine import PlatformError, SimMachine
    from memhp.viz.model import machine_map

    spec = spec or load_machine(builtin_machine_path("virtio-mem"))
    if not spec.virtio_mem:
        raise UsageError(f"{spec.name}: no virtio-mem device ([[virtio_mem]])")
    try:
        m = SimMachine(spec)
        dev = m.virtio.devices[0]
        dev.set_requested_size(300 * MiB)
        blocks = sorted(b for b, blk in m.kernel.memory.blocks.items() if not blk.online)
        for b in blocks:
            m.sysfs.write(f"/sys/devices/system/memory/memory{b}/state", b"online_movable\n")
        dev.set_requested_size(280 * MiB)
    except QemuError as e:
        raise UsageError(f"{spec.name}: {spec.virtio_mem[0].id}: {e.desc}") from None
    except (AllocError, PlatformError, OSError, ValueError) as e:
        raise UsageError(f"{spec.name}: {e}") from None
    return machine_map(
        m,
        title=f"{spec.name}: {dev.id} asked for 300M, its blocks online_movable, then 280M",
    )
