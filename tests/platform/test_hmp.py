"""The human monitor through QMP human-monitor-command (memhp.sim.hmp_commands), as
QEMU 7.2 answered in tests/scenarios/qmp-human-monitor.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from memhp.sim.config import load_machine
from memhp.sim.hmp_commands import HMPError, keyval, strtosz
from memhp.sim.machine import SimMachine
from memhp.sim.qmp_commands import QMPCommands
from memhp.sim.qmp_protocol import QMPError

MACHINE = str(Path(__file__).resolve().parents[2] / "machines" / "qemu-linux-6.1.toml")


@pytest.fixture
def hmp() -> Any:
    table = QMPCommands(SimMachine(load_machine(MACHINE))).table()
    return lambda line: table["human-monitor-command"]({"command-line": line})


def test_sizes_parse_as_qemu_strtosz() -> None:
    assert strtosz("size", "1G") == 1 << 30
    assert strtosz("size", "1.5G") == 3 << 29
    assert strtosz("size", "0x8000000") == 128 << 20
    assert strtosz("size", "4096") == 4096
    for bad in ("lots", "1.5", "-1", "1Q", ""):
        with pytest.raises(HMPError, match="Parameter 'size' expects size"):
            strtosz("size", bad)


def test_keyval_implied_key_and_escaped_commas() -> None:
    assert keyval("memory-backend-ram,id=m,size=1G", "qom-type") == {
        "qom-type": "memory-backend-ram",
        "id": "m",
        "size": "1G",
    }
    assert keyval("pc-dimm,id=a,,b", "driver") == {"driver": "pc-dimm", "id": "a,b"}


def test_the_documented_hotplug_sequence(hmp: Any) -> None:
    assert hmp("object_add memory-backend-ram,id=mem1,size=1G") == ""
    assert hmp("device_add pc-dimm,id=dimm1,memdev=mem1") == ""
    out = hmp("info memory-devices")
    assert out.startswith('Memory device [dimm]: "dimm1"\r\n  addr: 0x100000000\r\n  slot: 0\r\n')
    assert out.endswith("  memdev: /objects/mem1\r\n  hotplugged: true\r\n  hotpluggable: true\r\n")
    assert hmp("info memory_size_summary") == (
        "base memory: 1073741824\r\nplugged memory: 1073741824\r\n"
    )
    assert "node 0 size: 2048 MB\r\nnode 0 plugged: 1024 MB\r\n" in hmp("info numa")
    assert hmp("object_del mem1") == "Error: object 'mem1' is in use, can not be deleted\r\n"
    assert hmp("qom-get dimm1 size") == "1073741824\r\n"
    assert hmp("qom-set mem1 merge off") == ""
    assert "  merge: false\r\n" in hmp("info memdev")


def test_errors_and_usage(hmp: Any) -> None:
    assert hmp("frobnicate now") == "unknown command: 'frobnicate'\r\n"
    assert hmp("info nosuch") == "unknown command: 'info nosuch'\r\n"
    assert hmp("object_add memory-backend-ram,id=m,size=128M,merge=maybe") == (
        "Error: Parameter 'merge' expects 'on' or 'off'\r\n"
    )
    assert hmp("object_add memory-backend-ram,id=m,size=64M,host-nodes=0") == (
        "Error: Invalid parameter type for 'host-nodes', expected: array\r\n"
    )
    assert hmp("object_del") == (
        'object_del: string expected\r\nTry "help object_del" for more information\r\n'
    )
    assert hmp("device_add pc-dimm,id=d,memdev=m0,node=one") == (
        "Error: Parameter 'node' expects integer\r\n"
    )


def test_the_qmp_arguments_are_checked() -> None:
    table = QMPCommands(SimMachine(load_machine(MACHINE))).table()
    with pytest.raises(QMPError, match="'command-line' is missing"):
        table["human-monitor-command"]({})
