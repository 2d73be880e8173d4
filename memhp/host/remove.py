"""Hot-remove a memory device reliably (``memhp remove``).

The seed's kernel offlines twice in its removal path because offlining one block
can depend on another (page_cgroup, memmap and migration targets).  We do the
same from user space, but better: offline the device's online blocks highest
first, retry the failures in further passes (at least two, then until
``timeout``), and if some block still refuses, re-online what we offlined with
the zone each block had (unless ``keep_offline``) and explain each failure.  When
every block is offline, write ``1`` to the device's ``eject`` and wait until its
blocks and ``physical_node`` links are gone.

A write of ``offline`` can block in the kernel (6.1 retries migration until the
writer gets a signal): with a :class:`~memhp.host.interrupt.WriteGuard` the
write is interrupted when ``timeout`` passes (it counts as a failed attempt,
then the run rolls back and explains), and SIGINT/SIGTERM stop the run, which
re-onlines what it offlined (a second signal aborts at once, ``aborted``).  A
:class:`~memhp.host.journal.RunJournal` records each block before it is offlined.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from memhp.abi.paths import PROC_VMSTAT, SYS_MEMORY
from memhp.abi.zones import KERNEL_ZONE_NAMES, ZONE_MOVABLE
from memhp.host.devices import MemoryDevice, device_block_indices, find_device
from memhp.host.diagnose import UNFLAGGED, Diagnosis, count_pages, diagnose
from memhp.host.errors import SysfsError, UsageError
from memhp.host.interrupt import Abort, WriteGuard, signal_name
from memhp.host.journal import RunJournal
from memhp.host.memory import block_state, read_block, set_state
from memhp.host.room import MIGRATED_KINDS, Room, room_for
from memhp.host.root import SysfsRoot

EXIT_OK, EXIT_FAILURE, EXIT_SOMEOK = 0, 1, 64


@dataclass
class BlockFailure:
    index: int
    error: SysfsError
    diagnosis: Diagnosis | None


@dataclass
class RemoveResult:
    device: str
    plan: list[int] = field(default_factory=list)  # offline order
    offlined: list[int] = field(default_factory=list)
    failures: list[BlockFailure] = field(default_factory=list)
    rolled_back: list[int] = field(default_factory=list)
    rollback_failures: list[tuple[int, SysfsError]] = field(default_factory=list)
    passes: int = 0
    ejected: bool = False
    removed: bool = False
    message: str = ""
    #: The deadline passed while a write was blocked (it was interrupted).
    timed_out: bool = False
    #: SIGINT/SIGTERM stopped the run (rolled back) / a second one aborted it.
    interrupted: int | None = None
    aborted: int | None = None
    #: Zone of each block of the device when the run started.
    zones: dict[int, str | None] = field(default_factory=dict)
    #: --dry-run: the room for the pages of the device's blocks elsewhere.
    room: Room | None = None
    #: --dry-run: pages of the hugetlb pool in the device's online blocks (KPF_HUGE).
    hugetlb_pages: int = 0
    #: (pages migrated, migration failures counted) while the run lasted, from
    #: /proc/vmstat's pgmigrate_success and pgmigrate_fail (None: not asked for or
    #: not readable).  System-wide counters: other migrations meanwhile (compaction,
    #: NUMA balancing) count too.
    migration: tuple[int, int] | None = None

    @property
    def left_offline(self) -> list[int]:
        """Blocks this run offlined and did not online again."""
        if self.ejected:
            return []
        return sorted(i for i in self.offlined if i not in self.rolled_back)

    @property
    def code(self) -> int:
        sig = self.aborted or self.interrupted
        if sig is not None:
            return 128 + sig
        if self.removed:
            return EXIT_OK
        if self.failures and self.offlined and not self.rolled_back:
            return EXIT_SOMEOK  # --keep-offline: part of the device is offline
        return EXIT_FAILURE


def online_value(zone: str | None) -> str:
    """The ``state`` value that puts a block back in ``zone``."""
    if zone == ZONE_MOVABLE:
        return "online_movable"
    if zone in KERNEL_ZONE_NAMES:
        return "online_kernel"
    return "online"


Progress = Callable[[str], None]


def _noop(_: str) -> None:
    pass


def _room(root: SysfsRoot, dev: MemoryDevice, res: RemoveResult) -> Room | None:
    """The room for the pages of the device's online blocks (None when
    /proc/kpageflags or /proc/meminfo cannot be read); the hugetlb pool's pages in
    them go to ``res``."""
    counts = []
    kernel_counts = []  # (of the blocks in kernel zones)
    node: int | None = None
    for b in dev.blocks:
        if b.online:
            try:
                pages = count_pages(root, b)
                if node is None:  # (a device's memory is on one node)
                    node = read_block(root, b.index).node
            except SysfsError:
                return None
            if b.zone == ZONE_MOVABLE and UNFLAGGED in pages:  # (see diagnose())
                pages["lru"] = pages.get("lru", 0) + pages.pop(UNFLAGGED)
            if b.zone != ZONE_MOVABLE:
                kernel_counts.append(pages)
            counts.append(pages)
            res.hugetlb_pages += pages.get("hugetlb", 0)
    # A kernel zone's pages may go to kernel zones only, the others anywhere the
    # allocation may take them: with blocks of both kinds both must fit.
    if not any(p.get(k) for p in kernel_counts for k in MIGRATED_KINDS):
        return room_for(root, counts, node=node)
    if len(kernel_counts) == len(counts):
        return room_for(root, counts, node=node, kernel_zone=True)
    room = room_for(root, counts, node=node)
    kernel = room_for(root, kernel_counts, node=node, kernel_zone=True)
    return replace(room, kernel_part=kernel) if room is not None and kernel is not None else None


#: /proc/vmstat's page migration events (mm/migrate.c migrate_pages()).
MIGRATION_EVENTS = ("pgmigrate_success", "pgmigrate_fail")


def migration_counts(root: SysfsRoot) -> tuple[int, int] | None:
    """(pgmigrate_success, pgmigrate_fail) of /proc/vmstat; None when it cannot be
    read or lacks them (a kernel without CONFIG_MIGRATION)."""
    found = root.read_values(PROC_VMSTAT, MIGRATION_EVENTS)
    if found is None or len(found) != len(MIGRATION_EVENTS):
        return None
    return found[MIGRATION_EVENTS[0]], found[MIGRATION_EVENTS[1]]


def remove_device(
    root: SysfsRoot,
    spec: str,
    timeout: float = 30.0,
    keep_offline: bool = False,
    dry_run: bool = False,
    progress: Progress = _noop,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    min_passes: int = 2,
    guard: WriteGuard | None = None,
    journal: RunJournal | None = None,
    count_migration: bool = False,
) -> RemoveResult:
    """Offline every block of device ``spec``, then eject it (see module doc).

    ``count_migration``: read /proc/vmstat before and after for
    :attr:`RemoveResult.migration`."""
    dev: MemoryDevice = find_device(root, spec, brief=True)
    if not dev.blocks:
        raise UsageError(f"{dev.name}: the device has no memory blocks")
    if not dev.ejectable:
        raise UsageError(f"{dev.name}: the device cannot be ejected (no writable eject)")
    res = RemoveResult(dev.name)
    zones = {b.index: b.zone for b in dev.blocks}
    pending = [b.index for b in sorted(dev.blocks, key=lambda b: -b.index) if b.online]
    res.plan = list(pending)
    res.zones = dict(zones)
    if dry_run:
        res.room = _room(root, dev, res)
        return res
    g = guard if guard is not None else WriteGuard(None, catch_stop=False)
    j = journal if journal is not None else RunJournal(None, dev.name)
    j.entry.device = dev.name
    before = migration_counts(root) if count_migration else None
    fs = root.fs
    root.fs = g.wrap(fs)
    try:
        with g:
            _remove(
                root,
                dev,
                res,
                pending,
                zones,
                timeout,
                keep_offline,
                progress,
                sleep,
                clock,
                min_passes,
                g,
                j,
            )
    except Abort as e:
        res.aborted = e.signum
    finally:
        root.fs = fs
    after = migration_counts(root) if before is not None else None
    if before is not None and after is not None:
        res.migration = (after[0] - before[0], after[1] - before[1])
    return res


def _stopped(g: WriteGuard, res: RemoveResult) -> bool:
    if g.stop_signal is not None:
        res.interrupted = g.stop_signal
        return True
    return False


def _remove(
    root: SysfsRoot,
    dev: MemoryDevice,
    res: RemoveResult,
    pending: list[int],
    zones: dict[int, str | None],
    timeout: float,
    keep_offline: bool,
    progress: Progress,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    min_passes: int,
    g: WriteGuard,
    j: RunJournal,
) -> None:
    deadline = clock() + timeout
    errors: dict[int, SysfsError] = {}
    delay = 0.05
    while pending and not _stopped(g, res):
        res.passes += 1
        still: list[int] = []
        for n, idx in enumerate(pending, 1):
            if _stopped(g, res):
                still.extend(pending[n - 1 :])
                break
            progress(f"pass {res.passes}: offlining memory{idx} ({n}/{len(pending)})")
            j.offlining(idx, zones.get(idx))
            try:
                set_state(root, idx, "offline")
            except SysfsError as e:
                if block_state(root, idx) == "offline":
                    res.offlined.append(idx)  # raced with someone else (or with a signal)
                    continue
                j.online_again(idx)
                if g.expired:
                    res.timed_out = True
                errors[idx] = e
                still.append(idx)
                continue
            errors.pop(idx, None)
            res.offlined.append(idx)
        pending = still
        if not pending or _stopped(g, res):
            break
        now = clock()
        if g.expired or (res.passes >= min_passes and now >= deadline):
            res.timed_out = res.timed_out or g.expired
            break
        if res.passes >= min_passes:
            sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, 1.0)
    g.disarm()  # rolling back must not be interrupted by the timer
    if _stopped(g, res):
        _rollback(root, res, zones, progress, j)
        sig = signal_name(res.interrupted or 0)
        res.message = (
            f"{dev.name}: interrupted by {sig}: stopped after offlining "
            f"{len(res.offlined)} of {len(res.plan)} blocks"
            + (f"; onlined again: {_ranges(res.rolled_back)}" if res.rolled_back else "")
        )
        return
    if pending:
        for idx in pending:
            try:
                diag: Diagnosis | None = diagnose(root, idx)
            except (SysfsError, UsageError):
                diag = None
            res.failures.append(BlockFailure(idx, errors[idx], diag))
        if not keep_offline:
            _rollback(root, res, zones, progress, j)
        else:
            j.done()  # left offline on purpose (--keep-offline)
        within = (
            f"within {timeout:g}s (timed out)" if res.timed_out else (f"after {res.passes} passes")
        )
        res.message = (
            f"{dev.name}: {len(pending)} of {len(res.plan)} blocks could not be offlined {within}"
        )
        return
    progress(f"ejecting {dev.name}")
    try:
        root.write(f"{dev.path}/eject", "1")
    except SysfsError as e:
        res.message = f"{dev.name}: eject failed: {e.strerror}"
        if not _stopped(g, res):
            return
        _rollback(root, res, zones, progress, j)
        return
    res.ejected = True
    indices = [b.index for b in dev.blocks]
    j.done(set(indices))
    wait_deadline = max(deadline, clock() + 1.0)
    while True:
        gone_blocks = not any(root.exists(f"{SYS_MEMORY}/memory{i}") for i in indices)
        if gone_blocks and not device_block_indices(root, dev.path):
            res.removed = True
            res.interrupted = None  # nothing was left to stop
            return
        if _stopped(g, res):
            res.message = (
                f"{dev.name}: interrupted by {signal_name(res.interrupted or 0)} while "
                "waiting for the device to go away (its eject was requested)"
            )
            return
        if clock() >= wait_deadline:
            left = [i for i in indices if root.exists(f"{SYS_MEMORY}/memory{i}")]
            res.message = (
                f"{dev.name}: eject requested but the kernel has not removed "
                f"{'memory blocks ' + ','.join(map(str, left)) if left else 'its links'} "
                f"after {timeout:g}s"
            )
            return
        progress(f"waiting for {dev.name} to go away")
        sleep(0.05)


def _rollback(
    root: SysfsRoot,
    res: RemoveResult,
    zones: dict[int, str | None],
    progress: Progress,
    j: RunJournal,
) -> None:
    """Online again, in its zone, every block this run offlined."""
    for idx in reversed(res.offlined):
        if idx in res.rolled_back:
            continue
        progress(f"rolling back: onlining memory{idx}")
        try:
            set_state(root, idx, online_value(zones.get(idx)))
        except SysfsError as e:
            if block_state(root, idx) != "offline":
                res.rolled_back.append(idx)
                j.online_again(idx)
            else:
                res.rollback_failures.append((idx, e))
            continue
        res.rolled_back.append(idx)
        j.online_again(idx)


def block_ranges(idx: list[int]) -> str:
    """Block indices as ranges: ``32-38,40``."""
    runs: list[list[int]] = []
    for i in sorted(set(idx)):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def _ranges(idx: list[int]) -> str:
    return "memory" + block_ranges(idx)
