/*
 * batchnorm_t.h - the per-channel loops of batchnorm.c, written once over T and
 * included once per dtype (docs/design.md "Two dtypes"). x is contiguous
 * {N, C, L}: channel c of image n is the run x[(n*C + c)*L .. +L). Statistics
 * and gradient sums are accumulated in double; the per-channel scalars are
 * computed once per channel, so the inner loops are a plain multiply-add.
 * No include guard on purpose; T and TN are #undef'd at the end.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including batchnorm_t.h"
#endif

/* The batch mean and biased variance of channel c (two passes, in double). */
static void TN(bn_stats)(const void *xv, const bn_dims *d, size_t c, double *mean, double *var)
{
    const T *x = xv;
    double s = 0.0;
    for (size_t n = 0; n < d->n; n++) {
        const T *r = x + (n * d->c + c) * d->l;
        for (size_t i = 0; i < d->l; i++) s += r[i];
    }
    const double m = s / (double)d->m;
    double q = 0.0;
    for (size_t n = 0; n < d->n; n++) {
        const T *r = x + (n * d->c + c) * d->l;
        for (size_t i = 0; i < d->l; i++) {
            const double t = (double)r[i] - m;
            q += t * t;
        }
    }
    *mean = m;
    *var = q / (double)d->m;
}

/* y = (x - mean) * scale + shift over channel c (centred first: no cancellation when
 * the mean is large against the spread). */
static void TN(bn_affine)(const void *xv, void *yv, const bn_dims *d, size_t c, double mean,
                          double scale, double shift)
{
    const T *x = xv;
    T *y = yv;
    const T m = (T)mean, a = (T)scale, b = (T)shift;
    for (size_t n = 0; n < d->n; n++) {
        const size_t o = (n * d->c + c) * d->l;
        for (size_t i = 0; i < d->l; i++) y[o + i] = (x[o + i] - m) * a + b;
    }
}

/* sum gy and sum gy * (x - mean) over channel c (double). */
static void TN(bn_grad_sums)(const void *xv, const void *gyv, const bn_dims *d, size_t c,
                             double mean, double *sg, double *sgx)
{
    const T *x = xv, *gy = gyv;
    double a = 0.0, b = 0.0;
    for (size_t n = 0; n < d->n; n++) {
        const size_t o = (n * d->c + c) * d->l;
        for (size_t i = 0; i < d->l; i++) {
            a += gy[o + i];
            b += (double)gy[o + i] * ((double)x[o + i] - mean);
        }
    }
    *sg = a;
    *sgx = b;
}

/* gx = (gy - mg - (x - mean) * k) * scale over channel c (training: mg, k from the sums;
 * evaluation: mg = k = 0). */
static void TN(bn_gx)(const void *xv, const void *gyv, void *gxv, const bn_dims *d, size_t c,
                      double mean, double mg, double k, double scale)
{
    const T *x = xv, *gy = gyv;
    T *gx = gxv;
    const T tm = (T)mean, tmg = (T)mg, tk = (T)k, ts = (T)scale;
    for (size_t n = 0; n < d->n; n++) {
        const size_t o = (n * d->c + c) * d->l;
        for (size_t i = 0; i < d->l; i++) gx[o + i] = (gy[o + i] - tmg - (x[o + i] - tm) * tk) * ts;
    }
}

/* Element i of a {C} tensor of this dtype with stride s (NULL: def). */
static double TN(bn_get)(const void *p, ptrdiff_t s, size_t i, double def)
{
    return p ? (double)((const T *)p)[(ptrdiff_t)i * s] : def;
}

static void TN(bn_set)(void *p, ptrdiff_t s, size_t i, double v)
{
    ((T *)p)[(ptrdiff_t)i * s] = (T)v;
}

static const bn_ops TN(bn_ops) = {
    TN(bn_stats), TN(bn_affine), TN(bn_grad_sums), TN(bn_gx), TN(bn_get), TN(bn_set),
};

#undef T
#undef TN
