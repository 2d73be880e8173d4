"""Recordings: the real side of a scenario run, kept so the model can be compared
with it without QEMU.  ONE format, ``tests/data/real/scenarios/<scenario>.json.gz``::

    {"scenario": NAME, "order": [STEP NAME...],
     "meta": {"accel", "kernel", "cmdline", "qemu", "description", "boot_seconds",
              "image_layout"},                # the build's sections (memhp.bench.kimage)
     "steps": {STEP NAME: {"result": {"outcome", "detail", "events", "seconds"},
                           "output": {"rc", "stdout", "stderr"},        # memhp, lsmem
                           "snapshot": {PATH: ENTRY}}}}                  # when captured

A scenario with ``repeat = N`` keeps its first real run as above and the N-1 others
in ``"runs": [{"order": [...], "steps": {...}}, ...]`` (same step format): the set of
real outcomes of a step is the set over all runs.

Steps are keyed by the scenario's step names (``boot`` first).  A snapshot is the
whole capture of the real guest (:data:`memhp.abi.tree.MEMORY_ROOTS`, the PNP0C80
device directories, /proc/meminfo, zoneinfo, iomem, buddyinfo), each entry as
:meth:`memhp.abi.tree.Entry.to_json` gives it; the comparison normalises it
(:func:`memhp.bench.compare.normalise`).  Older recordings hold normalised
snapshots only: they replay the same.

``memhp bench diff SCENARIO --record DIR`` writes recordings, ``--replay DIR`` reads
them.  The reference text trace of Linux 6.1 (``tests/data/reference/linux-6.1``) is
read into the same type by :func:`Recording.from_trace`.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from memhp.abi.tree import Entry, Snapshot, parse_trace
from memhp.bench.drivers import CmdResult, SideResult

if TYPE_CHECKING:
    from memhp.bench.scenario import Scenario

#: Where the repository keeps its recordings.
RECORDINGS_DIR = os.path.join("tests", "data", "real", "scenarios")


@dataclass
class RecordedStep:
    """The real side of one step, as recorded: outcome, events, output, tree."""

    result: SideResult
    output: CmdResult | None = None
    snapshot: Snapshot | None = None


@dataclass
class Recording:
    """A real run of a scenario (see the module's documentation for the file format).

    :func:`memhp.bench.runner.run_scenario` replays it instead of booting QEMU.
    """

    scenario: str
    meta: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, RecordedStep] = field(default_factory=dict)
    #: The other real runs of a ``repeat = N`` scenario (the first one is ``steps``).
    more_runs: list[dict[str, RecordedStep]] = field(default_factory=list)

    def runs(self) -> list[dict[str, RecordedStep]]:
        """Every recorded real run, the first one first."""
        return [self.steps, *self.more_runs]

    def outcomes(self, step: str) -> list[str]:
        """The distinct real outcomes of ``step`` over the runs, in run order."""
        out: list[str] = []
        for run in self.runs():
            st = run.get(step)
            if st is not None and st.result.outcome not in out:
                out.append(st.result.outcome)
        return out

    def save(self, path: str) -> None:
        doc: dict[str, Any] = {"scenario": self.scenario, "meta": self.meta, **_dump(self.steps)}
        if self.more_runs:
            doc["runs"] = [_dump(r) for r in self.more_runs]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with gzip.open(path, "wt", encoding="utf-8") as f:
            json.dump(doc, f, indent=0, sort_keys=True)

    @staticmethod
    def load(path: str) -> Recording:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            doc = json.load(f)
        rec = Recording(str(doc["scenario"]), dict(doc.get("meta") or {}), _load(doc))
        rec.more_runs = [_load(r) for r in doc.get("runs") or []]
        return rec

    @staticmethod
    def from_trace(path: str, scenario: str = "") -> Recording:
        """A text trace (``# step NAME`` sections of paths and values, as in
        tests/data/reference/linux-6.1/pc-dimm-hotplug-trace.txt): one captured step per
        section, outcome "ok", ``meta["meminfo"][STEP]`` the parsed meminfo lines."""
        with open(path, encoding="utf-8") as f:
            steps = parse_trace(f.read())
        name = scenario or os.path.splitext(os.path.basename(path))[0]
        rec = Recording(name, {"source": os.path.basename(path), "meminfo": {}})
        for s in steps:
            rec.steps[s.name] = RecordedStep(SideResult("ok"), None, dict(s.snapshot))
            rec.meta["meminfo"][s.name] = dict(s.meminfo)
        return rec

    def snapshots(self) -> Iterator[tuple[str, Snapshot]]:
        """(step name, tree) of every captured step, in order."""
        for name, st in self.steps.items():
            if st.snapshot is not None:
                yield name, st.snapshot


def _dump(steps: dict[str, RecordedStep]) -> dict[str, Any]:
    """``order`` and ``steps`` of one run, as saved ("steps" is saved with sorted keys)."""
    out: dict[str, Any] = {}
    for name, st in steps.items():
        d: dict[str, Any] = {"result": asdict(st.result)}
        if st.output is not None:
            d["output"] = asdict(st.output)
        if st.snapshot is not None:
            d["snapshot"] = {p: st.snapshot[p].to_json() for p in sorted(st.snapshot)}
        out[name] = d
    return {"order": list(steps), "steps": out}


def _load(doc: dict[str, Any]) -> dict[str, RecordedStep]:
    """The steps of one run from its ``order`` and ``steps``."""
    steps: dict[str, RecordedStep] = {}
    for name in doc.get("order") or list(doc["steps"]):
        d = doc["steps"][name]
        out = d.get("output")
        snap = d.get("snapshot")
        steps[name] = RecordedStep(
            SideResult(**d["result"]),
            CmdResult(**out) if out is not None else None,
            {p: Entry.from_json(e) for p, e in snap.items()} if snap is not None else None,
        )
    return steps


def load_recording(path: str) -> Recording:
    """A recording (``*.json.gz``) or a text trace (``*.txt``), as a :class:`Recording`."""
    if path.endswith(".txt"):
        return Recording.from_trace(path)
    return Recording.load(path)


def recording_path(sc: Scenario, directory: str) -> str:
    """Where the recording of ``sc`` lives in ``directory``.

    ``NAME.json.gz`` for the default kernel (6.1), ``NAME@6.12.json.gz`` for another.
    """
    return os.path.join(directory, f"{sc.label}.json.gz")
