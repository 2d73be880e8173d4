# memhp bench: QEMU, busybox-static and Debian's Linux 6.1 kernel for the real-kernel
# tests (tests/bench/test_vm*.py, test_diff_qemu.py) and `memhp bench diff --record`.
# Sourced from .ci/run as root on Debian 12 after `apt-get update`; needs only Debian's mirrors.
# The kernel package is unpacked into ./.cache/kernel (not installed system-wide);
# memhp.bench.vm finds it there (or via MEMHP_KERNEL_DIR).
apt-get install -y -qq --no-install-recommends qemu-system-x86 busybox-static >/dev/null
MEMHP_KPKG="$(apt-cache depends linux-image-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-6\.1\.0-[0-9]*-amd64\)$/\1/p' | head -n1)"
if [ -z "$MEMHP_KPKG" ]; then
    MEMHP_KPKG="$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' \
        | cut -d' ' -f1 | sort -V | tail -n1)"
fi
mkdir -p .cache/kernel
if [ ! -e ".cache/kernel/.$MEMHP_KPKG" ]; then
    (
        cd .cache/kernel
        rm -f ./*.deb
        apt-get download -qq -o APT::Sandbox::User=root "$MEMHP_KPKG" >/dev/null
        dpkg-deb -x ./"$MEMHP_KPKG"_*.deb .
        rm -f ./*.deb
        touch ".$MEMHP_KPKG"
    )
fi
echo "memhp bench: kernel $MEMHP_KPKG in .cache/kernel"
