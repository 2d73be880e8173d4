"""The differential run: the scenarios of tests/scenarios on Debian's Linux under
QEMU and on the simulated kernel, tree by tree after each step.

Live runs (QEMU) are the expensive part of CI, so: every scenario meant for 6.1 runs
live on 6.1 but the virtio-mem ones not in :data:`LIVE_VIRTIO` and the generated
``random-*`` ones not in :data:`LIVE_RANDOM`; on 6.12 only
:data:`LIVE_612` (the scenarios of what 6.12 changed) runs live.  Every scenario is
also replayed against its recorded real run on each of its kernels
(tests/bench/test_diff_units.py, no QEMU), which is how CI checks the other scenarios
on 6.12.

One guest boot per scenario (~5-8 s with TCG); the two scenarios that run memhp and
lsmem inside the guest boot with the host's Python over 9p (``-cpu max``, ~10 s,
~7 s per memhp call).  The whole module takes about 3-4 minutes on 2 cores.

Differences the model is known to get wrong (reported, to be fixed in the model)
are listed in :mod:`tests.bench.known_model_gaps`; anything else fails.
"""

from __future__ import annotations

import os

import pytest

from memhp.bench.runner import diff_scenario
from memhp.bench.scenario import load_scenario, scenario_paths
from memhp.bench.vm import bench_available
from memhp.cli.main import run_with_sysfs
from tests.bench.known_model_gaps import unexplained
from tests.conftest import ROOT

pytestmark = [pytest.mark.qemu]

PATHS = scenario_paths([os.path.join(ROOT, "tests", "scenarios")])
#: The scenarios that run live on 6.12 in CI (the rest are replayed from recordings).
LIVE_612 = (
    "default-online-type",
    "memmap-on-memory-per-block",
    "memmap-on-memory-force",
    "crash-hotplug",
    "hwpoison-then-online",
)
#: Scenarios exported from a study (tag "study": ~90 s each on TCG) are replayed only
#: (tests/bench/test_diff_units.py, tests/study/test_export.py).
#: The virtio-mem scenarios that run live (the others are replayed: each takes a slow
#: boot with the device and its module, and seconds of waiting for resizes to settle).
LIVE_VIRTIO = ("virtio-plug-memoryless-node", "virtio-unplug-hwpoison")
#: The generated scenarios (``random-*``: long sequences, 35-80 s each on TCG) that run
#: live; the others are replayed only.
LIVE_RANDOM = ("random-online-offline",)
#: Scenarios long enough to be replayed only: QEMU-only ones (the guest does little in
#: them: QMP and monitor answers of QEMU 7.2, 25-55 s each on TCG) and boot-blocks-3g
#: (a 3G guest, 75 steps, ~35 s; its boot reservations are boot-blocks-2node's rules).
#: And two of the three `memhp why` scenarios (memhp in the guest over 9p, -cpu max:
#: 65-85 s each; why-kernel-zone stays live for the three).
REPLAY_ONLY = (
    "qmp-backend-properties",
    "qmp-human-monitor",
    "boot-blocks-3g",
    "why-no-room",
    "why-other-node-full",
)


def _live_61(path: str) -> bool:
    name = os.path.basename(path)[:-5]
    sc = load_scenario(path)
    return (
        "6.1" in sc.kernels
        and "study" not in sc.tags
        and (not name.startswith("virtio-") or name in LIVE_VIRTIO)
        and (not name.startswith("random-") or name in LIVE_RANDOM)
        and name not in REPLAY_ONLY
    )


RUNS = [(p, "6.1") for p in PATHS if _live_61(p)] + [
    (p, "6.12") for p in PATHS if os.path.basename(p)[:-5] in LIVE_612
]


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("path", "kernel"), RUNS, ids=[f"{os.path.basename(p)[:-5]}@{k}" for p, k in RUNS]
)
def test_scenario_real_vs_model(path: str, kernel: str) -> None:
    missing = bench_available(kernel)
    if missing is not None:
        pytest.skip(f"QEMU bench unavailable: {missing}")
    sc = load_scenario(path).for_kernel(kernel)
    res = diff_scenario(sc, tool=run_with_sysfs)
    assert not res.error, res.error
    assert res.steps[0].real is not None and res.files_compared > 0
    left = unexplained(res.differences)
    assert not left, f"{sc.name}: {len(left)} differences:\n" + "\n".join(
        f"{d.step}: {d.line()}" for d in left
    )
