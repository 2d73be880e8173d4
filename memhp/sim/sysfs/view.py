"""The sysfs (and a little procfs/debugfs) view of a simulated kernel.

:class:`KernelSysfs` implements :class:`~memhp.abi.fs.SysfsFS` over a
:class:`~memhp.kernel.kernel.Kernel`: directories are computed from the model on
every lookup (so they appear and vanish with hot-add and hot-remove), every
attribute has a show handler and, where the kernel has one, a store handler
that parses like the kernel and fails with the kernel's errno.  One lock makes
each read and write atomic, so several clients (threads of a FUSE daemon) never
see or cause a half-applied state.

This module is the tree's root, lookup, caching and locking; the subtrees and
their attribute tables are one module each: :mod:`~memhp.sim.sysfs.memory`
(/sys/devices/system/memory), :mod:`~memhp.sim.sysfs.node`
(/sys/devices/system/node), :mod:`~memhp.sim.sysfs.acpi` (/sys/devices/LNXSYSTM:00,
/sys/bus/acpi), :mod:`~memhp.sim.sysfs.firmware` (/sys/firmware/memmap),
:mod:`~memhp.sim.sysfs.module` (/sys/module), :mod:`~memhp.sim.sysfs.debugfs`
(/sys/kernel/debug); /proc's files come from :mod:`memhp.sim.procfs`.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable

from memhp.abi.acpi import ACPI_MEMORY_PARENT, ACPI_ROOT
from memhp.abi.fs import Kind, Stat, normpath, oserror, resolve_link
from memhp.abi.layout import PAGE_SIZE
from memhp.abi.paths import SYS_ACPI_DEVICES, SYS_MEMORY, SYS_NODE
from memhp.kernel.kernel import Kernel
from memhp.kernel.lib.kobject_uevent import ObjectEvent
from memhp.sim import procfs, vmstat
from memhp.sim.sysfs.acpi import acpi_bus_devices, acpi_tree
from memhp.sim.sysfs.debugfs import debugfs_dir
from memhp.sim.sysfs.firmware import memmap_dir
from memhp.sim.sysfs.hugetlb import hugepages_dir
from memhp.sim.sysfs.hugetlb import vm_sysctls as hugetlb_sysctls
from memhp.sim.sysfs.kernfs import EMPTY_DIR, Attr, Dir, Link, Node, static_dir
from memhp.sim.sysfs.memory import memory_dir
from memhp.sim.sysfs.module import module_dir
from memhp.sim.sysfs.node import node_root
from memhp.sim.sysfs.page_alloc import vm_sysctls
from memhp.sim.sysfs.virtio import pci_root, virtio_bus


def node_stat(node: Node) -> Stat:
    """lstat() of a resolved node: a directory, a link (its target's length) or an
    attribute (its size, else a page, as sysfs says)."""
    if isinstance(node, Dir):
        return Stat(Kind.DIR, node.mode)
    if isinstance(node, Link):
        return Stat(Kind.LINK, 0o777, len(node.target))
    assert isinstance(node, Attr)
    return Stat(Kind.FILE, node.mode, node.size() if node.size else PAGE_SIZE)


#: Directories whose nodes compute everything from the model on demand and belong to
#: no kernel object: they stay in the lookup cache when objects come and go (the
#: tree's spine; a device's or block's own directory holds its object and goes).
_SPINE = frozenset(
    ["/", "/sys", "/sys/devices", "/sys/devices/system", SYS_MEMORY, SYS_NODE, "/proc"]
    + ["/sys/bus", "/sys/bus/acpi", SYS_ACPI_DEVICES]
    + ["/sys/devices/" + "/".join(ACPI_MEMORY_PARENT.split("/")[: i + 1]) for i in range(3)]
)


class KernelSysfs:
    """A sysfs root (``/sys``, ``/proc``) served from a simulated kernel."""

    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.lock = threading.RLock()
        #: Bumped on every kernel object event (lib/kobject_uevent: add/remove).
        self._objects_version = 0
        kernel.objects.subscribe(self._on_object_event)
        #: Lookups by path: [0] not following the last link, [1] following it
        #: (keyed by the string alone: no tuple to build and hash per lookup).
        self._caches: tuple[dict[str, tuple[str, Node]], dict[str, tuple[str, Node]]] = ({}, {})
        #: The caches' entries of :data:`_SPINE`, put back whenever they are emptied.
        self._spines: tuple[dict[str, tuple[str, Node]], dict[str, tuple[str, Node]]] = ({}, {})
        self._gen = -1
        #: Called (outside the lock) after a change that may have added or removed
        #: sysfs objects, e.g. by a FUSE server that caches directory entries.
        self.listeners: list[Callable[[], None]] = []
        #: Called (outside the lock) by drivers of the platform after each request, to
        #: wait until the listeners have acted (e.g. stale directory entries dropped).
        self.settlers: list[Callable[[], None]] = []
        self._notified_gen = self._topology_version()
        #: /sys/devices/system/memory: its listing and children are computed on
        #: demand, its global files depend only on the profile, so it is built once.
        self._memory_dir = memory_dir(self.k)
        self.root = static_dir(
            {
                "sys": lambda: self._sys,
                "proc": lambda: self._proc,
            }
        )
        self._proc = static_dir(
            {
                "meminfo": lambda: Attr(lambda: procfs.meminfo(self.k)),
                "iomem": lambda: Attr(lambda: procfs.iomem(self.k)),
                "zoneinfo": lambda: Attr(lambda: vmstat.zoneinfo(self.k)),
                "vmstat": lambda: Attr(lambda: vmstat.vmstat(self.k)),
                "buddyinfo": lambda: Attr(lambda: vmstat.buddyinfo(self.k)),
                "sys": lambda: static_dir(
                    {
                        "vm": lambda: static_dir(
                            dict(sorted({**hugetlb_sysctls(self.k), **vm_sysctls(self.k)}.items()))
                        )
                    }
                ),
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
                                "memory": lambda: self._memory_dir,
                                "node": lambda: node_root(self.k),
                            }
                        ),
                        ACPI_ROOT: lambda: acpi_tree(self.k),
                        "pci0000:00": lambda: pci_root(self.k),
                    }
                ),
                "bus": lambda: static_dir(
                    {
                        "acpi": lambda: static_dir({"devices": lambda: acpi_bus_devices(self.k)}),
                        "virtio": lambda: virtio_bus(self.k),
                    }
                ),
                "firmware": lambda: static_dir({"memmap": lambda: memmap_dir(self.k)}),
                "module": lambda: module_dir(self.k),
                "kernel": lambda: static_dir(
                    {
                        "debug": lambda: debugfs_dir(self.k),
                        "mm": lambda: static_dir(
                            {"hugepages": lambda: hugepages_dir(self.k, None)}
                        ),
                    }
                ),
            }
        )

    # ================================================================ resolution
    def _topology_version(self) -> int:
        """Changes whenever the kernel adds or removes a sysfs object.

        The kernel reports every add and remove of a sysfs object as an event
        (``Kernel.objects``, memhp.kernel.lib.kobject_uevent); lookups are cached
        and listeners notified per version.
        """
        return self._objects_version

    def _on_object_event(self, _ev: ObjectEvent) -> None:
        self._objects_version += 1

    def resolve(self, path: str, follow_last: bool = True) -> tuple[str, Node]:
        """The canonical path and node that ``path`` names (links followed as asked).

        Results, and those of every directory on the way, are cached until the
        kernel next adds or removes a sysfs object (:meth:`_topology_version`),
        except the directories of :data:`_SPINE`.
        """
        with self.lock:
            gen = self._objects_version  # (_topology_version())
            if gen != self._gen:
                self._reset_caches()
                self._gen = gen
            hit = self._caches[follow_last].get(path)
            if hit is not None:
                return hit
            path = normpath(path)
            found = self._lookup(path, follow_last, [0])
            if isinstance(found, int):
                raise oserror(found, path) from None
            return found

    def _reset_caches(self) -> None:
        for cache, spine in zip(self._caches, self._spines, strict=True):
            cache.clear()
            cache.update(spine)

    def _lookup(self, path: str, follow_last: bool, hops: list[int]) -> tuple[str, Node] | int:
        """resolve() of a normalised path: its parent directory (cached), then the
        last name in it; a link is followed from its canonical place (at most 40).
        A failed lookup returns its errno (reported against the whole path; no
        exception on the way: a missing block is what ``memhp remove`` waits for)."""
        cache = self._caches[follow_last]
        cached = cache.get(path)
        if cached is not None:
            return cached
        hit: tuple[str, Node] | int
        if path == "/":
            hit = ("/", self.root)
        else:
            parent, name = path.rsplit("/", 1)
            up = self._caches[1].get(parent or "/") or self._lookup(parent or "/", True, hops)
            if isinstance(up, int):
                return up
            pcanon, pnode = up
            if not isinstance(pnode, Dir):
                return errno.ENOTDIR
            nxt = pnode.child(name)
            if nxt is None:
                return errno.ENOENT
            cur = pcanon.rstrip("/") + "/" + name
            if isinstance(nxt, Link) and follow_last:
                hops[0] += 1
                if hops[0] > 40:
                    return errno.ELOOP
                hit = self._lookup(resolve_link(cur, nxt.target), True, hops)
                if isinstance(hit, int):
                    return hit
            else:
                hit = (cur, nxt)
        if len(cache) > 65536:
            self._reset_caches()
        cache[path] = hit
        if path in _SPINE:
            self._spines[follow_last][path] = hit
        return hit

    # ================================================================ SysfsFS
    def lstat(self, path: str) -> Stat:
        with self.lock:
            return node_stat(self.resolve(path, follow_last=False)[1])

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
            gen = self._topology_version()
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


__all__ = ["EMPTY_DIR", "Attr", "Dir", "KernelSysfs", "Link", "Node", "node_stat", "static_dir"]
