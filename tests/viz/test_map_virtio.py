"""``memhp map`` of virtio-mem devices: the region (its part without memory block is
"not plugged"), the plugged and unplugged sub-blocks of its online blocks, in the
text map, the SVG element ids and the PNG's pixels, on the simulated guest of
machines/virtio-mem.toml (the model's driver, sysfs, /proc/iomem, /proc/kpageflags)."""

from __future__ import annotations

import re
import shlex
import struct
from pathlib import Path

import numpy as np
import pytest

from memhp.abi.kpageflags import KPF_DIRTY, KPF_OFFLINE
from memhp.abi.layout import PAGE_SIZE, MiB
from memhp.abi.paths import PROC_KPAGEFLAGS, block_dir
from memhp.cli.main import main
from memhp.host.memmap_view import MemoryMap, read_memory_map, text_map
from memhp.host.memmap_virtio import SubBlocks, VirtioRegionMap
from memhp.host.root import SysfsRoot
from memhp.sim.machine import SimMachine
from memhp.viz.model import machine_map
from memhp.viz.render import figure, save_map
from memhp.viz.render_virtio import NOT_PLUGGED_COLOR, SUBBLOCK_COLORS
from tests.support.sim import machine

REPO = Path(__file__).resolve().parents[2]
GiB = 1 << 30
BLOCK = 128 * MiB
#: memory34: 12 sub-blocks plugged, 52 not (42 kept fake offline when it was onlined,
#: 10 taken by alloc_contig_range() when 280M was requested).
PLUGGED_34 = 12


def partly_unplugged() -> SimMachine:
    """vm0 asked for 300M (memory32-34 added, 22 sub-blocks of memory34 plugged), the
    blocks onlined movable, then 280M requested."""
    m = SimMachine(machine("virtio-mem"))
    dev = m.virtio.devices[0]
    dev.set_requested_size(300 * MiB)
    for b in (32, 33, 34):
        m.sysfs.write(f"{block_dir(b)}/state", b"online_movable")
    dev.set_requested_size(280 * MiB)
    return m


@pytest.fixture(scope="module")
def guest() -> SimMachine:
    return partly_unplugged()


@pytest.fixture(scope="module")
def guest_map(guest: SimMachine) -> MemoryMap:
    return read_memory_map(SysfsRoot(guest.sysfs, "guest"))


def test_kpageflags_offline_exactly_in_the_unplugged_sub_blocks(guest: SimMachine) -> None:
    """PG_offline (KPF_OFFLINE) on the pages of the sub-blocks the driver's bitmap
    holds unplugged, none elsewhere in the device's blocks."""
    root = SysfsRoot(guest.sysfs, "guest")
    for b, plugged_sbs in ((32, 64), (33, 64), (34, PLUGGED_34)):
        n = BLOCK // PAGE_SIZE
        raw = root.read_at(PROC_KPAGEFLAGS, b * BLOCK // PAGE_SIZE * 8, n * 8)
        off = [bool(f & (1 << KPF_OFFLINE)) for f in struct.unpack(f"<{n}Q", raw)]
        boundary = plugged_sbs * 512
        assert off == [False] * boundary + [True] * (n - boundary), b
    vm = guest.kernel.virtio.mem.vms[0]
    assert vm.sb_plugged[34] == [True] * PLUGGED_34 + [False] * (64 - PLUGGED_34)


def test_kpageflags_fake_offline_flags_as_linux_6_1(guest: SimMachine) -> None:
    """memory34 was onlined with sub-blocks 22..63 unplugged: virtio_mem_online_page()
    kept them fake offline with onlined=false, PG_offline + PG_dirty (and not
    PG_reserved); 12..21 were unplugged later by virtio_mem_fake_offline()
    (alloc_contig_range()): PG_offline only."""
    root = SysfsRoot(guest.sysfs, "guest")
    n = BLOCK // PAGE_SIZE
    raw = root.read_at(PROC_KPAGEFLAGS, 34 * BLOCK // PAGE_SIZE * 8, n * 8)
    flags = struct.unpack(f"<{n}Q", raw)
    per_sb = [set(flags[i : i + 512]) for i in range(0, n, 512)]
    offline, dirty = 1 << KPF_OFFLINE, 1 << KPF_DIRTY
    assert all(not any(f & offline for f in s) for s in per_sb[:PLUGGED_34])
    assert per_sb[PLUGGED_34:22] == [{offline}] * (22 - PLUGGED_34)
    assert per_sb[22:] == [{offline | dirty}] * 42


def test_regions_from_sysfs_equal_the_driver_state(guest: SimMachine, guest_map: MemoryMap) -> None:
    expected = VirtioRegionMap(
        "virtio0",
        4 * GiB,
        8 * GiB,
        1,
        ((4 * GiB, 4 * GiB + 3 * BLOCK),),
        (32, 33, 34),
        (
            SubBlocks(32, 32 * BLOCK, (True,) * 64),
            SubBlocks(33, 33 * BLOCK, (True,) * 64),
            SubBlocks(34, 34 * BLOCK, (True,) * PLUGGED_34 + (False,) * (64 - PLUGGED_34)),
        ),
    )
    assert guest_map.virtio == [expected]
    assert machine_map(guest).virtio == [expected]
    assert expected.not_added() == [(4 * GiB + 3 * BLOCK, 8 * GiB)]
    assert expected.runs() == [
        (4 * GiB, 0x111800000, True),
        (0x111800000, 0x118000000, False),
    ]
    assert {b.device for b in guest_map.blocks if b.index >= 32} == {"virtio0"}


def test_text_map(guest_map: MemoryMap) -> None:
    lines = text_map(guest_map, width=64).splitlines()
    node1 = lines.index(
        "node1    |                                          MMMMMMMMMMMMMM___     |"
    )
    assert lines[node1 + 1] == " " * 51 + "[a---------------]"
    # 384M in 14 columns: 280M plugged is 10 columns, the rest of memory34 4.
    assert lines[node1 + 2] == "virtio0  |" + " " * 42 + "#" * 10 + "_" * 4 + " " * 8 + "|"
    assert "          (virtio0 not plugged 4.38G-8G, 3.62G, drawn narrower)" in lines
    legend = lines[lines.index("  '_' virtio-mem region without memory block (not plugged)") :]
    assert legend[:6] == [
        "  '_' virtio-mem region without memory block (not plugged)",
        "  virtioN rows: the device's sub-blocks of 2M in online blocks",
        "     # plugged, _ unplugged (PG_offline in /proc/kpageflags: fake offline), "
        "+ both in one column",
        "  [a-]  device virtio0: virtio-mem region 0x100000000-0x1ffffffff (4G), node 1, "
        "memory32-34 added (3 blocks)",
        "        memory34: 12 of 64 sub-blocks plugged, unplugged 0x111800000-0x117ffffff "
        "(PG_offline)",
        "        not plugged: 0x118000000-0x1ffffffff (3.62G), no memory block",
    ]


def test_text_map_nothing_plugged() -> None:
    """At boot the region has no memory block; the guest cannot tell its node."""
    m = SimMachine(machine("virtio-mem"))
    out = text_map(read_memory_map(SysfsRoot(m.sysfs, "boot")), width=40)
    assert "\nno node  |                                   __   |\n" in out
    assert (
        "  [a-]  device virtio0: virtio-mem region 0x100000000-0x1ffffffff (4G), node unknown, "
        "no memory block added\n"
        "        not plugged: 0x100000000-0x1ffffffff (4G), no memory block\n"
    ) in out
    assert "virtioN rows" not in out
    assert "\nnode1    |                                   __   |\n" in text_map(machine_map(m), 40)


def test_svg_ids(guest_map: MemoryMap, tmp_path: Path) -> None:
    path = tmp_path / "v.svg"
    info = save_map(guest_map, str(path))
    ids = re.findall(r'id="((?:virtio|subblocks|device):[^"]+)"', path.read_text())
    assert ids == [
        "virtio:not-plugged:virtio0:0x118000000-0x1ffffffff",
        "subblocks:plugged:virtio0:0x100000000-0x1117fffff:140",
        "subblocks:unplugged:virtio0:0x111800000-0x117ffffff:52",
        "device:virtio0",
    ]
    assert info.virtio == {"not-plugged": 1, "plugged": 140, "unplugged": 52}
    assert info.devices == ["virtio0"]
    assert info.legend[-4:-1] == [
        "virtio-mem region without memory block (not plugged)",
        "virtio-mem sub-block (2M) plugged",
        "virtio-mem sub-block (2M) unplugged (PG_offline)",
    ]


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def test_png_pixel_classes(guest_map: MemoryMap) -> None:
    """The pixels at the middle of each drawn class have exactly its colour: the
    sub-block strip (bottom 30% of the block row) plugged / unplugged, the block
    above it (Movable), the not-plugged band (its colour in most of a 9x9 patch:
    the hatch dots are the rest)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from memhp.host.memmap_view import map_scale
    from memhp.viz.render import CATEGORY_COLORS

    fig, _info = figure(guest_map)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # type: ignore[no-untyped-call]
    px = np.asarray(canvas.buffer_rgba())[:, :, :3]  # type: ignore[no-untyped-call]
    ax = fig.axes[0]
    scale = map_scale(guest_map)
    top = 0.45 + 0.75 + 1.0 + 0.75  # firmware row and gap, node 0 band (no contents row)

    def at(addr: int, y: float) -> tuple[int, int]:
        xd, yd = ax.transData.transform((scale.x(addr), y))
        return round(float(px.shape[0] - yd)), round(float(xd))

    def color(addr: int, y: float) -> tuple[int, int, int]:
        r, c = at(addr, y)
        return tuple(int(v) for v in px[r, c])  # type: ignore[return-value]

    strip = top + 0.85
    assert color(32 * BLOCK + BLOCK // 2, strip) == _rgb(SUBBLOCK_COLORS["plugged"])
    assert color(34 * BLOCK + 3 * MiB, strip) == _rgb(SUBBLOCK_COLORS["plugged"])
    assert color(34 * BLOCK + 80 * MiB, strip) == _rgb(SUBBLOCK_COLORS["unplugged"])
    assert color(34 * BLOCK + 80 * MiB, top + 0.2) == _rgb(CATEGORY_COLORS["online:Movable"])
    r, c = at(6 * GiB, top + 0.5)
    patch = [tuple(int(v) for v in p) for p in px[r - 4 : r + 5, c - 4 : c + 5].reshape(-1, 3)]
    assert max(set(patch), key=patch.count) == _rgb(NOT_PLUGGED_COLOR)


def test_cli_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "v.svg"
    argv = ["map", "--machine", "virtio-mem", "--scenario", "virtio-mem", "-o", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out == (
        f"{out}: 11 blocks (7 online:DMA32, 3 online:Movable, 1 online:several)\n"
    )
    assert "subblocks:unplugged:virtio0:0x111800000-0x117ffffff:52" in out.read_text()
    assert (
        main(["map", "--machine", "virtio-mem", "--scenario", "virtio-mem", "--width", "64"]) == 0
    )
    text = capsys.readouterr().out
    assert text.startswith("virtio-mem: vm0 asked for 300M, its blocks online_movable, then 280M\n")
    assert "\nvirtio0  |" + " " * 42 + "#" * 10 + "_" * 4 + " " * 8 + "|\n" in text


def test_cli_scenario_without_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["map", "--machine", "seed", "--scenario", "virtio-mem"]) == 1
    assert capsys.readouterr() == ("", "memhp map: seed: no virtio-mem device ([[virtio_mem]])\n")


def test_readme_virtio_mem_map_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's virtio-mem `memhp map` line runs as written."""
    readme = (REPO / "README.md").read_text()
    [line] = [ln.strip() for ln in readme.splitlines() if "--scenario virtio-mem" in ln]
    argv = shlex.split(line.split("#")[0])
    assert argv[:2] == ["memhp", "map"]
    assert main(argv[1:]) == 0
    out = capsys.readouterr().out
    assert "        memory34: 12 of 64 sub-blocks plugged, unplugged 0x111800000-0x117ffffff" in out
