"""The sysfs root: the one place where the tool touches the kernel's files.

:class:`SysfsRoot` wraps any :class:`~memhp.abi.fs.SysfsFS` (``/``, a captured
tree, a FUSE mount, an in-process simulated machine).  Every read and write goes
through :meth:`SysfsRoot.read_bytes` / :meth:`SysfsRoot.write` and friends, which
turn :class:`OSError` into typed :class:`~memhp.host.errors.SysfsError` objects that
carry the path, the errno and what was attempted (the psutil ``PROCFS_PATH`` idea).

A missing attribute is an older kernel, not an error: the ``*_optional`` accessors
return ``None`` for it (feature probing, never version checks).
"""

from __future__ import annotations

import errno
import itertools
import os

from memhp.abi.fs import DirectoryFS, Kind, Stat, SysfsFS, is_missing, normpath, resolve_link
from memhp.host.errors import SysfsError, sysfs_error

# Not typing.TYPE_CHECKING: ``memhp list`` starts without importing typing or collections.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


#: Descriptors :meth:`SysfsRoot.quiet_reader` keeps open before closing them at once.
_BATCH = 192


def _close_all(fds: list[int]) -> None:
    """Close descriptors ``fds`` (all open, ours): one ``close_range`` per run of
    consecutive numbers (the kernel hands out the lowest free descriptor, so they
    are mostly one run; an inherited descriptor in between splits it), never a
    descriptor that is not in ``fds``."""
    if not fds:
        return
    fds.sort()
    if fds[-1] - fds[0] == len(fds) - 1:  # distinct numbers: one run
        os.closerange(fds[0], fds[-1] + 1)
        return
    start = prev = fds[0]
    for fd in fds[1:]:
        if fd != prev + 1:
            os.closerange(start, prev + 1)
            start = fd
        prev = fd
    os.closerange(start, prev + 1)


class SysfsRoot:
    """Typed access to a sysfs root (paths are absolute within the root)."""

    def __init__(self, fs: SysfsFS, name: str = "/") -> None:
        self.fs = fs
        self.name = name
        # Fast path for real directories: plain os calls on the real path, which
        # matters when listing tens of thousands of blocks.
        self._dir: str | None = fs.root if isinstance(fs, DirectoryFS) else None
        self._fds: dict[str, int] = {}  # directory descriptors, by path
        self._pending: list[int] = []  # read by quiet_reader, closed in batches

    @classmethod
    def open(cls, sysroot: str | None = None) -> SysfsRoot:
        """The root at directory ``sysroot`` (``/`` when None)."""
        path = sysroot if sysroot else "/"
        return cls(DirectoryFS(path), path)

    # -- the choke point -----------------------------------------------------------

    def real_path(self, path: str) -> str | None:
        """The host path of ``path`` when the root is a real directory, else None."""
        if self._dir is None:
            return None
        rel = normpath(path)
        return self._dir + rel if self._dir != "/" else rel

    def read_bytes(self, path: str) -> bytes:
        """Content of ``path``; :class:`SysfsError` on failure."""
        try:
            if self._dir is not None:
                fd = os.open(self._dir + path, os.O_RDONLY)
                try:
                    return os.read(fd, 65536)
                finally:
                    os.close(fd)
            return self.fs.read(path)
        except OSError as e:
            raise sysfs_error("read", path, e) from None

    def _dir_fd(self, path: str) -> int:
        """A descriptor of real directory ``path``, opened once and shared by the
        readers and checkers made for it until :meth:`close`."""
        dfd = self._fds.get(path)
        if dfd is None:
            assert self._dir is not None
            try:
                dfd = os.open(self._dir + path, os.O_RDONLY | os.O_DIRECTORY)
            except OSError as e:
                raise sysfs_error("list", path, e) from None
            self._fds[path] = dfd
        return dfd

    def dir_reader(self, path: str) -> Callable[[str], bytes]:
        """A reader of files relative to directory ``path`` (same errors as
        :meth:`read_bytes`); on a real directory it opens relative to a directory
        descriptor, which is what makes listing 16,384 blocks cheap."""
        if self._dir is None:
            base = path.rstrip("/") + "/"
            return lambda rel: self.read_bytes(base + rel)
        dfd = self._dir_fd(path)
        o_open, o_read, o_close, rdonly = os.open, os.read, os.close, os.O_RDONLY

        def read(rel: str) -> bytes:
            try:
                fd = o_open(rel, rdonly, dir_fd=dfd)
                try:
                    return o_read(fd, 65536)
                finally:
                    o_close(fd)
            except OSError as e:
                raise sysfs_error("read", path + "/" + rel, e) from None

        return read

    def quiet_reader(self, path: str) -> Callable[[str], bytes | None]:
        """Like :meth:`dir_reader`, but a failed read gives None instead of raising
        (use :meth:`dir_reader` again to learn why): the listing loop of 16,384
        blocks pays no exception set-up per attribute.  On a real directory the
        descriptors are closed in batches (see :meth:`_flush`): a third of the
        system calls of a listing are closes."""
        if self._dir is None:
            base = path.rstrip("/") + "/"
            fs_read = self.fs.read

            def read_fs(rel: str) -> bytes | None:
                try:
                    return fs_read(base + rel)
                except OSError:
                    return None

            return read_fs
        dfd = self._dir_fd(path)
        o_open, o_read, rdonly = os.open, os.read, os.O_RDONLY
        pending = self._pending
        flush = self._flush

        def read(rel: str) -> bytes | None:
            try:
                fd = o_open(rel, rdonly, dir_fd=dfd)
            except OSError as e:
                if e.errno not in (errno.EMFILE, errno.ENFILE) or not pending:
                    return None
                flush()
                try:
                    fd = o_open(rel, rdonly, dir_fd=dfd)
                except OSError:
                    return None
            pending.append(fd)
            try:
                # a small first read: the bytes object is allocated at this size
                # (65,536 bytes, shrunk, cost 0.35 us more per read)
                data = o_read(fd, 256)
                if len(data) == 256:
                    data += o_read(fd, 65536 - 256)
                return data
            except OSError:
                return None
            finally:
                if len(pending) >= _BATCH:
                    flush()

        return read

    def read_table(self, path: str, names: list[str], attrs: tuple[str, ...]) -> list[bytes | None]:
        """The contents of ``NAME/ATTR`` under directory ``path`` for every name and
        attribute, row by row (``attrs`` of ``names[0]``, then of ``names[1]``...);
        None for a file that cannot be read, as :meth:`quiet_reader` gives.

        On a real directory the paths are built as bytes (``os.open`` then has no
        text to encode) and read in batches of :data:`_BATCH` files: a loop of
        opens, one ``map`` of 256-byte reads, the batch's descriptors closed by
        ``close_range``.  A batch where anything fails (or a file fills its first
        read) is read again file by file, as :meth:`quiet_reader` reads."""
        if self._dir is None or not names or not attrs:
            read = self.quiet_reader(path)
            return [read(f"{n}/{a}") for n in names for a in attrs]
        dfd = self._dir_fd(path)
        o_open, o_read, rdonly = os.open, os.read, os.O_RDONLY
        close_all = _close_all
        tails = [("/" + a).encode() for a in attrs]
        rels = [b + t for b in [n.encode("utf-8", "surrogateescape") for n in names] for t in tails]
        out: list[bytes | None] = []
        slow = None
        for i in range(0, len(rels), _BATCH):
            batch = rels[i : i + _BATCH]
            fds: list[int] = []
            keep = fds.append
            got: list[bytes] | None = None
            try:
                for rel in batch:
                    keep(o_open(rel, rdonly, dir_fd=dfd))
                got = list(map(o_read, fds, itertools.repeat(256)))
            except OSError:
                pass
            finally:
                close_all(fds)
            if got is None or 256 in map(len, got):
                if slow is None:
                    slow = self.quiet_reader(path)
                out += [slow(r.decode("utf-8", "surrogateescape")) for r in batch]
                self._flush()
            else:
                out += got
        return out

    def probe_table(self, path: str, names: list[str], tail: str) -> list[bool]:
        """:meth:`exists` for ``NAME + tail`` of each of ``names`` (relative to
        directory ``path``): on a real directory one ``faccessat2(F_OK,
        AT_SYMLINK_NOFOLLOW | AT_EACCESS)`` each: true for exactly the paths
        ``lstat`` finds (a dangling link too; the effective ids search the
        directories, as for ``lstat``), without building a stat result (and
        without the kernel's switch to the real ids)."""
        if self._dir is None:
            base = path.rstrip("/") + "/"
            return [self.exists(base + n + tail) for n in names]
        dfd = self._dir_fd(path)
        access, f_ok = os.access, os.F_OK
        end = tail.encode("utf-8", "surrogateescape")
        return [
            access(b + end, f_ok, dir_fd=dfd, effective_ids=True, follow_symlinks=False)
            for b in [n.encode("utf-8", "surrogateescape") for n in names]
        ]

    def _flush(self) -> None:
        """Close the descriptors :meth:`quiet_reader` left open (:func:`_close_all`)."""
        _close_all(self._pending)
        self._pending.clear()

    def close(self) -> None:
        """Release directory descriptors held by :meth:`dir_reader` and
        :meth:`quiet_reader` readers."""
        self._flush()
        while self._fds:
            os.close(self._fds.popitem()[1])

    def write(self, path: str, value: str) -> None:
        """Write ``value`` to attribute ``path`` in one call (like ``echo``)."""
        data = value.encode()
        try:
            self.fs.write(path, data)
        except OSError as e:
            raise sysfs_error("write", path, e, value.rstrip("\n")) from None

    def listdir(self, path: str) -> list[str]:
        try:
            if self._dir is not None:
                return os.listdir(self._dir + path)
            return self.fs.listdir(path)
        except OSError as e:
            raise sysfs_error("list", path, e) from None

    def readlink(self, path: str) -> str:
        try:
            return self.fs.readlink(path)
        except OSError as e:
            raise sysfs_error("readlink", path, e) from None

    def lstat(self, path: str) -> Stat:
        try:
            return self.fs.lstat(path)
        except OSError as e:
            raise sysfs_error("stat", path, e) from None

    # -- typed accessors -----------------------------------------------------------

    def read_str(self, path: str) -> str:
        """Content as text without its trailing newline."""
        text = self.read_bytes(path).decode("utf-8", "replace")
        return text[:-1] if text.endswith("\n") else text

    def read_str_optional(self, path: str) -> str | None:
        """Like :meth:`read_str`, None when the attribute does not exist."""
        try:
            return self.read_str(path)
        except SysfsError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise

    def read_values(self, path: str, names: tuple[str, ...]) -> dict[str, int] | None:
        """The integer first field of each line named in ``names`` of a /proc file of
        named counters (/proc/meminfo's ``Name:   N kB``, /proc/vmstat's ``name N``);
        lines without one are left out.  None when the file cannot be read."""
        try:
            text = self.read_str(path)
        except SysfsError:
            return None
        found: dict[str, int] = {}
        for line in text.splitlines():
            name, _, rest = line.partition(":") if ":" in line else line.partition(" ")
            if name in names:
                fields = rest.split()
                if fields and fields[0].isdigit():
                    found[name] = int(fields[0])
        return found

    def read_int(self, path: str, base: int = 10) -> int:
        text = self.read_str(path).strip()
        try:
            return int(text, base)
        except ValueError:
            raise SysfsError("read", path, errno.EINVAL) from None

    def exists(self, path: str) -> bool:
        """True when ``path`` exists (a dangling link counts as existing)."""
        try:
            if self._dir is not None:
                os.lstat(self._dir + path)
            else:
                self.fs.lstat(path)
        except OSError:
            return False
        return True

    def kind(self, path: str) -> Kind | None:
        try:
            return self.fs.lstat(path).kind
        except OSError:
            return None

    def link_target(self, path: str) -> str | None:
        """Absolute root path a link points to, or None when ``path`` is no link."""
        try:
            return resolve_link(path, self.fs.readlink(path))
        except OSError:
            return None

    def read_at(self, path: str, offset: int, size: int) -> bytes:
        """``size`` bytes of ``path`` from ``offset`` (``/proc/kpageflags``)."""
        try:
            if self._dir is not None:
                fd = os.open(self._dir + path, os.O_RDONLY)
                try:
                    return os.pread(fd, size, offset)
                finally:
                    os.close(fd)
            return self.fs.read_at(path, offset, size)
        except OSError as e:
            raise sysfs_error("read", path, e) from None

    def check_dir(self, path: str) -> None:
        """Raise :class:`SysfsError` unless ``path`` is a directory we can list."""
        try:
            st = self.fs.lstat(path)
        except OSError as e:
            raise sysfs_error("stat", path, e) from None
        if st.kind is Kind.LINK:
            self.listdir(path)
        elif st.kind is not Kind.DIR:
            raise SysfsError("list", path, errno.ENOTDIR)


def missing(exc: SysfsError) -> bool:
    """True when ``exc`` means the object is not there."""
    return is_missing(OSError(exc.errno, exc.strerror))
