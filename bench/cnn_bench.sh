#!/bin/sh
# bench/cnn_bench.sh - the CNN training step of issue 13 ("Speed"), against PyTorch 1.13
# measured in the same run, both on one thread: the CNN (examples/fashion_cnn.lua's
# model), batch 128, AdamW, a fixed number of batches of synthetic Fashion-MNIST-shaped data
# per rep, median time per batch over reps (target: moonopt no slower, i.e.
# pytorch/moonopt >= 1). moonopt: bench/cnn_moonopt.lua; PyTorch: bench/cnn_torch.py (skipped
# when /usr/bin/python3 has no torch). OPENBLAS_NUM_THREADS=1 and torch.set_num_threads(1).
# The ratio printed is PyTorch's time over moonopt's (above 1: moonopt is faster).
# CNN_BATCHES (default 40) and CNN_REPS (default 3) change the work; the machine's load
# changes both sides, so compare the ratio, and repeat the whole script on a shared machine.
# Environment as bench/run.sh sets it (BUILD, LUA, LUA_PATH, LUA_CPATH).
set -e
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
LUA_PATH=${LUA_PATH:-"lua/?.lua;lua/?/init.lua;;"}
LUA_CPATH=${LUA_CPATH:-"$BUILD/?.so;;"}
OPENBLAS_NUM_THREADS=1
export LUA_PATH LUA_CPATH OPENBLAS_NUM_THREADS
BATCHES=${CNN_BATCHES:-40}
REPS=${CNN_REPS:-3}

echo "== Fashion-MNIST CNN (issue 13), batch 128, AdamW, 1 thread: time per batch ($BATCHES batches x $REPS reps)"
mo=$("$LUA" bench/cnn_moonopt.lua "$BATCHES" "$REPS" | awk '$1 == "cnn_batch_moonopt" {print $2}')
echo "cnn_batch_moonopt $mo"
[ -n "$mo" ] || { echo "cnn_batch: the moonopt run failed"; exit 1; }
pt=""
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then
    pt=$(/usr/bin/python3 bench/cnn_torch.py "$BATCHES" "$REPS" 2>/dev/null | awk '$1 == "cnn_batch_torch" {print $2}')
    echo "cnn_batch_torch $pt"
fi
if [ -z "$pt" ]; then echo "cnn_batch: PyTorch not available, comparison skipped"; exit 0; fi
awk -v mo="$mo" -v pt="$pt" 'BEGIN {
    r = pt / mo
    printf "cnn_batch: moonopt %.2f ms, pytorch %.2f ms, ratio %.2f (pytorch/moonopt; target >= 1: %s)\n",
           mo * 1e3, pt * 1e3, r, (r >= 1 ? "met" : "MISSED")
}'
