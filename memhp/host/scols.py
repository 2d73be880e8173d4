"""Tables printed the way util-linux's libsmartcols 2.38 prints them.

Only what lsmem-style tools use: human (aligned), raw (``-r``), export (``-P``) and
JSON (``-J``) output of a flat table, left or right aligned columns with a width
hint, typed JSON values.  Terminal-width shrinking is not modelled (output to a
pipe or file, which is what scripts and the golden tests see, is byte-identical).
"""

from __future__ import annotations

#: Re-exported: lsmem-style sizes (``1.5G``) are spelled in memhp.abi.units.
from memhp.abi.units import size_to_human_string as size_to_human_string

# Not typing.TYPE_CHECKING: ``memhp list`` starts without importing typing or collections.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import IO, Literal

    JsonType = Literal["string", "number", "boolean"]
    Format = Literal["human", "raw", "export", "json"]


class Column:
    """Header, width hint, right alignment and JSON type of an output column."""

    __slots__ = ("json_type", "name", "right", "whint")

    def __init__(
        self, name: str, whint: float = 0, right: bool = False, json_type: str = "string"
    ) -> None:
        self.name = name
        self.whint = whint
        self.right = right
        self.json_type = json_type


def _quoted(data: str) -> str:
    """``fputs_quoted``: escape ``"``, backslash, backtick, ``$`` and controls."""
    out = ['"']
    for ch in data:
        if ch in '"\\`$':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _json_string(data: str) -> str:
    out = ['"']
    for ch in data:
        o = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif o < 0x20:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _raw(data: str) -> str:
    """``fputs_nonblank``: blanks and controls as ``\\x..``."""
    if not any(c.isspace() or ord(c) < 0x20 or c == "\\" for c in data):
        return data
    return "".join(f"\\x{ord(c):02x}" if c.isspace() or ord(c) < 0x20 else c for c in data)


def render(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    fmt: Format = "human",
    noheadings: bool = False,
    name: str = "",
) -> str:
    """The table as text; empty cells are ``""`` (libsmartcols' NULL data)."""
    if fmt == "json":
        return _render_json(columns, rows, name)
    lines: list[str] = []
    ncol = len(columns)
    last = ncol - 1
    if fmt == "raw":
        if not noheadings:
            lines.append(" ".join(_raw(c.name) for c in columns))
        for row in rows:
            lines.append(" ".join(_raw(v) for v in row))
        return "".join(line + "\n" for line in lines)
    if fmt == "export":
        for row in rows:
            lines.append(
                " ".join(f"{c.name}={_quoted(v)}" for c, v in zip(columns, row, strict=True))
            )
        return "".join(line + "\n" for line in lines)
    # human: widths as count_column_width() computes them
    widths: list[int] = []
    for i, col in enumerate(columns):
        width = max((len(r[i]) for r in rows), default=0)
        wmin = len(col.name)
        if width < wmin:
            width = wmin
        elif col.whint >= 1 and width < col.whint and wmin < col.whint:
            width = int(col.whint)
        widths.append(width)
    if not noheadings:
        lines.append(_human_line(columns, [c.name for c in columns], widths, last))
    for row in rows:
        lines.append(_human_line(columns, row, widths, last))
    return "".join(line + "\n" for line in lines)


def _human_line(columns: Sequence[Column], row: Sequence[str], widths: list[int], last: int) -> str:
    parts: list[str] = []
    for i, col in enumerate(columns):
        data = row[i]
        width = widths[i]
        if i == last:
            if data:
                parts.append(data.rjust(width) if col.right else data)
            break
        if not data:
            parts.append(" " * width + " ")
        elif col.right:
            parts.append(data.rjust(width) + " ")
        else:
            parts.append(data.ljust(width) + " ")
    return "".join(parts)


def _render_json(columns: Sequence[Column], rows: Sequence[Sequence[str]], name: str) -> str:
    out = ["{\n", f'   "{name}": [\n']
    keys = [_json_string(c.name.lower()) for c in columns]
    for n, row in enumerate(rows):
        out.append("      {\n" if n == 0 else "      },{\n")
        items: list[str] = []
        for c, key, data in zip(columns, keys, row, strict=True):
            if c.json_type == "number":
                val = data if data else "null"
            elif c.json_type == "boolean":
                val = "false" if not data or data[0] in "0Nn" else "true"
            else:
                val = _json_string(data) if data else "null"
            items.append(f"         {key}: {val}")
        out.append(",\n".join(items) + "\n")
    if rows:
        out.append("      }\n")
    out.append("   ]\n}\n")
    return "".join(out)


def write(out: IO[str], text: str) -> None:
    out.write(text)
