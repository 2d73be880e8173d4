"""``pip install memhp`` is the tool: it runs without numpy, matplotlib, mfusepy and
qemu.qmp, and a command that needs an extra says which one in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from memhp.abi.tree import write_tree
from tests.support.trees import reference_steps

REPO = Path(__file__).resolve().parents[2]

#: Runs ``memhp`` with the extras' modules made unimportable.
BLOCKED_MAIN = textwrap.dedent(
    """
    import sys

    BLOCKED = {"numpy", "matplotlib", "mfusepy", "qemu"}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    for mod in list(sys.modules):
        if mod.split(".")[0] in BLOCKED:
            del sys.modules[mod]

    from memhp.cli.main import main

    rc = main(sys.argv[1:])
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    sys.exit(rc)
    """
)


def memhp(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", BLOCKED_MAIN, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    snaps = reference_steps()
    if not snaps:
        pytest.skip("reference capture not available")
    d = tmp_path_factory.mktemp("extras") / "t"
    write_tree(snaps["trace-2-after-online"], str(d))
    return d


def test_tool_commands_need_no_extra(tree: Path) -> None:
    r = memhp("list", "--sysroot", str(tree))
    assert r.returncode == 0, r.stderr
    assert "Total online memory:" in r.stdout
    r = memhp("devices", "--sysroot", str(tree))
    assert r.returncode == 0, r.stderr
    assert "PNP0C80:00" in r.stdout
    r = memhp("why", "33", "--sysroot", str(tree))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("memory33 ")
    r = memhp("offline", "-b", "35", "--sysroot", str(tree))
    assert r.returncode == 0, r.stderr
    r = memhp("--help")
    assert r.returncode == 0, r.stderr
    assert "map" in r.stdout and "bench" in r.stdout


def test_map_without_its_extra_is_one_line(tree: Path, tmp_path: Path) -> None:
    r = memhp("map", "--sysroot", str(tree), "-o", str(tmp_path / "m.png"))
    assert r.returncode == 1
    assert r.stderr == "memhp map: needs the 'map' extra: pip install 'memhp[map]'\n"
    assert not (tmp_path / "m.png").exists()
    r = memhp("map", "--machine", "seed")
    assert r.returncode == 1
    assert r.stderr == "memhp map: needs the 'map' extra: pip install 'memhp[map]'\n"


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["pgtables", "seed"], "sim"),
        (["demo", "machines/seed.toml"], "map"),
    ],
)
def test_sim_commands_without_their_extra(argv: list[str], extra: str) -> None:
    r = memhp(*argv)
    assert r.returncode == 1
    assert r.stderr == f"memhp {argv[0]}: needs the '{extra}' extra: pip install 'memhp[{extra}]'\n"
