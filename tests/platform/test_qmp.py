"""The QMP server of a simulated machine, driven by QEMU's own client library.

The server runs in-process (its own thread) on a temporary unix socket; no
FUSE is needed.  Replies and events are compared with the QEMU 7.2 reference
(shared/reference/linux-6.1/pc-dimm-hotplug-qmp.txt).
"""

from __future__ import annotations

import ast
import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from memhp.sim.config import load_machine
from memhp.sim.machine import SimMachine
from memhp.sim.qmp_server import JsonSplitter, QMPServer

REPO = Path(__file__).resolve().parents[2]
MACHINE = str(REPO / "machines" / "qemu-linux-6.1.toml")
REFERENCE = Path(__file__).resolve().parents[1] / "data/reference/linux-6.1/pc-dimm-hotplug-qmp.txt"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[QMPServer]:
    srv = QMPServer(SimMachine(load_machine(MACHINE)), str(tmp_path / "qmp.sock"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class Raw:
    """A line-oriented raw QMP connection (to send what no client library would)."""

    def __init__(self, path: str) -> None:
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(5)
        self.s.connect(path)
        self.f = self.s.makefile("rwb")

    def recv(self) -> dict[str, Any]:
        line = self.f.readline()
        assert line, "connection closed"
        msg: dict[str, Any] = json.loads(line)
        return msg

    def send(self, text: str | bytes) -> None:
        self.f.write(text.encode() if isinstance(text, str) else text)
        self.f.flush()

    def reply(self, text: str) -> dict[str, Any]:
        self.send(text + "\n")
        while True:
            m = self.recv()
            if "event" not in m:
                return m

    def close(self) -> None:
        self.f.close()
        self.s.close()


def _reference_events() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("EVENT "):
            m = json.loads(line[6:])
        elif line.startswith("QMP ") and "'event'" in line:
            m = ast.literal_eval(line.split(" ", 2)[2])
        else:
            continue
        out.append((m["event"], m["data"]))
    return out


# ------------------------------------------------------------------ qemu.qmp
def test_qemu_qmp_client_hotadd_and_remove(server: QMPServer) -> None:
    from qemu.qmp import QMPClient

    async def scenario() -> tuple[list[dict[str, Any]], list[Any], list[Any], Any]:
        qmp = QMPClient("memhp-test")
        await qmp.connect(server.path)
        assert qmp.greeting is not None
        greeting: dict[str, Any] = qmp.greeting._asdict()
        assert greeting["QMP"]["version"]["qemu"] == {
            "micro": 22,
            "minor": 2,
            "major": 7,
        }
        events: list[dict[str, Any]] = []
        with qmp.listener() as listener:
            await qmp.execute(
                "object-add", {"qom-type": "memory-backend-ram", "id": "hm2", "size": 1 << 30}
            )
            await qmp.execute(
                "device_add", {"driver": "pc-dimm", "id": "dimm2", "memdev": "hm2", "node": 0}
            )
            events.append(dict(await asyncio.wait_for(listener.get(), 5)))
            devs = cast(list[Any], await qmp.execute("query-memory-devices"))
            summary: Any = await qmp.execute("query-memory-size-summary")
            await qmp.execute("device_del", {"id": "dimm2"})
            for _ in range(3):
                events.append(dict(await asyncio.wait_for(listener.get(), 5)))
            after = cast(list[Any], await qmp.execute("query-memory-devices"))
            await qmp.execute("object-del", {"id": "hm2"})
        await qmp.disconnect()
        return events, devs, after, summary

    events, devs, after, summary = asyncio.run(scenario())
    # Same events as QEMU in the reference (second DIMM: device_add, then device_del).
    ref = _reference_events()
    assert [(e["event"], e["data"]) for e in events] == [
        (ev, {"info": {**d["info"], "device": "dimm2"}} if "device" in d.get("info", {}) else d)
        for ev, d in [ref[4], *ref[5:8]]
    ]
    assert [e["event"] for e in events] == [
        "ACPI_DEVICE_OST",
        "ACPI_DEVICE_OST",
        "DEVICE_DELETED",
        "ACPI_DEVICE_OST",
    ]
    for e in events:
        ts = e["timestamp"]
        assert set(ts) == {"seconds", "microseconds"} and 0 <= ts["microseconds"] < 1_000_000
    # query-memory-devices: exactly the reference's shape and values.
    assert devs == [
        {
            "type": "dimm",
            "data": {
                "memdev": "/objects/hm2",
                "hotplugged": True,
                "addr": 4294967296,
                "hotpluggable": True,
                "size": 1073741824,
                "slot": 0,
                "node": 0,
                "id": "dimm2",
            },
        }
    ]
    assert after == []
    assert summary == {"base-memory": 1 << 30, "plugged-memory": 1 << 30}


def test_reference_sequence_event_data(server: QMPServer) -> None:
    """First DIMM of the reference: hot-add on node 1, events as QEMU sent them."""
    r = Raw(server.path)
    try:
        r.recv()
        assert r.reply('{"execute": "qmp_capabilities"}') == {"return": {}}
        assert r.reply(
            '{"execute": "object-add", "arguments": {"qom-type": "memory-backend-ram", '
            '"id": "hm1", "size": 536870912}}'
        ) == {"return": {}}
        assert r.reply(
            '{"execute": "device_add", "arguments": {"driver": "pc-dimm", "id": "dimm1", '
            '"memdev": "hm1", "node": 1}}'
        ) == {"return": {}}
        ev = r.recv()
        assert (ev["event"], ev["data"]) == _reference_events()[0]
        assert list(ev) == ["timestamp", "event", "data"]
    finally:
        r.close()


# ------------------------------------------------------------------ protocol robustness
def test_negotiation_and_malformed_input(server: QMPServer) -> None:
    r = Raw(server.path)
    try:
        greeting = r.recv()
        assert greeting["QMP"]["capabilities"] == ["oob"]
        assert r.reply('{"execute": "query-memory-devices"}') == {
            "error": {
                "class": "CommandNotFound",
                "desc": "Expecting capabilities negotiation with 'qmp_capabilities'",
            }
        }
        assert r.reply(
            '{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": 7}'
        ) == {"return": {}, "id": 7}
        assert r.reply('{"execute": "qmp_capabilities"}')["error"]["class"] == "CommandNotFound"
        cases = {
            "{bad json}": "JSON parse error",
            "[1, 2]": "QMP input must be a JSON object",
            "42": "QMP input must be a JSON object",
            '{"execute": 3}': "QMP input member 'execute' must be a string",
            '{"arguments": {}}': "QMP input lacks member 'execute'",
            '{"execute": "query-version", "arguments": []}': (
                "QMP input member 'arguments' must be an object"
            ),
            '{"execute": "query-version", "foo": 1}': "QMP input member 'foo' is unexpected",
            '{"execute": "query-version", "arguments": {"x": 1}}': "Parameter 'x' is unexpected",
            '{"execute": "device_del"}': "Parameter 'id' is missing",
            '{"execute": "device_del", "arguments": {"id": 5}}': (
                "Invalid parameter type for 'id', expected: string"
            ),
            '{"execute": "object-add", "arguments": {"qom-type": "memory-backend-ram", "id": "a", '
            '"size": "1G"}}': "Invalid parameter type for 'size', expected: size",
        }
        for text, desc in cases.items():
            rep = r.reply(text)
            assert rep["error"]["class"] == "GenericError", (text, rep)
            assert rep["error"]["desc"].startswith(desc), (text, rep)
        rep = r.reply('{"execute": "no-such-command", "id": "x"}')
        assert rep == {
            "error": {
                "class": "CommandNotFound",
                "desc": "The command no-such-command has not been found",
            },
            "id": "x",
        }
        # Several commands in one write, one command split over writes: both work.
        r.send('{"execute": "query-version"}{"execute": "query-status"}\n')
        assert "qemu" in r.recv()["return"]
        assert r.recv()["return"]["status"] == "running"
        r.send('{"execute": "query-memory-size-')
        r.send('summary"}\n')
        assert r.recv() == {"return": {"base-memory": 1 << 30, "plugged-memory": 0}}
        # The connection survived all of it.
        assert r.reply('{"execute": "query-memory-devices"}') == {"return": []}
    finally:
        r.close()


def test_object_and_device_errors(server: QMPServer) -> None:
    r = Raw(server.path)
    try:
        r.recv()
        r.reply('{"execute": "qmp_capabilities"}')

        def err(cmd: str, args: dict[str, Any]) -> tuple[str, str]:
            rep = r.reply(json.dumps({"execute": cmd, "arguments": args}))
            assert "error" in rep, rep
            return rep["error"]["class"], rep["error"]["desc"]

        def ok(cmd: str, args: dict[str, Any]) -> None:
            rep = r.reply(json.dumps({"execute": cmd, "arguments": args}))
            assert rep == {"return": {}}, rep

        ram = "memory-backend-ram"
        assert err("object-add", {"qom-type": ram, "id": "m1"}) == (
            "GenericError",
            "can't create backend with size 0",
        )
        # (a size given as 0 is refused by its setter, as QEMU 7.2 did in a bench run)
        assert err("object-add", {"qom-type": ram, "id": "m1", "size": 0}) == (
            "GenericError",
            "property 'size' of memory-backend-ram doesn't take value '0'",
        )
        assert err("object-add", {"qom-type": "frob", "id": "m1"}) == (
            "GenericError",
            "Parameter 'qom-type' does not accept value 'frob'",
        )
        ok("object-add", {"qom-type": ram, "id": "m1", "size": 256 << 20})
        assert err("object-add", {"qom-type": ram, "id": "m1", "size": 256 << 20}) == (
            "GenericError",
            "attempt to add duplicate property 'm1' to object (type 'container')",
        )
        assert err("object-del", {"id": "zz"}) == ("GenericError", "object 'zz' not found")
        assert err("device_add", {"driver": "virtio-mem-pci"})[1] == (
            "'memdev' property must be set"
        )
        assert err("device_add", {"driver": "virtio-pmem-pci"})[1] == (
            "'virtio-pmem-pci' is not a valid device model name"
        )
        assert err("device_add", {"driver": "pc-dimm", "memdev": "nope"}) == (
            "DeviceNotFound",
            "Device 'nope' not found",
        )
        assert err("device_add", {"driver": "pc-dimm"}) == (
            "GenericError",
            "'memdev' property is not set",
        )
        assert err("device_add", {"driver": "pc-dimm", "memdev": "m1", "node": 5})[1].startswith(
            "'DIMM property node has value 5' which exceeds the number of numa nodes"
        )
        assert err("device_add", {"driver": "pc-dimm", "memdev": "m1", "slot": 9}) == (
            "GenericError",
            "invalid slot number 9, valid range is [0-3]",
        )
        assert err("device_add", {"driver": "pc-dimm", "memdev": "m1", "foo": 1}) == (
            "GenericError",
            "Property 'pc-dimm.foo' not found",
        )
        assert err("device_add", {"driver": "pc-dimm", "memdev": "m1", "addr": "x"})[1] == (
            "Invalid parameter type for 'addr', expected: integer"
        )
        ok("device_add", {"driver": "pc-dimm", "id": "d1", "memdev": "m1", "node": 1})
        assert err("device_add", {"driver": "pc-dimm", "id": "d2", "memdev": "m1"}) == (
            "GenericError",
            "can't use already busy memdev: m1",
        )
        assert err("object-del", {"id": "m1"}) == (
            "GenericError",
            "object 'm1' is in use, can not be deleted",
        )
        ok("object-add", {"qom-type": ram, "id": "m2", "size": 101 << 20})
        assert err("device_add", {"driver": "pc-dimm", "id": "d2", "memdev": "m2"}) == (
            "GenericError",
            "backend memory size must be multiple of 0x200000",
        )
        assert err("device_del", {"id": "d9"}) == ("DeviceNotFound", "Device 'd9' not found")
        ok("device_del", {"id": "d1"})
        ok("object-del", {"id": "m1"})
    finally:
        r.close()


def test_device_del_refused_by_the_os(server: QMPServer) -> None:
    """Unmovable pages in an online block: the OS refuses the eject, the DIMM stays."""
    sim = server.sim
    r = Raw(server.path)
    try:
        r.recv()
        r.reply('{"execute": "qmp_capabilities"}')
        r.reply(
            '{"execute": "object-add", "arguments": {"qom-type": "memory-backend-ram", "id": "m", '
            '"size": 536870912}}'
        )
        r.reply(
            '{"execute": "device_add", "arguments": {"driver": "pc-dimm", "id": "d", '
            '"memdev": "m", '
            '"node": 1}}'
        )
        assert r.recv()["event"] == "ACPI_DEVICE_OST"
        sim.sysfs.write("/sys/devices/system/memory/memory32/state", b"online_kernel")
        rep = r.reply(
            '{"execute": "x-memhp-fill", "arguments": {"pages": 100, "start": 4294967296, '
            '"end": 4429185024, "unmovable": 1.0}}'
        )
        assert rep["return"]["pages"] == 100
        assert r.reply('{"execute": "device_del", "arguments": {"id": "d"}}') == {"return": {}}
        evs = [r.recv(), r.recv()]
        assert [e["data"]["info"]["status"] for e in evs] == [132, 130]  # in progress, then busy
        devs = r.reply('{"execute": "query-memory-devices"}')["return"]
        assert [d["data"]["id"] for d in devs] == ["d"]
    finally:
        r.close()


# ------------------------------------------------------------------ x-memhp-*
def test_simulator_commands(server: QMPServer) -> None:
    r = Raw(server.path)
    try:
        r.recv()
        r.reply('{"execute": "qmp_capabilities"}')
        snap = r.reply('{"execute": "x-memhp-snapshot"}')["return"]
        assert snap["/sys/devices/system/memory/memory0/state"] == {
            "kind": "F",
            "mode": 0o644,
            "value": "online\n",
        }
        assert snap["/sys/devices/system/memory/memory0/node0"]["target"] == "../../node/node0"
        one = r.reply(
            '{"execute": "x-memhp-snapshot", "arguments": {"roots": ["/sys/firmware/memmap"]}}'
        )
        assert all(p.startswith("/sys/firmware/memmap") for p in one["return"])
        fill = r.reply(
            '{"execute": "x-memhp-fill", "arguments": {"size": 8388608, "node": 0, '
            '"unmovable": 0.5, "seed": 1}}'
        )["return"]
        assert fill["pages"] == 2048 and fill["allocations"]
        assert r.reply('{"execute": "x-memhp-fill", "arguments": {"pages": 1, "size": 1}}')["error"]
        assert r.reply('{"execute": "x-memhp-fill", "arguments": {"pages": 1, "unmovable": 2}}')[
            "error"
        ]
        assert r.reply(
            json.dumps(
                {"execute": "x-memhp-free", "arguments": {"allocations": fill["allocations"]}}
            )
        ) == {"return": {}}
        log = r.reply('{"execute": "x-memhp-kernel-log"}')["return"]
        assert log["next"] == len(log["events"]) > 0
        assert any(e["what"] == "workload" for e in log["events"])
        later = r.reply(
            json.dumps({"execute": "x-memhp-kernel-log", "arguments": {"since": log["next"]}})
        )
        assert later["return"]["events"] == []
        inv = r.reply('{"execute": "x-memhp-check-invariants"}')
        if "error" in inv:
            assert "not available" in inv["error"]["desc"]
        else:
            assert inv["return"] == {"ok": True}
    finally:
        r.close()


def test_json_splitter() -> None:
    s = JsonSplitter()
    assert s.feed(b'{"a": "}{"}  {"b"') == ['{"a": "}{"}']
    assert s.feed(b": [1, {}]}\n7 ") == ['{"b": [1, {}]}', "7"]
    out = s.feed(b"}")
    assert len(out) == 1 and not isinstance(out[0], str)
    # A UTF-8 character split across reads.
    data = '{"x": "é"}'.encode()
    assert s.feed(data[:8]) == []
    assert s.feed(data[8:]) == ['{"x": "é"}']


def test_backend_properties_and_query_memdev(server: QMPServer) -> None:
    """qom-get/qom-set of /objects/ID and query-memdev (QEMU 7.2, as recorded in
    tests/scenarios/qmp-backend-properties.toml)."""
    r = Raw(server.path)
    try:
        r.recv()
        r.reply('{"execute": "qmp_capabilities"}')

        def run(cmd: str, **args: Any) -> Any:
            rep = r.reply(json.dumps({"execute": cmd, "arguments": args}))
            return rep.get("return", rep.get("error"))

        ram = "memory-backend-ram"
        assert run("object-add", **{"qom-type": ram, "id": "r0", "size": 1 << 27}) == {}
        assert (
            run("object-add", **{"qom-type": "memory-backend-memfd", "id": "mf", "size": 1 << 26})
            == {}
        )
        assert run("qom-get", path="r0", property="size") == 1 << 27
        assert run("qom-get", path="/objects/r0", property="prealloc-threads") == 2  # -smp 2
        assert run("qom-get", path="mf", property="share") is True  # memfd: shared
        assert run("qom-get", path="mf", property="type") == "memory-backend-memfd"
        assert run("qom-get", path="r0", property="seal") == {
            "class": "GenericError",
            "desc": "Property 'memory-backend-ram.seal' not found",
        }
        # fixed once the RAM block exists; merge and prealloc take their value
        assert run("qom-set", path="r0", property="size", value=1)["desc"] == (
            "cannot change property size of memory-backend-ram "
        )
        assert run("qom-set", path="r0", property="share", value=True)["desc"] == (
            "cannot change property value"
        )
        assert run("qom-set", path="r0", property="merge", value=False) == {}
        assert run("qom-set", path="r0", property="prealloc", value=True) == {}
        assert run("qom-set", path="r0", property="prealloc", value=False) == {}
        assert run("qom-get", path="r0", property="prealloc") is True
        assert run("qom-set", path="r0", property="merge", value="no")["desc"] == (
            "Invalid parameter type for 'merge', expected: boolean"
        )
        # object-add checks the policy against the host nodes
        bad = run("object-add", **{"qom-type": ram, "id": "b", "size": 1 << 21, "policy": "bind"})
        assert bad["desc"] == "host-nodes must be set for policy bind"
        memdevs = run("query-memdev")
        # /objects' GHashTable order, reversed (test_glib_ghash.py checks it against GLib)
        assert [m["id"] for m in memdevs] == ["r0", "m0", "mf"]
        r0 = next(m for m in memdevs if m["id"] == "r0")
        assert (r0["merge"], r0["prealloc"], r0["policy"], r0["host-nodes"]) == (
            False,
            True,
            "default",
            [],
        )
        # a backend named like a device: the partial path is ambiguous
        assert run("device_add", driver="pc-dimm", id="d1", memdev="r0") == {}
        assert run("object-add", **{"qom-type": ram, "id": "d1", "size": 1 << 21}) == {}
        assert run("qom-get", path="d1", property="size") == {
            "class": "DeviceNotFound",
            "desc": "Device 'd1' not found",
        }
        assert run("qom-get", path="/machine/peripheral/d1", property="size") == 1 << 27
        assert run("qom-set", path="/machine/peripheral/d1", property="node", value=0)["desc"] == (
            "Attempt to set property 'node' on device 'd1' (type 'pc-dimm') after it was realized"
        )
    finally:
        r.close()


def test_a_dimm_plugged_by_the_api_brings_its_backend() -> None:
    """SimMachine.device_add() is object-add mem-ID + device_add: the backend is listed
    while the DIMM is there and goes after its eject (the management side's object-del)."""
    from memhp.sim.qmp_commands import QMPCommands

    sim = SimMachine(load_machine(MACHINE))
    cmds = QMPCommands(sim).table()
    sim.device_add(128 << 20, 0, id="d0")
    assert [m["id"] for m in cast(list[dict[str, Any]], cmds["query-memdev"]({}))] == [
        "mem-d0",
        "m0",
    ]
    assert cmds["qom-get"]({"path": "mem-d0", "property": "size"}) == 128 << 20
    sim.device_del("d0")  # (offline blocks: the guest ejects at once)
    assert sim.platform.slot_of("d0") is None
    assert [m["id"] for m in cast(list[dict[str, Any]], cmds["query-memdev"]({}))] == ["m0"]
    sim.device_add(128 << 20, 0, id="d0")  # the same id again
    assert sim.platform.slot_of("d0") is not None


def test_acpi_ospm_status_keeps_the_last_ost_of_each_slot() -> None:
    """query-acpi-ospm-status: the DIMM slots' last _OST (kept after the eject), then
    the possible CPUs (as QEMU 7.2 answered in qmp-acpi-ospm-status)."""
    from memhp.sim.qmp_commands import QMPCommands

    sim = SimMachine(load_machine(MACHINE))
    ospm = QMPCommands(sim).table()["query-acpi-ospm-status"]
    boot = cast(list[dict[str, Any]], ospm({}))
    assert [(e["slot-type"], e["slot"], e["source"], e["status"]) for e in boot] == [
        ("DIMM", "0", 0, 0),
        ("DIMM", "1", 0, 0),
        ("DIMM", "2", 0, 0),
        ("DIMM", "3", 0, 0),
        ("CPU", "0", 0, 0),
        ("CPU", "1", 0, 0),
    ]
    sim.device_add(128 << 20, 0, id="d0", slot=2)
    plugged = cast(list[dict[str, Any]], ospm({}))[2]
    assert plugged == {"device": "d0", "slot": "2", "slot-type": "DIMM", "source": 1, "status": 0}
    sim.device_del("d0")  # (offline blocks: ejected at once)
    after = cast(list[dict[str, Any]], ospm({}))[2]
    assert after == {"slot": "2", "slot-type": "DIMM", "source": 3, "status": 0}
    with pytest.raises(Exception, match="unexpected"):
        ospm({"bogus": 1})


def test_qom_list_of_containers_and_backends() -> None:
    """qom-list walks a container's children in its GHashTable order and a backend's
    class properties, each list prepended to (QEMU 7.2, qmp-backend-properties)."""
    from memhp.sim.qmp_commands import QMPCommands
    from memhp.sim.qmp_protocol import QMPError

    sim = SimMachine(load_machine(MACHINE))
    t = QMPCommands(sim).table()
    t["object-add"]({"qom-type": "memory-backend-ram", "id": "r0", "size": 1 << 27})
    sim.device_add(128 << 20, 0, id="d0")
    objects = cast(list[dict[str, str]], t["qom-list"]({"path": "/objects"}))
    assert objects[0] == {"name": "type", "type": "string"}
    assert {o["name"]: o["type"] for o in objects[1:]} == {
        "m0": "child<memory-backend-ram>",
        "r0": "child<memory-backend-ram>",
        "mem-d0": "child<memory-backend-ram>",
    }
    assert t["qom-list"]({"path": "peripheral"}) == [
        {"name": "type", "type": "string"},
        {"name": "d0", "type": "child<pc-dimm>"},
    ]
    ram = cast(list[dict[str, str]], t["qom-list"]({"path": "/objects/r0"}))
    assert [p["name"] for p in ram] == [
        "type",
        "share",
        "size",
        "dump",
        "prealloc-threads",
        "x-use-canonical-path-for-ramblock-id",
        "policy",
        "prealloc-context",
        "prealloc",
        "reserve",
        "host-nodes",
        "merge",
        "r0[0]",
    ]
    with pytest.raises(QMPError, match="Device 'nosuch' not found"):
        t["qom-list"]({"path": "nosuch"})
    sim.device_del("d0")  # ejected: it leaves /machine/peripheral
    assert t["qom-list"]({"path": "/machine/peripheral"}) == [{"name": "type", "type": "string"}]
