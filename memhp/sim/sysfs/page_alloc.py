"""The vm sysctls of mm/page_alloc.c under /proc/sys/vm: min_free_kbytes,
watermark_scale_factor and lowmem_reserve_ratio (page_alloc_sysctl_table[] in 6.12,
vm_table[] in 6.1).  Each write goes through the kernel's handler
(:meth:`memhp.kernel.mm.page_alloc_watermarks.Watermarks.sysctl`): the watermarks
or the lowmem reserves, and MemAvailable's totalreserve_pages, change at once."""

from __future__ import annotations

from collections.abc import Callable

from memhp.kernel.kernel import Kernel
from memhp.kernel.mm.page_alloc_watermarks import WATERMARK_SCALE_FACTOR_MAX
from memhp.sim.sysfs.attrs import proc_dovec
from memhp.sim.sysfs.kernfs import Attr, Entry

INT_MAX = (1 << 31) - 1


def _dointvec_minmax(
    show: Callable[[], str], lo: int, hi: int, handler: Callable[[int], None]
) -> Attr:
    """A one-int sysctl: proc_dointvec_minmax() in [lo, hi] (-EINVAL), then its
    handler with the value."""

    def store(buf: bytes) -> int:
        vals, err = proc_dovec(buf, 1, lo, hi, signed=True)
        if not err:
            handler(vals[0])
        return err

    return Attr(show, store, mode=0o644)


def _min_free_kbytes(k: Kernel) -> Attr:
    """min_free_kbytes_sysctl_handler(): at least 0."""

    def show() -> str:
        k.pa.ensure_watermarks()
        return f"{k.pa.wmarks.min_free_kbytes}\n"

    return _dointvec_minmax(
        show, 0, INT_MAX, lambda v: k.pa.wmarks.sysctl(k.pgdats, min_free_kbytes=v)
    )


def _watermark_scale_factor(k: Kernel) -> Attr:
    """watermark_scale_factor_sysctl_handler(): 1..3000."""
    return _dointvec_minmax(
        lambda: f"{k.pa.wmarks.scale_factor}\n",
        1,
        WATERMARK_SCALE_FACTOR_MAX,
        lambda v: k.pa.wmarks.sysctl(k.pgdats, scale_factor=v),
    )


def _lowmem_reserve_ratio(k: Kernel) -> Attr:
    def store(buf: bytes) -> int:
        """lowmem_reserve_ratio_sysctl_handler(): proc_dointvec_minmax() of the
        MAX_NR_ZONES ratios, whose error it ignores (the values before a bad one are
        kept), ratios below 1 made 0, then setup_per_zone_lowmem_reserve()."""
        old = k.pa.wmarks.lowmem_reserve_ratio
        vals, _err = proc_dovec(buf, len(old), -INT_MAX - 1, INT_MAX, signed=True)
        k.pa.wmarks.sysctl(k.pgdats, lowmem_reserve_ratio=(*vals, *old[len(vals) :]))
        return 0

    return Attr(
        lambda: "\t".join(map(str, k.pa.wmarks.lowmem_reserve_ratio)) + "\n", store, mode=0o644
    )


def vm_sysctls(k: Kernel) -> dict[str, Entry]:
    return {
        "lowmem_reserve_ratio": lambda: _lowmem_reserve_ratio(k),
        "min_free_kbytes": lambda: _min_free_kbytes(k),
        "watermark_scale_factor": lambda: _watermark_scale_factor(k),
    }
