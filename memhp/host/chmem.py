"""``chmem``-compatible selection and onlining/offlining of memory blocks.

Selection (util-linux sys-utils/chmem.c): a SIZE (``512M``, ``2g``, plain numbers
are MiB) picks blocks in order, online lowest block first and offline highest
first; a RANGE ``0xSTART-0xEND`` (END inclusive, both aligned); with ``-b`` a
block number or ``FIRST-LAST``.  ``-z ZONE`` restricts onlining to blocks that can
go to that zone (``online_movable``/``online_kernel``) and offlining to blocks in
it.  Results: 0 all done, 1 nothing done, 64 partly done.

Unlike chmem, bad input is refused before anything is written: an unknown block,
a misaligned range, a size larger than what exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from memhp.abi import units
from memhp.abi.layout import MiB
from memhp.abi.paths import SYS_MEMORY
from memhp.abi.units import size_to_human_string
from memhp.abi.zones import ZONE_MOVABLE, ZONE_NAMES
from memhp.host.errors import SysfsError, UsageError
from memhp.host.memory import block_indices, block_size, block_state, set_state
from memhp.host.root import SysfsRoot

EXIT_OK, EXIT_FAILURE, EXIT_SOMEOK = 0, 1, 64


@dataclass
class Selection:
    """What to act on: a number of blocks (``size``) or a block range."""

    size: int | None = None  # in blocks
    first: int = 0
    last: int = 0


@dataclass
class Result:
    """What happened to each block, and the exit code."""

    done: list[int] = field(default_factory=list)
    already: list[int] = field(default_factory=list)
    failed: list[tuple[int, SysfsError | str]] = field(default_factory=list)
    wanted: int = 0
    messages: list[str] = field(default_factory=list)  # -v lines (stdout)
    warnings: list[str] = field(default_factory=list)  # stderr lines

    @property
    def code(self) -> int:
        ok = len(self.done) + len(self.already)
        if ok >= self.wanted:
            return EXIT_OK
        return EXIT_SOMEOK if ok else EXIT_FAILURE


UINT64_MAX = (1 << 64) - 1


def parse_size(text: str) -> int:
    """chmem's SIZE in bytes: ``512M``, ``2g``, ``1GiB`` (binary), ``1GB`` (decimal);
    a bare number means MiB (:func:`memhp.abi.units.parse_size`)."""
    try:
        size = units.parse_size(text, default_unit=MiB)
    except ValueError:
        raise UsageError(f"Failed to parse size: '{text}'") from None
    if size > UINT64_MAX:  # strtosize(): the value does not fit in a uint64_t
        raise UsageError(f"Failed to parse size: '{text}': Numerical result out of range")
    return size


def _parse_num(text: str, what: str) -> int:
    if not (text.strip().isdigit() and text.isascii()):
        raise UsageError(f"Failed to parse {what}: '{text}'")
    return int(text)


def parse_selection(param: str, use_blocks: bool, bsize: int) -> Selection:
    if not param.isascii():
        raise UsageError(f"Invalid parameter: {param}")
    parts = param.split("-")
    if len(parts) > 2:
        raise UsageError(f"Invalid parameter: {param}")
    human = size_to_human_string(bsize)
    if len(parts) == 1:
        if use_blocks:
            n = _parse_num(parts[0], "block number")
            return Selection(first=n, last=n)
        size = parse_size(parts[0])
        if size % bsize:
            raise UsageError(f"Size must be aligned to memory block size ({human})")
        return Selection(size=size // bsize)
    a, b = parts
    if use_blocks:
        first, last = _parse_num(a, "start"), _parse_num(b, "end")
    else:
        for s, what in ((a, "start"), (b, "end")):
            if len(s) < 2 or s[1] not in "xX":
                raise UsageError(f"Invalid {what} address format: {s}")
        try:
            start, end = int(a, 16), int(b, 16)
        except ValueError:
            raise UsageError(f"Invalid parameter: {param}") from None
        if start % bsize or (end + 1) % bsize:
            raise UsageError(
                "Start address and (end address + 1) must be aligned to memory block size "
                f"({human})"
            )
        first, last = start // bsize, end // bsize
    if first > last:
        raise UsageError(f"Invalid range: {param}")
    return Selection(first=first, last=last)


def zone_id(name: str) -> str:
    for z in ZONE_NAMES:
        if z.lower() == name.lower():
            return z
    raise UsageError(f"unknown memory zone: {name}")


def _valid_zones(root: SysfsRoot, index: int) -> str | None:
    return root.read_str_optional(f"{SYS_MEMORY}/memory{index}/valid_zones")


def _describe(index: int, bsize: int) -> str:
    start = index * bsize
    return f"Memory Block {index} (0x{start:016x}-0x{start + bsize - 1:016x})"


def change(
    root: SysfsRoot,
    param: str,
    enable: bool,
    use_blocks: bool = False,
    zone: str | None = None,
    verbose: bool = False,
    on_block: Callable[[int, str], None] | None = None,
) -> Result:
    """Online (``enable``) or offline the selection ``param``.

    Raises :class:`UsageError` for bad input before writing anything.
    """
    bsize = block_size(root)
    sel = parse_selection(param, use_blocks, bsize)
    indices = block_indices(root)
    have_zones = bool(indices) and _valid_zones(root, indices[0]) is not None
    zname = zone_id(zone) if zone is not None else None
    res = Result()
    if zone is not None and not have_zones:
        res.warnings.append("zone ignored, no valid_zones sysfs attribute present")
        zname = None
    if sel.size == 0:
        return res  # chmem: nothing to do
    if sel.size is not None:
        if sel.size > len(indices):
            raise UsageError(
                f"Size {size_to_human_string(sel.size * bsize)} is larger than all memory "
                f"blocks together ({size_to_human_string(len(indices) * bsize)})"
            )
        candidates = indices if enable else list(reversed(indices))
        res.wanted = sel.size
    else:
        candidates = [i for i in indices if sel.first <= i <= sel.last]
        if not candidates:
            if sel.first == sel.last:
                raise UsageError(f"memory block {sel.first} does not exist")
            raise UsageError(f"no memory blocks in range {sel.first}-{sel.last}")
        # chmem counts the blocks of the range that do not exist as failures: the
        # range is only partly done (exit 64); like chmem, say so only with -v.
        res.wanted = sel.last - sel.first + 1
        missing = res.wanted - len(candidates)
        if missing and verbose:
            res.warnings.append(
                f"{missing} of the {res.wanted} blocks in range {sel.first}-{sel.last} do not exist"
            )
    target = "online" if enable else "offline"
    for idx in candidates:
        if sel.size is not None and len(res.done) >= sel.size:
            break
        desc = _describe(idx, bsize)
        state = block_state(root, idx)
        if state is not None and state[:6] == target[:6]:
            if sel.size is None:
                res.already.append(idx)
                if verbose:
                    res.messages.append(f"{desc} already {'enabled' if enable else 'disabled'}")
            continue
        value = target
        if have_zones:
            vz = _valid_zones(root, idx) or ""
            if zname is not None:
                ok = zname.lower() in vz.lower() if enable else vz.lower().startswith(zname.lower())
                if not ok:
                    if sel.size is None:
                        verb = "enable" if enable else "disable"
                        res.failed.append((idx, "zone mismatch"))
                        res.warnings.append(f"{desc} {verb} failed: Zone mismatch")
                    continue
                if enable:
                    value = "online_movable" if zname == ZONE_MOVABLE else "online_kernel"
            elif enable:
                value = "online_movable" if "movable" in vz.lower() else "online"
        try:
            set_state(root, idx, value)
        except SysfsError as e:
            res.failed.append((idx, e))
            verb = "enable" if enable else "disable"
            if sel.size is None:
                res.warnings.append(f"{desc} {verb} failed: {e.strerror}")
            elif verbose:
                res.messages.append(f"{desc} {verb} failed")
            if on_block:
                on_block(idx, "failed")
            continue
        res.done.append(idx)
        if verbose:
            res.messages.append(f"{desc} {'enabled' if enable else 'disabled'}")
        if on_block:
            on_block(idx, value)
    if sel.size is not None and len(res.done) < sel.size:
        what = "enable" if enable else "disable"
        got = size_to_human_string(len(res.done) * bsize)
        res.warnings.append(f"Could only {what} {got} of memory")
    return res
