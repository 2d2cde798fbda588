#!/bin/sh
# bench/autograd_bench.sh - the autograd numbers (issue 12), run by bench/run.sh:
# bench/autograd_overhead.lua three times (the machines are shared: compare the runs).
#   1. `a + b` on 16 elements with no tensor requiring grad (target <= 1 us);
#   2. recording cost per op above the op itself (target <= 1.5 us);
#   3. RSS over 1e4 training steps through autograd (flat);
# then, with valgrind, bench/autograd_instructions.sh (the same ops in instructions).
# Environment as bench/run.sh sets it (LUA, LUA_PATH, LUA_CPATH, OPENBLAS_NUM_THREADS=1).
set -e
LUA=${LUA:-lua5.4}
for round in 1 2 3; do
    echo "== autograd overhead, run $round of 3 (1 thread)"
    OPENBLAS_NUM_THREADS=1 "$LUA" bench/autograd_overhead.lua
done
if command -v valgrind >/dev/null; then
    echo "== recording in instructions (callgrind; independent of the machine's load)"
    sh bench/autograd_instructions.sh
fi
