"""The recorded real trees (tests/data/real) are complete and agree with the reference.

No QEMU needed: these check the fixtures written by ``python -m memhp.bench.record``.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from memhp.abi.fs import Kind
from memhp.abi.tree import load_json, parse_trace

REAL = Path(__file__).resolve().parents[1] / "data" / "real"
REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference" / "linux-6.1"
SCENARIOS = sorted(p.name for p in REAL.iterdir() if (p / "scenario.json").exists())
#: Counters that move on their own between the reference run and ours.
VOLATILE = ("/vmstat", "/numastat", "/meminfo")


def index(name: str) -> dict[str, Any]:
    with open(REAL / name / "scenario.json", encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def test_scenarios_recorded() -> None:
    assert "pc-dimm-6.1-reference" in SCENARIOS
    assert len(SCENARIOS) >= 3


@pytest.mark.parametrize("name", SCENARIOS)
def test_steps_complete(name: str) -> None:
    idx = index(name)
    assert idx["kernel"].startswith("6.1.0-")
    assert idx["steps"][0]["name"] == "boot"
    for step in idx["steps"]:
        snap = load_json(str(REAL / name / step["snapshot"]))
        assert snap["/sys/devices/system/memory/block_size_bytes"].value == "8000000\n"
        assert snap["/sys/devices/system/memory/soft_offline_page"].read_errno == errno.EACCES
        assert "MemTotal" in step["meminfo"]
        assert snap["/proc/meminfo"].value and snap["/proc/zoneinfo"].value
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
        for a in step["actions"]:
            if a["op"] == "write":
                assert isinstance(a["errno"], int)


def test_reference_scenario_matches_the_reference_trace() -> None:
    trace = REFERENCE / "pc-dimm-hotplug-trace.txt"
    if not trace.exists():
        pytest.skip("shared/reference not beside the repository")
    steps = parse_trace(trace.read_text())
    idx = index("pc-dimm-6.1-reference")
    assert [s["name"] for s in idx["steps"]] == [s.name for s in steps]
    for ref, rec in zip(steps, idx["steps"], strict=True):
        snap = load_json(str(REAL / "pc-dimm-6.1-reference" / rec["snapshot"]))
        for path, e in ref.snapshot.items():
            got = snap.get(path)
            assert got is not None, (ref.name, path)
            assert got.kind is e.kind, (ref.name, path)
            if e.kind is Kind.LINK:
                assert got.target == e.target, (ref.name, path)
            elif e.kind is Kind.FILE and e.read_errno:
                assert got.read_errno == e.read_errno, (ref.name, path)
            elif e.kind is Kind.FILE and e.value is not None and not path.endswith(VOLATILE):
                # the trace cut long values: compare those by prefix
                if e.value.endswith("\n"):
                    assert got.value == e.value, (ref.name, path)
                else:
                    assert (got.value or "").startswith(e.value), (ref.name, path)
        assert rec["meminfo"]["MemTotal"] == ref.meminfo["MemTotal"], ref.name
