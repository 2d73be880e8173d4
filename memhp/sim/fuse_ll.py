"""The FUSE server of a simulated sysfs: the kernel protocol on /dev/fuse, in Python.

Design (benchmarks/NOTES.md, issue 17): the kernel caches everything and the model
invalidates it (:mod:`memhp.sim.fuse_cache`).

- Two ways to open.  By default (``exact_open``) every OPEN is answered as
  kernfs_fop_open() does (EACCES at open(2)); a read-only open keeps the page cache
  (FOPEN_KEEP_CACHE), an open for writing does direct I/O (FOPEN_DIRECT_IO); OPENDIR
  answers ENOSYS once (directories open without a request, listings cached).
- Fast mode (``MEMHP_FUSE_FAST=1``): OPEN and OPENDIR answer ENOSYS once, and the
  kernel opens every file and directory from then on by itself, with the contents in
  the page cache and listings in the directory cache (fuse_file_open(): ``no_open``,
  FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR).  A read of what did not change since the last
  read costs no request at all.  The price: kernfs_fop_open()'s EACCES for a
  direction an attribute lacks comes from the read(2) or write(2) instead of the
  open(2) (same errno), and a write goes through the page cache (one WRITE per
  write(2) all the same; readers of the written attribute are kept off the written
  bytes, see KernelCache._getxattr).
- FLUSH, FSYNC, ACCESS and the other xattr requests answer ENOSYS once (never asked
  again); GETXATTR answers ENODATA (see KernelCache._getxattr); RELEASE at once.
- Entries and attributes are cached for :data:`CACHE_TIMEOUT`; READDIRPLUS hands
  entries with their inodes (not those the kernel holds in this generation:
  fuse_direntplus_link() leaves them alone).  An attribute's ``st_size`` is its
  text's length (a short read ends the file for the kernel); the text, and the
  directions an OPEN may take, are kept with the inode for its READ and OPEN.
- Threads: one thread reads requests and answers them (the model lock serialises
  them anyway), and polls for the next one for :data:`SPIN_S` before it sleeps;
  each WRITE runs in its own thread, since a store may block (offline retrying
  migration); FUSE_INTERRUPT marks the write's request, which the model's
  ``retry_wait`` polls (offline_pages()'s signal backoff).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import stat
import threading
import time
from collections.abc import Callable

from memhp.abi.fs import Kind, Stat
from memhp.abi.layout import PAGE_SIZE
from memhp.sim import fuse_proto as P
from memhp.sim.fuse_cache import Ino, KernelCache
from memhp.sim.sysfs.kernfs import Node
from memhp.sim.sysfs.view import Attr, Dir, KernelSysfs, Link, node_stat

log = logging.getLogger("memhp.sim.fuse")

#: Seconds the kernel may keep entries and attributes (until the model changes).
CACHE_TIMEOUT = 3600
_IFMT = {Kind.DIR: stat.S_IFDIR, Kind.FILE: stat.S_IFREG, Kind.LINK: stat.S_IFLNK}
_DT = {Kind.DIR: 4, Kind.FILE: 8, Kind.LINK: 10}  # DT_DIR, DT_REG, DT_LNK
#: Sysfs writes are one page; reads of /proc/kpageflags are ranged.
MAX_WRITE = 4 * PAGE_SIZE
_BUFSIZE = MAX_WRITE + 2 * PAGE_SIZE
_ATTR_OUT = P.ATTR_OUT.pack(CACHE_TIMEOUT, 0, 0)
#: Seconds the request loop polls /dev/fuse after a request before it sleeps.
SPIN_S = 0.0003
#: File handles: an open through the page cache, an open doing direct I/O.
_CACHED, _DIRECT = 0, 1


_READ, _WRITE = 1, 2  # directions an open may take


def _access(node: Node) -> int:
    """The directions (_READ, _WRITE) kernfs_fop_open() lets an open of ``node`` take:
    for an attribute, the mode's bits and a handler for each."""
    if not isinstance(node, Attr):
        return _READ | _WRITE
    r = _READ if node.mode & 0o444 and (node.show is not None or node.read_at is not None) else 0
    return r | (_WRITE if node.mode & 0o222 and node.store is not None else 0)


class _Reply(Exception):
    def __init__(self, err: int) -> None:
        self.err = err


class SysfsServer(KernelCache):
    """Serves a :class:`KernelSysfs` on an open /dev/fuse descriptor."""

    #: Seconds between two rounds of a blocked offline (and two polls of a waiting writer).
    RETRY_POLL_S = 0.02

    #: Seconds a listing read to its last entry waits for its reader to read its end.
    COMPLETE_DELAY_S = 0.05

    def __init__(
        self,
        fs: KernelSysfs,
        fd: int,
        on_ready: Callable[[], None] | None,
        mountpoint: str | None = None,
        exact_open: bool = True,
        spin_s: float = SPIN_S,
    ) -> None:
        self.fs = fs
        self.fd = fd
        self.on_ready = on_ready
        self.mountpoint = mountpoint
        self.exact_open = exact_open
        self.spin_s = spin_s
        self.uid, self.gid = os.getuid(), os.getgid()
        self.t0 = int(time.time())
        self._lock = threading.Lock()  # the inode tables
        self._gen = 0
        self._inos: dict[int, Ino] = {P.ROOT_ID: Ino("", 0)}
        self._paths: dict[str, int] = {}
        self._next = P.ROOT_ID + 1
        self._served = False
        self._stale = False
        #: Inodes whose contents (text, listing) the kernel may have cached since the
        #: last change: their attributes are invalidated at the next one.
        self._cached: set[int] = set()
        self._inval_lock = threading.Lock()
        self._pending: set[int] = set()  # uniques of writes being served
        self._intr: set[int] = set()
        self._tls = threading.local()
        self._device_hotplug = threading.Lock()  # lock_device_hotplug_sysfs()
        self._inval_wake = threading.Event()
        #: Directories (nodeid -> path, generation) read to their last entry, not to
        #: their end; those whose end was read (an empty reply) since.
        self._incomplete: dict[int, tuple[str, int, int]] = {}
        self._ended: set[int] = set()
        self._complete_wake = threading.Event()
        self._forgotten = 0  # FORGETs taken (KernelCache._drain_forgets())
        self._writing: dict[int, tuple[int, list[int]]] = {}
        self._frozen: dict[int, int] = {}
        fs.settlers.append(self.settle)
        self._ops: dict[int, Callable[[int, int, memoryview], bytes | None]] = {
            P.LOOKUP: self.lookup,
            P.GETATTR: self.getattr,
            P.SETATTR: self.setattr,
            P.READLINK: self.readlink,
            P.OPEN: self.open,
            P.READ: self.read,
            P.READDIR: self.readdir,
            P.READDIRPLUS: self.readdirplus,
            P.STATFS: self.statfs,
            P.RELEASE: self.empty,
            P.RELEASEDIR: self.empty,
        }

    # ------------------------------------------------------------ the loop
    def loop(self) -> None:
        buf = bytearray(_BUFSIZE)
        mv = memoryview(buf)
        ops = self._ops
        threading.Thread(target=self._invalidator, name="fuse-inval", daemon=True).start()
        if self.mountpoint is not None:
            threading.Thread(target=self._completer, name="fuse-readdir", daemon=True).start()
        # /dev/fuse is read without blocking for spin_s after each request, then with
        # poll(2) (fuse_dev_poll()): a client's next request is taken without waking
        # this thread, whose wake-up on another CPU costs more than the request itself
        # in a VM (benchmarks/NOTES.md); not while a write is being served, whose
        # thread needs the interpreter lock more than this one.
        os.set_blocking(self.fd, False)
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        clock, spin, pending = time.perf_counter, self.spin_s, self._pending
        last = clock()
        while True:
            try:
                n = os.readv(self.fd, [buf])
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    if pending or clock() - last > spin:
                        poller.poll()
                    continue
                if e.errno in (errno.ENOENT, errno.EINTR):
                    continue
                if e.errno == errno.ENODEV:  # unmounted
                    return
                raise
            last = clock()
            _, opcode, unique, nodeid, _, _, _, _, _ = P.IN_HEADER.unpack_from(buf)
            fn = ops.get(opcode)
            if fn is not None:
                try:
                    data = fn(unique, nodeid, mv[40:n])
                except _Reply as r:
                    self._send(unique, r.err)
                except OSError as e:
                    self._send(unique, e.errno or errno.EIO)
                except Exception:
                    log.exception("FUSE request %d failed", opcode)
                    self._send(unique, errno.EIO)
                else:
                    self._served = True  # also if a generation started meanwhile
                    if data is not None:
                        self._send(unique, 0, data)
            elif opcode == P.WRITE:
                with self._lock:
                    self._pending.add(unique)
                    written = nodeid in self._writing
                if written:
                    self._written(nodeid)
                args = (unique, nodeid, bytes(mv[40:n]))
                threading.Thread(target=self.write, args=args, daemon=True).start()
            elif opcode == P.GETXATTR:
                self._getxattr(unique, nodeid, mv[40:n])
            elif opcode == P.INTERRUPT:
                (target,) = P.U64.unpack_from(buf, 40)
                with self._lock:
                    if target in self._pending:
                        self._intr.add(target)
            elif opcode == P.FORGET:
                self._forget(nodeid, P.U64.unpack_from(buf, 40)[0])
            elif opcode == P.BATCH_FORGET:
                (count,) = P.U64.unpack_from(buf, 40)
                count &= 0xFFFFFFFF
                for i in range(count):
                    ino, nl = P.FORGET_ONE.unpack_from(buf, 48 + 16 * i)
                    self._forget(ino, nl)
            elif opcode == P.INIT:
                self._init(unique, mv[40:n])
            elif opcode == P.DESTROY:
                self._send(unique, 0)
            else:  # OPENDIR, FLUSH, FSYNC, ACCESS, xattrs...: never asked again
                self._send(unique, errno.ENOSYS)

    def _init(self, unique: int, body: memoryview) -> None:
        major, minor, readahead, offered = P.INIT_IN.unpack_from(body)
        want = (
            P.AUTO_INVAL_DATA
            | P.BIG_WRITES
            | P.DO_READDIRPLUS
            | P.NO_OPENDIR_SUPPORT
            | P.PARALLEL_DIROPS
            | P.CACHE_SYMLINKS
            | P.MAX_PAGES
        )
        if major != P.KERNEL_MAJOR:
            self._send(unique, errno.EPROTO)
            return
        minor = min(minor, P.KERNEL_MINOR)
        out = P.INIT_OUT.pack(
            P.KERNEL_MAJOR, minor, readahead, offered & want, 16, 12, MAX_WRITE, 1, 4, 0, 0
        )
        self._send(unique, 0, out)
        if self.on_ready is not None:
            self.on_ready()

    # ------------------------------------------------------------ inodes
    def _path(self, nodeid: int) -> Ino:
        ino = self._inos.get(nodeid)
        if ino is None:
            raise _Reply(errno.ESTALE)
        return ino

    def _ino_for(self, path: str) -> int:
        """The inode number of ``path`` in this generation, one more lookup (with _lock)."""
        nodeid = self._paths.get(path)
        if nodeid is None:
            nodeid = self._next
            self._next += 1
            self._inos[nodeid] = Ino(path, self._gen)
            self._paths[path] = nodeid
        self._inos[nodeid].nlookup += 1
        return nodeid

    def _forget(self, nodeid: int, n: int) -> None:
        self._forgotten += 1
        with self._lock:
            ino = self._inos.get(nodeid)
            if ino is None or nodeid == P.ROOT_ID:
                return
            ino.nlookup -= n
            if ino.nlookup <= 0:
                del self._inos[nodeid]
                if self._paths.get(ino.path) == nodeid:
                    del self._paths[ino.path]

    def _attr(self, nodeid: int, st: Stat, size: int) -> bytes:
        """struct fuse_attr; the mtime of files and directories carries the generation
        in its nanoseconds, so that the kernel (FUSE_AUTO_INVAL_DATA) drops the pages
        and directory listing it cached in an older one when it refreshes them."""
        t = self.t0
        nlink = 2 if st.kind is Kind.DIR else 1
        mode = _IFMT[st.kind] | st.mode
        ns = 0 if st.kind is Kind.LINK else self._gen % 1_000_000_000
        return P.ATTR.pack(
            nodeid, size, 0, t, t, t, 0, ns, 0, mode, nlink, self.uid, self.gid, 0, 4096, 0
        )

    def _file_attr(self, nodeid: int, ino: Ino, node: Node | None = None) -> bytes:
        """The attributes of an inode; an attribute's size is its text's (with fs.lock);
        ``node``: its node if known (a listing's), else it is looked up.  Kept with the
        inode for a GETATTR in the same generation (Ino.attr)."""
        gen = self._gen
        if node is None:
            node = self.fs.resolve(ino.path or "/", follow_last=False)[1]
        st = node_stat(node)
        ino.access = (gen, _access(node))
        size = 0 if st.kind is Kind.DIR else st.size
        if st.kind is Kind.FILE and (text := self._text(ino, node)) is not None:
            size, ino.told = len(text), text
        attr = self._attr(nodeid, st, size)
        ino.attr = (gen, attr)
        return attr

    def _text(self, ino: Ino, node: Node | None = None) -> bytes | None:
        """The text of a show-only attribute in this generation (with fs.lock)."""
        if ino.text is not None and ino.gen == self._gen:
            return ino.text
        if node is None:
            node = self.fs.resolve(ino.path, follow_last=False)[1]
        if not isinstance(node, Attr) or node.read_at is not None or node.show is None:
            return None
        try:
            text = node.show().encode()
        except OSError:
            return None
        ino.text, ino.gen = text, self._gen
        return text

    def _entry(self, nodeid: int, attr: bytes) -> bytes:
        return P.ENTRY_OUT.pack(nodeid, 0, CACHE_TIMEOUT, CACHE_TIMEOUT, 0, 0) + attr

    # ------------------------------------------------------------ requests
    def empty(self, unique: int, nodeid: int, body: memoryview) -> bytes:
        return b""

    def open(self, unique: int, nodeid: int, body: memoryview) -> bytes:
        """kernfs_fop_open() of sysfs (KERNFS_ROOT_EXTRA_OPEN_PERM_CHECK): EACCES when
        the attribute's mode or handlers lack a direction the open asks, for root too
        (procfs files are held to their handlers the same way).  A read-only open keeps
        the page cache; an open for writing does direct I/O (fuse_file_open())."""
        if not self.exact_open:
            raise _Reply(errno.ENOSYS)  # no_open: never asked again
        (flags, _) = P.OPEN_IN.unpack_from(body)
        self._served = True
        ino = self._path(nodeid)
        accmode = flags & os.O_ACCMODE
        if (known := ino.access) is not None and known[0] == self._gen:
            access = known[1]
        else:  # (not looked up in this generation)
            try:
                with self.fs.lock:
                    node = self.fs.resolve(ino.path, follow_last=False)[1]
            except OSError as e:
                if e.errno == errno.ENOENT:  # removed: kernfs_get_active() fails
                    raise _Reply(errno.ENODEV) from None
                raise
            access = _access(node)
        if (accmode != os.O_WRONLY and not access & _READ) or (
            accmode != os.O_RDONLY and not access & _WRITE
        ):
            raise _Reply(errno.EACCES)
        if accmode == os.O_RDONLY:
            return P.OPEN_OUT.pack(_CACHED, P.FOPEN_KEEP_CACHE | P.FOPEN_NOFLUSH, 0)
        return P.OPEN_OUT.pack(_DIRECT, P.FOPEN_DIRECT_IO | P.FOPEN_NOFLUSH, 0)

    def lookup(self, unique: int, parent: int, body: memoryview) -> bytes:
        name = bytes(body).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        self._served = True
        with self.fs.lock:
            path = self._path(parent).path + "/" + name
            # ENOENT: not cached (negative entries are not kept)
            node = self.fs.resolve(path, follow_last=False)[1]
            with self._lock:
                nodeid = self._ino_for(path)
                ino = self._inos[nodeid]
            return self._entry(nodeid, self._file_attr(nodeid, ino, node))

    def getattr(self, unique: int, nodeid: int, body: memoryview) -> bytes | None:
        self._served = True
        with self._lock:
            held = self._writing.get(nodeid)
            if held is not None:  # answered when the write's bytes are gone (_written())
                held[1].append(unique)
                return None
            frozen = nodeid in self._frozen
        if frozen:
            reply = self._frozen_attr(nodeid)
            if isinstance(reply, int):
                raise _Reply(reply)
            return reply
        ino = self._path(nodeid)
        last = ino.attr
        if last is None or last[0] != self._gen:  # else e.g. fstat(2) after a read(2)
            with self.fs.lock:
                self._file_attr(nodeid, ino)
            last = ino.attr
            assert last is not None
        return _ATTR_OUT + last[1]

    def setattr(self, unique: int, nodeid: int, body: memoryview) -> bytes | None:
        """O_TRUNC, truncate(2): accepted and ignored (the attributes of now)."""
        if nodeid in self._writing:
            self._truncated(nodeid)
        return self.getattr(unique, nodeid, body)

    def _frozen_attr(self, nodeid: int) -> bytes | int:
        ino = self._inos.get(nodeid)
        if ino is None:
            return errno.ESTALE
        try:
            with self.fs.lock:
                st = self.fs.lstat(ino.path or "/")
        except OSError as e:
            return e.errno or errno.EIO
        size = len(ino.told) if ino.told is not None else st.size
        return P.ATTR_OUT.pack(CACHE_TIMEOUT, 0, 0) + self._attr(nodeid, st, size)

    def readlink(self, unique: int, nodeid: int, body: memoryview) -> bytes:
        self._served = True
        return self.fs.readlink(self._path(nodeid).path).encode()

    def read(self, unique: int, nodeid: int, body: memoryview) -> bytes:
        """The text of now.  Through the page cache the kernel cuts what it reads at
        the size it was last given (a short read shrinks it: fuse_short_read()), so a
        text longer than that is torn ("going-o"); that happens when the READ comes
        after a change and before the kernel has refreshed the inode's attributes
        (the inode was looked up but not yet read, or the change is that instant):
        then the read gets the text the size was given for, whole, one generation
        old.  Direct reads (descriptors open for writing) are not cut."""
        fh, off, size, _ = P.READ_IN.unpack_from(body)
        self._served = True
        ino = self._path(nodeid)
        with self._lock:  # before the text is taken: see settle()
            self._cached.add(nodeid)
        try:
            with self.fs.lock:
                text = self._text(ino)
                told = ino.told
                if fh == _CACHED and text is not None and told and len(text) > len(told):
                    text = told
                data = text[off : off + size] if text is not None else None
                if data is None:
                    data = self.fs.read_at(ino.path, off, size)
        except OSError as e:
            if e.errno == errno.ENOENT:  # removed while open: kernfs deactivated it
                raise _Reply(errno.ENODEV) from None
            raise
        with self._lock:  # and after: a generation may have started meanwhile
            self._cached.add(nodeid)
        return data

    def statfs(self, unique: int, nodeid: int, body: memoryview) -> bytes:
        return P.STATFS_OUT.pack(0, 0, 0, 0, 0, 4096, 255, 4096)

    def _listing(self, ino: Ino) -> list[tuple[bytes, Kind, Node | None]]:
        if ino.listing is not None and ino.gen == self._gen:
            return ino.listing
        with self.fs.lock:
            _, node = self.fs.resolve(ino.path or "/", follow_last=True)
            if not isinstance(node, Dir):
                raise _Reply(errno.ENOTDIR)
            out: list[tuple[bytes, Kind, Node | None]] = [(b".", Kind.DIR, None)]
            out.append((b"..", Kind.DIR, None))
            for name in node.names():
                child = node.child(name)
                if child is None:
                    continue
                kind = (
                    Kind.DIR
                    if isinstance(child, Dir)
                    else Kind.LINK
                    if isinstance(child, Link)
                    else Kind.FILE
                )
                out.append((name.encode("utf-8", "surrogateescape"), kind, child))
        ino.listing, ino.gen = out, self._gen
        return out

    def readdir(self, unique: int, nodeid: int, body: memoryview) -> bytes:
        return self._readdir(nodeid, body, plus=False)

    def readdirplus(self, unique: int, nodeid: int, body: memoryview) -> bytes:
        return self._readdir(nodeid, body, plus=True)

    def _readdir(self, nodeid: int, body: memoryview, plus: bool) -> bytes:
        """Entries from ``offset``; with ``plus`` an entry the kernel does not hold yet
        in this generation comes with its inode and attributes (a file's size is its
        text's, computed now and kept for the READ that follows), so that opening what
        was listed makes no LOOKUP.  A reply that ends at the listing's last entry
        queues the listing for the completer (KernelCache._completer)."""
        _, off, size, _ = P.READ_IN.unpack_from(body)
        self._served = True
        ino = self._path(nodeid)
        with self._lock:
            self._cached.add(nodeid)
        listing = self._listing(ino)
        out = bytearray()
        base = ino.path
        blank = b"\0" * (P.ENTRY_OUT.size + P.ATTR.size)
        paths, gen = self._paths, ino.gen
        to_end = True
        with self.fs.lock:
            for i in range(off, len(listing)):
                name, kind, node = listing[i]
                if len(out) + P.dirent_size(name, plus) > size:
                    to_end = False
                    break
                d_ino = (1 << 62) + i  # "." and ".." (the kernel skips their entries)
                if plus:
                    entry = blank
                    if node is not None:
                        path = base + "/" + name.decode("utf-8", "surrogateescape")
                        child = None
                        with self._lock:
                            if path not in paths:  # else the kernel holds it: no inode
                                d_ino = self._ino_for(path)
                                child = self._inos[d_ino]
                        if child is not None:
                            entry = self._entry(d_ino, self._file_attr(d_ino, child, node))
                    out += entry
                P.dirent(out, d_ino, i + 1, name, _DT[kind])
        with self._lock:
            self._cached.add(nodeid)  # again: a generation may have started meanwhile
            if not out:
                self._ended.add(nodeid)
            elif to_end and gen == self._gen and nodeid not in self._ended:
                self._incomplete[nodeid] = (base, gen, len(listing))
                self._complete_wake.set()
        return bytes(out)

    # ------------------------------------------------------------ writes
    def _interrupted(self) -> bool:
        """FUSE_INTERRUPT: the writer of this thread's request got a signal."""
        return getattr(self._tls, "unique", None) in self._intr

    def write(self, unique: int, nodeid: int, body: bytes) -> None:
        """sysfs_kf_write(): one store call per write(2), the offset is ignored."""
        _, _, size, _, _, _, _ = P.WRITE_IN.unpack_from(body)
        data = body[P.WRITE_IN.size : P.WRITE_IN.size + size]
        self._tls.unique = unique
        err, out = 0, b""
        try:
            ino = self._path(nodeid)
            self._unshare(ino.path)
            out = P.WRITE_OUT.pack(self._store(ino.path, data), 0)
        except _Reply as r:
            err = r.err
        except OSError as e:
            err = e.errno or errno.EIO
            err = errno.ENODEV if err == errno.ENOENT else err
        except Exception:
            log.exception("FUSE write failed")
            err = errno.EIO
        finally:
            with self._lock:
                self._pending.discard(unique)
                self._intr.discard(unique)
                frozen = nodeid in self._frozen
            if frozen:  # before the answer: the writer reads right after it
                self._unfreeze(nodeid)
            self._send(unique, err, out)

    def _store(self, path: str, data: bytes) -> int:
        # lock_device_hotplug_sysfs(): a writer waits while another one is blocked;
        # a signal ends the wait (the kernel restarts the call after the handler).
        while not self._device_hotplug.acquire(timeout=self.RETRY_POLL_S):
            if self._interrupted():
                raise OSError(errno.EINTR, os.strerror(errno.EINTR), path)
        k = self.fs.k
        writer = threading.get_ident()
        cond = threading.Condition(self.fs.lock)

        def retry_wait() -> bool:
            # cond_resched() of the migration loop: the model lock is released while
            # we wait, so readers and other actors (QMP) go on; what they see changed
            # (state "going-offline"): a new generation.
            self._new_generation()
            self._inval_wake.set()
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
        finally:
            self._device_hotplug.release()
            self.settle()  # e.g. an eject removed blocks: their entries are gone now


__all__ = ["CACHE_TIMEOUT", "SysfsServer"]
