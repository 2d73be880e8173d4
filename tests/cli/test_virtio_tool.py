"""The tool's side of virtio-mem: ``memhp devices``/``why`` on the simulated guest,
``memhp vm resize`` against a live ``memhp sim`` over QMP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memhp.abi.layout import MiB
from memhp.abi.paths import block_dir
from memhp.cli.main import run_with_sysfs
from memhp.sim.fuse import fuse_unavailable_reason
from memhp.sim.machine import SimMachine, WorkloadMix
from tests.support.sim import machine

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
_reason = fuse_unavailable_reason()
needs_fuse = pytest.mark.skipif(_reason is not None, reason=f"FUSE unavailable: {_reason}")


def guest_with_held_pages() -> SimMachine:
    """1000M plugged and onlined to Normal, 8M of kernel pages in memory39, then 0 requested."""
    m = SimMachine(machine("virtio-mem"))
    dev = m.virtio.devices[0]
    dev.set_requested_size(1024 * MiB)
    for b in range(32, 40):
        m.sysfs.write(f"{block_dir(b)}/state", b"online_kernel")
    m.fill(2048, start=0x138000000, end=0x140000000, mix=WorkloadMix(1.0, 0.0), owner="driver")
    dev.set_requested_size(0)
    return m


def test_devices_lists_virtio_mem_with_what_holds_it() -> None:
    m = guest_with_held_pages()
    rc, out, err = run_with_sysfs(["devices"], m.sysfs)
    assert (rc, err) == (0, "")
    assert out == (
        "DEVICE  RANGE                                 SIZE NODE BLOCKS ONLINE  ZONES EJECT\n"
        "virtio0 0x0000000100000000-0x00000001ffffffff   8M    1     39    1/1 Normal     -\n"
        "virtio0: virtio-mem, region 4G, plugged 8M in 1 blocks, could unplug now 0B\n"
        "  memory39 holds 8M: 4 sub-blocks hold pages alloc_contig_range() cannot move: "
        "2048 slab (kernel objects)\n"
    )
    _, out, _ = run_with_sysfs(["devices", "-J"], m.sysfs)
    d = json.loads(out)["devices"][0]
    assert (d["type"], d["size"], d["unpluggable"], d["blocks"]) == ("virtio-mem", 8 * MiB, 0, [39])


def test_why_names_the_virtio_device() -> None:
    m = guest_with_held_pages()
    rc, out, _ = run_with_sysfs(["why", "39"], m.sysfs)
    assert rc == 0
    assert "  device:           virtio0\n" in out
    assert "holes" not in out  # driver-managed memory has no firmware memmap by design


def test_partly_unplugged_online_block_shows_offline_pages() -> None:
    m = SimMachine(machine("virtio-mem"))
    m.virtio.devices[0].set_requested_size(200 * MiB)
    for b in (32, 33):
        m.sysfs.write(f"{block_dir(b)}/state", b"online_movable")
    _, out, _ = run_with_sysfs(["why", "33"], m.sysfs)
    assert "offline (logically offline: balloon, virtio-mem)    14336\n" in out
    _rc, out, _ = run_with_sysfs(["devices"], m.sysfs)
    assert "plugged 200M in 2 blocks, could unplug now 200M\n" in out


def memhp(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memhp.cli.main", *argv],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_fuse
def test_vm_resize_against_the_live_sim(tmp_path: Path) -> None:
    mount, sock = tmp_path / "m", str(tmp_path / "q.sock")
    r = memhp("sim", "start", "machines/virtio-mem.toml", "--mount", str(mount), "--qmp", sock)
    assert r.returncode == 0, r.stderr
    try:
        r = memhp("vm", "resize", "vm0", "512M", "--sock", sock)
        assert (r.returncode, r.stdout, r.stderr) == (0, "vm0: size 512M (requested 512M)\n", "")
        for b in range(32, 36):
            (mount / f"sys/devices/system/memory/memory{b}/state").write_text("online_movable")
        r = memhp("vm", "resize", "vm0", "0", "--sock", sock, "--sysroot", str(mount))
        assert (r.returncode, r.stdout) == (0, "vm0: size 0B (requested 0B)\n")
        bad = [
            (["vm9", "1G"], "unknown virtio-mem device: vm9 (devices: vm0)"),
            (["vm0", "3X"], "invalid size: '3X' (e.g. 1G, 512M, 0)"),
            (
                ["vm0", "1025M"],
                "qom-set: GenericError: 'requested-size' has to be multiples of "
                "'block-size' (0x200000)",
            ),
        ]
        for argv, msg in bad:
            r = memhp("vm", "resize", *argv, "--sock", sock)
            assert (r.returncode, r.stdout, r.stderr) == (1, "", f"memhp vm resize: {msg}\n")
    finally:
        assert memhp("sim", "stop", str(mount)).returncode == 0
    r = memhp("vm", "resize", "vm0", "1G", "--sock", str(tmp_path / "none.sock"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert r.stderr.startswith(f"memhp vm resize: cannot talk QMP on {tmp_path}/none.sock: ")


def test_demo_virtio_mem_unplugs_around_the_kernel_pages_then_finishes() -> None:
    r = memhp("demo", "--virtio-mem")
    assert (r.returncode, r.stderr) == (0, "")
    assert "QEMU: vm0 size 8M, requested 0M\n" in r.stdout
    assert "  memory39 holds 8M: 4 sub-blocks hold pages" in r.stdout
    assert r.stdout.endswith(
        "QEMU: vm0 size 0M, requested 0M\n/proc/iomem:\n  100000000-1ffffffff : virtio0\n"
    )
