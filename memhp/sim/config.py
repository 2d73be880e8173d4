"""Loading machine descriptions from TOML files (the I/O side of memhp.kernel.machine)."""

from __future__ import annotations

import os
import tomllib

from memhp.kernel.machine import MachineError, MachineSpec, parse_machine


def load_machine(path: str) -> MachineSpec:
    """Read and validate a machine file; errors name the file, the key and the problem."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise MachineError(path, "no such machine file") from None
    except tomllib.TOMLDecodeError as e:
        raise MachineError(path, f"not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise MachineError(path, f"not UTF-8 text (byte {e.start}), not a machine file") from None
    except OSError as e:
        raise MachineError(path, e.strerror or str(e)) from None
    try:
        spec = parse_machine(doc)
    except MachineError as e:
        raise MachineError(f"{os.path.basename(path)}: {e.key}", e.problem) from None
    return spec


def builtin_machine_path(name: str) -> str:
    """Path of a machine shipped in machines/ (by file name without .toml), or ``name``."""
    if os.path.exists(name):
        return name
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cand = os.path.join(here, "machines", name if name.endswith(".toml") else name + ".toml")
    return cand if os.path.exists(cand) else name
