"""One run of a study: a full hot-add / online / workload / remove lifecycle.

Everything is a function of the study, the cell and the seed (the model is
deterministic, simulated time is the kernel's clock): the same seed gives the
same result on any worker.  Onlining by user space and the removal go through a
:class:`~memhp.host.root.SysfsRoot` over the machine's sysfs with the tool's own
library (:func:`memhp.host.memory.set_state`, :func:`memhp.host.remove.remove_device`,
whose clock and sleep are the kernel's simulated clock).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memhp.abi.layout import PAGE_SIZE
from memhp.host.devices import MemoryDevice, list_devices
from memhp.host.errors import SysfsError
from memhp.host.memory import set_state
from memhp.host.remove import remove_device
from memhp.host.root import SysfsRoot
from memhp.kernel.machine import MachineError, MachineSpec, parse_machine
from memhp.kernel.mm.mmzone import ZoneType
from memhp.kernel.mm.page_alloc import Allocation, AllocError
from memhp.sim import snapshot
from memhp.sim.machine import PlatformError, SimMachine, WorkloadMix
from memhp.study.spec import ONLINE_BY_KERNEL, Cell, Study, StudyError

_SPECS: dict[tuple[str, str], MachineSpec] = {}
_BOOT_DEVICES: dict[tuple[str, ...], set[str]] = {}
_DEVICES: dict[tuple[str, ...], list[MemoryDevice]] = {}
#: Per cell: the pickled machine after boot, hot-add and onlining (None: not
#: reusable), the hot-added devices and the onlining writes (see _machine()); the
#: most recently used few only (a 1 TiB machine pickles to ~11 MB; the engines run
#: a cell's seeds one after the other).
_MAX_TEMPLATES = 4
_TEMPLATES: dict[
    tuple[str, ...], tuple[bytes | None, list[MemoryDevice], list[tuple[int, str, str | None]]]
] = {}


def _key(study: Study, cell: Cell) -> tuple[str, ...]:
    """What the machine up to the workload depends on (per-process caches)."""
    wl = study.workloads[cell.get("workload")]
    return (
        study.name,
        cell.id,
        repr(machine_doc(study, cell)),
        repr(study.dimms),
        repr((wl.kernel_rate, wl.kernel_keep)),
    )


def machine_doc(study: Study, cell: Cell) -> dict[str, object]:
    """The study's machine with the cell's kernel parameters on its command line."""
    doc = dict(study.machine)
    online = cell.get("online")
    doc["memcg"] = cell.get("memcg")
    if cell.get("memmap_on_memory") or "memmap_on_memory" in doc:
        doc["memmap_on_memory"] = cell.get("memmap_on_memory")
    if online in ONLINE_BY_KERNEL:
        doc["auto_online_blocks"] = "online"
        doc["online_policy"] = online
        doc["auto_movable_ratio"] = cell.get("auto_movable_ratio")
        doc["auto_movable_numa_aware"] = cell.get("auto_movable_numa_aware")
    else:
        doc["auto_online_blocks"] = "offline"
    return doc


def cell_spec(study: Study, cell: Cell) -> MachineSpec:
    """The parsed machine of a cell (cached per process); StudyError when the
    machine does not take the cell's parameters."""
    key = (study.name, cell.id)
    spec = _SPECS.get(key)
    if spec is None:
        try:
            spec = parse_machine(machine_doc(study, cell))
        except MachineError as e:
            raise StudyError(f"cell {cell.id}", f"machine: {e}") from None
        _SPECS[key] = spec
    return spec


def _zone_pages(m: SimMachine) -> tuple[int, int, int]:
    """(kernel-zone present pages, Movable present pages, kernel-zone free pages)."""
    k = m.kernel
    kern = mov = free = 0
    for pg in k.pgdats.values():
        for z in pg.node_zones:
            if z.idx == ZoneType.MOVABLE:
                mov += z.present_pages
            else:
                kern += z.present_pages
                free += k.pa.zone_free(z)
    return kern, mov, free


def _plugged(
    study: Study, cell: Cell, seed: int | None
) -> tuple[SimMachine, list[MemoryDevice], list[tuple[int, str, str | None]], bool]:
    """Boot the cell's machine, hot-add the study's DIMMs and online their blocks
    by user space (the cell's policy, memhp's set_state()).

    Returns the machine, the hot-added devices (in address order), the onlining
    writes (block, state, errno name or None) and whether all of it left the
    kernel's clock where it was (then no random number was drawn either: the
    kernel's run-time allocations draw only as simulated time passes).
    """
    spec = cell_spec(study, cell)
    wl = study.workloads[cell.get("workload")]
    m = SimMachine(spec)
    k = m.kernel
    k.kalloc.configure(
        enabled=wl.kernel_rate > 0, rate_pages_per_s=wl.kernel_rate, keep=wl.kernel_keep, seed=seed
    )
    clock0 = k.clock
    root = SysfsRoot(m.sysfs, "sim")
    # the devices present at boot (the same for every seed of the cell: boot is
    # deterministic and the seed is used from the hot-add on)
    key = _key(study, cell)
    before = _BOOT_DEVICES.get(key)
    if before is None:
        before = _BOOT_DEVICES[key] = {d.name for d in list_devices(root)}
    for i, d in enumerate(study.dimms):
        try:
            m.device_add(d.size, d.node, id=f"dimm{i}", addr=d.addr)
        except PlatformError as e:
            raise StudyError(f"dimm[{i}]", f"QEMU refuses it: {e}") from None
    # the hot-added devices (names, blocks, addresses): the same for every seed too
    # (the hot-add uses no clock and no random number); their blocks' state is read
    # afresh wherever it matters (onlining, memhp remove)
    devices = _DEVICES.get(key)
    if devices is None:
        devices = _DEVICES[key] = sorted(
            (d for d in list_devices(root) if d.name not in before), key=lambda d: d.start or 0
        )
    onlined: list[tuple[int, str, str | None]] = []
    online = cell.get("online")
    if online not in ONLINE_BY_KERNEL:
        for dev in devices:
            for b in dev.blocks:
                try:
                    set_state(root, b.index, online)
                    onlined.append((b.index, online, None))
                except SysfsError as e:
                    onlined.append((b.index, online, e.errname))
    return m, devices, onlined, k.clock == clock0


def _machine(
    study: Study, cell: Cell, seed: int
) -> tuple[SimMachine, list[MemoryDevice], list[tuple[int, str, str | None]]]:
    """:func:`_plugged` for ``seed``: a copy of the cell's template when there is one.

    The template is the machine of :func:`_plugged` without a seed, pickled once
    per cell and process; a copy of it with the kernel's run-time allocations
    seeded is the machine :func:`_plugged` would build for the seed, as long as
    nothing up to there passed simulated time and the machine can be pickled (else
    each run builds its own).
    """
    key = _key(study, cell)
    tpl = _TEMPLATES.pop(key, None)
    if tpl is None:
        m, devices, onlined, seed_free = _plugged(study, cell, None)
        blob = None
        if seed_free:
            try:
                blob = snapshot.dumps(m)
            except snapshot.NotCopyable:
                pass  # (each run builds its machine: virtio-mem drivers hold closures)
        tpl = (blob, devices, onlined)
        while len(_TEMPLATES) >= _MAX_TEMPLATES:  # the least recently used goes
            del _TEMPLATES[next(iter(_TEMPLATES))]
    _TEMPLATES[key] = tpl
    blob, devices, onlined = tpl
    if blob is None:
        m, devices, onlined, _ = _plugged(study, cell, seed)
        return m, devices, onlined
    m = snapshot.loads(blob)
    m.kernel.kalloc.configure(seed=seed)
    return m, devices, onlined


def run_lifecycle(
    study: Study, cell: Cell, seed: int, trace: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One seeded lifecycle; a JSON-able dict with no wall-clock figure in it.

    ``trace``: when given, the run's events are appended to it (the workload's
    tasks, frees and tmpfs files, simulated waits, each device's removal), which
    :mod:`memhp.study.export` turns into a bench scenario.
    """
    ev = trace.append if trace is not None else None
    wl = study.workloads[cell.get("workload")]
    m, devices, onlined = _machine(study, cell, seed)
    k = m.kernel
    rng = np.random.default_rng(seed)
    root = SysfsRoot(m.sysfs, "sim")
    online_failures: list[dict[str, object]] = []
    for block, state, err in onlined:
        if ev:
            ev({"op": "online", "block": block, "state": state})
        if err is not None:
            online_failures.append({"block": block, "error": err})
    kern, mov, _ = _zone_pages(m)
    movable_ratio = round(100.0 * mov / kern, 3) if kern else 0.0

    # The workload: allocations, frees, tmpfs files, the kernel's own pages.
    nodes = sorted({n.id for n in k.spec.nodes if n.cpus}) or [0]  # (the kernel's node ids)
    free0 = sum(k.pa.zone_free(z) for pg in k.pgdats.values() for z in pg.node_zones)
    steps = max(study.steps, 1)
    chunk = wl.fill * free0 / steps
    file_bytes = int(wl.tmpfs * free0 / steps) * PAGE_SIZE
    mix = WorkloadMix(unmovable=wl.unmovable, pinned=wl.pinned)
    live: list[tuple[str, list[Allocation]]] = []
    failures = {"workload": 0, "tmpfs": 0}
    dt = study.sim_time / steps
    for step in range(steps):
        m.advance(dt)
        if ev:
            ev({"op": "wait", "seconds": dt})
        if live and rng.random() < wl.churn:
            name, allocs = live.pop(int(rng.integers(len(live))))
            m.free(allocs)
            k.kalloc.release(name)
            if ev:
                ev({"op": "end_task", "task": name})
            continue
        nid = int(nodes[int(rng.integers(len(nodes)))])
        n = int(chunk * rng.uniform(0.5, 1.5))
        if n > 0:
            name = f"task{step}"
            try:
                allocs = m.fill(n, node=nid, mix=mix, owner=name)
                k.kalloc.process_page_tables(name, n, nid)
                live.append((name, allocs))
                if ev:
                    ev({"op": "task", "task": name, "node": nid, "pages": n})
            except AllocError:
                failures["workload"] += 1
                if ev:
                    ev({"op": "alloc_failure", "task": name})
        if file_bytes > 0:
            try:
                m.tmpfs_write(f"file{step}", file_bytes, nid)
                if ev:
                    ev({"op": "tmpfs", "file": f"file{step}", "bytes": file_bytes, "node": nid})
            except (AllocError, OSError):  # (OSError: the node's tmpfs mount refused)
                failures["tmpfs"] += 1
                if ev:
                    ev({"op": "alloc_failure", "file": f"file{step}"})
    _, _, kfree = _zone_pages(m)

    # The removal: memhp remove's algorithm, device by device.
    order = devices if cell.get("remove_order") == "first-first" else devices[::-1]
    t_remove = k.clock
    out_devs: list[dict[str, object]] = []
    refused: list[dict[str, object]] = []
    removed = 0
    for dev in order:
        t0 = k.clock
        res = remove_device(
            root,
            dev.name,
            timeout=study.remove_timeout,
            sleep=m.advance,
            clock=lambda: k.clock,
        )
        if res.removed:
            removed += dev.size
        if ev:
            ev({"op": "remove", "device": dev.name, "dimm": devices.index(dev), "ok": res.removed})
        for f in res.failures:
            refused.append(
                {
                    "device": dev.name,
                    "block": f.index,
                    "error": f.error.errname,
                    "reasons": list(f.diagnosis.reasons) if f.diagnosis else [],
                }
            )
        out_devs.append(
            {
                "device": dev.name,
                "bytes": dev.size,
                "removed": res.removed,
                "passes": res.passes,
                "timed_out": res.timed_out,
                "seconds": round(k.clock - t0, 6),
                "message": res.message,
            }
        )
    requested = sum(d.size for d in devices)
    return {
        "seed": seed,
        "requested_bytes": requested,
        "removed_bytes": removed,
        "success": removed == requested,
        "movable_ratio": movable_ratio,
        "online_failures": online_failures,
        "alloc_failures": failures,
        "kernel_free_bytes_before_remove": kfree * PAGE_SIZE,
        "refused": refused,
        "devices": out_devs,
        "remove_seconds": round(k.clock - t_remove, 6),
        "sim_seconds": round(k.clock, 6),
    }
