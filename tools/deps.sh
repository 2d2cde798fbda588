#!/bin/sh
# tools/deps.sh - install the Debian packages moonopt builds and tests with (`make deps`).
# As root it runs apt-get; otherwise it prints the exact command and stops.
PKGS="build-essential pkg-config lua5.4 liblua5.4-dev lua-unit luarocks lua-check libopenblas-dev valgrind zlib1g-dev dataset-fashion-mnist clang libclang-rt-14-dev openmpi-bin libopenmpi-dev"
# Extra package names as arguments are installed too (make golden and make bench add
# python3-numpy python3-torch: golden-vector generators and the PyTorch reference only).
PKGS="$PKGS $*"
# make test and make demo call this when a quick file check (DEPS_OK in the Makefile) fails.
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "deps: not a Debian system; install the equivalents of: $PKGS"
    echo "deps: (Fashion-MNIST: the four *-ubyte.gz files in /usr/share/datasets/fashion-mnist)"
    exit 1
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "deps: all present ($PKGS)"
    exit 0
fi
cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" != 0 ]; then
    echo "deps: missing Debian packages:$missing"
    echo "deps: run as root:  sudo sh -c '$cmd'"
    exit 1
fi
echo "deps: installing$missing"
sh -c "$cmd"
