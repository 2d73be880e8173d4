"""Typed errors of the host library.

Every failed access to a sysfs root becomes a :class:`SysfsError` (or one of its
subclasses) that carries the root-relative path, the errno and what was attempted,
so that callers can explain a failure instead of printing a bare ``EBUSY``.
Problems with what the user asked for (an unknown block, a misaligned range) are
:class:`UsageError`; both print as one clear line.
"""

from __future__ import annotations

import errno as errno_mod
import os


class HostError(Exception):
    """Base class of every error the host library raises on purpose."""


class UsageError(HostError):
    """Bad input: unknown block or device, misaligned range, size too large..."""


class SysfsError(HostError):
    """A read, write or walk of a sysfs path failed.

    ``op`` is what was attempted (``read``, ``write``, ``list``, ``readlink``,
    ``stat``), ``data`` the value written (for writes).
    """

    def __init__(self, op: str, path: str, errno: int, data: str | None = None) -> None:
        self.op = op
        self.path = path
        self.errno = errno
        self.data = data
        super().__init__(str(self))

    @property
    def strerror(self) -> str:
        return os.strerror(self.errno) if self.errno else "unknown error"

    @property
    def errname(self) -> str:
        """Symbolic errno (``EBUSY``)."""
        return errno_mod.errorcode.get(self.errno, str(self.errno))

    def __str__(self) -> str:
        if self.op == "write" and self.data is not None:
            return f"cannot write '{self.data}' to {self.path}: {self.strerror}"
        verb = {"list": "list", "readlink": "read link", "stat": "access"}.get(self.op, self.op)
        return f"cannot {verb} {self.path}: {self.strerror}"


class NotFound(SysfsError):
    """ENOENT/ENOTDIR: the object does not exist (or no longer exists)."""


class PermissionDenied(SysfsError):
    """EACCES/EPERM: not allowed (not root, or a write-only attribute)."""


class Busy(SysfsError):
    """EBUSY: the kernel could not do it now (e.g. pages could not be migrated)."""


class InvalidArgument(SysfsError):
    """EINVAL: the kernel refused the value or the operation in this state."""


_BY_ERRNO: dict[int, type[SysfsError]] = {
    errno_mod.ENOENT: NotFound,
    errno_mod.ENOTDIR: NotFound,
    errno_mod.EACCES: PermissionDenied,
    errno_mod.EPERM: PermissionDenied,
    errno_mod.EBUSY: Busy,
    errno_mod.EINVAL: InvalidArgument,
}


def sysfs_error(op: str, path: str, exc: OSError, data: str | None = None) -> SysfsError:
    """The typed error for ``exc`` raised while doing ``op`` on ``path``."""
    code = exc.errno or errno_mod.EIO
    cls = _BY_ERRNO.get(code, SysfsError)
    return cls(op, path, code, data)
