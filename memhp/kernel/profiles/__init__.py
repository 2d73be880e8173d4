"""Kernel profiles, one module each, collected by discovery.

Every module of this package other than :mod:`~memhp.kernel.profiles.base`
defines one :class:`KernelProfile` named ``PROFILE``; adding a profile is adding
one such file.  :data:`PROFILES` maps profile names to profiles, and
:func:`get_profile` raises :class:`UnknownProfileError` for a name it does not
know (there is no fallback).
"""

from __future__ import annotations

import importlib
import pkgutil

from memhp.kernel.profiles.base import KernelProfile


class UnknownProfileError(KeyError):
    """A profile name no module of :mod:`memhp.kernel.profiles` defines."""

    def __str__(self) -> str:
        return f"unknown kernel profile {self.args[0]!r} (known: {', '.join(sorted(PROFILES))})"


def _discover() -> dict[str, KernelProfile]:
    out: dict[str, KernelProfile] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        prof = getattr(mod, "PROFILE", None)
        if not isinstance(prof, KernelProfile):
            raise TypeError(f"{mod.__name__} defines no PROFILE = KernelProfile(...)")
        if prof.name in out:
            raise ValueError(f"two kernel profiles are named {prof.name!r}")
        out[prof.name] = prof
    return out


#: Every kernel profile, by name.
PROFILES: dict[str, KernelProfile] = _discover()


def get_profile(name: str) -> KernelProfile:
    """The profile called ``name``; :class:`UnknownProfileError` if there is none."""
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownProfileError(name) from None


__all__ = ["PROFILES", "KernelProfile", "UnknownProfileError", "get_profile"]
