"""The virtio-mem driver of Linux 6.1 (drivers/virtio/virtio_mem.c).

The device (QEMU's virtio-mem-pci) offers a region of device memory in device
blocks; the driver plugs and unplugs blocks with requests on a virtqueue until
the plugged size matches the size the hypervisor requests:

* Sub-Block Mode (``in_sbm``: sub-block size max(device block, pageblock) below
  the memory block size).  Memory blocks are added whole with
  add_memory_driver_managed() ("System RAM (virtio_mem)", no firmware memmap
  entry) and plugged/unplugged in sub-blocks; the unplugged sub-blocks of an
  online block are "fake offline" (PageOffline, not managed by the buddy:
  virtio_mem_online_page_cb at onlining, alloc_contig_range() in
  virtio_mem_fake_offline() when unplugging).  Plugging fills partial blocks
  first (virtio_mem_sbm_plug_request), unplugging starts with offline blocks,
  then online ones, movable before kernel, partial before full, highest block
  first (virtio_mem_sbm_unplug_request) and within a block from the last
  sub-block; a block left without plugged sub-blocks is offlined and removed
  (offline_and_remove_memory()).
* Big-Block Mode (big block = max(device block, memory block size)): one big
  block is plugged and added at a time, and unplugged only whole after
  offline_and_remove_memory() (virtio_mem_bbm_*).

virtio_mem_run_wq() is the worker: it runs on probe, on every config change and
when the retry timer fires; -EBUSY/-ETXTBSY/-ENOMEM arm the timer (50 s, doubled
per expiry up to 300 s, back to 50 s after a success), in simulated time
(``k.clock``; :meth:`VirtioMemDriver.run_timers`).

Model notes: the page allocator counts pages per section, so the pages of one
sub-block are not placed; a block's unmovable, pinned and reserved pages are
taken to sit in its lowest plugged sub-blocks (memhp.kernel.mm.page_alloc
LAYOUT_ORDER), which alloc_contig_range() then cannot take.  Fake-offline pages
are an allocation of kind ``"offline"`` (PG_offline) in state RESERVED, not
counted as managed pages.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from memhp.abi.layout import PAGE_SHIFT, PAGEBLOCK_NR_PAGES
from memhp.abi.virtio import (
    VIRTIO_MEM_F_ACPI_PXM,
    VIRTIO_MEM_REQ_PLUG,
    VIRTIO_MEM_REQ_UNPLUG,
    VIRTIO_MEM_REQ_UNPLUG_ALL,
)
from memhp.kernel.arch.x86.mm.numa import memory_add_physaddr_to_nid
from memhp.kernel.drivers.acpi.numa.srat import NUMA_NO_NODE
from memhp.kernel.drivers.base.memory import (
    MemAction,
    MemoryNotify,
    MemState,
    memory_group_register_dynamic,
)
from memhp.kernel.drivers.virtio.virtio_mem_sbm import (
    UNPLUG_ONLINE,
    VIRTIO_MEM_DEFAULT_OFFLINE_THRESHOLD,
    VIRTIO_MEM_RETRY_TIMER_MAX_MS,
    VIRTIO_MEM_RETRY_TIMER_MIN_MS,
    Bbm,
    Sbm,
    VirtioMem,
    VirtioMemSbm,
)
from memhp.kernel.mm.mmzone import ZoneType
from memhp.kernel.mm.page_alloc import PageState
from memhp.kernel.resource import IORESOURCE_BUSY, IORESOURCE_EXCLUSIVE, IORESOURCE_SYSTEM_RAM

if TYPE_CHECKING:
    from memhp.kernel.drivers.virtio.virtio import VirtioDevice
    from memhp.kernel.kernel import Kernel


class VirtioMemDriver(VirtioMemSbm):
    """The virtio_mem driver: its bound devices and their work."""

    def __init__(self, k: Kernel) -> None:
        super().__init__(k)
        self._registered = False

    # ------------------------------------------------------------------ probe
    def probe(self, vdev: VirtioDevice) -> int:
        """virtio_mem_probe() -> virtio_mem_init() -> virtio_mem_init_hotplug()."""
        vm = VirtioMem(vdev)
        cfg = vdev.transport.read_config()
        vm.plugged_size = cfg.plugged_size
        vm.device_block_size = cfg.block_size
        # virtio_mem_translate_node_id(): pxm_to_node() with VIRTIO_MEM_F_ACPI_PXM
        vm.nid = NUMA_NO_NODE
        if vdev.features >> VIRTIO_MEM_F_ACPI_PXM & 1:
            vm.nid = self.k.srat.pxm_to_node(cfg.node_id)
        vm.addr = cfg.addr
        vm.region_size = cfg.region_size
        if vm.nid == NUMA_NO_NODE:  # (the lowest address decides)
            vm.nid = memory_add_physaddr_to_nid(self.k, vm.addr)
        self._info(vm, f"start address: {vm.addr:#x}")
        self._info(vm, f"region size: {vm.region_size:#x}")
        self._info(vm, f"device block size: {vm.device_block_size:#x}")
        self._info(vm, f"nid: {vm.nid}")
        mbs = self.mb_size
        vm.offline_threshold = max(2 * mbs, VIRTIO_MEM_DEFAULT_OFFLINE_THRESHOLD)
        sb = max(vm.device_block_size, PAGEBLOCK_NR_PAGES << PAGE_SHIFT)
        if sb < mbs:
            vm.in_sbm = True
            vm.sb_size = sb
            vm.sbs_per_mb = mbs // sb
            vm.first_id = (vm.addr + mbs - 1) // mbs
        else:
            vm.in_sbm = False
            vm.bb_size = max(vm.device_block_size, mbs)
            vm.first_id = (vm.addr + vm.bb_size - 1) // vm.bb_size
            vm.offline_threshold = max(2 * vm.bb_size, vm.offline_threshold)
        vm.next_id = vm.first_id
        self._info(vm, f"memory block size: {mbs:#x}")
        if vm.in_sbm:
            self._info(vm, f"subblock size: {vm.sb_size:#x}")
        else:
            self._info(vm, f"big block size: {vm.bb_size:#x}")
        # virtio_mem_create_resource(): the parent resource "virtioN" (/proc/iomem),
        # not busy so that add_memory_driver_managed() goes inside it.
        res = self.k.iomem.request_region(
            vm.addr, vm.region_size, vm.name, IORESOURCE_SYSTEM_RAM | IORESOURCE_EXCLUSIVE
        )
        if res is None:
            self.k.log("virtio_mem", f"virtio_mem {vm.name}: could not reserve device region")
            return -errno.EBUSY
        res.flags &= ~IORESOURCE_BUSY
        # memory_group_register_dynamic(): memory comes and goes in memory blocks (SBM)
        # or big blocks (BBM).
        unit = (mbs if vm.in_sbm else vm.bb_size) >> PAGE_SHIFT
        rc = memory_group_register_dynamic(self.k, vm.nid, unit)
        if rc < 0:
            return rc
        vm.mgid = rc
        if vm.plugged_size:
            vm.unplug_all_required = True
            self._info(vm, "unplugging all memory is required")
        if not self._registered:
            self.k.memory.chain.register("virtio_mem", self._notifier)
            self.k.hotplug.online_page_callback = self._online_page_cb
            self._registered = True
        self.vms.append(vm)
        return 0

    def start(self, vdev: VirtioDevice) -> None:
        """virtio_device_ready(), then the first config read and run of the worker."""
        vm = self.vm_of(vdev.name)
        assert vm is not None
        vdev.transport.install_config_handler(lambda: self.config_changed(vm))
        vm.config_changed = True
        self.run_wq(vm)

    def vm_of(self, name: str) -> VirtioMem | None:
        for vm in self.vms:
            if vm.name == name:
                return vm
        return None

    def config_changed(self, vm: VirtioMem) -> None:
        """virtio_mem_config_changed(): flag it and kick the worker."""
        vm.config_changed = True
        self.run_wq(vm)

    def refresh_config(self, vm: VirtioMem) -> None:
        """virtio_mem_refresh_config(): usable region, last usable block, requested size."""
        cfg = vm.vdev.transport.read_config()
        vm.usable_region_size = cfg.usable_region_size
        end = vm.addr + vm.usable_region_size - 1
        if vm.in_sbm:
            vm.last_usable_id = (end + 1) // self.mb_size - 1
        else:
            vm.last_usable_id = (end + 1) // vm.bb_size - 1
        vm.requested_size = cfg.requested_size
        self._info(vm, f"plugged size: {vm.plugged_size:#x}")
        self._info(vm, f"requested size: {vm.requested_size:#x}")

    # ------------------------------------------------------------------ worker
    def run_wq(self, vm: VirtioMem) -> None:
        """virtio_mem_run_wq()."""
        vm.retry_at = None  # hrtimer_cancel()
        if vm.broken:
            return
        vm.wq_active = True
        while True:
            rc = 0
            if vm.unplug_all_required:
                rc = self._req(vm, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0)
            if vm.config_changed:
                vm.config_changed = False
                self.refresh_config(vm)
            if not rc and vm.requested_size != vm.plugged_size:
                if vm.requested_size > vm.plugged_size:
                    rc = self.plug_request(vm, vm.requested_size - vm.plugged_size)
                else:
                    rc = self.unplug_request(vm, vm.plugged_size - vm.requested_size)
            if rc == -errno.EAGAIN:
                continue
            break
        if rc == 0:
            vm.retry_timer_ms = VIRTIO_MEM_RETRY_TIMER_MIN_MS
        elif rc in (-errno.ETXTBSY, -errno.EBUSY, -errno.ENOMEM):
            vm.retry_at = self.k.clock + vm.retry_timer_ms / 1000
        elif rc != -errno.ENOSPC:
            self.k.log(
                "virtio_mem", f"virtio_mem {vm.name}: unknown error, marking device broken: {rc}"
            )
            vm.broken = True
        vm.wq_active = False

    def run_timers(self) -> None:
        """virtio_mem_timer_expired() for every timer due at ``k.clock``: the backoff
        doubles (up to 300 s), then the worker runs (and re-arms or resets it)."""
        for vm in self.vms:
            if vm.retry_at is not None and vm.retry_at <= self.k.clock:
                vm.retry_at = None
                vm.retry_timer_ms = min(vm.retry_timer_ms * 2, VIRTIO_MEM_RETRY_TIMER_MAX_MS)
                self.run_wq(vm)

    def plug_request(self, vm: VirtioMem, diff: int) -> int:
        return self._sbm_plug(vm, diff) if vm.in_sbm else self._bbm_plug(vm, diff)

    def unplug_request(self, vm: VirtioMem, diff: int) -> int:
        return self._sbm_unplug(vm, diff) if vm.in_sbm else self._bbm_unplug(vm, diff)

    def _bbm_plug(self, vm: VirtioMem, diff: int) -> int:
        """virtio_mem_bbm_plug_request(): whole big blocks, unused ones first."""
        nb = diff // vm.bb_size
        if not nb:
            return 0
        while nb:
            unused = self._mbs(vm, Sbm.UNUSED)  # Bbm.UNUSED == 0
            if unused:
                bb = unused[0]
            else:
                if vm.next_id > vm.last_usable_id:
                    return -errno.ENOSPC
                bb = vm.next_id
                vm.next_id += 1
            if not self._could_add(vm, vm.bb_size):
                return -errno.ENOSPC
            vm.mb_state[bb] = Bbm.UNUSED
            rc = self._req(vm, VIRTIO_MEM_REQ_PLUG, bb * vm.bb_size, vm.bb_size)
            if rc:
                return rc
            vm.mb_state[bb] = Bbm.ADDED
            rc = self._add_memory(vm, bb * vm.bb_size, vm.bb_size)
            if rc:
                urc = self._req(vm, VIRTIO_MEM_REQ_UNPLUG, bb * vm.bb_size, vm.bb_size)
                vm.mb_state[bb] = Bbm.PLUGGED if urc else Bbm.UNUSED
                return rc
            nb -= 1
        return 0

    def _bbm_unplug(self, vm: VirtioMem, diff: int) -> int:
        """virtio_mem_bbm_unplug_request(): highest big block first, offline ones first."""
        nb = diff // vm.bb_size
        if not nb:
            return 0
        added = sorted((b for b, s in vm.mb_state.items() if s == Bbm.ADDED), reverse=True)
        k = self.k

        def offline(b: int) -> bool:
            return all(
                m.state is MemState.MEM_OFFLINE
                for m in k.memory.blocks_in_range(b * vm.bb_size, vm.bb_size)
            )

        for pass_online in (False, True):
            for bb in added:
                if not nb or vm.mb_state.get(bb) != Bbm.ADDED:
                    continue
                if offline(bb) == pass_online:
                    continue
                rc = self._remove_memory(vm, bb * vm.bb_size, vm.bb_size, offline=pass_online)
                if rc:
                    if rc == -errno.EBUSY:
                        continue
                    return rc
                rc = self._req(vm, VIRTIO_MEM_REQ_UNPLUG, bb * vm.bb_size, vm.bb_size)
                vm.mb_state[bb] = Bbm.PLUGGED if rc else Bbm.UNUSED
                if rc:
                    return rc
                nb -= 1
            if not UNPLUG_ONLINE:
                break
        return -errno.EBUSY if nb else 0

    # ------------------------------------------------------------------ notifier
    def _notifier(self, action: MemAction, arg: MemoryNotify) -> int:
        """virtio_mem_memory_notifier_cb()."""
        start = arg.start_pfn << PAGE_SHIFT
        size = arg.nr_pages << PAGE_SHIFT
        vm = self._vm_at(start, size)
        return 0 if vm is None else self._notify_vm(vm, action, start, size)

    def _vm_at(self, start: int, size: int) -> VirtioMem | None:
        """The device whose region the range overlaps (a range never spans two)."""
        return next((vm for vm in self.vms if self._overlaps(vm, start, size)), None)

    def _notify_vm(self, vm: VirtioMem, action: MemAction, start: int, size: int) -> int:
        mb = start // self.mb_size
        # A memory block is notified with its vmemmap pages left out: whole block.
        size = self.mb_size
        if action is MemAction.MEM_GOING_OFFLINE:
            if vm.removing:
                return -errno.EBUSY
            a = vm.fake_offline.pop(mb, None)
            if a is not None:  # virtio_mem_fake_offline_going_offline()
                self.k.pa.free(a)
        elif action is MemAction.MEM_GOING_ONLINE:
            if vm.removing:
                return -errno.EBUSY
            if vm.in_sbm and vm.mb_state.get(mb) not in (Sbm.OFFLINE, Sbm.OFFLINE_PARTIAL):
                return -errno.EBUSY  # virtio_mem_sbm_notify_going_online(): NOTIFY_BAD
        elif action is MemAction.MEM_OFFLINE:
            if vm.in_sbm:
                partial = not all(vm.sb_plugged.get(mb, []))
                vm.mb_state[mb] = Sbm.OFFLINE_PARTIAL if partial else Sbm.OFFLINE
            vm.offline_size += size
            if not UNPLUG_ONLINE:
                self.run_wq(vm)
        elif action is MemAction.MEM_ONLINE:
            if vm.in_sbm:
                self._notify_online(vm, mb)
            vm.offline_size -= size
            if not vm.wq_active and self._could_add(vm, vm.offline_threshold // 2):
                self.run_wq(vm)
        elif action is MemAction.MEM_CANCEL_OFFLINE and vm.in_sbm and mb not in vm.fake_offline:
            self._online_unplugged(vm, mb)
        return 0

    def _notify_online(self, vm: VirtioMem, mb: int) -> None:
        """virtio_mem_sbm_notify_online(): the block's state from its zone."""
        sec = mb * self.k.memory.sections_per_block
        movable = int(self.k.pa.zone[sec]) == int(ZoneType.MOVABLE)
        partial = not all(vm.sb_plugged[mb])
        if movable:
            vm.mb_state[mb] = Sbm.MOVABLE_PARTIAL if partial else Sbm.MOVABLE
        else:
            vm.mb_state[mb] = Sbm.KERNEL_PARTIAL if partial else Sbm.KERNEL

    def _online_page_cb(self, pfn: int, nr_pages: int) -> None:
        """virtio_mem_online_page_cb() -> virtio_mem_online_page() (SBM): in
        online_pages_range(), so before the online's init_per_zone_wmark_min(), the
        unplugged sub-blocks stay out of the buddy (fake offline, never onlined) and
        never count as managed; other memory (a DIMM, BBM) is generic_online_page()."""
        start = pfn << PAGE_SHIFT
        vm = self._vm_at(start, nr_pages << PAGE_SHIFT)
        if vm is None or not vm.in_sbm:
            return
        mb = start // self.mb_size
        vm.sb_never_onlined[mb] = {i for i, p in enumerate(vm.sb_plugged[mb]) if not p}
        self._online_unplugged(vm, mb)

    def _online_unplugged(self, vm: VirtioMem, mb: int) -> None:
        n = vm.sb_plugged[mb].count(False) * (vm.sb_size >> PAGE_SHIFT)
        if not n:
            return
        spb = self.k.memory.sections_per_block
        secs = range(mb * spb, (mb + 1) * spb)
        a = self.k.pa.alloc_in_sections(secs, n, PageState.RESERVED, vm.name, "offline", vm.nid)
        self._take(vm, mb, a)


__all__ = ["Bbm", "Sbm", "VirtioMem", "VirtioMemDriver"]
