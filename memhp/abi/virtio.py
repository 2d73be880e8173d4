"""virtio-mem facts shared by the device (platform), the driver (kernel) and the tool.

From the virtio specification as Linux spells it (include/uapi/linux/virtio_mem.h,
include/uapi/linux/virtio_ids.h, include/uapi/linux/virtio_config.h,
include/linux/virtio_ring.h) and the names Linux gives in sysfs and /proc/iomem
(drivers/virtio/virtio.c, drivers/virtio/virtio_mem.c).
"""

from __future__ import annotations

#: virtio device id of a memory device and the vendor id of virtio PCI devices.
VIRTIO_ID_MEM = 24
VIRTIO_PCI_VENDOR = 0x1AF4

#: Feature bits (device-specific, then transport).
VIRTIO_MEM_F_ACPI_PXM = 0
VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE = 1
VIRTIO_RING_F_INDIRECT_DESC = 28
VIRTIO_RING_F_EVENT_IDX = 29
VIRTIO_F_VERSION_1 = 32
#: Per-queue reset: QEMU 7.2's virtio-pci offers it (queue_reset=on), 6.1 keeps it
#: (vring_transport_features()).
VIRTIO_F_RING_RESET = 40

#: Device status bits after a successful probe (ACKNOWLEDGE|DRIVER|DRIVER_OK|FEATURES_OK).
VIRTIO_CONFIG_S_PROBED = 0x0F

#: Request types.
VIRTIO_MEM_REQ_PLUG = 0
VIRTIO_MEM_REQ_UNPLUG = 1
VIRTIO_MEM_REQ_UNPLUG_ALL = 2
VIRTIO_MEM_REQ_STATE = 3
#: Response types.
VIRTIO_MEM_RESP_ACK = 0
VIRTIO_MEM_RESP_NACK = 1
VIRTIO_MEM_RESP_BUSY = 2
VIRTIO_MEM_RESP_ERROR = 3
#: STATE response values.
VIRTIO_MEM_STATE_PLUGGED = 0
VIRTIO_MEM_STATE_UNPLUGGED = 1
VIRTIO_MEM_STATE_MIXED = 2

#: /proc/iomem name of memory added by virtio-mem (add_memory_driver_managed()).
VIRTIO_MEM_RESOURCE_NAME = "System RAM (virtio_mem)"
#: The driver's name on the virtio bus.
VIRTIO_MEM_DRIVER = "virtio_mem"


def virtio_dev_name(index: int) -> str:
    """``virtio<N>``: dev_set_name(&dev->dev, "virtio%u", dev->index) (register_virtio_device)."""
    return f"virtio{index}"


def virtio_modalias(device: int, vendor: int) -> str:
    """modalias_show(): ``virtio:d%08Xv%08X``."""
    return f"virtio:d{device:08X}v{vendor:08X}"


def features_string(bits: int) -> str:
    """features_show(): one '0'/'1' per feature bit, 64 of them, then a newline."""
    return "".join("1" if bits >> i & 1 else "0" for i in range(64)) + "\n"
