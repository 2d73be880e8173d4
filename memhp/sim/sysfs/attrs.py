"""Parsing helpers of the kernel's sysfs store handlers, and value formatting.

One function per kernel helper: sysfs_streq(), kstrtobool(), kstrtoull(),
bitmap_print_to_pagebuf() (``%*pbl`` and ``%*pb``), and the sysctl parsers of
kernel/sysctl.c (proc_dointvec_minmax(), proc_doulongvec_minmax()).
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterable


def sysfs_streq(buf: bytes, s: str) -> bool:
    """sysfs_streq(): equal, ignoring one trailing newline on either side."""
    b = buf[:-1] if buf.endswith(b"\n") else buf
    return b == s.encode()


def kstrtobool(buf: bytes) -> bool | None:
    """kstrtobool() (lib/kstrtox.c, 6.1 and 6.12): true when the first character is
    one of ``YyTt1``, false for ``NnFf0``, ``on``/``off`` by their first two (any
    case); None (-EINVAL) otherwise.  ``true``, ``false``, ``yes please`` and
    ``0x1`` (false) are taken; ``enable``, ``2`` and ``o`` are not."""
    c = buf[:1]
    if c in _TRUE:
        return True
    if c in _FALSE:
        return False
    if c in (b"o", b"O"):
        c2 = buf[1:2]
        if c2 in (b"n", b"N"):
            return True
        if c2 in (b"f", b"F"):
            return False
    return None


_TRUE = frozenset((b"y", b"Y", b"t", b"T", b"1"))
_FALSE = frozenset((b"n", b"N", b"f", b"F", b"0"))


def kstrtoull(buf: bytes, base: int = 0) -> int | None:
    """kstrtoull(): the whole string (one trailing newline allowed) is a number."""
    s = buf[:-1] if buf.endswith(b"\n") else buf
    try:
        text = s.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not text or text[0] == "-" or text.strip() != text:
        return None
    if text.startswith("+"):
        text = text[1:]
    try:
        if base == 0:
            if text.lower().startswith("0x"):
                v = int(text[2:], 16) if text[2:] else None
            elif text.startswith("0") and len(text) > 1:
                v = int(text[1:], 8)
            else:
                v = int(text, 10)
        else:
            v = int(text, base)
    except ValueError:
        return None
    if v is None or v >= 1 << 64:
        return None
    return v


def kstrtoul(buf: bytes, base: int = 0) -> int:
    """kstrtoul()/kstrtoull() with the kernel's errors: the value, -EINVAL (not a
    number) or -ERANGE (_parse_integer() overflows 64 bits)."""
    v = kstrtoull(buf, base)
    if v is not None:
        return v
    s = (buf[:-1] if buf.endswith(b"\n") else buf).removeprefix(b"+")
    if base in (0, 16) and s[:2].lower() == b"0x":
        s, base = s[2:], 16
    elif base == 0:
        base = 8 if s[:1] == b"0" else 10
    digits = "0123456789abcdef"[:base]
    if s and all(chr(c).lower() in digits for c in s):
        return -errno.ERANGE
    return -errno.EINVAL


def nodelist(ids: Iterable[int]) -> str:
    """``%*pbl``: a list of ranges, "0-1,3"."""
    s = sorted(set(ids))
    out: list[str] = []
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(str(s[i]) if i == j else f"{s[i]}-{s[j]}")
        i = j + 1
    return ",".join(out)


def cpumask_hex(cpus: Iterable[int], nr_cpu_ids: int) -> str:
    """``%*pb`` of a cpumask: hex words of 32 bits, comma separated, no leading zeros padding
    beyond the mask width."""
    mask = 0
    for c in cpus:
        mask |= 1 << c
    nbits = max(nr_cpu_ids, 1)
    nchunks = -(-nbits // 32)
    chunks = []
    for i in reversed(range(nchunks)):
        bits = min(32, nbits - 32 * i)
        width = -(-bits // 4)
        chunks.append(f"{(mask >> (32 * i)) & 0xFFFFFFFF:0{width}x}")
    return ",".join(chunks)


#: proc_get_long(): an optional '-', digits in C's base 0 (strtoul_lenient()), then a
#: blank (proc_wspace_sep) or the end.
_PROC_LONG = re.compile(rb"(-?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)(?=[ \t\n]|$)")
_PROC_SPACES = re.compile(rb"[ \t\n]*")


def _c_base0(digits: bytes) -> int:
    if digits[:2] in (b"0x", b"0X"):
        return int(digits, 16)
    return int(digits, 8) if digits[:1] == b"0" else int(digits)


def proc_dovec(
    buf: bytes, n: int, lo: int | None, hi: int | None, signed: bool
) -> tuple[list[int], int]:
    """__do_proc_dointvec() / __do_proc_doulongvec_minmax() writing up to ``n`` values:
    blanks, then each value in [lo, hi] (a sign only when ``signed``).  Returns the
    values the kernel stored (those before a bad one) and 0 or -EINVAL (a bad value,
    or none at all).  What follows the last value is not looked at (with
    sysctl_writes_strict, the write(2) of the rest is ignored)."""
    out: list[int] = []
    pos = 0
    while len(out) < n:
        sp = _PROC_SPACES.match(buf, pos)
        pos = sp.end() if sp else pos
        if pos >= len(buf):
            break
        m = _PROC_LONG.match(buf, pos)
        if m is None:
            return out, -errno.EINVAL
        v = _c_base0(m.group(2))
        neg = bool(m.group(1))
        if neg and not signed:
            return out, -errno.EINVAL
        v = -v if neg else v
        if (lo is not None and v < lo) or (hi is not None and v > hi) or v >= 1 << 63:
            return out, -errno.EINVAL
        out.append(v)
        pos = m.end()
    return out, 0 if out else -errno.EINVAL
