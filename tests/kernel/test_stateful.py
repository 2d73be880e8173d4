"""Property-based stateful tests: no sequence of operations corrupts the model.

Random sequences of platform hot-add and eject, sysfs writes (valid and invalid),
workload allocations and frees, notifier error injection and memory failure,
offlines interrupted by a signal or unblocked by a free while they retry,
across both kernel profiles and with memmap-on-memory on and off.  After every
step the invariant checker must pass, and a write that fails must change
nothing.

CI runs a fixed budget (``MEMHP_STATEFUL_EXAMPLES``, default 25 sequences of up
to 40 steps); ``MEMHP_STATEFUL_EXAMPLES=3000 pytest tests/kernel/test_stateful.py``
is the long run (see benchmarks/results/stateful.json).
"""

from __future__ import annotations

import dataclasses
import errno
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from memhp.kernel.invariants import check_invariants
from memhp.kernel.mm.page_alloc import Allocation, AllocError, PageState
from memhp.sim.machine import PlatformError, SimMachine, WorkloadMix
from tests.conftest import machine

EXAMPLES = int(os.environ.get("MEMHP_STATEFUL_EXAMPLES", "25"))
#: Steps checked by this process (the long run reports it).
STEPS_CHECKED = [0]
STEPS = int(os.environ.get("MEMHP_STATEFUL_STEPS", "40"))
MEM = "/sys/devices/system/memory"
INJECT = "/sys/kernel/debug/notifier-error-inject/memory/actions"

#: Values written to attributes: the valid ones and typical mistakes.
STATE_VALUES = [
    b"online",
    b"offline",
    b"online_kernel",
    b"online_movable",
    b"online\n",
    b"offline\n",
    b"",
    b"bogus",
    b"ONLINE",
    b" online",
    b"online_movable\n\n",
    b"\x00\xff",
    b"1",
]
ONLINE_VALUES = [b"0", b"1", b"y", b"n", b"on", b"off", b"2", b"", b"yes\n", b"\xff"]


def model_state(m: SimMachine) -> tuple[object, ...]:
    """Everything a failed write must leave as it was.

    Pages that offline_pages() migrated before it failed stay where they went (the
    kernel does not move them back), so page placement is compared by totals.
    Page tables are left out: a hot-add that fails after init_memory_mapping()
    keeps the new direct mapping (x86_64 arch_add_memory() does not undo it).
    """
    k = m.kernel
    totals = k.pa.counts.sum(axis=1).astype("int64")
    pt = sum(a.nr_pages for a in k.pa.allocs.values() if a.kind == "pagetable")
    totals[PageState.UNMOVABLE] -= pt
    totals[PageState.FREE] += pt
    return (
        {
            b: (x.state, x.zone, tuple(sorted(x.nodes)), x.acpi_device)
            for b, x in k.memory.blocks.items()
        },
        totals.tobytes(),
        {a.id: (a.owner, a.nr_pages) for a in k.pa.allocs.values() if a.kind != "pagetable"},
        {
            n: [
                (z.zone_start_pfn, z.spanned_pages, z.present_pages, z.managed_pages)
                for z in p.node_zones
            ]
            for n, p in k.pgdats.items()
        },
        {s: frozenset(v) for s, v in k.nodes.node_states.items()},
        tuple((e.index, e.start, e.end) for e in k.fwmap.entries),
        k.hotplug.mhp_default_online_type,
    )


class HotplugMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.m: SimMachine | None = None
        self.workloads: list[list[Allocation]] = []
        self.steps = 0
        self.probed = False

    @initialize(
        name=st.sampled_from(["qemu-linux-6.1", "seed"]),
        memmap_on_memory=st.booleans(),
        movable_node=st.booleans(),
    )
    def boot(self, name: str, memmap_on_memory: bool, movable_node: bool) -> None:
        spec = dataclasses.replace(
            machine(name), memmap_on_memory=memmap_on_memory, movable_node=movable_node
        )
        self.m = SimMachine(spec)

    @property
    def sim(self) -> SimMachine:
        assert self.m is not None
        return self.m

    def _write(self, path: str, data: bytes) -> None:
        """A sysfs write: success, or an errno and no change at all."""
        before = model_state(self.sim)
        events = len(self.sim.platform.events)
        try:
            self.sim.sysfs.write(path, data)
        except OSError as e:
            assert e.errno is not None and e.errno > 0
            if "eject" not in path:  # eject work runs after the write returned
                assert model_state(self.sim) == before, (
                    f"failed write {path} {data!r} changed state"
                )
                assert len(self.sim.platform.events) == events

    @rule(size_blocks=st.integers(1, 8), node=st.integers(0, 2), slot=st.none() | st.integers(0, 4))
    def hot_add(self, size_blocks: int, node: int, slot: int | None) -> None:
        if self.probed:
            return  # see probe()
        try:
            self.sim.device_add(size_blocks << 27, node, slot=slot)
        except PlatformError:
            pass

    @rule(data=st.data())
    def device_del(self, data: st.DataObject) -> None:
        ids = [s.dimm.id for s in self.sim.platform.slots if s.dimm]
        if ids:
            self.sim.device_del(data.draw(st.sampled_from(ids)))

    @rule(slot=st.integers(0, 3), value=st.sampled_from([b"1", b"1\n", b"0", b"", b"x"]))
    def sysfs_eject(self, slot: int, value: bytes) -> None:
        self._write(f"/sys/bus/acpi/devices/PNP0C80:{slot:02x}/eject", value)

    @rule(data=st.data(), value=st.sampled_from(STATE_VALUES))
    def write_state(self, data: st.DataObject, value: bytes) -> None:
        b = data.draw(st.sampled_from(sorted(self.sim.kernel.memory.blocks)))
        self._write(f"{MEM}/memory{b}/state", value)

    @rule(data=st.data(), value=st.sampled_from(ONLINE_VALUES))
    def write_online(self, data: st.DataObject, value: bytes) -> None:
        if not self.sim.kernel.profile.sysfs_online_attr:
            return
        b = data.draw(st.sampled_from(sorted(self.sim.kernel.memory.blocks)))
        self._write(f"{MEM}/memory{b}/online", value)

    @rule(value=st.sampled_from(STATE_VALUES))
    def write_auto_online(self, value: bytes) -> None:
        if self.sim.kernel.profile.sysfs_auto_online_blocks:
            self._write(f"{MEM}/auto_online_blocks", value)

    @rule(
        node=st.integers(0, 1),
        pages=st.integers(1, 200_000),
        unmovable=st.floats(0, 0.5),
        pinned=st.floats(0, 0.3),
        seed=st.integers(0, 1000),
    )
    def fill_node(self, node: int, pages: int, unmovable: float, pinned: float, seed: int) -> None:
        before = model_state(self.sim)
        try:
            self.workloads.append(
                self.sim.fill(pages, node=node, mix=WorkloadMix(unmovable, pinned), seed=seed)
            )
        except AllocError:
            assert model_state(self.sim) == before  # all or nothing

    @rule(data=st.data(), pages=st.integers(1, 40_000), pinned=st.floats(0, 0.2))
    def fill_block(self, data: st.DataObject, pages: int, pinned: float) -> None:
        b = data.draw(st.sampled_from(sorted(self.sim.kernel.memory.blocks)))
        start = b << 27
        try:
            self.workloads.append(
                self.sim.fill(
                    pages, start=start, end=start + (128 << 20), mix=WorkloadMix(pinned=pinned)
                )
            )
        except AllocError:
            pass

    @precondition(lambda self: bool(self.workloads))
    @rule(data=st.data())
    def free_workload(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.workloads) - 1))
        self.sim.free(self.workloads.pop(i))

    @rule(data=st.data(), rounds=st.integers(0, 5))
    def interrupted_offline(self, data: st.DataObject, rounds: int) -> None:
        """An offline that retries (6.1) is interrupted after ``rounds`` failed rounds:
        EINTR and no change at all; one that succeeds is not affected."""
        b = data.draw(st.sampled_from(sorted(self.sim.kernel.memory.blocks)))
        calls: list[int] = []

        def signal_after() -> bool:
            calls.append(1)
            return len(calls) > rounds

        hp = self.sim.kernel.hotplug
        hp.retry_wait = signal_after
        try:
            self._write(f"/sys/devices/system/memory/memory{b}/state", b"offline")
        finally:
            hp.retry_wait = None
        assert len(calls) <= rounds + 1

    @precondition(lambda self: bool(self.workloads))
    @rule(data=st.data(), rounds=st.integers(0, 3))
    def offline_unblocked_by_free(self, data: st.DataObject, rounds: int) -> None:
        """Another actor frees a workload while an offline retries: the next round
        sees it; the offline then succeeds, or is interrupted later with EINTR."""
        b = data.draw(st.sampled_from(sorted(self.sim.kernel.memory.blocks)))
        i = data.draw(st.integers(0, len(self.workloads) - 1))
        freed = self.workloads.pop(i)
        calls: list[int] = []

        def free_then_signal() -> bool:
            calls.append(1)
            if len(calls) == rounds + 1:
                self.sim.free(freed)
                return False
            return len(calls) > rounds + 3

        hp = self.sim.kernel.hotplug
        hp.retry_wait = free_then_signal
        try:
            self.sim.sysfs.write(f"/sys/devices/system/memory/memory{b}/state", b"offline")
        except OSError as e:
            assert e.errno in (errno.EINTR, errno.EBUSY, errno.EINVAL, errno.ENOMEM), e
        finally:
            hp.retry_wait = None
        if len(calls) <= rounds:
            self.sim.free(freed)  # the offline ended before the free happened

    @rule(
        action=st.sampled_from(["MEM_GOING_ONLINE", "MEM_GOING_OFFLINE"]),
        value=st.sampled_from([b"0", b"-12", b"-16", b"-22", b"7", b"x"]),
    )
    def inject(self, action: str, value: bytes) -> None:
        self._write(f"{INJECT}/{action}/error", value)

    @rule(block=st.integers(0, 40), junk=st.booleans())
    def probe(self, block: int, junk: bool) -> None:
        """The 3.8 profile's probe interface: add a block anywhere (or write junk).

        Probing tells the kernel memory exists where the platform may later put a
        DIMM; the kernel has no defence against that lie (it would keep a stale
        firmware map entry), so DIMMs and probed memory are not mixed here.
        """
        if not self.sim.kernel.profile.sysfs_probe:
            return
        if any(s.dimm for s in self.sim.platform.slots):
            return
        self.probed = True
        value = b"0x12345" if junk else f"{block * self.sim.spec.block_size:#x}".encode()
        self._write("/sys/devices/system/memory/probe", value)

    @rule(node=st.integers(0, 1), count=st.integers(0, 300))
    def hugepages(self, node: int, count: int) -> None:
        path = f"/sys/devices/system/node/node{node}/hugepages/hugepages-2048kB/nr_hugepages"
        try:
            self.sim.sysfs.lstat(path)
        except OSError:
            return  # node offline: no such directory
        self._write(path, str(count).encode())

    @rule(data=st.data(), soft=st.booleans())
    def poison(self, data: st.DataObject, soft: bool) -> None:
        b = data.draw(st.sampled_from(sorted(self.sim.kernel.memory.blocks)))
        off = data.draw(st.integers(0, (128 << 20) - 1))
        node = "soft_offline_page" if soft else "hard_offline_page"
        self._write(f"{MEM}/{node}", f"{(b << 27) + off:#x}".encode())

    @invariant()
    def consistent(self) -> None:
        if self.m is not None:
            check_invariants(self.m.kernel)
            self.steps += 1
            STEPS_CHECKED[0] += 1


HotplugMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=os.environ.get("MEMHP_STATEFUL_RANDOM") is None,
)
TestHotplugMachine = HotplugMachine.TestCase
