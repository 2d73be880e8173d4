"""Proximity domains and node ids: acpi_numa_init() (drivers/acpi/numa/srat.c),
acpi_numa_slit_init(), and memory_add_physaddr_to_nid() (arch/x86/mm/numa.c).

The real-kernel side of these rules is the recorded scenario
tests/scenarios/nodes-without-srat-entry.toml (Linux 6.1 and 6.12 under QEMU)."""

from __future__ import annotations

from typing import Any

import pytest

from memhp.abi.layout import GiB, MiB
from memhp.bench.scenario import ScenarioError
from memhp.bench.scenario_vm import vm_config_for
from memhp.kernel.arch.x86.mm.numa import memory_add_physaddr_to_nid
from memhp.kernel.drivers.acpi.numa.srat import NUMA_NO_NODE, acpi_numa_init
from memhp.kernel.machine import MachineSpec, parse_machine
from memhp.sim.machine import SimMachine
from tests.conftest import machine

NODE = "/sys/devices/system/node"
MEM = "/sys/devices/system/memory"


def qemu_pc(nodes: list[dict[str, Any]], **kw: Any) -> MachineSpec:
    """A qemu-pc machine: 4 slots, maxmem 4G, Linux 6.1."""
    doc: dict[str, Any] = {
        "name": "t",
        "platform": "qemu-pc",
        "profile": "linux-6.1",
        "gbpages": False,
        "node": nodes,
        "hotplug": {"slots": 4, "maxmem": "4G"},
    }
    doc.update(kw)
    return parse_machine(doc)


#: QEMU nodes 0 (CPUs, 1G), 1 (nothing), 2 (512M, no CPUs), 3 (nothing: the last,
#: it gets the device memory region); a SLIT whose rows tell the domains apart.
HOLES = [
    {"id": 0, "cpus": [0, 1], "size": "1G", "distance": [10, 21, 22, 23]},
    {"id": 1, "cpus": [], "size": "0", "distance": [21, 10, 24, 25]},
    {"id": 2, "cpus": [], "size": "512M", "distance": [22, 24, 10, 26]},
    {"id": 3, "cpus": [], "size": "0", "distance": [23, 25, 26, 10]},
]


def read(m: SimMachine, path: str) -> str:
    return m.sysfs.read(path).decode()


def test_domains_are_numbered_in_srat_order_and_one_without_entry_is_no_node() -> None:
    spec = qemu_pc(HOLES)
    srat, view = acpi_numa_init(spec)
    assert srat.pxm_to_node_map == {0: 0, 2: 1, 3: 2}
    assert srat.pxm_to_node(1) == NUMA_NO_NODE and srat.pxm_to_node(7) == NUMA_NO_NODE
    assert [n.id for n in view.nodes] == [0, 1, 2]
    # acpi_numa_slit_init(): the rows and columns of the mapped domains only
    assert [n.distance for n in view.nodes] == [(10, 22, 23), (22, 10, 26), (23, 26, 10)]
    assert view.nodes[1].memory == spec.nodes[2].memory and not view.nodes[1].cpus
    assert view.nodes[2].hotplug == spec.nodes[3].hotplug
    m = SimMachine(spec)
    assert read(m, f"{NODE}/possible") == "0-2\n"
    assert read(m, f"{NODE}/online") == "0-1\n"
    assert read(m, f"{NODE}/has_memory") == "0-1\n"
    assert read(m, f"{NODE}/node1/distance") == "22 10\n"  # online nodes only
    assert m.kernel.firmware_spec is spec


def test_identity_leaves_the_machine_as_described() -> None:
    spec = machine("qemu-linux-6.1")
    srat, view = acpi_numa_init(spec)
    assert view is spec and srat.identity
    assert srat.pxm_to_node_map == {0: 0, 1: 1}


def test_processor_entries_come_first_in_cpu_order() -> None:
    """Domain 1 holds CPU 0: acpi_parse_processor_affinity() meets it first."""
    spec = parse_machine(
        {
            "name": "t",
            "profile": "linux-6.1",
            "node": [
                {"id": 0, "cpus": [1], "memory": [["0", "1G"]]},
                {"id": 1, "cpus": [0], "memory": [["1G", "2G"]]},
            ],
        }
    )
    srat, view = acpi_numa_init(spec)
    assert srat.pxm_to_node_map == {1: 0, 0: 1}
    assert [(n.id, n.cpus, n.memory) for n in view.nodes] == [
        (0, (0,), ((GiB, 2 * GiB),)),
        (1, (1,), ((0, GiB),)),
    ]
    m = SimMachine(spec)
    assert read(m, f"{NODE}/node0/cpulist") == "0\n"
    assert "memory8" in m.sysfs.listdir(f"{NODE}/node0")  # 1G-2G: block 8 of 128M


def test_dimms_follow_pxm_to_node_and_fall_back_to_the_first_entry() -> None:
    m = SimMachine(qemu_pc(HOLES))
    k = m.kernel
    dimms = [m.device_add(512 * MiB, pxm, id=f"d{pxm}") for pxm in (2, 3, 1)]
    bs = k.memory.block_size
    nids = [k.memory.blocks[d.addr // bs].nid for d in dimms]
    assert nids == [1, 2, 0]  # _PXM 2, 3, and 1 (no SRAT entry: the fallback)
    assert [d.node for d in k.acpi.devices if d.present] == [1, 2, NUMA_NO_NODE]
    vm = m.virtio_mem_add("vm1", GiB, node=1, requested_size=128 * MiB)
    assert k.virtio.mem.vms[0].nid == 0
    assert any(e.detail.endswith("nid: 0") for e in k.events), "virtio_mem logs its nid"
    assert vm.node == 1  # QEMU's own view is unchanged
    assert read(m, f"{NODE}/possible") == "0-2\n"


def test_memory_add_physaddr_to_nid_uses_numa_meminfo() -> None:
    """Boot memory: its node; the device memory region (above max_pfn, moved to
    numa_reserved_meminfo) and holes: numa_meminfo.blk[0].nid."""
    k = SimMachine(qemu_pc(HOLES)).kernel
    assert memory_add_physaddr_to_nid(k, 0x1000) == 0
    assert memory_add_physaddr_to_nid(k, GiB + 4096) == 1  # domain 2's 512M
    window = k.spec.nodes[2].hotplug[0][0]
    assert memory_add_physaddr_to_nid(k, window) == 0
    # A hotpluggable SRAT range holding boot memory stays in numa_meminfo (movable_node)
    spec = parse_machine(
        {
            "name": "t",
            "profile": "linux-6.1",
            "node": [
                {"id": 0, "cpus": [0], "memory": [["0", "1G"]]},
                {"id": 1, "memory": [["1G", "2G"]], "hotplug": [["1G", "4G"]]},
            ],
        }
    )
    k2 = SimMachine(spec).kernel
    assert memory_add_physaddr_to_nid(k2, GiB + 4096) == 1
    assert memory_add_physaddr_to_nid(k2, 3 * GiB) == 0  # above max_pfn: cut off


def test_bench_refuses_hotplug_windows_qemu_does_not_build() -> None:
    """QEMU's SRAT has one hotpluggable entry, its device memory region on the last
    node: a machine saying otherwise would not be the guest the bench boots."""
    doc: dict[str, Any] = {
        "name": "bad",
        "profile": "linux-6.1",
        "node": [
            {"id": 0, "cpus": [0, 1], "memory": [["0", "1G"]]},
            {"id": 1, "hotplug": [["4G", "8G"]]},
            {"id": 2, "hotplug": [["8G", "15G"]]},
        ],
        "hotplug": {"slots": 4, "maxmem": "8G"},
    }
    from memhp.bench.scenario import Cmdline

    with pytest.raises(ScenarioError, match=r"node 1's hotplug windows are \[0x100000000"):
        vm_config_for(parse_machine(doc), Cmdline())
    doc["node"] = [
        {"id": 0, "cpus": [0, 1], "memory": [["0", "1G"]]},
        {"id": 1},
        {"id": 2, "hotplug": [["4G", "15G"]]},
    ]
    cfg = vm_config_for(parse_machine(doc), Cmdline())
    assert len(cfg.nodes) == 3 and all(not n.distance for n in cfg.nodes)  # no SLIT
    doc["node"][1]["distance"] = [20, 10, 30]
    doc["node"][2]["distance"] = [20, 30, 10]
    cfg = vm_config_for(parse_machine(doc), Cmdline())
    assert [n.distance for n in cfg.nodes] == [(10, 20, 20), (20, 10, 30), (20, 30, 10)]
    doc["node"][1]["distance"] = [20, 10, 10]
    with pytest.raises(ScenarioError, match=r"node 1's distances \[20, 10, 10\]"):
        vm_config_for(parse_machine(doc), Cmdline())
    del doc["node"][1]["distance"], doc["node"][2]["distance"]
    doc["node"][0]["cpus"] = [0]
    doc["node"][1]["cpus"] = [2]
    with pytest.raises(ScenarioError, match=r"node 1's cpus are \[2\].*in node order: \[1\]"):
        vm_config_for(parse_machine(doc), Cmdline())
