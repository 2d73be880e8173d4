"""Room to migrate to (memhp/host/room.py): ``memhp why`` and ``memhp remove --dry-run``.

The estimate is checked three ways: its figures on a simulated machine; against the
model's own offline_pages() (where the estimate says there is no room by more than
its error, the offline keeps retrying until interrupted; where it says there is room,
the offline succeeds); and against Debian's 6.1 and 6.12 in QEMU, where memhp ran
inside the guest (tests/scenarios/why-no-room.toml): same verdicts, close figures.
"""

from __future__ import annotations

import json
import re

import pytest

from memhp.abi.layout import PAGE_SIZE
from memhp.bench.recording import recording_path
from memhp.bench.scenario import load_scenario
from memhp.cli.main import run_with_sysfs
from memhp.host.diagnose import diagnose
from memhp.host.errors import sysfs_error
from memhp.host.remove import remove_device
from memhp.host.room import Room, available_pages, room_for
from memhp.host.root import SysfsRoot
from memhp.kernel.mm.mmzone import ZoneType
from memhp.sim.machine import SimMachine, WorkloadMix
from tests.bench.test_diff_units import RECORDINGS
from tests.conftest import machine
from tests.support.replay import replay
from tests.support.sim import fill_kernel_zone

MEM = "/sys/devices/system/memory"
SCENARIO = "tests/scenarios/why-no-room.toml"


def _dimm_machine(fill_mib: int, more_mib: int = 0) -> SimMachine:
    """qemu-linux-6.1 with a 512M DIMM on node 0 onlined movable (blocks 32-35), a
    tmpfs file of ``fill_mib`` and, when given, a second one of ``more_mib``."""
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(512 << 20, 0, id="d")
    for b in range(32, 36):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
    m.tmpfs_write("a", fill_mib << 20, 0)
    if more_mib:
        m.tmpfs_write("b", more_mib << 20, 0)
    return m


def _why(m: SimMachine, block: int) -> dict[str, object]:
    rc, out, err = run_with_sysfs(["why", str(block), "-J"], m.sysfs)
    assert rc == 0, err
    doc = json.loads(out)
    assert isinstance(doc, dict)
    return doc


def test_room_figures_follow_meminfo_and_kpageflags() -> None:
    m = _dimm_machine(448)
    d = _why(m, 35)
    room = d["room"]
    assert isinstance(room, dict) and isinstance(d["pages"], dict)
    pages = d["pages"]
    assert room["to_migrate_bytes"] == pages.get("lru", 0) * PAGE_SIZE
    assert room["free_inside_bytes"] == pages.get("free", 0) * PAGE_SIZE
    avail = available_pages(SysfsRoot(m.sysfs, "sim"))
    assert avail is not None and avail[1] == "MemAvailable"
    assert room["available_elsewhere_bytes"] == (avail[0] - pages.get("free", 0)) * PAGE_SIZE
    assert room["enough"] is True and d["offlinable"] is True


def test_no_room_makes_the_verdict_and_says_what_to_do() -> None:
    m = _dimm_machine(448, 768)
    rc, out, _ = run_with_sysfs(["why", "35"], m.sysfs)
    assert rc == 0
    assert "verdict:          cannot be offlined" in out
    assert re.search(r"room: +\d+\.\d MiB to migrate, about \d+\.\d MiB available elsewhere", out)
    assert "offline_pages() would keep retrying until interrupted (EINTR)" in out
    assert "free memory elsewhere" in out
    rc, out, _ = run_with_sysfs(["remove", "PNP0C80:00", "--dry-run"], m.sysfs)
    assert rc == 0
    assert "room: " in out and "warning: its blocks hold" in out
    # the dry run changed nothing
    assert m.sysfs.read(f"{MEM}/memory35/state") == b"online\n"


def test_an_offline_block_has_no_room_line() -> None:
    m = _dimm_machine(64)
    m.sysfs.write(f"{MEM}/memory35/state", b"offline")
    d = _why(m, 35)
    assert d["room"] is None


def test_without_meminfo_there_is_no_estimate() -> None:
    class NoMeminfo(SysfsRoot):
        def read_str(self, path: str) -> str:
            if path == "/proc/meminfo":
                raise sysfs_error("read", path, OSError(2, "No such file or directory"))
            return super().read_str(path)

    m = _dimm_machine(64)
    assert available_pages(NoMeminfo(m.sysfs, "sim")) is None


class Unflagged(SysfsRoot):
    """The first ``n`` kpageflags entries read show no flag at all (free pages on
    the per-CPU lists look like that; so do the kernel's alloc_pages() pages)."""

    def __init__(self, fs: object, n: int) -> None:
        super().__init__(fs, "sim")  # type: ignore[arg-type]
        self.n = n

    def read_at(self, path: str, offset: int, size: int) -> bytes:
        data = super().read_at(path, offset, size)
        if path == "/proc/kpageflags":
            data = bytes(8 * self.n) + data[8 * self.n :]
        return data


def test_unflagged_pages_in_zone_movable_are_no_kernel_pages() -> None:
    """Seen on Debian's 6.1 (why-no-room.toml): ~1,000-3,000 pages without a flag in a
    ZONE_MOVABLE block being filled with tmpfs pages; the kernel cannot put its own
    allocations there, so they do not make the verdict."""
    m = _dimm_machine(448)
    root = Unflagged(m.sysfs, 1000)
    d = diagnose(root, 35)
    assert d.pages is not None and d.pages["other"] == 1000
    assert d.offlinable, d.reasons
    assert any("no flag memhp classifies" in r for r in d.reasons)
    assert d.room is not None and d.room.to_migrate == d.pages.get("lru", 0) + 1000
    assert remove_device(root, "PNP0C80:00", dry_run=True).room is not None
    # in a kernel zone they may be the kernel's: they still make the verdict
    k = SimMachine(machine("qemu-linux-6.1"))
    k.device_add(512 << 20, 0, id="d")
    for b in range(32, 36):
        k.sysfs.write(f"{MEM}/memory{b}/state", b"online_kernel")
    dk = diagnose(Unflagged(k.sysfs, 1000), 35)
    assert not dk.offlinable
    assert any("1000 unflagged kernel pages" in r for r in dk.reasons)


def test_room_arithmetic() -> None:
    r = Room(to_migrate=100, free_inside=30, available=120, source="MemAvailable")
    assert r.elsewhere == 90 and not r.enough
    assert Room(10, 200, 100, "MemFree").elsewhere == 0


@pytest.mark.parametrize(("more", "offlines"), [(256, True), (832, False)])
def test_the_estimate_agrees_with_offline_pages(more: int, offlines: bool) -> None:
    """The model's offline_pages() of block 35: it goes where the estimate says there
    is room, and keeps retrying (EINTR at the timeout) where it says there is none
    by more than the estimate's error (the zones' high less min watermarks)."""
    m = _dimm_machine(448, more)
    d = _why(m, 35)
    room = d["room"]
    assert isinstance(room, dict)
    assert room["enough"] is offlines
    if not offlines:
        k = m.kernel
        k.pa.ensure_watermarks()
        slack = sum(
            z.watermark_high - z.watermark_min for pg in k.pgdats.values() for z in pg.node_zones
        )
        short = (room["to_migrate_bytes"] - room["available_elsewhere_bytes"]) // PAGE_SIZE
        assert short > slack, "not a clear case: make the second file bigger"
    _offline_agrees(m, 35, offlines)


def _offline_agrees(m: SimMachine, block: int, offlines: bool) -> None:
    """The model's offline_pages() of ``block`` (memhp offline, 1 s timeout) does what
    the estimate said: goes offline, or keeps retrying until interrupted."""
    rc, _, err = run_with_sysfs(["offline", "-b", str(block), "--timeout", "1"], m.sysfs)
    state = m.sysfs.read(f"{MEM}/memory{block}/state").decode().strip()
    if offlines:
        assert rc == 0 and state == "offline", err
    else:
        assert rc != 0 and "Interrupted system call" in err and state == "online", err


def _real_runs() -> list[str]:
    sc = load_scenario(SCENARIO)
    return [k for k in sc.kernels if _exists(sc.for_kernel(k))]


def _exists(sc: object) -> bool:
    import os

    return os.path.exists(recording_path(sc, RECORDINGS))  # type: ignore[arg-type]


def _mib(text: str, what: str) -> float:
    m = re.search(rf"([\d.]+) MiB {what}", text)
    assert m, (what, text)
    return float(m.group(1))


def _verdict(out: str) -> list[str]:
    """The verdict line and whether there is a warning (its figures differ)."""
    return [
        ln.strip() if "verdict:" in ln else "warning"
        for ln in out.splitlines()
        if "verdict:" in ln or ln.startswith("warning")
    ]


@pytest.mark.parametrize("kernel", _real_runs())
def test_verdicts_and_figures_are_the_real_guests(kernel: str) -> None:
    rec, steps = replay(SCENARIO, kernel, lambda _m, sr: sr.model.detail)
    model = dict(steps)
    for name in ("why-room", "why-no-room", "dry-run"):
        out = rec.steps[name].output
        assert out is not None and out.rc == 0, (name, out)
        real, mine = out.stdout, model[name]
        assert _verdict(real) == _verdict(mine), (name, real, mine)
        # the pages to migrate: where each side's allocator put the files; the guest's
        # own movable pages (memhp's Python files read over 9p, ~10 MiB of page cache,
        # the agent) land in ZONE_MOVABLE too.  The room: MemAvailable of each side
        # (6.1's guest had 27 MiB less than the model after the first file and 40 MiB
        # less after the second: its user space and memhp's page cache; 6.12's 0 and
        # 15 MiB), less each side's free pages in the block.
        assert abs(_mib(real, "to migrate") - _mib(mine, "to migrate")) <= 32, (name, real, mine)
        assert abs(_mib(real, "available") - _mib(mine, "available")) <= 64, (name, real, mine)


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_verdicts_foretell_the_offlines_on_the_real_kernel(kernel: str) -> None:
    """tests/scenarios/why-kernel-zone.toml: memhp why of three ZONE_NORMAL blocks in
    the guest and on the model, then their offline.  On each side every verdict is
    what the offline then does (can be offlined: ok; cannot: EBUSY), and the two
    sides agree.  (On Debian's 6.1 and 6.12: memory32, with the file's slab pages and
    page tables, cannot; memory33, all page cache, and memory35, all free, can.)"""
    rec, steps = replay(
        "tests/scenarios/why-kernel-zone.toml",
        kernel,
        lambda _m, sr: (sr.model.outcome, sr.model.detail),
    )
    model = dict(steps)
    for block in (32, 33, 35):
        out = rec.steps[f"why-{block}"].output
        assert out is not None
        real_verdict, model_verdict = _verdict(out.stdout), _verdict(model[f"why-{block}"][1])
        assert real_verdict == model_verdict, (block, out.stdout, model[f"why-{block}"][1])
        offline = f"write-memory{block}/state=offline"
        real_outcome = rec.steps[offline].result.outcome
        expected = "ok" if real_verdict[0].endswith(" can be offlined") else "EBUSY"
        assert real_outcome == expected, (block, real_verdict, real_outcome)
        assert model[offline][0] == expected, (block, model_verdict, model[offline][0])


OTHER_NODE = "tests/scenarios/why-other-node-full.toml"


def _other_node_machine(fill0_mib: int) -> SimMachine:
    """qemu-linux-6.1 with a 512M DIMM on node 1 onlined movable (blocks 32-35), a 128M
    tmpfs file on node 1 (memory32) and one of ``fill0_mib`` on node 0."""
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(512 << 20, 1, id="d")
    for b in range(32, 36):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
    m.tmpfs_write("a", 128 << 20, 1)
    m.tmpfs_write("b", fill0_mib << 20, 0)
    return m


@pytest.mark.parametrize(("fill0", "offlines"), [(500, True), (730, False)])
def test_room_is_on_the_other_nodes_only(fill0: int, offlines: bool) -> None:
    """do_migrate_range()'s nodemask: memory32's pages (node 1) may go to node 0 only,
    so the room is node 0's, zone by zone from /proc/zoneinfo, although MemAvailable
    counts node 1's three free blocks (384 MiB); the model's offline_pages() agrees
    (retries until interrupted where there is no room on node 0)."""
    m = _other_node_machine(fill0)
    room = _why(m, 32)["room"]
    assert isinstance(room, dict)
    assert room["nodes"] == [0] and room["kernel_only"] is False
    assert room["free_inside_bytes"] == 0 and room["to_migrate_bytes"] == 128 << 20
    avail = available_pages(SysfsRoot(m.sysfs, "sim"))
    assert avail is not None and avail[0] * PAGE_SIZE > 384 << 20  # (it would say: enough)
    assert room["enough"] is offlines
    _offline_agrees(m, 32, offlines)


def test_a_kernel_zones_room_leaves_zone_movable_out() -> None:
    """A ZONE_NORMAL block's pages are asked for without __GFP_HIGHMEM: with node 0's
    DMA32 full, a free ZONE_MOVABLE (the DIMM's other blocks, counted by MemAvailable)
    is no room; memhp why says so and the model's offline keeps retrying."""
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(512 << 20, 0, id="d")
    m.sysfs.write(f"{MEM}/memory32/state", b"online_kernel")
    for b in range(33, 36):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
    m.fill(4000, start=32 << 27, end=33 << 27, owner="app")
    fill_kernel_zone(m, 0, ZoneType.DMA32)
    d = _why(m, 32)
    room = d["room"]
    assert isinstance(room, dict) and room["kernel_only"] is True and room["nodes"] is None
    assert room["enough"] is False
    rc, out, _ = run_with_sysfs(["why", "32"], m.sysfs)
    assert rc == 0 and "only to kernel zones" in out
    _offline_agrees(m, 32, False)


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_other_node_verdicts_are_the_real_guests(kernel: str) -> None:
    """tests/scenarios/why-other-node-full.toml: memhp why and remove --dry-run in the
    guest and on the model give the same verdicts, with node 0's room within 64 MiB."""
    rec, steps = replay(OTHER_NODE, kernel, lambda _m, sr: sr.model.detail)
    model = dict(steps)
    for name in ("why-32", "dry-run"):
        out = rec.steps[name].output
        assert out is not None and out.rc == 0, (name, out)
        real, mine = out.stdout, model[name]
        assert _verdict(real) == _verdict(mine), (name, real, mine)
        assert "the kernel migrates them only to node 0" in real and real.count("node 0") == (
            mine.count("node 0")
        )
        assert abs(_mib(real, "to migrate") - _mib(mine, "to migrate")) <= 32, (name, real, mine)
        assert abs(_mib(real, "available") - _mib(mine, "available")) <= 64, (name, real, mine)


def test_a_kernel_zone_block_of_no_known_node_has_the_memavailable_room() -> None:
    """Without the block's node (no nodeN link, or several) the kernel's limits cannot
    be placed: MemAvailable less the block's free pages, as on a machine without
    them (it used to stop the tool on an assertion)."""
    m = _dimm_machine(64)
    root = SysfsRoot(m.sysfs, "sim")
    room = room_for(root, [{"lru": 100, "free": 30}], node=None, kernel_zone=True)
    avail = available_pages(root)
    assert room is not None and avail is not None
    assert (room.available, room.source, room.free_inside) == (avail[0], avail[1], 30)
    assert room.nodes is None and room.kernel_only is False


def _mixed_machine(kernel_mib: int, movable_mib: int, room_mib: int) -> SimMachine:
    """qemu-linux-6.1, DIMM d1 (blocks 32-35: memory32 online_kernel with ``kernel_mib``
    of user pages, 33-35 online_movable, ``movable_mib`` in memory33) and DIMM d2
    (blocks 36-39, online_movable, free); node 0's DMA32 full to its GFP_KERNEL
    watermark but for ``room_mib``: the kernel zones' room outside d1."""
    m = SimMachine(machine("qemu-linux-6.1"))
    for dev in ("d1", "d2"):
        m.device_add(512 << 20, 0, id=dev)
    m.sysfs.write(f"{MEM}/memory32/state", b"online_kernel")
    for b in range(33, 40):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
    m.fill(kernel_mib << 8, start=32 << 27, end=33 << 27, owner="app")
    m.fill(movable_mib << 8, start=33 << 27, end=34 << 27, owner="app")
    kept = m.fill(room_mib << 8, node=0, zone="DMA32", mix=WorkloadMix(unmovable=1.0))
    fill_kernel_zone(m, 0, ZoneType.DMA32)
    m.free(kept)
    return m


@pytest.mark.parametrize(
    ("kernel_mib", "movable_mib", "enough"), [(40, 100, True), (120, 20, False)]
)
def test_a_device_in_both_kinds_of_zone_has_two_rooms(
    kernel_mib: int, movable_mib: int, enough: bool
) -> None:
    """memhp remove --dry-run of a device with a ZONE_NORMAL block and ZONE_MOVABLE
    blocks: the kernel-zone block's pages need room in kernel zones (here ~80 MiB in
    DMA32), all the pages room anywhere (d2's free ZONE_MOVABLE too).  The estimate
    used to count all of them against the kernel zones ("cannot" for 40 + 100 MiB);
    the model's removal agrees with both verdicts."""
    m = _mixed_machine(kernel_mib, movable_mib, 80)
    root = SysfsRoot(m.sysfs, "sim")
    room = remove_device(root, "PNP0C80:00", dry_run=True).room
    assert room is not None and room.kernel_part is not None
    assert room.kernel_only is False and room.kernel_part.kernel_only is True
    assert room.to_migrate * PAGE_SIZE >> 20 == kernel_mib + movable_mib
    assert room.kernel_part.to_migrate * PAGE_SIZE >> 20 == kernel_mib
    assert 60 <= room.kernel_part.elsewhere * PAGE_SIZE >> 20 <= 100
    assert room.elsewhere * PAGE_SIZE >> 20 > 400  # d2's ZONE_MOVABLE counts here
    assert room.enough is enough
    rc, out, _ = run_with_sysfs(["remove", "PNP0C80:00", "--dry-run"], m.sysfs)
    assert rc == 0 and "of those, from blocks in kernel zones:" in out
    assert ("its blocks in kernel zones hold" in out) is not enough
    rc, _, err = run_with_sysfs(["remove", "PNP0C80:00", "--timeout", "1"], m.sysfs)
    assert (rc == 0) is enough, err
    if not enough:
        assert "Interrupted system call" in err
