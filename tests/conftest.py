"""Shared fixtures: machines from machines/, the reference trace."""

from __future__ import annotations

import os

import pytest

from memhp.kernel.machine import MachineSpec
from tests.support.sim import machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The real-kernel reference of shared/reference/linux-6.1, vendored into the repository
#: (tests/data/reference) so that a clean clone has it.
REFERENCE = os.path.join(ROOT, "tests", "data", "reference", "linux-6.1")

__all__ = ["REFERENCE", "ROOT", "machine"]


@pytest.fixture
def qemu_spec() -> MachineSpec:
    return machine("qemu-linux-6.1")


@pytest.fixture
def seed_spec() -> MachineSpec:
    return machine("seed")
