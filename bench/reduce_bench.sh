#!/bin/sh
# bench/reduce_bench.sh - the reduction number of issue 11, run by bench/run.sh: x:sum(2) on a
# {4096, 1024} float32 tensor, one thread, from Lua (bench/reduce_bench.lua) against
#   - the plain C loop of bench/reduce_sum.c, vectorized: built with -O3 -ffast-math, once
#     for baseline x86-64 (SSE2, as the library is built) and once with -mavx2 (the
#     instructions moonopt's kernel picks at run time); the ratio is taken against the
#     faster of the two (target: moonopt / C <= 1.3);
#   - PyTorch 1.13's x.sum(1) (bench/reduce_torch.py; target: moonopt no slower).
# Memory on each side: moonopt's x (16 MB) comes from its Lua allocator (2 MB-aligned with
# MADV_HUGEPAGE on Linux, lua/binding/alloc.c); the C loops run on malloc'd memory and on
# 2 MB-aligned MADV_HUGEPAGE memory (`huge`), the fastest of the four builds x setups
# counting; PyTorch uses its own CPU allocator (posix_memalign; 1.13 gives no huge-page advice).
# Five rounds, interleaved; each ratio is the median over the rounds of that round's ratio.
# CLOCK=cpu times every side in its own process's CPU time (MO_BENCH_CLOCK=cpu) instead of
# wall time: on a machine shared by many jobs wall-time medians measure the scheduler.
# Environment as bench/run.sh sets it (BUILD, LUA, CC, LUA_PATH, LUA_CPATH).
set -e
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
CC=${CC:-cc}
CLOCK=${CLOCK:-wall}
if [ "$CLOCK" = cpu ]; then MO_BENCH_CLOCK=cpu; export MO_BENCH_CLOCK; fi
mkdir -p "$BUILD/bench"

echo "== x:sum(2) on {4096, 1024} float32, 1 thread: moonopt vs plain C loop vs PyTorch ($CLOCK time)"
$CC -std=c11 -O3 -ffast-math -D_POSIX_C_SOURCE=200809L bench/reduce_sum.c -o "$BUILD/bench/reduce_sum"
avx2=""
if $CC -std=c11 -O3 -ffast-math -mavx2 -D_POSIX_C_SOURCE=200809L bench/reduce_sum.c \
       -o "$BUILD/bench/reduce_sum_avx2" 2>/dev/null && grep -q avx2 /proc/cpuinfo 2>/dev/null; then
    avx2="$BUILD/bench/reduce_sum_avx2"
fi
have_torch=0
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then have_torch=1; fi

rc=""; rt=""
for round in 1 2 3 4 5; do
    c=$( ("$BUILD/bench/reduce_sum" 41; "$BUILD/bench/reduce_sum" 41 huge) |
        awk '{if (best == "" || $2 < best) best = $2} END {print best}')
    if [ -n "$avx2" ]; then
        c2=$( ("$avx2" 41; "$avx2" 41 huge) | awk '{if (best == "" || $2 < best) best = $2} END {print best}')
        c=$(awk -v a="$c" -v b="$c2" 'BEGIN {print (b < a ? b : a)}')
    fi
    m=$("$LUA" bench/reduce_bench.lua 41 | awk '{print $2}')
    [ -n "$m" ] || { echo "bench/reduce_bench.lua failed (LUA_PATH/LUA_CPATH as bench/run.sh sets them?)"; exit 1; }
    rc="$rc $(awk -v m="$m" -v c="$c" 'BEGIN {printf "%.4f", m / c}')"
    if [ "$have_torch" = 1 ]; then
        t=$(/usr/bin/python3 bench/reduce_torch.py 41 2>/dev/null | awk '{print $2}')
        rt="$rt $(awk -v m="$m" -v t="$t" 'BEGIN {printf "%.4f", m / t}')"
    fi
    echo "round $round: moonopt $m s, plain C $c s${t:+, PyTorch $t s}"
done
median() { echo "$1" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{r[NR] = $1} END {print r[int((NR + 1) / 2)]}'; }
awk -v r="$(median "$rc")" 'BEGIN {printf "x:sum(2) / plain C loop: median ratio %.3f %s\n", r,
    (r <= 1.3 ? "(target <= 1.3: met)" : "(target <= 1.3: MISSED)")}'
if [ "$have_torch" = 1 ]; then
    awk -v r="$(median "$rt")" 'BEGIN {printf "x:sum(2) / PyTorch x.sum(1): median ratio %.3f %s\n", r,
        (r <= 1.0 ? "(target <= 1.0: met)" : "(target <= 1.0: MISSED)")}'
else
    echo "PyTorch: not available, comparison skipped"
fi
