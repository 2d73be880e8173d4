"""Guards of the speed figures of issue 17 recorded by benchmarks/bench_fuse.py
(benchmarks/results/fuse.json: ratios measured side by side in one run).  No timing is
measured here.

The read goal (<= 5x a captured copy) holds and is guarded with 2x slack.  The lsmem
goals (<= 3x a copy on 16,384 blocks, <= 10 s for ``lsmem --summary=only`` on big-16t)
are not met yet (issue 17 stays open: every lsmem request is a round trip through
/dev/fuse to a Python server); those figures are guarded against regression, at 1.5x
what was recorded, until the goal is reached."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _recorded(what: str) -> float:
    data = json.loads((REPO / "benchmarks" / "results" / "fuse.json").read_text())
    rows = [r for r in data["results"] if r["what"].startswith(what)]
    assert rows, f"benchmarks/bench_fuse.py has not recorded {what!r}"
    return float(rows[0]["value"])


def test_recorded_read_ratio_meets_the_goal() -> None:
    assert _recorded("read LIVE / COPY") <= 5.0 * 2  # goal 5x (was 77x; 4.37x recorded)


def test_recorded_lsmem_ratio_does_not_regress() -> None:
    # goal 3x, not met: 13.2x recorded (was ~100x at the time)
    assert _recorded("lsmem LIVE / COPY (default) (16384 blocks), warm") <= 13.2 * 1.5


def test_recorded_big16t_lsmem_summary_does_not_regress() -> None:
    # goal 10 s, not met: 107 s recorded warm (was 2 min 58 s)
    assert _recorded("lsmem --summary=only LIVE big-16t (131072 blocks), warm") <= 107 * 1.5
