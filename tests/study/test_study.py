"""memhp study: the study file, the lifecycle on the model, determinism across
engines (local processes with 1 or 2 workers, a Dask LocalCluster), the outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from memhp.cli.main import main
from memhp.study.engine import run_study
from memhp.study.lifecycle import run_lifecycle
from memhp.study.report import quantile, wilson
from memhp.study.spec import StudyError, load_study, parse_study
from tests.support.sim import ROOT

SEED_MACHINE = os.path.join(ROOT, "machines", "seed.toml")

SMALL = f"""
name = "small"
machine = "{SEED_MACHINE}"
runs = 2
sim_time = 10
steps = 3

[[dimm]]
size = "256M"
node = 1
addr = "1G"

[[dimm]]
size = "256M"
node = 1
addr = "0x50000000"

[workloads.light]
fill = 0.3
unmovable = 0.01
churn = 0.3

[grid]
remove_order = ["last-first", "first-first"]
online = ["online", "online_movable"]
"""


def _write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "study.toml"
    p.write_text(text)
    return str(p)


def test_wilson_and_quantiles() -> None:
    lo, hi = wilson(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson(0, 0) == (0.0, 1.0)
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([5.0], 0.9) == 5.0


def test_seed_memcg_page_cgroup_makes_the_order_of_removal_matter(tmp_path: Path) -> None:
    # 3.8 with MEMCG: the page_cgroup of the second DIMM's sections lives in the
    # first DIMM (memory8), so removing the first DIMM first fails on memory8.
    study = load_study(_write(tmp_path, SMALL))
    by_id = {c.id: c for c in study.cells}
    ok = run_lifecycle(study, by_id["remove_order=last-first,online=online"], 0)
    assert ok["success"] and ok["removed_bytes"] == ok["requested_bytes"] == 512 << 20
    bad = run_lifecycle(study, by_id["remove_order=first-first,online=online"], 0)
    assert not bad["success"]
    assert bad["removed_bytes"] == 256 << 20
    assert [(f["device"], f["block"], f["error"]) for f in bad["refused"]] == [
        ("PNP0C80:00", 8, "EBUSY")
    ]
    assert bad["refused"][0]["reasons"] == [
        "the kernel reports it as not removable (removable=0)",
        # page_cgroup comes straight from the page allocator: no KPF flag
        "the kernel allocated pages here at run time that it cannot migrate: "
        "256 unflagged kernel pages",
    ]
    assert [d["removed"] for d in bad["devices"]] == [False, True]


def test_results_are_identical_whatever_the_worker_count(tmp_path: Path) -> None:
    path = _write(tmp_path, SMALL)
    assert main(["study", path, "--workers", "1", "-o", str(tmp_path / "a")]) == 0
    assert main(["study", path, "--workers", "2", "-o", str(tmp_path / "b")]) == 0
    a = (tmp_path / "a" / "results.json").read_bytes()
    assert a == (tmp_path / "b" / "results.json").read_bytes()
    doc = json.loads(a)
    assert [c["cell"] for c in doc["cells"]] == [
        "remove_order=last-first,online=online",
        "remove_order=last-first,online=online_movable",
        "remove_order=first-first,online=online",
        "remove_order=first-first,online=online_movable",
    ]
    assert [c["summary"]["successes"] for c in doc["cells"]] == [2, 2, 0, 2]
    assert doc["cells"][2]["summary"]["refused_blocks"] == {"EBUSY": 2}
    assert [r["seed"] for r in doc["cells"][0]["runs"]] == [0, 1]
    timings = json.loads((tmp_path / "b" / "timings.json").read_text())
    assert (timings["engine"], timings["workers"], timings["runs"]) == ("local", 2, 8)
    for name in ("summary.md", "results.csv", "success_vs_movable_ratio.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "| remove_order=first-first,online=online | 0/2 (0.0%) | 0.0-65.8% |" in summary
    csv_lines = (tmp_path / "a" / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 9


def test_dask_local_cluster_gives_the_local_results(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    path = _write(tmp_path, SMALL.replace("runs = 2", "runs = 1"))
    study = load_study(path)
    local = run_study(study, workers=1)
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp://",
        dashboard_address=None,
    ) as cluster:
        assert main(["study", path, "--scheduler", cluster.scheduler_address, "-o",
                     str(tmp_path / "d")]) == 0  # fmt: skip
        remote = run_study(study, scheduler=cluster.scheduler_address)
    assert remote.runs == local.runs
    assert remote.timings["engine"] == "dask"
    doc = json.loads((tmp_path / "d" / "results.json").read_text())
    assert [r for c in doc["cells"] for r in c["runs"]] == [r for c in local.runs for r in c]


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        ("runs = 2", "runs = 0", "runs: expected an integer in [1, 10000000], got 0"),
        (
            'online = ["online", "online_movable"]',
            'online = ["sideways"]',
            "grid.online: expected one of online_movable, online_kernel, online, "
            "contig-zones, auto-movable, got 'sideways'",
        ),
        ("fill = 0.3", "fill = 2", "workloads.light.fill: expected a number in [0, 1], got 2"),
        ('size = "256M"', 'size = "lots"', "dimm[0].size: invalid size: 'lots'"),
        ("runs = 2", "colour = 1", "colour: unknown key (known: "),
    ],
)
def test_bad_study_file_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, line: str
) -> None:
    path = _write(tmp_path, SMALL.replace(old, new, 1))
    assert main(["study", path, "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("memhp study: " + line)
    assert not (tmp_path / "o").exists()


def test_a_machine_that_does_not_take_the_cell_parameters() -> None:
    doc: dict[str, object] = {
        "machine": SEED_MACHINE,
        "dimm": [{"size": "256M", "node": 1}],
        "params": {"memmap_on_memory": "yes"},
    }
    with pytest.raises(StudyError, match=r"^params.memmap_on_memory: expected true or false"):
        parse_study(doc)
    with pytest.raises(StudyError, match=r"^dimm: expected at least one"):
        parse_study({"machine": SEED_MACHINE})
