"""The guest's boot files: Debian's kernel, and an initramfs built from busybox.

The initramfs is written by Python (cpio ``newc``), so building it needs nothing but
Debian's ``busybox-static`` and the kernel package (for modules).  It holds:

* ``/bin/busybox`` (static) and the ``/init`` script, which links every applet into
  ``/bin``, mounts ``proc``, ``sysfs`` and ``devtmpfs``, loads the modules listed in
  ``/etc/memhp/modules.list`` (9p and virtio for file sharing, kept in
  ``/etc/memhp/ko``), mounts the 9p shares named on the kernel command line
  (``/usr`` of the host may be one: ``/lib`` and ``/lib64`` then point into it, so
  the host's dynamically linked Python runs in the guest), then runs the agent
  (:data:`AGENT_SH`) on ``/dev/ttyS1``;
* the agent: a busybox-sh loop that reads one command per line and answers with its
  exit status, stdout and stderr (see :mod:`memhp.bench.agent`).

Where things are looked up (first hit wins):

* kernel of version V (:data:`BENCH_KERNELS`: ``6.1``, ``6.12``):
  ``$MEMHP_KERNEL_DIR`` (a directory into which the Debian package was unpacked with
  ``dpkg-deb -x``), ``<repo>/.cache/kernel-V`` then ``<repo>/.cache/kernel`` (what
  ``.ci/qemu-deps.sh`` makes: 6.1 in ``kernel``, 6.12 in ``kernel-6.12``), then ``/``
  (the package installed system-wide); the first with a ``boot/vmlinuz-V.*``;
* modules: plain ``.ko`` or xz-compressed ``.ko.xz`` (6.12), decompressed into the
  initramfs; those in ``modules.builtin`` are skipped (virtio_pci is built in 6.12);
* busybox: ``$MEMHP_BUSYBOX``, then ``/bin/busybox`` and ``busybox`` on ``PATH``; it
  must be statically linked;
* cache of built images: ``$MEMHP_CACHE_DIR`` or ``<repo>/.cache/bench``.
"""

from __future__ import annotations

import glob
import hashlib
import lzma
import os
import re
import shutil
import stat
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Modules for 9p file sharing over virtio (dependencies are added automatically).
NINEP_MODULES: tuple[str, ...] = ("virtio_pci", "9pnet_virtio", "9p")
#: Modules for virtio-mem-pci devices (virtio, virtio_ring... come as dependencies).
VIRTIO_MEM_MODULES: tuple[str, ...] = ("virtio_pci", "virtio_mem")


#: The Debian kernels the bench boots: version -> the memhp kernel profile that models it.
BENCH_KERNELS: dict[str, str] = {"6.1": "linux-6.1", "6.12": "linux-6.12"}
#: What each bench kernel's image keeps reserved after boot (``[kernel] image_size``):
#: [_text, __bss_stop) and the brk used after it (68K on both), less what boot frees
#: (machines/qemu-linux-6.1.toml, machines/qemu-linux-6.12.toml): 6.1.0-57 45272K,
#: 6.12.118 38228K.
BENCH_IMAGE_SIZES: dict[str, str] = {"6.1": "45272K", "6.12": "38228K"}
#: The brk the boot used after __bss_stop (reserve_brk(): 68K on both kernels), and the
#: unused decrypted bss boot frees ("Freeing unused decrypted memory": 2036K on 6.1,
#: 2028K on 6.12): with the build's own sections they give the image_size of any build
#: (memhp.bench.kimage.KernelBuild.image_size(): 6.1.0-57 45272K, 6.12.117 38220K,
#: 6.12.118 38228K).
BENCH_BRK_USED = 68 * 1024
BENCH_DECRYPTED_UNUSED: dict[str, int] = {"6.1": 2036 * 1024, "6.12": 2028 * 1024}
#: What each bench kernel's first percpu chunk keeps per CPU (``percpu_per_cpu``;
#: memblock=debug: the unit pcpu_embed_first_chunk() does not give back).
BENCH_PERCPU: dict[str, str] = {"6.1": "248K", "6.12": "264K"}
#: The kernel the bench boots unless told otherwise.
DEFAULT_KERNEL = "6.1"


class BenchSetupError(RuntimeError):
    """The host lacks something the bench needs (QEMU, kernel, busybox)."""


def cache_dir() -> Path:
    """Where built initramfs images and probe results are kept."""
    d = Path(os.environ.get("MEMHP_CACHE_DIR", str(REPO_ROOT / ".cache" / "bench")))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _version_key(path: str) -> tuple[int, ...]:
    """Sort key for ``vmlinuz-6.1.0-56-amd64``: the numbers in the name."""
    return tuple(int(n) for n in re.findall(r"\d+", os.path.basename(path)))


@dataclass(frozen=True)
class KernelImage:
    """A Debian kernel: its bzImage and its module tree."""

    vmlinuz: Path
    modules: Path | None  # lib/modules/<release>, None when absent
    release: str  # e.g. 6.1.0-56-amd64

    @staticmethod
    def find(version: str = DEFAULT_KERNEL) -> KernelImage:
        """Locate Debian's Linux ``version`` (see the module docstring for the search order)."""
        if version not in BENCH_KERNELS:
            raise BenchSetupError(
                f"unknown bench kernel {version!r} (known: {', '.join(BENCH_KERNELS)})"
            )
        pattern = f"vmlinuz-{version}.*"
        roots: list[Path] = []
        env = os.environ.get("MEMHP_KERNEL_DIR")
        if env:
            roots.append(Path(env))
        roots += [REPO_ROOT / ".cache" / f"kernel-{version}", REPO_ROOT / ".cache" / "kernel"]
        roots.append(Path("/"))
        for root in roots:
            cands = sorted(glob.glob(str(root / "boot" / pattern)), key=_version_key)
            readable = [c for c in cands if os.access(c, os.R_OK)]
            if not readable:
                continue
            vmlinuz = Path(readable[-1])
            release = vmlinuz.name[len("vmlinuz-") :]
            mods = root / "lib" / "modules" / release
            if not mods.is_dir():
                mods = root / "usr" / "lib" / "modules" / release
            return KernelImage(vmlinuz, mods if mods.is_dir() else None, release)
        raise BenchSetupError(
            f"no Debian Linux {version} kernel (boot/{pattern}) found in "
            + ", ".join(str(r) for r in roots)
            + "; run `bash .ci/qemu-deps.sh` as root or set MEMHP_KERNEL_DIR"
        )

    def module_path(self, name: str) -> Path | None:
        """The ``.ko``/``.ko.xz`` file of module ``name`` (``-`` and ``_`` are equivalent)."""
        if self.modules is None:
            return None
        index = _module_index(str(self.modules))
        return index.get(name.replace("-", "_"))

    def builtin(self, name: str) -> bool:
        """True when ``name`` is built into the kernel (listed in ``modules.builtin``)."""
        if self.modules is None:
            return False
        return name.replace("-", "_") in _builtin_modules(str(self.modules))


_INDEX_CACHE: dict[str, dict[str, Path]] = {}
_BUILTIN_CACHE: dict[str, frozenset[str]] = {}
#: Module file suffixes the bench reads (Debian 6.1: plain; 6.12: xz).
_KO_SUFFIXES = (".ko", ".ko.xz")


def _module_index(moddir: str) -> dict[str, Path]:
    if moddir not in _INDEX_CACHE:
        idx: dict[str, Path] = {}
        for dirpath, _dirs, files in os.walk(moddir):
            for f in files:
                for suffix in _KO_SUFFIXES:
                    if f.endswith(suffix):
                        idx[f[: -len(suffix)].replace("-", "_")] = Path(dirpath) / f
        _INDEX_CACHE[moddir] = idx
    return _INDEX_CACHE[moddir]


def _builtin_modules(moddir: str) -> frozenset[str]:
    if moddir not in _BUILTIN_CACHE:
        try:
            lines = (Path(moddir) / "modules.builtin").read_text().split()
        except OSError:
            lines = []
        names = {os.path.basename(x).removesuffix(".ko").replace("-", "_") for x in lines}
        _BUILTIN_CACHE[moddir] = frozenset(names)
    return _BUILTIN_CACHE[moddir]


def module_bytes(ko: Path) -> bytes:
    """The module's ELF image (an ``.ko.xz`` decompressed)."""
    data = ko.read_bytes()
    return lzma.decompress(data) if ko.name.endswith(".xz") else data


def module_file_name(ko: Path) -> str:
    """The module's name in the initramfs: ``9p.ko`` for ``9p.ko.xz``."""
    return ko.name.removesuffix(".xz")


def module_depends(ko: Path) -> list[str]:
    """The ``depends=`` list of a module, read from its ``.modinfo`` strings."""
    data = module_bytes(ko)
    m = re.search(rb"\x00depends=([^\x00]*)\x00", data)
    if not m or not m.group(1):
        return []
    return [d.decode().replace("-", "_") for d in m.group(1).split(b",") if d]


def resolve_modules(kernel: KernelImage, wanted: Iterable[str]) -> list[Path]:
    """``wanted`` and their dependencies, in load order (dependencies first)."""
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        if kernel.builtin(name):
            return
        ko = kernel.module_path(name)
        if ko is None:
            raise BenchSetupError(f"module {name} not found under {kernel.modules}")
        for dep in module_depends(ko):
            visit(dep)
        order.append(ko)

    for w in wanted:
        visit(w)
    return order


def is_static_elf(path: str) -> bool:
    """True when ``path`` is an ELF executable without a program interpreter."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False
        is64 = head[4] == 2
        little = head[5] == 1
        end = "<" if little else ">"
        if is64:
            phoff, phentsize, phnum = (
                struct.unpack(end + "Q", head[32:40])[0],
                struct.unpack(end + "H", head[54:56])[0],
                struct.unpack(end + "H", head[56:58])[0],
            )
        else:
            phoff = struct.unpack(end + "I", head[28:32])[0]
            phentsize, phnum = struct.unpack(end + "HH", head[42:46])
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            (ptype,) = struct.unpack(end + "I", f.read(4))
            if ptype == 3:  # PT_INTERP
                return False
    return True


def find_busybox() -> Path:
    """A statically linked busybox (Debian's ``busybox-static``)."""
    cands = [os.environ.get("MEMHP_BUSYBOX", ""), "/bin/busybox", shutil.which("busybox") or ""]
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            if is_static_elf(c):
                return Path(c)
            raise BenchSetupError(f"{c} is dynamically linked: install busybox-static")
    raise BenchSetupError("busybox not found: apt-get install busybox-static")


def find_qemu() -> Path:
    """``qemu-system-x86_64`` on ``PATH``."""
    q = os.environ.get("MEMHP_QEMU") or shutil.which("qemu-system-x86_64")
    if not q:
        raise BenchSetupError("qemu-system-x86_64 not found: apt-get install qemu-system-x86")
    return Path(q)


# --- cpio newc -----------------------------------------------------------------


class CpioWriter:
    """Write a ``newc`` cpio archive (what the kernel unpacks as an initramfs)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 1
        self._dirs: set[str] = set()

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        nameb = name.encode() + b"\0"
        fields = (
            self._ino,
            mode,
            0,  # uid
            0,  # gid
            2 if stat.S_ISDIR(mode) else 1,
            0,  # mtime: fixed, so images are reproducible
            len(data),
            0,
            0,
            rdev[0],
            rdev[1],
            len(nameb),
            0,
        )
        self._ino += 1
        hdr = b"070701" + b"".join(b"%08x" % v for v in fields)
        self._parts.append(hdr + nameb + b"\0" * ((4 - (len(hdr) + len(nameb)) % 4) % 4))
        self._parts.append(data + b"\0" * ((4 - len(data) % 4) % 4))

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p and p not in self._dirs:
                self._dirs.add(p)
                self._entry(p, stat.S_IFDIR | mode)

    def _parent(self, path: str) -> str:
        path = path.strip("/")
        if "/" in path:
            self.mkdir(path.rsplit("/", 1)[0])
        return path

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(self._parent(path), stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        self._entry(self._parent(path), stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(self._parent(path), stat.S_IFCHR | mode, rdev=(major, minor))

    def getvalue(self) -> bytes:
        trailer = CpioWriter()
        trailer._ino = 0
        trailer._entry("TRAILER!!!", 0)
        return b"".join(self._parts + trailer._parts)


# --- guest scripts ----------------------------------------------------------------

#: PID 1.  Kernel command-line options it understands:
#: ``memhp.9p=TAG:MOUNTPOINT[,TAG:MOUNTPOINT...]`` (read-only 9p mounts).
INIT_SH = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /bin /sbin /proc /sys /dev /tmp /mnt /run
# every applet in /bin, so that a host /usr shared over 9p never shadows busybox
for a in $(/bin/busybox --list); do
    [ -e "/bin/$a" ] || /bin/busybox ln -s busybox "/bin/$a"
done
export PATH=/bin:/sbin:/usr/sbin:/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
[ -d /sys/kernel/debug ] && mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
if [ -f /etc/memhp/modules.list ]; then
    for m in $(cat /etc/memhp/modules.list); do
        insmod "/etc/memhp/ko/$m" 2>/dev/console \
            || echo "memhp-init: insmod $m failed" >/dev/console
    done
fi
for opt in $(cat /proc/cmdline); do
    case "$opt" in
    memhp.9p=*)
        for share in $(echo "${opt#memhp.9p=}" | tr , ' '); do
            tag="${share%%:*}"; mnt="${share#*:}"
            mkdir -p "$mnt"
            mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose "$tag" "$mnt" \
                2>/dev/console || echo "memhp-init: 9p mount $tag failed" >/dev/console
        done ;;
    esac
done
# a merged-/usr host /usr shared at /usr brings its libraries and dynamic loader
[ -e /lib ] || ln -s usr/lib /lib
[ -e /lib64 ] || ln -s usr/lib64 /lib64
[ -x /etc/memhp/rc.local ] && /etc/memhp/rc.local
echo "memhp-init: starting agent" >/dev/console
while true; do
    /bin/sh /etc/memhp/agent.sh
    sleep 1
done
"""

#: The agent on ``/dev/ttyS1``.  Host → guest: ``@@C<base64 of a sh script>\n``.
#: Guest → host: ``@@R <rc> <len(stdout)> <len(stderr)>\n`` then stdout and stderr.
AGENT_SH = r"""tty=/dev/ttyS1
stty -F $tty raw -echo -ixon -ixoff
exec <$tty >$tty 2>/dev/console
echo "@@READY"
while IFS= read -r line; do
    case "$line" in
    @@C*) ;;
    *) continue ;;
    esac
    echo "${line#@@C}" | base64 -d >/tmp/.cmd
    (cd / && . /tmp/.cmd) </dev/null >/tmp/.out 2>/tmp/.err
    rc=$?
    echo "@@R $rc $(wc -c </tmp/.out) $(wc -c </tmp/.err)"
    cat /tmp/.out /tmp/.err
done
"""


def build_initramfs(
    kernel: KernelImage,
    busybox: Path,
    modules: Sequence[str] = (),
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Build (or reuse from the cache) an initramfs for ``kernel``; returns its path."""
    kos = resolve_modules(kernel, modules) if modules else []
    h = hashlib.sha256()
    bb = busybox.read_bytes()
    h.update(bb)
    h.update(INIT_SH.encode() + AGENT_SH.encode() + kernel.release.encode())
    for ko in kos:
        h.update(str(ko).encode())
        st = ko.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    for k, v in sorted((extra_files or {}).items()):
        h.update(k.encode() + b"\0" + v)
    out = cache_dir() / f"initramfs-{h.hexdigest()[:16]}.cpio"
    if out.exists():
        return out
    w = CpioWriter()
    for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "root", "etc"):
        w.mkdir(d)
    w.chardev("dev/console", 5, 1)
    w.chardev("dev/null", 1, 3, 0o666)
    w.file("bin/busybox", bb, 0o755)
    w.symlink("bin/sh", "busybox")
    w.file("init", INIT_SH.encode(), 0o755)
    w.file("etc/memhp/agent.sh", AGENT_SH.encode(), 0o755)
    names = []
    for ko in kos:
        w.file(f"etc/memhp/ko/{module_file_name(ko)}", module_bytes(ko))
        names.append(module_file_name(ko))
    if names:
        w.file("etc/memhp/modules.list", ("\n".join(names) + "\n").encode())
    for path, data in sorted((extra_files or {}).items()):
        w.file(path, data, 0o755)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(w.getvalue())
    os.replace(tmp, out)
    return out
