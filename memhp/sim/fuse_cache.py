"""Kernel caching for the FUSE mount (opt-in: ``MEMHP_FUSE_CACHE=1``).

See :class:`CachedSysfsOperations` and benchmarks/NOTES.md (issue 17).
"""

from __future__ import annotations

import errno
import os

from memhp.abi.fs import Kind
from memhp.sim.fuse import SysfsOperations
from memhp.sim.sysfs.view import Attr


class CachedSysfsOperations(SysfsOperations):
    """The operations when the kernel may cache (libfuse can invalidate its caches).

    ``open`` answers ENOSYS once: the kernel then opens files without asking
    (FUSE "zero-message open", ``fc->no_open``) and keeps their contents in the page
    cache (FOPEN_KEEP_CACHE) until :meth:`SysfsOperations._invalidate_all` drops
    them.  ``flush``, ``release``, ``opendir``, ``releasedir`` and ``fsync`` are left
    to libfuse (no Python call): a cached open+read+close makes no request at all.
    kernfs_fop_open()'s EACCES for a direction the attribute lacks then comes from
    the kernel's permission check (``default_permissions``) and, for root, from the
    read or write itself.
    """

    KERNEL_CACHE = True
    flush = None  # type: ignore[assignment]
    release = None  # type: ignore[assignment]
    opendir = None  # type: ignore[assignment]
    releasedir = None  # type: ignore[assignment]
    fsync = None  # type: ignore[assignment]

    def open(self, path: str, flags: int) -> int:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS), path)

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        """st_size of an attribute is the length of its text (sysfs says 4096).

        The kernel sets i_size to that length when a page-cache read comes short, and
        drops the page cache when the next attributes (refetched by any stat, whose
        atime the read invalidated) give another size (fuse_change_attributes()):
        with 4096, every read of a cached attribute would cost a GETATTR and a READ.
        """
        self._served = True
        with self.fs.lock:
            st = self.fs.lstat(path)
            d = self._stat_dict(st)
            if st.kind is Kind.FILE:
                node = self.fs.resolve(path, follow_last=False)[1]
                if isinstance(node, Attr) and node.size is None and node.show is not None:
                    try:
                        d["st_size"] = len(node.show().encode())
                    except OSError:  # the read will fail with it
                        pass
        return d

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        """A page-cache fill: the text at ``offset`` (sysfs_kf_seq_show() of the node)."""
        self._served = True
        try:
            return self.fs.read_at(path, offset, size)
        except OSError as e:
            if e.errno == errno.ENOENT:  # removed while open: kernfs deactivated it
                raise OSError(errno.ENODEV, os.strerror(errno.ENODEV), path) from None
            raise


def kernel_cache_available() -> bool:
    """Kernel caching is asked for (``MEMHP_FUSE_CACHE=1``, experimental) and libfuse
    can invalidate the kernel's caches (its notify calls are exported).

    Not the default: with zero-message open, writes go through the page cache, and a
    write that blocks (an offline retrying migration) keeps the file's page locked
    and its size "unstable" (FUSE_I_SIZE_UNSTABLE), so readers of that attribute wait
    or see its old text until the write ends; fixing that needs per-open flags
    (direct I/O for writers), i.e. libfuse's low-level API.
    """
    if os.environ.get("MEMHP_FUSE_CACHE") != "1":
        return False
    try:
        import mfusepy

        lib = mfusepy._libfuse
        return all(
            hasattr(lib, n)
            for n in (
                "fuse_get_session",
                "fuse_lowlevel_notify_inval_entry",
                "fuse_invalidate_path",
            )
        )
    except (ImportError, OSError, AttributeError):
        return False


__all__ = ["CachedSysfsOperations", "kernel_cache_available"]
