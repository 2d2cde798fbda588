/*
 * reduce.c - reductions: sum, mean, max, min, argmax, dot, L2 norms (whole
 * tensor), and sum/mean/max/min/argmax along one dimension.
 *
 * Sums accumulate in double: float32 accumulation over a million elements
 * loses about three digits, and the gradient norm used for clipping must not.
 * Contiguous rows use eight independent double accumulators, which the -O2
 * vectorizer turns into packed float->double conversions and adds (and which
 * is also a little more accurate than one running sum). max/min propagate
 * NaN; argmax returns the FIRST maximum and counts NaN as the largest value.
 * The row kernels are written once over the element type in reduce_t.h
 * (docs/design.md "Two dtypes"); results of reduce_dim have src's dtype.
 */
#include "moonopt_internal.h"

#include <math.h>
#include <string.h>

/* MO_RED_* plus argmax, which shares the walk. */
#define RED_ARGMAX 4

/* Output columns handled per pass of the "column" strategy (stack buffers). */
#define RED_CHUNK 128

#define T float
#define TN(name) name##_f32
#include "reduce_t.h"
#define T double
#define TN(name) name##_f64
#include "reduce_t.h"

/* ---- whole-tensor reductions ---- */

typedef enum whole_op { W_SUM, W_SUMSQ } whole_op;

static double whole(const mo_tensor *t, whole_op op)
{
    mo__iter it;
    mo__iter_init(&it, 1, &t);
    double s = 0.0;
    const int sq = op == W_SUMSQ, f64 = t->dtype == MO_FLOAT64;
    for (size_t r = 0; r < it.rows; r++, mo__iter_next(&it))
        s += f64 ? whole_row_f64(&it, sq) : whole_row_f32(&it, sq);
    return s;
}

mo_status mo_sum(const mo_tensor *t, double *out)
{
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &t));
    *out = whole(t, W_SUM);
    return MO_OK;
}

mo_status mo_mean(const mo_tensor *t, double *out)
{
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &t));
    if (t->numel == 0) return MO_ERR_ARG;
    *out = whole(t, W_SUM) / (double)t->numel;
    return MO_OK;
}

/* The first maximum (want_max) or minimum of t, with its 0-based row-major index. */
static void extreme(const mo_tensor *t, int want_max, double *best, size_t *best_idx)
{
    if (t->dtype == MO_FLOAT64)
        extreme_f64(t, want_max, best, best_idx);
    else
        extreme_f32(t, want_max, best, best_idx);
}

mo_status mo_max(const mo_tensor *t, double *out)
{
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &t));
    if (t->numel == 0) return MO_ERR_ARG;
    double b;
    size_t i;
    extreme(t, 1, &b, &i);
    *out = b;
    return MO_OK;
}

mo_status mo_min(const mo_tensor *t, double *out)
{
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &t));
    if (t->numel == 0) return MO_ERR_ARG;
    double b;
    size_t i;
    extreme(t, 0, &b, &i);
    *out = b;
    return MO_OK;
}

mo_status mo_argmax(const mo_tensor *t, size_t *out)
{
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &t));
    if (t->numel == 0) return MO_ERR_ARG;
    double b;
    extreme(t, 1, &b, out);
    return MO_OK;
}

mo_status mo_dot(const mo_tensor *a, const mo_tensor *b, double *out)
{
    const mo_tensor *ts[2] = {a, b};
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(2, ts));
    if (a->numel != b->numel) return MO_ERR_SHAPE;
    MO_TRY(mo__check_dtypes(2, ts));
    const int f64 = a->dtype == MO_FLOAT64;

    /* Same numel, possibly different shapes: pair elements in row-major order.
     * Different shapes that are not both contiguous go through contiguous copies. */
    mo_tensor ca, cb;
    mo_tensor_init(&ca);
    mo_tensor_init(&cb);
    const mo_tensor *pa = a, *pb = b;
    if (!mo_tensor_same_shape(a, b)) {
        if (!mo_tensor_is_contiguous(a)) {
            MO_TRY(mo_tensor_clone(&ca, a, NULL));
            pa = &ca;
        }
        if (!mo_tensor_is_contiguous(b)) {
            mo_status st = mo_tensor_clone(&cb, b, NULL);
            if (st != MO_OK) {
                mo_tensor_release(&ca);
                return st;
            }
            pb = &cb;
        }
    }

    double s = 0.0;
    if (!mo_tensor_same_shape(pa, pb)) {
        /* both contiguous now: one flat row each */
        s = f64 ? dot_c_f64(mo_tensor_ptr(pa), mo_tensor_ptr(pb), pa->numel)
                : dot_c_f32(mo_tensor_ptr(pa), mo_tensor_ptr(pb), pa->numel);
    } else {
        const mo_tensor *ops[2] = {pa, pb};
        mo__iter it;
        mo__iter_init(&it, 2, ops);
        for (size_t r = 0; r < it.rows; r++, mo__iter_next(&it))
            s += f64 ? dot_row_f64(&it) : dot_row_f32(&it);
    }
    mo_tensor_release(&ca);
    mo_tensor_release(&cb);
    *out = s;
    return MO_OK;
}

mo_status mo_norm2(const mo_tensor *t, double *out)
{
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &t));
    /* float squares summed in double cannot overflow (FLT_MAX^2 ~ 1e77); float64
     * squares can (above ~1e154), as in a plain sum of squares */
    *out = sqrt(whole(t, W_SUMSQ));
    return MO_OK;
}

mo_status mo_norm2_many(const mo_tensor *const *ts, size_t n, double *out)
{
    if (!out || (n > 0 && !ts)) return MO_ERR_ARG;
    /* validate everything before computing anything */
    for (size_t i = 0; i < n; i++)
        if (!ts[i]) return MO_ERR_ARG;
    for (size_t i = 0; i < n; i++)
        if (!mo_tensor_alive(ts[i])) return MO_ERR_FREED;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += whole(ts[i], W_SUMSQ);
    *out = sqrt(s);
    return MO_OK;
}

/* ---- along one dimension ---- */

static mo_status reduce_dim(mo_tensor *out, const mo_tensor *src, int dim, int op,
                            const mo_allocator *a)
{
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &src));
    if (out->storage) return MO_ERR_ARG; /* out must be empty: it receives a new tensor */
    if (dim < 0 || dim >= src->ndim) return MO_ERR_RANGE;
    if (op < MO_RED_SUM || op > RED_ARGMAX) return MO_ERR_ARG;
    const size_t K = src->shape[dim];
    /* mean, max, min and argmax of nothing are undefined; a sum of nothing is 0 */
    if (K == 0 && op != MO_RED_SUM) return MO_ERR_ARG;

    /* view: src without dimension `dim` (a descriptor only; it takes no reference) */
    mo_tensor rest = *src;
    for (int d = dim; d < src->ndim - 1; d++) {
        rest.shape[d] = src->shape[d + 1];
        rest.stride[d] = src->stride[d + 1];
    }
    rest.ndim = src->ndim - 1;
    rest.shape[rest.ndim] = 0;
    rest.stride[rest.ndim] = 0;
    MO_TRY(mo_shape_numel(rest.ndim, rest.shape, &rest.numel));
    const ptrdiff_t sd = src->stride[dim];

    mo_tensor res;
    mo_tensor_init(&res);
    MO_TRY(mo_tensor_empty_dtype(&res, rest.ndim, rest.shape, src->dtype, a));
    if (res.numel > 0) {
        if (K == 0) {
            memset(mo_tensor_ptr(&res), 0, res.numel * mo_dtype_size(res.dtype));
        } else {
            const mo_tensor *ops[2] = {&res, &rest};
            mo__iter it;
            mo__iter_init(&it, 2, ops);
            for (size_t r = 0; r < it.rows; r++, mo__iter_next(&it)) {
                if (src->dtype == MO_FLOAT64)
                    reduce_row_f64(op, it.n, it.p[0], it.inner[0], it.p[1], it.inner[1], K, sd);
                else
                    reduce_row_f32(op, it.n, it.p[0], it.inner[0], it.p[1], it.inner[1], K, sd);
            }
        }
    }
    *out = res;
    return MO_OK;
}

mo_status mo_reduce_dim(mo_tensor *out, const mo_tensor *src, int dim, mo_reduce_op op,
                        const mo_allocator *a)
{
    if ((unsigned)op > (unsigned)MO_RED_MIN) return MO_ERR_ARG;
    return reduce_dim(out, src, dim, (int)op, a);
}

mo_status mo_argmax_dim(mo_tensor *out, const mo_tensor *src, int dim, const mo_allocator *a)
{
    return reduce_dim(out, src, dim, RED_ARGMAX, a);
}
