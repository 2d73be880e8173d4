"""Serve a simulated machine's sysfs (and /proc) as a real file system, with FUSE.

The mount point ``DIR`` shows the root of a :class:`~memhp.sim.sysfs.view.KernelSysfs`:
``DIR/sys/devices/system/memory/...``, ``DIR/proc/meminfo`` and so on, so any
program written for Linux (util-linux ``lsmem --sysroot DIR``, ``chmem`` with
``DIR/sys`` bind-mounted over ``/sys``, shell scripts) can be pointed at a
simulated machine.

What makes it behave like sysfs (fs/kernfs/file.c, fs/sysfs/file.c):

- every read is live: the kernel's page cache is bypassed (``direct_io``), so
  values change with the model;
- directories appear and vanish with the model: negative lookups are never
  cached; directory entries and attributes are cached by the kernel for
  ``SysfsOperations.CACHE_TIMEOUT`` (60 s) when libfuse offers
  ``fuse_invalidate_path()``, and the entries of vanished objects are
  invalidated before the write or QMP command that removed them returns
  (without ``fuse_invalidate_path()`` the timeouts are 0: nothing is cached);
- an open file keeps the text of its first read (a seq_file buffer): reading
  at offset 0 calls the show handler again, reading further continues in the
  same text, as ``sysfs_kf_seq_show()`` does;
- ``open(2)`` fails with EACCES for writing an attribute that has no store
  handler or reading one that has no show handler (``kernfs_fop_open()``);
- each ``write(2)`` is one call of the store handler, synchronously, and fails
  with its errno (``echo offline > .../state`` prints "Device or resource
  busy" where Linux does); ``O_TRUNC`` is accepted and ignored;
- a write can block as in Linux: an offline whose pages cannot be migrated
  keeps the writer waiting until it gets a signal, then fails with EINTR
  (offline_pages(), "signal backoff").  The kernel sends FUSE_INTERRUPT when
  the blocked writer is signalled; the handler polls ``fuse_interrupted()``
  between migration rounds, with the model lock released so that readers
  (lsmem) and other actors (QMP workloads freeing pages) go on.  Writes are
  serialised like ``lock_device_hotplug_sysfs()``: a second writer waits
  (interruptibly) for the blocked one;
- modes as in sysfs (0444, 0644, 0200, links 0777), attributes report
  ``st_size`` 4096, directories and links 0; everything is owned by the user
  that mounted it, and the mount is private to that user (no ``allow_other``).

The binding is ``mfusepy`` (a maintained ctypes fork of fusepy that speaks
libfuse3): no compiler, no extra runtime (pyfuse3 would need trio and the
libfuse3 headers), and the high-level path API maps one-to-one on the
:class:`~memhp.abi.fs.SysfsFS` protocol.  libfuse runs its multi-threaded
loop; the model's lock serialises the requests.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import queue
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memhp.abi.acpi import ACPI_MEMORY_PARENT_DIR
from memhp.abi.fs import Kind, Stat
from memhp.abi.paths import NODE_PREFIX, SYS_FIRMWARE_MEMMAP, SYS_MEMORY, SYS_NODE
from memhp.sim.sysfs.view import Attr, Dir, KernelSysfs, Link

log = logging.getLogger("memhp.sim.fuse")

#: st_mode file-type bits per kind.
_IFMT = {Kind.DIR: stat.S_IFDIR, Kind.FILE: stat.S_IFREG, Kind.LINK: stat.S_IFLNK}


class FuseUnavailable(RuntimeError):
    """FUSE cannot be used here (no /dev/fuse, no libfuse, no binding)."""


def fuse_unavailable_reason() -> str | None:
    """Why a FUSE mount cannot be made here, or None when it can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist (load the fuse module or pass --device /dev/fuse)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable by this user"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as e:  # libfuse missing: OSError
        return f"the mfusepy binding or libfuse3 is not available: {e}"
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (Debian package fuse3)"
    return None


@dataclass
class _Handle:
    path: str
    buf: bytes | None = None  # the seq_file text of the last read at offset 0


def _mode(st: Stat) -> int:
    return _IFMT[st.kind] | st.mode


class SysfsOperations:
    """FUSE operations over a :class:`KernelSysfs` (mfusepy's high-level API)."""

    #: mfusepy: times are integer nanoseconds.
    use_ns = True
    #: The kernel may cache contents (memhp.sim.fuse_cache.CachedSysfsOperations).
    KERNEL_CACHE = False

    def __init__(self, fs: KernelSysfs, on_ready: Callable[[], None] | None = None) -> None:
        self.fs = fs
        self.on_ready = on_ready
        self.uid = os.getuid()
        self.gid = os.getgid()
        self.boot_ns = time.time_ns()
        self._handles: dict[int, _Handle] = {}
        self._next_fh = 1
        self._hlock = threading.Lock()
        # Directory entries are cached by the kernel (entry_timeout) and invalidated
        # here when sysfs objects vanish (fuse_invalidate_path), from one thread.
        self._fuse_ptr: int | None = None
        self._invalidate: Callable[[int, bytes], int] | None = None
        self._inval_q: queue.Queue[str] = queue.Queue()
        self._session: int | None = None
        self._inval_entry: Callable[[int, int, bytes, int], int] | None = None
        #: Whether the kernel caches (set at INIT, see init_with_config).
        self.cached = False
        #: Bumped on every change of the model; the files' st_mtime, so that the kernel
        #: drops the cached contents of a file whose attributes it fetches again.
        self._gen = 0
        #: Something was served (so may be cached by the kernel) since the last
        #: invalidation of everything.
        self._served = False
        self._inval_all_lock = threading.Lock()
        with fs.lock:
            self._listing = self._tracked_listing()
        fs.listeners.append(self._on_topology_change)
        fs.settlers.append(self._settle)
        #: device_hotplug_lock as sysfs writers take it (lock_device_hotplug_sysfs()).
        self._device_hotplug = threading.Lock()
        self._fuse_interrupted: Callable[[], int] | None = None

    # ------------------------------------------------------------ lifecycle
    def init_with_config(self, conn: Any, config: Any) -> None:
        """FUSE INIT: the mount is live.

        With libfuse's notification calls (``fuse_invalidate_path``,
        ``fuse_lowlevel_notify_inval_entry``) the kernel caches directory entries,
        attributes and file contents (page cache) for ``CACHE_TIMEOUT`` seconds, and
        everything served is invalidated when the model changes (see
        :meth:`_invalidate_all`).  Without them nothing is cached: timeouts 0 and
        direct I/O, every read reaches the model.
        """
        cached = False
        try:
            import mfusepy

            lib = mfusepy._libfuse
            ctx = lib.fuse_get_context()
            fuse_ptr = ctx.contents.fuse if ctx else None
            fn = lib.fuse_invalidate_path
            fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            fn.restype = ctypes.c_int
            get_se = lib.fuse_get_session
            get_se.argtypes = [ctypes.c_void_p]
            get_se.restype = ctypes.c_void_p
            inval_entry = lib.fuse_lowlevel_notify_inval_entry
            inval_entry.argtypes = [
                ctypes.c_void_p,
                ctypes.c_uint64,
                ctypes.c_char_p,
                ctypes.c_size_t,
            ]
            inval_entry.restype = ctypes.c_int
            if fuse_ptr:
                self._fuse_ptr = int(fuse_ptr)
                self._invalidate = fn
                self._session = get_se(self._fuse_ptr)
                self._inval_entry = inval_entry
                cached = bool(self._session)
                threading.Thread(target=self._invalidator, name="fuse-inval", daemon=True).start()
        except (ImportError, AttributeError, OSError, ValueError):
            cached = False
        # The uncached operations (the default) keep the behaviour of issue 15:
        # direct I/O, entries and attributes invalidated by path only.
        legacy_timeout = self.CACHE_TIMEOUT if self._invalidate is not None else 0.0
        if not self.KERNEL_CACHE:
            cached = False
        if not cached:
            self._inval_entry = None
        self.cached = cached
        try:
            import mfusepy

            intr = mfusepy._libfuse.fuse_interrupted
            intr.argtypes = []
            intr.restype = ctypes.c_int
            self._fuse_interrupted = intr
        except (ImportError, AttributeError, OSError):
            self._fuse_interrupted = None
        timeout = legacy_timeout
        # With caching, the timeouts come from the mount options (mount_options()):
        # mfusepy's layout of struct fuse_config does not match every libfuse 3.x.
        if config is not None and not self.KERNEL_CACHE:
            for name, value in (
                ("attr_timeout", timeout),
                ("entry_timeout", timeout),
                ("negative_timeout", 0.0),
                ("direct_io", 0 if cached else 1),
                ("kernel_cache", 0),
            ):
                if hasattr(config, name):
                    setattr(config, name, value)
        if self.on_ready is not None:
            self.on_ready()

    #: Seconds the kernel may keep directory entries and attributes (see above).
    CACHE_TIMEOUT = 60.0

    def _tracked_listing(self) -> dict[str, frozenset[str]]:
        """Names in the directories whose entries can vanish (call with the lock)."""
        out: dict[str, frozenset[str]] = {}
        dirs = [SYS_MEMORY, SYS_NODE, SYS_FIRMWARE_MEMMAP]
        node_root = self.fs.resolve(SYS_NODE)[1]
        if isinstance(node_root, Dir):
            dirs += [f"{SYS_NODE}/{n}" for n in node_root.names() if n.startswith(NODE_PREFIX)]
        acpi = ACPI_MEMORY_PARENT_DIR
        try:
            dev_root = self.fs.resolve(acpi)[1]
        except OSError:
            dev_root = None
        if isinstance(dev_root, Dir):
            dirs += [f"{acpi}/{n}" for n in dev_root.names()]
        for d in dirs:
            try:
                node = self.fs.resolve(d)[1]
            except OSError:
                continue
            if isinstance(node, Dir):
                out[d] = frozenset(node.names())
        return out

    def _on_topology_change(self) -> None:
        """Queue the paths of the entries that vanished for invalidation."""
        if self._invalidate is None:
            return
        with self.fs.lock:
            new = self._tracked_listing()
            old, self._listing = self._listing, new
        for d, names in old.items():
            for name in names - new.get(d, frozenset()):
                self._inval_q.put(f"{d}/{name}")

    def _invalidator(self) -> None:
        """fuse_invalidate_path() of each queued path (never under the model lock);
        ``_ALL`` invalidates everything served."""
        while True:
            path = self._inval_q.get()
            try:
                if path == self._ALL:
                    self._invalidate_all()
                elif self._invalidate is not None and self._fuse_ptr is not None:
                    self._invalidate(self._fuse_ptr, path.encode())  # -ENOENT: never looked up
            finally:
                self._inval_q.task_done()

    #: The queued request to invalidate everything.
    _ALL = "\0all"

    def _invalidate_all(self) -> None:
        """Drop everything the kernel caches of the mount (a global generation).

        One ``fuse_lowlevel_notify_inval_entry()`` per top-level directory (``sys``,
        ``proc``, children of the root, FUSE_ROOT_ID): the kernel's d_invalidate()
        drops the dentries below; unused inodes go with their page cache.  Open files
        keep theirs: a new ``st_mtime`` (``_gen``) drops it at the next attribute
        fetch.  Never under the model lock (the kernel waits for lookups in flight).
        """
        se, fn = self._session, self._inval_entry
        if se is None or fn is None:
            return
        with self._inval_all_lock:
            if not self._served:
                return
            self._served = False
            for name in (b"sys", b"proc"):
                fn(se, 1, name, len(name))  # -ENOENT: not cached

    def _changed(self) -> None:
        """The model may have changed: new generation, cached contents dropped."""
        self._gen += 1
        if self.cached:
            self._invalidate_all()

    def _settle(self) -> None:
        """After a write or QMP command (the caller holds no model lock): drop what
        the kernel caches, wait until vanished entries are invalidated."""
        self._changed()
        if self._invalidate is not None:
            self._inval_q.join()

    def destroy(self, path: str) -> None:
        log.info("file system destroyed")

    # ------------------------------------------------------------ metadata
    def _stat_dict(self, st: Stat) -> dict[str, int]:
        is_file = st.kind is Kind.FILE
        return {
            "st_mode": _mode(st),
            "st_nlink": 2 if st.kind is Kind.DIR else 1,
            "st_size": st.size if is_file else 0,
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_blksize": 4096,
            "st_atime": self.boot_ns,
            "st_mtime": self.boot_ns + self._gen,
            "st_ctime": self.boot_ns,
        }

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        self._served = True
        return self._stat_dict(self.fs.lstat(path))

    def access(self, path: str, amode: int) -> int:
        self.fs.lstat(path)
        return 0

    def readlink(self, path: str) -> str:
        self._served = True
        return self.fs.readlink(path)

    def opendir(self, path: str) -> int:
        if self.fs.stat(path).kind is not Kind.DIR:
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        return 0

    def readdir(self, path: str, fh: int) -> list[str | tuple[str, dict[str, int], int]]:
        """Names with their file type (d_type), computed in one pass under the lock."""
        self._served = True
        out: list[str | tuple[str, dict[str, int], int]] = [
            (".", {"st_mode": stat.S_IFDIR}, 0),
            ("..", {"st_mode": stat.S_IFDIR}, 0),
        ]
        with self.fs.lock:
            _, node = self.fs.resolve(path, follow_last=True)
            if not isinstance(node, Dir):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            for name in node.names():
                child = node.child(name)
                if child is None:
                    continue
                if isinstance(child, Dir):
                    ifmt = stat.S_IFDIR
                elif isinstance(child, Link):
                    ifmt = stat.S_IFLNK
                else:
                    ifmt = stat.S_IFREG
                out.append((name, {"st_mode": ifmt}, 0))
        return out

    def releasedir(self, path: str, fh: int) -> int:
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    # ------------------------------------------------------------ files
    def open(self, path: str, flags: int) -> int:
        """kernfs_fop_open(): EACCES for a direction the attribute lacks."""
        with self.fs.lock:
            _, node = self.fs.resolve(path, follow_last=True)
            if isinstance(node, Dir):
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            assert isinstance(node, Attr)
            acc = flags & os.O_ACCMODE
            if acc in (os.O_WRONLY, os.O_RDWR) and node.store is None:
                raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)
            if acc in (os.O_RDONLY, os.O_RDWR) and node.show is None and node.read_at is None:
                raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)
            binary = node.read_at is not None
        with self._hlock:
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = _Handle(path, None if not binary else b"")
        return fh

    def release(self, path: str, fh: int) -> int:
        with self._hlock:
            self._handles.pop(fh, None)
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        self._served = True
        h = self._handles.get(fh)
        try:
            if h is not None and h.buf == b"":  # binary file: ranged reads
                return self.fs.read_at(path, offset, size)
            if h is None or offset == 0 or h.buf is None:
                buf = self.fs.read(path)
                if h is not None:
                    h.buf = buf
            else:
                buf = h.buf
        except OSError as e:
            if e.errno == errno.ENOENT and h is not None:  # removed while open
                raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), path) from None
            raise
        return buf[offset : offset + size]

    #: Seconds between two rounds of a blocked offline (and two polls of a waiting writer).
    RETRY_POLL_S = 0.02

    def _interrupted(self) -> bool:
        """fuse_interrupted(): the writer of this request got a signal (FUSE_INTERRUPT)."""
        fn = self._fuse_interrupted
        return bool(fn is not None and fn())

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        """sysfs_kf_write(): one store call per write(2), the offset is ignored.

        The store may block (a 6.1 offline_pages() retrying migration): the
        kernel model calls :meth:`_retry_wait` between rounds until the writer
        is interrupted.
        """
        # lock_device_hotplug_sysfs(): a writer waits while another one is blocked;
        # a signal ends the wait (the kernel restarts the call after the handler).
        while not self._device_hotplug.acquire(timeout=self.RETRY_POLL_S):
            if self._interrupted():
                raise OSError(errno.EINTR, os.strerror(errno.EINTR), path)
        k = self.fs.k
        writer = threading.get_ident()
        cond = threading.Condition(self.fs.lock)

        def retry_wait() -> bool:
            # cond_resched() of the migration loop: the model lock is released
            # while we wait, so readers and other actors (QMP) go on.
            # The store changed what readers see (e.g. state "going-offline"), and
            # the next round may change more: drop the kernel's cached copies.
            self._gen += 1
            if self.cached:
                self._inval_q.put(self._ALL)
            with cond:
                cond.wait(self.RETRY_POLL_S)
            return threading.get_ident() == writer and self._interrupted()

        try:
            with self.fs.lock:
                prev, k.hotplug.retry_wait = k.hotplug.retry_wait, retry_wait
            try:
                return self.fs.write(path, data)
            finally:
                with self.fs.lock:
                    k.hotplug.retry_wait = prev
        except OSError as e:
            if e.errno == errno.ENOENT and (self.cached or fh in self._handles):
                raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), path) from None
            raise
        finally:
            self._device_hotplug.release()
            self._settle()  # e.g. an eject removed blocks: their entries are gone now

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        """O_TRUNC and truncate(2) are accepted and ignored, as kernfs does."""
        self.fs.lstat(path)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        return 0


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


#: libfuse's multi-threaded loop: idle worker threads kept (-o max_idle_threads).
MAX_IDLE_THREADS = 10


def mount_options(fsname: str = "memhp-sim", cached: bool = False) -> dict[str, object]:
    """The FUSE options of a simulated sysfs mount (see the module docstring).

    ``cached``: the kernel keeps entries, attributes and contents until the model
    changes (:class:`CachedSysfsOperations`); otherwise nothing is cached.
    """
    timeout = SysfsOperations.CACHE_TIMEOUT if cached else 0
    opts: dict[str, object] = {
        "foreground": True,
        "fsname": fsname,
        "subtype": "memhp",
        "default_permissions": True,
        "attr_timeout": timeout,
        "entry_timeout": timeout,
        "negative_timeout": 0,
    }
    if not cached:
        opts["direct_io"] = True
    if shutil.which("fusermount3") and not os.environ.get("MEMHP_FUSE_NO_AUTO_UNMOUNT"):
        # fusermount3 keeps a watcher that unmounts when the daemon dies, even by SIGKILL.
        opts["auto_unmount"] = True
    return opts


def serve(
    fs: KernelSysfs,
    mountpoint: str,
    on_ready: Callable[[], None] | None = None,
    fsname: str = "memhp-sim",
) -> None:
    """Mount ``fs`` at ``mountpoint`` and serve until unmounted or signalled.

    Must run in the main thread: libfuse installs SIGINT/SIGTERM/SIGHUP
    handlers that end the loop, and unmounts before returning.
    """
    reason = fuse_unavailable_reason()
    if reason is not None:
        raise FuseUnavailable(reason)
    import mfusepy

    logging.getLogger("fuse").setLevel(logging.CRITICAL)
    from memhp.sim.fuse_cache import CachedSysfsOperations, kernel_cache_available

    cached = kernel_cache_available()
    ops = (CachedSysfsOperations if cached else SysfsOperations)(fs, on_ready)
    opts = mount_options(fsname, cached)
    if getattr(mfusepy, "fuse_version_major", 3) == 3:
        # libfuse 3.12-3.15 default max_idle_threads to UINT_MAX ("unlimited") and then
        # warn "Ignoring invalid max threads value 4294967295" on every mount; a valid
        # value (libfuse's pre-3.12 default, 10) keeps the pool as before, silently.
        opts["max_idle_threads"] = MAX_IDLE_THREADS
    try:
        mfusepy.FUSE(ops, mountpoint, **opts)
    except RuntimeError as e:
        # fuse_main_real() returns 8 when its loop ended on a signal (SIGTERM,
        # SIGINT, SIGHUP): the file system is unmounted, that is a clean stop.
        if e.args != (8,) or is_fuse_mount(mountpoint):
            raise
        log.info("FUSE loop ended by a signal; unmounted")


__all__ = [
    "FuseUnavailable",
    "SysfsOperations",
    "fuse_unavailable_reason",
    "is_fuse_mount",
    "lazy_unmount",
    "mount_fstype",
    "serve",
]
