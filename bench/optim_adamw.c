/*
 * bench/optim_adamw.c - one AdamW step (PyTorch flavour) on 16M floats through
 * moonopt's kernel (mo_adam_update) against a plain single-pass C loop that
 * does the same arithmetic, compiled with the same flags. Both read w, g, m, v
 * once and write w, m, v once: the loop is the memory-bandwidth reference.
 *
 * A third reference, stream_16M, moves the same bytes (4 reads, 3 writes per
 * element) with trivial arithmetic: the bandwidth floor.
 *
 * Prints "adamw_16M_mo <median s>", "adamw_16M_loop <median s>",
 * "stream_16M <median s>", "ratio <mo/loop>" and "ratio_stream <mo/stream>".
 * Usage: optim_adamw [reps] [n].
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "moonopt.h"

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

/* The reference: PyTorch's AdamW step for one tensor, one pass, scalars hoisted. */
static void plain_adamw(float *restrict w, const float *restrict g, float *restrict m,
                        float *restrict v, size_t n, double lr, double b1, double b2, double eps,
                        double wd, long step)
{
    const float decay = (float)(1.0 - lr * wd), fb1 = (float)b1, fb2 = (float)b2;
    const float omb1 = (float)(1.0 - b1), omb2 = (float)(1.0 - b2), feps = (float)eps;
    const float bc2s = (float)sqrt(1.0 - pow(b2, (double)step));
    const float ns = (float)-(lr / (1.0 - pow(b1, (double)step)));
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = m[i] * fb1 + omb1 * gi;
        float vi = v[i] * fb2 + omb2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] * decay + ns * mi / (sqrtf(vi) / bc2s + feps);
    }
}

/* The memory traffic alone: the same 4 reads and 3 writes per element, trivial arithmetic. */
static void stream_rw(float *restrict w, const float *restrict g, float *restrict m,
                      float *restrict v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        m[i] = m[i] * 0.5f + gi;
        v[i] = v[i] * 0.5f + gi;
        w[i] = w[i] * 0.999f + gi * 1e-9f;
    }
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 11;
    long nl = argc > 2 ? atol(argv[2]) : 16L << 20;
    if (reps < 1 || reps > 1000) reps = 11;
    if (nl < 8 || nl > (1L << 30)) nl = 16L << 20;
    size_t n = (size_t)nl;
    float *w = malloc(n * sizeof *w), *g = malloc(n * sizeof *g);
    float *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    double *tm = malloc((size_t)reps * sizeof *tm), *tl = malloc((size_t)reps * sizeof *tl);
    double *ts = malloc((size_t)reps * sizeof *ts);
    if (!w || !g || !m || !v || !tm || !tl || !ts) return 1;
    for (size_t i = 0; i < n; i++) {
        w[i] = 0.01f * (float)(i % 101) - 0.5f;
        g[i] = 0.003f * (float)(i % 37) - 0.05f;
    }
    /* the stream reference's own arrays, touched before timing */
    float *w2 = malloc(n * sizeof *w2), *m2 = malloc(n * sizeof *m2), *v2 = malloc(n * sizeof *v2);
    if (!w2 || !m2 || !v2) return 1;
    for (size_t i = 0; i < n; i++) w2[i] = m2[i] = v2[i] = 1.0f;
    stream_rw(w2, g, m2, v2, n);
    mo_adam_config c;
    mo_adamw_defaults(&c);
    /* warm both paths once (page faults, caches), then alternate so drift hits both alike */
    if (mo_adam_update(w, g, m, v, NULL, n, &c, 1) != MO_OK) return 1;
    plain_adamw(w, g, m, v, n, c.lr, c.beta1, c.beta2, c.eps, c.weight_decay, 2);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        mo_adam_update(w, g, m, v, NULL, n, &c, 3 + 2 * r);
        tm[r] = now() - t0;
        t0 = now();
        plain_adamw(w, g, m, v, n, c.lr, c.beta1, c.beta2, c.eps, c.weight_decay, 4 + 2 * r);
        tl[r] = now() - t0;
        t0 = now();
        stream_rw(w2, g, m2, v2, n);
        ts[r] = now() - t0;
    }
    qsort(tm, (size_t)reps, sizeof *tm, cmp);
    qsort(tl, (size_t)reps, sizeof *tl, cmp);
    qsort(ts, (size_t)reps, sizeof *ts, cmp);
    printf("adamw_16M_mo %.9f\n", tm[reps / 2]);
    printf("adamw_16M_loop %.9f\n", tl[reps / 2]);
    printf("stream_16M %.9f\n", ts[reps / 2]);
    printf("ratio %.4f\n", tm[reps / 2] / tl[reps / 2]);
    printf("ratio_stream %.4f\n", tm[reps / 2] / ts[reps / 2]);
    if (!isfinite(w[n / 2]) || !isfinite(w2[n / 2])) return 1;  /* keep the work observable */
    free(w);
    free(g);
    free(m);
    free(v);
    free(tm);
    free(tl);
    free(ts);
    free(w2);
    free(m2);
    free(v2);
    return 0;
}
