"""Machine descriptions: valid examples load, bad ones name the key and the problem."""

from __future__ import annotations

import os
import tomllib

import pytest

from memhp.kernel.machine import MachineError, parse_machine
from memhp.sim.config import load_machine
from tests.conftest import ROOT

BASE = {
    "node": [
        {"id": 0, "cpus": [0], "memory": [["0", "1G"]]},
        {"id": 1, "cpus": [], "hotplug": [["1G", "2G"]]},
    ],
    "hotplug": {"slots": 2, "maxmem": "2G"},
}


def with_(**kw: object) -> dict[str, object]:
    d: dict[str, object] = dict(BASE)
    d.update(kw)
    return d


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(ROOT, "machines"))))
def test_shipped_machines_load(name: str) -> None:
    spec = load_machine(os.path.join(ROOT, "machines", name))
    assert spec.boot_ram


@pytest.mark.parametrize(
    ("doc", "key", "words"),
    [
        (with_(profile="linux-9.9"), "profile", "unknown profile"),
        (with_(block_size="100M"), "block_size", "power of two"),
        (with_(block_size="lots"), "block_size", "expected a size"),
        (with_(auto_online_blocks="sometimes"), "auto_online_blocks", "expected one of"),
        (with_(memcg="yes"), "memcg", "true or false"),
        (with_(colour="blue"), "colour", "unknown key"),
        (with_(node=[]), "node", "at least one"),
        (
            with_(node=[{"id": 0, "cpus": [0], "memory": [["1G", "0"]]}]),
            "node[0].memory[0]",
            "empty range",
        ),
        (
            with_(node=[{"id": 0, "cpus": [0], "memory": [["0", "1G"]]}, {"id": 1, "cpus": [0]}]),
            "node[1].cpus",
            "two nodes",
        ),
        (with_(node=[{"id": 0, "cpus": [0, 0], "memory": [["0", "1G"]]}]), "node[0].cpus", "twice"),
        (
            with_(
                node=[
                    {
                        "id": 0,
                        "cpus": [0],
                        "memory": [["0", "1G"]],
                        "hotplug": [["0x40000001", "2G"]],
                    }
                ]
            ),
            "node[0].hotplug[0]",
            "aligned",
        ),
        (
            with_(
                node=[
                    {"id": 0, "cpus": [0], "memory": [["0", "1G"]]},
                    {"id": 0, "memory": [["1G", "2G"]]},
                ]
            ),
            "node",
            "duplicate",
        ),
        (
            with_(
                node=[
                    {"id": 0, "cpus": [0], "memory": [["0", "1G"]]},
                    {"id": 1, "memory": [["512M", "2G"]]},
                ]
            ),
            "node",
            "overlap",
        ),
        (
            with_(node=[{"id": 0, "cpus": [0], "memory": [["0", "1G"]], "distance": [10, 20, 30]}]),
            "node[0].distance",
            "expected 1",
        ),
        (
            with_(e820=[{"start": 0, "end": "0x3fffffff", "type": "Magic"}]),
            "e820[0].type",
            "unknown type",
        ),
        (with_(hotplug={"slots": -1}), "hotplug.slots", "0..256"),
        (with_(hotplug={"maxmem": "1M"}), "hotplug.maxmem", "smaller"),
        (with_(kernel={"imagesize": "1M"}), "kernel.imagesize", "unknown key"),
        (with_(kernel={"runtime_allocs": 3}), "kernel.runtime_allocs", "expected a table"),
        (
            with_(kernel={"runtime_allocs": {"speed": 1}}),
            "kernel.runtime_allocs.speed",
            "unknown key (known: enabled, rate, keep, seed)",
        ),
        (
            with_(kernel={"runtime_allocs": {"enabled": "yes"}}),
            "kernel.runtime_allocs.enabled",
            "expected true or false, got 'yes'",
        ),
        (
            with_(kernel={"runtime_allocs": {"rate": -1}}),
            "kernel.runtime_allocs.rate",
            "must be in [0, 1e+06], got -1",
        ),
        (
            with_(kernel={"runtime_allocs": {"keep": "half"}}),
            "kernel.runtime_allocs.keep",
            "expected a number, got 'half'",
        ),
        (
            with_(kernel={"runtime_allocs": {"keep": 1.5}}),
            "kernel.runtime_allocs.keep",
            "must be in [0, 1], got 1.5",
        ),
        (
            with_(kernel={"runtime_allocs": {"seed": -3}}),
            "kernel.runtime_allocs.seed",
            "expected an integer >= 0, got -3",
        ),
        (with_(node=[{"id": 0, "cpus": [], "memory": [["0", "1G"]]}]), "node", "CPUs"),
        (with_(kernel={"image_layout": [[0, 1]]}), "kernel.image_layout", "four [start, end]"),
        (
            with_(kernel={"image_layout": [[0, 8], [4, 16], [16, 32], [32, 64]]}),
            "kernel.image_layout[1]",
            "not overlapping",
        ),
        (
            with_(kernel={"image_layout": [[0, 8], [8, 16], "x", [32, 64]]}),
            "kernel.image_layout[2]",
            "expected [start, end]",
        ),
        (
            with_(kernel={"image_layout": [[0, 8], [8, 16], [16, 32], [32, "lots"]]}),
            "kernel.image_layout[3][1]",
            "expected a size",
        ),
        (
            with_(kernel={"image_layout": [[0, 8], [8, 16], [16, 32], [32, "2G"]]}),
            "kernel.image_layout",
            "do not fit",
        ),
    ],
)
def test_bad_machines(doc: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(MachineError) as ei:
        parse_machine(doc)
    assert ei.value.key == key
    assert words in ei.value.problem


def test_bad_file_errors_name_the_file(tmp_path: object) -> None:
    import pathlib

    d = pathlib.Path(str(tmp_path))
    (d / "bad.toml").write_text("node = [\n")
    with pytest.raises(MachineError) as ei:
        load_machine(str(d / "bad.toml"))
    assert "not valid TOML" in str(ei.value)
    (d / "b2.toml").write_text('block_size = "12M"\n[[node]]\ncpus=[0]\nmemory=[["0","1G"]]\n')
    with pytest.raises(MachineError) as ei:
        load_machine(str(d / "b2.toml"))
    assert str(ei.value).startswith("b2.toml: block_size:")
    with pytest.raises(MachineError):
        load_machine(str(d / "missing.toml"))
    assert tomllib  # the stdlib parser is what reads machine files


@pytest.mark.parametrize(
    ("boot", "hypervisor", "expected"),
    [
        ("1G", True, 128 << 20),  # below 64 GiB: MIN_MEMORY_BLOCK_SIZE
        ("64G", False, 2 << 30),  # bare metal: MAX_BLOCK_SIZE
        ("64G", True, 2 << 30),  # 64 GiB is 2 GiB-aligned
        ("65G", True, 1 << 30),  # the largest size the end of memory is aligned to
        ("64G+128M", True, 128 << 20),
    ],
)
def test_auto_block_size_is_probe_memory_block_size(
    boot: str, hypervisor: bool, expected: int
) -> None:
    from memhp.kernel.machine import parse_size

    end = sum(parse_size(p, "t") for p in boot.split("+"))
    doc = {
        "block_size": "auto",
        "hypervisor": hypervisor,
        "node": [{"id": 0, "cpus": [0], "memory": [[0, end]]}],
    }
    assert parse_machine(doc).block_size == expected


def test_qemu_pc_platform_derives_the_reference_guest() -> None:
    """platform = "qemu-pc" from the reference's command line gives its firmware view."""
    from tests.conftest import machine

    ref = machine("qemu-linux-6.1")
    doc = {
        "platform": "qemu-pc",
        "gbpages": False,
        "node": [
            {"id": 0, "cpus": [0, 1], "distance": [10, 20], "size": "1G"},
            {"id": 1, "cpus": [], "distance": [20, 10], "size": 0},
        ],
        "hotplug": {"slots": 4, "maxmem": "8G"},
        "kernel": {"image_size": "40M", "swiotlb": "64M", "boot_slab_per_node": "24M"},
    }
    spec = parse_machine(doc)
    assert spec.e820 == ref.e820
    assert [(n.id, n.memory, n.hotplug) for n in spec.nodes] == [
        (n.id, n.memory, n.hotplug) for n in ref.nodes
    ]


def test_qemu_pc_splits_memory_at_3g() -> None:
    spec = parse_machine(
        {"platform": "qemu-pc", "node": [{"id": 0, "cpus": [0], "size": "4G"},
                                         {"id": 1, "cpus": [1], "size": "2G"}],
         "hotplug": {"slots": 2, "maxmem": "16G"}}
    )  # fmt: skip
    assert spec.nodes[0].memory == ((0, 3 << 30), (4 << 30, 5 << 30))
    assert spec.nodes[1].memory == ((5 << 30, 7 << 30),)
    assert spec.nodes[1].hotplug == ((7 << 30, (7 << 30) + (10 << 30) + (2 << 30)),)
    assert any(e.type == "System RAM" and e.start == 4 << 30 for e in spec.e820)
    with pytest.raises(MachineError) as ei:
        parse_machine({"platform": "qemu-pc", "node": [{"id": 0, "cpus": [0], "memory": []}]})
    assert ei.value.key == "node[0].memory"
    with pytest.raises(MachineError) as ei:
        parse_machine({"platform": "sparc", "node": []})
    assert ei.value.key == "platform"


def test_runtime_allocs_knobs_reach_the_kernel() -> None:
    """[kernel.runtime_allocs] sets k.kalloc as QMP x-memhp-kernel-allocs would; the
    seed decides the background: same seed, same pages; rate 0 or off, none."""
    from memhp.sim.machine import SimMachine

    def kept_after(knobs: dict[str, object], seconds: float = 600.0) -> list[tuple[int, ...]]:
        doc = with_(kernel={"runtime_allocs": knobs})
        spec = parse_machine(doc)
        m = SimMachine(spec)
        ka = m.kernel.kalloc
        assert (ka.enabled, ka.rate_pages_per_s, ka.keep, ka.seed) == (
            knobs.get("enabled", True),
            float(knobs.get("rate", 64.0)),  # type: ignore[arg-type]
            float(knobs.get("keep", 0.0125)),  # type: ignore[arg-type]
            knobs.get("seed", 0),
        )
        m.kernel.clock += seconds
        ka.advance(m.kernel.clock)
        return [tuple(sorted(a.extents)) for a in ka.kept]

    assert parse_machine(BASE).runtime_allocs.enabled is True
    a = kept_after({"seed": 7, "rate": 64, "keep": 0.5})
    assert len(a) > 0
    assert kept_after({"seed": 7, "rate": 64, "keep": 0.5}) == a
    assert kept_after({"enabled": False, "rate": 64}) == []
    assert kept_after({"rate": 0}) == []


def test_image_layout_places_the_kernel_resources() -> None:
    """[kernel] image_layout moves "Kernel code" ... "Kernel bss" in /proc/iomem (the
    bench gives the layout of the build it boots); without it the profile's build."""
    from memhp.sim.machine import SimMachine

    def image_lines(doc: dict[str, object]) -> list[str]:
        m = SimMachine(parse_machine(doc))
        text = m.sysfs.read("/proc/iomem").decode()
        return [ln.strip() for ln in text.splitlines() if "Kernel" in ln]

    layout = [["0", "0x200000"], ["0x400000", "0x500000"], ["0x600000", "0x600800"],
              ["0x700000", "0x800000"]]  # fmt: skip
    lines = image_lines(with_(kernel={"image_layout": layout}))
    assert lines == [
        "01000000-011fffff : Kernel code",
        "01400000-014fffff : Kernel rodata",
        "01600000-016007ff : Kernel data",
        "01700000-017fffff : Kernel bss",
    ]
    default = image_lines(dict(BASE))
    assert len(default) == 4 and default != lines
