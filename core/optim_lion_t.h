/*
 * optim_lion_t.h - Lion's update loop written once over the element type T (float or
 * double); optim_lion.c includes it once per dtype (docs/design.md "Two dtypes"). No
 * include guard on purpose; T and TN are #undef'd at the end.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including optim_lion_t.h"
#endif

/* w, g, m: {n}. Config checked by the caller; per-step scalars rounded to T once. */
static void TN(lion_run)(T *w, const T *g, T *m, size_t n, const mo_lion_config *c)
{
    const int neg = c->maximize != 0;
    const T b1 = (T)c->beta1, omb1 = (T)(1.0 - c->beta1);
    const T b2 = (T)c->beta2, omb2 = (T)(1.0 - c->beta2);
    /* decoupled decay, as in the paper: the sign update cannot carry an L2 term's scale */
    const T decay = (T)(1.0 - c->lr * c->weight_decay), neg_lr = (T)-c->lr;
    const T one = 1, zero = 0;
    for (size_t i = 0; i < n; i++) {
        T gi = neg ? -g[i] : g[i];
        T mi = m[i];
        T u = mi * b1 + omb1 * gi;
        u = u > zero ? one : (u < zero ? -one : u);  /* sign; 0 and NaN stay */
        w[i] = w[i] * decay + neg_lr * u;
        m[i] = mi * b2 + omb2 * gi;
    }
}

#undef T
#undef TN
