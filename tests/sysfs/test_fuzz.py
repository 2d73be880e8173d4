"""Fuzzed writes to every writable attribute of a simulated machine (issue 9).

Random bytes, huge and negative numbers, whitespace variants, empty and partial
writes: each gets the kernel's errno or succeeds; never another exception, and a
failed write changes nothing.
"""

from __future__ import annotations

import errno

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memhp.abi.fs import Kind
from memhp.abi.tree import capture
from memhp.kernel.invariants import check_invariants
from memhp.sim.machine import SimMachine
from tests.conftest import machine
from tests.kernel.test_stateful import model_state

ROOTS = (
    "/sys/devices/system/memory",
    "/sys/devices/system/node",
    "/sys/firmware/memmap",
    "/sys/devices/LNXSYSTM:00",
    "/sys/kernel/debug",
)

INTERESTING = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"online",
            b"offline",
            b"online_movable",
            b"online_kernel",
            b"1",
            b"0",
            b"18446744073709551616",
            b"-1",
            b"-4096",
            b"0x" + b"f" * 40,
            b" 1",
            b"1 ",
            b"\t1",
            b"\n",
            b"online\n\n",
            b"offline\x00",
            b"1" * 5000,
            b"add",
            b"change foo",
        ]
    ),
)


def writable(m: SimMachine) -> list[str]:
    snap = capture(m.sysfs, ROOTS)
    return sorted(p for p, e in snap.items() if e.kind is Kind.FILE and e.mode & 0o200)


def fresh() -> SimMachine:
    m = SimMachine(machine("qemu-linux-6.1"))
    m.device_add(256 << 20, 1, id="d")
    m.sysfs.write("/sys/devices/system/memory/memory32/state", b"online_movable")
    return m


def test_writable_attributes_are_the_kernels() -> None:
    names = {p.rsplit("/", 1)[1] for p in writable(fresh())}
    assert names == {
        "state",
        "online",
        "uevent",
        "auto_online_blocks",
        "soft_offline_page",
        "hard_offline_page",
        "eject",
        "error",
        "compact",
        "nr_hugepages",
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), payload=INTERESTING)
def test_fuzzed_writes(data: st.DataObject, payload: bytes) -> None:
    m = fresh()
    path = data.draw(st.sampled_from(writable(m)))
    before = model_state(m)
    try:
        n = m.sysfs.write(path, payload)
        assert 0 <= n <= len(payload)
    except OSError as e:
        assert e.errno in {
            errno.EINVAL,
            errno.EBUSY,
            errno.ENODEV,
            errno.ENXIO,
            errno.EIO,
            errno.EPERM,
            errno.ENOMEM,
            errno.EINTR,
            errno.EAGAIN,
            errno.ERANGE,
        }
        if not path.endswith("/eject"):
            assert model_state(m) == before
    check_invariants(m.kernel)


@pytest.mark.parametrize(
    "path",
    [
        "/sys/devices/system/memory/block_size_bytes",
        "/sys/devices/system/node/online",
        "/sys/firmware/memmap/0/start",
        "/sys/devices/system/memory/memory32/valid_zones",
    ],
)
def test_read_only_files_refuse_writes(path: str) -> None:
    m = fresh()
    with pytest.raises(OSError) as ei:
        m.sysfs.write(path, b"1")
    assert ei.value.errno == errno.EACCES


def test_paths_that_do_not_exist() -> None:
    m = fresh()
    for p, code in (
        ("/sys/devices/system/memory/memory032/state", errno.ENOENT),
        ("/sys/devices/system/memory/memory-1", errno.ENOENT),
        ("/sys/devices/system/node/node01", errno.ENOENT),
        ("/sys/firmware/memmap/07/start", errno.ENOENT),
        ("/sys/nope", errno.ENOENT),
        ("/sys/devices/system/memory/memory32/state/x", errno.ENOTDIR),
    ):
        with pytest.raises(OSError) as ei:
            m.sysfs.read(p)
        assert ei.value.errno == code, p
