#!/bin/sh
# bench/threads_bench.sh - the thread pool's numbers (docs/performance.md): a:add_(b) and
# a:sum() over 16M float32 values at 1 and 2 threads, from Lua (bench/threads_bench.lua),
# against, in the same run,
#   - the same loops in C under OpenMP at 1 and 2 threads (bench/threads_ref.c, -O3
#     -march=native -ffast-math -fopenmp, so the sum may be vectorized; it accumulates in
#     double as moonopt's does);
#   - PyTorch 1.13 at 1 and 2 threads (bench/threads_torch.py; its float sum accumulates
#     in float).
# ROUNDS rounds (default 3), interleaved; every figure is the median over the rounds of
# each round's median time (or ratio). Prints a Markdown table: times in ms, moonopt's
# speed-up over its own 1-thread time, and moonopt / C, moonopt / PyTorch (below 1: moonopt
# is faster). Environment as bench/run.sh sets it (BUILD, LUA, CC, LUA_PATH, LUA_CPATH).
set -e
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
CC=${CC:-cc}
ROUNDS=${ROUNDS:-3}
REPS=${REPS:-21}
mkdir -p "$BUILD/bench"
echo "== threads: a:add_(b) and a:sum() over 16M float32 at 1 and 2 threads vs C/OpenMP and PyTorch"
$CC -std=c11 -O3 -march=native -ffast-math -fopenmp -D_POSIX_C_SOURCE=200809L bench/threads_ref.c \
    -o "$BUILD/bench/threads_ref"
have_torch=0
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then have_torch=1; fi

out="$BUILD/bench/threads_bench.txt"
: > "$out"
# one line per measurement: "round threads who op seconds"
for round in $(seq "$ROUNDS"); do
    for t in 1 2; do
        "$LUA" bench/threads_bench.lua "$t" "$REPS" | sed "s/^mo_/$round $t mo /" >> "$out"
        OMP_NUM_THREADS=$t "$BUILD/bench/threads_ref" "$t" "$REPS" | sed "s/^c_/$round $t c /" >> "$out"
        if [ "$have_torch" = 1 ]; then
            /usr/bin/python3 bench/threads_torch.py "$t" "$REPS" 2>/dev/null |
                sed "s/^torch_/$round $t torch /" >> "$out"
        fi
    done
    echo "round $round done" >&2
done
grep -c mo "$out" >/dev/null || { echo "bench/threads_bench.lua failed (LUA_PATH/LUA_CPATH?)"; exit 1; }

awk -v rounds="$ROUNDS" -v torch="$have_torch" '
function median(list,   n, a, i, j, x) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return a[int((n + 1) / 2)]
}
{ s[$1, $2, $3, $4] = $5 }
END {
    print "| op, 16M float32 | threads | moonopt ms | C/OpenMP ms | PyTorch ms | moonopt speed-up | moonopt / C | moonopt / PyTorch |"
    print "|---|---|---|---|---|---|---|---|"
    split("add sum", ops, " ")
    for (o = 1; o <= 2; o++) for (t = 1; t <= 2; t++) {
        op = ops[o]; lm = lc = lt = lsp = lrc = lrt = ""
        for (r = 1; r <= rounds; r++) {
            m = s[r, t, "mo", op]; c = s[r, t, "c", op]; p = s[r, t, "torch", op]; m1 = s[r, 1, "mo", op]
            lm = lm " " m; lc = lc " " c; lsp = lsp " " m1 / m; lrc = lrc " " m / c
            if (torch) { lt = lt " " p; lrt = lrt " " m / p }
        }
        printf "| %s | %d | %.2f | %.2f | %s | %.2fx | %.2f | %s |\n", (op == "add" ? "a:add_(b)" : "a:sum()"), t,
            median(lm) * 1e3, median(lc) * 1e3, (torch ? sprintf("%.2f", median(lt) * 1e3) : "n/a"),
            median(lsp), median(lrc), (torch ? sprintf("%.2f", median(lrt)) : "n/a")
    }
}' "$out"
