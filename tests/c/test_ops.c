/*
 * test_ops.c - the core's kernels: elementwise ops (contiguous, in place,
 * strided, aliased through a transposed view), reductions and matmul against
 * NumPy references (tests/golden/core_refs.h, made by make_core_refs.py), and
 * the seeded RNG against an independent transcription of its algorithm.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ctest.h"
#include "moonopt.h"
#include "../golden/core_refs.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ---- */

/* A new contiguous tensor holding vals (row-major), or uninitialised when vals is NULL. */
static mo_tensor make(int ndim, const size_t *shape, const float *vals)
{
    mo_tensor t;
    mo_tensor_init(&t);
    CHECK_OK(mo_tensor_empty(&t, ndim, shape, NULL));
    if (vals && t.numel) memcpy(mo_tensor_data(&t), vals, t.numel * sizeof(float));
    return t;
}

/* Element `flat` (row-major logical index) of a tensor with any strides. */
static float at(const mo_tensor *t, size_t flat)
{
    ptrdiff_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (ptrdiff_t)(flat % t->shape[d]) * t->stride[d];
        flat /= t->shape[d];
    }
    return mo_tensor_data(t)[off];
}

/* Number of elements differing from want by more than tol * max(1, |want|); NaN must match NaN.
 * Prints the first few mismatches. */
static int mismatches(const mo_tensor *t, const float *want, size_t n, double tol)
{
    int bad = 0;
    if (t->numel != n) {
        printf("#   numel %zu, want %zu\n", t->numel, n);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        double g = at(t, i), w = want[i];
        double scale = fabs(w) > 1.0 ? fabs(w) : 1.0;
        int ok = (isnan(w) && isnan(g)) || fabs(g - w) <= tol * scale;
        if (!ok && bad++ < 4) printf("#   [%zu] = %.9g, want %.9g\n", i, g, w);
    }
    return bad;
}

static int same_bits(const mo_tensor *t, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = at(t, i);
        if (memcmp(&g, &want[i], sizeof g) != 0) return 0;
    }
    return 1;
}

/* A deterministic, irregular test value in about [-2.5, 2.5]. */
static float val(size_t i)
{
    return (float)(sin(0.7 * (double)i + 0.3) * 2.5);
}

static void fill_vals(float *x, size_t n, size_t seed)
{
    for (size_t i = 0; i < n; i++) x[i] = val(i * 7 + seed);
}

/* ------------------------------------------------------------------------ */
/* Elementwise                                                               */
/* ------------------------------------------------------------------------ */

TEST(fill_and_copy)
{
    mo_tensor a = make(2, (size_t[]){3, 4}, NULL);
    CHECK_OK(mo_fill(&a, 2.5f));
    for (size_t i = 0; i < 12; i++) CHECK(at(&a, i) == 2.5f);

    /* fill a narrowed, transposed window: only those elements change */
    mo_tensor n, tr;
    mo_tensor_init(&n);
    mo_tensor_init(&tr);
    CHECK_OK(mo_tensor_narrow(&n, &a, 1, 1, 2)); /* columns 1, 2 */
    CHECK_OK(mo_tensor_transpose(&tr, &n, 0, 1));
    CHECK_OK(mo_fill(&tr, -1.0f));
    const float want[12] = {2.5f, -1, -1, 2.5f, 2.5f, -1, -1, 2.5f, 2.5f, -1, -1, 2.5f};
    CHECK(mismatches(&a, want, 12, 0) == 0);

    /* copy transposed -> contiguous gives the transpose */
    float src[12];
    fill_vals(src, 12, 1);
    mo_tensor s = make(2, (size_t[]){3, 4}, src);
    mo_tensor st, d = make(2, (size_t[]){4, 3}, NULL);
    mo_tensor_init(&st);
    CHECK_OK(mo_tensor_transpose(&st, &s, 0, 1));
    CHECK_OK(mo_copy(&d, &st));
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 3; j++) CHECK(at(&d, i * 3 + j) == src[j * 4 + i]);

    /* errors: shape, NULL, freed; nothing written */
    mo_tensor wrong = make(2, (size_t[]){3, 4}, NULL);
    CHECK_OK(mo_fill(&wrong, 7.0f));
    CHECK_STATUS(mo_copy(&wrong, &d), MO_ERR_SHAPE);
    CHECK_STATUS(mo_copy(&wrong, NULL), MO_ERR_ARG);
    CHECK_STATUS(mo_copy(NULL, &d), MO_ERR_ARG);
    CHECK_STATUS(mo_fill(NULL, 1.0f), MO_ERR_ARG);
    for (size_t i = 0; i < 12; i++) CHECK(at(&wrong, i) == 7.0f);
    mo_tensor empty;
    mo_tensor_init(&empty);
    CHECK_STATUS(mo_fill(&empty, 1.0f), MO_ERR_FREED);
    CHECK_STATUS(mo_copy(&wrong, &empty), MO_ERR_FREED);

    mo_tensor_release(&n);
    mo_tensor_release(&tr);
    mo_tensor_release(&st);
    mo_tensor_release(&s);
    mo_tensor_release(&d);
    mo_tensor_release(&wrong);
    mo_tensor_release(&a);
}

TEST(copy_transpose_in_place)
{
    /* dst = src^T where both are views of ONE storage: needs the temporary */
    float v[25];
    fill_vals(v, 25, 3);
    mo_tensor a = make(2, (size_t[]){5, 5}, v);
    mo_tensor at_;
    mo_tensor_init(&at_);
    CHECK_OK(mo_tensor_transpose(&at_, &a, 0, 1));
    CHECK_OK(mo_copy(&a, &at_));
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 5; j++) CHECK(at(&a, i * 5 + j) == v[j * 5 + i]);

    /* overlapping shifted windows of one row: dst = x[0:9], src = x[1:10] */
    float w[10];
    fill_vals(w, 10, 4);
    mo_tensor x = make(1, (size_t[]){10}, w);
    mo_tensor lo, hi;
    mo_tensor_init(&lo);
    mo_tensor_init(&hi);
    CHECK_OK(mo_tensor_narrow(&lo, &x, 0, 0, 9));
    CHECK_OK(mo_tensor_narrow(&hi, &x, 0, 1, 9));
    CHECK_OK(mo_copy(&hi, &lo)); /* memmove-like shift right */
    CHECK(at(&x, 0) == w[0]);
    for (size_t i = 1; i < 10; i++) CHECK(at(&x, i) == w[i - 1]);
    mo_tensor_release(&lo);
    mo_tensor_release(&hi);
    mo_tensor_release(&x);
    mo_tensor_release(&at_);
    mo_tensor_release(&a);
}

static double unary_ref(mo_unary_op op, double x)
{
    switch (op) {
    case MO_NEG: return -x;
    case MO_SQRT: return sqrt(x);
    case MO_EXP: return exp(x);
    case MO_LOG: return log(x);
    case MO_TANH: return tanh(x);
    case MO_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case MO_RELU: return x > 0 ? x : 0;
    case MO_ABS: return fabs(x);
    case MO_SIGN: return x > 0 ? 1 : x < 0 ? -1 : 0;
    case MO_LOG1P: return log1p(x);
    case MO_EXPM1: return expm1(x);
    case MO_RSQRT: return 1.0 / sqrt(x);
    case MO_SIN: return sin(x);
    case MO_COS: return cos(x);
    case MO_TAN: return tan(x);
    case MO_FLOOR: return floor(x);
    case MO_CEIL: return ceil(x);
    case MO_ROUND: return nearbyint(x);
    case MO_ERF: return erf(x);
    default: return NAN;
    }
}

TEST(unary_all_paths)
{
    /* 21 values: not a multiple of 8, so the vector loop's tail runs too */
    enum { N = 21 };
    float in[N], pos[N];
    fill_vals(in, N, 5);
    in[3] = 0.0f;
    for (size_t i = 0; i < N; i++) pos[i] = fabsf(in[i]) + 0.125f;
    for (int op = 0; op < MO_UNARY_COUNT_; op++) {
        const float *src =
            (op == MO_SQRT || op == MO_LOG || op == MO_RSQRT || op == MO_LOG1P) ? pos : in;
        float want[N];
        for (size_t i = 0; i < N; i++) want[i] = (float)unary_ref((mo_unary_op)op, src[i]);

        /* out-of-place contiguous */
        mo_tensor a = make(1, (size_t[]){N}, src), o = make(1, (size_t[]){N}, NULL);
        CHECK_OK(mo_unary(&o, &a, (mo_unary_op)op));
        CHECK(mismatches(&o, want, N, 2e-7) == 0);
        /* in place */
        CHECK_OK(mo_unary(&a, &a, (mo_unary_op)op));
        CHECK(mismatches(&a, want, N, 2e-7) == 0);
        mo_tensor_release(&a);
        mo_tensor_release(&o);

        /* strided: a 3x7 input read through its transpose into a narrowed output */
        float want_t[N];
        for (size_t i = 0; i < 7; i++)
            for (size_t j = 0; j < 3; j++) want_t[i * 3 + j] = want[j * 7 + i];
        mo_tensor m = make(2, (size_t[]){3, 7}, src), mt, big = make(2, (size_t[]){7, 5}, NULL), ob;
        mo_tensor_init(&mt);
        mo_tensor_init(&ob);
        CHECK_OK(mo_fill(&big, 99.0f));
        CHECK_OK(mo_tensor_transpose(&mt, &m, 0, 1));
        CHECK_OK(mo_tensor_narrow(&ob, &big, 1, 1, 3));
        CHECK_OK(mo_unary(&ob, &mt, (mo_unary_op)op));
        CHECK(mismatches(&ob, want_t, N, 2e-7) == 0);
        for (size_t i = 0; i < 7; i++) CHECK(at(&big, i * 5) == 99.0f && at(&big, i * 5 + 4) == 99.0f);

        /* out = a^T on a's own storage (square): goes through a temporary */
        mo_tensor sq = make(2, (size_t[]){4, 4}, src), sqt;
        mo_tensor_init(&sqt);
        CHECK_OK(mo_tensor_transpose(&sqt, &sq, 0, 1));
        CHECK_OK(mo_unary(&sqt, &sq, (mo_unary_op)op)); /* sq[j][i] = f(sq[i][j]) */
        float want_sq[16];
        for (size_t i = 0; i < 4; i++)
            for (size_t j = 0; j < 4; j++) want_sq[j * 4 + i] = want[i * 4 + j];
        CHECK(mismatches(&sq, want_sq, 16, 2e-7) == 0);

        mo_tensor_release(&sqt);
        mo_tensor_release(&sq);
        mo_tensor_release(&m);
        mo_tensor_release(&mt);
        mo_tensor_release(&big);
        mo_tensor_release(&ob);
    }
}

TEST(unary_special_values)
{
    const float in[8] = {NAN, -0.0f, 0.0f, -100.0f, 100.0f, INFINITY, -INFINITY, -3.0f};
    mo_tensor a = make(1, (size_t[]){8}, in), o = make(1, (size_t[]){8}, NULL);
    CHECK_OK(mo_unary(&o, &a, MO_RELU));
    CHECK(isnan(at(&o, 0)) && at(&o, 3) == 0.0f && at(&o, 4) == 100.0f && at(&o, 7) == 0.0f);
    CHECK_OK(mo_unary(&o, &a, MO_SIGN));
    CHECK(isnan(at(&o, 0)) && at(&o, 2) == 0.0f && at(&o, 3) == -1.0f && at(&o, 5) == 1.0f);
    CHECK(signbit(at(&o, 1)));
    CHECK_OK(mo_unary(&o, &a, MO_SIGMOID)); /* no overflow at either end */
    CHECK(at(&o, 3) >= 0.0f && at(&o, 3) < 1e-40f && at(&o, 4) == 1.0f);
    CHECK(at(&o, 5) == 1.0f && at(&o, 6) == 0.0f && isnan(at(&o, 0)));
    CHECK_OK(mo_unary(&o, &a, MO_SQRT));
    CHECK(isnan(at(&o, 7)) && at(&o, 5) == INFINITY);
    CHECK_OK(mo_unary(&o, &a, MO_ABS));
    CHECK(at(&o, 6) == INFINITY && at(&o, 7) == 3.0f && !signbit(at(&o, 1)));
    CHECK_STATUS(mo_unary(&o, &a, MO_UNARY_COUNT_), MO_ERR_ARG);
    CHECK_STATUS(mo_unary(&o, &a, (mo_unary_op)-1), MO_ERR_ARG);
    mo_tensor_release(&a);
    mo_tensor_release(&o);
}

static float binary_ref(mo_binary_op op, float x, float y)
{
    switch (op) {
    case MO_ADD: return x + y;
    case MO_SUB: return x - y;
    case MO_MUL: return x * y;
    case MO_DIV: return x / y;
    case MO_POW: return powf(x, y);
    case MO_MAXIMUM: return (x != x || y != y) ? NAN : (x > y ? x : y);
    case MO_MINIMUM: return (x != x || y != y) ? NAN : (x < y ? x : y);
    case MO_EQ: return x == y;
    case MO_NE: return x != y;
    case MO_LT: return x < y;
    case MO_LE: return x <= y;
    case MO_GT: return x > y;
    case MO_GE: return x >= y;
    default: return NAN;
    }
}

TEST(binary_all_aliasing_cases)
{
    enum { N = 19 };
    float x[N], y[N];
    fill_vals(x, N, 11);
    fill_vals(y, N, 12);
    for (size_t i = 0; i < N; i++) y[i] += y[i] >= 0 ? 0.5f : -0.5f; /* no division by ~0 */
    for (int op = 0; op < MO_BINARY_COUNT_; op++) {
        float w_ab[N], w_aa[N];
        for (size_t i = 0; i < N; i++) {
            w_ab[i] = binary_ref((mo_binary_op)op, x[i], y[i]);
            w_aa[i] = binary_ref((mo_binary_op)op, x[i], x[i]);
        }
        mo_tensor a = make(1, (size_t[]){N}, x), b = make(1, (size_t[]){N}, y);
        mo_tensor o = make(1, (size_t[]){N}, NULL);
        CHECK_OK(mo_binary(&o, &a, &b, (mo_binary_op)op)); /* distinct */
        CHECK(same_bits(&o, w_ab, N));
        CHECK_OK(mo_binary(&o, &a, &a, (mo_binary_op)op)); /* a == b */
        CHECK(same_bits(&o, w_aa, N));
        CHECK_OK(mo_binary(&a, &a, &b, (mo_binary_op)op)); /* out == a */
        CHECK(same_bits(&a, w_ab, N));
        memcpy(mo_tensor_data(&a), x, sizeof x);
        CHECK_OK(mo_binary(&b, &a, &b, (mo_binary_op)op)); /* out == b */
        CHECK(same_bits(&b, w_ab, N));
        CHECK_OK(mo_binary(&a, &a, &a, (mo_binary_op)op)); /* out == a == b */
        CHECK(same_bits(&a, w_aa, N));
        mo_tensor_release(&a);
        mo_tensor_release(&b);
        mo_tensor_release(&o);
    }
}

TEST(binary_strided_and_errors)
{
    /* a: 4x6 transposed view (6x4), b: 6x4 window of a 8x5 matrix, out: contiguous 6x4 */
    float xa[24], xb[40];
    fill_vals(xa, 24, 21);
    fill_vals(xb, 40, 22);
    mo_tensor A = make(2, (size_t[]){4, 6}, xa), B = make(2, (size_t[]){8, 5}, xb);
    mo_tensor at_, bn, bw, o = make(2, (size_t[]){6, 4}, NULL);
    mo_tensor_init(&at_);
    mo_tensor_init(&bn);
    mo_tensor_init(&bw);
    CHECK_OK(mo_tensor_transpose(&at_, &A, 0, 1));
    CHECK_OK(mo_tensor_narrow(&bn, &B, 0, 1, 6));
    CHECK_OK(mo_tensor_narrow(&bw, &bn, 1, 1, 4));
    CHECK_OK(mo_binary(&o, &at_, &bw, MO_SUB));
    float want[24];
    for (size_t i = 0; i < 6; i++)
        for (size_t j = 0; j < 4; j++) want[i * 4 + j] = xa[j * 6 + i] - xb[(i + 1) * 5 + j + 1];
    CHECK(same_bits(&o, want, 24));

    /* in place on the strided window itself: bw = bw * at_ */
    CHECK_OK(mo_binary(&bw, &bw, &at_, MO_MUL));
    for (size_t i = 0; i < 6; i++)
        for (size_t j = 0; j < 4; j++)
            CHECK(at(&bw, i * 4 + j) == xb[(i + 1) * 5 + j + 1] * xa[j * 6 + i]);
    CHECK(at(&B, 0) == xb[0] && at(&B, 39) == xb[39]); /* outside the window */

    /* errors leave out untouched */
    float before[24];
    for (size_t i = 0; i < 24; i++) before[i] = at(&o, i);
    CHECK_STATUS(mo_binary(&o, &A, &at_, MO_ADD), MO_ERR_SHAPE);
    CHECK_STATUS(mo_binary(&o, &at_, &at_, MO_BINARY_COUNT_), MO_ERR_ARG);
    CHECK_STATUS(mo_binary(&o, NULL, &at_, MO_ADD), MO_ERR_ARG);
    CHECK_STATUS(mo_binary_scalar(&o, &A, 1.0f, MO_ADD), MO_ERR_SHAPE);
    CHECK_STATUS(mo_binary_scalar(&o, &at_, 1.0f, MO_BINARY_COUNT_), MO_ERR_ARG);
    CHECK_STATUS(mo_scalar_binary(&o, 1.0f, &A, MO_ADD), MO_ERR_SHAPE);
    CHECK(same_bits(&o, before, 24));

    /* a revoked storage: every handle on it reports FREED */
    mo_tensor_revoke(&A);
    CHECK_STATUS(mo_binary(&o, &at_, &bw, MO_ADD), MO_ERR_FREED);
    CHECK_STATUS(mo_unary(&o, &at_, MO_NEG), MO_ERR_FREED);
    CHECK(same_bits(&o, before, 24));

    mo_tensor_release(&at_);
    mo_tensor_release(&bn);
    mo_tensor_release(&bw);
    mo_tensor_release(&o);
    mo_tensor_release(&A);
    mo_tensor_release(&B);
}

TEST(vector_loop_tails)
{
    /* every length 0..40 and one long one: main vector part + tail */
    float x[1003], y[1003], w[1003];
    fill_vals(x, 1003, 31);
    fill_vals(y, 1003, 32);
    for (size_t len = 0; len <= 41; len++) {
        size_t n = len == 41 ? 1003 : len;
        mo_tensor a = make(1, &n, x), b = make(1, &n, y), o = make(1, &n, NULL);
        CHECK_OK(mo_binary(&o, &a, &b, MO_ADD));
        for (size_t i = 0; i < n; i++) w[i] = x[i] + y[i];
        CHECK(same_bits(&o, w, n));
        CHECK_OK(mo_addcmul(&a, &a, 0.5f, &b, &b));
        for (size_t i = 0; i < n; i++) w[i] = x[i] + 0.5f * y[i] * y[i];
        CHECK(same_bits(&a, w, n));
        mo_tensor_release(&a);
        mo_tensor_release(&b);
        mo_tensor_release(&o);
    }
}

TEST(scalar_ops_pow_clamp)
{
    enum { N = 13 };
    float x[N];
    fill_vals(x, N, 41);
    x[0] = NAN;
    mo_tensor a = make(1, (size_t[]){N}, x), o = make(1, (size_t[]){N}, NULL);
    const float s = 1.75f;
    for (int op = 0; op < MO_BINARY_COUNT_; op++) {
        float w1[N], w2[N];
        for (size_t i = 0; i < N; i++) {
            w1[i] = binary_ref((mo_binary_op)op, x[i], s);
            w2[i] = binary_ref((mo_binary_op)op, s, x[i]);
        }
        CHECK_OK(mo_binary_scalar(&o, &a, s, (mo_binary_op)op));
        CHECK(mismatches(&o, w1, N, 0) == 0);
        CHECK_OK(mo_scalar_binary(&o, s, &a, (mo_binary_op)op));
        CHECK(mismatches(&o, w2, N, 0) == 0);
    }
    /* pow: the special-cased exponents and the general one */
    const float ps[6] = {2.0f, 1.0f, -1.0f, 0.5f, 3.0f, 0.0f};
    for (size_t k = 0; k < 6; k++) {
        float w[N];
        for (size_t i = 0; i < N; i++) w[i] = powf(x[i], ps[k]);
        CHECK_OK(mo_pow_scalar(&o, &a, ps[k]));
        CHECK(mismatches(&o, w, N, 2e-7) == 0);
    }
    /* clamp keeps NaN, in place works, bad bounds are rejected before writing */
    float w[N];
    for (size_t i = 0; i < N; i++) w[i] = isnan(x[i]) ? x[i] : fminf(fmaxf(x[i], -1.0f), 0.5f);
    CHECK_OK(mo_clamp(&o, &a, -1.0f, 0.5f));
    CHECK(mismatches(&o, w, N, 0) == 0);
    CHECK_OK(mo_clamp(&a, &a, -1.0f, 0.5f));
    CHECK(mismatches(&a, w, N, 0) == 0);
    CHECK_STATUS(mo_clamp(&o, &a, 1.0f, 0.0f), MO_ERR_ARG);
    CHECK_STATUS(mo_clamp(&o, &a, NAN, 0.0f), MO_ERR_ARG);
    CHECK_STATUS(mo_clamp(&o, &a, 0.0f, NAN), MO_ERR_ARG);
    CHECK(mismatches(&o, w, N, 0) == 0);
    CHECK_OK(mo_clamp(&o, &a, -INFINITY, INFINITY));
    CHECK_OK(mo_clamp(&o, &a, 0.25f, 0.25f));
    CHECK(at(&o, 1) == 0.25f);
    mo_tensor_release(&a);
    mo_tensor_release(&o);
}

TEST(addcmul_addcdiv)
{
    enum { N = 23 };
    float x[N], y[N], z[N], wm[N], wd[N], wsq[N];
    fill_vals(x, N, 51);
    fill_vals(y, N, 52);
    fill_vals(z, N, 53);
    for (size_t i = 0; i < N; i++) z[i] = fabsf(z[i]) + 0.5f;
    const float v = -0.3f;
    for (size_t i = 0; i < N; i++) {
        wm[i] = x[i] + v * y[i] * z[i];
        wd[i] = x[i] + v * y[i] / z[i];
        wsq[i] = x[i] + v * y[i] * y[i];
    }
    mo_tensor a = make(1, (size_t[]){N}, x), t1 = make(1, (size_t[]){N}, y);
    mo_tensor t2 = make(1, (size_t[]){N}, z), o = make(1, (size_t[]){N}, NULL);
    CHECK_OK(mo_addcmul(&o, &a, v, &t1, &t2));
    CHECK(same_bits(&o, wm, N));
    CHECK_OK(mo_addcdiv(&o, &a, v, &t1, &t2));
    CHECK(same_bits(&o, wd, N));
    CHECK_OK(mo_addcmul(&o, &a, v, &t1, &t1)); /* t1 == t2, as in v += g*g */
    CHECK(same_bits(&o, wsq, N));
    CHECK_OK(mo_addcmul(&a, &a, v, &t1, &t2)); /* out == a */
    CHECK(same_bits(&a, wm, N));
    memcpy(mo_tensor_data(&a), x, sizeof x);
    CHECK_OK(mo_addcdiv(&t1, &a, v, &t1, &t2)); /* out == t1 */
    CHECK(same_bits(&t1, wd, N));
    memcpy(mo_tensor_data(&t1), y, sizeof y);

    /* strided: every operand is column 1 of an Nx2 matrix (stride 2) */
    mo_tensor X2 = make(2, (size_t[]){N, 2}, NULL), Y2 = make(2, (size_t[]){N, 2}, NULL);
    mo_tensor Z2 = make(2, (size_t[]){N, 2}, NULL), ta, tt1, tt2;
    mo_tensor_init(&ta);
    mo_tensor_init(&tt1);
    mo_tensor_init(&tt2);
    for (size_t i = 0; i < N; i++) {
        mo_tensor_data(&X2)[2 * i + 1] = x[i];
        mo_tensor_data(&Y2)[2 * i + 1] = y[i];
        mo_tensor_data(&Z2)[2 * i + 1] = z[i];
    }
    CHECK_OK(mo_tensor_select(&ta, &X2, 1, 1));
    CHECK_OK(mo_tensor_select(&tt1, &Y2, 1, 1));
    CHECK_OK(mo_tensor_select(&tt2, &Z2, 1, 1));
    CHECK(ta.stride[0] == 2);
    CHECK_OK(mo_addcdiv(&ta, &ta, v, &tt1, &tt2));
    CHECK(same_bits(&ta, wd, N));
    CHECK_OK(mo_addcmul(&o, &a, v, &tt1, &tt2)); /* contiguous out, strided inputs */
    CHECK(same_bits(&o, wm, N));

    CHECK_STATUS(mo_addcmul(&o, &a, v, &t1, &X2), MO_ERR_SHAPE);
    CHECK_STATUS(mo_addcdiv(&o, &a, v, NULL, &t2), MO_ERR_ARG);
    mo_tensor_release(&ta);
    mo_tensor_release(&tt1);
    mo_tensor_release(&tt2);
    mo_tensor_release(&X2);
    mo_tensor_release(&Y2);
    mo_tensor_release(&Z2);
    mo_tensor_release(&a);
    mo_tensor_release(&t1);
    mo_tensor_release(&t2);
    mo_tensor_release(&o);
}

TEST(add_row_bias)
{
    float x[15], b[5];
    fill_vals(x, 15, 61);
    fill_vals(b, 5, 62);
    mo_tensor m = make(2, (size_t[]){3, 5}, x), bias = make(1, (size_t[]){5}, b);
    CHECK_OK(mo_add_row_bias(&m, &bias));
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 5; j++) CHECK(at(&m, i * 5 + j) == x[i * 5 + j] + b[j]);

    /* m as a transposed view (5x3 storage), bias as a strided column */
    mo_tensor s = make(2, (size_t[]){5, 3}, x), st, bb = make(2, (size_t[]){5, 2}, NULL), bcol;
    mo_tensor_init(&st);
    mo_tensor_init(&bcol);
    CHECK_OK(mo_tensor_transpose(&st, &s, 0, 1)); /* 3x5 */
    for (size_t j = 0; j < 5; j++) mo_tensor_data(&bb)[j * 2 + 1] = b[j];
    CHECK_OK(mo_tensor_select(&bcol, &bb, 1, 1)); /* {5}, stride 2 */
    CHECK_OK(mo_add_row_bias(&st, &bcol));
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 5; j++) CHECK(at(&st, i * 5 + j) == x[j * 3 + i] + b[j]);

    /* bias = row 0 of m itself: every row gets the ORIGINAL row 0 */
    mo_tensor m2 = make(2, (size_t[]){3, 5}, x), r0;
    mo_tensor_init(&r0);
    CHECK_OK(mo_tensor_select(&r0, &m2, 0, 0));
    CHECK_OK(mo_add_row_bias(&m2, &r0));
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 5; j++) CHECK(at(&m2, i * 5 + j) == x[i * 5 + j] + x[j]);

    CHECK_STATUS(mo_add_row_bias(&m2, &bcol), MO_OK);
    CHECK_STATUS(mo_add_row_bias(&st, &m), MO_ERR_SHAPE);
    CHECK_STATUS(mo_add_row_bias(&bias, &bias), MO_ERR_SHAPE);
    mo_tensor b4 = make(1, (size_t[]){4}, b);
    CHECK_STATUS(mo_add_row_bias(&m, &b4), MO_ERR_SHAPE);
    CHECK_STATUS(mo_add_row_bias(NULL, &b4), MO_ERR_ARG);
    mo_tensor_release(&b4);
    mo_tensor_release(&r0);
    mo_tensor_release(&m2);
    mo_tensor_release(&st);
    mo_tensor_release(&bcol);
    mo_tensor_release(&bb);
    mo_tensor_release(&s);
    mo_tensor_release(&m);
    mo_tensor_release(&bias);
}

TEST(broadcasting)
{
    /* shape inference: {2, 1, 3} with {4, 1} -> {2, 4, 3}; {2, 3} with {2} fails */
    mo_tensor a = make(3, (size_t[]){2, 1, 3}, (const float[]){1, 2, 3, 4, 5, 6});
    mo_tensor b = make(2, (size_t[]){4, 1}, (const float[]){10, 20, 30, 40});
    mo_tensor r = make(1, (size_t[]){2}, NULL);
    size_t shape[MO_MAX_DIMS];
    int nd = -1;
    const mo_tensor *ab[3] = {&a, NULL, &b};
    CHECK_OK(mo_broadcast_shape(3, ab, &nd, shape));
    CHECK(nd == 3 && shape[0] == 2 && shape[1] == 4 && shape[2] == 3);
    const mo_tensor *bad[2] = {&b, &r}; /* {4, 1} and {2}: 1 vs 2 fine, 4 vs missing fine */
    CHECK_OK(mo_broadcast_shape(2, bad, &nd, shape));
    CHECK(nd == 2 && shape[0] == 4 && shape[1] == 2);
    const mo_tensor *bad2[2] = {&a, &r}; /* 3 vs 2 */
    CHECK_STATUS(mo_broadcast_shape(2, bad2, &nd, shape), MO_ERR_SHAPE);
    CHECK_OK(mo_broadcast_shape(0, NULL, &nd, shape));
    CHECK(nd == 0);

    /* out {2, 4, 3} = a - b, read through stride-0 views */
    mo_tensor o = make(3, (size_t[]){2, 4, 3}, NULL);
    CHECK_OK(mo_binary(&o, &a, &b, MO_SUB));
    for (size_t i = 0; i < 2; i++)
        for (size_t j = 0; j < 4; j++)
            for (size_t k = 0; k < 3; k++)
                CHECK(at(&o, (i * 4 + j) * 3 + k) == (float)(i * 3 + k + 1) - (float)(10 * (j + 1)));
    /* the column broadcast takes the scalar loops: {4, 1} * {4, 3} via b first */
    mo_tensor m = make(2, (size_t[]){4, 3}, NULL), m2 = make(2, (size_t[]){4, 3}, NULL);
    CHECK_OK(mo_fill(&m, 2.0));
    CHECK_OK(mo_binary(&m2, &b, &m, MO_DIV));
    for (size_t i = 0; i < 12; i++) CHECK(at(&m2, i) == (float)(10 * (i / 3 + 1)) / 2.0f);
    /* an input that does not broadcast to out, an output of the wrong shape */
    CHECK_STATUS(mo_binary(&m2, &a, &m, MO_ADD), MO_ERR_SHAPE);
    CHECK_STATUS(mo_binary(&r, &b, &m, MO_ADD), MO_ERR_SHAPE);

    /* in place with an input broadcast from out's own storage: row 0 of m added to
     * every row (the row is read before it is written: a temporary) */
    float mv[12];
    for (size_t i = 0; i < 12; i++) mv[i] = (float)i;
    mo_tensor mm = make(2, (size_t[]){4, 3}, mv), row;
    mo_tensor_init(&row);
    CHECK_OK(mo_tensor_narrow(&row, &mm, 0, 0, 1));
    CHECK_OK(mo_binary(&mm, &mm, &row, MO_ADD));
    for (size_t i = 0; i < 12; i++) CHECK(at(&mm, i) == mv[i] + mv[i % 3]);

    /* where: cond {4, 1}, a number, b {3}: out {4, 3} */
    mo_tensor c = make(2, (size_t[]){4, 1}, (const float[]){1, 0, NAN, -0.0f});
    mo_tensor v = make(1, (size_t[]){3}, (const float[]){7, 8, 9});
    CHECK_OK(mo_where(&m2, &c, NULL, -1.0, &v, 0.0));
    const float w[12] = {-1, -1, -1, 7, 8, 9, -1, -1, -1, 7, 8, 9};
    CHECK(same_bits(&m2, w, 12));
    CHECK_STATUS(mo_where(&m2, &c, NULL, 0.0, &a, 0.0), MO_ERR_SHAPE);
    CHECK_STATUS(mo_where(&m2, NULL, NULL, 0.0, NULL, 0.0), MO_ERR_ARG);

    mo_tensor *all[] = {&a, &b, &r, &o, &m, &m2, &mm, &row, &c, &v};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) mo_tensor_release(all[i]);
}

TEST(zero_size_and_zero_dim)
{
    mo_tensor z = make(2, (size_t[]){0, 3}, NULL), z2 = make(2, (size_t[]){0, 3}, NULL);
    CHECK_OK(mo_fill(&z, 1.0f));
    CHECK_OK(mo_binary(&z2, &z, &z, MO_ADD));
    double s = -1;
    CHECK_OK(mo_sum(&z, &s));
    CHECK(s == 0.0);
    CHECK_STATUS(mo_mean(&z, &s), MO_ERR_ARG);
    CHECK_STATUS(mo_max(&z, &s), MO_ERR_ARG);
    size_t idx;
    CHECK_STATUS(mo_argmax(&z, &idx), MO_ERR_ARG);
    mo_tensor_release(&z);
    mo_tensor_release(&z2);

    mo_tensor sc = make(0, NULL, (const float[]){3.0f});
    CHECK_OK(mo_unary(&sc, &sc, MO_NEG));
    CHECK(*mo_tensor_data(&sc) == -3.0f);
    CHECK_OK(mo_sum(&sc, &s));
    CHECK(s == -3.0);
    mo_tensor_release(&sc);
}

/* ------------------------------------------------------------------------ */
/* Reductions against NumPy                                                   */
/* ------------------------------------------------------------------------ */

typedef struct red_set {
    const double *whole;
    const float *sum[3], *mean[3], *max[3], *min[3], *argmax[3];
} red_set;

static void check_reductions(const mo_tensor *t, const red_set *r)
{
    double v;
    size_t idx;
    CHECK_OK(mo_sum(t, &v));
    CHECK_NEAR(v, r->whole[0], 1e-12);
    CHECK_OK(mo_mean(t, &v));
    CHECK_NEAR(v, r->whole[1], 1e-12);
    CHECK_OK(mo_max(t, &v));
    CHECK(v == r->whole[2]);
    CHECK_OK(mo_min(t, &v));
    CHECK(v == r->whole[3]);
    CHECK_OK(mo_argmax(t, &idx));
    CHECK(idx == (size_t)r->whole[4]);

    for (int d = 0; d < 3; d++) {
        const size_t n = t->numel / t->shape[d];
        const float *want[5] = {r->sum[d], r->mean[d], r->max[d], r->min[d], r->argmax[d]};
        for (int op = 0; op < 5; op++) {
            mo_tensor o;
            mo_tensor_init(&o);
            if (op < 4)
                CHECK_OK(mo_reduce_dim(&o, t, d, (mo_reduce_op)op, NULL));
            else
                CHECK_OK(mo_argmax_dim(&o, t, d, NULL));
            CHECK(o.ndim == 2 && mo_tensor_is_contiguous(&o));
            CHECK(o.shape[0] == t->shape[d == 0 ? 1 : 0] && o.shape[1] == t->shape[d == 2 ? 1 : 2]);
            const int bad = mismatches(&o, want[op], n, op < 2 ? 1e-6 : 0);
            if (bad) printf("#   (dim %d, op %d)\n", d, op);
            CHECK(bad == 0);
            mo_tensor_release(&o);
        }
    }
}

#define RED_SET(p)                                                                   \
    {                                                                                \
        p##_whole, {p##_sum0, p##_sum1, p##_sum2}, {p##_mean0, p##_mean1, p##_mean2}, \
            {p##_max0, p##_max1, p##_max2}, {p##_min0, p##_min1, p##_min2},          \
            {p##_argmax0, p##_argmax1, p##_argmax2}                                  \
    }

TEST(reductions_golden)
{
    const red_set r = RED_SET(red_r), rt = RED_SET(red_rt);
    const red_set ri = RED_SET(red_ri), rit = RED_SET(red_rit);
    mo_tensor t = make(3, (size_t[]){3, 4, 5}, red_r), tt;
    mo_tensor_init(&tt);
    check_reductions(&t, &r);
    CHECK_OK(mo_tensor_transpose(&tt, &t, 0, 2));
    check_reductions(&tt, &rt);
    mo_tensor_release(&tt);
    mo_tensor_release(&t);

    t = make(3, (size_t[]){3, 4, 5}, red_ri);
    check_reductions(&t, &ri);
    CHECK_OK(mo_tensor_transpose(&tt, &t, 0, 2));
    check_reductions(&tt, &rit);
    mo_tensor_release(&tt);
    mo_tensor_release(&t);
}

TEST(reductions_wide_and_nan)
{
    /* 3 x 300: reducing dim 0 takes the column-chunk path (300 > one chunk) */
    enum { R = 3, C = 300 };
    static float x[R * C];
    fill_vals(x, R * C, 71);
    mo_tensor t = make(2, (size_t[]){R, C}, x), o;
    mo_tensor_init(&o);
    CHECK_OK(mo_reduce_dim(&o, &t, 0, MO_RED_MEAN, NULL));
    float want[C];
    for (size_t j = 0; j < C; j++)
        want[j] = (float)(((double)x[j] + (double)x[C + j] + (double)x[2 * C + j]) / 3.0);
    CHECK(mismatches(&o, want, C, 1e-7) == 0);
    mo_tensor_release(&o);
    CHECK_OK(mo_argmax_dim(&o, &t, 0, NULL));
    for (size_t j = 0; j < C; j++) {
        size_t b = 0;
        for (size_t i = 1; i < R; i++)
            if (x[i * C + j] > x[b * C + j]) b = i;
        want[j] = (float)b;
    }
    CHECK(mismatches(&o, want, C, 0) == 0);
    mo_tensor_release(&o);
    mo_tensor_release(&t);

    /* NaN: max/min propagate it, argmax takes the first NaN */
    const float v[6] = {1.0f, 5.0f, NAN, 7.0f, NAN, 5.0f};
    t = make(2, (size_t[]){2, 3}, v);
    double d;
    size_t idx;
    CHECK_OK(mo_max(&t, &d));
    CHECK(isnan(d));
    CHECK_OK(mo_min(&t, &d));
    CHECK(isnan(d));
    CHECK_OK(mo_argmax(&t, &idx));
    CHECK(idx == 2);
    CHECK_OK(mo_argmax_dim(&o, &t, 1, NULL));
    CHECK(at(&o, 0) == 2.0f && at(&o, 1) == 1.0f);
    mo_tensor_release(&o);
    CHECK_OK(mo_argmax_dim(&o, &t, 0, NULL));
    CHECK(at(&o, 0) == 1.0f && at(&o, 1) == 1.0f && at(&o, 2) == 0.0f);
    mo_tensor_release(&o);
    CHECK_OK(mo_reduce_dim(&o, &t, 0, MO_RED_MAX, NULL));
    CHECK(at(&o, 0) == 7.0f && isnan(at(&o, 1)) && isnan(at(&o, 2)));
    mo_tensor_release(&o);

    /* 1-d source gives a 0-d result */
    mo_tensor row;
    mo_tensor_init(&row);
    CHECK_OK(mo_tensor_select(&row, &t, 0, 0));
    CHECK_OK(mo_reduce_dim(&o, &row, 0, MO_RED_SUM, NULL));
    CHECK(o.ndim == 0 && o.numel == 1 && isnan(*mo_tensor_data(&o)));

    /* errors */
    mo_tensor o2;
    mo_tensor_init(&o2);
    CHECK_STATUS(mo_reduce_dim(&o, &t, 0, MO_RED_SUM, NULL), MO_ERR_ARG); /* out not empty */
    CHECK_STATUS(mo_reduce_dim(&o2, &t, 2, MO_RED_SUM, NULL), MO_ERR_RANGE);
    CHECK_STATUS(mo_reduce_dim(&o2, &t, -1, MO_RED_SUM, NULL), MO_ERR_RANGE);
    CHECK_STATUS(mo_reduce_dim(&o2, &t, 0, (mo_reduce_op)9, NULL), MO_ERR_ARG);
    CHECK_STATUS(mo_argmax_dim(&o, &t, 0, NULL), MO_ERR_ARG);          /* out not empty */
    CHECK_STATUS(mo_argmax_dim(&o2, &o, 0, NULL), MO_ERR_RANGE);       /* 0-d source */
    CHECK_STATUS(mo_reduce_dim(&o2, NULL, 0, MO_RED_SUM, NULL), MO_ERR_ARG);
    CHECK_STATUS(mo_sum(&t, NULL), MO_ERR_ARG);
    CHECK(o2.storage == NULL);
    mo_tensor_release(&o);

    /* a zero-length reduced dim: sum is 0, the others are errors */
    mo_tensor e = make(2, (size_t[]){2, 0}, NULL);
    CHECK_OK(mo_reduce_dim(&o2, &e, 1, MO_RED_SUM, NULL));
    CHECK(o2.numel == 2 && at(&o2, 0) == 0.0f && at(&o2, 1) == 0.0f);
    mo_tensor_release(&o2);
    CHECK_STATUS(mo_reduce_dim(&o2, &e, 1, MO_RED_MEAN, NULL), MO_ERR_ARG);
    CHECK_STATUS(mo_argmax_dim(&o2, &e, 1, NULL), MO_ERR_ARG);
    mo_tensor_release(&e);

    mo_tensor_revoke(&t);
    CHECK_STATUS(mo_sum(&row, &d), MO_ERR_FREED);
    CHECK_STATUS(mo_reduce_dim(&o2, &row, 0, MO_RED_SUM, NULL), MO_ERR_FREED);
    mo_tensor_release(&row);
    mo_tensor_release(&t);
}

TEST(dot_and_norms_golden)
{
    mo_tensor u = make(1, (size_t[]){37}, dn_u), v = make(1, (size_t[]){37}, dn_v);
    mo_tensor w1 = make(2, (size_t[]){4, 6}, dn_w1), w2 = make(1, (size_t[]){11}, dn_w2);
    double d;
    CHECK_OK(mo_dot(&u, &v, &d));
    CHECK_NEAR(d, dn_expect[0], 1e-12);
    CHECK_OK(mo_norm2(&u, &d));
    CHECK_NEAR(d, dn_expect[1], 1e-12);
    const mo_tensor *list[3] = {&u, &w1, &w2};
    CHECK_OK(mo_norm2_many(list, 3, &d));
    CHECK_NEAR(d, dn_expect[2], 1e-12);
    CHECK_OK(mo_norm2_many(list, 0, &d));
    CHECK(d == 0.0);

    /* dot pairs elements in row-major order across different shapes and layouts */
    mo_tensor w1t, u24;
    mo_tensor_init(&w1t);
    mo_tensor_init(&u24);
    CHECK_OK(mo_tensor_transpose(&w1t, &w1, 0, 1));
    CHECK_OK(mo_tensor_narrow(&u24, &u, 0, 0, 24));
    CHECK_OK(mo_dot(&w1t, &u24, &d));
    CHECK_NEAR(d, dn_expect[3], 1e-12);
    CHECK_OK(mo_dot(&u24, &w1t, &d));
    CHECK_NEAR(d, dn_expect[3], 1e-12);
    /* norm of a transposed view equals the norm of the data */
    double n1, n2;
    CHECK_OK(mo_norm2(&w1, &n1));
    CHECK_OK(mo_norm2(&w1t, &n2));
    CHECK_NEAR(n1, n2, 1e-15);

    CHECK_STATUS(mo_dot(&u, &w1, &d), MO_ERR_SHAPE);
    CHECK_STATUS(mo_dot(&u, NULL, &d), MO_ERR_ARG);
    const mo_tensor *bad[2] = {&u, NULL};
    CHECK_STATUS(mo_norm2_many(bad, 2, &d), MO_ERR_ARG);
    CHECK_STATUS(mo_norm2_many(NULL, 2, &d), MO_ERR_ARG);
    mo_tensor dead;
    mo_tensor_init(&dead);
    const mo_tensor *bad2[2] = {&u, &dead};
    CHECK_STATUS(mo_norm2_many(bad2, 2, &d), MO_ERR_FREED);

    mo_tensor_release(&w1t);
    mo_tensor_release(&u24);
    mo_tensor_release(&u);
    mo_tensor_release(&v);
    mo_tensor_release(&w1);
    mo_tensor_release(&w2);
}

/* ------------------------------------------------------------------------ */
/* Matmul against NumPy, both back ends                                      */
/* ------------------------------------------------------------------------ */

typedef mo_status (*matmul_fn)(mo_tensor *, const mo_tensor *, int, const mo_tensor *, int,
                               double, double);

static void check_matmul_golden(matmul_fn mm)
{
    mo_tensor A = make(2, (size_t[]){7, 13}, mm_a), AT = make(2, (size_t[]){13, 7}, mm_at);
    mo_tensor B = make(2, (size_t[]){13, 5}, mm_b), BT = make(2, (size_t[]){5, 13}, mm_bt);
    mo_tensor C = make(2, (size_t[]){7, 5}, NULL);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            const mo_tensor *a = ta ? &AT : &A, *b = tb ? &BT : &B;
            CHECK_OK(mo_fill(&C, NAN)); /* beta == 0 must not read C */
            CHECK_OK(mm(&C, a, ta, b, tb, 1.0f, 0.0f));
            CHECK(mismatches(&C, mm_ab, 35, 1e-5) == 0);
            memcpy(mo_tensor_data(&C), mm_c0, sizeof mm_c0);
            CHECK_OK(mm(&C, a, ta, b, tb, 0.75f, -0.5f));
            CHECK(mismatches(&C, mm_ab_ab, 35, 1e-5) == 0);
        }

    /* transposed VIEWS (column-major operands) instead of flags, and both at once */
    mo_tensor Av, Bv, Avv;
    mo_tensor_init(&Av);
    mo_tensor_init(&Bv);
    mo_tensor_init(&Avv);
    CHECK_OK(mo_tensor_transpose(&Av, &AT, 0, 1)); /* 7x13, strides {1, 7} */
    CHECK_OK(mo_tensor_transpose(&Bv, &BT, 0, 1)); /* 13x5, strides {1, 13} */
    CHECK_OK(mo_tensor_transpose(&Avv, &A, 0, 1)); /* 13x7 view of A, used with trans_a */
    CHECK_OK(mm(&C, &Av, 0, &Bv, 0, 1.0f, 0.0f));
    CHECK(mismatches(&C, mm_ab, 35, 1e-5) == 0);
    CHECK_OK(mm(&C, &Avv, 1, &B, 0, 1.0f, 0.0f));
    CHECK(mismatches(&C, mm_ab, 35, 1e-5) == 0);
    CHECK_OK(mm(&C, &Av, 0, &BT, 1, 1.0f, 0.0f));
    CHECK(mismatches(&C, mm_ab, 35, 1e-5) == 0);

    /* C as a column-major view (transpose of a 5x7 tensor), with alpha/beta */
    mo_tensor Cs = make(2, (size_t[]){5, 7}, NULL), Cv;
    mo_tensor_init(&Cv);
    CHECK_OK(mo_tensor_transpose(&Cv, &Cs, 0, 1));
    CHECK_OK(mo_copy(&Cv, &C)); /* any values; overwritten next */
    for (size_t i = 0; i < 35; i++) mo_tensor_data(&Cs)[(i % 5) * 7 + i / 5] = mm_c0[i];
    CHECK_OK(mm(&Cv, &A, 0, &Bv, 0, 0.75f, -0.5f));
    CHECK(mismatches(&Cv, mm_ab_ab, 35, 1e-5) == 0);

    /* strided operands: a narrowed window of a 9x16 matrix, and a select with no unit stride */
    mo_tensor big = make(2, (size_t[]){9, 16}, mm_big), x3 = make(3, (size_t[]){13, 5, 2}, mm_x3);
    mo_tensor n1, n2, sel;
    mo_tensor_init(&n1);
    mo_tensor_init(&n2);
    mo_tensor_init(&sel);
    CHECK_OK(mo_tensor_narrow(&n1, &big, 0, 1, 7));
    CHECK_OK(mo_tensor_narrow(&n2, &n1, 1, 2, 13));
    CHECK_OK(mo_tensor_select(&sel, &x3, 2, 1));
    CHECK(sel.stride[0] == 10 && sel.stride[1] == 2);
    CHECK_OK(mm(&C, &n2, 0, &sel, 0, 1.0f, 0.0f));
    CHECK(mismatches(&C, mm_strided, 35, 1e-5) == 0);

    /* C overlapping an input: C = A @ I where C is A itself (square, beta on old C) */
    float sq[16], eye[16] = {0};
    fill_vals(sq, 16, 81);
    for (int i = 0; i < 4; i++) eye[i * 5] = 2.0f;
    mo_tensor S = make(2, (size_t[]){4, 4}, sq), I = make(2, (size_t[]){4, 4}, eye), St;
    mo_tensor_init(&St);
    CHECK_OK(mm(&S, &S, 0, &I, 0, 1.0f, 1.0f)); /* S = 2S + S */
    for (size_t i = 0; i < 16; i++) CHECK_NEAR(at(&S, i), 3.0f * sq[i], 1e-6);
    CHECK_OK(mo_tensor_transpose(&St, &S, 0, 1));
    CHECK_OK(mm(&St, &I, 0, &S, 0, 0.5f, 0.0f)); /* S^T = S (in S's own storage) */
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 4; j++) CHECK_NEAR(at(&S, j * 4 + i), 3.0f * sq[i * 4 + j], 1e-6);

    /* degenerate sizes: k == 0 gives C = beta * C, alpha == 0 never reads A or B */
    mo_tensor K0a = make(2, (size_t[]){7, 0}, NULL), K0b = make(2, (size_t[]){0, 5}, NULL);
    memcpy(mo_tensor_data(&C), mm_c0, sizeof mm_c0);
    CHECK_OK(mm(&C, &K0a, 0, &K0b, 0, 1.0f, 2.0f));
    for (size_t i = 0; i < 35; i++) CHECK(at(&C, i) == 2.0f * mm_c0[i]);
    CHECK_OK(mm(&C, &K0a, 0, &K0b, 0, 1.0f, 0.0f));
    for (size_t i = 0; i < 35; i++) CHECK(at(&C, i) == 0.0f);
    mo_tensor An = make(2, (size_t[]){7, 13}, NULL);
    CHECK_OK(mo_fill(&An, NAN));
    memcpy(mo_tensor_data(&C), mm_c0, sizeof mm_c0);
    CHECK_OK(mm(&C, &An, 0, &B, 0, 0.0f, 1.0f));
    CHECK(same_bits(&C, mm_c0, 35));
    mo_tensor M0 = make(2, (size_t[]){0, 5}, NULL), A0 = make(2, (size_t[]){0, 13}, NULL);
    CHECK_OK(mm(&M0, &A0, 0, &B, 0, 1.0f, 0.0f));

    /* shape errors leave C alone */
    CHECK_STATUS(mm(&C, &A, 1, &B, 0, 1.0f, 0.0f), MO_ERR_SHAPE);
    CHECK_STATUS(mm(&C, &A, 0, &B, 1, 1.0f, 0.0f), MO_ERR_SHAPE);
    CHECK_STATUS(mm(&C, &A, 0, &A, 0, 1.0f, 0.0f), MO_ERR_SHAPE);
    CHECK_STATUS(mm(&Cs, &A, 0, &B, 0, 1.0f, 0.0f), MO_ERR_SHAPE);
    CHECK_STATUS(mm(&C, &x3, 0, &B, 0, 1.0f, 0.0f), MO_ERR_SHAPE);
    CHECK_STATUS(mm(&C, NULL, 0, &B, 0, 1.0f, 0.0f), MO_ERR_ARG);
    CHECK(same_bits(&C, mm_c0, 35));
    mo_tensor dead;
    mo_tensor_init(&dead);
    CHECK_STATUS(mm(&C, &A, 0, &dead, 0, 1.0f, 0.0f), MO_ERR_FREED);

    mo_tensor *all[] = {&A, &AT, &B, &BT, &C, &Av, &Bv, &Avv, &Cs, &Cv, &big, &x3, &n1, &n2,
                        &sel, &S, &I, &St, &K0a, &K0b, &An, &M0, &A0};
    for (size_t i = 0; i < NELEM(all); i++) mo_tensor_release(all[i]);
}

TEST(matmul_golden_blas)
{
    check_matmul_golden(mo_matmul);
}

TEST(matmul_golden_portable)
{
    check_matmul_golden(mo_matmul_portable);
}

TEST(matmul_multi_tile)
{
    /* 67x130 @ 130x71: several 64-wide tiles with ragged edges, all four flag
     * combinations, both back ends, against a double-precision loop */
    enum { M = 67, K = 130, N = 71 };
    static float a[M * K], b[K * N], at_[K * M], bt[N * K], want[M * N];
    fill_vals(a, M * K, 91);
    fill_vals(b, K * N, 92);
    for (size_t i = 0; i < M; i++)
        for (size_t p = 0; p < K; p++) at_[p * M + i] = a[i * K + p];
    for (size_t p = 0; p < K; p++)
        for (size_t j = 0; j < N; j++) bt[j * K + p] = b[p * N + j];
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double s = 0;
            for (size_t p = 0; p < K; p++) s += (double)a[i * K + p] * (double)b[p * N + j];
            want[i * N + j] = (float)s;
        }
    mo_tensor A = make(2, (size_t[]){M, K}, a), AT = make(2, (size_t[]){K, M}, at_);
    mo_tensor B = make(2, (size_t[]){K, N}, b), BT = make(2, (size_t[]){N, K}, bt);
    mo_tensor C = make(2, (size_t[]){M, N}, NULL);
    const matmul_fn fns[2] = {mo_matmul, mo_matmul_portable};
    for (int f = 0; f < 2; f++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                CHECK_OK(fns[f](&C, ta ? &AT : &A, ta, tb ? &BT : &B, tb, 1.0f, 0.0f));
                CHECK(mismatches(&C, want, M * N, 1e-4) == 0);
            }
    mo_tensor_release(&A);
    mo_tensor_release(&AT);
    mo_tensor_release(&B);
    mo_tensor_release(&BT);
    mo_tensor_release(&C);
}

TEST(blas_backend_name)
{
#ifdef MO_HAVE_CBLAS
    CHECK(strcmp(mo_blas_backend(), "cblas") == 0);
#else
    CHECK(strcmp(mo_blas_backend(), "portable") == 0);
#endif
}

/* ------------------------------------------------------------------------ */
/* RNG                                                                       */
/* ------------------------------------------------------------------------ */

TEST(rng_first_outputs_seed42)
{
    mo_rng r;
    mo_rng_seed(&r, 42);
    for (size_t i = 0; i < NELEM(rng_next42); i++) CHECK(mo_rng_next(&r) == rng_next42[i]);
    mo_rng_seed(&r, 42);
    for (size_t i = 0; i < NELEM(rng_uniform42); i++) CHECK(mo_rng_uniform(&r) == rng_uniform42[i]);
    mo_rng_seed(&r, 42);
    for (size_t i = 0; i < NELEM(rng_normal42); i++) CHECK_NEAR(mo_rng_normal(&r), rng_normal42[i], 1e-14);
    mo_rng_seed(&r, 42);
    for (size_t i = 0; i < NELEM(rng_below42); i++) CHECK(mo_rng_below(&r, 10) == rng_below42[i]);

    mo_rng_seed(&r, 42);
    mo_tensor t = make(1, (size_t[]){6}, NULL);
    CHECK_OK(mo_rand_uniform(&t, &r, -2.0f, 3.0f));
    CHECK(same_bits(&t, rng_rand_uniform42, 6));
    mo_tensor_release(&t);

    mo_rng_seed(&r, 42);
    t = make(1, (size_t[]){5}, NULL);
    CHECK_OK(mo_rand_normal(&t, &r, 1.5f, 0.5f));
    CHECK(mismatches(&t, rng_rand_normal42, 5, 1e-6) == 0);
    mo_tensor_release(&t);

    size_t perm[10];
    mo_rng_seed(&r, 42);
    CHECK_OK(mo_randperm(perm, 10, &r));
    CHECK(memcmp(perm, rng_perm42, sizeof perm) == 0);
}

TEST(rng_properties)
{
    /* two generators with one seed are independent objects giving one stream */
    mo_rng r1, r2;
    mo_rng_seed(&r1, 7);
    mo_rng_seed(&r2, 7);
    uint64_t x1 = mo_rng_next(&r1);
    mo_rng_seed(&r1, 8);
    CHECK(mo_rng_next(&r2) == x1);
    CHECK(mo_rng_next(&r1) != x1);

    /* a strided view is filled in row-major order: same values as a contiguous fill */
    mo_tensor c = make(2, (size_t[]){3, 4}, NULL), s = make(2, (size_t[]){4, 3}, NULL), st;
    mo_tensor_init(&st);
    CHECK_OK(mo_tensor_transpose(&st, &s, 0, 1));
    mo_rng_seed(&r1, 5);
    CHECK_OK(mo_rand_normal(&c, &r1, 0.0f, 1.0f));
    mo_rng_seed(&r1, 5);
    CHECK_OK(mo_rand_normal(&st, &r1, 0.0f, 1.0f));
    for (size_t i = 0; i < 12; i++) CHECK(at(&c, i) == at(&st, i));

    /* uniform stays in [lo, hi), even for a one-ulp interval; lo == hi gives lo */
    mo_tensor u = make(1, (size_t[]){4000}, NULL);
    CHECK_OK(mo_rand_uniform(&u, &r1, -1.0f, 2.0f));
    double sum = 0;
    int inrange = 1;
    for (size_t i = 0; i < 4000; i++) {
        inrange &= at(&u, i) >= -1.0f && at(&u, i) < 2.0f;
        sum += at(&u, i);
    }
    CHECK(inrange);
    CHECK(fabs(sum / 4000 - 0.5) < 0.05);
    const float one_up = nextafterf(1.0f, 2.0f);
    CHECK_OK(mo_rand_uniform(&u, &r1, 1.0f, one_up));
    inrange = 1;
    for (size_t i = 0; i < 4000; i++) inrange &= at(&u, i) == 1.0f;
    CHECK(inrange);
    CHECK_OK(mo_rand_uniform(&u, &r1, 0.5f, 0.5f));
    CHECK(at(&u, 17) == 0.5f);

    /* normal: mean and sd roughly right */
    CHECK_OK(mo_rand_normal(&u, &r1, 3.0f, 2.0f));
    double m, nrm;
    CHECK_OK(mo_mean(&u, &m));
    CHECK(fabs(m - 3.0) < 0.15);
    CHECK_OK(mo_binary_scalar(&u, &u, 3.0f, MO_SUB));
    CHECK_OK(mo_norm2(&u, &nrm));
    CHECK(fabs(nrm / sqrt(4000.0) - 2.0) < 0.15);

    /* below: unbiased enough, and in range; randperm is a permutation */
    size_t counts[3] = {0, 0, 0};
    for (int i = 0; i < 30000; i++) counts[mo_rng_below(&r1, 3)]++;
    for (int i = 0; i < 3; i++) CHECK(counts[i] > 9500 && counts[i] < 10500);
    CHECK(mo_rng_below(&r1, 1) == 0);
    CHECK(mo_rng_below(&r1, UINT64_MAX) < UINT64_MAX);
    static size_t perm[1000];
    static unsigned char seen[1000];
    CHECK_OK(mo_randperm(perm, 1000, &r1));
    int isperm = 1;
    for (size_t i = 0; i < 1000; i++) {
        if (perm[i] >= 1000 || seen[perm[i]]) isperm = 0;
        else seen[perm[i]] = 1;
    }
    CHECK(isperm);
    CHECK_OK(mo_randperm(NULL, 0, &r1));

    /* errors, with nothing written */
    CHECK_OK(mo_fill(&c, 9.0f));
    CHECK_STATUS(mo_rand_uniform(&c, &r1, 1.0f, 0.0f), MO_ERR_ARG);
    CHECK_STATUS(mo_rand_uniform(&c, &r1, NAN, 1.0f), MO_ERR_ARG);
    CHECK_STATUS(mo_rand_uniform(&c, &r1, 0.0f, INFINITY), MO_ERR_ARG);
    CHECK_STATUS(mo_rand_uniform(&c, NULL, 0.0f, 1.0f), MO_ERR_ARG);
    CHECK_STATUS(mo_rand_normal(&c, &r1, 0.0f, -1.0f), MO_ERR_ARG);
    CHECK_STATUS(mo_rand_normal(&c, &r1, NAN, 1.0f), MO_ERR_ARG);
    CHECK_STATUS(mo_rand_normal(NULL, &r1, 0.0f, 1.0f), MO_ERR_ARG);
    CHECK_STATUS(mo_randperm(NULL, 3, &r1), MO_ERR_ARG);
    CHECK_STATUS(mo_randperm(perm, 3, NULL), MO_ERR_ARG);
    for (size_t i = 0; i < 12; i++) CHECK(at(&c, i) == 9.0f);
    mo_tensor_revoke(&s);
    CHECK_STATUS(mo_rand_normal(&st, &r1, 0.0f, 1.0f), MO_ERR_FREED);

    mo_tensor_release(&c);
    mo_tensor_release(&s);
    mo_tensor_release(&st);
    mo_tensor_release(&u);
}

/* float64: blas and portable matmul agree to double rounding on a 70x70 product whose
 * entries need more than float's 24 bits; mixed dtypes, and nn on float64, are refused. */
TEST(float64_matmul_and_dtypes)
{
    const size_t n = 70, sh[2] = {70, 70};
    mo_tensor a, b, c1, c2, f;
    mo_tensor_init(&a); mo_tensor_init(&b); mo_tensor_init(&c1); mo_tensor_init(&c2);
    mo_tensor_init(&f);
    CHECK_OK(mo_tensor_empty_dtype(&a, 2, sh, MO_FLOAT64, NULL));
    CHECK_OK(mo_tensor_empty_dtype(&b, 2, sh, MO_FLOAT64, NULL));
    CHECK_OK(mo_tensor_zeros_dtype(&c1, 2, sh, MO_FLOAT64, NULL));
    CHECK_OK(mo_tensor_zeros_dtype(&c2, 2, sh, MO_FLOAT64, NULL));
    CHECK_OK(mo_tensor_zeros(&f, 2, sh, NULL));
    CHECK(mo_tensor_data(&a) == NULL && mo_tensor_data_f64(&a) != NULL);
    double *pa = mo_tensor_data_f64(&a), *pb = mo_tensor_data_f64(&b);
    for (size_t i = 0; i < n * n; i++) {
        pa[i] = 1.0 + (double)i * 1e-9;
        pb[i] = 1.0 - (double)(i % 7) * 1e-10;
    }
    CHECK_OK(mo_matmul(&c1, &a, 0, &b, 1, 1.0, 0.0));
    CHECK_OK(mo_matmul_portable(&c2, &a, 0, &b, 1, 1.0, 0.0));
    const double *r1 = mo_tensor_data_f64(&c1), *r2 = mo_tensor_data_f64(&c2);
    double want = 0.0; /* C[0][1] = sum_k a[0][k] * b[1][k] */
    for (size_t k = 0; k < n; k++) want += pa[k] * pb[n + k];
    CHECK(fabs(r1[1] - want) < 1e-12 && fabs(r2[1] - want) < 1e-12);
    CHECK(fabs((double)(float)want - want) > 1e-9); /* float32 could not have produced it */
    CHECK(mo_matmul(&f, &a, 0, &b, 0, 1.0, 0.0) == MO_ERR_DTYPE);
    CHECK(mo_binary(&c1, &a, &f, MO_ADD) == MO_ERR_DTYPE);
    CHECK(mo_nn_act_forward(&f, &a, MO_ACT_RELU, 0.0f) == MO_ERR_DTYPE); /* mixed dtypes */
    CHECK(strcmp(mo_dtype_name(MO_FLOAT64), "float64") == 0 && mo_dtype_size(MO_FLOAT64) == 8);
    mo_tensor_release(&a); mo_tensor_release(&b); mo_tensor_release(&c1);
    mo_tensor_release(&c2); mo_tensor_release(&f);
}

int main(void)
{
    RUN(fill_and_copy);
    RUN(copy_transpose_in_place);
    RUN(unary_all_paths);
    RUN(unary_special_values);
    RUN(binary_all_aliasing_cases);
    RUN(binary_strided_and_errors);
    RUN(vector_loop_tails);
    RUN(scalar_ops_pow_clamp);
    RUN(addcmul_addcdiv);
    RUN(add_row_bias);
    RUN(broadcasting);
    RUN(zero_size_and_zero_dim);
    RUN(reductions_golden);
    RUN(reductions_wide_and_nan);
    RUN(dot_and_norms_golden);
    RUN(matmul_golden_blas);
    RUN(matmul_golden_portable);
    RUN(matmul_multi_tile);
    RUN(float64_matmul_and_dtypes);
    RUN(blas_backend_name);
    RUN(rng_first_outputs_seed42);
    RUN(rng_properties);
    return ctest_summary();
}
