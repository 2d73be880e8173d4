"""The online/offline/devices/remove/why commands, end to end through ``memhp``."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from memhp_trees import trace_snapshots

from memhp.abi.tree import write_tree
from memhp.cli.main import build_parser, main
from memhp.host.root import SysfsRoot
from memhp.host.testing import FakeBlock, FakeKernel, make_snapshot

MEM = "/sys/devices/system/memory"


def machine(**kw: object) -> FakeKernel:
    blocks = [FakeBlock(0, valid_zones="none")]
    blocks += [FakeBlock(i, valid_zones="DMA32") for i in range(1, 8)]
    blocks += [
        FakeBlock(i, valid_zones="Movable", node=1, device="PNP0C80:00") for i in range(32, 36)
    ]
    return FakeKernel(make_snapshot(blocks), **kw)  # type: ignore[arg-type]


def run_on(k: FakeKernel, argv: list[str]) -> int:
    """Run a command on an in-process root (what the simulated machine will plug into)."""
    args = build_parser().parse_args(argv)
    args.root = SysfsRoot(k)
    rc: int = args.func(args)
    return rc


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    snaps = trace_snapshots()
    if not snaps:
        pytest.skip("reference trace not available")
    write_tree(snaps["trace-2-after-online"], str(tmp_path / "t"))
    return tmp_path / "t"


def test_offline_verbose_messages(capsys: pytest.CaptureFixture[str]) -> None:
    k = machine()
    assert run_on(k, ["offline", "-v", "256M"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "Memory Block 35 (0x0000000118000000-0x000000011fffffff) disabled",
        "Memory Block 34 (0x0000000110000000-0x0000000117ffffff) disabled",
    ]
    assert k.state(35) == "offline" and k.state(33) == "online"


def test_online_partial_exit_64(capsys: pytest.CaptureFixture[str]) -> None:
    k = machine()
    for i in (34, 35):
        k.store_state(i, "offline")
    k.fail_offline.clear()
    # onlining 32-35 by block: 32,33 already online, 34 ok, a zone request fails for 35
    k.store_state(35, "online")
    k.store_state(35, "offline")
    k.snap[f"{MEM}/memory35/valid_zones"] = k.snap[f"{MEM}/memory35/valid_zones"].__class__(
        k.snap[f"{MEM}/memory35/valid_zones"].kind, value="Normal\n", mode=0o444
    )
    rc = run_on(k, ["online", "-b", "-z", "Movable", "34-35"])
    err = capsys.readouterr().err
    assert rc == 64
    assert (
        "Memory Block 35 (0x0000000118000000-0x000000011fffffff) enable failed: Zone mismatch"
        in err
    )


def test_offline_failure_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    k = machine(fail_offline={33: (errno.EBUSY, None)})
    assert run_on(k, ["offline", "-b", "33"]) == 1
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
    k = machine()
    assert run_on(k, argv) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"memhp {argv[0]}: ")
    assert k.writes == []


def test_no_such_root(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for cmd in (["devices"], ["why", "1"], ["remove", "PNP0C80:00"], ["offline", "1G"]):
        assert main([*cmd, "--sysroot", str(tmp_path / "nope")]) == 1
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "No such file or directory" in err


def test_empty_root(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["offline", "1G", "--sysroot", str(tmp_path)]) == 1
    assert "no memory blocks" in capsys.readouterr().err


def test_permission_denied_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    k = machine()
    e = k.snap[f"{MEM}/memory33/state"]
    k.snap[f"{MEM}/memory33/state"] = e.__class__(e.kind, value=e.value, mode=0o444)
    assert run_on(k, ["offline", "-b", "33"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Permission denied" in err
    assert k.state(33) == "online"


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
    k = machine(fail_offline={33: (errno.EBUSY, None)})
    rc = run_on(k, ["remove", "PNP0C80:00", "--timeout", "0.2"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "memory33: offline failed: EBUSY (Device or resource busy)" in err
    assert "rolled back: onlined 3 block(s) again" in err
    assert all(k.state(i) == "online" for i in range(32, 36))


def test_remove_success(capsys: pytest.CaptureFixture[str]) -> None:
    k = machine()
    assert run_on(k, ["remove", "-v", "PNP0C80:00"]) == 0
    assert "4 block(s) offlined, ejected, removed" in capsys.readouterr().out
    assert not any(p.startswith(f"{MEM}/memory32") for p in k.snap)


def test_remove_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    k = machine()
    assert run_on(k, ["remove", "--dry-run", "PNP0C80:00"]) == 0
    out = capsys.readouterr().out
    assert "memory35 memory34 memory33 memory32" in out and k.writes == []


def test_remove_unknown_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_on(machine(), ["remove", "DIMM7"]) == 1
    assert "unknown memory device: DIMM7" in capsys.readouterr().err


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
