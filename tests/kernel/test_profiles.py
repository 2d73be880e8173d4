"""Kernel profiles: one module each, discovered; unknown names are an error."""

from __future__ import annotations

import pytest

from memhp.kernel.profiles import PROFILES, UnknownProfileError, get_profile


def test_profiles_are_discovered() -> None:
    assert {"linux-6.1", "linux-3.8-hotremove"} <= set(PROFILES)
    assert get_profile("linux-6.1") is PROFILES["linux-6.1"]


def test_unknown_profile_is_an_error() -> None:
    with pytest.raises(UnknownProfileError, match=r"unknown kernel profile 'linux-9\.9'"):
        get_profile("linux-9.9")
