"""Where a kernel build puts its sections: /proc/iomem's "Kernel code" ... "Kernel bss".

setup_arch() (arch/x86/kernel/setup.c) inserts four resources into iomem_resource:
code [_text, _etext), rodata [__start_rodata, __end_rodata), data [_sdata, _edata)
and bss [__bss_start, __bss_stop).  Those symbols are facts of one build -- a Debian
security update moves them by pages -- so the bench reads them from the image it
boots rather than from the kernel profile (which describes one build, the default).

Debian ships no System.map (a placeholder), so the symbols are found from the ELF
section headers of the vmlinux inside the bzImage (arch/x86/kernel/vmlinux.lds.S):

* ``_text`` is the start of ``.text`` and ``_etext`` its end (6.1, 6.12: ``_etext = .``
  right after the output section);
* ``__start_rodata`` is the start of ``.rodata`` (RO_DATA(): ``. = ALIGN(align)``, then
  the section opens with it) and ``__end_rodata`` the end of the last allocated section
  before ``.data`` (NOTES, BTF...), page aligned (``. = ALIGN((align)); __end_rodata = .``);
* ``_sdata`` opens ``.data`` and ``_edata`` closes it (BUG_TABLE and ORC follow outside);
* ``__bss_start`` and ``__bss_stop`` open and close ``.bss`` (which ends page aligned).

What boot gives back of the image comes from the same headers: free_initmem() frees
[__init_begin, __init_end) -- from the per-CPU segment (``PT_LOAD`` at address 0,
placed first in the init section) to ``.smp_locks`` (the first section after
``__init_end``) --, alternative_instructions() the SMP alternatives (``.smp_locks``),
mark_rodata_ro() the text/rodata and rodata/data gaps of the layout; with the brk the
boot used and the unused decrypted bss (facts of the kernel version, not visible in
the headers) that gives ``[kernel] image_size`` (:meth:`KernelBuild.image_size`).

The vmlinux is the bzImage's payload (arch/x86/boot/header.S: ``setup_sects`` at 0x1f1,
``payload_offset``/``payload_length`` at 0x248/0x24c from the protected-mode code,
boot protocol 2.08+), compressed with gzip, bzip2, lzma, xz or zstd.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import io
import json
import lzma
import os
import struct
from collections.abc import Iterable
from pathlib import Path

import zstandard
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from memhp.bench.initramfs import BenchSetupError, cache_dir

PAGE_SIZE = 4096
#: SHF_ALLOC: the section occupies memory at run time.
_SHF_ALLOC = 0x2
#: arch/x86/boot/header.S: the offsets of the fields the bench reads.
_SETUP_SECTS = 0x1F1
_HEADER_MAGIC = 0x202
_VERSION = 0x206
_PAYLOAD = 0x248
_MIN_VERSION = 0x208  # payload_offset/payload_length appeared in boot protocol 2.08

#: An image layout: [start, end) of code, rodata, data and bss as offsets from _text.
Layout = tuple[tuple[int, int], ...]


class KernelImageError(BenchSetupError):
    """The bzImage cannot be read (not a bzImage, an unknown compression, no ELF)."""


def _page_up(x: int) -> int:
    return -(-x // PAGE_SIZE) * PAGE_SIZE


@dataclasses.dataclass(frozen=True)
class KernelBuild:
    """What the bench needs to know of one kernel build."""

    #: "Kernel code", "rodata", "data", "bss" as [start, end) offsets from _text.
    layout: Layout
    #: [__init_begin, __init_end) in bytes (free_initmem()); None: not found.
    init_bytes: int | None = None
    #: The .smp_locks section in bytes ("Freeing SMP alternatives memory").
    smp_locks_bytes: int | None = None

    def gaps(self) -> int:
        """mark_rodata_ro()'s frees: PFN_ALIGN(_etext) to __start_rodata and
        PFN_ALIGN(__end_rodata) to _sdata."""
        (_c, etext), (rodata, end_rodata), (sdata, _e), _b = self.layout
        return max(0, rodata - _page_up(etext)) + max(0, sdata - _page_up(end_rodata))

    def image_size(self, brk_used: int, decrypted_unused: int) -> int | None:
        """What stays reserved of the image after boot: [_text, __bss_stop) and the brk
        used after it (reserve_brk()), less what boot frees; None when the headers
        did not say where init is."""
        if self.init_bytes is None or self.smp_locks_bytes is None:
            return None
        kept = self.layout[-1][1] + brk_used
        return kept - self.init_bytes - self.smp_locks_bytes - self.gaps() - decrypted_unused


def _payload(data: bytes, where: str) -> bytes:
    if len(data) < _PAYLOAD + 8 or data[_HEADER_MAGIC : _HEADER_MAGIC + 4] != b"HdrS":
        raise KernelImageError(f"{where}: not a bzImage (no HdrS header)")
    (version,) = struct.unpack_from("<H", data, _VERSION)
    if version < _MIN_VERSION:
        raise KernelImageError(
            f"{where}: boot protocol {version >> 8}.{version & 0xFF} has no payload fields"
        )
    setup_sects = data[_SETUP_SECTS] or 4
    offset, length = struct.unpack_from("<II", data, _PAYLOAD)
    start = (setup_sects + 1) * 512 + offset
    if length == 0 or start + length > len(data):
        raise KernelImageError(f"{where}: payload [{start:#x}, +{length:#x}) outside the file")
    return data[start : start + length]


def _decompress(payload: bytes, where: str) -> bytes:
    """The payload decompressed (arch/x86/boot/compressed/Makefile: the build appends
    the size, which the decompressors leave as trailing data)."""
    try:
        if payload.startswith(b"\x1f\x8b"):
            with gzip.GzipFile(fileobj=io.BytesIO(payload)) as f:
                return f.read()
        if payload.startswith(b"\xfd7zXZ\x00"):
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
        if payload.startswith(b"\x5d\x00\x00"):
            return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(payload)
        if payload.startswith(b"BZh"):
            return bz2.BZ2Decompressor().decompress(payload)
        if payload.startswith(b"\x28\xb5\x2f\xfd"):
            return zstandard.ZstdDecompressor().decompressobj().decompress(payload)
    except (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError) as e:
        raise KernelImageError(f"{where}: the payload does not decompress: {e}") from None
    raise KernelImageError(
        f"{where}: payload compressed with an unsupported method "
        f"(magic {payload[:4].hex()}; the bench reads gzip, bzip2, lzma, xz and zstd)"
    )


def layout_of_sections(sections: Iterable[tuple[str, int, int]], where: str = "vmlinux") -> Layout:
    """The four resources from the allocated sections ``(name, address, size)``."""
    by_name: dict[str, tuple[int, int]] = {}
    spans: list[tuple[int, int]] = []
    for name, addr, size in sections:
        by_name.setdefault(name, (addr, addr + size))
        spans.append((addr, addr + size))
    missing = [n for n in (".text", ".rodata", ".data", ".bss") if n not in by_name]
    if missing:
        raise KernelImageError(f"{where}: no {', '.join(missing)} section")
    text, etext = by_name[".text"]
    rodata = by_name[".rodata"][0]
    sdata, edata = by_name[".data"]
    bss, bss_stop = by_name[".bss"]
    if not text < etext <= rodata < sdata < edata <= bss < bss_stop:
        raise KernelImageError(f"{where}: .text, .rodata, .data and .bss out of order")
    end_rodata = _page_up(max(e for s, e in spans if rodata <= s < sdata))
    return tuple(
        (a - text, b - text)
        for a, b in ((text, etext), (rodata, end_rodata), (sdata, edata), (bss, bss_stop))
    )


def read_build(vmlinuz: Path) -> KernelBuild:
    """The build in bzImage ``vmlinuz``: its layout and what boot frees of it
    (decompresses it: ~1 s)."""
    where = str(vmlinuz)
    try:
        data = vmlinuz.read_bytes()
    except OSError as e:
        raise KernelImageError(f"{where}: {e.strerror or e}") from None
    raw = _decompress(_payload(data, where), where)
    try:
        elf = ELFFile(io.BytesIO(raw))
        sections = [
            (str(s.name), int(s["sh_addr"]), int(s["sh_size"]))
            for s in elf.iter_sections()
            if int(s["sh_flags"]) & _SHF_ALLOC and int(s["sh_addr"]) != 0
        ]
        loads = [
            (int(g["p_vaddr"]), int(g["p_paddr"]))
            for g in elf.iter_segments()
            if g["p_type"] == "PT_LOAD"
        ]
    except (ELFError, struct.error) as e:
        raise KernelImageError(f"{where}: the payload is not an ELF vmlinux: {e}") from None
    layout = layout_of_sections(sections, where)
    text = next(a for n, a, _s in sections if n == ".text")
    init_bytes = smp = None
    locks = next(((a, sz) for n, a, sz in sections if n == ".smp_locks"), None)
    percpu = next((pa for va, pa in loads if va == 0), None)  # PERCPU_VADDR(): at 0
    text_pa = next((pa for va, pa in loads if va == text), None)
    if locks is not None and percpu is not None and text_pa is not None:
        init_begin = percpu - text_pa
        if 0 < init_begin < locks[0] - text:
            init_bytes, smp = locks[0] - text - init_begin, _page_up(locks[1])
    return KernelBuild(layout, init_bytes, smp)


_MEMO: dict[tuple[str, int, int], KernelBuild] = {}


def _from_json(text: str) -> KernelBuild | None:
    try:
        doc = json.loads(text)
        layout = tuple((int(a), int(b)) for a, b in doc["layout"])
        init, smp = doc.get("init_bytes"), doc.get("smp_locks_bytes")
        if len(layout) != 4:
            return None
        return KernelBuild(
            layout, None if init is None else int(init), None if smp is None else int(smp)
        )
    except (ValueError, TypeError, KeyError):
        return None


def kernel_build(vmlinuz: Path) -> KernelBuild:
    """:func:`read_build`, kept per file (name, size, mtime) in memory and in the
    bench's cache directory."""
    st = vmlinuz.stat()
    key = (str(vmlinuz.resolve()), st.st_size, st.st_mtime_ns)
    if key in _MEMO:
        return _MEMO[key]
    cached = cache_dir() / f"kernel-build-{vmlinuz.name}-{st.st_size}-{st.st_mtime_ns}.json"
    try:
        build = _from_json(cached.read_text())
    except OSError:
        build = None
    if build is None:
        build = read_build(vmlinuz)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(build)))
        tmp.replace(cached)
    _MEMO[key] = build
    return build
