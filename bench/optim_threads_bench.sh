#!/bin/sh
# bench/optim_threads_bench.sh - the optimizer numbers of issue 14, as ratios measured in one
# run (docs/performance.md "Optimizers"): one AdamW step on 16M floats (bench/optim_threads.c)
#   1. moonopt at 1 thread vs the same C loop built -O3 -march=native -fno-math-errno
#      (target: <= 1.1x);
#   2. moonopt at 2 threads vs 1 thread (target: >= 1.3x faster) and vs that loop under OpenMP
#      at 2 threads (target: within 1.15x);
#   3. PyTorch 1.13 at 2 threads vs moonopt at 2 threads (target: >= 6x slower; skipped when
#      /usr/bin/python3 has no torch);
#   4. a step with bfloat16 / int8 moments vs the float32-state step through the same tensor
#      API, 1 thread (targets: <= 0.85x, <= 0.9x; bfloat16 with stochastic rounding: no target);
#   5. the kernel's scalar, AVX and AVX-512 loops, 1 thread (the same bits; tests/c/test_optim.c).
# The binary runs RUNS (default 3) times; each line shows every run and the median. Figures on a
# shared machine are noisy: compare ratios from one run.
# Environment as bench/run.sh sets it (BUILD, CC).
set -e
BUILD=${BUILD:-build}
CC=${CC:-cc}
RUNS=${RUNS:-3}
REPS=${REPS:-9}
mkdir -p "$BUILD/bench"
# the library's BLAS (its thread pool sizes OpenBLAS), as the Makefile finds it
BLAS=$(pkg-config --libs openblas 2>/dev/null || pkg-config --libs blas 2>/dev/null || true)
$CC -std=c11 -O3 -march=native -fno-math-errno -fopenmp -pthread -g -D_POSIX_C_SOURCE=200809L \
    -Icore bench/optim_threads.c -o "$BUILD/bench/optim_threads" "$BUILD/libmoonopt.a" \
    $BLAS -lz -lm
# the one-kind driver for profilers (docs/performance.md "Optimizers": where the time goes)
$CC -std=c11 -O2 -g -D_POSIX_C_SOURCE=200809L -Icore bench/optim_lean_prof.c \
    -o "$BUILD/bench/optim_lean_prof" "$BUILD/libmoonopt.a" $BLAS -lz -lm -pthread

# OpenMP's threads would otherwise spin for a while after each parallel loop, on the core
# the next (1-thread) measurement runs on
export OMP_WAIT_POLICY=PASSIVE
out=""
for r in $(seq 1 "$RUNS"); do
    out="$out$("$BUILD/bench/optim_threads" "$REPS" | sed "s/^/$r /")
"
done
pt=""
if [ -x /usr/bin/python3 ]; then
    for r in $(seq 1 "$RUNS"); do
        t=$(/usr/bin/python3 bench/optim_torch.py 5 16777216 2 2>/dev/null | awk '{print $2}')
        case "$t" in ""|unavailable) pt=""; break ;; esac
        pt="$pt$r torch_2t $t
"
    done
fi

# the load: on a shared machine a second thread may find no free core (say so with the figures)
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown) on $(nproc 2>/dev/null || echo ?) cores"
printf '%s%s' "$out" "$pt" | awk -v runs="$RUNS" '
function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)]
}
NF == 3 { v[$1, $2] = $3; have[$2] = 1 }
function ratio(label, num, den, target, cmp,   r, n, i, x, line, ok, m) {
    if (!have[num] || !have[den]) { printf "%-58s skipped\n", label; return }
    n = 0; line = ""
    for (r = 1; r <= runs; r++) { x = v[r, num] / v[r, den]; n++; a[n] = x; line = line sprintf(" %.3f", x) }
    m = median(a, n)
    if (cmp == "") { printf "%-58s %s  median %.3f\n", label, line, m; return }
    ok = (cmp == "<=" ? m <= target : m >= target)
    printf "%-58s %s  median %.3f (target %s %s: %s)\n", label, line, m, cmp, target, ok ? "met" : "MISSED"
}
END {
    for (r = 1; r <= runs; r++) printf "run %d: moonopt 1t %.1f ms, 2t %.1f ms; loop 1t %.1f ms, OpenMP 2t %.1f ms; bf16 %.1f ms (stochastic %.1f), int8 %.1f ms, f32-state %.1f ms; scalar %.1f, AVX %.1f, AVX-512 %.1f ms%s\n", r,
        1e3 * v[r, "adamw_mo_1t"], 1e3 * v[r, "adamw_mo_2t"], 1e3 * v[r, "adamw_ref_1t"], 1e3 * v[r, "adamw_omp_2t"],
        1e3 * v[r, "adamw_bf16_1t"], 1e3 * v[r, "adamw_bf16sr_1t"], 1e3 * v[r, "adamw_int8_1t"], 1e3 * v[r, "adamw_f32state_1t"],
        1e3 * v[r, "adamw_path_scalar"], 1e3 * v[r, "adamw_path_avx"], 1e3 * v[r, "adamw_path_avx512"],
        have["torch_2t"] ? sprintf("; PyTorch 2t %.1f ms", 1e3 * v[r, "torch_2t"]) : ""
    ratio("moonopt 1t / C loop -O3 -march=native 1t", "adamw_mo_1t", "adamw_ref_1t", 1.1, "<=")
    ratio("moonopt 1t / moonopt 2t (speedup)", "adamw_mo_1t", "adamw_mo_2t", 1.3, ">=")
    ratio("moonopt 2t / OpenMP loop 2t", "adamw_mo_2t", "adamw_omp_2t", 1.15, "<=")
    ratio("PyTorch 2t / moonopt 2t", "torch_2t", "adamw_mo_2t", 6, ">=")
    ratio("bfloat16-state step / float32-state step, 1t", "adamw_bf16_1t", "adamw_f32state_1t", 0.85, "<=")
    ratio("int8-state step / float32-state step, 1t", "adamw_int8_1t", "adamw_f32state_1t", 0.9, "<=")
    ratio("bfloat16 stochastic-rounding step / float32-state step, 1t", "adamw_bf16sr_1t", "adamw_f32state_1t", 0, "")
}'
