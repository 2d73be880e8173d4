"""The repository's structural rules (the structure issue): they fail loudly when broken."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_LINES = 600


def test_no_module_over_600_lines() -> None:
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / "memhp").rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_layer_contract_holds() -> None:
    exe = shutil.which("lint-imports", path=str(pathlib.Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (pip install '.[dev]')")
    r = subprocess.run(
        [exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert r.returncode == 0, r.stdout[-3000:]


def test_kernel_model_does_no_io() -> None:
    """memhp.kernel is pure: no file, process, socket or clock access."""
    banned = ("import os", "import subprocess", "import socket", "open(", "import time")
    hits = [
        f"{p.relative_to(ROOT)}: {b}"
        for p in sorted((ROOT / "memhp" / "kernel").rglob("*.py"))
        for b in banned
        if b in p.read_text()
    ]
    assert not hits, hits
