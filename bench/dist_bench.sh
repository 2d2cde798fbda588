#!/bin/sh
# bench/dist_bench.sh - moonopt.dist (issue 15's figures), run by bench/run.sh when mpirun
# and the C module are present: all-reduce bandwidth against raw MPI_Allreduce, the
# Fashion-MNIST MLP's epoch time at 2 ranks against 1 (one BLAS thread per rank), and the
# per-rank optimizer state of ZeRO-1 at 2 ranks. The machine has 2 cores shared with
# other work: the figures are reported as measured.
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
if ! command -v mpirun >/dev/null 2>&1 || [ ! -f "$BUILD/moonopt/dist_core.so" ]; then
    echo "== moonopt.dist: skipped (no mpirun or no $BUILD/moonopt/dist_core.so)"
    exit 0
fi
LUA_PATH="lua/?.lua;lua/?/init.lua;;"
LUA_CPATH="$BUILD/?.so;;"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export LUA_PATH LUA_CPATH OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
run() { mpirun --oversubscribe -np "$@"; }

echo "== moonopt.dist: all-reduce bandwidth on loopback (2 and 3 ranks, 4 MB)"
run 2 "$LUA" bench/dist_allreduce.lua 1048576
run 3 "$LUA" bench/dist_allreduce.lua 1048576

echo "== moonopt.dist: Fashion-MNIST MLP, one epoch at global batch 128, 1 rank vs 2 ranks"
one=$(run 1 "$LUA" examples/fashion_mnist_dist.lua --epochs 1 2>/dev/null | grep '^final')
two=$(run 2 "$LUA" examples/fashion_mnist_dist.lua --epochs 1 2>/dev/null | grep '^final')
echo "1 rank:  $one"
echo "2 ranks: $two"
printf '%s\n%s\n' "$one" "$two" | sed 's/.*median_epoch_s=\([0-9.]*\).*/\1/' | paste -sd' ' | \
    awk '{printf "throughput at 2 ranks / 1 rank: %.2fx (2 cores shared with other work)\n", $1 / $2}'

echo "== moonopt.dist: ZeRO-1 per-rank optimizer state at 2 and 3 ranks (AdamW)"
run 2 "$LUA" tests/dist/zero.lua AdamW | grep '^rank .*state'
run 3 "$LUA" tests/dist/zero.lua AdamW | grep '^rank .*state'
