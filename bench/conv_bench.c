/*
 * bench/conv_bench.c - the conv number of issue 13, run by bench/conv_bench.sh: the CNN's
 * second conv layer, Conv2d(32, 64, 3, padding 1) on x {128, 32, 14, 14}, forward and
 * backward (gx, gw, gb) through the core (mo_conv2d_forward / mo_conv2d_backward), as a
 * FLOP rate against the sgemm FLOP rate of mo_matmul on 512x512x512 float32 measured in
 * the same process. FLOPs: forward 2 * N * O * OH * OW * C * kH * kW, backward twice
 * that (gw and gx); the bias and im2col work is not counted.
 * Prints one line: "sgemm_gflops A conv_gflops B ratio R fwd_s F bwd_s G min_s M" (medians;
 * R is the median over the rounds of each round's conv rate / sgemm rate; M is the fastest
 * round's forward + backward, the figure least disturbed by other jobs, which
 * conv_bench.sh compares with PyTorch's fastest).
 * With layer 1, the CNN's first conv layer instead: Conv2d(1, 32, 3, padding 1) on
 * {128, 1, 28, 28}, backward without gx (the input needs no gradient), so its FLOPs are
 * forward + gw only.
 * usage: conv_bench [reps [layer]]
 */
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

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp);
    return t[n / 2];
}

static void check(mo_status st, const char *what)
{
    if (st != MO_OK) {
        fprintf(stderr, "conv_bench: %s: %s\n", what, mo_status_str(st));
        exit(1);
    }
}

static mo_tensor make(int ndim, const size_t *shape, mo_rng *r)
{
    mo_tensor t;
    mo_tensor_init(&t);
    check(mo_tensor_empty(&t, ndim, shape, NULL), "alloc");
    check(mo_rand_normal(&t, r, 0.0, 1.0), "randn");
    return t;
}

int main(int argc, char **argv)
{
    const int reps = argc > 1 ? atoi(argv[1]) : 7;
    const int layer = argc > 2 ? atoi(argv[2]) : 2;
    if (reps < 1 || (layer != 1 && layer != 2)) return 1;
    double *tf = malloc(sizeof(double) * (size_t)reps), *tb = malloc(sizeof(double) * (size_t)reps);
    double *tg = malloc(sizeof(double) * (size_t)reps);
    double *ratio = malloc(sizeof(double) * (size_t)reps);
    if (!tf || !tb || !tg || !ratio) return 1;
    mo_rng r;
    mo_rng_seed(&r, 1);

    /* the sgemm reference and the conv layer, interleaved (the machine is shared: a
     * round's two rates see the same load); the ratio is the median of the rounds' ratios */
    const size_t sq[2] = {512, 512};
    mo_tensor a = make(2, sq, &r), b = make(2, sq, &r), c = make(2, sq, &r);
    const size_t ci = layer == 1 ? 1 : 32, co = layer == 1 ? 32 : 64, hw = layer == 1 ? 28 : 14;
    const size_t xs[4] = {128, ci, hw, hw}, ws[4] = {co, ci, 3, 3}, bs[1] = {co};
    const size_t ys[4] = {128, co, hw, hw};
    mo_tensor x = make(4, xs, &r), w = make(4, ws, &r), bias = make(1, bs, &r);
    mo_tensor y = make(4, ys, &r), gy = make(4, ys, &r), gx = make(4, xs, &r);
    mo_tensor gw = make(4, ws, &r), gb = make(1, bs, &r);
    const mo_conv2d_args args = {{1, 1}, {1, 1}, {1, 1}, 1};
    const double gemm_flops = 2.0 * 512.0 * 512.0 * 512.0;
    /* forward 2 N O OH OW C kH kW; the backward twice that (gw and gx), once for layer 1 */
    const double conv_flops =
        (layer == 1 ? 2.0 : 3.0) * 2.0 * 128.0 * (double)(co * hw * hw * ci) * 9.0;
    for (int i = -1; i < reps; i++) { /* one warm-up round */
        double g3[3];
        for (int k = 0; k < 3; k++) {
            double t0 = now();
            check(mo_matmul(&c, &a, 0, &b, 0, 1.0, 0.0), "matmul");
            g3[k] = now() - t0;
        }
        double t0 = now();
        check(mo_conv2d_forward(&y, &x, &w, &bias, &args), "conv2d_forward");
        double t1 = now();
        check(mo_conv2d_backward(layer == 1 ? NULL : &gx, &gw, &gb, &gy, &x, &w, &args),
              "conv2d_backward");
        double t2 = now();
        if (i < 0) continue;
        tf[i] = t1 - t0;
        tb[i] = t2 - t1;
        tg[i] = median(g3, 3);
        ratio[i] = (conv_flops / (t2 - t0)) / (gemm_flops / tg[i]);
    }
    double best = tf[0] + tb[0];
    for (int i = 1; i < reps; i++)
        if (tf[i] + tb[i] < best) best = tf[i] + tb[i];
    const double fwd = median(tf, reps), bwd = median(tb, reps), gemm = median(tg, reps);
    printf("sgemm_gflops %.3f conv_gflops %.3f ratio %.4f fwd_s %.5f bwd_s %.5f min_s %.5f\n",
           gemm_flops / gemm * 1e-9, conv_flops / (fwd + bwd) * 1e-9, median(ratio, reps), fwd,
           bwd, best);
    mo_tensor *all[] = {&a, &b, &c, &x, &w, &bias, &y, &gy, &gx, &gw, &gb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mo_tensor_release(all[i]);
    free(tf);
    free(tb);
    free(tg);
    free(ratio);
    return 0;
}
