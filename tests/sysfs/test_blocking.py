"""Offlines that block, over FUSE, as in Linux 6.1: signals, timeouts, interrupted removes.

One daemon per module serves machines/qemu-linux-6.1 with a 1 GiB DIMM on node 1
(blocks 32-39) onlined Normal, and pages pinned in memory32 (the last block
``memhp remove`` offlines): offlining it blocks until the writer gets a
signal.  The tool runs as a separate process.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memhp.sim.fuse import fuse_unavailable_reason

REPO = Path(__file__).resolve().parents[2]
MACHINE = str(REPO / "machines" / "qemu-linux-6.1.toml")
_reason = fuse_unavailable_reason()
pytestmark = [
    pytest.mark.fuse,
    pytest.mark.skipif(_reason is not None, reason=f"FUSE unavailable: {_reason}"),
]
MEM = "sys/devices/system/memory"
BLOCKS = range(32, 40)
CLI = [sys.executable, "-c", "import sys; from memhp.cli.main import main; sys.exit(main())"]


class Machine:
    def __init__(self, mount: Path, qmp_path: Path, run_dir: Path) -> None:
        from qemu.qmp.legacy import QEMUMonitorProtocol

        self.mount = mount
        self.run_dir = run_dir
        self.qmp = QEMUMonitorProtocol(str(qmp_path))
        self.qmp.connect(negotiate=True)

    def ok(self, name: str, **args: object) -> object:
        r = self.qmp.cmd_raw(name, args)
        assert "return" in r, r
        return r["return"]

    def state(self, b: int) -> str:
        return (self.mount / MEM / f"memory{b}" / "state").read_text().strip()

    def zone(self, b: int) -> str:
        return (self.mount / MEM / f"memory{b}" / "valid_zones").read_text().split()[0]

    def states(self) -> dict[int, str]:
        return {b: self.state(b) for b in BLOCKS}

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO), "XDG_RUNTIME_DIR": str(self.run_dir)}

    def memhp(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], capture_output=True, text=True, env=self.env(), timeout=timeout
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
        )

    def pinned_block(self) -> int:
        return 32

    def wait_blocked(self, p: subprocess.Popen[str]) -> None:
        """Until the remove ``p`` is blocked offlining memory32 (33-39 offline)."""
        deadline = time.monotonic() + 20
        while self.state(32) != "going-offline":
            if p.poll() is not None:
                _, err = p.communicate()
                raise AssertionError(f"memhp remove ended ({p.returncode}): {err}")
            assert time.monotonic() < deadline, self.states()
            time.sleep(0.02)


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    from memhp.sim.daemon import start, stop

    base = tmp_path_factory.mktemp("blocking")
    mount = base / "root"
    mount.mkdir()
    run_dir = base / "run"
    run_dir.mkdir(mode=0o700)
    start(MACHINE, str(mount), str(base / "qmp.sock"))
    m: Machine | None = None
    try:
        m = Machine(mount, base / "qmp.sock", run_dir)
        m.ok("object-add", **{"qom-type": "memory-backend-ram", "id": "m1", "size": 1 << 30})
        m.ok("device_add", driver="pc-dimm", id="d1", memdev="m1", node=1)
        r = m.memhp("online", "-z", "Normal", "-b", "32-39", "-s", str(mount))
        assert r.returncode == 0, r.stderr
        m.ok("x-memhp-fill", pages=10, start=32 << 27, end=33 << 27, pinned=1.0)
        yield m
    finally:
        if m is not None:
            m.qmp.close()
        stop(str(mount))


def _write_offline(m: Machine, b: int, alarm: float | None) -> tuple[int, float]:
    """write(2) "offline" to memory<b>/state in a child process; (errno, seconds)."""
    code = (
        "import os, signal, sys, time, errno\n"
        "def h(*a): raise InterruptedError(errno.EINTR, 'alarm')\n"
        "signal.signal(signal.SIGALRM, h)\n"
        f"a = {alarm!r}\n"
        "if a: signal.setitimer(signal.ITIMER_REAL, a)\n"
        f"fd = os.open({str(m.mount / MEM / f'memory{b}' / 'state')!r}, os.O_WRONLY)\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    os.write(fd, b'offline'); e = 0\n"
        "except OSError as x:\n"
        "    e = x.errno\n"
        "print(e, time.monotonic() - t)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        out, _ = p.communicate(timeout=2.5 if alarm is None else alarm + 5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return -1, 2.5
    e, t = out.split()
    return int(e), float(t)


def test_offline_blocks_without_a_signal_and_sigalrm_gives_eintr(machine: Machine) -> None:
    b = machine.pinned_block()
    before = machine.states()
    e, t = _write_offline(machine, b, None)
    assert (e, t >= 2.0) == (-1, True)  # still blocked after 2.5 s: killed
    # lsmem works while a write is blocked; the killed writer left nothing behind
    assert machine.states() == before
    e, t = _write_offline(machine, b, 1.0)
    assert e == errno.EINTR
    assert 1.0 <= t < 2.0
    assert machine.states() == before


def _poll_state(path: str, stop: threading.Event, seen: set[str], longest: list[float]) -> None:
    """open(2) + read(2) + close(2) of ``path`` until ``stop``, as a script polling for
    "going-offline" does; the longest of them in ``longest[0]``."""
    while not stop.is_set():
        t = time.monotonic()
        fd = os.open(path, os.O_RDONLY)
        try:
            seen.add(os.read(fd, 4096).decode().strip())
        finally:
            os.close(fd)
        longest[0] = max(longest[0], time.monotonic() - t)


def test_readers_never_wait_for_a_blocked_offline(machine: Machine) -> None:
    """In sysfs a reader of the state of a block being offlined gets "going-offline" at
    once, whenever it opened the file: no read waits for the blocked writer (with
    writes through the page cache, one that reached the writer's inode first waited
    for the locked page until the write ended).  Repeated to catch the race at the
    write's start; 1 s is a functional bound (the write blocks 1.3 s), not a speed one."""
    b = machine.pinned_block()
    before = machine.states()
    path = str(machine.mount / MEM / f"memory{b}" / "state")
    for _ in range(20):
        stop, seen, longest = threading.Event(), set[str](), [0.0]
        reader = threading.Thread(target=_poll_state, args=(path, stop, seen, longest))
        reader.start()
        try:
            e, _ = _write_offline(machine, b, 1.3)
        finally:
            stop.set()
            reader.join(10)
        assert not reader.is_alive()
        assert e == errno.EINTR
        assert longest[0] < 1.0, longest
        assert "going-offline" in seen, seen
        assert seen <= {"online", "going-offline"}
    assert machine.states() == before


def test_a_reader_sharing_the_writers_inode_does_not_wait(machine: Machine) -> None:
    """A descriptor opened just before a write and read while the store blocks shares
    the writer's inode (same walk, same generation).  With writes through the page
    cache, the writer kept that inode's page locked for the whole store when no read
    had filled it (fuse_fill_write_pages()), and the read waited for the writer's
    signal.  It gets the text its inode was given, at once; the 0.5 s bound is
    functional (the write blocks 1.5 s)."""
    b = machine.pinned_block()
    before = machine.states()
    machine.ok("query-status")  # a new generation: the open below looks the file up
    fd = os.open(machine.mount / MEM / f"memory{b}" / "state", os.O_RDONLY)
    got: list[tuple[bytes, float]] = []

    def read_later() -> None:
        time.sleep(0.5)
        t = time.monotonic()
        got.append((os.read(fd, 4096), time.monotonic() - t))

    try:
        reader = threading.Thread(target=read_later)
        reader.start()
        e, _ = _write_offline(machine, b, 1.5)
        reader.join(10)
    finally:
        os.close(fd)
    assert e == errno.EINTR
    assert [text for text, _ in got] == [b"online\n"]
    assert got[0][1] < 0.5, got
    assert machine.states() == before


def test_blocked_offline_completes_when_the_pages_are_freed(machine: Machine) -> None:
    start = 33 << 27  # memory33 (blocks are 128 MiB)
    ids = machine.ok("x-memhp-fill", pages=10, start=start, end=start + (128 << 20), pinned=1.0)
    assert isinstance(ids, dict)
    p = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"open({str(machine.mount / MEM / 'memory33' / 'state')!r}, 'w').write('offline')",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    assert p.poll() is None  # blocked
    assert machine.state(33) == "going-offline"
    machine.ok("x-memhp-free", allocations=ids["allocations"])
    assert p.wait(timeout=5) == 0
    assert machine.state(33) == "offline"
    r = machine.memhp("online", "-z", "Normal", "-b", "33", "-s", str(machine.mount))
    assert r.returncode == 0, r.stderr


def test_offline_timeout(machine: Machine) -> None:
    b = machine.pinned_block()
    t = time.monotonic()
    r = machine.memhp("offline", "-b", str(b), "--timeout", "2", "-s", str(machine.mount))
    took = time.monotonic() - t
    assert r.returncode == 1, r.stderr
    assert took < 4.0
    assert "timed out after 2s" in r.stderr
    assert machine.state(b) == "online"


def test_remove_timeout_rolls_back_in_the_zones(machine: Machine) -> None:
    before = {b: (machine.state(b), machine.zone(b)) for b in BLOCKS}
    t = time.monotonic()
    r = machine.memhp("remove", "PNP0C80:00", "--timeout", "3", "-s", str(machine.mount))
    took = time.monotonic() - t
    assert r.returncode == 1, r.stderr
    assert took < 5.0
    assert "within 3s (timed out)" in r.stderr
    assert "rolled back: onlined 7 block(s) again: memory33-39 (Normal)" in r.stderr
    assert {b: (machine.state(b), machine.zone(b)) for b in BLOCKS} == before
    assert not list(machine.run_dir.glob("memhp/*.json"))  # nothing left to restore


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("after", [0.0, 0.5])
def test_signal_during_remove_rolls_back(
    machine: Machine, sig: signal.Signals, after: float
) -> None:
    before = machine.states()
    p = machine.popen("remove", "PNP0C80:00", "--timeout", "20", "-s", str(machine.mount))
    machine.wait_blocked(p)
    time.sleep(after)
    t = time.monotonic()
    p.send_signal(sig)
    _, err = p.communicate(timeout=10)
    assert time.monotonic() - t < 2.0
    assert p.returncode == 128 + sig, err
    assert f"interrupted by {sig.name}: stopped after offlining 7 of 8 blocks" in err
    assert "onlined again: memory33-39" in err
    assert machine.states() == before, err
    assert "\r" not in err.replace("\r\033[K", "")
    assert "Traceback" not in err


def test_sigkill_then_rerun_reports_and_restore_restores(machine: Machine) -> None:
    before = {b: (machine.state(b), machine.zone(b)) for b in BLOCKS}
    p = machine.popen("remove", "PNP0C80:00", "--timeout", "20", "-s", str(machine.mount))
    machine.wait_blocked(p)
    p.kill()
    p.communicate()
    left = [b for b in BLOCKS if machine.state(b) == "offline"]
    assert left == list(range(33, 40))  # the killed run left them offline
    r = machine.memhp("devices", "-s", str(machine.mount))
    assert r.returncode == 0
    assert "was killed and left memory33-39 offline" in r.stderr
    assert "memhp restore" in r.stderr
    r = machine.memhp("restore", "-s", str(machine.mount))
    assert r.returncode == 0, r.stderr
    assert "onlined memory" in r.stdout
    assert {b: (machine.state(b), machine.zone(b)) for b in BLOCKS} == before
    r = machine.memhp("restore", "-s", str(machine.mount))
    assert (r.returncode, r.stdout.strip()) == (
        0,
        "memhp restore: nothing to restore (no interrupted memhp remove)",
    )


def test_corrupt_journal_is_one_line(machine: Machine) -> None:
    from memhp.host.journal import Journal

    j = Journal(str(machine.mount), str(machine.run_dir / "memhp"))
    assert j.path is not None
    os.makedirs(os.path.dirname(j.path), exist_ok=True)
    Path(j.path).write_text("{not json")
    try:
        r = machine.memhp("restore", "-s", str(machine.mount))
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1 and "is corrupt" in r.stderr
        r = machine.memhp("devices", "-s", str(machine.mount))
        assert r.returncode == 0 and "is corrupt" in r.stderr
    finally:
        os.unlink(j.path)
