"""kernel/resource.c in the model: the iomem tree and /proc/iomem as 6.1 prints it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from memhp.abi.layout import MiB
from memhp.bench.compare import iomem_memory_lines
from memhp.kernel.resource import IORESOURCE_BUSY, IORESOURCE_SYSTEM_RAM, Iomem, Resource
from memhp.sim.machine import SimMachine
from tests.support.sim import machine

REPO = Path(__file__).resolve().parents[2]


def test_insert_adopts_contained_resources_and_render_indents() -> None:
    io = Iomem()
    io.insert_resource(Resource(0x1000000, 0x1FFFFFF, "Kernel code"))
    io.insert_resource(Resource(0x100000, 0x3FFFFFFF, "System RAM", IORESOURCE_SYSTEM_RAM))
    assert io.render() == "00100000-3fffffff : System RAM\n  01000000-01ffffff : Kernel code\n"
    assert io.render(show_addresses=False) == (
        "00000000-00000000 : System RAM\n  00000000-00000000 : Kernel code\n"
    )


def test_request_region_descends_into_non_busy_and_fails_on_busy() -> None:
    io = Iomem()
    parent = io.request_region(0x100000000, 1 << 32, "virtio0", IORESOURCE_SYSTEM_RAM)
    assert parent is not None and parent.busy
    assert io.request_region(0x100000000, 128 * MiB, "x", 0) is None  # busy parent
    parent.flags &= ~IORESOURCE_BUSY
    child = io.register_memory_resource(0x100000000, 128 * MiB, "System RAM (virtio_mem)")
    assert child is not None and child.parent is parent
    io.release_mem_region_adjustable(0x100000000, 128 * MiB)
    assert parent.children == []


def test_release_adjustable_splits_a_range() -> None:
    io = Iomem()
    io.register_memory_resource(0x100000000, 512 * MiB, "System RAM")
    io.release_mem_region_adjustable(0x108000000, 128 * MiB)
    assert io.render() == ("100000000-107ffffff : System RAM\n110000000-11fffffff : System RAM\n")


def _real_boot_iomem(name: str) -> str:
    with gzip.open(REPO / "tests/data/real/scenarios" / name) as f:
        rec = json.loads(f.read())
    return str(rec["steps"]["boot"]["snapshot"]["/proc/iomem"]["value"])


def test_boot_iomem_matches_real_6_1_and_6_12() -> None:
    m = SimMachine(machine("qemu-linux-6.1"))
    model = m.sysfs.read("/proc/iomem").decode()
    assert iomem_memory_lines(model) == iomem_memory_lines(
        _real_boot_iomem("hotadd-memoryless-node.json.gz")
    )
    assert "01000000-01e01d31 : Kernel code" in model
    m12 = SimMachine(machine("qemu-linux-6.12"))
    assert iomem_memory_lines(m12.sysfs.read("/proc/iomem").decode()) == iomem_memory_lines(
        _real_boot_iomem("hotadd-memoryless-node@6.12.json.gz")
    )


def test_filter_keeps_memory_lines_and_rebases_the_kernel_image() -> None:
    text = (
        "00100000-3ffdffff : System RAM\n"
        "  2d800000-2e601d31 : Kernel code\n"
        "40000000-febfffff : PCI Bus 0000:00\n"
        "  febec000-febeffff : 0000:00:02.0\n"
        "100000000-1ffffffff : virtio0\n"
        "  100000000-107ffffff : System RAM (virtio_mem)\n"
    )
    assert iomem_memory_lines(text) == (
        "00100000-3ffdffff : System RAM\n"
        "  +0-+e01d31 : Kernel code\n"
        "100000000-1ffffffff : virtio0\n"
        "  100000000-107ffffff : System RAM (virtio_mem)\n"
    )


def test_hot_add_and_virtio_mem_resources() -> None:
    m = SimMachine(machine("virtio-mem"))
    m.virtio.devices[0].set_requested_size(200 * MiB)
    text = m.sysfs.read("/proc/iomem").decode()
    # two memory blocks added one by one, merged (MHP_MERGE_RESOURCE), as real 6.1 shows
    assert text.endswith(
        "100000000-1ffffffff : virtio0\n"
        "  100000000-10fffffff : System RAM (virtio_mem)\n"
        "fd00000000-ffffffffff : Reserved\n"
    )
    # unplugging the first block splits the merged resource (release_mem_region_adjustable)
    m.kernel.iomem.release_mem_region_adjustable(0x100000000, 128 * MiB)
    assert (
        m.sysfs.read("/proc/iomem")
        .decode()
        .endswith(
            "100000000-1ffffffff : virtio0\n"
            "  108000000-10fffffff : System RAM (virtio_mem)\n"
            "fd00000000-ffffffffff : Reserved\n"
        )
    )
    m.kernel.iomem.register_memory_resource(0x100000000, 128 * MiB, "System RAM (virtio_mem)", True)
    assert (
        m.sysfs.read("/proc/iomem")
        .decode()
        .endswith(
            "  100000000-10fffffff : System RAM (virtio_mem)\nfd00000000-ffffffffff : Reserved\n"
        )
    )
    m.virtio.devices[0].set_requested_size(0)
    assert "virtio_mem)" not in m.sysfs.read("/proc/iomem").decode()
