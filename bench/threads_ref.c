/*
 * bench/threads_ref.c - the C reference for bench/threads_bench.sh: a[i] += b[i] and the
 * sum of a (accumulated in double, as moonopt sums) over 16M floats, as plain loops under
 * OpenMP (`parallel for`, static schedule; `reduction(+:s)`), built with -O3
 * -march=native -ffast-math -fopenmp (fast-math lets the compiler vectorize the sum by
 * reassociating it). Prints "c_add <median s>" and "c_sum <median s>".
 *
 * usage: threads_ref threads [reps]
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define N (16u * 1024u * 1024u)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static void add(float *restrict a, const float *restrict b)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)N; i++) a[i] += b[i];
}

static double sum(const float *a)
{
    double s = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : s)
    for (long i = 0; i < (long)N; i++) s += (double)a[i];
    return s;
}

int main(int argc, char **argv)
{
    const int threads = argc > 1 ? atoi(argv[1]) : 1;
    int reps = argc > 2 ? atoi(argv[2]) : 21;
    if (threads < 1 || reps < 1) return 2;
    omp_set_num_threads(threads);
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    double *t = malloc((size_t)reps * sizeof *t);
    if (!a || !b || !t) return 1;
    for (unsigned i = 0; i < N; i++) {
        a[i] = (float)(i % 1000) * 1e-3f;
        b[i] = (float)(i % 997) * 1e-3f;
    }
    add(a, b); /* warm: first touch, OpenMP's threads */
    for (int k = 0; k < reps; k++) {
        double t0 = now();
        add(a, b);
        t[k] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    printf("c_add %.9f\n", t[reps / 2]);
    volatile double sink = sum(a);
    for (int k = 0; k < reps; k++) {
        double t0 = now();
        sink += sum(a);
        t[k] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    printf("c_sum %.9f\n", t[reps / 2]);
    free(a);
    free(b);
    free(t);
    return 0;
}
