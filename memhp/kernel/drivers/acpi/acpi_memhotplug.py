"""The kernel's ACPI side of memory hotplug.

Models drivers/acpi/scan.c (acpi_bus_scan, acpi_device_hotplug,
acpi_generic_hotplug_event, acpi_scan_try_to_offline, acpi_scan_hot_remove,
acpi_bus_trim), drivers/acpi/acpi_memhotplug.c (acpi_memory_device_add,
acpi_memory_enable_device, acpi_memory_device_remove), drivers/acpi/glue.c
(acpi_bind_one: ``physical_node*`` and ``firmware_node`` links) and
drivers/acpi/device_sysfs.c (eject_store).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from memhp.abi.acpi import (
    ACPI_MEMORY_PARENT_DIR,
    ACPI_NOTIFY_DEVICE_CHECK,
    ACPI_NOTIFY_EJECT_REQUEST,
    ACPI_OST_EC_OSPM_EJECT,
    ACPI_OST_SC_DEVICE_BUSY,
    ACPI_OST_SC_EJECT_IN_PROGRESS,
    ACPI_OST_SC_EJECT_NOT_SUPPORTED,
    ACPI_OST_SC_NON_SPECIFIC_FAILURE,
    ACPI_OST_SC_SUCCESS,
    memory_device_name,
)
from memhp.abi.layout import PAGE_SHIFT
from memhp.kernel.arch.x86.mm.numa import memory_add_physaddr_to_nid
from memhp.kernel.drivers.base.memory import (
    MemoryBlock,
    device_offline,
    device_online,
    memory_group_register_static,
    memory_group_unregister,
)
from memhp.kernel.firmware import AcpiMemoryNamespace
from memhp.kernel.mm import memory_hotplug as mh

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel


@dataclass
class MemoryInfo:
    """struct acpi_memory_info: one _CRS range of the device."""

    start_addr: int
    length: int
    enabled: bool = False


@dataclass
class AcpiDevice:
    """struct acpi_device of a PNP0C80 object, with its memory driver data."""

    slot: int
    name: str  # "PNP0C80:00"
    path: str
    #: adev->status.present as last cached by acpi_bus_get_status() (bus scans);
    #: the eject path does not refresh it, so it stays set after _EJ0.
    present: bool = False
    bound: bool = False  # the acpi_memhotplug driver is attached
    infos: list[MemoryInfo] = field(default_factory=list)
    #: physical_node_list: the memory blocks bound to this device, in bind order.
    physical_nodes: list[int] = field(default_factory=list)
    #: put_online marks of acpi_bus_offline(), per block.
    put_online: dict[int, bool] = field(default_factory=dict)
    node: int = 0
    ejectable: bool = True  # the object has _EJ0
    #: mem_device->mgid: the static memory group of the device (-1: none).
    mgid: int = -1

    @property
    def sysfs_dir(self) -> str:
        return f"{ACPI_MEMORY_PARENT_DIR}/{self.name}"


class AcpiBus:
    """The ACPI devices the kernel enumerated, and the hotplug work on them."""

    def __init__(self, k: Kernel, namespace: AcpiMemoryNamespace | None) -> None:
        self.k = k
        #: The firmware's PNP0C80 objects (None: the machine has no ACPI memory devices).
        self.namespace = namespace
        if namespace is not None:
            namespace.install_notify_handler(self.acpi_hotplug_notify)
        self.devices: list[AcpiDevice] = []

    def sta(self, dev: AcpiDevice) -> int:
        """_STA of the device's object, as acpi_bus_get_status() evaluates it."""
        return self.namespace.evaluate_sta(dev.slot) if self.namespace is not None else 0

    # ---------------------------------------------------------------- scan
    def scan(self) -> None:
        """acpi_bus_scan() at boot: one acpi_device per PNP0C80 object."""
        ns = self.namespace
        if ns is None:
            return
        for index in range(ns.object_count()):
            dev = AcpiDevice(index, memory_device_name(index), ns.object_path(index))
            self.devices.append(dev)
            if ns.evaluate_sta(index):
                dev.present = True
                self.acpi_memory_device_add(dev)

    def device(self, name: str) -> AcpiDevice | None:
        for d in self.devices:
            if d.name == name:
                return d
        return None

    # ------------------------------------------------------ acpi_memhotplug
    def acpi_memory_device_add(self, dev: AcpiDevice) -> int:
        """acpi_memory_device_add() -> acpi_memory_get_device_resources() + enable_device()."""
        assert self.namespace is not None  # only devices of a namespace exist
        dev.infos = [MemoryInfo(s, n) for s, n in self.namespace.evaluate_crs(dev.slot)]
        # acpi_get_node(): pxm_to_node() of _PXM (NUMA_NO_NODE without an SRAT entry)
        dev.node = self.k.srat.pxm_to_node(self.namespace.evaluate_pxm(dev.slot))
        dev.bound = True
        ret = self.acpi_memory_enable_device(dev)
        if ret:
            self.acpi_memory_device_free(dev)
        return ret

    def acpi_memory_device_free(self, dev: AcpiDevice) -> None:
        """acpi_memory_device_free(): unregister the memory group (fails, and is
        kept, while some of its memory is still added), drop the resources."""
        if dev.mgid >= 0 and not memory_group_unregister(self.k, dev.mgid):
            dev.mgid = -1
        dev.bound = False
        dev.infos = []

    def acpi_memory_enable_device(self, dev: AcpiDevice) -> int:
        """acpi_memory_enable_device(): add_memory() every range, bind its blocks."""
        k = self.k
        total = sum(i.length for i in dev.infos)
        if not total:
            k.log("acpi_memhotplug", f"{dev.name}: device is empty")
            return -errno.EINVAL
        nid, mgid = dev.node, False
        if nid < 0:  # the first range with a length decides for the whole device
            nid = memory_add_physaddr_to_nid(k, next(i.start_addr for i in dev.infos if i.length))
        if k.profile.online_policies:
            # One static memory group per device, on one node (MHP_NID_IS_MGID).
            ret = memory_group_register_static(k, nid, -(-total >> PAGE_SHIFT))
            if ret < 0:
                return ret
            dev.mgid = nid = ret
            mgid = True
        enabled = 0
        for info in dev.infos:
            mom = mh.mhp_supports_memmap_on_memory(k, info.length)
            ret = mh.add_memory(
                k, nid, info.start_addr, info.length, memmap_on_memory=mom, mgid=mgid
            )
            if ret and ret != -errno.EEXIST:
                k.log(
                    "acpi_memhotplug",
                    f"{dev.name}: add_memory {info.start_addr:#x}+{info.length:#x} failed ({ret})",
                )
                continue
            self.acpi_bind_memory_blocks(dev, info)
            info.enabled = True
            enabled += 1
        if not enabled:
            k.log("acpi_memhotplug", f"{dev.name}: add_memory failed")
            return -errno.EINVAL
        return 0

    def acpi_bind_memory_blocks(self, dev: AcpiDevice, info: MemoryInfo) -> None:
        """acpi_bind_one() per block: physical_node links and firmware_node."""
        self.k.objects.emit("acpi_binding", dev.name, True)
        for mem in self.k.memory.blocks_in_range(info.start_addr, info.length):
            mem.acpi_device = dev.name
            dev.physical_nodes.append(mem.id)
        self.k.log(
            "acpi_bind_memory_blocks",
            f"{dev.name}: physical_node links to {len(dev.physical_nodes)} memory blocks",
        )

    def acpi_unbind_memory_blocks(self, dev: AcpiDevice, info: MemoryInfo) -> None:
        """acpi_unbind_one() per block: the links go."""
        self.k.objects.emit("acpi_binding", dev.name, False)
        for mem in self.k.memory.blocks_in_range(info.start_addr, info.length):
            mem.acpi_device = None
            if mem.id in dev.physical_nodes:
                dev.physical_nodes.remove(mem.id)

    def acpi_memory_device_remove(self, dev: AcpiDevice) -> None:
        """acpi_memory_device_remove() -> acpi_memory_remove_memory(): __remove_memory()."""
        for info in list(dev.infos):
            if not info.enabled:
                continue
            self.acpi_unbind_memory_blocks(dev, info)
            ret = mh.try_remove_memory(self.k, info.start_addr, info.length)
            if ret:  # __remove_memory() BUG()s; the caller made sure all is offline.
                raise RuntimeError(f"__remove_memory {info.start_addr:#x}: {ret}")
        self.acpi_memory_device_free(dev)
        dev.physical_nodes = []
        self.k.objects.emit("acpi_device", dev.name, False)

    # ----------------------------------------------------------- scan.c eject
    def _blocks(self, dev: AcpiDevice) -> list[MemoryBlock]:
        return [self.k.memory.blocks[b] for b in dev.physical_nodes if b in self.k.memory.blocks]

    def acpi_bus_offline(self, dev: AcpiDevice, second_pass: bool) -> MemoryBlock | None:
        """acpi_bus_offline(): device_offline() each physical node; remember what we did."""
        errdev = None
        for mem in self._blocks(dev):
            if second_pass:
                if dev.put_online.get(mem.id):
                    continue
            else:
                dev.put_online[mem.id] = False
            ret = device_offline(self.k, mem)
            if ret >= 0:
                dev.put_online[mem.id] = ret == 0
            else:
                errdev = mem
                if second_pass:
                    break
        return errdev

    def acpi_bus_online(self, dev: AcpiDevice) -> None:
        """acpi_bus_online(): re-online what acpi_bus_offline() offlined."""
        for mem in self._blocks(dev):
            if dev.put_online.get(mem.id):
                device_online(self.k, mem)
                dev.put_online[mem.id] = False

    def acpi_scan_try_to_offline(self, dev: AcpiDevice) -> int:
        """acpi_scan_try_to_offline(): two passes, errors of the first ignored."""
        errdev = self.acpi_bus_offline(dev, second_pass=False)
        if errdev is not None:
            errdev = self.acpi_bus_offline(dev, second_pass=True)
            if errdev is not None:
                self.k.log("acpi_scan_try_to_offline", f"{errdev.name}: Offline failed.")
                self.acpi_bus_online(dev)
                return -errno.EBUSY
        return 0

    def acpi_scan_hot_remove(self, dev: AcpiDevice) -> int:
        """acpi_scan_hot_remove(): offline (6.1) or let remove_memory() do it (3.8), trim, _EJ0."""
        k = self.k
        if k.profile.remove_memory_offlines:
            # 3.8: acpi_memory_device_remove() -> remove_memory() offlines twice.
            for info in dev.infos:
                if info.enabled:
                    still = mh.offline_blocks_two_passes(
                        k, k.memory.blocks_in_range(info.start_addr, info.length)
                    )
                    if still:
                        k.log(
                            "remove_memory",
                            ", ".join(m.name for m in still) + " could not be offlined",
                        )
                        return -errno.EBUSY
        else:
            ret = self.acpi_scan_try_to_offline(dev)
            if ret:
                return ret
        self.acpi_memory_device_remove(dev)  # acpi_bus_trim()
        assert self.namespace is not None
        if not self.namespace.evaluate_ej0(dev.slot):
            k.log("acpi_scan_hot_remove", f"{dev.name}: _EJ0 failed")
            return -errno.EIO
        # _STA is evaluated to check the eject, but adev->status is not updated.
        k.log("acpi_scan_hot_remove", f"{dev.name}: ejected")
        return 0

    def acpi_generic_hotplug_event(self, dev: AcpiDevice, src: int) -> int:
        """acpi_generic_hotplug_event()."""
        if src == ACPI_NOTIFY_DEVICE_CHECK:
            return self.acpi_scan_device_check(dev)
        if src in (ACPI_NOTIFY_EJECT_REQUEST, ACPI_OST_EC_OSPM_EJECT):
            # No driver check: a device whose acpi_memory_device_add() failed (e.g. a
            # range that is not a memory-block multiple) is still ejected (hotplug_notify).
            self._ost(dev, ACPI_NOTIFY_EJECT_REQUEST, ACPI_OST_SC_EJECT_IN_PROGRESS)
            return self.acpi_scan_hot_remove(dev)
        return -errno.EINVAL

    def acpi_scan_device_check(self, dev: AcpiDevice) -> int:
        """acpi_scan_device_check(): a device that became present gets its driver."""
        present = bool(self.sta(dev))
        if dev.bound:
            if present:
                return 0
            self.acpi_memory_device_remove(dev)  # acpi_scan_device_not_present()
            dev.present = False
            return 0
        dev.present = present  # acpi_bus_get_status() caches _STA
        if not present:
            return 0
        self.k.log("acpi_bus_scan", f"{dev.name} present: binding acpi_memhotplug")
        # acpi_bus_scan() (6.1) / acpi_scan_rescan_bus() (6.12) -> acpi_bus_attach():
        # a failed attach leaves the device without its handler but the scan
        # succeeds: _OST reports success for memory the kernel did not add (e.g. a
        # DIMM that is not a memory-block multiple).
        if ret := self.acpi_memory_device_add(dev):
            self.k.log("acpi_memhotplug", f"{dev.name}: acpi_memory_enable_device() error {ret}")
        return 0

    def acpi_device_hotplug(self, dev: AcpiDevice, src: int) -> int:
        """acpi_device_hotplug(): run the event, then report _OST to the platform."""
        error = self.acpi_generic_hotplug_event(dev, src)
        if error == 0:
            ost = ACPI_OST_SC_SUCCESS
        elif error == -errno.EPERM:
            ost = ACPI_OST_SC_EJECT_NOT_SUPPORTED
        elif error == -errno.EBUSY:
            ost = ACPI_OST_SC_DEVICE_BUSY
        else:
            ost = ACPI_OST_SC_NON_SPECIFIC_FAILURE
        self._ost(dev, src, ost)
        return error

    def _ost(self, dev: AcpiDevice, source: int, status: int) -> None:
        if self.namespace is not None:
            self.namespace.evaluate_ost(dev.slot, source, status)

    def acpi_hotplug_notify(self, slot: int, value: int) -> None:
        """acpi_hotplug_notify_cb() -> acpi_hotplug_schedule() -> acpi_device_hotplug()."""
        self.acpi_device_hotplug(self.devices[slot], value)

    def eject_store(self, dev: AcpiDevice, buf: bytes) -> int:
        """eject_store(): "1" schedules an OSPM eject; returns 0 or -errno."""
        if not buf or buf[:1] != b"1":
            return -errno.EINVAL
        if not dev.bound:
            return -errno.ENODEV
        if not dev.ejectable:
            return -errno.ENODEV
        self.acpi_device_hotplug(dev, ACPI_OST_EC_OSPM_EJECT)
        return 0
