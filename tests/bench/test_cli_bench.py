"""``memhp bench`` on the command line, without QEMU: --model-only, --replay, errors, help."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memhp.cli.main import main
from tests.conftest import ROOT

SCENARIO = os.path.join(ROOT, "tests", "scenarios", "hotadd-memoryless-node.toml")
RECORDINGS = os.path.join(ROOT, "tests", "data", "real", "scenarios")


def test_model_only_says_model_only(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "diff", "--model-only", SCENARIO])
    out, err = capsys.readouterr()
    assert rc == 0
    # nothing was compared: no "N files compared, 0 differences", neither in the
    # summary nor per step
    assert out.startswith("hotadd-memoryless-node: 9 steps, model only, no comparison")
    assert "files compared" not in out and "differences" not in out
    steps = [line for line in err.splitlines() if line.startswith("  ")]
    assert steps and all("model only" in line for line in steps)
    assert not any("differences" in line for line in steps)


def test_model_only_failed_expectation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc = tmp_path / "bad-expect.toml"
    sc.write_text(
        'machine = "machines/qemu-linux-6.1.toml"\n'
        '[[step]]\nwrite = "memory0/state"\nvalue = "offline"\nexpect = "ok"\n'
    )
    rc = main(["bench", "diff", "--model-only", "-q", str(sc)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "model only, no comparison (1 failed expectations)" in out


def test_replay_compares(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "diff", "-q", "--replay", RECORDINGS, SCENARIO])
    out = capsys.readouterr().out
    assert rc == 0
    line = out.splitlines()[0]
    assert line.startswith("hotadd-memoryless-node: 9 steps, ")
    assert line.split(", ")[1].endswith("files compared") and ", 0 differences" in line


def test_a_machine_file_is_not_a_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "diff", "--model-only", os.path.join(ROOT, "machines", "seed.toml")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "seed.toml: this is a machine file, not a scenario" in err
    assert "unknown key" not in err


def test_bench_help_says_where_and_what(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for needle in (
        "memhp/bench/scenario.py",  # the scenario format
        "docs/contributing/bench.md",
        "tests/scenarios/",  # the bundled scenarios
        "tests/data/real/scenarios/",  # their recordings
        "bench vm MACHINE.toml",  # what bench vm opens
        "REPL",
        "qemu-system-x86_64",  # prerequisites
        "linux-image-6.1",
        ".ci/qemu-deps.sh",
        "run time",
        "3-4 minutes",
    ):
        assert needle in out, needle
    for path in ("memhp/bench/scenario.py", "docs/contributing/bench.md", "docs/bench-report.md"):
        assert os.path.exists(os.path.join(ROOT, path)), path
