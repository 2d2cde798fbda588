/*
 * optim_sgd_t.h - SGD's update loop written once over the element type T (float or
 * double); optim_sgd.c includes it once per dtype (docs/design.md "Two dtypes"). No include
 * guard on purpose; T and TN are #undef'd at the end.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including optim_sgd_t.h"
#endif

/* w, g: {n}; buf {n} when momentum != 0. Config checked by the caller. The per-step
 * scalars are rounded to T once, before the loop. */
static void TN(sgd_run)(T *w, const T *g, T *buf, size_t n, const mo_sgd_config *c, int first)
{
    const int mom = c->momentum != 0.0;
    const int l2 = c->weight_decay != 0.0, neg = c->maximize != 0, nesterov = c->nesterov != 0;
    const T wd = (T)c->weight_decay, neg_lr = (T)-c->lr;
    const T mu = (T)c->momentum, omd = (T)(1.0 - c->dampening);
    for (size_t i = 0; i < n; i++) {
        T gi = neg ? -g[i] : g[i], wi = w[i];
        if (l2) gi = gi + wd * wi;
        if (mom) {
            /* PyTorch starts the buffer at the first (decayed) gradient, undamped */
            T b = first ? gi : buf[i] * mu + omd * gi;
            buf[i] = b;
            gi = nesterov ? gi + mu * b : b;
        }
        w[i] = wi + neg_lr * gi;
    }
}

#undef T
#undef TN
