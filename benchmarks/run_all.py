"""Run every benchmark (``make bench``) and write benchmarks/RESULTS.md.

Each ``bench_*.py`` runs in its own process (so that peak RSS is its own) and
writes ``results/<name>.json``; this script then renders all results into one
Markdown table per benchmark, with the machine, date and commit.
Benchmarks whose requirements are missing (QEMU, FUSE) are reported as skipped.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from benchmarks._common import RESULTS, environment  # noqa: E402

ORDER = ["kernel", "scale", "pgtable", "virtio", "list", "fuse", "qemu", "stateful"]


def run(names: list[str]) -> dict[str, str]:
    status: dict[str, str] = {}
    for path in sorted(glob.glob(os.path.join(HERE, "bench_*.py"))):
        name = os.path.basename(path)[6:-3]
        if names and name not in names:
            continue
        print(f"== {name}", flush=True)
        t = time.perf_counter()
        r = subprocess.run([sys.executable, path], cwd=ROOT, check=False)
        status[name] = f"exit {r.returncode} in {time.perf_counter() - t:.0f} s"
    return status


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    return str(v)


def render() -> str:
    env = environment()
    out = [
        "# Benchmark results",
        "",
        f"Machine: {env['machine']}, Python {env['python']}; rendered {env['date']} at commit "
        f"{env['commit']}.  Regenerate with `make bench` (or `python benchmarks/run_all.py`).",
        "",
    ]
    files = {os.path.basename(p)[:-5]: p for p in glob.glob(os.path.join(RESULTS, "*.json"))}
    for name in sorted(files, key=lambda n: (ORDER.index(n) if n in ORDER else 99, n)):
        with open(files[name]) as f:
            data = json.load(f)
        out.append(f"## {name}")
        out.append("")
        e = data.get("environment")
        if isinstance(e, dict):
            speed = e.get("reference_loop_ns")
            host = f" (host speed: reference loop {speed} ns/iteration)" if speed else ""
            out.append(f"Recorded {e.get('date', '?')} at commit {e.get('commit', '?')}{host}.")
            out.append("")
        rows = data.get("results")
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            cols: list[str] = []
            for r in rows:
                for c in r:
                    if c not in cols:
                        cols.append(c)
            out.append("| " + " | ".join(cols) + " |")
            out.append("|" + "---|" * len(cols))
            for r in rows:
                out.append("| " + " | ".join(_cell(r.get(c, "")) for c in cols) + " |")
        else:
            flat = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
            out.append("| what | value |")
            out.append("|---|---|")
            for k, v in flat.items():
                out.append(f"| {k} | {_cell(v)} |")
        out.append("")
    notes = os.path.join(HERE, "NOTES.md")
    if os.path.exists(notes):
        with open(notes) as f:
            out.append(f.read())
    return "\n".join(out)


def main() -> None:
    names = sys.argv[1:]
    if names != ["--render"]:
        status = run(names)
        for n, s in status.items():
            print(f"{n}: {s}")
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write(render())
    print(f"wrote {os.path.join(HERE, 'RESULTS.md')}")


if __name__ == "__main__":
    main()
