/*
 * bench/matmul_cblas.c - the reference for the matmul benchmark: cblas_sgemm
 * (or, with a second argument "float64", cblas_dgemm) called directly from C on
 * 512x512 row-major matrices, the same work that bench/tensor.lua does through
 * mo.matmul. Prints "cblas_sgemm_512 <median seconds>" ("cblas_dgemm_512 ...").
 * usage: matmul_cblas [reps [float32|float64]]
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* median seconds of `reps` dgemm calls on N x N matrices */
static double run_dgemm(int n, int reps, double *t)
{
    double *a = malloc(sizeof(double) * (size_t)n * (size_t)n),
           *b = malloc(sizeof(double) * (size_t)n * (size_t)n),
           *c = malloc(sizeof(double) * (size_t)n * (size_t)n);
    if (!a || !b || !c) exit(1);
    for (int i = 0; i < n * n; i++) {
        a[i] = (double)((i * 7) % 13) / 13.0;
        b[i] = (double)((i * 5) % 11) / 11.0;
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a, n, b, n, 0.0, c, n);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a, n, b, n, 0.0, c, n);
        t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    free(a);
    free(b);
    free(c);
    return t[reps / 2];
}

int main(int argc, char **argv)
{
    enum { N = 512 };
    int reps = argc > 1 ? atoi(argv[1]) : 21;
    if (reps < 1 || reps > 1000) reps = 21;
    if (argc > 2 && strcmp(argv[2], "float64") == 0) {
        double *td = malloc(sizeof(double) * (size_t)reps);
        if (!td) return 1;
        printf("cblas_dgemm_512 %.9f\n", run_dgemm(N, reps, td));
        free(td);
        return 0;
    }
    float *a = malloc(sizeof(float) * N * N), *b = malloc(sizeof(float) * N * N),
          *c = malloc(sizeof(float) * N * N);
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (!a || !b || !c || !t) return 1;
    for (int i = 0; i < N * N; i++) {
        a[i] = (float)((i * 7) % 13) / 13.0f;
        b[i] = (float)((i * 5) % 11) / 11.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
        t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    printf("cblas_sgemm_512 %.9f\n", t[reps / 2]);
    free(a);
    free(b);
    free(c);
    free(t);
    return 0;
}
