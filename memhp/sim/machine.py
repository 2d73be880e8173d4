"""A simulated machine: the kernel, its platform and its sysfs, behind one object.

This is what tests, the demo, the FUSE daemon and the QMP server drive.  The
platform methods mirror QEMU's pc-dimm hotplug (object-add + device_add,
device_del); workloads fill memory with pages of chosen kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memhp.abi.layout import PAGE_SHIFT, PAGE_SIZE, pfn_to_section_nr
from memhp.kernel.firmware import Firmware
from memhp.kernel.kernel import Kernel
from memhp.kernel.machine import MachineError, MachineSpec
from memhp.kernel.mm.mempolicy import mpol_parse_str_preferred
from memhp.kernel.mm.mmzone import ZONE_NAMES
from memhp.kernel.mm.page_alloc import Allocation, AllocError, PageState
from memhp.platform.acpi import AcpiPlatform, Dimm
from memhp.platform.qemu_pc import QemuError, QemuPcMachine
from memhp.platform.virtio_mem import VirtioMemPci, VirtioPciBus, virtio_mem_device_add
from memhp.sim.sysfs.view import KernelSysfs

#: A platform request that QEMU refuses (QEMU's message; ``.cls`` its QMP error class).
PlatformError = QemuError


@dataclass(frozen=True)
class WorkloadMix:
    """Fractions of a workload's pages per kind (the rest of 1.0 is movable)."""

    unmovable: float = 0.0
    pinned: float = 0.0

    def split(self, nr_pages: int) -> dict[PageState, int]:
        if (
            not (0 <= self.unmovable <= 1 and 0 <= self.pinned <= 1)
            or self.unmovable + self.pinned > 1
        ):
            raise ValueError("workload fractions must be in [0, 1] and sum to at most 1")
        u = int(nr_pages * self.unmovable)
        p = int(nr_pages * self.pinned)
        return {PageState.UNMOVABLE: u, PageState.PINNED: p, PageState.MOVABLE: nr_pages - u - p}


class SimMachine:
    """A booted simulated machine."""

    def __init__(self, spec: MachineSpec) -> None:
        self.spec = spec
        self.platform = AcpiPlatform.for_machine(spec)
        #: QEMU's pc machine: memory backends and the pc-dimm rules, over the platform.
        self.qemu = QemuPcMachine.for_machine(spec, self.platform)
        #: tmpfs files written by tmpfs_write(): their page-cache pages.
        self.files: dict[str, list[Allocation]] = {}
        #: The nodes whose tmpfs (mpol=prefer:node) is mounted: the first
        #: tmpfs_write() for a node mounts it.
        self.tmpfs_mounts: set[int] = set()
        #: The virtio-mem-pci devices (``[[virtio_mem]]``), realized before the guest boots.
        self.virtio = VirtioPciBus()
        self.qemu.virtio_bus = self.virtio
        for i, v in enumerate(spec.virtio_mem):
            try:
                self.qemu.object_add("memory-backend-ram", v.memdev, {"size": v.size})
                virtio_mem_device_add(
                    self.qemu,
                    self.virtio,
                    v.id,
                    v.memdev,
                    v.node,
                    v.requested_size,
                    v.block_size,
                    v.memaddr,
                    hotplugged=False,
                )
            except QemuError as e:
                raise MachineError(f"virtio_mem[{i}]", e.desc) from None
        self.kernel = Kernel(spec, Firmware(acpi_memory=self.platform, virtio=self.virtio))
        self.sysfs = KernelSysfs(self.kernel)
        self.lock = self.sysfs.lock

    def __getstate__(self) -> dict[str, object]:
        """A copy of the machine (pickle; e.g. a study's booted template) holds the
        platform and the kernel's state; the copy gets a sysfs view of its own."""
        return {k: v for k, v in self.__dict__.items() if k not in ("sysfs", "lock")}

    def __setstate__(self, state: dict[str, object]) -> None:
        for k, v in state.items():  # (one by one: see memhp.sim.snapshot)
            setattr(self, k, v)
        self.sysfs = KernelSysfs(self.kernel)
        self.lock = self.sysfs.lock

    # ------------------------------------------------------------ platform
    def device_add(
        self,
        size: int,
        node: int,
        id: str | None = None,
        addr: int | None = None,
        slot: int | None = None,
        memdev: str | None = None,
    ) -> Dimm:
        """Plug a pc-dimm (QEMU object-add of a RAM backend + device_add driver=pc-dimm).

        QEMU's rules decide (:mod:`memhp.platform.qemu_pc`); :class:`PlatformError`
        carries QEMU's message.  The guest kernel is notified and decides what it uses.
        """
        try:
            with self.lock:
                return self.qemu.plug_dimm(size, node, id, addr, slot, memdev)
        finally:
            self.sysfs.notify_changed()

    def virtio_mem_add(
        self,
        id: str,
        size: int,
        node: int = 0,
        requested_size: int = 0,
        block_size: int | None = None,
    ) -> VirtioMemPci:
        """object-add memory-backend-ram,id=mem-ID + device_add virtio-mem-pci (hotplug)."""
        try:
            with self.lock:
                memdev = f"mem-{id}"
                self.qemu.object_add("memory-backend-ram", memdev, {"size": size})
                try:
                    return virtio_mem_device_add(
                        self.qemu, self.virtio, id, memdev, node, requested_size, block_size
                    )
                except QemuError:
                    self.qemu.remove_backend(memdev)
                    raise
        finally:
            self.sysfs.notify_changed()

    def virtio_mem_resize(self, id: str, requested_size: int) -> None:
        """qom-set ID requested-size SIZE: the guest driver works on it at once."""
        try:
            with self.lock:
                dev = self.virtio.find(id)
                if dev is None:
                    raise QemuError(f"Device '{id}' not found", "DeviceNotFound")
                dev.set_requested_size(requested_size)
        finally:
            self.sysfs.notify_changed()

    def advance(self, seconds: float) -> None:
        """Let simulated time pass: the kernel's timers (virtio_mem retries) fire and
        its run-time allocations follow the clock (Kernel.advance)."""
        with self.lock:
            self.kernel.advance(seconds)
        self.sysfs.notify_changed()

    def device_del(self, id: str) -> None:
        """Ask the OS to eject a DIMM (QEMU device_del): the OS may refuse."""
        try:
            with self.lock:
                self.qemu.device_del(id)
        finally:
            self.sysfs.notify_changed()

    # ------------------------------------------------------------ workloads
    def fill(
        self,
        nr_pages: int,
        *,
        node: int | None = None,
        zone: str | None = None,
        start: int | None = None,
        end: int | None = None,
        mix: WorkloadMix | None = None,
        seed: int = 0,
        owner: str = "workload",
    ) -> list[Allocation]:
        """Allocate ``nr_pages`` pages of a workload, all or nothing.

        With ``node``, by the allocator's rules (zonelist of that node, falling back
        to other nodes), optionally only in the zone named ``zone`` ("DMA32",
        "Normal", "Movable"); with a physical range [start, end), spread over the
        free pages of the range's online sections, deterministically from ``seed``.
        """
        mix = mix or WorkloadMix()
        parts = mix.split(nr_pages)
        with self.lock:
            k = self.kernel
            out: list[Allocation] = []
            try:
                if start is not None and end is not None:
                    first = pfn_to_section_nr(start >> PAGE_SHIFT)
                    last = pfn_to_section_nr((end - 1) >> PAGE_SHIFT)
                    secs = [s for s in range(first, last + 1) if k.sparse.online[s]]
                    rng = np.random.default_rng(seed)
                    order = list(rng.permutation(len(secs))) if secs else []
                    ordered = [secs[i] for i in order]
                    for st, n in parts.items():
                        if n:
                            nid = int(k.pa.nid[ordered[0]]) if ordered else 0
                            out.append(
                                k.pa.alloc_in_sections(
                                    ordered, n, st, f"{owner} ({st.name.lower()})", "workload", nid
                                )
                            )
                else:
                    nid = node if node is not None else 0
                    if nid not in k.pgdats:
                        raise AllocError(f"no node {nid}")
                    zt = None
                    if zone is not None:
                        by_name = {v: z for z, v in ZONE_NAMES.items()}
                        if zone not in by_name:
                            known = ", ".join(by_name)
                            raise ValueError(f"unknown zone {zone!r} (known: {known})")
                        zt = by_name[zone]
                    for st, n in parts.items():
                        if n:
                            owner_st = f"{owner} ({st.name.lower()})"
                            out.extend(k.pa.alloc(n, st, owner_st, "workload", nid, zone=zt))
            except AllocError:
                for a in out:
                    k.pa.free(a)
                raise
            k.log(
                "workload",
                f"{owner}: {nr_pages} pages ("
                + ", ".join(f"{s.name.lower()} {n}" for s, n in parts.items() if n)
                + ")",
            )
            return out

    def tmpfs_write(self, name: str, size: int, node: int) -> list[Allocation]:
        """A task on ``node`` writes a new ``size``-byte file ``name`` to a tmpfs
        (mpol=prefer:node): the kernel's objects for the file (k.kalloc), then its
        page-cache pages, movable, by the allocator's rules.  The node's tmpfs is
        mounted by its first file: the mount fails (OSError EINVAL) while the node
        has no memory (mpol_parse_str_preferred()).  Raises AllocError (nothing
        allocated) or ValueError (a file of that name exists, no node)."""
        nr = size // PAGE_SIZE
        with self.lock:
            k = self.kernel
            if node not in k.pgdats:
                raise ValueError(f"no node {node}")
            if node not in self.tmpfs_mounts:
                err = mpol_parse_str_preferred(k, [node])
                if err:
                    raise OSError(-err, f"mount tmpfs mpol=prefer:{node}")
                self.tmpfs_mounts.add(node)
            key = f"tmpfs:{name}"
            if key in k.kalloc.objects or key in self.files:
                raise ValueError(f"file {name} exists")
            # The writer (dd) runs with the default, local policy: the file's kernel
            # objects come from its CPU's node (slab pages through alloc_pages() and
            # the task's policy); the mount's mpol governs only the file's own pages
            # (shmem_alloc_folio()).  A node without CPUs runs no task: the nearest
            # node with CPUs writes.
            cpus = k.nodes.node_states["N_CPU"]
            writer = next((n for n in k.pa.node_order.get(node, [node]) if n in cpus), node)
            k.kalloc.shmem_file(key, nr, writer)
            try:
                data = k.pa.alloc(nr, PageState.MOVABLE, f"tmpfs file {name}", "shmem", node)
            except AllocError:
                k.kalloc.release(key)
                raise
            self.files[key] = data
            k.log("workload", f"tmpfs file {name}: {nr} pages on node {node}")
            return data

    def tmpfs_remove(self, name: str) -> None:
        """rm of a tmpfs file: its pages and its kernel objects are freed (to the head)."""
        with self.lock:
            key = f"tmpfs:{name}"
            if key not in self.files:
                raise ValueError(f"no file {name}")
            self.free(self.files.pop(key))
            self.kernel.kalloc.release(key)

    def free(self, allocs: list[Allocation]) -> None:
        with self.lock:
            for a in allocs:
                if a.id in self.kernel.pa.allocs:
                    self.kernel.pa.free(a)


__all__ = ["PlatformError", "SimMachine", "WorkloadMix"]
