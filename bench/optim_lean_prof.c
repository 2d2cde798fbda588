/*
 * bench/optim_lean_prof.c - one kind of AdamW step (PyTorch flavour), repeated, for a profiler:
 * instruction counts under callgrind (or perf's, where the CPU exposes counters) are
 * reproducible on a shared machine where times are not (docs/performance.md "Optimizers",
 * where the lean steps' time goes).
 *
 *   optim_lean_prof KIND [n] [reps]     KIND: f32 (float32 state), bf16, int8, bf16sr
 *                                       (bfloat16, stochastic rounding), int8ams (int8 with
 *                                       amsgrad); n default 1M, reps default 10.
 * Prints the fastest step's time (after the first). Runs on 1 thread; bench/optim_threads_bench.sh
 * builds it as build/bench/optim_lean_prof.
 * e.g. valgrind --tool=callgrind build/bench/optim_lean_prof int8 1048576 3
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "moonopt.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    const char *kind = argc > 1 ? argv[1] : "int8";
    long nl = argc > 2 ? atol(argv[2]) : 1L << 20;
    int reps = argc > 3 ? atoi(argv[3]) : 10;
    if (nl < 256 || nl > (1L << 30) || reps < 1) return 2;
    size_t n = (size_t)nl, shape[1] = {n};
    int f32 = !strcmp(kind, "f32"), bf = !strncmp(kind, "bf16", 4), ams = !strcmp(kind, "int8ams");
    mo_state_rounding r = !strcmp(kind, "bf16sr") ? MO_ROUND_STOCHASTIC : MO_ROUND_NEAREST;
    mo_state_dtype dt = bf ? MO_STATE_BFLOAT16 : MO_STATE_INT8;
    float *w = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
    float *m = calloc(n, sizeof(float)), *v = calloc(n, sizeof(float));
    if (!w || !g || !m || !v || mo_set_num_threads(1) != MO_OK) return 1;
    for (size_t i = 0; i < n; i++) {
        w[i] = 0.01f * (float)(i % 101) - 0.5f;
        g[i] = 0.003f * (float)(i % 37) - 0.05f;
    }
    mo_tensor tw, tg, tm, tv;
    mo_tensor_init(&tw);
    mo_tensor_init(&tg);
    mo_tensor_init(&tm);
    mo_tensor_init(&tv);
    mo_lean lm, lv, lx;
    if (mo_tensor_wrap(&tw, w, 1, shape, NULL, NULL) != MO_OK ||
        mo_tensor_wrap(&tg, g, 1, shape, NULL, NULL) != MO_OK ||
        mo_tensor_wrap(&tm, m, 1, shape, NULL, NULL) != MO_OK ||
        mo_tensor_wrap(&tv, v, 1, shape, NULL, NULL) != MO_OK ||
        mo_lean_init(&lm, dt, MO_LEAN_SIGNED, n) != MO_OK ||
        mo_lean_init(&lv, dt, MO_LEAN_UNSIGNED, n) != MO_OK ||
        mo_lean_init(&lx, dt, MO_LEAN_UNSIGNED, n) != MO_OK)
        return 1;
    mo_adam_config c;
    mo_adamw_defaults(&c);
    c.amsgrad = ams;
    double best = 1e30;
    for (int t = 1; t <= reps; t++) {
        double t0 = now();
        mo_adam_scalars k;
        if (mo_adam_prepare(&c, t, &k) != MO_OK) return 1;
        mo_status st = f32 ? mo_adam_step_prepared(&tw, &tg, &tm, &tv, NULL, &k)
                           : mo_adam_step_lean(&tw, &tg, &lm, &lv, ams ? &lx : NULL, &k, r, t);
        if (st != MO_OK) return 1;
        double took = now() - t0;
        if (t > 1 && took < best) best = took;   /* the first step faults the pages in */
    }
    printf("%s n=%zu reps=%d best %.2f ms w[n/2]=%.9g\n", kind, n, reps, best * 1e3, (double)w[n / 2]);
    mo_lean_free(&lm);
    mo_lean_free(&lv);
    mo_lean_free(&lx);
    mo_tensor_release(&tw);
    mo_tensor_release(&tg);
    mo_tensor_release(&tm);
    mo_tensor_release(&tv);
    free(w);
    free(g);
    free(m);
    free(v);
    return 0;
}
