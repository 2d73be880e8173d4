"""A study's outputs: results.json, timings.json, summary.md, results.csv, plots.

results.json holds no wall-clock figure: two runs of the same study with the same
seeds write identical files, whatever the engine or the number of workers.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any

from memhp.abi.layout import GiB
from memhp.study.spec import Study

#: z for a 95% two-sided interval.
Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), ``values`` not empty."""
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def cell_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(runs)
    ok = sum(1 for r in runs if r["success"])
    lo, hi = wilson(ok, n)
    gib = [r["removed_bytes"] / GiB for r in runs]
    frac = [
        r["removed_bytes"] / r["requested_bytes"] if r["requested_bytes"] else 0.0 for r in runs
    ]
    secs = [r["remove_seconds"] for r in runs]
    reasons: dict[str, int] = {}
    for r in runs:
        for f in r["refused"]:
            reasons[f["error"]] = reasons.get(f["error"], 0) + 1
    return {
        "runs": n,
        "successes": ok,
        "success_rate": round(ok / n, 6),
        "success_ci95": [round(lo, 6), round(hi, 6)],
        "removed_gib": {q: round(quantile(gib, p), 6) for q, p in _QS},
        "removed_fraction_mean": round(sum(frac) / n, 6),
        "remove_seconds": {q: round(quantile(secs, p), 6) for q, p in _QS},
        "movable_ratio_mean": round(sum(r["movable_ratio"] for r in runs) / n, 3),
        "alloc_failures": sum(sum(r["alloc_failures"].values()) for r in runs),
        "refused_blocks": reasons,
    }


_QS = (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))


def results_doc(study: Study, runs: list[list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "study": study.name,
        "description": study.description,
        "seed": study.seed,
        "runs_per_cell": study.runs,
        "cells": [
            {"cell": c.id, "params": dict(c.params), "summary": cell_summary(rs), "runs": rs}
            for c, rs in zip(study.cells, runs, strict=True)
        ],
    }


def summary_md(doc: dict[str, Any], timings: dict[str, Any]) -> str:
    lines = [
        f"# Study {doc['study']}",
        "",
        doc["description"] or "",
        "",
        f"{doc['runs_per_cell']} runs per cell, seeds {doc['seed']}.."
        f"{doc['seed'] + doc['runs_per_cell'] - 1}; "
        f"{timings['runs']} runs in {timings['wall_seconds']} s on {timings['workers']} "
        f"{timings['engine']} worker(s).",
        "",
        "| cell | success | 95% CI | removed GiB p10/p50/p90 | removed fraction | "
        "remove time s p50/p90 | movable ratio % | alloc failures | refusals |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in doc["cells"]:
        s = c["summary"]
        g, t = s["removed_gib"], s["remove_seconds"]
        ref = ", ".join(f"{k} {v}" for k, v in sorted(s["refused_blocks"].items())) or "-"
        lines.append(
            f"| {c['cell']} | {s['successes']}/{s['runs']} ({100 * s['success_rate']:.1f}%) | "
            f"{100 * s['success_ci95'][0]:.1f}-{100 * s['success_ci95'][1]:.1f}% | "
            f"{g['p10']:.2f} / {g['p50']:.2f} / {g['p90']:.2f} | "
            f"{s['removed_fraction_mean']:.3f} | {t['p50']:.1f} / {t['p90']:.1f} | "
            f"{s['movable_ratio_mean']:.1f} | {s['alloc_failures']} | {ref} |"
        )
    return "\n".join(lines) + "\n"


CSV_FIELDS = (
    "cell",
    "seed",
    "success",
    "requested_bytes",
    "removed_bytes",
    "movable_ratio",
    "remove_seconds",
    "sim_seconds",
    "alloc_failures",
    "refused_blocks",
)


def write_csv(path: str, doc: dict[str, Any]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for c in doc["cells"]:
            for r in c["runs"]:
                w.writerow(
                    [
                        c["cell"],
                        r["seed"],
                        int(r["success"]),
                        r["requested_bytes"],
                        r["removed_bytes"],
                        r["movable_ratio"],
                        r["remove_seconds"],
                        r["sim_seconds"],
                        sum(r["alloc_failures"].values()),
                        len(r["refused"]),
                    ]
                )


def write_plots(outdir: str, doc: dict[str, Any]) -> list[str]:
    """success probability and removed fraction vs movable ratio, one line per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_wl: dict[str, list[tuple[float, float, float, float, float]]] = {}
    for c in doc["cells"]:
        s = c["summary"]
        lo, hi = s["success_ci95"]
        by_wl.setdefault(str(c["params"]["workload"]), []).append(
            (s["movable_ratio_mean"], s["success_rate"], lo, hi, s["removed_fraction_mean"])
        )
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for wl, pts in sorted(by_wl.items()):
        pts.sort()
        xs = [p[0] for p in pts]
        a1.errorbar(
            xs,
            [p[1] for p in pts],
            yerr=[[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]],
            marker="o",
            capsize=3,
            label=wl,
        )
        a2.plot(xs, [p[4] for p in pts], marker="o", label=wl)
    a1.set(xlabel="movable ratio (% of kernel-zone memory)", ylabel="P(device fully removed)")
    a2.set(xlabel="movable ratio (% of kernel-zone memory)", ylabel="removed fraction (mean)")
    a1.set_ylim(-0.05, 1.05)
    a2.set_ylim(-0.05, 1.05)
    a1.legend(title="workload")
    fig.suptitle(f"memhp study {doc['study']}")
    fig.tight_layout()
    path = os.path.join(outdir, "success_vs_movable_ratio.png")
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return [path]


def write_outputs(
    outdir: str,
    study: Study,
    runs: list[list[dict[str, Any]]],
    timings: dict[str, Any],
    plots: bool = True,
) -> list[str]:
    """Write every output file into ``outdir``; the paths written."""
    os.makedirs(outdir, exist_ok=True)
    doc = results_doc(study, runs)
    out = []
    for name, text in (
        ("results.json", json.dumps(doc, indent=1, sort_keys=True) + "\n"),
        ("timings.json", json.dumps(timings, indent=1, sort_keys=True) + "\n"),
        ("summary.md", summary_md(doc, timings)),
    ):
        p = os.path.join(outdir, name)
        with open(p, "w") as f:
            f.write(text)
        out.append(p)
    p = os.path.join(outdir, "results.csv")
    write_csv(p, doc)
    out.append(p)
    if plots:
        out += write_plots(outdir, doc)
    return out
