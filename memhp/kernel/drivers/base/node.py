"""NUMA node devices and node states (drivers/base/node.c, node_states[] of mm/page_alloc.c).

/sys/devices/system/node/nodeN exists for each registered node
(register_one_node / unregister_one_node); ``node_states`` is the kernel's
node_states[] nodemasks (N_POSSIBLE, N_ONLINE, N_NORMAL_MEMORY, N_MEMORY, N_CPU).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memhp.kernel.mm.page_alloc import PageState

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel

NODE_STATES = ("N_POSSIBLE", "N_ONLINE", "N_NORMAL_MEMORY", "N_MEMORY", "N_CPU")


class Nodes:
    """node_states[] and the registered node devices."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.node_states: dict[str, set[int]] = {s: set() for s in NODE_STATES}
        #: Nodes with a /sys/devices/system/node/nodeN device.
        self.registered_nodes: set[int] = set()

    def cpus_of(self, nid: int) -> tuple[int, ...]:
        """cpumask_of_node()."""
        return self.k.spec.node(nid).cpus

    def node_set_online(self, nid: int) -> None:
        """node_set_online(): set N_ONLINE."""
        self.node_states["N_ONLINE"].add(nid)

    def node_set_offline(self, nid: int) -> None:
        """node_set_offline(): clear N_ONLINE (from try_offline_node())."""
        self.node_states["N_ONLINE"].discard(nid)
        self.k.log("try_offline_node", f"node {nid} offline")

    def register_one_node(self, nid: int) -> None:
        """register_one_node(): /sys/devices/system/node/nodeN appears."""
        self.registered_nodes.add(nid)
        self.k.objects.emit("node", nid, True)
        self.k.log("register_one_node", f"/sys/devices/system/node/node{nid} created")

    def unregister_one_node(self, nid: int) -> None:
        """unregister_one_node(): /sys/devices/system/node/nodeN goes."""
        self.registered_nodes.discard(nid)
        self.k.objects.emit("node", nid, False)
        self.k.log("unregister_one_node", f"/sys/devices/system/node/node{nid} removed")

    def node_meminfo(self, nid: int) -> dict[str, int]:
        """node_read_meminfo(): si_meminfo_node() (freeram: the zones' NR_FREE_PAGES,
        without the free pages of isolated page blocks) and node_page_state() page
        counts."""
        k = self.k
        total = free = movable = pinned = unmovable = 0
        for zone in k.pgdats[nid].node_zones:
            total += zone.managed_pages
            free += k.pa.zone_free(zone)  # NR_FREE_PAGES: not isolated free pages
            movable += k.pa.zone_count(zone, PageState.MOVABLE)
            pinned += k.pa.zone_count(zone, PageState.PINNED)
            unmovable += k.pa.zone_count(zone, PageState.UNMOVABLE)
        # NR_SHMEM (shmem_add_to_page_cache()) and the pages of the huge page pools
        # (movable allocations of the model, on no LRU list).
        shmem = hugetlb = 0
        for a in k.pa.allocs.values():
            if a.kind in ("shmem", "hugetlb"):
                n = sum(c for s, c in a.extents.items() if int(k.pa.nid[s]) == nid)
                if a.kind == "shmem":
                    shmem += n
                else:
                    hugetlb += n
        return {
            "total": total,
            "free": free,
            "movable": movable,
            "pinned": pinned,
            "unmovable": unmovable,
            "shmem": shmem,
            "hugetlb": hugetlb,
        }
