"""Hot-remove a memory device reliably (``memhp remove``).

The seed's kernel offlines twice in its removal path because offlining one block
can depend on another (page_cgroup, memmap and migration targets).  We do the
same from user space, but better: offline the device's online blocks highest
first, retry the failures in further passes (at least two, then until
``timeout``), and if some block still refuses, re-online what we offlined with
the zone each block had (unless ``keep_offline``) and explain each failure.  When
every block is offline, write ``1`` to the device's ``eject`` and wait until its
blocks and ``physical_node`` links are gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from memhp.abi.paths import SYS_MEMORY
from memhp.abi.zones import KERNEL_ZONE_NAMES, ZONE_MOVABLE
from memhp.host.devices import MemoryDevice, device_block_indices, find_device
from memhp.host.diagnose import Diagnosis, diagnose
from memhp.host.errors import SysfsError, UsageError
from memhp.host.memory import block_state, set_state
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

    @property
    def code(self) -> int:
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
) -> RemoveResult:
    """Offline every block of device ``spec``, then eject it (see module doc)."""
    dev: MemoryDevice = find_device(root, spec)
    if not dev.blocks:
        raise UsageError(f"{dev.name}: the device has no memory blocks")
    if not dev.ejectable:
        raise UsageError(f"{dev.name}: the device cannot be ejected (no writable eject)")
    res = RemoveResult(dev.name)
    zones = {b.index: b.zone for b in dev.blocks}
    pending = [b.index for b in sorted(dev.blocks, key=lambda b: -b.index) if b.online]
    res.plan = list(pending)
    if dry_run:
        return res
    deadline = clock() + timeout
    errors: dict[int, SysfsError] = {}
    delay = 0.05
    while pending:
        res.passes += 1
        still: list[int] = []
        for n, idx in enumerate(pending, 1):
            progress(f"pass {res.passes}: offlining memory{idx} ({n}/{len(pending)})")
            try:
                set_state(root, idx, "offline")
            except SysfsError as e:
                if block_state(root, idx) == "offline":
                    res.offlined.append(idx)  # raced with someone else: fine
                    continue
                errors[idx] = e
                still.append(idx)
                continue
            errors.pop(idx, None)
            res.offlined.append(idx)
        pending = still
        if not pending:
            break
        now = clock()
        if res.passes >= min_passes and now >= deadline:
            break
        if res.passes >= min_passes:
            sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, 1.0)
    if pending:
        for idx in pending:
            try:
                diag: Diagnosis | None = diagnose(root, idx)
            except (SysfsError, UsageError):
                diag = None
            res.failures.append(BlockFailure(idx, errors[idx], diag))
        if not keep_offline:
            for idx in reversed(res.offlined):
                progress(f"rolling back: onlining memory{idx}")
                try:
                    set_state(root, idx, online_value(zones.get(idx)))
                    res.rolled_back.append(idx)
                except SysfsError as e:
                    res.rollback_failures.append((idx, e))
        res.message = (
            f"{dev.name}: {len(pending)} of {len(res.plan)} blocks could not be offlined "
            f"after {res.passes} passes"
        )
        return res
    progress(f"ejecting {dev.name}")
    try:
        root.write(f"{dev.path}/eject", "1")
    except SysfsError as e:
        res.message = f"{dev.name}: eject failed: {e.strerror}"
        return res
    res.ejected = True
    indices = [b.index for b in dev.blocks]
    wait_deadline = max(deadline, clock() + 1.0)
    while True:
        gone_blocks = not any(root.exists(f"{SYS_MEMORY}/memory{i}") for i in indices)
        if gone_blocks and not device_block_indices(root, dev.path):
            res.removed = True
            return res
        if clock() >= wait_deadline:
            left = [i for i in indices if root.exists(f"{SYS_MEMORY}/memory{i}")]
            res.message = (
                f"{dev.name}: eject requested but the kernel has not removed "
                f"{'memory blocks ' + ','.join(map(str, left)) if left else 'its links'} "
                f"after {timeout:g}s"
            )
            return res
        progress(f"waiting for {dev.name} to go away")
        sleep(0.05)
