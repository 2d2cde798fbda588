/*
 * pooling_t.h - the pooling loops of pooling.c, written once over T and included
 * once per dtype (docs/design.md "Two dtypes"). Every chunk function walks the
 * planes [lo, hi) of a pool_job (pooling.c): contiguous planes x {H, W} -> y
 * {OH, OW}, each plane whole in one chunk, so chunks write disjoint memory and a
 * plane's values never depend on the thread count. Windows are clipped per output
 * row and column once, so the innermost loops have no bounds tests. No include
 * guard on purpose; T and TN are #undef'd at the end.
 */
#if !defined(T) || !defined(TN) || !defined(TK) || !defined(TK_MAG) || !defined(TK_INF)
#error "define T, TN and T's key type TK, TK_MAG, TK_INF before including pooling_t.h"
#endif

/* One window the plain way (any clipping): its max and its flat position; the last NaN
 * wins, as PyTorch; a window of -inf only gives its first element. */
static void TN(max_window)(const T *xp, size_t W, size_t h0, size_t h1, size_t w0, size_t w1,
                           T *best_out, size_t *at_out)
{
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
    *best_out = best;
    *at_out = at;
}

/*
 * POOL_BLOCK outputs of one row whose windows lie inside the plane horizontally, the
 * first window starting at column c0 (rows h0 .. h1-1), giving max_window's result
 * without its data-dependent branch (a random plane mispredicts it half the time):
 *
 * - values are compared as integer keys of their bits (TK, T's width): key = bits for
 *   a positive number, -(bits without the sign) for a negative one, so the keys order
 *   as the numbers do and -0 equals +0; a NaN (magnitude above infinity's) never
 *   counts as larger and is tracked apart;
 * - each window is visited in max_window's order (row by row, left to right) with its
 *   strict `>`, so the first maximum wins; when the window holds a NaN the last one
 *   wins, as max_window's `v != v` makes it; y is then x at the winning position;
 * - the window column j of the block's outputs is strided (sw); it is copied to a
 *   contiguous block of keys first, so the update is one fixed-size loop of integer
 *   compares and selects over contiguous arrays, which the compiler vectorizes.
 *
 * Positions are TK integers, pos0 the flat position of column c0 on row h.
 */
static void TN(max_block)(const T *xp, const pool_geom *g, size_t h0, size_t h1, size_t c0,
                          T *yo, T *io, T base)
{
    const size_t W = g->w, kw = g->kw, sw = g->sw;
    TK best[POOL_BLOCK], at[POOL_BLOCK], nan_at[POOL_BLOCK], key[POOL_BLOCK], koff[POOL_BLOCK];
    for (size_t k = 0; k < POOL_BLOCK; k++) {
        koff[k] = (TK)(k * sw);
        best[k] = -TK_INF; /* -inf's key: nothing is smaller but a NaN */
        at[k] = (TK)(h0 * W + c0) + koff[k];
        nan_at[k] = -1;
    }
    for (size_t h = h0; h < h1; h++) {
        const T *r = xp + h * W + c0;
        for (size_t j = 0; j < kw; j++) {
            for (size_t k = 0; k < POOL_BLOCK; k++) memcpy(&key[k], &r[k * sw + j], sizeof(TK));
            const TK pos = (TK)(h * W + c0 + j);
            for (size_t k = 0; k < POOL_BLOCK; k++) {
                /* selects as masks (all ones or zero): GCC turns `c ? a : b` on these
                 * arrays into branches */
                const TK bits = key[k], mag = bits & TK_MAG, here = pos + koff[k];
                const TK neg = -(TK)(bits < 0), kv = (bits & ~neg) | (-mag & neg);
                const TK nan = -(TK)(mag > TK_INF), more = -(TK)(kv > best[k]) & ~nan;
                best[k] = (kv & more) | (best[k] & ~more);
                at[k] = (here & more) | (at[k] & ~more);
                nan_at[k] = (here & nan) | (nan_at[k] & ~nan);
            }
        }
    }
    for (size_t k = 0; k < POOL_BLOCK; k++) {
        const TK w = nan_at[k] >= 0 ? nan_at[k] : at[k];
        yo[k] = xp[w];
        io[k] = (T)w + base;
    }
}

/* The planes [lo, hi) of a pool_job: y = window max, idx = base + its flat position
 * h * W + w, written as T (the index tensor has the input's dtype). */
static void TN(max_fwd_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const pool_job *j = ctx;
    const pool_geom *g = j->g;
    const size_t H = g->h, W = g->w, plane = H * W, OW = g->ow, OP = g->oh * OW;
    const T base = (T)j->base;
    size_t wa, wb; /* outputs [wa, wb) of a row have their windows inside the columns */
    pool_interior(g, &wa, &wb);
    (void)chunk;
    for (size_t p = lo; p < hi; p++) {
        const T *xp = (const T *)j->in + p * plane;
        T *yp = (T *)j->out + p * OP, *ip = (T *)j->idx + p * OP;
        for (size_t oh = 0; oh < g->oh; oh++) {
            size_t h0, h1;
            pool_clip(oh, g->sh, g->ph, g->kh, H, &h0, &h1, NULL);
            T *yr = yp + oh * OW, *ir = ip + oh * OW;
            /* the interior in blocks; a last partial block is redone ending at wb (its
             * first outputs are computed twice, to the same values) */
            const int blocks = wb - wa >= POOL_BLOCK;
            for (size_t o = wa; blocks && o < wb; o += POOL_BLOCK) {
                const size_t o0 = o + POOL_BLOCK <= wb ? o : wb - POOL_BLOCK;
                TN(max_block)(xp, g, h0, h1, o0 * g->sw - g->pw, yr + o0, ir + o0, base);
            }
            for (size_t ow = 0; ow < OW; ow++) {
                if (blocks && ow == wa) ow = wb; /* done above */
                if (ow >= OW) break;
                size_t w0, w1, at;
                pool_clip(ow, g->sw, g->pw, g->kw, W, &w0, &w1, NULL);
                TN(max_window)(xp, W, h0, h1, w0, w1, &yr[ow], &at);
                ir[ow] = (T)((double)at + j->base);
            }
        }
    }
}

/* The number of idx entries in [lo, hi) of a pool_job that are not a whole number in
 * base .. base + plane - 1 (plane in the job's n). */
static double TN(idx_bad)(void *ctx, size_t lo, size_t hi)
{
    const pool_job *j = ctx;
    const T *idx = j->idx;
    const double base = j->base, top = base + (double)j->n - 1.0;
    double bad = 0.0;
    for (size_t i = lo; i < hi; i++) {
        const double v = (double)idx[i];
        if (!(v >= base && v <= top) || v != floor(v)) bad += 1.0;
    }
    return bad;
}

/* The planes [lo, hi) of gx {plane = n} zeroed, then gx[idx - base] += gy (idx checked). */
static void TN(max_bwd_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const pool_job *j = ctx;
    const size_t plane = j->n, op = j->op;
    (void)chunk;
    memset((T *)j->out + lo * plane, 0, (hi - lo) * plane * sizeof(T));
    for (size_t p = lo; p < hi; p++) {
        T *gp = (T *)j->out + p * plane;
        const T *gq = (const T *)j->in + p * op, *iq = (const T *)j->idx + p * op;
        for (size_t i = 0; i < op; i++) gp[(size_t)((double)iq[i] - j->base)] += gq[i];
    }
}

/* The planes [lo, hi) of a pool_job: y = window mean with PyTorch's divisor (pool_clip's
 * count, or the clipped area). */
static void TN(avg_fwd_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const pool_job *j = ctx;
    const pool_geom *g = j->g;
    const size_t H = g->h, W = g->w, plane = H * W, OP = g->oh * g->ow;
    (void)chunk;
    for (size_t p = lo; p < hi; p++) {
        const T *xp = (const T *)j->in + p * plane;
        T *yp = (T *)j->out + p * OP;
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
                const double div = j->cip ? (double)(hn * wn) : (double)((h1 - h0) * (w1 - w0));
                yp[oh * g->ow + ow] = (T)(s / div);
            }
        }
    }
}

/* The planes [lo, hi) of gx zeroed, then += gy / divisor over each window. */
static void TN(avg_bwd_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const pool_job *j = ctx;
    const pool_geom *g = j->g;
    const size_t H = g->h, W = g->w, plane = H * W, OP = g->oh * g->ow;
    (void)chunk;
    memset((T *)j->out + lo * plane, 0, (hi - lo) * plane * sizeof(T));
    for (size_t p = lo; p < hi; p++) {
        T *gp = (T *)j->out + p * plane;
        const T *gq = (const T *)j->in + p * OP;
        for (size_t oh = 0; oh < g->oh; oh++) {
            size_t h0, h1, hn;
            pool_clip(oh, g->sh, g->ph, g->kh, H, &h0, &h1, &hn);
            for (size_t ow = 0; ow < g->ow; ow++) {
                size_t w0, w1, wn;
                pool_clip(ow, g->sw, g->pw, g->kw, W, &w0, &w1, &wn);
                const size_t div = j->cip ? hn * wn : (h1 - h0) * (w1 - w0);
                const T v = (T)((double)gq[oh * g->ow + ow] / (double)div);
                for (size_t h = h0; h < h1; h++) {
                    T *r = gp + h * W;
                    for (size_t w = w0; w < w1; w++) r[w] += v;
                }
            }
        }
    }
}

/* Adaptive average over the planes [lo, hi): output (i, j) averages rows adapt_lo(i) ..
 * adapt_hi(i) - 1 and the same for columns. j->backward: in = gy, out = gx, whose planes
 * are zeroed and then += gy / count. */
static void TN(adaptive_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const pool_job *j = ctx;
    const pool_geom *g = j->g;
    const size_t H = g->h, W = g->w, plane = H * W, OP = g->oh * g->ow;
    (void)chunk;
    if (j->backward) memset((T *)j->out + lo * plane, 0, (hi - lo) * plane * sizeof(T));
    for (size_t p = lo; p < hi; p++) {
        for (size_t oh = 0; oh < g->oh; oh++) {
            const size_t h0 = adapt_lo(oh, H, g->oh), h1 = adapt_hi(oh, H, g->oh);
            for (size_t ow = 0; ow < g->ow; ow++) {
                const size_t w0 = adapt_lo(ow, W, g->ow), w1 = adapt_hi(ow, W, g->ow);
                const double cnt = (double)((h1 - h0) * (w1 - w0));
                if (j->backward) {
                    const T v = (T)((double)((const T *)j->in)[p * OP + oh * g->ow + ow] / cnt);
                    T *gp = (T *)j->out + p * plane;
                    for (size_t h = h0; h < h1; h++)
                        for (size_t w = w0; w < w1; w++) gp[h * W + w] += v;
                } else {
                    const T *xp = (const T *)j->in + p * plane;
                    double s = 0.0;
                    for (size_t h = h0; h < h1; h++)
                        for (size_t w = w0; w < w1; w++) s += xp[h * W + w];
                    ((T *)j->out)[p * OP + oh * g->ow + ow] = (T)(s / cnt);
                }
            }
        }
    }
}

static const pool_ops TN(pool_ops) = {
    TN(max_fwd_chunk), TN(idx_bad), TN(max_bwd_chunk),
    TN(avg_fwd_chunk), TN(avg_bwd_chunk), TN(adaptive_chunk),
};

#undef T
#undef TN
#undef TK
#undef TK_MAG
#undef TK_INF
