#!/bin/sh
# bench/run.sh - `make bench`: every benchmark, each printed as a ratio against a reference
# measured in the same run (the machines are shared and noisy; absolute times drift).
# BLAS and moonopt's pool run single-threaded so the comparison is like for like
# (bench/threads_bench.sh measures 1 and 2 threads on every side).
set -e
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
CC=${CC:-cc}
LUA_PATH="lua/?.lua;lua/?/init.lua;;"
LUA_CPATH="$BUILD/?.so;;"
OPENBLAS_NUM_THREADS=1
# moonopt's own pool too: one thread unless a bench sets its count (threads_bench.sh does)
MOONOPT_NUM_THREADS=1
export LUA_PATH LUA_CPATH OPENBLAS_NUM_THREADS MOONOPT_NUM_THREADS
mkdir -p "$BUILD/bench"

echo "== tensor method calls from Lua"
"$LUA" bench/tensor.lua calls

echo "== matmul 512x512x512: mo.matmul from Lua vs cblas_sgemm from C (1 thread)"
$CC -O2 $(pkg-config --cflags openblas) bench/matmul_cblas.c -o "$BUILD/bench/matmul_cblas" \
    $(pkg-config --libs openblas)
ratios=""
for round in 1 2 3 4 5; do
    c=$("$BUILD/bench/matmul_cblas" 11 | awk '{print $2}')
    l=$("$LUA" bench/tensor.lua matmul 11 | awk '{print $2}')
    ratios="$ratios $(awk -v l="$l" -v c="$c" 'BEGIN{printf "%.4f", l/c}')"
done
echo "$ratios" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '
    {r[NR]=$1} END {m=r[int((NR+1)/2)];
    printf "mo.matmul / cblas_sgemm: median ratio %.3f over %d rounds (min %.3f, max %.3f) %s\n",
        m, NR, r[1], r[NR], (m <= 1.10 ? "(target <= 1.10: met)" : "(target <= 1.10: MISSED)")}'

echo "== matmul 512x512x512 float64: mo.matmul from Lua vs cblas_dgemm from C (1 thread)"
ratios=""
for round in 1 2 3 4 5; do
    c=$("$BUILD/bench/matmul_cblas" 11 float64 | awk '{print $2}')
    l=$("$LUA" bench/tensor.lua matmul 11 float64 | awk '{print $2}')
    ratios="$ratios $(awk -v l="$l" -v c="$c" 'BEGIN{printf "%.4f", l/c}')"
done
echo "$ratios" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '
    {r[NR]=$1} END {m=r[int((NR+1)/2)];
    printf "mo.matmul float64 / cblas_dgemm: median ratio %.3f over %d rounds (min %.3f, max %.3f) %s\n",
        m, NR, r[1], r[NR], (m <= 1.10 ? "(target <= 1.10: met)" : "(target <= 1.10: MISSED)")}'

for extra in bench/*_bench.sh; do
    [ -f "$extra" ] && sh "$extra"
done
exit 0
