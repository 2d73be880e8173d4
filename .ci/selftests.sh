# The kernel's own memory hotplug selftest (tools/testing/selftests/memory-hotplug/
# mem-on-off-test.sh of Debian's linux-source-6.1), run against a simulated machine
# by tests/sysfs/test_kernel_selftest.py.  Sourced from .ci/run as root after
# `apt-get update`; the script is extracted into ./.cache/selftests (not committed).
if [ ! -e .cache/selftests/mem-on-off-test.sh ]; then
    mkdir -p .cache/selftests
    (
        cd .cache/selftests
        apt-get download -qq -o APT::Sandbox::User=root linux-source-6.1 >/dev/null
        dpkg-deb --fsys-tarfile ./linux-source-6.1_*.deb \
            | tar -xO --wildcards './usr/src/linux-source-6.1.tar.xz' \
            | tar -xJO --wildcards '*/tools/testing/selftests/memory-hotplug/mem-on-off-test.sh' \
            > mem-on-off-test.sh
        rm -f ./linux-source-6.1_*.deb
    )
fi
apt-get install -y -qq --no-install-recommends bc >/dev/null
echo "memhp: kernel selftest in .cache/selftests/mem-on-off-test.sh"
