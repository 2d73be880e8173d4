"""memhp.bench.kimage: a kernel build's sections read from its bzImage."""

from __future__ import annotations

import bz2
import gzip
import itertools
import lzma
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from memhp.bench import kimage
from memhp.bench.initramfs import (
    BENCH_BRK_USED,
    BENCH_DECRYPTED_UNUSED,
    BENCH_IMAGE_SIZES,
    BenchSetupError,
    KernelImage,
)
from memhp.bench.kimage import KernelImageError, kernel_build, layout_of_sections
from memhp.kernel.machine import parse_size
from memhp.kernel.profiles import get_profile

K = 0xFFFFFFFF81000000  # __START_KERNEL_map + 16M: where x86_64 links _text

#: A 6.12-like build: .text, then the RO_DATA sections (ending unaligned), .data and
#: the sections after _edata, .bss; an init section and percpu (address 0) besides.
SECTIONS = [
    (".text", K, 0x1000000),
    (".rodata", K + 0x1000000, 0x6530A6),
    ("__ksymtab", K + 0x1656F10, 0xEEA4),
    (".BTF_ids", K + 0x1B6F868, 0xD90),
    (".data", K + 0x1C00000, 0x270F80),
    ("__bug_table", K + 0x1E70F80, 0x1C350),
    (".data..percpu", 0, 0x39000),
    (".init.text", K + 0x233A000, 0xA3594),
    (".bss", K + 0x2736000, 0x4CA000),
    (".brk", K + 0x2C00000, 0x30000),
]
LAYOUT = ((0, 0x1000000), (0x1000000, 0x1B71000), (0x1C00000, 0x1E70F80), (0x2736000, 0x2C00000))


def elf(sections: list[tuple[str, int, int]], loads: tuple[tuple[int, int], ...] = ()) -> bytes:
    """A minimal ELF64 vmlinux: section headers (SHT_NOBITS, SHF_ALLOC) and the
    PT_LOAD segments ``(vaddr, paddr)`` given."""
    names = b"\0" + b"".join(n.encode() + b"\0" for n, _a, _s in sections) + b".shstrtab\0"
    phoff = 64 + len(names)
    phdrs = b"".join(struct.pack("<IIQQQQQQ", 1, 5, 0, va, pa, 0, 0, 4096) for va, pa in loads)
    shoff = phoff + len(phdrs)
    heads = [bytes(64)]
    pos = 1
    for name, addr, size in sections:
        heads.append(struct.pack("<IIQQQQIIQQ", pos, 8, 0x3, addr, 0, size, 0, 0, 4096, 0))
        pos += len(name) + 1
    heads.append(struct.pack("<IIQQQQIIQQ", pos, 3, 0, 0, 64, len(names), 0, 0, 1, 0))
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        2, 62, 1, K, phoff if loads else 0, shoff, 0, 64, 56, len(loads), 64, len(heads),
        len(heads) - 1,
    )  # fmt: skip
    return header + names + phdrs + b"".join(heads)


def bzimage(payload: bytes, setup_sects: int = 3, version: int = 0x20F) -> bytes:
    """A bzImage: the setup header's fields the reader uses, then the payload."""
    head = bytearray((setup_sects + 1) * 512 + 0x40)
    head[0x1F1] = setup_sects
    head[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", head, 0x206, version)
    struct.pack_into("<II", head, 0x248, 0x40, len(payload))
    return bytes(head) + payload + struct.pack("<I", 12345)  # the build's size_append


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "xz": lambda b: lzma.compress(b, format=lzma.FORMAT_XZ),
    "lzma": lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE),
    "bzip2": bz2.compress,
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
}


@pytest.mark.parametrize("method", sorted(COMPRESSORS))
def test_reads_the_layout_from_each_compression(tmp_path: Path, method: str) -> None:
    f = tmp_path / "vmlinuz-6.12.999"
    f.write_bytes(bzimage(COMPRESSORS[method](elf(SECTIONS))))
    assert kimage.read_build(f).layout == LAYOUT


def test_what_boot_frees_of_the_image(tmp_path: Path) -> None:
    """free_initmem(): from the per-CPU segment (PT_LOAD at 0) to .smp_locks; the SMP
    alternatives: .smp_locks; mark_rodata_ro(): the two gaps.  With the brk used and
    the decrypted bss, what stays reserved (6.12.118's figures: 38228K)."""
    sections = [*SECTIONS, (".smp_locks", K + 0x272B000, 0xA000)]
    loads = ((K, 0x1000000), (K + 0x1C00000, 0x2C00000), (0, 0x3302000), (K + 0x233B000, 0x333B000))
    f = tmp_path / "vmlinuz"
    f.write_bytes(bzimage(zstandard.ZstdCompressor().compress(elf(sections, loads))))
    build = kimage.read_build(f)
    assert build.layout == LAYOUT
    assert (build.init_bytes, build.smp_locks_bytes) == (0x429000, 0xA000)  # 4260K, 40K
    assert build.gaps() == 0x8F000  # no text/rodata gap; rodata/data 572K
    assert build.image_size(68 << 10, 2028 << 10) == (45056 + 68 - 4260 - 40 - 572 - 2028) << 10
    assert kimage.read_build(tmp_path / "vmlinuz") == build
    f.write_bytes(bzimage(gzip.compress(elf(SECTIONS))))  # no segments: nothing to say
    assert kimage.read_build(f).image_size(0, 0) is None


def test_layout_follows_the_linker_script() -> None:
    """_etext ends .text; __end_rodata is the page after the last read-only section
    (whatever its name); _edata ends .data, not the BUG table after it."""
    assert layout_of_sections(SECTIONS) == LAYOUT
    moved = [(n, a, s + 0x1000 if n == ".BTF_ids" else s) for n, a, s in SECTIONS]
    assert layout_of_sections(moved)[1] == (0x1000000, 0x1B72000)
    aligned = [(n, a, 0x1B71000 - 0x1B6F868 if n == ".BTF_ids" else s) for n, a, s in SECTIONS]
    assert layout_of_sections(aligned)[1] == (0x1000000, 0x1B71000)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"MZ" + bytes(700), "not a bzImage"),
        (bzimage(b"", version=0x206)[:-4] + b"x", "boot protocol 2.6"),
        (bzimage(b"\x02\x21\x4c\x18" + bytes(64)), "unsupported method (magic 02214c18"),
        (bzimage(b"\x1f\x8b" + bytes(64)), "does not decompress"),
        (bzimage(gzip.compress(b"not an elf" * 10)), "not an ELF vmlinux"),
        (bzimage(gzip.compress(elf(SECTIONS[:3]))), "no .data, .bss section"),
    ],
)
def test_bad_images_say_what_is_wrong(tmp_path: Path, data: bytes, words: str) -> None:
    f = tmp_path / "vmlinuz"
    f.write_bytes(data)
    with pytest.raises(KernelImageError, match=None) as ei:
        kimage.read_build(f)
    assert words in str(ei.value) and str(f) in str(ei.value)
    assert isinstance(ei.value, BenchSetupError)


def test_truncated_payload_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "vmlinuz"
    f.write_bytes(bzimage(gzip.compress(elf(SECTIONS)))[:900])
    with pytest.raises(KernelImageError, match="outside the file"):
        kimage.read_build(f)
    with pytest.raises(KernelImageError, match="No such file"):
        kimage.read_build(tmp_path / "absent")


def test_out_of_order_sections_are_refused() -> None:
    swapped = [(n, K + 0x3000000, s) if n == ".rodata" else (n, a, s) for n, a, s in SECTIONS]
    with pytest.raises(KernelImageError, match="out of order"):
        layout_of_sections(swapped)


def test_builds_are_cached_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMHP_CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "vmlinuz-6.12.999"
    f.write_bytes(bzimage(gzip.compress(elf(SECTIONS))))
    assert kernel_build(f).layout == LAYOUT
    assert list((tmp_path / "cache").glob("kernel-build-vmlinuz-6.12.999-*.json"))
    kimage._MEMO.clear()
    calls: list[Path] = []

    def counting(p: Path) -> kimage.KernelBuild:
        calls.append(p)
        return kimage.KernelBuild(((0, 1), (1, 2), (2, 3), (3, 4)))

    monkeypatch.setattr(kimage, "read_build", counting)
    assert kernel_build(f).layout == LAYOUT and not calls  # from the file cache
    f.write_bytes(bzimage(gzip.compress(elf(SECTIONS))) + b"\0")  # another build
    assert kernel_build(f).layout == ((0, 1), (1, 2), (2, 3), (3, 4)) and calls == [f]
    for bad in ("{", '{"layout": [[0, 1]]}', "[]"):  # a corrupt cache file is rebuilt
        kimage._MEMO.clear()
        for c in (tmp_path / "cache").glob("kernel-build-*.json"):
            c.write_text(bad)
        assert kernel_build(f).layout == ((0, 1), (1, 2), (2, 3), (3, 4))


@pytest.mark.parametrize("version", ["6.1", "6.12"])
def test_debian_kernels_the_bench_boots(version: str) -> None:
    """The Debian builds on this host (CI: .ci/qemu-deps.sh): four ordered ranges from
    _text, and for the build the profile was written from, the profile's layout."""
    try:
        img = KernelImage.find(version)
    except BenchSetupError as e:
        pytest.skip(str(e))
    layout = kernel_build(img.vmlinuz).layout
    assert layout[0][0] == 0 and len(layout) == 4
    assert all(a < b <= c for (a, b), (c, _d) in itertools.pairwise(layout))
    reference = {"6.1": "6.1.0-57-amd64", "6.12": "6.12.117+deb12-amd64"}[version]
    if img.release == reference:
        profile = get_profile({"6.1": "linux-6.1", "6.12": "linux-6.12"}[version])
        assert layout == profile.kernel_image_layout
    # what stays of the image, for the builds BENCH_IMAGE_SIZES was read from
    size = kimage.kernel_build(img.vmlinuz).image_size(
        BENCH_BRK_USED, BENCH_DECRYPTED_UNUSED[version]
    )
    assert size is not None and 30 << 20 < size < layout[-1][1]
    if img.release in ("6.1.0-57-amd64", "6.12.118+deb12-amd64"):
        assert size == parse_size(BENCH_IMAGE_SIZES[version], "image_size")
