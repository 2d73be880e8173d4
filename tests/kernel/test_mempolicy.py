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


def test_a_tmpfs_preferring_a_memoryless_node_cannot_be_mounted() -> None:
    """mpol=prefer:1 at the tmpfs mount: EINVAL while node 1 has no memory
    (mpol_parse_str(): not a subset of N_MEMORY), nothing allocated; once mounted
    (node 1 online) the tmpfs keeps its policy after node 1 loses its memory, and
    its files fall back to node 0 (the zonelist)."""
    d = ModelDriver.for_machine(machine("qemu-linux-6.1"))
    m = d.m
    free = m.kernel.pa.counts.sum(axis=1).tolist()
    assert d.fill(32 * MiB, 1, "f1") == "failed: mount EINVAL"
    assert m.kernel.pa.counts.sum(axis=1).tolist() == free
    assert m.tmpfs_mounts == set()
    assert d.fill(32 * MiB, 0, "f2") == "ok"
    m.device_add(128 * MiB, 1, id="dimm1")
    assert d.fill(32 * MiB, 1, "f3") == "failed: mount EINVAL"  # present, not online
    m.sysfs.write(f"{SYS_MEMORY}/memory32/state", b"online_movable")
    assert d.fill(32 * MiB, 1, "f4") == "ok"
    assert m.tmpfs_mounts == {0, 1}
    m.tmpfs_remove("f4")
    m.sysfs.write(f"{SYS_MEMORY}/memory32/state", b"offline")
    assert d.fill(32 * MiB, 1, "f5") == "ok"  # mounted: the policy stays
    # (sections of 128M: node 0's boot memory is sections 0-7)
    assert all(sec < 8 for a in m.files["tmpfs:f5"] for sec in a.extents)


def test_guest_mount_failure_text_names_the_errno() -> None:
    """busybox mount's message ends in strerror(): the outcome names the errno."""
    from memhp.bench.drivers import strerror_label

    msg = "mount: mounting memhp-fill on /run/memhp-fill1 failed: Invalid argument\n"
    assert strerror_label(msg) == "EINVAL"
    assert strerror_label("mount: something odd") == "mount: something odd"
