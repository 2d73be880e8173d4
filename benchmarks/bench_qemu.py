"""Time hot-add and hot-remove of a 1 GiB pc-dimm on real Linux 6.1 under QEMU.

Boots the reference machine (node0: 2 CPUs + 1 GiB, node1 memory-less, slots=4,
maxmem=8G, ``memhp_default_state=offline``) once, then per run:

* ``hot_add``: QMP ``object-add`` + ``device_add`` until the guest's ``_OST``
  (insert, success): ACPI notify → ``add_memory()`` → 8 offline blocks;
* ``online``: ``online_movable`` written to the 8 blocks (one agent round trip each);
* ``hot_remove``: QMP ``device_del`` until ``DEVICE_DELETED`` and the final ``_OST``:
  ACPI eject request → offline 8 blocks → ``remove_memory()`` → ``_EJ0``;
* ``cycle_offline``: add then remove without onlining.

Usage: ``python benchmarks/bench_qemu.py [--runs N]``; writes
``benchmarks/results/qemu.json``.  Needs QEMU, busybox-static and the kernel
(``bash .ci/qemu-deps.sh``).  Under TCG these times include emulation overhead.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memhp.bench.qmp import QmpEvent
from memhp.bench.vm import GuestVM, VMConfig, bench_available

HERE = Path(__file__).resolve().parent
GIB = 1 << 30
MEM = "/sys/devices/system/memory"


def stats(xs: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(xs), 4),
        "min_s": round(min(xs), 4),
        "max_s": round(max(xs), 4),
        "runs": len(xs),
    }


def about(dimm: str) -> Callable[[QmpEvent], bool]:
    return lambda e: e.device == dimm


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "qemu.json")
    args = ap.parse_args(argv)
    missing = bench_available()
    if missing:
        print(f"skipped: {missing}")
        return 0
    times: dict[str, list[float]] = {"hot_add": [], "online": [], "hot_remove": []}
    cycle: list[float] = []
    t_boot = time.perf_counter()
    with GuestVM(VMConfig()) as vm:
        boot_wall = time.perf_counter() - t_boot
        assert vm.boot is not None
        p, fs = vm.platform, vm.fs
        first_block = 32
        for i in range(args.runs):
            dimm = f"bench{i}"
            t0 = time.perf_counter()
            dev = p.hot_add_dimm(GIB, node=0, id=dimm)
            p.wait_event("ACPI_DEVICE_OST", 120, about(dimm))
            t1 = time.perf_counter()
            first_block = dev.addr // (128 << 20)
            for b in range(first_block, first_block + 8):
                err = fs.write_status(f"{MEM}/memory{b}/state", "online_movable")
                if err:
                    raise RuntimeError(f"online memory{b}: errno {err}")
            t2 = time.perf_counter()
            p.device_del(dimm)
            if not p.wait_removal(dimm, 120):
                raise RuntimeError(f"{dimm} was not removed")
            t3 = time.perf_counter()
            p.release_backend(dimm)
            times["hot_add"].append(t1 - t0)
            times["online"].append(t2 - t1)
            times["hot_remove"].append(t3 - t2)
            # add + remove with the blocks left offline
            t4 = time.perf_counter()
            p.hot_add_dimm(GIB, node=0, id=dimm + "x")
            p.wait_event("ACPI_DEVICE_OST", 120, about(dimm + "x"))
            p.device_del(dimm + "x")
            if not p.wait_removal(dimm + "x", 120):
                raise RuntimeError(f"{dimm}x was not removed")
            cycle.append(time.perf_counter() - t4)
            p.release_backend(dimm + "x")
        accel = vm.boot.accel
        boot_s = vm.boot.seconds
    result: dict[str, Any] = {
        "what": "1 GiB pc-dimm on node0, Linux 6.1 under QEMU 7.2 (agent round trips included)",
        "accel": accel,
        "boot_s": round(boot_s, 3),
        "boot_wall_s": round(boot_wall, 3),
        "host": {"python": sys.version.split()[0], "machine": platform.machine()},
        "results": {k: stats(v) for k, v in times.items()} | {"cycle_offline": stats(cycle)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"boot {boot_s:.2f}s ({accel})")
    for k, v in result["results"].items():
        print(f"{k:14s} median {v['median_s'] * 1000:8.1f} ms  (min {v['min_s'] * 1000:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
