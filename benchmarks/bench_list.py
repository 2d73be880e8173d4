"""Time ``memhp list`` against util-linux ``lsmem`` on a 16,384-block tree.

Generates the tree on disk (2 nodes, mixed states and zones, some ACPI devices),
checks that both print the same bytes, then runs each command repeatedly
(hyperfine-style: warm-up runs, then N timed runs with ``time.perf_counter``)
for several option sets, writes ``benchmarks/results/list.json`` and prints a
table.  Usage: ``python benchmarks/bench_list.py [--runs N] [--blocks N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support

from memhp.abi.tree import write_tree
from tests.support.trees import BlockSpec, make_snapshot

HERE = Path(__file__).resolve().parent
CASES = [[], ["-a"], ["-o", "+NODE,ZONES"], ["-J", "--output-all"], ["--summary=only"]]


def build_tree(dest: str, nblocks: int) -> None:
    blocks = []
    for i in range(nblocks):
        node = 0 if i < nblocks // 2 else 1
        state = "offline" if i % 97 == 0 else "online"
        zones = "Movable" if i >= nblocks * 3 // 4 else "Normal"
        if state == "offline":
            zones = "Normal Movable"
        dev = f"PNP0C80:{(i - nblocks * 3 // 4) // 64:02d}" if i >= nblocks * 3 // 4 else None
        blocks.append(BlockSpec(i, state=state, valid_zones=zones, node=node, device=dev))
    write_tree(make_snapshot(blocks), dest)


def time_cmd(cmd: list[str], runs: int, warmup: int = 2) -> list[float]:
    env = dict(os.environ, LC_ALL="C")
    for _ in range(warmup):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=env)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=env)
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--blocks", type=int, default=16384)
    ap.add_argument("--out", default=str(HERE / "results" / "list.json"))
    args = ap.parse_args()
    lsmem = shutil.which("lsmem")
    if lsmem is None:
        print("lsmem not found", file=sys.stderr)
        return 1
    memhp = [sys.executable, "-m", "memhp.cli.main", "list"]
    # The list path alone: what `memhp list` costs when no other command module
    # pulls in heavy imports at parser-build time.
    memhp_direct = [sys.executable, "-m", "memhp.cli.cmd_list"]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tree = os.path.join(tmp, "tree")
        build_tree(tree, args.blocks)
        for case in CASES:
            a = subprocess.run([lsmem, "-s", tree, *case], capture_output=True, check=True)
            b = subprocess.run([*memhp, "-s", tree, *case], capture_output=True, check=True)
            same = a.stdout == b.stdout
            t_l = time_cmd([lsmem, "-s", tree, *case], args.runs)
            t_m = time_cmd([*memhp, "-s", tree, *case], args.runs)
            t_d = time_cmd([*memhp_direct, "-s", tree, *case], args.runs)
            results.append(
                {
                    "options": " ".join(case) or "(default)",
                    "identical_output": same,
                    "lsmem_mean_s": statistics.mean(t_l),
                    "lsmem_stdev_s": statistics.stdev(t_l) if len(t_l) > 1 else 0.0,
                    "memhp_mean_s": statistics.mean(t_m),
                    "memhp_stdev_s": statistics.stdev(t_m) if len(t_m) > 1 else 0.0,
                    "memhp_list_path_mean_s": statistics.mean(t_d),
                    "ratio": statistics.mean(t_m) / statistics.mean(t_l),
                    "ratio_list_path": statistics.mean(t_d) / statistics.mean(t_l),
                }
            )
    report = {
        "blocks": args.blocks,
        "runs": args.runs,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "lsmem": subprocess.run([lsmem, "-V"], capture_output=True, text=True).stdout.strip(),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"{args.blocks} blocks, {args.runs} runs each")
    print("memhp = `python -m memhp.cli.main list`; list path = `python -m memhp.cli.cmd_list`")
    print(
        f"{'options':<24} {'lsmem ms':>10} {'memhp ms':>10} {'ratio':>6} "
        f"{'list path ms':>13} {'ratio':>6} same"
    )
    for r in results:
        print(
            f"{r['options']:<24} {r['lsmem_mean_s'] * 1e3:10.1f} "
            f"{r['memhp_mean_s'] * 1e3:10.1f} {r['ratio']:6.2f} "
            f"{r['memhp_list_path_mean_s'] * 1e3:13.1f} {r['ratio_list_path']:6.2f} "
            f"{r['identical_output']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
