"""Run the same benchmarks on two commits side by side and record the ratios.

    python benchmarks/compare_refs.py BASE [HEAD] [--bench kernel,scale,pgtable] [--rounds 3]

Each commit is checked out into a temporary git worktree; the benchmark scripts of
*that* commit run there, alternating BASE and HEAD round by round so that both see
the same machine load.  For every result row both commits report (same ``what``
and unit), the median over the rounds is kept and the ratio HEAD/BASE is written
to ``results/compare-<bench>.json`` (rendered by ``run_all.py``).  Rows whose unit
is a time or a size are "slower/bigger" when the ratio is above 1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from benchmarks._common import RESULTS, environment  # noqa: E402

#: Units where a larger value is worse (anything else is a count or a ratio).
COST_UNITS = ("s", "ms", "us", "MiB", "us per block", "ms per GiB")


def git(*args: str, cwd: str = ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def run_bench(tree: str, name: str) -> dict[str, tuple[float, str]]:
    """Run benchmarks/bench_<name>.py of ``tree``; its rows as what -> (value, unit)."""
    env = dict(os.environ, PYTHONPATH=tree)
    r = subprocess.run(
        [sys.executable, os.path.join(tree, "benchmarks", f"bench_{name}.py")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode:
        raise SystemExit(f"compare_refs: bench_{name}.py failed in {tree}:\n{r.stderr[-2000:]}")
    with open(os.path.join(tree, "benchmarks", "results", f"{name}.json")) as f:
        data = json.load(f)
    return {
        row["what"]: (float(row["value"]), str(row["unit"]))
        for row in data["results"]
        if isinstance(row.get("value"), int | float)
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base")
    ap.add_argument("head", nargs="?", default="HEAD")
    ap.add_argument("--bench", default="kernel,scale,pgtable")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    refs = {"base": git("rev-parse", args.base), "head": git("rev-parse", args.head)}
    with tempfile.TemporaryDirectory(prefix="memhp-compare-") as tmp:
        trees = {}
        for side, sha in refs.items():
            trees[side] = os.path.join(tmp, side)
            git("worktree", "add", "--detach", "-q", trees[side], sha)
        try:
            for name in args.bench.split(","):
                values: dict[str, dict[str, list[float]]] = {"base": {}, "head": {}}
                units: dict[str, str] = {}
                for rnd in range(args.rounds):
                    for side in ("base", "head") if rnd % 2 == 0 else ("head", "base"):
                        print(f"== {name} round {rnd + 1} {side}", flush=True)
                        for what, (v, unit) in run_bench(trees[side], name).items():
                            values[side].setdefault(what, []).append(v)
                            units[what] = unit
                rows: list[dict[str, Any]] = []
                for what in values["head"]:
                    if what not in values["base"]:
                        continue
                    b = statistics.median(values["base"][what])
                    h = statistics.median(values["head"][what])
                    ratio = h / b if b else float("nan")
                    row: dict[str, Any] = {
                        "what": what,
                        "unit": units[what],
                        "base": b,
                        "head": h,
                        "ratio": ratio,
                    }
                    if units[what] in COST_UNITS:
                        row["within_10pct"] = ratio <= 1.10
                    rows.append(row)
                    print(f"{name}: {what}: {b:.4g} -> {h:.4g} {units[what]} (x{ratio:.3f})")
                out = {
                    "benchmark": f"compare-{name}",
                    "environment": environment(host_speed=True),
                    "refs": refs,
                    "rounds": args.rounds,
                    "results": rows,
                }
                os.makedirs(RESULTS, exist_ok=True)
                with open(os.path.join(RESULTS, f"compare-{name}.json"), "w") as f:
                    json.dump(out, f, indent=2)
                    f.write("\n")
        finally:
            for tree in trees.values():
                cmd = ["git", "worktree", "remove", "--force", tree]
                subprocess.run(cmd, cwd=ROOT, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
