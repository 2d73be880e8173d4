"""Replaying a recorded real run on the model, with something read after each step."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from memhp.abi.layout import PAGE_SIZE
from memhp.abi.paths import PROC_BUDDYINFO, PROC_MEMINFO, PROC_ZONEINFO, node_dir
from memhp.bench.drivers import ModelDriver
from memhp.bench.recording import Recording, recording_path
from memhp.bench.runner import StepResult, run_scenario
from memhp.bench.scenario import load_scenario
from memhp.bench.tasks import EndTaskAction, TaskAction
from memhp.cli.main import run_with_sysfs
from memhp.sim.machine import SimMachine
from tests.bench.test_diff_units import RECORDINGS

T = TypeVar("T")
#: Nodes read per step (node0..node3).
MAX_NODES = 4


def replay(
    path: str, kernel: str, probe: Callable[[SimMachine, StepResult], T]
) -> tuple[Recording, list[tuple[str, T]]]:
    """The recorded real run of scenario ``path`` on ``kernel``, and ``probe`` of the
    model's machine and step result after boot and after each step of its replay."""
    sc = load_scenario(path).for_kernel(kernel)
    rec = Recording.load(recording_path(sc, RECORDINGS))
    drv = ModelDriver(SimMachine(sc.machine), run_with_sysfs)
    out: list[tuple[str, T]] = []
    run_scenario(sc, drv, replay=rec, on_step=lambda sr: out.append((sr.name, probe(drv.m, sr))))
    return rec, out


@dataclass(frozen=True)
class ModelTexts:
    """What the model showed after one step of a replay: /proc/meminfo, zoneinfo and
    buddyinfo, each node's meminfo (None: no such node), and what each node's
    per-CPU lists may hold (kB: its zones' low watermarks)."""

    meminfo: str
    zoneinfo: str
    buddyinfo: str
    node_meminfo: tuple[str | None, ...]
    pcp_kb: dict[int, int]


def _texts(m: SimMachine) -> ModelTexts:
    nodes: list[str | None] = []
    for nid in range(MAX_NODES):
        try:
            nodes.append(m.sysfs.read(f"{node_dir(nid)}/meminfo").decode())
        except OSError:
            nodes.append(None)
    k = m.kernel
    k.pa.ensure_watermarks()
    return ModelTexts(
        m.sysfs.read(PROC_MEMINFO).decode(),
        m.sysfs.read(PROC_ZONEINFO).decode(),
        m.sysfs.read(PROC_BUDDYINFO).decode(),
        tuple(nodes),
        {
            nid: sum(z.watermark_low for z in pg.node_zones) * PAGE_SIZE >> 10
            for nid, pg in k.pgdats.items()
        },
    )


@functools.cache
def replay_texts(path: str, kernel: str) -> tuple[Recording, list[tuple[str, ModelTexts]]]:
    """:func:`replay` reading :class:`ModelTexts` after each step, once per process
    for each recorded run (test_zoneinfo, test_meminfo_user_pages and test_node_free
    compare the same replays: each is made once, not three times)."""
    return replay(path, kernel, lambda m, _sr: _texts(m))


def real_text(rec: Recording, step: str, path: str) -> str | None:
    """The real guest's ``path`` as captured after ``step`` (None: not captured)."""
    snap = rec.steps[step].snapshot if step in rec.steps else None
    if not snap or path not in snap:
        return None
    text = snap[path].value
    assert isinstance(text, str)
    return text


def guest_tasks_alive(rec: Recording, path: str, kernel: str) -> dict[str, int]:
    """The guest tasks running after each step of the recorded run of scenario
    ``path`` on ``kernel`` (a task whose start failed, e.g. on a node without memory,
    is none): each is an interpreter with memory of its own the model's task lacks."""
    alive: set[str] = set()
    out: dict[str, int] = {}
    for st in load_scenario(path).for_kernel(kernel).steps:
        got = rec.steps.get(st.name)
        ok = got is not None and got.result.outcome == "ok"
        if isinstance(st.action, TaskAction) and ok:
            alive.add(st.action.name)
        elif isinstance(st.action, EndTaskAction):
            alive.discard(st.action.name)
        out[st.name] = len(alive)
    return out
