"""The bench's host-side pieces that need no QEMU: cpio, parsers, command lines."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import cast

import pytest

from memhp.abi.fs import Kind
from memhp.bench import vm as vm_mod
from memhp.bench.agent import errno_from_message, parse_capture
from memhp.bench.initramfs import CpioWriter, KernelImage, is_static_elf
from memhp.bench.qmp import MemoryDevice, QmpEvent
from memhp.bench.vm import NodeConfig, Share, VMConfig, parse_size, qemu_args, qemu_size


def read_cpio(data: bytes) -> list[tuple[str, int, bytes]]:
    """A minimal newc reader: (name, mode, data) per entry."""
    out: list[tuple[str, int, bytes]] = []
    off = 0
    while True:
        assert data[off : off + 6] == b"070701"
        f = [int(data[off + 6 + 8 * i : off + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        name_start = off + 110
        name = data[name_start : name_start + namesize - 1].decode()
        off = (name_start + namesize + 3) & ~3
        body = data[off : off + size]
        off = (off + size + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out.append((name, mode, body))


def test_cpio_newc() -> None:
    w = CpioWriter()
    w.file("etc/memhp/agent.sh", b"echo hi\n", 0o755)
    w.symlink("bin/sh", "busybox")
    w.chardev("dev/console", 5, 1)
    entries = {n: (m, b) for n, m, b in read_cpio(w.getvalue())}
    assert stat.S_ISDIR(entries["etc"][0]) and stat.S_ISDIR(entries["etc/memhp"][0])
    assert entries["etc/memhp/agent.sh"] == (stat.S_IFREG | 0o755, b"echo hi\n")
    assert entries["bin/sh"] == (stat.S_IFLNK | 0o777, b"busybox")
    assert stat.S_ISCHR(entries["dev/console"][0])


def test_errno_from_busybox_messages() -> None:
    assert errno_from_message("sh: write error: Invalid argument") == errno.EINVAL
    assert errno_from_message("sh: write error: Device or resource busy\n") == errno.EBUSY
    assert errno_from_message("sh: can't create /sys/x/y: nonexistent directory") == errno.ENOENT
    assert errno_from_message("cat: can't open '/sys/a': Permission denied") == errno.EACCES
    assert errno_from_message("sh: write error: No such device") == errno.ENODEV
    assert errno_from_message("something odd") == errno.EIO


def test_parse_capture() -> None:
    meta = (
        b"directory|755|/sys/devices/system/memory\n"
        b"regular file|444|/sys/devices/system/memory/block_size_bytes\n"
        b"regular file|200|/sys/devices/system/memory/soft_offline_page\n"
        b"regular file|644|/sys/devices/system/memory/uevent\n"
        b"regular file|444|/sys/x/noeol\n"
        b"symbolic link|777|'/sys/devices/system/memory/memory1/node0' -> '../../node/node0'\n"
    )
    data = (
        b"==> /sys/devices/system/memory/block_size_bytes <==\n8000000\n"
        b"\n==> /sys/devices/system/memory/uevent <==\n"
        b"\n==> /sys/x/noeol <==\nabc"
    )
    err = b"tail: can't open '/sys/devices/system/memory/soft_offline_page': Permission denied\n"
    snap = parse_capture(meta + b"@@DATA\n" + data, err)
    assert snap["/sys/devices/system/memory"].kind is Kind.DIR
    assert snap["/sys/devices/system/memory/block_size_bytes"].value == "8000000\n"
    assert snap["/sys/devices/system/memory/uevent"].value == ""
    assert snap["/sys/x/noeol"].value == "abc"
    wo = snap["/sys/devices/system/memory/soft_offline_page"]
    assert wo.value is None and wo.read_errno == errno.EACCES and wo.mode == 0o200
    link = snap["/sys/devices/system/memory/memory1/node0"]
    assert link.kind is Kind.LINK and link.target == "../../node/node0"


def test_sizes() -> None:
    assert parse_size("512M") == 512 << 20
    assert parse_size("1G") == 1 << 30
    assert parse_size("1GiB") == 1 << 30
    assert parse_size(4096) == 4096
    assert qemu_size(8 << 30) == "8G"
    assert qemu_size(1536 << 20) == "1536M"
    with pytest.raises(ValueError):
        parse_size("lots")


def test_qemu_args_reference_machine(tmp_path: Path) -> None:
    cfg = VMConfig(
        nodes=(NodeConfig(2, 1 << 30), NodeConfig(0, 0), NodeConfig(1, 512 << 20)),
        slots=4,
        maxmem=8 << 30,
        memhp_default_state="online_movable",
        movable_node=True,
        memmap_on_memory=True,
        shares=(Share("/work", "/mnt/work", "work"),),
    )
    k = KernelImage(Path("/boot/vmlinuz-6.1.0-56-amd64"), None, "6.1.0-56-amd64")
    args = qemu_args(cfg, k, tmp_path / "initrd", tmp_path, "tcg")
    line = " ".join(args)
    assert "-smp 3" in line
    assert "-m 1536M,slots=4,maxmem=8G" in line
    assert "-object memory-backend-ram,id=m0,size=1G -numa node,nodeid=0,cpus=0-1,memdev=m0" in line
    assert "-numa node,nodeid=1 " in line
    assert "-numa node,nodeid=2,cpus=2,memdev=m2" in line
    assert "-accel tcg" in line
    append = args[args.index("-append") + 1]
    assert append.split() == [
        "console=ttyS0",
        "memhp_default_state=online_movable",
        "movable_node",
        "memory_hotplug.memmap_on_memory=1",
        "memhp.9p=work:/mnt/work",
    ]
    assert "local,path=/work,mount_tag=work,security_model=none,readonly=on" in args
    assert "dist," not in line  # no distances given: QEMU builds no SLIT


def test_qemu_args_slit(tmp_path: Path) -> None:
    """Distances become -numa dist for every ordered pair of nodes (build_slit())."""
    cfg = VMConfig(nodes=(NodeConfig(2, 1 << 30, (10, 21)), NodeConfig(0, 0, (31, 10))))
    k = KernelImage(Path("/boot/vmlinuz-6.1.0-56-amd64"), None, "6.1.0-56-amd64")
    args = qemu_args(cfg, k, tmp_path / "initrd", tmp_path, "tcg")
    dists = [args[i + 1] for i, a in enumerate(args) if a == "-numa" and "dist" in args[i + 1]]
    assert dists == ["dist,src=0,dst=1,val=21", "dist,src=1,dst=0,val=31"]


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        VMConfig(nodes=(NodeConfig(0, 1 << 30),)).validate()
    with pytest.raises(ValueError):
        VMConfig(nodes=(NodeConfig(1, 0), NodeConfig(1, 1 << 30))).validate()


def test_qmp_records() -> None:
    ev = QmpEvent.from_msg(
        {
            "timestamp": {"seconds": 10, "microseconds": 500000},
            "event": "ACPI_DEVICE_OST",
            "data": {"info": {"device": "dimm1", "source": 1, "status": 0}},
        }
    )
    assert ev.device == "dimm1" and ev.timestamp == 10.5
    dev = MemoryDevice.from_qmp(
        {
            "type": "dimm",
            "data": {"memdev": "/objects/hm2", "hotplugged": True, "addr": 4294967296,
                     "hotpluggable": True, "size": 1073741824, "slot": 0, "node": 0,
                     "id": "dimm2"},
        }
    )  # fmt: skip
    assert (dev.id, dev.addr, dev.size, dev.slot) == ("dimm2", 1 << 32, 1 << 30, 0)


def test_static_elf_detection(tmp_path: Path) -> None:
    notelf = tmp_path / "x"
    notelf.write_bytes(b"#!/bin/sh\n")
    assert not is_static_elf(str(notelf))
    if os.path.exists("/bin/busybox"):
        # Debian's busybox-static is static; a dynamic python is not.
        import sys

        assert not is_static_elf(os.path.realpath(sys.executable))


def _boots(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    accels: list[str],
    failures: list[vm_mod.BootError],
) -> tuple[list[str], vm_mod.GuestVM]:
    """GuestVM.start() trying ``accels``, with boots that fail with ``failures`` in
    turn, then work: the accelerators it booted with, and the guest."""
    monkeypatch.setattr(vm_mod, "choose_accels", lambda _requested: list(accels))
    monkeypatch.setattr(vm_mod, "_kvm_verdict_file", lambda: tmp_path / "kvm-verdict")
    monkeypatch.setattr(vm_mod, "build_initramfs", lambda *a: tmp_path / "initrd")
    monkeypatch.setattr(vm_mod, "find_busybox", lambda: tmp_path / "busybox")
    tried: list[str] = []
    left = list(failures)

    def boot(self: vm_mod.GuestVM, kernel: object, initrd: Path, acc: str, t: float) -> None:
        tried.append(acc)
        if left:
            raise left.pop(0)

    monkeypatch.setattr(vm_mod.GuestVM, "_boot", boot)
    guest = vm_mod.GuestVM(VMConfig(), workdir=str(tmp_path), kernel=cast(KernelImage, object()))
    return tried, guest


HUNG = "no agent within 180s (timed out); console: [    1.41] IP idents hash table entries"


@pytest.mark.parametrize(
    "failure",
    [
        vm_mod.GuestStalled(HUNG),
        vm_mod.BootError("QEMU exited rc=0: ... Kernel panic - not syncing"),
    ],
)
def test_a_hung_or_panicked_tcg_boot_is_tried_once_more(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, failure: vm_mod.BootError
) -> None:
    tried, guest = _boots(monkeypatch, tmp_path, ["tcg"], [failure])
    guest.start()
    assert tried == ["tcg", "tcg"]
    assert guest.boot is not None and guest.boot.accel == "tcg"
    assert guest.boot.attempts == [f"tcg: {failure}", "tcg: ok"]
    # twice in a row: it gives up, saying what each attempt did
    tried, guest = _boots(monkeypatch, tmp_path, ["tcg"], [failure, failure])
    with pytest.raises(vm_mod.BootError, match=r"guest did not boot: tcg: .*; tcg: "):
        guest.start()
    assert tried == ["tcg", "tcg"]


def test_a_boot_that_qemu_refuses_is_not_repeated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    refused = vm_mod.BootError("QEMU exited rc=1: bad option")
    tried, guest = _boots(monkeypatch, tmp_path, ["tcg"], [refused])
    with pytest.raises(vm_mod.BootError, match="QEMU exited rc=1"):
        guest.start()
    assert tried == ["tcg"]


def test_a_hung_kvm_boot_goes_on_with_tcg_and_is_remembered(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tried, guest = _boots(monkeypatch, tmp_path, ["kvm", "tcg"], [vm_mod.GuestStalled(HUNG)])
    guest.start()
    assert tried == ["kvm", "tcg"]
    assert guest.boot is not None and guest.boot.accel == "tcg"
    assert (tmp_path / "kvm-verdict").read_text() == "hangs\n"
