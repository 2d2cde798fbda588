/*
 * optim_lamb.c - LAMB (You et al. 2020, "Large Batch Optimization for Deep
 * Learning"): Adam's bias-corrected direction plus decoupled weight decay,
 * rescaled per tensor by the trust ratio ||w|| / ||r||. The passes are in optim_lamb_t.h,
 * instantiated for float32 and float64 (docs/design.md "Two dtypes").
 *
 * On the pool (docs/design.md "Threads"): both passes run over fixed chunks (at most
 * LAMB_MAX_CHUNKS, the grain a function of n alone); pass 1 leaves each chunk's two sums in
 * its own slot and they are added in chunk order, so the norms, the ratio and every weight
 * are the same bits at any thread count.
 */
#include "optim_internal.h"
#include "threadpool.h"

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

#define LAMB_MAX_CHUNKS 256

typedef struct lamb_job {
    mo_dtype dt;
    const void *k;          /* lamb_k_f32 or lamb_k_f64 */
    int neg;
    void *p[4];             /* w, g, m, v */
    size_t grain;
    double sums[LAMB_MAX_CHUNKS][2];
    double neg_step;        /* pass 2 */
} lamb_job;

static void lamb_chunk1(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    lamb_job *j = ctx;
    if (j->dt == MO_FLOAT64) {
        double *const *p = (double *const *)j->p;
        lamb_pass1_f64(j->k, j->neg, p[0] + lo, p[1] + lo, p[2] + lo, p[3] + lo, hi - lo, j->sums[chunk]);
    } else {
        float *const *p = (float *const *)j->p;
        lamb_pass1_f32(j->k, j->neg, p[0] + lo, p[1] + lo, p[2] + lo, p[3] + lo, hi - lo, j->sums[chunk]);
    }
}

static void lamb_chunk2(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const lamb_job *j = ctx;
    (void)chunk;
    if (j->dt == MO_FLOAT64) {
        double *const *p = (double *const *)j->p;
        lamb_pass2_f64(j->k, j->neg_step, p[0] + lo, p[2] + lo, p[3] + lo, hi - lo);
    } else {
        float *const *p = (float *const *)j->p;
        lamb_pass2_f32(j->k, (float)j->neg_step, p[0] + lo, p[2] + lo, p[3] + lo, hi - lo);
    }
}

/* Both passes over arrays of n elements of dtype dt; returns the trust ratio. */
static double lamb_run(mo_dtype dt, void *const *p, size_t n, const mo_lamb_config *c, int64_t step)
{
    lamb_k_f32 k32;
    lamb_k_f64 k64;
    lamb_setup_f32(&k32, c, step);
    lamb_setup_f64(&k64, c, step);
    lamb_job j;
    j.dt = dt;
    j.k = dt == MO_FLOAT64 ? (const void *)&k64 : (const void *)&k32;
    j.neg = c->maximize != 0;
    for (int i = 0; i < 4; i++) j.p[i] = p[i];
    j.grain = mo__grain_for(n, MO__GRAIN_STREAM, LAMB_MAX_CHUNKS);
    size_t chunks = mo__parallel_chunks(n, j.grain);
    mo__parallel_for(n, j.grain, lamb_chunk1, &j);
    double wn2 = 0.0, rn2 = 0.0;
    for (size_t i = 0; i < chunks; i++) {
        wn2 += j.sums[i][0];
        rn2 += j.sums[i][1];
    }
    /* the layer-wise trust ratio; 1 when either norm is 0 (a fresh zero tensor, a zero step) */
    double wn = sqrt(wn2), rn = sqrt(rn2);
    double ratio = (wn > 0.0 && rn > 0.0) ? wn / rn : 1.0;
    /* rounded to the dtype once, as -lr*ratio always was */
    j.neg_step = dt == MO_FLOAT64 ? -c->lr * ratio : (double)(float)(-c->lr * ratio);
    mo__parallel_for(n, j.grain, lamb_chunk2, &j);
    return ratio;
}

mo_status mo_lamb_update(float *w, const float *g, float *m, float *v, size_t n,
                         const mo_lamb_config *c, int64_t step, double *trust_ratio)
{
    if (!w || !g || !m || !v || !c || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_lamb_check(c));
    void *p[4] = {w, MO__UNCONST(g), m, v};
    double ratio = lamb_run(MO_FLOAT32, p, n, c, step);
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
    double ratio = lamb_run(a.dtype, a.ptr, a.n, c, step);
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
