"""QEMU's errors as the platform model raises them (qapi/error.h, qapi/qmp/qerror.h).

Pure model: no I/O.
"""

from __future__ import annotations


class QemuError(Exception):
    """A request QEMU refuses: ``desc`` is QEMU's message, ``cls`` its QMP error class."""

    def __init__(self, desc: str, cls: str = "GenericError") -> None:
        super().__init__(desc)
        self.desc = desc
        self.cls = cls


__all__ = ["QemuError"]
