#!/bin/sh
# tests/embed/install_test.sh - install moonopt into a temporary prefix and build hosts
# against it exactly as docs/embedding.md tells users to:
#
#   make install install-embed PREFIX=/tmp/x
#   PKG_CONFIG_PATH=/tmp/x/lib/pkgconfig cc host.c $(pkg-config --cflags --libs moonopt lua5.4)
#
# then run them from outside the work tree with LUA_PATH="" (everything the script needs is
# compiled into libmoonopt-lua). Also: the Lua-free build with moonopt-core, a static link,
# the versioned sonames. Run from the repository root (make embed-install-test).
#   BUILD=dir   the build tree to install from (default build)
# Prints "ok <what>" / "not ok <what>" lines; exits non-zero on any failure.
set -u
BUILD=${BUILD:-build}
MAKE=${MAKE:-make}
CC=${CC:-cc}
PKG_CONFIG=${PKG_CONFIG:-pkg-config}
LUA_PC=${LUA_PC:-lua5.4}

repo=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
failed=0

ok() { echo "ok $1"; }
fail() { echo "not ok $1"; failed=1; }
# check "what" command...: ok when the command succeeds
check() {
    what=$1
    shift
    if "$@" >"$tmp/check.log" 2>&1; then ok "$what"; else fail "$what"; sed 's/^/# /' "$tmp/check.log"; fi
}

if ! $MAKE --no-print-directory BUILD="$BUILD" PREFIX="$prefix" install install-embed \
        >"$tmp/make.log" 2>&1; then
    fail "make install install-embed PREFIX=$prefix"
    sed 's/^/# /' "$tmp/make.log" | tail -30
    exit 1
fi
ok "make install install-embed PREFIX=$prefix"

for f in include/moonopt.h include/moonopt_optim.h include/moonopt_ckpt.h include/moonopt_lua.h \
         lib/libmoonopt.a lib/libmoonopt.so lib/libmoonopt-lua.a lib/libmoonopt-lua.so \
         lib/pkgconfig/moonopt.pc lib/pkgconfig/moonopt-core.pc; do
    check "installed $f" test -e "$prefix/$f"
done
check "libmoonopt.so has soname libmoonopt.so.0" \
    sh -c "readelf -d '$prefix/lib/libmoonopt.so' | grep -q 'SONAME.*\\[libmoonopt\\.so\\.0\\]'"
check "libmoonopt-lua.so has soname libmoonopt-lua.so.0" \
    sh -c "readelf -d '$prefix/lib/libmoonopt-lua.so' | grep -q 'SONAME.*\\[libmoonopt-lua\\.so\\.0\\]'"

PKG_CONFIG_PATH=$prefix/lib/pkgconfig
export PKG_CONFIG_PATH
check "pkg-config --modversion moonopt" sh -c "[ \"\$($PKG_CONFIG --modversion moonopt)\" = 0.1.0 ]"
check "pkg-config --exists moonopt-core" $PKG_CONFIG --exists moonopt-core

# Build from a directory outside the work tree, with only the example's own files.
mkdir -p "$tmp/src"
cp "$repo/examples/host/host.c" "$repo/examples/host/minimize.lua" \
   "$repo/examples/host/kernels_only.c" "$tmp/src/"
cd "$tmp/src" || exit 1

# shellcheck disable=SC2046  # word splitting of pkg-config's output is the point
if $CC host.c $($PKG_CONFIG --cflags --libs moonopt $LUA_PC) -o host >"$tmp/cc.log" 2>&1; then
    ok "cc host.c \$(pkg-config --cflags --libs moonopt $LUA_PC)"
else
    fail "cc host.c \$(pkg-config --cflags --libs moonopt $LUA_PC)"
    sed 's/^/# /' "$tmp/cc.log"
fi
# pkg-config moonopt alone also works (it Requires the Lua package)
# shellcheck disable=SC2046
check "cc host.c \$(pkg-config --cflags --libs moonopt)" \
    $CC host.c $($PKG_CONFIG --cflags --libs moonopt) -o host2

# Run it with nothing on any Lua path: the module is compiled in.
expect_xy='^x=0\.99[0-9]* y=0\.99[0-9]*$'
if [ -x host ] && LD_LIBRARY_PATH=$prefix/lib LUA_PATH_5_4= LUA_PATH= LUA_CPATH_5_4= LUA_CPATH= \
        ./host minimize.lua >"$tmp/host.out" 2>&1 && grep -q "$expect_xy" "$tmp/host.out"; then
    ok "installed host minimizes Rosenbrock ($(grep '^x=' "$tmp/host.out"))"
else
    fail "installed host minimizes Rosenbrock"
    sed 's/^/# /' "$tmp/host.out" 2>/dev/null
fi
check "host links the shared libraries" \
    sh -c "LD_LIBRARY_PATH='$prefix/lib' ldd ./host | grep -q 'libmoonopt-lua.so.0 => $prefix/lib'"

# Lua-free: the kernels only.
# shellcheck disable=SC2046
check "cc kernels_only.c \$(pkg-config --cflags --libs moonopt-core) -lm" \
    $CC kernels_only.c $($PKG_CONFIG --cflags --libs moonopt-core) -lm -o kernels_only
check "kernels_only runs and needs no Lua" sh -c "
    LD_LIBRARY_PATH='$prefix/lib' ./kernels_only | grep -q '^rosenbrock: x=0.99' &&
    ! LD_LIBRARY_PATH='$prefix/lib' ldd ./kernels_only | grep -q liblua"

# Static: the archives, with the private libraries pkg-config --static lists (the line
# docs/embedding.md gives).
# shellcheck disable=SC2046
check "static link: libmoonopt-lua.a libmoonopt.a + private libraries" \
    $CC host.c $($PKG_CONFIG --cflags moonopt) "$prefix/lib/libmoonopt-lua.a" \
        "$prefix/lib/libmoonopt.a" $($PKG_CONFIG --libs $LUA_PC) \
        $($PKG_CONFIG --static --libs moonopt-core | sed 's/-lmoonopt//') -o host_static
check "static host runs without the shared libraries" sh -c "
    ! ldd ./host_static | grep -q libmoonopt &&
    LUA_PATH_5_4= LUA_PATH= LUA_CPATH_5_4= LUA_CPATH= ./host_static minimize.lua | grep -q '$expect_xy'"

[ $failed = 0 ] && echo "install test passed" || echo "install test FAILED"
exit $failed
