"""The SRAT and SLIT: how firmware's proximity domains become node ids
(drivers/acpi/numa/srat.c, arch/x86/mm/srat.c).

A machine description's ``[[node]]`` tables are the firmware's proximity domains
(their ``id`` is the PXM): CPUs (SRAT processor affinity), boot memory and hotplug
windows (memory affinity) and the SLIT row (``distance``).  acpi_numa_init() walks
the SRAT in table order, processor entries first (acpi_table_parse_entries_array()),
then memory entries (acpi_table_parse_srat(ACPI_SRAT_TYPE_MEMORY_AFFINITY)), and
acpi_map_pxm_to_node() gives each proximity domain met for the first time the
lowest node id not yet used (first_unset_node(nodes_found_map)).  So:

* a domain with no entry at all (no CPU, no memory, no hotplug window) is no node:
  QEMU writes memory affinity only for nodes with boot memory plus one entry for
  its whole device memory region on the *last* node (hw/i386/acpi-build.c
  build_srat()), so a CPU-less, memory-less node that is not the last gets none;
* node ids are dense and in order of first appearance (domains 0 and 2 become
  nodes 0 and 1);
* pxm_to_node() of a domain without an entry is NUMA_NO_NODE: a DIMM whose _PXM
  names one is placed by memory_add_physaddr_to_nid() (acpi_memory_enable_device(),
  virtio_mem_init()), see :mod:`memhp.kernel.arch.x86.mm.numa`;
* acpi_numa_slit_init() sets the distances of mapped domains only.

The table order modelled is QEMU's: one processor entry per CPU in CPU order, then
each domain's boot memory in domain order, then the hotplug windows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from memhp.kernel.machine import MachineSpec, NodeSpec

#: NUMA_NO_NODE (include/linux/numa.h).
NUMA_NO_NODE = -1


@dataclass(frozen=True)
class Srat:
    """What acpi_numa_init() left: pxm_to_node_map[] and the memory affinity
    entries as numa_add_memblk() received them, (start, end, node) in table order."""

    pxm_to_node_map: dict[int, int]
    memblks: tuple[tuple[int, int, int], ...]

    def pxm_to_node(self, pxm: int) -> int:
        """pxm_to_node(): the node of a proximity domain, NUMA_NO_NODE if it has no
        SRAT entry."""
        return self.pxm_to_node_map.get(pxm, NUMA_NO_NODE)

    @property
    def identity(self) -> bool:
        return all(p == n for p, n in self.pxm_to_node_map.items())


def acpi_numa_init(fw: MachineSpec) -> tuple[Srat, MachineSpec]:
    """acpi_numa_init() + acpi_numa_slit_init() of the firmware's description:
    the :class:`Srat` and the machine as the kernel numbers its nodes (domains
    without an entry left out, ids renumbered, SLIT rows of mapped domains)."""
    pxm_map: dict[int, int] = {}

    def acpi_map_pxm_to_node(pxm: int) -> int:
        if pxm not in pxm_map:
            used = set(pxm_map.values())
            pxm_map[pxm] = next(n for n in range(len(used) + 1) if n not in used)
        return pxm_map[pxm]

    cpu_node = {c: n.id for n in fw.nodes for c in n.cpus}
    for cpu in sorted(cpu_node):  # acpi_parse_processor_affinity()/x2apic
        acpi_map_pxm_to_node(cpu_node[cpu])
    memblks: list[tuple[int, int, int]] = []
    for kind in ("memory", "hotplug"):  # acpi_numa_memory_affinity_init()
        for n in fw.nodes:
            for s, e in getattr(n, kind):
                memblks.append((s, e, acpi_map_pxm_to_node(n.id)))
    srat = Srat(pxm_map, tuple(memblks))
    if srat.identity and len(pxm_map) == len(fw.nodes):
        return srat, fw
    pos = {n.id: i for i, n in enumerate(fw.nodes)}
    by_node = sorted((nid, pxm) for pxm, nid in pxm_map.items())
    nodes: list[NodeSpec] = []
    for nid, pxm in by_node:
        n = fw.nodes[pos[pxm]]
        row = tuple(n.distance[pos[p]] for _, p in by_node)  # acpi_numa_slit_init()
        nodes.append(NodeSpec(nid, n.cpus, row, n.memory, n.hotplug))
    return srat, replace(fw, nodes=tuple(nodes))
