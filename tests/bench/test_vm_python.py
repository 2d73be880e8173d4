"""memhp itself inside a real Linux guest: the host's Python, venv and repo over 9p.

One boot (TCG with ``-cpu max``: numpy needs x86-64-v2), then ``memhp list`` in the
guest, compared with util-linux ``lsmem`` run in the same guest (the host's ``/usr``
is shared, so ``/usr/bin/lsmem`` is there when util-linux is installed).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from memhp.bench.vm import GuestVM, VMConfig, bench_available

MISSING = bench_available()
pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(MISSING is not None, reason=f"QEMU bench unavailable: {MISSING}"),
]


@pytest.fixture(scope="module")
def vm() -> Iterator[GuestVM]:
    with GuestVM(VMConfig(host_python=True)) as guest:
        yield guest


def test_guest_python_imports_memhp(vm: GuestVM) -> None:
    argv = " ".join(vm.python_argv())
    r = vm.fs.run(f"{argv} -c 'import memhp, sys; print(memhp.__file__); print(sys.version)'")
    assert r.rc == 0, r.stderr
    lines = r.text.splitlines()
    assert lines[0].endswith("memhp/__init__.py")
    assert lines[1].startswith("3.11")


def test_memhp_list_in_guest(vm: GuestVM) -> None:
    dev = vm.platform.hot_add_dimm(512 << 20, node=1, id="pydimm")
    vm.platform.wait_event("ACPI_DEVICE_OST", 30, lambda e: e.device == "pydimm")
    assert dev.addr == 1 << 32
    r = vm.run_memhp(["list"])
    assert r.rc == 0, r.stderr
    assert "0x0000000100000000-0x000000011fffffff" in r.text
    assert "offline" in r.text
    if os.path.exists("/usr/bin/lsmem"):
        ls = vm.fs.run("LC_ALL=C /usr/bin/lsmem")
        assert ls.rc == 0, ls.stderr
        assert r.text == ls.text
