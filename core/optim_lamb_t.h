/*
 * optim_lamb_t.h - LAMB's two passes written once over the element type T (float or
 * double); optim_lamb.c includes it once per dtype (docs/design.md "Two dtypes"). No
 * include guard on purpose; T and TN are #undef'd at the end.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including optim_lamb_t.h"
#endif

/* The per-step constants and the direction r of one element (both passes compute it alike). */
typedef struct TN(lamb_k) {
    T b1, omb1, b2, omb2, bc1, bc2, eps, wd;
} TN(lamb_k);

MO__INLINE T TN(lamb_dir)(const TN(lamb_k) *k, T mi, T vi, T wi)
{
    T mh = mi / k->bc1, vh = vi / k->bc2;
    return mh / (sqrt(vh) + k->eps) + k->wd * wi;
}

/* The per-step constants of a config and step (>= 1; config checked by the caller). */
static void TN(lamb_setup)(TN(lamb_k) *k, const mo_lamb_config *c, int64_t step)
{
    k->b1 = (T)c->beta1;
    k->omb1 = (T)(1.0 - c->beta1);
    k->b2 = (T)c->beta2;
    k->omb2 = (T)(1.0 - c->beta2);
    k->bc1 = c->bias_correction ? (T)(1.0 - pow(c->beta1, (double)step)) : (T)1;
    k->bc2 = c->bias_correction ? (T)(1.0 - pow(c->beta2, (double)step)) : (T)1;
    k->eps = (T)c->eps;
    k->wd = (T)c->weight_decay;
}

/* Pass 1 over one chunk (w, g, m, v: {n}): the moments, and the chunk's sums of w^2 and r^2
 * (in double, in element order) into sums[0], sums[1]. */
static void TN(lamb_pass1)(const TN(lamb_k) *k, int neg, T *w, const T *g, T *m, T *v, size_t n,
                           double *sums)
{
    double wn2 = 0.0, rn2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        T gi = neg ? -g[i] : g[i], wi = w[i];
        T mi = m[i] * k->b1 + k->omb1 * gi;
        T vi = v[i] * k->b2 + (k->omb2 * gi) * gi;
        m[i] = mi;
        v[i] = vi;
        T r = TN(lamb_dir)(k, mi, vi, wi);
        wn2 += (double)wi * (double)wi;
        rn2 += (double)r * (double)r;
    }
    sums[0] = wn2;
    sums[1] = rn2;
}

/* Pass 2 over one chunk: r again from the stored moments (same operations, same value), then
 * the step w += neg_step * r. */
static void TN(lamb_pass2)(const TN(lamb_k) *k, T neg_step, T *w, const T *m, const T *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        T wi = w[i];
        w[i] = wi + neg_step * TN(lamb_dir)(k, m[i], v[i], wi);
    }
}

#undef T
#undef TN
