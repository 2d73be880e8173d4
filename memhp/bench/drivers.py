"""The two sides of a differential run, behind one :class:`Driver` interface.

:class:`ModelDriver` runs the simulated kernel in-process
(:class:`memhp.sim.machine.SimMachine`); :class:`QMPDriver` drives anything that speaks
QMP and has a sysfs: a QEMU guest (:meth:`QMPDriver.for_vm`, :func:`real_driver`), and
equally the simulated machine's QMP server.  Both give hardware actions (hot-add,
device_del), sysfs reads and writes, the memhp CLI, lsmem, QMP events and tree captures.

The bench never imports the CLI: the model side runs memhp through a
:data:`ToolRunner` its caller gives (``memhp.cli.main.run_with_sysfs``).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from memhp.abi.acpi import MEMORY_DEVICE_HID
from memhp.abi.fs import EXTRA_ERRNO_NAMES, Kind, SysfsFS, resolve_link
from memhp.abi.paths import (
    MEMORY_ROOTS,
    PROC_BUDDYINFO,
    PROC_IOMEM,
    PROC_MEMINFO,
    PROC_VMSTAT,
    PROC_ZONEINFO,
    SYS_ACPI_DEVICES,
    SYS_VIRTIO_DEVICES,
    SYS_VIRTIO_DRIVERS,
)
from memhp.abi.tree import Entry, Snapshot, walk, write_tree
from memhp.abi.virtio import VIRTIO_MEM_DRIVER

if TYPE_CHECKING:
    from memhp.bench.qmp import QMPPlatform
    from memhp.bench.vm import GuestVM, VMConfig
    from memhp.kernel.machine import MachineSpec
    from memhp.sim.machine import SimMachine

ACPI_DEVICES = SYS_ACPI_DEVICES
#: /proc files the real side keeps in recordings (only meminfo is compared).
PROC_FILES = (PROC_MEMINFO, PROC_ZONEINFO, PROC_IOMEM, PROC_BUDDYINFO, PROC_VMSTAT)
#: The ACPI device directories the ``PNP0C80`` links point to are captured too.
ACPI_FOLLOW = f"{MEMORY_DEVICE_HID}:*"
#: The virtio bus's devices and the virtio_mem driver's directory (its bound devices),
#: captured beside the memory trees; the ``virtioN`` device directories under their
#: PCI functions are followed from the bus's links.
CAPTURE_ROOTS = (*MEMORY_ROOTS, SYS_VIRTIO_DEVICES, f"{SYS_VIRTIO_DRIVERS}/{VIRTIO_MEM_DRIVER}")
VIRTIO_FOLLOW = f"{SYS_VIRTIO_DEVICES}/virtio*"


#: Runs the memhp CLI in-process on a sysfs: (argv, sysfs) -> (rc, stdout, stderr).
#: Given by the bench's caller (the CLI passes ``memhp.cli.main.run_with_sysfs``).
ToolRunner = Callable[[Sequence[str], SysfsFS], tuple[int, str, str]]


def errno_value(name: str) -> int:
    """``"EINVAL"`` → 22; ``"ok"`` → 0."""
    if name == "ok":
        return 0
    extra = {v: k for k, v in EXTRA_ERRNO_NAMES.items()}
    code = extra.get(name, getattr(errno, name, None))
    if not isinstance(code, int) or not name.startswith("E"):
        raise KeyError(name)
    return code


def errno_label(code: int) -> str:
    """0 → ``"ok"``, 22 → ``"EINVAL"``."""
    if code == 0:
        return "ok"
    return errno.errorcode.get(code) or EXTRA_ERRNO_NAMES.get(code, str(code))


#: The guest's fill script's exit status when the tmpfs mount failed.
MOUNT_FAILED = 32


def strerror_label(text: str) -> str:
    """The errno name of a message's ending strerror() text, else the text itself."""
    last = text.strip().rsplit(": ", 1)[-1]
    for code in errno.errorcode:
        if os.strerror(code) == last:
            return errno_label(code)
    return text.strip()


@dataclass(frozen=True)
class HotAdd:
    """A pc-dimm to plug: size, node, QOM id; optionally its address and slot."""

    size: int
    node: int
    id: str
    addr: int | None = None
    slot: int | None = None


@dataclass
class SideResult:
    """What one step gave on one side (kept in recordings)."""

    outcome: str = ""
    detail: str = ""
    events: list[str] = field(default_factory=list)
    seconds: float = 0.0


# --- what both sides give -------------------------------------------------------------


@dataclass(frozen=True)
class CmdResult:
    """A command's exit status and output."""

    rc: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Event:
    """A QMP event without its timestamp."""

    name: str
    data: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.name} {json.dumps(self.data, sort_keys=True)}"


#: A QMP reply: (True, the return value) or (False, "ErrorClass: description").
QmpReply = tuple[bool, Any]


class Driver(Protocol):
    """One side of a differential run: hardware, sysfs, commands, captures."""

    label: str

    def hot_add(self, dimm: HotAdd, timeout: float) -> str:
        """Plug a DIMM and wait until the OS took it: ``"ok"`` or the refusal."""
        ...

    def fill(self, size: int, node: int, name: str) -> str:
        """Write a ``size``-byte file ``name`` on a tmpfs preferring ``node``: "ok" or why not."""
        ...

    def device_del(self, id: str, timeout: float) -> bool:
        """Platform eject request; True when the DIMM went away."""
        ...

    def wait_removed(self, id: str, timeout: float) -> bool:
        """Wait until DIMM ``id`` is gone; False when the guest refused it."""
        ...

    def write(self, path: str, value: str) -> int:
        """Write ``value`` to ``path``: 0 or the errno."""
        ...

    def read(self, path: str) -> tuple[str | None, int]:
        """(value, 0) or (None, errno)."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def clock(self) -> float | None:
        """This side's simulated clock (seconds), None for a real machine (wall time)."""
        ...

    def memhp(self, args: Sequence[str], timeout: float) -> CmdResult:
        """The memhp CLI against this side's sysfs."""
        ...

    def lsmem(self, args: Sequence[str]) -> CmdResult:
        """util-linux lsmem against this side's sysfs."""
        ...

    def take_events(self) -> list[Event]:
        """QMP events since the last call."""
        ...

    def qmp(self, cmd: str, args: dict[str, Any]) -> QmpReply:
        """One QMP command: (True, its return value) or (False, "Class: desc")."""
        ...

    def kernel_messages(self, pattern: str) -> list[str]:
        """The kernel log lines (dmesg, without timestamps) containing ``pattern``."""
        ...

    def settle_virtio_mem(self, id: str, settle: float, timeout: float) -> None:
        """Wait until virtio-mem ``id`` reaches its requested size or stops (see virtio)."""
        ...

    def settle_events(self, quiet: float, timeout: float) -> None:
        """Wait until no QMP event came for ``quiet`` s (at most ``timeout``)."""
        ...

    def capture(self) -> Snapshot:
        """The memory hotplug trees (see :func:`capture_fs`) plus /proc/meminfo."""
        ...

    def close(self) -> None: ...


def capture_fs(fs: SysfsFS) -> Snapshot:
    """Capture ``MEMORY_ROOTS``, the ``PNP0C80`` device directories and /proc/meminfo.

    The same shape as :meth:`memhp.bench.agent.GuestFS.capture` gives (ancestors of
    the followed device directories included, ``power/`` left out).
    """
    snap: Snapshot = {}
    for top in CAPTURE_ROOTS:
        for path, entry in walk(fs, top):
            snap[path] = entry
    for path, entry in list(snap.items()):
        if entry.kind is Kind.LINK and (
            fnmatch.fnmatch(path, f"{ACPI_DEVICES}/{ACPI_FOLLOW}")
            or fnmatch.fnmatch(path, VIRTIO_FOLLOW)
        ):
            assert entry.target is not None
            for p, e in walk(fs, resolve_link(path, entry.target)):
                if "/power/" not in p + "/":
                    snap[p] = e
    for path in list(snap):
        parent = path.rsplit("/", 1)[0]
        while parent.startswith("/sys/") and parent not in snap:
            snap[parent] = Entry(Kind.DIR, mode=0o755)
            parent = parent.rsplit("/", 1)[0]
    _add_proc(snap, fs, (PROC_MEMINFO, PROC_IOMEM))
    return snap


def _add_proc(snap: Snapshot, fs: SysfsFS, paths: Sequence[str] = (PROC_MEMINFO,)) -> None:
    for path in paths:
        try:
            snap[path] = Entry(
                Kind.FILE, value=fs.read(path).decode("utf-8", "replace"), mode=0o444
            )
        except OSError as e:
            snap[path] = Entry(Kind.FILE, read_errno=e.errno or errno.EIO, mode=0o444)


def _os_errno(fn: Callable[[], object]) -> int:
    try:
        fn()
    except OSError as e:
        return e.errno or errno.EIO
    return 0


def host_lsmem(snap: Snapshot, args: Sequence[str]) -> CmdResult:
    """Run the host's util-linux ``lsmem --sysroot`` on a captured tree."""
    exe = shutil.which("lsmem")
    if exe is None:
        return CmdResult(127, "", "lsmem: not installed on the host (util-linux)")
    with tempfile.TemporaryDirectory(prefix="memhp-lsmem-") as d:
        write_tree({p: e for p, e in snap.items() if p.startswith("/sys/")}, d, clean=False)
        r = subprocess.run(
            [exe, "--sysroot", d, *args],
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    return CmdResult(r.returncode, r.stdout, r.stderr.replace(d, "SYSROOT"))


class ModelDriver:
    """The simulated kernel, in-process."""

    label = "model"

    def __init__(self, machine: SimMachine, tool: ToolRunner | None = None) -> None:
        self.m = machine
        self.tool = tool
        # The QMP client connects once the guest has booted: QEMU sends events only to
        # negotiated monitors, so what the devices signalled during boot is not seen.
        self._seen = len(machine.platform.events)

    @classmethod
    def for_machine(cls, spec: MachineSpec, tool: ToolRunner | None = None) -> ModelDriver:
        """A fresh simulated machine booted from ``spec``; ``tool`` runs memhp on it."""
        from memhp.sim.machine import SimMachine

        return cls(SimMachine(spec), tool)

    def hot_add(self, dimm: HotAdd, timeout: float) -> str:
        from memhp.sim.machine import PlatformError

        try:
            self.m.device_add(dimm.size, dimm.node, id=dimm.id, addr=dimm.addr, slot=dimm.slot)
        except PlatformError as e:
            return f"refused: {e}"
        return "ok"

    def fill(self, size: int, node: int, name: str) -> str:
        from memhp.kernel.mm.page_alloc import AllocError

        try:
            self.m.tmpfs_write(name, size, node)
        except OSError as e:  # the node's tmpfs could not be mounted
            return f"failed: mount {errno_label(e.errno or errno.EIO)}"
        except (AllocError, ValueError) as e:
            return f"failed: {e}"
        return "ok"

    def _gone(self, id: str) -> bool:
        return self.m.platform.slot_of(id) is None

    def device_del(self, id: str, timeout: float) -> bool:
        from memhp.sim.machine import PlatformError

        try:
            self.m.device_del(id)
        except PlatformError:
            return False
        return self._gone(id)

    def wait_removed(self, id: str, timeout: float) -> bool:
        return self._gone(id)

    def write(self, path: str, value: str) -> int:
        return _os_errno(lambda: self.m.sysfs.write(path, value.encode()))

    def read(self, path: str) -> tuple[str | None, int]:
        try:
            return self.m.sysfs.read(path).decode("utf-8", "replace"), 0
        except OSError as e:
            return None, e.errno or errno.EIO

    def sleep(self, seconds: float) -> None:
        # simulated time passes for the run-time kernel allocations and the timers
        # (virtio_mem's retry timer)
        with self.m.lock:
            k = self.m.kernel
            k.kalloc.advance(k.clock + seconds)
        self.m.advance(seconds)

    def clock(self) -> float | None:
        return self.m.kernel.clock

    def memhp(self, args: Sequence[str], timeout: float) -> CmdResult:
        """The CLI in-process through the injected tool runner, on the model's sysfs."""
        if self.tool is None:
            return CmdResult(127, "", "memhp cannot run on this side (no tool runner given)")
        rc, out, err = self.tool(list(args), self.m.sysfs)
        return CmdResult(rc, out, err)

    def lsmem(self, args: Sequence[str]) -> CmdResult:
        return host_lsmem(self.capture(), args)

    def take_events(self) -> list[Event]:
        evs = self.m.platform.events[self._seen :]
        self._seen = len(self.m.platform.events)
        return [Event(e.event, json.loads(json.dumps(e.data))) for e in evs]

    def capture(self) -> Snapshot:
        return capture_fs(self.m.sysfs)

    def qmp(self, cmd: str, args: dict[str, Any]) -> QmpReply:
        from memhp.bench.virtio import model_qmp

        return model_qmp(self.m, cmd, args)

    def kernel_messages(self, pattern: str) -> list[str]:
        with self.m.lock:
            return [e.detail for e in self.m.kernel.events if pattern in e.detail]

    def settle_virtio_mem(self, id: str, settle: float, timeout: float) -> None:
        from memhp.bench.virtio import model_settle

        model_settle(self.m, id, settle, timeout)

    def settle_events(self, quiet: float, timeout: float) -> None:
        return  # (the model's events are all in by the command's reply)

    def close(self) -> None:
        pass


class QMPDriver:
    """A machine driven over QMP with a sysfs: a QEMU guest, or the model's QMP server.

    ``run_memhp``/``run_lsmem`` run the commands where the sysfs is; ``capture`` is
    the bulk capture when there is one (the guest agent), else :func:`capture_fs`.
    """

    def __init__(
        self,
        label: str,
        platform: QMPPlatform,
        fs: SysfsFS,
        run_memhp: Callable[[Sequence[str], float], CmdResult] | None = None,
        run_lsmem: Callable[[Sequence[str]], CmdResult] | None = None,
        capture: Callable[[], Snapshot] | None = None,
        settle: float = 0.2,
    ) -> None:
        self.label = label
        self.platform = platform
        self.fs = fs
        self._run_memhp = run_memhp
        self._run_lsmem = run_lsmem
        self._capture = capture
        self.settle = settle
        self._seen = len(platform.log)
        self.vm: GuestVM | None = None

    @classmethod
    def for_vm(cls, vm: GuestVM) -> QMPDriver:
        """The real kernel: a booted :class:`~memhp.bench.vm.GuestVM`."""
        fs = vm.fs

        def memhp(args: Sequence[str], timeout: float) -> CmdResult:
            r = vm.run_memhp(list(args), timeout)
            return CmdResult(r.rc, r.text, r.stderr.decode("utf-8", "replace"))

        def lsmem(args: Sequence[str]) -> CmdResult:
            cmd = " ".join(["LC_ALL=C", "lsmem", *(shlex.quote(a) for a in args)])
            r = fs.run(cmd)
            return CmdResult(r.rc, r.text, r.stderr.decode("utf-8", "replace"))

        def capture() -> Snapshot:
            follow = (f"{ACPI_DEVICES}/{ACPI_FOLLOW}", VIRTIO_FOLLOW)
            snap = fs.capture(CAPTURE_ROOTS, follow=follow)
            _add_proc(snap, fs, PROC_FILES)
            return snap

        d = cls("real", vm.platform, fs, memhp, lsmem, capture)
        d.vm = vm
        return d

    def hot_add(self, dimm: HotAdd, timeout: float) -> str:
        from memhp.bench.qmp import OST_SOURCE_INSERT, QMPError

        try:
            self.platform.hot_add_dimm(dimm.size, dimm.node, dimm.id, dimm.addr, dimm.slot)
        except QMPError as e:
            return f"refused: {e}"

        def inserted(e: Any) -> bool:
            info = e.data.get("info") or {}
            return bool(e.device == dimm.id and info.get("source") == OST_SOURCE_INSERT)

        try:
            self.platform.wait_event("ACPI_DEVICE_OST", timeout, inserted)
        except QMPError as e:
            return f"no _OST: {e}"
        return "ok"

    def fill(self, size: int, node: int, name: str) -> str:
        if self.vm is None:
            from memhp.bench.qmp import QMPError

            args = {"size": size, "node": node, "file": name}
            try:
                self.platform.execute("x-memhp-tmpfs-write", **args)
            except QMPError as e:
                return f"failed: {e}"
            return "ok"
        # tmpfs (shmem) pages: GFP_HIGHUSER_MOVABLE, mpol=prefer:N as the model's
        # zonelist of node N (a tmpfs per node: a file's pages follow the policy of
        # its mount); dd from /dev/zero writes every page once.
        # A mount the kernel refuses (mpol=prefer: of a node without memory) exits
        # MOUNT_FAILED with busybox's "mount: mounting ... failed: <strerror>".
        mnt = f"/run/memhp-fill{node}"
        script = (
            f"mkdir -p {mnt} && {{ grep -q ' {mnt} ' /proc/mounts || "
            f"mount -t tmpfs -o size=100%,mpol=prefer:{node} memhp-fill {mnt} 2>&1 || "
            f"exit {MOUNT_FAILED}; }} && "
            f"dd if=/dev/zero of={mnt}/{shlex.quote(name)} bs=1M count={size >> 20} 2>&1"
        )
        r = self.vm.fs.run(script, 600.0)
        if r.rc == MOUNT_FAILED:
            return f"failed: mount {strerror_label(r.text)}"
        return "ok" if r.rc == 0 else f"failed: {r.text.strip() or r.rc}"

    def device_del(self, id: str, timeout: float) -> bool:
        from memhp.bench.qmp import QMPError

        try:
            self.platform.device_del(id)
        except QMPError:
            return False
        return self.wait_removed(id, timeout)

    def wait_removed(self, id: str, timeout: float) -> bool:
        from memhp.bench.qmp import QMPError

        try:
            if all(dev.id != id for dev in self.platform.memory_devices()):
                gone = True  # already gone (its events were taken with the last step)
            else:
                gone = self.platform.wait_removal(id, timeout)
        except QMPError:
            return False
        if gone:
            with contextlib.suppress(QMPError):
                self.platform.release_backend(id)
        return gone

    def write(self, path: str, value: str) -> int:
        return _os_errno(lambda: self.fs.write(path, value.encode()))

    def read(self, path: str) -> tuple[str | None, int]:
        try:
            return self.fs.read(path).decode("utf-8", "replace"), 0
        except OSError as e:
            return None, e.errno or errno.EIO

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def clock(self) -> float | None:
        return None

    def memhp(self, args: Sequence[str], timeout: float) -> CmdResult:
        if self._run_memhp is None:
            return CmdResult(127, "", "memhp cannot run on this side")
        return self._run_memhp(args, timeout)

    def lsmem(self, args: Sequence[str]) -> CmdResult:
        if self._run_lsmem is None:
            return host_lsmem(self.capture(), args)
        return self._run_lsmem(args)

    def take_events(self) -> list[Event]:
        # let deferred work (uevents, a DEVICE_DELETED after a guest eject) come in
        with contextlib.suppress(Exception):
            self.platform.events()
        log = self.platform.log
        out = [
            Event(str(e["event"]), json.loads(json.dumps(e.get("data") or {})))
            for e in log[self._seen :]
            if "event" in e
        ]
        self._seen = len(log)
        return out

    def capture(self) -> Snapshot:
        time.sleep(self.settle)
        if self._capture is not None:
            return self._capture()
        return capture_fs(self.fs)

    def qmp(self, cmd: str, args: dict[str, Any]) -> QmpReply:
        from memhp.bench.qmp import QMPError

        try:
            return True, self.platform.execute(cmd, **args)
        except QMPError as e:
            return False, str(e).removeprefix(f"{cmd}: ")

    def kernel_messages(self, pattern: str) -> list[str]:
        if self.vm is None:
            ok, log = self.qmp("x-memhp-kernel-log", {})
            lines = [str(e.get("detail", "")) for e in log] if ok else []
        else:
            lines = [
                line.split("] ", 1)[-1] if line.startswith("[") else line
                for line in self.vm.fs.run("dmesg").text.splitlines()
            ]
        return [line for line in lines if pattern in line]

    def settle_events(self, quiet: float, timeout: float) -> None:
        if self.vm is not None:  # (the model behind a QMP socket answers synchronously)
            self.platform.wait_quiet(quiet, timeout)

    def settle_virtio_mem(self, id: str, settle: float, timeout: float) -> None:
        from memhp.bench.virtio import real_settle

        real_settle(self.platform, self.vm.fs if self.vm is not None else None, id, settle, timeout)

    def close(self) -> None:
        if self.vm is not None:
            self.vm.stop()


@contextlib.contextmanager
def real_driver(vm_config: VMConfig) -> Iterator[QMPDriver]:
    """Boot a QEMU guest (a :class:`memhp.bench.vm.VMConfig`); always stops QEMU."""
    from memhp.bench.vm import GuestVM

    vm = GuestVM(vm_config)
    try:
        vm.start()
        yield QMPDriver.for_vm(vm)
    finally:
        vm.stop()
