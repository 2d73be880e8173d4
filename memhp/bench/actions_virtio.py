"""Scenario step actions for virtio-mem and QMP (registered in :data:`ACTIONS` like
those of :mod:`memhp.bench.actions`; kept apart only to keep modules short).

* ``virtio_mem_add``: object-add of a memory-backend-ram + device_add virtio-mem-pci;
* ``virtio_mem_resize``: qom-set requested-size, then wait until the size is reached
  or stops moving (:mod:`memhp.bench.virtio`);
* ``qmp``: any QMP command, its reply (or QEMU's error, word for word) compared.

The QMP replies these actions get are the step's command output (kept in the
recording, compared between the sides).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from memhp.bench.actions import (
    Action,
    ScenarioError,
    action,
    as_int,
    as_seconds,
    as_str,
    as_strings,
    size_text,
)
from memhp.bench.compare import Difference, short
from memhp.bench.drivers import CmdResult, Driver
from memhp.kernel.machine import MachineError, parse_size

#: Default seconds without a size change after which a resize is taken as done.
DEFAULT_SETTLE = 4.0
DEFAULT_TIMEOUT = 180.0


def _size(value: object, key: str) -> int:
    try:
        return parse_size(value if isinstance(value, int | str) else repr(value), key)
    except MachineError as e:
        raise ScenarioError(f"{e.key}: {e.problem}") from None


def _size_word(n: int) -> str:
    return size_text(n) if n else "0"


def _reply(ok: bool, value: Any) -> tuple[str, CmdResult]:
    if ok:
        return "ok", CmdResult(0, json.dumps(value, sort_keys=True, indent=1) + "\n", "")
    return f"error: {value}", CmdResult(1, "", f"{value}\n")


def _virtio_state(d: Driver, id: str) -> tuple[str, CmdResult]:
    """The device's ``query-memory-devices`` entry and ``qom-get size``: (size, output)."""
    ok, devs = d.qmp("query-memory-devices", {})
    entry = next((x for x in (devs if ok else []) if (x.get("data") or {}).get("id") == id), None)
    ok2, size = d.qmp("qom-get", {"path": id, "property": "size"})
    out = {"query-memory-devices": entry, "qom-get size": size if ok2 else f"error: {size}"}
    text = json.dumps(out, sort_keys=True, indent=1) + "\n"
    return (_size_word(size) if ok2 else f"error: {size}"), CmdResult(0, text, "")


def _compare_output(step: str, real: CmdResult | None, model: CmdResult | None) -> list[Difference]:
    if real is None or model is None or (real.stdout, real.stderr) == (model.stdout, model.stderr):
        return []
    return [
        Difference(
            step,
            "output",
            "QMP replies",
            short(real.stdout + real.stderr, 600),
            short(model.stdout + model.stderr, 600),
        )
    ]


class _QmpRepliesCompared(Action):
    """An action whose output is QMP replies, compared whole between the sides."""

    def compare(
        self, step: str, real: CmdResult | None, model: CmdResult | None
    ) -> list[Difference]:
        return _compare_output(step, real, model)


@action
@dataclass(frozen=True)
class VirtioMemAdd(_QmpRepliesCompared):
    """``virtio_mem_add = { id = "vm1", size = "1G", node = 1, requested_size = "0",
    block_size = "2M" }``: QMP object-add memory-backend-ram,id=mem-ID,size=SIZE and
    device_add virtio-mem-pci (hotplug); outcome "ok" or "error: QEMU's message";
    with a requested size, waits as ``virtio_mem_resize`` does."""

    key: ClassVar[str] = "virtio_mem_add"
    needs_virtio_mem: ClassVar[bool] = True
    options: ClassVar[frozenset[str]] = frozenset({"expect", "settle", "timeout"})

    id: str
    size: int
    node: int
    requested_size: int
    block_size: int | None
    expect: tuple[str, ...] = ("ok",)
    settle: float = DEFAULT_SETTLE
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        k = f"{key}.virtio_mem_add"
        if not isinstance(value, Mapping):
            raise ScenarioError(f"{k}: expected a table {{id, size, node, requested_size}}")
        bad = sorted(set(value) - {"id", "size", "node", "requested_size", "block_size"})
        if bad:
            raise ScenarioError(f"{k}.{bad[0]}: unknown key")
        for req in ("id", "size"):
            if req not in value:
                raise ScenarioError(f"{k}.{req}: missing")
        return cls(
            as_str(value["id"], f"{k}.id"),
            _size(value["size"], f"{k}.size"),
            as_int(value.get("node", 0), f"{k}.node"),
            _size(value.get("requested_size", 0), f"{k}.requested_size"),
            _size(value["block_size"], f"{k}.block_size") if "block_size" in value else None,
            as_strings(step.get("expect", "ok"), f"{key}.expect"),
            as_seconds(step.get("settle", DEFAULT_SETTLE), f"{key}.settle"),
            as_seconds(step.get("timeout", DEFAULT_TIMEOUT), f"{key}.timeout"),
        )

    @classmethod
    def default_name(cls, value: object, step: Mapping[str, Any]) -> str:
        if isinstance(value, Mapping):
            return f"virtio_mem_add-{value.get('id', '?')}"
        return super().default_name(value, step)

    def describe(self) -> str:
        bs = f", block-size {size_text(self.block_size)}" if self.block_size else ""
        return (
            f"device_add virtio-mem-pci {self.id}: {size_text(self.size)} on node {self.node}, "
            f"requested {_size_word(self.requested_size)}{bs}"
        )

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        memdev = f"mem-{self.id}"
        backend = {"qom-type": "memory-backend-ram", "id": memdev, "size": self.size}
        ok, err = d.qmp("object-add", backend)
        if not ok:
            return f"error: {err}", "", None
        dev: dict[str, Any] = {
            "driver": "virtio-mem-pci",
            "id": self.id,
            "memdev": memdev,
            "node": self.node,
            "requested-size": self.requested_size,
        }
        if self.block_size is not None:
            dev["block-size"] = self.block_size
        ok, err = d.qmp("device_add", dev)
        if not ok:
            d.qmp("object-del", {"id": memdev})
            return f"error: {err}", "", None
        d.settle_virtio_mem(self.id, self.settle, self.timeout)
        size, out = _virtio_state(d, self.id)
        return "ok", f"size {size}", out


@action
@dataclass(frozen=True)
class VirtioMemResize(_QmpRepliesCompared):
    """``virtio_mem_resize = { id = "vm0", size = "512M" }`` (+ ``settle = 4``,
    ``timeout = 180``, ``expect = "512M"``): qom-set requested-size, then wait until
    the device's size is the requested one or has not moved for ``settle`` seconds
    (the model lets that simulated time pass: the driver's retry timer); outcome the
    size reached (``512M``) or "error: QEMU's message"; the device's
    query-memory-devices entry and qom-get size are compared.  ``size = ["1G",
    "256M"]`` with ``gap = 0.5``: several qom-sets ``gap`` seconds apart (a request
    changed while the driver works on the previous one), then the wait."""

    key: ClassVar[str] = "virtio_mem_resize"
    options: ClassVar[frozenset[str]] = frozenset({"expect", "settle", "timeout", "gap"})

    id: str
    sizes: tuple[int, ...]
    expect: tuple[str, ...] = ()
    settle: float = DEFAULT_SETTLE
    timeout: float = DEFAULT_TIMEOUT
    gap: float = 0.0

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        k = f"{key}.virtio_mem_resize"
        if not isinstance(value, Mapping) or set(value) != {"id", "size"}:
            raise ScenarioError(f"{k}: expected a table {{id, size}}")
        raw = value["size"]
        sizes = raw if isinstance(raw, list) and raw else [raw]
        return cls(
            as_str(value["id"], f"{k}.id"),
            tuple(_size(x, f"{k}.size") for x in sizes),
            as_strings(step["expect"], f"{key}.expect") if "expect" in step else (),
            as_seconds(step.get("settle", DEFAULT_SETTLE), f"{key}.settle"),
            as_seconds(step.get("timeout", DEFAULT_TIMEOUT), f"{key}.timeout"),
            as_seconds(step.get("gap", 0.0), f"{key}.gap"),
        )

    @classmethod
    def default_name(cls, value: object, step: Mapping[str, Any]) -> str:
        if isinstance(value, Mapping):
            size = value.get("size", "?")
            text = ",".join(str(x) for x in size) if isinstance(size, list) else size
            return f"virtio_mem_resize-{value.get('id', '?')}={text}"
        return super().default_name(value, step)

    def describe(self) -> str:
        sizes = " then ".join(_size_word(x) for x in self.sizes)
        return f"qom-set {self.id} requested-size {sizes}"

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        for i, size in enumerate(self.sizes):
            if i:
                d.sleep(self.gap)
            args = {"path": self.id, "property": "requested-size", "value": size}
            ok, err = d.qmp("qom-set", args)
            if not ok:
                return f"error: {err}", "", None
        d.settle_virtio_mem(self.id, self.settle, self.timeout)
        size_now, out = _virtio_state(d, self.id)
        return size_now, "", out


#: A raw QMP step that made the guest act waits until no event came for this long
#: (longer than QEMU's 1 s MEMORY_DEVICE_SIZE_CHANGE throttle and than a loaded TCG
#: guest's answer to a Device Check), at most EVENT_TIMEOUT.
EVENT_QUIET = 3.0
EVENT_TIMEOUT = 20.0


@action
@dataclass(frozen=True)
class Qmp(_QmpRepliesCompared):
    """``qmp = "query-memory-devices"`` (+ ``arguments = { ... }``): a QMP command;
    outcome "ok" (the reply compared) or "error: Class: QEMU's message"."""

    key: ClassVar[str] = "qmp"
    options: ClassVar[frozenset[str]] = frozenset({"arguments", "expect"})
    capture_by_default: ClassVar[bool] = False

    command: str
    arguments: tuple[tuple[str, Any], ...] = ()
    expect: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        args = step.get("arguments", {})
        if not isinstance(args, Mapping):
            raise ScenarioError(f"{key}.arguments: expected a table")
        exp = as_strings(step["expect"], f"{key}.expect") if "expect" in step else ()
        return cls(as_str(value, f"{key}.qmp"), tuple(sorted(args.items())), exp)

    @classmethod
    def default_name(cls, value: object, step: Mapping[str, Any]) -> str:
        args = step.get("arguments", {})
        if not isinstance(args, Mapping):
            args = {}
        tail = "".join(f"-{v}" for _, v in sorted(args.items()))
        return f"qmp-{value}{tail}"

    def describe(self) -> str:
        return f"QMP {self.command} {json.dumps(dict(self.arguments), sort_keys=True)}"

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        ok, reply = d.qmp(self.command, dict(self.arguments))
        if ok and self._guest_acts(reply):
            # the guest answers asynchronously: its _OST, the DIMM's removal or
            # virtio-mem's plug requests (whose MEMORY_DEVICE_SIZE_CHANGE QEMU holds
            # back for its 1 s throttle) belong to this step
            d.settle_events(EVENT_QUIET, EVENT_TIMEOUT)
        outcome, out = _reply(ok, reply)
        return outcome, "", out

    def _guest_acts(self, reply: object) -> bool:
        """A command whose success makes the guest act (device_add, device_del,
        qom-set, and their HMP forms when the monitor printed no error)."""
        args = dict(self.arguments)
        if self.command in ("device_add", "device_del"):
            return True
        if self.command == "qom-set":  # (a backend's or a DIMM's property: nothing to do)
            return args.get("property") == "requested-size"
        if self.command == "human-monitor-command":
            words = str(args.get("command-line", "")).split()
            if str(reply) or not words:  # (the monitor printed an error)
                return False
            if words[0] == "qom-set":
                return "requested-size" in words
            return words[0] in ("device_add", "device_del")
        return False


@action
@dataclass(frozen=True)
class Dmesg(Action):
    """``dmesg = "virtio_mem virtio0"``: the kernel log lines containing the text
    (without timestamps; the model: its printk lines), compared between the sides."""

    key: ClassVar[str] = "dmesg"
    capture_by_default: ClassVar[bool] = False

    pattern: str

    @classmethod
    def parse(cls, value: object, step: Mapping[str, Any], key: str) -> Action:
        pattern = as_str(value, f"{key}.dmesg")
        if not pattern:
            raise ScenarioError(f"{key}.dmesg: expected the text the lines contain")
        return cls(pattern)

    def describe(self) -> str:
        return f"dmesg | grep -F {self.pattern!r}"

    def run(self, d: Driver) -> tuple[str, str, CmdResult | None]:
        lines = d.kernel_messages(self.pattern)
        return "ok", f"{len(lines)} lines", CmdResult(0, "".join(f"{x}\n" for x in lines), "")

    def compare(
        self, step: str, real: CmdResult | None, model: CmdResult | None
    ) -> list[Difference]:
        if real is None or model is None or real.stdout == model.stdout:
            return []
        return [Difference(step, "output", "kernel log", real.stdout, model.stdout)]


__all__ = ["Dmesg", "Qmp", "VirtioMemAdd", "VirtioMemResize"]
