"""A study's per-cell template: a copy of a machine after boot, hot-add and onlining
(memhp.sim.snapshot, or plain pickle) is that machine (same sysfs, same behaviour
from there on), and runs started from it give the results of runs that boot their
own machine."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from memhp.abi.paths import block_dir
from memhp.abi.tree import capture
from memhp.host.remove import remove_device
from memhp.host.root import SysfsRoot
from memhp.sim import snapshot
from memhp.sim.machine import SimMachine, WorkloadMix
from memhp.study import lifecycle
from memhp.study.lifecycle import run_lifecycle
from memhp.study.spec import load_study
from tests.study.test_study import SMALL, _write
from tests.support.sim import dimm_machine, machine

ROOTS = ("/sys/devices/system/memory", "/sys/devices/system/node", "/sys/bus/acpi/devices")


def _tree(m: SimMachine) -> object:
    return capture(m.sysfs, ROOTS)


def _work(m: SimMachine) -> tuple[object, ...]:
    """The same requests on a machine: a workload, an offline, a device removal."""
    m.fill(20_000, node=1, mix=WorkloadMix(unmovable=0.01), owner="task")
    m.advance(1.0)
    res = remove_device(
        SysfsRoot(m.sysfs, "sim"), "PNP0C80:00", sleep=m.advance, clock=lambda: m.kernel.clock
    )
    errs = []
    for b in (7, 6):  # memory7 has a hole: EINVAL
        try:
            m.sysfs.write(f"{block_dir(b)}/state", b"offline")
        except OSError as e:
            errs.append(e.errno)
    out = res.removed, res.passes, res.message, errs, m.kernel.clock
    return (*out, m.kernel.pa.counts.tobytes())


@pytest.mark.parametrize("how", ["snapshot", "pickle"])
def test_a_pickled_machine_is_the_machine(how: str) -> None:
    m = dimm_machine()
    if how == "snapshot":
        copy = snapshot.loads(snapshot.dumps(m))
    else:
        copy = pickle.loads(pickle.dumps(m, pickle.HIGHEST_PROTOCOL))
    assert copy.sysfs is not m.sysfs and copy.kernel is not m.kernel
    assert _tree(copy) == _tree(m)
    assert _work(copy) == _work(m)
    assert _tree(copy) == _tree(m)
    # each view sees its own kernel's object events only (its cache follows them)
    assert m.kernel.objects._listeners == [m.sysfs._on_object_event]
    assert copy.kernel.objects._listeners == [copy.sysfs._on_object_event]


def test_runs_from_the_template_equal_runs_that_boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = load_study(_write(tmp_path, SMALL))
    seeds = (0, 1, 2)
    lifecycle._TEMPLATES.clear()
    copied = [run_lifecycle(study, c, s) for c in study.cells for s in seeds]
    assert len(lifecycle._TEMPLATES) == len(study.cells)
    assert all(blob is not None for blob, _, _ in lifecycle._TEMPLATES.values())

    plugged = lifecycle._plugged

    def no_template(*a: object, **kw: object) -> object:
        m, devices, onlined, _ = plugged(*a, **kw)  # type: ignore[arg-type]
        return m, devices, onlined, False  # as if something had passed simulated time

    monkeypatch.setattr(lifecycle, "_plugged", no_template)
    lifecycle._TEMPLATES.clear()
    booted = [run_lifecycle(study, c, s) for c in study.cells for s in seeds]
    assert all(blob is None for blob, _, _ in lifecycle._TEMPLATES.values())
    lifecycle._TEMPLATES.clear()
    assert copied == booted
    trace: list[dict[str, object]] = []
    assert run_lifecycle(study, study.cells[-1], 1, trace) == booted[-2]
    assert [e for e in trace if e["op"] == "online"][:2] == [
        {"op": "online", "block": 8, "state": "online_movable"},
        {"op": "online", "block": 9, "state": "online_movable"},
    ]


def test_a_machine_that_cannot_be_copied_is_booted_for_each_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (a virtio-mem driver holds a closure: no copy of that machine)
    with pytest.raises(snapshot.NotCopyable, match="VirtioMemDriver"):
        snapshot.dumps(SimMachine(machine("virtio-mem")))
    study = load_study(_write(tmp_path, SMALL))
    lifecycle._TEMPLATES.clear()
    copied = [run_lifecycle(study, c, 3) for c in study.cells]

    def not_copyable(_m: object) -> bytes:
        raise snapshot.NotCopyable("no")

    monkeypatch.setattr(snapshot, "dumps", not_copyable)
    lifecycle._TEMPLATES.clear()
    assert [run_lifecycle(study, c, 3) for c in study.cells] == copied
    assert all(blob is None for blob, _, _ in lifecycle._TEMPLATES.values())
    lifecycle._TEMPLATES.clear()
