"""``memhp list`` against Debian's ``lsmem`` (util-linux 2.38), byte for byte.

Every tree (each step of the Linux 6.1 reference trace, stored fixtures and
synthetic corner cases) is written to a directory; both tools run on it with
many option combinations; stdout, exit code and stderr (program name aside) must
be identical.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from memhp.abi.tree import write_tree
from memhp.cli.cmd_list import run
from tests.support.trees import BlockSpec, all_snapshots, make_snapshot

LSMEM = shutil.which("lsmem")
pytestmark = pytest.mark.skipif(LSMEM is None, reason="needs util-linux lsmem")

OPTION_SETS = [
    "",
    "-a",
    "-b",
    "-a -b",
    "-J",
    "-J -a",
    "-J -b",
    "-J -b -a --output-all",
    "-P",
    "-P -a -b",
    "-r",
    "-r -n",
    "-n",
    "-n -a",
    "-o RANGE,SIZE",
    "-o +NODE",
    "-o +ZONES",
    "-o +NODE,ZONES",
    "-o size,range,state",
    "-o STATE,REMOVABLE",
    "-o REMOVABLE,RANGE",
    "-o NODE,NODE",
    "-o BLOCK,ZONES -a",
    "-oRANGE,",
    "--output=BLOCK,SIZE",
    "--output-all",
    "--output-all -o +NODE",
    "-o +NODE --output-all",
    "--output-all -a -J",
    "--output-all -P",
    "--output-all -r",
    "-S NODE",
    "-S none",
    "-S STATE,ZONES",
    "-S zones -o RANGE,SIZE",
    "--split=REMOVABLE --output-all",
    "-S node -o +NODE",
    "--summary",
    "--summary=only",
    "--summary=only -b",
    "--summary=never",
    "--summary=always",
    "--summary=always -J",
    "--summary=always -r",
    "--summary=always -P -b",
    "--summary=only -o FOO",
    "--summ -b",
    "--all --bytes --noheadings",
    "--json --all",
    "--pairs",
    "--raw --all",
    "-bn",
    "-abJ",
    # errors
    "-J -P",
    "-r -J",
    "-P -r",
    "-a -S NODE",
    "-S NODE -a",
    "--all --split=node",
    "-o FOO",
    "-o RANGE,,SIZE",
    "-o ,RANGE",
    "-o +",
    "-S FOO",
    "--summary=foo",
    "--summary=only -r",
    "-r --summary=only",
    "-J --summary=only",
    "--summary=never --summary",
    "extra",
    "-a extra",
    "-o RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE",
    "-o RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE,RANGE",
    "--output-all -o +NODE,ZONES,BLOCK,SIZE,RANGE,STATE,RANGE",
    "--output-all -o +NODE,ZONES,BLOCK,SIZE,RANGE,STATE,RANGE,SIZE",
    "--s",
    "--out RANGE",
    "--output",
    "-o",
    "--json=1",
    "--bogus",
    "-x",
    "-J -P --bogus",
    "--bogus -J -P",
    "-o DEVICE",
]


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("trees")
    out: dict[str, Path] = {}
    for name, snap in all_snapshots().items():
        write_tree(snap, str(base / name))
        out[name] = base / name
    return out


def lsmem(root: Path, args: list[str]) -> tuple[int, str, str]:
    assert LSMEM is not None
    p = subprocess.run(
        [LSMEM, "--sysroot", str(root), *args],
        capture_output=True,
        text=True,
        env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    err = p.stderr.replace(LSMEM, "lsmem").replace("lsmem", "memhp list")
    return p.returncode, p.stdout, err


def memhp_list(root: Path, args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run(["--sysroot", str(root), *args])
    return rc, out.getvalue(), err.getvalue()


def test_there_are_trees(trees: dict[str, Path]) -> None:
    assert any(n.startswith("trace-") for n in trees), "reference trace not found"
    assert len(trees) >= 10


@pytest.mark.parametrize("opts", [o for o in OPTION_SETS if "DEVICE" not in o])
def test_same_as_lsmem(trees: dict[str, Path], opts: str) -> None:
    """Every option set lsmem knows (DEVICE is memhp's own column: see below)."""
    args = shlex.split(opts)
    checked = 0
    for name, root in trees.items():
        want = lsmem(root, args)
        got = memhp_list(root, args)
        assert got == want, f"tree {name}, options {opts!r}"
        checked += 1
    assert checked == len(trees)


def test_errors_without_tree(tmp_path: Path) -> None:
    """No such root, no block size, no blocks: same message and exit code."""
    (tmp_path / "e1/sys/devices/system/memory").mkdir(parents=True)
    (tmp_path / "e2/sys/devices/system/memory").mkdir(parents=True)
    (tmp_path / "e2/sys/devices/system/memory/block_size_bytes").write_text("8000000\n")
    for root in (tmp_path / "nonexistent", tmp_path / "e1", tmp_path / "e2"):
        for args in ([], ["--summary=only"], ["-J"]):
            want = lsmem(root, args)
            got = memhp_list(root, args)
            assert want[0] == 1
            if root.name == "e2":
                # lsmem appends a stale errno to "Failed to read DIR"; compare the rest
                want = (want[0], want[1], want[2].rsplit(": ", 1)[0])
                got = (got[0], got[1], got[2].rsplit(": ", 1)[0])
                assert "Failed to read" in got[2]
            assert got == want, (root, args)


def test_device_column(trees: dict[str, Path]) -> None:
    """DEVICE names the ACPI device of hot-added blocks and splits ranges by it."""
    rc, out, _ = memhp_list(trees["trace-1-after-hotadd-dimm1-node1"], ["-o", "BLOCK,DEVICE"])
    assert rc == 0
    rows = [line.split() for line in out.splitlines()[1:3]]
    assert rows == [["0-7"], ["32-35", "PNP0C80:00"]]
    rc, out, _ = memhp_list(trees["two-nodes-mixed"], ["-o", "BLOCK,DEVICE", "-S", "none"])
    assert "40-43 PNP0C80:00" in " ".join(out.split())
    assert "44-47 PNP0C80:01" in " ".join(out.split())


def test_memconfig_columns(trees: dict[str, Path]) -> None:
    rc, out, _ = memhp_list(
        trees["s390-memconfig"], ["-o", "BLOCK,CONFIGURED,MEMMAP-ON-MEMORY", "-J"]
    )
    assert rc == 0
    assert '"configured": "yes"' in out and '"configured": "no"' in out
    assert '"memmap-on-memory": "no"' in out


ODD_OPTIONS = ["", "-a", "-o +NODE,ZONES", "-J --output-all", "--summary=only", "-S none -o +ZONES"]


def _odd_tree(base: Path, fatal: bool) -> Path:
    """300 blocks (several of memhp list's read batches) with damage of every kind
    its fast paths fall back on; ``fatal``: two blocks lsmem cannot open, the
    first one named."""
    blocks = [
        BlockSpec(i, node=i // 150, valid_zones="Normal" if i < 200 else "Movable")
        for i in range(300)
    ]
    write_tree(make_snapshot(blocks), str(base))
    m = base / "sys/devices/system/memory"
    if fatal:
        shutil.rmtree(m / "memory250")
        os.symlink("nowhere", m / "memory250")  # state unknown, then no directory to read
        shutil.rmtree(m / "memory260")
        (m / "memory260").write_text("x")
        return base
    (m / "memory150/state").unlink()
    (m / "memory150/state").mkdir()  # opens, fails to read (EISDIR)
    (m / "memory7/valid_zones").unlink()
    (m / "memory8/removable").unlink()
    (m / "memory200/removable").write_text("1" + " " * 299)  # longer than a first read
    (m / "memory201/valid_zones").write_text(" ".join(["Movable"] * 40) + "\n")
    (m / "memory202/state").write_text("online" + "\n" * 250)  # 256 bytes exactly
    (m / "memory100/node0").unlink()  # only node0/memory100 names it: lsmem says -1
    (m / "memory120/node0").unlink()
    os.symlink("../../node/node0", m / "memory120/node7")  # another node, dangling
    (m / "memory²").mkdir()  # not an ASCII digit: no block for lsmem
    (m / "memory²/state").write_text("online\n")
    return base


@pytest.mark.parametrize("fatal", [False, True])
def test_damaged_trees_same_as_lsmem(tmp_path: Path, fatal: bool) -> None:
    """Unreadable, missing, long and exactly-256-byte attributes, blocks without
    their node link or with another one, non-ASCII digits, blocks that are no
    directory: the batched reads fall back to lsmem's answer for each."""
    root = _odd_tree(tmp_path / "t", fatal)
    for opts in ODD_OPTIONS:
        args = shlex.split(opts)
        want = lsmem(root, args)
        assert (want[0] == 1) is fatal, (opts, want)
        assert memhp_list(root, args) == want, opts
