"""A scenario's machine as QEMU runs it: the bench kernel its profile names and the
guest's configuration (:class:`memhp.bench.vm.VMConfig`), checked against what QEMU's
pc machine can give (node ids, CPU numbering, distances, the hotplug window)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memhp.bench.actions import ScenarioError
from memhp.bench.initramfs import BENCH_KERNELS, DEFAULT_KERNEL
from memhp.bench.vm import NodeConfig, VMConfig
from memhp.kernel.machine import MachineSpec
from memhp.kernel.machine_qemu_pc import qemu_device_memory

if TYPE_CHECKING:
    from memhp.bench.scenario import Cmdline


def kernel_of(spec: MachineSpec) -> str:
    """The bench kernel whose profile the machine names (the default kernel if none)."""
    for version, prof in BENCH_KERNELS.items():
        if prof == spec.profile.name:
            return version
    return DEFAULT_KERNEL


def vm_config_for(
    spec: MachineSpec, cmdline: Cmdline, host_python: bool = False, kernel: str | None = None
) -> VMConfig:
    """Map a machine onto QEMU: per node its CPUs and boot memory, slots, maxmem.

    The machine's e820 map and hotplug windows must be what SeaBIOS and QEMU's SRAT
    give such a guest (see machines/qemu-linux-6.1.toml); they are not passed to QEMU.
    """
    ids = [n.id for n in spec.nodes]
    if ids != list(range(len(ids))):
        raise ScenarioError(f"machine {spec.name}: QEMU needs node ids 0..N-1, got {ids}")
    first = 0
    for n in spec.nodes:  # -numa node,cpus=: CPUs numbered in node order
        want_cpus = tuple(range(first, first + len(n.cpus)))
        if n.cpus != want_cpus:
            raise ScenarioError(
                f"machine {spec.name}: node {n.id}'s cpus are {list(n.cpus)}, but QEMU numbers "
                f"CPUs in node order: {list(want_cpus)}"
            )
        first += len(n.cpus)
    default = all(
        d == (10 if i == j else 20)
        for i, n in enumerate(spec.nodes)
        for j, d in enumerate(n.distance)
    )
    for i, n in enumerate(spec.nodes):
        if n.distance[i] != 10 or not all(10 < d < 255 for j, d in enumerate(n.distance) if j != i):
            raise ScenarioError(
                f"machine {spec.name}: node {n.id}'s distances {list(n.distance)}: the bench "
                "needs 10 for the node itself (QEMU) and 11-254 to the others (a SLIT Linux takes)"
            )
    ram = sum(e - s for n in spec.nodes for s, e in n.memory)
    window = qemu_device_memory(ram, spec.slots, spec.maxmem)
    for n in spec.nodes:
        want = [window] if window is not None and n is spec.nodes[-1] else []
        if list(n.hotplug) != want:
            said = ", ".join(f"[{s:#x}, {e:#x})" for s, e in n.hotplug) or "none"
            raise ScenarioError(
                f"machine {spec.name}: node {n.id}'s hotplug windows are {said}, but QEMU's "
                "SRAT marks only its device memory region hotpluggable, on the last node"
                + (f": [{window[0]:#x}, {window[1]:#x}) on node {ids[-1]}" if window else "")
            )
    nodes = tuple(
        NodeConfig(
            cpus=len(n.cpus),
            mem=sum(e - s for s, e in n.memory),
            distance=() if default else n.distance,
        )
        for n in spec.nodes
    )
    return VMConfig(
        nodes=nodes,
        slots=spec.slots,
        maxmem=spec.maxmem,
        memhp_default_state=(
            None if cmdline.memhp_default_state == "default" else cmdline.memhp_default_state
        ),
        movable_node=cmdline.movable_node,
        memmap_on_memory=cmdline.memmap_on_memory,
        cmdline_extra=tuple(cmdline.extra_words()),
        host_python=host_python,
        kernel=kernel or kernel_of(spec),
        virtio_mem=spec.virtio_mem,
    )
