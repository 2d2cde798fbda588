/*
 * test_nn.c - the core's neural-network kernels (moonopt_nn.h), without Lua:
 * values against hand-computed and PyTorch-computed numbers, accumulation,
 * and every error status with nothing written.
 */
#include <string.h>

#include "ctest.h"
#include "moonopt.h"

/* A new contiguous tensor holding `vals` (numel of shape floats). */
static mo_tensor make(int ndim, const size_t *shape, const float *vals)
{
    mo_tensor t;
    mo_tensor_init(&t);
    if (mo_tensor_empty(&t, ndim, shape, NULL) == MO_OK && vals)
        memcpy(mo_tensor_data(&t), vals, t.numel * sizeof(float));
    return t;
}

static mo_tensor make2(size_t r, size_t c, const float *vals)
{
    size_t s[2] = {r, c};
    return make(2, s, vals);
}

static mo_tensor make1(size_t n, const float *vals)
{
    return make(1, &n, vals);
}

static mo_tensor zeros2(size_t r, size_t c)
{
    mo_tensor t = make2(r, c, NULL);
    mo_fill(&t, 0.0f);
    return t;
}

static float at(const mo_tensor *t, size_t i)
{
    return mo_tensor_data(t)[i];
}

/* ---- Linear ---- */

TEST(linear_forward_values)
{
    /* x {2, 3}, w {2, 3}, b {2}: y = x w^T + b */
    const float xv[] = {1, 2, 3, -1, 0, 2};
    const float wv[] = {0.5f, -1, 2, 1, 1, 1};
    const float bv[] = {0.25f, -10};
    mo_tensor x = make2(2, 3, xv), w = make2(2, 3, wv), b = make1(2, bv), y = zeros2(2, 2);
    CHECK_OK(mo_nn_linear_forward(&y, &x, &w, &b, MO_ACT_NONE, 0));
    /* row 1: 0.5 - 2 + 6 + 0.25 = 4.75, 6 - 10 = -4; row 2: -0.5 + 4 + 0.25 = 3.75, 1 - 10 = -9 */
    CHECK_NEAR(at(&y, 0), 4.75, 1e-6);
    CHECK_NEAR(at(&y, 1), -4, 1e-6);
    CHECK_NEAR(at(&y, 2), 3.75, 1e-6);
    CHECK_NEAR(at(&y, 3), -9, 1e-6);
    /* fused ReLU and no bias */
    CHECK_OK(mo_nn_linear_forward(&y, &x, &w, &b, MO_ACT_RELU, 0));
    CHECK(at(&y, 1) == 0.0f && at(&y, 3) == 0.0f);
    CHECK_NEAR(at(&y, 0), 4.75, 1e-6);
    CHECK_OK(mo_nn_linear_forward(&y, &x, &w, NULL, MO_ACT_NONE, 0));
    CHECK_NEAR(at(&y, 0), 4.5, 1e-6);
    CHECK_NEAR(at(&y, 3), 1, 1e-6);
    mo_tensor_release(&x);
    mo_tensor_release(&w);
    mo_tensor_release(&b);
    mo_tensor_release(&y);
}

TEST(linear_backward_accumulates)
{
    const float xv[] = {1, 2, 3, -1, 0, 2};
    const float wv[] = {0.5f, -1, 2, 1, 1, 1};
    const float gv[] = {1, -2, 0.5f, 3};
    mo_tensor x = make2(2, 3, xv), w = make2(2, 3, wv), g = make2(2, 2, gv);
    mo_tensor dw = zeros2(2, 3), dx = zeros2(2, 3);
    mo_tensor db = make1(2, NULL);
    mo_fill(&db, 0.0f);
    CHECK_OK(mo_nn_linear_backward(&dx, &dw, &db, &g, &x, &w));
    /* dw = g^T x: row 1 = 1*(1,2,3) + 0.5*(-1,0,2) = (0.5, 2, 4); row 2 = -2*(1,2,3) + 3*(-1,0,2) */
    const float dw_want[] = {0.5f, 2, 4, -5, -4, 0};
    for (int i = 0; i < 6; i++) CHECK_NEAR(at(&dw, (size_t)i), dw_want[i], 1e-6);
    CHECK_NEAR(at(&db, 0), 1.5, 1e-6);
    CHECK_NEAR(at(&db, 1), 1, 1e-6);
    /* dx = g w: row 1 = 1*(0.5,-1,2) - 2*(1,1,1) */
    const float dx_want[] = {-1.5f, -3, 0, 3.25f, 2.5f, 4};
    for (int i = 0; i < 6; i++) CHECK_NEAR(at(&dx, (size_t)i), dx_want[i], 1e-6);
    /* a second call doubles dw and db, and overwrites dx */
    CHECK_OK(mo_nn_linear_backward(&dx, &dw, &db, &g, &x, &w));
    for (int i = 0; i < 6; i++) CHECK_NEAR(at(&dw, (size_t)i), 2 * dw_want[i], 1e-6);
    for (int i = 0; i < 6; i++) CHECK_NEAR(at(&dx, (size_t)i), dx_want[i], 1e-6);
    CHECK_NEAR(at(&db, 0), 3, 1e-6);
    /* every product may be skipped */
    CHECK_OK(mo_nn_linear_backward(NULL, NULL, &db, &g, &x, &w));
    CHECK_NEAR(at(&db, 1), 3, 1e-6);
    mo_tensor *ts[] = {&x, &w, &g, &dw, &dx, &db};
    for (int i = 0; i < 6; i++) mo_tensor_release(ts[i]);
}

TEST(linear_errors_write_nothing)
{
    mo_tensor x = zeros2(2, 3), w = zeros2(4, 3), y = zeros2(2, 4), bad = zeros2(2, 5);
    mo_tensor b5 = make1(5, NULL);
    mo_fill(&y, 7.0f);
    CHECK_STATUS(mo_nn_linear_forward(&y, &bad, &w, NULL, MO_ACT_NONE, 0), MO_ERR_SHAPE);
    CHECK_STATUS(mo_nn_linear_forward(&bad, &x, &w, NULL, MO_ACT_NONE, 0), MO_ERR_SHAPE);
    CHECK_STATUS(mo_nn_linear_forward(&y, &x, &w, &b5, MO_ACT_NONE, 0), MO_ERR_SHAPE);
    CHECK_STATUS(mo_nn_linear_forward(&y, &x, &w, NULL, MO_ACT_COUNT_, 0), MO_ERR_ARG);
    CHECK_STATUS(mo_nn_linear_forward(&y, &x, &w, NULL, MO_ACT_LEAKY_RELU, NAN), MO_ERR_ARG);
    CHECK_STATUS(mo_nn_linear_forward(NULL, &x, &w, NULL, MO_ACT_NONE, 0), MO_ERR_ARG);
    /* y as a view of x's storage: overlap */
    mo_tensor yt;
    mo_tensor_init(&yt);
    CHECK_OK(mo_tensor_transpose(&yt, &y, 0, 1));
    mo_tensor y42 = zeros2(4, 2);
    CHECK_STATUS(mo_nn_linear_forward(&yt, &x, &w, NULL, MO_ACT_NONE, 0), MO_ERR_SHAPE);
    /* the output overlapping the input (shapes otherwise right) */
    mo_tensor w33 = zeros2(3, 3);
    CHECK_STATUS(mo_nn_linear_forward(&x, &x, &w33, NULL, MO_ACT_NONE, 0), MO_ERR_ARG);
    mo_tensor_release(&w33);
    for (size_t i = 0; i < 8; i++) CHECK(at(&y, i) == 7.0f);
    /* a non-contiguous output */
    mo_tensor y24;
    mo_tensor_init(&y24);
    CHECK_OK(mo_tensor_transpose(&y24, &y42, 0, 1));
    CHECK_STATUS(mo_nn_linear_forward(&y24, &x, &w, NULL, MO_ACT_NONE, 0), MO_ERR_LAYOUT);
    /* a freed operand */
    mo_tensor dead = zeros2(2, 3);
    mo_tensor_release(&dead);
    CHECK_STATUS(mo_nn_linear_forward(&y, &dead, &w, NULL, MO_ACT_NONE, 0), MO_ERR_FREED);
    /* backward: dx aliasing g is refused */
    mo_tensor g = zeros2(2, 4), dw = zeros2(4, 3);
    CHECK_STATUS(mo_nn_linear_backward(&x, &dw, NULL, &g, &x, &w), MO_ERR_ARG);
    CHECK_STATUS(mo_nn_linear_backward(NULL, &dw, NULL, &bad, &x, &w), MO_ERR_SHAPE);
    mo_tensor *ts[] = {&x, &w, &y, &bad, &b5, &yt, &y42, &y24, &g, &dw};
    for (int i = 0; i < 10; i++) mo_tensor_release(ts[i]);
}

TEST(colsum_strided)
{
    /* g^T of a {3, 2} matrix: a {2, 3} view with strides {1, 2} */
    const float gv[] = {1, 2, 3, 4, 5, 6};
    mo_tensor g = make2(3, 2, gv), gt;
    mo_tensor_init(&gt);
    CHECK_OK(mo_tensor_transpose(&gt, &g, 0, 1));
    mo_tensor acc = make1(3, NULL);
    mo_fill(&acc, 1.0f);
    CHECK_OK(mo_nn_colsum_acc(&acc, &gt));   /* columns of gt = rows of g */
    CHECK_NEAR(at(&acc, 0), 1 + 1 + 2, 1e-6);
    CHECK_NEAR(at(&acc, 1), 1 + 3 + 4, 1e-6);
    CHECK_NEAR(at(&acc, 2), 1 + 5 + 6, 1e-6);
    mo_tensor acc2 = make1(2, NULL);
    mo_fill(&acc2, 0.0f);
    CHECK_OK(mo_nn_colsum_acc(&acc2, &g));
    CHECK_NEAR(at(&acc2, 0), 9, 1e-6);
    CHECK_NEAR(at(&acc2, 1), 12, 1e-6);
    CHECK_STATUS(mo_nn_colsum_acc(&acc, &g), MO_ERR_SHAPE);
    mo_tensor_release(&g);
    mo_tensor_release(&gt);
    mo_tensor_release(&acc);
    mo_tensor_release(&acc2);
}

/* ---- activations ---- */

TEST(activation_values_and_derivatives)
{
    const float xv[] = {-2, -0.5f, 0, 0.5f, 3};
    size_t n = 5;
    mo_tensor x = make1(n, xv), y = make1(n, NULL), g = make1(n, NULL), dx = make1(n, NULL);
    mo_fill(&g, 2.0f);
    /* relu */
    CHECK_OK(mo_nn_act_forward(&y, &x, MO_ACT_RELU, 0));
    CHECK(at(&y, 0) == 0 && at(&y, 2) == 0 && at(&y, 4) == 3);
    CHECK_OK(mo_nn_act_backward(&dx, &g, &y, MO_ACT_RELU, 0));
    CHECK(at(&dx, 1) == 0 && at(&dx, 2) == 0 && at(&dx, 3) == 2);
    /* leaky relu with slope 0.1 */
    CHECK_OK(mo_nn_act_forward(&y, &x, MO_ACT_LEAKY_RELU, 0.1f));
    CHECK_NEAR(at(&y, 0), -0.2, 1e-7);
    CHECK_OK(mo_nn_act_backward(&dx, &g, &x, MO_ACT_LEAKY_RELU, 0.1f));
    CHECK_NEAR(at(&dx, 0), 0.2, 1e-7);
    CHECK_NEAR(at(&dx, 4), 2, 1e-7);
    /* tanh and sigmoid from their outputs */
    CHECK_OK(mo_nn_act_forward(&y, &x, MO_ACT_TANH, 0));
    CHECK_NEAR(at(&y, 3), tanh(0.5), 1e-7);
    CHECK_OK(mo_nn_act_backward(&dx, &g, &y, MO_ACT_TANH, 0));
    CHECK_NEAR(at(&dx, 3), 2 * (1 - tanh(0.5) * tanh(0.5)), 1e-6);
    CHECK_OK(mo_nn_act_forward(&y, &x, MO_ACT_SIGMOID, 0));
    double s = 1 / (1 + exp(2.0));
    CHECK_NEAR(at(&y, 0), s, 1e-7);
    CHECK_OK(mo_nn_act_backward(&dx, &g, &y, MO_ACT_SIGMOID, 0));
    CHECK_NEAR(at(&dx, 0), 2 * s * (1 - s), 1e-7);
    /* gelu (PyTorch: gelu(-0.5) = -0.154268786, gelu(3) = 2.99595031) */
    CHECK_OK(mo_nn_act_forward(&y, &x, MO_ACT_GELU, 0));
    CHECK_NEAR(at(&y, 1), -0.154268786, 1e-6);
    CHECK_NEAR(at(&y, 4), 2.99595031, 1e-6);
    /* gelu'(x) = Phi(x) + x phi(x); at 0.5: 0.691462461 + 0.5 * 0.352065327 */
    CHECK_OK(mo_nn_act_backward(&dx, &g, &x, MO_ACT_GELU, 0));
    CHECK_NEAR(at(&dx, 3), 2 * (0.691462461 + 0.5 * 0.352065327), 1e-6);
    CHECK(mo_nn_act_uses_output(MO_ACT_TANH) && !mo_nn_act_uses_output(MO_ACT_GELU));
    CHECK(strcmp(mo_nn_act_name(MO_ACT_GELU_TANH), "gelu_tanh") == 0);
    CHECK(strcmp(mo_nn_act_name(MO_ACT_COUNT_), "unknown") == 0);
    /* in place is allowed; a shifted overlap is not */
    CHECK_OK(mo_nn_act_forward(&x, &x, MO_ACT_RELU, 0));
    CHECK(at(&x, 0) == 0 && at(&x, 4) == 3);
    mo_tensor a, b;
    mo_tensor_init(&a);
    mo_tensor_init(&b);
    CHECK_OK(mo_tensor_narrow(&a, &x, 0, 0, 4));
    CHECK_OK(mo_tensor_narrow(&b, &x, 0, 1, 4));
    CHECK_STATUS(mo_nn_act_forward(&a, &b, MO_ACT_TANH, 0), MO_ERR_ARG);
    CHECK_STATUS(mo_nn_act_forward(&y, &a, MO_ACT_TANH, 0), MO_ERR_SHAPE);
    mo_tensor *ts[] = {&x, &y, &g, &dx, &a, &b};
    for (int i = 0; i < 6; i++) mo_tensor_release(ts[i]);
}

TEST(bias_act)
{
    const float yv[] = {-1, 1, -3, 3};
    const float bv[] = {2, -2};
    mo_tensor y = make2(2, 2, yv), b = make1(2, bv);
    CHECK_OK(mo_nn_bias_act(&y, &b, MO_ACT_RELU, 0));
    CHECK(at(&y, 0) == 1 && at(&y, 1) == 0 && at(&y, 2) == 0 && at(&y, 3) == 1);
    mo_tensor b3 = make1(3, NULL);
    CHECK_STATUS(mo_nn_bias_act(&y, &b3, MO_ACT_RELU, 0), MO_ERR_SHAPE);
    mo_tensor_release(&y);
    mo_tensor_release(&b);
    mo_tensor_release(&b3);
}

/* ---- softmax, layer norm, dropout ---- */

TEST(softmax_rows_and_columns)
{
    const float xv[] = {1, 2, 3, 1000, 1000, 1000};
    mo_tensor x = make2(2, 3, xv), y = zeros2(2, 3);
    CHECK_OK(mo_nn_softmax_forward(&y, &x, 1));
    double z = exp(1.0) + exp(2.0) + exp(3.0);
    CHECK_NEAR(at(&y, 0), exp(1.0) / z, 1e-6);
    CHECK_NEAR(at(&y, 2), exp(3.0) / z, 1e-6);
    CHECK_NEAR(at(&y, 4), 1.0 / 3, 1e-6);
    /* along dim 0: each column sums to 1 */
    CHECK_OK(mo_nn_softmax_forward(&y, &x, 0));
    for (int c = 0; c < 3; c++) CHECK_NEAR(at(&y, (size_t)c) + at(&y, (size_t)c + 3), 1, 1e-6);
    CHECK_NEAR(at(&y, 3), 1, 1e-6);
    /* backward of a constant gradient is 0 (softmax sums to 1) */
    mo_tensor g = zeros2(2, 3), dx = zeros2(2, 3);
    mo_fill(&g, 5);
    CHECK_OK(mo_nn_softmax_forward(&y, &x, 1));
    CHECK_OK(mo_nn_softmax_backward(&dx, &g, &y, 1));
    for (size_t i = 0; i < 6; i++) CHECK_NEAR(at(&dx, i), 0, 1e-6);
    CHECK_STATUS(mo_nn_softmax_forward(&y, &x, 2), MO_ERR_RANGE);
    mo_tensor_release(&x);
    mo_tensor_release(&y);
    mo_tensor_release(&g);
    mo_tensor_release(&dx);
}

TEST(layernorm_forward_backward)
{
    const float xv[] = {1, 2, 3, 4, 10, 10, 10, 10};
    const float gam[] = {1, 2, 1, 1};
    const float bet[] = {0, 0, 0, 0.5f};
    mo_tensor x = make2(2, 4, xv), y = zeros2(2, 4), gm = make1(4, gam), bt = make1(4, bet);
    mo_tensor mean = make1(2, NULL), rstd = make1(2, NULL);
    CHECK_OK(mo_nn_layernorm_forward(&y, &mean, &rstd, &x, &gm, &bt, 1e-5f));
    double r = 1 / sqrt(1.25 + 1e-5);
    CHECK_NEAR(at(&mean, 0), 2.5, 1e-7);
    CHECK_NEAR(at(&rstd, 0), r, 1e-6);
    CHECK_NEAR(at(&y, 0), -1.5 * r, 1e-6);
    CHECK_NEAR(at(&y, 1), 2 * -0.5 * r, 1e-6);
    CHECK_NEAR(at(&y, 3), 1.5 * r + 0.5, 1e-6);
    CHECK_NEAR(at(&y, 4), 0, 1e-6);
    CHECK_NEAR(at(&y, 7), 0.5, 1e-6);
    /* dbeta = column sums of g, dgamma = sum g * xhat; dx of a constant g with gamma 1 is 0 */
    mo_tensor g = zeros2(2, 4), dx = zeros2(2, 4), dg = make1(4, NULL), db = make1(4, NULL);
    mo_fill(&g, 1);
    mo_fill(&dg, 0);
    mo_fill(&db, 0);
    CHECK_OK(mo_nn_layernorm_backward(&dx, &dg, &db, &g, &x, &mean, &rstd, NULL));
    for (size_t i = 0; i < 8; i++) CHECK_NEAR(at(&dx, i), 0, 1e-6);
    CHECK_NEAR(at(&db, 2), 2, 1e-7);
    CHECK_NEAR(at(&dg, 0), -1.5 * r, 1e-6);
    CHECK_NEAR(at(&dg, 3), 1.5 * r, 1e-6);
    CHECK_STATUS(mo_nn_layernorm_forward(&y, &mean, &rstd, &x, &gm, &bt, 0.0f), MO_ERR_ARG);
    CHECK_STATUS(mo_nn_layernorm_forward(&y, &mean, &mean, &x, &gm, &bt, 1e-5f), MO_ERR_ARG);
    mo_tensor g3 = make1(3, NULL);
    CHECK_STATUS(mo_nn_layernorm_forward(&y, &mean, &rstd, &x, &g3, NULL, 1e-5f), MO_ERR_SHAPE);
    mo_tensor *ts[] = {&x, &y, &gm, &bt, &mean, &rstd, &g, &dx, &dg, &db, &g3};
    for (int i = 0; i < 11; i++) mo_tensor_release(ts[i]);
}

TEST(dropout_mask)
{
    size_t n = 1001;
    mo_tensor x = make1(n, NULL), y = make1(n, NULL), mask = make1(n, NULL), y2 = make1(n, NULL);
    mo_fill(&x, 2.0f);
    mo_rng r;
    mo_rng_seed(&r, 42);
    CHECK_OK(mo_nn_dropout_forward(&y, &mask, &x, 0.3f, &r));
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++) {
        if (at(&mask, i) == 0) zeros++;
        else CHECK_NEAR(at(&mask, i), 1 / 0.7, 1e-6);
        CHECK(at(&y, i) == 2 * at(&mask, i));
    }
    CHECK(zeros > 240 && zeros < 360);   /* 300 +- 14.5 (1 sd) */
    /* the same seed, the same mask; the generator advanced by ceil(n / 2) draws */
    mo_rng r2;
    mo_rng_seed(&r2, 42);
    CHECK_OK(mo_nn_dropout_forward(&y2, &mask, &x, 0.3f, &r2));
    CHECK(memcmp(mo_tensor_data(&y), mo_tensor_data(&y2), n * sizeof(float)) == 0);
    CHECK(mo_rng_next(&r) == mo_rng_next(&r2));
    mo_rng_seed(&r2, 42);
    for (size_t i = 0; i < (n + 1) / 2; i++) mo_rng_next(&r2);
    mo_rng_seed(&r, 42);
    CHECK_OK(mo_nn_dropout_forward(&y2, &mask, &x, 0.3f, &r));
    CHECK(mo_rng_next(&r) == mo_rng_next(&r2));
    /* p = 0 and p = 1 draw nothing */
    mo_rng_seed(&r, 1);
    mo_rng_seed(&r2, 1);
    CHECK_OK(mo_nn_dropout_forward(&y, &mask, &x, 0.0f, &r));
    CHECK(at(&y, 5) == 2 && at(&mask, 5) == 1);
    CHECK_OK(mo_nn_dropout_forward(&y, &mask, &x, 1.0f, &r));
    CHECK(at(&y, 5) == 0);
    CHECK(mo_rng_next(&r) == mo_rng_next(&r2));
    /* backward */
    mo_tensor g = make1(n, NULL);
    mo_fill(&g, 3);
    mo_rng_seed(&r, 42);
    CHECK_OK(mo_nn_dropout_forward(&y, &mask, &x, 0.3f, &r));
    CHECK_OK(mo_nn_dropout_backward(&g, &g, &mask));
    for (size_t i = 0; i < n; i++) CHECK(at(&g, i) == 3 * at(&mask, i));
    CHECK_STATUS(mo_nn_dropout_forward(&y, &mask, &x, 1.5f, &r), MO_ERR_ARG);
    CHECK_STATUS(mo_nn_dropout_forward(&y, &mask, &x, 0.5f, NULL), MO_ERR_ARG);
    CHECK_STATUS(mo_nn_dropout_forward(&y, &y, &x, 0.5f, &r), MO_ERR_ARG);
    mo_tensor *ts[] = {&x, &y, &mask, &y2, &g};
    for (int i = 0; i < 5; i++) mo_tensor_release(ts[i]);
}

/* ---- losses ---- */

TEST(cross_entropy_matches_pytorch)
{
    /* the inputs of tests/lua/test_nn_loss.lua; targets 0-based here */
    const float xv[] = {1.5f, -0.25f, 0.75f, 2.0f, -1.0f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f,
                        -2.0f, 3.0f, 0.0f, -0.5f, 1.25f};
    const float tv[] = {4, 1, 2};
    const float gl[] = {0.0920418203f, 0.0104862992f, 0.0399599224f, 0.156076118f, -0.298564166f,
                        0.0473734438f, -0.246943086f, 0.0593380779f, 0.0662798509f, 0.0739517063f,
                        -0.00488484278f, 0.25777939f, -0.293500662f, 0.00131891191f, 0.0392871611f};
    mo_tensor x = make2(3, 5, xv), t = make1(3, tv), g = zeros2(3, 5);
    double loss = 0;
    CHECK_OK(mo_nn_cross_entropy(&loss, NULL, &x, &t, 0, 0.0f, MO_NN_MEAN, NULL));
    CHECK_NEAR(loss, 2.8892982006073, 1e-6);
    CHECK_OK(mo_nn_cross_entropy(&loss, &g, &x, &t, 0, 0.1f, MO_NN_MEAN, NULL));
    CHECK_NEAR(loss, 2.820964813232422, 1e-6);
    for (size_t i = 0; i < 15; i++) CHECK_NEAR(at(&g, i), gl[i], 1e-6);
    CHECK_OK(mo_nn_cross_entropy(&loss, NULL, &x, &t, 0, 0.0f, MO_NN_SUM, NULL));
    CHECK_NEAR(loss, 8.66789436340332, 1e-6);
    /* 1-based targets (the Lua convention) */
    const float t1[] = {5, 2, 3};
    mo_tensor tt = make1(3, t1);
    CHECK_OK(mo_nn_cross_entropy(&loss, NULL, &x, &tt, 1, 0.0f, MO_NN_MEAN, NULL));
    CHECK_NEAR(loss, 2.8892982006073, 1e-6);
    /* a bad target: its position, and nothing written */
    const float tb[] = {1, 5, 0};
    mo_tensor bad = make1(3, tb);
    size_t pos = 99;
    mo_fill(&g, 9);
    CHECK_STATUS(mo_nn_cross_entropy(&loss, &g, &x, &bad, 0, 0.0f, MO_NN_MEAN, &pos),
                 MO_ERR_RANGE);
    CHECK(pos == 1);
    CHECK(at(&g, 0) == 9 && at(&g, 14) == 9);
    const float tf[] = {1, 0.5f, 0};
    mo_tensor frac = make1(3, tf);
    CHECK_STATUS(mo_nn_cross_entropy(&loss, &g, &x, &frac, 0, 0.0f, MO_NN_MEAN, &pos),
                 MO_ERR_RANGE);
    CHECK(pos == 1);
    CHECK_STATUS(mo_nn_cross_entropy(&loss, &g, &x, &t, 0, 1.5f, MO_NN_MEAN, NULL), MO_ERR_ARG);
    mo_tensor t4 = make1(4, NULL);
    CHECK_STATUS(mo_nn_cross_entropy(&loss, NULL, &x, &t4, 0, 0.0f, MO_NN_MEAN, NULL), MO_ERR_SHAPE);
    mo_tensor *ts[] = {&x, &t, &g, &tt, &bad, &frac, &t4};
    for (int i = 0; i < 7; i++) mo_tensor_release(ts[i]);
}

TEST(cross_entropy_huge_logits)
{
    const float xv[] = {1e4f, 0, -1e4f, 5e3f, 1e4f, 1e4f};
    const float tv[] = {1, 0};
    mo_tensor x = make2(2, 3, xv), t = make1(2, tv), g = zeros2(2, 3);
    double loss;
    CHECK_OK(mo_nn_cross_entropy(&loss, &g, &x, &t, 0, 0.0f, MO_NN_MEAN, NULL));
    CHECK_NEAR(loss, (1e4 + 5e3 + log(2.0)) / 2, 1e-12);   /* exact; PyTorch (float) rounds it */
    const float gw[] = {0.5f, -0.5f, 0, -0.5f, 0.25f, 0.25f};
    for (size_t i = 0; i < 6; i++) CHECK_NEAR(at(&g, i), gw[i], 1e-7);
    mo_tensor_release(&x);
    mo_tensor_release(&t);
    mo_tensor_release(&g);
}

TEST(mse_and_bce)
{
    const float ov[] = {0.5f, -1.0f, 2.0f, 0.25f};
    const float yv[] = {1, 0, 0, 1};
    mo_tensor o = make2(2, 2, ov), y = make2(2, 2, yv), g = zeros2(2, 2);
    double loss;
    CHECK_OK(mo_nn_mse(&loss, &g, &o, &y, MO_NN_MEAN));
    CHECK_NEAR(loss, 1.453125, 1e-9);
    CHECK_NEAR(at(&g, 2), 1.0, 1e-7);
    CHECK_OK(mo_nn_bce_logits(&loss, &g, &o, &y, MO_NN_MEAN));
    CHECK_NEAR(loss, 0.8725515007972717, 1e-6);
    CHECK_NEAR(at(&g, 0), (1 / (1 + exp(-0.5)) - 1) / 4, 1e-7);
    mo_tensor y4 = make1(4, yv);
    CHECK_STATUS(mo_nn_mse(&loss, NULL, &o, &y4, MO_NN_MEAN), MO_ERR_SHAPE);
    CHECK_STATUS(mo_nn_mse(&loss, &o, &o, &y, MO_NN_MEAN), MO_ERR_ARG);
    CHECK_STATUS(mo_nn_mse(NULL, NULL, &o, &y, MO_NN_MEAN), MO_ERR_ARG);
    CHECK_STATUS(mo_nn_bce_logits(&loss, NULL, &o, &y, (mo_nn_reduction)7), MO_ERR_ARG);
    mo_tensor_release(&o);
    mo_tensor_release(&y);
    mo_tensor_release(&g);
    mo_tensor_release(&y4);
}

int main(void)
{
    RUN(linear_forward_values);
    RUN(linear_backward_accumulates);
    RUN(linear_errors_write_nothing);
    RUN(colsum_strided);
    RUN(activation_values_and_derivatives);
    RUN(bias_act);
    RUN(softmax_rows_and_columns);
    RUN(layernorm_forward_backward);
    RUN(dropout_mask);
    RUN(cross_entropy_matches_pytorch);
    RUN(cross_entropy_huge_logits);
    RUN(mse_and_bce);
    return ctest_summary();
}
