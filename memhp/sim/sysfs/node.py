"""/sys/devices/system/node: drivers/base/node.c (the per-node hugetlb files: sysfs/hugetlb.py).

``node_state_attrs`` (the node subsystem's masks), ``node_dev_attrs`` (one
``nodeN`` directory per registered node), declared as attribute tables.
"""

from __future__ import annotations

from memhp.kernel.kernel import Kernel
from memhp.kernel.mm.mmzone import MF_STATS
from memhp.sim import procfs
from memhp.sim.sysfs.attrs import cpumask_hex, nodelist
from memhp.sim.sysfs.hugetlb import hugepages_dir
from memhp.sim.sysfs.kernfs import (
    ATTR_RO,
    ATTR_WO,
    EMPTY_DIR,
    LINK,
    UEVENT,
    AttrGroup,
    DeviceAttr,
    Dir,
    Entry,
    Link,
    Node,
    group_dir,
    group_entries,
    indexed_dir,
    profile,
)

#: node_state_attrs[] (has_generic_initiator by profile).
node_state_attrs: AttrGroup[None] = {
    "uevent": UEVENT,
    "possible": ATTR_RO(lambda k, _o: nodelist(k.nodes.node_states["N_POSSIBLE"]) + "\n"),
    "online": ATTR_RO(lambda k, _o: nodelist(k.nodes.node_states["N_ONLINE"]) + "\n"),
    "has_normal_memory": ATTR_RO(
        lambda k, _o: nodelist(k.nodes.node_states["N_NORMAL_MEMORY"]) + "\n"
    ),
    "has_memory": ATTR_RO(lambda k, _o: nodelist(k.nodes.node_states["N_MEMORY"]) + "\n"),
    "has_cpu": ATTR_RO(lambda k, _o: nodelist(k.nodes.node_states["N_CPU"]) + "\n"),
    "has_generic_initiator": ATTR_RO(lambda k, _o: "\n", profile("sysfs_generic_initiator")),
}


# ---------------------------------------------------------------- nodeN
def cpumap_show(k: Kernel, nid: int) -> str:
    ncpus = max((c for n in k.spec.nodes for c in n.cpus), default=0) + 1
    return cpumask_hex(k.nodes.cpus_of(nid), ncpus) + "\n"


def distance_show(k: Kernel, nid: int) -> str:
    """node_read_distance(): distances to the online nodes."""
    spec = k.spec
    row = spec.node(nid).distance
    ids = [n.id for n in spec.nodes]
    parts = []
    for i in sorted(k.nodes.node_states["N_ONLINE"]):
        parts.append(("" if i == 0 else " ") + str(row[ids.index(i)]))
    return "".join(parts) + "\n"


#: node_dev_attrs[] (+ uevent, subsystem, x86 by profile, compact, hugepages below).
node_dev_attrs: AttrGroup[int] = {
    "uevent": UEVENT,
    "cpumap": ATTR_RO(cpumap_show),
    "cpulist": ATTR_RO(lambda k, nid: nodelist(k.nodes.cpus_of(nid)) + "\n"),
    "distance": ATTR_RO(distance_show),
    "meminfo": ATTR_RO(procfs.node_meminfo),
    "numastat": ATTR_RO(procfs.node_numastat),
    "vmstat": ATTR_RO(procfs.node_vmstat),
}
node_dev_tail: AttrGroup[int] = {
    "subsystem": LINK(lambda k, nid: "../../../../bus/node"),
    "compact": ATTR_WO(lambda k, nid, b: 0),
}


def node_dir(k: Kernel, nid: int) -> Dir:
    fixed: dict[str, Entry] = group_entries(k, nid, node_dev_attrs)
    fixed["x86"] = lambda: EMPTY_DIR if k.profile.sysfs_node_x86 else None
    fixed.update(group_entries(k, nid, node_dev_tail))
    fixed["hugepages"] = lambda: hugepages_dir(k, nid)
    if k.profile.sysfs_node_memory_failure:
        fixed["memory_failure"] = lambda: group_dir(k, nid, memory_failure_attrs)
    for cpu in k.nodes.cpus_of(nid):
        fixed[f"cpu{cpu}"] = _link(f"../../cpu/cpu{cpu}")

    def blocks() -> list[int]:
        return k.memory.node_block_ids(nid)

    def child(bid: int) -> Node | None:
        mem = k.memory.blocks.get(bid)
        if mem is not None and nid in mem.nodes:
            return Link(f"../../memory/{mem.name}")
        return None

    return indexed_dir("memory", blocks, child, fixed)


#: memory_failure_attr[] of mm/memory-failure.c (6.4+): NODE_DATA(nid)->mf_stats.
def _mf_stat(name: str) -> DeviceAttr[int]:
    return ATTR_RO(lambda k, nid: f"{k.pgdats[nid].mf_stats[name]}\n")


memory_failure_attrs: AttrGroup[int] = {name: _mf_stat(name) for name in MF_STATS}


def _link(target: str) -> Entry:
    return lambda: Link(target)


def node_root(k: Kernel) -> Dir:
    """/sys/devices/system/node: ``nodeN`` per registered node, then the masks."""
    return indexed_dir(
        "node",
        lambda: sorted(k.nodes.registered_nodes),
        lambda nid: node_dir(k, nid) if nid in k.nodes.registered_nodes else None,
        group_entries(k, None, node_state_attrs),
    )
