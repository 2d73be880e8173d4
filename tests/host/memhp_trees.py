"""Sysfs trees the host and CLI tests run on: the reference trace and synthetic ones."""

from __future__ import annotations

import os
from pathlib import Path

from memhp.abi.tree import Snapshot, load_json, parse_trace
from memhp.host.testing import FakeBlock, add_acpi_devices, make_snapshot

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
    blocks = [FakeBlock(0, valid_zones="none")]
    blocks += [FakeBlock(i, valid_zones="DMA32") for i in range(1, 8)]
    blocks += [FakeBlock(i, valid_zones="Normal") for i in range(32, 40)]
    blocks += [
        FakeBlock(i, state="offline", valid_zones="Normal Movable", node=1, device="PNP0C80:00")
        for i in range(40, 44)
    ]
    blocks += [
        FakeBlock(i, valid_zones="Movable", node=1, device="PNP0C80:01") for i in range(44, 48)
    ]
    blocks.append(FakeBlock(48, state="going-offline", valid_zones="Movable", node=1))
    blocks.append(FakeBlock(49, valid_zones="Movable", node=1, removable="0"))
    blocks.append(FakeBlock(50, valid_zones="Weird", node=1))
    blocks.append(FakeBlock(51, valid_zones="Weird", node=1))
    blocks.append(FakeBlock(52, state="bogus", valid_zones="", node=2))
    out["two-nodes-mixed"] = make_snapshot(blocks)
    # No NUMA links, no valid_zones (pre-3.18 kernel), 256 MiB blocks.
    out["no-nodes-no-zones"] = make_snapshot(
        [FakeBlock(i, node=None, state="online" if i % 3 else "offline") for i in range(12)],
        block_size=0x10000000,
        with_valid_zones=False,
    )
    # Big machine: 2 GiB blocks, TiB ranges, fractional human sizes.
    big = [FakeBlock(i, node=i // 700) for i in range(0, 1500)]
    big += [FakeBlock(i, state="offline", node=3) for i in range(1500, 1537)]
    out["big-2g-blocks"] = make_snapshot(big, block_size=0x80000000)
    # memory0 missing (no have_zones) but first block has a node.
    out["no-memory0"] = make_snapshot([FakeBlock(i, node=i % 2) for i in range(5, 9)])
    # First block without node link: lsmem then ignores nodes entirely.
    nb = [FakeBlock(0, node=None)] + [FakeBlock(i, node=1) for i in range(1, 4)]
    out["first-without-node"] = make_snapshot(nb)
    # s390-style firmware memory: CONFIGURED and MEMMAP-ON-MEMORY columns.
    out["s390-memconfig"] = make_snapshot(
        [FakeBlock(i, state="online" if i < 3 else "offline", node=None) for i in range(6)],
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
