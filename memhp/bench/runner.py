"""The differential run: one scenario on real Linux (QEMU, or a recording) and on the model.

Each step's action (:mod:`memhp.bench.actions`) runs on both sides through their
drivers (:mod:`memhp.bench.drivers`); the steps are compared by their outcome, their
own expectations, their output and the QMP events they caused; after capturing steps
both trees are normalised and compared (:mod:`memhp.bench.compare`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import chain

from memhp.abi.tree import Snapshot
from memhp.bench.compare import Difference, compare_trees, normalise, short
from memhp.bench.drivers import (
    CmdResult,
    Driver,
    ModelDriver,
    QMPDriver,
    SideResult,
    ToolRunner,
    real_driver,
)
from memhp.bench.initramfs import (
    BENCH_BRK_USED,
    BENCH_DECRYPTED_UNUSED,
    BenchSetupError,
    KernelImage,
)
from memhp.bench.kimage import Layout, kernel_build
from memhp.bench.recording import RecordedStep, Recording, recording_path
from memhp.bench.scenario import Scenario, Step
from memhp.bench.virtio import comparable_events

#: How long boot-time virtio-mem plugging may stay still, and take at most (seconds).
VIRTIO_SETTLE = 4.0
VIRTIO_TIMEOUT = 180.0

Log = Callable[[str], None]


@dataclass
class StepResult:
    """One step of a differential run."""

    name: str
    description: str
    real: SideResult | None
    model: SideResult
    captured: bool = False
    files_compared: int = 0
    differences: list[Difference] = field(default_factory=list)


@dataclass
class ScenarioResult:
    """A whole scenario: its steps and every difference."""

    name: str
    path: str
    description: str
    model_only: bool
    steps: list[StepResult] = field(default_factory=list)
    boot_seconds: float = 0.0
    accel: str = ""
    seconds: float = 0.0
    error: str = ""

    @property
    def differences(self) -> list[Difference]:
        return [d for s in self.steps for d in s.differences]

    @property
    def files_compared(self) -> int:
        """Paths compared between the two sides (0 when only the model ran)."""
        if self.model_only:
            return 0
        return sum(s.files_compared for s in self.steps)

    @property
    def files_captured(self) -> int:
        """Paths captured on the model side, summed over the captures."""
        return sum(s.files_compared for s in self.steps)

    @property
    def ok(self) -> bool:
        return not self.error and not self.differences


def run_step(step: Step, d: Driver, outputs: dict[str, CmdResult]) -> SideResult:
    """Run one step on one side; ``outputs`` keeps command results by step name."""
    t0 = time.monotonic()
    outcome, detail, output = step.action.run(d)
    if output is not None:
        outputs[step.name] = output
    res = SideResult(outcome, detail)
    res.events = [str(e) for e in d.take_events()]
    res.seconds = round(time.monotonic() - t0, 3)
    return res


class _Run:
    """The state of one run: the sides, the outputs so far, the previous trees."""

    def __init__(
        self,
        sc: Scenario,
        model: Driver,
        real: Driver | None,
        replay: Recording | None,
        record: Recording | None,
    ) -> None:
        self.sc, self.model, self.real, self.replay, self.record = sc, model, real, replay, record
        self.outputs: dict[str, dict[str, CmdResult]] = {"real": {}, "model": {}}
        self.prev_r: Snapshot | None = None
        self.prev_m: Snapshot | None = None
        #: A recording of several real runs: those whose outcomes so far are the model's.
        self.runs = replay.runs() if replay is not None else []
        self.cands = list(range(len(self.runs)))

    def replayed(self, name: str, model_outcome: str | None = None) -> RecordedStep:
        """The recorded step ``name`` of the real run the model follows: among the runs
        that agreed with the model so far, the first with the model's outcome (those
        stay the candidates), else the first candidate (an outcome difference)."""
        for i in self.cands:
            if name not in self.runs[i]:
                raise KeyError(f"{self.sc.name}: the recording has no step {name!r}")
        same = [i for i in self.cands if self.runs[i][name].result.outcome == model_outcome]
        if same:
            self.cands = same
        return self.runs[self.cands[0]][name]

    def real_step(self, step: Step, model_outcome: str | None = None) -> SideResult | None:
        if self.replay is not None:
            rs = self.replayed(step.name, model_outcome)
            if rs.output is not None:
                self.outputs["real"][step.name] = rs.output
            return rs.result
        if self.real is None:
            return None
        r = run_step(step, self.real, self.outputs["real"])
        if self.record is not None:
            self.record.steps[step.name] = RecordedStep(r, self.outputs["real"].get(step.name))
        return r

    def real_capture(self, name: str) -> Snapshot | None:
        if self.replay is not None:
            snap = self.runs[self.cands[0]][name].snapshot
            if snap is None:
                raise KeyError(f"{self.sc.name}: the recording has no tree after {name!r}")
            return normalise(snap)
        if self.real is None:
            return None
        raw = self.real.capture()
        if self.record is not None:
            self.record.steps[name].snapshot = raw  # recordings keep the whole capture
        return normalise(raw)

    def capture_both(self, sr: StepResult) -> None:
        snap_m = normalise(self.model.capture())
        sr.captured = True
        snap_r = self.real_capture(sr.name)
        if snap_r is None:
            sr.files_compared = len(snap_m)
            self.prev_m = snap_m
            return
        n, diffs = compare_trees(sr.name, snap_r, snap_m, self.prev_r, self.prev_m)
        sr.files_compared = n
        sr.differences += diffs
        self.prev_r, self.prev_m = snap_r, snap_m

    def settle_boot_devices(self) -> None:
        """virtio-mem devices with a requested size on QEMU's command line are plugged
        when the driver probes: let both sides finish (and QEMU's throttled size-change
        event come) before the boot is captured and its events taken."""
        for v in self.sc.machine.virtio_mem:
            if v.requested_size:
                for d in (self.real, self.model):
                    if d is not None:
                        d.settle_virtio_mem(v.id, VIRTIO_SETTLE, VIRTIO_TIMEOUT)

    def keep_time(self, sr: StepResult, clock0: float | None) -> None:
        """The kernel's clock runs while user space works: the model's simulated
        clock is moved on by what the real step took beyond the simulated time the
        model's own step let pass (a wait, memhp's polling), so that its run-time
        kernel allocations (k.kalloc) are made over the same time as the real
        kernel's.  No real side (model only), or no step time: nothing."""
        clock1 = self.model.clock()
        if sr.real is None or clock0 is None or clock1 is None:
            return
        extra = sr.real.seconds - (clock1 - clock0)
        if extra > 0:
            self.model.sleep(extra)

    def boot(self) -> StepResult:
        boot = StepResult("boot", "the machine as booted", None, SideResult("ok"))
        self.settle_boot_devices()
        if self.replay is not None:
            boot.real = self.replayed("boot", "ok").result
        elif self.real is not None:
            boot.real = SideResult("ok", events=[str(e) for e in self.real.take_events()])
            if self.record is not None:
                self.record.steps["boot"] = RecordedStep(boot.real)
        boot.model.events = [str(e) for e in self.model.take_events()]
        self.capture_both(boot)
        return boot

    def step(self, step: Step) -> StepResult:
        sr = StepResult(step.name, step.describe(), None, SideResult())
        clock0 = self.model.clock()
        if self.replay is not None:  # the model first: its outcome picks the real run
            sr.model = run_step(step, self.model, self.outputs["model"])
            real_outcomes = [
                o for o in self.replay.outcomes(step.name)
                if any(self.runs[i][step.name].result.outcome == o for i in self.cands)
            ]  # fmt: skip
            sr.real = self.real_step(step, sr.model.outcome)
        else:
            real_outcomes = []
            sr.real = self.real_step(step)
            sr.model = run_step(step, self.model, self.outputs["model"])
        self.keep_time(sr, clock0)
        act = step.action
        for side, r in (("real", sr.real), ("model", sr.model)):
            if r is not None:
                sr.differences += act.check(
                    step.name, side, r.outcome, r.detail, self.outputs[side]
                )
        if sr.real is not None:
            if sr.real.outcome != sr.model.outcome:
                real_txt = short(sr.real.outcome, 400)
                if len(real_outcomes) > 1:
                    real_txt = "one of " + ", ".join(short(o, 120) for o in real_outcomes)
                sr.differences.append(
                    Difference(step.name, "outcome", step.describe(),
                               real_txt, short(sr.model.outcome, 400))
                )  # fmt: skip
            sr.differences += act.compare(
                step.name,
                self.outputs["real"].get(step.name),
                self.outputs["model"].get(step.name),
            )
            ev_r, ev_m = comparable_events(sr.real.events), comparable_events(sr.model.events)
            if ev_r != ev_m:
                sr.differences.append(
                    Difference(step.name, "events", "QMP events",
                               "; ".join(ev_r) or "(none)", "; ".join(ev_m) or "(none)")
                )  # fmt: skip
        if step.capture:
            self.capture_both(sr)
        return sr


def _log_step(log: Log, sr: StepResult, model_only: bool) -> None:
    outc = sr.model.outcome if sr.real is None else f"{sr.real.outcome} / {sr.model.outcome}"
    files = ""
    if sr.captured:
        files = (
            f", {sr.files_compared} model paths" if model_only else f", {sr.files_compared} paths"
        )
    tail = "model only" if model_only else f"{len(sr.differences)} differences"
    if model_only and sr.differences:
        tail += f", {len(sr.differences)} failed expectations"
    log(f"  {sr.name}: {short(outc, 60)}{files}, {tail}")
    for dd in sr.differences:
        log(f"    {dd.line()}")


def run_scenario(
    sc: Scenario,
    model: Driver,
    real: Driver | None = None,
    log: Log | None = None,
    replay: Recording | None = None,
    record: Recording | None = None,
    on_step: Callable[[StepResult], None] | None = None,
) -> ScenarioResult:
    """Run ``sc`` on ``real`` and ``model`` and compare.

    With ``replay`` the real side is a recording instead of a driver; with neither,
    only the model runs (its expectations are still checked).  ``record`` collects
    the real side's results and trees.  ``on_step`` is called after boot and after
    each step, before the next one (e.g. to look at the model's state there).
    """
    t0 = time.monotonic()
    model_only = real is None and replay is None
    res = ScenarioResult(sc.label, sc.path, sc.description, model_only)
    run = _Run(sc, model, real, replay, record)
    for sr in chain([run.boot()], map(run.step, sc.steps)):
        res.steps.append(sr)
        if log:
            _log_step(log, sr, model_only)
        if on_step:
            on_step(sr)
    res.seconds = round(time.monotonic() - t0, 2)
    return res


def model_driver(sc: Scenario, tool: ToolRunner | None = None) -> ModelDriver:
    """The simulated machine of ``sc``; ``tool`` runs memhp on it (memhp steps)."""
    return ModelDriver.for_machine(sc.machine, tool)


@dataclass(frozen=True)
class RealBuild:
    """The kernel build a real side runs: its sections and what stays of its image."""

    layout: Layout | None = None
    image_size: int | None = None

    def meta(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.layout is not None:
            out["image_layout"] = [list(p) for p in self.layout]
        if self.image_size is not None:
            out["image_size"] = self.image_size
        return out


def real_build(sc: Scenario, replay: Recording | None = None) -> RealBuild:
    """The kernel build the real side runs: the image the bench boots for ``sc``
    (:mod:`memhp.bench.kimage`), or the one a ``replay`` recorded (nothing for a
    recording older than that: the profile and BENCH_IMAGE_SIZES describe its build)."""
    if replay is not None:
        raw, size = replay.meta.get("image_layout"), replay.meta.get("image_size")
        try:
            layout = None if raw is None else tuple((int(a), int(b)) for a, b in raw)
            return RealBuild(layout, None if size is None else int(size))
        except (TypeError, ValueError):
            return RealBuild()
    try:
        build = kernel_build(KernelImage.find(sc.kernel).vmlinuz)
    except BenchSetupError:
        return RealBuild()  # no kernel to boot: the real side reports it
    size = build.image_size(BENCH_BRK_USED, BENCH_DECRYPTED_UNUSED[sc.kernel])
    return RealBuild(build.layout, size)


def on_real_build(sc: Scenario, replay: Recording | None = None) -> Scenario:
    """``sc`` on the build its real side runs (:func:`real_build`)."""
    build = real_build(sc, replay)
    return sc.with_build(build.layout, build.image_size)


def _meta(sc: Scenario, real: QMPDriver, build: RealBuild) -> dict[str, object]:
    """What a recording keeps of the real run."""
    vm = real.vm
    assert vm is not None and vm.boot is not None
    return {
        "accel": vm.boot.accel,
        "kernel": vm.kernel.release if vm.kernel else "",
        "cmdline": vm.config.cmdline(),
        "description": sc.description,
        "boot_seconds": round(vm.boot.seconds, 2),
        **build.meta(),
    }


def diff_scenario(
    sc: Scenario,
    model_only: bool = False,
    log: Log | None = None,
    replay: Recording | None = None,
    record_dir: str | None = None,
    tool: ToolRunner | None = None,
) -> ScenarioResult:
    """Run one scenario on the model and on QEMU (or a ``replay``), and compare.

    ``model_only``: the model alone.  ``record_dir``: save the real run there
    (:func:`~memhp.bench.recording.recording_path`) for later replays.  ``tool``
    runs the memhp CLI on the model (the bench does not import the CLI).
    """
    t0 = time.monotonic()
    build = RealBuild() if model_only else real_build(sc, replay)
    sc = sc.with_build(build.layout, build.image_size)
    if sc.repeat > 1:
        return _diff_repeated(sc, model_only, log, replay, record_dir, tool, build)
    model = model_driver(sc, tool)
    if model_only or replay is not None:
        res = run_scenario(sc, model, None, log, replay=replay)
        if replay is not None:
            res.accel = f"replay of {replay.meta.get('accel', '?')}"
        res.seconds = round(time.monotonic() - t0, 2)
        return res
    try:
        with real_driver(sc.vm_config()) as real:
            vm = real.vm
            assert vm is not None and vm.boot is not None
            if log:
                log(f"  booted in {vm.boot.seconds:.1f}s ({vm.boot.accel})")
            rec = Recording(sc.label) if record_dir else None
            res = run_scenario(sc, model, real, log, record=rec)
            res.boot_seconds = round(vm.boot.seconds, 2)
            res.accel = vm.boot.accel
            if rec is not None and record_dir is not None:
                rec.meta = _meta(sc, real, build)
                rec.save(recording_path(sc, record_dir))
    except Exception as e:  # a guest that did not boot or hung: the scenario fails
        res = ScenarioResult(sc.label, sc.path, sc.description, False)
        res.error = f"{type(e).__name__}: {e}"
    res.seconds = round(time.monotonic() - t0, 2)
    return res


def seeded_model_driver(sc: Scenario, seed: int, tool: ToolRunner | None = None) -> ModelDriver:
    """The simulated machine of ``sc`` with its run-time kernel allocations seeded ``seed``."""
    spec = sc.machine
    return ModelDriver.for_machine(
        replace(spec, runtime_allocs=replace(spec.runtime_allocs, seed=seed)), tool
    )


def _diff_repeated(
    sc: Scenario,
    model_only: bool,
    log: Log | None,
    replay: Recording | None,
    record_dir: str | None,
    tool: ToolRunner | None,
    build: RealBuild,
) -> ScenarioResult:
    """``repeat = N``: the real side N times (one recording of N runs), the model over
    seeds 0..N-1; each model run follows the real run whose outcomes it shares, and a
    model outcome that no real run had is a difference.  The result is seed 0's, with
    the other seeds' differences added to their steps (marked ``seed K:``)."""
    t0 = time.monotonic()
    accel = f"replay of {replay.meta.get('accel', '?')}" if replay is not None else ""
    if not model_only and replay is None:
        merged: Recording | None = None
        for k in range(sc.repeat):
            try:
                with real_driver(sc.vm_config()) as real:
                    vm = real.vm
                    assert vm is not None and vm.boot is not None
                    if log:
                        log(f"  real run {k + 1}/{sc.repeat}: booted in {vm.boot.seconds:.1f}s")
                    rec = Recording(sc.label)
                    run_scenario(sc, model_driver(sc, tool), real, None, record=rec)
                    accel = vm.boot.accel
                    rec.meta = {**_meta(sc, real, build), "repeat": sc.repeat}
            except Exception as e:  # a guest that did not boot or hung: the scenario fails
                res = ScenarioResult(sc.label, sc.path, sc.description, False)
                res.error = f"{type(e).__name__}: {e}"
                res.seconds = round(time.monotonic() - t0, 2)
                return res
            if merged is None:
                merged = rec
            else:
                merged.more_runs.append(rec.steps)
        assert merged is not None
        if record_dir is not None:
            merged.save(recording_path(sc, record_dir))
        replay = merged
    res = ScenarioResult(sc.label, sc.path, sc.description, replay is None)
    for k in range(sc.repeat):
        rk = run_scenario(sc, seeded_model_driver(sc, k, tool), None, log if k == 0 else None,
                          replay=replay)  # fmt: skip
        if k == 0:
            res = rk
            continue
        by_name = {s.name: s for s in res.steps}
        for st in rk.steps:
            for d in st.differences:
                by_name[st.name].differences.append(replace(d, path=f"seed {k}: {d.path}"))
    res.accel = accel
    res.seconds = round(time.monotonic() - t0, 2)
    if log:
        log(f"  {sc.repeat} model seeds against {len(replay.runs()) if replay else 0} real runs")
    return res
