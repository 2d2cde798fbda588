/*
 * optim_lamb.c - LAMB (You et al. 2020, "Large Batch Optimization for Deep
 * Learning"): Adam's bias-corrected direction plus decoupled weight decay,
 * rescaled per tensor by the trust ratio ||w|| / ||r||. The passes are in optim_lamb_t.h,
 * instantiated for float32 and float64 (docs/design.md "Two dtypes").
 */
#include "optim_internal.h"

#include <tgmath.h> /* sqrt, pow pick float or double by argument (optim_lamb_t.h) */

#define T float
#define TN(name) name##_f32
#include "optim_lamb_t.h"
#define T double
#define TN(name) name##_f64
#include "optim_lamb_t.h"

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

mo_status mo_lamb_update(float *w, const float *g, float *m, float *v, size_t n,
                         const mo_lamb_config *c, int64_t step, double *trust_ratio)
{
    if (!w || !g || !m || !v || !c || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_lamb_check(c));
    double ratio = lamb_run_f32(w, g, m, v, n, c, step);
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
    double ratio = a.dtype == MO_FLOAT64
                       ? lamb_run_f64(a.ptr[0], a.ptr[1], a.ptr[2], a.ptr[3], a.n, c, step)
                       : lamb_run_f32(a.ptr[0], a.ptr[1], a.ptr[2], a.ptr[3], a.n, c, step);
    mo__opt_finish(&a, 1);
    if (trust_ratio) *trust_ratio = ratio;
    return MO_OK;
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
    {"exp_avg", NULL, MO_OPTI_ZERO, NULL, MO_LEAN_NONE},
    {"exp_avg_sq", NULL, MO_OPTI_ZERO, NULL, MO_LEAN_NONE},
};
/* the last trust ratio, kept for inspection only */
static const mo_optim_scalar lamb_scalars[] = {{"trust_ratio", 1.0, 0}};

const mo_optim_desc mo__optim_lamb = {
    "lamb", sizeof(mo_lamb_config), lamb_defaults, lamb_check,
    lamb_options, MO__COUNT(lamb_options), lamb_buffers, MO__COUNT(lamb_buffers),
    lamb_scalars, MO__COUNT(lamb_scalars), 1, 0, lamb_step,
};
