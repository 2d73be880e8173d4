"""The tool on the in-process simulated kernel: same code as on /sys (issue 5)."""

from __future__ import annotations

import io
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout

import pytest

from memhp.abi.tree import capture, write_tree
from memhp.cli.main import build_parser
from memhp.host.diagnose import diagnose
from memhp.host.remove import remove_device
from memhp.host.root import SysfsRoot
from memhp.kernel.drivers.base.memory import MemState
from memhp.kernel.invariants import check_invariants
from memhp.sim.machine import SimMachine, WorkloadMix
from tests.support.sim import machine

MEM = "/sys/devices/system/memory"
MiB = 1 << 20
GiB = 1 << 30


def cli(m: SimMachine, *argv: str) -> tuple[int, str, str]:
    """Run a memhp command with the simulated machine as its root."""
    parser = build_parser(argv[0])
    args = parser.parse_args(list(argv))
    args.root = SysfsRoot(m.sysfs, "sim")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = args.func(args)
    return rc, out.getvalue(), err.getvalue()


def seed() -> SimMachine:
    m = SimMachine(machine("seed"))
    m.device_add(512 * MiB, 1, id="dimm1", addr=1 * GiB)
    for b in range(8, 12):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online")
    return m


def test_remove_overcomes_the_seed_dependency() -> None:
    m = seed()
    res = remove_device(SysfsRoot(m.sysfs), "PNP0C80:00", timeout=5, sleep=lambda _s: None)
    assert res.removed and not res.failures
    assert not any(b in m.kernel.memory.blocks for b in range(8, 12))
    check_invariants(m.kernel)


def test_remove_fails_on_one_block_and_rolls_back() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    d = m.device_add(512 * MiB, 1, id="dimm1")
    zones = ["online_kernel", "online_movable", "online_movable", "online_movable"]
    # memory32 Normal, 33..35 Movable; a driver pins unmovable memory in memory32
    for b, z in zip(range(32, 36), zones, strict=True):
        m.sysfs.write(f"{MEM}/memory{b}/state", z.encode())
    m.fill(
        100, start=d.addr, end=d.addr + 128 * MiB, mix=WorkloadMix(unmovable=1.0), owner="driver"
    )
    before = {
        b: (m.kernel.memory.blocks[b].state, m.kernel.memory.blocks[b].zone) for b in range(32, 36)
    }
    rc, out, err = cli(m, "remove", "PNP0C80:00", "--timeout", "0.2")
    assert rc == 1
    assert "memory32" in out + err
    assert "busy" in (out + err).lower()
    assert {
        b: (m.kernel.memory.blocks[b].state, m.kernel.memory.blocks[b].zone) for b in range(32, 36)
    } == before
    assert m.platform.slot_of("dimm1") is not None  # never ejected
    check_invariants(m.kernel)


def test_why_names_the_kernel_pages() -> None:
    m = seed()
    d = diagnose(SysfsRoot(m.sysfs), 8)
    assert d.block.state == "online"
    rc, out, _ = cli(m, "why", "8")
    assert rc == 0
    assert "slab" in out.lower() or "kernel" in out.lower(), out


def test_online_offline_chmem_semantics_on_sim() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(512 * MiB, 1, id="dimm1")
    rc, out, err = cli(m, "online", "-v", "-b", "32-35")
    assert rc == 0, err
    assert all(m.kernel.memory.blocks[b].state is MemState.MEM_ONLINE for b in range(32, 36))
    # memory0 spans zones, memory1 is fine: partial success -> 64
    rc, out, err = cli(m, "offline", "-v", "-b", "0-1")
    assert rc == 64, (out, err)
    assert m.kernel.memory.blocks[1].state is MemState.MEM_OFFLINE
    rc, _, err = cli(m, "offline", "-b", "999")
    assert rc == 1 and err == "memhp offline: memory block 999 does not exist\n"
    check_invariants(m.kernel)


LSMEM = shutil.which("lsmem")


@pytest.mark.skipif(LSMEM is None, reason="util-linux lsmem is not installed")
@pytest.mark.parametrize(
    "opts",
    [
        [],
        ["-a"],
        ["-o", "+NODE,ZONES"],
        ["-J", "--output-all"],
        ["-P", "-a"],
        ["--summary=only"],
        ["-r", "-n", "-b"],
    ],
)
def test_list_on_sim_equals_lsmem_on_its_capture(opts: list[str], tmp_path: object) -> None:
    m = seed()
    m.sysfs.write(f"{MEM}/memory9/state", b"offline")
    rc, out, _ = cli(m, "list", *opts)
    assert rc == 0
    d = str(tmp_path)
    write_tree(capture(m.sysfs), d)
    assert LSMEM is not None
    ref = subprocess.run([LSMEM, "--sysroot", d, *opts], capture_output=True, text=True, check=True)
    assert out == ref.stdout


def test_devices_json_on_sim() -> None:
    import json

    m = seed()
    rc, out, _ = cli(m, "devices", "-J")
    assert rc == 0
    data = json.loads(out)
    text = json.dumps(data)
    assert "PNP0C80:00" in text
