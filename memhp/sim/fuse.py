"""Serve a simulated machine's sysfs (and /proc) as a real file system, with FUSE.

The mount point ``DIR`` shows the root of a :class:`~memhp.sim.sysfs.view.KernelSysfs`:
``DIR/sys/devices/system/memory/...``, ``DIR/proc/meminfo`` and so on, so any
program written for Linux (util-linux ``lsmem --sysroot DIR``, ``chmem`` with
``DIR/sys`` bind-mounted over ``/sys``, shell scripts) can be pointed at a
simulated machine.

What makes it behave like sysfs (fs/kernfs/file.c, fs/sysfs/file.c):

- every read after a change of the model is live: the kernel caches contents,
  entries and attributes, and every change (write, QMP command) invalidates them
  before it returns; negative lookups are never cached, so directories appear and
  vanish with the model;
- EACCES at open(2) for a direction an attribute lacks (``kernfs_fop_open()``), for
  root too (the server checks every OPEN; ``default_permissions`` checks the mode
  first for users).  With ``MEMHP_FUSE_FAST=1`` in the daemon's environment opens
  make no request (reads of what did not change cost none at all) and that EACCES
  comes from the read(2) or write(2) instead (see :mod:`memhp.sim.fuse_ll`);
- each ``write(2)`` is one call of the store handler, synchronously, and fails
  with its errno (``echo offline > .../state`` prints "Device or resource
  busy" where Linux does); ``O_TRUNC`` is accepted and ignored;
- a write can block as in Linux: an offline whose pages cannot be migrated
  keeps the writer waiting until it gets a signal, then fails with EINTR
  (offline_pages(), "signal backoff").  The kernel sends FUSE_INTERRUPT when
  the blocked writer is signalled; the handler polls for it between
  migration rounds, with the model lock released so that readers
  (lsmem) and other actors (QMP workloads freeing pages) go on.  Writes are
  serialised like ``lock_device_hotplug_sysfs()``: a second writer waits
  (interruptibly) for the blocked one;
- modes as in sysfs (0444, 0644, 0200, links 0777), directories and links
  have size 0; everything is owned by the user
  that mounted it, and the mount is private to that user (no ``allow_other``).

The server speaks the FUSE protocol on /dev/fuse itself
(:mod:`memhp.sim.fuse_ll`, :mod:`memhp.sim.fuse_proto`): no libfuse, no binding, no
compiler; ``fusermount3`` mounts.  The kernel caches entries, attributes and contents;
every change of the model invalidates them before the write or QMP reply returns (see
:mod:`memhp.sim.fuse_ll`, :mod:`memhp.sim.fuse_cache` and benchmarks/NOTES.md).
Unlike sysfs, an attribute's ``st_size`` is the length of its text (the page cache
needs it).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memhp.sim.sysfs.view import KernelSysfs


log = logging.getLogger("memhp.sim.fuse")


class FuseUnavailable(RuntimeError):
    """FUSE cannot be used here (no /dev/fuse, no fusermount3)."""


def fuse_unavailable_reason() -> str | None:
    """Why a FUSE mount cannot be made here, or None when it can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist (load the fuse module or pass --device /dev/fuse)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable by this user"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (Debian package fuse3)"
    return None


# ---------------------------------------------------------------- mount helpers
def _unescape_mountinfo(field: str) -> str:
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_fstype(path: str) -> str | None:
    """The fs type of the mount at ``path`` (from /proc/self/mountinfo), or None.

    Works on a dead FUSE mount too (where ``os.path.ismount`` fails with ENOTCONN).
    """
    path = os.path.abspath(path)
    found: str | None = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) >= 5 and _unescape_mountinfo(fields[4]) == path:
                    found = right.split()[0] if right.split() else "?"
    except OSError:
        return None
    return found


def is_fuse_mount(path: str) -> bool:
    t = mount_fstype(path)
    return t is not None and (t == "fuse" or t.startswith("fuse."))


def lazy_unmount(path: str) -> bool:
    """Detach a (possibly dead) FUSE mount: ``fusermount3 -uz``, else ``umount -l``."""
    tools: list[list[str]] = []
    if shutil.which("fusermount3"):
        tools.append(["fusermount3", "-uz", path])
    if shutil.which("fusermount"):
        tools.append(["fusermount", "-uz", path])
    if os.geteuid() == 0 and shutil.which("umount"):
        tools.append(["umount", "-l", path])
    for cmd in tools:
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if r.returncode == 0 and not is_fuse_mount(path):
            return True
    return not is_fuse_mount(path)


def mount_options(fsname: str = "memhp-sim") -> str:
    """The options of a simulated sysfs mount (``fusermount3 -o``)."""
    opts = [
        "rw",
        "nosuid",
        "nodev",
        "fsname=" + fsname.replace(",", "_"),
        "subtype=memhp",
        "default_permissions",
    ]
    if not os.environ.get("MEMHP_FUSE_NO_AUTO_UNMOUNT"):
        # fusermount3 keeps a watcher that unmounts when the daemon dies, even by SIGKILL.
        opts.append("auto_unmount")
    return ",".join(opts)


def spin_seconds(value: str | None) -> float:
    """``MEMHP_FUSE_SPIN_US``: how long (µs) the server polls for the next request
    before it sleeps (unset: :data:`memhp.sim.fuse_ll.SPIN_S`; 0: it sleeps at once,
    which saves CPU time where waking a thread is cheap)."""
    from memhp.sim.fuse_ll import SPIN_S

    if value is None or value == "":
        return SPIN_S
    try:
        us = float(value)
    except ValueError:
        us = -1.0
    if not 0 <= us <= 1e6:
        raise ValueError(
            f"MEMHP_FUSE_SPIN_US={value!r}: not a number of microseconds from 0 to 1000000"
        )
    return us / 1e6


def serve(
    fs: KernelSysfs,
    mountpoint: str,
    on_ready: Callable[[], None] | None = None,
    fsname: str = "memhp-sim",
) -> None:
    """Mount ``fs`` at ``mountpoint`` and serve until unmounted or signalled.

    Must run in the main thread: SIGINT, SIGTERM and SIGHUP unmount (lazily) and end
    the loop, as libfuse's handlers did.
    """
    reason = fuse_unavailable_reason()
    if reason is not None:
        raise FuseUnavailable(reason)
    from memhp.sim.fuse_ll import SysfsServer
    from memhp.sim.fuse_proto import fusermount

    spin = spin_seconds(os.environ.get("MEMHP_FUSE_SPIN_US"))
    mountpoint = os.path.abspath(mountpoint)
    fd, sock = fusermount(mountpoint, mount_options(fsname))

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %d: unmounting", signum)
        threading.Thread(target=lazy_unmount, args=(mountpoint,), daemon=True).start()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        exact = os.environ.get("MEMHP_FUSE_FAST") != "1"
        SysfsServer(fs, fd, on_ready, mountpoint, exact_open=exact, spin_s=spin).loop()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        os.close(fd)
        sock.close()
        if is_fuse_mount(mountpoint):
            lazy_unmount(mountpoint)


__all__ = [
    "FuseUnavailable",
    "fuse_unavailable_reason",
    "is_fuse_mount",
    "lazy_unmount",
    "mount_fstype",
    "serve",
    "spin_seconds",
]
