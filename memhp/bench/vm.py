"""Boot Debian's Linux under QEMU with hotpluggable memory, and talk to it.

>>> cfg = VMConfig(nodes=(NodeConfig(cpus=2, mem=1 << 30), NodeConfig()),
...                slots=4, maxmem=8 << 30, memhp_default_state="offline")
>>> with GuestVM(cfg) as vm:                       # doctest: +SKIP
...     dimm = vm.platform.hot_add_dimm(512 << 20, node=1, id="dimm1")
...     vm.fs.write("/sys/devices/system/memory/memory32/state", b"online_movable")
...     snap = vm.fs.capture()

The machine is QEMU's ``pc`` with ``-nodefaults``; the console (``ttyS0``) goes to
``console.log`` in the work directory, the guest agent runs on ``ttyS1`` (a unix
socket), QMP on another socket.  KVM is used when ``/dev/kvm`` works *and* the guest
actually boots with it (nested KVM has been seen to hang guest kernels): a boot that
shows no agent within ``kvm_boot_timeout`` is retried with TCG, and the verdict is
remembered in the cache directory for later runs.  ``MEMHP_ACCEL=kvm|tcg`` forces one.
A boot that panics, or a TCG boot that shows no agent within ``boot_timeout``, is
tried once more.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from memhp.abi import units
from memhp.bench.agent import AgentError, CommandResult, GuestAgent, GuestFS, sq
from memhp.bench.initramfs import (
    DEFAULT_KERNEL,
    NINEP_MODULES,
    REPO_ROOT,
    VIRTIO_MEM_MODULES,
    BenchSetupError,
    KernelImage,
    build_initramfs,
    cache_dir,
    find_busybox,
    find_qemu,
)
from memhp.bench.qmp import QMPPlatform
from memhp.kernel.machine_virtio_mem import VirtioMemSpec
from memhp.platform.qemu_pc import node_memdev_id

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(s: int | str) -> int:
    """``512M``, ``1G``, ``1073741824`` → bytes."""
    if isinstance(s, int):
        return s
    return units.parse_size(s)


def qemu_size(n: int) -> str:
    """Bytes in QEMU's notation (``1G``, ``512M``)."""
    for unit in ("T", "G", "M", "K"):
        if n % _UNITS[unit] == 0 and n >= _UNITS[unit]:
            return f"{n // _UNITS[unit]}{unit}"
    return str(n)


@dataclass(frozen=True)
class NodeConfig:
    """One NUMA node: CPUs and boot memory (0: a memory-less node), and its SLIT row
    (empty: QEMU builds no SLIT unless some node has distances)."""

    cpus: int = 0
    mem: int = 0
    distance: tuple[int, ...] = ()


@dataclass(frozen=True)
class Share:
    """A host directory shared read-only into the guest over 9p."""

    host_path: str
    guest_path: str
    tag: str


@dataclass(frozen=True)
class VMConfig:
    """The machine QEMU emulates and the kernel command line."""

    nodes: tuple[NodeConfig, ...] = (NodeConfig(cpus=2, mem=1 << 30), NodeConfig())
    slots: int = 4
    maxmem: int = 8 << 30
    memhp_default_state: str | None = "offline"  # offline/online/online_kernel/online_movable
    movable_node: bool = False
    memmap_on_memory: bool | str | None = None  # or "force" (6.12)
    cmdline_extra: tuple[str, ...] = ()
    shares: tuple[Share, ...] = ()
    host_python: bool = False  # share /usr, this Python, its venv and the repo over 9p
    accel: str = "auto"  # auto/kvm/tcg
    kernel: str = DEFAULT_KERNEL  # which Debian kernel boots (a key of BENCH_KERNELS)
    boot_timeout: float = 180.0  # TCG
    kvm_boot_timeout: float = 40.0
    kvm_silent_timeout: float = 10.0  # KVM boot with no console output at all: hung
    extra_qemu_args: tuple[str, ...] = ()
    #: virtio-mem-pci devices (the machine file's ``[[virtio_mem]]``, one format for both
    #: sides): each a memory-backend-ram and its device; the guest loads virtio_mem.ko
    virtio_mem: tuple[VirtioMemSpec, ...] = ()
    #: load virtio_pci and virtio_mem even without devices at boot (hotplugged later)
    virtio_mem_driver: bool = False
    #: -cpu for TCG; None: qemu64 (what the reference used), or "max" with host_python
    #: (numpy needs x86-64-v2 instructions that qemu64 lacks)
    tcg_cpu: str | None = None

    @property
    def boot_mem(self) -> int:
        return sum(n.mem for n in self.nodes)

    @property
    def ncpus(self) -> int:
        return sum(n.cpus for n in self.nodes)

    def cmdline(self) -> str:
        # Exactly what the reference trace used: extra options such as nokaslr change
        # the kernel's own footprint (MemTotal) and so the values we compare.
        parts = ["console=ttyS0"]
        if self.memhp_default_state is not None:
            parts.append(f"memhp_default_state={self.memhp_default_state}")
        if self.movable_node:
            parts.append("movable_node")
        if self.memmap_on_memory is not None:
            mom = self.memmap_on_memory
            parts.append(
                f"memory_hotplug.memmap_on_memory={mom if isinstance(mom, str) else int(mom)}"
            )
        shares = self.all_shares()
        if shares:
            parts.append("memhp.9p=" + ",".join(f"{s.tag}:{s.guest_path}" for s in shares))
        parts += self.cmdline_extra
        return " ".join(parts)

    def all_shares(self) -> tuple[Share, ...]:
        """``shares`` plus, with ``host_python``, what running memhp in the guest needs.

        Parents come before children (mount order); a directory already inside
        another share is not shared twice.
        """
        paths = {s.host_path: s for s in self.shares}
        if self.host_python:
            for p in ("/usr", sys.base_prefix, sys.prefix, str(REPO_ROOT)):
                p = os.path.realpath(p) if p != sys.prefix else os.path.abspath(p)
                paths.setdefault(p, Share(p, p, ""))
        out: list[Share] = []
        for p in sorted(paths, key=lambda x: (x.count("/"), x)):
            s = paths[p]
            if not s.tag and any(p.startswith(o.host_path.rstrip("/") + "/") for o in out):
                continue
            out.append(s if s.tag else Share(p, p, f"memhp{len(out)}"))
        return tuple(out)

    def validate(self) -> None:
        if self.ncpus < 1:
            raise ValueError("the machine needs at least one CPU")
        if self.boot_mem < (64 << 20):
            raise ValueError("the machine needs boot memory")
        if self.nodes and self.nodes[0].mem == 0:
            raise ValueError("node 0 must have boot memory")
        if self.maxmem < self.boot_mem:
            raise ValueError("maxmem below boot memory")


def qemu_args(
    cfg: VMConfig, kernel: KernelImage, initrd: Path, workdir: Path, accel: str
) -> list[str]:
    """The ``qemu-system-x86_64`` command line for ``cfg``."""
    cfg.validate()
    args = [
        str(find_qemu()),
        "-machine",
        "pc",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-accel",
        accel,
        "-cpu",
        "host" if accel == "kvm" else (cfg.tcg_cpu or ("max" if cfg.host_python else "qemu64")),
        "-smp",
        str(cfg.ncpus),
        "-m",
        f"{qemu_size(cfg.boot_mem)},slots={cfg.slots},maxmem={qemu_size(cfg.maxmem)}",
    ]
    cpu = 0
    for i, node in enumerate(cfg.nodes):
        spec = f"node,nodeid={i}"
        if node.cpus:
            spec += f",cpus={cpu}-{cpu + node.cpus - 1}" if node.cpus > 1 else f",cpus={cpu}"
            cpu += node.cpus
        if node.mem:
            memdev = node_memdev_id(i)
            args += ["-object", f"memory-backend-ram,id={memdev},size={qemu_size(node.mem)}"]
            spec += f",memdev={memdev}"
        args += ["-numa", spec]
    for i, node in enumerate(cfg.nodes):  # the SLIT (QEMU's build_slit())
        for j, d in enumerate(node.distance):
            if i != j:
                args += ["-numa", f"dist,src={i},dst={j},val={d}"]
    args += virtio_mem_args(cfg.virtio_mem)
    args += [
        "-kernel",
        str(kernel.vmlinuz),
        "-initrd",
        str(initrd),
        "-append",
        cfg.cmdline(),
        "-chardev",
        f"file,id=con,path={workdir / 'console.log'}",
        "-serial",
        "chardev:con",
        "-chardev",
        f"socket,id=agent,path={workdir / 'agent.sock'},server=on,wait=off",
        "-serial",
        "chardev:agent",
        "-qmp",
        f"unix:{workdir / 'qmp.sock'},server=on,wait=off",
    ]
    for s in cfg.all_shares():
        args += [
            "-virtfs",
            f"local,path={s.host_path},mount_tag={s.tag},security_model=none,readonly=on",
        ]
    args += list(cfg.extra_qemu_args)
    return args


def virtio_mem_args(devices: Sequence[VirtioMemSpec]) -> list[str]:
    """``-object memory-backend-ram,id=MEMDEV,size=MAX -device virtio-mem-pci,id=ID,
    memdev=MEMDEV,node=N,requested-size=S[,block-size=B][,memaddr=A]`` per device."""
    args: list[str] = []
    for v in devices:
        dev = (
            f"virtio-mem-pci,id={v.id},memdev={v.memdev},node={v.node},"
            f"requested-size={qemu_size(v.requested_size) if v.requested_size else 0}"
        )
        if v.block_size is not None:
            dev += f",block-size={qemu_size(v.block_size)}"
        if v.memaddr is not None:
            dev += f",memaddr={v.memaddr:#x}"
        args += ["-object", f"memory-backend-ram,id={v.memdev},size={qemu_size(v.size)}"]
        args += ["-device", dev]
    return args


KVM_GET_API_VERSION = 0xAE00


def kvm_available() -> bool:
    """``/dev/kvm`` opens and answers ``KVM_GET_API_VERSION`` with 12."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, KVM_GET_API_VERSION) == 12
    except OSError:
        return False
    finally:
        os.close(fd)


def _kvm_verdict_file() -> Path:
    return cache_dir() / "kvm-boot-verdict"


def choose_accels(requested: str) -> list[str]:
    """Accelerators to try, in order."""
    forced = os.environ.get("MEMHP_ACCEL", "").strip() or requested
    if forced in ("kvm", "tcg"):
        return [forced]
    if not kvm_available():
        return ["tcg"]
    try:
        if _kvm_verdict_file().read_text().strip() == "hangs":
            return ["tcg"]
    except OSError:
        pass
    return ["kvm", "tcg"]


def _die_with_parent() -> None:
    """In the QEMU child: get SIGKILL when the Python process dies (PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class BootError(RuntimeError):
    """The guest did not come up."""


class GuestStalled(BootError):
    """QEMU runs but the guest's agent did not answer in time: a boot that hung or
    panicked."""


def _worth_another_boot(accel: str, failure: BootError) -> bool:
    """Whether a boot that failed with ``failure`` is tried once more with the same
    accelerator: a kernel panic, or a TCG guest that stopped on the way (Debian's
    6.1 has been seen to hang under TCG, its console stopped early in boot, e.g.
    after 1.4 s of kernel messages; the same guest booted the next time).  A hung
    KVM boot goes on with TCG instead; QEMU refusing its command line would fail
    the same way twice."""
    if "Kernel panic" in str(failure):
        return True
    return accel == "tcg" and isinstance(failure, GuestStalled)


@dataclass
class BootRecord:
    """How a boot went (for reports and benchmarks)."""

    accel: str
    seconds: float
    attempts: list[str] = field(default_factory=list)


class GuestVM:
    """A running QEMU guest with the agent, QMP and the guest's file system.

    Use as a context manager; :meth:`stop` always kills QEMU.
    """

    def __init__(
        self,
        config: VMConfig | None = None,
        workdir: str | None = None,
        kernel: KernelImage | None = None,
        modules: Sequence[str] | None = None,
    ) -> None:
        self.config = config or VMConfig()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="memhp-vm-"))
        self.kernel = kernel
        if modules is None:
            modules = NINEP_MODULES if self.config.all_shares() else ()
            if self.config.virtio_mem or self.config.virtio_mem_driver:
                modules = tuple(dict.fromkeys((*modules, *VIRTIO_MEM_MODULES)))
        self.modules = tuple(modules)
        self.proc: subprocess.Popen[bytes] | None = None
        self.agent: GuestAgent | None = None
        self._platform: QMPPlatform | None = None
        self._fs: GuestFS | None = None
        self.boot: BootRecord | None = None

    # --- lifecycle -------------------------------------------------------------

    def __enter__(self) -> GuestVM:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        kernel = self.kernel or KernelImage.find(self.config.kernel)
        self.kernel = kernel
        initrd = build_initramfs(kernel, find_busybox(), self.modules)
        attempts: list[str] = []
        accels = choose_accels(self.config.accel)
        last: BootError | None = None
        tries = [(a, n) for a in accels for n in range(2)]  # a failed boot: once more
        for accel, n in tries:
            if n and not (last is not None and _worth_another_boot(accel, last)):
                continue
            timeout = self.config.kvm_boot_timeout if accel == "kvm" else self.config.boot_timeout
            t0 = time.monotonic()
            try:
                self._boot(kernel, initrd, accel, timeout)
            except BootError as e:
                attempts.append(f"{accel}: {e}")
                last = e
                self._kill()
                if accel == "kvm" and len(accels) > 1:
                    with contextlib.suppress(OSError):
                        _kvm_verdict_file().write_text("hangs\n")
                continue
            attempts.append(f"{accel}: ok")
            if accel == "kvm" and self.config.accel == "auto":
                with contextlib.suppress(OSError):
                    _kvm_verdict_file().write_text("works\n")
            self.boot = BootRecord(accel, time.monotonic() - t0, attempts)
            return
        raise BootError("guest did not boot: " + "; ".join(attempts)) from last

    def _boot(self, kernel: KernelImage, initrd: Path, accel: str, timeout: float) -> None:
        for name in ("agent.sock", "qmp.sock", "console.log"):
            with contextlib.suppress(FileNotFoundError):
                (self.workdir / name).unlink()
        args = qemu_args(self.config, kernel, initrd, self.workdir, accel)
        (self.workdir / "qemu.cmdline").write_text(" ".join(args) + "\n")
        stderr = open(self.workdir / "qemu.stderr", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        stderr.close()
        agent = GuestAgent(str(self.workdir / "agent.sock"))
        deadline = time.monotonic() + timeout
        while not (self.workdir / "agent.sock").exists():
            if self.proc.poll() is not None:
                raise BootError(
                    f"QEMU exited rc={self.proc.returncode}: {self._tail('qemu.stderr')}"
                )
            if time.monotonic() > deadline:
                raise BootError("QEMU did not create its sockets")
            time.sleep(0.01)
        agent.connect()
        self.agent = agent
        if accel == "kvm":
            # A KVM guest prints its first console line within a second; a nested-KVM
            # hang prints nothing at all.
            silent_deadline = time.monotonic() + min(timeout, self.config.kvm_silent_timeout)
            while not self._tail("console.log", 1):
                if time.monotonic() > silent_deadline:
                    raise BootError("KVM guest printed nothing (hung boot)")
                if self.proc.poll() is not None:
                    raise BootError(f"QEMU exited rc={self.proc.returncode}")
                time.sleep(0.05)
        try:
            agent.wait_ready(max(1.0, deadline - time.monotonic()))
        except AgentError as e:
            raise GuestStalled(
                f"no agent within {timeout:.0f}s ({e}); console: {self._tail('console.log')}"
            ) from e
        self._fs = GuestFS(agent)
        platform = QMPPlatform(str(self.workdir / "qmp.sock"))
        platform.connect()
        self._platform = platform

    def _tail(self, name: str, n: int = 600) -> str:
        try:
            return (self.workdir / name).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def console(self) -> str:
        """The guest's console output so far."""
        return self._tail("console.log", 1 << 30)

    def _kill(self) -> None:
        if self._platform is not None:
            with contextlib.suppress(Exception):
                self._platform.close()
            self._platform = None
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        """Quit QEMU (QMP ``quit``, then SIGKILL) and remove a temporary work directory."""
        if self._platform is not None and self.proc is not None and self.proc.poll() is None:
            self._platform.quit()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self._kill()
        if self._own_workdir and not os.environ.get("MEMHP_KEEP_VM"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- access ----------------------------------------------------------------

    @property
    def fs(self) -> GuestFS:
        if self._fs is None:
            raise BootError("guest not running")
        return self._fs

    @property
    def platform(self) -> QMPPlatform:
        if self._platform is None:
            raise BootError("guest not running")
        return self._platform

    def python_argv(self) -> list[str]:
        """How to start this host's Python (with memhp importable) inside the guest.

        Needs ``VMConfig(host_python=True)``.
        """
        if not self.config.host_python:
            raise BootError("boot with VMConfig(host_python=True) to run Python in the guest")
        # The repository (shared over 9p) first on the path: the venv may map memhp
        # elsewhere (an editable install of another checkout, not shared).
        return ["env", f"PYTHONPATH={REPO_ROOT}", os.path.abspath(sys.executable)]

    def run_memhp(self, args: Sequence[str], timeout: float = 300.0) -> CommandResult:
        """Run ``memhp ARGS`` in the guest (the host's Python and repo over 9p)."""
        argv = [*self.python_argv(), "-m", "memhp.cli.main", *args]
        script = "export PYTHONDONTWRITEBYTECODE=1 LC_ALL=C\n" + " ".join(sq(a) for a in argv)
        return self.fs.run(script, timeout)

    def run(self, script: str, timeout: float = 120.0) -> str:
        """Run a shell script in the guest; its stdout (raises on a non-zero rc)."""
        return self.fs.run(script, timeout).check().text


def bench_available(kernel: str = DEFAULT_KERNEL) -> str | None:
    """None when QEMU, busybox-static and Linux ``kernel`` are all present, else why not."""
    try:
        find_qemu()
        find_busybox()
        KernelImage.find(kernel)
    except BenchSetupError as e:
        return str(e)
    return None
