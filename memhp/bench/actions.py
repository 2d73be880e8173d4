"""Scenario step actions: one class per action, registered by its TOML key.

A ``[[step]]`` table has exactly one action key (``hot_add = {...}``, ``write = "..."``,
...).  Each action class says, in one place, everything about that action:

* ``key``: the TOML key naming the action; ``options``: the other keys it accepts
  (``name`` and ``capture`` are always accepted);
* ``capture_by_default``: whether both trees are captured after the step;
* :meth:`Action.parse`: validate the TOML into an instance (errors raise
  :class:`ScenarioError` with the key given);
* :meth:`Action.default_name`, :meth:`Action.describe`: names and one-line text;
* :meth:`Action.run`: do it on one side through a :class:`~memhp.bench.drivers.Driver`,
  giving an outcome string (compared between the sides) and details;
* :meth:`Action.check`: the step's own expectations on one side (default: the
  outcome is one of ``expect``); :meth:`Action.compare`: extra real-vs-model checks.

Adding an action is adding one class here with the :func:`action` decorator; see
docs/contributing/bench.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from memhp.abi.paths import SYS_MEMORY
from memhp.bench.compare import Difference, short
from memhp.bench.drivers import ACPI_DEVICES, CmdResult, Driver, HotAdd, errno_label, errno_value
from memhp.kernel.machine import MachineError, parse_size

REMOVAL_OUTCOMES = ("removed", "kept")


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file, the step and the key."""


# --- value checks shared by the actions ------------------------------------------------


def as_str(v: object, key: str) -> str:
    if not isinstance(v, str):
        raise ScenarioError(f"{key}: expected a string, got {v!r}")
    return v


def as_int(v: object, key: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ScenarioError(f"{key}: expected an integer, got {v!r}")
    return v


def as_seconds(v: object, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ScenarioError(f"{key}: expected a non-negative number, got {v!r}")
    return float(v)


def as_bool(v: object, key: str) -> bool:
    if not isinstance(v, bool):
        raise ScenarioError(f"{key}: expected true or false, got {v!r}")
    return v


def as_strings(v: object, key: str) -> tuple[str, ...]:
    if isinstance(v, str):
        return (v,)
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        return tuple(v)
    raise ScenarioError(f"{key}: expected a string or a non-empty list of strings, got {v!r}")


def as_errnos(v: object, key: str) -> tuple[str, ...]:
    names = as_strings(v, key)
    for n in names:
        try:
            errno_value(n)
        except KeyError:
            raise ScenarioError(f"{key}: {n!r} is neither 'ok' nor an errno name") from None
    return names


def as_removal(v: object, key: str) -> tuple[str, ...]:
    exp = as_strings(v, key)
    for outcome in exp:
        if outcome not in REMOVAL_OUTCOMES:
            raise ScenarioError(f"{key}: {outcome!r} is not one of {REMOVAL_OUTCOMES}")
    return exp


def sys_path(v: object, key: str) -> str:
    """An absolute path, or one relative to /sys/devices/system/memory."""
    p = as_str(v, key)
    if not p:
        raise ScenarioError(f"{key}: empty path")
    return p if p.startswith("/") else f"{SYS_MEMORY}/{p}"


def size_text(n: int) -> str:
    for unit, shift in (("G", 30), ("M", 20)):
        if n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


# --- the base class and the registry ------------------------------------------------------


class Action:
    """One step action (subclasses are frozen dataclasses)."""

    key: ClassVar[str] = ""
    options: ClassVar[frozenset[str]] = frozenset()
    capture_by_default: ClassVar[bool] = True
    #: True when the guest needs the host's Python and /usr (memhp, lsmem in the guest)
    guest_python: ClassVar[bool] = False
    #: True when the guest needs the virtio_mem driver loaded (a device comes later)
    needs_virtio_mem: ClassVar[bool] = False

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        """Validate ``step[cls.key]`` (``value``) and the step's options; ``key`` for errors."""
        raise NotImplementedError

    @classmethod
    def default_name(cls, value: object, step: Mapping[str, Any]) -> str:
        return f"{cls.key}-{value}"

    def describe(self) -> str:
        raise NotImplementedError

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        """Do it on one side: (outcome, detail, command output if any)."""
        raise NotImplementedError

    def expected(self) -> tuple[str, ...]:
        """Accepted outcomes (empty: anything)."""
        exp: tuple[str, ...] = getattr(self, "expect", ())
        return exp

    def check(
        self, step: str, side: str, outcome: str, detail: str, outputs: Mapping[str, CmdResult]
    ) -> list[Difference]:
        """This side against the step's expectations; ``outputs``: this side's so far."""
        exp = self.expected()
        if exp and outcome not in exp:
            return [Difference(step, "expect", side, f"expected {'|'.join(exp)}", outcome)]
        return []

    def compare(
        self, step: str, real: CmdResult | None, model: CmdResult | None
    ) -> list[Difference]:
        """Real against model beyond the outcome (default: nothing more)."""
        return []


ACTIONS: dict[str, type[Action]] = {}
A = TypeVar("A", bound=type[Action])


def action(cls: A) -> A:
    """Register an action class under its ``key``."""
    assert cls.key and cls.key not in ACTIONS, cls.key
    ACTIONS[cls.key] = cls
    return cls


def _removal(gone: bool) -> str:
    return "removed" if gone else "kept"


# --- the actions ---------------------------------------------------------------------------


@action
@dataclass(frozen=True)
class HotAddAction(Action):
    """``hot_add = { size = "512M", node = 1, id = "dimm1" }`` (+ ``addr``, ``slot``)."""

    key: ClassVar[str] = "hot_add"
    options: ClassVar[frozenset[str]] = frozenset({"expect"})

    dimm: HotAdd
    expect: tuple[str, ...] = ("ok",)
    timeout: float = 60.0

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        if not isinstance(value, Mapping):
            raise ScenarioError(f"{key}.hot_add: expected a table {{size, node, id}}")
        bad = sorted(set(value) - {"size", "node", "id", "addr", "slot"})
        if bad:
            raise ScenarioError(f"{key}.hot_add.{bad[0]}: unknown key")
        for req in ("size", "node", "id"):
            if req not in value:
                raise ScenarioError(f"{key}.hot_add.{req}: missing")
        try:
            size = parse_size(value["size"], "size")
            addr = parse_size(value["addr"], "addr") if "addr" in value else None
        except MachineError as e:
            raise ScenarioError(f"{key}.hot_add.{e.key}: {e.problem}") from None
        slot = as_int(value["slot"], f"{key}.hot_add.slot") if "slot" in value else None
        node = as_int(value["node"], f"{key}.hot_add.node")
        dimm = HotAdd(size, node, as_str(value["id"], f"{key}.hot_add.id"), addr, slot)
        return cls(dimm, as_strings(step.get("expect", "ok"), f"{key}.expect"))

    @classmethod
    def default_name(cls, value: object, step: Mapping[str, Any]) -> str:
        if isinstance(value, Mapping):
            return f"hot_add-{value.get('id', '?')}-node{value.get('node', '?')}"
        return super().default_name(value, step)

    def describe(self) -> str:
        h = self.dimm
        extra = "".join(
            f" {k}={v:#x}" if k == "addr" else f" {k}={v}"
            for k, v in (("addr", h.addr), ("slot", h.slot))
            if v is not None
        )
        return f"hot-add {h.id}: {size_text(h.size)} on node {h.node}{extra}"

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        return d.hot_add(self.dimm, self.timeout), "", None


@action
@dataclass(frozen=True)
class Fill(Action):
    """``fill = { size = "256M", node = 0, file = "a" }``: a workload writes a file of
    that size to a tmpfs that prefers the node (guest: dd; model: the same tmpfs file)."""

    key: ClassVar[str] = "fill"
    options: ClassVar[frozenset[str]] = frozenset({"expect"})

    size: int
    node: int
    file: str
    expect: tuple[str, ...] = ("ok",)

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        if not isinstance(value, Mapping) or set(value) - {"size", "node", "file"}:
            raise ScenarioError(f"{key}.fill: expected a table {{size, node, file}}")
        try:
            size = parse_size(value.get("size", ""), "size")
        except MachineError as e:
            raise ScenarioError(f"{key}.fill.{e.key}: {e.problem}") from None
        if size <= 0 or size % (1 << 20):
            raise ScenarioError(f"{key}.fill.size: a positive multiple of 1M")
        node = as_int(value.get("node", 0), f"{key}.fill.node")
        name = as_str(value.get("file", "fill"), f"{key}.fill.file")
        if not name.isidentifier():
            raise ScenarioError(f"{key}.fill.file: letters, digits and _ only")
        return cls(size, node, name, as_strings(step.get("expect", "ok"), f"{key}.expect"))

    @classmethod
    def default_name(cls, value: object, step: Mapping[str, Any]) -> str:
        if isinstance(value, Mapping):
            return f"fill-{value.get('file', 'fill')}"
        return super().default_name(value, step)

    def describe(self) -> str:
        return f"write {size_text(self.size)} to tmpfs file {self.file} (node {self.node})"

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        return d.fill(self.size, self.node, self.file), "", None


@action
@dataclass(frozen=True)
class DeviceDel(Action):
    """``device_del = "dimm1"``: QMP device_del, the guest is asked to eject."""

    key: ClassVar[str] = "device_del"
    options: ClassVar[frozenset[str]] = frozenset({"expect", "timeout"})

    id: str
    expect: tuple[str, ...] = ("removed",)
    timeout: float = 60.0

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        timeout = as_seconds(step.get("timeout", 60.0), f"{key}.timeout")
        exp = as_removal(step.get("expect", "removed"), f"{key}.expect")
        return cls(as_str(value, f"{key}.device_del"), exp, timeout)

    def describe(self) -> str:
        return f"QMP device_del {self.id}"

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        return _removal(d.device_del(self.id, self.timeout)), "", None


@action
@dataclass(frozen=True)
class Eject(Action):
    """``eject = "PNP0C80:00"``, ``id = "dimm1"``: echo 1 > .../eject, await the removal."""

    key: ClassVar[str] = "eject"
    options: ClassVar[frozenset[str]] = frozenset({"id", "expect", "timeout"})

    acpi_device: str
    id: str
    expect: tuple[str, ...] = ("removed",)
    timeout: float = 60.0

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        dev = as_str(value, f"{key}.eject")
        if "id" not in step:
            raise ScenarioError(f"{key}.id: missing (the DIMM id whose removal to await)")
        exp = as_removal(step.get("expect", "removed"), f"{key}.expect")
        timeout = as_seconds(step.get("timeout", 60.0), f"{key}.timeout")
        return cls(dev, as_str(step["id"], f"{key}.id"), exp, timeout)

    def describe(self) -> str:
        return f"echo 1 > {ACPI_DEVICES}/{self.acpi_device}/eject ({self.id})"

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        err = d.write(f"{ACPI_DEVICES}/{self.acpi_device}/eject", "1")
        if err:
            return "kept", f"eject write: {errno_label(err)}", None
        return _removal(d.wait_removed(self.id, self.timeout)), "", None


def _path_name(key: str, value: object, step: Mapping[str, Any]) -> str:
    if not isinstance(value, str):
        return f"{key}-{value}"
    tail = "/".join(value.rstrip("/").split("/")[-2:])
    val = step.get("value", "")
    return f"{key}-{tail}" + (f"={val}" if isinstance(val, str) and val else "")


@action
@dataclass(frozen=True)
class Write(Action):
    """``write = "memory32/state"``, ``value = "online"``: outcome "ok" or the errno name."""

    key: ClassVar[str] = "write"
    options: ClassVar[frozenset[str]] = frozenset({"value", "expect"})

    path: str
    value: str
    expect: tuple[str, ...] = ("ok",)

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        path = sys_path(value, f"{key}.write")
        if "value" not in step:
            raise ScenarioError(f"{key}.value: missing")
        data = as_str(step["value"], f"{key}.value")
        return cls(path, data, as_errnos(step.get("expect", "ok"), f"{key}.expect"))

    @classmethod
    def default_name(cls, value: object, step: Mapping[str, Any]) -> str:
        return _path_name(cls.key, value, step)

    def describe(self) -> str:
        return f"echo {self.value} > {self.path}"

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        return errno_label(d.write(self.path, self.value)), "", None


@action
@dataclass(frozen=True)
class Read(Action):
    """``read = "memory32/valid_zones"``: outcome the value without its final newline."""

    key: ClassVar[str] = "read"
    options: ClassVar[frozenset[str]] = frozenset({"expect"})
    capture_by_default: ClassVar[bool] = False

    path: str
    expect: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        exp = as_strings(step["expect"], f"{key}.expect") if "expect" in step else ()
        return cls(sys_path(value, f"{key}.read"), exp)

    @classmethod
    def default_name(cls, value: object, step: Mapping[str, Any]) -> str:
        return _path_name(cls.key, value, step)

    def describe(self) -> str:
        return f"cat {self.path}"

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        value, err = d.read(self.path)
        return (errno_label(err) if err else (value or "").rstrip("\n")), "", None


@dataclass(frozen=True)
class _Command(Action):
    """A command run on both sides (memhp, lsmem): outcome ``rc=N``, output compared."""

    args: tuple[str, ...]
    expect_rc: tuple[int, ...] = ()
    compare_output: bool = True
    same_as: str | None = None
    timeout: float = 60.0

    guest_python: ClassVar[bool] = True

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise ScenarioError(f"{key}.{cls.key}: expected a list of arguments")
        if cls.key == "memhp" and not value:
            raise ScenarioError(f"{key}.memhp: expected a memhp command")
        rcs = step.get("expect_rc", [])
        rcl = rcs if isinstance(rcs, list) else [rcs]
        return cls(
            tuple(value),
            tuple(as_int(x, f"{key}.expect_rc") for x in rcl),
            as_bool(step.get("compare_output", True), f"{key}.compare_output"),
            as_str(step["same_as"], f"{key}.same_as") if "same_as" in step else None,
            as_seconds(step.get("timeout", 60.0), f"{key}.timeout"),
        )

    @classmethod
    def default_name(cls, value: object, step: Mapping[str, Any]) -> str:
        if isinstance(value, list):
            return " ".join([cls.key, *(str(x) for x in value)])
        return super().default_name(value, step)

    def describe(self) -> str:
        return " ".join([self.key, *self.args])

    def _call(self, d: Driver) -> CmdResult:
        raise NotImplementedError

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        r = self._call(d)
        return f"rc={r.rc}", r.stdout + (("\n[stderr]\n" + r.stderr) if r.stderr else ""), r

    def check(
        self, step: str, side: str, outcome: str, detail: str, outputs: Mapping[str, CmdResult]
    ) -> list[Difference]:
        out: list[Difference] = []
        rc = int(outcome[3:])
        if self.expect_rc and rc not in self.expect_rc:
            out.append(
                Difference(
                    step, "expect", side, f"expected rc {self.expect_rc}", f"{outcome}: {detail}"
                )
            )
        if self.same_as is not None:
            mine, other = outputs[step].stdout, outputs[self.same_as].stdout
            if mine != other:
                out.append(
                    Difference(step, "output", f"{side}: same as {self.same_as}",
                               short(other, 400), short(mine, 400))
                )  # fmt: skip
        return out

    def compare(
        self, step: str, real: CmdResult | None, model: CmdResult | None
    ) -> list[Difference]:
        if not self.compare_output or real is None or model is None:
            return []
        if real.stdout == model.stdout:
            return []
        return [
            Difference(step, "output", "stdout", short(real.stdout, 400), short(model.stdout, 400))
        ]


@action
@dataclass(frozen=True)
class Memhp(_Command):
    """``memhp = ["remove", "PNP0C80:00"]``: the memhp CLI, in the guest and on the model."""

    key: ClassVar[str] = "memhp"
    options: ClassVar[frozenset[str]] = frozenset({"expect_rc", "compare_output", "timeout"})

    def _call(self, d: Driver) -> CmdResult:
        return d.memhp(self.args, self.timeout)


@action
@dataclass(frozen=True)
class Lsmem(_Command):
    """``lsmem = ["-o", "+NODE"]``: util-linux lsmem (guest; on the model's tree)."""

    key: ClassVar[str] = "lsmem"
    options: ClassVar[frozenset[str]] = frozenset({"expect_rc", "compare_output", "same_as"})
    capture_by_default: ClassVar[bool] = False

    def _call(self, d: Driver) -> CmdResult:
        return d.lsmem(self.args)


@action
@dataclass(frozen=True)
class Wait(Action):
    """``wait = 0.5`` (seconds), or ``wait = { removed = "dimm1", timeout = 60 }``."""

    key: ClassVar[str] = "wait"
    capture_by_default: ClassVar[bool] = False

    seconds: float = 0.0
    removed: str = ""
    timeout: float = 60.0

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        if not isinstance(value, Mapping):
            return cls(seconds=as_seconds(value, f"{key}.wait"))
        if set(value) - {"removed", "timeout"} or "removed" not in value:
            raise ScenarioError(f"{key}.wait: expected seconds or {{removed = ID, timeout = S}}")
        timeout = as_seconds(value.get("timeout", 60.0), f"{key}.wait.timeout")
        return cls(removed=as_str(value["removed"], f"{key}.wait.removed"), timeout=timeout)

    @classmethod
    def default_name(cls, value: object, step: Mapping[str, Any]) -> str:
        if isinstance(value, Mapping):
            return f"wait-{value.get('removed', '?')}"
        return f"wait-{value}s"

    def describe(self) -> str:
        if self.removed:
            return f"wait for the removal of {self.removed}"
        return f"wait {self.seconds}s"

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        if self.removed:
            return _removal(d.wait_removed(self.removed, self.timeout)), "", None
        d.sleep(self.seconds)
        return "ok", "", None


@action
@dataclass(frozen=True)
class Capture(Action):
    """``capture = "after-online"``: only a capture (the name names the step)."""

    key: ClassVar[str] = "capture"

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        if not isinstance(value, str | bool):
            raise ScenarioError(f"{key}.capture: expected a step name or true")
        return cls()

    @classmethod
    def default_name(cls, value: object, step: Mapping[str, Any]) -> str:
        return value if isinstance(value, str) else f"capture-{value}"

    def describe(self) -> str:
        return "capture"

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        return "ok", "", None


# The workload task actions (task, end_task) live with their drivers' side.
from memhp.bench import tasks as _tasks  # noqa: E402,F401  (registers them)
