"""``/proc/kpageflags``: one little-endian u64 of page flags per pfn.

Bit numbers from include/uapi/linux/kernel-page-flags.h and, from 32 on, the
"kernel hacking assistances" of include/linux/kernel-page-flags.h; fs/proc/page.c
(kpageflags_read, stable_page_flags) fills them.
"""

from __future__ import annotations

#: Bytes per pfn in /proc/kpageflags.
KPF_ENTRY_SIZE = 8

KPF_LOCKED = 0
KPF_ERROR = 1
KPF_REFERENCED = 2
KPF_UPTODATE = 3
KPF_DIRTY = 4
KPF_LRU = 5
KPF_ACTIVE = 6
KPF_SLAB = 7
KPF_WRITEBACK = 8
KPF_RECLAIM = 9
KPF_BUDDY = 10
KPF_MMAP = 11
KPF_ANON = 12
KPF_SWAPCACHE = 13
KPF_SWAPBACKED = 14
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
KPF_HUGE = 17
KPF_UNEVICTABLE = 18
KPF_HWPOISON = 19
KPF_NOPAGE = 20
KPF_KSM = 21
KPF_THP = 22
KPF_OFFLINE = 23
KPF_ZERO_PAGE = 24
KPF_IDLE = 25
KPF_PGTABLE = 26
# include/linux/kernel-page-flags.h
KPF_RESERVED = 32
KPF_MLOCKED = 33
KPF_MAPPEDTODISK = 34
KPF_PRIVATE = 35
KPF_PRIVATE_2 = 36
KPF_OWNER_PRIVATE = 37
KPF_ARCH = 38
KPF_UNCACHED = 39
KPF_SOFTDIRTY = 40
KPF_ARCH_2 = 41

#: Bit number -> name without the ``KPF_`` prefix (page-types' names).
KPF_NAMES: dict[int, str] = {
    value: name[4:]
    for name, value in sorted(globals().items())
    if name.startswith("KPF_") and name != "KPF_ENTRY_SIZE" and isinstance(value, int)
}
