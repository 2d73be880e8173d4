"""Faults: the model and the tool fail cleanly and converge (issue 9).

* allocation failures while hot-adding, a device whose _EJ0 fails;
* ``memhp remove`` interrupted (SIGINT-like) or killed (SIGKILL-like) at every
  sysfs write, then rerun: it converges to the same end state;
* a root that disappears gives one clear error;
* writes without privileges fail cleanly; the FUSE mount is private.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memhp.abi.fs import DirectoryFS, Stat
from memhp.abi.tree import capture, write_tree
from memhp.host.errors import SysfsError
from memhp.host.remove import remove_device
from memhp.host.root import SysfsRoot
from memhp.kernel.drivers.base.memory import MemState
from memhp.kernel.invariants import check_invariants
from memhp.kernel.mm.page_alloc import PageState
from memhp.sim.machine import SimMachine, WorkloadMix
from tests.conftest import ROOT, machine

MEM = "/sys/devices/system/memory"
MiB = 1 << 20
GiB = 1 << 30


def structure(m: SimMachine) -> tuple[object, ...]:
    k = m.kernel
    return (
        sorted(k.memory.blocks),
        sorted(k.nodes.registered_nodes),
        [(e.index, e.start, e.end) for e in k.fwmap.entries],
        [(d.name, d.bound, tuple(d.physical_nodes)) for d in k.acpi.devices],
    )


# ------------------------------------------------------------------ model faults
def test_no_room_for_the_memmap_fails_the_hot_add_cleanly() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    k = m.kernel
    # Leave almost nothing the kernel could use for a new memmap.
    k.pa.ensure_watermarks()
    hi = k.pa.highest_zoneidx(PageState.UNMOVABLE)  # each zone down to min + lowmem_reserve
    room = sum(max(0, k.pa.watermark_room(z, hi)) for z in k.pa.zonelist(0, PageState.UNMOVABLE))
    m.fill(room, node=0, mix=WorkloadMix(unmovable=1.0), owner="hog")
    before = structure(m)
    m.device_add(1 * GiB, 1, id="big")
    check_invariants(k)
    assert structure(m) == before  # no blocks, no node, no firmware entry
    # (acpi_scan_device_check() ignores the handler's attach error: _OST success, as
    # both real kernels report a DIMM they could not add: qmp-backends-and-ids runs)
    ost = m.platform.events[-1].data["info"]
    assert ost["source"] == 1 and ost["status"] == 0  # type: ignore[index]
    assert any("add_memory" in e.detail and "failed" in e.detail for e in k.events)


def test_page_table_allocation_failure_falls_back_then_fails_cleanly() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    k = m.kernel
    k.pgtables.fail_page_alloc_min_order = 9  # no 2 MiB blocks: vmemmap falls back to 4 KiB
    m.device_add(256 * MiB, 1, id="d")
    check_invariants(k)
    assert 32 in k.memory.blocks
    assert m.sysfs.write("/sys/bus/acpi/devices/PNP0C80:00/eject", b"1") == 1
    check_invariants(k)
    assert 32 not in k.memory.blocks


def test_ej0_failure_is_reported_and_leaves_a_consistent_machine() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(256 * MiB, 1, id="d")
    m.platform.slots[0].ej0_fail = True
    m.sysfs.write("/sys/bus/acpi/devices/PNP0C80:00/eject", b"1")
    check_invariants(m.kernel)
    # acpi_bus_trim() ran before _EJ0: the memory is gone from Linux, the DIMM is not.
    assert 32 not in m.kernel.memory.blocks
    assert m.platform.slot_of("d") is not None
    ost = m.platform.events[-1].data["info"]
    assert ost["status"] == 1  # type: ignore[index]  # ACPI_OST_SC_NON_SPECIFIC_FAILURE
    # the platform can retry once the firmware is fixed
    m.platform.slots[0].ej0_fail = False
    m.device_del("d")
    check_invariants(m.kernel)


# ------------------------------------------------------------------ tool under faults
class Killed(BaseException):
    """The process died (SIGKILL): nothing after this runs."""


class FaultyFS:
    """A SysfsFS that dies or is interrupted at its ``at``-th write."""

    def __init__(self, inner: object, at: int, kind: str) -> None:
        self.inner = inner
        self.at = at
        self.kind = kind
        self.writes = 0
        self.dead = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def lstat(self, path: str) -> Stat:
        if self.dead:
            raise Killed()
        return self.inner.lstat(path)  # type: ignore[attr-defined, no-any-return]

    def write(self, path: str, data: bytes) -> int:
        if self.dead:
            raise Killed()
        self.writes += 1
        if self.writes == self.at:
            if self.kind == "kill":
                self.dead = True
                raise Killed()
            raise KeyboardInterrupt()
        return self.inner.write(path, data)  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize("kind", ["sigint", "kill"])
def test_remove_interrupted_at_every_write_then_rerun_converges(kind: str) -> None:
    # How many writes does an undisturbed remove make?
    ref = SimMachine(machine("seed"))
    ref.device_add(512 * MiB, 1, id="dimm1", addr=1 * GiB)
    for b in range(8, 12):
        ref.sysfs.write(f"{MEM}/memory{b}/state", b"online")
    counting = FaultyFS(ref.sysfs, at=10**9, kind=kind)
    res = remove_device(SysfsRoot(counting), "PNP0C80:00", timeout=2, sleep=lambda _s: None)  # type: ignore[arg-type]
    assert res.removed
    end = structure(ref)
    for at in range(1, counting.writes + 1):
        m = SimMachine(machine("seed"))
        m.device_add(512 * MiB, 1, id="dimm1", addr=1 * GiB)
        for b in range(8, 12):
            m.sysfs.write(f"{MEM}/memory{b}/state", b"online")
        fs = FaultyFS(m.sysfs, at=at, kind=kind)
        with pytest.raises((Killed, KeyboardInterrupt)):
            remove_device(SysfsRoot(fs), "PNP0C80:00", timeout=2, sleep=lambda _s: None)  # type: ignore[arg-type]
        check_invariants(m.kernel)
        # rerun, undisturbed: same end state as the undisturbed run
        if m.platform.slot_of("dimm1") is not None:
            res = remove_device(SysfsRoot(m.sysfs), "PNP0C80:00", timeout=2, sleep=lambda _s: None)
            assert res.removed, (at, res.message)
        check_invariants(m.kernel)
        assert structure(m) == end, at


def test_remove_rolls_back_and_reports_the_block_that_cannot_go() -> None:
    m = SimMachine(machine("seed"))
    m.device_add(512 * MiB, 1, id="dimm1", addr=1 * GiB)
    for b in range(8, 12):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online")
    m.fill(10, start=(10 << 27), end=(11 << 27), mix=WorkloadMix(unmovable=1.0), owner="driver")
    res = remove_device(SysfsRoot(m.sysfs), "PNP0C80:00", timeout=0.1, sleep=lambda _s: None)
    # memory10 holds the driver's pages; memory8 holds memory10's page_cgroup
    assert not res.removed and sorted(f.index for f in res.failures) == [8, 10]
    assert all(f.error.errno == errno.EBUSY for f in res.failures)
    assert all(m.kernel.memory.blocks[b].state is MemState.MEM_ONLINE for b in range(8, 12))
    check_invariants(m.kernel)


# ------------------------------------------------------------------ root disappearing
class GoneFS:
    """A FUSE mount whose daemon died: every call fails with ENOTCONN."""

    def _fail(self, path: str) -> OSError:
        return OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN), path)

    def lstat(self, path: str) -> Stat:
        raise self._fail(path)

    def listdir(self, path: str) -> list[str]:
        raise self._fail(path)

    def read(self, path: str) -> bytes:
        raise self._fail(path)

    def read_at(self, path: str, offset: int, size: int) -> bytes:
        raise self._fail(path)

    def write(self, path: str, data: bytes) -> int:
        raise self._fail(path)

    def readlink(self, path: str) -> str:
        raise self._fail(path)


def test_root_gone_gives_a_clear_error() -> None:
    from memhp.host.memory import read_blocks

    with pytest.raises(SysfsError) as ei:
        read_blocks(SysfsRoot(GoneFS()))
    assert ei.value.errno == errno.ENOTCONN
    assert "Transport endpoint is not connected" in str(ei.value)


def test_cli_on_a_vanished_root(tmp_path: Path) -> None:
    gone = tmp_path / "mnt"
    r = subprocess.run(
        [sys.executable, "-m", "memhp.cli.main", "offline", "-b", "3", "--sysroot", str(gone)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and str(gone) in r.stderr
    assert "No such file or directory" in r.stderr


# ------------------------------------------------------------------ permissions
def _as_nobody() -> list[str] | None:
    if os.geteuid() != 0:
        return None
    for tool in ("setpriv", "runuser"):
        if shutil.which(tool):
            if tool == "setpriv":
                return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            return ["runuser", "-u", "nobody", "--"]
    return None


@pytest.mark.skipif(
    _as_nobody() is None, reason="needs root and setpriv/runuser to drop privileges"
)
def test_writes_without_privileges_fail_cleanly() -> None:
    import tempfile

    m = SimMachine(machine("qemu-linux-6.1"))
    top = Path(tempfile.mkdtemp(prefix="memhp-perm-", dir="/tmp"))
    tree = top / "tree"
    write_tree(capture(m.sysfs), str(tree))
    os.chmod(top, 0o755)
    for p in tree.rglob("*"):
        if p.is_dir() and not p.is_symlink():
            os.chmod(p, 0o755)
    prefix = _as_nobody()
    assert prefix is not None
    before = (tree / "sys/devices/system/memory/memory3/state").read_text()
    r = subprocess.run(
        [
            *prefix,
            sys.executable,
            "-m",
            "memhp.cli.main",
            "offline",
            "-b",
            "3",
            "--sysroot",
            str(tree),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert r.returncode == 1, r.stderr
    assert "Permission denied" in r.stderr and "Traceback" not in r.stderr
    assert (tree / "sys/devices/system/memory/memory3/state").read_text() == before
    shutil.rmtree(top)


def test_directory_root_reports_errno_and_path(tmp_path: Path) -> None:
    (tmp_path / "sys").mkdir()
    fs = DirectoryFS(str(tmp_path))
    with pytest.raises(OSError) as ei:
        fs.read("/sys/devices/system/memory/block_size_bytes")
    assert ei.value.errno == errno.ENOENT


@pytest.mark.skipif(
    _as_nobody() is None, reason="needs root and setpriv/runuser to drop privileges"
)
def test_fuse_mount_is_private_to_its_user() -> None:
    import tempfile

    from memhp.sim.fuse import fuse_unavailable_reason

    reason = fuse_unavailable_reason()
    if reason is not None:
        pytest.skip(f"FUSE unavailable: {reason}")
    top = Path(tempfile.mkdtemp(prefix="memhp-priv-", dir="/tmp"))
    os.chmod(top, 0o755)
    mnt = top / "m"
    mnt.mkdir()
    os.chmod(mnt, 0o755)
    cli = [sys.executable, "-m", "memhp.cli.main", "sim"]
    machine_file = os.path.join(ROOT, "machines", "qemu-linux-6.1.toml")
    subprocess.run(
        [*cli, "start", machine_file, "--mount", str(mnt)],
        check=True,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    try:
        assert (mnt / "sys/devices/system/memory/block_size_bytes").read_text() == "8000000\n"
        prefix = _as_nobody()
        assert prefix is not None
        r = subprocess.run(
            [*prefix, "cat", str(mnt / "sys/devices/system/memory/block_size_bytes")],
            capture_output=True,
            text=True,
        )
        assert r.returncode != 0 and "Permission denied" in r.stderr
    finally:
        subprocess.run([*cli, "stop", str(mnt)], cwd=ROOT, capture_output=True, timeout=60)
        shutil.rmtree(top, ignore_errors=True)
