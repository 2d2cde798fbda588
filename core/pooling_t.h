/*
 * pooling_t.h - the pooling loops of pooling.c, written once over T and included
 * once per dtype (docs/design.md "Two dtypes"). Every function walks `planes`
 * contiguous planes x {H, W} -> y {OH, OW}; windows are clipped per output row
 * and column once, so the innermost loops have no bounds tests. No include
 * guard on purpose; T and TN are #undef'd at the end.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including pooling_t.h"
#endif

/* y = window max, idx = base + its flat position h * W + w (the last NaN wins, as
 * PyTorch; a window of -inf only gives its first element). */
static void TN(max_fwd)(const void *xv, void *yv, void *iv, size_t planes, const pool_geom *g,
                        double base)
{
    const T *x = xv;
    T *y = yv, *idx = iv;
    const size_t H = g->h, W = g->w, plane = H * W, OP = g->oh * g->ow;
    for (size_t p = 0; p < planes; p++) {
        const T *xp = x + p * plane;
        T *yp = y + p * OP, *ip = idx + p * OP;
        for (size_t oh = 0; oh < g->oh; oh++) {
            size_t h0, h1;
            pool_clip(oh, g->sh, g->ph, g->kh, H, &h0, &h1, NULL);
            for (size_t ow = 0; ow < g->ow; ow++) {
                size_t w0, w1;
                pool_clip(ow, g->sw, g->pw, g->kw, W, &w0, &w1, NULL);
                T best = -INFINITY;
                size_t at = h0 * W + w0;
                for (size_t h = h0; h < h1; h++) {
                    const T *r = xp + h * W;
                    for (size_t w = w0; w < w1; w++) {
                        const T v = r[w];
                        if (v > best || v != v) {
                            best = v;
                            at = h * W + w;
                        }
                    }
                }
                yp[oh * g->ow + ow] = best;
                ip[oh * g->ow + ow] = (T)((double)at + base);
            }
        }
    }
}

/* 1 when every idx entry is a whole number in base .. base + plane - 1. */
static int TN(idx_ok)(const void *iv, size_t n, size_t plane, double base)
{
    const T *idx = iv;
    const double hi = base + (double)plane - 1.0;
    for (size_t i = 0; i < n; i++) {
        const double v = (double)idx[i];
        if (!(v >= base && v <= hi) || v != floor(v)) return 0;
    }
    return 1;
}

/* gx (zeroed by the caller) [plane][idx - base] += gy; idx checked by idx_ok. */
static void TN(max_bwd)(void *gxv, const void *gyv, const void *iv, size_t planes, size_t plane,
                        size_t op, double base)
{
    T *gx = gxv;
    const T *gy = gyv, *idx = iv;
    for (size_t p = 0; p < planes; p++) {
        T *gp = gx + p * plane;
        const T *g = gy + p * op, *ip = idx + p * op;
        for (size_t i = 0; i < op; i++) gp[(size_t)((double)ip[i] - base)] += g[i];
    }
}

/* y = window mean with PyTorch's divisor (pool_clip's count, or the clipped area). */
static void TN(avg_fwd)(const void *xv, void *yv, size_t planes, const pool_geom *g, int cip)
{
    const T *x = xv;
    T *y = yv;
    const size_t H = g->h, W = g->w, plane = H * W, OP = g->oh * g->ow;
    for (size_t p = 0; p < planes; p++) {
        const T *xp = x + p * plane;
        T *yp = y + p * OP;
        for (size_t oh = 0; oh < g->oh; oh++) {
            size_t h0, h1, hn;
            pool_clip(oh, g->sh, g->ph, g->kh, H, &h0, &h1, &hn);
            for (size_t ow = 0; ow < g->ow; ow++) {
                size_t w0, w1, wn;
                pool_clip(ow, g->sw, g->pw, g->kw, W, &w0, &w1, &wn);
                double s = 0.0;
                for (size_t h = h0; h < h1; h++) {
                    const T *r = xp + h * W;
                    for (size_t w = w0; w < w1; w++) s += r[w];
                }
                const double div = cip ? (double)(hn * wn) : (double)((h1 - h0) * (w1 - w0));
                yp[oh * g->ow + ow] = (T)(s / div);
            }
        }
    }
}

/* gx (zeroed by the caller) += gy / divisor over each window. */
static void TN(avg_bwd)(void *gxv, const void *gyv, size_t planes, const pool_geom *g, int cip)
{
    T *gx = gxv;
    const T *gy = gyv;
    const size_t H = g->h, W = g->w, plane = H * W, OP = g->oh * g->ow;
    for (size_t p = 0; p < planes; p++) {
        T *gp = gx + p * plane;
        const T *gq = gy + p * OP;
        for (size_t oh = 0; oh < g->oh; oh++) {
            size_t h0, h1, hn;
            pool_clip(oh, g->sh, g->ph, g->kh, H, &h0, &h1, &hn);
            for (size_t ow = 0; ow < g->ow; ow++) {
                size_t w0, w1, wn;
                pool_clip(ow, g->sw, g->pw, g->kw, W, &w0, &w1, &wn);
                const size_t div = cip ? hn * wn : (h1 - h0) * (w1 - w0);
                const T v = (T)((double)gq[oh * g->ow + ow] / (double)div);
                for (size_t h = h0; h < h1; h++) {
                    T *r = gp + h * W;
                    for (size_t w = w0; w < w1; w++) r[w] += v;
                }
            }
        }
    }
}

/* Adaptive average: output (i, j) averages rows adapt_lo(i) .. adapt_hi(i) - 1 and the
 * same for columns. backward != 0: gx (zeroed) += gy / count instead. */
static void TN(adaptive)(const void *inv, void *outv, size_t planes, const pool_geom *g,
                         int backward)
{
    const size_t H = g->h, W = g->w, plane = H * W, OP = g->oh * g->ow;
    for (size_t p = 0; p < planes; p++) {
        for (size_t oh = 0; oh < g->oh; oh++) {
            const size_t h0 = adapt_lo(oh, H, g->oh), h1 = adapt_hi(oh, H, g->oh);
            for (size_t ow = 0; ow < g->ow; ow++) {
                const size_t w0 = adapt_lo(ow, W, g->ow), w1 = adapt_hi(ow, W, g->ow);
                const double cnt = (double)((h1 - h0) * (w1 - w0));
                if (backward) {
                    const T v = (T)((double)((const T *)inv)[p * OP + oh * g->ow + ow] / cnt);
                    T *gp = (T *)outv + p * plane;
                    for (size_t h = h0; h < h1; h++)
                        for (size_t w = w0; w < w1; w++) gp[h * W + w] += v;
                } else {
                    const T *xp = (const T *)inv + p * plane;
                    double s = 0.0;
                    for (size_t h = h0; h < h1; h++)
                        for (size_t w = w0; w < w1; w++) s += xp[h * W + w];
                    ((T *)outv)[p * OP + oh * g->ow + ow] = (T)(s / cnt);
                }
            }
        }
    }
}

static const pool_ops TN(pool_ops) = {
    TN(max_fwd), TN(idx_ok), TN(max_bwd), TN(avg_fwd), TN(avg_bwd), TN(adaptive),
};

#undef T
#undef TN
