"""Running a study's grid: local processes (default) or a Dask cluster.

A task is (cell index, run index); its seed is ``study.seed + run``.  Results are
put back in task order, so the output does not depend on the engine, the number of
workers or the order tasks finish in.  Wall-clock figures go to the timings only.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from memhp.study.lifecycle import cell_spec, run_lifecycle
from memhp.study.spec import Study

Progress = Callable[[int, int], None]


@dataclass
class Outcome:
    """Per cell, the runs in seed order; and the engine's wall-clock timings."""

    runs: list[list[dict[str, Any]]]
    timings: dict[str, Any]


def _task(study: Study, cell: int, run: int) -> tuple[int, int, dict[str, Any], float]:
    """One run; its CPU time includes one collection of the objects it left.

    The cyclic garbage collector is paused during the run (a run allocates some
    hundred thousand objects, most of them alive until its end: the automatic
    young-generation collections kept re-scanning them), then the run's garbage
    (the machine's reference cycles) is collected once.
    """
    t0 = time.process_time()
    enabled = gc.isenabled()
    gc.disable()
    try:
        res = run_lifecycle(study, study.cells[cell], study.seed + run)
    finally:
        if enabled:
            gc.enable()
            gc.collect(0)
    return cell, run, res, time.process_time() - t0


#: Most tasks sent to a worker (local or Dask) at once.
_BATCH_MAX = 32

Result = tuple[int, int, dict[str, Any], float]


def _batch(study: Study, tasks: list[tuple[int, int]]) -> list[Result]:
    """:func:`_task` of each (cell, run), in turn."""
    return [_task(study, c, r) for c, r in tasks]


def _gather(
    done: Iterable[list[Result]],
    runs: list[list[dict[str, Any]]],
    per_run: list[float],
    progress: Progress,
    total: int,
) -> None:
    """Each finished batch's results into ``runs`` (by cell and run) and ``per_run``."""
    n = 0
    for results in done:
        for c, r, res, dt in results:
            runs[c][r] = res
            per_run.append(dt)
        n += len(results)
        progress(n, total)


def _batches(tasks: list[tuple[int, int]], workers: int) -> list[list[tuple[int, int]]]:
    """``tasks`` cut into batches of up to :data:`_BATCH_MAX`, at least 8 a worker
    where there are enough tasks (fewer round trips; the load still balances)."""
    size = max(1, min(_BATCH_MAX, len(tasks) // (max(workers, 1) * 8)))
    return [tasks[i : i + size] for i in range(0, len(tasks), size)]


def _noop(_done: int, _total: int) -> None:
    pass


def validate(study: Study) -> None:
    """Every cell's machine takes the cell's parameters (StudyError otherwise)."""
    for c in study.cells:
        cell_spec(study, c)


def run_study(
    study: Study,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Progress = _noop,
) -> Outcome:
    """Run every cell ``study.runs`` times; ``scheduler``: a Dask scheduler address."""
    validate(study)
    tasks = [(c, r) for c in range(len(study.cells)) for r in range(study.runs)]
    runs: list[list[dict[str, Any]]] = [[{}] * study.runs for _ in study.cells]
    per_run: list[float] = []
    t0 = time.perf_counter()
    if scheduler is not None:
        engine, nworkers = _dask(study, tasks, scheduler, runs, per_run, progress)
    else:
        nworkers = workers or os.cpu_count() or 1
        engine = "local"
        if nworkers == 1:
            _gather(([_task(study, c, r)] for c, r in tasks), runs, per_run, progress, len(tasks))
        else:
            with ProcessPoolExecutor(max_workers=nworkers) as ex:
                futs = [ex.submit(_batch, study, b) for b in _batches(tasks, nworkers)]
                done = (f.result() for f in as_completed(futs))
                _gather(done, runs, per_run, progress, len(tasks))
    wall = time.perf_counter() - t0
    timings = {
        "engine": engine,
        "workers": nworkers,
        "runs": len(tasks),
        "wall_seconds": round(wall, 3),
        "runs_per_second": round(len(tasks) / wall, 3) if wall > 0 else None,
        #: CPU seconds per run (process time of the worker: other load does not count)
        "run_cpu_seconds_mean": round(sum(per_run) / len(per_run), 6) if per_run else None,
        "runs_per_second_per_core": (
            round(len(per_run) / sum(per_run), 3) if per_run and sum(per_run) > 0 else None
        ),
    }
    return Outcome(runs, timings)


def _dask(
    study: Study,
    tasks: list[tuple[int, int]],
    scheduler: str,
    runs: list[list[dict[str, Any]]],
    per_run: list[float],
    progress: Progress,
) -> tuple[str, int]:
    from distributed import Client
    from distributed import as_completed as dask_completed

    with Client(scheduler, timeout="10s") as client:  # type: ignore[no-untyped-call]
        nworkers = len(client.scheduler_info().get("workers", {}))
        [sfut] = client.scatter([study], broadcast=True)
        futs = [client.submit(_batch, sfut, b, pure=False) for b in _batches(tasks, nworkers)]
        done = (f.result() for f in dask_completed(futs))  # type: ignore[no-untyped-call]
        _gather(done, runs, per_run, progress, len(tasks))
    return "dask", nworkers
