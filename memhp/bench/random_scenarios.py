"""Random scenarios: seeded scripts of steps that explore what no hand-written scenario
does (``memhp bench random KIND --seed N``).

Each kind mixes the bench's actions at random on a QEMU machine, with expectations
wide enough that most plausible outcomes are accepted (a virtio-mem resize expects the
size requested, which an unplug may miss on both sides alike): the point is not the
scenario's own check but the comparison, step by step, of the real kernel (or QEMU)
with the model (``memhp bench diff FILE --kernel all [--record DIR]``).  A difference
found this way is a model bug to fix and then to pin with a small hand-written
scenario.

* ``dimms``: DIMMs on the QEMU guest of machines/qemu-linux-6.1.toml (node 1 without
  memory), state changes of their blocks, guest tasks, tmpfs files, the hugetlb pool
  and the watermark sysctl, memhp remove and device_del;
* ``dimms-2node``: the same on a guest whose two nodes have memory;
* ``virtio-mem``: a virtio-mem device on node 1, resized between the same actions;
* ``sysfs-writes``: odd values written to the memory-hotplug and hugetlb files, each
  read back;
* ``qmp``: object-add, object-del, device_add, device_del, query-memdev, qom-get and
  qom-set of memory backends, DIMMs and virtio-mem devices.

The same kind and seed always give the same text.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

KINDS = ("dimms", "dimms-2node", "virtio-mem", "sysfs-writes", "qmp")
MiB = 1 << 20

#: Every outcome a block state write may have.
STATE_OUTCOMES = ["ok", "EINVAL", "EBUSY", "ENOENT", "EINTR"]
#: Every errno a sysfs or procfs write may give.
WRITE_OUTCOMES = [
    *STATE_OUTCOMES,
    "ERANGE",
    "EACCES",
    "EPERM",
    "ENOSPC",
    "EIO",
    "EFAULT",
    "ENXIO",
    "EOPNOTSUPP",
    "E2BIG",
    "EOVERFLOW",
    "EHWPOISON",
]
_INTS = ["12", " 12", "12 ", "12\n", "+12", "-1", "0x10", "010", "1e3", "", "abc", "12abc", "0"]
#: sysfs-writes: the files and the values tried on them.
WRITE_TARGETS: dict[str, list[str]] = {
    "/proc/sys/vm/nr_hugepages": _INTS,
    "/proc/sys/vm/nr_overcommit_hugepages": _INTS,
    "/proc/sys/vm/nr_hugepages_mempolicy": _INTS,
    "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages": _INTS,
    "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages": _INTS,
    "/proc/sys/vm/min_free_kbytes": ["50000", " 50000", "+50000", "-1", "0x10000", "abc"],
    "/proc/sys/vm/watermark_scale_factor": ["0", "1", "3000", "3001", " 20", "-5", "10"],
    "/proc/sys/vm/lowmem_reserve_ratio": ["256 256 32", "1 2 3 4 5 6", "a b", "-1 5"],
    "auto_online_blocks": ["online", "online_movable", "offline", " online", "onl"],
    "memory32/state": ["online", "offline", " online", "online ", "Online", "online_movable\n"],
    "memory32/online": ["1", "0", "y", "n", "1\n", " 1", "11"],
    "memory32/valid_zones": ["Normal"],
    "memory32/uevent": ["add", "change", "bogus", ""],
    "soft_offline_page": ["abc", "", "0x1", "-1", "0x1000000", "0x100000000"],
    "hard_offline_page": ["abc", "", "-1"],
    "/sys/module/memory_hotplug/parameters/online_policy": ["auto-movable", "bogus", ""],
    "/sys/module/memory_hotplug/parameters/auto_movable_ratio": ["0", "301", "-1", "abc"],
}
#: Files written but not read back (write-only or not meant to be read).
_WRITE_ONLY = ("soft_offline_page", "hard_offline_page", "uevent")

_TWO_NODE_MACHINE = """[machine]
name = "qemu-pc-2node-mem"
platform = "qemu-pc"
profile = "linux-6.1"
gbpages = false

[machine.kernel]
image_size = "45272K"

[[machine.node]]
id = 0
cpus = [0, 1]
size = "1G"

[[machine.node]]
id = 1
cpus = []
size = "512M"

[machine.hotplug]
slots = 4
maxmem = "8G"
"""
_VIRTIO_MACHINE = """[machine]
base = "machines/qemu-linux-6.1.toml"

[[machine.virtio_mem]]
id = "vm0"
size = "1G"
node = 1
requested_size = "0"
"""


def _toml(value: object) -> str:
    """A TOML value (strings as JSON strings, which TOML reads alike)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


class _Script:
    """The steps of one scenario, numbered and named uniquely."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    def add(self, fields: dict[str, object], name: str, capture: bool = False) -> None:
        body = "".join(f"{k} = {_toml(v)}\n" for k, v in fields.items())
        body += f"name = {_toml(f'{len(self.steps):02d} {name}')}\n"
        if not capture:
            body += "capture = false\n"
        self.steps.append("[[step]]\n" + body)


def _workload(r: random.Random, kind: str, n: int) -> str:
    """dimms, dimms-2node, virtio-mem: a machine, its command line and ``n`` steps."""
    s = _Script()
    header = [f'description = """Random {kind} scenario (memhp bench random)."""']
    if kind == "virtio-mem":
        header.append(_VIRTIO_MACHINE)
        state = r.choice(["online", "online_movable"])
    else:
        header.append('tags = ["guest-python"]')
        header.append(
            _TWO_NODE_MACHINE
            if kind == "dimms-2node"
            else 'machine = "machines/qemu-linux-6.1.toml"'
        )
        state = r.choice(["offline", "online", "online_movable", "online_kernel"])
    cmdline = [f"memhp_default_state = {_toml(state)}"]
    if r.random() < 0.3:
        cmdline += [
            'online_policy = "auto-movable"',
            f"auto_movable_ratio = {r.choice([0, 100, 301])}",
        ]
    if r.random() < 0.3:
        cmdline.append('transparent_hugepage = "never"')
    if kind != "virtio-mem" and r.random() < 0.3:
        cmdline.append("memmap_on_memory = true")
    header += ["", "[cmdline]", *cmdline, ""]
    blocks: list[int] = list(range(32, 40)) if kind == "virtio-mem" else []
    dimms: list[str] = []
    if kind != "virtio-mem":
        base = 32
        for i in range(r.choice([1, 2, 3])):
            size, node = r.choice([256, 384, 512]), r.choice([0, 1])
            dimms.append(f"dimm{i + 1}")
            s.add(
                {"hot_add": {"size": f"{size}M", "node": node, "id": dimms[-1]}}, f"add {dimms[-1]}"
            )
            blocks += range(base, base + size // 128)
            base += size // 128
    nodes = [0] if kind == "dimms" else [0, 1]
    tasks: list[str] = []
    counter = {"task": 0, "file": 0}

    def task() -> None:
        counter["task"] += 1
        name = f"t{counter['task']}"
        mv, um, node = r.choice([32, 64, 128, 192]), r.choice([0, 4, 16]), r.choice(nodes)
        spec = {"name": name, "movable": f"{mv}M", "unmovable": f"{um}M", "node": node}
        s.add({"task": spec, "expect": ["ok", "failed: [Errno 22] set_mempolicy"]}, f"task {name}")
        tasks.append(name)

    def end() -> None:
        if tasks:
            name = tasks.pop(r.randrange(len(tasks)))
            s.add({"end_task": name, "expect": ["ok", f"failed: no task {name}"]}, f"end {name}")

    def fill() -> None:
        counter["file"] += 1
        spec = {
            "size": f"{r.choice([32, 64, 128])}M",
            "node": r.choice([0, 1]),
            "file": f"f{counter['file']}",
        }
        s.add({"fill": spec, "expect": ["ok", "failed: mount EINVAL"]}, f"fill f{counter['file']}")

    def state_write() -> None:
        b, v = r.choice(blocks), r.choice(["offline", "online", "online_movable", "online_kernel"])
        s.add({"write": f"memory{b}/state", "value": v, "expect": STATE_OUTCOMES}, f"memory{b} {v}")

    def hugetlb() -> None:
        node = r.choice([None, *nodes])
        path = (
            "/proc/sys/vm/nr_hugepages"
            if node is None
            else f"/sys/devices/system/node/node{node}/hugepages/hugepages-2048kB/nr_hugepages"
        )
        # (a node without memory has no hugepages directory: ENOENT)
        value = str(r.choice([0, 8, 32, 64]))
        s.add({"write": path, "value": value, "expect": ["ok", "ENOENT"]}, "hugetlb", True)

    def remove() -> None:
        if kind == "virtio-mem":
            size = r.choice(["0", "128M", "256M", "512M", "768M", "1G"])
            # (no expectation that fits every size reached: the request's own is
            # checked, a miss is no difference between the two sides)
            step = {"virtio_mem_resize": {"id": "vm0", "size": size}, "settle": 8}
            s.add(step, f"resize {size}", capture=True)
        elif dimms:
            i = r.randrange(len(dimms))
            if r.random() < 0.5:
                argv = ["remove", f"PNP0C80:{i:02X}", "--timeout", "6"]
                s.add({"memhp": argv, "expect_rc": [0, 1]}, f"memhp remove {i}", capture=True)
            else:
                step = {"device_del": dimms[i], "expect": ["removed", "kept"]}
                s.add(step, f"device_del {dimms[i]}", capture=True)

    actions: list[tuple[float, Callable[[], None]]] = [
        (0.35, state_write),
        (0.12, task),
        (0.06, end),
        (0.06, fill),
        (0.1, hugetlb),
        (0.08, remove),
    ]
    total = sum(w for w, _ in actions)
    for _ in range(n):
        x = r.random() * total
        for w, act in actions:
            if x < w:
                act()
                break
            x -= w
    while tasks:
        end()
    s.add({"capture": "end"}, "end", capture=True)
    return "\n".join(header) + "\n" + "\n".join(s.steps)


def _writes(r: random.Random, n: int) -> str:
    s = _Script()
    s.add({"hot_add": {"size": "256M", "node": 0, "id": "dimm1"}}, "add dimm1")
    for _ in range(n):
        target = r.choice(sorted(WRITE_TARGETS))
        value = r.choice(WRITE_TARGETS[target])
        short = target.rsplit("/", 1)[-1]
        s.add({"write": target, "value": value, "expect": WRITE_OUTCOMES}, f"write {short}")
        if not target.endswith(_WRITE_ONLY):
            s.add({"read": target}, f"read {short}")
    s.add({"capture": "end"}, "end", capture=True)
    header = [
        'description = """Random sysfs-writes scenario (memhp bench random)."""',
        'machine = "machines/qemu-linux-6.1.toml"',
        "",
        "[cmdline]",
        'memhp_default_state = "offline"',
        "",
    ]
    return "\n".join(header) + "\n" + "\n".join(s.steps)


#: qom-set of a backend: (property, value), allowed and refused alike.
_BACKEND_SETS: list[tuple[str, object]] = [
    ("merge", False),
    ("dump", False),
    ("prealloc", False),  # (not on: a 16G backend would be preallocated on the host)
    ("share", True),
    ("reserve", False),
    ("size", 4096),
    ("policy", "bind"),
    ("policy", "frob"),
    ("host-nodes", [0]),
    ("prealloc-threads", 0),
    ("seal", False),
    ("mem-path", "/tmp"),
    ("bogus", 1),
]
#: qom-get of a backend.
_BACKEND_GETS = ["size", "merge", "prealloc", "share", "policy", "host-nodes", "type", "seal"]


def _backend_path(r: random.Random, oid: str) -> str:
    """A backend's QOM path, absolute or partial."""
    return r.choice([oid, f"/objects/{oid}"])


def _qmp(r: random.Random, n: int) -> str:
    s = _Script()
    sizes = [0, 4096, 2 * MiB, 100 * MiB, 128 * MiB, 130 * MiB, 256 * MiB, 1 << 30, 16 << 30]
    backends = ["m1", "m2", "m3"]
    devices = ["d0", "d1", "v0", "vm0", "nosuch"]

    def backend() -> str:
        return r.choice([*backends, "m0", "nosuch"])

    for _ in range(n):
        x = r.random()
        if x < 0.2:
            qtype = r.choice(["memory-backend-ram", "memory-backend-file", "memory-backend-memfd"])
            args: dict[str, object] = {
                "qom-type": qtype,
                "id": r.choice(backends),
                "size": r.choice(sizes),
            }
            if qtype == "memory-backend-file":
                args["mem-path"] = "/dev/shm"
            s.add({"qmp": "object-add", "arguments": args}, "object-add")
        elif x < 0.4:
            args = {"driver": "pc-dimm", "id": r.choice(["d0", "d1", "vm0"]), "memdev": backend()}
            if r.random() < 0.3:
                args["node"] = r.choice([0, 1, 9])
            if r.random() < 0.2:
                args["slot"] = r.choice([0, 3, 4])
            s.add({"qmp": "device_add", "arguments": args}, "device_add pc-dimm")
        elif x < 0.55:
            args = {"driver": "virtio-mem-pci", "id": r.choice(["v0", "v1"]), "memdev": backend()}
            if r.random() < 0.3:
                args["requested-size"] = r.choice(sizes)
            if r.random() < 0.3:
                args["block-size"] = r.choice([MiB, 2 * MiB, 3 * MiB, 4 * MiB])
            s.add({"qmp": "device_add", "arguments": args}, "device_add virtio-mem")
        elif x < 0.7 and r.random() < 0.4:  # a backend's property (/objects/ID)
            prop, value = r.choice(_BACKEND_SETS)
            args = {"path": _backend_path(r, backend()), "property": prop, "value": value}
            s.add({"qmp": "qom-set", "arguments": args}, "qom-set backend")
        elif x < 0.7:
            prop = r.choice(
                ["requested-size", "block-size", "size", "node", "memaddr", "addr", "bogus"]
            )
            args = {"path": r.choice(devices), "property": prop, "value": r.choice(sizes)}
            s.add({"qmp": "qom-set", "arguments": args}, "qom-set")
        elif x < 0.82 and r.random() < 0.4:
            prop = r.choice(_BACKEND_GETS)
            args = {"path": _backend_path(r, backend()), "property": prop}
            s.add({"qmp": "qom-get", "arguments": args}, "qom-get backend")
        elif x < 0.82:
            prop = r.choice(
                ["size", "requested-size", "block-size", "node", "addr", "slot", "memdev"]
            )
            s.add(
                {"qmp": "qom-get", "arguments": {"path": r.choice(devices), "property": prop}},
                "qom-get",
            )
        elif x < 0.92:
            s.add({"qmp": "object-del", "arguments": {"id": backend()}}, "object-del")
        else:
            cmd = r.choice(["query-memory-devices", "query-memdev"])
            s.add({"qmp": cmd, "arguments": {}}, cmd)
    s.add({"wait": 5}, "settle")
    s.add({"capture": "end"}, "end", capture=True)
    header = [
        'description = """Random qmp scenario (memhp bench random)."""',
        _VIRTIO_MACHINE,
        "[cmdline]",
        'memhp_default_state = "online_movable"',
        "",
    ]
    return "\n".join(header) + "\n" + "\n".join(s.steps)


def generate(kind: str, seed: int, steps: int = 30) -> str:
    """The TOML text of a random scenario of ``kind`` (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
    if steps <= 0:
        raise ValueError(f"steps: a positive number, not {steps}")
    r = random.Random(f"{kind}:{seed}")
    if kind == "sysfs-writes":
        return _writes(r, steps)
    if kind == "qmp":
        return _qmp(r, steps)
    return _workload(r, kind, steps)
