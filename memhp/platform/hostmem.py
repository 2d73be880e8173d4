"""QEMU 7.2's memory backends (backends/hostmem.c, hostmem-ram.c, hostmem-memfd.c,
hostmem-file.c): their QOM properties as ``qom-get``, ``qom-set`` and
``query-memdev`` see them.

A backend is created by ``object-add`` (or ``-object`` on the command line) and
completed at once (host_memory_backend_memory_complete()): its RAM block exists
from then on (host_memory_backend_mr_inited()), so the setters that refuse to
change an initialised backend refuse every ``qom-set``:

- ``size``: "cannot change property size of TYPE " (host_memory_backend_set_size(),
  with its trailing space); ``share`` and ``reserve``: "cannot change property
  value"; a file backend's ``mem-path``, ``align``, ``pmem`` and ``readonly`` and a
  memfd's ``hugetlbsize`` name the property and the type.
- ``merge`` and ``dump`` madvise() the block and take the value; ``prealloc`` on
  preallocates it (off after on changes nothing), refused while ``reserve`` is off;
  ``policy`` and ``host-nodes`` only change the fields (the block stays bound as it
  was); ``seal``, ``hugetlb``, ``discard-data``, ``prealloc-threads`` (not 0) and
  ``x-use-canonical-path-for-ramblock-id`` are plain fields.
- Defaults (host_memory_backend_init(), memfd_backend_instance_init()): merge and
  dump follow the machine's ``mem-merge`` and ``dump-guest-core`` (on), reserve on,
  prealloc-threads the machine's CPUs, share on for memfd (off otherwise), seal on,
  policy ``default``, no host nodes.

query-memdev (qmp_query_memdev(): object_child_foreach() over ``/objects``, each
backend prepended) lists them in the reverse of the container's GHashTable order
(:mod:`memhp.platform.glib_ghash`).

Pure model: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memhp.platform.glib_ghash import GHashTable
from memhp.platform.qerror import QemuError

KiB, MiB = 1 << 10, 1 << 20

#: QEMU_VMALLOC_ALIGN on an x86-64 Linux host: anonymous RAM blocks are 2 MiB aligned.
QEMU_VMALLOC_ALIGN = 2 * MiB
#: The host's base page size (qemu_real_host_page_size()).
HOST_PAGE_SIZE = 4 * KiB
#: MAX_NODES of QEMU (include/sysemu/numa.h): host-nodes are below it.
MAX_NODES = 128
#: HostMemPolicy (qapi/machine.json).
HOST_MEM_POLICIES = ("default", "preferred", "bind", "interleave")

#: Backend types object-add accepts (qapi/qom.json, ObjectOptions of QEMU 7.2).
BACKEND_TYPES = ("memory-backend-ram", "memory-backend-memfd", "memory-backend-file")
#: MemoryBackendProperties, the optional properties of every backend type.
BACKEND_PROPS: dict[str, str] = {
    "size": "size",
    "dump": "bool",
    "host-nodes": "list",
    "merge": "bool",
    "policy": "str",
    "prealloc": "bool",
    "prealloc-threads": "uint",
    "prealloc-context": "str",
    "share": "bool",
    "reserve": "bool",
    "x-use-canonical-path-for-ramblock-id": "bool",
}
#: Each type's own properties: (required, optional) (MemoryBackendMemfdProperties,
#: MemoryBackendFileProperties; memory-backend-ram has none).
BACKEND_TYPE_PROPS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "memory-backend-ram": ({}, {}),
    "memory-backend-memfd": ({}, {"hugetlb": "bool", "hugetlbsize": "size", "seal": "bool"}),
    "memory-backend-file": (
        {"mem-path": "str"},
        {"align": "size", "discard-data": "bool", "pmem": "bool", "readonly": "bool"},
    ),
}
#: Setters that refuse an initialised backend with "cannot change property value".
_FIXED_PLAIN = frozenset({"share", "reserve"})
#: Type-specific setters that refuse an initialised backend, naming the property
#: (hostmem-file.c: pmem and readonly with a trailing full stop).
_FIXED_NAMED = {
    "mem-path": "cannot change property 'mem-path' of {t}",
    "align": "cannot change property 'align' of {t}",
    "pmem": "cannot change property 'pmem' of {t}.",
    "readonly": "cannot change property 'readonly' of {t}.",
    "hugetlbsize": "cannot change property value",
}


#: Each class's own properties in the order its class_init adds them (name, QOM
#: type): host_memory_backend_class_init(), memfd_backend_class_init() (hugetlb and
#: hugetlbsize when the host's memfd supports MFD_HUGETLB), file_backend_class_init()
#: (pmem: Debian's QEMU is built with libpmem); memory-backend-ram adds none.
_CLASS_PROPS: dict[str, tuple[tuple[str, str], ...]] = {
    "memory-backend": (
        ("merge", "bool"),
        ("dump", "bool"),
        ("prealloc", "bool"),
        ("prealloc-threads", "int"),
        ("prealloc-context", "link<thread-context>"),
        ("size", "int"),
        ("host-nodes", "int"),
        ("policy", "HostMemPolicy"),
        ("share", "bool"),
        ("reserve", "bool"),
        ("x-use-canonical-path-for-ramblock-id", "bool"),
    ),
    "memory-backend-memfd": (("hugetlb", "bool"), ("hugetlbsize", "int"), ("seal", "bool")),
    "memory-backend-file": (
        ("discard-data", "bool"),
        ("mem-path", "string"),
        ("align", "int"),
        ("pmem", "bool"),
        ("readonly", "bool"),
    ),
}


def backend_align(qom_type: str, props: dict[str, Any]) -> int:
    """memory_region_get_alignment() of the backend's RAM block."""
    if qom_type == "memory-backend-memfd":
        if props.get("hugetlb"):
            return int(props.get("hugetlbsize") or 2 * MiB)
        return HOST_PAGE_SIZE
    if qom_type == "memory-backend-file":
        # file_ram_alloc(): the file's page size (a tmpfs or disk file: the host's
        # base page; a hugetlbfs path is not modelled), or a larger ``align``
        return max(HOST_PAGE_SIZE, int(props.get("align") or 0))
    return QEMU_VMALLOC_ALIGN


def check_backend_props(qom_type: str, props: dict[str, Any]) -> None:
    """What the property setters refuse in the properties object-add gives
    (object_set_properties_from_qdict(): before the id is added to /objects)."""
    if "size" in props and int(props["size"]) == 0:  # host_memory_backend_set_size()
        raise QemuError(f"property 'size' of {qom_type} doesn't take value '0'")
    policy = props.get("policy", "default")
    if policy not in HOST_MEM_POLICIES:
        raise QemuError(f"Parameter 'policy' does not accept value '{policy}'")
    nodes = props.get("host-nodes", [])
    for n in nodes:
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < 1 << 16:
            raise QemuError("Invalid parameter type for 'host-nodes', expected: integer")
    for n in nodes:
        if n >= MAX_NODES:
            raise QemuError(f"Invalid host-nodes value: {n}")
    if props.get("prealloc") and props.get("reserve") is False:
        raise QemuError("'prealloc=on' and 'reserve=off' are incompatible")
    if props.get("prealloc-threads") == 0:
        raise QemuError(f"property 'prealloc-threads' of {qom_type} doesn't take value '0'")


def check_backend_complete(props: dict[str, Any]) -> None:
    """host_memory_backend_memory_complete()'s checks before any RAM is allocated."""
    if int(props.get("size", 0)) == 0:  # (not given)
        raise QemuError("can't create backend with size 0")
    policy = props.get("policy", "default")
    nodes = props.get("host-nodes", [])
    if nodes and policy == "default":
        raise QemuError(
            "host-nodes must be empty for policy default, or you should explicitly "
            "specify a policy other than default"
        )
    if not nodes and policy != "default":
        raise QemuError(f"host-nodes must be set for policy {policy}")


@dataclass
class Backend:
    """A memory backend object (/objects/ID): its RAM block's size and alignment and
    its QOM properties (what object-add gave, over the defaults)."""

    id: str
    qom_type: str
    size: int
    align: int = QEMU_VMALLOC_ALIGN
    props: dict[str, Any] = field(default_factory=dict)
    #: The machine's CPUs: prealloc-threads' default.
    cpus: int = 1

    def _defaults(self) -> dict[str, Any]:
        memfd = self.qom_type == "memory-backend-memfd"
        d: dict[str, Any] = {
            "type": self.qom_type,
            "merge": True,
            "dump": True,
            "prealloc": False,
            "prealloc-threads": self.cpus,
            "prealloc-context": "",
            "size": self.size,
            "host-nodes": [],
            "policy": "default",
            "share": memfd,
            "reserve": True,
            "x-use-canonical-path-for-ramblock-id": False,
        }
        if memfd:
            d |= {"hugetlb": False, "hugetlbsize": 0, "seal": True}
        elif self.qom_type == "memory-backend-file":
            d |= {"discard-data": False, "mem-path": "", "align": 0, "pmem": False}
            d |= {"readonly": False}
        return d

    def values(self) -> dict[str, Any]:
        """Every property's value as qom-get answers it."""
        v = self._defaults()
        v.update((k, val) for k, val in self.props.items() if k in v and k != "size")
        v["host-nodes"] = sorted(set(v["host-nodes"]))  # a bitmap, read in order
        return v

    def get(self, name: str) -> Any:
        """object_property_get_qobject() of one property."""
        v = self.values()
        if name not in v:
            raise QemuError(f"Property '{self.qom_type}.{name}' not found")
        return v[name]

    def kind_of(self, name: str) -> str:
        """The visitor type a qom-set of ``name`` is checked against."""
        if name == "policy":
            return "str"
        if name == "host-nodes":
            return "list"
        if name == "type":
            return "any"
        return {**BACKEND_PROPS, **BACKEND_TYPE_PROPS[self.qom_type][1], "mem-path": "str"}.get(
            name, "any"
        )

    def set(self, name: str, value: Any) -> None:
        """object_property_set_qobject() on a completed backend (type-checked)."""
        v = self.values()
        if name not in v:
            raise QemuError(f"Property '{self.qom_type}.{name}' not found")
        if name == "type":
            raise QemuError(f"Property '{self.qom_type}.type' is not writable")
        if name == "size":
            raise QemuError(f"cannot change property size of {self.qom_type} ")
        if name in _FIXED_PLAIN:
            raise QemuError("cannot change property value")
        if name in _FIXED_NAMED:
            raise QemuError(_FIXED_NAMED[name].format(t=self.qom_type))
        if name == "prealloc":
            if value and not v["reserve"]:
                raise QemuError("'prealloc=on' and 'reserve=off' are incompatible")
            if not value:  # (off after on: nothing to undo)
                return
        elif name == "prealloc-threads" and value == 0:
            raise QemuError(
                f"property 'prealloc-threads' of {self.qom_type} doesn't take value '0'"
            )
        elif name == "policy" and value not in HOST_MEM_POLICIES:
            raise QemuError(f"Parameter 'policy' does not accept value '{value}'")
        elif name == "host-nodes":
            check_backend_props(self.qom_type, {"host-nodes": value})
            value = sorted(set(v["host-nodes"]) | set(value))  # bitmap_set(): added to
        elif name == "prealloc-context" and value != "":
            raise QemuError(f"Device '{value}' not found", "DeviceNotFound")
        self.props[name] = value

    def class_properties(self) -> list[tuple[str, str]]:
        """(name, type) of the class properties up to ``memory-backend``, each
        class's table walked in its GHashTable order (object_property_iter_next())."""
        own = _CLASS_PROPS.get(self.qom_type, ())
        out: list[tuple[str, str]] = []
        for props in (own, _CLASS_PROPS["memory-backend"]):
            table = GHashTable()
            for name, _ in props:
                table.insert(name)
            kinds = dict(props)
            out += [(name, kinds[name]) for name in table]
        return out

    def has_shared_zeropage(self) -> bool:
        """virtio_mem_has_shared_zeropage(): private anonymous memory (no fd, not
        shared) of the host's base page size."""
        return self.qom_type == "memory-backend-ram" and not self.values()["share"]

    def memdev_info(self) -> dict[str, Any]:
        """query_memdev()'s Memdev of this backend."""
        v = self.values()
        return {
            "id": self.id,
            "size": self.size,
            "merge": v["merge"],
            "dump": v["dump"],
            "prealloc": v["prealloc"],
            "share": v["share"],
            "reserve": v["reserve"],
            "host-nodes": v["host-nodes"],
            "policy": v["policy"],
        }


__all__ = [
    "BACKEND_PROPS",
    "BACKEND_TYPES",
    "BACKEND_TYPE_PROPS",
    "HOST_MEM_POLICIES",
    "HOST_PAGE_SIZE",
    "QEMU_VMALLOC_ALIGN",
    "Backend",
    "backend_align",
    "check_backend_complete",
    "check_backend_props",
]
