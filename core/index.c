/*
 * index.c - index_select, gather and scatter_add: moving elements to or from positions
 * that an index tensor names.
 *
 * An index tensor holds integers stored as floats (there is no integer dtype in this
 * stage), of either dtype whatever the data's dtype: the one place dtypes may differ
 * (docs/design.md "Two dtypes"). Every entry is checked (integral, inside the range the
 * dimension allows) and turned into a 0-based size_t in a scratch array BEFORE anything
 * is written, so a bad entry leaves the output untouched and mo_index_error says which
 * entry it was. The data loops then run over that array (index_t.h, once per dtype).
 */
#include "moonopt_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define T float
#define TN(name) name##_f32
#include "index_t.h"
#define T double
#define TN(name) name##_f64
#include "index_t.h"

static void clear_err(mo_index_error *err)
{
    if (err) {
        err->bad = MO_INDEX_OK;
        err->pos = 0;
        err->value = 0.0;
        err->limit = 0;
    }
}

/* Records the first bad entry and returns its status. */
static mo_status bad_entry(mo_index_error *err, mo_index_fault why, size_t pos, double v,
                           size_t limit)
{
    if (err) {
        err->bad = why;
        err->pos = pos;
        err->value = v;
        err->limit = limit;
    }
    return why == MO_INDEX_NOT_INTEGER ? MO_ERR_ARG : MO_ERR_RANGE;
}

/*
 * Reads every entry of `index` (any strides, either dtype) in row-major order, checks
 * that it is an integer in base .. base + limit - 1 and stores it 0-based in *ix, a new
 * malloc'd array of index->numel entries (NULL when numel is 0; the caller frees it).
 */
static mo_status read_index(const mo_tensor *index, double base, size_t limit, size_t **ix,
                            mo_index_error *err)
{
    *ix = NULL;
    const size_t n = index->numel;
    if (n == 0) return MO_OK;
    size_t bytes;
    MO_TRY(mo_size_mul(n, sizeof(size_t), &bytes));
    size_t *out = malloc(bytes);
    if (out == NULL) return MO_ERR_NOMEM;
    const double hi = base + (double)limit; /* exclusive; exact: limit < 2^53 */
    const int f64 = index->dtype == MO_FLOAT64;
    mo__iter it;
    const mo_tensor *ops[1] = {index};
    mo__iter_init(&it, 1, ops);
    size_t k = 0;
    for (size_t r = 0; r < it.rows; r++, mo__iter_next(&it)) {
        for (size_t j = 0; j < it.n; j++, k++) {
            const ptrdiff_t at = (ptrdiff_t)j * it.inner[0];
            const double v = f64 ? ((const double *)it.p[0])[at] : ((const float *)it.p[0])[at];
            mo_status st = MO_OK;
            if (!isfinite(v) || v != floor(v))
                st = bad_entry(err, MO_INDEX_NOT_INTEGER, k, v, limit);
            else if (v < base || v >= hi)
                st = bad_entry(err, MO_INDEX_OUT_OF_RANGE, k, v, limit);
            if (st != MO_OK) {
                free(out);
                return st;
            }
            out[k] = (size_t)(v - base);
        }
    }
    *ix = out;
    return MO_OK;
}

mo_tensor mo__borrowed_slice(const mo_tensor *t, int dim, size_t i)
{
    mo_tensor v = *t;
    v.offset = (size_t)((ptrdiff_t)t->offset + (ptrdiff_t)i * t->stride[dim]);
    for (int d = dim; d < t->ndim - 1; d++) {
        v.shape[d] = t->shape[d + 1];
        v.stride[d] = t->stride[d + 1];
    }
    v.ndim = t->ndim - 1;
    v.numel = t->shape[dim] ? t->numel / t->shape[dim] : 0;
    return v;
}

/* The checks every op shares: handles live, data dtypes agree, dim in range. */
static mo_status check_common(const mo_tensor *a, const mo_tensor *b, const mo_tensor *index,
                              int dim)
{
    const mo_tensor *ts[3] = {a, b, index};
    MO_TRY(mo__check_live(3, ts));
    MO_TRY(mo__check_dtypes(2, ts));
    if (index->dtype != MO_FLOAT32 && index->dtype != MO_FLOAT64) return MO_ERR_DTYPE;
    if (dim < 0 || dim >= a->ndim || dim >= b->ndim) return MO_ERR_RANGE;
    return MO_OK;
}

mo_status mo_index_select(mo_tensor *out, const mo_tensor *src, int dim, const mo_tensor *index,
                          double base, mo_index_error *err)
{
    clear_err(err);
    MO_TRY(check_common(out, src, index, dim));
    if (index->ndim > 1 || out->ndim != src->ndim) return MO_ERR_SHAPE;
    for (int d = 0; d < src->ndim; d++)
        if (out->shape[d] != (d == dim ? index->numel : src->shape[d])) return MO_ERR_SHAPE;
    if (mo__overlaps(out, src)) return MO_ERR_ARG;
    size_t *ix;
    MO_TRY(read_index(index, base, src->shape[dim], &ix, err));
    /* one slab copy per index entry: out's slice j <- src's slice ix[j] (mo_copy walks
     * any strides; for dim 1 of a matrix that is a column, for dim 0 a row) */
    mo_status st = MO_OK;
    for (size_t j = 0; j < index->numel && st == MO_OK; j++) {
        mo_tensor o = mo__borrowed_slice(out, dim, j), s = mo__borrowed_slice(src, dim, ix[j]);
        st = mo_copy(&o, &s);
    }
    free(ix);
    return st;
}

mo_status mo_gather(mo_tensor *out, const mo_tensor *src, int dim, const mo_tensor *index,
                    double base, mo_index_error *err)
{
    clear_err(err);
    MO_TRY(check_common(out, src, index, dim));
    if (index->ndim != src->ndim || !mo_tensor_same_shape(out, index)) return MO_ERR_SHAPE;
    for (int d = 0; d < src->ndim; d++)
        if (d != dim && index->shape[d] > src->shape[d]) return MO_ERR_SHAPE;
    if (mo__overlaps(out, src)) return MO_ERR_ARG;
    size_t *ix;
    MO_TRY(read_index(index, base, src->shape[dim], &ix, err));
    if (out->numel > 0) {
        if (out->dtype == MO_FLOAT64)
            gather_f64(out, src, dim, ix);
        else
            gather_f32(out, src, dim, ix);
    }
    free(ix);
    return MO_OK;
}

mo_status mo_scatter_add(mo_tensor *dst, int dim, const mo_tensor *index, const mo_tensor *src,
                         double base, mo_index_error *err)
{
    clear_err(err);
    MO_TRY(check_common(dst, src, index, dim));
    if (index->ndim != src->ndim || index->ndim != dst->ndim) return MO_ERR_SHAPE;
    for (int d = 0; d < src->ndim; d++)
        if (index->shape[d] > src->shape[d] || (d != dim && index->shape[d] > dst->shape[d]))
            return MO_ERR_SHAPE;
    /* a dimension of dst with stride 0 (an expanded view) would add several sources into
     * one memory cell that the caller sees as several elements */
    for (int d = 0; d < dst->ndim; d++)
        if (dst->shape[d] > 1 && dst->stride[d] == 0) return MO_ERR_LAYOUT;
    size_t *ix;
    MO_TRY(read_index(index, base, dst->shape[dim], &ix, err));
    if (index->numel == 0) return MO_OK;
    /* src sharing memory with dst would be read after parts of it were updated */
    mo_tensor tmp;
    mo_tensor_init(&tmp);
    mo_status st = MO_OK;
    if (mo__overlaps(dst, src)) {
        st = mo_tensor_clone(&tmp, src, NULL);
        src = &tmp;
    }
    if (st == MO_OK) {
        if (dst->dtype == MO_FLOAT64)
            scatter_add_f64(dst, src, dim, index->ndim, index->shape, ix, index->numel);
        else
            scatter_add_f32(dst, src, dim, index->ndim, index->shape, ix, index->numel);
    }
    mo_tensor_release(&tmp);
    free(ix);
    return st;
}
