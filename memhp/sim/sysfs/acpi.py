"""/sys/devices/LNXSYSTM:00/... and /sys/bus/acpi: the ACPI memory devices.

drivers/acpi/device_sysfs.c (``acpi_attrs``: hid, modalias, path, status, uid,
eject when the object has _EJ0) and drivers/acpi/glue.c (``physical_node*``).
"""

from __future__ import annotations

from memhp.abi.acpi import ACPI_MEMORY_PARENT
from memhp.kernel.drivers.acpi.acpi_memhotplug import AcpiDevice
from memhp.kernel.kernel import Kernel
from memhp.sim.sysfs.kernfs import (
    ATTR_RO,
    ATTR_WO,
    LINK,
    AttrGroup,
    DeviceAttr,
    Dir,
    Entry,
    Link,
    Node,
    entries_dir,
    group_entries,
    static_dir,
    uevent_store,
)


def modalias_show(_k: Kernel, dev: AcpiDevice) -> str:
    """__acpi_device_modalias(): empty until the device was found present
    (flags.initialized), and again after acpi_bus_trim()."""
    return "acpi:PNP0C80:\n" if dev.present else ""


#: acpi_attrs[] of a PNP0C80 device (eject: only objects with _EJ0).
acpi_device_attrs: AttrGroup[AcpiDevice] = {
    "hid": ATTR_RO(lambda k, dev: "PNP0C80\n"),
    "modalias": ATTR_RO(modalias_show),
    "path": ATTR_RO(lambda k, dev: dev.path + "\n"),
    "status": ATTR_RO(lambda k, dev: f"{k.acpi.sta(dev)}\n"),
    "uevent": DeviceAttr(
        0o644,
        lambda k, dev: "MODALIAS=" + ("acpi:PNP0C80:" if dev.present else "") + "\n",
        uevent_store,
    ),
    "uid": ATTR_RO(lambda k, dev: f"0x{dev.slot:02X}\n"),
    "subsystem": LINK(lambda k, dev: "../../../../../bus/acpi"),
    "eject": ATTR_WO(lambda k, dev, b: k.acpi.eject_store(dev, b), lambda k, dev: dev.ejectable),
}


def acpi_dev_dir(k: Kernel, dev: AcpiDevice) -> Dir:
    e = group_entries(k, dev, acpi_device_attrs)
    for i, bid in enumerate(dev.physical_nodes):  # acpi_bind_one()
        name = "physical_node" if i == 0 else f"physical_node{i}"
        e[name] = _link(f"../../../../system/memory/memory{bid}")
    return entries_dir(e)


def _link(target: str) -> Entry:
    return lambda: Link(target)


def acpi_tree(k: Kernel) -> Dir:
    """The ACPI root device directory: the memory devices under their container."""
    parts = ACPI_MEMORY_PARENT.split("/")[1:]  # LNXSYBUS:00, PNP0A06:04

    def container() -> Dir:
        devs = k.acpi.devices

        def child(name: str) -> Node | None:
            d = k.acpi.device(name)
            return acpi_dev_dir(k, d) if d is not None else None

        return Dir(lambda: [d.name for d in devs], child)

    return static_dir({parts[0]: lambda: static_dir({parts[1]: container})})


def acpi_bus_devices(k: Kernel) -> Dir:
    """/sys/bus/acpi/devices: a link per ACPI device."""
    devs = k.acpi.devices

    def child(name: str) -> Node | None:
        d = k.acpi.device(name)
        return Link(f"../../../devices/{ACPI_MEMORY_PARENT}/{name}") if d else None

    return Dir(lambda: [d.name for d in devs], child)
