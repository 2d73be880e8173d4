"""Replay shared/reference/linux-6.1 on the model: same trees, same errno, same events."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable

import pytest

from memhp.abi.fs import Kind
from memhp.abi.tree import Snapshot, capture, parse_trace
from memhp.kernel.invariants import check_invariants
from memhp.sim.machine import SimMachine
from tests.conftest import REFERENCE, machine

TRACE = os.path.join(REFERENCE, "pc-dimm-hotplug-trace.txt")
#: Values the model cannot know: boot-time counters of the real guest's kernel.
#: (MemTotal & co. are compared by their change between steps below.)
UNKNOWABLE = ("/meminfo", "/numastat", "/vmstat")
ERRNO_TEXT = {"Invalid argument": errno.EINVAL, "Device or resource busy": errno.EBUSY}

pytestmark = pytest.mark.skipif(not os.path.exists(TRACE), reason="reference trace not available")


#: What the recorder of the shared trace left out (a full capture of the same guest,
#: tests/scenarios/trees/pc-dimm-6.1-reference.toml, has them and is compared by the bench).
RECORDER_SKIPPED = re.compile(r"/(subsystem|compact|hugepages|node\d+/cpu\d+)(/|$)")


def comparable(snap: Snapshot) -> Snapshot:
    return {
        p: e
        for p, e in snap.items()
        if not p.endswith(UNKNOWABLE) and not RECORDER_SKIPPED.search(p)
    }


def assert_same_tree(ref: Snapshot, got: Snapshot, step: str) -> None:
    ref, got = comparable(ref), comparable(got)
    missing = sorted(set(ref) - set(got))
    extra = sorted(set(got) - set(ref))
    assert not missing, f"{step}: model lacks {missing[:5]}"
    assert not extra, f"{step}: model has extra {extra[:5]}"
    for path, e in ref.items():
        g = got[path]
        assert g.kind == e.kind, path
        if e.kind is Kind.LINK:
            assert g.target == e.target, path
        elif e.kind is Kind.FILE:
            if e.read_errno:
                assert g.read_errno == e.read_errno, path
            else:
                assert g.value == e.value, f"{step}: {path}: {g.value!r} != {e.value!r}"


def run_command(m: SimMachine, cmd: str) -> int:
    mm = re.fullmatch(r"echo (\S+) > (\S+)", cmd)
    assert mm, cmd
    try:
        m.sysfs.write(mm.group(2), mm.group(1).encode() + b"\n")
        return 0
    except OSError as e:
        assert e.errno is not None
        return e.errno


def test_reference_scenario_step_by_step() -> None:
    with open(TRACE) as f:
        steps = parse_trace(f.read())
    m = SimMachine(machine("qemu-linux-6.1"))
    actions: dict[str, Callable[[], object]] = {
        "after-hotadd-dimm1-node1": lambda: m.device_add(512 << 20, 1, id="dimm1"),
        "after-hotadd-dimm2-node0": lambda: m.device_add(1 << 30, 0, id="dimm2"),
        "after-device_del-dimm2": lambda: m.device_del("dimm2"),
    }
    prev_total = None
    for step in steps:
        if step.name in actions:
            actions[step.name]()
        for cmd, out, rc in step.commands:
            if cmd.startswith("cat "):
                assert m.sysfs.read(cmd[4:]).decode().splitlines() == out
                continue
            got = run_command(m, cmd)
            if rc == 0:
                assert got == 0, f"{cmd}: model failed with {errno.errorcode[got]}"
            else:
                text = out[-1].split("write error: ")[-1]
                assert got == ERRNO_TEXT[text], f"{cmd}: {errno.errorcode.get(got)} != {text}"
        check_invariants(m.kernel)
        assert_same_tree(step.snapshot, capture(m.sysfs), step.name)
        # MemTotal changes exactly as the real kernel's does.
        total = int(step.meminfo["MemTotal"].split()[0])
        model_total = int(m.sysfs.read("/proc/meminfo").decode().split()[1])
        if prev_total is not None:
            assert model_total - prev_total[1] == total - prev_total[0], step.name
        prev_total = (total, model_total)


def test_qmp_events_match_reference() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(512 << 20, 1, id="dimm1")
    m.sysfs.write("/sys/devices/system/memory/memory34/state", b"online_movable")
    m.sysfs.write("/sys/bus/acpi/devices/PNP0C80:00/eject", b"1\n")
    m.device_add(1 << 30, 0, id="dimm2")
    m.device_del("dimm2")
    got = [(e.event, e.data) for e in m.platform.events]

    def info(dev: str | None, src: int, st: int) -> tuple[str, dict[str, object]]:
        return (
            "ACPI_DEVICE_OST",
            {
                "info": {
                    **({"device": dev} if dev else {}),
                    "source": src,
                    "status": st,
                    "slot": "0",
                    "slot-type": "DIMM",
                }
            },
        )

    assert got == [
        info("dimm1", 1, 0),
        info("dimm1", 3, 132),
        ("DEVICE_DELETED", {"device": "dimm1", "path": "/machine/peripheral/dimm1"}),
        info(None, 259, 0),
        info("dimm2", 1, 0),
        info("dimm2", 3, 132),
        ("DEVICE_DELETED", {"device": "dimm2", "path": "/machine/peripheral/dimm2"}),
        info(None, 3, 0),
    ]
