#!/bin/sh
# bench/nn_threads_bench.sh - issue 14's training numbers at 1 and 2 threads, against PyTorch
# 1.13 measured in the same run at the same thread counts:
#   1. the Fashion-MNIST MLP 784-256-128-10 epoch (bench/nn_mlp.lua fashion, bench/nn_torch.py
#      fashion): target, moonopt's epoch at 2 threads at most 0.8x PyTorch's at 2 threads;
#   2. the CNN training step (bench/cnn_moonopt.lua, bench/cnn_torch.py), batch 128.
# Threads: MOONOPT_NUM_THREADS sizes moonopt's pool and OpenBLAS (docs/design.md "Threads");
# BENCH_THREADS is torch.set_num_threads. Every figure is the median of NN_RUNS (default 3)
# runs, each run itself a median over its epochs / reps. The machine's load changes both
# sides: the load average is printed, compare the ratios, and repeat on a shared machine.
# NN_EPOCHS (default 2), CNN_BATCHES (default 20), CNN_REPS (default 2) change the work.
# Environment as bench/run.sh sets it (BUILD, LUA, LUA_PATH, LUA_CPATH).
set -e
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
LUA_PATH=${LUA_PATH:-"lua/?.lua;lua/?/init.lua;;"}
LUA_CPATH=${LUA_CPATH:-"$BUILD/?.so;;"}
export LUA_PATH LUA_CPATH
RUNS=${NN_RUNS:-3}
EPOCHS=${NN_EPOCHS:-2}
BATCHES=${CNN_BATCHES:-20}
REPS=${CNN_REPS:-2}

have_torch=0
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then
    have_torch=1
fi

# median3 CMD...: runs CMD RUNS times, prints the median of the last field of its
# output's last line (every script prints "<name> <seconds>").
median_of_runs() {
    i=0
    vals=""
    while [ $i -lt "$RUNS" ]; do
        v=$("$@" 2>/dev/null | awk 'NF >= 2 {v = $2} END {print v}')
        [ -n "$v" ] || return 1
        vals="$vals $v"
        i=$((i + 1))
    done
    echo "$vals" | tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}

echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
echo "== Fashion-MNIST MLP 784-256-128-10, batch 128, AdamW: epoch seconds, median of $RUNS runs"
for t in 1 2; do
    mo=$(MOONOPT_NUM_THREADS=$t median_of_runs "$LUA" bench/nn_mlp.lua fashion "$EPOCHS") ||
        { echo "mlp: the moonopt run failed"; exit 1; }
    eval "mo_mlp_$t=$mo"
    echo "mlp_epoch_moonopt_${t}t $mo"
    if [ $have_torch = 1 ]; then
        pt=$(BENCH_THREADS=$t median_of_runs /usr/bin/python3 bench/nn_torch.py fashion "$EPOCHS") ||
            pt=""
        eval "pt_mlp_$t=$pt"
        echo "mlp_epoch_torch_${t}t $pt"
    fi
done
echo "== CNN, batch 128, AdamW: seconds per batch, median of $RUNS runs"
for t in 1 2; do
    mo=$(MOONOPT_NUM_THREADS=$t median_of_runs "$LUA" bench/cnn_moonopt.lua "$BATCHES" "$REPS") ||
        { echo "cnn: the moonopt run failed"; exit 1; }
    eval "mo_cnn_$t=$mo"
    echo "cnn_batch_moonopt_${t}t $mo"
    if [ $have_torch = 1 ]; then
        pt=$(BENCH_THREADS=$t median_of_runs /usr/bin/python3 bench/cnn_torch.py "$BATCHES" "$REPS") ||
            pt=""
        eval "pt_cnn_$t=$pt"
        echo "cnn_batch_torch_${t}t $pt"
    fi
done
echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"

awk -v m1="$mo_mlp_1" -v m2="$mo_mlp_2" -v c1="$mo_cnn_1" -v c2="$mo_cnn_2" 'BEGIN {
    printf "moonopt 2 threads vs 1: MLP epoch %.2fx faster, CNN step %.2fx faster\n", m1 / m2, c1 / c2
}'
if [ $have_torch = 1 ] && [ -n "$pt_mlp_2" ] && [ -n "$pt_cnn_2" ]; then
    awk -v m1="$mo_mlp_1" -v m2="$mo_mlp_2" -v p1="$pt_mlp_1" -v p2="$pt_mlp_2" \
        -v c1="$mo_cnn_1" -v c2="$mo_cnn_2" -v q1="$pt_cnn_1" -v q2="$pt_cnn_2" 'BEGIN {
        printf "mlp_epoch 1 thread: moonopt/pytorch %.2f\n", m1 / p1
        r = m2 / p2
        printf "mlp_epoch 2 threads: moonopt/pytorch %.2f (target <= 0.8: %s)\n", r, (r <= 0.8 ? "met" : "MISSED")
        printf "cnn_batch 1 thread: moonopt/pytorch %.2f; 2 threads: %.2f\n", c1 / q1, c2 / q2
    }'
else
    echo "PyTorch not available: comparison skipped"
fi
