"""The virtio bus (drivers/virtio/virtio.c, drivers/virtio/virtio_pci_common.c).

register_virtio_device() names each device ``virtio<index>`` (an ida, lowest
free index first) under its PCI function, virtio_dev_probe() negotiates
features and binds the driver whose id table matches (here only virtio_mem:
VIRTIO_ID_MEM) and sets DRIVER_OK.  The devices come from the platform's
:class:`memhp.kernel.firmware.VirtioBus` at boot and on PCI hotplug.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from memhp.abi.virtio import VIRTIO_CONFIG_S_PROBED, VIRTIO_ID_MEM, virtio_dev_name
from memhp.kernel.drivers.virtio.virtio_mem import VirtioMemDriver
from memhp.kernel.firmware import VirtioBus, VirtioMemDevice

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel


@dataclass
class VirtioDevice:
    """struct virtio_device."""

    index: int
    transport: VirtioMemDevice
    device_id: int = VIRTIO_ID_MEM
    features: int = 0
    status: int = 0
    driver: str | None = None

    @property
    def name(self) -> str:
        return virtio_dev_name(self.index)

    @property
    def pci_slot(self) -> int:
        return self.transport.pci_slot


class VirtioBusDriver:
    """virtio_bus: the registered devices and the virtio_mem driver."""

    def __init__(self, k: Kernel, bus: VirtioBus | None) -> None:
        self.k = k
        self.bus = bus
        self.devices: list[VirtioDevice] = []
        self.mem = VirtioMemDriver(k)

    def scan(self) -> None:
        """virtio_pci_probe() of each device present at boot, then hotplug notifications."""
        if self.bus is None:
            return
        for dev in self.bus.virtio_devices():
            self.register_virtio_device(dev)
        self.bus.install_probe_handler(self.register_virtio_device)

    def register_virtio_device(self, transport: VirtioMemDevice) -> None:
        """register_virtio_device() -> device_add() -> virtio_dev_probe()."""
        used = {d.index for d in self.devices}
        index = 0
        while index in used:
            index += 1
        vdev = VirtioDevice(index, transport)
        self.devices.append(vdev)
        self.k.objects.emit("virtio_device", vdev.name, True)
        # virtio_dev_probe(): features, the driver's probe, DRIVER_OK.
        vdev.features = transport.features()
        vdev.driver = "virtio_mem"
        if self.mem.probe(vdev):
            vdev.driver = None
            return
        vdev.status = VIRTIO_CONFIG_S_PROBED
        self.k.objects.emit("virtio_device", vdev.name, True)
        self.mem.start(vdev)

    def device(self, name: str) -> VirtioDevice | None:
        for d in self.devices:
            if d.name == name:
                return d
        return None
