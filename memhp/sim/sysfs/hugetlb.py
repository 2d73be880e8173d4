"""The hugetlb files (mm/hugetlb.c): ``hstate_attrs`` under /sys/kernel/mm/hugepages
(system-wide), ``per_node_hstate_attrs`` under /sys/devices/system/node/nodeN/hugepages,
and the hugetlb sysctls under /proc/sys/vm (hugetlb_sysctl_handler() and friends, of
the default huge page size, 2 MiB)."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from memhp.kernel.kernel import Kernel
from memhp.sim.sysfs.attrs import kstrtoul, proc_dovec
from memhp.sim.sysfs.kernfs import (
    ATTR_RO,
    ATTR_RW,
    ATTR_WO,
    Attr,
    AttrGroup,
    DeviceAttr,
    Dir,
    Entry,
    group_dir,
    static_dir,
)

#: default_hstate: HPAGE_SIZE on x86_64, in kB.
DEFAULT_HSTATE_KB = 2048


@dataclass(frozen=True)
class Hstate:
    """One huge page size, system-wide (``nid`` None: NUMA_NO_NODE) or of one node."""

    nid: int | None
    size_kb: int
    smaller_kb: int | None  # the demote size, None for the smallest


def _set(k: Kernel, h: Hstate, n: int) -> int:
    """__nr_hugepages_store_common() -> set_max_huge_pages()."""
    k.hugetlb.set_max_huge_pages(h.nid, min(n, 1 << 40), h.size_kb)
    return 0


def nr_hugepages_store(k: Kernel, h: Hstate, buf: bytes) -> int:
    """nr_hugepages_store_common(): kstrtoul(buf, 10) (-EINVAL, -ERANGE), then
    set_max_huge_pages() (the calling task has no mempolicy: nr_hugepages_mempolicy
    is the same)."""
    n = kstrtoul(buf, 10)
    return n if n < 0 else _set(k, h, n)


def _count(k: Kernel, h: Hstate) -> str:
    return f"{k.hugetlb.nr_huge_pages(h.nid, h.size_kb)}\n"


def demote_store(k: Kernel, h: Hstate, buf: bytes) -> int:
    """demote_store(): kstrtoul(buf, 10) (-EINVAL, -ERANGE), then demote up to that
    many free huge pages to the next smaller size: of the node, or of the nodes with
    memory in turn (for_each_node_mask_to_free())."""
    n = kstrtoul(buf, 10)
    if n < 0:
        return n
    if h.smaller_kb is not None:
        k.hugetlb.demote(h.nid, h.size_kb, h.smaller_kb, n)
    return 0


def overcommit_store(k: Kernel, h: Hstate, buf: bytes) -> int:
    """nr_overcommit_hugepages_store(): -EINVAL for gigantic pages, kstrtoul(buf, 10)."""
    if h.smaller_kb is not None:  # hstate_is_gigantic()
        return -errno.EINVAL
    n = kstrtoul(buf, 10)
    if n < 0:
        return n
    k.hugetlb.overcommit[h.size_kb] = n
    return 0


def _has_smaller(k: Kernel, h: Hstate) -> bool:
    return h.smaller_kb is not None


_DEMOTE: AttrGroup[Hstate] = {
    "demote": ATTR_WO(demote_store, _has_smaller),
    "demote_size": DeviceAttr(0o644, lambda k, h: f"{h.smaller_kb}kB\n", None, _has_smaller),
}

#: per_node_hstate_attrs + hstate_demote_attrs (5.16+, not the smallest size).
node_hstate_attrs: AttrGroup[Hstate] = {
    **_DEMOTE,
    "free_hugepages": ATTR_RO(_count),
    "nr_hugepages": ATTR_RW(_count, nr_hugepages_store),
    "surplus_hugepages": ATTR_RO(lambda k, h: "0\n"),
}

#: hstate_attrs + hstate_demote_attrs: /sys/kernel/mm/hugepages/hugepages-SIZEkB.
hstate_attrs: AttrGroup[Hstate] = {
    **_DEMOTE,
    "free_hugepages": ATTR_RO(_count),
    "nr_hugepages": ATTR_RW(_count, nr_hugepages_store),
    "nr_hugepages_mempolicy": ATTR_RW(_count, nr_hugepages_store),
    "nr_overcommit_hugepages": ATTR_RW(
        lambda k, h: f"{k.hugetlb.overcommit.get(h.size_kb, 0)}\n", overcommit_store
    ),
    "resv_hugepages": ATTR_RO(lambda k, h: "0\n"),
    "surplus_hugepages": ATTR_RO(lambda k, h: "0\n"),
}


def hugepages_dir(k: Kernel, nid: int | None) -> Dir:
    """One directory per huge page size: hugetlb_sysfs_init() (``nid`` None) or
    hugetlb_register_node()."""
    sizes = k.hugetlb.huge_page_sizes()
    attrs = hstate_attrs if nid is None else node_hstate_attrs
    entries: dict[str, Entry] = {}
    for sz in sizes:
        smaller = max((s for s in sizes if s < sz), default=None)
        entries[f"hugepages-{sz}kB"] = _hstate_entry(k, Hstate(nid, sz, smaller), attrs)
    return static_dir(entries)


def _hstate_entry(k: Kernel, h: Hstate, attrs: AttrGroup[Hstate]) -> Entry:
    return lambda: group_dir(k, h, attrs)


def _sysctl(k: Kernel, overcommit: bool = False) -> Attr:
    h = Hstate(None, DEFAULT_HSTATE_KB, None)

    def write(buf: bytes) -> int:
        vals, err = proc_dovec(buf, 1, None, None, signed=False)
        if err:
            return err
        n = vals[0]
        if overcommit:
            k.hugetlb.overcommit[h.size_kb] = n
            return 0
        return _set(k, h, n)

    def show() -> str:
        if overcommit:
            return f"{k.hugetlb.overcommit.get(h.size_kb, 0)}\n"
        return _count(k, h)

    return Attr(show, write, mode=0o644)


def vm_sysctls(k: Kernel) -> dict[str, Entry]:
    """The hugetlb sysctls of /proc/sys/vm (hugetlb_table[]; 6.1: vm_table[]), for
    the default huge page size."""
    return {
        "nr_hugepages": lambda: _sysctl(k),
        "nr_hugepages_mempolicy": lambda: _sysctl(k),
        "nr_overcommit_hugepages": lambda: _sysctl(k, overcommit=True),
    }
