/*
 * nn.c - the neural-network kernels: activations, Linear, softmax, layer norm,
 * dropout and the losses (declared in moonopt_nn.h).
 *
 * Every function validates all of its operands (alive, one dtype, shapes,
 * layout, aliasing, scalar arguments) before it writes anything, then runs
 * plain loops over contiguous arrays: nn_t.h, once per dtype, picked once per
 * call (docs/design.md "Two dtypes"). Where an activation or loss has several
 * variants, the switch sits outside the loops: one simple loop per variant, so
 * the compiler can vectorize each.
 *
 * Threads (docs/design.md "Threads"): every kernel runs on the pool over a fixed
 * partition of its own items (elements, rows, lines or columns) whose grain depends
 * on the sizes alone. No chunk reads what another writes, and every value a chunk
 * computes is computed in the order it was computed before threads (a row's sums
 * within the row, a column's sums over the rows in row order); the losses' totals
 * are per-chunk partials added in chunk order, so a call with one chunk gives the
 * bits it always gave. The results are bit-identical at any thread count.
 */
#include "moonopt_internal.h"
#include "threadpool.h"

#include <stdint.h>
#include <string.h>
#include <tgmath.h> /* exp, tanh, erf... pick float or double by argument (nn_t.h) */

/* M_SQRT1_2 and friends are POSIX, not C11: spell the constants out (cast to T where used). */
#define NN_SQRT1_2 0.70710678118654752440      /* 1 / sqrt(2) */
#define NN_INV_SQRT_2PI 0.39894228040143267794 /* 1 / sqrt(2 pi) */
#define NN_SQRT_2_PI 0.79788456080286535588    /* sqrt(2 / pi) */
#define NN_GELU_KAPPA 0.044715

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
            T t_[NN_BLOCK]; /* T: the template's element type (nn_t.h) */         \
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

/* NULL -> ARG, dead -> FREED, not of dtype dt -> DTYPE. Every entry checks each
 * tensor operand through here against the dtype of its first one (`first`). */
static mo_status live_as(const mo_tensor *t, mo_dtype dt)
{
    if (!t) return MO_ERR_ARG;
    if (!mo_tensor_alive(t)) return MO_ERR_FREED;
    if (t->dtype != dt) return MO_ERR_DTYPE;
    return MO_OK;
}

/* The first operand: NULL -> ARG, dead -> FREED, a dtype no kernel has -> DTYPE. */
static mo_status first(const mo_tensor *t)
{
    if (!t) return MO_ERR_ARG;
    if (!mo_tensor_alive(t)) return MO_ERR_FREED;
    if (t->dtype != MO_FLOAT32 && t->dtype != MO_FLOAT64) return MO_ERR_DTYPE;
    return MO_OK;
}

/* live_as() for an optional operand: NULL is fine. */
static mo_status live_opt(const mo_tensor *t, mo_dtype dt)
{
    return t ? live_as(t, dt) : MO_OK;
}

/* Class i of a cross-entropy target (either dtype: targets are index tensors). */
static double nn_target(const mo_tensor *t, size_t i)
{
    return t->dtype == MO_FLOAT64 ? ((const double *)mo_tensor_ptr(t))[i]
                                  : (double)((const float *)mo_tensor_ptr(t))[i];
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

static int act_valid(mo_nn_act act, double slope)
{
    if ((unsigned)act >= (unsigned)MO_ACT_COUNT_) return 0;
    return act != MO_ACT_LEAKY_RELU || (isfinite(slope) && isfinite((float)slope));
}

/* The jobs handed to the chunk functions of nn_t.h (pointers to the dtype's arrays). */

/* Elementwise: out = f(a[, b]); n the row length for bias_act. */
typedef struct nn_ew {
    void *out;
    const void *a, *b;
    size_t n;
    mo_nn_act act;
    double slope;
} nn_ew;

/* db += column sums of g {rows, cols}, chunked over the columns. */
typedef struct colsum_job {
    void *acc;
    const mo_tensor *g;
} colsum_job;

/* Softmax over lines of n elements `inner` apart (out = y or dx; a = x or g; b = y). */
typedef struct softmax_job {
    void *out;
    const void *a, *b;
    size_t n, inner;
} softmax_job;

/* Layer norm of x {rows, d}: y is the forward's output or the backward's dx. */
typedef struct ln_job {
    void *y, *mean, *rstd, *dgamma, *dbeta;
    const void *x, *g, *gamma, *beta;
    size_t rows, d;
    double eps;
    int fused; /* backward: the parameter gradients in the dx pass (rows run serially, in order) */
} ln_job;

/* An elementwise loss: a = the output, b = the target, grad (or NULL) = k * dloss. */
typedef struct loss_job {
    void *grad;
    const void *a, *b;
    double k;
} loss_job;

/* Cross entropy of logits {batch, nc}. */
typedef struct ce_job {
    void *grad;
    const void *logits;
    const mo_tensor *target;
    double lo_class, inv, eps;
    size_t nc;
} ce_job;

/* The narrowest chunk of a column partition (colsum, layer norm's parameter gradients):
 * such a chunk walks every row, and narrow pieces of rows d apart (a power of two maps
 * them all to a few cache sets) are slow to read. */
#define NN_MIN_COLS ((size_t)512)

/* A grain in rows of `per_row` elements worth about `elems` elements (at least one row):
 * a function of the sizes alone, as the partition must be. */
static size_t rows_grain(size_t per_row, size_t elems)
{
    const size_t g = per_row ? elems / per_row : elems;
    return g ? g : 1;
}

#define T float
#define TN(name) name##_f32
#include "nn_t.h"
#define T double
#define TN(name) name##_f64
#include "nn_t.h"

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

/* The data pointer of an optional operand. */
#define NN_PTR(t) ((t) ? mo_tensor_ptr(t) : NULL)

/* The element grain of an activation: a libm call per element (tanh, erf, exp) or not. */
static size_t act_grain(mo_nn_act act, int backward)
{
    switch (act) {
    case MO_ACT_NONE: case MO_ACT_RELU: case MO_ACT_LEAKY_RELU:
        return MO__GRAIN_STREAM;
    case MO_ACT_TANH: case MO_ACT_SIGMOID:
        /* the backward uses the saved output: a multiply, no libm */
        return backward ? MO__GRAIN_STREAM : MO__GRAIN_HEAVY;
    default:
        return MO__GRAIN_HEAVY;
    }
}

mo_status mo_nn_act_forward(mo_tensor *y, const mo_tensor *x, mo_nn_act act, double slope)
{
    MO_TRY(first(y));
    MO_TRY(live_as(x, y->dtype));
    if (!act_valid(act, slope)) return MO_ERR_ARG;
    if (!mo_tensor_same_shape(y, x)) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(y) || !mo_tensor_is_contiguous(x)) return MO_ERR_LAYOUT;
    if (!alias_ok(y, x)) return MO_ERR_ARG;
    /* float32: the slope rounded to float once, as act_forward_run_f32 always took it */
    nn_ew j = {mo_tensor_ptr(y), mo_tensor_ptr(x), NULL, 0, act, slope};
    mo__parallel_for(x->numel, act_grain(act, 0),
                     y->dtype == MO_FLOAT64 ? act_forward_chunk_f64 : act_forward_chunk_f32, &j);
    return MO_OK;
}

mo_status mo_nn_act_backward(mo_tensor *dx, const mo_tensor *g, const mo_tensor *saved,
                             mo_nn_act act, double slope)
{
    MO_TRY(first(dx));
    MO_TRY(live_as(g, dx->dtype));
    MO_TRY(live_as(saved, dx->dtype));
    if (!act_valid(act, slope)) return MO_ERR_ARG;
    if (!mo_tensor_same_shape(dx, g) || !mo_tensor_same_shape(dx, saved)) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(dx) || !mo_tensor_is_contiguous(g) ||
        !mo_tensor_is_contiguous(saved))
        return MO_ERR_LAYOUT;
    if (!alias_ok(dx, g) || !alias_ok(dx, saved)) return MO_ERR_ARG;
    nn_ew j = {mo_tensor_ptr(dx), mo_tensor_ptr(g), mo_tensor_ptr(saved), 0, act, slope};
    mo__parallel_for(dx->numel, act_grain(act, 1),
                     dx->dtype == MO_FLOAT64 ? act_backward_chunk_f64 : act_backward_chunk_f32,
                     &j);
    return MO_OK;
}

/* y {rows, cols} += b, then act, in place (checked by the caller); chunks of whole rows. */
static void bias_act(mo_tensor *y, const mo_tensor *b, mo_nn_act act, double slope)
{
    const size_t cols = y->shape[1];
    nn_ew j = {mo_tensor_ptr(y), NULL, NN_PTR(b), cols, act, slope};
    mo__parallel_for(y->shape[0], rows_grain(cols, act_grain(act, 0)),
                     y->dtype == MO_FLOAT64 ? bias_act_chunk_f64 : bias_act_chunk_f32, &j);
}

mo_status mo_nn_bias_act(mo_tensor *y, const mo_tensor *b, mo_nn_act act, double slope)
{
    MO_TRY(first(y));
    MO_TRY(live_opt(b, y->dtype));
    if (!act_valid(act, slope)) return MO_ERR_ARG;
    if (y->ndim != 2 || (b && !is_1d(b, y->shape[1]))) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(y) || (b && !mo_tensor_is_contiguous(b))) return MO_ERR_LAYOUT;
    if (b && overlap(y, b)) return MO_ERR_ARG;
    bias_act(y, b, act, slope);
    return MO_OK;
}

/* acc {cols} += the column sums of g {rows, cols}: chunks of columns (a multiple of
 * NN_BLOCK wide), each summed over every row in row order, so the bits are those of the
 * serial loop. */
static void colsum(mo_tensor *acc, const mo_tensor *g)
{
    colsum_job j = {mo_tensor_ptr(acc), g};
    size_t grain = rows_grain(g->shape[0], MO__GRAIN_STREAM);
    if (grain < NN_MIN_COLS) grain = NN_MIN_COLS;
    grain = (grain + NN_BLOCK - 1) / NN_BLOCK * NN_BLOCK;
    mo__parallel_for(g->shape[1], grain,
                     acc->dtype == MO_FLOAT64 ? colsum_chunk_f64 : colsum_chunk_f32, &j);
}

mo_status mo_nn_colsum_acc(mo_tensor *acc, const mo_tensor *g)
{
    MO_TRY(first(acc));
    MO_TRY(live_as(g, acc->dtype));
    if (g->ndim != 2 || !is_1d(acc, g->shape[1])) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(acc)) return MO_ERR_LAYOUT;
    if (overlap(acc, g)) return MO_ERR_ARG;
    colsum(acc, g);
    return MO_OK;
}

/* ------------------------------------------------------------------------ */
/* Linear                                                                   */
/* ------------------------------------------------------------------------ */

mo_status mo_nn_linear_forward(mo_tensor *y, const mo_tensor *x, const mo_tensor *w,
                               const mo_tensor *b, mo_nn_act act, double slope)
{
    MO_TRY(first(y));
    MO_TRY(live_as(x, y->dtype));
    MO_TRY(live_as(w, y->dtype));
    MO_TRY(live_opt(b, y->dtype));
    if (!act_valid(act, slope)) return MO_ERR_ARG;
    if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1]) return MO_ERR_SHAPE;
    size_t batch = x->shape[0], nout = w->shape[0];
    if (!is_2d(y, batch, nout) || (b && !is_1d(b, nout))) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(y) || (b && !mo_tensor_is_contiguous(b))) return MO_ERR_LAYOUT;
    if (overlap(y, x) || overlap(y, w) || (b && overlap(y, b))) return MO_ERR_ARG;

    /* y {B, out} = x {B, in} @ w^T {in, out}; beta 0 ignores y's old contents */
    MO_TRY(mo_matmul(y, x, 0, w, 1, 1.0f, 0.0f));
    if (b || act != MO_ACT_NONE) bias_act(y, b, act, slope);
    return MO_OK;
}

mo_status mo_nn_linear_backward(mo_tensor *dx, mo_tensor *dw, mo_tensor *db, const mo_tensor *g,
                                const mo_tensor *x, const mo_tensor *w)
{
    MO_TRY(first(g));
    MO_TRY(live_opt(dx, g->dtype));
    MO_TRY(live_opt(dw, g->dtype));
    MO_TRY(live_opt(db, g->dtype));
    MO_TRY(live_as(x, g->dtype));
    MO_TRY(live_as(w, g->dtype));
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
    if (db) colsum(db, g);
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
    MO_TRY(first(out));
    MO_TRY(live_as(a, out->dtype));
    MO_TRY(live_as(b, out->dtype));
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
    softmax_job j = {mo_tensor_ptr(y), mo_tensor_ptr(x), NULL, n, inner};
    mo__parallel_for(outer * inner, rows_grain(n, MO__GRAIN_HEAVY),
                     y->dtype == MO_FLOAT64 ? softmax_fwd_chunk_f64 : softmax_fwd_chunk_f32, &j);
    return MO_OK;
}

mo_status mo_nn_softmax_backward(mo_tensor *dx, const mo_tensor *g, const mo_tensor *y, int dim)
{
    MO_TRY(softmax_check(dx, g, y, dim));
    size_t outer, n, inner;
    split_dim(y, dim, &outer, &n, &inner);
    if (n == 0) return MO_OK;
    softmax_job j = {mo_tensor_ptr(dx), mo_tensor_ptr(g), mo_tensor_ptr(y), n, inner};
    mo__parallel_for(outer * inner, rows_grain(n, MO__GRAIN_STREAM),
                     dx->dtype == MO_FLOAT64 ? softmax_bwd_chunk_f64 : softmax_bwd_chunk_f32, &j);
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
                                  const mo_tensor *beta, double eps)
{
    MO_TRY(first(x));
    MO_TRY(live_as(y, x->dtype));
    MO_TRY(live_as(mean, x->dtype));
    MO_TRY(live_as(rstd, x->dtype));
    MO_TRY(live_opt(gamma, x->dtype));
    MO_TRY(live_opt(beta, x->dtype));
    if (!(eps > 0.0) || !isfinite(eps) || !((float)eps > 0.0f)) return MO_ERR_ARG;
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

    const int f64 = x->dtype == MO_FLOAT64;
    ln_job j = {.y = mo_tensor_ptr(y), .mean = mo_tensor_ptr(mean), .rstd = mo_tensor_ptr(rstd),
                .x = mo_tensor_ptr(x), .gamma = NN_PTR(gamma), .beta = NN_PTR(beta),
                .rows = rows, .d = d, .eps = f64 ? eps : (double)(float)eps};
    /* a row is two passes and a store: about four streaming passes over its d elements */
    mo__parallel_for(rows, rows_grain(d, MO__GRAIN_STREAM / 4),
                     f64 ? ln_fwd_chunk_f64 : ln_fwd_chunk_f32, &j);
    return MO_OK;
}

mo_status mo_nn_layernorm_backward(mo_tensor *dx, mo_tensor *dgamma, mo_tensor *dbeta,
                                   const mo_tensor *g, const mo_tensor *x,
                                   const mo_tensor *mean, const mo_tensor *rstd,
                                   const mo_tensor *gamma)
{
    MO_TRY(first(x));
    MO_TRY(live_as(dx, x->dtype));
    MO_TRY(live_opt(dgamma, x->dtype));
    MO_TRY(live_opt(dbeta, x->dtype));
    MO_TRY(live_as(g, x->dtype));
    MO_TRY(live_as(mean, x->dtype));
    MO_TRY(live_as(rstd, x->dtype));
    MO_TRY(live_opt(gamma, x->dtype));
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

    const int f64 = x->dtype == MO_FLOAT64;
    ln_job j = {.y = mo_tensor_ptr(dx), .mean = mo_tensor_ptr(mean), .rstd = mo_tensor_ptr(rstd),
                .dgamma = NN_PTR(dgamma), .dbeta = NN_PTR(dbeta), .x = mo_tensor_ptr(x),
                .g = mo_tensor_ptr(g), .gamma = NN_PTR(gamma), .rows = rows, .d = d};
    /* One thread (or one chunk of rows): one fused pass over the rows in order, called
     * directly, as before threads. Otherwise the parameter gradients first, by columns (each
     * over every row in row order: the same sums, so the same bits), while g is intact (dx
     * may be g), then dx by rows. */
    const size_t dx_grain = rows_grain(d, MO__GRAIN_STREAM / 4);
    mo__chunk_fn dx_fn = f64 ? ln_bwd_dx_chunk_f64 : ln_bwd_dx_chunk_f32;
    if (mo__pool_threads() == 1 || mo__parallel_chunks(rows, dx_grain) == 1) {
        j.fused = 1;
        dx_fn(&j, 0, 0, rows);
        return MO_OK;
    }
    if (dgamma || dbeta) {
        size_t grain = rows_grain(rows, MO__GRAIN_STREAM);
        if (grain < NN_MIN_COLS) grain = NN_MIN_COLS;
        grain = (grain + NN_BLOCK - 1) / NN_BLOCK * NN_BLOCK;
        mo__parallel_for(d, grain, f64 ? ln_bwd_param_chunk_f64 : ln_bwd_param_chunk_f32, &j);
    }
    mo__parallel_for(rows, dx_grain, dx_fn, &j);
    return MO_OK;
}

/* ------------------------------------------------------------------------ */
/* Dropout                                                                  */
/* ------------------------------------------------------------------------ */

static void mul(mo_tensor *out, const mo_tensor *a, const mo_tensor *b)
{
    nn_ew j = {mo_tensor_ptr(out), mo_tensor_ptr(a), mo_tensor_ptr(b), 0, MO_ACT_NONE, 0.0};
    mo__parallel_for(out->numel, MO__GRAIN_STREAM,
                     out->dtype == MO_FLOAT64 ? mul_chunk_f64 : mul_chunk_f32, &j);
}

mo_status mo_nn_dropout_forward(mo_tensor *y, mo_tensor *mask, const mo_tensor *x, double p,
                                mo_rng *rng)
{
    MO_TRY(first(x));
    MO_TRY(live_as(y, x->dtype));
    MO_TRY(live_as(mask, x->dtype));
    if (!rng || !(p >= 0.0 && p <= 1.0)) return MO_ERR_ARG;
    if (!mo_tensor_same_shape(y, x) || !mo_tensor_same_shape(mask, x)) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(y) || !mo_tensor_is_contiguous(mask) ||
        !mo_tensor_is_contiguous(x))
        return MO_ERR_LAYOUT;
    if (!alias_ok(y, x) || overlap(mask, x) || overlap(mask, y)) return MO_ERR_ARG;
    if (x->dtype == MO_FLOAT64)
        dropout_mask_f64(mo_tensor_ptr(mask), x->numel, p, rng);
    else
        dropout_mask_f32(mo_tensor_ptr(mask), x->numel, (double)(float)p, rng);
    mul(y, x, mask);
    return MO_OK;
}

mo_status mo_nn_dropout_backward(mo_tensor *dx, const mo_tensor *g, const mo_tensor *mask)
{
    MO_TRY(first(dx));
    MO_TRY(live_as(g, dx->dtype));
    MO_TRY(live_as(mask, dx->dtype));
    if (!mo_tensor_same_shape(dx, g) || !mo_tensor_same_shape(dx, mask)) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(dx) || !mo_tensor_is_contiguous(g) ||
        !mo_tensor_is_contiguous(mask))
        return MO_ERR_LAYOUT;
    if (!alias_ok(dx, g) || !alias_ok(dx, mask)) return MO_ERR_ARG;
    mul(dx, g, mask);
    return MO_OK;
}

/* ------------------------------------------------------------------------ */
/* Losses                                                                   */
/* ------------------------------------------------------------------------ */

/* Checks shared by the elementwise losses (out and target of one shape and dtype). */
static mo_status pair_loss_check(double *loss, const mo_tensor *grad, const mo_tensor *out,
                                 const mo_tensor *target, mo_nn_reduction red)
{
    if (!loss) return MO_ERR_ARG;
    MO_TRY(first(out));
    MO_TRY(live_opt(grad, out->dtype));
    MO_TRY(live_as(target, out->dtype));
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
    if (n == 0) {
        *loss = red == MO_NN_MEAN ? NAN : 0.0; /* the mean of nothing, as PyTorch */
        return MO_OK;
    }
    double inv = red == MO_NN_MEAN ? 1.0 / (double)n : 1.0;
    loss_job j = {NN_PTR(grad), mo_tensor_ptr(out), mo_tensor_ptr(target), 2.0 * inv};
    *loss = mo__parallel_sum(n, MO__GRAIN_STREAM,
                             out->dtype == MO_FLOAT64 ? mse_part_f64 : mse_part_f32, &j) * inv;
    return MO_OK;
}

mo_status mo_nn_bce_logits(double *loss, mo_tensor *grad, const mo_tensor *x,
                           const mo_tensor *target, mo_nn_reduction red)
{
    MO_TRY(pair_loss_check(loss, grad, x, target, red));
    size_t n = x->numel;
    if (n == 0) {
        *loss = red == MO_NN_MEAN ? NAN : 0.0;
        return MO_OK;
    }
    double inv = red == MO_NN_MEAN ? 1.0 / (double)n : 1.0;
    loss_job j = {NN_PTR(grad), mo_tensor_ptr(x), mo_tensor_ptr(target), inv};
    *loss = mo__parallel_sum(n, MO__GRAIN_HEAVY,
                             x->dtype == MO_FLOAT64 ? bce_part_f64 : bce_part_f32, &j) * inv;
    return MO_OK;
}

mo_status mo_nn_cross_entropy(double *loss, mo_tensor *grad, const mo_tensor *logits,
                              const mo_tensor *target, int base, double label_smoothing,
                              mo_nn_reduction red, size_t *bad_pos)
{
    if (!loss) return MO_ERR_ARG;
    MO_TRY(first(logits));
    MO_TRY(live_opt(grad, logits->dtype));
    MO_TRY(first(target)); /* an index tensor: either dtype */
    if (red != MO_NN_MEAN && red != MO_NN_SUM) return MO_ERR_ARG;
    if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0)) return MO_ERR_ARG;
    if (logits->ndim != 2) return MO_ERR_SHAPE;
    size_t batch = logits->shape[0], nc = logits->shape[1];
    if (target->numel != batch || (grad && !mo_tensor_same_shape(grad, logits)))
        return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(logits) || !mo_tensor_is_contiguous(target) ||
        (grad && !mo_tensor_is_contiguous(grad)))
        return MO_ERR_LAYOUT;
    if (grad && (overlap(grad, logits) || overlap(grad, target))) return MO_ERR_ARG;

    /* every target first, so a bad one leaves grad untouched */
    double lo = (double)base, hi = (double)base + (double)nc - 1.0;
    for (size_t i = 0; i < batch; i++) {
        double t = nn_target(target, i);
        if (!(t >= lo && t <= hi) || t != floor(t)) {
            if (bad_pos) *bad_pos = i;
            return MO_ERR_RANGE;
        }
    }
    if (batch == 0) {
        *loss = red == MO_NN_MEAN ? NAN : 0.0;
        return MO_OK;
    }
    double inv = red == MO_NN_MEAN ? 1.0 / (double)batch : 1.0;
    const int f64 = logits->dtype == MO_FLOAT64;
    /* float32 as it always was: the smoothing rounded to float once */
    ce_job j = {NN_PTR(grad), mo_tensor_ptr(logits), target, lo, inv,
                f64 ? label_smoothing : (double)(float)label_smoothing, nc};
    /* chunks of rows: a row is an exp per class */
    *loss = mo__parallel_sum(batch, rows_grain(nc, MO__GRAIN_HEAVY),
                             f64 ? ce_part_f64 : ce_part_f32, &j) * inv;
    return MO_OK;
}
