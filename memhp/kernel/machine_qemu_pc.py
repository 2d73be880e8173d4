"""``platform = "qemu-pc"`` of a machine description: what QEMU's ``pc`` board and
SeaBIOS tell the kernel (part of :mod:`memhp.kernel.machine`, kept in its own
module for size)."""

from __future__ import annotations

from collections.abc import Mapping

from memhp.abi.layout import SECTION_SIZE, GiB

#: QEMU's pc machine (hw/i386/pc.c, pc_piix.c) and SeaBIOS's e820 (src/memmap.c).
QEMU_LOWMEM_LIMIT = 0xE0000000  # RAM above this is split at 3 GiB (gigabyte_align)
QEMU_LOWMEM_SPLIT = 0xC0000000
SEABIOS_TOP_RESERVED = 0x20000  # SeaBIOS keeps the top 128 KiB of low RAM
AMD_HT_START, AMD_HT_END = 0xFD00000000, 0x10000000000


def qemu_device_memory(ram: int, slots: int, maxmem: int) -> tuple[int, int] | None:
    """[start, end) of QEMU's device memory region for ``-m RAM,slots=N,maxmem=M``
    (pc_memory_init(): from ROUND_UP(4G + RAM above 4G, 1G), maxmem - ram plus 1 GiB
    per slot), which build_srat() gives one hotpluggable memory affinity entry on the
    last node; None without slots or room (no device memory)."""
    if slots <= 0 or maxmem <= ram:
        return None
    below = QEMU_LOWMEM_SPLIT if ram >= QEMU_LOWMEM_LIMIT else ram
    base = -(-(4 * GiB + ram - below) // GiB) * GiB
    return base, base + maxmem - ram + GiB * slots


def expand_qemu_pc(doc: Mapping[str, object]) -> dict[str, object]:
    """``platform = "qemu-pc"``: the machine QEMU's ``pc`` board and SeaBIOS build.

    Each node gives only its boot memory ``size`` (``-numa node,memdev=``); from
    them and ``[hotplug] slots/maxmem`` (``-m SIZE,slots=N,maxmem=M``) this derives
    what firmware tells the kernel: RAM below 4 GiB up to 3.5 GiB (else split at
    3 GiB, pc_init1 with gigabyte_align) and the rest from 4 GiB, node ranges in
    node order, SeaBIOS's e820 map (with the AMD HyperTransport hole QEMU 7.x
    reserves for its default AMD vCPUs), and the device memory region
    (ROUND_UP(4G + above_4g, 1G), maxmem - ram plus 1 GiB per slot for aligned
    DIMMs) that the SRAT marks hotpluggable on the last node.
    """
    from memhp.kernel.machine import MachineError, parse_size  # the parent module

    d = dict(doc)
    d.pop("platform")
    if "e820" in d:
        raise MachineError("e820", 'not allowed with platform = "qemu-pc" (SeaBIOS builds it)')
    raw_nodes = d.get("node")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise MachineError("node", "at least one [[node]] table is required")
    sizes: list[int] = []
    for i, rn in enumerate(raw_nodes):
        if not isinstance(rn, Mapping):
            raise MachineError(f"node[{i}]", "expected a table")
        for key in ("memory", "hotplug"):
            if key in rn:
                raise MachineError(
                    f"node[{i}].{key}", 'not allowed with platform = "qemu-pc": give size'
                )
        sizes.append(parse_size(rn.get("size", 0), f"node[{i}].size"))
    ram = sum(sizes)
    if ram <= 0 or ram % SECTION_SIZE:
        raise MachineError("node", f"boot memory {ram:#x} must be a positive multiple of 128M")
    below = QEMU_LOWMEM_SPLIT if ram >= QEMU_LOWMEM_LIMIT else ram
    above = ram - below
    if 4 * GiB + above > AMD_HT_START:
        raise MachineError("node", "more than ~1 TiB of boot memory is not modelled for qemu-pc")

    def phys(a: int, b: int) -> list[list[int]]:
        out = []
        if a < below:
            out.append([a, min(b, below)])
        if b > below:
            out.append([4 * GiB + max(a, below) - below, 4 * GiB + b - below])
        return out

    nodes: list[dict[str, object]] = []
    off = 0
    for rn, size in zip(raw_nodes, sizes, strict=True):
        n = {k: v for k, v in rn.items() if k != "size"}
        n["memory"] = phys(off, off + size) if size else []
        n["hotplug"] = []
        off += size
        nodes.append(n)
    hp = d.get("hotplug", {})
    if not isinstance(hp, Mapping):
        raise MachineError("hotplug", "expected a table")
    slots = hp.get("slots", 0)
    maxmem = parse_size(hp.get("maxmem", ram), "hotplug.maxmem")
    if isinstance(slots, int) and not isinstance(slots, bool):
        window = qemu_device_memory(ram, slots, maxmem)
        if window is not None:
            nodes[-1]["hotplug"] = [list(window)]
    d["node"] = nodes
    e820 = [
        {"start": 0, "end": 0x9FBFF, "type": "System RAM"},
        {"start": 0x9FC00, "end": 0x9FFFF, "type": "Reserved"},
        {"start": 0xF0000, "end": 0xFFFFF, "type": "Reserved"},
        {"start": 0x100000, "end": below - SEABIOS_TOP_RESERVED - 1, "type": "System RAM"},
        {"start": below - SEABIOS_TOP_RESERVED, "end": below - 1, "type": "Reserved"},
        {"start": 0xFFFC0000, "end": 0xFFFFFFFF, "type": "Reserved"},
    ]
    if above:
        e820.append({"start": 4 * GiB, "end": 4 * GiB + above - 1, "type": "System RAM"})
    e820.append({"start": AMD_HT_START, "end": AMD_HT_END - 1, "type": "Reserved"})
    d["e820"] = e820
    return d
