#!/bin/sh
# tests/run.sh [--c-only] C_TEST_BINARY... - run the C tests, then the LuaUnit suite,
# and print one closing line "N passed, N failed" (what CI reads).
#   BUILD=dir      where core.so lives (default build)
#   SANITIZE=1     preload the ASan runtime into the (uninstrumented) Lua interpreter
#   VALGRIND=1     run the C tests under valgrind memcheck
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
c_only=0
if [ "$1" = "--c-only" ]; then c_only=1; shift; fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# the C programs that embed Lua and the LuaUnit run find moonopt in the work tree
LUA_PATH="lua/?.lua;lua/?/init.lua;tests/lua/?.lua;;"
LUA_CPATH="$BUILD/?.so;;"
export LUA_PATH LUA_CPATH

for bin in "$@"; do
    echo "== $bin"
    if [ "${VALGRIND:-0}" = 1 ]; then
        valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
            "$bin" >"$log" 2>&1
    else
        "$bin" >"$log" 2>&1
    fi
    rc=$?
    cat "$log" | tee -a "$log.all" | grep -v '^ok ' || true
    if [ $rc -ne 0 ] && ! grep -q '^not ok ' "$log"; then
        # a crash or a valgrind error outside any test still counts as a failure
        echo "not ok $bin exited with status $rc" | tee -a "$log.all"
    fi
done

if [ $c_only = 0 ]; then
    echo "== LuaUnit (tests/lua)"
    if [ "${SANITIZE:-0}" = 1 ]; then
        LD_PRELOAD="$(${CC:-cc} -print-file-name=libasan.so) $(${CC:-cc} -print-file-name=libubsan.so)"
        export LD_PRELOAD
        ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
        export ASAN_OPTIONS
    fi
    \
        "$LUA" tests/lua/run.lua -o tap >"$log" 2>&1
    rc=$?
    unset LD_PRELOAD
    cat "$log" >> "$log.all"
    grep -v -e '^ok ' -e '^# Starting class' "$log" || true
    if [ $rc -ne 0 ] && ! grep -q '^not ok ' "$log"; then
        echo "not ok LuaUnit run exited with status $rc" | tee -a "$log.all"
    fi
fi

passed=$(grep -c '^ok ' "$log.all" 2>/dev/null || true)
failed=$(grep -c '^not ok ' "$log.all" 2>/dev/null || true)
rm -f "$log.all"
[ "$failed" = 0 ] || status=1
[ "$passed" -gt 0 ] || status=1
echo "${passed:-0} passed, ${failed:-0} failed"
exit $status
