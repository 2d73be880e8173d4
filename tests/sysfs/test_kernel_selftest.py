"""The kernel's own memory hotplug selftest against a simulated machine.

tools/testing/selftests/memory-hotplug/mem-on-off-test.sh (from Debian's
linux-source-6.1 and linux-source-6.12, extracted by .ci/selftests.sh into
.cache/selftests and .cache/selftests-6.12) runs, each on a machine with the
matching profile (machines/qemu-linux-6.1.toml, qemu-linux-6.12.toml), in a
private mount namespace where the FUSE-mounted sysfs of a simulated machine is
bind-mounted over /sys: it onlines and offlines every hot-pluggable block and
uses memory-notifier-error-inject through debugfs, as on a real kernel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from memhp.sim.fuse import fuse_unavailable_reason

REPO = Path(__file__).resolve().parents[2]
#: The selftest of each kernel and the machine (profile) it runs on.
SELFTESTS = {
    "6.1": (
        Path(os.environ.get("MEMHP_SELFTEST", REPO / ".cache/selftests/mem-on-off-test.sh")),
        "qemu-linux-6.1.toml",
    ),
    "6.12": (REPO / ".cache/selftests-6.12/mem-on-off-test.sh", "qemu-linux-6.12.toml"),
}


def _skip_reason() -> str | None:
    reason = fuse_unavailable_reason()
    if reason:
        return f"FUSE unavailable: {reason}"
    if os.geteuid() != 0:
        return "needs root (mount namespaces)"
    for tool in ("unshare", "bc", "bash"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


@pytest.mark.parametrize("kernel", list(SELFTESTS))
def test_mem_on_off_selftest_passes_on_the_simulated_machine(kernel: str) -> None:
    from qemu.qmp.legacy import QEMUMonitorProtocol

    script_path, machine_file = SELFTESTS[kernel]
    if not script_path.exists():
        pytest.skip(f"{script_path} not found (run .ci/selftests.sh to extract it)")

    top = Path(tempfile.mkdtemp(prefix="memhp-selftest-"))
    mnt, sock = top / "m", top / "qmp.sock"
    mnt.mkdir()
    cli = [sys.executable, "-m", "memhp.cli.main", "sim"]
    machine = str(REPO / "machines" / machine_file)
    subprocess.run(
        [*cli, "start", machine, "--mount", str(mnt), "--qmp", str(sock)],
        check=True,
        capture_output=True,
        timeout=60,
        cwd=REPO,
    )
    try:
        q = QEMUMonitorProtocol(str(sock))
        q.connect(negotiate=True)
        r = q.cmd_raw("object-add", {"qom-type": "memory-backend-ram", "id": "m1", "size": 1 << 30})
        assert "return" in r, r
        r = q.cmd_raw("device_add", {"driver": "pc-dimm", "id": "d1", "memdev": "m1", "node": 1})
        assert "return" in r, r
        q.close()
        script = (
            "mount -t debugfs none /sys/kernel/debug 2>/dev/null; "
            f"mount --bind {mnt}/sys /sys && bash {script_path} -r 10"
        )
        res = subprocess.run(
            ["unshare", "-m", "bash", "-c", script], capture_output=True, text=True, timeout=300
        )
        out = res.stdout + res.stderr
        assert res.returncode == 0, out
        assert "offline->online memory39" in out  # the hot-added blocks were onlined
        assert "-> Success" in out
        assert "unexpected" not in out and "FAILED" not in out, out
        assert "Test with memory notifier error injection" in out
        assert "skip extra tests" not in out, out  # the error injection part ran
        # the machine is as the selftest leaves it: every block online
        mem = mnt / "sys/devices/system/memory"
        for b in range(32, 40):
            assert (mem / f"memory{b}" / "state").read_text() == "online\n"
    finally:
        subprocess.run([*cli, "stop", str(mnt)], capture_output=True, timeout=60, cwd=REPO)
        shutil.rmtree(top, ignore_errors=True)
