"""The online/offline/devices/remove/why commands, end to end through ``memhp``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memhp.abi.tree import write_tree
from memhp.cli.main import build_parser, main
from memhp.host.root import SysfsRoot
from memhp.sim.machine import SimMachine, WorkloadMix
from tests.support.sim import RecordingFS, dimm_machine, exists, pin, state, unprivileged
from tests.support.trees import reference_steps

MEM = "/sys/devices/system/memory"


def run_on(fs: SimMachine | RecordingFS, argv: list[str]) -> int:
    """Run a command on an in-process root (a simulated machine)."""
    args = build_parser().parse_args(argv)
    args.root = SysfsRoot(fs.sysfs if isinstance(fs, SimMachine) else fs, "sim")
    rc: int = args.func(args)
    return rc


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    snaps = reference_steps()
    if not snaps:
        pytest.skip("reference trace not available")
    write_tree(snaps["trace-2-after-online"], str(tmp_path / "t"))
    return tmp_path / "t"


def test_offline_verbose_messages(capsys: pytest.CaptureFixture[str]) -> None:
    m = dimm_machine()
    assert run_on(m, ["offline", "-v", "256M"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "Memory Block 35 (0x0000000118000000-0x000000011fffffff) disabled",
        "Memory Block 34 (0x0000000110000000-0x0000000117ffffff) disabled",
    ]
    assert state(m, 35) == "offline" and state(m, 33) == "online"


def test_online_partial_exit_64(capsys: pytest.CaptureFixture[str]) -> None:
    m = dimm_machine()
    for i in (1, 34):
        m.sysfs.write(f"{MEM}/memory{i}/state", b"offline")
    # by block, zone Normal: 34 (Normal Movable) is onlined, 1 (DMA32 Movable) is not,
    # the others are already online
    rc = run_on(m, ["online", "-b", "-z", "Normal", "1-34"])
    err = capsys.readouterr().err
    assert rc == 64
    assert err == (
        "memhp online: Memory Block 1 (0x0000000008000000-0x000000000fffffff) "
        "enable failed: Zone mismatch\n"
    )
    assert state(m, 34) == "online" and state(m, 1) == "offline"


def test_offline_failure_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    m = dimm_machine(("online_movable", "online_kernel", "online_movable", "online_movable"))
    pin(m, 33)  # unmovable pages in a kernel zone: EBUSY
    assert run_on(m, ["offline", "-b", "33"]) == 1
    err = capsys.readouterr().err
    assert "Memory Block 33" in err and "Device or resource busy" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["offline", "100M"],
        ["offline", "-b", "99"],
        ["offline", "64G"],
        ["online", "-z", "Bogus", "-b", "32"],
        ["offline", "0x1-0x2"],
    ],
)
def test_bad_input_one_line_nothing_changed(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    fs = RecordingFS(dimm_machine().sysfs)
    assert run_on(fs, argv) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"memhp {argv[0]}: ")
    assert fs.writes == []


def test_no_such_root(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for cmd in (["devices"], ["why", "1"], ["remove", "PNP0C80:00"], ["offline", "1G"]):
        assert main([*cmd, "--sysroot", str(tmp_path / "nope")]) == 1
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "No such file or directory" in err


def test_empty_root(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["offline", "1G", "--sysroot", str(tmp_path)]) == 1
    assert "no memory blocks" in capsys.readouterr().err


def test_permission_denied_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Run by a user who is not root: the VFS refuses the write (EACCES)."""
    m = dimm_machine()
    assert (
        run_on(RecordingFS(m.sysfs, before_write=unprivileged(m.sysfs)), ["offline", "-b", "33"])
        == 1
    )
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Permission denied" in err
    assert state(m, 33) == "online"


def test_devices_table_and_json(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    assert main(["devices", "--sysroot", str(tree)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "DEVICE",
        "RANGE",
        "SIZE",
        "NODE",
        "BLOCKS",
        "ONLINE",
        "ZONES",
        "EJECT",
    ]
    assert out[1].split() == [
        "PNP0C80:00",
        "0x0000000100000000-0x000000011fffffff",
        "512M",
        "1",
        "32-35",
        "4/4",
        "Normal/Movable",
        "yes",
    ]
    assert main(["devices", "-J", "--sysroot", str(tree)]) == 0
    data = json.loads(capsys.readouterr().out)
    dev = data["devices"][0]
    assert dev["blocks"] == [32, 33, 34, 35] and dev["ejectable"] is True
    assert dev["start"] == 0x100000000 and dev["size"] == 512 << 20


def test_offline_on_directory_tree_writes_files(tree: Path) -> None:
    """On a plain directory the write lands in the file (what a FUSE mount would get)."""
    assert main(["offline", "-b", "35", "--sysroot", str(tree)]) == 0
    assert (tree / "sys/devices/system/memory/memory35/state").read_text() == "offline"


def test_remove_rolls_back_and_explains(capsys: pytest.CaptureFixture[str]) -> None:
    m = dimm_machine(("online_movable", "online_kernel", "online_movable", "online_movable"))
    pin(m, 33)
    rc = run_on(m, ["remove", "PNP0C80:00", "--timeout", "0.2"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "memory33: offline failed: EBUSY (Device or resource busy)" in err
    assert "rolled back: onlined 3 block(s) again" in err
    assert all(state(m, i) == "online" for i in range(32, 36))


def test_remove_success(capsys: pytest.CaptureFixture[str]) -> None:
    m = dimm_machine()
    bs = 128 << 20
    m.fill(1000, start=34 * bs, end=35 * bs, owner="app")  # movable: migrated
    assert run_on(m, ["remove", "-v", "PNP0C80:00"]) == 0
    out = capsys.readouterr().out
    # once: memory34's offline moves them to node 0 (do_migrate_range()'s nodemask
    # leaves node 1 out), not into the device's lower, still online blocks
    assert "4 block(s) offlined, ejected, removed; 1000 pages migrated (3.9 MiB)\n" in out
    assert not any(exists(m, i) for i in range(32, 36))


def test_remove_says_what_migration_failed(capsys: pytest.CaptureFixture[str]) -> None:
    """A pinned page in a Movable block: every retry round's migration fails on it
    (/proc/vmstat pgmigrate_fail), which the failure report says."""
    m = dimm_machine()
    bs = 128 << 20
    m.fill(10, start=35 * bs, end=36 * bs, mix=WorkloadMix(pinned=1.0), owner="rdma")
    rc = run_on(m, ["remove", "PNP0C80:00", "--timeout", "0.2"])
    err = capsys.readouterr().err
    assert rc == 1 and "memory35: offline failed: EINTR" in err
    line = next(x for x in err.splitlines() if x.startswith("memhp remove: meanwhile"))
    failed = int(line.split(", ")[1].split()[0])
    assert failed > 0 and failed % 10 == 0  # the 10 pinned pages, once per round


def test_remove_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    fs = RecordingFS(dimm_machine().sysfs)
    assert run_on(fs, ["remove", "--dry-run", "PNP0C80:00"]) == 0
    out = capsys.readouterr().out
    assert "memory35 memory34 memory33 memory32" in out and fs.writes == []


def test_remove_unknown_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_on(dimm_machine(), ["remove", "DIMM7"]) == 1
    assert "unknown memory device: DIMM7" in capsys.readouterr().err


def test_why_on_sim(capsys: pytest.CaptureFixture[str]) -> None:
    m = dimm_machine()
    pin(m, 35, pages=10)
    assert run_on(m, ["why", "35"]) == 0
    out = capsys.readouterr().out
    assert "the kernel allocated pages here at run time that it cannot migrate: 10 slab" in out


def test_why(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    assert main(["why", "memory0", "--sysroot", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "spans several zones" in out and "holes:            yes" in out
    assert main(["why", "-J", "33", "--sysroot", str(tree)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["zone"] == "Movable" and data["device"] == "PNP0C80:00"
    assert main(["why", "x1", "--sysroot", str(tree)]) == 1
    assert "invalid block" in capsys.readouterr().err


def test_list_via_main(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    assert main(["list", "--sysroot", str(tree), "-o", "BLOCK,DEVICE", "-n"]) == 0
    out = capsys.readouterr().out
    # lsmem prints nothing (not even padding) for an empty last cell
    assert out.splitlines()[:2] == ["  0-7 ", "32-35 PNP0C80:00"]


def test_remove_keep_offline_names_the_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16 item 14: --keep-offline (rc 64) says which blocks it left offline."""
    m = dimm_machine(("online_movable", "online_kernel", "online_movable", "online_movable"))
    pin(m, 33)
    rc = run_on(m, ["remove", "--keep-offline", "--timeout", "0.2", "PNP0C80:00"])
    err = capsys.readouterr().err
    assert rc == 64
    assert [state(m, b) for b in range(32, 36)] == ["offline", "online", "offline", "offline"]
    assert "left offline (--keep-offline): memory32 memory34 memory35\n" in err


def test_devices_all_empty_slots_not_ejectable(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16 item 12: an empty slot has nothing to eject (EJECT '-')."""
    assert run_on(dimm_machine(), ["devices", "-a"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows[0][0] == "PNP0C80:00" and rows[0][-1] == "yes"
    assert [(r[0], r[-1]) for r in rows[1:]] == [(f"PNP0C80:0{i}", "-") for i in (1, 2, 3)]
