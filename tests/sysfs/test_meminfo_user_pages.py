"""User pages in /proc/meminfo, node meminfo and vmstat: anonymous, tmpfs, pinned.

The kernel counts a task's anonymous pages in AnonPages, a tmpfs file's pages in
Shmem and Cached (NR_SHMEM, NR_FILE_PAGES) and both on the anon LRU, active or
inactive by the kernel's LRU (6.1 classic: inactive; 6.12 multi-gen: active).  The
unit tests pin the model's rules; the replay compares how each counter changes,
step by step, with the real guests' /proc/meminfo in every recorded run that
writes tmpfs files or runs tasks (tests/data/real/scenarios).
"""

from __future__ import annotations

import re

import pytest

from memhp.abi.paths import PROC_MEMINFO
from memhp.bench.actions import Fill
from memhp.bench.scenario import load_scenario
from memhp.bench.tasks import TaskAction
from memhp.sim.machine import SimMachine, WorkloadMix
from tests.bench.test_diff_units import RECORDED
from tests.conftest import machine
from tests.support.replay import guest_tasks_alive, real_text, replay_texts

MEM = "/sys/devices/system/memory"
#: The counters compared, in kB.
FIELDS = (
    "AnonPages",
    "Shmem",
    "Cached",
    "Active(anon)",
    "Inactive(anon)",
    "Unevictable",
    "Committed_AS",
)


def meminfo(text: str, prefix: str = "") -> dict[str, int]:
    return {
        k: int(v) for k, v in re.findall(rf"^{prefix}(\S+):\s+(\d+)(?: kB)?$", text, re.MULTILINE)
    }


def _machine(profile: str) -> SimMachine:
    """256M of node-1 memory onlined movable; 25,600 pages of a task (10% pinned),
    12,800 of a tmpfs file, then a 2 MiB huge page pool of 4 pages on node 1."""
    m = SimMachine(machine(profile))
    m.device_add(256 << 20, 1, id="d")
    for b in (32, 33):
        m.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
    m.fill(25600, node=1, mix=WorkloadMix(pinned=0.1), owner="app")
    m.tmpfs_write("f", 12800 * 4096, 1)
    m.sysfs.write("/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages", b"4")
    return m


@pytest.mark.parametrize(
    ("profile", "active"), [("qemu-linux-6.1", False), ("qemu-linux-6.12", True)]
)
def test_anon_and_tmpfs_pages_are_counted_where_the_kernel_counts_them(
    profile: str, active: bool
) -> None:
    m = _machine(profile)
    base = SimMachine(machine(profile))
    base.device_add(256 << 20, 1, id="d")
    for b in (32, 33):
        base.sysfs.write(f"{MEM}/memory{b}/state", b"online_movable")
    before = meminfo(base.sysfs.read("/proc/meminfo").decode())
    after = meminfo(m.sysfs.read("/proc/meminfo").decode())
    d = {f: after[f] - before[f] for f in FIELDS}
    task, pinned, shmem = 23040 * 4, 2560 * 4, 12800 * 4  # kB
    assert d["AnonPages"] == task + pinned  # huge pages and tmpfs are not anon
    assert d["Shmem"] == d["Cached"] == shmem
    assert d["Unevictable"] == pinned
    assert d["Active(anon)"] == (task + shmem if active else 0)
    assert d["Inactive(anon)"] == (0 if active else task + shmem)
    assert after["Active"] == after["Active(anon)"] and after["Inactive"] == after["Inactive(anon)"]
    assert d["Committed_AS"] == task + pinned + shmem
    assert after["HugePages_Total"] == 4

    node = meminfo(
        m.sysfs.read("/sys/devices/system/node/node1/meminfo").decode(), prefix=r"Node 1 "
    )
    # long-term pins are not kept in ZONE_MOVABLE: the pinned pages are on node 0
    assert node["Shmem"] == node["FilePages"] == shmem
    assert node["AnonPages"] == task
    assert node["Unevictable"] == 0
    assert node["Active(anon)"] + node["Inactive(anon)"] == task + shmem
    vm = dict(
        (k, int(v))
        for k, v in (
            line.split()
            for line in m.sysfs.read("/sys/devices/system/node/node1/vmstat").decode().splitlines()
        )
    )
    assert vm["nr_shmem"] == vm["nr_file_pages"] == 12800
    assert vm["nr_anon_pages"] == 23040
    assert vm["nr_active_anon"] == node["Active(anon)"] // 4
    assert vm["nr_inactive_anon"] == vm["nr_zone_inactive_anon"] == node["Inactive(anon)"] // 4


def test_node_counts_add_up_to_proc_meminfo() -> None:
    m = _machine("qemu-linux-6.1")
    total = meminfo(m.sysfs.read("/proc/meminfo").decode())
    nodes = [
        meminfo(m.sysfs.read(f"/sys/devices/system/node/node{n}/meminfo").decode(), rf"Node {n} ")
        for n in (0, 1)
    ]
    for f in ("AnonPages", "Shmem", "Active(anon)", "Inactive(anon)", "Unevictable"):
        assert total[f] == sum(n[f] for n in nodes), f


def test_migrated_and_removed_tmpfs_pages_stay_counted_then_go() -> None:
    m = _machine("qemu-linux-6.12")
    shmem = meminfo(m.sysfs.read("/proc/meminfo").decode())["Shmem"]
    m.sysfs.write(f"{MEM}/memory33/state", b"offline")  # migrates what it held
    assert meminfo(m.sysfs.read("/proc/meminfo").decode())["Shmem"] == shmem
    m.tmpfs_remove("f")
    after = meminfo(m.sysfs.read("/proc/meminfo").decode())
    assert after["Shmem"] == after["Cached"] == 0


def _user_memory(path: str) -> bool:
    sc = load_scenario(path)
    return any(isinstance(st.action, Fill | TaskAction) and st.capture for st in sc.steps)


USER = [(p, k) for p, k in RECORDED if _user_memory(p)]
#: What the guest's own processes (the task's interpreter, the bench's agent) may
#: change between two captures, in kB: a task's interpreter holds ~4-6 MiB of
#: anonymous memory of its own, and the files it reads (~10 MiB) are page cache.
#: Committed_AS: the interpreter commits more than it touches (its private writable
#: mappings: 6596 kB in random-memhp-remove).
NOISE_KB = {f: 6 * 1024 for f in FIELDS} | {"Cached": 16 * 1024, "Committed_AS": 7 * 1024}
#: Besides, per guest task alive at one capture and not at the other: its interpreter's
#: own anonymous memory (4.3-5.3 MiB in the recorded runs, the model's task has none)
#: and what it commits (6.6 MiB); the files it reads are shared page cache.
TASK_KB = {f: 0 for f in FIELDS} | {
    "AnonPages": 6 * 1024,
    "Active(anon)": 6 * 1024,
    "Inactive(anon)": 6 * 1024,
    "Committed_AS": 7 * 1024,
}


@pytest.mark.parametrize(
    ("path", "kernel"), USER, ids=[f"{p.rsplit('/', 1)[-1]}@{k}" for p, k in USER]
)
def test_user_page_counters_change_as_on_the_real_kernel(path: str, kernel: str) -> None:
    rec, model = replay_texts(path, kernel)
    alive = guest_tasks_alive(rec, path, kernel)
    prev: tuple[dict[str, int], dict[str, int], int] | None = None
    compared = 0
    for name, texts in model:
        mi = meminfo(texts.meminfo)
        text = real_text(rec, name, PROC_MEMINFO)
        if text is None:
            continue
        real = meminfo(text)
        tasks = alive.get(name, 0)
        if prev is not None:
            for f in FIELDS:
                dm, dr = mi[f] - prev[0][f], real[f] - prev[1][f]
                bound = NOISE_KB[f] + TASK_KB[f] * abs(tasks - prev[2])
                assert abs(dm - dr) <= bound, (name, f, "model", dm, "real", dr)
                compared += abs(dr) > bound
        prev = (mi, real, tasks)
    assert compared, "no step changed user memory on the real kernel"
