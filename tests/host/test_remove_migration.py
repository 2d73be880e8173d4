"""``memhp remove`` reports the pages its offlines migrated (/proc/vmstat's
pgmigrate_success and pgmigrate_fail before and after the run: memhp.host.remove
migration_counts()).  Checked on the model, and against the real guests with
tests/scenarios/memhp-remove-migrated.toml (memhp run inside Debian's 6.1 and 6.12:
a 256M tmpfs file in a movable DIMM, then ``memhp remove -v``)."""

from __future__ import annotations

import errno
import re

import pytest

from memhp.host.errors import SysfsError
from memhp.host.remove import migration_counts, remove_device
from memhp.host.root import SysfsRoot
from memhp.sim.machine import WorkloadMix
from tests.support.replay import replay
from tests.support.sim import dimm_machine

SCENARIO = "tests/scenarios/memhp-remove-migrated.toml"
FILE_PAGES = 65536  # the scenario's 256M file


def test_counts_read_proc_vmstat() -> None:
    m = dimm_machine()
    root = SysfsRoot(m.sysfs, "sim")
    assert migration_counts(root) == (0, 0)
    m.kernel.pa.migrated_pages, m.kernel.pa.migrate_failed_pages = 7, 3
    assert migration_counts(root) == (7, 3)


class _NoVmstat:
    """A root whose /proc/vmstat is missing or lacks the migration events."""

    def __init__(self, text: str | None) -> None:
        self.text = text

    read_values = SysfsRoot.read_values

    def read_str(self, path: str) -> str:
        if self.text is None:
            raise SysfsError("read", path, errno.ENOENT)
        return self.text


@pytest.mark.parametrize("text", [None, "nr_free_pages 5\npgmigrate_success 1\n", ""])
def test_no_counts_without_the_events(text: str | None) -> None:
    assert migration_counts(_NoVmstat(text)) is None  # type: ignore[arg-type]


def test_a_removal_counts_what_it_moved_and_failed() -> None:
    m = dimm_machine()
    bs = 128 << 20
    m.fill(3000, start=33 * bs, end=34 * bs, owner="app")
    root = SysfsRoot(m.sysfs, "sim")
    res = remove_device(root, "PNP0C80:00", count_migration=True)
    assert res.removed and res.migration is not None
    moved, failed = res.migration
    assert failed == 0 and moved >= 3000
    m2 = dimm_machine()
    m2.fill(10, start=35 * bs, end=36 * bs, mix=WorkloadMix(pinned=1.0), owner="rdma")
    res2 = remove_device(SysfsRoot(m2.sysfs, "sim"), "PNP0C80:00", timeout=0.2)
    assert not res2.removed and res2.migration is None  # not asked for


def _migrated(out: str) -> int:
    found = re.search(r"removed; (\d+) pages migrated \(", out)
    assert found is not None, out
    return int(found.group(1))


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_the_figure_is_the_real_guests(kernel: str) -> None:
    """The model's memhp reports the file's pages; the guest's memhp the file's and
    its own user space's: memhp's Python files read over 9p and the agent's pages are
    movable page cache too, which lands in the DIMM (ZONE_MOVABLE first) and may
    move twice, into a lower block of the DIMM, then out (recorded: 71,897 pages on
    6.1, 71,858 on 6.12, i.e. 24-25 MiB more; test_room.py allows 32 MiB for them)."""
    rec, steps = replay(SCENARIO, kernel, lambda _m, sr: sr.model.detail)
    model = dict(steps)["remove"]
    out = rec.steps["remove"].output
    assert out is not None and out.rc == 0, out
    real, mine = _migrated(out.stdout), _migrated(model)
    assert mine == FILE_PAGES
    assert FILE_PAGES <= real <= FILE_PAGES + (32 << 20) // 4096, out.stdout
