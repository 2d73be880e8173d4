"""Time ``memhp study`` lifecycle runs: runs per second per core on a 64 GiB
machine with 8 hot-added 8 GiB DIMMs, local engine with 1 and 2 workers.

Each run: boot, hot-add 8 DIMMs, online them (online_movable by user space, or the
kernel's auto-movable policy), a workload over 60 s of simulated time (movable,
unmovable and pinned pages, tmpfs files, the kernel's run-time allocations), then
``memhp remove`` of every DIMM.  The 64 GiB machine has block_size = "auto"
(probe_memory_block_size(): 2 GiB blocks on bare metal with >= 64 GiB).  The
10,000-run sweep time is projected from the measured rate (it is not run).

Writes ``benchmarks/results/study.json``.  Usage:
``python benchmarks/bench_study.py [--runs N]`` (runs per cell; 2 cells).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from memhp.study.engine import run_study
from memhp.study.spec import parse_study

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import record  # noqa: E402

STUDY: dict[str, Any] = {
    "name": "bench-64g-8dimm",
    "machine": {
        "name": "m64",
        "profile": "linux-6.1",
        "block_size": "auto",
        "memcg": True,
        "node": [{"id": 0, "cpus": [0, 1], "memory": [["0", "64G"]], "hotplug": [["64G", "256G"]]}],
        "hotplug": {"slots": 8, "maxmem": "256G"},
    },
    "dimm": [{"size": "8G", "node": 0, "count": 8}],
    "sim_time": 60,
    "steps": 8,
    "workloads": {
        "mixed": {"fill": 0.5, "unmovable": 0.02, "pinned": 0.001, "tmpfs": 0.05, "churn": 0.3}
    },
    "grid": {"online": ["online_movable", "auto-movable"]},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10, help="runs per cell (2 cells)")
    args = ap.parse_args()
    study = dataclasses.replace(parse_study(STUDY), runs=args.runs)
    rows: list[dict[str, Any]] = []
    results = {}
    for workers in (1, 2):
        out = run_study(study, workers=workers)
        t = out.timings
        results[workers] = out.runs
        rows += [
            {
                "what": f"64 GiB, 8 DIMMs: runs/s per core ({workers} worker(s))",
                "value": t["runs_per_second_per_core"],
                "unit": "runs/s/core",
                "target": 50,
                "ok": t["runs_per_second_per_core"] >= 50,
            },
            {
                "what": f"64 GiB, 8 DIMMs: {t['runs']} runs wall time ({workers} worker(s))",
                "value": t["wall_seconds"],
                "unit": "s",
            },
            {
                "what": f"10,000-run sweep, projected ({workers} worker(s))",
                "value": round(10_000 / t["runs_per_second"], 1),
                "unit": "s",
                "target": 120,
                "ok": 10_000 / t["runs_per_second"] <= 120,
            },
        ]
    rows.append(
        {
            "what": "results identical with 1 and 2 workers",
            "value": results[1] == results[2],
            "unit": "",
            "ok": results[1] == results[2],
        }
    )
    record("study", rows)


if __name__ == "__main__":
    main()
