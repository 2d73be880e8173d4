"""Comparing two trees: what is compared, the normalisation rules, the known gaps.

The trees of both sides are normalised (:func:`normalise`: only the memory hotplug
subsystem, :func:`in_scope`) and compared
(:func:`compare_trees`): missing and extra files and links, different values, link
targets, read errnos.  The few values the model cannot know are listed in
:data:`ALLOWLIST`, each with its reason; some of them are compared by their change
between steps.  Model bugs found by the bench are not listed here but in the tests
(``tests/bench/known_model_gaps.py``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Literal

from memhp.abi.acpi import ACPI_ROOT
from memhp.abi.fs import Kind
from memhp.abi.iomem import KERNEL_CODE, KERNEL_IMAGE_NAMES, is_memory_resource, parse_line
from memhp.abi.paths import (
    PROC_IOMEM,
    PROC_MEMINFO,
    SYS_FIRMWARE_MEMMAP,
    SYS_MEMORY,
    SYS_NODE,
    SYS_PCI_ROOT,
    SYS_VIRTIO_DEVICES,
    SYS_VIRTIO_DRIVERS,
)
from memhp.abi.tree import Entry, Snapshot
from memhp.abi.virtio import VIRTIO_MEM_DRIVER
from memhp.bench.drivers import ACPI_DEVICES, ACPI_FOLLOW, errno_label

# --- normalisation and the allowlist -----------------------------------------------------

VIRTIO_BUS = SYS_VIRTIO_DEVICES.rsplit("/", 1)[0]


#: Captured paths outside the memory hotplug subsystem that only the real side has.
#: Under /sys/bus/acpi/devices only the PNP0C80 (ACPI memory device) links count.
#: Under /sys/devices/LNXSYSTM:00 only the PNP0C80 directories and their parents.
def in_scope(path: str) -> bool:
    """True for paths the comparison covers (the rest is other subsystems)."""
    if path in (PROC_MEMINFO, PROC_IOMEM):
        return True  # /proc/iomem through iomem_memory_lines()
    if path.startswith("/proc"):
        return False  # zoneinfo, buddyinfo: compared through meminfo only
    for root in (SYS_MEMORY, SYS_NODE, SYS_FIRMWARE_MEMMAP):
        if path == root or path.startswith(root + "/"):
            return True
    if path in ("/sys/bus", "/sys/bus/acpi", ACPI_DEVICES):
        return True
    if path.startswith(ACPI_DEVICES + "/"):
        return fnmatch.fnmatch(path[len(ACPI_DEVICES) + 1 :], ACPI_FOLLOW)
    if path.startswith(VIRTIO_BUS + "/"):
        # the virtio devices and the virtio_mem driver's bound devices (its bind,
        # unbind, uevent files and module link are the driver core's, not modelled)
        return fnmatch.fnmatch(path, f"{SYS_VIRTIO_DEVICES}/*") or fnmatch.fnmatch(
            path, f"{SYS_VIRTIO_DRIVERS}/{VIRTIO_MEM_DRIVER}/virtio*"
        )
    if path.startswith(SYS_PCI_ROOT + "/"):
        # the virtioN directories under their virtio-pci functions (followed links)
        parts = path.split("/")
        return len(parts) > 5 and parts[5].startswith("virtio")
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


def iomem_memory_lines(text: str) -> str:
    """/proc/iomem as the comparison sees it: the memory lines only.

    Kept: RAM, firmware-reserved ranges and other e820 types, "RAM buffer", the
    kernel image, hot-added "System RAM", the virtio-mem regions "virtioN" and
    their "System RAM (virtio_mem)" (:func:`memhp.abi.iomem.is_memory_resource`),
    each with its indentation (its nesting) as printed.  Dropped: what the model
    does not model (PCI windows and BARs, ROMs, IOAPIC, HPET, APIC: QEMU's pc
    machine fixes them, and 6.12 prints no "Local APIC").  The kernel image lines
    are given as offsets from "Kernel code" (``+0-+e01d31 : Kernel code``): without
    ``nokaslr`` the real image sits at a random address the model cannot know;
    the layout inside the image (a fact of the kernel build, the profile's
    ``kernel_image_layout``) is compared.
    """
    lines = [p for p in map(parse_line, text.splitlines()) if p is not None]
    base = next((p.start for p in lines if p.name == KERNEL_CODE), 0)
    out: list[str] = []
    for p in lines:
        if not is_memory_resource(p.name):
            continue
        if p.name in KERNEL_IMAGE_NAMES:
            span = f"+{p.start - base:x}-+{p.end - base:x}"
        else:
            span = f"{p.start:08x}-{p.end:08x}"
        out.append(f"{'  ' * p.depth}{span} : {p.name}\n")
    return "".join(out)


#: The driver of the bench's own virtio devices: the 9p shares a guest running memhp
#: or a task mounts (memhp.bench.initramfs NINEP_MODULES), not part of any machine.
BENCH_SHARE_DRIVER = "9pnet_virtio"


def bench_share_devices(snap: Snapshot) -> frozenset[str]:
    """The virtioN devices bound to :data:`BENCH_SHARE_DRIVER` (the bench's 9p shares)."""
    out = set()
    for p, e in snap.items():
        if p.startswith(SYS_PCI_ROOT + "/") and p.endswith("/driver") and e.target is not None:
            parts = p.split("/")
            if len(parts) == 7 and e.target.rsplit("/", 1)[-1] == BENCH_SHARE_DRIVER:
                out.add(parts[5])
    return frozenset(out)


def normalise(snap: Snapshot) -> Snapshot:
    """Keep what is compared: the paths :func:`in_scope` accepts (less the bench's
    9p share devices, :func:`bench_share_devices`), /proc/iomem through
    :func:`iomem_memory_lines`."""
    shares = bench_share_devices(snap)
    out = {
        p: e
        for p, e in snap.items()
        if in_scope(p) and not (shares and shares.intersection(p.split("/")))
    }
    io = out.get(PROC_IOMEM)
    if io is not None and io.value is not None:
        out[PROC_IOMEM] = dataclasses.replace(io, value=iomem_memory_lines(io.value))
    return out


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


def short(v: str | None, n: int = 120) -> str:
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
    return short(e.value)


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
        if path == PROC_IOMEM and r is None:
            continue  # recordings made before /proc/iomem was compared
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
                diffs.append(Difference(step, "value", path, short(r.value), short(m.value)))
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
