"""The machine description: what firmware tells the kernel at boot.

A machine is described by a TOML document (see ``machines/*.toml``)::

    name = "seed"
    profile = "linux-3.8-hotremove"      # or "linux-6.1" (default)
    block_size = "128M"                   # or "auto": probe_memory_block_size()
    hypervisor = true                     # X86_FEATURE_HYPERVISOR (for "auto")
    memcg = true                          # CONFIG_MEMCG
    auto_online_blocks = "offline"        # memhp_default_state=; "default" or absent:
                                          # the profile's default_online_type
    memmap_on_memory = false              # memory_hotplug.memmap_on_memory= (or "force")
    movable_node = false                  # movable_node on the command line
    online_policy = "contig-zones"        # memory_hotplug.online_policy= (or "auto-movable")
    auto_movable_ratio = 301              # memory_hotplug.auto_movable_ratio=
    auto_movable_numa_aware = true        # memory_hotplug.auto_movable_numa_aware=
    gbpages = true                        # direct mapping may use 1 GiB pages
    la57 = false                          # 5-level paging (a CPU with LA57): the
                                          # physical address space is 52 bits, not 46
    transparent_hugepage = "always"       # transparent_hugepage= (Debian's default:
                                          # always; "madvise" too raises min_free_kbytes)

    [[e820]]                              # optional; default: one entry per RAM range
    start = "0x0"
    end = "0x9fbff"                       # inclusive, as /sys/firmware/memmap shows it
    type = "System RAM"

    [[node]]
    id = 0                                # proximity domain (SRAT/SLIT/_PXM); the kernel
                                          # numbers domains with an SRAT entry 0, 1, ...
                                          # in table order (memhp/kernel/drivers/acpi/numa/srat.py)
    cpus = [0, 1]
    distance = [10, 20]
    memory = [["0", "1G"]]                # SRAT memory affinity, [start, end)
    hotplug = []                          # SRAT ranges flagged hotpluggable

    [hotplug]
    slots = 4                             # ACPI memory devices (PNP0C80:00..)
    maxmem = "8G"

    [kernel]                              # the kernel's own boot footprint
    image_start = "16M"                   # where the image is: the start of "Kernel
                                          # code" in /proc/iomem (16M with nokaslr)
    image_size = "32M"                    # what the image keeps reserved: "Kernel code"
                                          # start to "Kernel bss" end, less what boot
                                          # frees ("Freeing unused kernel image ...")
    image_layout = [["0", "0xe01d32"], ...] # "Kernel code", "rodata", "data", "bss" as
                                          # [start, end) from _text (default: the
                                          # profile's build; the bench reads its image's)
    percpu_per_cpu = "248K"               # "percpu: Embedded N pages/cpu" (first chunk)
    swiotlb = "64M"                       # swiotlb= (slabs of 2K) bounce buffer
    boot_slab_per_node = "24M"

    [kernel.runtime_allocs]               # enabled, rate, keep, seed: see machine_runtime

    [[virtio_mem]]                        # virtio-mem-pci devices: see machine_virtio_mem

This module only parses and validates (no I/O): :func:`parse_machine` takes the
already-decoded TOML mapping.  Every error names the key and the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise

from memhp.abi import units
from memhp.abi.e820 import E820_TYPES
from memhp.abi.layout import MAX_PHYSMEM_BITS, SECTION_SIZE, GiB, MiB
from memhp.abi.params import AUTO_MOVABLE_RATIO_DEFAULT, ONLINE_POLICIES
from memhp.kernel.machine_qemu_pc import expand_qemu_pc
from memhp.kernel.machine_runtime import RuntimeAllocsSpec, parse_runtime_allocs
from memhp.kernel.machine_virtio_mem import VirtioMemSpec, parse_virtio_mem
from memhp.kernel.profiles import PROFILES, KernelProfile

ONLINE_TYPES = ("offline", "online", "online_kernel", "online_movable")


class MachineError(ValueError):
    """A machine description is invalid; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class E820Entry:
    start: int
    end: int  # exclusive
    type: str


@dataclass(frozen=True)
class NodeSpec:
    id: int
    cpus: tuple[int, ...]
    distance: tuple[int, ...]
    memory: tuple[tuple[int, int], ...]  # [start, end)
    hotplug: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class MachineSpec:
    """A validated machine description."""

    name: str
    profile: KernelProfile
    block_size: int
    memcg: bool
    auto_online_blocks: str
    memmap_on_memory: bool
    movable_node: bool
    gbpages: bool
    e820: tuple[E820Entry, ...]
    nodes: tuple[NodeSpec, ...]
    slots: int
    maxmem: int
    #: Sizes of the kernel's own boot allocations (see memhp.kernel.mm.memblock).
    kernel_image_size: int = 32 * MiB
    kernel_image_start: int = 16 * MiB
    #: 5-level paging (CONFIG_X86_5LEVEL on a CPU with LA57): MAX_PHYSMEM_BITS 52.
    la57: bool = False
    #: [kernel] image_layout: the build's sections (None: the profile's build).
    kernel_image_layout: tuple[tuple[int, int], ...] | None = None
    swiotlb_size: int = 64 * MiB
    #: The embedded first percpu chunk per CPU (pcpu_embed_first_chunk, Debian 6.1: 62 pages).
    percpu_per_cpu: int = 248 * 1024
    boot_slab_per_node: int = 24 * MiB
    #: memory_hotplug.memmap_on_memory=force (profile.memmap_on_memory_force).
    memmap_on_memory_force: bool = False
    #: memory_hotplug.online_policy, auto_movable_ratio, auto_movable_numa_aware.
    online_policy: str = ONLINE_POLICIES[0]
    auto_movable_ratio: int = AUTO_MOVABLE_RATIO_DEFAULT
    auto_movable_numa_aware: bool = True
    #: transparent_hugepage= ("always", "madvise" or "never"): enabled THP makes
    #: khugepaged raise min_free_kbytes (set_recommended_min_free_kbytes()).
    transparent_hugepage: str = "always"
    #: virtio-mem devices on the QEMU command line, in command-line order.
    virtio_mem: tuple[VirtioMemSpec, ...] = ()
    #: [kernel.runtime_allocs]: the knobs of the run-time kernel allocations.
    runtime_allocs: RuntimeAllocsSpec = field(default_factory=RuntimeAllocsSpec)

    @property
    def boot_ram(self) -> list[tuple[int, int, int]]:
        """(start, end, nid) of RAM present at boot: SRAT ranges ∩ e820 System RAM."""
        out: list[tuple[int, int, int]] = []
        for node in self.nodes:
            for ms, me in node.memory:
                for e in self.e820:
                    if e.type != "System RAM":
                        continue
                    s, t = max(ms, e.start), min(me, e.end)
                    if s < t:
                        out.append((s, t, node.id))
        out.sort()
        return out

    def node(self, nid: int) -> NodeSpec:
        for n in self.nodes:
            if n.id == nid:
                return n
        raise KeyError(nid)


#: The end of the physical address space (x86_64, 4-level paging: 64 TiB).
MAX_PHYS_ADDR = 1 << MAX_PHYSMEM_BITS


def _check_phys(end: int, key: str) -> None:
    if end > MAX_PHYS_ADDR:
        raise MachineError(
            key,
            f"ends at {end:#x}, beyond the physical address limit {MAX_PHYS_ADDR:#x} "
            f"(64T, x86_64 MAX_PHYSMEM_BITS = {MAX_PHYSMEM_BITS})",
        )


def parse_size(value: object, key: str) -> int:
    """An integer or a string like ``"1G"``, ``"128M"``, ``"0x40000000"``."""
    if isinstance(value, bool):
        raise MachineError(key, f"expected a size, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise MachineError(key, f"must not be negative, got {value}")
        return value
    if isinstance(value, str):
        try:
            return units.parse_size(value)
        except ValueError:
            pass
    raise MachineError(key, f"expected a size such as 1G, 128M or 0x40000000, got {value!r}")


def _bool(d: Mapping[str, object], key: str, default: bool) -> bool:
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise MachineError(key, f"expected true or false, got {v!r}")
    return v


def _image_layout(v: object) -> tuple[tuple[int, int], ...] | None:
    """``[kernel] image_layout``: four [start, end) pairs from _text, in order."""
    key = "kernel.image_layout"
    if v is None:
        return None
    if not isinstance(v, list) or len(v) != 4:
        raise MachineError(key, "expected four [start, end] pairs (code, rodata, data, bss)")
    out: list[tuple[int, int]] = []
    for i, pair in enumerate(v):
        if not isinstance(pair, list) or len(pair) != 2:
            raise MachineError(f"{key}[{i}]", f"expected [start, end], got {pair!r}")
        a, b = parse_size(pair[0], f"{key}[{i}][0]"), parse_size(pair[1], f"{key}[{i}][1]")
        if not (out[-1][1] if out else 0) <= a < b:
            raise MachineError(f"{key}[{i}]", "ranges must be non-empty, in order, not overlapping")
        out.append((a, b))
    return tuple(out)


def _range(v: object, key: str) -> tuple[int, int]:
    if isinstance(v, Mapping):
        start = parse_size(v.get("start"), key + ".start")
        if "size" in v:
            end = start + parse_size(v["size"], key + ".size")
        else:
            end = parse_size(v.get("end"), key + ".end")
    elif isinstance(v, list | tuple) and len(v) == 2:
        start, end = parse_size(v[0], key + "[0]"), parse_size(v[1], key + "[1]")
    else:
        raise MachineError(key, f"expected [start, end] or {{start, size}}, got {v!r}")
    if end <= start:
        raise MachineError(key, f"empty range [{start:#x}, {end:#x})")
    _check_phys(end, key)
    return start, end


def _int_list(v: object, key: str) -> tuple[int, ...]:
    if not isinstance(v, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in v
    ):
        raise MachineError(key, f"expected a list of integers, got {v!r}")
    return tuple(v)


_KERNEL_KEYS = {"image_start", "image_size", "swiotlb", "percpu_per_cpu", "runtime_allocs"}
_KERNEL_KEYS |= {"boot_slab_per_node", "image_layout"}
_KNOWN_TOP = {
    "name",
    "hypervisor",
    "profile",
    "virtio_mem",
    "block_size",
    "memcg",
    "auto_online_blocks",
    "memmap_on_memory",
    "movable_node",
    "online_policy",
    "auto_movable_ratio",
    "auto_movable_numa_aware",
    "gbpages",
    "la57",
    "transparent_hugepage",
    "e820",
    "node",
    "hotplug",
    "kernel",
    "description",
}


#: arch/x86/mm/init_64.c: MEM_SIZE_FOR_LARGE_BLOCK and MAX_BLOCK_SIZE.
MEM_SIZE_FOR_LARGE_BLOCK = 64 * GiB
MAX_BLOCK_SIZE = 2 * GiB


def probe_memory_block_size(boot_mem_end: int, hypervisor: bool) -> int:
    """probe_memory_block_size() of x86_64 (6.1), for ``block_size = "auto"``.

    Below 64 GiB of boot memory: 128 MiB.  On bare metal: 2 GiB.  Under a
    hypervisor: the largest size up to 2 GiB that the end of boot memory is
    aligned to.
    """
    if boot_mem_end < MEM_SIZE_FOR_LARGE_BLOCK:
        return SECTION_SIZE
    if not hypervisor:
        return MAX_BLOCK_SIZE
    bz = MAX_BLOCK_SIZE
    while bz > SECTION_SIZE:
        if boot_mem_end % bz == 0:
            break
        bz >>= 1
    return bz


def parse_machine(doc: Mapping[str, object]) -> MachineSpec:
    """Validate a decoded machine description and build a :class:`MachineSpec`."""
    if "platform" in doc:
        if doc["platform"] != "qemu-pc":
            raise MachineError("platform", f"unknown platform {doc['platform']!r} (known: qemu-pc)")
        doc = expand_qemu_pc(doc)
    unknown = sorted(set(doc) - _KNOWN_TOP)
    if unknown:
        raise MachineError(unknown[0], f"unknown key (known: {', '.join(sorted(_KNOWN_TOP))})")
    name = doc.get("name", "machine")
    if not isinstance(name, str):
        raise MachineError("name", f"expected a string, got {name!r}")
    prof_name = doc.get("profile", "linux-6.1")
    if prof_name not in PROFILES:
        raise MachineError(
            "profile", f"unknown profile {prof_name!r} (known: {', '.join(PROFILES)})"
        )
    profile = PROFILES[str(prof_name)]
    raw_bs = doc.get("block_size", SECTION_SIZE)
    hypervisor = _bool(doc, "hypervisor", True)
    block_size = 0 if raw_bs == "auto" else parse_size(raw_bs, "block_size")
    if raw_bs != "auto" and (block_size < SECTION_SIZE or block_size & (block_size - 1)):
        raise MachineError(
            "block_size", f"must be a power of two of at least 128M, got {block_size:#x}"
        )
    aob = doc.get("auto_online_blocks", "default")
    if aob == "default":  # no memhp_default_state=: the kernel's build-time default
        aob = profile.default_online_type
    if aob not in ONLINE_TYPES:
        raise MachineError("auto_online_blocks", f"expected one of {ONLINE_TYPES}, got {aob!r}")

    policy, ratio, numa_aware = _online_policy(doc, profile)

    raw_nodes = doc.get("node")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise MachineError("node", "at least one [[node]] table is required")
    nodes: list[NodeSpec] = []
    seen_cpus: set[int] = set()
    for i, rn in enumerate(raw_nodes):
        k = f"node[{i}]"
        if not isinstance(rn, Mapping):
            raise MachineError(k, "expected a table")
        bad = sorted(set(rn) - {"id", "cpus", "distance", "memory", "hotplug"})
        if bad:
            raise MachineError(f"{k}.{bad[0]}", "unknown key")
        nid = rn.get("id", i)
        if not isinstance(nid, int) or isinstance(nid, bool) or not 0 <= nid < 1024:
            raise MachineError(f"{k}.id", f"expected a node id 0..1023, got {nid!r}")
        cpus = _int_list(rn.get("cpus", []), f"{k}.cpus")
        if len(set(cpus)) != len(cpus):
            raise MachineError(f"{k}.cpus", f"a cpu is listed twice in {list(cpus)}")
        for c in cpus:
            if c in seen_cpus:
                raise MachineError(f"{k}.cpus", f"cpu {c} belongs to two nodes")
            seen_cpus.add(c)
        mem = rn.get("memory", [])
        hp = rn.get("hotplug", [])
        if not isinstance(mem, list):
            raise MachineError(f"{k}.memory", "expected a list of ranges")
        if not isinstance(hp, list):
            raise MachineError(f"{k}.hotplug", "expected a list of ranges")
        memory = tuple(_range(r, f"{k}.memory[{j}]") for j, r in enumerate(mem))
        hotplug = tuple(_range(r, f"{k}.hotplug[{j}]") for j, r in enumerate(hp))
        for j, (s, e) in enumerate(hotplug):
            if block_size and (s % block_size or e % block_size):
                raise MachineError(
                    f"{k}.hotplug[{j}]", f"window must be aligned to the block size {block_size:#x}"
                )
        dist = _int_list(rn.get("distance", []), f"{k}.distance")
        nodes.append(NodeSpec(nid, cpus, dist, memory, hotplug))
    ids = [n.id for n in nodes]
    if len(set(ids)) != len(ids):
        raise MachineError("node", f"duplicate node ids {ids}")
    nodes.sort(key=lambda n: n.id)
    # Default SLIT: 10 local, 20 remote.
    fixed: list[NodeSpec] = []
    for n in nodes:
        dist = n.distance
        if not dist:
            dist = tuple(10 if m.id == n.id else 20 for m in nodes)
        if len(dist) != len(nodes):
            raise MachineError(
                f"node[{ids.index(n.id)}].distance",
                f"expected {len(nodes)} distances, got {len(dist)}",
            )
        fixed.append(NodeSpec(n.id, n.cpus, dist, n.memory, n.hotplug))
    nodes = fixed
    if not any(n.cpus for n in nodes):
        raise MachineError("node", "at least one node needs CPUs")
    # Ranges of different nodes must not overlap; a node's hotplug window may
    # contain its own boot memory (SRAT: boot memory flagged hotpluggable).
    spans = sorted((s, e, n.id) for n in nodes for (s, e) in (*n.memory, *n.hotplug))
    for i, (_s1, e1, n1) in enumerate(spans):
        for s2, _e2, n2 in spans[i + 1 :]:
            if s2 >= e1:
                break
            if n1 != n2:
                raise MachineError("node", f"ranges of node {n1} and node {n2} overlap at {s2:#x}")
    for n in nodes:
        for (_a, ae), (bs, _b) in pairwise(sorted(n.memory)):
            if bs < ae:
                raise MachineError(f"node[{ids.index(n.id)}].memory", f"ranges overlap at {bs:#x}")

    raw_e820 = doc.get("e820")
    e820: list[E820Entry] = []
    if raw_e820 is None:
        for n in nodes:
            for s, e in n.memory:
                e820.append(E820Entry(s, e, "System RAM"))
    else:
        if not isinstance(raw_e820, list):
            raise MachineError("e820", "expected a list of [[e820]] tables")
        for i, re_ in enumerate(raw_e820):
            k = f"e820[{i}]"
            if not isinstance(re_, Mapping):
                raise MachineError(k, "expected a table with start, end (inclusive), type")
            s = parse_size(re_.get("start"), f"{k}.start")
            if "size" in re_:
                e = s + parse_size(re_["size"], f"{k}.size")
            else:
                e = parse_size(re_.get("end"), f"{k}.end") + 1
            if e <= s:
                raise MachineError(k, "end before start")
            _check_phys(e, k)
            t = re_.get("type", "System RAM")
            if t not in E820_TYPES:
                raise MachineError(
                    f"{k}.type", f"unknown type {t!r} (known: {', '.join(E820_TYPES)})"
                )
            e820.append(E820Entry(s, e, str(t)))
    e820.sort(key=lambda x: x.start)
    for a, b in pairwise(e820):
        if b.start < a.end:
            raise MachineError("e820", f"entries overlap at {b.start:#x}")

    hp = doc.get("hotplug", {})
    if not isinstance(hp, Mapping):
        raise MachineError("hotplug", "expected a table")
    slots = hp.get("slots", 0)
    if not isinstance(slots, int) or isinstance(slots, bool) or not 0 <= slots <= 256:
        raise MachineError("hotplug.slots", f"expected 0..256, got {slots!r}")
    boot_total = sum(e - s for n in nodes for s, e in n.memory)
    maxmem = parse_size(hp.get("maxmem", boot_total), "hotplug.maxmem")
    if maxmem < boot_total:
        raise MachineError("hotplug.maxmem", "smaller than the boot memory")
    _check_phys(maxmem, "hotplug.maxmem")
    if slots and not any(n.hotplug for n in nodes):
        raise MachineError("hotplug", "slots given but no node has a hotplug window")

    kern = doc.get("kernel", {})
    if not isinstance(kern, Mapping):
        raise MachineError("kernel", "expected a table")
    bad = sorted(set(kern) - _KERNEL_KEYS)
    if bad:
        raise MachineError(f"kernel.{bad[0]}", "unknown key")

    if not block_size:
        boot_end = max((e for n in nodes for _s, e in n.memory), default=0)
        block_size = probe_memory_block_size(boot_end, hypervisor)
        for i, n in enumerate(nodes):
            for j, (hs, he) in enumerate(n.hotplug):
                if hs % block_size or he % block_size:
                    raise MachineError(
                        f"node[{i}].hotplug[{j}]",
                        f"window must be aligned to the block size {block_size:#x} (auto)",
                    )
    mom_force = doc.get("memmap_on_memory") == "force"
    if mom_force and not profile.memmap_on_memory_force:
        raise MachineError(
            "memmap_on_memory", f"profile {profile.name} takes true or false, not 'force'"
        )
    spec = MachineSpec(
        name=name,
        profile=profile,
        block_size=block_size,
        memcg=_bool(doc, "memcg", True),
        auto_online_blocks=str(aob),
        memmap_on_memory=mom_force or _bool(doc, "memmap_on_memory", False),
        memmap_on_memory_force=mom_force,
        movable_node=_bool(doc, "movable_node", False),
        gbpages=_bool(doc, "gbpages", True),
        la57=_bool(doc, "la57", False),
        e820=tuple(e820),
        nodes=tuple(nodes),
        slots=slots,
        maxmem=maxmem,
        kernel_image_start=parse_size(kern.get("image_start", 16 * MiB), "kernel.image_start"),
        kernel_image_size=parse_size(kern.get("image_size", 32 * MiB), "kernel.image_size"),
        kernel_image_layout=_image_layout(kern.get("image_layout")),
        swiotlb_size=parse_size(kern.get("swiotlb", 64 * MiB), "kernel.swiotlb"),
        percpu_per_cpu=parse_size(kern.get("percpu_per_cpu", 248 * 1024), "kernel.percpu_per_cpu"),
        boot_slab_per_node=parse_size(
            kern.get("boot_slab_per_node", 24 * MiB), "kernel.boot_slab_per_node"
        ),
        online_policy=policy,
        transparent_hugepage=_thp(doc),
        auto_movable_ratio=ratio,
        auto_movable_numa_aware=numa_aware,
        virtio_mem=parse_virtio_mem(doc.get("virtio_mem", [])),
        runtime_allocs=parse_runtime_allocs(kern.get("runtime_allocs", {})),
    )
    if not spec.boot_ram:
        raise MachineError("node", "no boot RAM: no node memory range is System RAM in the e820")
    _check_boot_allocations(
        spec, "kernel.image_start" if "image_start" in kern else "kernel.image_size"
    )
    return spec


#: transparent_hugepage= values (mm/huge_memory.c setup_transparent_hugepage()).
THP_MODES = ("always", "madvise", "never")


def _thp(doc: Mapping[str, object]) -> str:
    mode = doc.get("transparent_hugepage", THP_MODES[0])
    if mode not in THP_MODES:
        raise MachineError(
            "transparent_hugepage", f"expected one of {', '.join(THP_MODES)}, got {mode!r}"
        )
    return str(mode)


def _online_policy(doc: Mapping[str, object], profile: KernelProfile) -> tuple[str, int, bool]:
    """online_policy, auto_movable_ratio (a uint), auto_movable_numa_aware."""
    policy = doc.get("online_policy", ONLINE_POLICIES[0])
    if policy not in ONLINE_POLICIES:
        raise MachineError(
            "online_policy", f"expected one of {', '.join(ONLINE_POLICIES)}, got {policy!r}"
        )
    ratio = doc.get("auto_movable_ratio", AUTO_MOVABLE_RATIO_DEFAULT)
    if not isinstance(ratio, int) or isinstance(ratio, bool) or not 0 <= ratio < 1 << 32:
        raise MachineError(
            "auto_movable_ratio", f"expected an integer 0..4294967295, got {ratio!r}"
        )
    numa_aware = _bool(doc, "auto_movable_numa_aware", True)
    given = {"online_policy", "auto_movable_ratio", "auto_movable_numa_aware"} & set(doc)
    if given and not profile.online_policies:
        raise MachineError(
            sorted(given)[0], f"profile {profile.name} has no online policies (5.14+)"
        )
    return str(policy), ratio, numa_aware


def _check_boot_allocations(spec: MachineSpec, image_key: str) -> None:
    """The kernel image and the per-node boot allocations must fit in boot RAM."""
    img_s, img_e = spec.kernel_image_start, spec.kernel_image_start + spec.kernel_image_size
    if not any(s <= img_s and img_e <= e for s, e, _n in spec.boot_ram):
        raise MachineError(
            image_key,
            f"the kernel image [{img_s:#x}, {img_e:#x}) does not fit in one boot RAM range",
        )
    if spec.kernel_image_layout is not None:
        end = img_s + spec.kernel_image_layout[-1][1]
        if not any(s <= img_s and end <= e for s, e, _n in spec.boot_ram):
            raise MachineError(
                "kernel.image_layout",
                f"the kernel image's sections [{img_s:#x}, {end:#x}) do not fit in one "
                "boot RAM range",
            )
    ram: dict[int, int] = {}
    for s, e, nid in spec.boot_ram:
        node = spec.node(nid)
        if spec.movable_node and any(hs <= s and e <= he for hs, he in node.hotplug):
            continue  # ZONE_MOVABLE only: the kernel puts no slab there
        ram[nid] = ram.get(nid, 0) + e - s
    for nid, size in sorted(ram.items()):
        if spec.boot_slab_per_node >= size:
            raise MachineError(
                "kernel.boot_slab_per_node",
                f"{units.human_size(spec.boot_slab_per_node)} does not fit in the "
                f"{units.human_size(size)} of boot memory of node {nid}",
            )
