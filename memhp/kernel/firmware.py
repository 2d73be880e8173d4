"""The hardware as the kernel sees it: the firmware interfaces it is given.

The kernel never builds or owns hardware.  The composition root (a simulated
machine, :mod:`memhp.sim.machine`) builds the platform and hands the kernel its
firmware interfaces; the kernel evaluates them and registers its notify handler
with them, as Linux does with the ACPI namespace.  A new kind of memory device
(virtio-mem, DAX) is a new interface here, not an edit of the kernel's boot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

#: The kernel's entry point for ACPI notifications: (object index, notify value).
NotifyHandler = Callable[[int, int], None]


class AcpiMemoryNamespace(Protocol):
    """The PNP0C80 objects of the ACPI namespace and the methods the OS evaluates.

    drivers/acpi/acpi_memhotplug.c evaluates _STA, _CRS and _PXM of each memory
    device, _EJ0 to eject it and _OST to report an outcome; the firmware sends
    Device Check and Eject Request notifications to the handler the OS installed
    (acpi_install_notify_handler, acpi_hotplug_notify_cb).
    """

    def object_count(self) -> int:
        """Number of PNP0C80 objects (present or not) in the namespace."""
        ...

    def object_path(self, index: int) -> str:
        """The object's ACPI path (``\\_SB_.MHPC.MP00``)."""
        ...

    def evaluate_sta(self, index: int) -> int:
        """_STA: device status bits (0 when absent)."""
        ...

    def evaluate_crs(self, index: int) -> list[tuple[int, int]]:
        """_CRS: the device's memory ranges as (start, length)."""
        ...

    def evaluate_pxm(self, index: int) -> int:
        """_PXM: proximity domain (the NUMA node)."""
        ...

    def evaluate_ej0(self, index: int) -> bool:
        """_EJ0: eject; False when the method fails."""
        ...

    def evaluate_ost(self, index: int, source: int, status: int) -> None:
        """_OST: the OS reports the outcome of a notification."""
        ...

    def install_notify_handler(self, handler: NotifyHandler | None) -> None:
        """acpi_install_notify_handler(): where the firmware's notifications go."""
        ...


class VirtioMemConfig(NamedTuple):
    """struct virtio_mem_config: the device's config space as the driver reads it."""

    block_size: int
    node_id: int
    addr: int
    region_size: int
    usable_region_size: int
    plugged_size: int
    requested_size: int


class VirtioMemDevice(Protocol):
    """A virtio-mem device on the virtio-pci transport, as the driver sees it.

    The config space (virtio_cread_le), the negotiated features, the request
    virtqueue (virtio_mem_send_request(): one request, one response) and the
    config-change interrupt (virtio_mem_config_changed()).
    """

    pci_slot: int

    def read_config(self) -> VirtioMemConfig: ...

    def features(self) -> int:
        """The features both sides accept (virtio_finalize_features())."""
        ...

    def send_request(self, req_type: int, addr: int, nb_blocks: int) -> tuple[int, int]:
        """One request on the queue: (response type, state of a STATE request)."""
        ...

    def install_config_handler(self, handler: Callable[[], None] | None) -> None: ...


class VirtioBus(Protocol):
    """The virtio devices of the machine's PCI bus (probed at boot and on hotplug)."""

    def virtio_devices(self) -> Sequence[VirtioMemDevice]: ...

    def install_probe_handler(self, handler: Callable[[VirtioMemDevice], None] | None) -> None:
        """Where a hotplugged device goes (pciehp/acpiphp -> virtio_pci_probe)."""
        ...


@dataclass(frozen=True)
class Firmware:
    """Every firmware interface of a machine (None: the machine has no such device)."""

    acpi_memory: AcpiMemoryNamespace | None = None
    virtio: VirtioBus | None = None


#: A machine without hotplug hardware (firmware memmap and boot RAM only).
NO_FIRMWARE = Firmware()
