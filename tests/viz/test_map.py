"""``memhp map``: the map model, the text map and the pictures (PNG/SVG) of captured
real trees and of simulated machines of 8, thousands and 100,000+ blocks."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from memhp.abi.tree import write_tree
from memhp.cli.main import main
from memhp.host.memmap_view import (
    CATEGORY_CHAR,
    AddressScale,
    MapBlock,
    MemoryMap,
    human,
    read_memory_map,
    text_map,
)
from memhp.host.root import SysfsRoot
from memhp.sim.config import load_machine
from memhp.sim.machine import SimMachine
from memhp.viz.demo import seed_scenario_maps, write_demo_pictures
from memhp.viz.model import machine_map
from memhp.viz.render import figure, save_map
from tests.support.trees import real_snapshots

REPO = Path(__file__).resolve().parents[2]

GiB = 1 << 30
MiB = 1 << 20


def machine(name: str) -> SimMachine:
    return SimMachine(load_machine(str(REPO / "machines" / f"{name}.toml")))


def svg_ids(path: Path) -> list[str]:
    tree = ET.parse(path)
    return [e.get("id", "") for e in tree.iter() if e.get("id")]


def drawn_blocks(ids: list[str]) -> dict[str, int]:
    """Blocks per category from the ``block:<cat>:<first>-<last>:<n>`` ids of an SVG."""
    out: dict[str, int] = {}
    for i in ids:
        m = re.fullmatch(r"block:([^:]+(?::[^:]+)?):(\d+)-(\d+):(\d+)", i)
        if m:
            out[m[1]] = out.get(m[1], 0) + int(m[4])
    return out


@pytest.fixture(scope="module")
def seed_maps() -> tuple[MemoryMap, MemoryMap]:
    return seed_scenario_maps()


# -- data layer --------------------------------------------------------------------------


def test_human_units() -> None:
    assert [human(x) for x in (0, 640 << 10, 128 * MiB, 3 * GiB // 2, 5 * GiB // 4, 16 << 40)] == [
        "0",
        "640K",
        "128M",
        "1.5G",
        "1.25G",
        "16T",
    ]


def test_scale_compresses_large_holes() -> None:
    s = AddressScale([(0, 2 * GiB), (1 << 40, (1 << 40) + 2 * GiB)])
    comp = [seg for seg in s.segments if seg.compressed]
    assert len(comp) == 1 and comp[0].start == 2 * GiB and comp[0].end == 1 << 40
    assert comp[0].x1 - comp[0].x0 < 0.1
    assert s.x(0) == 0.0 and s.x(1 << 40) == pytest.approx(comp[0].x1)
    assert s.x(2 * GiB) == pytest.approx(0.48)  # the populated halves share the rest
    assert s.x(GiB) == pytest.approx(0.24)


def test_seed_model_dependency_arrow(seed_maps: tuple[MemoryMap, MemoryMap]) -> None:
    before, after = seed_maps
    labels = [d.label for d in before.deps]
    # The seed's dependency: page_cgroup of memory9..11 lives in memory8.
    for b in (9, 10, 11):
        assert f"memory{b} -> memory8: page_cgroup" in labels
    c8 = before.contents[8].pages  # type: ignore[index]
    assert c8["page_cgroup"] == 3 * 128 and c8["free"] == 32768 - 384
    assert [d.name for d in before.devices] == ["PNP0C80:00"]
    assert before.devices[0].blocks == (8, 9, 10, 11)
    assert len(after.blocks) == 8 and not after.devices and not after.deps
    assert "page_cgroup" not in after.contents[7].pages  # type: ignore[index]


@pytest.mark.parametrize("name", sorted(real_snapshots()))
def test_real_trees_map(name: str, tmp_path: Path) -> None:
    snap = real_snapshots()[name]
    write_tree(snap, str(tmp_path / "root"))
    m = read_memory_map(SysfsRoot.open(str(tmp_path / "root")))
    nblocks = sum(1 for p in snap if re.fullmatch(r"/sys/devices/system/memory/memory\d+", p))
    assert len(m.blocks) == nblocks
    assert m.firmware and m.firmware[0].type == "System RAM"
    linked = {
        int(p.split("/")[-2][6:])
        for p in snap
        if re.fullmatch(r"/sys/devices/system/memory/memory\d+/firmware_node", p)
    }
    assert {i for d in m.devices for i in d.blocks} == linked
    # text map: one line per node, characters of the categories present
    text = text_map(m)
    for nid in m.band_nodes():
        assert re.search(rf"^node{nid} +\|", text, re.M)
    for cat in m.category_counts():
        assert f"  {CATEGORY_CHAR[cat]}  " in text
    # picture: every block drawn once, with its category
    info = save_map(m, str(tmp_path / "map.svg"))
    assert info.blocks_per_category == m.category_counts()
    assert drawn_blocks(svg_ids(tmp_path / "map.svg")) == m.category_counts()
    assert sorted(info.devices) == sorted(d.name for d in m.devices)


def test_real_tree_details(tmp_path: Path) -> None:
    snaps = real_snapshots()
    key = "real-pc-dimm-6.1-online-movable-after-hotadd-dimm3-node0-auto-online_kernel"
    if key not in snaps:
        pytest.skip("captured tree not present")
    write_tree(snaps[key], str(tmp_path / "root"))
    m = read_memory_map(SysfsRoot.open(str(tmp_path / "root")))
    assert m.category_counts() == {
        "online:DMA32": 7,
        "online:several": 1,
        "online:Normal": 8,
        "offline": 4,
    }
    assert [(d.name, d.blocks[0], d.blocks[-1]) for d in m.devices] == [
        ("PNP0C80:00", 32, 35),
        ("PNP0C80:01", 36, 43),
    ]
    assert [h.size for h in m.holes()] == [3 * GiB]
    text = text_map(m)
    assert "node0    |XXXddd" in text and "[a" in text and "[b" in text
    fig, info = figure(m)
    from matplotlib.patches import Rectangle

    rects = [a for a in fig.axes[0].patches if isinstance(a, Rectangle)]
    gids = [r.get_gid() or "" for r in rects]
    assert sum(1 for g in gids if g.startswith("block:")) == 20  # every block on its own
    assert sum(1 for g in gids if g.startswith("device:")) == 2
    assert sum(1 for g in gids if g.startswith("hole:")) == 1
    assert any(g.startswith("firmware:Reserved") for g in gids)
    legend = fig.axes[0].get_legend()
    assert legend is not None
    leg = [t.get_text() for t in legend.get_texts()]
    assert leg == info.legend
    assert "offline" in leg and "memory device" in leg and "hole" in leg
    assert "firmware: Reserved" in leg


def test_seed_picture(seed_maps: tuple[MemoryMap, MemoryMap], tmp_path: Path) -> None:
    before, _ = seed_maps
    fig, info = figure(before)
    ax = fig.axes[0]
    gids = [p.get_gid() or "" for p in ax.patches]
    assert info.blocks_per_category == {"online:several": 1, "online:DMA32": 7, "online:Normal": 4}
    assert sum(1 for g in gids if g.startswith("block:")) == 12
    # contents row: memory8 holds page_cgroup
    assert any(g.startswith("content:page_cgroup:8-8:384") for g in gids)
    assert any(g.startswith("content:memmap:7-7:") for g in gids)
    # the arrows, memory9 -> memory8 among them
    deps = [t.get_gid() or "" for t in ax.texts if (t.get_gid() or "").startswith("dep:")]
    assert "dep:9-9:8:page_cgroup" in deps and "dep:8-8:7:memmap,page_cgroup" in deps
    assert "page_cgroup of a block lives in another block" in info.legend
    assert any(t.get_text() == "memory9" for t in ax.texts)
    assert info.devices == ["PNP0C80:00"]
    save_map(before, str(tmp_path / "seed.svg"))
    ids = svg_ids(tmp_path / "seed.svg")
    assert "dep:9-9:8:page_cgroup:arrow" in ids and "device:PNP0C80:00" in ids
    assert drawn_blocks(ids) == before.category_counts()


def test_write_demo_pictures(seed_maps: tuple[MemoryMap, MemoryMap], tmp_path: Path) -> None:
    paths = write_demo_pictures(str(tmp_path / "demo"), *seed_maps)
    names = sorted(Path(p).name for p in paths)
    assert names == ["after.png", "after.txt", "before-after.png", "before.png", "before.txt"]
    for p in paths:
        if p.endswith(".png"):
            assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "memory9 -> memory8: page_cgroup" in (tmp_path / "demo/before.txt").read_text()
    assert "node1    |" in (tmp_path / "demo/after.txt").read_text()


def test_thousands_of_blocks(tmp_path: Path) -> None:
    """A few thousand blocks: runs are drawn, devices outlined, states counted."""
    m = machine("qemu-linux-6.1")
    m.device_add(2 * GiB, 1, id="d1")
    mm = machine_map(m)
    bs = mm.block_size
    info = save_map(mm, str(tmp_path / "q.png"))
    assert sum(info.blocks_per_category.values()) == len(mm.blocks)
    assert info.blocks_per_category.get("offline") == 2 * GiB // bs
    assert info.devices == ["PNP0C80:00"]


def test_big_machine_aggregated(tmp_path: Path) -> None:
    """big-16t: 131,072 boot blocks plus a 1 TiB device, 8192 more blocks."""
    m = machine("big-16t")
    m.device_add(1 << 40, 2, id="d1")
    mm = machine_map(m, title="big-16t")
    assert len(mm.blocks) == 131072 + 8192
    _fig, info = figure(mm)
    assert sum(info.blocks_per_category.values()) == len(mm.blocks)
    assert info.blocks_per_category["offline"] == 8192
    assert info.block_artists < 200  # runs, not one artist per block
    assert info.bands == ["node 0", "node 1", "node 2", "node 3"]
    # the device's memmap lives in node 2's boot memory: one merged arrow
    assert len(mm.deps) <= 4 and all(d.kinds == ("memmap",) for d in mm.deps)
    text = text_map(mm, width=80)
    rows = [ln for ln in text.splitlines() if re.match(r"node\d +\|", ln)]
    assert len(rows) == 4 and all(len(r) == len(rows[0]) for r in rows)
    assert "." in rows[2] and "N" in rows[0]
    save_map(mm, str(tmp_path / "big.svg"))
    assert drawn_blocks(svg_ids(tmp_path / "big.svg")) == info.blocks_per_category


def test_100k_mixed_blocks_aggregate(tmp_path: Path) -> None:
    """100,000 blocks whose states alternate: counted per column, nothing lost."""
    states = [("online", ("Normal",)), ("online", ("Movable",)), ("offline", None)]
    blocks = [
        MapBlock(i, i << 27, 1 << 27, *states[(i * 7) % 3 if i > 30000 else 0], i // 50000, None)
        for i in range(100000)
    ]
    mm = MemoryMap("mixed", 1 << 27, blocks, [], [], [0, 1])
    info = save_map(mm, str(tmp_path / "mixed.svg"), columns=400)
    assert info.aggregated
    assert info.blocks_per_category == mm.category_counts()
    assert info.block_artists <= 2 * 400 * 3
    assert drawn_blocks(svg_ids(tmp_path / "mixed.svg")) == mm.category_counts()
    text = text_map(mm, width=60)
    assert "up to" in text and "blocks: the majority" in text


def test_sysfs_reader_on_simulated_machine(seed_maps: tuple[MemoryMap, MemoryMap]) -> None:
    m = machine("seed")
    m.device_add(512 * MiB, 1, id="dimm1", addr=GiB)
    mm = read_memory_map(SysfsRoot(m.sysfs, "seed"))
    assert [b.index for b in mm.blocks] == list(range(12))
    assert mm.category_counts() == {"online": 8, "offline": 4}  # 3.8: no valid_zones
    assert mm.devices[0].blocks == (8, 9, 10, 11)
    assert mm.contents is None and mm.deps == []


# -- the command ---------------------------------------------------------------------------


def test_cli_text_and_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.svg"
    assert main(["map", "--machine", "seed", "--scenario", "seed", "-o", str(out), "--text"]) == 0
    text = capsys.readouterr().out
    assert "memory9 -> memory8: page_cgroup" in text and "legend:" in text
    assert "dep:9-9:8:page_cgroup:arrow" in svg_ids(out)


def test_cli_sysroot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snaps = real_snapshots()
    if not snaps:
        pytest.skip("no captured trees")
    write_tree(next(iter(snaps.values())), str(tmp_path / "root"))
    assert main(["map", "--sysroot", str(tmp_path / "root"), "-o", str(tmp_path / "m.png")]) == 0
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["map", "-s", str(tmp_path / "nope")]) == 1
    assert "no such" in capsys.readouterr().err.lower()
    assert main(["map", "-s", str(tmp_path / "root"), "-o", str(tmp_path / "m.jpg")]) == 1


def test_list_does_not_import_matplotlib() -> None:
    import subprocess

    code = (
        "import sys; from memhp.cli.main import build_parser; build_parser('list'); "
        "import memhp.cli.cmd_map; print('matplotlib' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


def test_kernel_pages_scenario_shows_run_time_allocations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README picture: the kernel's run-time allocations are kinds of their own in
    hot-added memory onlined to ZONE_NORMAL on the node with the CPUs."""
    from memhp.viz.demo import kernel_pages_map

    m = kernel_pages_map()
    assert m.contents is not None
    # the slab stole one 4 MiB block of memory32; the file's pages take the rest
    assert m.contents[32].pages == {"free": 730, "runtime_slab": 294, "movable": 31744}
    assert m.contents[33].pages == {"movable": 32768}
    assert all("runtime_slab" not in m.contents[b].pages for b in range(33, 40))
    assert "slab" not in m.contents[32].pages  # boot slab stays its own kind
    out = tmp_path / "k.png"
    rc = main(["map", "--machine", "qemu-linux-6.1", "--scenario", "kernel-pages", "-o", str(out)])
    assert rc == 0 and out.stat().st_size > 0
    assert capsys.readouterr().out == (
        f"{out}: 16 blocks (7 online:DMA32, 8 online:Normal, 1 online:several)\n"
    )


def test_readme_kernel_pages_command_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's `memhp map ... -o docs/map-kernel-pages.png` line runs as written
    (from a checkout's top directory: here a copy with a docs/ directory)."""
    import shlex

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [line] = [ln.strip() for ln in readme.splitlines() if "--scenario kernel-pages" in ln]
    argv = shlex.split(line)
    assert argv[:2] == ["memhp", "map"] and argv[-1] == "docs/map-kernel-pages.png"
    (tmp_path / "docs").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(argv[1:]) == 0
    assert (tmp_path / "docs/map-kernel-pages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.startswith("docs/map-kernel-pages.png: 16 blocks (")
