"""/sys/bus/virtio and the virtio devices under their PCI functions.

drivers/virtio/virtio.c: ``virtio_dev_groups`` (device, vendor, status,
modalias, features), the ``virtio<N>`` device under the virtio-pci function
(``/sys/devices/pci0000:00/0000:00:SS.0/virtio<N>``), the bus's device links
and the driver's directory with its bound devices (driver core: bus.c, dd.c).
"""

from __future__ import annotations

from memhp.abi.paths import pci_dev_dir
from memhp.abi.virtio import VIRTIO_MEM_DRIVER, VIRTIO_PCI_VENDOR, features_string, virtio_modalias
from memhp.kernel.drivers.virtio.virtio import VirtioDevice
from memhp.kernel.kernel import Kernel
from memhp.sim.sysfs.kernfs import (
    ATTR_RO,
    ATTR_RW,
    LINK,
    AttrGroup,
    Dir,
    Link,
    Node,
    group_entries,
    static_dir,
    uevent_store,
)


def _modalias(dev: VirtioDevice) -> str:
    return virtio_modalias(dev.device_id, VIRTIO_PCI_VENDOR)


#: virtio_dev_attrs[] plus the driver core's links.
virtio_dev_attrs: AttrGroup[VirtioDevice] = {
    "device": ATTR_RO(lambda k, d: f"0x{d.device_id:04x}\n"),
    "vendor": ATTR_RO(lambda k, d: f"0x{VIRTIO_PCI_VENDOR:04x}\n"),
    "status": ATTR_RO(lambda k, d: f"0x{d.status:08x}\n"),
    "modalias": ATTR_RO(lambda k, d: _modalias(d) + "\n"),
    "features": ATTR_RO(lambda k, d: features_string(d.features)),
    # dev_uevent(): DRIVER= of a bound device, then virtio_uevent()'s MODALIAS=
    "uevent": ATTR_RW(
        lambda k, d: (f"DRIVER={d.driver}\n" if d.driver else "") + f"MODALIAS={_modalias(d)}\n",
        uevent_store,
    ),
    "subsystem": LINK(lambda k, d: "../../../../bus/virtio"),
    "driver": LINK(
        lambda k, d: f"../../../../bus/virtio/drivers/{d.driver}",
        lambda k, d: d.driver is not None,
    ),
}


def _pci_name(dev: VirtioDevice) -> str:
    return pci_dev_dir(dev.pci_slot).rsplit("/", 1)[1]


def _function_dir(k: Kernel, dev: VirtioDevice) -> Dir:
    return static_dir({dev.name: lambda: static_dir(group_entries(k, dev, virtio_dev_attrs))})


def pci_root(k: Kernel) -> Dir:
    """/sys/devices/pci0000:00: the virtio-pci functions and their virtio devices."""
    devs = k.virtio.devices

    def function(name: str) -> Node | None:
        for d in devs:
            if _pci_name(d) == name:
                return _function_dir(k, d)
        return None

    return Dir(lambda: [_pci_name(d) for d in devs], function)


def _dev_target(dev: VirtioDevice, up: int) -> str:
    rel = pci_dev_dir(dev.pci_slot).removeprefix("/sys/")
    return "../" * up + f"{rel}/{dev.name}"


def virtio_bus(k: Kernel) -> Dir:
    """/sys/bus/virtio: devices (links) and drivers (virtio_mem with its devices)."""
    devs = k.virtio.devices

    def device(name: str) -> Node | None:
        d = k.virtio.device(name)
        return Link(_dev_target(d, 3)) if d is not None else None

    def bound(name: str) -> Node | None:
        d = k.virtio.device(name)
        if d is None or d.driver != VIRTIO_MEM_DRIVER:
            return None
        return Link(_dev_target(d, 4))

    def drivers() -> Dir:
        return static_dir(
            {
                VIRTIO_MEM_DRIVER: lambda: Dir(
                    lambda: [d.name for d in devs if d.driver == VIRTIO_MEM_DRIVER], bound
                )
            }
        )

    return static_dir(
        {"devices": lambda: Dir(lambda: [d.name for d in devs], device), "drivers": drivers}
    )


__all__ = ["pci_root", "virtio_bus", "virtio_dev_attrs"]
