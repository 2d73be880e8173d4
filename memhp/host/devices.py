"""Memory devices: what a block belongs to and what can be ejected.

ACPI memory devices (PNP0C80) are found under ``/sys/bus/acpi/devices``; their
blocks are the ``physical_node``, ``physical_node1``... links the ACPI glue
creates (drivers/acpi/glue.c), mirrored by each block's ``firmware_node`` link.
A device can be ejected when it has a writable ``eject`` attribute.  virtio-mem
devices have no ACPI companion: they are in :mod:`memhp.host.virtio_mem`, and a
block of theirs is found by its address in their /proc/iomem region.
"""

from __future__ import annotations

from dataclasses import dataclass

from memhp.abi.acpi import MEMORY_DEVICE_HID as ACPI_MEMORY_HID
from memhp.abi.paths import SYS_ACPI_DEVICES, SYS_MEMORY
from memhp.host.errors import SysfsError, UsageError
from memhp.host.iomem import virtio_regions
from memhp.host.memory import MemoryBlock, block_size, read_block, read_block_state
from memhp.host.root import SysfsRoot


@dataclass(frozen=True)
class MemoryDevice:
    """A hot-pluggable memory device and its blocks (ascending)."""

    name: str  # PNP0C80:00
    kind: str  # "acpi" (later: "virtio-mem", "dax")
    path: str  # absolute root path of the device directory
    blocks: tuple[MemoryBlock, ...]
    ejectable: bool
    status: int | None  # ACPI _STA

    @property
    def start(self) -> int | None:
        return self.blocks[0].start if self.blocks else None

    @property
    def end(self) -> int | None:
        return self.blocks[-1].end if self.blocks else None

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blocks)

    @property
    def nodes(self) -> tuple[int, ...]:
        return tuple(sorted({b.node for b in self.blocks if b.node is not None}))

    @property
    def zones(self) -> tuple[str, ...]:
        out: list[str] = []
        for b in self.blocks:
            z = b.zone
            if z is not None and z not in out:
                out.append(z)
        return tuple(out)

    @property
    def online_blocks(self) -> int:
        return sum(1 for b in self.blocks if b.online)


def _physical_node_order(name: str) -> int:
    suffix = name[len("physical_node") :]
    return int(suffix) if suffix.isdigit() else 0


def device_block_indices(root: SysfsRoot, dev_path: str) -> list[int]:
    """Block indices linked from a device's ``physical_node*`` links (ascending)."""
    try:
        names = root.listdir(dev_path)
    except SysfsError:
        return []
    links = sorted((n for n in names if n.startswith("physical_node")), key=_physical_node_order)
    out = []
    for link in links:
        target = root.link_target(f"{dev_path}/{link}")
        if target and target.startswith(SYS_MEMORY + "/memory"):
            tail = target.rsplit("/", 1)[-1][6:]
            if tail.isdigit():
                out.append(int(tail))
    return sorted(set(out))


def _acpi_device(
    root: SysfsRoot, name: str, bsize: int, brief: bool = False, target: str | None = None
) -> MemoryDevice | None:
    """``target``: where its /sys/bus/acpi/devices link points, when already read."""
    link = f"{SYS_ACPI_DEVICES}/{name}"
    path = target or root.link_target(link) or link
    idx = device_block_indices(root, path)
    read = read_block_state if brief else read_block
    blocks = []
    for i in idx:
        try:
            blocks.append(read(root, i, bsize))
        except UsageError:
            continue  # link to a block that is going away
    ejectable = False
    try:
        st = root.lstat(f"{path}/eject")
        ejectable = bool(st.mode & 0o222)
    except SysfsError:
        pass
    status = None
    text = root.read_str_optional(f"{path}/status")
    if text is not None and text.strip().isdigit():
        status = int(text.strip())
    return MemoryDevice(name, "acpi", path, tuple(blocks), ejectable, status)


def list_devices(root: SysfsRoot, with_empty: bool = False) -> list[MemoryDevice]:
    """The memory devices of the root (ACPI PNP0C80 for now).

    Slots without memory (no ``physical_node`` link) are left out unless
    ``with_empty``.
    """
    try:
        names = root.listdir(SYS_ACPI_DEVICES)
    except SysfsError:
        return []
    try:
        bsize = block_size(root)
    except UsageError:
        return []
    out = []
    for name in sorted(names):
        if not name.startswith(ACPI_MEMORY_HID + ":"):
            continue
        dev = _acpi_device(root, name, bsize)
        if dev is not None and (dev.blocks or with_empty):
            out.append(dev)
    return out


def find_device(root: SysfsRoot, spec: str, brief: bool = False) -> MemoryDevice:
    """The device named ``spec`` (``PNP0C80:00``, or its sysfs path).

    ``brief``: its blocks with only their state and valid zones
    (:func:`~memhp.host.memory.read_block_state`; what ``remove`` needs), each
    read now, as every call reads the device anew.
    """
    name = spec.rstrip("/").rsplit("/", 1)[-1]
    if not name.startswith(ACPI_MEMORY_HID + ":"):
        raise UsageError(f"unknown memory device: {spec} (expected {ACPI_MEMORY_HID}:NN)")
    link = f"{SYS_ACPI_DEVICES}/{name}"
    target = root.link_target(link)  # (a link there is an existing entry: no lstat first)
    if not target and not root.exists(link):
        raise UsageError(f"unknown memory device: {spec}")
    dev = _acpi_device(root, name, block_size(root), brief, target)
    assert dev is not None
    return dev


def device_of_block(root: SysfsRoot, index: int) -> str | None:
    """Name of the device block ``index`` belongs to: its ``firmware_node`` (an ACPI
    memory device), else the virtio-mem device whose /proc/iomem region holds it."""
    target = root.link_target(f"{SYS_MEMORY}/memory{index}/firmware_node")
    if target:
        return target.rsplit("/", 1)[-1]
    try:
        start = index * block_size(root)
    except UsageError:
        return None
    for r in virtio_regions(root).values():
        if r.contains(start):
            return r.name
    return None
