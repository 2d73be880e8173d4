"""A study file: a machine, hot-added DIMMs, a lifecycle, workloads and a grid.

::

    name = "tib-4node-auto-movable"
    machine = "../machines/tib-4node.toml"   # relative to the study file, or a
                                             # [machine] table (a machine description)
    runs = 20                # seeds per cell (--runs overrides)
    seed = 0                 # run r of every cell uses seed + r
    sim_time = 60            # simulated seconds the workload runs
    steps = 12               # workload events over sim_time
    remove_timeout = 30      # memhp remove --timeout, in simulated seconds

    [[dimm]]                 # hot-added ACPI DIMMs (pc-dimm), plugged in this order
    size = "64G"
    node = 0
    count = 2                # optional, default 1
    addr = "1T"              # optional (QEMU picks otherwise; only with count = 1)

    [params]                 # defaults of the grid parameters
    online = "online_movable"    # online_movable | online_kernel | online (user space
                                 # writes state) or contig-zones | auto-movable (the
                                 # kernel onlines with memory_hotplug.online_policy)
    auto_movable_ratio = 301
    auto_movable_numa_aware = true
    memmap_on_memory = false
    memcg = true
    workload = "mixed"
    remove_order = "last-first"  # or "first-first": the order devices are removed

    [workloads.mixed]        # fractions of the machine's free memory after onlining
    fill = 0.6               # allocated by the workload (its pages: the mix below)
    unmovable = 0.02
    pinned = 0.0
    tmpfs = 0.1              # written to tmpfs files (page cache + kernel objects)
    churn = 0.3              # fraction of steps that free an earlier allocation
    kernel_rate = 64         # run-time kernel allocations (k.kalloc), pages/s per CPU
    kernel_keep = 0.0125     # (the machine's [kernel.runtime_allocs] defaults)

    [grid]                   # each key a list: the cells are their product
    online = ["online_movable", "auto-movable"]
    auto_movable_ratio = [0, 100, 301, 400]

Every error is a :class:`StudyError` naming the key.  No I/O here but reading the
files named.
"""

from __future__ import annotations

import itertools
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from memhp.abi import units
from memhp.kernel.machine import MachineError, parse_machine
from memhp.kernel.machine_runtime import RATE_MAX, RuntimeAllocsSpec

ONLINE_BY_USER = ("online_movable", "online_kernel", "online")
ONLINE_BY_KERNEL = ("contig-zones", "auto-movable")
REMOVE_ORDERS = ("last-first", "first-first")

#: Grid parameters, their defaults and types.
PARAM_DEFAULTS: dict[str, object] = {
    "online": "online_movable",
    "auto_movable_ratio": 301,
    "auto_movable_numa_aware": True,
    "memmap_on_memory": False,
    "memcg": True,
    "workload": "default",
    "remove_order": "last-first",
}

#: The run-time kernel allocations' defaults, as for a machine file.
_KALLOC = RuntimeAllocsSpec()

WORKLOAD_KEYS: dict[str, tuple[type, float, float, float]] = {
    # key: (type, default, min, max)
    "fill": (float, 0.5, 0.0, 1.0),
    "unmovable": (float, 0.0, 0.0, 1.0),
    "pinned": (float, 0.0, 0.0, 1.0),
    "tmpfs": (float, 0.0, 0.0, 1.0),
    "churn": (float, 0.0, 0.0, 1.0),
    "kernel_rate": (float, _KALLOC.rate, 0.0, RATE_MAX),
    "kernel_keep": (float, _KALLOC.keep, 0.0, 1.0),
}

TOP_KEYS = (
    "name",
    "description",
    "machine",
    "runs",
    "seed",
    "sim_time",
    "steps",
    "remove_timeout",
    "dimm",
    "params",
    "workloads",
    "grid",
)


class StudyError(Exception):
    """A bad study file: ``key: problem``."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


@dataclass(frozen=True)
class DimmSpec:
    size: int
    node: int
    addr: int | None = None


@dataclass(frozen=True)
class Workload:
    fill: float = 0.5
    unmovable: float = 0.0
    pinned: float = 0.0
    tmpfs: float = 0.0
    churn: float = 0.0
    kernel_rate: float = _KALLOC.rate
    kernel_keep: float = _KALLOC.keep


@dataclass(frozen=True)
class Cell:
    """One point of the grid: every parameter's value."""

    params: tuple[tuple[str, object], ...]
    #: The grid's keys: what names the cell.
    axes: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        p = dict(self.params)
        return ",".join(f"{k}={_fmt(p[k])}" for k in self.axes) or "default"

    def get(self, key: str) -> Any:
        return dict(self.params)[key]


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    machine: Mapping[str, object]  # the decoded machine document (validated)
    dimms: tuple[DimmSpec, ...]
    workloads: Mapping[str, Workload]
    grid_keys: tuple[str, ...]
    cells: tuple[Cell, ...]
    runs: int = 10
    seed: int = 0
    sim_time: float = 60.0
    steps: int = 12
    remove_timeout: float = 30.0


def _fmt(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _int(doc: Mapping[str, object], key: str, default: int, lo: int, hi: int) -> int:
    v = doc.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise StudyError(key, f"expected an integer in [{lo}, {hi}], got {v!r}")
    return v


def _num(doc: Mapping[str, object], key: str, default: float, lo: float, hi: float) -> float:
    v = doc.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise StudyError(key, f"expected a number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)


def _size(v: object, key: str) -> int:
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return v
    if isinstance(v, str):
        try:
            return units.parse_size(v)
        except ValueError as e:
            raise StudyError(key, str(e)) from None
    raise StudyError(key, f"expected a size like '8G', got {v!r}")


def _check_param(key: str, v: object, workloads: Mapping[str, Workload]) -> object:
    if key == "online":
        known = ONLINE_BY_USER + ONLINE_BY_KERNEL
        if v not in known:
            raise StudyError(key, f"expected one of {', '.join(known)}, got {v!r}")
    elif key == "auto_movable_ratio":
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 2**32 - 1:
            raise StudyError(key, f"expected a percentage (unsigned integer), got {v!r}")
    elif key in ("auto_movable_numa_aware", "memmap_on_memory", "memcg"):
        if not isinstance(v, bool):
            raise StudyError(key, f"expected true or false, got {v!r}")
    elif key == "remove_order" and v not in REMOVE_ORDERS:
        raise StudyError(key, f"expected one of {', '.join(REMOVE_ORDERS)}, got {v!r}")
    elif key == "workload" and v not in workloads:
        raise StudyError(key, f"no [workloads.{v}] (known: {', '.join(sorted(workloads))})")
    return v


def _workloads(doc: object) -> dict[str, Workload]:
    if doc is None:
        return {"default": Workload()}
    if not isinstance(doc, dict) or not doc:
        raise StudyError("workloads", "expected tables [workloads.NAME]")
    out: dict[str, Workload] = {}
    for name, w in doc.items():
        if not isinstance(w, dict):
            raise StudyError(f"workloads.{name}", "expected a table")
        unknown = sorted(set(w) - set(WORKLOAD_KEYS))
        if unknown:
            raise StudyError(
                f"workloads.{name}.{unknown[0]}",
                f"unknown key (known: {', '.join(WORKLOAD_KEYS)})",
            )
        vals = {}
        for k, (_, default, lo, hi) in WORKLOAD_KEYS.items():
            try:
                vals[k] = _num(w, k, default, lo, hi)
            except StudyError as e:
                raise StudyError(f"workloads.{name}.{k}", str(e).split(": ", 1)[1]) from None
        if vals["unmovable"] + vals["pinned"] > 1:
            raise StudyError(f"workloads.{name}.pinned", "unmovable + pinned must be at most 1")
        out[name] = Workload(**vals)
    return out


def _machine(doc: Mapping[str, object], base: str) -> dict[str, object]:
    m = doc.get("machine")
    if isinstance(m, str):
        path = m if os.path.isabs(m) else os.path.join(base, m)
        try:
            with open(path, "rb") as f:
                mdoc: dict[str, object] = tomllib.load(f)
        except OSError as e:
            raise StudyError("machine", f"{path}: {e.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise StudyError("machine", f"{path}: not a valid TOML file: {e}") from None
    elif isinstance(m, dict):
        mdoc = dict(m)
    else:
        raise StudyError("machine", "expected a machine file path or a [machine] table")
    try:
        parse_machine(mdoc)
    except MachineError as e:
        raise StudyError("machine", str(e)) from None
    return mdoc


def parse_study(doc: Mapping[str, object], base: str = ".") -> Study:
    """Validate a decoded study document; ``base``: the directory of relative paths."""
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise StudyError(unknown[0], f"unknown key (known: {', '.join(TOP_KEYS)})")
    name = doc.get("name", "study")
    if not isinstance(name, str) or not name:
        raise StudyError("name", f"expected a string, got {name!r}")
    desc = doc.get("description", "")
    if not isinstance(desc, str):
        raise StudyError("description", f"expected a string, got {desc!r}")
    mdoc = _machine(doc, base)
    raw_dimms = doc.get("dimm")
    if not isinstance(raw_dimms, list) or not raw_dimms:
        raise StudyError("dimm", "expected at least one [[dimm]] table")
    dimms: list[DimmSpec] = []
    for i, d in enumerate(raw_dimms):
        key = f"dimm[{i}]"
        if not isinstance(d, dict):
            raise StudyError(key, "expected a table")
        bad = sorted(set(d) - {"size", "node", "count", "addr"})
        if bad:
            raise StudyError(f"{key}.{bad[0]}", "unknown key (known: size, node, count, addr)")
        size = _size(d.get("size"), f"{key}.size")
        node = d.get("node", 0)
        if isinstance(node, bool) or not isinstance(node, int) or node < 0:
            raise StudyError(f"{key}.node", f"expected a node number, got {node!r}")
        count = d.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 256:
            raise StudyError(f"{key}.count", f"expected an integer in [1, 256], got {count!r}")
        addr = _size(d["addr"], f"{key}.addr") if "addr" in d else None
        if addr is not None and count != 1:
            raise StudyError(f"{key}.addr", "only with count = 1")
        dimms += [DimmSpec(size, node, addr)] * count
    workloads = _workloads(doc.get("workloads"))
    raw_params = doc.get("params", {})
    if not isinstance(raw_params, dict):
        raise StudyError("params", "expected a table")
    params = dict(PARAM_DEFAULTS)
    if "workload" not in raw_params:
        params["workload"] = next(iter(workloads))
    for k, v in raw_params.items():
        if k not in PARAM_DEFAULTS:
            raise StudyError(f"params.{k}", f"unknown key (known: {', '.join(PARAM_DEFAULTS)})")
        try:
            params[k] = _check_param(k, v, workloads)
        except StudyError as e:
            raise StudyError(f"params.{k}", str(e).split(": ", 1)[1]) from None
    _check_param("workload", params["workload"], workloads)
    grid = doc.get("grid", {})
    if not isinstance(grid, dict):
        raise StudyError("grid", "expected a table of lists")
    axes: list[list[tuple[str, object]]] = []
    for k, vs in grid.items():
        if k not in PARAM_DEFAULTS:
            raise StudyError(f"grid.{k}", f"unknown key (known: {', '.join(PARAM_DEFAULTS)})")
        if not isinstance(vs, list) or not vs:
            raise StudyError(f"grid.{k}", "expected a non-empty list of values")
        for v in vs:
            try:
                _check_param(k, v, workloads)
            except StudyError as e:
                raise StudyError(f"grid.{k}", str(e).split(": ", 1)[1]) from None
        axes.append([(k, v) for v in vs])
    cells = []
    for combo in itertools.product(*axes):
        p = dict(params)
        p.update(dict(combo))
        cells.append(Cell(tuple(p.items()), tuple(grid)))
    return Study(
        name=name,
        description=desc,
        machine=mdoc,
        dimms=tuple(dimms),
        workloads=workloads,
        grid_keys=tuple(grid),
        cells=tuple(cells),
        runs=_int(doc, "runs", 10, 1, 10**7),
        seed=_int(doc, "seed", 0, 0, 2**32 - 1),
        sim_time=_num(doc, "sim_time", 60.0, 0.0, 1e7),
        steps=_int(doc, "steps", 12, 0, 10**5),
        remove_timeout=_num(doc, "remove_timeout", 30.0, 0.0, 1e6),
    )


def load_study(path: str) -> Study:
    """Read and validate a study file; errors are :class:`StudyError` naming the key."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise StudyError(path, e.strerror or "cannot read") from None
    except tomllib.TOMLDecodeError as e:
        raise StudyError(path, f"not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise StudyError(path, f"not UTF-8 text (byte {e.start})") from None
    return parse_study(doc, os.path.dirname(os.path.abspath(path)))
