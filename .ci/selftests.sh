# The kernel's own memory hotplug selftest (tools/testing/selftests/memory-hotplug/
# mem-on-off-test.sh of Debian's linux-source-6.1 and linux-source-6.12), run against
# simulated machines with the matching profile by tests/sysfs/test_kernel_selftest.py.
# Sourced from .ci/run as root after `apt-get update`; the scripts are extracted into
# ./.cache/selftests (6.1) and ./.cache/selftests-6.12 (not committed), once.

# memhp_selftest_fetch DIR SOURCE-PACKAGE
memhp_selftest_fetch() {
    if [ ! -e "$1/mem-on-off-test.sh" ]; then
        mkdir -p "$1"
        (
            cd "$1"
            apt-get download -qq -o APT::Sandbox::User=root "$2" >/dev/null
            dpkg-deb --fsys-tarfile ./"$2"_*.deb \
                | tar -xO --wildcards "./usr/src/$2.tar.xz" \
                | tar -xJO --wildcards '*/tools/testing/selftests/memory-hotplug/mem-on-off-test.sh' \
                > mem-on-off-test.sh.tmp
            mv mem-on-off-test.sh.tmp mem-on-off-test.sh
            rm -f ./"$2"_*.deb
        )
    fi
    echo "memhp: kernel selftest in $1/mem-on-off-test.sh"
}
memhp_selftest_fetch .cache/selftests linux-source-6.1
if apt-cache show linux-source-6.12 >/dev/null 2>&1; then
    memhp_selftest_fetch .cache/selftests-6.12 linux-source-6.12
fi
apt-get install -y -qq --no-install-recommends bc >/dev/null
