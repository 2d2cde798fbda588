/*
 * data.c - what a training loop needs on the C side besides the kernels:
 * gathering (shuffled) rows into a batch, and feature normalization. Both
 * dtypes: the loops are data_t.h, included once per dtype and picked once per
 * call (docs/design.md "Two dtypes"); the operands of one call share a dtype,
 * except mo_count_correct's labels (an index tensor: either).
 *
 * Threads (docs/design.md "Threads"): mo_normalize on a contiguous tensor runs
 * on the pool in fixed chunks of elements, and mo_augment_crop_flip crops its
 * examples there once the serial generator has drawn every example's offsets;
 * both are elementwise, so bit-identical at any thread count. The statistics
 * (mean_std) stay serial: their sums' order is their result.
 */
#include "moonopt_internal.h"
#include "threadpool.h"

#include <stdlib.h>
#include <string.h>
#include <tgmath.h> /* sqrt picks float or double by argument (data_t.h) */

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

/* MO_OK when the n live tensors ts share a dtype the kernels have, else MO_ERR_DTYPE. */
static mo_status one_dtype(int n, const mo_tensor *const *ts)
{
    if (ts[0]->dtype != MO_FLOAT32 && ts[0]->dtype != MO_FLOAT64) return MO_ERR_DTYPE;
    for (int i = 1; i < n; i++)
        if (ts[i]->dtype != ts[0]->dtype) return MO_ERR_DTYPE;
    return MO_OK;
}

/* Label i of a 1-d index tensor of either dtype (read once per row). */
static double label_at(const mo_tensor *labels, size_t i)
{
    const ptrdiff_t off = (ptrdiff_t)i * labels->stride[0];
    return labels->dtype == MO_FLOAT64 ? ((const double *)mo_tensor_ptr(labels))[off]
                                       : (double)((const float *)mo_tensor_ptr(labels))[off];
}

/* mo_normalize's job: x = (x - m) * inv over contiguous elements (x of the call's dtype). */
typedef struct norm_job {
    void *x;
    double m, inv;
} norm_job;

/* One augmentation call: dst, src {B, C, H, W} contiguous; off[3 b .. 3 b + 2] the
 * example's row offset, column offset (both minus pad) and flip. */
typedef struct crop_job {
    void *dst;
    const void *src;
    const ptrdiff_t *off;
    size_t c, h, w, per;
} crop_job;

#define T float
#define TN(name) name##_f32
#include "data_t.h"
#define T double
#define TN(name) name##_f64
#include "data_t.h"

mo_status mo_gather_rows(mo_tensor *dst, const mo_tensor *src, const size_t *rows, size_t n)
{
    if (!dst || !src || (n > 0 && !rows)) return MO_ERR_ARG;
    if (!mo_tensor_alive(dst) || !mo_tensor_alive(src)) return MO_ERR_FREED;
    {
        const mo_tensor *ts[2] = {dst, src};
        MO_TRY(one_dtype(2, ts));
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

    const size_t row_len = dst->numel / n;  /* elements per row */
    if (rows_contiguous(src) && rows_contiguous(dst)) {
        /* src {N, row_len} and dst {n, row_len}, each row one block at stride[0]. */
        const size_t es = mo_dtype_size(dst->dtype);
        const char *s = mo_tensor_ptr(src);
        char *d = mo_tensor_ptr(dst);
        const size_t bytes = row_len * es;
        for (size_t i = 0; i < n; i++)
            memcpy(d + (ptrdiff_t)i * dst->stride[0] * (ptrdiff_t)es,
                   s + (ptrdiff_t)rows[i] * src->stride[0] * (ptrdiff_t)es, bytes);
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
    MO_TRY(one_dtype(1, &t));
    if (t->numel == 0) return MO_ERR_ARG;
    mo_tensor c;
    mo_tensor_init(&c);
    MO_TRY(contiguous_of(&c, t));
    if (c.dtype == MO_FLOAT64)
        mean_std_run_f64(mo_tensor_ptr(&c), c.numel, mean, std);
    else
        mean_std_run_f32(mo_tensor_ptr(&c), c.numel, mean, std);
    mo_tensor_release(&c);
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
        const mo_tensor *ts[3] = {m, mean, std};
        MO_TRY(one_dtype(3, ts));
    }
    if (m->ndim != 2) return MO_ERR_SHAPE;
    const size_t n = m->shape[0], d = m->shape[1];
    if (!is_vector_of(mean, d) || !is_vector_of(std, d)) return MO_ERR_SHAPE;
    if (n == 0) return MO_ERR_ARG;
    double *acc = calloc(d ? 2 * d : 1, sizeof *acc);  /* acc[0..d): sums, acc[d..2d): squares */
    if (!acc) return MO_ERR_NOMEM;
    if (m->dtype == MO_FLOAT64)
        col_mean_std_run_f64(m, mean, std, acc);
    else
        col_mean_std_run_f32(m, mean, std, acc);
    free(acc);
    return MO_OK;
}

mo_status mo_normalize(mo_tensor *t, double mean, double std)
{
    if (!t) return MO_ERR_ARG;
    if (!mo_tensor_alive(t)) return MO_ERR_FREED;
    MO_TRY(one_dtype(1, (const mo_tensor *const *)&t));
    if (!isfinite(mean) || !isfinite(std) || !(std > 0)) return MO_ERR_ARG;
    /* hoisted: one multiply per element, not a divide; rounded once to float for float32 */
    const int f64 = t->dtype == MO_FLOAT64;
    const double m = f64 ? mean : (double)(float)mean;
    const double inv = f64 ? 1.0 / std : (double)(float)(1.0 / std);
    if (!isfinite(inv) || !isfinite(m)) return MO_ERR_ARG;
    if (mo_tensor_is_contiguous(t)) {
        norm_job j = {mo_tensor_ptr(t), m, inv}; /* float32: m and inv are floats already */
        mo__parallel_for(t->numel, MO__GRAIN_STREAM, f64 ? normalize_chunk_f64 : normalize_chunk_f32,
                         &j);
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
        const mo_tensor *ts[3] = {m, mean, std};
        MO_TRY(one_dtype(3, ts));
    }
    if (m->ndim != 2) return MO_ERR_SHAPE;
    const size_t d = m->shape[1];
    if (!is_vector_of(mean, d) || !is_vector_of(std, d)) return MO_ERR_SHAPE;
    /* Per-column scalars once: mean[j] and 1/std[j], checked before anything is written.
     * cols: 2 d elements of m's dtype (a double is room for either). */
    double *cols = malloc((d ? 2 * d : 1) * sizeof *cols);
    if (!cols) return MO_ERR_NOMEM;
    mo_status st;
    if (m->dtype == MO_FLOAT64) {
        st = column_scalars_f64(cols, mean, std, d);
        if (st == MO_OK) normalize_cols_run_f64(m, cols);
    } else {
        float *fc = (float *)(void *)cols;
        st = column_scalars_f32(fc, mean, std, d);
        if (st == MO_OK) normalize_cols_run_f32(m, fc);
    }
    free(cols);
    return st;
}

mo_status mo_count_correct(const mo_tensor *scores, const mo_tensor *labels, float base, size_t *correct)
{
    if (!scores || !labels || !correct || !isfinite(base)) return MO_ERR_ARG;
    if (!mo_tensor_alive(scores) || !mo_tensor_alive(labels)) return MO_ERR_FREED;
    MO_TRY(one_dtype(1, &scores));
    MO_TRY(one_dtype(1, &labels)); /* an index tensor: either dtype */
    if (scores->ndim != 2 || labels->ndim != 1 || labels->shape[0] != scores->shape[0]) return MO_ERR_SHAPE;
    const size_t n = scores->shape[0], c = scores->shape[1];
    for (size_t i = 0; i < n; i++) {
        double k = label_at(labels, i) - base;
        if (!(k >= 0 && k < (double)c) || k != floor(k)) return MO_ERR_RANGE;
    }
    if (n == 0) {
        *correct = 0;
        return MO_OK;
    }
    *correct = scores->dtype == MO_FLOAT64 ? count_correct_run_f64(scores, labels, base)
                                           : count_correct_run_f32(scores, labels, base);
    return MO_OK;
}

/* ------------------------------------------------------------------------ */
/* Augmentation: random crop with zero padding, horizontal flip             */
/* ------------------------------------------------------------------------ */

mo_status mo_augment_crop_flip(mo_tensor *dst, const mo_tensor *src, size_t pad, int flip, uint64_t seed)
{
    if (!dst || !src) return MO_ERR_ARG;
    if (!mo_tensor_alive(dst) || !mo_tensor_alive(src)) return MO_ERR_FREED;
    if (dst->dtype != src->dtype) return MO_ERR_DTYPE;
    if (src->ndim != 4 || dst->ndim != 4) return MO_ERR_SHAPE;
    for (int i = 0; i < 4; i++)
        if (dst->shape[i] != src->shape[i]) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(dst) || !mo_tensor_is_contiguous(src)) return MO_ERR_LAYOUT;
    if (mo_tensor_same_storage(dst, src)) return MO_ERR_ARG;
    /* offsets up to 2*pad must stay representable as ptrdiff_t next to the sizes */
    if (pad > (size_t)PTRDIFF_MAX / 4 || src->shape[3] > (size_t)PTRDIFF_MAX / 4) return MO_ERR_RANGE;
    const size_t B = src->shape[0], C = src->shape[1], H = src->shape[2], W = src->shape[3];
    if (src->numel == 0) return MO_OK;
    /* every example's draws first, in the generator's order (as the serial loop drew them),
     * then the copies on the pool. off {B, 3}: row offset, column offset, flip. */
    size_t noff;
    MO_TRY(mo_size_mul(B, 3 * sizeof(ptrdiff_t), &noff));
    ptrdiff_t *off = malloc(noff);
    if (!off) return MO_ERR_NOMEM;
    mo_rng r;
    mo_rng_seed(&r, seed);
    for (size_t b = 0; b < B; b++) {
        ptrdiff_t dy = (ptrdiff_t)mo_rng_below(&r, 2 * (uint64_t)pad + 1);
        ptrdiff_t dx = (ptrdiff_t)mo_rng_below(&r, 2 * (uint64_t)pad + 1);
        off[3 * b] = dy - (ptrdiff_t)pad;
        off[3 * b + 1] = dx - (ptrdiff_t)pad;
        off[3 * b + 2] = flip ? (ptrdiff_t)mo_rng_below(&r, 2) : 0;
    }
    const size_t per = C * H * W; /* elements per example (numel checked at creation) */
    crop_job j = {mo_tensor_ptr(dst), mo_tensor_ptr(src), off, C, H, W, per};
    const size_t grain = per ? MO__GRAIN_STREAM / per : 1;
    mo__parallel_for(B, grain ? grain : 1,
                     src->dtype == MO_FLOAT64 ? crop_chunk_f64 : crop_chunk_f32, &j);
    free(off);
    return MO_OK;
}
