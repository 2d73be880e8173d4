"""The nodes of the sysfs view, and attribute groups declared like the kernel's.

A directory (:class:`Dir`) computes its names and children from the model on
demand; an attribute (:class:`Attr`) has a show handler and maybe a store
handler (0 or -errno); a :class:`Link` is a symlink.

Attributes of an object kind are declared in a table, the way the kernel does
with ``static DEVICE_ATTR_RO(phys_index)`` ... ``memory_memblk_attrs[]`` and an
``is_visible`` callback::

    memblk_attrs: AttrGroup[MemoryBlock] = {
        "phys_index": ATTR_RO(phys_index_show),
        "state": ATTR_RW(state_show, state_store),
        "valid_zones": ATTR_RO(valid_zones_show, visible=profile("sysfs_valid_zones")),
        "subsystem": LINK(lambda k, mem: "../../../../bus/memory"),
    }

A show handler is ``(kernel, obj) -> str``, a store handler
``(kernel, obj, buf) -> 0 | -errno``, ``visible`` ``(kernel, obj) -> bool``;
:func:`profile` makes a ``visible`` from a field of the kernel's profile.
:func:`group_dir` turns the tables into a directory of one object.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


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
#: A directory entry: a factory that may return None (the entry is absent now).
Entry = Callable[[], Node | None]


def static_dir(entries: dict[str, Entry]) -> Dir:
    """A directory with a fixed set of names (each may still vanish: factory -> None)."""

    def names() -> list[str]:
        return [n for n, f in entries.items() if f() is not None]

    def child(name: str) -> Node | None:
        f = entries.get(name)
        return f() if f is not None else None

    return Dir(names, child)


def entries_dir(entries: dict[str, Entry]) -> Dir:
    """:func:`static_dir` of entries that are all present (no factory returns None,
    e.g. an object's attribute groups and links): listing it builds no node."""

    def child(name: str) -> Node | None:
        f = entries.get(name)
        return f() if f is not None else None

    return Dir(lambda: list(entries), child)


def indexed_dir(
    prefix: str,
    ids: Callable[[], list[int]],
    child: Callable[[int], Node | None],
    fixed: dict[str, Entry],
) -> Dir:
    """``PREFIXn`` children (memory32, node1; canonical decimal only) plus fixed entries."""

    def names() -> list[str]:
        return [f"{prefix}{i}" for i in ids()] + [n for n, f in fixed.items() if f() is not None]

    def lookup(name: str) -> Node | None:
        rest = name[len(prefix) :]
        if name.startswith(prefix) and rest.isdigit():
            return child(int(rest)) if str(int(rest)) == rest else None
        f = fixed.get(name)
        return f() if f is not None else None

    return Dir(names, lookup)


EMPTY_DIR = Dir(lambda: [], lambda _n: None)


# ---------------------------------------------------------------- attribute groups
@dataclass(frozen=True)
class DeviceAttr(Generic[T_contra]):
    """One attribute of an object kind (struct device_attribute + is_visible)."""

    mode: int
    show: Callable[[Kernel, T_contra], str] | None = None
    store: Callable[[Kernel, T_contra, bytes], int] | None = None
    visible: Callable[[Kernel, T_contra], bool] | None = None

    def node(self, k: Kernel, obj: T_contra) -> Attr:
        show, store = self.show, self.store
        return Attr(
            (lambda: show(k, obj)) if show is not None else None,
            (lambda buf: store(k, obj, buf)) if store is not None else None,
            self.mode,
        )


@dataclass(frozen=True)
class DeviceLink(Generic[T_contra]):
    """A symlink of an object kind (``subsystem``, ``firmware_node``)."""

    target: Callable[[Kernel, T_contra], str]
    visible: Callable[[Kernel, T_contra], bool] | None = None

    def node(self, k: Kernel, obj: T_contra) -> Link:
        return Link(self.target(k, obj))


#: name -> attribute or link, in the order the directory lists them.
AttrGroup = dict[str, DeviceAttr[T] | DeviceLink[T]]


def ATTR_RO(
    show: Callable[[Kernel, T], str], visible: Callable[[Kernel, T], bool] | None = None
) -> DeviceAttr[T]:
    return DeviceAttr(0o444, show, None, visible)


def ATTR_RW(
    show: Callable[[Kernel, T], str],
    store: Callable[[Kernel, T, bytes], int],
    visible: Callable[[Kernel, T], bool] | None = None,
) -> DeviceAttr[T]:
    return DeviceAttr(0o644, show, store, visible)


def ATTR_WO(
    store: Callable[[Kernel, T, bytes], int], visible: Callable[[Kernel, T], bool] | None = None
) -> DeviceAttr[T]:
    return DeviceAttr(0o200, None, store, visible)


def LINK(
    target: Callable[[Kernel, T], str], visible: Callable[[Kernel, T], bool] | None = None
) -> DeviceLink[T]:
    return DeviceLink(target, visible)


def profile(flag: str) -> Callable[[Kernel, object], bool]:
    """is_visible from a field of the kernel's profile (e.g. ``sysfs_valid_zones``)."""
    return lambda k, _obj: bool(getattr(k.profile, flag))


def group_entries(k: Kernel, obj: T, *groups: AttrGroup[T]) -> dict[str, Entry]:
    """The visible entries of ``obj``'s attribute groups (decided now, as at device_add)."""
    out: dict[str, Entry] = {}
    for g in groups:
        for name, a in g.items():
            if a.visible is None or a.visible(k, obj):
                out[name] = _entry(a, k, obj)
    return out


def _entry(a: DeviceAttr[T] | DeviceLink[T], k: Kernel, obj: T) -> Entry:
    return lambda: a.node(k, obj)


def lazy_group_dir(
    k: Kernel,
    obj: T,
    group: AttrGroup[T],
    extra: Callable[[], dict[str, Entry]] | None = None,
) -> Dir:
    """The directory of one object, resolved lazily: a lookup of one attribute looks
    only at that attribute (the hot path of a sysfs write); ``extra`` gives the
    entries that depend on the object's state (links), consulted only for names the
    group does not have and for listings."""

    def names() -> list[str]:
        visible = [n for n, a in group.items() if a.visible is None or a.visible(k, obj)]
        return visible + (list(extra()) if extra is not None else [])

    def child(name: str) -> Node | None:
        a = group.get(name)
        if a is not None:
            return a.node(k, obj) if a.visible is None or a.visible(k, obj) else None
        if extra is None:
            return None
        f = extra().get(name)
        return f() if f is not None else None

    return Dir(names, child)


def group_dir(k: Kernel, obj: T, *groups: AttrGroup[T]) -> Dir:
    """The directory of one object: its attribute groups."""
    return entries_dir(group_entries(k, obj, *groups))


# ---------------------------------------------------------------- common attributes
#: kobject_action_type names accepted by a uevent store (lib/kobject_uevent.c).
UEVENT_ACTIONS = ("add", "remove", "change", "move", "online", "offline", "bind", "unbind")


def uevent_store(_k: object, _obj: object, buf: bytes) -> int:
    """uevent_store() -> kobject_synth_uevent(): an action name, optionally with args."""
    word = buf.split(b" ", 1)[0].rstrip(b"\n")
    return 0 if word.decode("latin-1") in UEVENT_ACTIONS else -errno.EINVAL


def empty_show(_k: object, _obj: object) -> str:
    return ""


#: The ``uevent`` file every device has (drivers/base/core.c dev_attr_uevent).
UEVENT: DeviceAttr[object] = DeviceAttr(0o644, empty_show, uevent_store)
