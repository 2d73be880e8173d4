"""Sizes in text: one grammar to parse, the formats to print.

Grammar (util-linux ``strtosize``): a decimal or ``0x`` hexadecimal number, then
optionally a unit letter ``K M G T P E`` (any case), then optionally ``iB``
(binary, same as the bare letter) or ``B``/``b`` (decimal: ``1GB`` is 10**9).  Blanks
around are ignored.  A number without a unit is multiplied by ``default_unit``
(1 byte unless the caller says otherwise: chmem's bare number is MiB).
Callers that need stricter rules (no hex, a typed error) wrap :func:`parse_size`.
"""

from __future__ import annotations

SUFFIXES = "KMGTPE"
#: Compiled on first use (``re`` is not imported by ``memhp list``, which only prints).
_SIZE_RE = r"^\s*(0[xX][0-9a-fA-F]+|\d+)\s*(?:([KMGTPEkmgtpe])(i[Bb]|[Bb])?)?\s*$"


def parse_size(text: str, default_unit: int = 1) -> int:
    """Bytes in ``text`` (``512M``, ``2g``, ``1GiB``, ``1GB``, ``0x8000000``);
    :class:`ValueError` when it does not follow the grammar."""
    import re  # compiled patterns are cached by re

    m = re.match(_SIZE_RE, text)
    if not m:
        raise ValueError(f"invalid size: {text!r}")
    n = int(m.group(1), 0)
    unit = m.group(2)
    if unit is None:
        return n * default_unit
    power = SUFFIXES.index(unit.upper()) + 1
    base = 1000 if m.group(3) in ("B", "b") else 1024
    return n * int(base**power)


def size_to_human_string(nbytes: int) -> str:
    """util-linux ``size_to_human_string(SIZE_SUFFIX_1LETTER, bytes)``: ``1.5G``
    (what lsmem and chmem print)."""
    exp = 0
    for shft in range(10, 61, 10):
        exp = shft - 10
        if nbytes < (1 << shft):
            break
    else:
        exp = 60
    letter = ("B" + SUFFIXES)[exp // 10 if exp else 0]
    dec = nbytes >> exp if exp else nbytes
    frac = nbytes % (1 << exp) if exp else 0
    if frac:
        if frac >= (2**64 - 1) // 1000:
            frac = ((frac // 1024) * 1000) // (1 << (exp - 10))
        else:
            frac = (frac * 1000) // (1 << exp)
        frac = ((frac + 50) // 100) * 10
        if frac == 100:
            dec += 1
            frac = 0
    if frac:
        s = f"{dec}.{frac:02d}"
        if s.endswith("0"):
            s = s[:-1]
        return s + letter
    return f"{dec}{letter}"


def human_size(n: int) -> str:
    """``n`` bytes (or an address) in binary units for labels: ``0``, ``640K``,
    ``1.5G``, ``16T`` (up to 3 significant digits, exact values without decimals)."""
    if n == 0:
        return "0"
    for i in range(len(SUFFIXES) - 1, -1, -1):
        unit = 1 << (10 * (i + 1))
        if abs(n) >= unit:
            v = n / unit
            if n % unit == 0:
                return f"{n // unit}{SUFFIXES[i]}"
            text = f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"
            return f"{text.rstrip('0').rstrip('.')}{SUFFIXES[i]}"
    return f"{n}B"
