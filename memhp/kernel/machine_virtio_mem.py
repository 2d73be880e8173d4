"""The ``[[virtio_mem]]`` tables of a machine file (see memhp.kernel.machine).

A memory-backend-ram and its virtio-mem-pci device on the QEMU command line::

    [[virtio_mem]]                        # -object memory-backend-ram,id=MEMDEV,size=SIZE
    id = "vm0"                            # -device virtio-mem-pci,id=vm0,memdev=MEMDEV,
    size = "4G"                           #   node=1,requested-size=0[,block-size=2M]
    node = 1                              #   [,memaddr=ADDR]; memdev defaults to "mem-ID"
    requested_size = "0"
    block_size = "2M"                     # optional: QEMU's default (the host THP size)
  The
kernel never reads these: the platform realizes the devices (QEMU's rules in
memhp.platform.virtio_mem) and the kernel sees them through its virtio bus.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class VirtioMemSpec:
    """A ``[[virtio_mem]]`` table: a memory-backend-ram and its virtio-mem-pci device.

    Only the syntax is checked here; QEMU's rules are applied when the platform
    realizes the device (memhp.platform.virtio_mem)."""

    id: str
    memdev: str
    size: int
    node: int
    requested_size: int
    block_size: int | None
    memaddr: int | None


def parse_virtio_mem(raw: object) -> tuple[VirtioMemSpec, ...]:
    """Parse the ``[[virtio_mem]]`` tables."""
    from memhp.kernel.machine import MachineError, parse_size  # the parent module

    if not isinstance(raw, list):
        raise MachineError("virtio_mem", "expected an array of tables ([[virtio_mem]])")
    out: list[VirtioMemSpec] = []
    known = {"id", "memdev", "size", "node", "requested_size", "block_size", "memaddr"}
    for i, t in enumerate(raw):
        key = f"virtio_mem[{i}]"
        if not isinstance(t, Mapping):
            raise MachineError(key, "expected a table")
        bad = sorted(set(t) - known)
        if bad:
            raise MachineError(f"{key}.{bad[0]}", "unknown key")
        vid = t.get("id")
        if not isinstance(vid, str) or not vid:
            raise MachineError(f"{key}.id", "a device id (string) is required")
        memdev = t.get("memdev", f"mem-{vid}")
        if not isinstance(memdev, str) or not memdev:
            raise MachineError(f"{key}.memdev", "expected a string")
        node = t.get("node", 0)
        if not isinstance(node, int) or isinstance(node, bool) or node < 0:
            raise MachineError(f"{key}.node", f"expected a node number, got {node!r}")
        if "size" not in t:
            raise MachineError(f"{key}.size", "the backend size is required")
        out.append(
            VirtioMemSpec(
                id=vid,
                memdev=memdev,
                size=parse_size(t["size"], f"{key}.size"),
                node=node,
                requested_size=parse_size(t.get("requested_size", 0), f"{key}.requested_size"),
                block_size=(
                    parse_size(t["block_size"], f"{key}.block_size") if "block_size" in t else None
                ),
                memaddr=parse_size(t["memaddr"], f"{key}.memaddr") if "memaddr" in t else None,
            )
        )
    return tuple(out)
