"""The differential run: one scenario on real Linux under QEMU and on the model.

Both sides are driven through one :class:`Driver` interface (hardware actions over
QMP or the in-process platform, sysfs reads/writes, the memhp CLI, lsmem), the
trees of both are captured after each step, normalised (:func:`normalise`) and
compared (:func:`compare_trees`): missing and extra files and links, different
values, link targets, read errnos; the steps themselves are compared by their
outcome (write errno, removal, exit status, output) and by the QMP events they
caused.  The few values the model cannot know are listed in :data:`ALLOWLIST`,
each with its reason; some of them are compared by their change between steps.

:class:`ModelDriver` runs the simulated kernel in-process (:class:`memhp.sim.machine.SimMachine`);
:class:`QMPDriver` drives anything that speaks QMP and has a sysfs: a QEMU guest
(:meth:`QMPDriver.for_vm`), and equally the simulated machine's QMP server.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import gzip
import io
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from memhp.abi.acpi import ACPI_ROOT
from memhp.abi.fs import Kind, SysfsFS, resolve_link
from memhp.abi.paths import (
    MEMORY_ROOTS,
    PROC_MEMINFO,
    SYS_ACPI_DEVICES,
    SYS_FIRMWARE_MEMMAP,
    SYS_MEMORY,
    SYS_NODE,
)
from memhp.abi.tree import Entry, Snapshot, walk, write_tree
from memhp.bench.scenario import (
    HotAdd,
    Scenario,
    Step,
    errno_label,
    errno_value,
)

if TYPE_CHECKING:
    from memhp.bench.qmp import QMPPlatform
    from memhp.bench.vm import GuestVM
    from memhp.sim.machine import SimMachine

ACPI_DEVICES = SYS_ACPI_DEVICES
#: The ACPI device directories the ``PNP0C80`` links point to are captured too.
ACPI_FOLLOW = "PNP0C80:*"


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


class Driver(Protocol):
    """One side of a differential run: hardware, sysfs, commands, captures."""

    label: str

    def hot_add(self, dimm: HotAdd, timeout: float) -> str:
        """Plug a DIMM and wait until the OS took it: ``"ok"`` or the refusal."""
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

    def memhp(self, args: Sequence[str], timeout: float) -> CmdResult:
        """The memhp CLI against this side's sysfs."""
        ...

    def lsmem(self, args: Sequence[str]) -> CmdResult:
        """util-linux lsmem against this side's sysfs."""
        ...

    def take_events(self) -> list[Event]:
        """QMP events since the last call."""
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
    for top in MEMORY_ROOTS:
        for path, entry in walk(fs, top):
            snap[path] = entry
    for path, entry in list(snap.items()):
        parent, _, name = path.rpartition("/")
        if (
            parent == ACPI_DEVICES
            and entry.kind is Kind.LINK
            and fnmatch.fnmatch(name, ACPI_FOLLOW)
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
    _add_meminfo(snap, fs)
    return snap


def _add_meminfo(snap: Snapshot, fs: SysfsFS) -> None:
    try:
        snap[PROC_MEMINFO] = Entry(
            Kind.FILE, value=fs.read(PROC_MEMINFO).decode("utf-8", "replace"), mode=0o444
        )
    except OSError as e:
        snap[PROC_MEMINFO] = Entry(Kind.FILE, read_errno=e.errno or errno.EIO, mode=0o444)


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

    def __init__(self, machine: SimMachine) -> None:
        self.m = machine
        self._seen = 0

    @classmethod
    def for_scenario(cls, sc: Scenario) -> ModelDriver:
        from memhp.sim.machine import SimMachine

        return cls(SimMachine(sc.machine))

    def hot_add(self, dimm: HotAdd, timeout: float) -> str:
        from memhp.sim.machine import PlatformError

        try:
            self.m.device_add(dimm.size, dimm.node, id=dimm.id, addr=dimm.addr, slot=dimm.slot)
        except PlatformError as e:
            return f"refused: {e}"
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
        pass  # the model has no deferred work

    def memhp(self, args: Sequence[str], timeout: float) -> CmdResult:
        """The CLI in-process, its root the model's sysfs (``args.root``)."""
        from memhp.cli.main import _command_of, build_parser
        from memhp.host.root import SysfsRoot

        argv = list(args)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                ns = build_parser(_command_of(argv)).parse_args(argv)
                ns.root = SysfsRoot(self.m.sysfs, "model")
                rc = int(ns.func(ns))
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
        return CmdResult(rc, out.getvalue(), err.getvalue())

    def lsmem(self, args: Sequence[str]) -> CmdResult:
        return host_lsmem(self.capture(), args)

    def take_events(self) -> list[Event]:
        evs = self.m.platform.events[self._seen :]
        self._seen = len(self.m.platform.events)
        return [Event(e.event, json.loads(json.dumps(e.data))) for e in evs]

    def capture(self) -> Snapshot:
        return capture_fs(self.m.sysfs)

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
            snap = fs.capture(MEMORY_ROOTS, follow=(f"{ACPI_DEVICES}/{ACPI_FOLLOW}",))
            _add_meminfo(snap, fs)
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

    def close(self) -> None:
        if self.vm is not None:
            self.vm.stop()


# --- normalisation and the allowlist -----------------------------------------------------


#: Captured paths outside the memory hotplug subsystem that only the real side has.
#: Under /sys/bus/acpi/devices only the PNP0C80 (ACPI memory device) links count.
#: Under /sys/devices/LNXSYSTM:00 only the PNP0C80 directories and their parents.
def in_scope(path: str) -> bool:
    """True for paths the comparison covers (the rest is other subsystems)."""
    if path == PROC_MEMINFO:
        return True
    if path.startswith("/proc"):
        return False  # zoneinfo, iomem, buddyinfo: compared through meminfo only
    for root in (SYS_MEMORY, SYS_NODE, SYS_FIRMWARE_MEMMAP):
        if path == root or path.startswith(root + "/"):
            return True
    if path in ("/sys/bus", "/sys/bus/acpi", ACPI_DEVICES):
        return True
    if path.startswith(ACPI_DEVICES + "/"):
        return fnmatch.fnmatch(path[len(ACPI_DEVICES) + 1 :], ACPI_FOLLOW)
    if path.startswith(f"/sys/devices/{ACPI_ROOT}"):
        parts = path.split("/")
        # the ancestors LNXSYSTM:00, LNXSYBUS:00, PNP0A06:04 and everything in PNP0C80:*
        i = next((k for k, p in enumerate(parts) if fnmatch.fnmatch(p, ACPI_FOLLOW)), None)
        return i is not None or len(parts) <= 6
    return False


@dataclass(frozen=True)
class Rule:
    """How the values of files matching ``pattern`` are compared, and why."""

    pattern: str
    how: Literal["ignore", "keys", "delta"]
    keys: tuple[str, ...] = ()
    why: str = ""


#: THE allowlist: values the model cannot know.  Everything else must be equal.
#:
#: * ``keys``: only the set of counters is compared (same names, same order);
#: * ``delta``: the counters named in ``keys`` are compared by their change since
#:   the previous capture (the absolute values depend on the boot), and by their
#:   value when the file appeared during the scenario (a node that came with a
#:   DIMM); the other counters by name only.
ALLOWLIST: tuple[Rule, ...] = (
    Rule(
        PROC_MEMINFO,
        "delta",
        ("MemTotal",),
        "MemTotal at boot depends on the real kernel's image, reserved and early "
        "allocations (a few MB the model estimates); MemFree, Cached, Slab... on what "
        "user space and the page cache did. A hot-add/online/offline changes MemTotal "
        "exactly by the pages onlined/offlined.",
    ),
    Rule(
        "/sys/devices/system/node/node*/meminfo",
        "delta",
        ("MemTotal",),
        "Per-node version of /proc/meminfo: same reasons.",
    ),
    Rule(
        "/sys/devices/system/node/node*/vmstat",
        "keys",
        (),
        "Event and page counters (nr_free_pages, pgalloc...) of a running kernel: they "
        "count what the real guest did since boot.",
    ),
    Rule(
        "/sys/devices/system/node/node*/numastat",
        "keys",
        (),
        "Allocation hit/miss counters since boot.",
    ),
)


def rule_for(path: str) -> Rule | None:
    for r in ALLOWLIST:
        if fnmatch.fnmatchcase(path, r.pattern):
            return r
    return None


#: Names the model does not model at all (globs on the last path component, and on
#: the directory they are in).  They belong to other subsystems: the comparison
#: would only say that the model lacks them.  Anything under them is dropped too.
NOT_MODELLED: tuple[tuple[str, str, str], ...] = (
    # (parent glob, name glob, why).  Empty: the model now has the node compact,
    # hugepages and cpuN entries and the driver-core subsystem links.
)


def not_modelled(path: str) -> bool:
    """True when ``path`` is (under) a name listed in :data:`NOT_MODELLED`."""
    parts = path.split("/")
    for i in range(2, len(parts)):
        parent, name = "/".join(parts[:i]), parts[i]
        for pglob, nglob, _why in NOT_MODELLED:
            if fnmatch.fnmatchcase(name, nglob) and fnmatch.fnmatchcase(parent, pglob):
                return True
    return False


def normalise(snap: Snapshot) -> Snapshot:
    """Keep what is compared: paths :func:`in_scope` accepts, not :func:`not_modelled`."""
    return {p: e for p, e in snap.items() if in_scope(p) and not not_modelled(p)}


def counters(text: str) -> dict[str, int | None]:
    """``Key:  N kB`` / ``key N`` / ``Node 0 Key: N kB`` lines → {Key: N}."""
    out: dict[str, int | None] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if ":" in line:
            k, _, v = line.partition(":")
            k = k.split()[-1] if k.startswith("Node ") else k
        else:
            k, _, v = line.partition(" ")
        words = v.split()
        try:
            out[k.strip()] = int(words[0]) if words else None
        except ValueError:
            out[k.strip()] = None
    return out


# --- differences -----------------------------------------------------------------------

DiffKind = Literal[
    "missing",  # the real kernel has it, the model does not
    "extra",  # the model has it, the real kernel does not
    "kind",
    "value",
    "link",
    "errno",
    "delta",
    "keys",
    "outcome",
    "output",
    "events",
    "expect",
]


@dataclass(frozen=True)
class Difference:
    """One difference: where, what the real kernel had, what the model had."""

    step: str
    kind: DiffKind
    path: str
    real: str
    model: str

    def line(self) -> str:
        if self.kind == "expect":  # path: the side; real: the expectation; model: the outcome
            return f"[expect] {self.path}: {self.real}, got {self.model}"
        return f"[{self.kind}] {self.path}: real {self.real} | model {self.model}"


def _short(v: str | None, n: int = 120) -> str:
    if v is None:
        return "(none)"
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def _entry_text(e: Entry | None) -> str:
    if e is None:
        return "(absent)"
    if e.kind is Kind.DIR:
        return "dir"
    if e.kind is Kind.LINK:
        return f"-> {e.target}"
    if e.read_errno:
        return errno_label(e.read_errno)
    return _short(e.value)


def compare_trees(
    step: str,
    real: Snapshot,
    model: Snapshot,
    prev_real: Snapshot | None,
    prev_model: Snapshot | None,
) -> tuple[int, list[Difference]]:
    """Compare two normalised snapshots; returns (paths compared, differences)."""
    diffs: list[Difference] = []
    paths = sorted(set(real) | set(model))
    for path in paths:
        r, m = real.get(path), model.get(path)
        if r is None or m is None:
            diffs.append(
                Difference(
                    step, "extra" if r is None else "missing", path, _entry_text(r), _entry_text(m)
                )
            )
            continue
        if r.kind != m.kind:
            diffs.append(Difference(step, "kind", path, r.kind.name, m.kind.name))
            continue
        if r.kind is Kind.LINK:
            if r.target != m.target:
                diffs.append(Difference(step, "link", path, f"-> {r.target}", f"-> {m.target}"))
            continue
        if r.kind is Kind.DIR:
            continue
        if r.read_errno or m.read_errno:
            if r.read_errno != m.read_errno:
                diffs.append(Difference(step, "errno", path, _entry_text(r), _entry_text(m)))
            continue
        if r.mode != m.mode:
            diffs.append(Difference(step, "value", path + " (mode)", oct(r.mode), oct(m.mode)))
        rule = rule_for(path)
        if rule is None:
            if r.value != m.value:
                diffs.append(Difference(step, "value", path, _short(r.value), _short(m.value)))
            continue
        if rule.how == "ignore":
            continue
        rc, mc = counters(r.value or ""), counters(m.value or "")
        if list(rc) != list(mc):
            only_r = [k for k in rc if k not in mc]
            only_m = [k for k in mc if k not in rc]
            diffs.append(
                Difference(
                    step,
                    "keys",
                    path,
                    f"only here: {only_r}" if only_r else "(same names, other order)",
                    f"only here: {only_m}" if only_m else "(same names, other order)",
                )
            )
        if rule.how != "delta":
            continue
        pr = prev_real.get(path) if prev_real is not None else None
        pm = prev_model.get(path) if prev_model is not None else None
        if prev_real is None:
            continue  # the first capture: absolute values differ by design
        prc = counters(pr.value or "") if pr is not None else None
        pmc = counters(pm.value or "") if pm is not None else None
        for key in rule.keys:
            a, b = rc.get(key), mc.get(key)
            if a is None or b is None:
                continue
            if prc is None or pmc is None:
                if a != b:  # the file appeared in this step: absolute values
                    diffs.append(Difference(step, "delta", f"{path}:{key}", str(a), str(b)))
                continue
            pa, pb = prc.get(key), pmc.get(key)
            if pa is None or pb is None:
                continue
            if a - pa != b - pb:
                diffs.append(
                    Difference(
                        step,
                        "delta",
                        f"{path}:{key}",
                        f"{a - pa:+d} (to {a})",
                        f"{b - pb:+d} (to {b})",
                    )
                )
    return len(paths), diffs


# --- running a scenario ------------------------------------------------------------------


@dataclass
class SideResult:
    """What one step gave on one side."""

    outcome: str = ""
    detail: str = ""
    events: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class StepResult:
    """One step of a differential run."""

    name: str
    description: str
    real: SideResult | None
    model: SideResult
    captured: bool = False
    files_compared: int = 0
    differences: list[Difference] = field(default_factory=list)


@dataclass
class ScenarioResult:
    """A whole scenario: its steps and every difference."""

    name: str
    path: str
    description: str
    model_only: bool
    steps: list[StepResult] = field(default_factory=list)
    boot_seconds: float = 0.0
    accel: str = ""
    seconds: float = 0.0
    error: str = ""

    @property
    def differences(self) -> list[Difference]:
        return [d for s in self.steps for d in s.differences]

    @property
    def files_compared(self) -> int:
        return sum(s.files_compared for s in self.steps)

    @property
    def ok(self) -> bool:
        return not self.error and not self.differences


@dataclass
class RecordedStep:
    """The real side of one step, as recorded: outcome, events, output, tree."""

    result: SideResult
    output: CmdResult | None = None
    snapshot: Snapshot | None = None


@dataclass
class Recording:
    """A real run of a scenario, kept as a fixture (``tests/data/real/scenarios/``).

    :func:`run_scenario` can replay it instead of booting QEMU, so the model is
    compared with the real kernel without QEMU.  Snapshots are normalised.
    """

    scenario: str
    meta: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, RecordedStep] = field(default_factory=dict)

    def save(self, path: str) -> None:
        doc: dict[str, Any] = {"scenario": self.scenario, "meta": self.meta, "steps": {}}
        for name, st in self.steps.items():
            d: dict[str, Any] = {"result": asdict(st.result)}
            if st.output is not None:
                d["output"] = asdict(st.output)
            if st.snapshot is not None:
                d["snapshot"] = {p: st.snapshot[p].to_json() for p in sorted(st.snapshot)}
            doc["steps"][name] = d
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with gzip.open(path, "wt", encoding="utf-8") as f:
            json.dump(doc, f, indent=0, sort_keys=True)

    @staticmethod
    def load(path: str) -> Recording:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            doc = json.load(f)
        rec = Recording(str(doc["scenario"]), dict(doc.get("meta") or {}))
        for name, d in doc["steps"].items():
            out = d.get("output")
            snap = d.get("snapshot")
            rec.steps[name] = RecordedStep(
                SideResult(**d["result"]),
                CmdResult(**out) if out is not None else None,
                {p: Entry.from_json(e) for p, e in snap.items()} if snap is not None else None,
            )
        return rec


def recording_path(sc: Scenario, directory: str) -> str:
    """Where the recording of ``sc`` lives in ``directory``."""
    return os.path.join(directory, f"{sc.name}.json.gz")


def _check_expect(step: Step, side: str, outcome: str, res: StepResult) -> None:
    if step.expect and outcome not in step.expect:
        res.differences.append(
            Difference(step.name, "expect", side, f"expected {'|'.join(step.expect)}", outcome)
        )


def run_step(step: Step, d: Driver, outputs: dict[str, CmdResult]) -> SideResult:
    """Run one step on one side; ``outputs`` keeps command results by step name."""
    t0 = time.monotonic()
    out = SideResult()
    a = step.action
    if a == "hot_add":
        assert step.hot_add is not None
        out.outcome = d.hot_add(step.hot_add, step.timeout)
    elif a == "device_del":
        out.outcome = "removed" if d.device_del(step.target, step.timeout) else "kept"
    elif a == "eject":
        err = d.write(f"{ACPI_DEVICES}/{step.acpi_device}/eject", "1")
        if err:
            out.outcome, out.detail = "kept", f"eject write: {errno_label(err)}"
        else:
            out.outcome = "removed" if d.wait_removed(step.target, step.timeout) else "kept"
    elif a == "write":
        out.outcome = errno_label(d.write(step.target, step.value))
    elif a == "read":
        value, err = d.read(step.target)
        out.outcome = errno_label(err) if err else (value or "").rstrip("\n")
    elif a in ("memhp", "lsmem"):
        r = d.memhp(step.args, step.timeout) if a == "memhp" else d.lsmem(step.args)
        outputs[step.name] = r
        out.outcome = f"rc={r.rc}"
        out.detail = r.stdout + (("\n[stderr]\n" + r.stderr) if r.stderr else "")
    elif a == "wait":
        if step.target:
            out.outcome = "removed" if d.wait_removed(step.target, step.timeout) else "kept"
        else:
            d.sleep(step.seconds)
            out.outcome = "ok"
    else:
        out.outcome = "ok"
    out.events = [str(e) for e in d.take_events()]
    out.seconds = round(time.monotonic() - t0, 3)
    return out


def run_scenario(
    sc: Scenario,
    model: Driver,
    real: Driver | None = None,
    log: Callable[[str], None] | None = None,
    replay: Recording | None = None,
    record: Recording | None = None,
) -> ScenarioResult:
    """Run ``sc`` on ``real`` and ``model`` and compare.

    With ``replay`` the real side is a recording instead of a driver; with neither,
    only the model runs (its expectations are still checked).  ``record`` collects
    the real side's results and trees.
    """
    t0 = time.monotonic()
    has_real = real is not None or replay is not None
    res = ScenarioResult(sc.name, sc.path, sc.description, not has_real)
    outputs: dict[str, dict[str, CmdResult]] = {"real": {}, "model": {}}
    prev_r: Snapshot | None = None
    prev_m: Snapshot | None = None

    def real_step(step: Step) -> SideResult | None:
        if replay is not None:
            rs = replay.steps.get(step.name)
            if rs is None:
                raise KeyError(f"{sc.name}: the recording has no step {step.name!r}")
            if rs.output is not None:
                outputs["real"][step.name] = rs.output
            return rs.result
        if real is None:
            return None
        r = run_step(step, real, outputs["real"])
        if record is not None:
            record.steps[step.name] = RecordedStep(r, outputs["real"].get(step.name))
        return r

    def real_capture(name: str) -> Snapshot | None:
        if replay is not None:
            snap = replay.steps[name].snapshot
            if snap is None:
                raise KeyError(f"{sc.name}: the recording has no tree after {name!r}")
            return snap
        if real is None:
            return None
        snap = normalise(real.capture())
        if record is not None:
            record.steps[name].snapshot = snap
        return snap

    def capture_both(sr: StepResult) -> None:
        nonlocal prev_r, prev_m
        snap_m = normalise(model.capture())
        sr.captured = True
        snap_r = real_capture(sr.name)
        if snap_r is None:
            sr.files_compared = len(snap_m)
            prev_m = snap_m
            return
        n, diffs = compare_trees(sr.name, snap_r, snap_m, prev_r, prev_m)
        sr.files_compared = n
        sr.differences += diffs
        prev_r, prev_m = snap_r, snap_m

    boot = StepResult("boot", "the machine as booted", None, SideResult("ok"))
    if replay is not None:
        boot.real = replay.steps["boot"].result
    elif real is not None:
        boot.real = SideResult("ok", events=[str(e) for e in real.take_events()])
        if record is not None:
            record.steps["boot"] = RecordedStep(boot.real)
    boot.model.events = [str(e) for e in model.take_events()]
    capture_both(boot)
    res.steps.append(boot)
    if log:
        log(f"  boot: {boot.files_compared} paths, {len(boot.differences)} differences")
    for step in sc.steps:
        sr = StepResult(step.name, step.describe(), None, SideResult())
        sr.real = real_step(step)
        sr.model = run_step(step, model, outputs["model"])
        for side, r in (("real", sr.real), ("model", sr.model)):
            if r is None:
                continue
            if step.action in ("memhp", "lsmem"):
                rc = int(r.outcome[3:])
                if step.expect_rc and rc not in step.expect_rc:
                    sr.differences.append(
                        Difference(step.name, "expect", side,
                                   f"expected rc {step.expect_rc}", f"{r.outcome}: {r.detail}")
                    )  # fmt: skip
                if step.same_as is not None:
                    mine = outputs[side][step.name].stdout
                    other = outputs[side][step.same_as].stdout
                    if mine != other:
                        sr.differences.append(
                            Difference(step.name, "output", f"{side}: same as {step.same_as}",
                                       _short(other, 400), _short(mine, 400))
                        )  # fmt: skip
            elif step.action == "read" and step.expect:
                ok = r.outcome in step.expect
                if not ok:
                    sr.differences.append(
                        Difference(step.name, "expect", side,
                                   f"expected {'|'.join(step.expect)}", r.outcome)
                    )  # fmt: skip
            else:
                _check_expect(step, side, r.outcome, sr)
        if sr.real is not None:
            if sr.real.outcome != sr.model.outcome:
                sr.differences.append(
                    Difference(step.name, "outcome", step.describe(),
                               _short(sr.real.outcome, 400), _short(sr.model.outcome, 400))
                )  # fmt: skip
            if step.action in ("memhp", "lsmem") and step.compare_output:
                ro, mo = outputs["real"][step.name], outputs["model"][step.name]
                if ro.stdout != mo.stdout:
                    sr.differences.append(
                        Difference(step.name, "output", "stdout",
                                   _short(ro.stdout, 400), _short(mo.stdout, 400))
                    )  # fmt: skip
            if sr.real.events != sr.model.events:
                sr.differences.append(
                    Difference(step.name, "events", "QMP events",
                               "; ".join(sr.real.events) or "(none)",
                               "; ".join(sr.model.events) or "(none)")
                )  # fmt: skip
        if step.capture:
            capture_both(sr)
        res.steps.append(sr)
        if log:
            outc = (
                sr.model.outcome if sr.real is None else f"{sr.real.outcome} / {sr.model.outcome}"
            )
            log(
                f"  {step.name}: {_short(outc, 60)}"
                + (f", {sr.files_compared} paths" if sr.captured else "")
                + f", {len(sr.differences)} differences"
            )
            for dd in sr.differences:
                log(f"    {dd.line()}")
    res.seconds = round(time.monotonic() - t0, 2)
    return res


@contextlib.contextmanager
def real_driver(sc: Scenario) -> Iterator[QMPDriver]:
    """Boot the scenario's machine under QEMU; always stops QEMU."""
    from memhp.bench.vm import GuestVM

    vm = GuestVM(sc.vm_config())
    try:
        vm.start()
        yield QMPDriver.for_vm(vm)
    finally:
        vm.stop()


def diff_scenario(
    sc: Scenario,
    model_only: bool = False,
    log: Callable[[str], None] | None = None,
    replay: Recording | None = None,
    record_dir: str | None = None,
) -> ScenarioResult:
    """Run one scenario on the model and on QEMU (or a ``replay``), and compare.

    ``model_only``: the model alone.  ``record_dir``: save the real run there
    (:func:`recording_path`) for later replays.
    """
    t0 = time.monotonic()
    model = ModelDriver.for_scenario(sc)
    if model_only or replay is not None:
        res = run_scenario(sc, model, None, log, replay=replay)
        if replay is not None:
            res.accel = f"replay of {replay.meta.get('accel', '?')}"
        res.seconds = round(time.monotonic() - t0, 2)
        return res
    try:
        with real_driver(sc) as real:
            vm = real.vm
            assert vm is not None and vm.boot is not None
            if log:
                log(f"  booted in {vm.boot.seconds:.1f}s ({vm.boot.accel})")
            rec = Recording(sc.name) if record_dir else None
            res = run_scenario(sc, model, real, log, record=rec)
            res.boot_seconds = round(vm.boot.seconds, 2)
            res.accel = vm.boot.accel
            if rec is not None and record_dir is not None:
                rec.meta = {
                    "accel": vm.boot.accel,
                    "kernel": vm.kernel.release if vm.kernel else "",
                    "cmdline": vm.config.cmdline(),
                }
                rec.save(recording_path(sc, record_dir))
    except Exception as e:  # a guest that did not boot or hung: the scenario fails
        res = ScenarioResult(sc.name, sc.path, sc.description, False)
        res.error = f"{type(e).__name__}: {e}"
    res.seconds = round(time.monotonic() - t0, 2)
    return res


# --- reports -----------------------------------------------------------------------------


def report_json(results: Sequence[ScenarioResult]) -> str:
    """The report as JSON (scenarios, steps, outcomes, differences, the allowlist)."""
    doc = {
        "allowlist": [asdict(r) for r in ALLOWLIST],
        "scenarios": [
            {
                **asdict(r),
                "ok": r.ok,
                "files_compared": r.files_compared,
                "difference_count": len(r.differences),
            }
            for r in results
        ],
    }
    return json.dumps(doc, indent=1) + "\n"


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", "⏎")[:160]


def report_markdown(results: Sequence[ScenarioResult]) -> str:
    """The report as Markdown: a summary table, then per scenario its steps."""
    lines = ["# memhp bench diff", ""]
    lines += ["| scenario | mode | steps | files compared | differences | seconds |"]
    lines += ["|---|---|---|---|---|---|"]
    for r in results:
        mode = "model only" if r.model_only else f"QEMU ({r.accel or '?'}) vs model"
        status = "ERROR" if r.error else str(len(r.differences))
        lines.append(
            f"| {r.name} | {mode} | {len(r.steps)} | {r.files_compared} | {status} | {r.seconds} |"
        )
    lines.append("")
    for r in results:
        lines += [f"## {r.name}", ""]
        if r.description:
            lines += [r.description, ""]
        lines += [f"`{r.path}`", ""]
        if r.error:
            lines += [f"**Error:** {r.error}", ""]
            continue
        lines += ["| step | action | real | model | files | differences |"]
        lines += ["|---|---|---|---|---|---|"]
        for s in r.steps:
            real = _md_cell(s.real.outcome) if s.real else "—"
            lines.append(
                f"| {s.name} | {_md_cell(s.description)} | {real} | {_md_cell(s.model.outcome)} "
                f"| {s.files_compared if s.captured else '—'} | {len(s.differences)} |"
            )
        lines.append("")
        diffs = r.differences
        if diffs:
            lines += ["Differences:", ""]
            for dd in diffs:
                lines.append(f"- `{dd.step}` {_md_cell(dd.line())}")
            lines.append("")
        else:
            lines += ["No differences outside the allowlist.", ""]
    lines += ["## Allowlist", ""]
    for rule in ALLOWLIST:
        keys = f" ({', '.join(rule.keys)} by change)" if rule.keys else ""
        lines.append(f"- `{rule.pattern}`: {rule.how}{keys}. {rule.why}")
    lines.append("")
    return "\n".join(lines)


def write_report(results: Sequence[ScenarioResult], path: str) -> None:
    """Markdown, or JSON when ``path`` ends in ``.json``."""
    text = report_json(results) if path.endswith(".json") else report_markdown(results)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


__all__ = [
    "ALLOWLIST",
    "CmdResult",
    "Difference",
    "Driver",
    "ModelDriver",
    "QMPDriver",
    "ScenarioResult",
    "compare_trees",
    "diff_scenario",
    "errno_value",
    "normalise",
    "run_scenario",
    "write_report",
]
