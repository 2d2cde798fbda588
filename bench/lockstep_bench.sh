#!/bin/sh
# bench/lockstep_bench.sh - issue 11's "at least as fast as PyTorch 1.13" for the
# broadcasting add and x:sum(2), measured in lockstep (bench/lockstep.lua: each pair of
# batches, moonopt's and PyTorch's, runs within milliseconds, so the machine's swings of
# speed fall on both sides of a pair). Run by bench/run.sh after elementwise_bench.sh and
# reduce_bench.sh, which time each side in its own process. Needs Debian's python3-torch
# (skipped without it) and mkfifo.
# Environment as bench/run.sh sets it (LUA, LUA_PATH, LUA_CPATH). RUNS (default 3) runs of
# ROUNDS (201) pairs, each batch BATCH (10) timed calls after WARM (5) untimed ones; OPS
# (add,add_,sum2) the ops. SELF=1 puts moonopt on the other side too
# (bench/lockstep_partner.lua): the A/A check, every ratio should be 1.00. After the
# PyTorch runs one A/A run follows (AA=0 skips it): the method's error at that moment
# (another tenant has made one process of a pair 30 % slower than its twin for minutes).
set -e
LUA=${LUA:-lua5.4}
if [ "${SELF:-0}" = 1 ]; then
    echo "== lockstep A/A check: moonopt against itself (1 thread, cpu time)"
    other="$LUA bench/lockstep_partner.lua"
    export LOCKSTEP_OTHER=moonopt2
else
    echo "== broadcasting add and x:sum(2) against PyTorch 1.13, in lockstep (1 thread, cpu time)"
    if ! { [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; }; then
        echo "lockstep: PyTorch not installed, skipped"
        exit 0
    fi
    other="/usr/bin/python3 bench/lockstep_torch.py"
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkfifo "$dir/cmd" "$dir/res"
# Both sides on one CPU (CPU, default 0): they take turns, so neither waits for the other,
# and a pair never compares a CPU another tenant is slowing with one it is not
pin=
if command -v taskset >/dev/null 2>&1; then pin="taskset -c ${CPU:-0}"; fi
# RUNS separate pairs of processes: each run's figures move by a few percent, more than
# its interval says
run=1
while [ "$run" -le "${RUNS:-3}" ]; do
    echo "-- run $run"
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MOONOPT_NUM_THREADS=1 $pin $other \
        "$dir/cmd" "$dir/res" "${BATCH:-10}" "${WARM:-5}" &
    other_pid=$!
    # (timeout: a side that dies before opening its FIFOs would leave the other waiting)
    OPENBLAS_NUM_THREADS=1 MOONOPT_NUM_THREADS=1 timeout 600 $pin "$LUA" bench/lockstep.lua \
        "$dir/cmd" "$dir/res" "${ROUNDS:-201}" "${BATCH:-10}" "${WARM:-5}" ||
        { kill "$other_pid" 2>/dev/null; exit 1; }
    wait "$other_pid"
    run=$((run + 1))
done
if [ "${SELF:-0}" != 1 ] && [ "${AA:-1}" = 1 ]; then
    SELF=1 RUNS=1 sh "$0"
fi
