"""The scenario format and the differ, without QEMU."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from memhp.abi.fs import Kind
from memhp.abi.tree import Entry
from memhp.bench.actions import ACTIONS, Action, HotAddAction, Read, Wait, Write, action, as_str
from memhp.bench.compare import ALLOWLIST, compare_trees, counters, normalise
from memhp.bench.drivers import CmdResult, Driver, SideResult
from memhp.bench.recording import RecordedStep, Recording, recording_path
from memhp.bench.report import report_json, report_markdown, summary_line
from memhp.bench.runner import (
    RealBuild,
    diff_scenario,
    model_driver,
    on_real_build,
    real_build,
    run_scenario,
)
from memhp.bench.scenario import (
    ScenarioError,
    load_scenario,
    parse_scenario,
    scenario_paths,
)
from memhp.cli.main import run_with_sysfs
from tests.conftest import ROOT

SCENARIOS = os.path.join(ROOT, "tests", "scenarios")
TREES = os.path.join(SCENARIOS, "trees")
RECORDINGS = os.path.join(ROOT, "tests", "data", "real", "scenarios")
ALL = scenario_paths([SCENARIOS])


def doc(**steps: object) -> dict[str, object]:
    return {"machine": "machines/qemu-linux-6.1.toml", "step": [steps]}


def test_at_least_twelve_scenarios_parse() -> None:
    assert len(ALL) >= 12
    for p in [*ALL, *scenario_paths([TREES])]:
        sc = load_scenario(p)
        assert sc.steps and sc.machine.slots


def test_machine_maps_onto_qemu() -> None:
    nodes = [
        {"id": 0, "cpus": [0, 1], "memory": [["0", "1G"]]},
        {"id": 1, "cpus": []},
        {"id": 2, "cpus": [], "hotplug": [["0x100000000", "0x3c0000000"]]},
    ]
    sc = parse_scenario(
        {"machine": {"base": "machines/qemu-linux-6.1.toml", "node": nodes},
         "step": [{"wait": 0}]},
        os.path.join(SCENARIOS, "x.toml"),
    )  # fmt: skip
    cfg = sc.vm_config()
    assert [(n.cpus, n.mem) for n in cfg.nodes] == [(2, 1 << 30), (0, 0), (0, 0)]
    assert cfg.slots == 4 and cfg.maxmem == 8 << 30
    assert cfg.cmdline() == "console=ttyS0 memhp_default_state=offline nokaslr"
    assert not cfg.host_python
    mov = load_scenario(os.path.join(SCENARIOS, "movable-node.toml"))
    assert mov.machine.movable_node and mov.machine.auto_online_blocks == "online"
    assert "movable_node" in mov.vm_config().cmdline()
    assert (
        load_scenario(os.path.join(SCENARIOS, "memhp-list-vs-lsmem.toml")).vm_config().host_python
    )


def test_step_defaults_and_shorthands() -> None:
    sc = parse_scenario(
        {
            "machine": "machines/qemu-linux-6.1.toml",
            "step": [
                {"hot_add": {"size": "512M", "node": 1, "id": "d1", "addr": "4G"}},
                {"write": "memory32/state", "value": "online", "expect": ["ok", "EBUSY"]},
                {"read": "memory32/state", "expect": "online"},
                {"read": "memory32/state"},
                {"wait": 0.1},
                {"capture": "after"},
            ],
        },
        "x.toml",
    )
    add, w, r, r2, wait, cap = sc.steps
    assert isinstance(add.action, HotAddAction) and add.action.dimm.addr == 1 << 32
    assert add.capture and add.kind == "hot_add"
    assert isinstance(w.action, Write)
    assert w.action.path == "/sys/devices/system/memory/memory32/state"
    assert w.action.expect == ("ok", "EBUSY") and w.capture
    assert isinstance(r.action, Read)
    assert not r.capture and r.action.expect == ("online",)
    assert r2.name != r.name  # default names are made unique
    assert isinstance(wait.action, Wait) and wait.action.seconds == 0.1
    assert cap.name == "after" and cap.capture


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"step": [{"write": "x", "value": "1"}]}, "x.toml: machine: missing"),
        ({"machine": "nope.toml", "step": [{"wait": 1}]}, "machine: no machine file"),
        (doc(write="memory1/state"), "step[0] (write-memory1/state).value: missing"),
        (doc(write="memory1/state", value="1", expect="EWHAT"), "neither 'ok' nor an errno"),
        (doc(hot_add={"size": "1G", "node": 1}), "step[0] (hot_add-?-node1).hot_add.id: missing"),
        (doc(hot_add={"size": "1Q", "node": 1, "id": "d"}), "hot_add.size"),
        (doc(read="x", frob=1), "frob: unknown key for a read step"),
        (doc(read="x", write="y"), "several actions"),
        (doc(name="n"), "no action"),
        (doc(device_del="d", expect="gone"), "is not one of ('removed', 'kept')"),
        (doc(eject="PNP0C80:00"), ".id: missing"),
        (doc(lsmem=[], same_as="zz"), "same_as: no earlier step 'zz'"),
        (doc(wait={"until": 1}), "wait: expected seconds"),
        (
            {"machine": "machines/qemu-linux-6.1.toml", "cmdline": {"quiet": True}, "step": []},
            "cmdline.quiet: unknown kernel option",
        ),
        (
            {
                "machine": {"base": "machines/qemu-linux-6.1.toml", "block_size": "3M"},
                "step": [{"wait": 1}],
            },
            "machine.block_size",
        ),
        (
            {
                "machine": "machines/qemu-linux-6.1.toml",
                "step": [{"name": "a", "wait": 1}, {"name": "a", "wait": 2}],
            },
            "duplicate step name 'a'",
        ),
    ],
)
def test_errors_name_the_step_and_key(bad: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(bad, "x.toml")
    assert message in str(e.value)


def test_a_machine_file_is_not_a_scenario() -> None:
    with pytest.raises(ScenarioError) as e:
        load_scenario(os.path.join(ROOT, "machines", "seed.toml"))
    assert "seed.toml: this is a machine file, not a scenario" in str(e.value)
    assert "unknown key" not in str(e.value)


def test_bad_toml(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("machine = \n")
    with pytest.raises(ScenarioError, match=r"bad\.toml: .*not valid TOML"):
        load_scenario(str(p))


F = Kind.FILE


def test_normalise_drops_other_subsystems_only() -> None:
    snap = {
        "/sys/devices/system/memory/memory0/state": Entry(F, "online\n"),
        "/sys/devices/system/memory/memory0/subsystem": Entry(Kind.LINK, target="x"),
        "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages": Entry(F, "0"),
        "/sys/devices/system/node/node0/cpu0": Entry(Kind.LINK, target="../../cpu/cpu0"),
        "/sys/devices/system/node/node0/cpulist": Entry(F, "0-1\n"),
        "/sys/bus/acpi/devices/PNP0C80:00": Entry(Kind.LINK, target="../../../devices/x"),
        "/sys/bus/acpi/devices/LNXCPU:00": Entry(Kind.LINK, target="../../../devices/y"),
        "/proc/meminfo": Entry(F, "MemTotal: 1 kB\n"),
        "/proc/zoneinfo": Entry(F, "..."),
    }
    # everything of the memory hotplug trees is compared (the model has compact,
    # hugepages, cpuN and subsystem links); other ACPI devices and /proc files are not
    assert sorted(normalise(snap)) == [
        "/proc/meminfo",
        "/sys/bus/acpi/devices/PNP0C80:00",
        "/sys/devices/system/memory/memory0/state",
        "/sys/devices/system/memory/memory0/subsystem",
        "/sys/devices/system/node/node0/cpu0",
        "/sys/devices/system/node/node0/cpulist",
        "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages",
    ]


def test_counters() -> None:
    assert counters("Node 1 MemTotal:  524288 kB\nNode 1 MemFree: 3 kB\n") == {
        "MemTotal": 524288,
        "MemFree": 3,
    }
    assert counters("nr_free_pages 12\nnuma_hit 3\n") == {"nr_free_pages": 12, "numa_hit": 3}


def test_compare_trees_kinds_and_allowlist() -> None:
    mi = "/sys/devices/system/node/node0/meminfo"
    vm = "/sys/devices/system/node/node0/vmstat"
    real0 = {mi: Entry(F, "Node 0 MemTotal: 1000 kB\nNode 0 MemFree: 5 kB\n"),
             vm: Entry(F, "nr_free_pages 5\n")}  # fmt: skip
    model0 = {mi: Entry(F, "Node 0 MemTotal: 1100 kB\nNode 0 MemFree: 9 kB\n"),
              vm: Entry(F, "nr_free_pages 7\n")}  # fmt: skip
    n, d = compare_trees("boot", real0, model0, None, None)
    assert n == 2 and d == []  # boot: absolute values are not compared
    real1 = {
        mi: Entry(F, "Node 0 MemTotal: 2000 kB\nNode 0 MemFree: 5 kB\n"),
        vm: Entry(F, "nr_free_pages 5\nnuma_hit 1\n"),
        "/a": Entry(F, "x\n"),
        "/b": Entry(Kind.LINK, target="t1"),
        "/c": Entry(F, read_errno=errno.EACCES, mode=0o200),
        "/r": Entry(F, "1\n"),
    }
    model1 = {
        mi: Entry(F, "Node 0 MemTotal: 2000 kB\nNode 0 MemFree: 5 kB\n"),
        vm: Entry(F, "nr_free_pages 5\n"),
        "/a": Entry(F, "y\n"),
        "/b": Entry(Kind.LINK, target="t2"),
        "/c": Entry(F, "0\n", mode=0o200),
        "/m": Entry(F, "1\n"),
    }
    _, d = compare_trees("s", real1, model1, real0, model0)
    kinds = {(x.kind, x.path) for x in d}
    assert kinds == {
        ("delta", f"{mi}:MemTotal"),  # real +1000, model +900
        ("keys", vm),
        ("value", "/a"),
        ("link", "/b"),
        ("errno", "/c"),
        ("missing", "/r"),
        ("extra", "/m"),
    }
    assert all(r.why for r in ALLOWLIST)


def test_model_only_run_and_reports() -> None:
    sc = load_scenario(os.path.join(SCENARIOS, "hotadd-memoryless-node.toml"))
    res = run_scenario(sc, model_driver(sc))
    assert res.ok, [d.line() for d in res.differences]
    # nothing is compared without a real side: the model's captures are counted apart
    assert res.model_only and res.files_compared == 0 and res.files_captured > 500
    steps = {s.name: s for s in res.steps}
    assert steps["hot_add-dimm1-node1"].model.events[0].startswith("ACPI_DEVICE_OST")
    md = report_markdown([res])
    assert "| hotadd-memoryless-node | model only | 9 | — | 0 |" in md and "## Allowlist" in md
    assert '"difference_count": 0' in report_json([res])
    line = summary_line(res)
    assert line.startswith("hotadd-memoryless-node: 9 steps, model only, no comparison")
    assert "files compared" not in line and "differences" not in line


def test_expectations_are_checked_on_the_model() -> None:
    sc = parse_scenario(
        doc(write="memory0/state", value="offline", expect="ok", capture=False), "x.toml"
    )
    res = run_scenario(sc, model_driver(sc))
    assert [(d.kind, d.path, d.model) for d in res.differences] == [("expect", "model", "EINVAL")]
    assert summary_line(res).endswith("model only, no comparison (1 failed expectations) "
                                      f"({res.seconds}s)")  # fmt: skip


def test_model_memhp_runs_in_process() -> None:
    sc = load_scenario(os.path.join(SCENARIOS, "memhp-remove-in-guest.toml"))
    res = run_scenario(sc, model_driver(sc, run_with_sysfs))
    assert res.ok, [d.line() for d in res.differences]
    remove = next(s for s in res.steps if s.name.startswith("memhp remove"))
    assert remove.model.outcome == "rc=0"
    assert any("DEVICE_DELETED" in e for e in remove.model.events)


#: The scenarios of tests/scenarios/trees: recorded for their real trees, and the model
#: matches those runs too (pc-dimm-6.1-movable-node since the SRAT's proximity domains
#: are numbered as acpi_numa_init() does).
TREES_CLEAN = sorted(n for n in os.listdir(TREES) if n.endswith(".toml"))
#: (scenario path, kernel) of every recorded real run: each scenario on each of its
#: kernels (NAME.json.gz for 6.1, NAME@6.12.json.gz for 6.12).
RECORDED = [
    (p, k)
    for p in [*ALL, *(os.path.join(TREES, n) for n in TREES_CLEAN)]
    for k in load_scenario(p).kernels
    if os.path.exists(recording_path(load_scenario(p).for_kernel(k), RECORDINGS))
]


@pytest.mark.parametrize(
    ("path", "kernel"), RECORDED, ids=[f"{os.path.basename(p)}@{k}" for p, k in RECORDED]
)
def test_model_against_recorded_real_runs(path: str, kernel: str) -> None:
    """The model against the real runs kept in tests/data/real/scenarios (no QEMU)."""
    sc = load_scenario(path).for_kernel(kernel)
    rec = Recording.load(recording_path(sc, RECORDINGS))
    sc = on_real_build(sc, rec)
    res = run_scenario(sc, model_driver(sc, run_with_sysfs), replay=rec)
    assert res.steps and all(s.real is not None for s in res.steps)
    from tests.bench.known_model_gaps import unexplained

    left = unexplained(res.differences)
    assert not left, "\n".join(d.line() for d in left)


def test_replay_models_the_recorded_build() -> None:
    """A recording names the sections of the build it ran (meta image_layout, read
    from the bzImage); the replay's model puts "Kernel code" ... there, and a
    recording without it is the profile's build."""
    sc = load_scenario(os.path.join(ROOT, "tests", "scenarios", "crash-hotplug.toml"))
    sc = sc.for_kernel("6.12")
    rec = Recording.load(recording_path(sc, RECORDINGS))
    assert rec.meta["kernel"] == "6.12.117+deb12-amd64"  # the profile's build
    del rec.meta["image_layout"], rec.meta["image_size"]
    assert real_build(sc, rec) == RealBuild()
    assert not diff_scenario(sc, replay=rec).differences
    # Debian's 6.12.118: rodata one page longer, data 0x40 bytes longer
    rec.meta["image_layout"] = [
        [0, 0x1000000], [0x1000000, 0x1B72000], [0x1C00000, 0x1E70FC0], [0x2736000, 0x2C00000]
    ]  # fmt: skip
    assert real_build(sc, rec).layout == tuple(map(tuple, rec.meta["image_layout"]))
    diffs = diff_scenario(sc, replay=rec).differences
    assert diffs and {d.path for d in diffs} == {"/proc/iomem"}
    m = model_driver(on_real_build(sc, rec)).m
    model = m.sysfs.read("/proc/iomem").decode()
    assert "01000000-01ffffff : Kernel code\n" in model
    assert "02000000-02b71fff : Kernel rodata\n" in model
    assert "02c00000-02e70fbf : Kernel data\n" in model


#: (scenario, kernel) pairs whose real run is not recorded yet (QEMU time ran out on a
#: loaded machine; record with `memhp bench diff FILE --kernel K --record
#: tests/data/real/scenarios` and remove the pair here).
NOT_YET_RECORDED: set[tuple[str, str]] = set()


def test_both_kernels_recorded() -> None:
    """Every differential scenario has a recorded real run on each of its kernels
    (but the listed ones not recorded yet)."""
    have = {(os.path.basename(p), k) for p, k in RECORDED}
    want = {(os.path.basename(p), k) for p in ALL for k in load_scenario(p).kernels}
    assert want - have == NOT_YET_RECORDED


def test_scenario_kernels() -> None:
    """``kernels`` limits a scenario; the machine's profile follows the kernel."""
    doc = {"machine": "machines/qemu-linux-6.1.toml", "kernels": ["6.12"], "step": [{"wait": 0}]}
    sc = parse_scenario(doc, os.path.join(SCENARIOS, "x.toml"))
    assert (sc.kernel, sc.label, sc.machine.profile.name) == ("6.12", "x@6.12", "linux-6.12")
    assert recording_path(sc, "d") == os.path.join("d", "x@6.12.json.gz")
    both = parse_scenario({**doc, "kernels": ["6.1", "6.12"]}, "y.toml")
    assert (both.kernel, both.machine.profile.name) == ("6.1", "linux-6.1")
    assert both.for_kernel("6.12").machine.profile.name == "linux-6.12"
    assert both.for_kernel("6.12").vm_config().kernel == "6.12"
    # the bench guest's kernel image and percpu chunk follow the kernel
    img = {k: both.for_kernel(k).machine.kernel_image_size >> 10 for k in ("6.1", "6.12")}
    assert img == {"6.1": 45272, "6.12": 38228}
    pcpu = {k: both.for_kernel(k).machine.percpu_per_cpu >> 10 for k in ("6.1", "6.12")}
    assert pcpu == {"6.1": 248, "6.12": 264}
    assert sc.machine.kernel_image_size >> 10 == 38228
    assert sc.machine.percpu_per_cpu >> 10 == 264
    base = {"base": "machines/qemu-linux-6.1.toml", "kernel": {"image_size": "32M"}}
    other = parse_scenario({**doc, "kernels": ["6.1", "6.12"], "machine": base}, "o.toml")
    assert other.for_kernel("6.12").machine.kernel_image_size == 32 << 20  # (not the guest's)
    with pytest.raises(ScenarioError, match="kernels: expected bench kernels"):
        parse_scenario({**doc, "kernels": ["5.15"]}, "z.toml")
    with pytest.raises(ScenarioError, match=r"profile linux-6\.1 takes true or false"):
        parse_scenario({**doc, "kernels": ["6.1"], "cmdline": {"memmap_on_memory": "force"}}, "f")


def test_a_new_action_is_one_class() -> None:
    """An action defined and registered in one class is parsed, run and compared."""

    @action
    @dataclass(frozen=True)
    class ReadTwice(Action):
        key: ClassVar[str] = "read_twice"
        capture_by_default: ClassVar[bool] = False
        path: str

        @classmethod
        def parse(cls, value: object, step: Any, key: str) -> Action:
            return cls("/sys/devices/system/memory/" + as_str(value, f"{key}.read_twice"))

        def describe(self) -> str:
            return f"cat {self.path} twice"

        def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
            a, b = d.read(self.path), d.read(self.path)
            return ("same" if a == b else "changed"), "", None

    try:
        sc = parse_scenario(doc(read_twice="memory0/state"), "x.toml")
        (st,) = sc.steps
        assert st.name == "read_twice-memory0/state" and not st.capture
        res = run_scenario(sc, model_driver(sc))
        assert res.ok and res.steps[1].model.outcome == "same"
        assert res.steps[1].description == "cat /sys/devices/system/memory/memory0/state twice"
        with pytest.raises(ScenarioError, match="unknown key for a read_twice step"):
            parse_scenario(doc(read_twice="x", value="1"), "x.toml")
    finally:
        del ACTIONS["read_twice"]


def test_transparent_hugepage_on_both_sides() -> None:
    """``transparent_hugepage`` in [cmdline] (or in the machine) goes on the guest's
    command line and into the model, whose min watermarks then follow the square-root
    rule alone; a bad value names the key."""
    doc = {"machine": "machines/qemu-linux-6.1.toml", "step": [{"wait": 0}]}
    never = parse_scenario({**doc, "cmdline": {"transparent_hugepage": "never"}}, "t.toml")
    assert "transparent_hugepage=never" in never.cmdline.words()
    assert never.machine.transparent_hugepage == "never"
    default = parse_scenario(doc, "d.toml")
    assert not any(w.startswith("transparent_hugepage") for w in default.cmdline.words())
    mins = []
    for sc in (default, never):
        pa = model_driver(sc).m.kernel.pa
        pa.ensure_watermarks()
        mins.append(pa.wmarks.min_free_kbytes)
    assert mins[0] == 45056 > mins[1]  # khugepaged's floor: 11 pageblocks x 2 zones
    with pytest.raises(ScenarioError, match=r"cmdline\.transparent_hugepage: expected one of"):
        parse_scenario({**doc, "cmdline": {"transparent_hugepage": "yes"}}, "b.toml")


def test_model_clock_follows_the_real_steps() -> None:
    """The kernel's clock runs while the guest works: replayed, the model's simulated
    clock moves on by each real step's seconds beyond what the model's own step let
    pass (a wait), so its run-time kernel allocations cover the same time; run alone,
    the model keeps its own time."""
    path = os.path.join(SCENARIOS, "random-online-offline.toml")
    sc = load_scenario(path)
    rec = Recording.load(recording_path(sc, RECORDINGS))
    d = model_driver(sc, run_with_sysfs)
    clocks: list[float] = []
    res = run_scenario(sc, d, replay=rec, on_step=lambda _sr: clocks.append(d.m.kernel.clock))
    real = [s.real.seconds for s in res.steps if s.real is not None]
    assert real[0] == 0.0 and min(real[1:]) > 0  # (boot, then each step took some time)
    assert clocks == sorted(clocks) and clocks[-1] == pytest.approx(sum(real), abs=1e-9)
    alone = model_driver(sc, run_with_sysfs)
    run_scenario(sc, alone)
    assert alone.m.kernel.clock == 0.0
    steps = [{"wait": 2, "name": "w2"}, {"wait": 0, "name": "w0"}]
    wait = parse_scenario(
        {"machine": "machines/qemu-linux-6.1.toml", "cmdline": {"memhp_default_state": "offline"},
         "step": steps},
        os.path.join(SCENARIOS, "w.toml"),
    )  # fmt: skip
    fake = Recording(wait.label)
    fake.steps["boot"] = rec.steps["boot"]  # (the same machine booted)
    for name, secs in (("w2", 2.25), ("w0", 0.5)):
        fake.steps[name] = RecordedStep(SideResult("ok", seconds=secs))
    w = model_driver(wait, run_with_sysfs)
    run_scenario(wait, w, replay=fake)
    assert w.m.kernel.clock == pytest.approx(2.75)  # 2 s waited + 0.25 + 0.5 beyond
