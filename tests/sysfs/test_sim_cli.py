"""``memhp sim start/stop``: the user-reported defects of issue 16 (items 1 and 21)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from memhp.sim.daemon import SimDaemonError, log_path, start, stop
from memhp.sim.fuse import fuse_unavailable_reason, is_fuse_mount

REPO = Path(__file__).resolve().parents[2]
MACHINE = str(REPO / "machines" / "qemu-linux-6.1.toml")
CLI = [sys.executable, "-m", "memhp.cli.main", "sim"]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
_reason = fuse_unavailable_reason()
needs_fuse = pytest.mark.skipif(_reason is not None, reason=f"FUSE unavailable: {_reason}")


def sim(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout
    )


@needs_fuse
def test_qmp_in_a_missing_directory_names_the_path(tmp_path: Path) -> None:
    sock = tmp_path / "nonexistent-dir" / "x.sock"
    r = sim("start", MACHINE, "--mount", str(tmp_path / "m"), "--qmp", str(sock))
    assert r.returncode == 1
    assert str(sock) in r.stderr and "no directory" in r.stderr, r.stderr
    assert not (tmp_path / "m").exists()  # the mount directory it made is gone again


@needs_fuse
def test_failed_start_names_the_path_and_leaves_no_log(tmp_path: Path) -> None:
    """The daemon fails (a socket path too long for AF_UNIX): no log or state is left."""
    mount = tmp_path / "m"
    mount.mkdir()
    sock = tmp_path / ("s" * 120)
    with pytest.raises(SimDaemonError) as e:
        start(MACHINE, str(mount), str(sock))
    assert f"cannot listen on {sock}" in str(e.value)
    assert not os.path.exists(log_path(str(mount)))
    assert not is_fuse_mount(str(mount))
    with pytest.raises(SimDaemonError, match="no simulated machine runs here"):
        stop(str(mount))


def test_stop_of_a_typo_fails() -> None:
    r = sim("stop", "/typo/path")
    assert r.returncode == 1
    assert (
        r.stderr.strip()
        == "memhp sim: /typo/path: no simulated machine runs here (no such directory)"
    )


@needs_fuse
def test_start_creates_an_absent_mount_directory(tmp_path: Path) -> None:
    mount = tmp_path / "m"
    r = sim("start", MACHINE, "--mount", str(mount), "--qmp", str(tmp_path / "m.qmp"))
    try:
        assert r.returncode == 0, r.stderr
        assert (mount / "sys/devices/system/memory/block_size_bytes").read_text() == "8000000\n"
    finally:
        assert sim("stop", str(mount)).returncode == 0
    assert not is_fuse_mount(str(mount))


def test_start_says_when_it_cannot_create_the_mount_directory(tmp_path: Path) -> None:
    if _reason is not None:
        pytest.skip(f"FUSE unavailable: {_reason}")
    (tmp_path / "file").write_text("")
    with pytest.raises(SimDaemonError, match="cannot create the mount directory"):
        start(MACHINE, str(tmp_path / "file" / "m"))


@needs_fuse
def test_foreground_prints_no_libfuse_thread_warning(tmp_path: Path) -> None:
    mount = tmp_path / "m"
    p = subprocess.Popen(
        [*CLI, "start", MACHINE, "--mount", str(mount), "--foreground"],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert p.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(p.stderr or ()), daemon=True)
    reader.start()
    try:
        # ready: the mount is there and the daemon said so (on_ready runs just after
        # the kernel shows the mount, so wait for the line, not only the mount)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            is_fuse_mount(str(mount)) and any("mounted at" in line for line in lines)
        ):
            assert p.poll() is None, "".join(lines)
            time.sleep(0.05)
        assert is_fuse_mount(str(mount))
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        reader.join(timeout=10)
    err = "".join(lines)
    assert "Ignoring invalid max threads" not in err, err
    assert "mounted at" in err
    assert not is_fuse_mount(str(mount))


@needs_fuse
@pytest.mark.parametrize("value", ["abc", "-1", "nan", "2e6"])
def test_a_bad_spin_time_is_one_line(tmp_path: Path, value: str) -> None:
    """MEMHP_FUSE_SPIN_US (memhp.sim.fuse.spin_seconds): a value that is not a number
    of microseconds from 0 to 10^6 stops the start with one line naming it."""
    mount = tmp_path / "m"
    r = subprocess.run(
        [*CLI, "start", MACHINE, "--mount", str(mount)],
        cwd=REPO,
        env={**ENV, "MEMHP_FUSE_SPIN_US": value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "memhp sim: the simulator did not start: "
        f"MEMHP_FUSE_SPIN_US={value!r}: not a number of microseconds from 0 to 1000000"
    ]
    assert not is_fuse_mount(str(mount))
