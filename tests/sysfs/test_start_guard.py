"""Loose guards of the start-up goals of issue 17 on the recorded benchmark results
(benchmarks/bench_start.py, bench_startup.py measure them; no timing here), and the
boot path's laziness: a big machine's block objects are built on first access only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memhp.sim.machine import SimMachine
from tests.support.sim import machine

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def _rows(name: str) -> dict[str, float]:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        pytest.skip(f"no recorded {name}.json")
    data = json.loads(path.read_text())
    return {r["what"]: float(r["value"]) for r in data["results"]}


def test_recorded_big_machine_start_within_twice_the_goal() -> None:
    rows = _rows("start")
    start = next(v for k, v in rows.items() if "sim start to a usable mount" in k)
    rss = next(v for k, v in rows.items() if k.endswith("daemon RSS after start"))
    cpu = next(v for k, v in rows.items() if "daemon CPU time" in k)
    assert start < 2 * 2.0, start  # goal 2 s (was 6.9 s; 1.19 s recorded on a quiet moment)
    assert cpu < 2.0, cpu  # CPU time of the daemon to ready (1.01 s recorded)
    assert rss < 2 * 286, rss  # goal 300 MB


def test_recorded_list_startup_within_three_times_the_goal() -> None:
    rows = _rows("startup")
    cpu = rows["memhp list -V - bare interpreter: cpu"]
    assert cpu < 90, cpu  # goal 30 ms over the bare interpreter
    key = "python -I -S memhp.cli.main list (512 blocks) - bare interpreter: cpu"
    if key in rows:
        assert rows[key] < 90, rows[key]  # goal 30 ms (22.6 ms measured by hand)


def test_recorded_list_against_lsmem_within_the_goal_loosely() -> None:
    rows = _rows("startup")
    ratios = {k: v for k, v in rows.items() if k.endswith(": cpu ratio")}
    if not ratios:
        pytest.skip("startup.json has no lsmem ratios yet")
    assert len(ratios) == 5, sorted(ratios)
    for what, ratio in ratios.items():
        assert rows[what.replace("cpu ratio", "same output")] == 1, what
        # goal 0.8x (0.27-0.79x recorded; 0.37-0.94x before read_table)
        assert ratio < 1.0, (what, ratio)


def test_boot_blocks_are_built_on_first_access() -> None:
    sim = SimMachine(machine("qemu-pc-2node"))
    blocks = sim.kernel.memory.blocks
    assert blocks.built() == 0
    ids = list(blocks)
    first = blocks[ids[-1]]
    assert blocks.built() == 1
    assert blocks[ids[-1]] is first
    assert list(blocks) == ids
    nodes = {nid: sim.kernel.memory.node_block_ids(nid) for nid in sim.kernel.pgdats}
    assert blocks.built() == 1
    assert nodes == {
        nid: [m.id for m in blocks.values() if nid in m.nodes] for nid in sim.kernel.pgdats
    }
    assert blocks.built() == len(ids)
