"""Zone watermarks and lowmem reserves: the rules, machine by machine.

Against the real guests: tests/sysfs/test_zoneinfo.py replays every recorded real
run and compares the model's /proc/zoneinfo with the guest's at each captured step
(min, low and high watermarks and lowmem_reserve, "protection", among the rest),
within what the two sides' managed pages differ by (the model estimates the pages
the real kernel reserves at boot, and the real kernel computes its boot reserves
before it frees its init memory).
"""

from __future__ import annotations

import errno
import re

import pytest

from memhp.abi.paths import PROC_ZONEINFO
from memhp.kernel.machine import MachineError, parse_machine, parse_size
from memhp.kernel.mm.mmzone import Zone, ZoneType
from memhp.kernel.mm.page_alloc import AllocError, PageState
from memhp.kernel.mm.page_alloc_watermarks import (
    nr_free_buffer_pages,
    recommended_min_free_kbytes,
)
from memhp.sim.machine import SimMachine
from tests.support.replay import real_text, replay


def _machine(profile: str, boot: str = "8G", **extra: object) -> SimMachine:
    """One node with ``boot`` of RAM from 0 and 8G of hotplug space above it."""
    top = parse_size(boot, "boot")
    doc: dict[str, object] = {
        "name": "wm",
        "profile": profile,
        "node": [
            {"id": 0, "cpus": [0], "memory": [["0", boot]], "hotplug": [[top, top + (8 << 30)]]}
        ],
        "hotplug": {"slots": 2, "maxmem": str(top + (8 << 30))},
        **extra,
    }
    return SimMachine(parse_machine(doc))


def test_thp_floor_and_its_five_percent_cap() -> None:
    """set_recommended_min_free_kbytes(): 2 + 3*3 pageblocks per populated kernel
    zone (DMA, DMA32, Normal here: 16,896 pages) unless that is more than 5% of
    the pages above the high watermarks; transparent_hugepage=never leaves the
    square-root rule (calculate_min_free_kbytes())."""
    m = _machine("linux-6.1")
    pa = m.kernel.pa
    pa.ensure_watermarks()
    assert recommended_min_free_kbytes(pa.pgdats) == 16896 * 4
    assert pa.wmarks.min_free_kbytes == 16896 * 4
    never = _machine("linux-6.1", transparent_hugepage="never").kernel.pa
    never.ensure_watermarks()
    assert never.wmarks.min_free_kbytes < 16896 * 4
    zones = [z for pg in pa.pgdats.values() for z in pg.node_zones if z.managed_pages]
    assert sum(z.watermark_min for z in zones) in range(16896 - len(zones), 16897)
    # 512 MiB (DMA, DMA32): 11,264 pages would be more than 5% of the ~125,000 pages
    # above the high watermarks, so the floor is that 5%
    small = _machine("linux-6.1", boot="512M").kernel.pa
    small.ensure_watermarks()
    capped = nr_free_buffer_pages(small.pgdats) // 20 * 4
    assert recommended_min_free_kbytes(small.pgdats) == capped < 11264 * 4
    assert small.wmarks.min_free_kbytes >= capped
    with pytest.raises(MachineError, match="transparent_hugepage: expected one of"):
        _machine("linux-6.1", transparent_hugepage="sometimes")


def test_movable_min_watermark_per_kernel() -> None:
    """6.1 gives ZONE_MOVABLE its share of min_free_kbytes; 6.12 caps it at
    managed/1024 within 32..128 pages, also when the zone is empty."""
    for profile, capped in (("linux-6.1", False), ("linux-6.12", True)):
        m = _machine(profile)
        pa = m.kernel.pa
        mov = m.kernel.pgdats[0].node_zones[3]
        pa.ensure_watermarks()
        assert mov.watermark_min == (32 if capped else 0)
        mov.managed_pages = 1 << 20  # as if 4 GiB were onlined movable
        pa.wmarks.compute(pa.pgdats)  # init_per_zone_wmark_min()
        assert (mov.watermark_min == 128) is capped
        # the Normal zone keeps managed(Movable)/32 from movable allocations
        assert m.kernel.pgdats[0].node_zones[2].lowmem_reserve[3] == (1 << 20) // 32


def test_movable_allocations_leave_the_lowmem_reserve() -> None:
    """__zone_watermark_ok(): an allocation takes a zone down to its min watermark plus
    its lowmem_reserve for the allocation's highest zone: movable pages falling back
    to the kernel zones leave them managed(Movable)/32 (Normal) and /256 (DMA32),
    which kernel allocations may still use."""
    m = _machine("linux-6.1", auto_online_blocks="online_movable")
    m.device_add(4 << 30, 0, id="d0")
    pa = m.kernel.pa
    pa.ensure_watermarks()
    pg = m.kernel.pgdats[0]
    dma32, normal, movable = pg.node_zones[1:4]
    assert movable.managed_pages == 1 << 20
    assert normal.lowmem_reserve[3] == (1 << 20) // 32
    assert dma32.lowmem_reserve[3] == (normal.managed_pages + (1 << 20)) // 256

    def room(hi: int, zones: tuple[Zone, ...]) -> int:
        return sum(
            max(0, pa.nr_free_pages(0, int(z.idx)) - z.watermark_min - z.lowmem_reserve[hi])
            for z in zones
        )

    for state, hi, zones in (
        (PageState.MOVABLE, 3, (movable, normal, dma32)),
        (PageState.UNMOVABLE, 2, (normal, dma32)),
    ):
        n = room(hi, zones)
        assert n > 0
        with pytest.raises(AllocError):
            pa.alloc(n + 1, state, "t", "workload", 0)
        pa.alloc(n, state, "t", "workload", 0)
        assert room(hi, zones) == 0
    # what the movable allocations left in the kernel zones was the reserve
    assert room(3, (normal, dma32)) == 0 < normal.lowmem_reserve[3]


def test_mem_available_is_free_less_the_reserves() -> None:
    """si_mem_available() with no page cache and no reclaimable slab: MemFree less
    totalreserve_pages, each zone's high watermark plus its largest lowmem_reserve
    (at most its managed pages)."""
    m = _machine("linux-6.12", auto_online_blocks="online_movable")
    m.device_add(4 << 30, 0, id="d0")
    k = m.kernel
    k.pa.ensure_watermarks()
    zones = [z for pg in k.pgdats.values() for z in pg.node_zones]
    reserve = sum(
        min(max(z.lowmem_reserve[z.idx :]) + z.watermark_high, z.managed_pages) for z in zones
    )
    assert k.pa.wmarks.totalreserve_pages == reserve > 0
    text = m.sysfs.read("/proc/meminfo").decode()
    kb = {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()}
    assert kb["MemAvailable"] == kb["MemFree"] - reserve * 4


SPILL = "tests/scenarios/fill-spills-at-low-watermark.toml"
#: 6.12's per-CPU lists refill in batches that grow with use (nr_pcp_alloc()), taken
#: after the watermark check: the guest's node 1 ended 574 pages below its low mark.
PCP_REFILL = {"6.1": 64, "6.12": 640}


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_a_fill_spills_to_the_next_node_at_the_low_watermark(kernel: str) -> None:
    """The fast path (ALLOC_WMARK_LOW) takes node 1's ZONE_MOVABLE down to its low
    watermark before node 0 gets any page; the slow path's min is for when every
    zone is at low.  Recorded on Debian's 6.1 (5119 free, low 5121) and 6.12 (1151,
    low 1725); min would leave 4097 and 128."""
    rec, steps = replay(SPILL, kernel, lambda m, _sr: _node1_free(m))
    model = dict(steps)["fill-a"]
    text = real_text(rec, "fill-a", PROC_ZONEINFO)
    assert text is not None
    seg = text[text.index("Node 1, zone  Movable") :]
    real_free = int(re.search(r"pages free\s+(\d+)", seg).group(1))  # type: ignore[union-attr]
    real_low = int(re.search(r"\blow\s+(\d+)", seg).group(1))  # type: ignore[union-attr]
    assert model[0] == model[1]  # the model: exactly the low watermark
    assert abs(model[1] - real_low) <= 16  # (the two sides' managed pages differ a little)
    assert 0 <= real_low - real_free <= PCP_REFILL[kernel], (model, real_free, real_low)


def _node1_free(m: SimMachine) -> tuple[int, int]:
    k = m.kernel
    z = k.pgdats[1].zone(ZoneType.MOVABLE)
    return k.pa.zone_free(z), z.watermark_low


VM = "/proc/sys/vm"


def _online_a_dimm(m: SimMachine) -> None:
    """A 512M DIMM, its first block onlined movable (init_per_zone_wmark_min())."""
    m.device_add(512 << 20, 0, id="d")
    block = max(m.kernel.memory.blocks) - 3
    m.sysfs.write(f"/sys/devices/system/memory/memory{block}/state", b"online_movable")


def _zone_marks(m: SimMachine) -> list[tuple[int, int, int, tuple[int, ...]]]:
    m.kernel.pa.ensure_watermarks()
    return [
        (z.watermark_min, z.watermark_low, z.watermark_high, z.lowmem_reserve)
        for pg in m.kernel.pgdats.values()
        for z in pg.node_zones
    ]


def test_vm_sysctls_set_the_watermarks_as_their_handlers() -> None:
    """min_free_kbytes_sysctl_handler(), watermark_scale_factor_sysctl_handler(),
    lowmem_reserve_ratio_sysctl_handler() (tests/scenarios/vm-watermark-sysctls.toml,
    recorded on 6.1 and 6.12)."""
    m = _machine("linux-6.1", auto_online_blocks="offline")
    w = m.kernel.pa.wmarks
    floor = recommended_min_free_kbytes(m.kernel.pgdats)
    assert m.sysfs.read(f"{VM}/min_free_kbytes") == f"{floor}\n".encode()  # khugepaged's
    before = _zone_marks(m)
    m.sysfs.write(f"{VM}/min_free_kbytes", b"90000\n")
    assert w.user_min_free_kbytes == w.min_free_kbytes == 90000
    after = _zone_marks(m)
    assert all(a[0] >= b[0] for a, b in zip(after, before, strict=True))
    assert sum(a[0] for a in after) == pytest.approx(90000 // 4, abs=8)  # the shares
    _online_a_dimm(m)
    assert m.sysfs.read(f"{VM}/min_free_kbytes") == b"90000\n"  # the user's, kept
    m.sysfs.write(f"{VM}/watermark_scale_factor", b"200")
    z = m.kernel.pgdats[0].node_zones[1]  # DMA32
    assert z.watermark_low - z.watermark_min == max(
        z.watermark_min >> 2, z.managed_pages * 200 // 10000
    )
    reserve = z.lowmem_reserve
    m.sysfs.write(f"{VM}/lowmem_reserve_ratio", b"128 128 16")
    assert m.sysfs.read(f"{VM}/lowmem_reserve_ratio") == b"128\t128\t16\t0\t0\n"
    assert abs(z.lowmem_reserve[2] - 2 * reserve[2]) <= 1  # Normal's /128, was /256
    m.sysfs.write(f"{VM}/lowmem_reserve_ratio", b"64 x -3")  # its error ignored
    assert m.sysfs.read(f"{VM}/lowmem_reserve_ratio") == b"64\t128\t16\t0\t0\n"
    m.sysfs.write(f"{VM}/lowmem_reserve_ratio", b"-3 0 1")
    assert w.lowmem_reserve_ratio == (0, 0, 1, 0, 0)
    for f, bad in (
        ("min_free_kbytes", b"-5"),
        ("min_free_kbytes", b"2147483648"),
        ("min_free_kbytes", b"12k"),
        ("watermark_scale_factor", b"0"),
        ("watermark_scale_factor", b"3001"),
    ):
        with pytest.raises(OSError) as e:
            m.sysfs.write(f"{VM}/{f}", bad)
        assert e.value.errno == errno.EINVAL, (f, bad)
    assert m.sysfs.read(f"{VM}/watermark_scale_factor") == b"200\n"


def test_a_user_value_below_the_thp_floor_is_raised_at_the_next_online() -> None:
    """set_recommended_min_free_kbytes() at the next online raises a smaller written
    value to khugepaged's floor (capped at 5% of nr_free_buffer_pages())."""
    m = _machine("linux-6.1", auto_online_blocks="offline")
    m.sysfs.write(f"{VM}/min_free_kbytes", b"32768")
    assert m.sysfs.read(f"{VM}/min_free_kbytes") == b"32768\n"
    _online_a_dimm(m)
    floor = recommended_min_free_kbytes(m.kernel.pgdats)
    assert floor > 32768
    assert m.sysfs.read(f"{VM}/min_free_kbytes") == f"{floor}\n".encode()
