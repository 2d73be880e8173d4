"""Record real Linux sysfs trees, step by step, as test fixtures.

``python -m memhp.bench.record OUTDIR [SCENARIO...]`` boots Debian's Linux 6.1 under
QEMU for each scenario, runs its steps (QMP hot-add / device_del, sysfs writes,
ACPI eject) and after each step saves:

* ``OUTDIR/<scenario>/<step>.json``: a :class:`memhp.abi.tree.Snapshot` (see
  :func:`memhp.abi.tree.save_json`) of ``/sys/devices/system/memory``,
  ``/sys/devices/system/node``, ``/sys/firmware/memmap``, ``/sys/bus/acpi/devices``
  (links), the ``PNP0C80`` device directories those links point to (without
  ``power/``), and ``/proc/meminfo``, ``/proc/zoneinfo``, ``/proc/iomem``,
  ``/proc/buddyinfo`` as files; every value is complete, newlines included;
* ``OUTDIR/<scenario>/scenario.json``: the machine (VM config, QEMU command line,
  kernel release), then per step its actions in order (QMP commands with their
  replies, QMP events, sysfs writes with the errno they gave, reads), the new
  kernel log lines, ``/proc/meminfo`` parsed, and a summary of
  ``/proc/kpageflags`` over every DIMM range of the scenario (count of pages per
  flag and per distinct flag word).

The default scenarios reproduce ``shared/reference/linux-6.1/README.md`` and extend
it; the step names of ``pc-dimm-6.1-reference`` are those of the reference trace.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from memhp.abi.fs import Kind
from memhp.abi.kpageflags import KPF_NAMES
from memhp.abi.paths import (
    PROC_BUDDYINFO,
    PROC_IOMEM,
    PROC_MEMINFO,
    PROC_ZONEINFO,
    SYS_ACPI_DEVICES,
    SYS_MEMORY,
)
from memhp.abi.tree import MEMORY_ROOTS, Entry, Snapshot, save_json
from memhp.bench.qmp import (
    OST_SOURCE_INSERT,
    MemoryDevice,
    QMPError,
    QmpEvent,
)
from memhp.bench.vm import GuestVM, NodeConfig, VMConfig, qemu_args

PROC_FILES: tuple[str, ...] = (PROC_MEMINFO, PROC_ZONEINFO, PROC_IOMEM, PROC_BUDDYINFO)
MEM = SYS_MEMORY
ACPI = SYS_ACPI_DEVICES

PAGE = 4096


def summarize_kpageflags(counts: dict[int, int]) -> dict[str, Any]:
    """Per-flag page counts from counts per distinct 64-bit flag word."""
    by_flag: dict[str, int] = {}
    for word, n in counts.items():
        for bit in range(64):
            if word >> bit & 1:
                name = KPF_NAMES.get(bit, f"BIT{bit}")
                by_flag[name] = by_flag.get(name, 0) + n
    return {
        "pages": sum(counts.values()),
        "by_flag": dict(sorted(by_flag.items())),
        "by_word": {f"0x{w:x}": n for w, n in sorted(counts.items())},
    }


@dataclass
class StepRecord:
    """What happened in one step and what the machine looked like after it."""

    name: str
    snapshot: str
    actions: list[dict[str, Any]] = field(default_factory=list)
    meminfo: dict[str, str] = field(default_factory=dict)
    kpageflags: dict[str, Any] = field(default_factory=dict)
    dmesg: list[str] = field(default_factory=list)
    capture_seconds: float = 0.0


class Recorder:
    """Run actions on a :class:`GuestVM` and save a snapshot per step."""

    def __init__(self, vm: GuestVM, outdir: Path, scenario: str, description: str) -> None:
        self.vm = vm
        self.dir = outdir / scenario
        self.dir.mkdir(parents=True, exist_ok=True)
        self.scenario = scenario
        self.description = description
        self.steps: list[StepRecord] = []
        self.actions: list[dict[str, Any]] = []
        self.ranges: dict[str, tuple[int, int]] = {}  # dimm id -> (addr, size)
        self._qmp_seen = 0
        self.ranges_removed: set[str] = set()

    # --- actions ---------------------------------------------------------------

    def _sync_qmp(self) -> None:
        log = self.vm.platform.log
        for entry in log[self._qmp_seen :]:
            if "event" in entry:
                self.actions.append({"op": "qmp-event", **entry})
            else:
                self.actions.append({"op": "qmp", **entry})
        self._qmp_seen = len(log)

    def write(self, path: str, data: str) -> int:
        """Write ``data`` to a guest file; record and return the errno (0 on success)."""
        t0 = time.monotonic()
        err = self.vm.fs.write_status(path, data)
        self.actions.append(
            {"op": "write", "path": path, "data": data, "errno": err,
             "seconds": round(time.monotonic() - t0, 4)}
        )  # fmt: skip
        return err

    def read(self, path: str) -> str | None:
        try:
            value: str | None = self.vm.fs.read_text(path)
            err = 0
        except OSError as e:
            value, err = None, e.errno or 0
        self.actions.append({"op": "read", "path": path, "value": value, "errno": err})
        return value

    def hot_add(self, size: int, node: int, id: str, timeout: float = 60.0) -> MemoryDevice:
        """``object-add`` + ``device_add`` a pc-dimm, wait for the guest's _OST."""
        t0 = time.monotonic()
        dev = self.vm.platform.hot_add_dimm(size, node, id)
        self.ranges[id] = (dev.addr, dev.size)
        self._wait_ost(lambda e: _ost(e, OST_SOURCE_INSERT) and e.device == id, timeout)
        self._sync_qmp()
        self.actions.append({"op": "hot-add-done", "id": id, "seconds": _dt(t0)})
        return dev

    def device_del(self, id: str, timeout: float = 60.0) -> bool:
        """QMP ``device_del`` and wait for the removal; True when the DIMM went away."""
        t0 = time.monotonic()
        self.vm.platform.device_del(id)
        gone = self._wait_removed(id, timeout)
        self._sync_qmp()
        self.actions.append(
            {"op": "device_del-done", "id": id, "removed": gone, "seconds": _dt(t0)}
        )
        return gone

    def eject(self, acpi_dev: str, id: str, timeout: float = 60.0) -> bool:
        """``echo 1 > /sys/bus/acpi/devices/<acpi_dev>/eject`` and wait for the removal."""
        t0 = time.monotonic()
        self.write(f"{ACPI}/{acpi_dev}/eject", "1\n")
        gone = self._wait_removed(id, timeout)
        self._sync_qmp()
        self.actions.append({"op": "eject-done", "id": id, "removed": gone, "seconds": _dt(t0)})
        return gone

    def _wait_ost(self, match: Callable[[QmpEvent], bool], timeout: float) -> bool:
        try:
            self.vm.platform.wait_event("ACPI_DEVICE_OST", timeout, match)
        except QMPError:
            return False
        return True

    def _wait_removed(self, id: str, timeout: float) -> bool:
        """True when the DIMM went away, False when the guest refused or never answered."""
        p = self.vm.platform
        try:
            gone = p.wait_removal(id, timeout)
        except QMPError as e:
            self.note(str(e))
            return False
        if gone:
            self.ranges_removed.add(id)
            with contextlib.suppress(QMPError):
                p.release_backend(id)
        return gone

    def note(self, text: str) -> None:
        self.actions.append({"op": "note", "text": text})

    # --- captures --------------------------------------------------------------

    def capture(self, step: str) -> Snapshot:
        """Save the snapshot and the step record for ``step``."""
        time.sleep(0.2)  # let deferred kernel work (uevents, node onlining) finish
        self._sync_qmp()
        t0 = time.monotonic()
        snap = self.vm.fs.capture(MEMORY_ROOTS)
        for path in PROC_FILES:
            try:
                snap[path] = Entry(Kind.FILE, value=self.vm.fs.read_text(path), mode=0o444)
            except OSError as e:
                snap[path] = Entry(Kind.FILE, read_errno=e.errno or 0, mode=0o444)
        cap_s = time.monotonic() - t0
        rec = StepRecord(step, f"{step}.json", self.actions, capture_seconds=round(cap_s, 3))
        rec.meminfo = _parse_meminfo(snap["/proc/meminfo"].value or "")
        rec.kpageflags = {
            id: {"addr": f"0x{a:x}", "size": s, **self._kpageflags(a, s)}
            for id, (a, s) in self.ranges.items()
        }
        rec.dmesg = self.vm.run("dmesg -c").splitlines()
        save_json(snap, str(self.dir / rec.snapshot))
        self.steps.append(rec)
        self.actions = []
        self._save_index()
        print(f"  {self.scenario}/{step}: {len(snap)} paths ({cap_s:.2f}s)", flush=True)
        return snap

    def _kpageflags(self, addr: int, size: int) -> dict[str, Any]:
        off, length = addr // PAGE * 8, size // PAGE * 8
        r = self.vm.fs.run(
            f"od -An -v -tx8 -w8 -j {off} -N {length} /proc/kpageflags | sort | uniq -c", 120
        )
        counts: dict[int, int] = {}
        for line in r.text.splitlines():
            parts = line.split()
            if len(parts) == 2:
                counts[int(parts[1], 16)] = int(parts[0])
        out = summarize_kpageflags(counts)
        if r.rc != 0 or not counts:
            out["error"] = r.stderr.decode(errors="replace").strip()
        return out

    def _save_index(self) -> None:
        cfg = self.vm.config
        kernel = self.vm.kernel
        assert kernel is not None
        boot = self.vm.boot
        index = {
            "scenario": self.scenario,
            "description": self.description,
            "kernel": kernel.release,
            "uname": self.vm.run("uname -r").strip(),
            "qemu": _qemu_version(),
            "accel": boot.accel if boot else None,
            "boot_seconds": round(boot.seconds, 2) if boot else None,
            "cmdline": cfg.cmdline(),
            "config": asdict(cfg),
            "qemu_args": _portable_args(cfg, self.vm),
            "steps": [asdict(s) for s in self.steps],
        }
        with open(self.dir / "scenario.json", "w", encoding="utf-8") as f:
            json.dump(index, f, indent=1, sort_keys=False)
            f.write("\n")


def _ost(e: QmpEvent, source: int) -> bool:
    info = e.data.get("info", {})
    return bool(info.get("source") == source)


def _dt(t0: float) -> float:
    return round(time.monotonic() - t0, 4)


def _parse_meminfo(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k:
            out[k.strip()] = v.strip()
    return out


def _qemu_version() -> str:
    from memhp.bench.initramfs import find_qemu

    r = subprocess.run([str(find_qemu()), "--version"], capture_output=True, text=True, check=False)
    return r.stdout.splitlines()[0] if r.stdout else ""


def _portable_args(cfg: VMConfig, vm: GuestVM) -> list[str]:
    assert vm.kernel is not None
    args = qemu_args(
        cfg, vm.kernel, Path("INITRD"), Path("WORKDIR"), vm.boot.accel if vm.boot else "tcg"
    )
    args[0] = "qemu-system-x86_64"
    return [a.replace(str(vm.kernel.vmlinuz), f"vmlinuz-{vm.kernel.release}") for a in args]


# --- scenarios ----------------------------------------------------------------------

G, M = 1 << 30, 1 << 20


def scenario_reference(r: Recorder) -> None:
    """The reference trace of shared/reference/linux-6.1, with full values."""
    r.capture("boot")
    r.hot_add(512 * M, 1, "dimm1")
    r.capture("after-hotadd-dimm1-node1")
    r.write(f"{MEM}/memory32/state", "online_kernel\n")
    r.write(f"{MEM}/memory33/state", "online_movable\n")
    r.write(f"{MEM}/memory33/state", "online\n")  # EINVAL: already online
    r.write(f"{MEM}/memory33/state", "bogus\n")  # EINVAL
    r.read(f"{MEM}/memory33/valid_zones")
    for i, sfx in enumerate(("", "1", "2", "3")):
        r.read(f"{MEM}/memory{32 + i}/valid_zones")
        r.write(f"{ACPI}/PNP0C80:00/physical_node{sfx}/state", "online_movable\n")
    r.capture("after-online")
    r.write(f"{MEM}/memory33/state", "offline\n")
    r.write(f"{MEM}/memory33/state", "offline\n")  # EINVAL: already offline
    r.write(f"{MEM}/memory32/online", "0\n")
    r.write(f"{MEM}/memory0/state", "offline\n")  # EINVAL: spans zones
    r.write(f"{MEM}/memory1/state", "offline\n")
    r.write(f"{MEM}/memory1/online", "1\n")
    r.capture("after-offline")
    r.eject("PNP0C80:00", "dimm1")
    r.capture("after-eject-dimm1")
    r.hot_add(1 * G, 0, "dimm2")
    r.capture("after-hotadd-dimm2-node0")
    r.device_del("dimm2")
    r.capture("after-device_del-dimm2")


def scenario_online_movable(r: Recorder) -> None:
    """memhp_default_state=online_movable: auto-online, auto_online_blocks modes."""
    r.capture("boot")
    r.hot_add(512 * M, 1, "dimm1")
    r.capture("after-hotadd-dimm1-node1")
    for b in range(32, 36):
        r.read(f"{MEM}/memory{b}/valid_zones")
    r.write(f"{MEM}/memory34/state", "offline\n")
    r.write(f"{MEM}/memory34/state", "online_kernel\n")  # EINVAL: movable in the way
    r.write(f"{MEM}/memory35/state", "offline\n")
    r.read(f"{MEM}/memory35/valid_zones")
    r.write(f"{MEM}/memory35/state", "online_kernel\n")
    r.write(f"{MEM}/memory34/state", "online\n")
    r.capture("after-offline-online")
    r.eject("PNP0C80:00", "dimm1")  # blocks online: the kernel offlines them
    r.capture("after-eject-dimm1")
    r.write(f"{MEM}/auto_online_blocks", "offline\n")
    r.hot_add(512 * M, 1, "dimm2")
    r.capture("after-hotadd-dimm2-node1-auto-offline")
    r.write(f"{MEM}/auto_online_blocks", "online_kernel\n")
    r.hot_add(1 * G, 0, "dimm3")
    r.capture("after-hotadd-dimm3-node0-auto-online_kernel")
    r.write(f"{MEM}/auto_online_blocks", "online\n")
    r.write(f"{MEM}/auto_online_blocks", "bogus\n")  # EINVAL
    r.device_del("dimm3")
    r.capture("after-device_del-dimm3")
    r.device_del("dimm2")
    r.capture("after-device_del-dimm2")


def scenario_movable_node(r: Recorder) -> None:
    """movable_node, memhp_default_state=online: two DIMMs on two memory-less nodes."""
    r.capture("boot")
    r.hot_add(512 * M, 1, "dimm1")
    r.capture("after-hotadd-dimm1-node1")
    r.hot_add(1 * G, 2, "dimm2")
    r.capture("after-hotadd-dimm2-node2")
    r.write(f"{MEM}/memory33/state", "offline\n")
    r.write(f"{MEM}/memory33/state", "online_kernel\n")
    r.write(f"{MEM}/memory40/state", "offline\n")
    r.write(f"{MEM}/memory40/state", "online_movable\n")
    r.capture("after-offline-online")
    r.device_del("dimm1")  # memory33 is in ZONE_NORMAL: may refuse (kernel allocations)
    r.capture("after-device_del-dimm1")
    r.device_del("dimm2")
    r.capture("after-device_del-dimm2")
    r.hot_add(512 * M, 1, "dimm3")  # re-add: node1 back, new firmware memmap index
    r.capture("after-readd-dimm3-node1")
    r.device_del("dimm3")
    r.capture("after-device_del-dimm3")


def scenario_memmap_on_memory(r: Recorder) -> None:
    """memory_hotplug.memmap_on_memory=1: the memmap lives in the hot-added range."""
    r.capture("boot")
    r.hot_add(1 * G, 1, "dimm1")
    r.capture("after-hotadd-dimm1-node1")
    r.write(f"{MEM}/memory32/state", "online_movable\n")
    r.write(f"{MEM}/memory33/state", "online_kernel\n")
    r.write(f"{MEM}/memory34/state", "online\n")
    r.capture("after-online")
    r.write(f"{MEM}/memory33/state", "offline\n")
    r.capture("after-offline")
    r.device_del("dimm1")
    r.capture("after-device_del-dimm1")


@dataclass(frozen=True)
class Scenario:
    """A recorded scenario: a machine and a script of steps."""

    name: str
    config: VMConfig
    run: Callable[[Recorder], None]


REF_MACHINE = (NodeConfig(cpus=2, mem=1 * G), NodeConfig())

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "pc-dimm-6.1-reference",
            VMConfig(nodes=REF_MACHINE, slots=4, maxmem=8 * G, memhp_default_state="offline"),
            scenario_reference,
        ),
        Scenario(
            "pc-dimm-6.1-online-movable",
            VMConfig(
                nodes=REF_MACHINE, slots=4, maxmem=8 * G, memhp_default_state="online_movable"
            ),
            scenario_online_movable,
        ),
        Scenario(
            "pc-dimm-6.1-movable-node",
            VMConfig(
                nodes=(NodeConfig(cpus=2, mem=1 * G), NodeConfig(), NodeConfig()),
                slots=4,
                maxmem=8 * G,
                memhp_default_state="online",
                movable_node=True,
            ),
            scenario_movable_node,
        ),
        Scenario(
            "pc-dimm-6.1-memmap-on-memory",
            VMConfig(
                nodes=REF_MACHINE,
                slots=4,
                maxmem=8 * G,
                memhp_default_state="offline",
                memmap_on_memory=True,
            ),
            scenario_memmap_on_memory,
        ),
    )
}


def record(name: str, outdir: Path) -> Path:
    """Boot the scenario's machine, run it, save fixtures; returns the scenario dir."""
    sc = SCENARIOS[name]
    print(f"recording {name}", flush=True)
    with GuestVM(sc.config) as vm:
        assert vm.boot is not None
        print(f"  booted in {vm.boot.seconds:.1f}s ({vm.boot.accel})", flush=True)
        rec = Recorder(vm, outdir, name, (sc.run.__doc__ or "").strip())
        sc.run(rec)
        return rec.dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m memhp.bench.record", description=__doc__.split("\n")[0]
    )
    ap.add_argument("outdir", type=Path, help="e.g. tests/data/real")
    ap.add_argument("scenarios", nargs="*", help=f"default: all of {', '.join(SCENARIOS)}")
    args = ap.parse_args(argv)
    names = args.scenarios or list(SCENARIOS)
    for n in names:
        if n not in SCENARIOS:
            ap.error(f"unknown scenario {n}")
    for n in names:
        record(n, args.outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
