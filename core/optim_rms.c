/*
 * optim_rms.c - the running-average-of-squares family: RMSprop (centered,
 * momentum), Adagrad (lr_decay, initial accumulator) and Adadelta, as
 * PyTorch 1.13's torch.optim classes of those names. The loops are in optim_rms_t.h,
 * instantiated for float32 and float64 (docs/design.md "Two dtypes").
 */
#include "optim_internal.h"

#include <tgmath.h> /* sqrt picks float or double by argument (optim_rms_t.h) */

#define T float
#define TN(name) name##_f32
#include "optim_rms_t.h"
#define T double
#define TN(name) name##_f64
#include "optim_rms_t.h"

/* ---- RMSprop ---- */

void mo_rmsprop_defaults(mo_rmsprop_config *c)
{
    c->lr = 1e-2;
    c->alpha = 0.99;
    c->eps = 1e-8;
    c->weight_decay = 0.0;
    c->momentum = 0.0;
    c->centered = 0;
    c->maximize = 0;
}

mo_status mo_rmsprop_check(const mo_rmsprop_config *c)
{
    if (!c) return MO_ERR_ARG;
    if (!mo__nonneg(c->lr) || !mo__nonneg(c->alpha) || !mo__pos(c->eps) ||
        !mo__nonneg(c->weight_decay) || !mo__nonneg(c->momentum))
        return MO_ERR_ARG;
    return MO_OK;
}

/* ---- on the pool: one body per algorithm and dtype (p: w, g, then the state arrays) ---- */

typedef struct rms_job {
    const void *c;
    int64_t step;
} rms_job;

#define RMS_BODIES(sfx, T)                                                                   \
    static void rmsprop_body_##sfx(const void *ctx, void *const *p, size_t n, size_t off)    \
    {                                                                                        \
        (void)off;                                                                           \
        rmsprop_run_##sfx((T *)p[0], (const T *)p[1], (T *)p[2], (T *)p[3], (T *)p[4], n,    \
                          ((const rms_job *)ctx)->c);                                        \
    }                                                                                        \
    static void adagrad_body_##sfx(const void *ctx, void *const *p, size_t n, size_t off)    \
    {                                                                                        \
        const rms_job *j = ctx;                                                              \
        (void)off;                                                                           \
        adagrad_run_##sfx((T *)p[0], (const T *)p[1], (T *)p[2], n, j->c, j->step);          \
    }                                                                                        \
    static void adadelta_body_##sfx(const void *ctx, void *const *p, size_t n, size_t off)   \
    {                                                                                        \
        (void)off;                                                                           \
        adadelta_run_##sfx((T *)p[0], (const T *)p[1], (T *)p[2], (T *)p[3], n,              \
                           ((const rms_job *)ctx)->c);                                       \
    }
RMS_BODIES(f32, float)
RMS_BODIES(f64, double)

mo_status mo_rmsprop_update(float *w, const float *g, float *square_avg, float *grad_avg,
                            float *buf, size_t n, const mo_rmsprop_config *c)
{
    if (!w || !g || !square_avg || !c) return MO_ERR_ARG;
    MO_TRY(mo_rmsprop_check(c));
    const int centered = c->centered != 0, mom = c->momentum > 0.0;
    if ((centered && !grad_avg) || (mom && !buf)) return MO_ERR_ARG;
    rms_job j = {c, 0};
    void *p[5] = {w, MO__UNCONST(g), square_avg, centered ? grad_avg : NULL, mom ? buf : NULL};
    mo__opt_parallel_arrays(MO_FLOAT32, n, 5, p, rmsprop_body_f32, &j);
    return MO_OK;
}

mo_status mo_rmsprop_step(mo_tensor *w, const mo_tensor *g, mo_tensor *square_avg,
                          mo_tensor *grad_avg, mo_tensor *buf, const mo_rmsprop_config *c)
{
    if (!c || !square_avg) return MO_ERR_ARG;
    MO_TRY(mo_rmsprop_check(c));
    const int centered = c->centered != 0, mom = c->momentum > 0.0;
    if ((centered && !grad_avg) || (mom && !buf)) return MO_ERR_ARG;
    const mo_tensor *ts[5] = {w, g, square_avg, centered ? grad_avg : NULL, mom ? buf : NULL};
    mo__opt_args a;
    MO_TRY(mo__opt_begin(&a, 5, ts));
    rms_job j = {c, 0};
    mo__opt_parallel(&a, a.dtype == MO_FLOAT64 ? rmsprop_body_f64 : rmsprop_body_f32, &j);
    mo__opt_finish(&a, 1);
    return MO_OK;
}

/* ---- Adagrad ---- */

void mo_adagrad_defaults(mo_adagrad_config *c)
{
    c->lr = 1e-2;
    c->lr_decay = 0.0;
    c->weight_decay = 0.0;
    c->initial_accumulator_value = 0.0;
    c->eps = 1e-10;
    c->maximize = 0;
}

mo_status mo_adagrad_check(const mo_adagrad_config *c)
{
    if (!c) return MO_ERR_ARG;
    if (!mo__nonneg(c->lr) || !mo__nonneg(c->lr_decay) || !mo__nonneg(c->weight_decay) ||
        !mo__nonneg(c->initial_accumulator_value) || !mo__pos(c->eps))
        return MO_ERR_ARG;
    return MO_OK;
}

mo_status mo_adagrad_update(float *w, const float *g, float *sum, size_t n,
                            const mo_adagrad_config *c, int64_t step)
{
    if (!w || !g || !sum || !c || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_adagrad_check(c));
    rms_job j = {c, step};
    void *p[3] = {w, MO__UNCONST(g), sum};
    mo__opt_parallel_arrays(MO_FLOAT32, n, 3, p, adagrad_body_f32, &j);
    return MO_OK;
}

mo_status mo_adagrad_step(mo_tensor *w, const mo_tensor *g, mo_tensor *sum,
                          const mo_adagrad_config *c, int64_t step)
{
    if (!c || !sum || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_adagrad_check(c));
    const mo_tensor *ts[3] = {w, g, sum};
    mo__opt_args a;
    MO_TRY(mo__opt_begin(&a, 3, ts));
    rms_job j = {c, step};
    mo__opt_parallel(&a, a.dtype == MO_FLOAT64 ? adagrad_body_f64 : adagrad_body_f32, &j);
    mo__opt_finish(&a, 1);
    return MO_OK;
}

/* ---- Adadelta ---- */

void mo_adadelta_defaults(mo_adadelta_config *c)
{
    c->lr = 1.0;
    c->rho = 0.9;
    c->eps = 1e-6;
    c->weight_decay = 0.0;
    c->maximize = 0;
}

mo_status mo_adadelta_check(const mo_adadelta_config *c)
{
    if (!c) return MO_ERR_ARG;
    if (!mo__nonneg(c->lr) || !(c->rho >= 0.0 && c->rho <= 1.0) || !mo__pos(c->eps) ||
        !mo__nonneg(c->weight_decay))
        return MO_ERR_ARG;
    return MO_OK;
}

mo_status mo_adadelta_update(float *w, const float *g, float *square_avg, float *acc_delta,
                             size_t n, const mo_adadelta_config *c)
{
    if (!w || !g || !square_avg || !acc_delta || !c) return MO_ERR_ARG;
    MO_TRY(mo_adadelta_check(c));
    rms_job j = {c, 0};
    void *p[4] = {w, MO__UNCONST(g), square_avg, acc_delta};
    mo__opt_parallel_arrays(MO_FLOAT32, n, 4, p, adadelta_body_f32, &j);
    return MO_OK;
}

mo_status mo_adadelta_step(mo_tensor *w, const mo_tensor *g, mo_tensor *square_avg,
                           mo_tensor *acc_delta, const mo_adadelta_config *c)
{
    if (!c || !square_avg || !acc_delta) return MO_ERR_ARG;
    MO_TRY(mo_adadelta_check(c));
    const mo_tensor *ts[4] = {w, g, square_avg, acc_delta};
    mo__opt_args a;
    MO_TRY(mo__opt_begin(&a, 4, ts));
    rms_job j = {c, 0};
    mo__opt_parallel(&a, a.dtype == MO_FLOAT64 ? adadelta_body_f64 : adadelta_body_f32, &j);
    mo__opt_finish(&a, 1);
    return MO_OK;
}

/* ---- descriptors (see moonopt_optim.h "Optimizer descriptors") ---- */

static void rmsprop_defaults(void *c) { mo_rmsprop_defaults(c); }
static mo_status rmsprop_check(const void *c) { return mo_rmsprop_check(c); }
static mo_status rmsprop_step(const void *c, mo_optim_call *a)
{
    return mo_rmsprop_step(a->w, a->g, a->buf[0], a->buf[1], a->buf[2], c);
}

static const mo_optim_option rmsprop_options[] = {
    MO__OPTION(mo_rmsprop_config, "lr", MO_OPTT_NUMBER, lr),
    MO__OPTION(mo_rmsprop_config, "alpha", MO_OPTT_NUMBER, alpha),
    MO__OPTION(mo_rmsprop_config, "eps", MO_OPTT_NUMBER, eps),
    MO__OPTION(mo_rmsprop_config, "weight_decay", MO_OPTT_NUMBER, weight_decay),
    MO__OPTION(mo_rmsprop_config, "momentum", MO_OPTT_NUMBER, momentum),
    MO__OPTION(mo_rmsprop_config, "centered", MO_OPTT_BOOL, centered),
    MO__OPTION(mo_rmsprop_config, "maximize", MO_OPTT_BOOL, maximize),
};
/* the optional buffers appear when their option is (or becomes) on */
static const mo_optim_buffer rmsprop_buffers[] = {
    {"square_avg", NULL, MO_OPTI_ZERO, NULL, MO_LEAN_NONE},
    {"grad_avg", "centered", MO_OPTI_ZERO, NULL, MO_LEAN_NONE},
    {"momentum_buffer", "momentum", MO_OPTI_ZERO, NULL, MO_LEAN_NONE},
};

const mo_optim_desc mo__optim_rmsprop = {
    "rmsprop", sizeof(mo_rmsprop_config), rmsprop_defaults, rmsprop_check,
    rmsprop_options, MO__COUNT(rmsprop_options), rmsprop_buffers, MO__COUNT(rmsprop_buffers),
    NULL, 0, 1, 0, rmsprop_step,
};

static void adagrad_defaults(void *c) { mo_adagrad_defaults(c); }
static mo_status adagrad_check(const void *c) { return mo_adagrad_check(c); }
static mo_status adagrad_step(const void *c, mo_optim_call *a)
{
    return mo_adagrad_step(a->w, a->g, a->buf[0], c, a->step);
}

static const mo_optim_option adagrad_options[] = {
    MO__OPTION(mo_adagrad_config, "lr", MO_OPTT_NUMBER, lr),
    MO__OPTION(mo_adagrad_config, "lr_decay", MO_OPTT_NUMBER, lr_decay),
    MO__OPTION(mo_adagrad_config, "weight_decay", MO_OPTT_NUMBER, weight_decay),
    MO__OPTION(mo_adagrad_config, "initial_accumulator_value", MO_OPTT_NUMBER,
               initial_accumulator_value),
    MO__OPTION(mo_adagrad_config, "eps", MO_OPTT_NUMBER, eps),
    MO__OPTION(mo_adagrad_config, "maximize", MO_OPTT_BOOL, maximize),
};
static const mo_optim_buffer adagrad_buffers[] = {
    {"sum", NULL, MO_OPTI_OPTION, "initial_accumulator_value", MO_LEAN_NONE},
};

const mo_optim_desc mo__optim_adagrad = {
    "adagrad", sizeof(mo_adagrad_config), adagrad_defaults, adagrad_check,
    adagrad_options, MO__COUNT(adagrad_options), adagrad_buffers, MO__COUNT(adagrad_buffers),
    NULL, 0, 1, 0, adagrad_step,
};

static void adadelta_defaults(void *c) { mo_adadelta_defaults(c); }
static mo_status adadelta_check(const void *c) { return mo_adadelta_check(c); }
static mo_status adadelta_step(const void *c, mo_optim_call *a)
{
    return mo_adadelta_step(a->w, a->g, a->buf[0], a->buf[1], c);
}

static const mo_optim_option adadelta_options[] = {
    MO__OPTION(mo_adadelta_config, "lr", MO_OPTT_NUMBER, lr),
    MO__OPTION(mo_adadelta_config, "rho", MO_OPTT_NUMBER, rho),
    MO__OPTION(mo_adadelta_config, "eps", MO_OPTT_NUMBER, eps),
    MO__OPTION(mo_adadelta_config, "weight_decay", MO_OPTT_NUMBER, weight_decay),
    MO__OPTION(mo_adadelta_config, "maximize", MO_OPTT_BOOL, maximize),
};
static const mo_optim_buffer adadelta_buffers[] = {
    {"square_avg", NULL, MO_OPTI_ZERO, NULL, MO_LEAN_NONE},
    {"acc_delta", NULL, MO_OPTI_ZERO, NULL, MO_LEAN_NONE},
};

const mo_optim_desc mo__optim_adadelta = {
    "adadelta", sizeof(mo_adadelta_config), adadelta_defaults, adadelta_check,
    adadelta_options, MO__COUNT(adadelta_options), adadelta_buffers, MO__COUNT(adadelta_buffers),
    NULL, 0, 1, 0, adadelta_step,
};
