"""NUMA memory policies (mm/mempolicy.c): what set_mempolicy(2) accepts.

The model's workload tasks prefer a node (MPOL_PREFERRED, as the bench's guest task
asks, memhp/bench/guest_task.py); their pages then follow that node's zonelist
(:meth:`memhp.kernel.mm.page_alloc.PageAllocator.alloc`).  Only the check matters
here: do_set_mempolicy() -> mpol_set_nodemask() keeps the requested nodes that are
in the task's cpuset and have memory (``cpuset_current_mems_allowed`` and
``node_states[N_MEMORY]``; the root cpuset allows every node with memory), and
mpol_new_preferred() refuses an empty result with -EINVAL: a task cannot prefer a
memory-less node (node 1 of the QEMU guest before a DIMM or virtio-mem memory is
onlined there; recorded in tests/scenarios/virtio-task-memoryless-node.toml).
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel


def set_mempolicy_preferred(k: Kernel, nodes: Iterable[int]) -> int:
    """do_set_mempolicy(MPOL_PREFERRED, nodes): 0, or -EINVAL when none of ``nodes``
    has memory (mpol_new_preferred() of an empty mask).  An empty request is
    MPOL_LOCAL (allocate on the CPU's node) and always taken."""
    want = set(nodes)
    if not want:
        return 0
    if not want & k.nodes.node_states["N_MEMORY"]:
        return -errno.EINVAL
    return 0
