"""Loose guards of the study speed goals of issue 20.

benchmarks/bench_study.py measures them (runs per CPU-second on a 64 GiB machine
with 8 DIMMs; runs/s against 1-4 workers for the local process pool and a Dask
LocalCluster) and records benchmarks/results/study.json.  These tests check the
recorded figures, loosely; they time nothing themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "study.json"

#: runs/s/core recorded before the kernel's run-time paths were made faster.
BEFORE = 5.2


def _rows() -> dict[str, object]:
    if not RESULTS.exists():
        pytest.skip("no recorded study benchmark")
    data = json.loads(RESULTS.read_text())
    return {str(r["what"]): r["value"] for r in data["results"]}


def _value(rows: dict[str, object], prefix: str) -> float:
    hits = [v for k, v in rows.items() if k.startswith(prefix)]
    assert len(hits) == 1, (prefix, sorted(rows))
    v = hits[0]
    assert isinstance(v, int | float)
    return float(v)


def test_recorded_rate_per_core_is_well_above_the_old_one() -> None:
    rows = _rows()
    rate = _value(rows, "64 GiB, 8 DIMMs: runs/s per core (1 worker(s)), best of ")
    assert rate >= 1.25 * BEFORE, rate  # goal: 50 (noisy: the machine is shared)


def test_recorded_scaling_covers_1_to_4_workers_of_both_engines() -> None:
    rows = _rows()
    for engine in ("local pool", "Dask LocalCluster"):
        for workers in range(1, 5):
            assert _value(rows, f"scaling: {engine}, {workers} worker(s) on ") > 0
    assert rows["Dask results identical to the local run"] is True
    assert rows["results identical with 1 and 2 workers"] is True


def test_recorded_extra_workers_do_not_collapse_throughput() -> None:
    """With 2-4 workers neither engine falls far below its one-worker figure.  The
    gain itself is not asserted: the machine has 2 cores, shared with other load
    while measured (see the recorded load average)."""
    rows = _rows()
    for engine in ("local pool", "Dask LocalCluster"):
        one = _value(rows, f"scaling: {engine}, 1 worker(s) on ")
        for w in (2, 3, 4):
            more = _value(rows, f"scaling: {engine}, {w} worker(s) on ")
            assert more >= one / 3, (engine, w, one, more)


def test_recorded_sweep_was_run_and_judged_by_its_own_figure() -> None:
    """The 10,000-run sweep is measured, not only projected; its verdict is its figure
    against 2 minutes, and the interpreter it ran on is recorded."""
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else None
    if data is None:
        pytest.skip("no recorded study benchmark")
    rows = [r for r in data["results"] if str(r["what"]).startswith("sweep of ")]
    measured = [r for r in rows if "measured" in str(r["what"])]
    assert len(measured) == 1, rows
    (row,) = measured
    assert "10000 runs" in row["what"]
    assert 0 < row["value"] < 3600
    assert row["target"] == 120.0
    assert row["ok"] == (row["value"] <= row["target"])
    assert "libpython" in data["environment"]["interpreter"]


def test_recorded_figures_come_with_the_hosts_speed() -> None:
    """Each load sample has the host's speed next to it (ns per iteration of the
    reference loop), and so do the repeated per-core measurements: this host's speed
    moves by up to 2x from one second to the next, and the figures with it."""
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else None
    if data is None:
        pytest.skip("no recorded study benchmark")
    rows = {str(r["what"]): r for r in data["results"]}
    loads = [w for w in rows if w.startswith("load average (1 min) ")]
    assert loads
    for w in loads:
        speed = rows[f"host speed {w.removeprefix('load average (1 min) ')}: reference loop"]
        assert speed["unit"] == "ns/iteration"
        assert 1 < speed["value"] < 10_000
    for workers in (1, 2):
        what = f"host speed after each of them ({workers} worker(s)): reference loop"
        fast, slow = rows[f"{what}, fastest"]["value"], rows[f"{what}, slowest"]["value"]
        assert 1 < fast <= slow < 10_000
        per_core = f"64 GiB, 8 DIMMs: runs/s per core ({workers} worker(s))"
        best = next(r for w, r in rows.items() if w.startswith(f"{per_core}, best of "))
        assert best["target"] == 50
        assert best["ok"] == (best["value"] >= 50)
        assert rows[f"{per_core}, worst"]["value"] <= rows[f"{per_core}, median"]["value"]
        assert rows[f"{per_core}, median"]["value"] <= best["value"]


def test_a_recording_states_the_hosts_speed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """benchmarks/_common.record() writes the host's speed into the environment
    (the reference loop's CPU ns an iteration: positive, finite) and run_all's
    rendering shows it next to the recording's date."""
    from benchmarks import _common, run_all

    monkeypatch.setattr(_common, "RESULTS", str(tmp_path))
    monkeypatch.setattr(run_all, "RESULTS", str(tmp_path))
    _common.record("probe", [{"what": "x", "value": 1.0, "unit": "s"}])
    env = json.loads((tmp_path / "probe.json").read_text())["environment"]
    assert 1 < env["reference_loop_ns"] < 10_000
    assert f"(host speed: reference loop {env['reference_loop_ns']} ns/iteration)" in (
        run_all.render()
    )
    assert "reference_loop_ns" not in _common.environment()  # (only when asked: it costs 0.3 s)
