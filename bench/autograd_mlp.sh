#!/bin/sh
# bench/autograd_mlp.sh - issue 12's autograd numbers, 1 thread, as ratios measured in the
# same run (bench/autograd_mlp.lua; PyTorch 1.13 through bench/nn_torch.py):
#   1. the Fashion-MNIST MLP epoch through autograd (F.linear, F.relu, F.cross_entropy) over
#      the fused torch7 path's (target <= 1.2), and module calls (model(x)) over it too;
#   2. PyTorch's epoch for the same MLP over the autograd epoch (target >= 1: no slower);
#   3. 1e4 training steps through autograd: RSS at the start and the end (flat).
# Environment as bench/run.sh sets it (BUILD, LUA, LUA_PATH, LUA_CPATH).
# AG_EPOCHS (default 3), AG_STEPS (default 10000) shorten or lengthen it.
set -e
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
LUA_PATH=${LUA_PATH:-"lua/?.lua;lua/?/init.lua;;"}
LUA_CPATH=${LUA_CPATH:-"$BUILD/?.so;;"}
OPENBLAS_NUM_THREADS=1
MOONOPT_NUM_THREADS=1
export LUA_PATH LUA_CPATH OPENBLAS_NUM_THREADS MOONOPT_NUM_THREADS
EPOCHS=${AG_EPOCHS:-3}
STEPS=${AG_STEPS:-10000}

val() { sed -n "s/^$1 //p"; }
fused=$($LUA bench/autograd_mlp.lua epoch fused "$EPOCHS" | val autograd_epoch_fused)
ag=$($LUA bench/autograd_mlp.lua epoch autograd "$EPOCHS" | val autograd_epoch_autograd)
mod=$($LUA bench/autograd_mlp.lua epoch module "$EPOCHS" | val autograd_epoch_module)
torch=""
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then
    torch=$(/usr/bin/python3 bench/nn_torch.py fashion "$EPOCHS" | val nn_fashion_epoch_torch)
fi
awk -v f="$fused" -v a="$ag" -v m="$mod" -v t="$torch" 'BEGIN {
    printf "autograd MLP epoch: fused %.3f s, autograd (F) %.3f s, module calls %.3f s\n", f, a, m
    printf "  autograd/fused %.2f (target <= 1.2: %s), module/fused %.2f\n", a / f, (a / f <= 1.2 ? "met" : "MISSED"), m / f
    if (t != "") printf "  pytorch %.3f s, pytorch/autograd %.2f (target >= 1: %s)\n", t, t / a, (t / a >= 1 ? "met" : "MISSED")
    else print "  pytorch unavailable, comparison skipped"
}'
$LUA bench/autograd_mlp.lua rss "$STEPS" | tail -1
