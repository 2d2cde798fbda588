#!/bin/sh
# bench/conv_bench.sh - the conv numbers of issue 13, run by bench/run.sh, 1 thread
# (OPENBLAS_NUM_THREADS=1, torch.set_num_threads(1)):
#   - the CNN's second conv layer, Conv2d(32, 64, 3, padding 1) on {128, 32, 14, 14},
#     forward + backward (gx, gw, gb): its FLOP rate through the core (bench/conv_bench.c)
#     as a ratio of the sgemm FLOP rate of mo_matmul 512x512x512 measured in the same
#     process, round by round (target >= 0.70), and its time against PyTorch 1.13's
#     F.conv2d forward + backward (bench/conv_torch.py; PyTorch uses oneDNN here), fastest
#     repetition against fastest repetition (the two run in different processes at
#     different moments: a median picks up whatever load the other jobs put on the
#     machine just then; PyTorch's layer-1 times are moreover bimodal, a fresh 12.8 MB
#     output allocated per call, and its fastest is the conservative reference);
#   - the first conv layer, Conv2d(1, 32, 3, padding 1) on {128, 1, 28, 28}, forward +
#     backward without gx (the CNN's input needs none), the same two ratios (no FLOP-rate
#     target: K = C*kH*kW = 9 is no gemm shape).
# Three rounds; each figure is the median over the rounds. The machines are shared: the
# ratios, not the absolute rates, are the numbers.
# Environment as bench/run.sh sets it (BUILD, CC).
set -e
BUILD=${BUILD:-build}
CC=${CC:-cc}
OPENBLAS_NUM_THREADS=1
export OPENBLAS_NUM_THREADS
mkdir -p "$BUILD/bench"

$CC -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -Icore $(pkg-config --cflags openblas 2>/dev/null) \
    bench/conv_bench.c -o "$BUILD/bench/conv_bench" "$BUILD/libmoonopt.a" \
    $(pkg-config --libs openblas 2>/dev/null) -lz -lm
have_torch=0
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then have_torch=1; fi
median() { echo "$1" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{r[NR] = $1} END {print r[int((NR + 1) / 2)]}'; }

# one layer: $1 = 2 or 1, $2 = its title, $3 = the FLOP-rate target (empty: none)
layer() {
    echo "== $2, 1 thread"
    rf=""; rt=""
    for round in 1 2 3; do
        line=$("$BUILD/bench/conv_bench" 9 "$1")
        r=$(echo "$line" | awk '{print $6}')
        s=$(echo "$line" | awk '{print $12}')
        rf="$rf $r"
        t=""
        if [ "$have_torch" = 1 ]; then
            t=$(/usr/bin/python3 bench/conv_torch.py 9 "$1" 2>/dev/null | awk '{print $8}')
            rt="$rt $(awk -v s="$s" -v t="$t" 'BEGIN {printf "%.4f", s / t}')"
        fi
        echo "round $round: $line${t:+ torch_min_s $t}"
    done
    awk -v r="$(median "$rf")" -v g="$3" 'BEGIN {printf "conv2d fwd+bwd FLOP rate / sgemm FLOP rate: median %.3f %s\n", r,
        (g == "" ? "(no target)" : (r >= g ? "(target >= " g ": met)" : "(target >= " g ": MISSED)"))}'
    if [ "$have_torch" = 1 ]; then
        awk -v r="$(median "$rt")" 'BEGIN {printf "conv2d fwd+bwd time / PyTorch 1.13, fastest vs fastest: median ratio %.3f %s\n", r,
            (r <= 1.0 ? "(no slower: met)" : "(slower than PyTorch)")}'
    else
        echo "PyTorch: not available, comparison skipped"
    fi
}

layer 2 "conv2d 32->64 3x3 pad 1 on {128, 32, 14, 14}, forward + backward" 0.70
layer 1 "conv2d 1->32 3x3 pad 1 on {128, 1, 28, 28}, forward + backward (no gx)" ""
