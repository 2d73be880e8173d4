"""/sys/kernel/debug: lib/notifier-error-inject.c and lib/memory-notifier-error-inject.c.

``notifier-error-inject/memory/actions/ACTION/error``: an errno the memory
notifier chain returns for that action (fault injection).
"""

from __future__ import annotations

import errno

from memhp.kernel.drivers.base.memory import MemAction
from memhp.kernel.kernel import Kernel
from memhp.sim.sysfs.kernfs import (
    ATTR_RO,
    ATTR_RW,
    AttrGroup,
    Dir,
    Entry,
    group_dir,
    group_entries,
    static_dir,
)

#: The actions memory-notifier-error-inject offers.
ACTIONS = {
    "MEM_GOING_ONLINE": MemAction.MEM_GOING_ONLINE,
    "MEM_GOING_OFFLINE": MemAction.MEM_GOING_OFFLINE,
}


def error_store(k: Kernel, action: MemAction, buf: bytes) -> int:
    """debugfs_create_errno() store: an integer in [-MAX_ERRNO, 0]."""
    text = buf.strip().decode("latin-1", "replace")
    try:
        v = int(text, 0)
    except ValueError:
        return -errno.EINVAL
    if not -4095 <= v <= 0:
        return -errno.EINVAL
    if v:
        k.memory.notifier_error_inject[action] = v
    else:
        k.memory.notifier_error_inject.pop(action, None)
    return 0


#: notifier_err_inject_init(): one ``error`` file per action.
action_attrs: AttrGroup[MemAction] = {
    "error": ATTR_RW(lambda k, a: f"{k.memory.notifier_error_inject.get(a, 0)}\n", error_store),
}
memory_attrs: AttrGroup[None] = {"priority": ATTR_RO(lambda k, _o: "0\n")}


def debugfs_dir(k: Kernel) -> Dir:
    actions: dict[str, Entry] = {n: _action(k, a) for n, a in ACTIONS.items()}
    memory: dict[str, Entry] = {"actions": lambda: static_dir(actions)}
    memory.update(group_entries(k, None, memory_attrs))
    return static_dir(
        {"notifier-error-inject": lambda: static_dir({"memory": lambda: static_dir(memory)})}
    )


def _action(k: Kernel, a: MemAction) -> Entry:
    return lambda: group_dir(k, a, action_attrs)
