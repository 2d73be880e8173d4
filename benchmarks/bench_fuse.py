"""Time the FUSE mount of a simulated machine: one attribute read, and lsmem on a big machine.

1. Per-read latency of ``memoryN/state`` (open + read + close) through the
   mount of the reference QEMU guest, next to the same read in-process
   (``KernelSysfs.read``) and on a captured copy on disk.
2. ``lsmem --sysroot DIR`` (and ``-a -o +NODE,ZONES``) on a live mount of a
   machine with 16,384 memory blocks (2 TiB, 128 MiB blocks), next to the same
   on a captured copy; checks both print the same bytes.
3. Parts 1-2 again with ``MEMHP_FUSE_FAST=1`` (opens make no request; rows marked
   so), and ``lsmem --summary=only`` on machines/big-16t.toml in that mode.

Writes ``benchmarks/results/fuse.json``.  Usage:
``python benchmarks/bench_fuse.py [--reads N] [--runs N] [--blocks N] [--no-big16t]``
(``--no-big16t`` keeps the recorded big-16t rows, each marked with its date).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from memhp.abi.fs import DirectoryFS
from memhp.abi.tree import capture, write_tree
from memhp.sim.config import load_machine
from memhp.sim.daemon import start, stop
from memhp.sim.fuse import fuse_unavailable_reason
from memhp.sim.machine import SimMachine

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from _common import record  # noqa: E402


def big_machine_toml(nblocks: int) -> str:
    """Two nodes, ``nblocks`` blocks of 128 MiB of boot memory, 4 hotplug slots."""
    size = nblocks * (128 << 20)
    half = size // 2
    return f"""
name = "bench-{nblocks}-blocks"
profile = "linux-6.1"
block_size = "128M"
memcg = true
auto_online_blocks = "offline"

[[e820]]
start = "0x0"
end = "0x9fbff"
type = "System RAM"

[[e820]]
start = "0x100000"
end = "{size - 1:#x}"
type = "System RAM"

[[node]]
id = 0
cpus = [0, 1]
distance = [10, 20]
memory = [["0", "{half:#x}"]]

[[node]]
id = 1
cpus = [2, 3]
distance = [20, 10]
memory = [["{half:#x}", "{size:#x}"]]
hotplug = [["{size:#x}", "{size + (64 << 30):#x}"]]

[hotplug]
slots = 4
maxmem = "{(size >> 30) + 64}G"
"""


def per_read(path: str, n: int) -> list[float]:
    """open(2) + read(2) + close(2), as lsmem and cat do (Python's buffered ``open()``
    adds an ioctl(TCGETS) for isatty(), which FUSE forwards to the server)."""
    out = []
    o_open, o_read, o_close, rdonly = os.open, os.read, os.close, os.O_RDONLY
    for _ in range(n):
        t = time.perf_counter()
        fd = o_open(path, rdonly)
        o_read(fd, 4096)
        o_close(fd)
        out.append(time.perf_counter() - t)
    return out


def stats(xs: list[float], scale: float = 1e6) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "median": statistics.median(xs) * scale,
        "p90": xs[int(len(xs) * 0.9)] * scale,
        "min": xs[0] * scale,
    }


def time_cmd(cmd: list[str], runs: int, warmup: bool = True) -> list[float]:
    env = dict(os.environ, LC_ALL="C")
    if warmup:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=env)
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=env)
        out.append(time.perf_counter() - t)
    return out


def first_writes(mnt: str) -> list[dict[str, Any]]:
    """The cost of the invalidation after a full lsmem (every attribute it read is an
    inode whose attributes the write invalidates): offline then online one block."""
    state = os.path.join(mnt, "sys/devices/system/memory/memory100/state")
    out = []
    for n, text in enumerate((b"offline", b"online")):
        fd = os.open(state, os.O_WRONLY)
        t = time.perf_counter()
        os.write(fd, text)
        dt = time.perf_counter() - t
        os.close(fd)
        which = "first write after a full lsmem" if n == 0 else "the next write"
        out.append(
            {
                "what": f"sysfs write ({which}, {text.decode()})",
                "value": round(dt * 1e3, 1),
                "unit": "ms",
            }
        )
    return out


def big16t(runs: int, lsmem: str) -> list[dict[str, Any]]:
    """``lsmem --summary=only`` on a live machines/big-16t.toml (131,072 blocks),
    timed once the mount is ready (cold, then warm)."""
    with tempfile.TemporaryDirectory() as tmp:
        mnt = os.path.join(tmp, "m")
        os.mkdir(mnt)
        t0 = time.perf_counter()
        start(str(REPO / "machines" / "big-16t.toml"), mnt, timeout=900)
        rows: list[dict[str, Any]] = [
            {
                "what": "memhp sim start machines/big-16t.toml",
                "value": round(time.perf_counter() - t0, 2),
                "unit": "s",
            }
        ]
        try:
            cmd = [lsmem, "--sysroot", mnt, "--summary=only"]
            cold = time_cmd(cmd, 1, warmup=False)[0]
            # one run more before the timed ones: the server completes the listings
            # lsmem left unfinished in the background (memhp/sim/fuse_cache.py)
            warm = statistics.median(time_cmd(cmd, runs, warmup=True))
        finally:
            stop(mnt)
    for label, v in (("cold", cold), ("warm", warm)):
        rows.append(
            {
                "what": f"lsmem --summary=only LIVE big-16t (131072 blocks), {label}",
                "value": round(v, 2),
                "unit": "s",
                "target": "<= 10",
                "ok": v <= 10.0,
            }
        )
    return rows


def bench_lsmem(
    tmp: str, nblocks: int, compare: bool, runs: int, lsmem: str | None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    toml = os.path.join(tmp, f"big{nblocks}.toml")
    Path(toml).write_text(big_machine_toml(nblocks))
    big = os.path.join(tmp, f"big{nblocks}")
    os.mkdir(big)
    t0 = time.perf_counter()
    start(toml, big, timeout=600)
    rows.append(
        {
            "what": f"memhp sim start ({nblocks} blocks: boot + mount)",
            "value": round(time.perf_counter() - t0, 2),
            "unit": "s",
        }
    )
    try:
        names = os.listdir(os.path.join(big, "sys/devices/system/memory"))
        assert len([n for n in names if n.startswith("memory")]) == nblocks
        if lsmem is None:
            return rows
        bcopy = os.path.join(tmp, f"big{nblocks}-copy")
        if compare:
            t0 = time.perf_counter()
            write_tree(capture(DirectoryFS(big)), bcopy)
            rows.append(
                {
                    "what": f"capture + write_tree through the live mount ({nblocks} blocks)",
                    "value": round(time.perf_counter() - t0, 2),
                    "unit": "s",
                }
            )
        for case in ([], ["-a", "-o", "+NODE,ZONES"]):
            label = " ".join(case) or "(default)"
            if compare:
                stop(big)  # a fresh daemon: nothing cached by the kernel
                start(toml, big, timeout=600)
                cold = time_cmd([lsmem, "--sysroot", big, *case], 1, warmup=False)[0]
            tl = time_cmd([lsmem, "--sysroot", big, *case], runs, warmup=compare)
            tm = time_cmd(
                [sys.executable, "-m", "memhp.cli.main", "list", "--sysroot", big, *case],
                runs,
                warmup=False,
            )
            ratio = statistics.median(tm) / statistics.median(tl)
            rows.append(
                {
                    "what": f"memhp list --sysroot LIVE mount {label} ({nblocks} blocks)",
                    "value": round(statistics.median(tm), 3),
                    "unit": "s",
                    "target": "no slower than lsmem",
                    "ratio_to_lsmem": round(ratio, 3),
                    "ok": ratio <= 1.0,
                }
            )
            row: dict[str, Any] = {
                "what": f"lsmem --sysroot LIVE mount {label} ({nblocks} blocks)",
                "value": round(statistics.median(tl), 3),
                "unit": "s",
                "runs": runs,
            }
            if compare:
                a = subprocess.run(
                    [lsmem, "--sysroot", big, *case], capture_output=True, check=True
                )
                b = subprocess.run(
                    [lsmem, "--sysroot", bcopy, *case], capture_output=True, check=True
                )
                row["same_output_as_copy"] = a.stdout == b.stdout
                tc = time_cmd([lsmem, "--sysroot", bcopy, *case], runs)
                rows.append(row)
                rows.append(
                    {
                        "what": f"lsmem --sysroot captured COPY {label} ({nblocks} blocks)",
                        "value": round(statistics.median(tc), 3),
                        "unit": "s",
                    }
                )
                warm = statistics.median(tl) / statistics.median(tc)
                row = {
                    "what": f"lsmem LIVE / COPY {label} ({nblocks} blocks), warm",
                    "value": round(warm, 2),
                    "unit": "x",
                    "target": "<= 3",
                    "ok": warm <= 3.0,
                }
                rows.append(row)
                if not case:
                    rows.extend(first_writes(big))
                row = {
                    "what": f"lsmem LIVE / COPY {label} ({nblocks} blocks), cold "
                    "(first run after the mount, nothing cached)",
                    "value": round(cold / statistics.median(tc), 2),
                    "unit": "x",
                    "cold_s": round(cold, 3),
                }
            rows.append(row)
    finally:
        stop(big)
    return rows


def _fast(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows measured with MEMHP_FUSE_FAST=1 (opens make no request)."""
    return [{**r, "what": r["what"] + " [MEMHP_FUSE_FAST=1]"} for r in rows]


SMALL = str(REPO / "machines" / "qemu-linux-6.1.toml")
STATE = "sys/devices/system/memory/memory5/state"


def live_read(tmp: str, name: str, n: int, copy_to: str | None = None) -> dict[str, float]:
    """:func:`stats` of ``n`` reads of memory5/state on a live mount of the reference
    guest at ``tmp/name`` (100 unmeasured first); ``copy_to``: the tree is captured
    there before the daemon stops."""
    mnt = os.path.join(tmp, name)
    os.mkdir(mnt)
    start(SMALL, mnt)
    try:
        state = os.path.join(mnt, STATE)
        per_read(state, 100)
        s = stats(per_read(state, n))
        if copy_to is not None:
            write_tree(capture(DirectoryFS(mnt)), copy_to)
    finally:
        stop(mnt)
    return s


def read_rows(s: dict[str, float], n: int, copy_us: float) -> list[dict[str, Any]]:
    """The live read's row and its ratio to the copy's median ``copy_us``."""
    ratio = s["median"] / copy_us
    return [
        {
            "what": "read memory5/state through FUSE (open+read+close), median",
            "value": round(s["median"], 1),
            "unit": "µs",
            "p90": round(s["p90"], 1),
            "min": round(s["min"], 1),
            "n": n,
        },
        {
            "what": "read LIVE / COPY (open+read+close of memory5/state)",
            "value": round(ratio, 2),
            "unit": "x",
            "target": "<= 5",
            "ok": ratio <= 5.0,
        },
    ]


def recorded_big16t() -> list[dict[str, Any]]:
    """The big-16t rows of the recorded fuse.json, each marked with when it was
    measured (``remeasured``, or the recording's date): for ``--no-big16t``."""
    path = HERE / "results" / "fuse.json"
    try:
        data = json.loads(path.read_text())
        rows = [r for r in data["results"] if "big-16t" in r["what"]]
        when = f"{data['environment']['date']} at {data['environment']['commit']}"
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [{**r, "remeasured": r.get("remeasured", when)} for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=16384)
    ap.add_argument(
        "--compare-blocks",
        type=int,
        default=16384,
        help="machine size for the live-vs-captured lsmem comparison",
    )
    ap.add_argument(
        "--no-big16t",
        dest="big16t",
        action="store_false",
        help="skip big-16t (its recorded rows are kept, each with the date it was measured)",
    )
    args = ap.parse_args()
    reason = fuse_unavailable_reason()
    if reason:
        print(f"FUSE unavailable: {reason}", file=sys.stderr)
        return 1
    lsmem = shutil.which("lsmem")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        # ---------------------------------------------------------- 1. one read
        copy = os.path.join(tmp, "small-copy")
        live = live_read(tmp, "small", args.reads, copy)
        copy_us = stats(per_read(os.path.join(copy, STATE), args.reads))["median"]
        live_row, ratio_row = read_rows(live, args.reads, copy_us)
        copy_row = {
            "what": "same read on a captured copy (tmpfs/disk), median",
            "value": round(copy_us, 1),
            "unit": "µs",
        }
        rows.extend([live_row, copy_row, ratio_row])
        sim = SimMachine(load_machine(SMALL))
        t = []
        for _ in range(args.reads):
            t0 = time.perf_counter()
            sim.sysfs.read("/" + STATE)
            t.append(time.perf_counter() - t0)
        rows.append(
            {
                "what": "same read in-process (KernelSysfs.read), median",
                "value": round(stats(t)["median"], 1),
                "unit": "µs",
            }
        )

        # ---------------------------------------------------------- 2. lsmem, big machines
        sizes = [(args.compare_blocks, True)]
        if args.blocks != args.compare_blocks:
            sizes.append((args.blocks, False))
        fast_rows: list[dict[str, Any]] = []
        for fast in (False, True):
            if fast:  # the daemons started from here on make opens request-free
                os.environ["MEMHP_FUSE_FAST"] = "1"
                fast_live = live_read(tmp, "small-fast", args.reads)
                fast_rows = _fast(read_rows(fast_live, args.reads, copy_us))
            where = os.path.join(tmp, "fast" if fast else "answered")
            os.mkdir(where)
            for nblocks, compare in sizes:
                got = bench_lsmem(where, nblocks, compare, args.runs, lsmem)
                rows.extend(_fast(got) if fast else got)
        rows.extend(fast_rows)
        if args.big16t and lsmem is not None:  # fast mode only (answered opens: 107 s)
            rows.extend(_fast(big16t(args.runs, lsmem)))
        elif not args.big16t:
            rows.extend(recorded_big16t())
        os.environ.pop("MEMHP_FUSE_FAST", None)
    record("fuse", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
