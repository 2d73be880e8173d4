"""Object add/remove events (lib/kobject_uevent.c: kobject_uevent(KOBJ_ADD/KOBJ_REMOVE)).

Every sysfs-visible object of the model (memory block, node, firmware memmap
entry, ACPI binding) is announced here when it appears or vanishes, from the
function that models its device_register()/device_unregister() (or
kobject_add()/kobject_del()).  Observers (e.g. the simulated sysfs, which caches
its directory tree) subscribe instead of polling a counter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectEvent:
    """One KOBJ_ADD (``added``) or KOBJ_REMOVE of the object ``kind`` ``id``.

    ``kind`` is one of "memory_block", "node", "firmware_memmap", "acpi_binding"
    (physical_node links of an ACPI device), "acpi_device" (a device unbound).
    """

    kind: str
    id: int | str
    added: bool


ObjectListener = Callable[[ObjectEvent], None]


class ObjectEvents:
    """The observers of object events (the uevent netlink socket's listeners)."""

    def __init__(self) -> None:
        self._listeners: list[ObjectListener] = []

    def __getstate__(self) -> dict[str, object]:
        """A copy of the kernel (pickle) has no observers yet: each view of it
        (a simulated sysfs) subscribes itself."""
        return {"_listeners": []}

    def subscribe(self, fn: ObjectListener) -> None:
        self._listeners.append(fn)

    def unsubscribe(self, fn: ObjectListener) -> None:
        self._listeners.remove(fn)

    def emit(self, kind: str, id_: int | str, added: bool) -> None:
        """kobject_uevent(): tell every observer, in subscription order."""
        if not self._listeners:
            return
        ev = ObjectEvent(kind, id_, added)
        for fn in list(self._listeners):
            fn(ev)
