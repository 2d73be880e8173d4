"""Differences between Linux 6.1 and the model that are MODEL BUGS, reported and to
be fixed in the model (not noise, not unknowable: those are in
memhp.bench.diff.ALLOWLIST).  Remove an entry once the model is fixed; the
differential tests fail on every difference not listed here.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from memhp.bench.diff import Difference

ACPI_DEV = "/sys/devices/LNXSYSTM:00/LNXSYBUS:00/PNP0A06:04/PNP0C80:*"

#: (difference kind, path glob, what is wrong)
GAPS: tuple[tuple[str, str, str], ...] = (
    ("missing", f"{ACPI_DEV}/uid", "the model has no ACPI _UID attribute (real: '0x00\\n'...)"),
    ("value", f"{ACPI_DEV}/modalias",
     "empty slot (_STA 0): real modalias is '', the model gives 'acpi:PNP0C80:\\n'"),
    ("value", f"{ACPI_DEV}/uevent",
     "empty slot: real 'MODALIAS=\\n', the model 'MODALIAS=acpi:PNP0C80:\\n'"),
    ("keys", "/sys/devices/system/node/node*/vmstat",
     "the model lacks 44 counters (numa_hit.., nr_slab_reclaimable, nr_kernel_stack..) and "
     "prints nr_slab_unreclaimable_B (the kernel prints nr_slab_unreclaimable)"),
    ("keys", "/proc/meminfo", "the model lacks Zswap..DirectMap1G (35 lines)"),
)  # fmt: skip


def explained(d: Difference) -> bool:
    return any(d.kind == k and fnmatch.fnmatchcase(d.path, p) for k, p, _ in GAPS)


def unexplained(diffs: Iterable[Difference]) -> list[Difference]:
    """The differences no known model gap explains."""
    return [d for d in diffs if not explained(d)]
