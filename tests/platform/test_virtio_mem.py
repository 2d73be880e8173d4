"""virtio-mem end to end on the model: QEMU 7.2's device rules (memhp.platform.virtio_mem),
the 6.1 driver (memhp.kernel.drivers.virtio), its sysfs and the QMP commands."""

from __future__ import annotations

import pytest

from memhp.abi.layout import MiB
from memhp.abi.paths import block_dir
from memhp.kernel.drivers.virtio.virtio_mem import Sbm
from memhp.kernel.machine import MachineError
from memhp.kernel.machine_virtio_mem import VirtioMemSpec
from memhp.sim.machine import PlatformError, SimMachine
from memhp.sim.qmp_commands import QMPCommands
from memhp.sim.qmp_protocol import QMPError
from tests.support.sim import machine, pin

GiB = 1024 * MiB


def vm_machine(requested: int = 0, block_size: int | None = None, node: int = 1) -> SimMachine:
    """qemu-linux-6.1 with a 2 GiB virtio-mem device (vm0) on the command line."""
    spec = machine("qemu-linux-6.1")
    vm = VirtioMemSpec("vm0", "mem0", 2 * GiB, node, requested, block_size, None)
    object.__setattr__(spec, "virtio_mem", (vm,))
    return SimMachine(spec)


def blocks(m: SimMachine) -> list[int]:
    return sorted(b for b in m.kernel.memory.blocks if b >= 32)


def test_plug_at_boot_sbm_adds_whole_blocks_partially_plugged() -> None:
    m = vm_machine(300 * MiB)
    vm = m.kernel.virtio.mem.vms[0]
    assert vm.in_sbm and vm.sb_size == 2 * MiB and vm.sbs_per_mb == 64
    assert blocks(m) == [32, 33, 34]
    assert vm.mb_state == {32: Sbm.OFFLINE, 33: Sbm.OFFLINE, 34: Sbm.OFFLINE_PARTIAL}
    assert m.virtio.devices[0].size == 300 * MiB
    # add_memory_driver_managed(): no firmware memmap entry for the range
    assert not [e for e in m.kernel.fwmap.entries if 4 * GiB <= e.start < 6 * GiB]
    details = [e.detail for e in m.kernel.events if e.what == "virtio_mem"]
    assert details[:3] == [
        "virtio_mem virtio0: start address: 0x100000000",
        "virtio_mem virtio0: region size: 0x80000000",
        "virtio_mem virtio0: device block size: 0x200000",
    ]


def test_online_partial_block_keeps_unplugged_subblocks_out_of_the_buddy() -> None:
    m = vm_machine(300 * MiB)
    for b in (32, 33, 34):
        m.sysfs.write(f"{block_dir(b)}/state", b"online_movable")
    vm = m.kernel.virtio.mem.vms[0]
    assert vm.mb_state == {32: Sbm.MOVABLE, 33: Sbm.MOVABLE, 34: Sbm.MOVABLE_PARTIAL}
    assert vm.fake_offline[34].nr_pages == (128 - 44) * 256


def _marks(m: SimMachine) -> tuple[int, int, int, int]:
    m.kernel.pa.ensure_watermarks()
    zone = m.kernel.pgdats[1].node_zones[-1]  # node 1's ZONE_MOVABLE
    return zone.managed_pages, zone.watermark_min, zone.watermark_high, zone.pcp_managed


def test_fake_offline_changes_managed_pages_but_not_the_watermarks() -> None:
    """adjust_managed_page_count() without init_per_zone_wmark_min(): an unplug or
    plug of online sub-blocks leaves the watermarks, the pagesets' batch and the
    vmstat threshold those of the last online/offline (virtio-task-memoryless-node
    on 6.12: Movable min 64 after an unplug to 200M, not 50); the unplugged
    sub-blocks of a block being onlined never count (online_pages_range())."""
    m = vm_machine(300 * MiB)
    for b in (32, 33, 34):
        m.sysfs.write(f"{block_dir(b)}/state", b"online_movable")
    managed, wmin, high, pcp = _marks(m)
    assert managed == pcp == (128 + 128 + 44) * 256  # memory34's 84 sub-blocks never counted
    m.virtio_mem_resize("vm0", 260 * MiB)  # memory34's online sub-blocks fake-offlined
    assert sorted(m.kernel.memory.blocks)[-1] == 34
    assert _marks(m) == (260 * 256, wmin, high, pcp)
    m.virtio_mem_resize("vm0", 280 * MiB)  # and plugged again (fake-online)
    assert _marks(m) == (280 * 256, wmin, high, pcp)
    zoneinfo = m.sysfs.read("/proc/zoneinfo").decode()
    assert f"managed  {280 * 256}" in zoneinfo and f"min      {wmin}" in zoneinfo
    m.sysfs.write(f"{block_dir(33)}/state", b"offline")  # the next computation
    managed, wmin2, _, pcp = _marks(m)
    assert managed == pcp == (280 - 128) * 256 and wmin2 < wmin


def test_unplug_to_zero_removes_all_blocks_and_reports_the_size() -> None:
    m = vm_machine(300 * MiB)
    for b in (32, 33, 34):
        m.sysfs.write(f"{block_dir(b)}/state", b"online_movable")
    m.virtio_mem_resize("vm0", 0)
    assert blocks(m) == []
    assert m.virtio.devices[0].size == 0
    ev = m.platform.events[-1]
    assert (ev.event, ev.data) == (
        "MEMORY_DEVICE_SIZE_CHANGE",
        {"id": "vm0", "size": 0, "qom-path": "/machine/peripheral/vm0"},
    )


def test_unmovable_pages_hold_subblocks_and_the_retry_timer_backs_off() -> None:
    m = vm_machine(256 * MiB)
    for b in (32, 33):
        m.sysfs.write(f"{block_dir(b)}/state", b"online_kernel")
    pin(m, 33, pages=1000)  # 1000 pages: the two lowest sub-blocks of memory33
    m.virtio_mem_resize("vm0", 0)
    vm = m.kernel.virtio.mem.vms[0]
    assert blocks(m) == [33]
    assert vm.mb_state == {32: Sbm.UNUSED, 33: Sbm.KERNEL_PARTIAL}
    assert m.virtio.devices[0].size == 4 * MiB
    assert vm.retry_at == m.kernel.clock + 50.0
    m.advance(50.0)
    assert vm.retry_timer_ms == 100000 and m.virtio.devices[0].size == 4 * MiB
    for _ in range(4):
        m.advance(300.0)
    assert vm.retry_timer_ms == 300000


def test_big_block_mode() -> None:
    m = vm_machine(512 * MiB, block_size=256 * MiB)
    vm = m.kernel.virtio.mem.vms[0]
    assert not vm.in_sbm and vm.bb_size == 256 * MiB
    assert blocks(m) == [32, 33, 34, 35]
    m.virtio_mem_resize("vm0", 256 * MiB)
    assert blocks(m) == [32, 33]


def test_qom_get_of_a_pc_dimm() -> None:
    """qom-get of a plugged DIMM: its qdev properties and DeviceState's."""
    q = QMPCommands(vm_machine(0)).table()
    q["object-add"]({"qom-type": "memory-backend-ram", "id": "md", "size": 128 * MiB})
    q["device_add"]({"driver": "pc-dimm", "id": "d0", "memdev": "md", "node": 1})
    get = q["qom-get"]
    assert get({"path": "d0", "property": "memdev"}) == "/objects/md"
    assert get({"path": "d0", "property": "slot"}) == 0
    assert get({"path": "d0", "property": "size"}) == 128 * MiB
    assert get({"path": "/machine/peripheral/d0", "property": "hotplugged"}) is True
    with pytest.raises(QMPError, match=r"Property 'pc-dimm.requested-size' not found"):
        get({"path": "d0", "property": "requested-size"})


def test_qemu_rules_and_qmp() -> None:
    m = vm_machine(0)
    q = QMPCommands(m).table()
    assert q["qom-get"]({"path": "vm0", "property": "size"}) == 0
    # DeviceState's properties (QEMU 7.2 under the bench answered true for hotpluggable)
    assert q["qom-get"]({"path": "/machine/peripheral/vm0", "property": "hotpluggable"})
    assert q["qom-get"]({"path": "vm0", "property": "hotplugged"}) is False  # (-device)
    with pytest.raises(QMPError, match=r"Property 'virtio-mem-pci.bogus' not found"):
        q["qom-get"]({"path": "vm0", "property": "bogus"})
    with pytest.raises(QMPError, match=r"has to be multiples of 'block-size' \(0x200000\)"):
        q["qom-set"]({"path": "vm0", "property": "requested-size", "value": 3 * MiB})
    with pytest.raises(QMPError) as e:
        q["device_del"]({"id": "vm0"})
    assert e.value.desc == "virtio based memory devices cannot be unplugged."
    q["object-add"]({"qom-type": "memory-backend-ram", "id": "mem1", "size": GiB})
    with pytest.raises(QMPError) as e:
        q["device_add"]({"driver": "virtio-mem-pci", "id": "v1", "memdev": "mem1", "node": 5})
    assert e.value.desc == (
        "'node' property has value '5', which exceedsthe number of numa nodes: 2"
    )
    q["device_add"]({"driver": "virtio-mem-pci", "id": "v1", "memdev": "mem1"})
    devs = q["query-memory-devices"]({})
    assert isinstance(devs, list)
    assert [d["data"]["memaddr"] for d in devs] == [4 * GiB, 6 * GiB]
    assert m.sysfs.listdir("/sys/bus/virtio/devices") == ["virtio0", "virtio1"]
    assert m.sysfs.read("/sys/bus/virtio/devices/virtio1/modalias") == (
        b"virtio:d00000018v00001AF4\n"
    )
    assert m.sysfs.readlink("/sys/bus/virtio/devices/virtio1") == (
        "../../../devices/pci0000:00/0000:00:03.0/virtio1"
    )
    with pytest.raises(PlatformError):
        m.virtio_mem_resize("nope", 0)


def test_bad_machine_section_is_one_clear_error() -> None:
    spec = machine("qemu-linux-6.1")
    vm = VirtioMemSpec("vm0", "mem0", 2 * GiB, 7, 0, None, None)
    object.__setattr__(spec, "virtio_mem", (vm,))
    with pytest.raises(MachineError, match="exceedsthe number of numa nodes: 2"):
        SimMachine(spec)
