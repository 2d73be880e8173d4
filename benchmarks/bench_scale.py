"""Performance at scale (issue 8).

1. TiB-scale lifecycle: boot 1 TiB on 4 nodes, hot-add 15 devices of 1 TiB,
   online them movable (auto_online_blocks=online_movable), populate half of the
   memory that remains after the removal (512 GiB, placed by the allocator, i.e.
   in the hot-added Movable memory), then hot-remove all 15 devices through the
   ACPI eject path: every populated page migrates, some more than once.
   Targets: < 10 s wall, < 2 GiB peak RSS.
2. Cost growth: hot-add + online + offline + hot-remove of one 1 GiB device on a
   64 GiB machine and on a 16 TiB machine, same run: ratio < 1.5.
3. Per-operation figures: one block online, offline of a fully populated block,
   eject of a 1 GiB device, per block and per GiB.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._common import peak_rss_mib, record
from memhp.abi.layout import PAGES_PER_SECTION
from memhp.kernel.machine import MachineSpec, parse_machine
from memhp.sim.config import load_machine
from memhp.sim.machine import SimMachine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GiB = 1 << 30
TiB = 1 << 40
MEM = "/sys/devices/system/memory"


def tib_lifecycle() -> list[dict[str, object]]:
    spec = dataclasses.replace(
        load_machine(os.path.join(ROOT, "machines", "tib-4node.toml")),
        auto_online_blocks="online_movable",
    )
    t0 = time.perf_counter()
    m = SimMachine(spec)
    t_boot = time.perf_counter() - t0
    t = time.perf_counter()
    for i in range(15):
        m.device_add(TiB, i % 4, id=f"dimm{i}")
    t_add = time.perf_counter() - t
    t = time.perf_counter()
    pages = (512 * GiB) >> 12
    for nid in range(4):
        m.fill(pages // 4, node=nid, owner=f"app-{nid}")
    t_fill = time.perf_counter() - t
    t = time.perf_counter()
    migrated0 = m.kernel.pa.migrated_pages
    # highest device first: the workload sits in the lowest device of each node
    # (onlined memory is used lowest address first), which goes last and migrates
    # once into boot memory; ascending, each eject would move it to the next device
    for i in reversed(range(15)):
        m.sysfs.write(f"/sys/bus/acpi/devices/PNP0C80:{i:02x}/eject", b"1")
    t_remove = time.perf_counter() - t
    removed = all(s.dimm is None for s in m.platform.slots)
    total = time.perf_counter() - t0
    rss = peak_rss_mib()
    migrated = m.kernel.pa.migrated_pages - migrated0
    return [
        {"what": "TiB lifecycle: boot 1 TiB/4 nodes", "value": t_boot, "unit": "s"},
        {
            "what": "TiB lifecycle: hot-add + online movable 15 x 1 TiB (122880 blocks)",
            "value": t_add,
            "unit": "s",
        },
        {"what": "TiB lifecycle: populate 512 GiB movable", "value": t_fill, "unit": "s"},
        {
            "what": f"TiB lifecycle: eject 15 x 1 TiB ({migrated} pages migrated, all removed: "
            f"{removed})",
            "value": t_remove,
            "unit": "s",
        },
        {
            "what": "TiB lifecycle: whole run",
            "value": total,
            "unit": "s",
            "target": "< 10 s",
            "ok": total < 10 and removed,
        },
        {
            "what": "TiB lifecycle: peak RSS",
            "value": rss,
            "unit": "MiB",
            "target": "< 2048 MiB",
            "ok": rss < 2048,
        },
    ]


def one_gib_cycle(m: SimMachine, n: int = 20) -> float:
    """Median wall time of add + online + offline + remove of a 1 GiB device."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        d = m.device_add(GiB, 0, id="g")
        first = d.addr >> 27
        for b in range(first, first + 8):
            m.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
        for b in range(first + 7, first - 1, -1):
            m.sysfs.write(f"{MEM}/memory{b}/state", b"offline")
        m.device_del("g")
        times.append(time.perf_counter() - t)
        assert m.platform.slot_of("g") is None
    times.sort()
    return times[len(times) // 2]


def machine(total_gib: int) -> MachineSpec:
    per = total_gib // 4
    doc: dict[str, object] = {
        "name": f"growth-{total_gib}g",
        "node": [
            {
                "id": i,
                "cpus": [i],
                "memory": [[f"{i * per}G", f"{(i + 1) * per}G"]],
                "hotplug": [[f"{total_gib + 64 * i}G", f"{total_gib + 64 * (i + 1)}G"]],
            }
            for i in range(4)
        ],
        "hotplug": {"slots": 4, "maxmem": f"{total_gib + 256}G"},
    }
    return parse_machine(doc)


def growth() -> list[dict[str, object]]:
    small = SimMachine(machine(64))
    big = SimMachine(machine(16 * 1024))
    one_gib_cycle(small, 3)
    one_gib_cycle(big, 3)
    ts = one_gib_cycle(small)
    tb = one_gib_cycle(big)
    ratio = tb / ts
    return [
        {"what": "1 GiB add+online+offline+remove on 64 GiB", "value": ts * 1e3, "unit": "ms"},
        {"what": "1 GiB add+online+offline+remove on 16 TiB", "value": tb * 1e3, "unit": "ms"},
        {
            "what": "cost growth 16 TiB / 64 GiB",
            "value": ratio,
            "unit": "x",
            "target": "< 1.5",
            "ok": ratio < 1.5,
        },
    ]


def per_operation() -> list[dict[str, object]]:
    m = SimMachine(machine(256))
    d = m.device_add(64 * GiB, 1, id="d")
    first = d.addr >> 27
    t = time.perf_counter()
    for b in range(first, first + 512):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
    t_on = (time.perf_counter() - t) / 512
    times = []
    for i in range(64):
        b = first + 511 - i  # from the top: migration targets are the lowest blocks
        m.fill(PAGES_PER_SECTION, start=b << 27, end=(b + 1) << 27, owner=f"w{i}")
        t = time.perf_counter()
        m.sysfs.write(f"{MEM}/memory{b}/state", b"offline")
        times.append(time.perf_counter() - t)
    times.sort()
    t_off = times[len(times) // 2]
    m2 = SimMachine(machine(256))
    ej = []
    for _ in range(10):
        d = m2.device_add(GiB, 2, id="e")
        first = d.addr >> 27
        for b in range(first, first + 8):
            m2.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
        t = time.perf_counter()
        m2.sysfs.write("/sys/bus/acpi/devices/PNP0C80:00/eject", b"1")
        ej.append(time.perf_counter() - t)
    ej.sort()
    t_ej = ej[len(ej) // 2]
    return [
        {"what": "online one block (sysfs write)", "value": t_on * 1e6, "unit": "us per block"},
        {
            "what": "offline a fully populated block (32768 pages migrated)",
            "value": t_off * 1e6,
            "unit": "us per block",
        },
        {
            "what": "eject a 1 GiB device with 8 online blocks",
            "value": t_ej * 1e3,
            "unit": "ms per GiB",
        },
    ]


def main() -> None:
    rows = per_operation() + growth() + tib_lifecycle()
    record("scale", rows)


if __name__ == "__main__":
    main()
