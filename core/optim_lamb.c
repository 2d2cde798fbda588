/*
 * optim_lamb.c - LAMB (You et al. 2020, "Large Batch Optimization for Deep
 * Learning"): Adam's bias-corrected direction plus decoupled weight decay,
 * rescaled per tensor by the trust ratio ||w|| / ||r||.
 */
#include "optim_internal.h"

#include <math.h>

void mo_lamb_defaults(mo_lamb_config *c)
{
    c->lr = 1e-3;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-6;
    c->weight_decay = 0.0;
    c->bias_correction = 1;
    c->maximize = 0;
}

mo_status mo_lamb_check(const mo_lamb_config *c)
{
    if (!c) return MO_ERR_ARG;
    if (!mo__adam_family_ok(c->lr, c->beta1, c->beta2, c->eps, c->weight_decay)) return MO_ERR_ARG;
    return MO_OK;
}

/* The per-step constants and the direction r of one element (both passes compute it alike). */
typedef struct lamb_k {
    float b1, omb1, b2, omb2, bc1, bc2, eps, wd;
} lamb_k;

MO__INLINE float lamb_dir(const lamb_k *k, float mi, float vi, float wi)
{
    float mh = mi / k->bc1, vh = vi / k->bc2;
    return mh / (sqrtf(vh) + k->eps) + k->wd * wi;
}

mo_status mo_lamb_update(float *w, const float *g, float *m, float *v, size_t n,
                         const mo_lamb_config *c, int64_t step, double *trust_ratio)
{
    if (!w || !g || !m || !v || !c || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_lamb_check(c));
    lamb_k k;
    k.b1 = (float)c->beta1;
    k.omb1 = (float)(1.0 - c->beta1);
    k.b2 = (float)c->beta2;
    k.omb2 = (float)(1.0 - c->beta2);
    k.bc1 = c->bias_correction ? (float)(1.0 - pow(c->beta1, (double)step)) : 1.0f;
    k.bc2 = c->bias_correction ? (float)(1.0 - pow(c->beta2, (double)step)) : 1.0f;
    k.eps = (float)c->eps;
    k.wd = (float)c->weight_decay;
    const int neg = c->maximize != 0;
    /* pass 1: the moments, and the norms of w and of the direction r (in double) */
    double wn2 = 0.0, rn2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        float gi = neg ? -g[i] : g[i], wi = w[i];
        float mi = m[i] * k.b1 + k.omb1 * gi;
        float vi = v[i] * k.b2 + (k.omb2 * gi) * gi;
        m[i] = mi;
        v[i] = vi;
        float r = lamb_dir(&k, mi, vi, wi);
        wn2 += (double)wi * (double)wi;
        rn2 += (double)r * (double)r;
    }
    /* the layer-wise trust ratio; 1 when either norm is 0 (a fresh zero tensor, a zero step) */
    double wn = sqrt(wn2), rn = sqrt(rn2);
    double ratio = (wn > 0.0 && rn > 0.0) ? wn / rn : 1.0;
    /* pass 2: r again from the stored moments (same operations, same value), then the step */
    const float neg_step = (float)(-c->lr * ratio);
    for (size_t i = 0; i < n; i++) {
        float wi = w[i];
        w[i] = wi + neg_step * lamb_dir(&k, m[i], v[i], wi);
    }
    if (trust_ratio) *trust_ratio = ratio;
    return MO_OK;
}

mo_status mo_lamb_step(mo_tensor *w, const mo_tensor *g, mo_tensor *m, mo_tensor *v,
                       const mo_lamb_config *c, int64_t step, double *trust_ratio)
{
    if (!c || !m || !v || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_lamb_check(c));
    const mo_tensor *ts[4] = {w, g, m, v};
    mo__opt_args a;
    MO_TRY(mo__opt_begin(&a, 4, ts));
    mo_status st = mo_lamb_update(a.ptr[0], a.ptr[1], a.ptr[2], a.ptr[3], a.n, c, step, trust_ratio);
    mo__opt_finish(&a, st == MO_OK);
    return st;
}

/* ---- descriptor (see moonopt_optim.h "Optimizer descriptors") ---- */

static void lamb_defaults(void *c) { mo_lamb_defaults(c); }
static mo_status lamb_check(const void *c) { return mo_lamb_check(c); }
static mo_status lamb_step(const void *c, mo_optim_call *a)
{
    return mo_lamb_step(a->w, a->g, a->buf[0], a->buf[1], c, a->step, &a->scalar[0]);
}

MO__PAIR_OK(mo_lamb_config, beta1, beta2);
static const mo_optim_option lamb_options[] = {
    MO__OPTION(mo_lamb_config, "lr", MO_OPTT_NUMBER, lr),
    MO__PAIR(mo_lamb_config, "betas", beta1),
    MO__OPTION(mo_lamb_config, "eps", MO_OPTT_NUMBER, eps),
    MO__OPTION(mo_lamb_config, "weight_decay", MO_OPTT_NUMBER, weight_decay),
    MO__OPTION(mo_lamb_config, "bias_correction", MO_OPTT_BOOL, bias_correction),
    MO__OPTION(mo_lamb_config, "maximize", MO_OPTT_BOOL, maximize),
};
static const mo_optim_buffer lamb_buffers[] = {
    {"exp_avg", NULL, MO_OPTI_ZERO, NULL},
    {"exp_avg_sq", NULL, MO_OPTI_ZERO, NULL},
};
/* the last trust ratio, kept for inspection only */
static const mo_optim_scalar lamb_scalars[] = {{"trust_ratio", 1.0, 0}};

const mo_optim_desc mo__optim_lamb = {
    "lamb", sizeof(mo_lamb_config), lamb_defaults, lamb_check,
    lamb_options, MO__COUNT(lamb_options), lamb_buffers, MO__COUNT(lamb_buffers),
    lamb_scalars, MO__COUNT(lamb_scalars), 1, 0, lamb_step,
};
