"""The memory notifier chain (drivers/base/memory.c memory_notify)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class MemAction(Enum):
    """The MEM_* actions of include/linux/memory.h."""

    MEM_ONLINE = 1 << 0
    MEM_GOING_OFFLINE = 1 << 1
    MEM_OFFLINE = 1 << 2
    MEM_GOING_ONLINE = 1 << 3
    MEM_CANCEL_ONLINE = 1 << 4
    MEM_CANCEL_OFFLINE = 1 << 5


@dataclass(frozen=True)
class MemoryNotify:
    """struct memory_notify."""

    start_pfn: int
    nr_pages: int
    nid: int
    status_change_nid: int
    status_change_nid_normal: int


#: A callback returns 0 (NOTIFY_OK) or a negative errno (notifier_from_errno).
MemoryNotifierFn = Callable[[MemAction, MemoryNotify], int]


@dataclass
class NotifierBlock:
    name: str
    fn: MemoryNotifierFn
    priority: int = 0


class MemoryChain:
    """blocking_notifier_call_chain() over registered callbacks, by priority."""

    def __init__(self) -> None:
        self.blocks: list[NotifierBlock] = []

    def register(self, name: str, fn: MemoryNotifierFn, priority: int = 0) -> None:
        """register_memory_notifier()."""
        self.blocks.append(NotifierBlock(name, fn, priority))
        self.blocks.sort(key=lambda b: -b.priority)

    def unregister(self, name: str) -> None:
        self.blocks = [b for b in self.blocks if b.name != name]

    def call(self, action: MemAction, arg: MemoryNotify) -> int:
        """Call each callback; stop at the first error (NOTIFY_STOP_MASK) and return it."""
        for b in self.blocks:
            ret = b.fn(action, arg)
            if ret:
                return ret
        return 0
