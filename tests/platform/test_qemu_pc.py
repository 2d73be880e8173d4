"""QEMU 7.2's pc-dimm and memory-backend rules (memhp.platform.qemu_pc), once for
the Python API (SimMachine.device_add) and the QMP commands (issue 16, items 18-20).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from memhp.kernel.invariants import check_invariants
from memhp.platform.qemu_pc import HOST_USER_ADDRESS_SPACE, QemuError
from memhp.sim.config import load_machine
from memhp.sim.machine import PlatformError, SimMachine
from memhp.sim.qmp_commands import QMPCommands
from memhp.sim.qmp_protocol import QMPError

MACHINE = str(Path(__file__).resolve().parents[2] / "machines" / "qemu-linux-6.1.toml")
MiB, GiB, EiB = 1 << 20, 1 << 30, 1 << 60


def qmp(sim: SimMachine) -> Any:
    table = QMPCommands(sim).table()

    def run(cmd: str, **args: Any) -> object:
        return table[cmd](args)

    return run


def test_platform_error_is_the_qemu_error() -> None:
    assert PlatformError is QemuError


def test_space_counts_dimms_against_the_device_memory_region() -> None:
    """Item 18: -m 1G,maxmem=8G: 7 GiB for DIMMs; boot RAM is not 'in use'."""
    sim = SimMachine(load_machine(MACHINE))
    sim.device_add(1 * GiB, 1, id="d1")
    with pytest.raises(PlatformError) as e:
        sim.device_add(7 * GiB, 1, id="d2")
    assert str(e.value) == (
        "not enough space, currently 0x40000000 in use of total space for memory devices "
        "0x1c0000000"
    )
    # Exactly the rest fits (6 GiB), though it is more than maxmem minus everything.
    sim.device_add(6 * GiB, 1, id="d3")


def test_space_message_over_qmp() -> None:
    sim = SimMachine(load_machine(MACHINE))
    run = qmp(sim)
    run("object-add", **{"qom-type": "memory-backend-ram", "id": "m1", "size": GiB})
    run("device_add", driver="pc-dimm", id="d1", memdev="m1", node=1)
    run("object-add", **{"qom-type": "memory-backend-ram", "id": "m2", "size": 8 * GiB})
    with pytest.raises(QMPError) as e:
        run("device_add", driver="pc-dimm", id="d2", memdev="m2", node=1)
    assert e.value.desc == (
        "not enough space, currently 0x40000000 in use of total space for memory devices "
        "0x1c0000000"
    )


def test_unaligned_to_the_guest_block_is_plugged_and_refused_by_the_guest() -> None:
    """Item 19: 130 MiB is 2 MiB aligned: QEMU plugs it; Linux's add_memory() refuses."""
    sim = SimMachine(load_machine(MACHINE))
    run = qmp(sim)
    run("object-add", **{"qom-type": "memory-backend-ram", "id": "m", "size": 130 * MiB})
    assert run("device_add", driver="pc-dimm", id="d", memdev="m", node=1) == {}
    devs = run("query-memory-devices")
    assert isinstance(devs, list) and devs[0]["data"]["size"] == 130 * MiB
    blocks = [n for n in sim.sysfs.listdir("/sys/devices/system/memory") if n.startswith("memory")]
    assert len(blocks) == 8  # boot memory only: nothing was added
    log = [e.detail for e in sim.kernel.events if e.what == "acpi_memhotplug"]
    assert log[-3:] == [
        "PNP0C80:00: add_memory 0x100000000+0x8200000 failed (-22)",
        "PNP0C80:00: add_memory failed",
        "PNP0C80:00: acpi_memory_enable_device() error -22",
    ]
    # acpi_scan_device_check() -> acpi_bus_scan() succeeds whatever the handler's
    # attach did: _OST success (ACPI_OST_SC_SUCCESS, as QEMU reported it under Debian's
    # 6.1 and 6.12 for a 130 MiB DIMM)
    ost = sim.platform.events[-1].data["info"]
    assert ost["status"] == 0  # type: ignore[index]
    check_invariants(sim.kernel)
    # The next DIMM goes right after it (2 MiB alignment), and the DIMM can be unplugged.
    run("object-add", **{"qom-type": "memory-backend-ram", "id": "m2", "size": 2 * MiB})
    run("device_add", driver="pc-dimm", id="d2", memdev="m2", node=1)
    assert sim.platform.slot_of("d2").dimm.addr == 0x108200000  # type: ignore[union-attr]
    run("device_del", id="d")
    assert sim.platform.slot_of("d") is None
    check_invariants(sim.kernel)


def test_alignment_and_address_rules() -> None:
    sim = SimMachine(load_machine(MACHINE))
    with pytest.raises(PlatformError, match=r"^backend memory size must be multiple of 0x200000$"):
        sim.device_add(129 * MiB, 1)
    with pytest.raises(PlatformError, match=r"^address must be aligned to 0x200000 bytes$"):
        sim.device_add(128 * MiB, 1, addr=0x100001000)
    with pytest.raises(PlatformError) as e:
        sim.device_add(128 * MiB, 1, addr=0x80000000)
    assert str(e.value) == (
        "can't add memory device [0x80000000:0x8000000], usable range for memory devices "
        "[0x100000000:0x2c0000000]"
    )
    sim.device_add(128 * MiB, 1, id="a", addr=0x100000000)
    with pytest.raises(PlatformError, match="address range conflicts with memory device id='a'"):
        sim.device_add(128 * MiB, 1, addr=0x104000000)


def test_huge_backend_cannot_be_allocated() -> None:
    """Item 20: the RAM block of 1 EiB cannot be mmap()ed, as in QEMU."""
    sim = SimMachine(load_machine(MACHINE))
    run = qmp(sim)
    with pytest.raises(QMPError) as e:
        run("object-add", **{"qom-type": "memory-backend-ram", "id": "mem0", "size": EiB})
    assert e.value.desc == "cannot set up guest memory 'mem0': Cannot allocate memory"
    assert "mem0" not in sim.qemu.backends
    # Just below the host's user address space still works (no overcommit model).
    big = HOST_USER_ADDRESS_SPACE - 4 * MiB
    run("object-add", **{"qom-type": "memory-backend-ram", "id": "mem1", "size": big})
    with pytest.raises(QMPError, match="cannot set up guest memory 'mem2'"):
        run("object-add", **{"qom-type": "memory-backend-ram", "id": "mem2", "size": 1 << 47})
