"""The ``[kernel.runtime_allocs]`` table of a machine file (see memhp.kernel.machine).

The knobs of the kernel's run-time allocations (memhp.kernel.mm.slab, ``k.kalloc``),
the same as QMP ``x-memhp-kernel-allocs`` sets on a running machine::

    [kernel.runtime_allocs]
    enabled = true          # false: the kernel allocates nothing after boot
    rate = 64.0             # background slab churn, pages per second per CPU
    keep = 0.0125           # fraction of the background allocations that stays
    seed = 0                # seed of the background's random generator

Every key is optional (the defaults above, calibrated in docs/runtime-allocations.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Largest background rate accepted (pages per second per CPU).
RATE_MAX = 1e6


@dataclass(frozen=True)
class RuntimeAllocsSpec:
    """The run-time kernel allocation knobs of a machine."""

    enabled: bool = True
    #: Background slab churn, pages per second of simulated time, per CPU.
    rate: float = 64.0
    #: Fraction of background allocations that stays (the rest is freed again).
    keep: float = 0.0125
    seed: int = 0


def _number(t: Mapping[str, object], name: str, default: float, lo: float, hi: float) -> float:
    from memhp.kernel.machine import MachineError  # the parent module

    v = t.get(name, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise MachineError(f"kernel.runtime_allocs.{name}", f"expected a number, got {v!r}")
    if not lo <= v <= hi:
        raise MachineError(f"kernel.runtime_allocs.{name}", f"must be in [{lo:g}, {hi:g}], got {v}")
    return float(v)


def parse_runtime_allocs(raw: object) -> RuntimeAllocsSpec:
    """Parse ``[kernel.runtime_allocs]`` (MachineError naming the key)."""
    from memhp.kernel.machine import MachineError  # the parent module

    key = "kernel.runtime_allocs"
    if not isinstance(raw, Mapping):
        raise MachineError(key, "expected a table ([kernel.runtime_allocs])")
    known = ("enabled", "rate", "keep", "seed")
    bad = sorted(set(raw) - set(known))
    if bad:
        raise MachineError(f"{key}.{bad[0]}", f"unknown key (known: {', '.join(known)})")
    d = RuntimeAllocsSpec()
    enabled = raw.get("enabled", d.enabled)
    if not isinstance(enabled, bool):
        raise MachineError(f"{key}.enabled", f"expected true or false, got {enabled!r}")
    seed = raw.get("seed", d.seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MachineError(f"{key}.seed", f"expected an integer >= 0, got {seed!r}")
    return RuntimeAllocsSpec(
        enabled=enabled,
        rate=_number(raw, "rate", d.rate, 0, RATE_MAX),
        keep=_number(raw, "keep", d.keep, 0, 1),
        seed=seed,
    )
