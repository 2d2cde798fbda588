#!/bin/sh
# bench/lockstep_bench.sh - issue 11's "at least as fast as PyTorch 1.13" for the
# broadcasting add and x:sum(2), measured in lockstep (bench/lockstep.lua: each pair of
# batches, moonopt's and PyTorch's, runs within milliseconds, so the machine's swings of
# speed fall on both sides of a pair). Run by bench/run.sh after elementwise_bench.sh and
# reduce_bench.sh, which time each side in its own process. Needs Debian's python3-torch
# (skipped without it) and mkfifo.
# Environment as bench/run.sh sets it (LUA, LUA_PATH, LUA_CPATH). ROUNDS (default 41) pairs.
set -e
LUA=${LUA:-lua5.4}
echo "== broadcasting add and x:sum(2) against PyTorch 1.13, in lockstep (1 thread, cpu time)"
if ! { [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; }; then
    echo "lockstep: PyTorch not installed, skipped"
    exit 0
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkfifo "$dir/cmd" "$dir/res"
OMP_NUM_THREADS=1 /usr/bin/python3 bench/lockstep_torch.py "$dir/cmd" "$dir/res" "${BATCH:-10}" &
torch_pid=$!
# (timeout: a side that dies before opening its FIFOs would leave the other waiting)
OPENBLAS_NUM_THREADS=1 MOONOPT_NUM_THREADS=1 timeout 600 "$LUA" bench/lockstep.lua "$dir/cmd" "$dir/res" \
    "${ROUNDS:-41}" "${BATCH:-10}" || { kill "$torch_pid" 2>/dev/null; exit 1; }
wait "$torch_pid"
