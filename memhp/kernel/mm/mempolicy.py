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

A tmpfs mounted with ``mpol=prefer:N`` is checked once, at the mount:
shmem_parse_one() (mm/shmem.c) hands the option to mpol_parse_str(), which refuses a
node list that is not a subset of ``node_states[N_MEMORY]`` (the mount fails with
EINVAL, "Bad value for 'mpol'"); a tmpfs mounted while its node had memory keeps its
policy when the node loses it (its pages then follow the zonelist as for any
preferred node without memory).
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


def mpol_parse_str_preferred(k: Kernel, nodes: Iterable[int]) -> int:
    """mpol_parse_str("prefer:NODES") as a tmpfs mount option: 0, or -EINVAL when the
    list is empty or names a node outside ``node_states[N_MEMORY]``
    (``nodes_subset()`` fails; MPOL_PREFERRED with a node list then also needs it
    non-empty)."""
    want = set(nodes)
    if not want or not want <= k.nodes.node_states["N_MEMORY"]:
        return -errno.EINVAL
    return 0
