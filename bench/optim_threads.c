/*
 * bench/optim_threads.c - one AdamW step (PyTorch flavour) on 16M floats, in one run, by
 * bench/optim_threads_bench.sh (issue 14):
 *
 *   adamw_mo_1t / adamw_mo_2t     moonopt's kernel (mo_adam_update) on its pool at 1 and 2
 *                                 threads (mo_set_num_threads)
 *   adamw_ref_1t                  the same single-pass C loop, compiled as this file is
 *                                 (the script builds it -O3 -march=native -fno-math-errno)
 *   adamw_omp_2t                  that loop under `#pragma omp parallel for` at 2 threads
 *   adamw_bf16_1t / adamw_int8_1t moonopt with bfloat16 / int8 moments (mo_adam_step_lean), 1 thread
 *   adamw_bf16sr_1t               bfloat16 moments rounded stochastically, 1 thread
 *   adamw_f32state_1t             the float32-state step through the tensor API, 1 thread
 *                                 (the same path as the lean steps but for the state)
 *   adamw_path_scalar / _avx / _avx512   the kernel's three loops, 1 thread (mo__adam_run_level)
 *
 * Each figure is the median over `reps` steps; the steps alternate so drift hits all alike.
 * Usage: optim_threads [reps] [n].
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "moonopt.h"
#include "optim_internal.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The reference: PyTorch's AdamW step for one tensor, one pass, scalars hoisted; the same
 * operations as moonopt's loop. With omp, the same loop split over the threads. */
static void ref_adamw(float *restrict w, const float *restrict g, float *restrict m,
                      float *restrict v, size_t n, long step, int omp)
{
    const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 1e-2;
    const float decay = (float)(1.0 - lr * wd), fb1 = (float)b1, fb2 = (float)b2;
    const float omb1 = (float)(1.0 - b1), omb2 = (float)(1.0 - b2), feps = (float)eps;
    const float bc2s = (float)sqrt(1.0 - pow(b2, (double)step));
    const float ns = (float)-(lr / (1.0 - pow(b1, (double)step)));
    const long nn = (long)n;
    (void)omp;
#pragma omp parallel for schedule(static) if (omp)
    for (long i = 0; i < nn; i++) {
        float gi = g[i];
        float wi = w[i] * decay;
        float mi = m[i] * fb1 + omb1 * gi;
        float vi = v[i] * fb2 + (omb2 * gi) * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = wi + (ns * mi) / (sqrtf(vi) / bc2s + feps);
    }
}

/* in this order within a round: the 1-thread kernel and loop first, the three state dtypes
 * next to each other, then the 2-thread runs (the script runs OpenMP with
 * OMP_WAIT_POLICY=PASSIVE, so no team spins on the core a later measurement uses) */
enum { K_MO1, K_REF1, K_F32T, K_BF16, K_INT8, K_BF16SR, K_MO2, K_OMP2, K_SCALAR, K_AVX, K_AVX512, K_COUNT };
static const char *const names[K_COUNT] = {
    "adamw_mo_1t", "adamw_ref_1t", "adamw_f32state_1t", "adamw_bf16_1t", "adamw_int8_1t",
    "adamw_bf16sr_1t", "adamw_mo_2t", "adamw_omp_2t", "adamw_path_scalar", "adamw_path_avx",
    "adamw_path_avx512",
};

typedef struct arrays {
    float *w, *g, *m, *v;
    mo_tensor tw, tg, tm, tv;
    mo_lean bm, bv, qm, qv;
} arrays;

static int setup(arrays *a, size_t n)
{
    a->w = malloc(n * sizeof(float));
    a->g = malloc(n * sizeof(float));
    a->m = calloc(n, sizeof(float));
    a->v = calloc(n, sizeof(float));
    if (!a->w || !a->g || !a->m || !a->v) return 0;
    for (size_t i = 0; i < n; i++) {
        a->w[i] = 0.01f * (float)(i % 101) - 0.5f;
        a->g[i] = 0.003f * (float)(i % 37) - 0.05f;
    }
    size_t shape[1] = {n};
    mo_tensor_init(&a->tw);
    mo_tensor_init(&a->tg);
    mo_tensor_init(&a->tm);
    mo_tensor_init(&a->tv);
    if (mo_tensor_wrap(&a->tw, a->w, 1, shape, NULL, NULL) != MO_OK ||
        mo_tensor_wrap(&a->tg, a->g, 1, shape, NULL, NULL) != MO_OK ||
        mo_tensor_wrap(&a->tm, a->m, 1, shape, NULL, NULL) != MO_OK ||
        mo_tensor_wrap(&a->tv, a->v, 1, shape, NULL, NULL) != MO_OK)
        return 0;
    return mo_lean_init(&a->bm, MO_STATE_BFLOAT16, MO_LEAN_SIGNED, n) == MO_OK &&
           mo_lean_init(&a->bv, MO_STATE_BFLOAT16, MO_LEAN_UNSIGNED, n) == MO_OK &&
           mo_lean_init(&a->qm, MO_STATE_INT8, MO_LEAN_SIGNED, n) == MO_OK &&
           mo_lean_init(&a->qv, MO_STATE_INT8, MO_LEAN_UNSIGNED, n) == MO_OK;
}

/* One timed step of kind k at step count t. */
static double run(int k, arrays *a, size_t n, const mo_adam_config *c, long t)
{
    mo_adam_scalars s;
    if (mo_adam_prepare(c, t, &s) != MO_OK) exit(1);
    int threads = k == K_MO2 || k == K_OMP2 ? 2 : 1;
    if (mo_set_num_threads(threads) != MO_OK) exit(1);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    mo_status st = MO_OK;
    double t0 = now();
    switch (k) {
    case K_MO1: case K_MO2: st = mo_adam_update(a->w, a->g, a->m, a->v, NULL, n, c, t); break;
    case K_REF1: ref_adamw(a->w, a->g, a->m, a->v, n, t, 0); break;
    case K_OMP2: ref_adamw(a->w, a->g, a->m, a->v, n, t, 1); break;
    case K_BF16: st = mo_adam_step_lean(&a->tw, &a->tg, &a->bm, &a->bv, NULL, &s, MO_ROUND_NEAREST, t); break;
    case K_INT8: st = mo_adam_step_lean(&a->tw, &a->tg, &a->qm, &a->qv, NULL, &s, MO_ROUND_NEAREST, t); break;
    case K_BF16SR: st = mo_adam_step_lean(&a->tw, &a->tg, &a->bm, &a->bv, NULL, &s, MO_ROUND_STOCHASTIC, t); break;
    case K_F32T: st = mo_adam_step_prepared(&a->tw, &a->tg, &a->tm, &a->tv, NULL, &s); break;
    default: mo__adam_run_level(&s, a->w, a->g, a->m, a->v, NULL, n, k - K_SCALAR); break;
    }
    double dt = now() - t0;
    if (st != MO_OK) exit(1);
    return dt;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 11;
    long nl = argc > 2 ? atol(argv[2]) : 16L << 20;
    if (reps < 1 || reps > 1000) reps = 11;
    if (nl < 256 || nl > (1L << 30)) nl = 16L << 20;
    size_t n = (size_t)nl;
    arrays a;
    if (!setup(&a, n)) return 1;
    mo_adam_config c;
    mo_adamw_defaults(&c);
    static double times[K_COUNT][1000];
    for (int k = 0; k < K_COUNT; k++) run(k, &a, n, &c, 1);   /* page faults, caches, pool */
    long t = 2;
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < K_COUNT; k++) times[k][r] = run(k, &a, n, &c, t++);
    for (int k = 0; k < K_COUNT; k++) {
        if (k == K_AVX512 && mo__simd_level() < MO__SIMD_AVX512) continue;
        if (k == K_AVX && mo__simd_level() < MO__SIMD_AVX) continue;
        qsort(times[k], (size_t)reps, sizeof(double), cmp);
        printf("%s %.9f\n", names[k], times[k][reps / 2]);
    }
    printf("simd_level %d\n", mo__simd_level());
    if (!isfinite(a.w[n / 2])) return 1;   /* keep the work observable */
    mo_lean_free(&a.bm);
    mo_lean_free(&a.bv);
    mo_lean_free(&a.qm);
    mo_lean_free(&a.qv);
    mo_tensor_release(&a.tw);
    mo_tensor_release(&a.tg);
    mo_tensor_release(&a.tm);
    mo_tensor_release(&a.tv);
    free(a.w);
    free(a.g);
    free(a.m);
    free(a.v);
    return 0;
}
