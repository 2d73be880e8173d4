"""A live simulated machine mounted with FUSE: what Linux programs see through it.

One daemon (``memhp sim start``, detached) per module serves the QEMU guest of
the reference at a temporary directory, with a QMP socket to drive its
hardware.  Tests that change the machine put it back as they found it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memhp.abi.fs import DirectoryFS
from memhp.abi.tree import capture, diff, write_tree
from memhp.sim.config import load_machine
from memhp.sim.fuse import fuse_unavailable_reason, is_fuse_mount
from memhp.sim.machine import SimMachine

REPO = Path(__file__).resolve().parents[2]
MACHINE = str(REPO / "machines" / "qemu-linux-6.1.toml")

_reason = fuse_unavailable_reason()
pytestmark = [
    pytest.mark.fuse,
    pytest.mark.skipif(_reason is not None, reason=f"FUSE unavailable: {_reason}"),
]

MEM = "sys/devices/system/memory"


class Sim:
    """A running daemon: its mount point and a synchronous QMP connection."""

    def __init__(self, mount: Path, qmp_path: Path) -> None:
        from qemu.qmp.legacy import QEMUMonitorProtocol

        self.mount = mount
        self.qmp = QEMUMonitorProtocol(str(qmp_path))
        self.qmp.connect(negotiate=True)
        self.n_dimms = 0

    def cmd(self, name: str, **args: object) -> dict[str, Any]:
        reply: dict[str, Any] = self.qmp.cmd_raw(name, args)  # raw reply dict
        return reply

    def ok(self, name: str, **args: object) -> object:
        r = self.qmp.cmd_raw(name, args)
        assert "return" in r, r
        return r["return"]

    def path(self, rel: str) -> Path:
        return self.mount / rel

    def read(self, rel: str) -> str:
        return self.path(rel).read_text()

    def hotadd(self, size: int, node: int) -> str:
        self.n_dimms += 1
        dev = f"tdimm{self.n_dimms}"
        self.ok(
            "object-add",
            **{"qom-type": "memory-backend-ram", "id": f"tmem{self.n_dimms}", "size": size},
        )
        self.ok("device_add", driver="pc-dimm", id=dev, memdev=f"tmem{self.n_dimms}", node=node)
        return dev

    def unplug(self, dev: str) -> None:
        self.ok("device_del", id=dev)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            devs = self.ok("query-memory-devices")
            assert isinstance(devs, list)
            if all(d["data"]["id"] != dev for d in devs):
                return
            time.sleep(0.01)
        raise AssertionError(f"{dev} not removed")


def sh(cmd: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload, no-any-return]


@contextlib.contextmanager
def running(base: Path) -> Iterator[Sim]:
    """A daemon of MACHINE mounted at ``base/root`` (QMP at ``base/qmp.sock``), with
    the environment of now; stopped and unmounted at the end."""
    from memhp.sim.daemon import start, stop

    mount = base / "root"
    mount.mkdir()
    qmp = base / "qmp.sock"
    start(MACHINE, str(mount), str(qmp))
    s: Sim | None = None
    try:
        s = Sim(mount, qmp)
        yield s
    finally:
        if s is not None:
            s.qmp.close()
        stop(str(mount))
    assert not is_fuse_mount(str(mount))


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    with running(tmp_path_factory.mktemp("fuse")) as s:
        yield s


def _fresh_snapshot() -> dict[str, object]:
    return capture(SimMachine(load_machine(MACHINE)).sysfs)  # type: ignore[return-value]


def _assert_eacces_per_mode(mem: Path, exact: bool) -> None:
    """EACCES for a direction an attribute lacks: from the open(2) with answered opens
    (``exact``), else from the read(2) or write(2) after an open that succeeds."""
    for name, flags in (("hard_offline_page", os.O_RDONLY), ("block_size_bytes", os.O_WRONLY)):
        if exact:
            with pytest.raises(PermissionError):
                os.close(os.open(mem / name, flags))
            continue
        fd = os.open(mem / name, flags)
        try:
            with pytest.raises(PermissionError):
                if flags == os.O_RDONLY:
                    os.read(fd, 64)
                else:
                    os.write(fd, b"1")
        finally:
            os.close(fd)


# ------------------------------------------------------------------ the tree
def test_tree_equals_in_process_model(sim: Sim) -> None:
    live = capture(DirectoryFS(str(sim.mount)))
    ref = capture(SimMachine(load_machine(MACHINE)).sysfs)
    assert diff(ref, live) == []
    assert {p: e.mode for p, e in live.items()} == {p: e.mode for p, e in ref.items()}


def test_modes_sizes_and_links(sim: Sim) -> None:
    st = os.lstat(sim.path(f"{MEM}/memory1/state"))
    # st_size is the text's length (sysfs says 4096; the mount's page cache needs it)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644 and st.st_size == 7
    assert stat.S_IMODE(os.lstat(sim.path(f"{MEM}/block_size_bytes")).st_mode) == 0o444
    assert stat.S_IMODE(os.lstat(sim.path(f"{MEM}/hard_offline_page")).st_mode) == 0o200
    assert st.st_uid == os.getuid()
    link = sim.path(f"{MEM}/memory1/node0")
    assert os.path.islink(link) and os.readlink(link) == "../../node/node0"
    assert (sim.path("sys/devices/system/node/node0/memory1/state")).read_text() == "online\n"
    assert os.path.samefile(
        sim.path("sys/devices/system/node/node0/memory1"), sim.path(f"{MEM}/memory1")
    )
    assert sim.read(f"{MEM}/block_size_bytes") == "8000000\n"
    assert sim.read("proc/meminfo").startswith("MemTotal:")
    with open(sim.path("proc/kpageflags"), "rb") as f:
        f.seek(8 * 256)
        assert len(f.read(64)) == 64
    # A write-only attribute cannot be read, a read-only one cannot be written
    # (kernfs_fop_open(), for root too: KERNFS_ROOT_EXTRA_OPEN_PERM_CHECK): at open(2)
    # with answered opens (the default), at the read(2) or write(2) in fast mode
    _assert_eacces_per_mode(sim.path(MEM), os.environ.get("MEMHP_FUSE_FAST") != "1")
    os.close(os.open(sim.path(f"{MEM}/hard_offline_page"), os.O_WRONLY))
    with pytest.raises(PermissionError):
        sim.path(f"{MEM}/hard_offline_page").read_bytes()
    r = sh(f"echo 1 > {sim.path(MEM)}/block_size_bytes")
    assert r.returncode != 0 and "Permission denied" in r.stderr
    with pytest.raises(FileNotFoundError):
        sim.path(f"{MEM}/memory99/state").read_text()


def test_reads_are_live(sim: Sim) -> None:
    p = sim.path(f"{MEM}/memory1/state")
    assert p.read_text() == "online\n"
    p.write_text("offline")
    assert p.read_text() == "offline\n"
    assert sh(f"cat {p}").stdout == "offline\n"
    p.write_text("online")
    assert p.read_text() == "online\n"


def _pread(fd: int) -> bytes:
    return os.pread(fd, 65536, 0)


def test_open_descriptors_see_writes(sim: Sim) -> None:
    """procps keeps /proc/meminfo open and re-reads it at 0; scripts do the same with
    sysfs attributes: a descriptor kept across a write reads the new text."""
    state = sim.path(f"{MEM}/memory1/state")
    fds = {
        "meminfo": os.open(sim.path("proc/meminfo"), os.O_RDONLY),
        "state": os.open(state, os.O_RDONLY),
        "writer": os.open(state, os.O_RDWR),  # the written descriptor itself
    }
    try:
        before = {k: _pread(fd) for k, fd in fds.items()}
        assert before["state"] == before["writer"] == b"online\n"
        os.write(fds["writer"], b"offline")
        try:
            after = {k: _pread(fd) for k, fd in fds.items()}
            assert after["state"] == after["writer"] == b"offline\n"
            assert after["meminfo"] == sim.path("proc/meminfo").read_bytes()
            assert after["meminfo"] != before["meminfo"]  # MemTotal, MemFree went down
            os.lseek(fds["state"], 0, os.SEEK_SET)  # lseek + read, as top does
            assert os.read(fds["state"], 4096) == b"offline\n"
        finally:
            state.write_text("online")
        assert {k: _pread(fd) for k, fd in fds.items()} == before
    finally:
        for fd in fds.values():
            os.close(fd)


def test_open_descriptors_see_qmp_commands(sim: Sim) -> None:
    """The same across a QMP command: a hot-added DIMM shows in the _STA of its ACPI
    slot and in the listing of a directory kept open (rewound), before the reply."""
    status = sim.path("sys/bus/acpi/devices/PNP0C80:00/status")
    sta = os.open(status, os.O_RDONLY)
    mem = os.open(sim.path(MEM), os.O_RDONLY | os.O_DIRECTORY)
    try:
        before, names = _pread(sta), set(os.listdir(mem))
        dev = sim.hotadd(512 << 20, 1)
        try:
            assert _pread(sta) == status.read_bytes() != before
            added = {"memory32", "memory33", "memory34", "memory35"}
            assert set(os.listdir(mem)) - names == added
        finally:
            sim.unplug(dev)
        assert _pread(sta) == before
        assert set(os.listdir(mem)) == names
    finally:
        os.close(sta)
        os.close(mem)


# ------------------------------------------------------------------ lsmem
@pytest.mark.skipif(shutil.which("lsmem") is None, reason="util-linux lsmem is not installed")
def test_lsmem_live_equals_captured(sim: Sim, tmp_path: Path) -> None:
    dev = sim.hotadd(512 << 20, 1)
    try:
        sim.path(f"{MEM}/memory33/state").write_text("online_movable")
        copy = tmp_path / "copy"
        write_tree(capture(DirectoryFS(str(sim.mount))), str(copy))
        for opts in ([], ["-a", "-o", "RANGE,SIZE,STATE,REMOVABLE,BLOCK,NODE,ZONES"], ["-J", "-a"]):
            live = subprocess.run(
                ["lsmem", "--sysroot", str(sim.mount), *opts],
                capture_output=True,
                text=True,
                check=True,
            )
            cap = subprocess.run(
                ["lsmem", "--sysroot", str(copy), *opts], capture_output=True, text=True, check=True
            )
            assert live.stdout == cap.stdout
        out = subprocess.run(
            ["lsmem", "--sysroot", str(sim.mount), "-a", "-o", "BLOCK,STATE,ZONES"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines()[1:] if ln.strip()}
        assert rows["33"] == ["online", "Movable"]
        assert rows["32"][0] == "offline"
        assert "Total offline memory:    384M" in out
    finally:
        sim.path(f"{MEM}/memory33/state").write_text("offline")
        sim.unplug(dev)


# ------------------------------------------------------------------ errno of writes
def test_echo_gets_the_models_errno(sim: Sim) -> None:
    mem = sim.path(MEM)
    # memory0 spans DMA and DMA32: offline_pages() refuses with EINVAL (as in the reference).
    r = sh(f"echo offline > {mem}/memory0/state")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    r = sh(f"echo bogus > {mem}/memory1/state")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    # A second offline of an offline block: EINVAL too (state_store: already in that state).
    dev = sim.hotadd(512 << 20, 1)
    try:
        r = sh(f"echo offline > {mem}/memory32/state")
        assert r.returncode != 0 and "Invalid argument" in r.stderr
        # Unmovable pages in an online Normal block: offline fails with EBUSY.
        assert sh(f"echo online_kernel > {mem}/memory32/state").returncode == 0
        fill = sim.ok("x-memhp-fill", pages=1024, start=0x100000000, end=0x108000000, unmovable=1.0)
        assert isinstance(fill, dict)
        r = sh(f"echo offline > {mem}/memory32/state")
        assert r.returncode != 0 and "Device or resource busy" in r.stderr, r
        assert sim.read(f"{MEM}/memory32/state") == "online\n"
        sim.ok("x-memhp-free", allocations=fill["allocations"])
        assert sh(f"echo offline > {mem}/memory32/state").returncode == 0
    finally:
        sim.unplug(dev)


def test_directories_appear_and_vanish(sim: Sim) -> None:
    mem = sim.path(MEM)
    before = set(os.listdir(mem))
    assert not (mem / "memory32").exists()
    assert not sim.path("sys/devices/system/node/node1").exists()
    dev = sim.hotadd(512 << 20, 1)
    after = set(os.listdir(mem))
    assert after - before == {"memory32", "memory33", "memory34", "memory35"}
    assert sim.read(f"{MEM}/memory32/valid_zones") == "Normal Movable\n"
    assert sim.path("sys/devices/system/node/node1/memory35").is_symlink()
    assert sim.path("sys/bus/acpi/devices/PNP0C80:00/physical_node3").is_symlink()
    # An open file of a removed block: further reads fail, as with kernfs.
    f = open(mem / "memory32" / "state", "rb")  # noqa: SIM115
    try:
        sim.unplug(dev)
        assert set(os.listdir(mem)) == before
        assert not (mem / "memory32").exists()
        assert not sim.path("sys/devices/system/node/node1").exists()
        with pytest.raises(OSError) as ei:
            f.read()
        assert ei.value.errno == errno.ENODEV  # kernfs: the node was deactivated
    finally:
        f.close()


def test_sysfs_eject_sends_qemus_events(sim: Sim) -> None:
    """``echo 1 > PNP0C80:00/eject`` removes the DIMM: the QMP events of the reference."""
    dev = sim.hotadd(512 << 20, 1)
    sim.qmp.clear_events()
    sim.path(f"{MEM}/memory33/state").write_text("online")
    assert sim.path(f"{MEM}/memory33/state").exists()  # its entries are now cached
    sim.path("sys/bus/acpi/devices/PNP0C80:00/eject").write_text("1")
    # the write returned: the removed objects are gone at once, cached or not
    assert not sim.path(f"{MEM}/memory33").exists()
    assert not sim.path("sys/devices/system/node/node1").exists()
    assert not sim.path("sys/bus/acpi/devices/PNP0C80:00/physical_node1").is_symlink()
    evs: list[Any] = []
    deadline = time.monotonic() + 5
    while len(evs) < 3 and time.monotonic() < deadline:
        e = sim.qmp.pull_event(wait=1.0)
        # the insertion's OST(1, 0) may still be on its way when the events were cleared
        if e is not None and not (
            e["event"] == "ACPI_DEVICE_OST" and e["data"]["info"].get("source") == 1
        ):
            evs.append(e)
    got = [(e["event"], e["data"]) for e in evs]
    # pc-dimm-hotplug-qmp.txt, after "echo 1 > .../eject": OST(3, 132), DEVICE_DELETED, OST(259, 0).
    assert got == [
        (
            "ACPI_DEVICE_OST",
            {"info": {"device": dev, "source": 3, "status": 132, "slot": "0", "slot-type": "DIMM"}},
        ),
        ("DEVICE_DELETED", {"device": dev, "path": f"/machine/peripheral/{dev}"}),
        (
            "ACPI_DEVICE_OST",
            {"info": {"source": 259, "status": 0, "slot": "0", "slot-type": "DIMM"}},
        ),
    ]
    assert not sim.path(f"{MEM}/memory33").exists()


# ------------------------------------------------------------------ notifier error injection
def test_notifier_error_injection(sim: Sim) -> None:
    inj = sim.path("sys/kernel/debug/notifier-error-inject/memory/actions")
    dev = sim.hotadd(512 << 20, 1)
    try:
        state = sim.path(f"{MEM}/memory34/state")
        (inj / "MEM_GOING_ONLINE" / "error").write_text("-12")
        assert (inj / "MEM_GOING_ONLINE" / "error").read_text() == "-12\n"
        r = sh(f"echo online > {state}")
        assert r.returncode != 0 and "Cannot allocate memory" in r.stderr, r
        assert state.read_text() == "offline\n"
        (inj / "MEM_GOING_ONLINE" / "error").write_text("0")
        assert sh(f"echo online > {state}").returncode == 0
        (inj / "MEM_GOING_OFFLINE" / "error").write_text("-16")
        r = sh(f"echo offline > {state}")
        assert r.returncode != 0 and "Device or resource busy" in r.stderr, r
        assert state.read_text() == "online\n"
        (inj / "MEM_GOING_OFFLINE" / "error").write_text("0")
        assert sh(f"echo offline > {state}").returncode == 0
        assert state.read_text() == "offline\n"
        r = sh(f"echo 5 > {inj}/MEM_GOING_OFFLINE/error")
        assert r.returncode != 0 and "Invalid argument" in r.stderr
    finally:
        for a in ("MEM_GOING_ONLINE", "MEM_GOING_OFFLINE"):
            (inj / a / "error").write_text("0")
        sim.unplug(dev)


# ------------------------------------------------------------------ chmem in a mount namespace
def _can_unshare() -> str | None:
    if shutil.which("chmem") is None or shutil.which("unshare") is None:
        return "util-linux chmem/unshare not installed"
    r = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True, check=False)
    return None if r.returncode == 0 else f"unshare -m not permitted: {r.stderr.strip()}"


def in_namespace(sysdir: Path, cmd: str) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in a private mount namespace where ``sysdir`` is bind-mounted over /sys."""
    inner = f"mount --make-rprivate / && mount --bind {sysdir} /sys && {cmd}"
    return sh(f"unshare -m sh -c '{inner}'")


@pytest.mark.skipif(_can_unshare() is not None, reason=str(_can_unshare()))
def test_chmem_with_sys_bind_mounted(sim: Sim) -> None:
    dev = sim.hotadd(512 << 20, 1)
    try:
        sysdir = sim.path("sys")
        r = in_namespace(sysdir, "chmem -e -b 32-35")
        assert r.returncode == 0, r.stderr
        assert [sim.read(f"{MEM}/memory{b}/state") for b in range(32, 36)] == ["online\n"] * 4
        r = in_namespace(sysdir, "chmem -d -b 35")
        assert r.returncode == 0, r.stderr
        assert sim.read(f"{MEM}/memory35/state") == "offline\n"
        # chmem's partial failure exit code (64) when a block refuses: memory0 gives EINVAL.
        r = in_namespace(sysdir, "chmem -d -b 0-1")
        assert r.returncode in (1, 64), r
        if sim.read(f"{MEM}/memory1/state") == "offline\n":
            sim.path(f"{MEM}/memory1/state").write_text("online")
        for b in range(32, 35):
            sim.path(f"{MEM}/memory{b}/state").write_text("offline")
    finally:
        sim.unplug(dev)


# ------------------------------------------------------------------ concurrency
def test_two_processes_writing_at_once(sim: Sim) -> None:
    dev = sim.hotadd(512 << 20, 1)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        mem = sim.path(MEM)
        loop = (
            "for i in $(seq 40); do for b in 32 33 34 35; do "
            f"echo online_movable > {mem}/memory$b/state 2>/dev/null; "
            f"echo offline > {mem}/memory$b/state 2>/dev/null; done; done; true"
        )  # the writers race: any single write may fail (EINVAL), the loop may not
        procs += [subprocess.Popen(["sh", "-c", loop]) for _ in range(2)]
        procs.append(
            subprocess.Popen(
                ["sh", "-c", f"for i in $(seq 100); do cat {mem}/memory3*/state >/dev/null; done"]
            )
        )
        rcs = [p.wait(120) for p in procs]
        assert rcs == [0, 0, 0]
        states = {sim.read(f"{MEM}/memory{b}/state") for b in range(32, 36)}
        assert states <= {"online\n", "offline\n"}
        r = sim.cmd("x-memhp-check-invariants")
        if "error" in r:
            assert "not available" in r["error"]["desc"]
        else:
            assert r["return"] == {"ok": True}, r
        live = capture(DirectoryFS(str(sim.mount)))
        assert all(e.read_errno in (0, errno.EACCES) for e in live.values())
        for b in range(32, 36):
            if sim.read(f"{MEM}/memory{b}/state") == "online\n":
                sim.path(f"{MEM}/memory{b}/state").write_text("offline")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        sim.unplug(dev)


# ------------------------------------------------------------------ lifecycle
def _wait_mounted(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not is_fuse_mount(str(path)):
        assert time.monotonic() < deadline, "not mounted"
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_foreground_daemon_unmounts_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    mount = tmp_path / "m"
    mount.mkdir()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "memhp.sim.daemon",
            MACHINE,
            str(mount),
            "--qmp",
            str(tmp_path / "q.sock"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_mounted(mount)
        assert (mount / "sys/devices/system/memory/memory0").is_dir()
        p.send_signal(sig)
        assert p.wait(15) == 0
        assert not is_fuse_mount(str(mount))
        assert not (tmp_path / "q.sock").exists()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        subprocess.run(["fusermount3", "-uz", str(mount)], capture_output=True, check=False)


@pytest.mark.parametrize("auto_unmount", [True, False])
def test_sigkilled_daemon_leaves_no_mount_after_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auto_unmount: bool
) -> None:
    from memhp.sim.daemon import start, status, stop

    if not auto_unmount:
        monkeypatch.setenv("MEMHP_FUSE_NO_AUTO_UNMOUNT", "1")
    mount = tmp_path / "m"
    mount.mkdir()
    st = start(MACHINE, str(mount))
    assert st is not None and status(str(mount))["running"]
    os.kill(st.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{st.pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    msg = stop(str(mount))
    assert not is_fuse_mount(str(mount)), msg
    assert os.listdir(mount) == []
    assert not status(str(mount))["running"]
    # The directory is usable again.
    st2 = start(MACHINE, str(mount))
    assert st2 is not None
    stop(str(mount))
    assert not is_fuse_mount(str(mount))


def test_fast_mode_opens_without_a_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MEMHP_FUSE_FAST=1: opens make no request (memhp.sim.fuse_ll): kernfs_fop_open()'s
    EACCES comes from the read(2) or write(2); writes reach the model with their errno;
    a descriptor kept open across writes reads the new text; lsmem reads what a captured
    copy shows."""
    monkeypatch.setenv("MEMHP_FUSE_FAST", "1")
    with running(tmp_path) as s:
        mount = s.mount
        s.hotadd(512 << 20, 1)
        mem = mount / MEM
        _assert_eacces_per_mode(mem, False)
        r = sh(f"echo 1 > {mem}/block_size_bytes")
        assert r.returncode == 1 and "Permission denied" in r.stderr
        assert (mem / "block_size_bytes").read_text() == "8000000\n"
        kept = os.open(mem / "memory33/state", os.O_RDONLY)
        try:
            assert os.pread(kept, 64, 0) == b"offline\n"
            (mem / "memory33/state").write_text("online_movable")
            assert os.pread(kept, 64, 0) == b"online\n"
            assert (mem / "memory33/valid_zones").read_text() == "Movable\n"
            r = sh(f"echo online_kernel > {mem}/memory33/state")
            assert r.returncode == 1 and "Invalid argument" in r.stderr
            (mem / "memory33/state").write_text("offline")
            assert os.pread(kept, 64, 0) == b"offline\n"
        finally:
            os.close(kept)
        case = ["-a", "-o", "+NODE,ZONES"]
        live = subprocess.run(["lsmem", "--sysroot", str(mount), *case], capture_output=True)
        copy = tmp_path / "copy"
        write_tree(capture(DirectoryFS(str(mount))), str(copy))
        ref = subprocess.run(["lsmem", "--sysroot", str(copy), *case], capture_output=True)
        assert live.returncode == ref.returncode == 0
        assert live.stdout == ref.stdout
        assert b"Total offline memory:    512M" in live.stdout


def test_listings_read_to_their_last_entry_are_completed(sim: Sim) -> None:
    """lsmem stops reading a block's directory at its node link; the server reads
    the rest, so that the kernel keeps the listing: later listings, and a listing
    after a change, are the model's."""
    d = sim.path(f"{MEM}/memory1")
    for _ in range(3):
        with os.scandir(d) as it:
            first = next(e.name for e in it if e.name.startswith("node"))
        assert first == "node0"
        time.sleep(0.2)
    names = sorted(os.listdir(d))
    assert names == sorted(SimMachine(load_machine(MACHINE)).sysfs.listdir(f"/{MEM}/memory1"))
    dev = sim.hotadd(128 << 20, 1)
    try:
        assert "memory32" in os.listdir(sim.path(MEM))
        with os.scandir(sim.path(f"{MEM}/memory32")) as it:
            assert next(e.name for e in it if e.name.startswith("node")) == "node1"
        time.sleep(0.2)
        hot = sorted({*names, "firmware_node", "node1", "valid_zones"} - {"node0"})
        assert sorted(os.listdir(sim.path(f"{MEM}/memory32"))) == hot
    finally:
        sim.unplug(dev)
    assert not sim.path(f"{MEM}/memory32").exists()


def test_start_refuses_bad_requests(tmp_path: Path) -> None:
    from memhp.kernel.machine import MachineError
    from memhp.sim.daemon import SimDaemonError, start

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(SimDaemonError, match="not empty"):
        start(MACHINE, str(tmp_path / "full"))
    with pytest.raises(MachineError):
        start(str(tmp_path / "nope.toml"), str(tmp_path))


def test_a_server_that_sleeps_at_once_serves_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MEMHP_FUSE_SPIN_US=0: the request loop sleeps in poll(2) after every request
    instead of polling on (memhp.sim.fuse_ll.SPIN_S); reads, a write's errno and the
    new state after a write are the same."""
    monkeypatch.setenv("MEMHP_FUSE_SPIN_US", "0")
    with running(tmp_path) as s:
        s.hotadd(256 << 20, 1)
        mem = s.mount / MEM
        assert (mem / "memory33/state").read_text() == "offline\n"
        (mem / "memory33/state").write_text("online_movable")
        assert (mem / "memory33/state").read_text() == "online\n"
        assert (mem / "memory33/valid_zones").read_text() == "Movable\n"
        r = sh(f"echo online_kernel > {mem}/memory33/state")
        assert r.returncode == 1 and "Invalid argument" in r.stderr
        (mem / "memory33/state").write_text("offline")
        assert (mem / "memory33/state").read_text() == "offline\n"
