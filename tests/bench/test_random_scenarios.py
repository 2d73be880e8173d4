"""memhp bench random: seeded random scenarios that load and run on the model."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from memhp.bench.random_scenarios import KINDS, generate
from memhp.bench.runner import model_driver, run_scenario
from memhp.bench.scenario import load_scenario
from memhp.cli.main import run_with_sysfs


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_loads_and_runs_on_the_model(kind: str, tmp_path: Path) -> None:
    """Two seeds of each kind: valid scenarios whose steps all run on the model, and
    whose expectations the model meets but for a virtio-mem resize's size."""
    for seed in (0, 1):
        text = generate(kind, seed, steps=20)
        assert generate(kind, seed, steps=20) == text  # (deterministic)
        path = tmp_path / f"{kind}-{seed}.toml"
        path.write_text(text)
        sc = load_scenario(str(path))
        assert len(sc.steps) >= 20 if kind == "sysfs-writes" else len(sc.steps) > 2
        res = run_scenario(sc, model_driver(sc, run_with_sysfs))
        assert len(res.steps) == len(sc.steps) + 1  # (+ boot)
        unmet = [d for d in res.differences if not d.step.split(" ", 2)[1].startswith("resize")]
        assert not unmet, [d.line() for d in unmet]
    assert generate(kind, 0) != generate(kind, 1)


def test_steps_are_the_random_ones_and_names_unique() -> None:
    doc = tomllib.loads(generate("qmp", 3, steps=12))
    names = [s["name"] for s in doc["step"]]
    assert len(names) == len(set(names)) == 12 + 2  # (+ settle and the final capture)


def test_bad_input_is_one_line() -> None:
    with pytest.raises(ValueError, match="unknown kind 'bogus'"):
        generate("bogus", 0)
    with pytest.raises(ValueError, match="steps: a positive number"):
        generate("dimms", 0, steps=0)
    cmd = [sys.executable, "-m", "memhp.cli.main", "bench", "random"]
    r = subprocess.run([*cmd, "dimms", "--steps", "0"], capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "memhp bench random: steps: a positive number, not 0\n"
    r = subprocess.run([*cmd, "qmp", "-o", "/nonexistent/x.toml"], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr == "memhp bench random: /nonexistent/x.toml: No such file or directory\n"
    r = subprocess.run([*cmd, "sysfs-writes", "--seed", "7"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == generate("sysfs-writes", 7)
