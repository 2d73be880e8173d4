"""The study model against Linux 6.1: the table of benchmarks/RESULTS.md, "Study validation".

For each scenario exported from studies/qemu-validation.toml
(tests/scenarios/study-qemu-validation-cC-sS.toml) with a recorded real run
(tests/data/real/scenarios), the study's own run of cell C, seed S
(:func:`memhp.study.lifecycle.run_lifecycle`) against the real guest's
``memhp remove`` per device.  No QEMU: the real side is the recording.
Usage: ``python benchmarks/study_validation.py`` (prints Markdown).
"""

from __future__ import annotations

import glob
import os
import re
import sys

from memhp.bench.actions import Memhp
from memhp.bench.recording import Recording, recording_path
from memhp.bench.scenario import SCENARIO_DIR, load_scenario
from memhp.study.lifecycle import run_lifecycle
from memhp.study.spec import load_study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = os.path.join(ROOT, "studies", "qemu-validation.toml")
RECORDINGS = os.path.join(ROOT, "tests", "data", "real", "scenarios")


def rows() -> list[tuple[int, str, int, str, str, bool]]:
    """(cell index, cell id, seed, model verdict, real verdict, agree) per recorded run."""
    study = load_study(STUDY)
    out = []
    for path in sorted(glob.glob(os.path.join(SCENARIO_DIR, "study-qemu-validation-c*-s*.toml"))):
        m = re.search(r"-c(\d+)-s(\d+)\.toml$", path)
        sc = load_scenario(path)
        rp = recording_path(sc, RECORDINGS)
        if m is None or not os.path.exists(rp):
            continue
        rec = Recording.load(rp)
        real = []
        for st in sc.steps:
            if isinstance(st.action, Memhp) and st.action.args[0] == "remove":
                outs = set(rec.outcomes(st.name))
                real.append(f"{st.action.args[1]} " + "/".join(
                    "removed" if o == "rc=0" else f"refused ({o})" for o in sorted(outs)
                ))  # fmt: skip
        c, s = int(m.group(1)), int(m.group(2))
        trace: list[dict[str, object]] = []
        run_lifecycle(study, study.cells[c], s, trace)
        model = [
            f"{e['device']} {'removed' if e['ok'] else 'refused (rc=1)'}"
            for e in trace
            if e["op"] == "remove"
        ]
        out.append((c, study.cells[c].id, s, ", ".join(model), ", ".join(real), model == real))
    return out


def main() -> int:
    print("| cell | seed | model (per device, removal order) | real Linux 6.1 | agree |")
    print("|---|---|---|---|---|")
    ok = True
    for c, cid, s, model, real, agree in rows():
        ok &= agree
        print(f"| {c}: {cid} | {s} | {model} | {real} | {'yes' if agree else 'NO'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
