"""Differences between Linux 6.1 and the model that are MODEL BUGS, reported and to
be fixed in the model (not noise, not unknowable: those are in
memhp.bench.compare.ALLOWLIST).  Remove an entry once the model is fixed; the
differential tests fail on every difference not listed here.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from memhp.bench.compare import Difference

#: (difference kind, path glob, what is wrong)
GAPS: tuple[tuple[str, str, str], ...] = (
    # All gaps found by the first differential runs (ACPI uid, modalias of empty
    # slots, the node vmstat and /proc/meminfo key sets, subsystem/cpu links,
    # compact, hugepages) are fixed in the model.  Add new ones here.
)


def explained(d: Difference) -> bool:
    return any(d.kind == k and fnmatch.fnmatchcase(d.path, p) for k, p, _ in GAPS)


def unexplained(diffs: Iterable[Difference]) -> list[Difference]:
    """The differences no known model gap explains."""
    return [d for d in diffs if not explained(d)]
