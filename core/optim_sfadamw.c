/*
 * optim_sfadamw.c - schedule-free AdamW (Defazio et al. 2024, "The Road Less
 * Scheduled"), as the authors' reference code (schedulefree/adamw_schedulefree.py,
 * AdamWScheduleFree.step) computes it.
 *
 * Three sequences share two buffers: the parameter w holds y (the point the
 * gradient is taken at, train mode), state z the base iterate, and the average
 * x is never stored: x = (y - (1-b1)*z) / b1, which the Lua layer's eval()
 * swaps into w (and train() swaps back).
 *
 * Per step k (0-based; `step` = k+1), in double:
 *   sched  = k < warmup_steps ? (k+1)/warmup_steps : 1
 *   lr_k   = lr * sched * sqrt(1 - b2^(k+1))       (the second moment's bias correction)
 *   lr_max = max(lr_max, lr_k)                      (per-param state, starts at -1)
 *   weight = (k+1)^r * lr_max^weight_lr_power
 *   weight_sum += weight                             (per-param state, starts at 0)
 *   ckp1   = weight / weight_sum (0 when weight_sum is 0)
 * then per element, in the tensors' dtype (optim_sfadamw_t.h, instantiated for float32
 * and float64, docs/design.md "Two dtypes"), in the reference's order:
 *   v  = v*b2 + ((1-b2)*g)*g
 *   gn = g / (sqrt(v) + eps) + wd*y                  (decay taken at y)
 *   y  = lerp(y, z, ckp1) + (lr_k*(b1*(1-ckp1) - 1)) * gn
 *   z  = z - lr_k * gn
 * lerp as PyTorch's: a + t*(b-a) for t < 0.5, else b - (b-a)*(1-t).
 * The reference keeps k, weight_sum and lr_max per param group; here they are
 * per parameter (equal while a group's params step together).
 */
#include "optim_internal.h"

#include <tgmath.h> /* sqrt, pow pick float or double by argument */

#define T float
#define TN(name) name##_f32
#include "optim_sfadamw_t.h"
#define T double
#define TN(name) name##_f64
#include "optim_sfadamw_t.h"

void mo_sfadamw_defaults(mo_sfadamw_config *c)
{
    c->lr = 0.0025;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->weight_decay = 0.0;
    c->warmup_steps = 0.0;
    c->r = 0.0;
    c->weight_lr_power = 2.0;
}

mo_status mo_sfadamw_check(const mo_sfadamw_config *c)
{
    if (!c) return MO_ERR_ARG;
    /* beta1 > 0: eval() divides by it */
    if (!mo__adam_family_ok(c->lr, c->beta1, c->beta2, c->eps, c->weight_decay) ||
        !(c->beta1 > 0.0) || !mo__nonneg(c->warmup_steps) ||
        c->warmup_steps != floor(c->warmup_steps) || !mo__nonneg(c->r) ||
        !mo__nonneg(c->weight_lr_power))
        return MO_ERR_ARG;
    return MO_OK;
}

/* On the pool: p: y, g, z, v. */
typedef struct sf_job {
    const mo_sfadamw_config *c;
    double lr, ck;
} sf_job;

static void sf_body_f32(const void *ctx, void *const *p, size_t n, size_t off)
{
    const sf_job *j = ctx;
    (void)off;
    sf_run_f32(p[0], p[1], p[2], p[3], n, j->c, j->lr, j->ck);
}

static void sf_body_f64(const void *ctx, void *const *p, size_t n, size_t off)
{
    const sf_job *j = ctx;
    (void)off;
    sf_run_f64(p[0], p[1], p[2], p[3], n, j->c, j->lr, j->ck);
}

/* The per-step scalars above; fails (nothing changed) when they are not finite. */
static mo_status sf_scalars(const mo_sfadamw_config *c, int64_t step, double *weight_sum,
                            double *lr_max, double *lr_k, double *ckp1)
{
    double k1 = (double)step;
    double sched = k1 - 1.0 < c->warmup_steps ? k1 / c->warmup_steps : 1.0;
    double lr = c->lr * sched * sqrt(1.0 - pow(c->beta2, k1));
    double mx = lr > *lr_max ? lr : *lr_max;
    double weight = pow(k1, c->r) * pow(mx, c->weight_lr_power);
    double sum = *weight_sum + weight;
    double ck = sum != 0.0 ? weight / sum : 0.0;
    if (!isfinite(lr) || !isfinite(sum) || !isfinite(ck)) return MO_ERR_ARG;
    *lr_k = lr;
    *lr_max = mx;
    *weight_sum = sum;
    *ckp1 = ck;
    return MO_OK;
}

mo_status mo_sfadamw_update(float *y, const float *g, float *z, float *v, size_t n,
                            const mo_sfadamw_config *c, int64_t step, double *weight_sum,
                            double *lr_max)
{
    if (!y || !g || !z || !v || !c || !weight_sum || !lr_max || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_sfadamw_check(c));
    double sum = *weight_sum, mx = *lr_max, lr, ck;
    MO_TRY(sf_scalars(c, step, &sum, &mx, &lr, &ck));
    sf_job j = {c, lr, ck};
    void *p[4] = {y, MO__UNCONST(g), z, v};
    mo__opt_parallel_arrays(MO_FLOAT32, n, 4, p, sf_body_f32, &j);
    *weight_sum = sum;
    *lr_max = mx;
    return MO_OK;
}

mo_status mo_sfadamw_step(mo_tensor *y, const mo_tensor *g, mo_tensor *z, mo_tensor *v,
                          const mo_sfadamw_config *c, int64_t step, double *weight_sum,
                          double *lr_max)
{
    if (!c || !z || !v || !weight_sum || !lr_max || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_sfadamw_check(c));
    /* the scalars first: a failure there leaves everything unchanged */
    double sum = *weight_sum, mx = *lr_max, lr, ck;
    MO_TRY(sf_scalars(c, step, &sum, &mx, &lr, &ck));
    const mo_tensor *ts[4] = {y, g, z, v};
    mo__opt_args a;
    MO_TRY(mo__opt_begin(&a, 4, ts));
    sf_job j = {c, lr, ck};
    mo__opt_parallel(&a, a.dtype == MO_FLOAT64 ? sf_body_f64 : sf_body_f32, &j);
    mo__opt_finish(&a, 1);
    *weight_sum = sum;
    *lr_max = mx;
    return MO_OK;
}

/* ---- descriptor (see moonopt_optim.h "Optimizer descriptors") ---- */

static void sf_defaults(void *c) { mo_sfadamw_defaults(c); }
static mo_status sf_check(const void *c) { return mo_sfadamw_check(c); }
static mo_status sf_step(const void *c, mo_optim_call *a)
{
    return mo_sfadamw_step(a->w, a->g, a->buf[0], a->buf[1], c, a->step, &a->scalar[0],
                           &a->scalar[1]);
}

MO__PAIR_OK(mo_sfadamw_config, beta1, beta2);
static const mo_optim_option sf_options[] = {
    MO__OPTION(mo_sfadamw_config, "lr", MO_OPTT_NUMBER, lr),
    MO__PAIR(mo_sfadamw_config, "betas", beta1),
    MO__OPTION(mo_sfadamw_config, "eps", MO_OPTT_NUMBER, eps),
    MO__OPTION(mo_sfadamw_config, "weight_decay", MO_OPTT_NUMBER, weight_decay),
    MO__OPTION(mo_sfadamw_config, "warmup_steps", MO_OPTT_NUMBER, warmup_steps),
    MO__OPTION(mo_sfadamw_config, "r", MO_OPTT_NUMBER, r),
    MO__OPTION(mo_sfadamw_config, "weight_lr_power", MO_OPTT_NUMBER, weight_lr_power),
};
/* z starts at the parameter (the reference's torch.clone(p.data)) */
static const mo_optim_buffer sf_buffers[] = {
    {"z", NULL, MO_OPTI_PARAM, NULL, MO_LEAN_NONE},
    {"exp_avg_sq", NULL, MO_OPTI_ZERO, NULL, MO_LEAN_NONE},
};
static const mo_optim_scalar sf_scalars_desc[] = {{"weight_sum", 0.0, 1}, {"lr_max", -1.0, 1}};

const mo_optim_desc mo__optim_sfadamw = {
    "sfadamw", sizeof(mo_sfadamw_config), sf_defaults, sf_check,
    sf_options, MO__COUNT(sf_options), sf_buffers, MO__COUNT(sf_buffers),
    sf_scalars_desc, MO__COUNT(sf_scalars_desc), 1, 0, sf_step,
};
