"""Simulated machines for tests that change state: the real model, not a stand-in.

:func:`dimm_machine` is the QEMU guest of the reference (machines/qemu-linux-6.1):
blocks 0-7 boot memory on node 0 (memory0 spans DMA and DMA32, memory7 has a
firmware hole), and a 512 MiB pc-dimm (ACPI PNP0C80:00, blocks 32-35) on node 1,
onlined Movable.  Failures come from the model itself: pages pinned by a driver
(:func:`pin`), the memory notifier error injection of debugfs
(:func:`inject_offline_error`).  :class:`RecordingFS` wraps any sysfs root to see
what the tool wrote and read.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from memhp.abi.fs import Stat, SysfsFS, normpath, oserror
from memhp.abi.layout import MiB
from memhp.abi.paths import SYS_MEMORY, block_dir
from memhp.host.root import SysfsRoot
from memhp.kernel.machine import MachineSpec
from memhp.kernel.mm.mmzone import ZoneType
from memhp.kernel.mm.page_alloc import Allocation
from memhp.sim.config import load_machine
from memhp.sim.machine import SimMachine, WorkloadMix

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: debugfs: the error MEM_GOING_OFFLINE notifiers return (mm/memory_hotplug.c).
OFFLINE_INJECT = "/sys/kernel/debug/notifier-error-inject/memory/actions/MEM_GOING_OFFLINE/error"
DIMM_BLOCKS = (32, 33, 34, 35)


def machine(name: str) -> MachineSpec:
    """The machine description machines/<name>.toml."""
    return load_machine(os.path.join(ROOT, "machines", name + ".toml"))


def dimm_machine(zones: tuple[str, ...] = ("online_movable",) * 4) -> SimMachine:
    """qemu-linux-6.1 with PNP0C80:00 (blocks 32-35) plugged and onlined with ``zones``."""
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(512 * MiB, 1, id="dimm1")
    for b, how in zip(DIMM_BLOCKS, zones, strict=True):
        m.sysfs.write(f"{block_dir(b)}/state", how.encode())
    return m


def seed_machine() -> SimMachine:
    """machines/seed.toml with its DIMM at 1 GiB (blocks 8-11) plugged and online."""
    m = SimMachine(machine("seed"))
    m.device_add(512 * MiB, 1, id="dimm1", addr=1 << 30)
    for b in range(8, 12):
        m.sysfs.write(f"{block_dir(b)}/state", b"online")
    return m


def fill_kernel_zone(m: SimMachine, nid: int, zone: ZoneType) -> None:
    """Unmovable pages in kernel zone ``zone`` of node ``nid`` until a GFP_KERNEL
    request (highest zone ZONE_NORMAL) finds no room there above its watermark (a few
    rounds: the kernel's own allocations move the figure a little)."""
    k = m.kernel
    z = k.pgdats[nid].zone(zone)
    for _ in range(8):
        if (left := k.pa.watermark_room(z, ZoneType.NORMAL)) > 0:
            m.fill(left, node=nid, zone=z.name, mix=WorkloadMix(unmovable=1.0))
    assert k.pa.watermark_room(z, ZoneType.NORMAL) <= 0


def pin(m: SimMachine, block: int, pages: int = 100, owner: str = "driver") -> list[Allocation]:
    """A driver allocates ``pages`` unmovable pages in memory<block>: the kernel can
    no longer offline it (EBUSY in a kernel zone; in ZONE_MOVABLE migration is
    retried until the writer gets a signal: EINTR)."""
    bs = int(m.sysfs.read(f"{SYS_MEMORY}/block_size_bytes"), 16)
    start = block * bs
    return m.fill(pages, start=start, end=start + bs, mix=WorkloadMix(unmovable=1.0), owner=owner)


def inject_offline_error(m: SimMachine, err: int) -> None:
    """Make every MEM_GOING_OFFLINE notifier fail with ``-err`` (0: stop)."""
    m.sysfs.write(OFFLINE_INJECT, f"{-err}".encode())


def state(m: SimMachine, block: int) -> str:
    """The ``state`` of memory<block> as sysfs shows it."""
    return m.sysfs.read(f"{block_dir(block)}/state").decode().strip()


def exists(m: SimMachine, block: int) -> bool:
    try:
        m.sysfs.lstat(block_dir(block))
    except OSError:
        return False
    return True


class RecordingFS:
    """A :class:`SysfsFS` that passes everything to ``inner`` and records the
    writes (path, value without newline) and the bytes each path returned.

    ``before_write(path, value)`` runs before a write reaches the kernel: another
    actor on the machine (a udev rule, a driver) acting at that moment.
    """

    def __init__(
        self, inner: SysfsFS, before_write: Callable[[str, str], None] | None = None
    ) -> None:
        self.inner = inner
        self.before_write = before_write
        self.writes: list[tuple[str, str]] = []
        self.bytes_read: dict[str, int] = {}

    def _count(self, path: str, data: bytes) -> bytes:
        p = normpath(path)
        self.bytes_read[p] = self.bytes_read.get(p, 0) + len(data)
        return data

    def lstat(self, path: str) -> Stat:
        return self.inner.lstat(path)

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)

    def read(self, path: str) -> bytes:
        return self._count(path, self.inner.read(path))

    def read_at(self, path: str, offset: int, size: int) -> bytes:
        return self._count(path, self.inner.read_at(path, offset, size))

    def write(self, path: str, data: bytes) -> int:
        value = data.decode().strip()
        if self.before_write is not None:
            self.before_write(normpath(path), value)
        self.writes.append((normpath(path), value))
        return self.inner.write(path, data)

    def readlink(self, path: str) -> str:
        return self.inner.readlink(path)


def unprivileged(fs: SysfsFS) -> Callable[[str, str], None]:
    """A ``before_write`` hook for a caller who is not root: the VFS permission
    check (may_open) refuses a write unless the mode lets others write (EACCES)."""

    def check(path: str, _value: str) -> None:
        if not fs.lstat(path).mode & 0o002:
            raise oserror(errno.EACCES, path)

    return check


def recording_root(m: SimMachine) -> tuple[SysfsRoot, RecordingFS]:
    """A tool root on ``m`` and the recorder under it."""
    fs = RecordingFS(m.sysfs)
    return SysfsRoot(fs, "sim"), fs
