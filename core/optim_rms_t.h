/*
 * optim_rms_t.h - the update loops of RMSprop, Adagrad and Adadelta written once over the
 * element type T (float or double); optim_rms.c includes it once per dtype (docs/design.md
 * "Two dtypes"). No include guard on purpose; T and TN are #undef'd at the end. Configs are
 * checked and the optional arrays present (per the config) before these run; the per-step
 * scalars are rounded to T once, before each loop.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including optim_rms_t.h"
#endif

/* w, g, square_avg: {n}; grad_avg {n} when centered; buf {n} when momentum > 0. */
static void TN(rmsprop_run)(T *w, const T *g, T *square_avg, T *grad_avg, T *buf, size_t n,
                            const mo_rmsprop_config *c)
{
    const int centered = c->centered != 0, mom = c->momentum > 0.0;
    const int l2 = c->weight_decay != 0.0, neg = c->maximize != 0;
    const T wd = (T)c->weight_decay, alpha = (T)c->alpha;
    const T oma = (T)(1.0 - c->alpha), eps = (T)c->eps;
    const T mu = (T)c->momentum, neg_lr = (T)-c->lr, minus_one = -1;
    for (size_t i = 0; i < n; i++) {
        T gi = neg ? -g[i] : g[i], wi = w[i];
        if (l2) gi = gi + wd * wi;
        T sq = square_avg[i] * alpha + (oma * gi) * gi;
        square_avg[i] = sq;
        T avg;
        if (centered) {
            /* the variance estimate E[g^2] - E[g]^2 instead of the raw second moment */
            T ga = grad_avg[i] * alpha + oma * gi;
            grad_avg[i] = ga;
            avg = sqrt(sq + (minus_one * ga) * ga);
        } else {
            avg = sqrt(sq);
        }
        avg = avg + eps;
        if (mom) {
            T b = buf[i] * mu + gi / avg;
            buf[i] = b;
            w[i] = wi + neg_lr * b;
        } else {
            w[i] = wi + (neg_lr * gi) / avg;
        }
    }
}

/* w, g, sum: {n}; step >= 1. */
static void TN(adagrad_run)(T *w, const T *g, T *sum, size_t n, const mo_adagrad_config *c,
                            int64_t step)
{
    const int l2 = c->weight_decay != 0.0, neg = c->maximize != 0;
    const T wd = (T)c->weight_decay, eps = (T)c->eps, one = 1;
    const T neg_clr = (T)-(c->lr / (1.0 + (double)(step - 1) * c->lr_decay));
    for (size_t i = 0; i < n; i++) {
        T gi = neg ? -g[i] : g[i], wi = w[i];
        if (l2) gi = gi + wd * wi;
        T s = sum[i] + (one * gi) * gi;
        sum[i] = s;
        w[i] = wi + (neg_clr * gi) / (sqrt(s) + eps);
    }
}

/* w, g, square_avg, acc_delta: {n}. */
static void TN(adadelta_run)(T *w, const T *g, T *square_avg, T *acc_delta, size_t n,
                             const mo_adadelta_config *c)
{
    const int l2 = c->weight_decay != 0.0, neg = c->maximize != 0;
    const T wd = (T)c->weight_decay, rho = (T)c->rho;
    const T omr = (T)(1.0 - c->rho), eps = (T)c->eps, neg_lr = (T)-c->lr;
    for (size_t i = 0; i < n; i++) {
        T gi = neg ? -g[i] : g[i], wi = w[i];
        if (l2) gi = gi + wd * wi;
        T sq = square_avg[i] * rho + (omr * gi) * gi;
        square_avg[i] = sq;
        T std = sqrt(sq + eps);
        /* the step has the units of w: RMS of past steps over RMS of gradients */
        T delta = (sqrt(acc_delta[i] + eps) / std) * gi;
        acc_delta[i] = acc_delta[i] * rho + (omr * delta) * delta;
        w[i] = wi + neg_lr * delta;
    }
}

#undef T
#undef TN
