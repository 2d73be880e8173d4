"""What the kernel caches of a simulated sysfs mount, and how the server keeps it true.

The kernel caches entries, attributes, file contents (page cache) and directory
listings; :class:`KernelCache` (a part of :class:`~memhp.sim.fuse_ll.SysfsServer`)
takes back what a change of the model made wrong:

- Fresh inodes per generation: every change of the model (a sysfs write, a QMP
  command, a round of a blocked offline) starts a generation: the path -> inode map is
  emptied and ``FUSE_NOTIFY_INVAL_ENTRY(root, "sys" | "proc")`` makes the kernel
  d_invalidate() the trees, before the write or QMP reply returns.  The next walk looks
  every component up again and gets new inode numbers, so no page cache, attribute or
  directory listing of an older generation is ever reached again by path; descriptors
  kept open get their attributes invalidated (:meth:`KernelCache._invalidate`).
- A generation starts as a write starts, on the kernel's ``security.capability``
  query that precedes every write through the page cache
  (:meth:`KernelCache._getxattr`): readers walk to new inodes, so none sees the
  written bytes in the page or waits on its lock while the store blocks, and those
  that hold the writer's inode refresh it before they read; its page is stored
  uptodate first, so the writer does not keep it locked (one race is left: a read
  already past its attribute check, benchmarks/NOTES.md).  The writer keeps its
  inode's i_rwsem, which an ``O_TRUNC`` open takes, so its entry is dropped too
  (:meth:`KernelCache._unshare`): other writers walk to a new inode.
- Listings read to their last entry but not to their end (lsmem stops at a block's
  ``node*`` link) are read to their end by a completer thread through the mount:
  fuse_readdir_cache_end() marks the cached listing complete, and the next
  opendir(3)+readdir(3) of it makes no request.

Notifications are never sent by the reading thread (the kernel may wait for a lookup
it has queued) nor under the model lock.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import threading
import time

from memhp.abi.fs import Kind
from memhp.abi.layout import PAGE_SIZE
from memhp.sim import fuse_proto as P
from memhp.sim.sysfs.kernfs import Node

log = logging.getLogger("memhp.sim.fuse")


def read_dir_end(fd: int, end: int) -> None:
    """getdents64(2) on a directory descriptor from offset ``end``."""
    if _GETDENTS is None:  # another architecture: read it all (two requests more)
        os.listdir(fd)
        return
    os.lseek(fd, end, os.SEEK_SET)
    buf = ctypes.create_string_buffer(PAGE_SIZE)
    if _LIBC.syscall(_GETDENTS, fd, buf, PAGE_SIZE) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


_LIBC = ctypes.CDLL(None, use_errno=True)
#: The number of getdents64(2) (asm-generic: 61; x86_64: 217).
_GETDENTS = {"x86_64": 217, "aarch64": 61, "riscv64": 61}.get(os.uname().machine)


class Ino:
    """An inode the kernel holds: its path, lookups, and what it was last given."""

    __slots__ = ("access", "attr", "gen", "listing", "nlookup", "path", "text", "told")

    def __init__(self, path: str, gen: int) -> None:
        self.path = path
        self.nlookup = 0
        self.gen = gen
        self.text: bytes | None = None  # the attribute's text in generation ``gen``
        self.listing: list[tuple[bytes, Kind, Node | None]] | None = None
        #: The text whose length the kernel was last given as the size.
        self.told: bytes | None = None
        #: (generation, struct fuse_attr) last given, for a GETATTR.
        self.attr: tuple[int, bytes] | None = None
        #: (generation, directions an open may take: bit 0 read, bit 1 write), as
        #: kernfs_fop_open() checks them, for an OPEN in the same generation.
        self.access: tuple[int, int] | None = None


class KernelCache:
    """The cache-keeping part of :class:`~memhp.sim.fuse_ll.SysfsServer` (a mixin:
    the server owns the state declared here)."""

    fd: int
    mountpoint: str | None
    exact_open: bool
    COMPLETE_DELAY_S: float
    _lock: threading.Lock
    _gen: int
    _inos: dict[int, Ino]
    _paths: dict[str, int]
    _served: bool
    #: A generation started whose kernel side (:meth:`_invalidate`) is not done.
    _stale: bool
    _cached: set[int]
    _inval_lock: threading.Lock
    _inval_wake: threading.Event
    _incomplete: dict[int, tuple[str, int, int]]
    _ended: set[int]
    _complete_wake: threading.Event
    _forgotten: int
    #: Inodes being written: (token, uniques of the GETATTRs held) (_getxattr()).
    _writing: dict[int, tuple[int, list[int]]]
    #: Inodes written (counts): their attributes keep the size last given until the
    #: write is answered (the kernel would ignore another: FUSE_I_SIZE_UNSTABLE).
    _frozen: dict[int, int]
    #: Seconds a write's readers are held at most when neither its WRITE nor a
    #: SETATTR follows the query (the write(2) failed before it, e.g. EFAULT).
    WRITE_WAIT_S = 1.0
    #: Seconds the drop of a written page may wait for its lock (see :meth:`_written`;
    #: it is free unless the page could not be stored, but a loaded host may take a
    #: while to run the notification).
    PAGE_WAIT_S = 1.0

    # ------------------------------------------------------------ replies
    def _send(self, unique: int, err: int, data: bytes = b"") -> None:
        try:
            os.write(self.fd, P.OUT_HEADER.pack(16 + len(data), -err, unique) + data)
        except OSError as e:  # ENOENT: the request was interrupted and answered
            if e.errno not in (errno.ENOENT, errno.ENODEV):
                raise

    def _notify(self, code: int, payload: bytes) -> None:
        try:
            os.write(self.fd, P.OUT_HEADER.pack(16 + len(payload), code, 0) + payload)
        except OSError:  # ENOENT: not cached; ENODEV: unmounted
            pass

    # ------------------------------------------------------------ writes
    def _getxattr(self, unique: int, nodeid: int, body: memoryview) -> None:
        """No attribute has extended attributes (ENODATA; never ENOSYS, which would
        stop the kernel from asking).  The kernel asks for ``security.capability``
        at the start of every write(2) through the page cache, before it copies the
        bytes into the inode's page (fuse_cache_write_iter(): file_remove_privs(),
        cap_inode_need_killpriv(); fuse clears SB_NOSEC).  Then:

        - a new generation starts (:meth:`settle`): no walk from then on reaches the
          writer's inode;
        - a reader that reached it before (a descriptor kept open, or opened just
          before) finds its attributes invalidated, so its next read asks for them
          (fuse_cache_read_iter(), FUSE_AUTO_INVAL_DATA); that GETATTR is held until
          the WRITE arrives (the bytes are in the page by then) and the page is
          dropped (:meth:`_written`), so the reader reads the model, never the
          written bytes, and does not wait for the store;
        - the inode's first page is made uptodate (:meth:`_store_page`), so that the
          writer does not keep it locked during the WRITE;
        - a SETATTR instead of a WRITE (an ``O_TRUNC`` open) ends the hold at once
          (:meth:`_truncated`), nothing at all after :data:`WRITE_WAIT_S`.

        A helper thread sends the notifications and answers (see the module's
        docstring)."""
        name = bytes(body[8:]).split(b"\0", 1)[0]
        if name != b"security.capability" or nodeid not in self._inos or self.exact_open:
            self._send(unique, errno.ENODATA)
            return
        token = unique
        with self._lock:
            held = self._writing.get(nodeid)
            self._writing[nodeid] = (token, held[1] if held else [])
            self._frozen[nodeid] = self._frozen.get(nodeid, 0) + 1

        def new_generation() -> None:
            try:
                self._notify(P.NOTIFY_INVAL_INODE, P.INVAL_INODE.pack(nodeid, -1, 0))
                self.settle()
                self._store_page(nodeid)
            finally:
                self._send(unique, errno.ENODATA)
            time.sleep(self.WRITE_WAIT_S)
            if self._release(nodeid, token):  # no WRITE came (an error before it)
                log.warning(
                    "inode %d: no WRITE within %.1f s of the query", nodeid, self.WRITE_WAIT_S
                )
                self._unfreeze(nodeid)

        threading.Thread(target=new_generation, daemon=True).start()

    def _store_page(self, nodeid: int) -> None:
        """Put the text the kernel was last given for ``nodeid`` (its size) in the
        inode's first page, which is uptodate from then on (fuse_notify_store()), so
        that the writer about to copy its bytes into that page leaves it unlocked
        during the WRITE (fuse_fill_write_pages() keeps a page that is not uptodate
        locked until the reply).  Else a reader that reached the writer's inode
        before the new generation waits on the page lock until the store returns:
        for a blocked offline, until the writer gets a signal."""
        ino = self._inos.get(nodeid)
        told = ino.told if ino is not None else None
        # The page is dropped first: a read(2) that checked the attributes before they
        # were invalidated (the first step of the query's answer, a settle() ago) keeps
        # the page it found, or reads the model if it had not reached the page yet;
        # only one stalled between the two for that whole time (descheduled) could
        # reach the page the writer copies into.
        self._notify(P.NOTIFY_INVAL_INODE, P.INVAL_INODE.pack(nodeid, 0, 0))
        if told and len(told) <= PAGE_SIZE:
            self._notify(P.NOTIFY_STORE, P.STORE.pack(nodeid, 0, len(told), 0) + told)

    def _truncated(self, nodeid: int) -> None:
        """SETATTR of an inode whose readers are held: the query was a truncation's
        (an ``O_TRUNC`` open: do_truncate(), dentry_needs_remove_privs()), no WRITE
        follows it: the readers are answered at once (from the reading thread:
        replies only, the notification is sent by a helper)."""
        with self._lock:
            held = self._writing.get(nodeid)
        if held is not None and self._release(nodeid, held[0]):
            threading.Thread(target=self._unfreeze, args=(nodeid,), daemon=True).start()

    def _written(self, nodeid: int) -> None:
        """A WRITE of an inode whose readers are held arrived: the written bytes are
        in its page, which the writer left unlocked (uptodate: :meth:`_store_page`).
        The page is dropped (FUSE_NOTIFY_INVAL_INODE at offset 0 locks it: if the
        writer holds it after all -- the page could not be stored, the kernel's size
        was not the one last given -- the wait is cut short after
        :data:`PAGE_WAIT_S` and the readers wait for the page instead), then the
        readers get their attributes.  Called by the reading thread as the WRITE
        arrives: the drop's thread starts at once (until it has run, a read that went
        past its attribute check before the query may still find the written page)."""
        with self._lock:
            held = self._writing.get(nodeid)
        if held is None:
            return
        payload = P.INVAL_INODE.pack(nodeid, 0, 0)
        t = threading.Thread(target=self._notify, args=(P.NOTIFY_INVAL_INODE, payload), daemon=True)
        t.start()

        def release() -> None:
            t.join(self.PAGE_WAIT_S)
            if t.is_alive():
                log.warning("inode %d: page still locked after %.1f s", nodeid, self.PAGE_WAIT_S)
            self._release(nodeid, held[0])

        threading.Thread(target=release, daemon=True).start()

    def _release(self, nodeid: int, token: int) -> bool:
        """Answer the GETATTRs held for a write (token: the write's query); False if
        they were answered already."""
        with self._lock:
            held = self._writing.get(nodeid)
            if held is None or held[0] != token:
                return False
            del self._writing[nodeid]
        if held[1]:
            reply = self._frozen_attr(nodeid)
            for unique in held[1]:
                if isinstance(reply, int):
                    self._send(unique, reply)
                else:
                    self._send(unique, 0, reply)
        return True

    def _unfreeze(self, nodeid: int) -> None:
        """The write of ``nodeid`` was answered: from now on its attributes are those
        of the model again, which its holders fetch at their next read (the kernel
        clears FUSE_I_SIZE_UNSTABLE as the write returns)."""
        with self._lock:
            n = self._frozen.get(nodeid, 0) - 1
            if n > 0:
                self._frozen[nodeid] = n
            else:
                self._frozen.pop(nodeid, None)
        self._notify(P.NOTIFY_INVAL_INODE, P.INVAL_INODE.pack(nodeid, -1, 0))

    def _frozen_attr(self, nodeid: int) -> bytes | int:
        """The GETATTR reply for an inode being written: the size last given (the
        kernel ignores sizes while a write extends the file, FUSE_I_SIZE_UNSTABLE,
        and a READ is cut at the size it has), the mtime of now; or an errno."""
        raise NotImplementedError

    def _unshare(self, path: str) -> None:
        """The writer's inode stays locked (i_rwsem, fuse_direct_write_iter()) until
        the store returns, and an ``O_TRUNC`` open of it would wait uninterruptibly for
        that lock: new opens of ``path`` get a new inode (its entry is dropped from the
        kernel's cache)."""
        parent, _, name = path.rpartition("/")
        with self._lock:
            self._paths.pop(path, None)
            pnode = P.ROOT_ID if not parent else self._paths.get(parent)
        if pnode is not None:
            nb = name.encode("utf-8", "surrogateescape")
            self._notify(P.NOTIFY_INVAL_ENTRY, P.INVAL_ENTRY.pack(pnode, len(nb), 0) + nb + b"\0")

    # ------------------------------------------------------------ invalidation
    def _new_generation(self) -> None:
        """Forget every path -> inode (new numbers from now on); if the kernel may
        cache something of the last generation, its side is due (``_stale``) until
        :meth:`_invalidate` starts: by the next :meth:`settle` at the latest, which
        is not the invalidator's wake-up (a blocked write's round) but the wait for
        it before a reply."""
        with self._lock:
            self._gen += 1
            self._paths.clear()
            self._ended.clear()
            self._incomplete.clear()
            if self._served:
                self._served, self._stale = False, True

    def _invalidate(self) -> None:
        """The kernel's side of a new generation (with _inval_lock; never from the
        reading thread, which must stay free to answer what the kernel waits for).

        The trees are d_invalidate()d (FUSE_NOTIFY_INVAL_ENTRY): new walks get new
        inodes.  What a walk no longer reaches, an open descriptor still does: the
        attributes of every inode whose contents were served since the last change
        (and that the kernel has not forgotten) are invalidated
        (FUSE_NOTIFY_INVAL_INODE, offset -1: fuse_reverse_inval_inode() then takes no
        page lock, so a write in flight, whose page stays locked until we answer,
        cannot block it).  The next read(2) or getdents(2) at 0 on such a descriptor
        refreshes them (FUSE_AUTO_INVAL_DATA: fuse_cache_read_iter(),
        fuse_readdir_cached()), sees the new generation in the mtime and drops the
        cached pages or listing (fuse_change_attributes(), fuse_rdc_reset()).
        """
        with self._lock:
            self._stale = False
        for name in (b"sys", b"proc"):
            payload = P.INVAL_ENTRY.pack(P.ROOT_ID, len(name), 0) + name + b"\0"
            self._notify(P.NOTIFY_INVAL_ENTRY, payload)
        self._drain_forgets()
        with self._lock:
            cached, self._cached = self._cached, set()
        inos, pack, write, fd = self._inos, P.INVAL_INODE.pack, os.write, self.fd
        head = P.OUT_HEADER.pack(16 + P.INVAL_INODE.size, P.NOTIFY_INVAL_INODE, 0)
        for nodeid in cached:
            if nodeid in inos:  # else FORGET-ten: nothing of it is cached
                try:
                    write(fd, head + pack(nodeid, -1, 0))
                except OSError:  # ENOENT: evicted (its FORGET is on its way)
                    pass

    def _drain_forgets(self) -> None:
        """Wait (a little) until the reading thread has taken the FORGETs of what the
        d_invalidate() just evicted: the kernel queued them before the notification
        returned (fuse_evict_inode()) and hands them out ahead of other requests, in
        batches (fuse_read_batch_forget()); a STATFS through the mount is answered
        after them once no FORGET came in while it was on its way.  What is forgotten
        needs no FUSE_NOTIFY_INVAL_INODE (after a full lsmem of 16,384 blocks that is
        every one of some 50,000, each a system call)."""
        if self.mountpoint is None:
            return
        for _ in range(32):
            seen = self._forgotten
            try:
                os.statvfs(self.mountpoint)
            except OSError:
                return
            if self._forgotten == seen:
                return

    def settle(self) -> None:
        """After a write or QMP command (no model lock held): the kernel forgets the
        trees and what open descriptors cached; the next read of any path, and of any
        open descriptor, sees the new generation."""
        with self._inval_lock:
            self._new_generation()
            if self._stale:
                self._invalidate()

    def _completer(self) -> None:
        """Read to their end the listings the kernel was given to their last entry
        only, through the mount (see the module's docstring): getdents(2) at the end
        offset, one empty READDIRPLUS, then fstat(2): the kernel's uncached readdir
        marked the directory's atime stale (fuse_invalidate_atime()), which the next
        fstat(2) -- opendir(3)'s -- would otherwise refresh with a GETATTR."""
        assert self.mountpoint is not None
        while True:
            self._complete_wake.wait()
            time.sleep(self.COMPLETE_DELAY_S)  # its reader may go on to the end itself
            with self._lock:
                self._complete_wake.clear()
                todo, self._incomplete = self._incomplete, {}
                todo = {
                    n: v
                    for n, v in todo.items()
                    if v[1] == self._gen and n not in self._ended and n in self._inos
                }
            for path, gen, end in todo.values():
                if gen != self._gen:
                    break
                try:
                    fd = os.open(self.mountpoint + path, os.O_RDONLY | os.O_DIRECTORY)
                except OSError:  # gone, or unmounted
                    continue
                try:
                    read_dir_end(fd, end)
                    os.fstat(fd)
                except OSError:
                    pass
                finally:
                    os.close(fd)

    def _invalidator(self) -> None:
        """The kernel's side of :meth:`_new_generation` for a blocked write's rounds."""
        while True:
            self._inval_wake.wait()
            self._inval_wake.clear()
            with self._inval_lock:
                if self._stale:
                    self._invalidate()


__all__ = ["Ino", "KernelCache", "read_dir_end"]
