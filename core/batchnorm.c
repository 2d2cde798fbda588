/*
 * batchnorm.c - batch normalization, forward and backward (moonopt_conv.h);
 * docs/design.md "Convolutions".
 *
 * x {N, C, ...} is walked as {N, C, L} (L the product of the dims after C, 1 for
 * {N, C}); every channel is independent: its statistics, its scalars (scale,
 * shift) and its loops (batchnorm_t.h). The {C} tensors (weight, bias, running
 * statistics, saved statistics, their gradients) may have any stride: they are
 * read or written once per channel.
 *
 * Threads (docs/design.md "Threads"): the channels are cut into fixed chunks (the
 * grain a function of the sizes alone) and run on the pool; a channel's statistics
 * and gradient sums are still one serial loop over its values in the same order, so
 * the results are bit-identical at any thread count. Chunks write disjoint channels
 * (distinct elements of the {C} tensors, and of y / gx).
 */
#include "moonopt_internal.h"
#include "threadpool.h"

#include <math.h>

typedef struct bn_dims {
    size_t n, c, l, m;  /* batch, channels, per-image length, m = n * l values per channel */
} bn_dims;

typedef struct bn_ops {
    void (*stats)(const void *x, const bn_dims *d, size_t c, double *mean, double *var);
    void (*affine)(const void *x, void *y, const bn_dims *d, size_t c, double mean, double scale,
                   double shift);
    void (*grad_sums)(const void *x, const void *gy, const bn_dims *d, size_t c, double mean,
                      double *sg, double *sgx);
    void (*gx)(const void *x, const void *gy, void *gx, const bn_dims *d, size_t c, double mean,
               double mg, double k, double scale);
    double (*get)(const void *p, ptrdiff_t s, size_t i, double def);
    void (*set)(void *p, ptrdiff_t s, size_t i, double v);
} bn_ops;

#define T float
#define TN(name) name##_f32
#include "batchnorm_t.h"
#define T double
#define TN(name) name##_f64
#include "batchnorm_t.h"

/* A {C} operand: NULL, or live, x's dtype, 1-d of size C (any stride). */
static mo_status check_vec(const mo_tensor *t, const mo_tensor *x, size_t c)
{
    if (!t) return MO_OK;
    const mo_tensor *ts[2] = {x, t};
    MO_TRY(mo__check_live(2, ts));
    MO_TRY(mo__check_dtypes(2, ts));
    if (t->ndim != 1 || t->shape[0] != c) return MO_ERR_SHAPE;
    return MO_OK;
}

/* x (live, contiguous, ndim >= 2) as {N, C, L}. */
static mo_status bn_dims_of(const mo_tensor *x, bn_dims *d)
{
    const mo_tensor *ts[1] = {x};
    MO_TRY(mo__check_live(1, ts));
    if (x->ndim < 2) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(x)) return MO_ERR_LAYOUT;
    d->n = x->shape[0];
    d->c = x->shape[1];
    d->l = 1;
    for (int i = 2; i < x->ndim; i++) d->l *= x->shape[i]; /* fits: divides numel */
    d->m = d->n * d->l;
    return MO_OK;
}

/* Whether a and b share memory; exact for two 1-d tensors of one stride (interleaved
 * columns of one {C, k} buffer are disjoint), mo__overlaps' span test otherwise. */
static int overlaps(const mo_tensor *a, const mo_tensor *b)
{
    if (!mo__overlaps(a, b)) return 0;
    if (a->ndim == 1 && b->ndim == 1 && a->stride[0] == b->stride[0] && a->stride[0] > 1 &&
        a->shape[0] > 1 && b->shape[0] > 1) {
        const size_t s = (size_t)a->stride[0];
        const size_t diff = a->offset > b->offset ? a->offset - b->offset : b->offset - a->offset;
        return diff % s == 0;
    }
    return 1;
}

/* 0 when none of the n writable tensors overlaps another or one of the inputs. */
static int any_overlap(int n, const mo_tensor *const *outs, int nin, const mo_tensor *const *ins)
{
    for (int o = 0; o < n; o++) {
        if (!outs[o]) continue;
        for (int i = 0; i < nin; i++)
            if (ins[i] && overlaps(outs[o], ins[i])) return 1;
        for (int p = 0; p < o; p++)
            if (outs[p] && overlaps(outs[o], outs[p])) return 1;
    }
    return 0;
}

/* Channels per chunk: about MO__GRAIN_STREAM values (at least one channel). */
static size_t channel_grain(const bn_dims *d)
{
    const size_t g = d->m ? MO__GRAIN_STREAM / d->m : MO__GRAIN_STREAM;
    return g ? g : 1;
}

/* Element c of an optional {C} tensor of ops' dtype (def when t is NULL). */
static double vec_get(const bn_ops *ops, const mo_tensor *t, size_t c, double def)
{
    return t ? ops->get(mo_tensor_ptr(t), t->stride[0], c, def) : def;
}

static void vec_set(const bn_ops *ops, mo_tensor *t, size_t c, double v)
{
    ops->set(mo_tensor_ptr(t), t->stride[0], c, v);
}

/* The forward's operands (checked); a chunk normalizes the channels [lo, hi). */
typedef struct bn_fwd_job {
    const bn_ops *ops;
    const bn_dims *d;
    const void *x;
    void *y;
    mo_tensor *sm, *si, *rm, *rv;
    const mo_tensor *w, *b;
    int training;
    double momentum, eps;
} bn_fwd_job;

static void bn_fwd_chunk(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const bn_fwd_job *j = ctx;
    const bn_ops *ops = j->ops;
    (void)chunk;
    for (size_t c = lo; c < hi; c++) {
        double mean, var;
        if (j->training) {
            ops->stats(j->x, j->d, c, &mean, &var);
            if (j->rm) {
                /* PyTorch's running variance is the unbiased one */
                const double m = (double)j->d->m, unbiased = var * m / (m - 1.0);
                vec_set(ops, j->rm, c,
                        (1.0 - j->momentum) * vec_get(ops, j->rm, c, 0.0) + j->momentum * mean);
                vec_set(ops, j->rv, c,
                        (1.0 - j->momentum) * vec_get(ops, j->rv, c, 0.0) +
                            j->momentum * unbiased);
            }
        } else {
            mean = vec_get(ops, j->rm, c, 0.0);
            var = vec_get(ops, j->rv, c, 1.0);
        }
        const double invstd = 1.0 / sqrt(var + j->eps);
        const double scale = invstd * vec_get(ops, j->w, c, 1.0);
        vec_set(ops, j->sm, c, mean);
        vec_set(ops, j->si, c, invstd);
        ops->affine(j->x, j->y, j->d, c, mean, scale, vec_get(ops, j->b, c, 0.0));
    }
}

/* The backward's operands (checked); a chunk does the channels [lo, hi). */
typedef struct bn_bwd_job {
    const bn_ops *ops;
    const bn_dims *d;
    const void *x, *gy;
    void *gx; /* NULL: no input gradient */
    mo_tensor *dw, *db;
    const mo_tensor *w, *sm, *si;
    int training;
} bn_bwd_job;

static void bn_bwd_chunk(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const bn_bwd_job *j = ctx;
    const bn_ops *ops = j->ops;
    const double m = (double)j->d->m;
    (void)chunk;
    for (size_t c = lo; c < hi; c++) {
        const double mean = vec_get(ops, j->sm, c, 0.0), invstd = vec_get(ops, j->si, c, 0.0);
        double sg, sgx;
        ops->grad_sums(j->x, j->gy, j->d, c, mean, &sg, &sgx);
        if (j->dw) vec_set(ops, j->dw, c, vec_get(ops, j->dw, c, 0.0) + sgx * invstd);
        if (j->db) vec_set(ops, j->db, c, vec_get(ops, j->db, c, 0.0) + sg);
        if (!j->gx) continue;
        const double scale = invstd * vec_get(ops, j->w, c, 1.0);
        /* training: the batch statistics depend on x too (mean and variance terms) */
        const double mg = j->training ? sg / m : 0.0;
        const double k = j->training ? sgx * invstd * invstd / m : 0.0;
        ops->gx(j->x, j->gy, j->gx, j->d, c, mean, mg, k, scale);
    }
}

/* Checks everything the forward touches (see moonopt_conv.h). */
static mo_status forward_check(mo_tensor *y, mo_tensor *sm, mo_tensor *si, const mo_tensor *x,
                               const mo_tensor *w, const mo_tensor *b, mo_tensor *rm,
                               mo_tensor *rv, int training, double momentum, double eps,
                               bn_dims *d)
{
    MO_TRY(bn_dims_of(x, d));
    const mo_tensor *vecs[6] = {w, b, rm, rv, sm, si};
    for (int i = 0; i < 6; i++) MO_TRY(check_vec(vecs[i], x, d->c));
    if (!sm || !si) return MO_ERR_ARG;
    const mo_tensor *ts[2] = {x, y};
    MO_TRY(mo__check_live(2, ts));
    MO_TRY(mo__check_dtypes(2, ts));
    if (!mo_tensor_same_shape(x, y)) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(y)) return MO_ERR_LAYOUT;
    if (!(eps > 0.0) || !(momentum >= 0.0 && momentum <= 1.0)) return MO_ERR_ARG;
    if ((rm == NULL) != (rv == NULL)) return MO_ERR_ARG;
    if (!training && !rm) return MO_ERR_ARG;
    if (training && d->m <= 1) return MO_ERR_SHAPE;
    const mo_tensor *outs[5] = {y, sm, si, rm, rv}, *ins[3] = {x, w, b};
    if (any_overlap(5, outs, 3, ins)) return MO_ERR_ARG;
    return MO_OK;
}

mo_status mo_batch_norm_forward(mo_tensor *y, mo_tensor *save_mean, mo_tensor *save_invstd,
                                const mo_tensor *x, const mo_tensor *weight,
                                const mo_tensor *bias, mo_tensor *running_mean,
                                mo_tensor *running_var, int training, double momentum,
                                double eps)
{
    bn_dims d;
    MO_TRY(forward_check(y, save_mean, save_invstd, x, weight, bias, running_mean, running_var,
                         training, momentum, eps, &d));
    bn_fwd_job j = {.ops = x->dtype == MO_FLOAT64 ? &bn_ops_f64 : &bn_ops_f32, .d = &d,
                    .x = mo_tensor_ptr(x), .y = mo_tensor_ptr(y), .sm = save_mean,
                    .si = save_invstd, .w = weight, .b = bias, .rm = running_mean,
                    .rv = running_var, .training = training, .momentum = momentum, .eps = eps};
    mo__parallel_for(d.c, channel_grain(&d), bn_fwd_chunk, &j);
    return MO_OK;
}

mo_status mo_batch_norm_backward(mo_tensor *gx, mo_tensor *dweight, mo_tensor *dbias,
                                 const mo_tensor *x, const mo_tensor *gy,
                                 const mo_tensor *weight, const mo_tensor *save_mean,
                                 const mo_tensor *save_invstd, int training)
{
    bn_dims d;
    MO_TRY(bn_dims_of(x, &d));
    const mo_tensor *vecs[5] = {weight, save_mean, save_invstd, dweight, dbias};
    for (int i = 0; i < 5; i++) MO_TRY(check_vec(vecs[i], x, d.c));
    if (!save_mean || !save_invstd) return MO_ERR_ARG;
    const mo_tensor *ts[2] = {x, gy};
    MO_TRY(mo__check_live(2, ts));
    MO_TRY(mo__check_dtypes(2, ts));
    if (!mo_tensor_same_shape(x, gy)) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(gy)) return MO_ERR_LAYOUT;
    if (gx) {
        const mo_tensor *tg[2] = {x, gx};
        MO_TRY(mo__check_live(2, tg));
        MO_TRY(mo__check_dtypes(2, tg));
        if (!mo_tensor_same_shape(x, gx)) return MO_ERR_SHAPE;
        if (!mo_tensor_is_contiguous(gx)) return MO_ERR_LAYOUT;
    }
    const mo_tensor *outs[3] = {gx, dweight, dbias};
    const mo_tensor *ins[5] = {x, gy, weight, save_mean, save_invstd};
    if (any_overlap(3, outs, 5, ins)) return MO_ERR_ARG;
    if (training && d.m == 0) return MO_ERR_SHAPE;

    bn_bwd_job j = {.ops = x->dtype == MO_FLOAT64 ? &bn_ops_f64 : &bn_ops_f32, .d = &d,
                    .x = mo_tensor_ptr(x), .gy = mo_tensor_ptr(gy),
                    .gx = gx ? mo_tensor_ptr(gx) : NULL, .dw = dweight, .db = dbias,
                    .w = weight, .sm = save_mean, .si = save_invstd, .training = training};
    mo__parallel_for(d.c, channel_grain(&d), bn_bwd_chunk, &j);
    return MO_OK;
}
