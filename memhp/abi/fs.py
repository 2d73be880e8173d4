"""The file-system interface shared by every sysfs root.

A *sysfs root* is a directory that holds ``sys/`` (and, where known, ``proc/``):
``/`` on a real machine, a captured tree on disk, a FUSE-mounted simulated machine,
or an in-process simulated machine.  The tool (:mod:`memhp.host`) talks to all of
them through this protocol only, so it never needs to know which one it has.

Paths are absolute within the root and use ``/`` (``/sys/devices/system/memory``).
Errors are :class:`OSError` with the errno the kernel would give (``ENOENT`` for a
missing file, ``EINVAL``/``EBUSY`` from a store handler, ``EACCES`` for a write-only
attribute read, ``EPERM``...).
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod

# Not typing.TYPE_CHECKING: importing typing (~10 ms) would be most of the start-up
# of ``memhp list``.  Type checkers see a runtime-checkable Protocol; at run time
# SysfsFS is an ABC whose isinstance() checks for the same methods.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar, runtime_checkable
    from typing import Protocol as _Structural
else:
    from abc import ABC

    class _Structural(ABC):  # noqa: B024 (no abstract methods: structural)
        """What ``@runtime_checkable`` gives a Protocol: ``isinstance(x, C)`` is true
        when ``x`` has every public method ``C`` declares."""

        @classmethod
        def __subclasshook__(cls, sub):
            names = [n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")]
            if names and all(callable(getattr(sub, n, None)) for n in names):
                return True
            return NotImplemented

    def runtime_checkable(cls):
        return cls


#: EHWPOISON (include/uapi/asm-generic/errno.h: "Memory page has hardware error"),
#: which Python's errno module does not name.
EHWPOISON = 133
#: errno names beyond Python's errno module.
EXTRA_ERRNO_NAMES: dict[int, str] = {EHWPOISON: "EHWPOISON"}


class Kind:
    """What a path names: ``Kind.DIR``, ``Kind.FILE`` or ``Kind.LINK``.

    Three singletons compared by identity, with an enum's ``name`` and ``value``
    (``"D"``, ``"F"``, ``"L"``, as trees store them).  Not an ``enum.Enum``:
    importing enum (functools, collections, operator) is a third of the start-up
    of ``memhp list``.
    """

    __slots__ = ("name", "value")
    name: str
    value: str
    DIR: ClassVar[Kind]
    FILE: ClassVar[Kind]
    LINK: ClassVar[Kind]

    def __init__(self, name: str, value: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __repr__(self) -> str:
        return f"<Kind.{self.name}: {self.value!r}>"

    def __reduce__(self) -> tuple[object, tuple[str]]:
        # a copy or an unpickled Kind is the singleton itself
        return (Kind.of, (self.value,))

    @staticmethod
    def of(value: str) -> Kind:
        """The kind stored as *value*; ValueError for anything else."""
        for k in (Kind.DIR, Kind.FILE, Kind.LINK):
            if k.value == value:
                return k
        raise ValueError(f"{value!r} is not a valid Kind")


Kind.DIR = Kind("DIR", "D")
Kind.FILE = Kind("FILE", "F")
Kind.LINK = Kind("LINK", "L")


class Stat:
    """The little of ``stat(2)`` a sysfs client needs (immutable).

    A plain class rather than a dataclass: importing dataclasses (inspect, ast)
    would double the start-up time of ``memhp list``.
    """

    __slots__ = ("kind", "mode", "size")
    kind: Kind
    mode: int  # permission bits, e.g. 0o644, 0o200 for write-only attributes
    size: int

    def __init__(self, kind: Kind, mode: int, size: int = 4096) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "size", size)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def _key(self) -> tuple[Kind, int, int]:
        return (self.kind, self.mode, self.size)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stat) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Stat(kind={self.kind!r}, mode={self.mode!r}, size={self.size!r})"


@runtime_checkable
class SysfsFS(_Structural):
    """Read, write and walk a sysfs root (paths are absolute within the root)."""

    def lstat(self, path: str) -> Stat:
        """Describe ``path`` without following a final link; ENOENT if absent."""
        ...

    def listdir(self, path: str) -> list[str]:
        """Names in directory ``path`` (unsorted is fine); ENOTDIR/ENOENT."""
        ...

    def read(self, path: str) -> bytes:
        """The whole content of file ``path`` (links followed)."""
        ...

    def read_at(self, path: str, offset: int, size: int) -> bytes:
        """At most ``size`` bytes of file ``path`` from ``offset`` (``pread(2)``):
        big binary files (``/proc/kpageflags``) are read by parts, never whole."""
        ...

    def write(self, path: str, data: bytes) -> int:
        """Write ``data`` to attribute ``path`` in one call; returns bytes taken."""
        ...

    def readlink(self, path: str) -> str:
        """Target of link ``path``, relative as sysfs gives it."""
        ...


def oserror(code: int, path: str, what: str = "") -> OSError:
    """An :class:`OSError` carrying ``code`` and ``path`` as the OS would raise it."""
    msg = os.strerror(code)
    if what:
        msg = f"{msg} ({what})"
    return OSError(code, msg, path)


def normpath(path: str) -> str:
    """Normalise an absolute root-relative path: no trailing or double slashes."""
    if path[:1] == "/" and "//" not in path and "/." not in path and path[-1:] != "/":
        return path  # already normal: no empty, "." or ".." component
    if path == "/":
        return path
    if not path.startswith("/"):
        path = "/" + path
    parts = [p for p in path.split("/") if p and p != "."]
    out: list[str] = []
    for p in parts:
        if p == "..":
            if out:
                out.pop()
        else:
            out.append(p)
    return "/" + "/".join(out)


def resolve_link(link_path: str, target: str) -> str:
    """The absolute path a relative link target names."""
    key = (link_path, target)
    path = _LINKS.get(key)
    if path is None:
        if target.startswith("/"):
            path = normpath(target)
        else:
            path = normpath((link_path.rsplit("/", 1)[0] or "/") + "/" + target)
        if len(_LINKS) >= 65536:
            _LINKS.clear()
        _LINKS[key] = path
    return path


#: resolve_link() by its arguments (a pure function of two strings; the same links
#: are resolved again and again, and a relative target needs the slow normpath()).
_LINKS: dict[tuple[str, str], str] = {}


class DirectoryFS:
    """A sysfs root that is a real directory (``/``, a captured tree, a FUSE mount)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def _real(self, path: str) -> str:
        rel = normpath(path).lstrip("/")
        return os.path.join(self.root, rel) if rel else self.root

    def lstat(self, path: str) -> Stat:
        st = os.lstat(self._real(path))
        if stat_mod.S_ISLNK(st.st_mode):
            kind = Kind.LINK
        elif stat_mod.S_ISDIR(st.st_mode):
            kind = Kind.DIR
        else:
            kind = Kind.FILE
        return Stat(kind, stat_mod.S_IMODE(st.st_mode), st.st_size)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(self._real(path))

    def read(self, path: str) -> bytes:
        with open(self._real(path), "rb") as f:
            return f.read()

    def read_at(self, path: str, offset: int, size: int) -> bytes:
        fd = os.open(self._real(path), os.O_RDONLY)
        try:
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)

    def write(self, path: str, data: bytes) -> int:
        fd = os.open(self._real(path), os.O_WRONLY)
        try:
            return os.write(fd, data)
        finally:
            os.close(fd)

    def readlink(self, path: str) -> str:
        return os.readlink(self._real(path))


def is_missing(exc: OSError) -> bool:
    """True when ``exc`` means the path does not exist."""
    return exc.errno in (errno.ENOENT, errno.ENOTDIR)
