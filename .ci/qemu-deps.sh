# memhp bench: QEMU, busybox-static and Debian's Linux 6.1 and 6.12 kernels for the
# real-kernel tests (tests/bench/test_vm*.py, test_diff_qemu.py) and
# `memhp bench diff --record` / `--kernel 6.12`.
# Sourced from .ci/run as root on Debian 12 after `apt-get update`; needs only Debian's mirrors.
# Each kernel package is unpacked (not installed system-wide): 6.1 into ./.cache/kernel,
# 6.12 into ./.cache/kernel-6.12; memhp.bench.initramfs finds them there (or via
# MEMHP_KERNEL_DIR).  A kernel already unpacked (its marker file exists) is not fetched again.
apt-get install -y -qq --no-install-recommends qemu-system-x86 busybox-static >/dev/null

# memhp_kernel_fetch DIR PACKAGE: unpack PACKAGE into DIR once.
memhp_kernel_fetch() {
    mkdir -p "$1"
    if [ ! -e "$1/.$2" ]; then
        (
            cd "$1"
            rm -f ./*.deb
            apt-get download -qq -o APT::Sandbox::User=root "$2" >/dev/null
            dpkg-deb -x ./"$2"_*.deb .
            rm -f ./*.deb
            touch ".$2"
        )
    fi
    echo "memhp bench: kernel $2 in $1"
}

# Linux 6.1: what linux-image-amd64 depends on (bookworm), else the newest 6.1.0-N.
MEMHP_KPKG="$(apt-cache depends linux-image-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-6\.1\.0-[0-9]*-amd64\)$/\1/p' | head -n1)"
if [ -z "$MEMHP_KPKG" ]; then
    MEMHP_KPKG="$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' \
        | cut -d' ' -f1 | sort -V | tail -n1)"
fi
memhp_kernel_fetch .cache/kernel "$MEMHP_KPKG"

# Linux 6.12: what linux-image-6.12-amd64 depends on (bookworm security), e.g.
# linux-image-6.12.117+deb12-amd64, else the newest such package.
MEMHP_KPKG612="$(apt-cache depends linux-image-6.12-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-6\.12\.[0-9]*+deb12-amd64\)$/\1/p' | head -n1)"
if [ -z "$MEMHP_KPKG612" ]; then
    MEMHP_KPKG612="$(apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' \
        | cut -d' ' -f1 | sort -V | tail -n1)"
fi
if [ -n "$MEMHP_KPKG612" ]; then
    memhp_kernel_fetch .cache/kernel-6.12 "$MEMHP_KPKG612"
else
    echo "memhp bench: no linux-image-6.12 package in the apt sources; 6.12 runs are skipped"
fi
