"""Bench scenarios: a machine, a kernel command line and a script of steps (TOML).

A scenario runs unchanged on a real Linux guest under QEMU and on the simulated
kernel (:mod:`memhp.bench.runner`)::

    description = "hot-add on a memory-less node, online every way, eject"
    kernels = ["6.1", "6.12"]                  # the bench kernels it runs on (default:
                                               # all); the machine's profile picks the
                                               # default one, --kernel another
    repeat = 4                                 # runs: the real side N times (the set
                                               # of its outcomes per step), the model
                                               # over seeds 0..N-1 of its run-time
                                               # kernel allocations; each model outcome
                                               # must be one of the real ones (default 1)
    machine = "machines/qemu-linux-6.1.toml"   # a machine file (relative to the
                                               # scenario, else to the repository),
                                               # or an inline [machine] table; with
                                               # base = "FILE" the table's keys
                                               # replace those of FILE
    [cmdline]                                  # the guest's kernel command line
    memhp_default_state = "offline"            # also the model's auto_online_blocks;
                                               # "default": not on the command line
                                               # (the kernel's build-time default)
    movable_node = false
    memmap_on_memory = false                   # or "force" (6.12)
    online_policy = "auto-movable"             # memory_hotplug.online_policy= (also
    auto_movable_ratio = 301                   # ratio, numa_aware): model and guest
    auto_movable_numa_aware = true
    nokaslr = true                             # default; the kernel image at 16M as in the model
    transparent_hugepage = "never"             # also the model's (default: not given, always)
    swiotlb = 16384                            # swiotlb=<2K slabs> (the model's kernel.swiotlb)

    [[step]]
    hot_add = { size = "512M", node = 1, id = "dimm1" }   # + addr, slot

    [[step]]
    write = "memory32/state"          # relative: under /sys/devices/system/memory
    value = "online_movable"
    expect = "ok"                     # or an errno name, or a list of accepted outcomes
    capture = false                   # no tree capture after this step

    [[step]]
    read = "memory32/valid_zones"
    expect = "Movable"                # the value without its final newline, or an errno

    [[step]]
    device_del = "dimm1"              # QMP device_del: the guest is asked to eject
    expect = "removed"                # or "kept" (the guest refused: _OST failure)

    [[step]]
    eject = "PNP0C80:00"              # echo 1 > /sys/bus/acpi/devices/PNP0C80:00/eject
    id = "dimm1"                      # the DIMM whose removal to wait for
    expect = "removed"

    [[step]]
    memhp = ["remove", "PNP0C80:00"]  # the memhp CLI, in the guest and on the model
    expect_rc = 0
    compare_output = true             # stdout must be the same on both sides

    [[step]]
    lsmem = []                        # util-linux lsmem (guest; host lsmem --sysroot)
    same_as = "list"                  # stdout equals that earlier step's, on each side

    [[step]]
    wait = 0.5                        # seconds; or wait = { removed = "dimm1", timeout = 60 }

    [[step]]
    task = { name = "t0", movable = "300M", unmovable = "64M", node = 0 }
                                      # a process holding anonymous memory and unmovable
                                      # kernel memory (guest: pipe buffers) until
    [[step]]                          # end_task (memhp study --export-scenarios)
    end_task = "t0"

    [[step]]
    capture = "after-online"          # only a capture (the name names the step)

    [[step]]                          # virtio-mem (the machine's [[virtio_mem]] devices
    virtio_mem_resize = { id = "vm0", size = "512M" }   # are on QEMU's command line)
    settle = 4                        # qom-set requested-size, then wait until size is
    timeout = 180                     # reached or still for `settle` s; outcome the size
    expect = "512M"                   # reached (or "error: QEMU's message"); the QMP
                                      # replies compared; size = ["1G", "256M"] with
                                      # gap = 0.5: qom-sets 0.5 s apart, then the wait

    [[step]]
    virtio_mem_add = { id = "vm1", size = "1G", node = 1, requested_size = "256M" }
                                      # + block_size: object-add + device_add (hotplug)

    [[step]]
    qmp = "qom-get"                   # any QMP command: outcome "ok" (the reply compared)
    arguments = { path = "vm0", property = "size" }   # or "error: Class: message"

Every step may have ``name`` (default: its action and argument); names are unique.
Errors in a scenario file raise :class:`ScenarioError` naming the file, the step
and the key.  The actions are classes in :mod:`memhp.bench.actions` (one class per
action, registered by its key); this module parses the file around them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import memhp.bench.actions_virtio  # noqa: F401  (registers the virtio-mem and QMP actions)
from memhp.bench.actions import ACTIONS, Action, ScenarioError, as_str, as_strings
from memhp.bench.drivers import HotAdd, errno_label, errno_value
from memhp.bench.initramfs import BENCH_IMAGE_SIZES, BENCH_KERNELS, BENCH_PERCPU, DEFAULT_KERNEL
from memhp.bench.scenario_vm import vm_config_for
from memhp.bench.vm import VMConfig
from memhp.kernel.machine import (
    ONLINE_TYPES,
    MachineError,
    MachineSpec,
    parse_machine,
    parse_size,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: Where the bundled scenarios live (the differential set; trees/: recorded for their trees).
SCENARIO_DIR = os.path.join(REPO_ROOT, "tests", "scenarios")
#: Top-level keys of a scenario file.
SCENARIO_KEYS = frozenset(
    {"name", "description", "machine", "cmdline", "step", "tags", "kernels", "repeat"}
)
#: Most runs a ``repeat`` scenario may ask for (each real run boots a guest).
MAX_REPEAT = 16
#: Keys only a machine file has: such a file given as a scenario is named as such.
MACHINE_KEYS = frozenset(
    {"e820", "node", "hotplug", "kernel", "profile", "block_size", "auto_online_blocks"}
)


#: Keys of a scenario's [cmdline] table (kernel options, both sides).
CMDLINE_KEYS = frozenset(
    {
        "memhp_default_state",
        "movable_node",
        "memmap_on_memory",
        "online_policy",
        "auto_movable_ratio",
        "auto_movable_numa_aware",
        "nokaslr",
        "swiotlb",
        "transparent_hugepage",
    }
)


@dataclass(frozen=True)
class Step:
    """One step: a name, an action, whether to capture both trees afterwards."""

    index: int
    name: str
    action: Action
    capture: bool

    @property
    def kind(self) -> str:
        """The action's key (``"hot_add"``, ``"write"``...)."""
        return self.action.key

    def describe(self) -> str:
        """One line saying what the step does."""
        return self.action.describe()


@dataclass(frozen=True)
class Cmdline:
    """The kernel command-line options a scenario sets (both sides)."""

    memhp_default_state: str = "offline"  # or "default": not on the command line
    movable_node: bool = False
    memmap_on_memory: bool | str | None = None  # or "force"
    #: memory_hotplug.online_policy=, auto_movable_ratio=, auto_movable_numa_aware=
    online_policy: str | None = None
    auto_movable_ratio: int | None = None
    auto_movable_numa_aware: bool | None = None
    #: nokaslr: the kernel image at 16M (CONFIG_PHYSICAL_START), as the model has it.
    nokaslr: bool = True
    #: swiotlb=<nslabs>: the bounce buffer in 2K slabs (ALIGN(nslabs, 128)).
    swiotlb: int | None = None
    #: transparent_hugepage=: None leaves the build's default (Debian: always).
    transparent_hugepage: str | None = None

    def extra_words(self) -> list[str]:
        """The options beyond those VMConfig has fields for."""
        out = []
        if self.online_policy is not None:
            out.append(f"memory_hotplug.online_policy={self.online_policy}")
        if self.auto_movable_ratio is not None:
            out.append(f"memory_hotplug.auto_movable_ratio={self.auto_movable_ratio}")
        if self.auto_movable_numa_aware is not None:
            out.append(
                f"memory_hotplug.auto_movable_numa_aware={'YN'[not self.auto_movable_numa_aware]}"
            )
        if self.nokaslr:
            out.append("nokaslr")
        if self.swiotlb is not None:
            out.append(f"swiotlb={self.swiotlb}")
        if self.transparent_hugepage is not None:
            out.append(f"transparent_hugepage={self.transparent_hugepage}")
        return out

    def words(self) -> list[str]:
        out = []
        if self.memhp_default_state != "default":
            out.append(f"memhp_default_state={self.memhp_default_state}")
        if self.movable_node:
            out.append("movable_node")
        if self.memmap_on_memory is not None:
            out.append(f"memory_hotplug.memmap_on_memory={mom_word(self.memmap_on_memory)}")
        return out + self.extra_words()


def mom_word(value: bool | str) -> str:
    """memory_hotplug.memmap_on_memory's value on the command line: 1, 0 or force."""
    return value if isinstance(value, str) else str(int(value))


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario file."""

    name: str
    path: str
    description: str
    machine_doc: Mapping[str, Any]
    machine: MachineSpec
    cmdline: Cmdline
    steps: tuple[Step, ...]
    tags: tuple[str, ...] = field(default=())
    #: The bench kernels (keys of BENCH_KERNELS) the scenario is meant for.
    kernels: tuple[str, ...] = tuple(BENCH_KERNELS)
    #: The kernel this instance runs on (QEMU) and models (the machine's profile).
    kernel: str = DEFAULT_KERNEL
    #: ``repeat = N``: real runs, and model seeds, to compare as sets of outcomes.
    repeat: int = 1

    @property
    def label(self) -> str:
        """The name, with ``@VERSION`` for a kernel other than the default one."""
        return self.name if self.kernel == DEFAULT_KERNEL else f"{self.name}@{self.kernel}"

    def for_kernel(self, version: str) -> Scenario:
        """This scenario on bench kernel ``version``: the machine gets its profile."""
        if version not in BENCH_KERNELS:
            raise ScenarioError(
                f"{self.name}: unknown kernel {version!r} (known: {', '.join(BENCH_KERNELS)})"
            )
        if version == self.kernel:
            return self
        try:
            spec = parse_machine(_on_kernel(self.machine_doc, self.kernel, version))
        except MachineError as e:
            raise ScenarioError(f"{self.name}: machine.{e.key}: {e.problem}") from None
        if self.needs_guest_python:
            spec = replace(spec, gbpages=True, la57=True)
        return replace(self, machine=spec, kernel=version)

    def with_build(
        self, layout: tuple[tuple[int, int], ...] | None, image_size: int | None
    ) -> Scenario:
        """This scenario on the kernel build its real side boots: the build's sections
        and, when the machine keeps the bench guest's image (BENCH_IMAGE_SIZES), what
        stays of that build's image (None: leave either as it is)."""
        spec = self.machine
        if layout is not None:
            spec = replace(spec, kernel_image_layout=layout)
        bench_image = parse_size(BENCH_IMAGE_SIZES[self.kernel], "kernel.image_size")
        if image_size is not None and spec.kernel_image_size == bench_image:
            spec = replace(spec, kernel_image_size=image_size)
        return self if spec == self.machine else replace(self, machine=spec)

    @property
    def needs_guest_python(self) -> bool:
        """True when a step runs memhp or lsmem in the guest (the host's Python and /usr)."""
        return any(s.action.guest_python for s in self.steps)

    def vm_config(self) -> VMConfig:
        """The QEMU guest for this scenario's machine and command line."""
        cfg = vm_config_for(
            self.machine, self.cmdline, host_python=self.needs_guest_python, kernel=self.kernel
        )
        if any(s.action.needs_virtio_mem for s in self.steps):
            cfg = replace(cfg, virtio_mem_driver=True)
        return cfg


# --- parsing -----------------------------------------------------------------------


def _resolve(ref: str, base_dir: str) -> str:
    for cand in (os.path.join(base_dir, ref), os.path.join(REPO_ROOT, ref)):
        if os.path.exists(cand):
            return cand
    raise FileNotFoundError(ref)


def _load_toml(path: str, where: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ScenarioError(f"{where}: no such file {path}") from None
    except IsADirectoryError:
        raise ScenarioError(f"{where}: {path} is a directory") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{where}: {path}: not valid TOML: {e}") from None


def _on_kernel(mdoc: Mapping[str, Any], kernel: str, version: str) -> dict[str, Any]:
    """A machine of bench kernel ``kernel`` on bench kernel ``version``: its profile,
    and that kernel's image and percpu chunk when the machine had the other's
    (BENCH_IMAGE_SIZES, BENCH_PERCPU; an absent percpu_per_cpu is the default, 6.1's)."""
    doc = {**mdoc, "profile": BENCH_KERNELS[version]}
    kern = dict(doc.get("kernel") or {})
    if str(kern.get("image_size", "")) == BENCH_IMAGE_SIZES[kernel]:
        kern["image_size"] = BENCH_IMAGE_SIZES[version]
        if str(kern.get("percpu_per_cpu", BENCH_PERCPU["6.1"])) == BENCH_PERCPU[kernel]:
            kern["percpu_per_cpu"] = BENCH_PERCPU[version]
        doc["kernel"] = kern
    return doc


def _machine_doc(raw: object, base_dir: str, where: str) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            path = _resolve(raw, base_dir)
        except FileNotFoundError:
            raise ScenarioError(f"{where}.machine: no machine file {raw!r}") from None
        return _load_toml(path, f"{where}.machine")
    if isinstance(raw, Mapping):
        doc = dict(raw)
        base = doc.pop("base", None)
        if base is None:
            return doc
        if not isinstance(base, str):
            raise ScenarioError(f"{where}.machine.base: expected a machine file path")
        try:
            path = _resolve(base, base_dir)
        except FileNotFoundError:
            raise ScenarioError(f"{where}.machine.base: no machine file {base!r}") from None
        merged = _load_toml(path, f"{where}.machine.base")
        merged.update(doc)
        return merged
    raise ScenarioError(f"{where}.machine: expected a machine file path or a table")


def parse_step(raw: object, index: int, where: str) -> Step:
    """One ``[[step]]`` table: find its action in :data:`ACTIONS`, let the class parse it."""
    key = f"{where}: step[{index}]"
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{key}: expected a table")
    found = [a for a in ACTIONS if a in raw]
    if not found:
        raise ScenarioError(f"{key}: no action (one of {', '.join(ACTIONS)})")
    # ``capture`` is an action (a capture step) and also a key of every other step
    others = [a for a in found if a != "capture"]
    if len(others) > 1:
        raise ScenarioError(f"{key}: several actions {found}: one per step")
    kind = others[0] if others else "capture"
    cls = ACTIONS[kind]
    name_raw = raw.get("name")
    name = as_str(name_raw, f"{key}.name") if name_raw is not None else None
    name = name or cls.default_name(raw[kind], raw)
    key = f"{where}: step[{index}] ({name})"
    allowed = cls.options | {"name", "capture", kind}
    bad = sorted(set(raw) - allowed)
    if bad:
        raise ScenarioError(
            f"{key}.{bad[0]}: unknown key for a {kind} step (known: {', '.join(sorted(allowed))})"
        )
    capture = raw.get("capture", cls.capture_by_default) if kind != "capture" else True
    if not isinstance(capture, bool):
        raise ScenarioError(f"{key}.capture: expected true or false, got {capture!r}")
    return Step(index, name, cls.parse(raw[kind], raw, key), capture)


def _not_a_scenario(doc: Mapping[str, Any], where: str) -> None:
    """A machine file (or another TOML file) given where a scenario is expected."""
    if "step" not in doc and MACHINE_KEYS & set(doc):
        raise ScenarioError(
            f"{where}: this is a machine file, not a scenario (a scenario names it with "
            f'machine = "..." and adds [[step]] tables; see memhp/bench/scenario.py '
            f"and the scenarios in {os.path.relpath(SCENARIO_DIR, REPO_ROOT)}/)"
        )


def parse_scenario(doc: Mapping[str, Any], path: str = "<scenario>") -> Scenario:
    """Validate a decoded scenario document."""
    where = os.path.basename(path)
    _not_a_scenario(doc, where)
    bad = sorted(set(doc) - SCENARIO_KEYS)
    if bad:
        raise ScenarioError(
            f"{where}: {bad[0]}: unknown key (known: {', '.join(sorted(SCENARIO_KEYS))})"
        )
    name = as_str(doc.get("name", os.path.splitext(where)[0]), f"{where}: name")
    desc = as_str(doc.get("description", ""), f"{where}: description")
    if "machine" not in doc:
        raise ScenarioError(f"{where}: machine: missing (a machines/*.toml path or a table)")
    base_dir = os.path.dirname(os.path.abspath(path))
    mdoc = _machine_doc(doc["machine"], base_dir, where)
    cl = doc.get("cmdline", {})
    if not isinstance(cl, Mapping):
        raise ScenarioError(f"{where}: cmdline: expected a table")
    badc = sorted(set(cl) - CMDLINE_KEYS)
    if badc:
        raise ScenarioError(f"{where}: cmdline.{badc[0]}: unknown kernel option")
    state = cl.get("memhp_default_state", mdoc.get("auto_online_blocks", "default"))
    if state not in (*ONLINE_TYPES, "default"):
        raise ScenarioError(
            f"{where}: cmdline.memhp_default_state: expected one of {ONLINE_TYPES} "
            f"or 'default', got {state!r}"
        )
    mov = cl.get("movable_node", mdoc.get("movable_node", False))
    mom = cl.get("memmap_on_memory", mdoc.get("memmap_on_memory"))
    if not isinstance(mov, bool):
        raise ScenarioError(f"{where}: cmdline.movable_node: expected true or false, got {mov!r}")
    if mom is not None and not isinstance(mom, bool) and mom != "force":
        raise ScenarioError(
            f"{where}: cmdline.memmap_on_memory: expected true, false or 'force', got {mom!r}"
        )
    nokaslr = cl.get("nokaslr", True)
    if not isinstance(nokaslr, bool):
        raise ScenarioError(f"{where}: cmdline.nokaslr: expected true or false, got {nokaslr!r}")
    policy = cl.get("online_policy")
    ratio = cl.get("auto_movable_ratio")
    aware = cl.get("auto_movable_numa_aware")
    slabs = cl.get("swiotlb")
    if slabs is not None and (not isinstance(slabs, int) or isinstance(slabs, bool) or slabs < 1):
        raise ScenarioError(
            f"{where}: cmdline.swiotlb: expected a number of 2K slabs, got {slabs!r}"
        )
    thp = cl.get("transparent_hugepage", mdoc.get("transparent_hugepage"))
    cmdline = Cmdline(
        str(state),
        bool(mov),
        mom,
        policy,
        ratio,
        aware,
        nokaslr,
        slabs,
        None if thp is None else str(thp),
    )
    if thp is not None:  # checked by parse_machine
        mdoc = {**mdoc, "transparent_hugepage": thp}
    # The command line is the machine's boot configuration on the model side.
    mdoc = {**mdoc, "auto_online_blocks": cmdline.memhp_default_state}
    mdoc["movable_node"] = cmdline.movable_node
    if cmdline.memmap_on_memory is not None:
        mdoc["memmap_on_memory"] = cmdline.memmap_on_memory
    if slabs is not None:  # setup_io_tlb_npages(): ALIGN(nslabs, IO_TLB_SEGSIZE) << 11
        mdoc["kernel"] = {**mdoc.get("kernel", {}), "swiotlb": -(-slabs // 128) * 128 * 2048}
    for key in ("online_policy", "auto_movable_ratio", "auto_movable_numa_aware"):
        if key in cl:
            mdoc[key] = cl[key]  # checked by parse_machine, errors name cmdline.KEY
    kernels = tuple(BENCH_KERNELS)
    if "kernels" in doc:
        kernels = as_strings(doc["kernels"], f"{where}: kernels")
        unknown = [k for k in kernels if k not in BENCH_KERNELS]
        if unknown or not kernels:
            raise ScenarioError(
                f"{where}: kernels: expected bench kernels among {', '.join(BENCH_KERNELS)}, "
                f"got {list(kernels)!r}"
            )
    # The machine's profile names the scenario's kernel, unless the scenario is not
    # for that kernel: then it runs on (and models) the first one it is for.
    kernel = next((v for v, p in BENCH_KERNELS.items() if p == mdoc.get("profile")), DEFAULT_KERNEL)
    if kernel not in kernels:
        mdoc = _on_kernel(mdoc, kernel, kernels[0])
        kernel = kernels[0]
    try:
        spec = parse_machine(mdoc)
    except MachineError as e:
        side = "cmdline" if e.key in cl else "machine"
        raise ScenarioError(f"{where}: {side}.{e.key}: {e.problem}") from None
    raw_steps = doc.get("step", [])
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError(f"{where}: step: at least one [[step]] is required")
    steps: list[Step] = []
    names: set[str] = set()
    for i, rs in enumerate(raw_steps):
        st = parse_step(rs, i, where)
        if st.name in names and isinstance(rs, Mapping) and "name" not in rs:
            st = replace(st, name=f"{st.name}#{i}")  # default names are made unique
        if st.name in names:
            raise ScenarioError(f"{where}: step[{i}].name: duplicate step name {st.name!r}")
        same_as = getattr(st.action, "same_as", None)
        if same_as is not None and same_as not in names:
            raise ScenarioError(
                f"{where}: step[{i}] ({st.name}).same_as: no earlier step {same_as!r}"
            )
        names.add(st.name)
        steps.append(st)
    tags_raw = doc.get("tags", [])
    tags: tuple[str, ...] = ()
    if tags_raw:
        tags = as_strings(tags_raw, f"{where}: tags")
    if any(st.action.guest_python for st in steps):
        # Python in the guest needs `-cpu max` (numpy), whose CPU has pdpe1gb: 1 GiB
        # pages in the direct map and a hugepages-1048576kB pool, as on the model side;
        # and LA57: Debian's kernels run 5-level paging there.
        spec = replace(spec, gbpages=True, la57=True)
    repeat = doc.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
        raise ScenarioError(
            f"{where}: repeat: expected a number of runs 1..{MAX_REPEAT}, got {repeat!r}"
        )
    return Scenario(
        name, path, desc, mdoc, spec, cmdline, tuple(steps), tags, kernels, kernel, repeat
    )


def load_scenario(path: str) -> Scenario:
    """Read and validate a scenario file."""
    doc = _load_toml(path, os.path.basename(path))
    return parse_scenario(doc, path)


def scenario_paths(args: Sequence[str]) -> list[str]:
    """Scenario files named by ``args`` (files, or directories of ``*.toml``)."""
    out: list[str] = []
    for a in args:
        if os.path.isdir(a):
            out += sorted(os.path.join(a, n) for n in os.listdir(a) if n.endswith(".toml"))
        else:
            out.append(a)
    return out


__all__ = [
    "HotAdd",
    "Scenario",
    "ScenarioError",
    "Step",
    "errno_label",
    "errno_value",
    "load_scenario",
    "parse_scenario",
]
