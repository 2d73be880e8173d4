"""The bench's virtio-mem support without QEMU: the QEMU command line from the machine
file, the guest's modules, the actions' parsing, the event rule and the compared paths."""

from __future__ import annotations

import os

import pytest

from memhp.abi.fs import Kind
from memhp.abi.tree import Entry
from memhp.bench.actions import ScenarioError
from memhp.bench.actions_virtio import Dmesg, Qmp, VirtioMemAdd, VirtioMemResize
from memhp.bench.compare import in_scope, normalise
from memhp.bench.initramfs import VIRTIO_MEM_MODULES
from memhp.bench.runner import model_driver
from memhp.bench.scenario import load_scenario, parse_scenario
from memhp.bench.virtio import comparable_events
from memhp.bench.vm import GuestVM, virtio_mem_args
from tests.conftest import ROOT

SCENARIOS = os.path.join(ROOT, "tests", "scenarios")


def _doc(*steps: dict[str, object]) -> dict[str, object]:
    return {"machine": "machines/qemu-linux-6.1.toml", "step": list(steps)}


def test_devices_on_the_qemu_command_line() -> None:
    sc = load_scenario(os.path.join(SCENARIOS, "virtio-bbm.toml"))
    cfg = sc.vm_config()
    assert virtio_mem_args(cfg.virtio_mem) == [
        "-object",
        "memory-backend-ram,id=mem-vm0,size=2G",
        "-device",
        "virtio-mem-pci,id=vm0,memdev=mem-vm0,node=1,requested-size=0,block-size=512M",
    ]
    assert GuestVM(cfg).modules == VIRTIO_MEM_MODULES
    plain = load_scenario(os.path.join(SCENARIOS, "hotadd-node0-online.toml")).vm_config()
    assert GuestVM(plain).modules == ()
    hot = load_scenario(os.path.join(SCENARIOS, "virtio-hotplug-device.toml")).vm_config()
    assert not hot.virtio_mem and hot.virtio_mem_driver
    assert GuestVM(hot).modules == VIRTIO_MEM_MODULES


def test_actions_parse() -> None:
    sc = parse_scenario(
        _doc(
            {"virtio_mem_resize": {"id": "vm0", "size": "512M"}, "expect": "512M"},
            {"virtio_mem_resize": {"id": "vm0", "size": ["1G", "0"]}, "gap": 0.5},
            {"virtio_mem_add": {"id": "vm1", "size": "1G", "node": 1, "block_size": "4M"}},
            {"qmp": "qom-get", "arguments": {"path": "vm0", "property": "size"}},
        ),
        os.path.join(SCENARIOS, "x.toml"),
    )
    a, b, c, d = (s.action for s in sc.steps)
    assert isinstance(a, VirtioMemResize) and a.sizes == (512 << 20,) and a.expect == ("512M",)
    assert isinstance(b, VirtioMemResize) and b.sizes == (1 << 30, 0) and b.gap == 0.5
    assert b.describe() == "qom-set vm0 requested-size 1G then 0"
    assert isinstance(c, VirtioMemAdd) and (c.node, c.block_size, c.requested_size) == (
        1,
        4 << 20,
        0,
    )
    assert isinstance(d, Qmp) and dict(d.arguments) == {"path": "vm0", "property": "size"}
    assert [s.name for s in sc.steps] == [
        "virtio_mem_resize-vm0=512M",
        "virtio_mem_resize-vm0=1G,0",
        "virtio_mem_add-vm1",
        "qmp-qom-get-vm0-size",
    ]
    assert sc.steps[0].capture and not sc.steps[3].capture


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"virtio_mem_resize": {"id": "vm0"}}, "expected a table {id, size}"),
        ({"virtio_mem_resize": {"id": "vm0", "size": "1Q"}}, "size"),
        ({"virtio_mem_add": {"id": "vm1"}}, "virtio_mem_add.size: missing"),
        ({"virtio_mem_add": {"id": "vm1", "size": "1G", "x": 1}}, "virtio_mem_add.x: unknown"),
        ({"qmp": "qom-get", "arguments": 3}, "arguments: expected a table"),
    ],
)
def test_action_errors(step: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(_doc(step), "x.toml")


def test_throttled_size_change_events() -> None:
    """QEMU rate-limits MEMORY_DEVICE_SIZE_CHANGE per qom-path: first and last compared."""

    def ev(path: str, size: int) -> str:
        return f'MEMORY_DEVICE_SIZE_CHANGE {{"id": "x", "qom-path": "{path}", "size": {size}}}'

    a, b = "/machine/peripheral/vm0", "/machine/peripheral/vm1"
    evs = [ev(a, 1), ev(b, 5), ev(a, 2), ev(a, 3), "DEVICE_DELETED {}", ev(b, 6), ev(b, 7)]
    assert comparable_events(evs) == [ev(a, 1), ev(b, 5), ev(a, 3), "DEVICE_DELETED {}", ev(b, 7)]
    assert comparable_events([ev(a, 1)]) == [ev(a, 1)]


def test_virtio_paths_compared() -> None:
    assert in_scope("/sys/bus/virtio/devices/virtio0")
    assert in_scope("/sys/bus/virtio/drivers/virtio_mem/virtio0")
    assert not in_scope("/sys/bus/virtio/drivers/virtio_mem/bind")
    assert not in_scope("/sys/bus/virtio/drivers/virtio_mem/module")
    assert in_scope("/sys/devices/pci0000:00/0000:00:02.0/virtio0/features")
    assert not in_scope("/sys/devices/pci0000:00/0000:00:02.0/vendor")


def test_the_bench_9p_shares_are_not_compared() -> None:
    """A guest running Python has the bench's 9p shares as virtio devices too."""
    pci = "/sys/devices/pci0000:00"
    snap = {
        "/sys/bus/virtio/devices/virtio0": Entry(Kind.LINK, target="../virtio0"),
        "/sys/bus/virtio/devices/virtio1": Entry(Kind.LINK, target="../virtio1"),
        f"{pci}/0000:00:02.0/virtio0": Entry(Kind.DIR),
        f"{pci}/0000:00:02.0/virtio0/driver": Entry(
            Kind.LINK, target="../../../../bus/virtio/drivers/virtio_mem"
        ),
        f"{pci}/0000:00:03.0/virtio1": Entry(Kind.DIR),
        f"{pci}/0000:00:03.0/virtio1/driver": Entry(
            Kind.LINK, target="../../../../bus/virtio/drivers/9pnet_virtio"
        ),
    }
    assert sorted(normalise(snap)) == [
        "/sys/bus/virtio/devices/virtio0",
        f"{pci}/0000:00:02.0/virtio0",
        f"{pci}/0000:00:02.0/virtio0/driver",
    ]


def test_dmesg_parses() -> None:
    sc = parse_scenario(_doc({"dmesg": "virtio_mem virtio0"}), "x.toml")
    act = sc.steps[0].action
    assert isinstance(act, Dmesg) and act.pattern == "virtio_mem virtio0"
    assert not sc.steps[0].capture
    with pytest.raises(ScenarioError, match="dmesg: expected the text"):
        parse_scenario(_doc({"dmesg": ""}), "x.toml")


def test_a_wait_fires_the_retry_timer_on_the_model() -> None:
    """The poisoned sub-block keeps 2M plugged; the driver retries after 50 s, then
    after 100 s (virtio_mem_timer_expired doubles the interval), in simulated time."""
    sc = load_scenario(os.path.join(SCENARIOS, "virtio-unplug-hwpoison.toml"))
    d = model_driver(sc)
    for st in sc.steps:
        st.action.run(d)
    vm = d.m.kernel.virtio.mem.vms[0]
    assert vm.plugged_size == 2 << 20 and vm.retry_at is not None
    assert vm.retry_timer_ms == 50000
    d.sleep(45)  # the resize waited settle = 4 s already
    assert vm.retry_timer_ms == 50000
    d.sleep(2)
    assert vm.retry_timer_ms == 100000 and vm.plugged_size == 2 << 20
    lines = d.kernel_messages("virtio_mem virtio0: requested size")
    assert lines == [
        "virtio_mem virtio0: requested size: 0x10000000",
        "virtio_mem virtio0: requested size: 0x0",
    ]
