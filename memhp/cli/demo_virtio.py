"""``memhp demo --virtio-mem``: a virtio-mem device plugged, onlined and unplugged
with something in the way, on the simulated QEMU guest of machines/virtio-mem.toml.

The hypervisor asks for 1G (QEMU's ``qom-set vm0 requested-size 1G``): the 6.1
driver plugs 2 MiB sub-blocks and adds eight 128 MiB memory blocks ("System RAM
(virtio_mem)" inside "virtio0" in /proc/iomem).  They are onlined (four movable,
four normal), a driver allocates 8 MiB of kernel memory in the last one, and the
hypervisor asks for 0: the driver unplugs everything it can move and keeps the
sub-blocks holding the kernel's pages; ``memhp devices`` and ``memhp why`` say
so.  Once the pages are freed, the driver's retry timer (50 s) finishes the job.
"""

from __future__ import annotations

import argparse

from memhp.abi.layout import MiB
from memhp.abi.paths import PROC_IOMEM, block_dir
from memhp.sim.config import builtin_machine_path, load_machine

MACHINE = "virtio-mem"


def run(args: argparse.Namespace) -> int:
    from memhp.cli.main import run_with_sysfs
    from memhp.sim.machine import SimMachine, WorkloadMix

    spec = load_machine(builtin_machine_path(MACHINE))
    m = SimMachine(spec)
    dev = m.virtio.devices[0]
    n = [0]

    def step(title: str) -> None:
        n[0] += 1
        print(f"\n=== {n[0]}. {title}")

    def memhp(*argv: str) -> None:
        print(f"$ memhp {' '.join(argv)}")
        _, out, err = run_with_sysfs(list(argv), m.sysfs)
        print(out + err, end="")

    def iomem() -> None:
        text = m.sysfs.read(PROC_IOMEM).decode()
        lines = [ln for ln in text.splitlines() if "virtio" in ln]
        print("/proc/iomem:\n" + "\n".join(f"  {ln}" for ln in lines))

    def size() -> None:
        info = dev.memory_device_info()["data"]
        assert isinstance(info, dict)
        print(f"QEMU: vm0 size {info['size'] // MiB}M, requested {info['requested-size'] // MiB}M")

    step(f"boot {spec.name}: a 4G virtio-mem device vm0 on node 1, nothing plugged")
    iomem()
    step("the hypervisor requests 1G (qom-set vm0 requested-size 1G)")
    dev.set_requested_size(1024 * MiB)
    size()
    iomem()
    step("user space onlines the blocks: 32-35 movable, 36-39 normal")
    for b in range(32, 40):
        m.sysfs.write(f"{block_dir(b)}/state", b"online_movable" if b < 36 else b"online_kernel")
    memhp("list", "-o", "RANGE,STATE,ZONES,BLOCK")
    step("a driver allocates 8M of kernel memory in memory39, then the hypervisor requests 0")
    held = m.fill(
        2048, start=0x138000000, end=0x140000000, mix=WorkloadMix(1.0, 0.0), owner="a driver"
    )
    dev.set_requested_size(0)
    size()
    memhp("devices")
    memhp("why", "39")
    step("the driver frees its pages; the virtio_mem retry timer fires 50 s later")
    m.free(held)
    m.advance(50.0)
    size()
    iomem()
    return 0 if dev.size == 0 else 1


__all__ = ["MACHINE", "run"]
