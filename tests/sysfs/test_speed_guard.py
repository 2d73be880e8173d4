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
    assert _recorded(READ + FAST) <= 5.0 * 2  # goal 5x: met in fast mode (0.9x recorded)
    # answered opens: 4.85x recorded at 01:35 (33 us against a copy's 6.8 us, the other
    # core partly busy); 9.0x in a run at 00:59 (41.5 against 4.6 us).  Each read is a
    # round trip to the daemon, whose request loop polls before it sleeps (a wake-up on
    # another CPU costs ~45 us in this VM): guarded at 2x the goal, the spread seen
    assert _recorded(READ) <= 5.0 * 2


def test_recorded_lsmem_ratio() -> None:
    assert _recorded(LSMEM + FAST) <= 3.0 * 2  # goal 3x: met in fast mode (1.04x recorded)
    assert _recorded(LSMEM) <= 7.43 * 1.5  # goal 3x, not met with answered opens (7.43x)


def test_recorded_big16t_lsmem_summary() -> None:
    assert _recorded(BIG + FAST) <= 10.0 * 2  # goal 10 s: met in fast mode (6.07 s recorded)
