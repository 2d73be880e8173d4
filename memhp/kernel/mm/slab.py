"""The kernel's own allocations at run time (mm/slub.c, mm/memory.c, mm/shmem.c).

After boot the kernel keeps allocating unmovable pages: slab pages for the
objects a workload creates (xarray nodes of the page cache, inodes, dentries),
page tables of processes (__pte_alloc()), and a steady background of slab churn
(network buffers, timers, per-cpu lists...).  All are GFP_KERNEL: they never
come from ZONE_MOVABLE, and they are made on the node of the CPU that runs the
code (numa_node_id()) with the zonelist's fallback (the page allocator's rules).
Most are freed again (turnover); a fraction stays.

The model is deterministic: the background is a function of simulated time
(``k.clock``) and of a seeded generator, the workload part a function of the
work done.  :class:`KernelAllocations` is ``k.kalloc``; its knobs are attributes.

Calibration (docs/runtime-allocations.md): /proc/meminfo of the real Debian 6.1
guest (QEMU TCG, 2 CPUs) as the bench recorded it for
tests/scenarios/fill-hotadded-offline-each.toml: writing a
256 MiB tmpfs file raised ``Slab`` from 16392 kB to 17076 kB (+684 kB; the model's
xarray nodes, 576-byte radix_tree_node objects, one per 64 pages per level, 7 per
4 KiB page, plus the inode: +600 kB); ``PageTables`` moved by under 50 kB.  What
stays of the background (64 pages/s per CPU, 1.25% kept: 0.8 pages/s per CPU) is an
upper bound from the same run: ``Slab`` grew by under 300 kB over the ~2 minutes of
the other steps.  The churn itself (64 pages/s per CPU, the newest CHURN_SLABS slabs
in use) is a lower bound from where it lands: a block onlined to a new ZONE_NORMAL
of node 0 refuses to go offline (EBUSY) within the 0.65 s of the next seven
commands of the bench's guest (tests/scenarios/random-online-offline*.toml, every
time on 6.1 and 6.12); at 16 pages/s the model left it free in about one run in ten.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from memhp.abi.layout import PAGE_SIZE
from memhp.kernel.machine_runtime import RATE_MAX
from memhp.kernel.mm.page_alloc import Allocation, AllocError, PageState

if TYPE_CHECKING:
    from memhp.kernel.kernel import Kernel

#: Slabs of the background churn a CPU keeps in use (the newest ones), 8 pages each.
CHURN_SLABS = 4
#: sizeof(struct radix_tree_node) (xa_node) on x86_64: the slab object of the page cache.
XA_NODE_SIZE = 576
#: XA_CHUNK_SIZE: page-cache slots per xarray node.
XA_CHUNK_SIZE = 64
#: PTRS_PER_PTE: pages mapped by one page-table page.
PTRS_PER_PTE = 512


class KernelAllocations:
    """Run-time kernel allocations: knobs, the live allocations, the clock they follow."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        spec = k.spec.runtime_allocs  # [kernel.runtime_allocs] of the machine file
        #: On by default (a Linux machine always allocates); off: the model never
        #: allocates kernel memory after boot.
        self.enabled = spec.enabled
        #: Background slab churn, in pages per second of simulated time, per CPU.
        self.rate_pages_per_s = spec.rate
        #: Fraction of background allocations that stays (the rest is freed).
        self.keep = spec.keep
        self.seed = spec.seed
        self._rng = np.random.default_rng(self.seed)
        self._last = k.clock
        #: Background allocations still held (kept ones), oldest first.
        self.kept: list[Allocation] = []
        #: Per CPU, the slabs of the background churn still in use (oldest first):
        #: the newest CHURN_SLABS, each new one pushing out the oldest.
        self.churn: dict[int, deque[Allocation]] = {}
        #: Allocations made for workload objects, by object name.
        self.objects: dict[str, list[Allocation]] = {}

    def configure(
        self,
        enabled: bool | None = None,
        rate_pages_per_s: float | None = None,
        keep: float | None = None,
        seed: int | None = None,
    ) -> None:
        """Set knobs (ValueError for a bad value); a new seed restarts the generator."""
        if rate_pages_per_s is not None and not (0 <= rate_pages_per_s <= RATE_MAX):
            raise ValueError(f"rate must be in [0, {RATE_MAX:g}] pages per second")
        if keep is not None and not (0 <= keep <= 1):
            raise ValueError("keep must be in [0, 1]")
        if seed is not None and seed < 0:
            raise ValueError("seed must be >= 0")
        if enabled is not None:
            self.enabled = enabled
        if rate_pages_per_s is not None:
            self.rate_pages_per_s = rate_pages_per_s
        if keep is not None:
            self.keep = keep
        if seed is not None:
            self.seed = seed
            self._rng = np.random.default_rng(seed)

    def _cpu_nodes(self) -> list[int]:
        """numa_node_id() of each CPU, in CPU order."""
        return [n.id for n in self.k.spec.nodes for _ in n.cpus]

    def _alloc(self, nr: int, owner: str, kind: str, nid: int) -> Allocation | None:
        """A GFP_KERNEL allocation on ``nid`` with fallback; None when memory is short
        (the kernel would reclaim or fail the allocation; the model skips it)."""
        try:
            return self.k.pa.alloc(nr, PageState.UNMOVABLE, owner, kind, nid)[0]
        except AllocError:
            return None

    def advance(self, now: float) -> None:
        """Background allocations from the last call up to simulated time ``now``.

        Per CPU and elapsed second, ``rate_pages_per_s`` slab pages are allocated on
        the CPU's node, in batches of 8 pages (a slab of order 3, as kmalloc-4k and
        radix_tree_node caches use); a ``keep`` fraction of the batches stays for
        good (:attr:`kept`).  The others are the churn of short-lived objects: a
        slab stays in use while its objects live, so the CPU's newest
        :data:`CHURN_SLABS` slabs are held and each new one first frees the oldest
        (to the head of the free lists, where the next allocation finds it again).
        The slabs in use thus follow the zonelist: a zone that becomes the first
        choice of the CPU's node (a block onlined to ZONE_NORMAL on a node that had
        only DMA32) holds some of them within a second, and such a block cannot be
        offlined (slab pages are unmovable: has_unmovable_pages(), -EBUSY), as the
        real kernel refuses it (tests/scenarios/random-online-offline.toml)."""
        dt = now - self._last
        self._last = now
        if not self.enabled or dt <= 0 or self.rate_pages_per_s <= 0:
            return
        for cpu, nid in enumerate(self._cpu_nodes()):
            batches = int(self._rng.poisson(self.rate_pages_per_s * dt / 8))
            kept = int(self._rng.binomial(batches, self.keep)) if batches else 0
            for _ in range(kept):
                a = self._alloc(8, f"slab (kmalloc, cpu {cpu})", "slab", nid)
                if a is not None:
                    self.kept.append(a)
            pool = self.churn.get(cpu)
            if pool is None:
                pool = self.churn[cpu] = deque()
            # (older batches than the newest CHURN_SLABS would be freed again within
            # this call: only where the newest land matters)
            for _ in range(min(batches - kept, CHURN_SLABS)):
                if len(pool) >= CHURN_SLABS:
                    old = pool.popleft()
                    if old.id in self.k.pa.allocs:
                        self.k.pa.free(old)
                a = self._alloc(8, f"slab (cpu {cpu})", "slab", nid)
                if a is not None:
                    pool.append(a)

    def shmem_file(self, name: str, nr_pages: int, nid: int) -> list[Allocation]:
        """The kernel objects of a tmpfs file of ``nr_pages`` pages written on ``nid``:
        its inode and dentry (shmem_get_inode(), d_alloc()) and the xarray nodes of
        its page cache (xas_create(): one node per XA_CHUNK_SIZE pages per level)."""
        if not self.enabled:
            return []
        nodes = 0
        n = nr_pages
        while n > 1:
            n = -(-n // XA_CHUNK_SIZE)
            nodes += n
        pages = max(1, math.ceil(nodes / (PAGE_SIZE // XA_NODE_SIZE)))
        out = [
            a
            for a in (
                self._alloc(1, f"slab (shmem_inode_cache, dentry: {name})", "slab", nid),
                self._alloc(pages, f"slab (radix_tree_node: {name})", "slab", nid),
            )
            if a is not None
        ]
        self.objects.setdefault(name, []).extend(out)
        return out

    def process_page_tables(self, name: str, nr_pages: int, nid: int) -> list[Allocation]:
        """Page tables of a process mapping ``nr_pages`` pages (__pte_alloc(),
        __pmd_alloc(): one PTE page per PTRS_PER_PTE pages, one PMD page per GiB)."""
        if not self.enabled:
            return []
        pages = -(-nr_pages // PTRS_PER_PTE) + -(-nr_pages // (PTRS_PER_PTE * PTRS_PER_PTE)) + 1
        a = self._alloc(pages, f"page tables ({name})", "pagetable", nid)
        out = [a] if a is not None else []
        self.objects.setdefault(name, []).extend(out)
        return out

    def allocation_ids(self) -> set[int]:
        """Ids of the live allocations made here (kept background ones, workload objects)."""
        ids = {a.id for a in self.kept}
        ids.update(a.id for pool in self.churn.values() for a in pool)
        ids.update(a.id for objs in self.objects.values() for a in objs)
        return {i for i in ids if i in self.k.pa.allocs}

    def release(self, name: str) -> None:
        """The object is gone (file removed, process exited): its kernel pages are freed."""
        for a in self.objects.pop(name, []):
            if a.id in self.k.pa.allocs:
                self.k.pa.free(a)
