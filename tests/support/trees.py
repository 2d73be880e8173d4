"""Sysfs trees the host and CLI tests read: the reference trace, real captures,
stored fixtures and hand-built corner cases.

:func:`make_snapshot` builds the memory part of a sysfs tree (blocks, nodes, ACPI
PNP0C80 devices with their ``physical_node*``/``firmware_node`` links, firmware
memory) from :class:`BlockSpec` rows; :func:`add_acpi_devices` adds the ACPI
device directories a capture only names.  These are trees to *read*: tests that
change state run on a simulated machine (:mod:`tests.support.sim`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from memhp.abi.acpi import (
    ACPI_MEMORY_PARENT,
    ACPI_MEMORY_PARENT_DIR,
    ACPI_STA_ALL,
    MEMORY_DEVICE_HID,
)
from memhp.abi.fs import Kind
from memhp.abi.paths import SYS_ACPI_DEVICES, SYS_MEMORY, SYS_NODE
from memhp.abi.tree import Entry, Snapshot, load_json, parse_trace

MEM = SYS_MEMORY
NODE = SYS_NODE
ACPI_BUS = SYS_ACPI_DEVICES


@dataclass
class BlockSpec:
    """One memory block of a hand-built tree."""

    index: int
    state: str = "online"
    valid_zones: str = "Normal"
    node: int | None = 0
    removable: str = "1"
    device: str | None = None  # ACPI device name (PNP0C80:NN)


def _file(value: str, mode: int = 0o444) -> Entry:
    return Entry(Kind.FILE, value=value, mode=mode)


def _dir() -> Entry:
    return Entry(Kind.DIR, mode=0o755)


def _link(target: str) -> Entry:
    return Entry(Kind.LINK, target=target, mode=0o777)


def make_snapshot(
    blocks: Iterable[BlockSpec],
    block_size: int = 0x8000000,
    with_valid_zones: bool = True,
    firmware_memory: dict[int, tuple[str, str]] | None = None,
) -> Snapshot:
    """A sysfs snapshot holding ``blocks`` (and their nodes and devices)."""
    snap: Snapshot = {
        "/sys": _dir(),
        "/sys/devices": _dir(),
        "/sys/devices/system": _dir(),
        MEM: _dir(),
        f"{MEM}/block_size_bytes": _file(f"{block_size:x}\n"),
        f"{MEM}/auto_online_blocks": _file("offline\n", 0o644),
        NODE: _dir(),
    }
    devices: dict[str, list[int]] = {}
    nodes: set[int] = set()
    for b in blocks:
        d = f"{MEM}/memory{b.index}"
        snap[d] = _dir()
        snap[f"{d}/state"] = _file(b.state + "\n", 0o644)
        snap[f"{d}/online"] = _file(("1" if b.state == "online" else "0") + "\n", 0o644)
        snap[f"{d}/phys_index"] = _file(f"{b.index:08x}\n")
        snap[f"{d}/phys_device"] = _file("0\n")
        snap[f"{d}/removable"] = _file(b.removable + "\n")
        if with_valid_zones:
            snap[f"{d}/valid_zones"] = _file(b.valid_zones + "\n")
        if b.node is not None:
            nodes.add(b.node)
            snap[f"{d}/node{b.node}"] = _link(f"../../node/node{b.node}")
            snap[f"{NODE}/node{b.node}/memory{b.index}"] = _link(f"../../memory/memory{b.index}")
        if b.device:
            devices.setdefault(b.device, []).append(b.index)
            snap[f"{d}/firmware_node"] = _link(f"../../../{ACPI_MEMORY_PARENT}/{b.device}")
    for n in nodes:
        snap[f"{NODE}/node{n}"] = _dir()
    if devices:
        snap["/sys/bus"] = _dir()
        snap["/sys/bus/acpi"] = _dir()
        snap[ACPI_BUS] = _dir()
        for name, idxs in devices.items():
            _add_device(snap, name, sorted(idxs))
    if firmware_memory:
        snap["/sys/firmware"] = _dir()
        snap["/sys/firmware/memory"] = _dir()
        for idx, (config, memmap) in firmware_memory.items():
            d = f"/sys/firmware/memory/memory{idx}"
            snap[d] = _dir()
            snap[f"{d}/config"] = _file(config + "\n", 0o644)
            snap[f"{d}/memmap_on_memory"] = _file(memmap + "\n", 0o644)
    return snap


def _add_device(snap: Snapshot, name: str, idxs: list[int]) -> None:
    """The PNP0C80 device directory as the model (and Linux on QEMU) has it."""
    dev = f"{ACPI_MEMORY_PARENT_DIR}/{name}"
    parent = "/sys/devices"
    for part in ACPI_MEMORY_PARENT.split("/"):
        parent += "/" + part
        snap.setdefault(parent, _dir())
    snap[dev] = _dir()
    snap[f"{ACPI_BUS}/{name}"] = _link(f"../../../devices/{ACPI_MEMORY_PARENT}/{name}")
    slot = int(name.rsplit(":", 1)[-1], 16)
    snap[f"{dev}/hid"] = _file(f"{MEMORY_DEVICE_HID}\n")
    snap[f"{dev}/path"] = _file(f"\\_SB_.MHPC.MP{slot:02X}\n")
    snap[f"{dev}/uid"] = _file(f"0x{slot:02X}\n")
    snap[f"{dev}/status"] = _file(f"{ACPI_STA_ALL}\n")
    snap[f"{dev}/eject"] = Entry(Kind.FILE, value="", read_errno=errno.EACCES, mode=0o200)
    for n, idx in enumerate(idxs):
        link = "physical_node" if n == 0 else f"physical_node{n}"
        snap[f"{dev}/{link}"] = _link(f"../../../../system/memory/memory{idx}")


def add_acpi_devices(snap: Snapshot) -> Snapshot:
    """Add the PNP0C80 device directories that ``firmware_node`` links point to.

    The reference trace records ``/sys/bus/acpi/devices`` links and the blocks'
    ``firmware_node`` links, not the device directories themselves; this rebuilds
    them as the kernel has them (drivers/acpi/glue.c: ``physical_node``,
    ``physical_node1``... in binding order, i.e. ascending block index).
    """
    out = dict(snap)
    devices: dict[str, list[int]] = {}
    for path, e in snap.items():
        if e.kind is Kind.LINK and path.startswith(MEM) and path.endswith("/firmware_node"):
            assert e.target is not None
            name = e.target.rsplit("/", 1)[-1]
            blk = path.split("/")[-2]
            devices.setdefault(name, []).append(int(blk[6:]))
    for name, idxs in devices.items():
        _add_device(out, name, sorted(idxs))
    return out


REPO = Path(__file__).resolve().parents[2]
TRACE = Path(
    os.environ.get(
        "MEMHP_REFERENCE_TRACE",
        str(REPO / "tests/data/reference/linux-6.1/pc-dimm-hotplug-trace.txt"),
    )
)
FIXTURES = REPO / "tests/data/trees"


def trace_snapshots() -> dict[str, Snapshot]:
    """Each step of the Linux 6.1 reference trace, with its ACPI device dirs."""
    if not TRACE.exists():
        return {}
    steps = parse_trace(TRACE.read_text())
    return {f"trace-{i}-{s.name}": add_acpi_devices(s.snapshot) for i, s in enumerate(steps)}


def fixture_snapshots() -> dict[str, Snapshot]:
    """Snapshots stored as JSON under tests/data/trees."""
    return {p.stem: load_json(str(p)) for p in sorted(FIXTURES.glob("*.json"))}


def real_snapshots() -> dict[str, Snapshot]:
    """Trees captured from real Linux guests by the bench: every capture of the recorded
    runs of tests/scenarios/trees/*.toml (tests/data/real/scenarios/NAME.json.gz)."""
    from memhp.bench.recording import Recording

    out: dict[str, Snapshot] = {}
    for sc in sorted((REPO / "tests/scenarios/trees").glob("*.toml")):
        p = REPO / "tests/data/real/scenarios" / f"{sc.stem}.json.gz"
        if not p.exists():
            continue
        for step, snap in Recording.load(str(p)).snapshots():
            if "/sys/devices/system/memory/block_size_bytes" in snap:
                out[f"real-{sc.stem}-{step}"] = add_acpi_devices(snap)
    return out


def synthetic_snapshots() -> dict[str, Snapshot]:
    """Corner cases lsmem must agree on."""
    out: dict[str, Snapshot] = {}
    # Two nodes, a hole, mixed states and zones, an odd "going-offline" block.
    blocks = [BlockSpec(0, valid_zones="none")]
    blocks += [BlockSpec(i, valid_zones="DMA32") for i in range(1, 8)]
    blocks += [BlockSpec(i, valid_zones="Normal") for i in range(32, 40)]
    blocks += [
        BlockSpec(i, state="offline", valid_zones="Normal Movable", node=1, device="PNP0C80:00")
        for i in range(40, 44)
    ]
    blocks += [
        BlockSpec(i, valid_zones="Movable", node=1, device="PNP0C80:01") for i in range(44, 48)
    ]
    blocks.append(BlockSpec(48, state="going-offline", valid_zones="Movable", node=1))
    blocks.append(BlockSpec(49, valid_zones="Movable", node=1, removable="0"))
    blocks.append(BlockSpec(50, valid_zones="Weird", node=1))
    blocks.append(BlockSpec(51, valid_zones="Weird", node=1))
    blocks.append(BlockSpec(52, state="bogus", valid_zones="", node=2))
    out["two-nodes-mixed"] = make_snapshot(blocks)
    # No NUMA links, no valid_zones (pre-3.18 kernel), 256 MiB blocks.
    out["no-nodes-no-zones"] = make_snapshot(
        [BlockSpec(i, node=None, state="online" if i % 3 else "offline") for i in range(12)],
        block_size=0x10000000,
        with_valid_zones=False,
    )
    # Big machine: 2 GiB blocks, TiB ranges, fractional human sizes.
    big = [BlockSpec(i, node=i // 700) for i in range(0, 1500)]
    big += [BlockSpec(i, state="offline", node=3) for i in range(1500, 1537)]
    out["big-2g-blocks"] = make_snapshot(big, block_size=0x80000000)
    # memory0 missing (no have_zones) but first block has a node.
    out["no-memory0"] = make_snapshot([BlockSpec(i, node=i % 2) for i in range(5, 9)])
    # First block without node link: lsmem then ignores nodes entirely.
    nb = [BlockSpec(0, node=None)] + [BlockSpec(i, node=1) for i in range(1, 4)]
    out["first-without-node"] = make_snapshot(nb)
    # s390-style firmware memory: CONFIGURED and MEMMAP-ON-MEMORY columns.
    out["s390-memconfig"] = make_snapshot(
        [BlockSpec(i, state="online" if i < 3 else "offline", node=None) for i in range(6)],
        block_size=0x10000000,
        firmware_memory={i: ("1" if i < 4 else "0", "1" if i >= 2 else "0") for i in range(6)},
    )
    return out


def all_snapshots() -> dict[str, Snapshot]:
    return {
        **trace_snapshots(),
        **real_snapshots(),
        **fixture_snapshots(),
        **synthetic_snapshots(),
    }


def reference_steps() -> dict[str, Snapshot]:
    """The Linux 6.1 reference steps the host tests check: from the trace when it
    is present, else from the bench's capture of the same scenario on a real guest
    (tests/scenarios/trees/pc-dimm-6.1-reference.toml), under the trace's step names."""
    snaps = trace_snapshots()
    if snaps:
        return snaps
    real = real_snapshots()
    prefix = "real-pc-dimm-6.1-reference-"
    steps = {
        "trace-1-after-hotadd-dimm1-node1": "after-hotadd-dimm1-node1",
        "trace-2-after-online": "after-online",
        "trace-4-after-eject-dimm1": "after-eject-dimm1",
    }
    return {k: real[prefix + v] for k, v in steps.items() if prefix + v in real}
