/*
 * data.c - what a training loop needs on the C side besides the kernels:
 * gathering (shuffled) rows into a batch, and feature normalization.
 */
#include "moonopt_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Whether the elements after dimension 0 are laid out contiguously (a row is one block). */
static int rows_contiguous(const mo_tensor *t)
{
    ptrdiff_t expect = 1;
    for (int i = t->ndim - 1; i >= 1; i--) {
        if (t->shape[i] != 1 && t->stride[i] != expect) return 0;
        expect *= (ptrdiff_t)t->shape[i];
    }
    return 1;
}

mo_status mo_gather_rows(mo_tensor *dst, const mo_tensor *src, const size_t *rows, size_t n)
{
    if (!dst || !src || (n > 0 && !rows)) return MO_ERR_ARG;
    if (!mo_tensor_alive(dst) || !mo_tensor_alive(src)) return MO_ERR_FREED;
    {
        const mo_tensor *f32_[2] = {dst, src};
        MO_TRY(mo__check_f32(2, f32_)); /* float32 only in this stage */
    }
    if (src->ndim < 1 || dst->ndim != src->ndim || dst->shape[0] != n) return MO_ERR_SHAPE;
    for (int i = 1; i < src->ndim; i++)
        if (dst->shape[i] != src->shape[i]) return MO_ERR_SHAPE;
    /* Writing rows of a tensor into itself would read rows already overwritten. */
    if (mo_tensor_same_storage(dst, src)) return MO_ERR_ARG;
    const size_t nrows = src->shape[0];
    for (size_t i = 0; i < n; i++)
        if (rows[i] >= nrows) return MO_ERR_RANGE;
    if (n == 0 || dst->numel == 0) return MO_OK;

    const size_t row_len = dst->numel / n;  /* floats per row */
    if (rows_contiguous(src) && rows_contiguous(dst)) {
        /* src {N, row_len} and dst {n, row_len}, each row one block at stride[0]. */
        const float *s = mo_tensor_data(src);
        float *d = mo_tensor_data(dst);
        const size_t bytes = row_len * sizeof(float);
        for (size_t i = 0; i < n; i++)
            memcpy(d + (ptrdiff_t)i * dst->stride[0], s + (ptrdiff_t)rows[i] * src->stride[0], bytes);
        return MO_OK;
    }
    /* Any other layout: one strided copy per row (shapes were checked, so it cannot fail midway). */
    for (size_t i = 0; i < n; i++) {
        mo_tensor drow, srow;
        mo_tensor_init(&drow);
        mo_tensor_init(&srow);
        mo_status st = mo_tensor_select(&drow, dst, 0, i);
        if (st == MO_OK) st = mo_tensor_select(&srow, src, 0, rows[i]);
        if (st == MO_OK) st = mo_copy(&drow, &srow);
        mo_tensor_release(&drow);
        mo_tensor_release(&srow);
        if (st != MO_OK) return st;
    }
    return MO_OK;
}

/* A contiguous handle on t's values: shares t when t is contiguous, else a copy. */
static mo_status contiguous_of(mo_tensor *out, const mo_tensor *t)
{
    if (mo_tensor_is_contiguous(t)) return mo_tensor_share(out, t);
    return mo_tensor_clone(out, t, NULL);
}

mo_status mo_mean_std(const mo_tensor *t, double *mean, double *std)
{
    if (!t || !mean || !std) return MO_ERR_ARG;
    if (!mo_tensor_alive(t)) return MO_ERR_FREED;
    {
        const mo_tensor *f32_[1] = {t};
        MO_TRY(mo__check_f32(1, f32_)); /* float32 only in this stage */
    }
    if (t->numel == 0) return MO_ERR_ARG;
    mo_tensor c;
    mo_tensor_init(&c);
    MO_TRY(contiguous_of(&c, t));
    const float *x = mo_tensor_data(&c);
    const size_t n = c.numel;
    /* Two passes: the sum of squared deviations from the exact mean does not cancel. */
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    const double m = s / (double)n;
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        double dv = x[i] - m;
        ss += dv * dv;
    }
    mo_tensor_release(&c);
    *mean = m;
    *std = sqrt(ss / (double)n);
    return MO_OK;
}

static int is_vector_of(const mo_tensor *v, size_t d)
{
    return v->ndim == 1 && v->shape[0] == d;
}

mo_status mo_column_mean_std(const mo_tensor *m, mo_tensor *mean, mo_tensor *std)
{
    if (!m || !mean || !std) return MO_ERR_ARG;
    if (!mo_tensor_alive(m) || !mo_tensor_alive(mean) || !mo_tensor_alive(std)) return MO_ERR_FREED;
    {
        const mo_tensor *f32_[3] = {m, mean, std};
        MO_TRY(mo__check_f32(3, f32_)); /* float32 only in this stage */
    }
    if (m->ndim != 2) return MO_ERR_SHAPE;
    const size_t n = m->shape[0], d = m->shape[1];
    if (!is_vector_of(mean, d) || !is_vector_of(std, d)) return MO_ERR_SHAPE;
    if (n == 0) return MO_ERR_ARG;
    double *acc = calloc(d ? 2 * d : 1, sizeof *acc);  /* acc[0..d): sums, acc[d..2d): squares */
    if (!acc) return MO_ERR_NOMEM;
    const float *x = mo_tensor_data(m);
    const ptrdiff_t s0 = m->stride[0], s1 = m->stride[1];
    for (size_t i = 0; i < n; i++) {
        const float *row = x + (ptrdiff_t)i * s0;
        for (size_t j = 0; j < d; j++) acc[j] += row[(ptrdiff_t)j * s1];
    }
    const double inv_n = 1.0 / (double)n;
    for (size_t j = 0; j < d; j++) acc[j] *= inv_n;
    for (size_t i = 0; i < n; i++) {
        const float *row = x + (ptrdiff_t)i * s0;
        for (size_t j = 0; j < d; j++) {
            double dv = row[(ptrdiff_t)j * s1] - acc[j];
            acc[d + j] += dv * dv;
        }
    }
    float *mean_out = mo_tensor_data(mean), *std_out = mo_tensor_data(std);
    for (size_t j = 0; j < d; j++) {
        mean_out[(ptrdiff_t)j * mean->stride[0]] = (float)acc[j];
        std_out[(ptrdiff_t)j * std->stride[0]] = (float)sqrt(acc[d + j] * inv_n);
    }
    free(acc);
    return MO_OK;
}

mo_status mo_normalize(mo_tensor *t, double mean, double std)
{
    if (!t) return MO_ERR_ARG;
    if (!mo_tensor_alive(t)) return MO_ERR_FREED;
    {
        const mo_tensor *f32_[1] = {t};
        MO_TRY(mo__check_f32(1, f32_)); /* float32 only in this stage */
    }
    if (!isfinite(mean) || !isfinite(std) || !(std > 0)) return MO_ERR_ARG;
    const float m = (float)mean;
    const float inv = (float)(1.0 / std);  /* hoisted: one multiply per element, not a divide */
    if (!isfinite(inv) || !isfinite(m)) return MO_ERR_ARG;
    if (mo_tensor_is_contiguous(t)) {
        float *x = mo_tensor_data(t);
        const size_t n = t->numel;
        for (size_t i = 0; i < n; i++) x[i] = (x[i] - m) * inv;
        return MO_OK;
    }
    /* Strided: the elementwise kernels walk any layout (both calls validated the same way). */
    MO_TRY(mo_binary_scalar(t, t, m, MO_SUB));
    return mo_binary_scalar(t, t, inv, MO_MUL);
}

mo_status mo_normalize_columns(mo_tensor *m, const mo_tensor *mean, const mo_tensor *std)
{
    if (!m || !mean || !std) return MO_ERR_ARG;
    if (!mo_tensor_alive(m) || !mo_tensor_alive(mean) || !mo_tensor_alive(std)) return MO_ERR_FREED;
    {
        const mo_tensor *f32_[3] = {m, mean, std};
        MO_TRY(mo__check_f32(3, f32_)); /* float32 only in this stage */
    }
    if (m->ndim != 2) return MO_ERR_SHAPE;
    const size_t n = m->shape[0], d = m->shape[1];
    if (!is_vector_of(mean, d) || !is_vector_of(std, d)) return MO_ERR_SHAPE;
    /* Per-column scalars once: mean[j] and 1/std[j], checked before anything is written. */
    float *cols = malloc((d ? 2 * d : 1) * sizeof *cols);  /* cols[0..d): mean, cols[d..2d): 1/std */
    if (!cols) return MO_ERR_NOMEM;
    const float *mp = mo_tensor_data(mean), *sp = mo_tensor_data(std);
    for (size_t j = 0; j < d; j++) {
        float mj = mp[(ptrdiff_t)j * mean->stride[0]], sj = sp[(ptrdiff_t)j * std->stride[0]];
        float inv = (float)(1.0 / (double)sj);
        if (!isfinite(mj) || !isfinite(sj) || !(sj > 0) || !isfinite(inv)) {
            free(cols);
            return MO_ERR_ARG;
        }
        cols[j] = mj;
        cols[d + j] = inv;
    }
    float *x = mo_tensor_data(m);
    const ptrdiff_t s0 = m->stride[0], s1 = m->stride[1];
    for (size_t i = 0; i < n; i++) {
        float *row = x + (ptrdiff_t)i * s0;
        if (s1 == 1) {
            for (size_t j = 0; j < d; j++) row[j] = (row[j] - cols[j]) * cols[d + j];
        } else {
            for (size_t j = 0; j < d; j++) {
                float *p = row + (ptrdiff_t)j * s1;
                *p = (*p - cols[j]) * cols[d + j];
            }
        }
    }
    free(cols);
    return MO_OK;
}

mo_status mo_count_correct(const mo_tensor *scores, const mo_tensor *labels, float base, size_t *correct)
{
    if (!scores || !labels || !correct || !isfinite(base)) return MO_ERR_ARG;
    if (!mo_tensor_alive(scores) || !mo_tensor_alive(labels)) return MO_ERR_FREED;
    {
        const mo_tensor *f32_[2] = {scores, labels};
        MO_TRY(mo__check_f32(2, f32_)); /* float32 only in this stage */
    }
    if (scores->ndim != 2 || labels->ndim != 1 || labels->shape[0] != scores->shape[0]) return MO_ERR_SHAPE;
    const size_t n = scores->shape[0], c = scores->shape[1];
    const float *s = mo_tensor_data(scores), *y = mo_tensor_data(labels);
    const ptrdiff_t s0 = scores->stride[0], s1 = scores->stride[1], ys = labels->stride[0];
    for (size_t i = 0; i < n; i++) {
        double k = (double)y[(ptrdiff_t)i * ys] - base;
        if (!(k >= 0 && k < (double)c) || k != floor(k)) return MO_ERR_RANGE;
    }
    size_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        const float *row = s + (ptrdiff_t)i * s0;
        size_t best = 0;
        float bv = row[0];
        for (size_t j = 1; j < c; j++) {
            float v = row[(ptrdiff_t)j * s1];
            if (v > bv || bv != bv) {  /* a NaN best is replaced by any number */
                bv = v;
                best = j;
            }
        }
        if (bv == bv && best == (size_t)((double)y[(ptrdiff_t)i * ys] - base)) hits++;
    }
    *correct = hits;
    return MO_OK;
}

/* ------------------------------------------------------------------------ */
/* Augmentation: random crop with zero padding, horizontal flip             */
/* ------------------------------------------------------------------------ */

/*
 * One example's planes: d, s {C, H, W} contiguous. Row y of the output reads source row
 * y + dy - pad; column x reads source column (flip ? W-1-x : x) + dx - pad; anything
 * outside the source is 0. The valid columns are one run, so an unflipped row is a
 * memcpy between two zero fills.
 */
static void crop_flip_one(float *d, const float *s, size_t C, size_t H, size_t W, ptrdiff_t oy,
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
            float *drow = d + (c * H + y) * W;
            ptrdiff_t sy = (ptrdiff_t)y + oy;
            if (sy < 0 || sy >= (ptrdiff_t)H || x0 >= x1) {
                memset(drow, 0, W * sizeof *drow);
                continue;
            }
            const float *srow = s + (c * H + (size_t)sy) * W;
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

mo_status mo_augment_crop_flip(mo_tensor *dst, const mo_tensor *src, size_t pad, int flip, uint64_t seed)
{
    if (!dst || !src) return MO_ERR_ARG;
    if (!mo_tensor_alive(dst) || !mo_tensor_alive(src)) return MO_ERR_FREED;
    {
        const mo_tensor *f32_[2] = {dst, src};
        MO_TRY(mo__check_f32(2, f32_)); /* float32 only, as the other data helpers */
    }
    if (src->ndim != 4 || dst->ndim != 4) return MO_ERR_SHAPE;
    for (int i = 0; i < 4; i++)
        if (dst->shape[i] != src->shape[i]) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(dst) || !mo_tensor_is_contiguous(src)) return MO_ERR_LAYOUT;
    if (mo_tensor_same_storage(dst, src)) return MO_ERR_ARG;
    /* offsets up to 2*pad must stay representable as ptrdiff_t next to the sizes */
    if (pad > (size_t)PTRDIFF_MAX / 4 || src->shape[3] > (size_t)PTRDIFF_MAX / 4) return MO_ERR_RANGE;
    const size_t B = src->shape[0], C = src->shape[1], H = src->shape[2], W = src->shape[3];
    if (src->numel == 0) return MO_OK;
    const size_t per = C * H * W;          /* floats per example (numel checked at creation) */
    const float *s = mo_tensor_data(src);
    float *d = mo_tensor_data(dst);
    mo_rng r;
    mo_rng_seed(&r, seed);
    for (size_t b = 0; b < B; b++) {
        ptrdiff_t dy = (ptrdiff_t)mo_rng_below(&r, 2 * (uint64_t)pad + 1);
        ptrdiff_t dx = (ptrdiff_t)mo_rng_below(&r, 2 * (uint64_t)pad + 1);
        int f = flip ? (int)mo_rng_below(&r, 2) : 0;
        crop_flip_one(d + b * per, s + b * per, C, H, W, dy - (ptrdiff_t)pad, dx - (ptrdiff_t)pad, f);
    }
    return MO_OK;
}
