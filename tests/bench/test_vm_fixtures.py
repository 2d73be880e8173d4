"""The recorded real runs (tests/data/real/scenarios) are complete and agree with the
reference trace.

No QEMU needed: these check the recordings written by ``memhp bench diff --record``
(one format, :mod:`memhp.bench.recording`), and read the reference text trace
through the same format.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from memhp.abi.fs import Kind
from memhp.abi.tree import Snapshot
from memhp.bench.recording import Recording, load_recording, recording_path
from memhp.bench.scenario import Scenario, load_scenario, scenario_paths

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = ROOT / "tests" / "data" / "real" / "scenarios"
TREES = ROOT / "tests" / "scenarios" / "trees"
REFERENCE = ROOT / "tests" / "data" / "reference" / "linux-6.1"
SCENARIOS = [load_scenario(p) for p in scenario_paths([str(TREES)])]
#: Counters that move on their own between the reference run and ours.
VOLATILE = ("/vmstat", "/numastat", "/meminfo")


def recording(sc: Scenario) -> Recording:
    return Recording.load(recording_path(sc, str(RECORDINGS)))


def meminfo(snap: Snapshot) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (snap["/proc/meminfo"].value or "").splitlines():
        k, _, v = line.partition(":")
        out[k.strip()] = v.strip()
    return out


def test_tree_scenarios_recorded() -> None:
    names = {sc.name for sc in SCENARIOS}
    assert "pc-dimm-6.1-reference" in names and len(names) >= 4
    for sc in SCENARIOS:
        assert os.path.exists(recording_path(sc, str(RECORDINGS))), sc.name


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_steps_complete(sc: Scenario) -> None:
    rec = recording(sc)
    assert rec.meta["kernel"].startswith("6.1.0-")
    # every step of the scenario is recorded, in order, with a tree when it captures
    assert list(rec.steps) == ["boot", *(s.name for s in sc.steps)]
    for st in sc.steps:
        assert (rec.steps[st.name].snapshot is not None) == st.capture, st.name
    for _name, snap in rec.snapshots():
        assert snap["/sys/devices/system/memory/block_size_bytes"].value == "8000000\n"
        assert snap["/sys/devices/system/memory/soft_offline_page"].read_errno == errno.EACCES
        assert "MemTotal" in meminfo(snap)
        assert snap["/proc/zoneinfo"].value and snap["/proc/iomem"].value
        blocks = [
            p for p in snap if p.rsplit("/", 1)[-1].startswith("memory") and p.count("/") == 5
        ]
        assert len(blocks) >= 8
        for b in blocks:
            state = snap[f"{b}/state"].value
            assert state in ("online\n", "offline\n"), (b, state)
        for path, entry in snap.items():
            assert "/power/" not in path and not path.endswith("/power")
            if entry.kind is Kind.FILE and entry.value is None:
                assert entry.read_errno, path


def test_reference_scenario_matches_the_reference_trace() -> None:
    trace = REFERENCE / "pc-dimm-hotplug-trace.txt"
    if not trace.exists():
        pytest.skip("the reference trace is not in tests/data/reference")
    ref = load_recording(str(trace))  # the text trace, read as a recording
    sc = next(s for s in SCENARIOS if s.name == "pc-dimm-6.1-reference")
    rec = recording(sc)
    got_steps = dict(rec.snapshots())
    assert list(got_steps) == list(dict(ref.snapshots()))
    for name, ref_snap in ref.snapshots():
        snap = got_steps[name]
        for path, e in ref_snap.items():
            got = snap.get(path)
            assert got is not None, (name, path)
            assert got.kind is e.kind, (name, path)
            if e.kind is Kind.LINK:
                assert got.target == e.target, (name, path)
            elif e.kind is Kind.FILE and e.read_errno:
                assert got.read_errno == e.read_errno, (name, path)
            elif e.kind is Kind.FILE and e.value is not None and not path.endswith(VOLATILE):
                # the trace cut long values: compare those by prefix
                if e.value.endswith("\n"):
                    assert got.value == e.value, (name, path)
                else:
                    assert (got.value or "").startswith(e.value), (name, path)
        assert meminfo(snap)["MemTotal"] == ref.meta["meminfo"][name]["MemTotal"], name
