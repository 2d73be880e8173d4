"""/proc/vmstat (memhp/sim/vmstat.py: vmstat_start(), vmstat_show()) against the real
guests: tests/scenarios/vmstat-migrate.toml recorded on Debian's 6.1 and 6.12 (a 1G
DIMM onlined movable, a 256M tmpfs file written into it, its blocks offlined highest
first).  After boot and every step: the same counter names in the same order; the
change of the free pages and of pgmigrate_success as on the real kernel; 6.12's
memmap pages exactly; and the dirty thresholds, computed by the model's
dirty_limits() from the real guest's own free pages and /proc/zoneinfo, exactly the
real ones."""

from __future__ import annotations

import pytest

from memhp.abi.paths import PROC_VMSTAT, PROC_ZONEINFO
from memhp.kernel.mm.page_alloc import AllocError
from memhp.sim.machine import SimMachine
from memhp.sim.vmstat import dirty_limits
from tests.conftest import machine
from tests.support.replay import real_text, replay
from tests.sysfs.test_zoneinfo import parse as parse_zoneinfo

SCENARIO = "tests/scenarios/vmstat-migrate.toml"
MEM = "/sys/devices/system/memory"
#: Free pages: what the guests' per-CPU lists and user space do around a step.
FREE_SLACK = 4096
#: Pages migrated per offline: the guest's own pages in the DIMM (~340 pages).
MIGRATE_SLACK = 512


def parse(text: str) -> list[tuple[str, int]]:
    out = []
    for line in text.splitlines():
        name, value = line.split()
        out.append((name, int(value)))
    return out


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_vmstat_is_the_real_guests(kernel: str) -> None:
    rec, out = replay(SCENARIO, kernel, lambda m, _sr: m.sysfs.read(PROC_VMSTAT).decode())
    prev: tuple[dict[str, int], dict[str, int]] | None = None
    for step, text in out:
        real = real_text(rec, step, PROC_VMSTAT)
        assert real is not None, step
        model, guest = parse(text), parse(real)
        assert [n for n, _ in model] == [n for n, _ in guest], step
        m, g = dict(model), dict(guest)
        if kernel == "6.12":
            assert m["nr_memmap_pages"] == g["nr_memmap_pages"], step
            assert m["nr_memmap_boot_pages"] == g["nr_memmap_boot_pages"], step
        assert m["pgmigrate_fail"] == g["pgmigrate_fail"] == 0, step
        if prev is not None:
            pm, pg = prev
            for name, slack in (
                ("nr_free_pages", FREE_SLACK),
                ("pgmigrate_success", MIGRATE_SLACK),
            ):
                dm, dg = m[name] - pm[name], g[name] - pg[name]
                assert abs(dm - dg) <= slack, (step, name, dm, dg)
        prev = (m, g)
    assert prev is not None
    m, g = prev
    # the file's 65,536 pages were migrated once each (the guest: a few of its own more)
    assert m["pgmigrate_success"] == 65536
    assert abs(g["pgmigrate_success"] - 65536) <= 64


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_dirty_limits_give_the_real_thresholds(kernel: str) -> None:
    """domain_dirty_limits() of the real guest's free pages, file LRU and
    totalreserve_pages (calculate_totalreserve_pages() of its /proc/zoneinfo: per
    zone its largest lowmem_reserve plus its high watermark, at most its managed
    pages) is what the guest printed."""
    rec, out = replay(SCENARIO, kernel, lambda _m, _sr: None)
    for step, _ in out:
        vm, zi = real_text(rec, step, PROC_VMSTAT), real_text(rec, step, PROC_ZONEINFO)
        assert vm is not None and zi is not None, step
        g = dict(parse(vm))
        reserve = sum(
            min(max(z.protection, default=0) + z.values["high"], z.values["managed"])
            for z in parse_zoneinfo(zi).values()
        )
        file_lru = g["nr_inactive_file"] + g["nr_active_file"]
        got = dirty_limits(g["nr_free_pages"], reserve, file_lru)
        assert got == (g["nr_dirty_threshold"], g["nr_dirty_background_threshold"]), step


def test_dirty_background_is_half_when_not_below() -> None:
    # bg_thresh >= thresh only with a tiny memory: then thresh / 2
    assert dirty_limits(0, 0, 0) == (0, 0)
    assert dirty_limits(100, 0, 0) == (20, 10)


def test_pgmigrate_fail_counts_as_migrate_pages_does() -> None:
    """A Movable block whose pages have nowhere to go: each migration pass of the
    offline stops at the first page without a target (-ENOMEM) and counts it, so
    pgmigrate_fail grows by one per pass; what did move (down to the min
    watermark) is in pgmigrate_success, less than the block held."""
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(256 << 20, 0, id="d")
    for b in (32, 33):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
    k = m.kernel
    rounds = 0

    def wait() -> bool:  # each retry round of the offline; a signal after 5
        nonlocal rounds
        rounds += 1
        return rounds >= 5

    m.tmpfs_write("f", 32768 * 4096, 0)  # one block's worth of page cache
    try:  # then everything else that can be taken
        while True:
            m.fill(4096, node=0)
    except AllocError:
        pass
    before = dict(parse(m.sysfs.read(PROC_VMSTAT).decode()))
    k.hotplug.retry_wait = wait
    blocks = [b for b in (33, 32) if k.pa.owners_in(range(b, b + 1))]
    with pytest.raises(OSError):
        for b in blocks:
            m.sysfs.write(f"{MEM}/memory{b}/state", b"offline")
    after = dict(parse(m.sysfs.read(PROC_VMSTAT).decode()))
    assert after["pgmigrate_fail"] - before["pgmigrate_fail"] == rounds
    assert 0 < after["pgmigrate_success"] - before["pgmigrate_success"] < 32768
