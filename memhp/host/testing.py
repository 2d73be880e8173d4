"""Synthetic sysfs roots for tests, benchmarks and demos.

:func:`make_snapshot` builds the memory part of a sysfs tree (blocks, nodes, ACPI
PNP0C80 devices with their ``physical_node*``/``firmware_node`` links, firmware
memmap) as a :data:`~memhp.abi.tree.Snapshot`; :func:`add_acpi_devices` adds the
ACPI device directories a reference trace only names.  :class:`FakeKernel` is a
small behaving :class:`~memhp.abi.fs.SysfsFS` (state/online stores, eject,
``/proc/kpageflags``) for exercising online/offline/remove without the model.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from memhp.abi.fs import Kind, Stat, normpath, oserror, resolve_link
from memhp.abi.tree import Entry, Snapshot

MEM = "/sys/devices/system/memory"
NODE = "/sys/devices/system/node"
ACPI_BUS = "/sys/bus/acpi/devices"
ACPI_PARENT = "/sys/devices/LNXSYSTM:00/LNXSYBUS:00/PNP0A06:04"


@dataclass
class FakeBlock:
    index: int
    state: str = "online"
    valid_zones: str = "Normal"
    node: int | None = 0
    removable: str = "1"
    device: str | None = None  # ACPI device name (PNP0C80:NN)


def _file(value: str, mode: int = 0o444) -> Entry:
    return Entry(Kind.FILE, value=value, mode=mode)


def _dir() -> Entry:
    return Entry(Kind.DIR, mode=0o755)


def _link(target: str) -> Entry:
    return Entry(Kind.LINK, target=target, mode=0o777)


def make_snapshot(
    blocks: Iterable[FakeBlock],
    block_size: int = 0x8000000,
    with_valid_zones: bool = True,
    firmware_memory: dict[int, tuple[str, str]] | None = None,
) -> Snapshot:
    """A sysfs snapshot holding ``blocks`` (and their nodes and devices)."""
    snap: Snapshot = {
        "/sys": _dir(),
        "/sys/devices": _dir(),
        "/sys/devices/system": _dir(),
        MEM: _dir(),
        f"{MEM}/block_size_bytes": _file(f"{block_size:x}\n"),
        f"{MEM}/auto_online_blocks": _file("offline\n", 0o644),
        NODE: _dir(),
    }
    devices: dict[str, list[int]] = {}
    nodes: set[int] = set()
    for b in blocks:
        d = f"{MEM}/memory{b.index}"
        snap[d] = _dir()
        snap[f"{d}/state"] = _file(b.state + "\n", 0o644)
        snap[f"{d}/online"] = _file(("1" if b.state == "online" else "0") + "\n", 0o644)
        snap[f"{d}/phys_index"] = _file(f"{b.index:08x}\n")
        snap[f"{d}/phys_device"] = _file("0\n")
        snap[f"{d}/removable"] = _file(b.removable + "\n")
        if with_valid_zones:
            snap[f"{d}/valid_zones"] = _file(b.valid_zones + "\n")
        if b.node is not None:
            nodes.add(b.node)
            snap[f"{d}/node{b.node}"] = _link(f"../../node/node{b.node}")
            snap[f"{NODE}/node{b.node}/memory{b.index}"] = _link(f"../../memory/memory{b.index}")
        if b.device:
            devices.setdefault(b.device, []).append(b.index)
            snap[f"{d}/firmware_node"] = _link(
                f"../../../LNXSYSTM:00/LNXSYBUS:00/PNP0A06:04/{b.device}"
            )
    for n in nodes:
        snap[f"{NODE}/node{n}"] = _dir()
    if devices:
        snap["/sys/bus"] = _dir()
        snap["/sys/bus/acpi"] = _dir()
        snap[ACPI_BUS] = _dir()
        for name, idxs in devices.items():
            _add_device(snap, name, sorted(idxs))
    if firmware_memory:
        snap["/sys/firmware"] = _dir()
        snap["/sys/firmware/memory"] = _dir()
        for idx, (config, memmap) in firmware_memory.items():
            d = f"/sys/firmware/memory/memory{idx}"
            snap[d] = _dir()
            snap[f"{d}/config"] = _file(config + "\n", 0o644)
            snap[f"{d}/memmap_on_memory"] = _file(memmap + "\n", 0o644)
    return snap


def _add_device(snap: Snapshot, name: str, idxs: list[int]) -> None:
    dev = f"{ACPI_PARENT}/{name}"
    for p in ("/sys/devices/LNXSYSTM:00", "/sys/devices/LNXSYSTM:00/LNXSYBUS:00", ACPI_PARENT):
        snap.setdefault(p, _dir())
    snap[dev] = _dir()
    snap[f"{ACPI_BUS}/{name}"] = _link(
        f"../../../devices/LNXSYSTM:00/LNXSYBUS:00/PNP0A06:04/{name}"
    )
    uid = name.rsplit(":", 1)[-1].lstrip("0") or "0"
    snap[f"{dev}/hid"] = _file("PNP0C80\n")
    snap[f"{dev}/path"] = _file(f"\\_SB_.PCI0.MHPD.MP{int(uid):02X}\n")
    snap[f"{dev}/uid"] = _file(f"{uid}\n")
    snap[f"{dev}/status"] = _file("15\n")
    snap[f"{dev}/eject"] = Entry(Kind.FILE, value="", read_errno=errno.EACCES, mode=0o200)
    for n, idx in enumerate(idxs):
        link = "physical_node" if n == 0 else f"physical_node{n}"
        snap[f"{dev}/{link}"] = _link(f"../../../../system/memory/memory{idx}")


def add_acpi_devices(snap: Snapshot) -> Snapshot:
    """Add the PNP0C80 device directories that ``firmware_node`` links point to.

    The reference trace records ``/sys/bus/acpi/devices`` links and the blocks'
    ``firmware_node`` links, not the device directories themselves; this rebuilds
    them as the kernel has them (drivers/acpi/glue.c: ``physical_node``,
    ``physical_node1``... in binding order, i.e. ascending block index).
    """
    out = dict(snap)
    devices: dict[str, list[int]] = {}
    for path, e in snap.items():
        if e.kind is Kind.LINK and path.startswith(MEM) and path.endswith("/firmware_node"):
            assert e.target is not None
            name = e.target.rsplit("/", 1)[-1]
            blk = path.split("/")[-2]
            devices.setdefault(name, []).append(int(blk[6:]))
    for name, idxs in devices.items():
        _add_device(out, name, sorted(idxs))
    return out


@dataclass
class FakeKernel:
    """A behaving in-memory sysfs root built from a snapshot.

    Stores to ``state``/``online`` follow drivers/base/memory.c: ``online``,
    ``online_kernel``, ``online_movable`` (checked against ``valid_zones``),
    ``offline``; EINVAL when already in that state.  ``fail_offline`` maps a block
    index to the errno its offline fails with and how many times (``None``:
    always).  Writing ``1`` to a device's ``eject`` offlines and removes its
    blocks (EBUSY if one cannot be offlined).
    """

    snap: Snapshot
    fail_offline: dict[int, tuple[int, int | None]] = field(default_factory=dict)
    eject_removes: bool = True
    kpageflags: dict[int, int] = field(default_factory=dict)
    writes: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.snap = dict(self.snap)
        self.zone_of: dict[int, str] = {}

    def _entry(self, path: str) -> Entry:
        p = normpath(path)
        e = self.snap.get(p)
        if e is None:
            # follow links in the parent chain
            parts = p.strip("/").split("/")
            cur = ""
            for i, part in enumerate(parts):
                cur = cur + "/" + part
                ce = self.snap.get(cur)
                if ce is None:
                    raise oserror(errno.ENOENT, path)
                if ce.kind is Kind.LINK and i < len(parts) - 1:
                    assert ce.target is not None
                    rest = "/".join(parts[i + 1 :])
                    return self._entry(resolve_link(cur, ce.target) + "/" + rest)
            raise oserror(errno.ENOENT, path)
        return e

    def _resolve(self, path: str) -> str:
        p = normpath(path)
        if p in self.snap and self.snap[p].kind is not Kind.LINK:
            return p
        parts = p.strip("/").split("/")
        cur = ""
        for i, part in enumerate(parts):
            cur = cur + "/" + part
            ce = self.snap.get(cur)
            if ce is None:
                raise oserror(errno.ENOENT, path)
            if ce.kind is Kind.LINK:
                assert ce.target is not None
                rest = "/".join(parts[i + 1 :])
                tgt = resolve_link(cur, ce.target)
                return self._resolve(tgt + ("/" + rest if rest else ""))
        return cur

    def lstat(self, path: str) -> Stat:
        p = normpath(path)
        if p == "/proc/kpageflags" and self.kpageflags:
            return Stat(Kind.FILE, 0o400)
        parent, _, name = p.rpartition("/")
        real = self._resolve(parent or "/") + "/" + name if parent else p
        e = self.snap.get(normpath(real))
        if e is None:
            raise oserror(errno.ENOENT, path)
        return Stat(e.kind, e.mode)

    def listdir(self, path: str) -> list[str]:
        p = self._resolve(path)
        e = self.snap.get(p)
        if e is None:
            raise oserror(errno.ENOENT, path)
        if e.kind is not Kind.DIR:
            raise oserror(errno.ENOTDIR, path)
        prefix = p.rstrip("/") + "/"
        return [
            k[len(prefix) :]
            for k in self.snap
            if k.startswith(prefix) and "/" not in k[len(prefix) :]
        ]

    def read(self, path: str) -> bytes:
        if normpath(path) == "/proc/kpageflags" and self.kpageflags:
            top = max(self.kpageflags) + 1
            return b"".join(struct.pack("<Q", self.kpageflags.get(i, 0)) for i in range(top))
        p = self._resolve(path)
        e = self.snap.get(p)
        if e is None:
            raise oserror(errno.ENOENT, path)
        if e.kind is Kind.DIR:
            raise oserror(errno.EISDIR, path)
        if e.read_errno or e.value is None:
            raise oserror(e.read_errno or errno.EIO, path)
        return e.value.encode()

    def readlink(self, path: str) -> str:
        e = self.snap.get(normpath(path))
        if e is None:
            raise oserror(errno.ENOENT, path)
        if e.kind is not Kind.LINK or e.target is None:
            raise oserror(errno.EINVAL, path)
        return e.target

    def _set(self, path: str, value: str) -> None:
        old = self.snap[path]
        self.snap[path] = Entry(Kind.FILE, value=value, mode=old.mode)

    def write(self, path: str, data: bytes) -> int:
        p = self._resolve(path)
        if p not in self.snap:
            raise oserror(errno.ENOENT, path)
        if not self.snap[p].mode & 0o222:
            raise oserror(errno.EACCES, path)
        value = data.decode().strip()
        self.writes.append((p, value))
        d, _, attr = p.rpartition("/")
        if d.startswith(MEM + "/memory") and attr in ("state", "online"):
            idx = int(d.rsplit("memory", 1)[1])
            if attr == "online":
                value = {"1": "online", "0": "offline"}.get(value, "bogus")
            self.store_state(idx, value)
        elif attr == "eject" and value == "1":
            self.eject(d)
        else:
            self._set(p, value + "\n")
        return len(data)

    def state(self, idx: int) -> str:
        v = self.snap[f"{MEM}/memory{idx}/state"].value or ""
        return v.strip()

    def store_state(self, idx: int, value: str) -> None:
        d = f"{MEM}/memory{idx}"
        cur = self.state(idx)
        zones = (
            (self.snap[f"{d}/valid_zones"].value or "").split()
            if f"{d}/valid_zones" in self.snap
            else []
        )
        if value == "offline":
            if cur == "offline":
                raise oserror(errno.EINVAL, d + "/state")
            if zones == ["none"]:
                raise oserror(errno.EINVAL, d + "/state")
            fail = self.fail_offline.get(idx)
            if fail is not None:
                code, times = fail
                if times is None or times > 0:
                    if times is not None:
                        self.fail_offline[idx] = (code, times - 1)
                    raise oserror(code, d + "/state")
            self._set(f"{d}/state", "offline\n")
            self._set(f"{d}/online", "0\n")
            if zones:
                self._set(f"{d}/valid_zones", self.zone_of.get(idx, "Normal") + " Movable\n")
            return
        if value not in ("online", "online_kernel", "online_movable"):
            raise oserror(errno.EINVAL, d + "/state")
        if cur == "online":
            raise oserror(errno.EINVAL, d + "/state")
        zone = zones[0] if zones else "Normal"
        if value == "online_movable":
            if zones and "Movable" not in zones:
                raise oserror(errno.EINVAL, d + "/state")
            zone = "Movable"
        elif value == "online_kernel":
            kz = [z for z in zones if z != "Movable"]
            if zones and not kz:
                raise oserror(errno.EINVAL, d + "/state")
            zone = kz[0] if kz else "Normal"
        self.zone_of[idx] = zones[0] if zones and zones[0] != "Movable" else "Normal"
        self._set(f"{d}/state", "online\n")
        self._set(f"{d}/online", "1\n")
        if zones:
            self._set(f"{d}/valid_zones", zone + "\n")

    def eject(self, dev_path: str) -> None:
        links = sorted(
            k
            for k, e in self.snap.items()
            if k.startswith(dev_path + "/physical_node") and e.kind is Kind.LINK
        )
        idxs = []
        for k in links:
            tgt = self.snap[k].target or ""
            idxs.append(int(tgt.rsplit("memory", 1)[1]))
        for idx in sorted(idxs, reverse=True):
            if self.state(idx) == "online":
                self.store_state(idx, "offline")  # may raise EBUSY like the kernel
        if not self.eject_removes:
            return
        for idx in idxs:
            blk = f"{MEM}/memory{idx}"
            for k in [k for k in self.snap if k == blk or k.startswith(blk + "/")]:
                del self.snap[k]
            for k in [k for k in self.snap if k.startswith(NODE) and k.endswith(f"/memory{idx}")]:
                del self.snap[k]
        for k in links:
            del self.snap[k]
        self._set(dev_path + "/status", "0\n")
