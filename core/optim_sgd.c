/*
 * optim_sgd.c - SGD with momentum, dampening, Nesterov momentum, L2 weight
 * decay and maximize, as PyTorch 1.13's torch.optim.SGD. The loop is in optim_sgd_t.h,
 * instantiated for float32 and float64 (docs/design.md "Two dtypes").
 */
#include "optim_internal.h"

#define T float
#define TN(name) name##_f32
#include "optim_sgd_t.h"
#define T double
#define TN(name) name##_f64
#include "optim_sgd_t.h"

void mo_sgd_defaults(mo_sgd_config *c)
{
    c->lr = 1e-3;
    c->momentum = 0.0;
    c->dampening = 0.0;
    c->weight_decay = 0.0;
    c->nesterov = 0;
    c->maximize = 0;
}

mo_status mo_sgd_check(const mo_sgd_config *c)
{
    if (!c) return MO_ERR_ARG;
    if (!mo__nonneg(c->lr) || !mo__nonneg(c->momentum) || !mo__is_finite(c->dampening) ||
        !mo__nonneg(c->weight_decay))
        return MO_ERR_ARG;
    if (c->nesterov && (c->momentum <= 0.0 || c->dampening != 0.0)) return MO_ERR_ARG;
    return MO_OK;
}

/* On the pool: p: w, g, buf (NULL without momentum). */
typedef struct sgd_job {
    const mo_sgd_config *c;
    int first;
} sgd_job;

static void sgd_body_f32(const void *ctx, void *const *p, size_t n, size_t off)
{
    const sgd_job *j = ctx;
    (void)off;
    sgd_run_f32(p[0], p[1], p[2], n, j->c, j->first);
}

static void sgd_body_f64(const void *ctx, void *const *p, size_t n, size_t off)
{
    const sgd_job *j = ctx;
    (void)off;
    sgd_run_f64(p[0], p[1], p[2], n, j->c, j->first);
}

mo_status mo_sgd_update(float *w, const float *g, float *buf, size_t n,
                        const mo_sgd_config *c, int first)
{
    if (!w || !g || !c) return MO_ERR_ARG;
    MO_TRY(mo_sgd_check(c));
    const int mom = c->momentum != 0.0;
    if (mom && !buf) return MO_ERR_ARG;
    sgd_job j = {c, first};
    void *p[3] = {w, MO__UNCONST(g), mom ? buf : NULL};
    mo__opt_parallel_arrays(MO_FLOAT32, n, 3, p, sgd_body_f32, &j);
    return MO_OK;
}

mo_status mo_sgd_step(mo_tensor *w, const mo_tensor *g, mo_tensor *buf,
                      const mo_sgd_config *c, int first)
{
    if (!c) return MO_ERR_ARG;
    MO_TRY(mo_sgd_check(c));
    const int mom = c->momentum != 0.0;
    if (mom && !buf) return MO_ERR_ARG;
    const mo_tensor *ts[3] = {w, g, mom ? buf : NULL};
    mo__opt_args a;
    MO_TRY(mo__opt_begin(&a, 3, ts));
    sgd_job j = {c, first};
    mo__opt_parallel(&a, a.dtype == MO_FLOAT64 ? sgd_body_f64 : sgd_body_f32, &j);
    mo__opt_finish(&a, 1);
    return MO_OK;
}

/* Lean SGD: the config and `first` through the driver's context. */
typedef struct sgd_lean_ctx {
    const mo_sgd_config *c;
    int first;
} sgd_lean_ctx;

static void sgd_lean_block(const void *ctx, float *w, const float *g, float *const *st, size_t n)
{
    const sgd_lean_ctx *k = ctx;
    sgd_run_f32(w, g, st[0], n, k->c, k->first);
}

mo_status mo_sgd_step_lean(mo_tensor *w, const mo_tensor *g, mo_lean *buf, const mo_sgd_config *c,
                           int first, mo_state_rounding r)
{
    if (!c || !buf) return MO_ERR_ARG;
    MO_TRY(mo_sgd_check(c));
    /* lean state is a momentum buffer: without momentum there is nothing to keep */
    if (c->momentum == 0.0) return MO_ERR_ARG;
    sgd_lean_ctx k = {c, first};
    mo_lean *st[1] = {buf};
    /* SGD counts no steps: the stochastic stream hashes the value being rounded (sr_bits) */
    return mo__lean_run(w, g, st, 1, sgd_lean_block, &k, r, 0);
}

/* ---- descriptor (see moonopt_optim.h "Optimizer descriptors") ---- */

static void sgd_defaults(void *c) { mo_sgd_defaults(c); }
static mo_status sgd_check(const void *c) { return mo_sgd_check(c); }

static mo_status sgd_step(const void *c, mo_optim_call *a)
{
    /* PyTorch starts the momentum buffer at the first (decayed) gradient */
    if (a->lean[0]) return mo_sgd_step_lean(a->w, a->g, a->lean[0], c, a->fresh[0], a->rounding);
    return mo_sgd_step(a->w, a->g, a->buf[0], c, a->fresh[0]);
}

static const mo_optim_option sgd_options[] = {
    MO__OPTION(mo_sgd_config, "lr", MO_OPTT_NUMBER, lr),
    MO__OPTION(mo_sgd_config, "momentum", MO_OPTT_NUMBER, momentum),
    MO__OPTION(mo_sgd_config, "dampening", MO_OPTT_NUMBER, dampening),
    MO__OPTION(mo_sgd_config, "weight_decay", MO_OPTT_NUMBER, weight_decay),
    MO__OPTION(mo_sgd_config, "nesterov", MO_OPTT_BOOL, nesterov),
    MO__OPTION(mo_sgd_config, "maximize", MO_OPTT_BOOL, maximize),
};

static const mo_optim_buffer sgd_buffers[] = {
    {"momentum_buffer", "momentum", MO_OPTI_KERNEL, NULL, MO_LEAN_SIGNED},
};

/* SGD keeps no step count (PyTorch's SGD state is the momentum buffer alone). */
const mo_optim_desc mo__optim_sgd = {
    "sgd", sizeof(mo_sgd_config), sgd_defaults, sgd_check,
    sgd_options, MO__COUNT(sgd_options), sgd_buffers, MO__COUNT(sgd_buffers), NULL, 0,
    0, 0, sgd_step,
};
