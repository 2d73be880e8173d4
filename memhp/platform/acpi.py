"""The virtual platform's ACPI memory devices: what the firmware (AML) provides.

Each hotplug slot is a PNP0C80 object under the memory hotplug container
(QEMU's ``\\_SB.MHPC.MPxx``): ``_STA`` (present or not), ``_CRS`` (its address
ranges), ``_PXM`` (its proximity domain = NUMA node), ``_EJ0`` (eject) and
``_OST`` (the OS reports status).  The platform inserts and ejects DIMMs, then
notifies the kernel (Device Check / Eject Request), exactly as QEMU's ACPI
memory hotplug does.  Pure model: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from memhp.abi.acpi import (
    ACPI_NOTIFY_DEVICE_CHECK,
    ACPI_NOTIFY_EJECT_REQUEST,
    ACPI_STA_ALL,
)
from memhp.kernel.firmware import NotifyHandler
from memhp.kernel.machine import MachineSpec


@dataclass
class Dimm:
    """A pc-dimm plugged in a slot (QEMU's device id and memdev)."""

    id: str
    memdev: str
    addr: int
    size: int
    node: int
    slot: int
    hotplugged: bool = True


@dataclass
class MemorySlot:
    """One PNP0C80 object of the namespace (an ACPI memory device slot)."""

    index: int
    dimm: Dimm | None = None
    #: _EJ0 fails with this ACPI status when set (fault injection).
    ej0_fail: bool = False
    #: The last _OST the OS evaluated on the slot: its source event and status
    #: (QEMU's MemStatus ost_event/ost_status: kept across plugs and ejects).
    ost_event: int = 0
    ost_status: int = 0

    @property
    def path(self) -> str:
        return f"\\_SB_.MHPC.MP{self.index:02X}"

    def _STA(self) -> int:
        return ACPI_STA_ALL if self.dimm is not None else 0

    def _CRS(self) -> list[tuple[int, int]]:
        return [(self.dimm.addr, self.dimm.size)] if self.dimm else []

    def _PXM(self) -> int:
        return self.dimm.node if self.dimm else 0


@dataclass(frozen=True)
class PlatformEvent:
    """What the platform reports to its management side (QMP events)."""

    event: str  # "ACPI_DEVICE_OST" or "DEVICE_DELETED"
    data: dict[str, object]


@dataclass
class AcpiPlatform:
    """The machine's memory hotplug hardware: slots, the address window, events."""

    nr_slots: int
    window_start: int
    window_end: int
    slots: list[MemorySlot] = field(default_factory=list)
    events: list[PlatformEvent] = field(default_factory=list)
    notify: NotifyHandler | None = None
    #: Told of each DIMM the OS ejected (QEMU's unplug: the device is unparented).
    on_eject: Callable[[Dimm], None] | None = None

    @classmethod
    def for_machine(cls, spec: MachineSpec) -> AcpiPlatform:
        """The platform of a machine file: its slots and the SRAT hotplug window."""
        windows = [w for n in spec.nodes for w in n.hotplug]
        lo = min((s for s, _ in windows), default=0)
        hi = max((e for _, e in windows), default=0)
        return cls(spec.slots, lo, hi)

    def __post_init__(self) -> None:
        if not self.slots:
            self.slots = [MemorySlot(i) for i in range(self.nr_slots)]

    # ---------------------------------------------------------- OS -> firmware
    # (memhp.kernel.firmware.AcpiMemoryNamespace: what the kernel may evaluate)
    def object_count(self) -> int:
        return len(self.slots)

    def object_path(self, index: int) -> str:
        return self.slots[index].path

    def evaluate_sta(self, index: int) -> int:
        return self.slots[index]._STA()

    def evaluate_crs(self, index: int) -> list[tuple[int, int]]:
        return self.slots[index]._CRS()

    def evaluate_pxm(self, index: int) -> int:
        return self.slots[index]._PXM()

    def install_notify_handler(self, handler: NotifyHandler | None) -> None:
        self.notify = handler

    def evaluate_ost(self, slot: int, source: int, status: int) -> None:
        """_OST: the OS reports the outcome of a notification (QEMU ACPI_DEVICE_OST)."""
        s = self.slots[slot]
        s.ost_event, s.ost_status = source, status
        self.events.append(PlatformEvent("ACPI_DEVICE_OST", {"info": self.ost_info(slot)}))

    def ost_info(self, slot: int) -> dict[str, object]:
        """acpi_memory_device_status(): the slot's ACPIOSTInfo (its DIMM's id if any)."""
        s = self.slots[slot]
        info: dict[str, object] = {}
        if s.dimm is not None:
            info["device"] = s.dimm.id
        info.update(
            {"source": s.ost_event, "status": s.ost_status, "slot": str(slot), "slot-type": "DIMM"}
        )
        return info

    def evaluate_ej0(self, slot: int) -> bool:
        """_EJ0: the OS ejects the device; the DIMM leaves the slot (DEVICE_DELETED)."""
        s = self.slots[slot]
        if s.ej0_fail or s.dimm is None:
            return False
        d = s.dimm
        s.dimm = None
        if self.on_eject is not None:
            self.on_eject(d)
        self.events.append(
            PlatformEvent("DEVICE_DELETED", {"device": d.id, "path": f"/machine/peripheral/{d.id}"})
        )
        return True

    # ---------------------------------------------------------- management side
    def free_slot(self) -> int | None:
        for s in self.slots:
            if s.dimm is None:
                return s.index
        return None

    def find_addr(
        self, size: int, align: int, others: list[tuple[int, int]] | None = None
    ) -> int | None:
        """First address in the window where ``size`` fits (QEMU memory_device_get_free_addr),
        among the DIMMs and ``others`` (other memory devices' [start, end))."""
        used = sorted(
            [(s.dimm.addr, s.dimm.addr + s.dimm.size) for s in self.slots if s.dimm]
            + (others or [])
        )
        addr = -(-self.window_start // align) * align
        for us, ue in used:
            if addr + size <= us:
                break
            addr = max(addr, -(-ue // align) * align)
        if addr + size > self.window_end:
            return None
        return addr

    def plug(self, dimm: Dimm) -> None:
        """Put a DIMM in its slot and send Device Check (QEMU acpi_memory_plug_cb)."""
        self.slots[dimm.slot].dimm = dimm
        if self.notify is not None:
            self.notify(dimm.slot, ACPI_NOTIFY_DEVICE_CHECK)

    def request_eject(self, slot: int) -> None:
        """device_del: send Eject Request; the OS decides (QEMU acpi_memory_unplug_request_cb)."""
        if self.notify is not None:
            self.notify(slot, ACPI_NOTIFY_EJECT_REQUEST)

    def slot_of(self, dimm_id: str) -> MemorySlot | None:
        for s in self.slots:
            if s.dimm is not None and s.dimm.id == dimm_id:
                return s
        return None
