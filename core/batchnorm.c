/*
 * batchnorm.c - batch normalization, forward and backward (moonopt_conv.h);
 * docs/design.md "Convolutions".
 *
 * x {N, C, ...} is walked as {N, C, L} (L the product of the dims after C, 1 for
 * {N, C}); every channel is independent: its statistics, its scalars (scale,
 * shift) and its loops (batchnorm_t.h). The {C} tensors (weight, bias, running
 * statistics, saved statistics, their gradients) may have any stride: they are
 * read or written once per channel.
 */
#include "moonopt_internal.h"

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
    const bn_ops *ops = x->dtype == MO_FLOAT64 ? &bn_ops_f64 : &bn_ops_f32;
    const void *wp = weight ? mo_tensor_ptr(weight) : NULL, *bp = bias ? mo_tensor_ptr(bias) : NULL;
    void *rmp = running_mean ? mo_tensor_ptr(running_mean) : NULL;
    void *rvp = running_var ? mo_tensor_ptr(running_var) : NULL;
    const ptrdiff_t ws = weight ? weight->stride[0] : 0, bs = bias ? bias->stride[0] : 0;
    const ptrdiff_t rms = rmp ? running_mean->stride[0] : 0, rvs = rvp ? running_var->stride[0] : 0;
    for (size_t c = 0; c < d.c; c++) {
        double mean, var;
        if (training) {
            ops->stats(mo_tensor_ptr(x), &d, c, &mean, &var);
            if (rmp) {
                /* PyTorch's running variance is the unbiased one */
                const double unbiased = var * (double)d.m / (double)(d.m - 1);
                ops->set(rmp, rms, c, (1.0 - momentum) * ops->get(rmp, rms, c, 0.0) + momentum * mean);
                ops->set(rvp, rvs, c,
                         (1.0 - momentum) * ops->get(rvp, rvs, c, 0.0) + momentum * unbiased);
            }
        } else {
            mean = ops->get(rmp, rms, c, 0.0);
            var = ops->get(rvp, rvs, c, 1.0);
        }
        const double invstd = 1.0 / sqrt(var + eps);
        const double scale = invstd * ops->get(wp, ws, c, 1.0);
        ops->set(mo_tensor_ptr(save_mean), save_mean->stride[0], c, mean);
        ops->set(mo_tensor_ptr(save_invstd), save_invstd->stride[0], c, invstd);
        ops->affine(mo_tensor_ptr(x), mo_tensor_ptr(y), &d, c, mean, scale, ops->get(bp, bs, c, 0.0));
    }
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

    const bn_ops *ops = x->dtype == MO_FLOAT64 ? &bn_ops_f64 : &bn_ops_f32;
    const void *wp = weight ? mo_tensor_ptr(weight) : NULL;
    const ptrdiff_t ws = weight ? weight->stride[0] : 0;
    for (size_t c = 0; c < d.c; c++) {
        const double mean = ops->get(mo_tensor_ptr(save_mean), save_mean->stride[0], c, 0.0);
        const double invstd = ops->get(mo_tensor_ptr(save_invstd), save_invstd->stride[0], c, 0.0);
        double sg, sgx;
        ops->grad_sums(mo_tensor_ptr(x), mo_tensor_ptr(gy), &d, c, mean, &sg, &sgx);
        if (dweight) {
            void *p = mo_tensor_ptr(dweight);
            ops->set(p, dweight->stride[0], c, ops->get(p, dweight->stride[0], c, 0.0) + sgx * invstd);
        }
        if (dbias) {
            void *p = mo_tensor_ptr(dbias);
            ops->set(p, dbias->stride[0], c, ops->get(p, dbias->stride[0], c, 0.0) + sg);
        }
        if (!gx) continue;
        const double scale = invstd * ops->get(wp, ws, c, 1.0);
        /* training: the batch statistics depend on x too (mean and variance terms) */
        const double mg = training ? sg / (double)d.m : 0.0;
        const double k = training ? sgx * invstd * invstd / (double)d.m : 0.0;
        ops->gx(mo_tensor_ptr(x), mo_tensor_ptr(gy), mo_tensor_ptr(gx), &d, c, mean, mg, k, scale);
    }
    return MO_OK;
}
