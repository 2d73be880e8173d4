"""Each ABI fact is spelled once, in memhp/abi: nowhere else in memhp/ may define
the ACPI device path, a KPF bit, a zone-name table, a sysfs/procfs root path or a
size grammar of its own."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from memhp.abi import acpi, paths, zones

PKG = Path(__file__).resolve().parents[2] / "memhp"
ABI = PKG / "abi"

#: Strings that name the ACPI memory devices' parent (memhp.abi.acpi).
ACPI_FRAGMENTS = (acpi.ACPI_ROOT, "LNXSYBUS:00", "PNP0A06:04")
#: Root paths that must come from memhp.abi.paths.
PATHS = (
    paths.SYS_MEMORY,
    paths.SYS_NODE,
    paths.SYS_ACPI_DEVICES,
    paths.SYS_FIRMWARE_MEMMAP,
    paths.SYS_FIRMWARE_MEMORY,
    paths.MODULE_MEMORY_HOTPLUG,
    paths.PROC_KPAGEFLAGS,
)


@functools.cache
def _sources() -> list[tuple[str, ast.Module]]:
    out = []
    for p in sorted(PKG.rglob("*.py")):
        if ABI in p.parents:
            continue
        out.append((str(p.relative_to(PKG.parent)), ast.parse(p.read_text(), str(p))))
    return out


def _strings(node: ast.AST) -> list[str]:
    return [
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def test_abi_modules_are_the_reference() -> None:
    assert acpi.ACPI_MEMORY_PARENT_DIR.startswith("/sys/devices/" + acpi.ACPI_ROOT)
    assert zones.ZONE_MOVABLE in zones.ZONE_NAMES
    assert paths.block_dir(3) == "/sys/devices/system/memory/memory3"


def test_acpi_path_is_defined_once() -> None:
    found = [
        (f, s)
        for f, tree in _sources()
        for s in _strings(tree)
        if any(frag in s for frag in ACPI_FRAGMENTS)
        and not s.startswith(("\n", " "))  # prose in docstrings is fine
        and "\n" not in s
    ]
    assert found == []


def test_kpf_bits_are_defined_once() -> None:
    found = []
    for f, tree in _sources():
        for node in ast.walk(tree):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and t.id.startswith("KPF_"):
                    found.append((f, t.id))
    assert found == []


def test_zone_name_tables_are_defined_once() -> None:
    names = set(zones.ZONE_NAMES)
    found = []
    for f, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict):
                elts = node.values if isinstance(node, ast.Dict) else node.elts
                lits = {
                    e.value
                    for e in elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value in names
                }
                if len(lits) >= 2:
                    found.append((f, node.lineno, sorted(lits)))
    assert found == []


def test_sysfs_root_paths_are_defined_once() -> None:
    found = [(f, s) for f, tree in _sources() for s in _strings(tree) if s in PATHS]
    assert found == []


def test_size_parsers_wrap_the_one_grammar() -> None:
    found = []
    for f, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "parse_size":
                calls = {ast.unparse(c.func) for c in ast.walk(node) if isinstance(c, ast.Call)}
                if "units.parse_size" not in calls:
                    found.append((f, node.lineno))
    assert found == []
