"""QEMU 7.2's ``virtio-mem-pci`` on the ``pc`` machine: the device and its rules.

One place for what QEMU decides about a virtio-mem device, in QEMU's order and
with QEMU's messages, used by :class:`memhp.sim.machine.SimMachine` and the QMP
server alike:

- hw/i386/pc.c ``pc_virtio_md_pci_pre_plug`` -> hw/mem/memory-device.c
  ``memory_device_pre_plug``: the device needs the machine's device memory
  region (maxmem > ram), its whole memory backend counts against
  ``maxmem - ram`` (``memory_device_check_addable`` sums the region sizes of all
  memory devices), and it is placed by ``memory_device_get_free_addr`` among
  the DIMMs and other virtio-mem devices, aligned to
  ``MAX(backend alignment, block-size)`` (``virtio_mem_pci_get_min_alignment``).
  Hotplug (``device_add``) is allowed: the pc machine's PCI bus has a hotplug
  handler (ACPI PCI hotplug).  ``device_del`` is refused
  (``pc_virtio_md_pci_unplug_request``).
- hw/virtio/virtio-mem.c: the properties (``virtio_mem_set_block_size``,
  ``virtio_mem_set_requested_size``), ``virtio_mem_device_realize``'s checks,
  the default block size (``virtio_mem_default_block_size``: the host's THP
  size, 2 MiB on x86-64), the usable region (``virtio_mem_resize_usable_region``:
  requested size + 256 MiB, never shrinking while the guest may use it), the
  request queue (``virtio_mem_handle_request``: PLUG, UNPLUG, UNPLUG_ALL, STATE
  with ACK/NACK/BUSY/ERROR) and the size-change notifier that becomes the
  ``MEMORY_DEVICE_SIZE_CHANGE`` event (hw/virtio/virtio-mem-pci.c).

Pure model: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from memhp.abi.virtio import (
    VIRTIO_F_RING_RESET,
    VIRTIO_F_VERSION_1,
    VIRTIO_MEM_F_ACPI_PXM,
    VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE,
    VIRTIO_MEM_REQ_PLUG,
    VIRTIO_MEM_REQ_STATE,
    VIRTIO_MEM_REQ_UNPLUG,
    VIRTIO_MEM_REQ_UNPLUG_ALL,
    VIRTIO_MEM_RESP_ACK,
    VIRTIO_MEM_RESP_ERROR,
    VIRTIO_MEM_RESP_NACK,
    VIRTIO_MEM_STATE_MIXED,
    VIRTIO_MEM_STATE_PLUGGED,
    VIRTIO_MEM_STATE_UNPLUGGED,
    VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
)
from memhp.kernel.firmware import VirtioMemConfig, VirtioMemDevice
from memhp.platform.acpi import PlatformEvent
from memhp.platform.qemu_pc import QemuError, QemuPcMachine

MiB = 1 << 20
#: VIRTIO_MEM_MIN_BLOCK_SIZE.
VIRTIO_MEM_MIN_BLOCK_SIZE = 1 * MiB
#: virtio_mem_thp_size() on an x86-64 host (hpage_pmd_size).
HOST_THP_SIZE = 2 * MiB
#: VIRTIO_MEM_USABLE_EXTENT on x86: two 128 MiB memory blocks.
VIRTIO_MEM_USABLE_EXTENT = 2 * 128 * MiB
#: The first PCI slot free on ``pc -nodefaults`` (00.0 host bridge, 01.x PIIX3).
FIRST_FREE_PCI_SLOT = 2
#: virtio-mem-pci's qdev properties (hw/virtio/virtio-mem-pci.c, virtio-mem.c).
VIRTIO_MEM_PCI_PROPS: dict[str, str] = {
    "memdev": "str",
    "node": "uint",
    "requested-size": "size",
    "block-size": "size",
    "memaddr": "uint",
    "prealloc": "bool",
    "addr": "str",
    "bus": "str",
    "unplugged-inaccessible": "str",
}


def check_block_size(value: int) -> None:
    """virtio_mem_set_block_size(): at least 1 MiB, a power of two."""
    if value < VIRTIO_MEM_MIN_BLOCK_SIZE:
        raise QemuError(f"'block-size' property has to be at least {VIRTIO_MEM_MIN_BLOCK_SIZE:#x}")
    if value & (value - 1):
        raise QemuError("'block-size' property has to be a power of two")


@dataclass
class VirtioMemPci:
    """A realized virtio-mem-pci device (VirtIOMEM + its PCI proxy)."""

    id: str
    memdev: str
    node: int
    addr: int
    region_size: int
    block_size: int
    requested_size: int
    pci_slot: int
    nr_nodes: int
    events: list[PlatformEvent]
    hotplugged: bool = False
    #: VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE offered (the realized property).
    unplugged_inaccessible: bool = False
    #: Plugged size (``vmem->size``).
    size: int = 0
    usable_region_size: int = 0
    #: One bit per device block: plugged.
    bitmap: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))
    _config_handler: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self.bitmap = np.zeros(self.region_size // self.block_size, np.bool_)
        self.resize_usable_region(self.requested_size, can_shrink=True)

    # ------------------------------------------------------------ QEMU side
    def resize_usable_region(self, requested: int, can_shrink: bool) -> None:
        """virtio_mem_resize_usable_region()."""
        new = min(self.region_size, requested + VIRTIO_MEM_USABLE_EXTENT)
        new = -(-new // self.block_size) * self.block_size
        if not requested:
            new = 0
        if new < self.usable_region_size and not can_shrink:
            return
        self.usable_region_size = new

    def set_requested_size(self, value: int) -> None:
        """virtio_mem_set_requested_size() on a realized device (qom-set)."""
        if value % self.block_size:
            raise QemuError(
                f"'requested-size' has to be multiples of 'block-size' ({self.block_size:#x})"
            )
        if value > self.region_size:
            raise QemuError(
                f"'requested-size' cannot exceed the memory backend size({self.region_size:#x})"
            )
        if value != self.requested_size:
            self.resize_usable_region(value, can_shrink=False)
            self.requested_size = value
        # virtio_notify_config(): even when the size did not change.
        if self._config_handler is not None:
            self._config_handler()

    def memory_device_info(self) -> dict[str, object]:
        """virtio_mem_pci_fill_device_info(): VirtioMEMDeviceInfo."""
        return {
            "type": "virtio-mem",
            "data": {
                "id": self.id,
                "memaddr": self.addr,
                "requested-size": self.requested_size,
                "size": self.size,
                "max-size": self.region_size,
                "block-size": self.block_size,
                "node": self.node,
                "memdev": f"/objects/{self.memdev}",
            },
        }

    def _size_changed(self) -> None:
        """virtio_mem_pci_size_change_notify(): MEMORY_DEVICE_SIZE_CHANGE."""
        self.events.append(
            PlatformEvent(
                "MEMORY_DEVICE_SIZE_CHANGE",
                {"id": self.id, "size": self.size, "qom-path": f"/machine/peripheral/{self.id}"},
            )
        )

    # ------------------------------------------------------------ the guest's view
    def read_config(self) -> VirtioMemConfig:
        """virtio_mem_get_config()."""
        return VirtioMemConfig(
            block_size=self.block_size,
            node_id=self.node,
            addr=self.addr,
            region_size=self.region_size,
            usable_region_size=self.usable_region_size,
            plugged_size=self.size,
            requested_size=self.requested_size,
        )

    def features(self) -> int:
        """virtio_mem_get_features() & the driver's: ACPI_PXM with NUMA (ACPI built in),
        the ring features, VERSION_1 and RING_RESET (virtio-pci's queue_reset, on by
        default since QEMU 7.2); UNPLUGGED_INACCESSIBLE as realized (Linux's driver
        accepts it)."""
        bits = 1 << VIRTIO_RING_F_INDIRECT_DESC | 1 << VIRTIO_RING_F_EVENT_IDX
        bits |= 1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_F_RING_RESET
        if self.nr_nodes > 0:
            bits |= 1 << VIRTIO_MEM_F_ACPI_PXM
        if self.unplugged_inaccessible:
            bits |= 1 << VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE
        return bits

    def install_config_handler(self, handler: Callable[[], None] | None) -> None:
        self._config_handler = handler

    def _valid_range(self, gpa: int, size: int) -> bool:
        """virtio_mem_valid_range()."""
        if gpa % self.block_size or size <= 0:
            return False
        if gpa < self.addr or gpa >= self.addr + self.usable_region_size:
            return False
        return gpa + size <= self.addr + self.usable_region_size

    def send_request(self, req_type: int, addr: int, nb_blocks: int) -> tuple[int, int]:
        """virtio_mem_handle_request(): one request, its response (type, state)."""
        if req_type == VIRTIO_MEM_REQ_UNPLUG_ALL:
            if self.size:
                self.bitmap[:] = False
                self.size = 0
                self._size_changed()
            self.resize_usable_region(self.requested_size, can_shrink=True)
            return VIRTIO_MEM_RESP_ACK, 0
        size = nb_blocks * self.block_size
        if not self._valid_range(addr, size):
            return VIRTIO_MEM_RESP_ERROR, 0
        first = (addr - self.addr) // self.block_size
        bits = self.bitmap[first : first + nb_blocks]
        if req_type == VIRTIO_MEM_REQ_STATE:
            if bits.all():
                return VIRTIO_MEM_RESP_ACK, VIRTIO_MEM_STATE_PLUGGED
            if not bits.any():
                return VIRTIO_MEM_RESP_ACK, VIRTIO_MEM_STATE_UNPLUGGED
            return VIRTIO_MEM_RESP_ACK, VIRTIO_MEM_STATE_MIXED
        plug = req_type == VIRTIO_MEM_REQ_PLUG
        if req_type not in (VIRTIO_MEM_REQ_PLUG, VIRTIO_MEM_REQ_UNPLUG):
            return VIRTIO_MEM_RESP_ERROR, 0
        if plug and self.size + size > self.requested_size:
            return VIRTIO_MEM_RESP_NACK, 0
        if (plug and bits.any()) or (not plug and not bits.all()):
            return VIRTIO_MEM_RESP_ERROR, 0
        self.bitmap[first : first + nb_blocks] = plug
        self.size += size if plug else -size
        self._size_changed()
        return VIRTIO_MEM_RESP_ACK, 0


@dataclass
class VirtioPciBus:
    """The virtio devices on the machine's PCI bus (memhp.kernel.firmware.VirtioBus)."""

    devices: list[VirtioMemPci] = field(default_factory=list)
    _probe: Callable[[VirtioMemDevice], None] | None = None

    def virtio_devices(self) -> Sequence[VirtioMemDevice]:
        return list(self.devices)

    def install_probe_handler(self, handler: Callable[[VirtioMemDevice], None] | None) -> None:
        self._probe = handler

    def free_pci_slot(self) -> int:
        used = {d.pci_slot for d in self.devices}
        slot = FIRST_FREE_PCI_SLOT
        while slot in used:
            slot += 1
        return slot

    def plug(self, dev: VirtioMemPci) -> None:
        """The device appears on the bus; a running guest is told (ACPI PCI hotplug)."""
        self.devices.append(dev)
        if self._probe is not None:
            self._probe(dev)

    def find(self, id: str) -> VirtioMemPci | None:
        for d in self.devices:
            if d.id == id:
                return d
        return None

    def ranges(self) -> list[tuple[int, int]]:
        return [(d.addr, d.addr + d.region_size) for d in self.devices]


def virtio_mem_device_add(
    qemu: QemuPcMachine,
    bus: VirtioPciBus,
    id: str | None,
    memdev: str | None,
    node: int = 0,
    requested_size: int = 0,
    block_size: int | None = None,
    memaddr: int | None = None,
    pci_slot: int | None = None,
    hotplugged: bool = True,
    unplugged_inaccessible: str = "auto",
) -> VirtioMemPci:
    """qdev_device_add() of a virtio-mem-pci: properties, pre-plug, realize, plug."""
    # qdev_device_add(): the id, then the properties in the order given.
    if id is not None and (qemu.platform.slot_of(id) is not None or bus.find(id) is not None):
        raise QemuError(f"Duplicate ID '{id}' for device")
    if memdev is not None and memdev not in qemu.backends:
        raise QemuError(f"Device '{memdev}' not found", "DeviceNotFound")
    if unplugged_inaccessible not in ("on", "off", "auto"):  # (OnOffAuto)
        raise QemuError(
            f"Parameter 'unplugged-inaccessible' does not accept value '{unplugged_inaccessible}'"
        )
    if block_size is not None:
        check_block_size(block_size)
    # pc_virtio_md_pci_pre_plug() -> memory_device_pre_plug()
    if qemu.maxram_size <= qemu.ram_size:
        raise QemuError(
            "memory devices (e.g. for memory hotplug) are not enabled, please specify the "
            "maxmem option"
        )
    if memdev is None:
        raise QemuError("'memdev' property must be set")
    backend = qemu.backends[memdev]
    qemu.check_addable(backend.size)
    bs = block_size if block_size is not None else max(HOST_THP_SIZE, backend.align)
    align = max(bs, backend.align)  # get_min_alignment(): the block size
    addr = qemu.get_free_addr(memaddr or None, align, backend.size)
    # virtio_mem_device_realize()
    if qemu.backend_user(memdev) is not None:
        raise QemuError(f"'memdev' property specifies a busy memdev: {memdev}")
    if node >= max(qemu.nr_nodes, 1) or (qemu.nr_nodes <= 1 and node):
        raise QemuError(
            f"'node' property has value '{node}', which exceedsthe number of numa nodes: "
            f"{max(qemu.nr_nodes, 1)}"
        )
    if bs < backend.align and backend.qom_type != "memory-backend-ram":
        raise QemuError(
            f"'block-size' property has to be at least the page size ({backend.align:#x})"
        )
    if requested_size % bs:
        raise QemuError(f"'requested-size' property has to be multiples of 'block-size' ({bs:#x})")
    # VIRTIO_MEM_HAS_LEGACY_GUESTS (x86): auto is on unless the backend has the shared
    # zeropage (virtio_mem_has_shared_zeropage(): private anonymous RAM of the host's
    # page size -- a memory-backend-ram without share=on)
    inaccessible = unplugged_inaccessible == "on" or (
        unplugged_inaccessible == "auto" and not backend.has_shared_zeropage()
    )
    if id is None:
        qemu._dimm_seq += 1
        id = f"virtio-mem{qemu._dimm_seq}"
    dev = VirtioMemPci(
        id=id,
        memdev=memdev,
        node=node,
        addr=addr,
        region_size=backend.size,
        block_size=bs,
        requested_size=requested_size,
        pci_slot=bus.free_pci_slot() if pci_slot is None else pci_slot,
        nr_nodes=qemu.nr_nodes,
        events=qemu.platform.events,
        hotplugged=hotplugged,
        unplugged_inaccessible=inaccessible,
    )
    qemu.add_peripheral(dev.id)
    bus.plug(dev)  # pc_virtio_md_pci_plug() -> the PCI hotplug handler: the guest probes
    return dev


__all__ = [
    "HOST_THP_SIZE",
    "VIRTIO_MEM_PCI_PROPS",
    "QemuError",
    "VirtioMemPci",
    "VirtioPciBus",
    "check_block_size",
    "virtio_mem_device_add",
]
