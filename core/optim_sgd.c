/*
 * optim_sgd.c - SGD with momentum, dampening, Nesterov momentum, L2 weight
 * decay and maximize, as PyTorch 1.13's torch.optim.SGD.
 */
#include "optim_internal.h"

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

mo_status mo_sgd_update(float *w, const float *g, float *buf, size_t n,
                        const mo_sgd_config *c, int first)
{
    if (!w || !g || !c) return MO_ERR_ARG;
    MO_TRY(mo_sgd_check(c));
    const int mom = c->momentum != 0.0;
    if (mom && !buf) return MO_ERR_ARG;
    const int l2 = c->weight_decay != 0.0, neg = c->maximize != 0, nesterov = c->nesterov != 0;
    const float wd = (float)c->weight_decay, neg_lr = (float)-c->lr;
    const float mu = (float)c->momentum, omd = (float)(1.0 - c->dampening);
    for (size_t i = 0; i < n; i++) {
        float gi = neg ? -g[i] : g[i], wi = w[i];
        if (l2) gi = gi + wd * wi;
        if (mom) {
            /* PyTorch starts the buffer at the first (decayed) gradient, undamped */
            float b = first ? gi : buf[i] * mu + omd * gi;
            buf[i] = b;
            gi = nesterov ? gi + mu * b : b;
        }
        w[i] = wi + neg_lr * gi;
    }
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
    mo_status st = mo_sgd_update(a.ptr[0], a.ptr[1], a.ptr[2], a.n, c, first);
    mo__opt_finish(&a, st == MO_OK);
    return st;
}
