/*
 * data_t.h - the loops of data.c, written once over the element type T (float
 * or double) and included by data.c once per dtype (docs/design.md "Two
 * dtypes"). No include guard on purpose; T and TN are #undef'd at the end.
 * Statistics accumulate in double for both dtypes.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including data_t.h"
#endif

/* Mean and population standard deviation of n > 0 contiguous values (two passes:
 * the sum of squared deviations from the exact mean does not cancel). */
static void TN(mean_std_run)(const T *x, size_t n, double *mean, double *std)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    const double m = s / (double)n;
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        double dv = x[i] - m;
        ss += dv * dv;
    }
    *mean = m;
    *std = sqrt(ss / (double)n);
}

/* Column statistics of m {n, d} (n > 0, any strides) into mean, std {d}; acc: 2 d doubles, zeroed. */
static void TN(col_mean_std_run)(const mo_tensor *m, mo_tensor *mean, mo_tensor *std, double *acc)
{
    const size_t n = m->shape[0], d = m->shape[1];
    const T *x = mo_tensor_ptr(m);
    const ptrdiff_t s0 = m->stride[0], s1 = m->stride[1];
    for (size_t i = 0; i < n; i++) {
        const T *row = x + (ptrdiff_t)i * s0;
        for (size_t j = 0; j < d; j++) acc[j] += row[(ptrdiff_t)j * s1];
    }
    const double inv_n = 1.0 / (double)n;
    for (size_t j = 0; j < d; j++) acc[j] *= inv_n;
    for (size_t i = 0; i < n; i++) {
        const T *row = x + (ptrdiff_t)i * s0;
        for (size_t j = 0; j < d; j++) {
            double dv = row[(ptrdiff_t)j * s1] - acc[j];
            acc[d + j] += dv * dv;
        }
    }
    T *mean_out = mo_tensor_ptr(mean), *std_out = mo_tensor_ptr(std);
    for (size_t j = 0; j < d; j++) {
        mean_out[(ptrdiff_t)j * mean->stride[0]] = (T)acc[j];
        std_out[(ptrdiff_t)j * std->stride[0]] = (T)sqrt(acc[d + j] * inv_n);
    }
}

/* x[i] = (x[i] - m) * inv over the elements [lo, hi) of a norm_job (m, inv as T). */
static void TN(normalize_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const norm_job *j = ctx;
    T *x = j->x;
    const T m = (T)j->m, inv = (T)j->inv;
    (void)chunk;
    /* blocks of a known trip count: GCC's -O2 cost model vectorizes only those */
    size_t i = lo;
    for (; i + 8 <= hi; i += 8)
        for (size_t k = 0; k < 8; k++) x[i + k] = (x[i + k] - m) * inv;
    for (; i < hi; i++) x[i] = (x[i] - m) * inv;
}

/* Per-column scalars of mean, std {d}: cols[0..d) the means, cols[d..2d) 1/std, in T;
 * MO_ERR_ARG (nothing written to m yet) for a non-finite value or std <= 0. */
static mo_status TN(column_scalars)(T *cols, const mo_tensor *mean, const mo_tensor *std, size_t d)
{
    const T *mp = mo_tensor_ptr(mean), *sp = mo_tensor_ptr(std);
    for (size_t j = 0; j < d; j++) {
        T mj = mp[(ptrdiff_t)j * mean->stride[0]], sj = sp[(ptrdiff_t)j * std->stride[0]];
        T inv = (T)(1.0 / (double)sj);
        if (!isfinite(mj) || !isfinite(sj) || !(sj > 0) || !isfinite(inv)) return MO_ERR_ARG;
        cols[j] = mj;
        cols[d + j] = inv;
    }
    return MO_OK;
}

/* m {n, d} (any strides): each column j to (m - cols[j]) * cols[d + j]. */
static void TN(normalize_cols_run)(mo_tensor *m, const T *cols)
{
    const size_t n = m->shape[0], d = m->shape[1];
    T *x = mo_tensor_ptr(m);
    const ptrdiff_t s0 = m->stride[0], s1 = m->stride[1];
    for (size_t i = 0; i < n; i++) {
        T *row = x + (ptrdiff_t)i * s0;
        if (s1 == 1) {
            for (size_t j = 0; j < d; j++) row[j] = (row[j] - cols[j]) * cols[d + j];
        } else {
            for (size_t j = 0; j < d; j++) {
                T *p = row + (ptrdiff_t)j * s1;
                *p = (*p - cols[j]) * cols[d + j];
            }
        }
    }
}

/* The 0-based argmax of each row of scores {n, c} (c > 0, any strides) compared with the
 * checked class of each row (label_at, minus base); NaN rows never count. */
static size_t TN(count_correct_run)(const mo_tensor *scores, const mo_tensor *labels, double base)
{
    const size_t n = scores->shape[0], c = scores->shape[1];
    const T *s = mo_tensor_ptr(scores);
    const ptrdiff_t s0 = scores->stride[0], s1 = scores->stride[1];
    size_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        const T *row = s + (ptrdiff_t)i * s0;
        size_t best = 0;
        T bv = row[0];
        for (size_t j = 1; j < c; j++) {
            T v = row[(ptrdiff_t)j * s1];
            if (v > bv || bv != bv) {  /* a NaN best is replaced by any number */
                bv = v;
                best = j;
            }
        }
        if (bv == bv && best == (size_t)(label_at(labels, i) - base)) hits++;
    }
    return hits;
}

/*
 * One example's planes: d, s {C, H, W} contiguous. Row y of the output reads source row
 * y + dy - pad; column x reads source column (flip ? W-1-x : x) + dx - pad; anything
 * outside the source is 0. The valid columns are one run, so an unflipped row is a
 * memcpy between two zero fills.
 */
static void TN(crop_flip_one)(T *d, const T *s, size_t C, size_t H, size_t W, ptrdiff_t oy,
                              ptrdiff_t ox, int flip)
{
    /* source column of output column x: x + ox (plain) or W-1-x + ox (flipped);
     * valid output columns are x0 .. x1-1 */
    ptrdiff_t w = (ptrdiff_t)W;
    ptrdiff_t x0 = flip ? ox : -ox, x1 = flip ? w + ox : w - ox;
    if (x0 < 0) x0 = 0;
    if (x1 > w) x1 = w;
    for (size_t c = 0; c < C; c++) {
        for (size_t y = 0; y < H; y++) {
            T *drow = d + (c * H + y) * W;
            ptrdiff_t sy = (ptrdiff_t)y + oy;
            if (sy < 0 || sy >= (ptrdiff_t)H || x0 >= x1) {
                memset(drow, 0, W * sizeof *drow);
                continue;
            }
            const T *srow = s + (c * H + (size_t)sy) * W;
            memset(drow, 0, (size_t)x0 * sizeof *drow);
            if (flip) {
                for (ptrdiff_t x = x0; x < x1; x++) drow[x] = srow[w - 1 - x + ox];
            } else {
                memcpy(drow + x0, srow + x0 + ox, (size_t)(x1 - x0) * sizeof *drow);
            }
            memset(drow + x1, 0, (size_t)(w - x1) * sizeof *drow);
        }
    }
}

/* The examples [lo, hi) of a crop_job, each cropped with its drawn offsets. */
static void TN(crop_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const crop_job *j = ctx;
    (void)chunk;
    for (size_t b = lo; b < hi; b++)
        TN(crop_flip_one)((T *)j->dst + b * j->per, (const T *)j->src + b * j->per, j->c, j->h,
                          j->w, j->off[3 * b], j->off[3 * b + 1], (int)j->off[3 * b + 2]);
}

#undef T
#undef TN
