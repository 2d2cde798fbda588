/*
 * optim_lion.c - Lion (Chen et al. 2023, "Symbolic Discovery of Optimization
 * Algorithms"): the update is the sign of an interpolation between the
 * momentum and the gradient, so every element moves by exactly lr. The loop is in
 * optim_lion_t.h, instantiated for float32 and float64 (docs/design.md "Two dtypes").
 */
#include "optim_internal.h"

#define T float
#define TN(name) name##_f32
#include "optim_lion_t.h"
#define T double
#define TN(name) name##_f64
#include "optim_lion_t.h"

void mo_lion_defaults(mo_lion_config *c)
{
    c->lr = 1e-4;
    c->beta1 = 0.9;
    c->beta2 = 0.99;
    c->weight_decay = 0.0;
    c->maximize = 0;
}

mo_status mo_lion_check(const mo_lion_config *c)
{
    if (!c) return MO_ERR_ARG;
    if (!mo__nonneg(c->lr) || !mo__beta(c->beta1) || !mo__beta(c->beta2) ||
        !mo__nonneg(c->weight_decay))
        return MO_ERR_ARG;
    return MO_OK;
}

/* On the pool: p: w, g, m. */
static void lion_body_f32(const void *c, void *const *p, size_t n, size_t off)
{
    (void)off;
    lion_run_f32(p[0], p[1], p[2], n, c);
}

static void lion_body_f64(const void *c, void *const *p, size_t n, size_t off)
{
    (void)off;
    lion_run_f64(p[0], p[1], p[2], n, c);
}

mo_status mo_lion_update(float *w, const float *g, float *m, size_t n, const mo_lion_config *c)
{
    if (!w || !g || !m || !c) return MO_ERR_ARG;
    MO_TRY(mo_lion_check(c));
    void *p[3] = {w, MO__UNCONST(g), m};
    mo__opt_parallel_arrays(MO_FLOAT32, n, 3, p, lion_body_f32, c);
    return MO_OK;
}

mo_status mo_lion_step(mo_tensor *w, const mo_tensor *g, mo_tensor *m, const mo_lion_config *c)
{
    if (!c || !m) return MO_ERR_ARG;
    MO_TRY(mo_lion_check(c));
    const mo_tensor *ts[3] = {w, g, m};
    mo__opt_args a;
    MO_TRY(mo__opt_begin(&a, 3, ts));
    mo__opt_parallel(&a, a.dtype == MO_FLOAT64 ? lion_body_f64 : lion_body_f32, c);
    mo__opt_finish(&a, 1);
    return MO_OK;
}

/* mo__lean_fn: one block of decoded state (st[0]: m). */
static void lion_lean_block(const void *ctx, float *w, const float *g, float *const *st, size_t n)
{
    lion_run_f32(w, g, st[0], n, ctx);
}

mo_status mo_lion_step_lean(mo_tensor *w, const mo_tensor *g, mo_lean *m, const mo_lion_config *c,
                            mo_state_rounding r, int64_t step)
{
    if (!c || !m) return MO_ERR_ARG;
    MO_TRY(mo_lion_check(c));
    mo_lean *st[1] = {m};
    return mo__lean_run(w, g, st, 1, lion_lean_block, c, r, step);
}

/* ---- descriptor (see moonopt_optim.h "Optimizer descriptors") ---- */

static void lion_defaults(void *c) { mo_lion_defaults(c); }
static mo_status lion_check(const void *c) { return mo_lion_check(c); }
static mo_status lion_step(const void *c, mo_optim_call *a)
{
    if (a->lean[0]) return mo_lion_step_lean(a->w, a->g, a->lean[0], c, a->rounding, a->step);
    return mo_lion_step(a->w, a->g, a->buf[0], c);
}

MO__PAIR_OK(mo_lion_config, beta1, beta2);
static const mo_optim_option lion_options[] = {
    MO__OPTION(mo_lion_config, "lr", MO_OPTT_NUMBER, lr),
    MO__PAIR(mo_lion_config, "betas", beta1),
    MO__OPTION(mo_lion_config, "weight_decay", MO_OPTT_NUMBER, weight_decay),
    MO__OPTION(mo_lion_config, "maximize", MO_OPTT_BOOL, maximize),
};
static const mo_optim_buffer lion_buffers[] = {{"exp_avg", NULL, MO_OPTI_ZERO, NULL, MO_LEAN_SIGNED}};

const mo_optim_desc mo__optim_lion = {
    "lion", sizeof(mo_lion_config), lion_defaults, lion_check,
    lion_options, MO__COUNT(lion_options), lion_buffers, MO__COUNT(lion_buffers), NULL, 0,
    1, 0, lion_step,
};
