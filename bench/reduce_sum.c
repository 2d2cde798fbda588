/*
 * bench/reduce_sum.c - the plain C reference for bench/reduce_bench.sh: the sum of every row
 * of a {4096, 1024} float32 matrix (x:sum(2)), one thread, as a plain loop the compiler
 * vectorizes (built with -O3 -ffast-math so it may reassociate). Two variants:
 *   float:  s += a[j] in float (what a float32 loop does; fewer bits, twice the SIMD width)
 *   double: s += (double)a[j] (moonopt's arithmetic: sums accumulate in double)
 * Prints "<name> <median seconds>" for each, over `reps` runs.
 *
 * Memory: the 16 MB matrix comes from malloc; with "huge" from aligned_alloc(2 MB) with
 * madvise(MADV_HUGEPAGE), as moonopt's Lua allocator gives every block of 2 MB and up on
 * Linux (lua/binding/alloc.c); bench/reduce_bench.sh takes the faster setup.
 *
 * With MO_BENCH_CLOCK=cpu in the environment it times CPU time, not wall time.
 *
 * usage: reduce_sum [reps [huge]]
 */
#if defined(__linux__)
#define _DEFAULT_SOURCE /* madvise */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define ROWS 4096
#define COLS 1024

/* wall time, or with MO_BENCH_CLOCK=cpu this process's CPU time (a loaded machine) */
static clockid_t clock_id = CLOCK_MONOTONIC;

static double now(void)
{
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sum_float(const float *a, float *out)
{
    for (size_t i = 0; i < ROWS; i++) {
        const float *r = a + i * COLS;
        float s = 0.0f;
        for (size_t j = 0; j < COLS; j++) s += r[j];
        out[i] = s;
    }
}

static void sum_double(const float *a, float *out)
{
    for (size_t i = 0; i < ROWS; i++) {
        const float *r = a + i * COLS;
        double s = 0.0;
        for (size_t j = 0; j < COLS; j++) s += (double)r[j];
        out[i] = (float)s;
    }
}

/* A buffer of `bytes`: malloc, or 2 MB-aligned with huge pages advised (Linux). */
static float *buffer(size_t bytes, int huge)
{
    if (!huge) return malloc(bytes);
    const size_t two_mb = (size_t)2 << 20;
    float *p = aligned_alloc(two_mb, (bytes + two_mb - 1) / two_mb * two_mb);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (p) (void)madvise(p, bytes / two_mb * two_mb, MADV_HUGEPAGE);
#endif
    return p;
}

static int cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median_time(void (*f)(const float *, float *), const float *a, float *out, int reps)
{
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t) exit(1);
    f(a, out); /* warm */
    for (int k = 0; k < reps; k++) {
        double t0 = now();
        f(a, out);
        t[k] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    double m = t[reps / 2];
    free(t);
    return m;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 21;
    if (reps < 1) reps = 1;
    const int huge = argc > 2 && strcmp(argv[2], "huge") == 0;
    const char *clk = getenv("MO_BENCH_CLOCK");
    if (clk && strcmp(clk, "cpu") == 0) clock_id = CLOCK_PROCESS_CPUTIME_ID;
    float *a = buffer((size_t)ROWS * COLS * sizeof *a, huge), *out = malloc(ROWS * sizeof *out);
    if (!a || !out) return 1;
    /* the same values as bench/reduce_bench.lua: (i % 101) * 0.01 - 0.5 over the flat index */
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++) a[i] = (float)(i % 101) * 0.01f - 0.5f;
    printf("c_sum_float %.9f\n", median_time(sum_float, a, out, reps));
    volatile float sink = out[7];
    printf("c_sum_double %.9f\n", median_time(sum_double, a, out, reps));
    sink += out[7];
    (void)sink;
    free(a);
    free(out);
    return 0;
}
