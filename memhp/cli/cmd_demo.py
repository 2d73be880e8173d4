"""``memhp demo``: the seed's scenario on the embedded simulated machine.

A memory device on node 1 at [1G, 1.5G) appears as memory8..memory11; the
blocks are onlined in order; offlining memory8 first fails (its memory holds the
page_cgroup of the others, CONFIG_MEMCG in the 3.8 profile); the ACPI eject with
its two offline passes succeeds; the same with memmap-on-memory (the seed's
"allocate the memory from the memory block they are describing") needs no
second pass.  Every step prints what the kernel created and freed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from memhp.kernel.machine import MachineError, MachineSpec
from memhp.sim.config import builtin_machine_path, load_machine

GiB = 1 << 30
MiB = 1 << 20


class Demo:
    def __init__(self, spec: MachineSpec, out: argparse.Namespace) -> None:
        from memhp.sim.machine import SimMachine  # the 'sim' extra (numpy)

        self.m = SimMachine(spec)
        self.seen = 0
        self.out = out
        self.step_no = 0

    def say(self, text: str) -> None:
        print(text)

    def step(self, title: str) -> None:
        self.step_no += 1
        print(f"\n=== {self.step_no}. {title}")

    def changes(self) -> None:
        """Print what the kernel did since the last call."""
        ev = self.m.kernel.events[self.seen :]
        self.seen = len(self.m.kernel.events)
        for e in ev:
            print(f"    {e.what:<28} {e.detail}")

    def write(self, path: str, value: str) -> None:
        try:
            self.m.sysfs.write(path, value.encode() + b"\n")
            print(f"  $ echo {value} > {path}   # ok")
        except OSError as e:
            print(f"  $ echo {value} > {path}   # write error: {e.strerror}")
            why = self.m.kernel.hotplug.last_offline_failure
            if why is not None and e.errno is not None:
                print(
                    f"    why: {why.reason}"
                    + (f"; in use: {', '.join(why.owners[:3])}" if why.owners else "")
                )
        self.changes()

    def blocks(self, ids: range) -> None:
        """The blocks as user space sees them (state and zones from sysfs)."""
        fs = self.m.sysfs
        for b in ids:
            base = f"/sys/devices/system/memory/memory{b}"
            try:
                state = fs.read(base + "/state").decode().strip()
            except OSError:
                print(f"    memory{b}: gone")
                continue
            print(f"    memory{b}: {state}")

    def check(self) -> None:
        from memhp.kernel.invariants import check_invariants

        check_invariants(self.m.kernel)


def _run(spec: MachineSpec, args: argparse.Namespace) -> int:
    from memhp.viz.demo import demo_device

    nid, addr, size = demo_device(spec)
    bs = spec.block_size
    ids = range(addr // bs, (addr + size) // bs)
    first, last = ids[0], ids[-1]
    names = f"memory{first}..memory{last}"
    where = f"node {nid} at [{_h(addr)}, {_h(addr + size)})"
    d = Demo(spec, args)
    k = d.m.kernel
    d.step(
        f"boot {spec.name} ({spec.profile.name}, MEMCG {'on' if spec.memcg else 'off'}"
        + (", memmap_on_memory" if spec.memmap_on_memory else "")
        + ")"
    )
    d.changes()
    d.check()
    d.step(f"the platform inserts a memory device on {where}")
    dimm = d.m.device_add(size, nid, id="dimm1", addr=addr)
    dev = f"PNP0C80:{dimm.slot:02X}"
    d.changes()
    d.blocks(ids)
    d.check()
    d.step(f"online {names}, in that order")
    for b in ids:
        d.write(f"/sys/devices/system/memory/memory{b}/state", "online")
    d.check()
    from memhp.viz.model import machine_map

    before = machine_map(d.m, title=f"seed scenario: {names} online (before the eject)")
    d.step(f"offline memory{first} first")
    d.write(f"/sys/devices/system/memory/memory{first}/state", "offline")
    d.check()
    d.step(f"hot-remove: echo 1 > /sys/bus/acpi/devices/{dev}/eject (offline twice, then remove)")
    d.write(f"/sys/bus/acpi/devices/{dev}/eject", "1")
    for ev in d.m.platform.events:
        print(f"    platform event {ev.event} {ev.data}")
    d.check()
    gone = not any(b in k.memory.blocks for b in ids)
    print(
        f"\n  {names} {'removed' if gone else 'still present'}; node{nid} "
        f"{'offline' if nid not in k.nodes.node_states['N_ONLINE'] else 'online'}; "
        f"{len(k.fwmap.entries)} firmware map entries"
    )
    if not gone:
        return 1
    after = machine_map(d.m, title="seed scenario: after the eject")
    from memhp.viz.demo import write_demo_pictures

    try:
        paths = write_demo_pictures(args.out, before, after)
    except OSError as e:
        print(f"memhp demo: {e.filename or args.out}: {e.strerror}", file=sys.stderr)
        return 1
    print("\n  pictures of the physical memory map, before and after:")
    for path in paths:
        print(f"    {path}")
    if not spec.memmap_on_memory:
        print(
            "\n--- the seed's idea: metadata allocated from the block it describes"
            " (memmap_on_memory)"
        )
        spec2 = dataclasses.replace(spec, memmap_on_memory=True)
        d2 = Demo(spec2, args)
        d2.step_no = d.step_no
        d2.m.device_add(size, nid, id="dimm1", addr=addr)
        d2.seen = len(d2.m.kernel.events)
        for b in ids:
            d2.write(f"/sys/devices/system/memory/memory{b}/state", "online")
        d2.step(f"offline memory{first} first: no other block depends on it now")
        d2.write(f"/sys/devices/system/memory/memory{first}/state", "offline")
        d2.write(f"/sys/bus/acpi/devices/{dev}/eject", "1")
        d2.check()
        if any(b in d2.m.kernel.memory.blocks for b in ids):
            return 1
    print("\ninvariants held after every step")
    return 0


def _h(n: int) -> str:
    return f"{n // GiB}G" if n % GiB == 0 else f"{n / GiB:g}G" if n >= GiB else f"{n // MiB}M"


def _check_out(out: str) -> str | None:
    """Why pictures cannot go to the directory ``out`` (checked before the demo runs)."""
    if os.path.exists(out):
        if not os.path.isdir(out):
            return f"{out}: exists and is not a directory"
        if not os.access(out, os.W_OK):
            return f"{out}: not writable"
        return None
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        return f"{out}: cannot create a directory under {parent}"
    if os.path.realpath(parent).startswith(("/proc", "/sys")):
        return f"{out}: cannot create a directory under {parent} (a kernel file system)"
    return None


def run(args: argparse.Namespace) -> int:
    if args.virtio_mem:
        from memhp.cli import demo_virtio

        return demo_virtio.run(args)
    from memhp.host.errors import UsageError
    from memhp.kernel.mm.page_alloc import AllocError
    from memhp.sim.machine import PlatformError

    path = builtin_machine_path(args.machine)
    try:
        spec = load_machine(path)
    except MachineError as e:
        print(f"memhp demo: {e}", file=sys.stderr)
        return 1
    problem = _check_out(args.out)
    if problem:
        print(f"memhp demo: {problem}", file=sys.stderr)
        return 1
    try:
        return _run(spec, args)
    except UsageError as e:
        print(f"memhp demo: {e}", file=sys.stderr)
        return 1
    except (PlatformError, AllocError) as e:
        print(f"memhp demo: {spec.name}: {e}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the seed's hot-remove scenario on a simulated machine")
    p.add_argument(
        "machine", nargs="?", default="seed", help="machine TOML (default: machines/seed.toml)"
    )
    p.add_argument(
        "--out",
        default=os.environ.get("MEMHP_DEMO_OUT", "out/demo"),
        help="where pictures go (default: out/demo)",
    )
    p.add_argument(
        "--virtio-mem",
        action="store_true",
        help="plug, online and unplug a virtio-mem device with something in the way "
        "(machines/virtio-mem.toml)",
    )
    p.set_defaults(func=run)
