"""A study's runs as bench scenarios: the same lifecycle on a real guest.

``memhp study STUDY.toml --export-scenarios DIR [--cell ID]... [--seeds 0,1,2]``
writes one scenario per chosen cell and seed, ``DIR/study-NAME-cCELL-sSEED.toml``.
The model run of that cell and seed (:func:`run_lifecycle` with a trace) gives
the script; the scenario replays it on Linux in QEMU (``memhp bench diff``):

==========================  ============================================================
lifecycle                   scenario
==========================  ============================================================
the study's machine         ``[machine] base =`` the study's machine file, with the
                            cell's ``memcg`` and the workload's run-time kernel
                            allocations (``[machine.kernel.runtime_allocs]``, seeded)
online by user space        ``memhp_default_state = "offline"``, then a ``write`` of the
                            cell's state to each hot-added block, in the run's order
online by the kernel        ``memhp_default_state = "online"`` and
                            ``memory_hotplug.online_policy`` / ``auto_movable_ratio``
                            / ``auto_movable_numa_aware`` on the command line
``memmap_on_memory``        ``memory_hotplug.memmap_on_memory=`` on the command line
hot-added DIMMs             ``hot_add`` steps (``dimmI``, in the study's order)
simulated time per step     ``wait`` of the same seconds (the guest's kernel runs its
                            own allocations meanwhile)
a workload task (``fill``)  ``task``: its unmovable pages as pipe buffers, its movable
                            pages as anonymous memory (memhp/bench/guest_task.py)
churn (a task exits)        ``end_task``
``tmpfs``                   ``fill`` (a tmpfs file; rounded to whole MiB)
removal                     ``memhp remove DEVICE --timeout T`` in the guest, in the
                            run's order; ``expect_rc`` is the model's verdict
==========================  ============================================================

``--repeat N`` (N > 1) exports a probabilistic cell, one whose per-device outcome
depends on where the kernel's own run-time allocations land (kernel-zone DIMMs with
a movable workload): the scenario gets ``repeat = N`` (N real runs, their outcomes
compared as a set with the model over run-time allocation seeds 0..N-1, see
:mod:`memhp.bench.scenario`), no ``expect_rc`` on the removals and a ``wait`` for
each DIMM's removal whose outcome (``removed``/``kept``) is compared on both sides.

``pinned`` pages have no guest counterpart (a long-term pin, FOLL_LONGTERM,
migrates the page out of ZONE_MOVABLE first in 6.1: check_and_migrate_movable_pages()
in mm/gup.c), so a cell whose workload pins pages is not exported.  A run whose
workload hit an allocation failure is not exported either (the guest would
OOM-kill, the model just skips the task).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memhp.abi.layout import PAGE_SIZE
from memhp.kernel.mm.page_alloc import PageState
from memhp.sim.machine import WorkloadMix
from memhp.study.lifecycle import run_lifecycle
from memhp.study.spec import ONLINE_BY_KERNEL, Cell, Study, StudyError

MIB = 1 << 20
#: Guest-side seconds memhp remove may take beyond --timeout (Python start-up under TCG).
REMOVE_SLACK = 240.0
#: Seconds a probabilistic cell's scenario waits for a DIMM that may stay (refused).
REPEAT_WAIT = 20


@dataclass(frozen=True)
class Exported:
    """One written scenario: its path, cell, seed and the model's verdict per device."""

    path: str
    cell: str
    seed: int
    removed: tuple[bool, ...]


def _q(v: object) -> str:
    """A TOML value (strings, numbers, booleans, lists of those)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_q(x) for x in v) + "]"
    raise StudyError("export", f"cannot write {v!r} to TOML")


def _table(lines: list[str], doc: dict[str, object]) -> None:
    lines += [f"{k} = {_q(v)}" for k, v in doc.items()]


def machine_file(study_path: str) -> str:
    """The machine file a study names (absolute); StudyError for an inline machine."""
    with open(study_path, "rb") as f:
        raw = tomllib.load(f)
    m = raw.get("machine")
    if not isinstance(m, str):
        raise StudyError("machine", "exporting scenarios needs the study's machine as a file")
    base = os.path.dirname(os.path.abspath(study_path))
    return os.path.normpath(m if os.path.isabs(m) else os.path.join(base, m))


def scenario_name(study: Study, index: int, seed: int) -> str:
    return f"study-{study.name}-c{index}-s{seed}"


def scenario_text(
    study: Study,
    cell: Cell,
    index: int,
    seed: int,
    machine_path: str,
    out_dir: str,
    repeat: int = 1,
) -> tuple[str, tuple[bool, ...]]:
    """The scenario of one run, and the model's per-device verdict in removal order;
    ``repeat`` > 1: a probabilistic cell (module doc)."""
    wl = study.workloads[cell.get("workload")]
    if wl.pinned > 0:
        raise StudyError(
            f"cell {cell.id}", "pinned pages have no guest counterpart (see memhp.study.export)"
        )
    trace: list[dict[str, Any]] = []
    res = run_lifecycle(study, cell, seed, trace)
    fails = [e for e in trace if e["op"] == "alloc_failure"]
    if fails:
        raise StudyError(
            f"cell {cell.id} seed {seed}", f"allocation failure in the model: {fails[0]}"
        )
    verdict = tuple(bool(e["ok"]) for e in trace if e["op"] == "remove")
    online = cell.get("online")
    by_kernel = online in ONLINE_BY_KERNEL
    outcome = ", ".join(
        f"{e['device']} {'removed' if e['ok'] else 'refused'}" for e in trace if e["op"] == "remove"
    )
    desc = (
        f"memhp study {study.name}, cell {index} ({cell.id}), seed {seed}, exported by "
        f"memhp.study.export. Model: {res['removed_bytes'] >> 20} of "
        f"{res['requested_bytes'] >> 20} MiB removed ({outcome})."
    )
    lines = [
        f"description = {_q(desc)}",
        'kernels = ["6.1"]',
        'tags = ["guest-python", "study"]',
        *([f"repeat = {repeat}"] if repeat > 1 else []),
        "",
        "[machine]",
        f"base = {_q(os.path.relpath(machine_path, out_dir))}",
        f"memcg = {_q(cell.get('memcg'))}",
        "",
        "[machine.kernel]",
    ]
    with open(machine_path, "rb") as f:
        kern = dict(tomllib.load(f).get("kernel", {}))
    kern.pop("runtime_allocs", None)
    _table(lines, kern)
    lines += ["", "[machine.kernel.runtime_allocs]"]
    _table(
        lines,
        {
            "enabled": wl.kernel_rate > 0,
            "rate": wl.kernel_rate,
            "keep": wl.kernel_keep,
            "seed": seed,
        },
    )
    lines += ["", "[cmdline]", f"memhp_default_state = {_q('online' if by_kernel else 'offline')}"]
    if cell.get("memmap_on_memory"):
        lines.append("memmap_on_memory = true")
    if by_kernel:
        lines.append(f"online_policy = {_q(online)}")
        lines.append(f"auto_movable_ratio = {_q(cell.get('auto_movable_ratio'))}")
        lines.append(f"auto_movable_numa_aware = {_q(cell.get('auto_movable_numa_aware'))}")
    steps: list[dict[str, object]] = []
    for i, d in enumerate(study.dimms):
        hot: dict[str, object] = {"size": f"{d.size >> 20}M", "node": d.node, "id": f"dimm{i}"}
        if d.addr is not None:
            hot["addr"] = hex(d.addr)
        steps.append({"hot_add": hot})
    mix = WorkloadMix(unmovable=wl.unmovable, pinned=wl.pinned)
    for e in trace:
        op = e["op"]
        if op == "online":
            steps.append({"write": f"memory{e['block']}/state", "value": e["state"]})
        elif op == "wait":
            steps.append({"wait": round(float(e["seconds"]), 3)})
        elif op == "task":
            parts = mix.split(int(e["pages"]))
            task = {
                "name": e["task"],
                "movable": parts[PageState.MOVABLE] * PAGE_SIZE,
                "unmovable": parts[PageState.UNMOVABLE] * PAGE_SIZE,
                "node": e["node"],
            }
            steps.append({"task": task})
        elif op == "end_task":
            steps.append({"end_task": e["task"]})
        elif op == "tmpfs":
            mib = max(1, round(int(e["bytes"]) / MIB))
            steps.append({"fill": {"size": f"{mib}M", "node": e["node"], "file": e["file"]}})
        elif op == "remove":
            argv = ["remove", e["device"], "--timeout", f"{study.remove_timeout:g}"]
            step: dict[str, object] = {
                "memhp": argv,
                "compare_output": False,
                "timeout": study.remove_timeout + REMOVE_SLACK,
            }
            if repeat > 1:
                steps.append(step)
                steps.append({"wait": {"removed": f"dimm{e['dimm']}", "timeout": REPEAT_WAIT}})
            elif e["ok"]:
                step["expect_rc"] = 0
                steps.append(step)
                steps.append({"wait": {"removed": f"dimm{e['dimm']}", "timeout": 60}})
            else:
                steps.append(step)
    for st in steps:
        lines += ["", "[[step]]"]
        for k, v in st.items():
            if isinstance(v, dict):
                inner = ", ".join(f"{ik} = {_q(iv)}" for ik, iv in v.items())
                lines.append(f"{k} = {{ {inner} }}")
            else:
                lines.append(f"{k} = {_q(v)}")
        if "capture" not in st:
            lines.append("capture = false")
    return "\n".join(lines) + "\n", verdict


def export_scenarios(
    study: Study,
    study_path: str,
    out_dir: str,
    cells: Sequence[str] = (),
    seeds: Sequence[int] = (),
    repeat: int = 1,
) -> list[Exported]:
    """Write the scenarios of the chosen cells (ids or indexes; all by default) and
    seeds (default: the study's first ``runs``); StudyError for an unknown cell.
    ``repeat`` > 1: probabilistic cells (module doc)."""
    if repeat < 1:
        raise StudyError("--repeat", f"expected a number of real runs >= 1, got {repeat}")
    chosen: list[tuple[int, Cell]] = []
    for c in cells or [str(i) for i in range(len(study.cells))]:
        idx = next((i for i, x in enumerate(study.cells) if c in (x.id, str(i))), None)
        if idx is None:
            known = "; ".join(f"{i}: {x.id}" for i, x in enumerate(study.cells))
            raise StudyError("--cell", f"no cell {c!r} (known: {known})")
        chosen.append((idx, study.cells[idx]))
    seeds = list(seeds) or [study.seed + r for r in range(study.runs)]
    mpath = machine_file(study_path)
    os.makedirs(out_dir, exist_ok=True)
    out: list[Exported] = []
    for idx, cell in chosen:
        for seed in seeds:
            text, verdict = scenario_text(study, cell, idx, seed, mpath, out_dir, repeat)
            path = os.path.join(out_dir, scenario_name(study, idx, seed) + ".toml")
            with open(path, "w") as f:
                f.write(text)
            out.append(Exported(path, cell.id, seed, verdict))
    return out
