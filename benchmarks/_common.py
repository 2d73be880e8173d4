"""Helpers for the benchmark scripts: timing, peak RSS, and recording results."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def peak_rss_mib() -> float:
    """Peak resident set size of this process (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """The best wall time of ``repeat`` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def reference_loop_ns(seconds: float = 0.3) -> float:
    """This host's speed now: CPU nanoseconds per iteration of a fixed pure-Python
    loop (a dict get and set, the kind of work the model's hot paths do), the median
    of short rounds over about ``seconds``.

    The machines these benchmarks run on are virtual: the same loop has been seen to
    take from 90 to 165 ns an iteration within one minute on an otherwise idle guest
    (other guests share the host's cores).  CPU-time figures of pure-Python work move
    with it, so a result recorded next to this figure can be compared with one
    recorded at another time."""

    def loop() -> None:
        d: dict[int, int] = {}
        for i in range(20_000):
            d[i & 1023] = d.get(i & 1023, 0) + 1

    rounds: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end or len(rounds) < 3:
        t = time.process_time()
        loop()
        rounds.append((time.process_time() - t) / 20_000 * 1e9)
    rounds.sort()
    return round(rounds[len(rounds) // 2], 1)


def _libpython() -> str:
    """How this interpreter holds libpython: a shared library (a plain ``--enable-shared``
    build: cross-module calls through the PLT) or linked into the executable (Debian's)."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
            shared = any("libpython" in line for line in f)
    except OSError:
        return "libpython unknown"
    return "libpython shared" if shared else "libpython static"


def environment(host_speed: bool = False) -> dict[str, Any]:
    """Where and on what a result was recorded; ``host_speed``: with the host's speed
    at the end of the recording (:func:`reference_loop_ns`, 0.3 s of CPU)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=HERE,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit,
        "python": platform.python_version(),
        "interpreter": f"{sys.executable} ({_libpython()})",
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.node()}",
        **({"reference_loop_ns": reference_loop_ns()} if host_speed else {}),
    }


def record(name: str, rows: list[dict[str, Any]]) -> None:
    """Write results/<name>.json and print a table.

    Each row: {"what", "value", "unit", "target" (optional), "ok" (optional)}.
    """
    os.makedirs(RESULTS, exist_ok=True)
    data = {"benchmark": name, "environment": environment(host_speed=True), "results": rows}
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    for r in rows:
        ok = r.get("ok")
        mark = "" if ok is None else (" ok" if ok else " MISSED")
        tgt = f" (target {r['target']})" if "target" in r else ""
        print(f"{name}: {r['what']}: {r['value']:.4g} {r['unit']}{tgt}{mark}")
