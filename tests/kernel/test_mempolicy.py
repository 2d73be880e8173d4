"""set_mempolicy(MPOL_PREFERRED) of a node (mm/mempolicy.c), as the bench's tasks use it."""

from __future__ import annotations

import errno

from memhp.abi.layout import MiB
from memhp.abi.paths import SYS_MEMORY
from memhp.bench.drivers import ModelDriver
from memhp.bench.tasks import end_task, start_task
from memhp.kernel.mm.mempolicy import set_mempolicy_preferred
from memhp.sim.machine import SimMachine
from tests.support.sim import machine


def test_a_memoryless_node_cannot_be_preferred() -> None:
    """Node 1 of the QEMU guest has no memory until a block is onlined there: EINVAL
    (mpol_new_preferred() of an empty mask), then taken; offline again, EINVAL."""
    m = SimMachine(machine("qemu-linux-6.1"))
    k = m.kernel
    assert set_mempolicy_preferred(k, [1]) == -errno.EINVAL
    assert set_mempolicy_preferred(k, [0]) == 0
    assert set_mempolicy_preferred(k, [0, 1]) == 0  # (the nodes with memory are kept)
    assert set_mempolicy_preferred(k, []) == 0  # MPOL_LOCAL
    m.device_add(128 * MiB, 1, id="dimm1")
    assert set_mempolicy_preferred(k, [1]) == -errno.EINVAL  # present, not online
    m.sysfs.write(f"{SYS_MEMORY}/memory32/state", b"online_movable")
    assert set_mempolicy_preferred(k, [1]) == 0
    m.sysfs.write(f"{SYS_MEMORY}/memory32/state", b"offline")
    assert set_mempolicy_preferred(k, [1]) == -errno.EINVAL


def test_model_task_on_a_memoryless_node_fails_as_the_guest_task() -> None:
    """The bench's model task reports what the guest task prints (recorded:
    tests/scenarios/virtio-task-memoryless-node.toml) and holds nothing."""
    d = ModelDriver.for_machine(machine("qemu-linux-6.1"))
    free = d.m.kernel.pa.counts.sum(axis=1).tolist()
    assert start_task(d, "t1", 64 * MiB, 4 * MiB, 1) == "failed: [Errno 22] set_mempolicy"
    assert d.m.kernel.pa.counts.sum(axis=1).tolist() == free
    assert end_task(d, "t1") == "failed: no task t1"
    assert start_task(d, "t2", 64 * MiB, 0, 0) == "ok"
    assert end_task(d, "t2") == "ok"
