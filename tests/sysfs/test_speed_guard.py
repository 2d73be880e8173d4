"""Loose guards of the speed goals of issue 17 (benchmarks/bench_fuse.py, bench_list.py
measure them properly): ratios measured side by side, asserted at ~3x the goal, and the
figures recorded by the benchmarks (benchmarks/results/fuse.json) checked with 2x slack;
those skip until the benchmark has recorded them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memhp.abi.fs import DirectoryFS
from memhp.abi.tree import capture, write_tree
from memhp.sim.daemon import start, stop
from memhp.sim.fuse import fuse_unavailable_reason
from tests.support.trees import BlockSpec, make_snapshot

REPO = Path(__file__).resolve().parents[2]
MACHINE = str(REPO / "machines" / "qemu-linux-6.1.toml")
STATE = "sys/devices/system/memory/memory5/state"


def _best_read(path: str, n: int = 300) -> float:
    best = 1.0
    for _ in range(n):
        t = time.perf_counter()
        fd = os.open(path, os.O_RDONLY)
        os.read(fd, 4096)
        os.close(fd)
        best = min(best, time.perf_counter() - t)
    return best


def _recorded(what: str) -> float:
    data = json.loads((REPO / "benchmarks" / "results" / "fuse.json").read_text())
    rows = [r for r in data["results"] if r["what"].startswith(what)]
    if not rows:
        pytest.skip(f"benchmarks/bench_fuse.py has not recorded {what!r} yet")
    return float(rows[0]["value"])


def test_recorded_read_ratio_meets_the_goal() -> None:
    assert _recorded("read LIVE / COPY") <= 5.0 * 2  # goal 5x (was 77x)


def test_recorded_lsmem_ratio_meets_the_goal() -> None:
    assert _recorded("lsmem LIVE / COPY (default) (16384 blocks), warm") <= 3.0 * 2  # goal 3x


def test_recorded_big16t_lsmem_summary_meets_the_goal() -> None:
    # goal 10 s once the mount is ready (was 2 min 58 s)
    assert _recorded("lsmem --summary=only LIVE big-16t (131072 blocks), warm") <= 10.0 * 2


@pytest.mark.skipif(fuse_unavailable_reason() is not None, reason="FUSE is not available")
def test_read_within_15x_of_a_copy(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    start(MACHINE, str(mnt))
    try:
        copy = tmp_path / "copy"
        write_tree(capture(DirectoryFS(str(mnt))), str(copy))
        live = _best_read(str(mnt / STATE))
        disk = _best_read(str(copy / STATE))
    finally:
        stop(str(mnt))
    assert live < 15 * disk + 20e-6, (live, disk)  # goal 5x (was 77x)


def _best_run(cmd: list[str], n: int = 5) -> float:
    best = 10.0
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - t)
    return best


def test_memhp_list_starts_near_the_interpreter(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write_tree(make_snapshot([BlockSpec(i) for i in range(512)]), str(tree))
    entry = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); "
        "from memhp.cli.main import main; sys.exit(main())"
    )
    bare = _best_run([sys.executable, "-I", "-S", "-c", "pass"])
    memhp = _best_run([sys.executable, "-I", "-S", "-c", entry, "list", "-s", str(tree)])
    assert memhp - bare < 0.09, (memhp, bare)  # goal 30 ms
