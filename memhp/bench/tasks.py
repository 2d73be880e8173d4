"""Workload tasks on both bench sides (the ``task`` and ``end_task`` actions).

A task is a process holding memory: ``movable`` bytes of anonymous memory and
``unmovable`` bytes of kernel memory.  In the guest it is
:mod:`memhp.bench.guest_task` (pipe buffers for the unmovable part, see there);
on the model it is what :func:`memhp.study.lifecycle.run_lifecycle` does for a
workload task: :meth:`SimMachine.fill` with that mix on the node's zonelist,
plus the process's page tables (``kalloc.process_page_tables``).  Ending a task
kills the process (guest) or frees its pages and page tables (model).
"""

from __future__ import annotations

import os
import shlex
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from memhp.abi.layout import PAGE_SIZE
from memhp.bench.actions import (
    Action,
    ScenarioError,
    action,
    as_int,
    as_str,
    as_strings,
    size_text,
)
from memhp.bench.drivers import CmdResult, Driver, ModelDriver, QMPDriver
from memhp.kernel.machine import MachineError, parse_size
from memhp.kernel.mm.mempolicy import set_mempolicy_preferred

if TYPE_CHECKING:
    from memhp.kernel.mm.page_alloc import Allocation
    from memhp.sim.machine import SimMachine

GUEST_TASK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest_task.py")

#: Per simulated machine, its live tasks' allocations.
_MODEL_TASKS: weakref.WeakKeyDictionary[SimMachine, dict[str, list[Allocation]]] = (
    weakref.WeakKeyDictionary()
)


def _pidfile(name: str) -> str:
    return f"/run/memhp-task-{name}.pid"


def start_task(d: Driver, name: str, movable: int, unmovable: int, node: int) -> str:
    """Start task ``name`` on one side: ``"ok"`` or ``"failed: ..."``."""
    if isinstance(d, ModelDriver):
        from memhp.kernel.mm.page_alloc import AllocError
        from memhp.sim.machine import WorkloadMix

        m = d.m
        tasks = _MODEL_TASKS.setdefault(m, {})
        if name in tasks:
            return f"failed: task {name} exists"
        with m.lock:
            err = set_mempolicy_preferred(m.kernel, [node])
        if err:  # (the guest task's OSError, as Python prints it)
            return f"failed: [Errno {-err}] set_mempolicy"
        nu, nm = unmovable // PAGE_SIZE, movable // PAGE_SIZE
        allocs: list[Allocation] = []
        try:  # the kernel part first, as SimMachine.fill does with a mix
            if nu:
                allocs += m.fill(nu, node=node, mix=WorkloadMix(unmovable=1.0), owner=name)
            if nm:
                allocs += m.fill(nm, node=node, owner=name)
        except (AllocError, ValueError) as e:
            m.free(allocs)
            return f"failed: {e}"
        nr = nu + nm
        with m.lock:
            m.kernel.kalloc.process_page_tables(name, nr, node)
        tasks[name] = allocs
        return "ok"
    if isinstance(d, QMPDriver) and d.vm is not None:
        argv = [*d.vm.python_argv(), GUEST_TASK, name, str(movable), str(unmovable), str(node)]
        r = d.vm.fs.run(" ".join(shlex.quote(a) for a in argv), 600.0)
        if r.rc == 0:
            return "ok"
        why = r.text.strip() or r.stderr.decode().strip()
        return f"failed: {why.removeprefix('failed: ')}"  # (guest_task.py says "failed: ...")
    return "failed: tasks need a QEMU guest or the in-process model"


def end_task(d: Driver, name: str) -> str:
    """Kill task ``name`` and wait until its memory is freed: ``"ok"`` or why not."""
    if isinstance(d, ModelDriver):
        tasks = _MODEL_TASKS.get(d.m, {})
        if name not in tasks:
            return f"failed: no task {name}"
        d.m.free(tasks.pop(name))
        with d.m.lock:
            d.m.kernel.kalloc.release(name)
        return "ok"
    if isinstance(d, QMPDriver) and d.vm is not None:
        pf = _pidfile(name)
        script = (
            f"[ -f {pf} ] || {{ echo 'no task {name}'; exit 1; }}; pid=$(cat {pf}); rm {pf}; "
            "kill $pid; while [ -d /proc/$pid ] && ! grep -q '^State:.*Z' /proc/$pid/status; "
            "do sleep 0.1; done"
        )
        r = d.vm.fs.run(script, 120.0)
        return "ok" if r.rc == 0 else f"failed: {r.text.strip()}"
    return "failed: tasks need a QEMU guest or the in-process model"


# --- workload tasks (memhp.bench.tasks; used by the scenarios memhp study exports) ---------


@action
@dataclass(frozen=True)
class TaskAction(Action):
    """``task = { name = "task0", movable = "300M", unmovable = "64M", node = 0 }``: a
    process holding that much anonymous memory and unmovable kernel memory (guest:
    pipe buffers, see memhp/bench/guest_task.py; model: the pages and page tables
    of a study workload task) until ``end_task``; sizes in whole pages."""

    key: ClassVar[str] = "task"
    options: ClassVar[frozenset[str]] = frozenset({"expect"})
    capture_by_default: ClassVar[bool] = False
    guest_python: ClassVar[bool] = True

    name: str
    movable: int
    unmovable: int
    node: int
    expect: tuple[str, ...] = ("ok",)

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        known = {"name", "movable", "unmovable", "node"}
        if not isinstance(value, Mapping) or set(value) - known or "name" not in value:
            raise ScenarioError(f"{key}.task: expected a table {{name, movable, unmovable, node}}")
        sizes = []
        for k in ("movable", "unmovable"):
            try:
                n = parse_size(value.get(k, 0), k)
            except MachineError as e:
                raise ScenarioError(f"{key}.task.{e.key}: {e.problem}") from None
            if n < 0 or n % 4096:
                raise ScenarioError(f"{key}.task.{k}: a multiple of 4K")
            sizes.append(n)
        name = as_str(value["name"], f"{key}.task.name")
        if not name.isidentifier():
            raise ScenarioError(f"{key}.task.name: letters, digits and _ only")
        node = as_int(value.get("node", 0), f"{key}.task.node")
        expect = as_strings(step.get("expect", "ok"), f"{key}.expect")
        return cls(name, sizes[0], sizes[1], node, expect)

    @classmethod
    def default_name(cls, value: object, step: Mapping[str, Any]) -> str:
        if isinstance(value, Mapping):
            return f"task-{value.get('name', '?')}"
        return super().default_name(value, step)

    def describe(self) -> str:
        return (
            f"task {self.name} on node {self.node}: {size_text(self.movable)} movable, "
            f"{size_text(self.unmovable)} unmovable"
        )

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        return start_task(d, self.name, self.movable, self.unmovable, self.node), "", None


@action
@dataclass(frozen=True)
class EndTaskAction(Action):
    """``end_task = "task0"``: the task exits; its memory is freed."""

    key: ClassVar[str] = "end_task"
    options: ClassVar[frozenset[str]] = frozenset({"expect"})
    capture_by_default: ClassVar[bool] = False
    guest_python: ClassVar[bool] = True

    name: str
    expect: tuple[str, ...] = ("ok",)

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        expect = as_strings(step.get("expect", "ok"), f"{key}.expect")
        return cls(as_str(value, f"{key}.end_task"), expect)

    def describe(self) -> str:
        return f"end task {self.name}"

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        return end_task(d, self.name), "", None
