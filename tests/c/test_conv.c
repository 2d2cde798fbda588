/*
 * test_conv.c - the core's convolution, pooling and batch-norm entry points
 * (moonopt_conv.h), without Lua: a tiny convolution by hand, every path (im2col,
 * 1x1, depthwise, groups, stride, dilation) against a naive direct loop in both
 * dtypes, the backward against the same loop's adjoint, pooling and batch-norm
 * values, and the error statuses with nothing written.
 */
#include <string.h>

#include "ctest.h"
#include "moonopt.h"

static mo_tensor make(int ndim, const size_t *shape, mo_dtype dt)
{
    mo_tensor t;
    mo_tensor_init(&t);
    mo_tensor_zeros_dtype(&t, ndim, shape, dt, NULL);
    return t;
}

static double get(const mo_tensor *t, size_t i)
{
    return t->dtype == MO_FLOAT64 ? mo_tensor_data_f64(t)[i] : (double)mo_tensor_data(t)[i];
}

static void set(mo_tensor *t, size_t i, double v)
{
    if (t->dtype == MO_FLOAT64)
        mo_tensor_data_f64(t)[i] = v;
    else
        mo_tensor_data(t)[i] = (float)v;
}

static const mo_conv2d_args PLAIN = {{1, 1}, {0, 0}, {1, 1}, 1};

TEST(out_size)
{
    size_t o = 0;
    CHECK_OK(mo_conv2d_out_size(14, 3, 1, 1, 1, &o));
    CHECK(o == 14);
    CHECK_OK(mo_conv2d_out_size(7, 3, 2, 1, 2, &o)); /* (7 + 2 - 5) / 2 + 1 */
    CHECK(o == 3);
    CHECK_OK(mo_conv2d_out_size(3, 5, 1, 1, 1, &o)); /* kernel == padded input */
    CHECK(o == 1);
    CHECK_STATUS(mo_conv2d_out_size(3, 5, 1, 0, 1, &o), MO_ERR_SHAPE);
    CHECK_STATUS(mo_conv2d_out_size(3, 2, 0, 0, 1, &o), MO_ERR_ARG);
    CHECK_STATUS(mo_conv2d_out_size(3, 2, 1, 0, 0, &o), MO_ERR_ARG);
    CHECK_STATUS(mo_conv2d_out_size(3, 0, 1, 0, 1, &o), MO_ERR_ARG);
}

/* x = 1..9 in a 3x3 plane, w = [[1, 0], [0, -1]]: every output is x[i][j] - x[i+1][j+1] = -4. */
TEST(tiny_known_conv)
{
    const size_t xs[4] = {1, 1, 3, 3}, ws[4] = {1, 1, 2, 2}, ys[4] = {1, 1, 2, 2}, bs[1] = {1};
    mo_tensor x = make(4, xs, MO_FLOAT32), w = make(4, ws, MO_FLOAT32), y = make(4, ys, MO_FLOAT32);
    mo_tensor b = make(1, bs, MO_FLOAT32);
    for (size_t i = 0; i < 9; i++) set(&x, i, (double)(i + 1));
    set(&w, 0, 1);
    set(&w, 3, -1);
    set(&b, 0, 0.5);
    CHECK_OK(mo_conv2d_forward(&y, &x, &w, &b, &PLAIN));
    for (size_t i = 0; i < 4; i++) CHECK_NEAR(get(&y, i), -3.5, 0);
    /* backward with gy = 1: gb = 4, gw[0] = 1+2+4+5, gw[3] = 5+6+8+9, gx = w scattered */
    mo_tensor gy = make(4, ys, MO_FLOAT32), gx = make(4, xs, MO_FLOAT32);
    mo_tensor gw = make(4, ws, MO_FLOAT32), gb = make(1, bs, MO_FLOAT32);
    mo_fill(&gy, 1);
    mo_fill(&gw, 1); /* accumulated into */
    CHECK_OK(mo_conv2d_backward(&gx, &gw, &gb, &gy, &x, &w, &PLAIN));
    CHECK_NEAR(get(&gb, 0), 4, 0);
    CHECK_NEAR(get(&gw, 0), 13, 0);
    CHECK_NEAR(get(&gw, 3), 29, 0);
    const double want_gx[9] = {1, 1, 0, 1, 0, -1, 0, -1, -1};
    for (size_t i = 0; i < 9; i++) CHECK_NEAR(get(&gx, i), want_gx[i], 0);
    mo_tensor *all[] = {&x, &w, &y, &b, &gy, &gx, &gw, &gb};
    for (size_t i = 0; i < 8; i++) mo_tensor_release(all[i]);
}

/* The naive direct convolution (y zeroed by the caller), and its adjoints. */
static void naive(const mo_tensor *x, const mo_tensor *w, mo_tensor *y, mo_tensor *gx,
                  mo_tensor *gw, const mo_tensor *gy, const mo_conv2d_args *a)
{
    const size_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const size_t O = w->shape[0], CG = w->shape[1], KH = w->shape[2], KW = w->shape[3];
    const size_t OH = y->shape[2], OW = y->shape[3], OG = O / a->groups;
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < O; o++)
            for (size_t oh = 0; oh < OH; oh++)
                for (size_t ow = 0; ow < OW; ow++)
                    for (size_t cg = 0; cg < CG; cg++)
                        for (size_t i = 0; i < KH; i++)
                            for (size_t j = 0; j < KW; j++) {
                                const long h = (long)(oh * a->stride[0] + i * a->dilation[0]) -
                                               (long)a->padding[0];
                                const long v = (long)(ow * a->stride[1] + j * a->dilation[1]) -
                                               (long)a->padding[1];
                                if (h < 0 || v < 0 || h >= (long)H || v >= (long)W) continue;
                                const size_t c = (o / OG) * CG + cg;
                                const size_t xi = ((n * C + c) * H + (size_t)h) * W + (size_t)v;
                                const size_t wi = ((o * CG + cg) * KH + i) * KW + j;
                                const size_t yi = ((n * O + o) * OH + oh) * OW + ow;
                                set(y, yi, get(y, yi) + get(x, xi) * get(w, wi));
                                set(gx, xi, get(gx, xi) + get(gy, yi) * get(w, wi));
                                set(gw, wi, get(gw, wi) + get(gy, yi) * get(x, xi));
                            }
}

/* Every path of conv.c against the naive loops, in both dtypes. */
TEST(conv_paths_match_naive)
{
    struct cfg {
        size_t x[4], w[4];
        mo_conv2d_args a;
    } cfgs[] = {
        {{2, 3, 6, 5}, {4, 3, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}},  /* im2col, same */
        {{1, 4, 7, 6}, {6, 2, 3, 2}, {{2, 1}, {1, 2}, {2, 1}, 2}},  /* groups, stride, dilation */
        {{2, 5, 4, 3}, {3, 5, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 1}},  /* 1x1 */
        {{2, 3, 5, 6}, {6, 1, 3, 3}, {{1, 2}, {1, 1}, {1, 1}, 3}},  /* depthwise x2 */
        {{1, 2, 5, 5}, {2, 2, 1, 1}, {{2, 2}, {0, 0}, {1, 1}, 1}},  /* 1x1 stride 2 */
    };
    mo_rng r;
    mo_rng_seed(&r, 3);
    for (int dt = 0; dt < 2; dt++) {
        const mo_dtype d = dt ? MO_FLOAT64 : MO_FLOAT32;
        const double tol = dt ? 1e-12 : 1e-4;
        for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
            const struct cfg *c = &cfgs[k];
            size_t ys[4] = {c->x[0], c->w[0], 0, 0};
            CHECK_OK(mo_conv2d_out_size(c->x[2], c->w[2], c->a.stride[0], c->a.padding[0],
                                        c->a.dilation[0], &ys[2]));
            CHECK_OK(mo_conv2d_out_size(c->x[3], c->w[3], c->a.stride[1], c->a.padding[1],
                                        c->a.dilation[1], &ys[3]));
            mo_tensor x = make(4, c->x, d), w = make(4, c->w, d), y = make(4, ys, d);
            mo_tensor gy = make(4, ys, d), gx = make(4, c->x, d), gw = make(4, c->w, d);
            mo_tensor ry = make(4, ys, d), rgx = make(4, c->x, d), rgw = make(4, c->w, d);
            mo_rand_normal(&x, &r, 0, 1);
            mo_rand_normal(&w, &r, 0, 1);
            mo_rand_normal(&gy, &r, 0, 1);
            naive(&x, &w, &ry, &rgx, &rgw, &gy, &c->a);
            CHECK_OK(mo_conv2d_forward(&y, &x, &w, NULL, &c->a));
            CHECK_OK(mo_conv2d_backward(&gx, &gw, NULL, &gy, &x, &w, &c->a));
            for (size_t i = 0; i < y.numel; i++) CHECK_NEAR(get(&y, i), get(&ry, i), tol);
            for (size_t i = 0; i < gx.numel; i++) CHECK_NEAR(get(&gx, i), get(&rgx, i), tol);
            for (size_t i = 0; i < gw.numel; i++) CHECK_NEAR(get(&gw, i), get(&rgw, i), tol);
            mo_tensor *all[] = {&x, &w, &y, &gy, &gx, &gw, &ry, &rgx, &rgw};
            for (size_t i = 0; i < 9; i++) mo_tensor_release(all[i]);
        }
    }
}

TEST(conv_errors_write_nothing)
{
    const size_t xs[4] = {1, 4, 5, 5}, ws[4] = {6, 2, 3, 3}, ys[4] = {1, 6, 3, 3};
    mo_tensor x = make(4, xs, MO_FLOAT32), w = make(4, ws, MO_FLOAT32), y = make(4, ys, MO_FLOAT32);
    mo_fill(&y, 7);
    mo_conv2d_args a = {{1, 1}, {0, 0}, {1, 1}, 1};
    CHECK_STATUS(mo_conv2d_forward(&y, &x, &w, NULL, &a), MO_ERR_SHAPE); /* channels */
    a.groups = 3;
    CHECK_STATUS(mo_conv2d_forward(&y, &x, &w, NULL, &a), MO_ERR_SHAPE); /* 4 != 2 * 3 */
    a.groups = 4;
    CHECK_STATUS(mo_conv2d_forward(&y, &x, &w, NULL, &a), MO_ERR_ARG);   /* 4 does not divide 6 */
    a.groups = 0;
    CHECK_STATUS(mo_conv2d_forward(&y, &x, &w, NULL, &a), MO_ERR_ARG);
    a.groups = 2;
    a.stride[0] = 0;
    CHECK_STATUS(mo_conv2d_forward(&y, &x, &w, NULL, &a), MO_ERR_ARG);
    a.stride[0] = 1;
    a.dilation[1] = 3; /* extent 7 > 5 */
    CHECK_STATUS(mo_conv2d_forward(&y, &x, &w, NULL, &a), MO_ERR_SHAPE);
    a.dilation[1] = 1;
    mo_tensor w64 = make(4, ws, MO_FLOAT64);
    CHECK_STATUS(mo_conv2d_forward(&y, &x, &w64, NULL, &a), MO_ERR_DTYPE);
    mo_tensor xt;
    mo_tensor_init(&xt);
    mo_tensor_transpose(&xt, &x, 2, 3);
    CHECK_STATUS(mo_conv2d_forward(&y, &xt, &w, NULL, &a), MO_ERR_LAYOUT);
    CHECK_STATUS(mo_conv2d_forward(&x, &x, &w, NULL, &a), MO_ERR_SHAPE); /* y's shape */
    for (size_t i = 0; i < y.numel; i++) CHECK(get(&y, i) == 7);
    CHECK_OK(mo_conv2d_forward(&y, &x, &w, NULL, &a));
    /* gw overlapping an input */
    CHECK_STATUS(mo_conv2d_backward(NULL, &w, NULL, &y, &x, &w, &a), MO_ERR_ARG);
    mo_tensor *all[] = {&x, &w, &y, &w64, &xt};
    for (size_t i = 0; i < 5; i++) mo_tensor_release(all[i]);
}

TEST(pooling_values_and_errors)
{
    const size_t xs[4] = {1, 1, 3, 4}, ys[4] = {1, 1, 2, 2};
    mo_tensor x = make(4, xs, MO_FLOAT64), y = make(4, ys, MO_FLOAT64), idx = make(4, ys, MO_FLOAT64);
    for (size_t i = 0; i < 12; i++) set(&x, i, (double)((i * 5) % 12)); /* 0 5 10 3 / 8 1 6 11 / 4 9 2 7 */
    mo_pool2d_args a = {{2, 2}, {2, 2}, {1, 0}, 0};
    /* rows [-1, 1), [1, 3); columns [0, 2), [2, 4) */
    CHECK_OK(mo_max_pool2d_forward(&y, &idx, &x, &a, 0));
    const double want[4] = {5, 10, 9, 11}, want_i[4] = {1, 2, 9, 7};
    for (size_t i = 0; i < 4; i++) {
        CHECK_NEAR(get(&y, i), want[i], 0);
        CHECK_NEAR(get(&idx, i), want_i[i], 0);
    }
    mo_tensor gx = make(4, xs, MO_FLOAT64);
    mo_fill(&y, 1);
    CHECK_OK(mo_max_pool2d_backward(&gx, &y, &idx, 0));
    double s = 0;
    CHECK_OK(mo_sum(&gx, &s));
    CHECK_NEAR(s, 4, 0);
    CHECK_NEAR(get(&gx, 9), 1, 0);
    set(&idx, 0, 12); /* outside the plane */
    mo_fill(&gx, 5);
    CHECK_STATUS(mo_max_pool2d_backward(&gx, &y, &idx, 0), MO_ERR_RANGE);
    CHECK_NEAR(get(&gx, 0), 5, 0);
    /* avg: count_include_pad divides the first row's windows by 4, else by 2 */
    a.count_include_pad = 1;
    CHECK_OK(mo_avg_pool2d_forward(&y, &x, &a));
    CHECK_NEAR(get(&y, 0), 5.0 / 4, 1e-15);
    a.count_include_pad = 0;
    CHECK_OK(mo_avg_pool2d_forward(&y, &x, &a));
    CHECK_NEAR(get(&y, 0), 5.0 / 2, 1e-15);
    a.padding[1] = 2; /* more than half the kernel */
    CHECK_STATUS(mo_avg_pool2d_forward(&y, &x, &a), MO_ERR_ARG);
    a.padding[1] = 0;
    a.kernel[0] = 6; /* larger than the padded input 3 + 2 */
    CHECK_STATUS(mo_max_pool2d_forward(&y, &idx, &x, &a, 0), MO_ERR_SHAPE);
    /* adaptive 3x4 -> 1x1 is the mean */
    const size_t one[4] = {1, 1, 1, 1};
    mo_tensor m = make(4, one, MO_FLOAT64);
    CHECK_OK(mo_adaptive_avg_pool2d_forward(&m, &x));
    CHECK_NEAR(get(&m, 0), 66.0 / 12, 1e-15);
    mo_tensor *all[] = {&x, &y, &idx, &gx, &m};
    for (size_t i = 0; i < 5; i++) mo_tensor_release(all[i]);
}

TEST(batch_norm_values_and_errors)
{
    const size_t xs[2] = {4, 1}, cs[1] = {1};
    mo_tensor x = make(2, xs, MO_FLOAT64), y = make(2, xs, MO_FLOAT64);
    mo_tensor sm = make(1, cs, MO_FLOAT64), si = make(1, cs, MO_FLOAT64);
    mo_tensor rm = make(1, cs, MO_FLOAT64), rv = make(1, cs, MO_FLOAT64);
    for (size_t i = 0; i < 4; i++) set(&x, i, (double)(2 * i)); /* 0 2 4 6: mean 3, var 5 */
    mo_fill(&rv, 1);
    CHECK_OK(mo_batch_norm_forward(&y, &sm, &si, &x, NULL, NULL, &rm, &rv, 1, 0.5, 1e-300));
    CHECK_NEAR(get(&sm, 0), 3, 1e-15);
    CHECK_NEAR(get(&si, 0), 1 / sqrt(5.0), 1e-15);
    CHECK_NEAR(get(&y, 0), -3 / sqrt(5.0), 1e-15);
    CHECK_NEAR(get(&rm, 0), 1.5, 1e-15);
    CHECK_NEAR(get(&rv, 0), 0.5 + 0.5 * 20.0 / 3, 1e-15); /* unbiased: 20 / 3 */
    CHECK_STATUS(mo_batch_norm_forward(&y, &sm, &si, &x, NULL, NULL, NULL, NULL, 0, 0.1, 1e-5),
                 MO_ERR_ARG); /* evaluation without running stats */
    CHECK_STATUS(mo_batch_norm_forward(&y, &sm, &si, &x, NULL, NULL, &rm, &rv, 1, 0.1, 0),
                 MO_ERR_ARG); /* eps */
    CHECK_STATUS(mo_batch_norm_forward(&y, &sm, &si, &x, NULL, NULL, &rm, &rm, 1, 0.1, 1e-5),
                 MO_ERR_ARG); /* the same running tensor twice */
    CHECK_NEAR(get(&rm, 0), 1.5, 0);
    const size_t one[2] = {1, 1};
    mo_tensor x1 = make(2, one, MO_FLOAT64), y1 = make(2, one, MO_FLOAT64);
    CHECK_STATUS(mo_batch_norm_forward(&y1, &sm, &si, &x1, NULL, NULL, NULL, NULL, 1, 0.1, 1e-5),
                 MO_ERR_SHAPE); /* one value per channel */
    mo_tensor x32 = make(2, xs, MO_FLOAT32);
    CHECK_STATUS(mo_batch_norm_forward(&y, &sm, &si, &x32, NULL, NULL, NULL, NULL, 1, 0.1, 1e-5),
                 MO_ERR_DTYPE);
    /* backward, evaluation: gx = gy * invstd; dbias += sum gy */
    mo_tensor gx = make(2, xs, MO_FLOAT64), db = make(1, cs, MO_FLOAT64);
    mo_fill(&y, 2);
    CHECK_OK(mo_batch_norm_backward(&gx, NULL, &db, &x, &y, NULL, &sm, &si, 0));
    CHECK_NEAR(get(&gx, 2), 2 / sqrt(5.0), 1e-15);
    CHECK_NEAR(get(&db, 0), 8, 0);
    /* training: a constant gy has no gradient through the normalization */
    CHECK_OK(mo_batch_norm_backward(&gx, NULL, NULL, &x, &y, NULL, &sm, &si, 1));
    CHECK_NEAR(get(&gx, 2), 0, 1e-15);
    mo_tensor *all[] = {&x, &y, &sm, &si, &rm, &rv, &x1, &y1, &x32, &gx, &db};
    for (size_t i = 0; i < 11; i++) mo_tensor_release(all[i]);
}

int main(void)
{
    RUN(out_size);
    RUN(tiny_known_conv);
    RUN(conv_paths_match_naive);
    RUN(conv_errors_write_nothing);
    RUN(pooling_values_and_errors);
    RUN(batch_norm_values_and_errors);
    return ctest_summary();
}
