"""Memory blocks, nodes and the firmware memmap of a sysfs root (typed accessors).

Attributes follow drivers/base/memory.c (``state``, ``online``, ``valid_zones``,
``removable``, ``phys_index``, ``phys_device``, the ``nodeN`` link and the ACPI
``firmware_node`` link from drivers/acpi/glue.c).  Each is probed: a missing one
is ``None`` (an older kernel), never an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from memhp.abi.paths import MODULE_MEMORY_HOTPLUG, SYS_FIRMWARE_MEMMAP, SYS_MEMORY, SYS_NODE
from memhp.host.errors import NotFound, SysfsError, UsageError
from memhp.host.root import SysfsRoot


@dataclass(frozen=True)
class MemoryBlock:
    """One ``/sys/devices/system/memory/memoryN``."""

    index: int
    start: int
    size: int
    state: str | None  # "online", "offline", "going-offline"; None if unreadable
    valid_zones: tuple[str, ...] | None  # None before Linux 3.18
    node: int | None
    removable: bool | None
    phys_device: int | None
    firmware_node: str | None  # absolute root path of the ACPI companion

    @property
    def name(self) -> str:
        return f"memory{self.index}"

    @property
    def path(self) -> str:
        return f"{SYS_MEMORY}/memory{self.index}"

    @property
    def end(self) -> int:
        """Inclusive end address."""
        return self.start + self.size - 1

    @property
    def online(self) -> bool:
        return self.state == "online"

    @property
    def zone(self) -> str | None:
        """The zone of an online block (``valid_zones`` shows it), None otherwise.

        ``none`` is what an online block spanning several zones shows.
        """
        if self.state != "online" or not self.valid_zones:
            return None
        return self.valid_zones[0]

    @property
    def spans_zones(self) -> bool:
        return self.online and self.valid_zones == ("none",)

    def describe(self) -> str:
        """chmem's name for a block: ``Memory Block 5 (0x...-0x...)``."""
        return f"Memory Block {self.index} (0x{self.start:016x}-0x{self.end:016x})"


def block_size(root: SysfsRoot) -> int:
    """``block_size_bytes`` (hex); :class:`UsageError` when the root has no blocks."""
    try:
        text = root.read_str(f"{SYS_MEMORY}/block_size_bytes").strip()
    except NotFound:
        raise UsageError(
            f"{root.name}: no memory blocks (no {SYS_MEMORY}/block_size_bytes)"
        ) from None
    try:
        size = int(text, 16) if text.isascii() else 0
    except ValueError:
        size = 0
    if not SECTION_MIN <= size <= 1 << 64 or size & (size - 1):
        raise UsageError(
            f"{root.name}: {SYS_MEMORY}/block_size_bytes: {text[:40]!r} is not a memory block size"
        )
    return size


#: The smallest memory block size of any architecture (a 4 KiB page would be absurd).
SECTION_MIN = 1 << 12


def block_indices(root: SysfsRoot) -> list[int]:
    """Indices of the memory blocks, ascending."""
    try:
        names = root.listdir(SYS_MEMORY)
    except NotFound:
        raise UsageError(f"{root.name}: no {SYS_MEMORY} (not a sysfs root?)") from None
    return sorted(int(n[6:]) for n in names if n.startswith("memory") and n[6:].isdigit())


def _opt_int(root: SysfsRoot, path: str, base: int = 10) -> int | None:
    text = root.read_str_optional(path)
    if text is None:
        return None
    try:
        return int(text.strip(), base)
    except ValueError:
        return None


def read_block(root: SysfsRoot, index: int, bsize: int | None = None) -> MemoryBlock:
    """The block ``memory<index>``; :class:`UsageError` if there is no such block."""
    bs = bsize if bsize is not None else block_size(root)
    d = f"{SYS_MEMORY}/memory{index}"
    try:
        entries = root.listdir(d)
    except NotFound:
        raise UsageError(f"memory block {index} does not exist") from None
    node = None
    for e in entries:
        if e.startswith("node") and e[4:].isdigit():
            node = int(e[4:])
            break
    try:
        state: str | None = root.read_str(f"{d}/state").strip()
    except SysfsError:
        state = None
    zones_text = root.read_str_optional(f"{d}/valid_zones")
    removable = _opt_int(root, f"{d}/removable")
    fw = root.link_target(f"{d}/firmware_node") if "firmware_node" in entries else None
    return MemoryBlock(
        index=index,
        start=index * bs,
        size=bs,
        state=state,
        valid_zones=tuple(zones_text.split()) if zones_text is not None else None,
        node=node,
        removable=None if removable is None else removable == 1,
        phys_device=_opt_int(root, f"{d}/phys_device"),
        firmware_node=fw,
    )


def read_block_state(root: SysfsRoot, index: int, bsize: int) -> MemoryBlock:
    """The block ``memory<index>`` with only what offlining it needs: ``state`` and
    ``valid_zones`` (node, removable, phys_device and firmware_node are None).

    :class:`UsageError` if there is no such block, as :func:`read_block`: a missing
    ``state`` is told from a missing block by listing the block's directory.
    """
    d = f"{SYS_MEMORY}/memory{index}"
    state: str | None
    try:
        state = root.read_str(f"{d}/state").strip()
    except NotFound:
        try:
            root.listdir(d)
        except NotFound:
            raise UsageError(f"memory block {index} does not exist") from None
        state = None
    except SysfsError:
        state = None
    zones_text = root.read_str_optional(f"{d}/valid_zones")
    return MemoryBlock(
        index=index,
        start=index * bsize,
        size=bsize,
        state=state,
        valid_zones=tuple(zones_text.split()) if zones_text is not None else None,
        node=None,
        removable=None,
        phys_device=None,
        firmware_node=None,
    )


def read_blocks(root: SysfsRoot) -> list[MemoryBlock]:
    bs = block_size(root)
    return [read_block(root, i, bs) for i in block_indices(root)]


def set_state(root: SysfsRoot, index: int, value: str) -> None:
    """Write ``value`` (``online``, ``online_movable``, ``offline``...) to ``state``."""
    root.write(f"{SYS_MEMORY}/memory{index}/state", value)


def block_state(root: SysfsRoot, index: int) -> str | None:
    try:
        return root.read_str(f"{SYS_MEMORY}/memory{index}/state").strip()
    except SysfsError:
        return None


@dataclass(frozen=True)
class FirmwareMemmapEntry:
    """``/sys/firmware/memmap/N`` (drivers/firmware/memmap.c)."""

    index: int
    start: int
    end: int
    type: str


def firmware_memmap(root: SysfsRoot) -> list[FirmwareMemmapEntry]:
    out = []
    try:
        names = root.listdir(SYS_FIRMWARE_MEMMAP)
    except SysfsError:
        return []
    for n in names:
        if not n.isdigit():
            continue
        d = f"{SYS_FIRMWARE_MEMMAP}/{n}"
        try:
            out.append(
                FirmwareMemmapEntry(
                    int(n),
                    int(root.read_str(f"{d}/start").strip(), 16),
                    int(root.read_str(f"{d}/end").strip(), 16),
                    root.read_str(f"{d}/type").strip(),
                )
            )
        except (SysfsError, ValueError):
            continue
    return sorted(out, key=lambda e: e.start)


def node_ids(root: SysfsRoot) -> list[int]:
    try:
        names = root.listdir(SYS_NODE)
    except SysfsError:
        return []
    return sorted(int(n[4:]) for n in names if n.startswith("node") and n[4:].isdigit())


def memmap_on_memory_param(root: SysfsRoot) -> bool | None:
    """``memory_hotplug.memmap_on_memory`` (Y/N), None when the kernel has none."""
    text = root.read_str_optional(f"{MODULE_MEMORY_HOTPLUG}/memmap_on_memory")
    if text is None:
        return None
    return text.strip() in ("Y", "y", "1")
