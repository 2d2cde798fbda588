/*
 * bench/elementwise_ref.c - the plain C reference for the broadcasting add of
 * bench/tensor_ops.lua (issue 11 "Numbers"): out {1024, 1024} = a {1024, 1024}
 * + b {1024} (b added to every row), float32, written as anyone would write it
 * in C: two loops, `restrict`, a preallocated output. bench/elementwise_bench.sh
 * builds it with -O2 and -O3 (vectorized) and divides moonopt's time by it.
 *
 * Memory: `a` and `out` (4 MB each) come from malloc; with "huge" they come
 * from aligned_alloc(2 MB) with madvise(MADV_HUGEPAGE), as moonopt's Lua
 * allocator gives every block of 2 MB and up on Linux (lua/binding/alloc.c),
 * so the bench can take the faster of the two setups for the reference.
 *
 * With MO_BENCH_CLOCK=cpu in the environment it times CPU time, not wall time.
 *
 *   elementwise_ref [reps [huge]]  ->  "ref_bcast_add <median seconds>"
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

enum { R = 1024, C = 1024 };

/* wall time, or with MO_BENCH_CLOCK=cpu this process's CPU time (a loaded machine) */
static clockid_t clock_id = CLOCK_MONOTONIC;

static double now(void)
{
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
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

/* out[i][j] = a[i][j] + b[j] */
static void bcast_add(float *restrict out, const float *restrict a, const float *restrict b)
{
    for (size_t i = 0; i < R; i++)
        for (size_t j = 0; j < C; j++) out[i * C + j] = a[i * C + j] + b[j];
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 21;
    if (reps < 1 || reps > 1000) reps = 21;
    const int huge = argc > 2 && strcmp(argv[2], "huge") == 0;
    const char *clk = getenv("MO_BENCH_CLOCK");
    if (clk && strcmp(clk, "cpu") == 0) clock_id = CLOCK_PROCESS_CPUTIME_ID;
    float *a = buffer(sizeof(float) * R * C, huge), *out = buffer(sizeof(float) * R * C, huge);
    float *b = malloc(sizeof(float) * C);
    double *ts = malloc(sizeof(double) * (size_t)reps);
    if (!a || !b || !out || !ts) return 1;
    for (size_t i = 0; i < (size_t)R * C; i++) a[i] = (float)(i % 977) * 0.001f;
    for (size_t j = 0; j < C; j++) b[j] = (float)j * 0.5f;
    bcast_add(out, a, b); /* warm: pages touched */
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int k = 0; k < 10; k++) {
            bcast_add(out, a, b);
            /* a compiler barrier: the ten identical calls must all run (without it GCC may
             * keep only the last, the earlier stores being dead) */
            __asm__ volatile("" : : "r"(out) : "memory");
        }
        ts[r] = (now() - t0) / 10;
    }
    qsort(ts, (size_t)reps, sizeof *ts, cmp);
    printf("ref_bcast_add %.9f\n", ts[reps / 2]);
    fprintf(stderr, "checksum %g\n", (double)out[R * C - 1]);
    free(a);
    free(b);
    free(out);
    free(ts);
    return 0;
}
