"""Shared fixtures: machines from machines/, the reference trace."""

from __future__ import annotations

import os

import pytest

from memhp.kernel.machine import MachineSpec
from memhp.sim.config import load_machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The real-kernel reference of shared/reference/linux-6.1, vendored into the repository
#: (tests/data/reference) so that a clean clone has it.
REFERENCE = os.path.join(ROOT, "tests", "data", "reference", "linux-6.1")


def machine(name: str) -> MachineSpec:
    return load_machine(os.path.join(ROOT, "machines", name + ".toml"))


@pytest.fixture
def qemu_spec() -> MachineSpec:
    return machine("qemu-linux-6.1")


@pytest.fixture
def seed_spec() -> MachineSpec:
    return machine("seed")
