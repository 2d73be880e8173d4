"""The firmware memory map (drivers/firmware/memmap.c): /sys/firmware/memmap/N."""

from __future__ import annotations

from dataclasses import dataclass, field

from memhp.kernel.lib.kobject_uevent import ObjectEvents


@dataclass(frozen=True)
class FirmwareMapEntry:
    """struct firmware_map_entry: [start, end] inclusive, a type string, a kobject index."""

    index: int
    start: int
    end: int  # inclusive, as /sys/firmware/memmap/N/end shows it
    type: str


@dataclass
class FirmwareMap:
    """map_entries plus the sysfs directory numbering.

    Directory indices come from a counter that only grows (``map_entries_nr`` in
    firmware_map_add_entry / add_sysfs_fw_map_entry), so an index is never
    reused after firmware_map_remove().
    """

    entries: list[FirmwareMapEntry] = field(default_factory=list)
    next_index: int = 0
    #: Where add_sysfs_fw_map_entry() / kobject_put() announce entries.
    objects: ObjectEvents = field(default_factory=ObjectEvents)

    def _add(self, start: int, end_excl: int, type_: str) -> FirmwareMapEntry:
        e = FirmwareMapEntry(self.next_index, start, end_excl - 1, type_)
        self.next_index += 1
        self.entries.append(e)
        self.objects.emit("firmware_memmap", e.index, True)
        return e

    def firmware_map_add_early(self, start: int, end_excl: int, type_: str) -> FirmwareMapEntry:
        """firmware_map_add_early(): an e820 entry at boot."""
        return self._add(start, end_excl, type_)

    def firmware_map_find_entry(
        self, start: int, end_excl: int, type_: str
    ) -> FirmwareMapEntry | None:
        """firmware_map_find_entry(): exact match of range and type."""
        for e in self.entries:
            if e.start == start and e.end == end_excl - 1 and e.type == type_:
                return e
        return None

    def firmware_map_add_hotplug(self, start: int, end_excl: int, type_: str) -> FirmwareMapEntry:
        """firmware_map_add_hotplug(): a new entry (and sysfs directory) for hot-added RAM.

        An existing identical entry is kept as it is (the kernel returns early).
        """
        found = self.firmware_map_find_entry(start, end_excl, type_)
        if found is not None:
            return found
        return self._add(start, end_excl, type_)

    def firmware_map_remove(self, start: int, end_excl: int, type_: str) -> FirmwareMapEntry:
        """firmware_map_remove(): drop the entry; -EINVAL when there is none."""
        e = self.firmware_map_find_entry(start, end_excl, type_)
        if e is None:
            raise LookupError(f"no firmware map entry {start:#x}-{end_excl - 1:#x} {type_}")
        self.entries.remove(e)
        self.objects.emit("firmware_memmap", e.index, False)
        return e

    def by_index(self) -> dict[int, FirmwareMapEntry]:
        return {e.index: e for e in self.entries}
