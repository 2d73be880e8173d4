"""The differential run: every scenario of tests/scenarios on Linux 6.1 under QEMU
and on the simulated kernel, tree by tree after each step.

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

MISSING = bench_available()
pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(MISSING is not None, reason=f"QEMU bench unavailable: {MISSING}"),
]

PATHS = scenario_paths([os.path.join(ROOT, "tests", "scenarios")])


@pytest.mark.timeout(240)
@pytest.mark.parametrize("path", PATHS, ids=[os.path.basename(p)[:-5] for p in PATHS])
def test_scenario_real_vs_model(path: str) -> None:
    sc = load_scenario(path)
    res = diff_scenario(sc, tool=run_with_sysfs)
    assert not res.error, res.error
    assert res.steps[0].real is not None and res.files_compared > 0
    left = unexplained(res.differences)
    assert not left, f"{sc.name}: {len(left)} differences:\n" + "\n".join(
        f"{d.step}: {d.line()}" for d in left
    )
