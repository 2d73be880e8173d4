"""ACPI facts shared by the firmware (platform) and the OS (kernel, tool).

Notify values and _OST codes are from the ACPI specification as the kernel
spells them (include/acpi/actypes.h, include/acpi/acpi_bus.h); the sysfs parent
of the memory devices is what QEMU's memory hotplug container enumerates as
under Linux.
"""

from __future__ import annotations

#: ACPI notify values (include/acpi/actypes.h).
ACPI_NOTIFY_DEVICE_CHECK = 1
ACPI_NOTIFY_EJECT_REQUEST = 3
#: _OST source event for an OSPM-initiated eject (eject_store).
ACPI_OST_EC_OSPM_EJECT = 0x103
#: _OST status codes.
ACPI_OST_SC_SUCCESS = 0
ACPI_OST_SC_NON_SPECIFIC_FAILURE = 1
ACPI_OST_SC_EJECT_NOT_SUPPORTED = 0x80
ACPI_OST_SC_DEVICE_IN_USE = 0x81
ACPI_OST_SC_DEVICE_BUSY = 0x82
ACPI_OST_SC_EJECT_IN_PROGRESS = 0x84
#: _STA: present, enabled, shown in UI, functioning.
ACPI_STA_ALL = 0x0F

#: The ACPI hardware id of a memory device.
MEMORY_DEVICE_HID = "PNP0C80"
#: The device path, under /sys/devices, of the memory devices' parent (QEMU's
#: memory hotplug container: \_SB.MHPC as PNP0A06:04 under the system bus).
ACPI_ROOT = "LNXSYSTM:00"
ACPI_MEMORY_PARENT = f"{ACPI_ROOT}/LNXSYBUS:00/PNP0A06:04"
#: The same, as a path within a sysfs root.
ACPI_MEMORY_PARENT_DIR = f"/sys/devices/{ACPI_MEMORY_PARENT}"


def memory_device_name(index: int) -> str:
    """The kernel's name of the ``index``-th PNP0C80 object (acpi_device_set_name)."""
    return f"{MEMORY_DEVICE_HID}:{index:02x}"
