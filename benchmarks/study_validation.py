"""The study model against Linux 6.1: the table of benchmarks/RESULTS.md, "Study validation".

For each scenario exported from studies/qemu-validation.toml
(tests/scenarios/study-qemu-validation-cC-sS.toml) with a recorded real run
(tests/data/real/scenarios), the study's own run of cell C, seed S
(:func:`memhp.study.lifecycle.run_lifecycle`) against the real guest's
``memhp remove`` per device.  A probabilistic cell (a ``repeat = N`` scenario,
``--export-scenarios --repeat N``) is compared as distributions: the real runs'
per-device outcomes against the study's runs of that cell over ``MODEL_SEEDS``
seeds.  No QEMU: the real side is the recording.
Usage: ``python benchmarks/study_validation.py`` (prints Markdown).
"""

from __future__ import annotations

import glob
import os
import re
import sys
from collections import Counter

from memhp.bench.actions import Memhp
from memhp.bench.recording import Recording, recording_path
from memhp.bench.scenario import SCENARIO_DIR, Scenario, load_scenario
from memhp.study.lifecycle import run_lifecycle
from memhp.study.spec import Study, load_study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = os.path.join(ROOT, "studies", "qemu-validation.toml")
RECORDINGS = os.path.join(ROOT, "tests", "data", "real", "scenarios")
#: Seeds of the study's runs a probabilistic cell's distribution is taken over.
MODEL_SEEDS = 40


def recorded() -> list[tuple[int, int, str]]:
    """(cell, seed, scenario path) of every exported scenario with a recording."""
    out = []
    for path in sorted(glob.glob(os.path.join(SCENARIO_DIR, "study-qemu-validation-c*-s*.toml"))):
        m = re.search(r"-c(\d+)-s(\d+)\.toml$", path)
        if m and os.path.exists(recording_path(load_scenario(path), RECORDINGS)):
            out.append((int(m.group(1)), int(m.group(2)), path))
    return out


def real_runs(sc: Scenario) -> list[tuple[tuple[str, bool], ...]]:
    """Per real run: (device, removed) per ``memhp remove`` step, in removal order."""
    rec = Recording.load(recording_path(sc, RECORDINGS))
    removes = [
        (st.name, st.action.args[1])
        for st in sc.steps
        if isinstance(st.action, Memhp) and st.action.args[0] == "remove"
    ]
    return [
        tuple((dev, run[name].result.outcome == "rc=0") for name, dev in removes)
        for run in rec.runs()
    ]


def model_run(study: Study, cell: int, seed: int) -> tuple[tuple[str, bool], ...]:
    """The study's own run: (device, removed) per removal, in removal order."""
    trace: list[dict[str, object]] = []
    run_lifecycle(study, study.cells[cell], seed, trace)
    return tuple((str(e["device"]), bool(e["ok"])) for e in trace if e["op"] == "remove")


def verdict(v: tuple[tuple[str, bool], ...]) -> str:
    return ", ".join(f"{d} {'removed' if ok else 'refused'}" for d, ok in v)


def distribution(vs: list[tuple[tuple[str, bool], ...]]) -> str:
    return "; ".join(f"{verdict(v)}: {n}" for v, n in sorted(Counter(vs).items()))


def main() -> int:
    study = load_study(STUDY)
    runs = recorded()
    print("| cell | seed | model (per device, removal order) | real Linux 6.1 | agree |")
    print("|---|---|---|---|---|")
    ok = True
    prob = []
    for c, s, path in runs:
        sc = load_scenario(path)
        if sc.repeat > 1:
            prob.append((c, s, sc))
            continue
        [real] = real_runs(sc)
        model = model_run(study, c, s)
        ok &= model == real
        agree = "yes" if model == real else "NO"
        print(f"| {c}: {study.cells[c].id} | {s} | {verdict(model)} | {verdict(real)} | {agree} |")
    if prob:
        print()
        print(
            f"| cell | real runs (outcome: runs) | model, study seeds 0-{MODEL_SEEDS - 1} "
            "(outcome: runs) | real outcomes the model has | model outcomes no real run had |"
        )
        print("|---|---|---|---|---|")
    for c, s, sc in prob:
        real = real_runs(sc)
        model = [model_run(study, c, k) for k in range(MODEL_SEEDS)]
        seen = sum(v in set(model) for v in set(real))
        unseen = sorted(set(model) - set(real))
        print(
            f"| {c}: {study.cells[c].id} (scenario seed {s}, repeat = {sc.repeat}) | "
            f"{distribution(real)} | {distribution(model)} | {seen} of {len(set(real))} | "
            f"{'; '.join(verdict(v) for v in unseen) or 'none'} |"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
