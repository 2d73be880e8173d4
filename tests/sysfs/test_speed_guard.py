"""Guards of the speed figures of issue 17 recorded by benchmarks/bench_fuse.py
(benchmarks/results/fuse.json: ratios measured side by side in one run).  No timing is
measured here.

Rows marked ``[MEMHP_FUSE_FAST=1]`` were measured with opens that make no request (fast
mode, memhp/sim/fuse_ll.py); the others with the default, every open answered.  Goals
met are guarded with slack (2x the goal); goals not met are guarded against regression,
at 1.5x what was recorded, until they are reached."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAST = " [MEMHP_FUSE_FAST=1]"


def _recorded(what: str) -> float:
    data = json.loads((REPO / "benchmarks" / "results" / "fuse.json").read_text())
    rows = [r for r in data["results"] if r["what"] == what]
    assert rows, f"benchmarks/bench_fuse.py has not recorded {what!r}"
    return float(rows[0]["value"])


READ = "read LIVE / COPY (open+read+close of memory5/state)"
LSMEM = "lsmem LIVE / COPY (default) (16384 blocks), warm"
BIG = "lsmem --summary=only LIVE big-16t (131072 blocks), warm"


def test_recorded_read_ratio() -> None:
    assert _recorded(READ + FAST) <= 5.0 * 2  # goal 5x: met in fast mode (1.41x recorded)
    # answered opens: 22.25x recorded at 23:14 while a study benchmark ran on the other
    # core; by hand at 23:13-23:27 (load ~1): 23-38 us per read, 3.5-5.8x.  Each read is a
    # round trip to the daemon, which waits for a CPU: guarded against regression
    assert _recorded(READ) <= 22.25 * 1.5


def test_recorded_lsmem_ratio() -> None:
    assert _recorded(LSMEM + FAST) <= 3.0 * 2  # goal 3x: met in fast mode (1.24x recorded)
    assert _recorded(LSMEM) <= 21.4 * 1.5  # goal 3x, not met with answered opens (21.4x)


def test_recorded_big16t_lsmem_summary() -> None:
    assert _recorded(BIG + FAST) <= 10.0 * 2  # goal 10 s: met in fast mode (6.07 s recorded)
