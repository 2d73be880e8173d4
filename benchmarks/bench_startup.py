"""``memhp list`` start-up against the interpreter's bare start-up (issue 17, goal b).

Goal: ``memhp list`` on a real-size tree (512 blocks) within 30 ms of
``python -I -S -c pass`` measured in the same run.  The commands run in ``--runs``
rounds of one run each (interleaved); the best wall time and the best CPU time (user
+ system of the child, which the other processes on a shared machine disturb much
less) are recorded.

The console script is the one next to this interpreter (``bin/memhp``).  How the
package is installed matters: an editable install made without
``--config-settings editable_mode=compat`` puts an import finder in a ``.pth``
file that imports pathlib, re, urllib.parse... on *every* start of that
interpreter (~30-50 ms); the compat mode (``make venv``) writes a plain path
entry instead.  The kind of install found is recorded with the results.

Also ``memhp list`` against util-linux ``lsmem`` on the 16,384-block tree of
bench_list.py (same bytes checked), for each option set of bench_list.py: best
wall and best CPU time of each over ``--lsmem-runs`` runs that alternate between
the two, and their ratios (goal <= 0.8x).  CPU time is the figure to trust on a
shared machine: wall times there mostly measure the others.

The package's bytecode is compiled first (``compileall``), as the first run of an
installed or editable package leaves it: with ``PYTHONDONTWRITEBYTECODE`` set, or
bytecode older than its source, every start would compile the modules it imports
(~25 ms more for ``memhp list``).

The command is the package's own launcher (repository ``bin/memhp``, installed by
pip as a script), not pip's console-script wrapper, which imports ``re`` (and enum
with it) before memhp runs; ``python -I -S -c "import re"`` is still measured so
that cost is on record.

Usage: ``python benchmarks/bench_startup.py [--runs N] [--lsmem-runs N]``; writes
``benchmarks/results/startup.json``.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import record
from benchmarks.bench_list import CASES, build_tree
from memhp.abi.tree import write_tree
from tests.support.trees import BlockSpec, make_snapshot

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, LC_ALL="C")


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child: user + system) of one run of ``cmd``."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=ENV)
    w = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return w, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime


def best_interleaved(cmds: dict[str, list[str]], runs: int) -> dict[str, tuple[float, float]]:
    """(best wall seconds, best CPU seconds) of each command over ``runs`` rounds, one
    run of each command per round (after one warm-up each): every command sees the
    same load, which on a shared machine moves more between two series of runs than
    between two neighbouring runs."""
    for cmd in cmds.values():
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=ENV)
    out = {name: (float("inf"), float("inf")) for name in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            w, c = timed(cmd)
            out[name] = (min(out[name][0], w), min(out[name][1], c))
    return out


def best_paired(a: list[str], b: list[str], runs: int) -> tuple[float, float, float, float]:
    """:func:`best_interleaved` of ``a`` and ``b``."""
    res = best_interleaved({"a": a, "b": b}, runs)
    return (*res["a"], *res["b"])


def install_kind() -> str:
    site = Path(sysconfig.get_paths()["purelib"])
    if list(site.glob("__editable___memhp*_finder.py")):
        return "editable (import finder in a .pth: not compat mode)"
    if list(site.glob("__editable__.memhp*.pth")):
        return "editable, compat mode (a path entry)"
    return "regular or not installed"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--lsmem-runs", type=int, default=11)
    args = ap.parse_args()
    py = sys.executable
    script = str(Path(py).parent / "memhp")
    compileall.compile_dir(str(REPO / "memhp"), quiet=1)
    entry = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); "
        "from memhp.cli.main import main; sys.exit(main())"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tree = str(Path(tmp) / "tree")
        write_tree(make_snapshot([BlockSpec(i) for i in range(512)]), tree)
        cases = {
            "python -I -S -c pass": [py, "-I", "-S", "-c", "pass"],
            "python -I -S -c 'import re' (what pip's wrapper imports)": [
                py,
                "-I",
                "-S",
                "-c",
                "import re",
            ],
            "python -c pass (site)": [py, "-c", "pass"],
            "memhp list -V": [script, "list", "-V"],
            "memhp list (512 blocks)": [script, "list", "-s", tree],
            "python -I -S memhp.cli.main list (512 blocks)": [
                py,
                "-I",
                "-S",
                "-c",
                entry,
                "list",
                "-s",
                tree,
            ],
            "lsmem (512 blocks)": ["lsmem", "-s", tree],
        }
        res = best_interleaved(cases, args.runs)
        big = str(Path(tmp) / "big")
        build_tree(big, 16384)
        ratios = []
        for case in CASES:
            lsmem = ["lsmem", "-s", big, *case]
            memhp = [py, "-I", "-S", "-c", entry, "list", "-s", big, *case]
            same = (
                subprocess.run(lsmem, capture_output=True, env=ENV).stdout
                == subprocess.run(memhp, capture_output=True, env=ENV).stdout
            )
            ratios.append(
                (" ".join(case) or "(default)", same, *best_paired(lsmem, memhp, args.lsmem_runs))
            )
    bare_w, bare_c = res["python -I -S -c pass"]
    rows: list[dict[str, object]] = [
        {"what": f"install: {install_kind()}", "value": 0, "unit": "-"}
    ]
    for name, (w, c) in res.items():
        rows.append({"what": f"{name}: best wall", "value": w * 1e3, "unit": "ms"})
        rows.append({"what": f"{name}: best cpu", "value": c * 1e3, "unit": "ms"})
    for name in ("memhp list -V", "memhp list (512 blocks)"):
        w, c = res[name]
        rows.append(
            {
                "what": f"{name} - bare interpreter: wall",
                "value": (w - bare_w) * 1e3,
                "unit": "ms",
                "target": 30,
                "ok": (w - bare_w) * 1e3 <= 30,
            }
        )
        rows.append(
            {"what": f"{name} - bare interpreter: cpu", "value": (c - bare_c) * 1e3, "unit": "ms"}
        )
    for name in ("python -I -S memhp.cli.main list (512 blocks)",):
        w, c = res[name]
        rows.append(
            {
                "what": f"{name} - bare interpreter: cpu",
                "value": (c - bare_c) * 1e3,
                "unit": "ms",
                "target": 30,
                "ok": (c - bare_c) * 1e3 <= 30,
            }
        )
    for opts, same, lw, lc, mw, mc in ratios:
        what = f"memhp list / lsmem, 16384 blocks, {opts}"
        rows.append({"what": f"{what}: same output", "value": int(same), "unit": "bool"})
        rows.append({"what": f"{what}: lsmem best wall", "value": lw * 1e3, "unit": "ms"})
        rows.append({"what": f"{what}: memhp best wall", "value": mw * 1e3, "unit": "ms"})
        rows.append({"what": f"{what}: wall ratio", "value": mw / lw, "unit": "x"})
        rows.append(
            {
                "what": f"{what}: cpu ratio",
                "value": mc / lc,
                "unit": "x",
                "target": 0.8,
                "ok": mc / lc <= 0.8,
            }
        )
    record("startup", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
