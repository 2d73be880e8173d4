"""A simulated machine: the kernel, its platform and its sysfs, behind one object.

This is what tests, the demo, the FUSE daemon and the QMP server drive.  The
platform methods mirror QEMU's pc-dimm hotplug (object-add + device_add,
device_del); workloads fill memory with pages of chosen kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memhp.abi.layout import PAGE_SHIFT, pfn_to_section_nr
from memhp.kernel.firmware import Firmware
from memhp.kernel.kernel import Kernel
from memhp.kernel.machine import MachineSpec
from memhp.kernel.mm.mmzone import ZONE_NAMES
from memhp.kernel.mm.page_alloc import Allocation, AllocError, PageState
from memhp.platform.acpi import AcpiPlatform, Dimm
from memhp.sim.sysfs.view import KernelSysfs


class PlatformError(Exception):
    """A platform request that QEMU would refuse (the message is QEMU-like)."""


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
        self.kernel = Kernel(spec, Firmware(acpi_memory=self.platform))
        self.sysfs = KernelSysfs(self.kernel)
        self.lock = self.sysfs.lock
        self._dimm_seq = 0

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
        """Plug a pc-dimm (QEMU device_add driver=pc-dimm) and notify the OS."""
        try:
            return self._device_add(size, node, id, addr, slot, memdev)
        finally:
            self.sysfs.notify_changed()

    def _device_add(
        self,
        size: int,
        node: int,
        id: str | None = None,
        addr: int | None = None,
        slot: int | None = None,
        memdev: str | None = None,
    ) -> Dimm:
        """Plug a pc-dimm (QEMU device_add driver=pc-dimm) and notify the OS."""
        with self.lock:
            p = self.platform
            if size <= 0 or size % self.spec.block_size:
                raise PlatformError(
                    f"memory size {size:#x} must be a multiple of the block size "
                    f"{self.spec.block_size:#x}"
                )
            if node not in {n.id for n in self.spec.nodes}:
                raise PlatformError(
                    f"'DIMM property node has value {node}' which exceeds the number of numa "
                    f"nodes: {len(self.spec.nodes)}"
                )
            if slot is None:
                slot = p.free_slot()
                if slot is None:
                    raise PlatformError("no free slots available")
            elif not 0 <= slot < len(p.slots):
                raise PlatformError(
                    f"invalid slot number {slot}, valid range is [0-{len(p.slots) - 1}]"
                )
            elif p.slots[slot].dimm is not None:
                raise PlatformError(f"slot {slot} is busy")
            used = sum(s.dimm.size for s in p.slots if s.dimm)
            boot = sum(e - s for s, e, _ in self.spec.boot_ram)
            if used + size + boot > self.spec.maxmem:
                raise PlatformError(
                    f"not enough space, currently {used + boot:#x} in use of total space "
                    f"for memory devices {self.spec.maxmem:#x}"
                )
            if addr is None:
                addr = p.find_addr(size, 1 << 30 if size % (1 << 30) == 0 else self.spec.block_size)
                if addr is None:
                    raise PlatformError(
                        "could not find position in guest address space for memory device"
                    )
            else:
                if (
                    addr % self.spec.block_size
                    or addr < p.window_start
                    or addr + size > p.window_end
                ):
                    raise PlatformError(
                        f"address {addr:#x} is outside the hotplug window or misaligned"
                    )
                for s in p.slots:
                    if s.dimm and addr < s.dimm.addr + s.dimm.size and s.dimm.addr < addr + size:
                        raise PlatformError(
                            f"address range conflicts with memory device id='{s.dimm.id}'"
                        )
            if id is None:
                self._dimm_seq += 1
                id = f"dimm{self._dimm_seq}"
            elif p.slot_of(id) is not None:
                raise PlatformError(f"Duplicate ID '{id}' for device")
            d = Dimm(
                id=id, memdev=memdev or f"mem-{id}", addr=addr, size=size, node=node, slot=slot
            )
            p.plug(d)
            return d

    def device_del(self, id: str) -> None:
        """Ask the OS to eject a DIMM (QEMU device_del): the OS may refuse."""
        try:
            self._device_del(id)
        finally:
            self.sysfs.notify_changed()

    def _device_del(self, id: str) -> None:
        with self.lock:
            s = self.platform.slot_of(id)
            if s is None:
                raise PlatformError(f"Device '{id}' not found")
            self.platform.request_eject(s.index)

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

    def free(self, allocs: list[Allocation]) -> None:
        with self.lock:
            for a in allocs:
                if a.id in self.kernel.pa.allocs:
                    self.kernel.pa.free(a)


__all__ = ["PlatformError", "SimMachine", "WorkloadMix"]
