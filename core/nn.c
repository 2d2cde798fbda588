/*
 * nn.c - the neural-network kernels: activations, Linear, softmax, layer norm,
 * dropout and the losses (declared in moonopt_nn.h).
 *
 * Every function validates all of its operands (alive, shapes, layout, aliasing,
 * scalar arguments) before it writes anything, then runs plain loops over
 * contiguous float arrays. Where an activation or loss has several variants,
 * the switch sits outside the loops: one simple loop per variant, so the
 * compiler can vectorize each.
 */
#include "moonopt_internal.h"

#include <math.h>
#include <string.h>

/* M_SQRT1_2 and friends are POSIX, not C11: spell the constants out. */
#define NN_SQRT1_2 0.70710678118654752440f      /* 1 / sqrt(2) */
#define NN_INV_SQRT_2PI 0.39894228040143267794f /* 1 / sqrt(2 pi) */
#define NN_SQRT_2_PI 0.79788456080286535588f    /* sqrt(2 / pi) */
#define NN_GELU_KAPPA 0.044715f

/*
 * OUT[i] = EXPR for i < n, in blocks of NN_BLOCK elements with a fixed-size
 * inner loop. Why: GCC's -O2 cost model vectorizes a loop only when its trip
 * count is known, and a branchy scalar ReLU mispredicts on mixed signs; the
 * fixed-size block becomes compare-and-mask vector code. Each block reads all
 * of its inputs into t_ before writing, so OUT may be one of the inputs (in
 * place). EXPR may use `i`, the element's index.
 */
#define NN_BLOCK 8
#define NN_EACH(n, OUT, EXPR)                                                    \
    do {                                                                         \
        size_t i_ = 0;                                                           \
        for (; i_ + NN_BLOCK <= (n); i_ += NN_BLOCK) {                           \
            float t_[NN_BLOCK];                                                  \
            for (size_t k_ = 0; k_ < NN_BLOCK; k_++) {                           \
                size_t i = i_ + k_;                                              \
                t_[k_] = (EXPR);                                                 \
            }                                                                    \
            for (size_t k_ = 0; k_ < NN_BLOCK; k_++) (OUT)[i_ + k_] = t_[k_];    \
        }                                                                        \
        for (size_t i = i_; i < (n); i++) (OUT)[i] = (EXPR);                     \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Checks                                                                   */
/* ------------------------------------------------------------------------ */

/* NULL -> ARG, dead -> FREED, not float32 -> DTYPE (the nn kernels are float32
 * only in this stage; every entry checks each tensor operand through here). */
static mo_status live(const mo_tensor *t)
{
    if (!t) return MO_ERR_ARG;
    if (!mo_tensor_alive(t)) return MO_ERR_FREED;
    if (t->dtype != MO_FLOAT32) return MO_ERR_DTYPE;
    return MO_OK;
}

/* live() for an optional operand: NULL is fine. */
static mo_status live_opt(const mo_tensor *t)
{
    return t ? live(t) : MO_OK;
}

static int is_2d(const mo_tensor *t, size_t rows, size_t cols)
{
    return t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols;
}

static int is_1d(const mo_tensor *t, size_t n)
{
    return t->ndim == 1 && t->shape[0] == n;
}

/* The half-open range of element offsets (within the storage) that t can touch. */
static void span(const mo_tensor *t, size_t *lo, size_t *hi)
{
    ptrdiff_t a = 0, b = 0;
    for (int d = 0; d < t->ndim; d++) {
        ptrdiff_t reach = (ptrdiff_t)(t->shape[d] - 1) * t->stride[d];
        if (reach < 0) a += reach; else b += reach;
    }
    *lo = (size_t)((ptrdiff_t)t->offset + a);
    *hi = (size_t)((ptrdiff_t)t->offset + b) + 1;
}

/* Whether two live tensors may touch a common element (by span, conservatively). */
static int overlap(const mo_tensor *a, const mo_tensor *b)
{
    if (!a || !b || a->numel == 0 || b->numel == 0 || !mo_tensor_same_storage(a, b)) return 0;
    size_t alo, ahi, blo, bhi;
    span(a, &alo, &ahi);
    span(b, &blo, &bhi);
    return alo < bhi && blo < ahi;
}

/*
 * An elementwise output may be the very same contiguous block as an input
 * (element i is read before element i is written), but must not overlap it
 * any other way. Both are contiguous and of equal numel when this is called.
 */
static int alias_ok(const mo_tensor *out, const mo_tensor *in)
{
    return !overlap(out, in) || out->offset == in->offset;
}

static int act_valid(mo_nn_act act, float slope)
{
    if ((unsigned)act >= (unsigned)MO_ACT_COUNT_) return 0;
    return act != MO_ACT_LEAKY_RELU || isfinite(slope);
}

/* ------------------------------------------------------------------------ */
/* Activations                                                              */
/* ------------------------------------------------------------------------ */

static const char *const act_names[MO_ACT_COUNT_] = {
    [MO_ACT_NONE] = "none",       [MO_ACT_RELU] = "relu",       [MO_ACT_LEAKY_RELU] = "leaky_relu",
    [MO_ACT_TANH] = "tanh",       [MO_ACT_SIGMOID] = "sigmoid", [MO_ACT_GELU] = "gelu",
    [MO_ACT_GELU_TANH] = "gelu_tanh",
};

const char *mo_nn_act_name(mo_nn_act act)
{
    if ((unsigned)act >= (unsigned)MO_ACT_COUNT_) return "unknown";
    return act_names[act];
}

int mo_nn_act_uses_output(mo_nn_act act)
{
    return act == MO_ACT_NONE || act == MO_ACT_RELU || act == MO_ACT_TANH ||
           act == MO_ACT_SIGMOID;
}

static float sigmoidf(float v)
{
    /* exp of a non-positive number only, so neither branch overflows */
    if (v >= 0.0f) return 1.0f / (1.0f + expf(-v));
    float e = expf(v);
    return e / (1.0f + e);
}

/* y[i] = act(x[i]) for i < n; y may equal x. */
static void act_forward_run(float *y, const float *x, size_t n, mo_nn_act act, float slope)
{
    switch (act) {
    case MO_ACT_NONE:
        if (y != x) memcpy(y, x, n * sizeof *y);
        break;
    case MO_ACT_RELU:
        /* v < 0 rather than max(v, 0): NaN passes through, as in PyTorch */
        NN_EACH(n, y, x[i] < 0.0f ? 0.0f : x[i]);
        break;
    case MO_ACT_LEAKY_RELU:
        NN_EACH(n, y, x[i] < 0.0f ? slope * x[i] : x[i]);
        break;
    case MO_ACT_TANH:
        for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
        break;
    case MO_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++) y[i] = sigmoidf(x[i]);
        break;
    case MO_ACT_GELU:
        for (size_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * NN_SQRT1_2));
        break;
    case MO_ACT_GELU_TANH:
        for (size_t i = 0; i < n; i++) {
            float v = x[i];
            float inner = NN_SQRT_2_PI * (v + NN_GELU_KAPPA * v * v * v);
            y[i] = 0.5f * v * (1.0f + tanhf(inner));
        }
        break;
    case MO_ACT_COUNT_:
        break;
    }
}

/* c ? a : b with both operands loaded first, so the compiler may use a
 * vector blend (it does not if-convert a load that only one branch makes). */
static inline float pick(int c, float a, float b)
{
    return c ? a : b;
}

/* dx[i] = g[i] * act'(s[i]) for i < n, s the output or the input (see the header). */
static void act_backward_run(float *dx, const float *g, const float *s, size_t n, mo_nn_act act,
                             float slope)
{
    switch (act) {
    case MO_ACT_NONE:
        if (dx != g) memcpy(dx, g, n * sizeof *dx);
        break;
    case MO_ACT_RELU:
        /* the derivative at 0 is taken as 0, as PyTorch does */
        NN_EACH(n, dx, pick(s[i] > 0.0f, g[i], 0.0f));
        break;
    case MO_ACT_LEAKY_RELU:
        NN_EACH(n, dx, pick(s[i] > 0.0f, g[i], g[i] * slope));
        break;
    case MO_ACT_TANH:
        NN_EACH(n, dx, g[i] * (1.0f - s[i] * s[i]));
        break;
    case MO_ACT_SIGMOID:
        NN_EACH(n, dx, g[i] * s[i] * (1.0f - s[i]));
        break;
    case MO_ACT_GELU:
        for (size_t i = 0; i < n; i++) {
            float v = s[i];
            float cdf = 0.5f * (1.0f + erff(v * NN_SQRT1_2));
            float pdf = expf(-0.5f * v * v) * NN_INV_SQRT_2PI;
            dx[i] = g[i] * (cdf + v * pdf);
        }
        break;
    case MO_ACT_GELU_TANH:
        for (size_t i = 0; i < n; i++) {
            float v = s[i];
            float t = tanhf(NN_SQRT_2_PI * (v + NN_GELU_KAPPA * v * v * v));
            float left = 0.5f * (1.0f + t);
            float right = 0.5f * v * (1.0f - t * t) * NN_SQRT_2_PI *
                          (1.0f + 3.0f * NN_GELU_KAPPA * v * v);
            dx[i] = g[i] * (left + right);
        }
        break;
    case MO_ACT_COUNT_:
        break;
    }
}

mo_status mo_nn_act_forward(mo_tensor *y, const mo_tensor *x, mo_nn_act act, float slope)
{
    MO_TRY(live(y));
    MO_TRY(live(x));
    if (!act_valid(act, slope)) return MO_ERR_ARG;
    if (!mo_tensor_same_shape(y, x)) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(y) || !mo_tensor_is_contiguous(x)) return MO_ERR_LAYOUT;
    if (!alias_ok(y, x)) return MO_ERR_ARG;
    act_forward_run(mo_tensor_data(y), mo_tensor_data(x), x->numel, act, slope);
    return MO_OK;
}

mo_status mo_nn_act_backward(mo_tensor *dx, const mo_tensor *g, const mo_tensor *saved,
                             mo_nn_act act, float slope)
{
    MO_TRY(live(dx));
    MO_TRY(live(g));
    MO_TRY(live(saved));
    if (!act_valid(act, slope)) return MO_ERR_ARG;
    if (!mo_tensor_same_shape(dx, g) || !mo_tensor_same_shape(dx, saved)) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(dx) || !mo_tensor_is_contiguous(g) ||
        !mo_tensor_is_contiguous(saved))
        return MO_ERR_LAYOUT;
    if (!alias_ok(dx, g) || !alias_ok(dx, saved)) return MO_ERR_ARG;
    act_backward_run(mo_tensor_data(dx), mo_tensor_data(g), mo_tensor_data(saved), dx->numel,
                     act, slope);
    return MO_OK;
}

/* The pass after the matrix product: rows {rows, cols} in place. */
static void bias_act_run(float *y, const float *b, size_t rows, size_t cols, mo_nn_act act,
                         float slope)
{
    /* Row by row, so the activation reads a row the bias loop has just left in L1. */
    for (size_t r = 0; r < rows; r++) {
        float *row = y + r * cols;
        if (b)
            NN_EACH(cols, row, row[i] + b[i]);
        if (act != MO_ACT_NONE) act_forward_run(row, row, cols, act, slope);
    }
}

mo_status mo_nn_bias_act(mo_tensor *y, const mo_tensor *b, mo_nn_act act, float slope)
{
    MO_TRY(live(y));
    MO_TRY(live_opt(b));
    if (!act_valid(act, slope)) return MO_ERR_ARG;
    if (y->ndim != 2 || (b && !is_1d(b, y->shape[1]))) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(y) || (b && !mo_tensor_is_contiguous(b))) return MO_ERR_LAYOUT;
    if (b && overlap(y, b)) return MO_ERR_ARG;
    bias_act_run(mo_tensor_data(y), b ? mo_tensor_data(b) : NULL, y->shape[0], y->shape[1], act,
                 slope);
    return MO_OK;
}

/* acc[j] += sum_i g[i][j] with g's strides; the caller has checked everything. */
static void colsum_run(float *acc, const mo_tensor *g)
{
    const float *p = mo_tensor_data(g);
    size_t rows = g->shape[0], cols = g->shape[1];
    ptrdiff_t s0 = g->stride[0], s1 = g->stride[1];
    if (s1 == 1) {
        /* row-major: a vectorizable inner loop over the columns */
        for (size_t r = 0; r < rows; r++) {
            const float *row = p + (ptrdiff_t)r * s0;
            NN_EACH(cols, acc, acc[i] + row[i]);
        }
    } else {
        for (size_t j = 0; j < cols; j++) {
            float s = 0.0f;
            for (size_t i = 0; i < rows; i++) s += p[(ptrdiff_t)i * s0 + (ptrdiff_t)j * s1];
            acc[j] += s;
        }
    }
}

mo_status mo_nn_colsum_acc(mo_tensor *acc, const mo_tensor *g)
{
    MO_TRY(live(acc));
    MO_TRY(live(g));
    if (g->ndim != 2 || !is_1d(acc, g->shape[1])) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(acc)) return MO_ERR_LAYOUT;
    if (overlap(acc, g)) return MO_ERR_ARG;
    colsum_run(mo_tensor_data(acc), g);
    return MO_OK;
}

/* ------------------------------------------------------------------------ */
/* Linear                                                                   */
/* ------------------------------------------------------------------------ */

mo_status mo_nn_linear_forward(mo_tensor *y, const mo_tensor *x, const mo_tensor *w,
                               const mo_tensor *b, mo_nn_act act, float slope)
{
    MO_TRY(live(y));
    MO_TRY(live(x));
    MO_TRY(live(w));
    MO_TRY(live_opt(b));
    if (!act_valid(act, slope)) return MO_ERR_ARG;
    if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1]) return MO_ERR_SHAPE;
    size_t batch = x->shape[0], nout = w->shape[0];
    if (!is_2d(y, batch, nout) || (b && !is_1d(b, nout))) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(y) || (b && !mo_tensor_is_contiguous(b))) return MO_ERR_LAYOUT;
    if (overlap(y, x) || overlap(y, w) || (b && overlap(y, b))) return MO_ERR_ARG;

    /* y {B, out} = x {B, in} @ w^T {in, out}; beta 0 ignores y's old contents */
    MO_TRY(mo_matmul(y, x, 0, w, 1, 1.0f, 0.0f));
    if (b || act != MO_ACT_NONE)
        bias_act_run(mo_tensor_data(y), b ? mo_tensor_data(b) : NULL, batch, nout, act, slope);
    return MO_OK;
}

mo_status mo_nn_linear_backward(mo_tensor *dx, mo_tensor *dw, mo_tensor *db, const mo_tensor *g,
                                const mo_tensor *x, const mo_tensor *w)
{
    MO_TRY(live_opt(dx));
    MO_TRY(live_opt(dw));
    MO_TRY(live_opt(db));
    MO_TRY(live(g));
    MO_TRY(live(x));
    MO_TRY(live(w));
    if (g->ndim != 2 || x->ndim != 2 || w->ndim != 2) return MO_ERR_SHAPE;
    size_t batch = g->shape[0], nout = g->shape[1], nin = w->shape[1];
    if (!is_2d(x, batch, nin) || w->shape[0] != nout) return MO_ERR_SHAPE;
    if ((dx && !is_2d(dx, batch, nin)) || (dw && !is_2d(dw, nout, nin)) ||
        (db && !is_1d(db, nout)))
        return MO_ERR_SHAPE;
    if (db && !mo_tensor_is_contiguous(db)) return MO_ERR_LAYOUT;
    /* every output is written while the inputs are read: no overlaps at all */
    const mo_tensor *ins[3] = {g, x, w};
    mo_tensor *outs[3] = {dx, dw, db};
    for (int o = 0; o < 3; o++) {
        if (!outs[o]) continue;
        for (int i = 0; i < 3; i++)
            if (overlap(outs[o], ins[i])) return MO_ERR_ARG;
        for (int p = o + 1; p < 3; p++)
            if (outs[p] && overlap(outs[o], outs[p])) return MO_ERR_ARG;
    }

    /* dx {B, in} = g {B, out} @ w {out, in}, first (see the header) */
    if (dx) MO_TRY(mo_matmul(dx, g, 0, w, 0, 1.0f, 0.0f));
    /* dw {out, in} += g^T {out, B} @ x {B, in} */
    if (dw) MO_TRY(mo_matmul(dw, g, 1, x, 0, 1.0f, 1.0f));
    if (db) colsum_run(mo_tensor_data(db), g);
    return MO_OK;
}

/* ------------------------------------------------------------------------ */
/* Softmax                                                                  */
/* ------------------------------------------------------------------------ */

/* x viewed as {outer, n, inner} around dimension dim (x contiguous). */
static void split_dim(const mo_tensor *x, int dim, size_t *outer, size_t *n, size_t *inner)
{
    size_t o = 1, in = 1;
    for (int d = 0; d < dim; d++) o *= x->shape[d];
    for (int d = dim + 1; d < x->ndim; d++) in *= x->shape[d];
    *outer = o;
    *n = x->shape[dim];
    *inner = in;
}

static mo_status softmax_check(const mo_tensor *out, const mo_tensor *a, const mo_tensor *b,
                               int dim)
{
    MO_TRY(live(out));
    MO_TRY(live(a));
    MO_TRY(live(b));
    if (!mo_tensor_same_shape(out, a) || !mo_tensor_same_shape(out, b)) return MO_ERR_SHAPE;
    if (out->ndim < 1) return MO_ERR_SHAPE;
    if (dim < 0 || dim >= out->ndim) return MO_ERR_RANGE;
    if (!mo_tensor_is_contiguous(out) || !mo_tensor_is_contiguous(a) ||
        !mo_tensor_is_contiguous(b))
        return MO_ERR_LAYOUT;
    if (!alias_ok(out, a) || !alias_ok(out, b)) return MO_ERR_ARG;
    return MO_OK;
}

mo_status mo_nn_softmax_forward(mo_tensor *y, const mo_tensor *x, int dim)
{
    MO_TRY(softmax_check(y, x, x, dim));
    size_t outer, n, inner;
    split_dim(x, dim, &outer, &n, &inner);
    if (n == 0) return MO_OK;
    float *yp = mo_tensor_data(y);
    const float *xp = mo_tensor_data(x);
    for (size_t o = 0; o < outer; o++) {
        for (size_t k = 0; k < inner; k++) {
            /* one line of n elements, `inner` apart */
            const float *xl = xp + o * n * inner + k;
            float *yl = yp + o * n * inner + k;
            float m = xl[0];
            for (size_t i = 1; i < n; i++)
                if (xl[i * inner] > m) m = xl[i * inner];
            double s = 0.0;
            for (size_t i = 0; i < n; i++) {
                float e = expf(xl[i * inner] - m);
                yl[i * inner] = e;
                s += e;
            }
            float r = (float)(1.0 / s);
            for (size_t i = 0; i < n; i++) yl[i * inner] *= r;
        }
    }
    return MO_OK;
}

mo_status mo_nn_softmax_backward(mo_tensor *dx, const mo_tensor *g, const mo_tensor *y, int dim)
{
    MO_TRY(softmax_check(dx, g, y, dim));
    size_t outer, n, inner;
    split_dim(y, dim, &outer, &n, &inner);
    float *dp = mo_tensor_data(dx);
    const float *gp = mo_tensor_data(g), *yp = mo_tensor_data(y);
    for (size_t o = 0; o < outer; o++) {
        for (size_t k = 0; k < inner; k++) {
            size_t base = o * n * inner + k;
            double dot = 0.0;
            for (size_t i = 0; i < n; i++) dot += (double)gp[base + i * inner] * yp[base + i * inner];
            float fd = (float)dot;
            for (size_t i = 0; i < n; i++) {
                size_t j = base + i * inner;
                dp[j] = yp[j] * (gp[j] - fd);
            }
        }
    }
    return MO_OK;
}

/* ------------------------------------------------------------------------ */
/* Layer normalization                                                      */
/* ------------------------------------------------------------------------ */

/* Shared checks; *rows and *d receive R and D. */
static mo_status ln_check_x(const mo_tensor *x, const mo_tensor *mean, const mo_tensor *rstd,
                            const mo_tensor *gamma, size_t *rows, size_t *d)
{
    if (x->ndim < 1) return MO_ERR_SHAPE;
    size_t dd = x->shape[x->ndim - 1];
    if (dd == 0) return MO_ERR_SHAPE;
    size_t r = x->numel / dd;
    if (mean->numel != r || rstd->numel != r) return MO_ERR_SHAPE;
    if (gamma && !is_1d(gamma, dd)) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(x) || !mo_tensor_is_contiguous(mean) ||
        !mo_tensor_is_contiguous(rstd) || (gamma && !mo_tensor_is_contiguous(gamma)))
        return MO_ERR_LAYOUT;
    *rows = r;
    *d = dd;
    return MO_OK;
}

mo_status mo_nn_layernorm_forward(mo_tensor *y, mo_tensor *mean, mo_tensor *rstd,
                                  const mo_tensor *x, const mo_tensor *gamma,
                                  const mo_tensor *beta, float eps)
{
    MO_TRY(live(y));
    MO_TRY(live(mean));
    MO_TRY(live(rstd));
    MO_TRY(live(x));
    MO_TRY(live_opt(gamma));
    MO_TRY(live_opt(beta));
    if (!(eps > 0.0f) || !isfinite(eps)) return MO_ERR_ARG;
    size_t rows, d;
    MO_TRY(ln_check_x(x, mean, rstd, gamma, &rows, &d));
    if (!mo_tensor_same_shape(y, x)) return MO_ERR_SHAPE;
    if (beta && !is_1d(beta, d)) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(y) || (beta && !mo_tensor_is_contiguous(beta)))
        return MO_ERR_LAYOUT;
    if (!alias_ok(y, x) || overlap(mean, rstd)) return MO_ERR_ARG;
    const mo_tensor *ro[4] = {x, y, gamma, beta};
    for (int i = 0; i < 4; i++)
        if (ro[i] && (overlap(mean, ro[i]) || overlap(rstd, ro[i]))) return MO_ERR_ARG;
    if ((gamma && overlap(y, gamma)) || (beta && overlap(y, beta))) return MO_ERR_ARG;

    const float *xp = mo_tensor_data(x);
    float *yp = mo_tensor_data(y), *mp = mo_tensor_data(mean), *rp = mo_tensor_data(rstd);
    const float *gp = gamma ? mo_tensor_data(gamma) : NULL;
    const float *bp = beta ? mo_tensor_data(beta) : NULL;
    double inv_d = 1.0 / (double)d;
    for (size_t r = 0; r < rows; r++) {
        const float *xr = xp + r * d;
        float *yr = yp + r * d;
        /* two passes in double: no cancellation when the mean is large */
        double s = 0.0;
        for (size_t j = 0; j < d; j++) s += xr[j];
        double mu = s * inv_d;
        double v = 0.0;
        for (size_t j = 0; j < d; j++) {
            double c = xr[j] - mu;
            v += c * c;
        }
        float fmu = (float)mu;
        float fr = (float)(1.0 / sqrt(v * inv_d + (double)eps));
        mp[r] = fmu;
        rp[r] = fr;
        if (gp && bp)
            for (size_t j = 0; j < d; j++) yr[j] = (xr[j] - fmu) * fr * gp[j] + bp[j];
        else if (gp)
            for (size_t j = 0; j < d; j++) yr[j] = (xr[j] - fmu) * fr * gp[j];
        else if (bp)
            for (size_t j = 0; j < d; j++) yr[j] = (xr[j] - fmu) * fr + bp[j];
        else
            for (size_t j = 0; j < d; j++) yr[j] = (xr[j] - fmu) * fr;
    }
    return MO_OK;
}

mo_status mo_nn_layernorm_backward(mo_tensor *dx, mo_tensor *dgamma, mo_tensor *dbeta,
                                   const mo_tensor *g, const mo_tensor *x,
                                   const mo_tensor *mean, const mo_tensor *rstd,
                                   const mo_tensor *gamma)
{
    MO_TRY(live(dx));
    MO_TRY(live_opt(dgamma));
    MO_TRY(live_opt(dbeta));
    MO_TRY(live(g));
    MO_TRY(live(x));
    MO_TRY(live(mean));
    MO_TRY(live(rstd));
    MO_TRY(live_opt(gamma));
    size_t rows, d;
    MO_TRY(ln_check_x(x, mean, rstd, gamma, &rows, &d));
    if (!mo_tensor_same_shape(dx, x) || !mo_tensor_same_shape(g, x)) return MO_ERR_SHAPE;
    if ((dgamma && !is_1d(dgamma, d)) || (dbeta && !is_1d(dbeta, d))) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(dx) || !mo_tensor_is_contiguous(g) ||
        (dgamma && !mo_tensor_is_contiguous(dgamma)) || (dbeta && !mo_tensor_is_contiguous(dbeta)))
        return MO_ERR_LAYOUT;
    if (!alias_ok(dx, g)) return MO_ERR_ARG;
    const mo_tensor *ins[5] = {x, mean, rstd, gamma, g};
    mo_tensor *outs[3] = {dx, dgamma, dbeta};
    for (int o = 0; o < 3; o++) {
        if (!outs[o]) continue;
        for (int i = 0; i < 5; i++) {
            if (o == 0 && i == 4) continue; /* dx == g is allowed (checked above) */
            if (ins[i] && overlap(outs[o], ins[i])) return MO_ERR_ARG;
        }
        for (int p = o + 1; p < 3; p++)
            if (outs[p] && overlap(outs[o], outs[p])) return MO_ERR_ARG;
    }

    const float *xp = mo_tensor_data(x), *gp = mo_tensor_data(g);
    const float *mp = mo_tensor_data(mean), *rp = mo_tensor_data(rstd);
    const float *wp = gamma ? mo_tensor_data(gamma) : NULL;
    float *dxp = mo_tensor_data(dx);
    float *dgp = dgamma ? mo_tensor_data(dgamma) : NULL;
    float *dbp = dbeta ? mo_tensor_data(dbeta) : NULL;
    double inv_d = 1.0 / (double)d;
    for (size_t r = 0; r < rows; r++) {
        const float *xr = xp + r * d, *gr = gp + r * d;
        float *dxr = dxp + r * d;
        float mu = mp[r], rs = rp[r];
        /* pass 1: the two row means, and the parameter gradients (reads g before dx may overwrite it) */
        double a = 0.0, b = 0.0;
        for (size_t j = 0; j < d; j++) {
            float xhat = (xr[j] - mu) * rs;
            float dxhat = wp ? gr[j] * wp[j] : gr[j];
            a += dxhat;
            b += (double)dxhat * xhat;
            if (dgp) dgp[j] += gr[j] * xhat;
            if (dbp) dbp[j] += gr[j];
        }
        float fa = (float)(a * inv_d), fb = (float)(b * inv_d);
        /* pass 2: dx */
        for (size_t j = 0; j < d; j++) {
            float xhat = (xr[j] - mu) * rs;
            float dxhat = wp ? gr[j] * wp[j] : gr[j];
            dxr[j] = rs * (dxhat - fa - xhat * fb);
        }
    }
    return MO_OK;
}

/* ------------------------------------------------------------------------ */
/* Dropout                                                                  */
/* ------------------------------------------------------------------------ */

static void mul_run(float *out, const float *a, const float *b, size_t n)
{
    NN_EACH(n, out, a[i] * b[i]);
}

mo_status mo_nn_dropout_forward(mo_tensor *y, mo_tensor *mask, const mo_tensor *x, float p,
                                mo_rng *rng)
{
    MO_TRY(live(y));
    MO_TRY(live(mask));
    MO_TRY(live(x));
    if (!rng || !(p >= 0.0f && p <= 1.0f)) return MO_ERR_ARG;
    if (!mo_tensor_same_shape(y, x) || !mo_tensor_same_shape(mask, x)) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(y) || !mo_tensor_is_contiguous(mask) ||
        !mo_tensor_is_contiguous(x))
        return MO_ERR_LAYOUT;
    if (!alias_ok(y, x) || overlap(mask, x) || overlap(mask, y)) return MO_ERR_ARG;

    size_t n = x->numel;
    float *mp = mo_tensor_data(mask);
    if (p == 0.0f || p == 1.0f) {
        float keep = p == 0.0f ? 1.0f : 0.0f;
        for (size_t i = 0; i < n; i++) mp[i] = keep;
    } else {
        float scale = (float)(1.0 / (1.0 - (double)p));
        /* keep when the 24-bit uniform u satisfies u >= thr, i.e. with probability 1 - p */
        uint32_t thr = (uint32_t)ceil((double)p * 16777216.0);
        size_t i = 0;
        for (; i + 1 < n; i += 2) {
            uint64_t bits = mo_rng_next(rng);
            uint32_t u0 = (uint32_t)(bits >> 40);
            uint32_t u1 = (uint32_t)(bits >> 16) & 0xFFFFFFu;
            mp[i] = u0 >= thr ? scale : 0.0f;
            mp[i + 1] = u1 >= thr ? scale : 0.0f;
        }
        if (i < n) {
            uint32_t u0 = (uint32_t)(mo_rng_next(rng) >> 40);
            mp[i] = u0 >= thr ? scale : 0.0f;
        }
    }
    mul_run(mo_tensor_data(y), mo_tensor_data(x), mp, n);
    return MO_OK;
}

mo_status mo_nn_dropout_backward(mo_tensor *dx, const mo_tensor *g, const mo_tensor *mask)
{
    MO_TRY(live(dx));
    MO_TRY(live(g));
    MO_TRY(live(mask));
    if (!mo_tensor_same_shape(dx, g) || !mo_tensor_same_shape(dx, mask)) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(dx) || !mo_tensor_is_contiguous(g) ||
        !mo_tensor_is_contiguous(mask))
        return MO_ERR_LAYOUT;
    if (!alias_ok(dx, g) || !alias_ok(dx, mask)) return MO_ERR_ARG;
    mul_run(mo_tensor_data(dx), mo_tensor_data(g), mo_tensor_data(mask), dx->numel);
    return MO_OK;
}

/* ------------------------------------------------------------------------ */
/* Losses                                                                   */
/* ------------------------------------------------------------------------ */

/* Checks shared by the elementwise losses (out and target of one shape). */
static mo_status pair_loss_check(double *loss, const mo_tensor *grad, const mo_tensor *out,
                                 const mo_tensor *target, mo_nn_reduction red)
{
    if (!loss) return MO_ERR_ARG;
    MO_TRY(live_opt(grad));
    MO_TRY(live(out));
    MO_TRY(live(target));
    if (red != MO_NN_MEAN && red != MO_NN_SUM) return MO_ERR_ARG;
    if (!mo_tensor_same_shape(out, target) || (grad && !mo_tensor_same_shape(grad, out)))
        return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(out) || !mo_tensor_is_contiguous(target) ||
        (grad && !mo_tensor_is_contiguous(grad)))
        return MO_ERR_LAYOUT;
    if (grad && (overlap(grad, out) || overlap(grad, target))) return MO_ERR_ARG;
    return MO_OK;
}

mo_status mo_nn_mse(double *loss, mo_tensor *grad, const mo_tensor *out, const mo_tensor *target,
                    mo_nn_reduction red)
{
    MO_TRY(pair_loss_check(loss, grad, out, target, red));
    size_t n = out->numel;
    const float *o = mo_tensor_data(out), *t = mo_tensor_data(target);
    if (n == 0) {
        *loss = red == MO_NN_MEAN ? NAN : 0.0; /* the mean of nothing, as PyTorch */
        return MO_OK;
    }
    double inv = red == MO_NN_MEAN ? 1.0 / (double)n : 1.0;
    double s = 0.0;
    if (grad) {
        float *gp = mo_tensor_data(grad);
        float k = (float)(2.0 * inv);
        for (size_t i = 0; i < n; i++) {
            float d = o[i] - t[i];
            s += (double)d * d;
            gp[i] = k * d;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float d = o[i] - t[i];
            s += (double)d * d;
        }
    }
    *loss = s * inv;
    return MO_OK;
}

mo_status mo_nn_bce_logits(double *loss, mo_tensor *grad, const mo_tensor *x,
                           const mo_tensor *target, mo_nn_reduction red)
{
    MO_TRY(pair_loss_check(loss, grad, x, target, red));
    size_t n = x->numel;
    const float *xp = mo_tensor_data(x), *yp = mo_tensor_data(target);
    if (n == 0) {
        *loss = red == MO_NN_MEAN ? NAN : 0.0;
        return MO_OK;
    }
    double inv = red == MO_NN_MEAN ? 1.0 / (double)n : 1.0;
    float k = (float)inv;
    float *gp = grad ? mo_tensor_data(grad) : NULL;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        float v = xp[i], y = yp[i];
        /* log(1 + exp(-|x|)) never overflows; max(x, 0) - x y carries the rest */
        float l = (v > 0.0f ? v : 0.0f) - v * y + log1pf(expf(-fabsf(v)));
        s += l;
        if (gp) gp[i] = k * (sigmoidf(v) - y);
    }
    *loss = s * inv;
    return MO_OK;
}

mo_status mo_nn_cross_entropy(double *loss, mo_tensor *grad, const mo_tensor *logits,
                              const mo_tensor *target, int base, float label_smoothing,
                              mo_nn_reduction red, size_t *bad_pos)
{
    if (!loss) return MO_ERR_ARG;
    MO_TRY(live_opt(grad));
    MO_TRY(live(logits));
    MO_TRY(live(target));
    if (red != MO_NN_MEAN && red != MO_NN_SUM) return MO_ERR_ARG;
    if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f)) return MO_ERR_ARG;
    if (logits->ndim != 2) return MO_ERR_SHAPE;
    size_t batch = logits->shape[0], nc = logits->shape[1];
    if (target->numel != batch || (grad && !mo_tensor_same_shape(grad, logits)))
        return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(logits) || !mo_tensor_is_contiguous(target) ||
        (grad && !mo_tensor_is_contiguous(grad)))
        return MO_ERR_LAYOUT;
    if (grad && (overlap(grad, logits) || overlap(grad, target))) return MO_ERR_ARG;

    /* every target first, so a bad one leaves grad untouched */
    const float *tp = mo_tensor_data(target);
    double lo = (double)base, hi = (double)base + (double)nc - 1.0;
    for (size_t i = 0; i < batch; i++) {
        double t = tp[i];
        if (!(t >= lo && t <= hi) || t != floor(t)) {
            if (bad_pos) *bad_pos = i;
            return MO_ERR_RANGE;
        }
    }
    if (batch == 0) {
        *loss = red == MO_NN_MEAN ? NAN : 0.0;
        return MO_OK;
    }

    const float *xp = mo_tensor_data(logits);
    float *gp = grad ? mo_tensor_data(grad) : NULL;
    double inv = red == MO_NN_MEAN ? 1.0 / (double)batch : 1.0;
    double eps = label_smoothing;
    double on = 1.0 - eps, off = eps / (double)nc;  /* weights of x[y] and of every x[c] */
    float ginv = (float)inv;
    float goff = (float)(off * inv), gon = (float)(on * inv);
    double total = 0.0;
    for (size_t i = 0; i < batch; i++) {
        const float *xr = xp + i * nc;
        size_t y = (size_t)(tp[i] - lo);
        float m = xr[0];
        for (size_t c = 1; c < nc; c++)
            if (xr[c] > m) m = xr[c];
        /* exp(x - max) <= 1: finite for logits of any size; kept in grad for pass 2 */
        double s = 0.0, sx = 0.0;
        if (gp) {
            float *gr = gp + i * nc;
            for (size_t c = 0; c < nc; c++) {
                float e = expf(xr[c] - m);
                gr[c] = e;
                s += e;
            }
        } else {
            for (size_t c = 0; c < nc; c++) s += expf(xr[c] - m);
        }
        if (eps > 0.0)
            for (size_t c = 0; c < nc; c++) sx += xr[c];
        double lse = (double)m + log(s);
        total += lse - on * xr[y] - off * sx;
        if (gp) {
            /* grad = (softmax - (1-e) onehot - e/C) / B */
            float *gr = gp + i * nc;
            float r = (float)(1.0 / s) * ginv;
            for (size_t c = 0; c < nc; c++) gr[c] = gr[c] * r - goff;
            gr[y] -= gon;
        }
    }
    *loss = total * inv;
    return MO_OK;
}
