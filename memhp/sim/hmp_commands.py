"""QMP ``human-monitor-command``: QEMU 7.2's HMP commands of memory hotplug.

QEMU's documentation of memory hotplug (docs/memory-hotplug.txt) drives it with the
human monitor: ``object_add memory-backend-ram,id=mem1,size=1G``, ``device_add
pc-dimm,id=dimm1,memdev=mem1``, ``info memory-devices``; management tools reach the
same commands through QMP's ``human-monitor-command``.  This module parses such a
command line as monitor/hmp.c does (the command name, then its arguments by their
``args_type`` in hmp-commands.hx) and runs the same handlers as the QMP commands
(:class:`memhp.sim.qmp_commands.QMPCommands`), printing what the HMP handlers print:

- ``info memory-devices`` (hmp_info_memory_devices()), ``info memdev``
  (hmp_info_memdev()), ``info memory_size_summary``, ``info numa``
  (qmp_x_query_numa(): each node's CPUs, its boot and plugged memory in MiB);
- ``object_add TYPE,id=ID,...`` (user_creatable_add_from_str(): keyval with the
  implied key ``qom-type``), ``object_del ID``, ``device_add DRIVER,...`` (QemuOpts,
  implied ``driver``; the properties parsed from their strings), ``device_del ID``,
  ``qom-get PATH PROP`` (the value as pretty JSON) and ``qom-set [-j] PATH PROP VALUE``.

Values from a command line are strings, parsed as the keyval input visitor does:
sizes by qemu_strtosz() (suffixes B, K, M, G, T, P, E), booleans by
qapi_bool_parse(), integers by qemu_strtou64() (any base).  An error prints
``Error: MESSAGE`` (hmp_handle_error()), with its hint on the next lines; an unknown
command ``unknown command: 'NAME'``.  Every line ends in ``\\r\\n`` (monitor_puts()).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from typing import Any

from memhp.platform.hostmem import BACKEND_PROPS, BACKEND_TYPE_PROPS, BACKEND_TYPES
from memhp.platform.qemu_pc import PC_DIMM_PROPS
from memhp.platform.virtio_mem import VIRTIO_MEM_PCI_PROPS
from memhp.sim.qmp_protocol import QMPError

_SUFFIX = {c: 1 << (10 * i) for i, c in enumerate("BKMGTPE")}


class HMPError(Exception):
    """An error the monitor prints (``Error: `` and the message, then the hint)."""

    def __init__(self, msg: str, hint: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.hint = hint


class HMPUsage(Exception):
    """A command line the parser refuses (monitor_parse_arguments()): its message,
    then where to find help."""

    def __init__(self, cmd: str, msg: str) -> None:
        super().__init__(f'{msg}\nTry "help {cmd}" for more information')


def strtosz(name: str, text: str) -> int:
    """qemu_strtosz() as the keyval and string input visitors use it (type ``size``):
    1G, 512M, 1.5G, 0x1000, 4096; anything else: "Parameter 'NAME' expects size"."""
    m = re.fullmatch(r"(0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]+)?)([BKMGTPEbkmgtpe]?)", text)
    bad = HMPError(f"Parameter '{name}' expects size")
    if m is None:
        raise bad
    num, suffix = m.group(1), m.group(2).upper() or "B"
    mul = _SUFFIX[suffix]
    if num.lower().startswith("0x"):
        value = int(num, 16) * mul
    elif "." in num:
        if mul == 1:  # (a fraction needs a scale)
            raise bad
        whole, frac = num.split(".")
        value = int(whole) * mul + int(float("0." + frac) * mul)
    else:
        value = int(num) * mul
    if value >= 1 << 64:
        raise bad
    return value


def _bool(name: str, text: str) -> bool:
    """qapi_bool_parse()."""
    if text in ("on", "yes", "true", "y"):
        return True
    if text in ("off", "no", "false", "n"):
        return False
    raise HMPError(f"Parameter '{name}' expects 'on' or 'off'")


def _uint(name: str, text: str) -> int:
    """qobject_input_type_uint64_keyval(): qemu_strtou64(str, NULL, 0)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise HMPError(f"Parameter '{name}' expects integer") from None
    if not 0 <= value < 1 << 64:
        raise HMPError(f"Parameter '{name}' expects integer")
    return value


def _typed(name: str, text: str, kind: str) -> object:
    """A keyval string as the visitor of ``kind`` reads it."""
    if kind == "size":
        return strtosz(name, text)
    if kind == "bool":
        return _bool(name, text)
    if kind in ("uint", "int"):
        return _uint(name, text)
    return text


def keyval(text: str, implied: str) -> dict[str, str]:
    """keyval_parse() / qemu_opts_parse() of ``a,k=v,...``: the first element
    without ``=`` is the implied key; ``,,`` is a literal comma."""
    parts, cur, i = [], "", 0
    while i < len(text):
        if text[i] == ",":
            if text[i + 1 : i + 2] == ",":
                cur += ","
                i += 2
                continue
            parts.append(cur)
            cur = ""
        else:
            cur += text[i]
        i += 1
    parts.append(cur)
    out: dict[str, str] = {}
    for n, p in enumerate(parts):
        if "=" not in p:
            if n == 0 and p:
                out[implied] = p
                continue
            raise HMPError(f"Expected '=' after parameter '{p}'")
        k, v = p.split("=", 1)
        out[k] = v
    return out


class HMP:
    """The human monitor over the QMP handlers of one simulated machine."""

    def __init__(self, qmp: dict[str, Callable[[dict[str, Any]], object]], sim: Any) -> None:
        self.qmp = qmp
        self.sim = sim

    def run(self, line: str) -> str:
        """One command line: what the monitor prints, lines ending in CR LF."""
        try:
            out = self._dispatch(line.strip())
        except HMPUsage as e:
            out = f"{e}\n"
        except HMPError as e:
            out = f"Error: {e.msg}\n{e.hint}"
        except QMPError as e:
            out = f"Error: {e.desc}\n"
        return out.replace("\n", "\r\n")

    def _call(self, cmd: str, args: dict[str, Any]) -> object:
        return self.qmp[cmd](args)

    def _dispatch(self, line: str) -> str:
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name == "info":
            sub = rest.split(" ", 1)[0]
            info = {
                "memory-devices": self._info_memory_devices,
                "memdev": self._info_memdev,
                "memory_size_summary": self._info_memory_size_summary,
                "numa": self._info_numa,
            }.get(sub)
            if info is None:
                return f"unknown command: 'info {sub}'\n" if sub else ""
            return info()
        if name == "object_add":
            return self._object_add(rest)
        if name == "device_add":
            return self._device_add(rest)
        if name in ("object_del", "device_del"):
            arg = self._str_arg(name, rest)
            self._call(name.replace("_", "-") if name == "object_del" else name, {"id": arg})
            return ""
        if name == "qom-get":
            path, prop = self._two(name, rest)
            value = self._call("qom-get", {"path": path, "property": prop})
            return json.dumps(value, indent=4) + "\n"
        if name == "qom-set":
            return self._qom_set(rest)
        return f"unknown command: '{name}'\n"

    # ---------------------------------------------------------------- arguments
    @staticmethod
    def _str_arg(cmd: str, rest: str) -> str:
        """An ``s`` argument (get_str(): a word, or a quoted string)."""
        try:
            words = shlex.split(rest)
        except ValueError:
            words = []
        if not words:
            raise HMPUsage(cmd, f"{cmd}: string expected")
        return words[0]

    def _two(self, cmd: str, rest: str) -> tuple[str, str]:
        words = rest.split()
        if len(words) < 2:
            raise HMPUsage(cmd, f"{cmd}: string expected")
        return words[0], words[1]

    # ---------------------------------------------------------------- commands
    def _object_add(self, rest: str) -> str:
        opts = keyval(rest, "qom-type")
        qtype = opts.get("qom-type")
        if qtype is None:
            raise HMPError("Parameter 'qom-type' is missing")
        if qtype not in BACKEND_TYPES:
            raise HMPError(f"Parameter 'qom-type' does not accept value '{qtype}'")
        kinds = {**BACKEND_PROPS, **BACKEND_TYPE_PROPS[qtype][0], **BACKEND_TYPE_PROPS[qtype][1]}
        args: dict[str, Any] = {"qom-type": qtype}
        nodes: dict[int, int] = {}
        for k, v in opts.items():
            if k == "qom-type":
                continue
            if k == "id":
                args[k] = v
            elif k == "host-nodes":  # (keyval: a list is host-nodes.0=N,host-nodes.1=M)
                raise HMPError("Invalid parameter type for 'host-nodes', expected: array")
            elif k.startswith("host-nodes.") and k[11:].isdigit():
                nodes[int(k[11:])] = _uint(k, v)
            elif k not in kinds:
                raise HMPError(f"Parameter '{k}' is unexpected")
            else:
                args[k] = _typed(k, v, kinds[k])
        if nodes:
            args["host-nodes"] = [nodes[i] for i in sorted(nodes)]
        self._call("object-add", args)
        return ""

    def _device_add(self, rest: str) -> str:
        opts = keyval(rest, "driver")
        driver = opts.get("driver")
        if driver is None:
            raise HMPError("Parameter 'driver' is missing")
        kinds = {"pc-dimm": PC_DIMM_PROPS, "virtio-mem-pci": VIRTIO_MEM_PCI_PROPS}.get(driver, {})
        args: dict[str, Any] = {}
        for k, v in opts.items():
            if k in ("driver", "id", "bus"):
                args[k] = v
            else:
                args[k] = _typed(k, v, kinds.get(k, "str"))
        self._call("device_add", args)
        return ""

    def _qom_set(self, rest: str) -> str:
        words = rest.split(None, 3)
        as_json = bool(words) and words[0] == "-j"
        if as_json:
            words = rest.split(None, 4)[1:]
        if len(words) < 3:
            raise HMPUsage("qom-set", "qom-set: string expected")
        path, prop, text = words[0], words[1], words[2]
        if as_json:
            try:
                value: object = json.loads(text)
            except ValueError:
                raise HMPError("JSON parse error") from None
        else:  # object_property_parse(): a string visitor per the property's type
            value = self._parse_for(path, prop, text)
        self._call("qom-set", {"path": path, "property": prop, "value": value})
        return ""

    def _parse_for(self, path: str, prop: str, text: str) -> object:
        found = self.sim.qemu.resolve_path(path)
        if found is None:
            raise QMPError(f"Device '{path}' not found", "DeviceNotFound")
        kind, name = found
        if kind == "backend":
            k = self.sim.qemu.backends[name].kind_of(prop)
        else:
            k = {"requested-size": "size", **PC_DIMM_PROPS}.get(prop, "str")
        if k == "list":
            return [_uint(prop, text)]
        return _typed(prop, text, k)

    # ---------------------------------------------------------------- info
    def _info_memory_devices(self) -> str:
        out = []
        for d in self.sim.qemu.memory_devices():
            v = d["data"]
            if d["type"] == "dimm":
                out.append(
                    f'Memory device [dimm]: "{v["id"]}"\n  addr: {v["addr"]:#x}\n'
                    f"  slot: {v['slot']}\n  node: {v['node']}\n  size: {v['size']}\n"
                    f"  memdev: {v['memdev']}\n  hotplugged: {_tf(v['hotplugged'])}\n"
                    f"  hotpluggable: {_tf(v['hotpluggable'])}\n"
                )
            else:
                out.append(
                    f'Memory device [virtio-mem]: "{v["id"]}"\n  memaddr: {v["memaddr"]:#x}\n'
                    f"  node: {v['node']}\n  requested-size: {v['requested-size']}\n"
                    f"  size: {v['size']}\n  max-size: {v['max-size']}\n"
                    f"  block-size: {v['block-size']}\n  memdev: {v['memdev']}\n"
                )
        return "".join(out)

    def _info_memdev(self) -> str:
        out = []
        for m in self.sim.qemu.memdev_list():
            out.append(
                f"memory backend: {m['id']}\n  size:  {m['size']}\n  merge: {_tf(m['merge'])}\n"
                f"  dump: {_tf(m['dump'])}\n  prealloc: {_tf(m['prealloc'])}\n"
                f"  share: {_tf(m['share'])}\n  reserve: {_tf(m['reserve'])}\n"
                f"  policy: {m['policy']}\n  host nodes: {_ranges(m['host-nodes'])}\n"
            )
        return "".join(out) + "\n"

    def _info_memory_size_summary(self) -> str:
        s = self.sim.qemu.memory_size_summary()
        return f"base memory: {s['base-memory']}\nplugged memory: {s['plugged-memory']}\n"

    def _info_numa(self) -> str:
        q = self.sim.qemu
        mem = list(q.node_mem)
        plugged = [0] * len(mem)
        for d in q.memory_devices():
            v = d["data"]
            mem[v["node"]] += v["size"]
            plugged[v["node"]] += v["size"]
        out = [f"{len(mem)} nodes\n"]
        for i, cpus in enumerate(q.node_cpus):
            out.append(f"node {i} cpus:" + "".join(f" {c}" for c in cpus) + "\n")
            out.append(f"node {i} size: {mem[i] >> 20} MB\n")
            out.append(f"node {i} plugged: {plugged[i] >> 20} MB\n")
        return "".join(out)


def _tf(b: object) -> str:
    return "true" if b else "false"


def _ranges(nodes: list[int]) -> str:
    """The string output visitor's uint16 list: runs as ``a-b``, joined by commas."""
    out: list[str] = []
    for n in sorted(nodes):
        if out and "-" not in out[-1] and int(out[-1]) == n - 1:
            out[-1] = f"{out[-1]}-{n}"
        elif out and "-" in out[-1] and int(out[-1].split("-")[1]) == n - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ",".join(out)


__all__ = ["HMP", "HMPError", "HMPUsage", "keyval", "strtosz"]
