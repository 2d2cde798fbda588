/*
 * optim_sfadamw_t.h - schedule-free AdamW's element loop written once over the element
 * type T (float or double); optim_sfadamw.c includes it once per dtype (docs/design.md
 * "Two dtypes"). No include guard on purpose; T and TN are #undef'd at the end.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including optim_sfadamw_t.h"
#endif

/* y, g, z, v: {n}. lr (lr_k) and ck (ckp1) are the step's scalars (sf_scalars, in double),
 * rounded to T here, once. */
static void TN(sf_run)(T *y, const T *g, T *z, T *v, size_t n, const mo_sfadamw_config *c,
                       double lr, double ck)
{
    const T b2 = (T)c->beta2, omb2 = (T)(1.0 - c->beta2), eps = (T)c->eps;
    const T wd = (T)c->weight_decay, t = (T)ck, omt = (T)1 - t;
    const T ycoef = (T)(lr * (c->beta1 * (1.0 - ck) - 1.0)), neg_lr = (T)-lr;
    const int decay = c->weight_decay != 0.0, low = t < (T)0.5;
    for (size_t i = 0; i < n; i++) {
        T gi = g[i], yi = y[i], zi = z[i];
        T vi = v[i] * b2 + (omb2 * gi) * gi;
        T gn = gi / (sqrt(vi) + eps);
        if (decay) gn = gn + wd * yi;
        T diff = zi - yi;
        T yl = low ? yi + t * diff : zi - diff * omt;
        v[i] = vi;
        y[i] = yl + ycoef * gn;
        z[i] = zi + neg_lr * gn;
    }
}

#undef T
#undef TN
