"""Migration's shared destination walk (memhp.kernel.mm.migrate._move_group): the
owners of an offlined range that get their new pages from one walk end exactly as
with one walk per owner (migrate.move_pages), on the real model; also where
a zone's watermark (__zone_watermark_ok() of NR_FREE_PAGES, without the isolated
blocks' free pages) limits what is taken."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from memhp.abi.layout import MiB
from memhp.abi.paths import SYS_MEMORY
from memhp.kernel.mm import migrate
from memhp.kernel.mm.mmzone import ZoneType
from memhp.sim import snapshot
from memhp.sim.machine import SimMachine, WorkloadMix
from tests.support.sim import machine


def _machine(how: str, pages: list[int], leave: int | None) -> SimMachine:
    """qemu-linux-6.1 with a 1 GiB DIMM on node 0 (blocks 32-39) onlined ``how``,
    owners of ``pages`` pages each interleaved over it; with ``leave``, the DIMM's
    zone then filled up to ``leave`` free pages above its min watermark."""
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(1024 * MiB, 0, id="dimm1")
    for b in range(32, 40):
        m.sysfs.write(f"{SYS_MEMORY}/memory{b}/state", how.encode())
    zone = "Movable" if how == "online_movable" else None
    for i, n in enumerate(pages):
        m.fill(n, node=0, zone=zone, owner=f"w{i}")
        if i % 3 == 2 and how != "online_movable":
            m.fill(40, node=0, owner=f"k{i}", mix=WorkloadMix(unmovable=1.0))
    if leave is not None:
        z = m.kernel.pgdats[0].zone(ZoneType.MOVABLE)
        m.kernel.pa.ensure_watermarks()
        left = z.watermark_min + leave
        m.fill(m.kernel.pa.zone_free(z) - left, node=0, zone=zone, owner="rest")
    return m


def _state(m: SimMachine) -> tuple[Any, ...]:
    pa = m.kernel.pa
    return (
        pa.counts.tobytes(),
        pa.free_area.rank.tobytes(),
        pa.unmovable_block.tobytes(),
        sorted((a.id, a.owner, int(a.state), list(a.extents.items())) for a in pa.allocs.values()),
        [(s, list(d.items())) for s, d in sorted(pa.by_section.items())],
        [(k, v.tolist()) for k, v in sorted(pa.zstate.items())],
        pa._next_id,
        pa.migrated_pages,
        m.kernel.clock,
    )


def _offline(m: SimMachine, blocks: list[int]) -> list[str]:
    out = []
    for b in blocks:
        try:
            m.sysfs.write(f"{SYS_MEMORY}/memory{b}/state", b"offline")
            out.append("ok")
        except OSError as e:
            out.append(str(e.errno))
    return out


@pytest.mark.parametrize(
    ("how", "pages", "leave", "blocks"),
    [
        # room in the offlined zone: one walk for all owners of a block
        ("online_movable", [2500 + 613 * i for i in range(14)], None, [32, 33]),
        # the Movable zone nearly full: new pages spill over to Normal, the
        # offlined zone's watermark is in the way from the first owner on
        ("online_movable", [4000 + 977 * i for i in range(12)], 2, [32, 34, 33]),
        # the offlined zone's watermark stops the walk inside an owner's pages: its
        # NR_FREE_PAGES does not count the pages the owners before it freed
        # (isolated), so one walk per owner stops where the shared walk does
        ("online_movable", [4000 + 977 * i for i in range(12)], 9000, [32, 34, 33]),
        # kernel zone, sections with unmovable pages among the destinations
        ("online_kernel", [3000 + 811 * i for i in range(12)], None, [33, 32]),
    ],
)
def test_shared_walk_ends_as_one_walk_per_owner(
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    pages: list[int],
    leave: int | None,
    blocks: list[int],
) -> None:
    a = _machine(how, pages, leave)
    b = snapshot.loads(snapshot.dumps(a))
    assert _state(a) == _state(b)
    why: Counter[str | None] = Counter()
    shared = migrate._move_group

    def spy(pa: Any, group: Any, t: Any) -> str | None:
        r = shared(pa, group, t)
        why[r] += 1
        return r

    monkeypatch.setattr(migrate, "_move_group", spy)
    ra = _offline(a, blocks)
    monkeypatch.setattr(migrate, "_move_group", lambda pa, group, t: "owner by owner")
    rb = _offline(b, blocks)
    assert ra == rb
    assert _state(a) == _state(b)
    assert why[None] > 0  # the shared walk was used
