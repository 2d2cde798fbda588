#!/bin/sh
# bench/nn_bench.sh - the training-stack numbers (issue 4, "Numbers"), run by bench/run.sh,
# each against PyTorch 1.13 measured in the same run, both on one thread:
#   1. Fashion-MNIST MLP 784-256-128-10, batch 128, AdamW: median epoch time
#      (target: moonopt no slower, i.e. pytorch/moonopt >= 1);
#   2. MLP 2-32-32-1, batch 32, Adam: time per training step (forward, loss, backward, step)
#      (target: moonopt at least 3x faster, i.e. pytorch/moonopt >= 3).
# The ratio printed is PyTorch's time over moonopt's (above 1: moonopt is faster).
# moonopt: bench/nn_mlp.lua; PyTorch: bench/nn_torch.py (skipped when /usr/bin/python3 has no
# torch). OPENBLAS_NUM_THREADS=1 for both (torch.set_num_threads(1) too); OPENBLAS_CORETYPE is
# left as the environment sets it, so both use the same OpenBLAS kernels.
# Environment as bench/run.sh sets it (BUILD, LUA, LUA_PATH, LUA_CPATH).
# NN_EPOCHS (default 3) and NN_STEPS / NN_TORCH_STEPS (default 2000 / 500) shorten or lengthen it.
set -e
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
LUA_PATH=${LUA_PATH:-"lua/?.lua;lua/?/init.lua;;"}
LUA_CPATH=${LUA_CPATH:-"$BUILD/?.so;;"}
OPENBLAS_NUM_THREADS=1
export LUA_PATH LUA_CPATH OPENBLAS_NUM_THREADS
EPOCHS=${NN_EPOCHS:-3}
STEPS=${NN_STEPS:-2000}
TORCH_STEPS=${NN_TORCH_STEPS:-500}

have_torch=0
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then
    have_torch=1
fi

# report NAME UNIT SCALE MOONOPT_SECONDS TORCH_SECONDS TARGET
report() {
    if [ -z "$4" ]; then echo "$1: the moonopt run failed"; return 1; fi
    if [ -z "$5" ]; then echo "$1: the PyTorch run failed, comparison skipped"; return 0; fi
    awk -v name="$1" -v unit="$2" -v scale="$3" -v mo="$4" -v pt="$5" -v target="$6" 'BEGIN {
        r = pt / mo
        printf "%s: moonopt %.4g %s, pytorch %.4g %s, ratio %.2f (pytorch/moonopt; target >= %s: %s)\n",
               name, mo * scale, unit, pt * scale, unit, r, target, (r >= target ? "met" : "MISSED")
    }'
}

echo "== Fashion-MNIST MLP 784-256-128-10, batch 128, AdamW, 1 thread: median epoch ($EPOCHS epochs)"
mo=$("$LUA" bench/nn_mlp.lua fashion "$EPOCHS" | awk '$1 == "nn_fashion_epoch_moonopt" {print $2}')
echo "nn_fashion_epoch_moonopt $mo"
[ -n "$mo" ] || { echo "fashion_mlp_epoch: the moonopt run failed"; exit 1; }
if [ $have_torch = 1 ]; then
    pt=$(/usr/bin/python3 bench/nn_torch.py fashion "$EPOCHS" 2>/dev/null |
         awk '$1 == "nn_fashion_epoch_torch" {print $2}')
    echo "nn_fashion_epoch_torch $pt"
    report "fashion_mlp_epoch" s 1 "$mo" "$pt" 1
else
    echo "fashion_mlp_epoch: PyTorch not available, comparison skipped"
fi

echo "== MLP 2-32-32-1, batch 32, Adam, 1 thread: time per training step"
mo=$("$LUA" bench/nn_mlp.lua small "$STEPS" 7 | awk '$1 == "nn_small_step_moonopt" {print $2}')
echo "nn_small_step_moonopt $mo"
[ -n "$mo" ] || { echo "small_mlp_step: the moonopt run failed"; exit 1; }
if [ $have_torch = 1 ]; then
    pt=$(/usr/bin/python3 bench/nn_torch.py small "$TORCH_STEPS" 7 2>/dev/null |
         awk '$1 == "nn_small_step_torch" {print $2}')
    echo "nn_small_step_torch $pt"
    report "small_mlp_step" us 1e6 "$mo" "$pt" 3
else
    echo "small_mlp_step: PyTorch not available, comparison skipped"
fi
