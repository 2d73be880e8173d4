"""Issue 16 (items 2-16): what a new user ran into, one test per item, and a sweep
that runs every command with bad input and checks no traceback reaches the user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memhp.abi.tree import write_tree
from memhp.cli.main import main
from tests.support.trees import BlockSpec, make_snapshot

REPO = Path(__file__).resolve().parents[2]
MEM = "sys/devices/system/memory"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    blocks = [BlockSpec(0, valid_zones="none")]
    blocks += [BlockSpec(i, valid_zones="DMA32") for i in range(1, 8)]
    blocks += [
        BlockSpec(i, valid_zones="Movable", node=1, device="PNP0C80:00") for i in range(32, 36)
    ]
    write_tree(make_snapshot(blocks), str(tmp_path / "t"))
    return tmp_path / "t"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def machine_file(tmp_path: Path, name: str, old: str, new: str) -> str:
    text = (REPO / "machines/seed.toml").read_text()
    assert old in text
    p = tmp_path / f"{name}.toml"
    p.write_text(text.replace(old, new))
    return str(p)


@pytest.mark.parametrize("m", ["qemu-linux-6.1", "qemu-pc-2node", "seed"])
def test_item2_demo_on_shipped_machines(
    m: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = run(["demo", m, "--out", str(tmp_path / "o")], capsys)
    assert rc == 0 and "invariants held" in out


def test_item2_demo_refuses_without_slot(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(["demo", "movable-node", "--out", "/tmp/unused"], capsys)
    assert rc == 1 and err.count("\n") == 1 and "slot" in err


def test_item3_readme_states_measured_boot() -> None:
    assert "under a second" not in (REPO / "README.md").read_text()


def test_item4_output_paths(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "d.png").mkdir()
    (tmp_path / "f").write_text("x")
    for argv in (
        ["map", "-s", str(tree), "-o", "/proc/x.png"],
        ["map", "-s", str(tree), "-o", "/sys/x.svg"],
        ["map", "-s", str(tree), "-o", str(tmp_path / "d.png")],
        ["demo", "--out", "/proc/x"],
        ["demo", "--out", str(tmp_path / "f")],
    ):
        rc, _, err = run(argv, capsys)
        assert rc == 1 and err.count("\n") == 1, (argv, err)
    assert (tmp_path / "f").read_text() == "x"


def test_item5_machine_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'name = "\xff"\n')
    cases = {
        str(bad): "UTF-8",
        machine_file(tmp_path, "e", '["1G", "4G"]', '["1G", "1E"]'): "physical address limit",
        machine_file(tmp_path, "p", '["1G", "4G"]', '["1G", "0x10000000000000000"]'): "limit",
        machine_file(tmp_path, "i", 'image_size = "24M"', 'image_size = "2G"'): "image",
        machine_file(tmp_path, "s", '"16M"', '"4G"'): "kernel.boot_slab_per_node",
    }
    for path, what in cases.items():
        for argv in (["map", "--machine", path], ["pgtables", path], ["demo", path]):
            rc, _, err = run(argv, capsys)
            assert rc == 1 and what in err and err.count("\n") == 1, (argv, err)
    from memhp.kernel.machine import parse_size

    assert parse_size("4P", "k") == 4 << 50 and parse_size("1E", "k") == 1 << 60


def corrupt(tree: Path, name: str) -> None:
    m = tree / MEM
    if name == "bs-garbage":
        (m / "block_size_bytes").write_text("zzz\n")
    elif name == "bs-empty":
        (m / "block_size_bytes").write_text("")
    elif name == "bs-zero":
        (m / "block_size_bytes").write_text("0\n")
    elif name == "bs-huge":
        (m / "block_size_bytes").write_text("ffffffffffffffffffff\n")
    elif name == "state-binary":
        (m / "memory5/state").write_bytes(b"\xff\xfe\x00")
    elif name == "plain-file":
        subprocess.run(["rm", "-rf", str(m / "memory5")], check=True)
        (m / "memory5").write_text("x")
    elif name == "loop":
        subprocess.run(["rm", "-rf", str(m / "memory5")], check=True)
        os.symlink("memory5", m / "memory5")


@pytest.mark.parametrize("name", ["bs-garbage", "bs-empty", "bs-zero", "state-binary"])
def test_item6_corrupt_trees(name: str, tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corrupt(tree, name)
    for cmd in (["devices"], ["why", "5"], ["map"], ["online", "-b", "5"], ["offline", "-b", "5"]):
        _rc, _, err = run([*cmd, "-s", str(tree)], capsys)
        assert "Traceback" not in err and err.count("\n") <= 2, (cmd, err)


def test_item7_why_ascii_digits(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for b in ("²", "memory٣"):
        rc, _, err = run(["why", b, "-s", str(tree)], capsys)
        assert rc == 1 and "invalid block" in err


def test_item8_getopt_names_whole_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["list", "--out=RANGE,BLOCK"], capsys)[2].startswith(
        "memhp list: option '--out=RANGE,BLOCK' is ambiguous"
    )
    assert "option '--s=only' is ambiguous" in run(["list", "--s=only"], capsys)[2]
    assert "unrecognized option '--foo=bar'" in run(["list", "--foo=bar"], capsys)[2]


@pytest.mark.parametrize(
    ("name", "rc", "text"),
    [
        ("bs-zero", 0, "0x0000000000000000-0xffffffffffffffff"),
        ("bs-huge", 1, "Numerical result out of range"),
        ("plain-file", 1, "Failed to open memory5: Not a directory"),
        ("loop", 1, "Failed to open memory5: Too many levels of symbolic links"),
    ],
)
def test_item9_corrupt_trees_like_lsmem(
    name: str, rc: int, text: str, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt(tree, name)
    got, out, err = run(["list", "-s", str(tree)], capsys)
    assert got == rc and text in out + err


@pytest.mark.parametrize(
    ("argv", "rc"),
    [
        (["offline", "-b", "20-30"], 1),
        (["offline", "-b", "5-20"], 64),
        (["offline", "0"], 0),
        (["offline", "-1"], 1),
        (["offline", "999999999999999999999G"], 1),
        (["offline"], 1),
        (["online", "-e", "-b", "5"], 0),
        (["offline", "-d", "-b", "5"], 0),
    ],
)
def test_item10_chmem_exit_codes(
    argv: list[str], rc: int, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got, _, err = run([*argv, "-s", str(tree)], capsys)
    assert got == rc, err
    if "999" in argv[-1]:
        assert "Numerical result out of range" in err


def test_item11_version_help_and_manpage(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["--version"], capsys)
    assert rc == 0 and out.startswith("memhp ")
    for cmd in ("online", "offline", "remove", "sim", "map"):
        rc, out, _ = run([cmd, "--help"], capsys)
        assert rc == 0 and out.startswith("\nUsage:\n memhp ") and "\nOptions:\n" in out
    from memhp.cli.manpage import SHIPPED, render

    assert SHIPPED.read_text() == render(), "run: python -m memhp.cli.manpage -o memhp/memhp.1"


def test_item12_devices_empty(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subprocess.run(["rm", "-rf", str(tree / "sys/bus/acpi/devices/PNP0C80:00")], check=True)
    rc, out, err = run(["devices", "-s", str(tree)], capsys)
    assert rc == 0 and out.startswith("DEVICE") and "no memory devices" in err


def test_item13_verdict_first(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["why", "33", "-s", str(tree)], capsys)
    assert rc == 0 and out.splitlines()[1].split() == ["verdict:", "can", "be", "offlined"]
    from memhp.host.diagnose import UNMOVABLE_KINDS

    assert "unevictable" not in UNMOVABLE_KINDS


@pytest.mark.parametrize("t", ["-1", "nan", "inf"])
def test_item14_remove_timeout(t: str, tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(["remove", "PNP0C80:00", "--timeout", t, "-s", str(tree)], capsys)
    assert rc == 1 and "--timeout" in err


def test_item15_map_options(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--width", "0"], ["--width", "-5"], ["--scenario", "seed"]):
        rc, _, err = run(["map", *argv, "-s", str(tree)], capsys)
        assert rc == 1 and err, argv
    assert "Draw the physical memory map" in run(["map", "--help"], capsys)[1]


def test_item16_pgtables_errno_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert "EEXIST (File exists)" in run(["pgtables", "seed", "--add", "512M@0"], capsys)[2]
    assert "EBUSY" in run(["pgtables", "seed", "--remove", "128M@0"], capsys)[2]


def test_no_traceback_on_bad_input(tree: Path, tmp_path: Path) -> None:
    """Every command with bad input, in a subprocess: one message, never a traceback."""
    s = ["-s", str(tree)]
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe")
    cases = [
        ["list", "--foo=bar"],
        ["list", "-s", "/nonexistent"],
        ["online", "x", *s],
        ["online", "-b", "9-3", *s],
        ["offline", "-1", *s],
        ["offline", "1Q", *s],
        ["devices", "-s", "/nonexistent"],
        ["remove", "nosuch", *s],
        ["remove", "PNP0C80:00", "--timeout", "nan", *s],
        ["why", "²", *s],
        ["why", "999", *s],
        ["map", "--width", "x", *s],
        ["map", "-o", "/proc/x.png", *s],
        ["map", "--machine", str(bad)],
        ["pgtables", str(bad)],
        ["pgtables", "seed", "--add", "x"],
        ["demo", str(bad)],
        ["demo", "movable-node"],
        ["sim", "start", str(bad), "--mount", str(tmp_path)],
        ["sim", "status"],
        ["bench", "--nosuch"],
        ["nosuch"],
        [],
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for argv in cases:
        p = subprocess.run(
            [sys.executable, "-m", "memhp.cli.main", *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(tmp_path),
            timeout=120,
        )
        assert "Traceback" not in p.stderr, (argv, p.stderr)
        assert p.returncode != 0 and p.stderr.strip(), (argv, p.returncode)


def test_item9_block_without_its_node_link(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Only ``node1/memory33`` names the node: lsmem reads the block's own links (-1)."""
    (tree / MEM / "memory33/node1").unlink()
    rc, out, _ = run(["list", "-o", "BLOCK,NODE", "-s", str(tree)], capsys)
    assert rc == 0
    assert ["33", "-1"] in [line.split() for line in out.splitlines()], out
    lsmem = shutil.which("lsmem")
    if lsmem is not None:  # util-linux's own answer (installed by .ci/run)
        real = subprocess.run(
            [lsmem, "-o", "BLOCK,NODE", "--sysroot", str(tree)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert real.stdout == out
