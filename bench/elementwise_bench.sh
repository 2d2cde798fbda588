#!/bin/sh
# bench/elementwise_bench.sh - the elementwise numbers of issue 11, run by bench/run.sh:
#   1. broadcasting add {1024, 1024} + {1024}, float32, 1 thread: moonopt from Lua
#      (bench/tensor_ops.lua: `a + b`, a new tensor per call, and `c:add_(b)` in place) vs a
#      plain C loop (bench/elementwise_ref.c, -O2 and -O3) vs PyTorch 1.13 (bench/tensor_torch.py),
#      in alternating rounds, each ratio the median over the rounds (the machine is shared);
#      targets: moonopt within 1.3x of the vectorized C loop, and at least as fast as PyTorch;
#   2. `a + b` on 16-element tensors: microseconds per call (target <= 1 us).
# Memory on each side: moonopt's tensors come from its Lua allocator (lua/binding/alloc.c:
# blocks of 2 MB and up are 2 MB-aligned with MADV_HUGEPAGE on Linux, freed blocks are
# reused); the C loop runs once on malloc'd buffers and once on 2 MB-aligned MADV_HUGEPAGE
# ones (`huge`), each round taking the faster; PyTorch uses its own CPU allocator
# (posix_memalign, 64-byte aligned; 1.13 gives no huge-page advice).
# Environment as bench/run.sh sets it (BUILD, LUA, CC, LUA_PATH, LUA_CPATH).
set -e
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
CC=${CC:-cc}
ROUNDS=${ROUNDS:-5}
mkdir -p "$BUILD/bench"

for opt in "-O2" "-O3"; do
    $CC -std=c11 $opt -fno-math-errno -D_POSIX_C_SOURCE=200809L bench/elementwise_ref.c \
        -o "$BUILD/bench/elementwise_ref$opt"
done
have_torch=0
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then have_torch=1; fi

echo "== broadcasting add {1024, 1024} + {1024}, float32, 1 thread ($ROUNDS rounds)"
res=$(mktemp)
trap 'rm -f "$res"' EXIT
for round in $(seq "$ROUNDS"); do
    # each C loop: the faster of malloc'd and huge-page buffers
    r2=$( ("$BUILD/bench/elementwise_ref-O2" 11; "$BUILD/bench/elementwise_ref-O2" 11 huge) 2>/dev/null |
        awk '{if (best == "" || $2 < best) best = $2} END {print best}')
    r3=$( ("$BUILD/bench/elementwise_ref-O3" 11; "$BUILD/bench/elementwise_ref-O3" 11 huge) 2>/dev/null |
        awk '{if (best == "" || $2 < best) best = $2} END {print best}')
    mo=$("$LUA" bench/tensor_ops.lua bcast 11)
    new=$(echo "$mo" | awk '$1 == "mo_bcast_add" {print $2}')
    inp=$(echo "$mo" | awk '$1 == "mo_bcast_add_inplace" {print $2}')
    pt=""; pti=""
    if [ $have_torch = 1 ]; then
        t=$(/usr/bin/python3 bench/tensor_torch.py bcast 11)
        pt=$(echo "$t" | awk '$1 == "torch_bcast_add" {print $2}')
        pti=$(echo "$t" | awk '$1 == "torch_bcast_add_inplace" {print $2}')
    fi
    echo "$r2 $r3 $new $inp ${pt:-0} ${pti:-0}" >>"$res"
done
awk -v torch=$have_torch '
    function med(col,   i, n, v, t) { n = 0
        for (i = 1; i <= NR; i++) v[++n] = x[i, col]
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
        return v[int((n + 1) / 2)] }
    { for (c = 1; c <= NF; c++) x[NR, c] = $c
      x[NR, 7] = $3 / $2; x[NR, 8] = $3 / $1; x[NR, 9] = $4 / $2
      if (torch) { x[NR, 10] = $5 / $3; x[NR, 11] = $6 / $4 } }
    END {
      printf "median us per call: C -O2 %.1f, C -O3 %.1f, mo a + b %.1f, mo c:add_(b) %.1f", med(1) * 1e6, med(2) * 1e6, med(3) * 1e6, med(4) * 1e6
      if (torch) printf ", torch a + b %.1f, torch c.add_(b) %.1f", med(5) * 1e6, med(6) * 1e6
      printf "\n"
      r = med(7); printf "mo a + b / C -O3 loop: %.2f %s\n", r, (r <= 1.3 ? "(target <= 1.3: met)" : "(target <= 1.3: MISSED)")
      printf "mo a + b / C -O2 loop: %.2f\n", med(8)
      r = med(9); printf "mo c:add_(b) / C -O3 loop: %.2f %s\n", r, (r <= 1.3 ? "(kernel alone; target <= 1.3: met)" : "(kernel alone; target <= 1.3: MISSED)")
      if (torch) {
        r = med(10); printf "torch a + b / mo a + b: %.2f %s\n", r, (r >= 1 ? "(target >= 1: met)" : "(target >= 1: MISSED)")
        printf "torch c.add_(b) / mo c:add_(b): %.2f\n", med(11)
      }
    }' "$res"

echo "== a + b on 16-element tensors"
"$LUA" bench/tensor_ops.lua small | awk '{print} $1 == "mo_small_add_us" {
    printf "a + b: %.3f us per call %s\n", $2, ($2 <= 1 ? "(target <= 1 us: met)" : "(target <= 1 us: MISSED)")}'
if [ $have_torch = 1 ]; then /usr/bin/python3 bench/tensor_torch.py small; fi

echo "== memory: 1e5 iterations of c = a * b + 1 on 1 MB tensors"
"$LUA" bench/rss_temporaries.lua --expr "${RSS_ITERS:-100000}"
