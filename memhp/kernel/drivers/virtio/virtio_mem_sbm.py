"""Sub-Block Mode of the virtio-mem driver (drivers/virtio/virtio_mem.c, 6.1): the
driver's state (struct virtio_mem), its requests, and the SBM plug/unplug paths with
the fake offlining of sub-blocks.  Split from :mod:`.virtio_mem` (the probe, the
worker, Big-Block Mode and the memory notifier) only to keep modules short; the
description of the whole driver is there.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

from memhp.abi.layout import PAGE_SHIFT
from memhp.abi.virtio import (
    VIRTIO_MEM_REQ_PLUG,
    VIRTIO_MEM_REQ_UNPLUG,
    VIRTIO_MEM_REQ_UNPLUG_ALL,
    VIRTIO_MEM_RESOURCE_NAME,
    VIRTIO_MEM_RESP_ACK,
    VIRTIO_MEM_RESP_BUSY,
    VIRTIO_MEM_RESP_ERROR,
    VIRTIO_MEM_RESP_NACK,
)
from memhp.kernel.mm import memory_hotplug as mh
from memhp.kernel.mm.migrate import migrate_section
from memhp.kernel.mm.mmzone import ZoneType
from memhp.kernel.mm.page_alloc import Allocation, AllocError, PageState
from memhp.kernel.mm.page_isolation import set_isolate

if TYPE_CHECKING:
    from memhp.kernel.drivers.virtio.virtio import VirtioDevice
    from memhp.kernel.kernel import Kernel

VIRTIO_MEM_RETRY_TIMER_MIN_MS = 50000
VIRTIO_MEM_RETRY_TIMER_MAX_MS = 300000
VIRTIO_MEM_DEFAULT_OFFLINE_THRESHOLD = 1 << 30
#: Module parameter unplug_online (default true).
UNPLUG_ONLINE = True


class Sbm(IntEnum):
    """enum virtio_mem_sbm_mb_state (the order matters: PARTIAL - 1 is the full state)."""

    UNUSED = 0
    PLUGGED = 1
    OFFLINE = 2
    OFFLINE_PARTIAL = 3
    KERNEL = 4
    KERNEL_PARTIAL = 5
    MOVABLE = 6
    MOVABLE_PARTIAL = 7


class Bbm(IntEnum):
    """enum virtio_mem_bbm_bb_state."""

    UNUSED = 0
    PLUGGED = 1
    ADDED = 2
    FAKE_OFFLINE = 3


@dataclass
class VirtioMem:
    """struct virtio_mem: one bound device."""

    vdev: VirtioDevice
    addr: int = 0
    region_size: int = 0
    device_block_size: int = 0
    usable_region_size: int = 0
    plugged_size: int = 0
    requested_size: int = 0
    nid: int = 0
    in_sbm: bool = True
    sb_size: int = 0
    sbs_per_mb: int = 0
    bb_size: int = 0
    first_id: int = 0
    next_id: int = 0
    last_usable_id: int = -1
    #: SBM: memory block id -> state and plugged bitmap; BBM: big block id -> state.
    mb_state: dict[int, int] = field(default_factory=dict)
    sb_plugged: dict[int, list[bool]] = field(default_factory=dict)
    #: Fake-offline pages per memory block (PG_offline, RESERVED, unmanaged).
    fake_offline: dict[int, Allocation] = field(default_factory=dict)
    #: SBM: sub-blocks of an online block kept fake offline since it was onlined
    #: (virtio_mem_online_page(): virtio_mem_set_fake_offline(onlined=false) also sets
    #: PG_dirty, which virtio_mem_fake_online() clears when they are plugged).
    sb_never_onlined: dict[int, set[int]] = field(default_factory=dict)
    offline_size: int = 0
    offline_threshold: int = 0
    unplug_all_required: bool = False
    config_changed: bool = False
    broken: bool = False
    wq_active: bool = False
    removing: bool = False
    retry_timer_ms: int = VIRTIO_MEM_RETRY_TIMER_MIN_MS
    #: When the armed retry timer fires (simulated seconds), None: not armed.
    retry_at: float | None = None
    #: The dynamic memory group (memory_group_register_dynamic(nid, unit_pages)) its
    #: memory is added to with MHP_NID_IS_MGID (the auto-movable policy counts per group).
    mgid: int | None = None

    @property
    def name(self) -> str:
        return self.vdev.name


class VirtioMemSbm:
    """The driver's requests, adding/removing memory and Sub-Block Mode."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.vms: list[VirtioMem] = []

    # ------------------------------------------------------------------ helpers
    def _info(self, vm: VirtioMem, msg: str) -> None:
        """dev_info(&vm->vdev->dev, ...)."""
        self.k.log("virtio_mem", f"virtio_mem {vm.name}: {msg}")

    @property
    def mb_size(self) -> int:
        return self.k.memory.block_size

    def _req(self, vm: VirtioMem, typ: int, addr: int, size: int) -> int:
        """virtio_mem_send_{plug,unplug,unplug_all}_request(): 0 or -errno."""
        if vm.config_changed and typ != VIRTIO_MEM_REQ_UNPLUG_ALL:
            return -errno.EAGAIN
        nb = size // vm.device_block_size
        resp, _ = vm.vdev.transport.send_request(typ, addr, nb)
        if resp == VIRTIO_MEM_RESP_ACK:
            if typ == VIRTIO_MEM_REQ_PLUG:
                vm.plugged_size += size
            elif typ == VIRTIO_MEM_REQ_UNPLUG:
                vm.plugged_size -= size
            else:
                vm.unplug_all_required = False
                vm.plugged_size = 0
                vm.config_changed = True
            return 0
        if resp == VIRTIO_MEM_RESP_NACK:
            return -errno.EAGAIN
        if resp == VIRTIO_MEM_RESP_BUSY:
            return -errno.ETXTBSY
        if resp == VIRTIO_MEM_RESP_ERROR:
            return -errno.EINVAL
        return -errno.ENOMEM

    def _overlaps(self, vm: VirtioMem, start: int, size: int) -> bool:
        return start < vm.addr + vm.region_size and vm.addr < start + size

    # ------------------------------------------------------------------ add/remove
    def _could_add(self, vm: VirtioMem, size: int) -> bool:
        """virtio_mem_could_add_memory()."""
        return vm.offline_size + size <= vm.offline_threshold

    def _add_memory(self, vm: VirtioMem, addr: int, size: int) -> int:
        """virtio_mem_add_memory() -> add_memory_driver_managed()."""
        vm.offline_size += size
        # MHP_NID_IS_MGID: the device's dynamic memory group (auto-movable per group)
        assert vm.mgid is not None
        rc = mh.add_memory_driver_managed(
            self.k, vm.mgid, addr, size, VIRTIO_MEM_RESOURCE_NAME, mgid=True
        )
        if rc:
            vm.offline_size -= size
            self.k.log("virtio_mem", f"virtio_mem {vm.name}: adding memory failed: {rc}")
        return rc

    def _remove_memory(self, vm: VirtioMem, addr: int, size: int, offline: bool) -> int:
        """virtio_mem_{offline_and_,}remove_memory()."""
        if offline:
            rc = mh.offline_and_remove_memory(self.k, addr, size)
        else:
            rc = mh.remove_memory(self.k, addr, size)
        if not rc:
            vm.offline_size -= size
        return rc

    # ------------------------------------------------------------------ SBM plug
    def _sb_addr(self, vm: VirtioMem, mb: int, sb: int) -> int:
        return mb * self.mb_size + sb * vm.sb_size

    def _plug_sb(self, vm: VirtioMem, mb: int, sb: int, count: int) -> int:
        rc = self._req(vm, VIRTIO_MEM_REQ_PLUG, self._sb_addr(vm, mb, sb), count * vm.sb_size)
        if not rc:
            vm.sb_plugged[mb][sb : sb + count] = [True] * count
        return rc

    def _unplug_sb(self, vm: VirtioMem, mb: int, sb: int, count: int) -> int:
        rc = self._req(vm, VIRTIO_MEM_REQ_UNPLUG, self._sb_addr(vm, mb, sb), count * vm.sb_size)
        if not rc:
            vm.sb_plugged[mb][sb : sb + count] = [False] * count
        return rc

    def _mbs(self, vm: VirtioMem, state: Sbm, rev: bool = False) -> list[int]:
        ids = sorted((m for m, s in vm.mb_state.items() if s == state), reverse=rev)
        return ids

    def _sbm_plug(self, vm: VirtioMem, diff: int) -> int:
        """virtio_mem_sbm_plug_request()."""
        nb = [diff // vm.sb_size]
        if not nb[0]:
            return 0
        for st in (Sbm.KERNEL_PARTIAL, Sbm.MOVABLE_PARTIAL, Sbm.OFFLINE_PARTIAL):
            for mb in self._mbs(vm, st):
                rc = self._plug_any_sb(vm, mb, nb)
                if rc or not nb[0]:
                    return rc
        for mb in self._mbs(vm, Sbm.UNUSED):
            if not self._could_add(vm, self.mb_size):
                return -errno.ENOSPC
            rc = self._plug_and_add_mb(vm, mb, nb)
            if rc or not nb[0]:
                return rc
        while nb[0]:
            if not self._could_add(vm, self.mb_size):
                return -errno.ENOSPC
            if vm.next_id > vm.last_usable_id:
                return -errno.ENOSPC
            mb = vm.next_id
            vm.next_id += 1
            vm.mb_state[mb] = Sbm.UNUSED
            vm.sb_plugged[mb] = [False] * vm.sbs_per_mb
            rc = self._plug_and_add_mb(vm, mb, nb)
            if rc:
                return rc
        return 0

    def _plug_and_add_mb(self, vm: VirtioMem, mb: int, nb: list[int]) -> int:
        """virtio_mem_sbm_plug_and_add_mb()."""
        count = min(nb[0], vm.sbs_per_mb)
        rc = self._plug_sb(vm, mb, 0, count)
        if rc:
            return rc
        vm.mb_state[mb] = Sbm.OFFLINE if count == vm.sbs_per_mb else Sbm.OFFLINE_PARTIAL
        rc = self._add_memory(vm, mb * self.mb_size, self.mb_size)
        if rc:
            new = Sbm.UNUSED
            if self._unplug_sb(vm, mb, 0, count):
                new = Sbm.PLUGGED
            vm.mb_state[mb] = new
            return rc
        nb[0] -= count
        return 0

    def _plug_any_sb(self, vm: VirtioMem, mb: int, nb: list[int]) -> int:
        """virtio_mem_sbm_plug_any_sb(): fill the block's unplugged sub-blocks."""
        old = vm.mb_state[mb]
        bits = vm.sb_plugged[mb]
        while nb[0]:
            try:
                sb = bits.index(False)
            except ValueError:
                break
            count = 1
            while count < nb[0] and sb + count < vm.sbs_per_mb and not bits[sb + count]:
                count += 1
            rc = self._plug_sb(vm, mb, sb, count)
            if rc:
                return rc
            nb[0] -= count
            if old != Sbm.OFFLINE_PARTIAL:
                self._fake_online(vm, mb, count)
                vm.sb_never_onlined.get(mb, set()).difference_update(range(sb, sb + count))
        if all(bits):
            vm.mb_state[mb] = old - 1
        return 0

    # ------------------------------------------------------------------ fake offline
    def _busy_sbs(self, vm: VirtioMem, mb: int) -> int:
        """How many of the block's lowest plugged sub-blocks hold pages that
        alloc_contig_range() cannot move (unmovable, pinned, reserved)."""
        pa = self.k.pa
        first = mb * self.k.memory.sections_per_block
        held = sum(
            n
            for a, _s, n in pa.owners_in(range(first, first + self.k.memory.sections_per_block))
            if a.kind != "offline"
            and a.state in (PageState.UNMOVABLE, PageState.PINNED, PageState.RESERVED)
        )
        sb_pages = vm.sb_size >> PAGE_SHIFT
        return -(-held // sb_pages)

    def _fake_offline(self, vm: VirtioMem, mb: int, sb: int, count: int) -> int:
        """virtio_mem_fake_offline(): alloc_contig_range() of the sub-blocks (-EBUSY
        when they hold pages that cannot move), then PG_offline and unmanaged."""
        bits = vm.sb_plugged[mb]
        plugged_below = sum(1 for i in range(sb) if bits[i])
        if plugged_below < self._busy_sbs(vm, mb):
            return -errno.EBUSY
        k, pa = self.k, self.k.pa
        spb = k.memory.sections_per_block
        secs = list(range(mb * spb, (mb + 1) * spb))
        need = (count * vm.sb_size) >> PAGE_SHIFT
        if sum(int(pa.counts[PageState.FREE, s]) for s in secs) < need:
            for s in secs:  # migrate the movable pages out of the range
                set_isolate(pa, s, True)
                moved, _ = migrate_section(pa, s)
                k.clock += moved * k.hotplug.migrate_page_cost_s
                set_isolate(pa, s, False)
        try:
            a = pa.alloc_in_sections(secs, need, PageState.RESERVED, vm.name, "offline", vm.nid)
        except AllocError:
            return -errno.EBUSY
        self._take(vm, mb, a)
        return 0

    def _take(self, vm: VirtioMem, mb: int, a: Allocation) -> None:
        """PG_offline pages leave the managed count (adjust_managed_page_count)."""
        pa = self.k.pa
        for sec, n in a.extents.items():
            zone = self.k.pgdats[int(pa.nid[sec])].zone(ZoneType(int(pa.zone[sec])))
            pa.adjust_managed_page_count(zone, -n)
        old = vm.fake_offline.get(mb)
        if old is None:
            vm.fake_offline[mb] = a
        else:
            pa.absorb(old, a)

    def _fake_online(self, vm: VirtioMem, mb: int, count: int) -> None:
        """virtio_mem_fake_online(): the pages go back to the buddy (managed again)."""
        a = vm.fake_offline.get(mb)
        if a is None:
            return
        n = (count * vm.sb_size) >> PAGE_SHIFT
        for sec in sorted(a.extents):
            take = min(n, a.extents[sec])
            self.k.pa.free(a, sec, take)
            n -= take
            if not n:
                break
        if not a.extents:
            del vm.fake_offline[mb]

    # ------------------------------------------------------------------ SBM unplug
    def _sbm_unplug(self, vm: VirtioMem, diff: int) -> int:
        """virtio_mem_sbm_unplug_request()."""
        nb = [diff // vm.sb_size]
        if not nb[0]:
            return 0
        order = (
            Sbm.OFFLINE_PARTIAL,
            Sbm.OFFLINE,
            Sbm.MOVABLE_PARTIAL,
            Sbm.KERNEL_PARTIAL,
            Sbm.MOVABLE,
            Sbm.KERNEL,
        )
        for i, st in enumerate(order):
            for mb in self._mbs(vm, st, rev=True):
                if vm.mb_state.get(mb) != st:
                    continue
                rc = self._unplug_any_sb(vm, mb, nb)
                if rc or not nb[0]:
                    return rc
            if not UNPLUG_ONLINE and i == 1:
                return 0
        return -errno.EBUSY if nb[0] else 0

    def _unplug_any_sb(self, vm: VirtioMem, mb: int, nb: list[int]) -> int:
        st = vm.mb_state[mb]
        if st in (Sbm.OFFLINE, Sbm.OFFLINE_PARTIAL):
            return self._unplug_any_sb_offline(vm, mb, nb)
        return self._unplug_any_sb_online(vm, mb, nb)

    def _unplug_any_sb_offline(self, vm: VirtioMem, mb: int, nb: list[int]) -> int:
        """virtio_mem_sbm_unplug_any_sb_offline() -> _raw(): from the last sub-block."""
        bits = vm.sb_plugged[mb]
        sb = vm.sbs_per_mb - 1
        while nb[0] and sb >= 0:
            while sb >= 0 and not bits[sb]:
                sb -= 1
            if sb < 0:
                break
            count = 1
            while count < nb[0] and sb - count >= 0 and bits[sb - count]:
                count += 1
            rc = self._unplug_sb(vm, mb, sb - count + 1, count)
            if rc:
                return rc
            nb[0] -= count
            sb -= count
        if not all(bits):
            vm.mb_state[mb] = Sbm.OFFLINE_PARTIAL
        if not any(bits):
            vm.mb_state[mb] = Sbm.UNUSED
            rc = self._remove_memory(vm, mb * self.mb_size, self.mb_size, offline=False)
            assert rc == 0, rc  # BUG_ON(rc)
        return 0

    def _unplug_sb_online(self, vm: VirtioMem, mb: int, sb: int, count: int) -> int:
        """virtio_mem_sbm_unplug_sb_online()."""
        old = vm.mb_state[mb]
        rc = self._fake_offline(vm, mb, sb, count)
        if rc:
            return rc
        rc = self._unplug_sb(vm, mb, sb, count)
        if rc:
            self._fake_online(vm, mb, count)
            return rc
        if old == Sbm.KERNEL:
            vm.mb_state[mb] = Sbm.KERNEL_PARTIAL
        elif old == Sbm.MOVABLE:
            vm.mb_state[mb] = Sbm.MOVABLE_PARTIAL
        return 0

    def _unplug_any_sb_online(self, vm: VirtioMem, mb: int, nb: list[int]) -> int:
        """virtio_mem_sbm_unplug_any_sb_online(): whole block first, else from the end."""
        bits = vm.sb_plugged[mb]
        done = False
        if nb[0] >= vm.sbs_per_mb and all(bits):
            rc = self._unplug_sb_online(vm, mb, 0, vm.sbs_per_mb)
            if not rc:
                nb[0] -= vm.sbs_per_mb
                done = True
            elif rc != -errno.EBUSY:
                return rc
        if not done:
            sb = vm.sbs_per_mb - 1
            while sb >= 0 and nb[0]:
                while sb >= 0 and not bits[sb]:
                    sb -= 1
                if sb < 0:
                    break
                rc = self._unplug_sb_online(vm, mb, sb, 1)
                sb -= 1
                if rc == -errno.EBUSY:
                    continue
                if rc:
                    return rc
                nb[0] -= 1
        if not any(bits):
            rc = self._remove_memory(vm, mb * self.mb_size, self.mb_size, offline=True)
            if not rc:
                vm.mb_state[mb] = Sbm.UNUSED
        return 0

    # ------------------------------------------------------------------ BBM
