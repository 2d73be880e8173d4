"""/sys/firmware/memmap: drivers/firmware/memmap.c (one directory per e820 entry)."""

from __future__ import annotations

from memhp.kernel.drivers.firmware.memmap import FirmwareMapEntry
from memhp.kernel.kernel import Kernel
from memhp.sim.sysfs.kernfs import ATTR_RO, AttrGroup, Dir, Node, group_dir

#: def_attrs[] of a firmware map entry.
memmap_attrs: AttrGroup[FirmwareMapEntry] = {
    "start": ATTR_RO(lambda k, e: f"0x{e.start:x}\n"),
    "end": ATTR_RO(lambda k, e: f"0x{e.end:x}\n"),
    "type": ATTR_RO(lambda k, e: e.type + "\n"),
}


def memmap_dir(k: Kernel) -> Dir:
    fw = k.fwmap

    def child(name: str) -> Node | None:
        if not name.isdigit():
            return None
        e = fw.by_index().get(int(name))
        if e is None or str(e.index) != name:
            return None
        return group_dir(k, e, memmap_attrs)

    return Dir(lambda: [str(e.index) for e in fw.entries], child)
