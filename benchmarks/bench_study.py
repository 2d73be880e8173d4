"""Time ``memhp study`` lifecycle runs: runs per second per core on a 64 GiB
machine with 8 hot-added 8 GiB DIMMs, local engine with 1 and 2 workers.

Each run: boot, hot-add 8 DIMMs, online them (online_movable by user space, or the
kernel's auto-movable policy), a workload over 60 s of simulated time (movable,
unmovable and pinned pages, tmpfs files, the kernel's run-time allocations), then
``memhp remove`` of every DIMM.  The 64 GiB machine has block_size = "auto"
(probe_memory_block_size(): 2 GiB blocks on bare metal with >= 64 GiB).  The
10,000-run sweep time is projected from the measured rate, and measured with ``--sweep``.

The runs per CPU-second move with the host's speed, which on this virtual machine
changes by up to 2x from one second to the next (other guests share the host's
cores): each measurement with 1 and 2 workers is repeated (``--repeat``, default 5),
the best is judged (as the other benchmarks' best_of()) and the median and worst are
recorded with it, and the host's speed (CPU ns per iteration of a fixed Python loop)
is recorded after each repeat and next to each load sample.

Scaling (``--scaling-runs N`` runs per cell, 0 to skip): runs/s against the number
of workers, 1-4, for the local process pool and for a Dask ``LocalCluster`` (one
single-threaded worker process each; the cluster is started and warmed up -- the
workers import memhp and parse the machine -- before the timed study).  This
machine has 2 cores: above 2 workers the workers share them, so the figure
can only stay flat.

Writes ``benchmarks/results/study.json``.  Usage:
``python benchmarks/bench_study.py [--runs N] [--repeat N] [--scaling-runs N] [--sweep N]``
(runs per cell; 2 cells; ``--sweep 10000`` runs and times the 10,000-run sweep itself).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from memhp.study.engine import run_study
from memhp.study.spec import Study, parse_study

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import record, reference_loop_ns  # noqa: E402

#: This machine's cores (the sweep uses them all; the goal is for all of them).
CORES = os.cpu_count() or 1

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


def scaling(study: Study, reference: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """runs/s with 1-4 workers: the local process pool, then a Dask LocalCluster."""
    from distributed import LocalCluster

    rows: list[dict[str, Any]] = _conditions("before the scaling runs")
    for workers in range(1, 5):
        t = run_study(study, workers=workers).timings
        rows.append(
            {
                "what": f"scaling: local pool, {workers} worker(s) on {CORES} cores: runs/s",
                "value": t["runs_per_second"],
                "unit": "runs/s",
            }
        )
    same = True
    warm = dataclasses.replace(study, runs=1)
    for workers in range(1, 5):
        with LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,  # (heartbeats racing the shutdown)
        ) as cluster:
            addr = cluster.scheduler_address
            run_study(warm, scheduler=addr)
            out = run_study(study, scheduler=addr)
        same = same and out.runs == reference
        rows.append(
            {
                "what": f"scaling: Dask LocalCluster, {workers} worker(s) on {CORES} cores: runs/s",
                "value": out.timings["runs_per_second"],
                "unit": "runs/s",
            }
        )
    rows.append(
        {"what": "Dask results identical to the local run", "value": same, "unit": "", "ok": same}
    )
    rows += _conditions("after the scaling runs")
    return rows


def sweep(study: Study, runs: int) -> list[dict[str, Any]]:
    """A sweep of ``runs`` runs (half per cell) on the local pool with a worker per
    core, timed from the first submission to the last result (pool start-up and each
    worker's cell templates included)."""
    big = dataclasses.replace(study, runs=-(-runs // len(study.cells)))
    rows = _conditions("before the sweep")
    t = run_study(big, workers=CORES).timings
    target = round(120 * t["runs"] / 10_000, 1)  # (the goal: 10,000 runs in 2 minutes)
    rows += [
        {
            "what": f"sweep of {t['runs']} runs, measured ({CORES} workers on {CORES} cores)",
            "value": t["wall_seconds"],
            "unit": "s",
            "target": target,
            "ok": t["wall_seconds"] <= target,
        },
        {
            "what": f"sweep of {t['runs']} runs: runs/s per core (CPU time of the workers)",
            "value": t["runs_per_second_per_core"],
            "unit": "runs/s/core",
        },
        *_conditions("after the sweep"),
    ]
    return rows


def _conditions(when: str) -> list[dict[str, Any]]:
    """The machine's 1-minute load average (other processes share the cores) and the
    host's speed at that moment (:func:`_common.reference_loop_ns`: the figures of
    this benchmark move with it)."""
    return [
        {"what": f"load average (1 min) {when}", "value": os.getloadavg()[0], "unit": ""},
        {
            "what": f"host speed {when}: reference loop",
            "value": reference_loop_ns(),
            "unit": "ns/iteration",
        },
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10, help="runs per cell (2 cells)")
    ap.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="measurements of the runs/s per core with 1 and 2 workers; the best is judged "
        "(as _common.best_of: the host's speed moves, see reference_loop_ns), all recorded",
    )
    ap.add_argument(
        "--scaling-runs", type=int, default=20, help="runs per cell of the scaling part (0: skip)"
    )
    ap.add_argument(
        "--sweep",
        type=int,
        default=0,
        help="also run a sweep of this many runs on all cores and time it (0: skip; "
        "the goal is 10,000 in 2 minutes)",
    )
    args = ap.parse_args()
    if args.repeat < 1 or args.runs < 1:
        ap.error("--repeat and --runs must be at least 1")
    study = dataclasses.replace(parse_study(STUDY), runs=args.runs)
    rows: list[dict[str, Any]] = _conditions("at the start")
    results = {}
    for workers in (1, 2):
        rates: list[float] = []
        speeds: list[float] = []
        best: dict[str, Any] = {}
        for _ in range(args.repeat):
            out = run_study(study, workers=workers)
            t = out.timings
            speeds.append(reference_loop_ns(0.1))
            if results.setdefault(workers, out.runs) != out.runs:
                raise SystemExit(f"bench_study: a repeat with {workers} worker(s) differs")
            rates.append(t["runs_per_second_per_core"])
            if not best or t["runs_per_second"] > best["runs_per_second"]:
                best = t
        rates.sort()
        what = f"64 GiB, 8 DIMMs: runs/s per core ({workers} worker(s))"
        rows += [
            {
                "what": f"{what}, best of {args.repeat}",
                "value": rates[-1],
                "unit": "runs/s/core",
                "target": 50,
                "ok": rates[-1] >= 50,
            },
            {"what": f"{what}, median", "value": statistics.median(rates), "unit": "runs/s/core"},
            {"what": f"{what}, worst", "value": rates[0], "unit": "runs/s/core"},
            *(
                {
                    "what": f"host speed after each of them ({workers} worker(s)): "
                    f"reference loop, {which}",
                    "value": pick(speeds),
                    "unit": "ns/iteration",
                }
                for which, pick in (("slowest", max), ("fastest", min))
            ),
            {
                "what": f"64 GiB, 8 DIMMs: {best['runs']} runs wall time ({workers} worker(s)), "
                "best",
                "value": best["wall_seconds"],
                "unit": "s",
            },
            {
                "what": f"10,000-run sweep, projected from the best ({workers} worker(s))",
                "value": round(10_000 / best["runs_per_second"], 1),
                "unit": "s",
                # (the goal is for the whole machine: judged where every core works)
                **(
                    {"target": 120, "ok": 10_000 / best["runs_per_second"] <= 120}
                    if workers == CORES
                    else {}
                ),
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
    if args.sweep > 0:
        rows += sweep(study, args.sweep)
    if args.scaling_runs > 0:
        sstudy = dataclasses.replace(study, runs=args.scaling_runs)
        reference = run_study(sstudy, workers=1).runs
        rows += scaling(sstudy, reference)
    record("study", rows)


if __name__ == "__main__":
    main()
