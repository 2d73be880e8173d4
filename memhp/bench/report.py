"""Reports of differential runs: the console summary, Markdown and JSON.

The Markdown report's layout is described in docs/bench-report.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

from memhp.bench.compare import ALLOWLIST
from memhp.bench.runner import ScenarioResult


def summary_line(r: ScenarioResult) -> str:
    """One console line per scenario.

    A model-only run compares nothing: it says so instead of counting files compared
    (only the scenario's own expectations are checked).
    """
    if r.error:
        status = f"ERROR: {r.error}"
    elif r.model_only:
        failed = len(r.differences)
        status = "model only, no comparison (" + (
            f"{failed} failed expectations)" if failed else "expectations met)"
        )
    else:
        status = f"{r.files_compared} files compared, {len(r.differences)} differences"
    return f"{r.name}: {len(r.steps)} steps, {status} ({r.seconds}s)"


def report_json(results: Sequence[ScenarioResult]) -> str:
    """The report as JSON (scenarios, steps, outcomes, differences, the allowlist)."""
    doc = {
        "allowlist": [asdict(r) for r in ALLOWLIST],
        "scenarios": [
            {
                **asdict(r),
                "ok": r.ok,
                "files_compared": r.files_compared,
                "difference_count": len(r.differences),
            }
            for r in results
        ],
    }
    return json.dumps(doc, indent=1) + "\n"


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", "⏎")[:160]


def report_markdown(results: Sequence[ScenarioResult]) -> str:
    """The report as Markdown: a summary table, then per scenario its steps."""
    lines = ["# memhp bench diff", ""]
    lines += ["| scenario | mode | steps | files compared | differences | seconds |"]
    lines += ["|---|---|---|---|---|---|"]
    for r in results:
        mode = "model only" if r.model_only else f"QEMU ({r.accel or '?'}) vs model"
        status = "ERROR" if r.error else str(len(r.differences))
        files = "—" if r.model_only else str(r.files_compared)
        lines.append(f"| {r.name} | {mode} | {len(r.steps)} | {files} | {status} | {r.seconds} |")
    lines.append("")
    for r in results:
        lines += [f"## {r.name}", ""]
        if r.description:
            lines += [r.description, ""]
        lines += [f"`{r.path}`", ""]
        if r.error:
            lines += [f"**Error:** {r.error}", ""]
            continue
        lines += ["| step | action | real | model | files | differences |"]
        lines += ["|---|---|---|---|---|---|"]
        for s in r.steps:
            real = _md_cell(s.real.outcome) if s.real else "—"
            files = str(s.files_compared) if s.captured and not r.model_only else "—"
            lines.append(
                f"| {s.name} | {_md_cell(s.description)} | {real} | {_md_cell(s.model.outcome)} "
                f"| {files} | {len(s.differences)} |"
            )
        lines.append("")
        diffs = r.differences
        if diffs:
            lines += ["Differences:", ""]
            for dd in diffs:
                lines.append(f"- `{dd.step}` {_md_cell(dd.line())}")
            lines.append("")
        else:
            lines += ["No differences outside the allowlist.", ""]
    lines += ["## Allowlist", ""]
    for rule in ALLOWLIST:
        keys = f" ({', '.join(rule.keys)} by change)" if rule.keys else ""
        lines.append(f"- `{rule.pattern}`: {rule.how}{keys}. {rule.why}")
    lines.append("")
    return "\n".join(lines)


def write_report(results: Sequence[ScenarioResult], path: str) -> None:
    """Markdown, or JSON when ``path`` ends in ``.json``."""
    text = report_json(results) if path.endswith(".json") else report_markdown(results)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
