"""Bench scenarios: a machine, a kernel command line and a script of steps (TOML).

A scenario runs unchanged on a real Linux guest under QEMU and on the simulated
kernel (:mod:`memhp.bench.diff`)::

    description = "hot-add on a memory-less node, online every way, eject"
    machine = "machines/qemu-linux-6.1.toml"   # a machine file (relative to the
                                               # scenario, else to the repository),
                                               # or an inline [machine] table; with
                                               # base = "FILE" the table's keys
                                               # replace those of FILE
    [cmdline]                                  # the guest's kernel command line
    memhp_default_state = "offline"            # also the model's auto_online_blocks
    movable_node = false
    memmap_on_memory = false

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
    capture = "after-online"          # only a capture (the name names the step)

Every step may have ``name`` (default: its action and argument); names are unique.
Errors in a scenario file raise :class:`ScenarioError` naming the file, the step
and the key.
"""

from __future__ import annotations

import errno
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from memhp.abi.paths import SYS_MEMORY
from memhp.bench.vm import NodeConfig, VMConfig
from memhp.kernel.machine import ONLINE_TYPES, MachineError, MachineSpec, parse_machine, parse_size

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ActionKind = Literal[
    "hot_add", "device_del", "eject", "write", "read", "memhp", "lsmem", "wait", "capture"
]
ACTIONS: tuple[ActionKind, ...] = (
    "hot_add",
    "device_del",
    "eject",
    "write",
    "read",
    "memhp",
    "lsmem",
    "wait",
    "capture",
)
#: Actions after which both trees are captured unless the step says ``capture = false``.
CAPTURE_BY_DEFAULT = frozenset({"hot_add", "device_del", "eject", "write", "memhp", "capture"})
#: Keys each action accepts besides ``name`` and ``capture``.
_KEYS: dict[str, frozenset[str]] = {
    "hot_add": frozenset({"expect"}),
    "device_del": frozenset({"expect", "timeout"}),
    "eject": frozenset({"id", "expect", "timeout"}),
    "write": frozenset({"value", "expect"}),
    "read": frozenset({"expect"}),
    "memhp": frozenset({"expect_rc", "compare_output", "timeout"}),
    "lsmem": frozenset({"expect_rc", "compare_output", "same_as"}),
    "wait": frozenset(),
    "capture": frozenset(),
}
REMOVAL_OUTCOMES = ("removed", "kept")


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file, the step and the key."""


def errno_value(name: str) -> int:
    """``"EINVAL"`` → 22; ``"ok"`` → 0."""
    if name == "ok":
        return 0
    code = getattr(errno, name, None)
    if not isinstance(code, int) or not name.startswith("E"):
        raise KeyError(name)
    return code


def errno_label(code: int) -> str:
    """0 → ``"ok"``, 22 → ``"EINVAL"``."""
    return "ok" if code == 0 else errno.errorcode.get(code, str(code))


@dataclass(frozen=True)
class HotAdd:
    size: int
    node: int
    id: str
    addr: int | None = None
    slot: int | None = None


@dataclass(frozen=True)
class Step:
    """One step: an action, what it must give, whether to capture afterwards."""

    index: int
    name: str
    action: ActionKind
    capture: bool
    #: hot_add: the DIMM; device_del/eject: the DIMM id; write/read: the absolute path;
    #: memhp/lsmem: the argument list; wait: seconds or the DIMM id to wait for
    hot_add: HotAdd | None = None
    target: str = ""
    args: tuple[str, ...] = ()
    value: str = ""
    seconds: float = 0.0
    timeout: float = 60.0
    #: write: accepted errno names ("ok" for success); read: the value or errno names;
    #: device_del/eject: "removed"/"kept"; hot_add: "ok" or a failure
    expect: tuple[str, ...] = ()
    expect_rc: tuple[int, ...] = ()
    compare_output: bool = False
    same_as: str | None = None
    acpi_device: str = ""  # eject: the PNP0C80 device

    def describe(self) -> str:
        """One line saying what the step does."""
        a = self.action
        if a == "hot_add" and self.hot_add is not None:
            h = self.hot_add
            extra = "".join(
                f" {k}={v:#x}" if k == "addr" else f" {k}={v}"
                for k, v in (("addr", h.addr), ("slot", h.slot))
                if v is not None
            )
            return f"hot-add {h.id}: {_size(h.size)} on node {h.node}{extra}"
        if a == "device_del":
            return f"QMP device_del {self.target}"
        if a == "eject":
            return f"echo 1 > /sys/bus/acpi/devices/{self.acpi_device}/eject ({self.target})"
        if a == "write":
            return f"echo {self.value} > {self.target}"
        if a == "read":
            return f"cat {self.target}"
        if a == "memhp":
            return "memhp " + " ".join(self.args)
        if a == "lsmem":
            return "lsmem " + " ".join(self.args)
        if a == "wait":
            return (
                f"wait for the removal of {self.target}" if self.target else f"wait {self.seconds}s"
            )
        return "capture"


@dataclass(frozen=True)
class Cmdline:
    """The kernel command-line options a scenario sets (both sides)."""

    memhp_default_state: str = "offline"
    movable_node: bool = False
    memmap_on_memory: bool | None = None

    def words(self) -> list[str]:
        out = [f"memhp_default_state={self.memhp_default_state}"]
        if self.movable_node:
            out.append("movable_node")
        if self.memmap_on_memory is not None:
            out.append(f"memory_hotplug.memmap_on_memory={int(self.memmap_on_memory)}")
        return out


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

    @property
    def needs_guest_python(self) -> bool:
        """True when a step runs memhp or lsmem in the guest (the host's Python and /usr)."""
        return any(s.action in ("memhp", "lsmem") for s in self.steps)

    def vm_config(self) -> VMConfig:
        """The QEMU guest for this scenario's machine and command line."""
        return vm_config_for(self.machine, self.cmdline, host_python=self.needs_guest_python)


def vm_config_for(spec: MachineSpec, cmdline: Cmdline, host_python: bool = False) -> VMConfig:
    """Map a machine onto QEMU: per node its CPUs and boot memory, slots, maxmem.

    The machine's e820 map and hotplug windows must be what SeaBIOS and QEMU's SRAT
    give such a guest (see machines/qemu-linux-6.1.toml); they are not passed to QEMU.
    """
    ids = [n.id for n in spec.nodes]
    if ids != list(range(len(ids))):
        raise ScenarioError(f"machine {spec.name}: QEMU needs node ids 0..N-1, got {ids}")
    nodes = tuple(
        NodeConfig(cpus=len(n.cpus), mem=sum(e - s for s, e in n.memory)) for n in spec.nodes
    )
    return VMConfig(
        nodes=nodes,
        slots=spec.slots,
        maxmem=spec.maxmem,
        memhp_default_state=cmdline.memhp_default_state,
        movable_node=cmdline.movable_node,
        memmap_on_memory=cmdline.memmap_on_memory,
        host_python=host_python,
    )


def _size(n: int) -> str:
    for unit, shift in (("G", 30), ("M", 20)):
        if n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


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
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{where}: {path}: not valid TOML: {e}") from None


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


def _str(v: object, key: str) -> str:
    if not isinstance(v, str):
        raise ScenarioError(f"{key}: expected a string, got {v!r}")
    return v


def _int(v: object, key: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ScenarioError(f"{key}: expected an integer, got {v!r}")
    return v


def _float(v: object, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ScenarioError(f"{key}: expected a non-negative number, got {v!r}")
    return float(v)


def _strings(v: object, key: str) -> tuple[str, ...]:
    if isinstance(v, str):
        return (v,)
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        return tuple(v)
    raise ScenarioError(f"{key}: expected a string or a non-empty list of strings, got {v!r}")


def _errnos(v: object, key: str) -> tuple[str, ...]:
    names = _strings(v, key)
    for n in names:
        try:
            errno_value(n)
        except KeyError:
            raise ScenarioError(f"{key}: {n!r} is neither 'ok' nor an errno name") from None
    return names


def _sys_path(v: object, key: str) -> str:
    p = _str(v, key)
    if not p:
        raise ScenarioError(f"{key}: empty path")
    return p if p.startswith("/") else f"{SYS_MEMORY}/{p}"


def _default_name(action: str, step: Mapping[str, Any]) -> str:
    v = step[action]
    if action == "hot_add" and isinstance(v, Mapping):
        return f"hot_add-{v.get('id', '?')}-node{v.get('node', '?')}"
    if action in ("write", "read") and isinstance(v, str):
        tail = "/".join(v.rstrip("/").split("/")[-2:])
        val = step.get("value", "")
        return f"{action}-{tail}" + (f"={val}" if isinstance(val, str) and val else "")
    if action in ("memhp", "lsmem") and isinstance(v, list):
        return " ".join([action, *(str(x) for x in v)])
    if action == "wait":
        return f"wait-{v.get('removed', '?')}" if isinstance(v, Mapping) else f"wait-{v}s"
    return f"{action}-{v}"


def parse_step(raw: object, index: int, where: str) -> Step:
    """One ``[[step]]`` table."""
    key = f"{where}: step[{index}]"
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{key}: expected a table")
    actions = [a for a in ACTIONS if a in raw]
    if not actions:
        raise ScenarioError(f"{key}: no action (one of {', '.join(ACTIONS)})")
    if len(actions) > 1 and not (len(actions) == 2 and "capture" in actions):
        raise ScenarioError(f"{key}: several actions {actions}: one per step")
    action: ActionKind = (
        next(a for a in actions if a != "capture") if len(actions) == 2 else (actions[0])
    )
    name_raw = raw.get("name")
    name = _str(name_raw, f"{key}.name") if name_raw is not None else None
    if action == "capture" and isinstance(raw["capture"], str):
        name = name or raw["capture"]
    name = name or _default_name(action, raw)
    key = f"{where}: step[{index}] ({name})"
    allowed = _KEYS[action] | {"name", "capture", action}
    bad = sorted(set(raw) - allowed)
    if bad:
        raise ScenarioError(
            f"{key}.{bad[0]}: unknown key for a {action} step (known: {', '.join(sorted(allowed))})"
        )
    cap_raw = raw.get("capture", action in CAPTURE_BY_DEFAULT) if action != "capture" else True
    if not isinstance(cap_raw, bool):
        raise ScenarioError(f"{key}.capture: expected true or false, got {cap_raw!r}")
    v = raw[action]
    kw: dict[str, Any] = {}
    if action == "hot_add":
        if not isinstance(v, Mapping):
            raise ScenarioError(f"{key}.hot_add: expected a table {{size, node, id}}")
        badk = sorted(set(v) - {"size", "node", "id", "addr", "slot"})
        if badk:
            raise ScenarioError(f"{key}.hot_add.{badk[0]}: unknown key")
        for req in ("size", "node", "id"):
            if req not in v:
                raise ScenarioError(f"{key}.hot_add.{req}: missing")
        try:
            size = parse_size(v["size"], "size")
            addr = parse_size(v["addr"], "addr") if "addr" in v else None
        except MachineError as e:
            raise ScenarioError(f"{key}.hot_add.{e.key}: {e.problem}") from None
        slot = _int(v["slot"], f"{key}.hot_add.slot") if "slot" in v else None
        kw["hot_add"] = HotAdd(
            size, _int(v["node"], f"{key}.hot_add.node"), _str(v["id"], f"{key}.hot_add.id"),
            addr, slot,
        )  # fmt: skip
        kw["expect"] = _strings(raw.get("expect", "ok"), f"{key}.expect")
    elif action in ("device_del", "eject"):
        if action == "eject":
            kw["acpi_device"] = _str(v, f"{key}.eject")
            if "id" not in raw:
                raise ScenarioError(f"{key}.id: missing (the DIMM id whose removal to await)")
            kw["target"] = _str(raw["id"], f"{key}.id")
        else:
            kw["target"] = _str(v, f"{key}.device_del")
        exp = _strings(raw.get("expect", "removed"), f"{key}.expect")
        for outcome in exp:
            if outcome not in REMOVAL_OUTCOMES:
                raise ScenarioError(f"{key}.expect: {outcome!r} is not one of {REMOVAL_OUTCOMES}")
        kw["expect"] = exp
        if "timeout" in raw:
            kw["timeout"] = _float(raw["timeout"], f"{key}.timeout")
    elif action == "write":
        kw["target"] = _sys_path(v, f"{key}.write")
        if "value" not in raw:
            raise ScenarioError(f"{key}.value: missing")
        kw["value"] = _str(raw["value"], f"{key}.value")
        kw["expect"] = _errnos(raw.get("expect", "ok"), f"{key}.expect")
    elif action == "read":
        kw["target"] = _sys_path(v, f"{key}.read")
        if "expect" in raw:
            kw["expect"] = _strings(raw["expect"], f"{key}.expect")
    elif action in ("memhp", "lsmem"):
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ScenarioError(f"{key}.{action}: expected a list of arguments")
        if action == "memhp" and not v:
            raise ScenarioError(f"{key}.memhp: expected a memhp command")
        kw["args"] = tuple(v)
        if "expect_rc" in raw:
            rcs = raw["expect_rc"]
            rcl = rcs if isinstance(rcs, list) else [rcs]
            kw["expect_rc"] = tuple(_int(x, f"{key}.expect_rc") for x in rcl)
        co = raw.get("compare_output", True)
        if not isinstance(co, bool):
            raise ScenarioError(f"{key}.compare_output: expected true or false")
        kw["compare_output"] = co
        if "same_as" in raw:
            kw["same_as"] = _str(raw["same_as"], f"{key}.same_as")
        if "timeout" in raw:
            kw["timeout"] = _float(raw["timeout"], f"{key}.timeout")
    elif action == "wait":
        if isinstance(v, Mapping):
            badk = sorted(set(v) - {"removed", "timeout"})
            if badk or "removed" not in v:
                raise ScenarioError(
                    f"{key}.wait: expected seconds or {{removed = ID, timeout = S}}"
                )
            kw["target"] = _str(v["removed"], f"{key}.wait.removed")
            if "timeout" in v:
                kw["timeout"] = _float(v["timeout"], f"{key}.wait.timeout")
        else:
            kw["seconds"] = _float(v, f"{key}.wait")
    elif action == "capture" and not isinstance(v, str | bool):
        raise ScenarioError(f"{key}.capture: expected a step name or true")
    return Step(index=index, name=name, action=action, capture=cap_raw, **kw)


def parse_scenario(doc: Mapping[str, Any], path: str = "<scenario>") -> Scenario:
    """Validate a decoded scenario document."""
    where = os.path.basename(path)
    known = {"name", "description", "machine", "cmdline", "step", "tags"}
    bad = sorted(set(doc) - known)
    if bad:
        raise ScenarioError(f"{where}: {bad[0]}: unknown key (known: {', '.join(sorted(known))})")
    name = doc.get("name", os.path.splitext(where)[0])
    name = _str(name, f"{where}: name")
    desc = _str(doc.get("description", ""), f"{where}: description")
    if "machine" not in doc:
        raise ScenarioError(f"{where}: machine: missing (a machines/*.toml path or a table)")
    base_dir = os.path.dirname(os.path.abspath(path))
    mdoc = _machine_doc(doc["machine"], base_dir, where)
    cl = doc.get("cmdline", {})
    if not isinstance(cl, Mapping):
        raise ScenarioError(f"{where}: cmdline: expected a table")
    badc = sorted(set(cl) - {"memhp_default_state", "movable_node", "memmap_on_memory"})
    if badc:
        raise ScenarioError(f"{where}: cmdline.{badc[0]}: unknown kernel option")
    state = cl.get("memhp_default_state", mdoc.get("auto_online_blocks", "offline"))
    if state not in ONLINE_TYPES:
        raise ScenarioError(
            f"{where}: cmdline.memhp_default_state: expected one of {ONLINE_TYPES}, got {state!r}"
        )
    mov = cl.get("movable_node", mdoc.get("movable_node", False))
    mom = cl.get("memmap_on_memory", mdoc.get("memmap_on_memory"))
    for k, val in (("movable_node", mov), ("memmap_on_memory", mom)):
        if val is not None and not isinstance(val, bool):
            raise ScenarioError(f"{where}: cmdline.{k}: expected true or false, got {val!r}")
    cmdline = Cmdline(str(state), bool(mov), mom)
    # The command line is the machine's boot configuration on the model side.
    mdoc = {**mdoc, "auto_online_blocks": cmdline.memhp_default_state}
    mdoc["movable_node"] = cmdline.movable_node
    if cmdline.memmap_on_memory is not None:
        mdoc["memmap_on_memory"] = cmdline.memmap_on_memory
    try:
        spec = parse_machine(mdoc)
    except MachineError as e:
        raise ScenarioError(f"{where}: machine.{e.key}: {e.problem}") from None
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
        if st.same_as is not None and st.same_as not in names:
            raise ScenarioError(
                f"{where}: step[{i}] ({st.name}).same_as: no earlier step {st.same_as!r}"
            )
        names.add(st.name)
        steps.append(st)
    tags_raw = doc.get("tags", [])
    tags: tuple[str, ...] = ()
    if tags_raw:
        tags = _strings(tags_raw, f"{where}: tags")
    if any(st.action in ("memhp", "lsmem") for st in steps):
        # Python in the guest needs `-cpu max` (numpy), whose CPU has pdpe1gb: 1 GiB
        # pages in the direct map and a hugepages-1048576kB pool, as on the model side.
        spec = replace(spec, gbpages=True)
    return Scenario(name, path, desc, mdoc, spec, cmdline, tuple(steps), tags)


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
