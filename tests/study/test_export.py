"""memhp study --export-scenarios, and the validated cells against real Linux 6.1.

The scenarios tests/scenarios/study-qemu-validation-c*-s*.toml were exported from
studies/qemu-validation.toml and run on Linux 6.1 under QEMU (recordings in
tests/data/real/scenarios; benchmarks/RESULTS.md, "Study validation").
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import pytest

from memhp.bench.actions import HotAddAction, Memhp, Wait, Write
from memhp.bench.recording import Recording, recording_path
from memhp.bench.scenario import SCENARIO_DIR, load_scenario
from memhp.bench.tasks import EndTaskAction, TaskAction
from memhp.cli.main import main
from memhp.study.export import REPEAT_WAIT, export_scenarios
from memhp.study.lifecycle import cell_spec, run_lifecycle
from memhp.study.spec import StudyError, load_study

REPO = Path(__file__).resolve().parents[2]
STUDY = str(REPO / "studies" / "qemu-validation.toml")
RECORDINGS = str(REPO / "tests" / "data" / "real" / "scenarios")
VALIDATED = sorted(glob.glob(os.path.join(SCENARIO_DIR, "study-qemu-validation-c*-s*.toml")))


def test_exported_scenario_matches_the_cell(tmp_path: Path) -> None:
    study = load_study(STUDY)
    [x] = export_scenarios(study, STUDY, str(tmp_path), ["5"], [1])
    cell = study.cells[5]
    assert cell.id == "online=auto-movable,workload=kernel"
    assert x.removed == (False, True)
    sc = load_scenario(x.path)
    spec = cell_spec(study, cell)
    assert sc.kernels == ("6.1",)
    assert sc.machine.online_policy == spec.online_policy == "auto-movable"
    assert sc.machine.auto_movable_ratio == spec.auto_movable_ratio == 30
    assert sc.cmdline.memhp_default_state == "online"
    assert sc.machine.runtime_allocs.seed == 1
    hot = [s.action for s in sc.steps if isinstance(s.action, HotAddAction)]
    assert [(h.dimm.size, h.dimm.node, h.dimm.id) for h in hot] == [
        (256 << 20, 0, "dimm0"),
        (256 << 20, 0, "dimm1"),
    ]
    trace: list[dict[str, object]] = []
    run_lifecycle(study, cell, 1, trace)
    tasks = [s.action for s in sc.steps if isinstance(s.action, TaskAction)]
    pages = [e["pages"] for e in trace if e["op"] == "task"]
    assert [(t.movable + t.unmovable) >> 12 for t in tasks] == pages
    assert all(
        t.unmovable == int(int(str(p)) * 0.6) << 12 for t, p in zip(tasks, pages, strict=True)
    )
    removes = [s.action for s in sc.steps if isinstance(s.action, Memhp)]
    assert [(r.args[1], r.expect_rc) for r in removes] == [("PNP0C80:01", ()), ("PNP0C80:00", (0,))]


def test_user_space_online_and_churn_are_steps(tmp_path: Path) -> None:
    study = load_study(STUDY)
    [x] = export_scenarios(
        study, STUDY, str(tmp_path), ["online=online_movable,workload=movable"], [0]
    )
    sc = load_scenario(x.path)
    writes = [s.action for s in sc.steps if isinstance(s.action, Write)]
    assert [(w.path.rsplit("/", 2)[-2], w.value) for w in writes] == [
        (f"memory{i}", "online_movable") for i in (32, 33, 34, 35)
    ]
    assert sc.cmdline.memhp_default_state == "offline"
    assert [s.action.name for s in sc.steps if isinstance(s.action, EndTaskAction)] == ["task0"]


def test_a_probabilistic_cell_is_a_repeat_scenario(tmp_path: Path) -> None:
    """--repeat N: repeat = N real runs, no expected verdict, a wait for each removal
    whose outcome is compared (the cell's outcome depends on where run-time kernel
    allocations land)."""
    study = load_study(STUDY)
    [x] = export_scenarios(study, STUDY, str(tmp_path), ["2"], [0], repeat=4)
    sc = load_scenario(x.path)
    assert sc.repeat == 4
    assert sc.machine.runtime_allocs.seed == 0
    removes = [s.action for s in sc.steps if isinstance(s.action, Memhp)]
    assert [(r.args[1], r.expect_rc) for r in removes] == [("PNP0C80:01", ()), ("PNP0C80:00", ())]
    waits = [(s.action.removed, s.action.timeout) for s in sc.steps if isinstance(s.action, Wait)]
    assert waits[-2:] == [("dimm1", REPEAT_WAIT), ("dimm0", REPEAT_WAIT)]
    with pytest.raises(StudyError, match="expected a number of real runs >= 1, got 0"):
        export_scenarios(study, STUDY, str(tmp_path), ["2"], [0], repeat=0)


def test_export_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = load_study(STUDY)
    with pytest.raises(StudyError, match="no cell 'nope'"):
        export_scenarios(study, STUDY, str(tmp_path), ["nope"], [0])
    rc = main(["study", STUDY, "--export-scenarios", str(tmp_path), "--cell", "99"])
    assert rc == 1
    assert "no cell '99'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["study", STUDY, "--export-scenarios", str(tmp_path), "--seeds", "a"])
    with pytest.raises(SystemExit):
        main(["study", STUDY, "--export-scenarios", str(tmp_path), "--repeat", "17"])
    assert "expected a number of real runs 1..16, got '17'" in capsys.readouterr().err
    vm = str(REPO / "studies" / "vm-shrink.toml")
    with pytest.raises(StudyError, match="pinned pages have no guest counterpart"):
        export_scenarios(
            load_study(vm),
            vm,
            str(tmp_path),
            ["online=online_movable,memmap_on_memory=false,workload=cache-heavy"],
            [0],
        )


def _real_verdicts(path: str) -> list[list[bool]]:
    """Per real run (one, or N for a ``repeat = N`` scenario): removed per device."""
    sc = load_scenario(path)
    rec = Recording.load(recording_path(sc, RECORDINGS))
    names = [
        st.name for st in sc.steps if isinstance(st.action, Memhp) and st.action.args[0] == "remove"
    ]
    return [[run[n].result.outcome == "rc=0" for n in names] for run in rec.runs()]


RECORDED = [p for p in VALIDATED if os.path.exists(recording_path(load_scenario(p), RECORDINGS))]


def test_three_cells_are_validated() -> None:
    cells = {re.search(r"-c(\d+)-s", p).group(1) for p in RECORDED}  # type: ignore[union-attr]
    assert len(cells) >= 3, RECORDED


@pytest.mark.parametrize("path", RECORDED, ids=[os.path.basename(p) for p in RECORDED])
def test_study_model_agrees_with_real_linux(path: str) -> None:
    """The study's own run of the cell and seed removes exactly the devices the real
    guest removed (per device, in removal order); for a probabilistic cell (``repeat``)
    exactly the devices one of the real runs removed."""
    m = re.search(r"-c(\d+)-s(\d+)\.toml$", path)
    assert m is not None
    study = load_study(STUDY)
    trace: list[dict[str, object]] = []
    run_lifecycle(study, study.cells[int(m.group(1))], int(m.group(2)), trace)
    model = [bool(e["ok"]) for e in trace if e["op"] == "remove"]
    real = _real_verdicts(path)
    assert len(real) == load_scenario(path).repeat
    assert model in real


REPEATED = [p for p in RECORDED if load_scenario(p).repeat > 1]


@pytest.mark.parametrize("path", REPEATED, ids=[os.path.basename(p) for p in REPEATED])
def test_probabilistic_cell_model_outcomes_are_real_ones(path: str) -> None:
    """A probabilistic cell (``repeat``): the study's runs of the cell over 8 seeds
    each give an outcome one of the real runs had (cell 2 needed the sticky
    MIGRATE_UNMOVABLE page block, memhp.kernel.mm.page_alloc: 24 of 40 seeds before)."""
    m = re.search(r"-c(\d+)-s(\d+)\.toml$", path)
    assert m is not None
    study = load_study(STUDY)
    real = _real_verdicts(path)
    for seed in range(8):
        trace: list[dict[str, object]] = []
        run_lifecycle(study, study.cells[int(m.group(1))], seed, trace)
        assert [bool(e["ok"]) for e in trace if e["op"] == "remove"] in real, seed
