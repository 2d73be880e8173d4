"""``repeat = N`` scenarios: N real runs recorded as one recording, the model over N
seeds, each model outcome one of the real ones (issue 14: real runs are not always
deterministic where kernel allocations race with a workload)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from memhp.bench.drivers import SideResult
from memhp.bench.recording import Recording
from memhp.bench.runner import diff_scenario, model_driver, run_scenario, seeded_model_driver
from memhp.bench.scenario import Scenario, ScenarioError, parse_scenario

STEPS: list[dict[str, object]] = [
    {"name": "plug", "hot_add": {"size": "1G", "node": 0, "id": "dimm1"}, "capture": False},
    {"name": "online", "write": "memory32/state", "value": "online_kernel", "capture": False},
    {"name": "offline", "write": "memory32/state", "value": "offline", "expect": ["ok", "EBUSY"]},
]


def scenario(repeat: int = 2) -> Scenario:
    doc = {"machine": "machines/qemu-linux-6.1.toml", "repeat": repeat, "step": STEPS}
    return parse_scenario(doc, "repeat.toml")


def recorded(sc: Scenario, *outcomes: str) -> Recording:
    """A recording of len(outcomes) runs (the model as the real side) whose
    ``offline`` step had the given outcomes."""
    rec = Recording(sc.label)
    run_scenario(sc, model_driver(sc), model_driver(sc), record=rec)
    runs = []
    for o in outcomes:
        steps = copy.deepcopy(rec.steps)
        steps["offline"].result = SideResult(o, steps["offline"].result.detail)
        runs.append(steps)
    rec.steps, rec.more_runs = runs[0], runs[1:]
    return rec


def test_repeat_parses_and_is_checked() -> None:
    assert scenario(3).repeat == 3
    assert parse_scenario({"machine": "machines/qemu-linux-6.1.toml", "step": STEPS}).repeat == 1
    for bad in (0, 17, "4", True):
        with pytest.raises(ScenarioError) as ei:
            scenario(bad)  # type: ignore[arg-type]
        assert str(ei.value) == f"repeat.toml: repeat: expected a number of runs 1..16, got {bad!r}"


def test_model_outcome_within_the_set_of_real_outcomes() -> None:
    sc = scenario(2)
    rec = recorded(sc, "EBUSY", "ok")  # the model offlines memory32: "ok", the 2nd run
    assert rec.outcomes("offline") == ["EBUSY", "ok"]
    res = diff_scenario(sc, replay=rec)
    assert res.differences == []
    assert [s.name for s in res.steps] == ["boot", "plug", "online", "offline"]


def test_model_outcome_outside_the_set_is_a_difference_for_every_seed() -> None:
    sc = scenario(2)
    res = diff_scenario(sc, replay=recorded(sc, "EBUSY", "EINTR"))
    outcome = [
        (d.path.split(":")[0], d.real, d.model) for d in res.differences if d.kind == "outcome"
    ]
    assert outcome == [
        (
            "echo offline > /sys/devices/system/memory/memory32/state",
            "one of 'EBUSY', 'EINTR'",
            "'ok'",
        ),
        ("seed 1", "one of 'EBUSY', 'EINTR'", "'ok'"),
    ]


def test_recording_of_several_runs_round_trips(tmp_path: Path) -> None:
    sc = scenario(3)
    rec = recorded(sc, "ok", "EBUSY", "ok")
    path = str(tmp_path / "r.json.gz")
    rec.save(path)
    back = Recording.load(path)
    assert len(back.runs()) == 3
    assert back.outcomes("offline") == ["ok", "EBUSY"]
    assert list(back.more_runs[0]) == ["boot", "plug", "online", "offline"]
    assert back.more_runs[0]["offline"].snapshot == rec.more_runs[0]["offline"].snapshot


def test_seeds_reach_the_model() -> None:
    sc = scenario(2)
    assert seeded_model_driver(sc, 5).m.kernel.kalloc.seed == 5
    assert model_driver(sc).m.kernel.kalloc.seed == 0
