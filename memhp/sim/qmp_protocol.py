"""The QEMU Machine Protocol's wire side: errors, argument checks, the JSON stream.

What qapi/qmp-dispatch.c, qapi/qobject-input-visitor.c and qobject/json-streamer.c
do for every command, independent of the commands themselves.
"""

from __future__ import annotations

from typing import Any

_EXPECTED = {
    "str": "string",
    "int": "integer",
    "uint": "integer",
    "size": "size",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
    "number": "number",
}


class QMPError(Exception):
    """A command failure, sent as ``{"error": {"class": cls, "desc": desc}}``."""

    def __init__(self, desc: str, cls: str = "GenericError") -> None:
        super().__init__(desc)
        self.cls = cls
        self.desc = desc


def check_type(name: str, value: object, kind: str) -> None:
    """The qobject input visitor's type check (Invalid parameter type ...)."""
    ok: bool
    if kind == "str":
        ok = isinstance(value, str)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    elif kind in ("uint", "size"):
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64
    elif kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "list":
        ok = isinstance(value, list)
    elif kind == "dict":
        ok = isinstance(value, dict)
    else:  # any
        ok = True
    if not ok:
        raise QMPError(
            f"Invalid parameter type for '{name}', expected: {_EXPECTED.get(kind, kind)}"
        )


def parse_args(
    args: dict[str, Any], required: dict[str, str], optional: dict[str, str] | None = None
) -> dict[str, Any]:
    """Check a command's arguments as the generated QAPI visitors do."""
    optional = optional or {}
    for name, kind in required.items():
        if name not in args:
            raise QMPError(f"Parameter '{name}' is missing")
        check_type(name, args[name], kind)
    for name, value in args.items():
        if name in required:
            continue
        if name not in optional:
            raise QMPError(f"Parameter '{name}' is unexpected")
        check_type(name, value, optional[name])
    return args


def id_wellformed(oid: str) -> bool:
    """id_wellformed() of util/id.c: a letter, then letters, digits, '-', '.', '_'."""
    return (
        bool(oid)
        and oid[0].isascii()
        and oid[0].isalpha()
        and all(c.isascii() and (c.isalnum() or c in "-._") for c in oid)
    )


def _utf8_len(lead: int) -> int:
    if lead >= 0xF0:
        return 4
    if lead >= 0xE0:
        return 3
    if lead >= 0xC0:
        return 2
    return 1


class JsonSplitter:
    """Split a byte stream into JSON texts the way QEMU's json-streamer does.

    Objects and arrays end when their brackets balance (strings and escapes
    respected); a bare scalar ends at whitespace.  A stray closing bracket
    yields a :class:`QMPError` instead of a text.
    """

    MAX_SIZE = 64 << 20

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.depth = 0
        self.in_str: str | None = None
        self.esc = False
        self.scalar = False
        self._pending = b""

    def feed(self, data: bytes) -> list[str | QMPError]:
        data = self._pending + data
        # Keep an incomplete UTF-8 sequence for the next read.
        cut = len(data)
        for back in range(1, min(4, len(data)) + 1):
            b = data[-back]
            if b & 0xC0 == 0x80:
                continue
            if b & 0x80 and len(data) - back + _utf8_len(b) > len(data):
                cut = len(data) - back
            break
        self._pending = data[cut:]
        text = data[:cut].decode("utf-8", errors="replace")
        out: list[str | QMPError] = []
        for ch in text:
            if self.in_str is not None:
                self.buf.append(ch)
                if self.esc:
                    self.esc = False
                elif ch == "\\":
                    self.esc = True
                elif ch == self.in_str:
                    self.in_str = None
                continue
            if self.scalar and (ch.isspace() or ch in "{}[]"):
                out.append("".join(self.buf))
                self.buf, self.scalar = [], False
            if ch in "\"'":
                self.in_str = ch
                self.buf.append(ch)
            elif ch in "{[":
                self.depth += 1
                self.buf.append(ch)
            elif ch in "}]":
                if self.depth == 0:
                    out.append(QMPError("JSON parse error, expecting value"))
                    continue
                self.depth -= 1
                self.buf.append(ch)
                if self.depth == 0:
                    out.append("".join(self.buf))
                    self.buf = []
            elif ch.isspace():
                if self.depth:
                    self.buf.append(ch)
            else:
                if self.depth == 0:
                    self.scalar = True
                self.buf.append(ch)
            if len(self.buf) > self.MAX_SIZE:
                out.append(QMPError("JSON parse error, message too big"))
                self.buf, self.depth, self.in_str = [], 0, None
        return out


__all__ = ["JsonSplitter", "QMPError", "check_type", "id_wellformed", "parse_args"]
