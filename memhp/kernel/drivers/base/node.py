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

    def zone_counts(self, nid: int) -> dict[int, dict[str, int]]:
        """By zone index of node ``nid``: NR_FREE_PAGES (without the free pages of
        isolated page blocks), the pages in use by state, NR_SHMEM
        (shmem_add_to_page_cache()) and the pages of the huge page pools (movable
        allocations of the model, on no LRU list)."""
        pa = self.k.pa
        out: dict[int, dict[str, int]] = {}
        for zone in self.k.pgdats[nid].node_zones:
            out[int(zone.idx)] = {
                "free": pa.zone_free(zone),
                "movable": pa.zone_count(zone, PageState.MOVABLE),
                "pinned": pa.zone_count(zone, PageState.PINNED),
                "unmovable": pa.zone_count(zone, PageState.UNMOVABLE),
                "shmem": 0,
                "hugetlb": 0,
            }
        for a in pa.allocs.values():
            if a.kind in ("shmem", "hugetlb"):
                for s, c in a.extents.items():
                    if int(pa.nid[s]) == nid and (z := out.get(int(pa.zone[s]))) is not None:
                        z[a.kind] += c
        return out

    def node_meminfo(self, nid: int) -> dict[str, int]:
        """node_read_meminfo(): si_meminfo_node() (totalram: the zones' managed
        pages; freeram) and node_page_state() page counts: :meth:`zone_counts`
        summed over the node's zones."""
        out = {"total": sum(z.managed_pages for z in self.k.pgdats[nid].node_zones)}
        for counts in self.zone_counts(nid).values():
            for key, n in counts.items():
                out[key] = out.get(key, 0) + n
        return out
