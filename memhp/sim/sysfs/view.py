"""The sysfs (and a little procfs/debugfs) view of a simulated kernel.

:class:`KernelSysfs` implements :class:`~memhp.abi.fs.SysfsFS` over a
:class:`~memhp.kernel.kernel.Kernel`: directories are computed from the model on
every lookup (so they appear and vanish with hot-add and hot-remove), every
attribute has a show handler and, where the kernel has one, a store handler
that parses like the kernel and fails with the kernel's errno.  One lock makes
each read and write atomic, so several clients (threads of a FUSE daemon) never
see or cause a half-applied state.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from dataclasses import dataclass

from memhp.abi.acpi import ACPI_MEMORY_PARENT, ACPI_ROOT
from memhp.abi.fs import Kind, Stat, normpath, oserror, resolve_link
from memhp.abi.layout import PAGE_SHIFT, PAGE_SIZE
from memhp.kernel.drivers.acpi.acpi_memhotplug import AcpiDevice
from memhp.kernel.drivers.base import memory
from memhp.kernel.drivers.base.memory import (
    MMOP,
    ONLINE_TYPE_TO_STR,
    MemAction,
    MemoryBlock,
    state_store,
)
from memhp.kernel.kernel import Kernel
from memhp.kernel.lib.kobject_uevent import ObjectEvent
from memhp.kernel.mm import memory_failure
from memhp.sim import procfs
from memhp.sim.sysfs.attrs import cpumask_hex, kstrtobool, nodelist, sysfs_streq


# ---------------------------------------------------------------- node types
@dataclass
class Dir:
    names: Callable[[], list[str]]
    child: Callable[[str], Node | None]
    mode: int = 0o755


@dataclass
class Attr:
    show: Callable[[], str] | None
    store: Callable[[bytes], int] | None = None  # 0 or -errno
    mode: int = 0o444
    #: Ranged reader for big binary files (/proc/kpageflags).
    read_at: Callable[[int, int], bytes] | None = None
    size: Callable[[], int] | None = None


@dataclass
class Link:
    target: str


Node = Dir | Attr | Link


def static_dir(entries: dict[str, Callable[[], Node | None]]) -> Dir:
    """A directory with a fixed set of names (each may still vanish: factory -> None)."""

    def names() -> list[str]:
        return [n for n, f in entries.items() if f() is not None]

    def child(name: str) -> Node | None:
        f = entries.get(name)
        return f() if f is not None else None

    return Dir(names, child)


EMPTY_DIR = Dir(lambda: [], lambda _n: None)

#: kobject_action_type names accepted by a uevent store (lib/kobject_uevent.c).
UEVENT_ACTIONS = ("add", "remove", "change", "move", "online", "offline", "bind", "unbind")


def uevent_store(buf: bytes) -> int:
    """uevent_store() -> kobject_synth_uevent(): an action name, optionally with args."""
    word = buf.split(b" ", 1)[0].rstrip(b"\n")
    return 0 if word.decode("latin-1") in UEVENT_ACTIONS else -errno.EINVAL


def parse_online_type(buf: bytes) -> MMOP | None:
    """mhp_online_type_from_str()."""
    for t, s in ONLINE_TYPE_TO_STR.items():
        if sysfs_streq(buf, s):
            return t
    return None


class KernelSysfs:
    """A sysfs root (``/sys``, ``/proc``) served from a simulated kernel."""

    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.lock = threading.RLock()
        self._cache: dict[tuple[str, bool], tuple[str, Node]] = {}
        self._gen = -1
        #: Called (outside the lock) after a change that may have added or removed
        #: sysfs objects, e.g. by a FUSE server that caches directory entries.
        self.listeners: list[Callable[[], None]] = []
        #: Called (outside the lock) by drivers of the platform after each request, to
        #: wait until the listeners have acted (e.g. stale directory entries dropped).
        self.settlers: list[Callable[[], None]] = []
        #: Bumped on every object event of the kernel: the caches key on it.
        self._topology_gen = 0
        kernel.objects.subscribe(self._on_object_event)
        self._notified_gen = self._topology_gen
        self.root = static_dir(
            {
                "sys": lambda: self._sys,
                "proc": lambda: self._proc,
            }
        )
        self._proc = static_dir(
            {
                "meminfo": lambda: Attr(lambda: procfs.meminfo(self.k)),
                "kpageflags": lambda: Attr(
                    None,
                    mode=0o400,
                    read_at=lambda off, n: procfs.kpageflags(self.k, off, n),
                    size=lambda: self.k.nr_sections * (1 << 15) * 8,
                ),
            }
        )
        self._sys = static_dir(
            {
                "devices": lambda: static_dir(
                    {
                        "system": lambda: static_dir(
                            {
                                "memory": lambda: self._memory_dir(),
                                "node": lambda: self._node_root(),
                            }
                        ),
                        ACPI_ROOT: lambda: self._acpi_tree(),
                    }
                ),
                "bus": lambda: static_dir(
                    {"acpi": lambda: static_dir({"devices": lambda: self._acpi_bus_devices()})}
                ),
                "firmware": lambda: static_dir({"memmap": lambda: self._memmap_dir()}),
                "module": lambda: self._module_dir(),
                "kernel": lambda: static_dir({"debug": lambda: self._debugfs()}),
            }
        )

    # ================================================================ memory
    def _memory_dir(self) -> Dir:
        k = self.k
        fixed: dict[str, Callable[[], Node | None]] = {
            "block_size_bytes": lambda: Attr(lambda: f"{k.memory.block_size:x}\n"),
            "uevent": lambda: Attr(lambda: "", uevent_store, 0o644),
            "soft_offline_page": lambda: Attr(
                None, lambda b: self._poison_store(b, soft=True), 0o200
            ),
            "hard_offline_page": lambda: Attr(
                None, lambda b: self._poison_store(b, soft=False), 0o200
            ),
        }
        if k.profile.sysfs_probe:
            fixed["probe"] = lambda: Attr(None, self._probe_store, 0o200)
        if k.profile.sysfs_auto_online_blocks:
            fixed["auto_online_blocks"] = lambda: Attr(
                lambda: ONLINE_TYPE_TO_STR[k.hotplug.mhp_default_online_type] + "\n",
                self._auto_online_store,
                0o644,
            )

        def names() -> list[str]:
            return [f"memory{b}" for b in k.memory.blocks] + list(fixed)

        def child(name: str) -> Node | None:
            if name.startswith("memory") and name[6:].isdigit():
                b = int(name[6:])
                if str(b) != name[6:]:
                    return None
                mem = k.memory.blocks.get(b)
                return self._block_dir(mem) if mem is not None else None
            f = fixed.get(name)
            return f() if f else None

        return Dir(names, child)

    def _probe_store(self, buf: bytes) -> int:
        """probe_store(): hot-add one memory block at a physical address (no device)."""
        from memhp.sim.sysfs.attrs import kstrtoull

        addr = kstrtoull(buf, 0)
        if addr is None:
            return -errno.EINVAL
        return memory.probe_store(self.k, addr)

    def _auto_online_store(self, buf: bytes) -> int:
        t = parse_online_type(buf)
        if t is None:
            return -errno.EINVAL
        return memory.auto_online_blocks_store(self.k, t)

    def _poison_store(self, buf: bytes, soft: bool) -> int:
        """soft_offline_page_store() / hard_offline_page_store(): a physical address."""
        from memhp.sim.sysfs.attrs import kstrtoull

        addr = kstrtoull(buf, 0)
        if addr is None:
            return -errno.EINVAL
        return memory_failure.memory_failure(self.k, addr >> PAGE_SHIFT, soft)

    def _block_dir(self, mem: MemoryBlock) -> Dir:
        k = self.k
        prof = k.profile
        bid = mem.id
        spb = k.memory.sections_per_block
        e: dict[str, Callable[[], Node | None]] = {
            "uevent": lambda: Attr(lambda: "", uevent_store, 0o644),
            "phys_index": lambda: Attr(
                lambda: f"{mem.start_section_nr // k.memory.sections_per_block:08x}\n"
            ),
            "state": lambda: Attr(
                lambda: mem.state.value + "\n", lambda b: self._state_store(bid, b), 0o644
            ),
            "phys_device": lambda: Attr(lambda: "0\n"),
            "removable": lambda: Attr(lambda: f"{memory.removable_show(k, mem):d}\n"),
            "subsystem": lambda: Link("../../../../bus/memory"),
        }
        if prof.sysfs_end_phys_index:
            e["end_phys_index"] = lambda: Attr(
                lambda: f"{(mem.start_section_nr + spb - 1) // spb:08x}\n"
            )
        if prof.sysfs_online_attr:
            e["online"] = lambda: Attr(
                lambda: f"{int(mem.online)}\n", lambda b: self._online_store(bid, b), 0o644
            )
        if prof.sysfs_valid_zones:
            e["valid_zones"] = lambda: Attr(lambda: self._valid_zones(mem))
        for nid in sorted(mem.nodes):
            if nid in k.nodes.registered_nodes or nid == mem.nid:
                e[f"node{nid}"] = (lambda n=nid: lambda: Link(f"../../node/node{n}"))()
        if mem.acpi_device is not None:
            dev = mem.acpi_device
            e["firmware_node"] = lambda: Link(f"../../../{ACPI_MEMORY_PARENT}/{dev}")
        return static_dir(e)

    def _valid_zones(self, mem: MemoryBlock) -> str:
        zones = memory.valid_zones_show(self.k, mem)
        return ("none" if zones is None else " ".join(zones)) + "\n"

    def _block(self, bid: int) -> MemoryBlock:
        mem = self.k.memory.blocks.get(bid)
        if mem is None:  # removed while the file was open
            raise oserror(errno.ENODEV, f"memory{bid}")
        return mem

    def _state_store(self, bid: int, buf: bytes) -> int:
        """state_store()."""
        t = parse_online_type(buf)
        if t is None:
            return -errno.EINVAL
        return state_store(self.k, self._block(bid), t)

    def _online_store(self, bid: int, buf: bytes) -> int:
        """online_store() of drivers/base/core.c: kstrtobool, then device_online/offline."""
        val = kstrtobool(buf)
        if val is None:
            return -errno.EINVAL
        return memory.online_store(self.k, self._block(bid), val)

    # ================================================================ node
    def _node_root(self) -> Dir:
        k = self.k
        st = k.nodes.node_states
        fixed: dict[str, Callable[[], Node | None]] = {
            "uevent": lambda: Attr(lambda: "", uevent_store, 0o644),
            "possible": lambda: Attr(lambda: nodelist(st["N_POSSIBLE"]) + "\n"),
            "online": lambda: Attr(lambda: nodelist(st["N_ONLINE"]) + "\n"),
            "has_normal_memory": lambda: Attr(lambda: nodelist(st["N_NORMAL_MEMORY"]) + "\n"),
            "has_memory": lambda: Attr(lambda: nodelist(st["N_MEMORY"]) + "\n"),
            "has_cpu": lambda: Attr(lambda: nodelist(st["N_CPU"]) + "\n"),
        }
        if k.profile.sysfs_generic_initiator:
            fixed["has_generic_initiator"] = lambda: Attr(lambda: "\n")

        def names() -> list[str]:
            return [f"node{n}" for n in sorted(k.nodes.registered_nodes)] + list(fixed)

        def child(name: str) -> Node | None:
            if name.startswith("node") and name[4:].isdigit() and str(int(name[4:])) == name[4:]:
                nid = int(name[4:])
                return self._node_dir(nid) if nid in k.nodes.registered_nodes else None
            f = fixed.get(name)
            return f() if f else None

        return Dir(names, child)

    def _node_dir(self, nid: int) -> Dir:
        k = self.k
        ncpus = max((c for n in k.spec.nodes for c in n.cpus), default=0) + 1
        fixed: dict[str, Callable[[], Node | None]] = {
            "uevent": lambda: Attr(lambda: "", uevent_store, 0o644),
            "cpumap": lambda: Attr(lambda: cpumask_hex(k.nodes.cpus_of(nid), ncpus) + "\n"),
            "cpulist": lambda: Attr(lambda: nodelist(k.nodes.cpus_of(nid)) + "\n"),
            "distance": lambda: Attr(lambda: self._distance(nid)),
            "meminfo": lambda: Attr(lambda: procfs.node_meminfo(k, nid)),
            "numastat": lambda: Attr(lambda: procfs.node_numastat(k, nid)),
            "vmstat": lambda: Attr(lambda: procfs.node_vmstat(k, nid)),
            "x86": lambda: EMPTY_DIR if k.profile.sysfs_node_x86 else None,
            "subsystem": lambda: Link("../../../../bus/node"),
            "compact": lambda: Attr(None, lambda _b: 0, 0o200),
            "hugepages": lambda: self._hugepages_dir(nid),
        }
        for cpu in k.nodes.cpus_of(nid):
            fixed[f"cpu{cpu}"] = self._bind_link(f"../../cpu/cpu{cpu}")

        def names() -> list[str]:
            links = [f"memory{m.id}" for m in k.memory.blocks.values() if nid in m.nodes]
            return links + list(fixed)

        def child(name: str) -> Node | None:
            if name.startswith("memory") and name[6:].isdigit():
                mem = k.memory.blocks.get(int(name[6:]))
                if mem is not None and nid in mem.nodes and mem.name == name:
                    return Link(f"../../memory/{name}")
                return None
            f = fixed.get(name)
            return f() if f else None

        return Dir(names, child)

    @staticmethod
    def _bind_link(target: str) -> Callable[[], Node | None]:
        return lambda: Link(target)

    def _hugepages_dir(self, nid: int) -> Dir:
        """node_hugetlb_attrs of mm/hugetlb.c: one directory per huge page size."""
        k = self.k
        sizes = k.hugetlb.huge_page_sizes()

        def size_dir(size_kb: int) -> Dir:
            def count() -> int:
                return k.hugetlb.nr_huge_pages(nid, size_kb)

            def store(buf: bytes) -> int:
                """nr_hugepages_store_common(): kstrtoul(buf, 10), set_max_huge_pages()."""
                from memhp.sim.sysfs.attrs import kstrtoull

                n = kstrtoull(buf, 10)
                if n is None:
                    return -errno.EINVAL
                k.hugetlb.set_max_huge_pages(nid, min(n, 1 << 40), size_kb)
                return 0

            entries: dict[str, Callable[[], Node | None]] = {}
            if size_kb != min(sizes):
                # demote_size/demote (5.16+): a page of this size splits into smaller ones
                smaller = max(s for s in sizes if s < size_kb)
                entries["demote"] = lambda: Attr(None, lambda _b: 0, 0o200)
                entries["demote_size"] = lambda: Attr(lambda: f"{smaller}kB\n", None, 0o644)
            entries["free_hugepages"] = lambda: Attr(lambda: f"{count()}\n")
            entries["nr_hugepages"] = lambda: Attr(lambda: f"{count()}\n", store, 0o644)
            entries["surplus_hugepages"] = lambda: Attr(lambda: "0\n")
            return static_dir(entries)

        return static_dir({f"hugepages-{sz}kB": self._bind_size(size_dir, sz) for sz in sizes})

    @staticmethod
    def _bind_size(fn: Callable[[int], Dir], sz: int) -> Callable[[], Node | None]:
        return lambda: fn(sz)

    def _distance(self, nid: int) -> str:
        """node_read_distance(): distances to the online nodes."""
        spec = self.k.spec
        row = spec.node(nid).distance
        ids = [n.id for n in spec.nodes]
        parts = []
        for i in sorted(self.k.nodes.node_states["N_ONLINE"]):
            parts.append(("" if i == 0 else " ") + str(row[ids.index(i)]))
        return "".join(parts) + "\n"

    # ================================================================ module parameters
    def _module_dir(self) -> Dir | None:
        """/sys/module/memory_hotplug/parameters (mm/memory_hotplug.c module_param_cb).

        ``memmap_on_memory`` is read-only (0444) once booted; the 3.8 profile has no
        such parameter (the seed's idea there is a machine option, not a parameter).
        """
        k = self.k
        if not k.profile.sysfs_memory_hotplug_params:
            return None
        params = static_dir(
            {
                "memmap_on_memory": lambda: Attr(
                    lambda: "Y\n" if k.hotplug.memmap_on_memory else "N\n"
                ),
            }
        )
        return static_dir({"memory_hotplug": lambda: static_dir({"parameters": lambda: params})})

    # ================================================================ firmware memmap
    def _memmap_dir(self) -> Dir:
        fw = self.k.fwmap

        def names() -> list[str]:
            return [str(e.index) for e in fw.entries]

        def child(name: str) -> Node | None:
            if not name.isdigit():
                return None
            e = fw.by_index().get(int(name))
            if e is None or str(e.index) != name:
                return None
            return static_dir(
                {
                    "start": lambda: Attr(lambda: f"0x{e.start:x}\n"),
                    "end": lambda: Attr(lambda: f"0x{e.end:x}\n"),
                    "type": lambda: Attr(lambda: e.type + "\n"),
                }
            )

        return Dir(names, child)

    # ================================================================ ACPI
    def _acpi_bus_devices(self) -> Dir:
        devs = self.k.acpi.devices

        def names() -> list[str]:
            return [d.name for d in devs]

        def child(name: str) -> Node | None:
            d = self.k.acpi.device(name)
            return Link(f"../../../devices/{ACPI_MEMORY_PARENT}/{name}") if d else None

        return Dir(names, child)

    def _acpi_tree(self) -> Dir:
        parts = ACPI_MEMORY_PARENT.split("/")[1:]  # LNXSYBUS:00, PNP0A06:04

        def container() -> Dir:
            devs = self.k.acpi.devices
            return Dir(
                lambda: [d.name for d in devs],
                lambda n: self._acpi_dev_dir(d) if (d := self.k.acpi.device(n)) else None,
            )

        return static_dir({parts[0]: lambda: static_dir({parts[1]: container})})

    def _acpi_dev_dir(self, dev: AcpiDevice) -> Dir:
        e: dict[str, Callable[[], Node | None]] = {
            "hid": lambda: Attr(lambda: "PNP0C80\n"),
            # __acpi_device_modalias(): empty until the device was found present
            # (flags.initialized), and again after acpi_bus_trim().
            "modalias": lambda: Attr(lambda: "acpi:PNP0C80:\n" if dev.present else ""),
            "path": lambda: Attr(lambda: dev.path + "\n"),
            "status": lambda: Attr(lambda: f"{self.k.acpi.sta(dev)}\n"),
            "uevent": lambda: Attr(
                lambda: "MODALIAS=" + ("acpi:PNP0C80:" if dev.present else "") + "\n",
                uevent_store,
                0o644,
            ),
            "uid": lambda: Attr(lambda: f"0x{dev.slot:02X}\n"),
            "subsystem": lambda: Link("../../../../../bus/acpi"),
        }
        if dev.ejectable:
            e["eject"] = lambda: Attr(None, lambda b: self.k.acpi.eject_store(dev, b), 0o200)
        for i, bid in enumerate(dev.physical_nodes):
            name = "physical_node" if i == 0 else f"physical_node{i}"
            e[name] = (lambda b=bid: lambda: Link(f"../../../../system/memory/memory{b}"))()
        return static_dir(e)

    # ================================================================ debugfs
    def _debugfs(self) -> Dir:
        def action_dir(action: MemAction) -> Dir:
            return static_dir(
                {
                    "error": lambda: Attr(
                        lambda: f"{self.k.memory.notifier_error_inject.get(action, 0)}\n",
                        lambda b: self._inject_store(action, b),
                        0o644,
                    )
                }
            )

        actions = {
            "MEM_GOING_ONLINE": MemAction.MEM_GOING_ONLINE,
            "MEM_GOING_OFFLINE": MemAction.MEM_GOING_OFFLINE,
        }
        return static_dir(
            {
                "notifier-error-inject": lambda: static_dir(
                    {
                        "memory": lambda: static_dir(
                            {
                                "actions": lambda: static_dir(
                                    {n: self._bind(action_dir, a) for n, a in actions.items()}
                                ),
                                "priority": lambda: Attr(lambda: "0\n"),
                            }
                        )
                    }
                )
            }
        )

    @staticmethod
    def _bind(fn: Callable[[MemAction], Dir], a: MemAction) -> Callable[[], Node | None]:
        return lambda: fn(a)

    def _inject_store(self, action: MemAction, buf: bytes) -> int:
        """debugfs_create_errno() store: an integer in [-MAX_ERRNO, 0]."""
        text = buf.strip().decode("latin-1", "replace")
        try:
            v = int(text, 0)
        except ValueError:
            return -errno.EINVAL
        if not -4095 <= v <= 0:
            return -errno.EINVAL
        if v:
            self.k.memory.notifier_error_inject[action] = v
        else:
            self.k.memory.notifier_error_inject.pop(action, None)
        return 0

    def _on_object_event(self, _ev: ObjectEvent) -> None:
        """A sysfs object appeared or vanished (kobject_uevent)."""
        self._topology_gen += 1

    # ================================================================ resolution
    def resolve(self, path: str, follow_last: bool = True) -> tuple[str, Node]:
        """The canonical path and node that ``path`` names (links followed as asked).

        Results are cached until the kernel next adds or removes a sysfs object
        (an event of ``Kernel.objects``).
        """
        with self.lock:
            gen = self._topology_gen
            if gen != self._gen:
                self._cache.clear()
                self._gen = gen
            key = (path, follow_last)
            hit = self._cache.get(key)
            if hit is None:
                hit = self._resolve(path, follow_last)
                if len(self._cache) > 65536:
                    self._cache.clear()
                self._cache[key] = hit
            return hit

    def _resolve(self, path: str, follow_last: bool) -> tuple[str, Node]:
        path = normpath(path)
        hops = 0
        parts = [p for p in path.split("/") if p]
        node: Node = self.root
        done: list[str] = []
        i = 0
        while i < len(parts):
            name = parts[i]
            if not isinstance(node, Dir):
                raise oserror(errno.ENOTDIR, path)
            nxt = node.child(name)
            if nxt is None:
                raise oserror(errno.ENOENT, path)
            cur = "/" + "/".join([*done, name])
            last = i == len(parts) - 1
            if isinstance(nxt, Link) and (not last or follow_last):
                hops += 1
                if hops > 40:
                    raise oserror(errno.ELOOP, path)
                target = resolve_link(cur, nxt.target)
                parts = [p for p in target.split("/") if p] + parts[i + 1 :]
                node, done, i = self.root, [], 0
                continue
            node = nxt
            done.append(name)
            i += 1
        return "/" + "/".join(done), node

    # ================================================================ SysfsFS
    def lstat(self, path: str) -> Stat:
        with self.lock:
            _, node = self.resolve(path, follow_last=False)
            if isinstance(node, Dir):
                return Stat(Kind.DIR, node.mode)
            if isinstance(node, Link):
                return Stat(Kind.LINK, 0o777, len(node.target))
            size = node.size() if node.size else PAGE_SIZE
            return Stat(Kind.FILE, node.mode, size)

    def stat(self, path: str) -> Stat:
        with self.lock:
            _, node = self.resolve(path, follow_last=True)
            if isinstance(node, Dir):
                return Stat(Kind.DIR, node.mode)
            assert isinstance(node, Attr)
            return Stat(Kind.FILE, node.mode, node.size() if node.size else PAGE_SIZE)

    def listdir(self, path: str) -> list[str]:
        with self.lock:
            _, node = self.resolve(path, follow_last=True)
            if not isinstance(node, Dir):
                raise oserror(errno.ENOTDIR, path)
            return node.names()

    def _attr(self, path: str) -> Attr:
        _, node = self.resolve(path, follow_last=True)
        if isinstance(node, Dir):
            raise oserror(errno.EISDIR, path)
        assert isinstance(node, Attr)
        return node

    def read(self, path: str) -> bytes:
        with self.lock:
            node = self._attr(path)
            if node.read_at is not None:
                size = node.size() if node.size else 0
                return node.read_at(0, size)
            if node.show is None:
                raise oserror(errno.EACCES, path)
            return node.show().encode()

    def read_at(self, path: str, offset: int, size: int) -> bytes:
        """pread(): a slice of a file (for /proc/kpageflags)."""
        with self.lock:
            node = self._attr(path)
            if node.read_at is not None:
                return node.read_at(offset, size)
            if node.show is None:
                raise oserror(errno.EACCES, path)
            return node.show().encode()[offset : offset + size]

    def notify_changed(self) -> None:
        """Tell the listeners if objects appeared or vanished since the last call."""
        with self.lock:
            gen = self._topology_gen
            if gen == self._notified_gen:
                return
            self._notified_gen = gen
        for fn in list(self.listeners):
            fn()

    def settle(self) -> None:
        """Notify, then wait until every listener has acted on the last change."""
        self.notify_changed()
        for fn in list(self.settlers):
            fn()

    def write(self, path: str, data: bytes) -> int:
        """One write(2) to an attribute: the store handler sees at most one page."""
        try:
            return self._write(path, data)
        finally:
            self.notify_changed()

    def _write(self, path: str, data: bytes) -> int:
        with self.lock:
            node = self._attr(path)
            if node.store is None:
                raise oserror(errno.EACCES, path)
            buf = bytes(data[: PAGE_SIZE - 1])
            if not buf:
                return 0
            ret = node.store(buf)
            if ret < 0:
                raise oserror(-ret, path)
            return len(buf)

    def readlink(self, path: str) -> str:
        with self.lock:
            _, node = self.resolve(path, follow_last=False)
            if not isinstance(node, Link):
                raise oserror(errno.EINVAL, path)
            return node.target
