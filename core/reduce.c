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
 */
#include "moonopt_internal.h"

#include <math.h>
#include <string.h>

/* ---- row kernels: n elements, contiguous (_c) or with stride s (_s) ---- */

static double sum_c(const float *restrict a, size_t n)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++) acc[j] += (double)a[i + j];
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += (double)a[i];
    return s;
}

static double sum_s(const float *a, ptrdiff_t sa, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[(ptrdiff_t)i * sa];
    return s;
}

static double sumsq_c(const float *restrict a, size_t n)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++) {
            const double x = (double)a[i + j];
            acc[j] += x * x;
        }
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += (double)a[i] * (double)a[i];
    return s;
}

static double sumsq_s(const float *a, ptrdiff_t sa, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double x = (double)a[(ptrdiff_t)i * sa];
        s += x * x;
    }
    return s;
}

static double dot_c(const float *restrict a, const float *restrict b, size_t n)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++) acc[j] += (double)a[i + j] * (double)b[i + j];
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

static double dot_s(const float *a, ptrdiff_t sa, const float *b, ptrdiff_t sb, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[(ptrdiff_t)i * sa] * (double)b[(ptrdiff_t)i * sb];
    return s;
}

/* The update rules, shared by whole-tensor and per-dimension reductions. */
static inline int takes_max(float x, float best) { return x > best || (isnan(x) && !isnan(best)); }
static inline int takes_min(float x, float best) { return x < best || (isnan(x) && !isnan(best)); }

/* ---- whole-tensor reductions ---- */

typedef enum whole_op { W_SUM, W_SUMSQ } whole_op;

static double whole(const mo_tensor *t, whole_op op)
{
    mo__iter it;
    mo__iter_init(&it, 1, &t);
    double s = 0.0;
    for (size_t r = 0; r < it.rows; r++, mo__iter_next(&it)) {
        const int c = it.inner[0] == 1 || it.n == 1;
        if (op == W_SUM)
            s += c ? sum_c(it.p[0], it.n) : sum_s(it.p[0], it.inner[0], it.n);
        else
            s += c ? sumsq_c(it.p[0], it.n) : sumsq_s(it.p[0], it.inner[0], it.n);
    }
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

/*
 * The first element that wins under `takes` (max or min), with its 0-based
 * row-major index. The iterator walks rows in logical row-major order, so
 * row r's element j has flat index r*n + j.
 */
static void extreme(const mo_tensor *t, int want_max, float *best, size_t *best_idx)
{
    mo__iter it;
    mo__iter_init(&it, 1, &t);
    float b = *it.p[0];
    size_t bi = 0;
    for (size_t r = 0; r < it.rows; r++, mo__iter_next(&it)) {
        const float *p = it.p[0];
        const ptrdiff_t s = it.inner[0];
        if (want_max) {
            for (size_t j = 0; j < it.n; j++)
                if (takes_max(p[(ptrdiff_t)j * s], b)) { b = p[(ptrdiff_t)j * s]; bi = r * it.n + j; }
        } else {
            for (size_t j = 0; j < it.n; j++)
                if (takes_min(p[(ptrdiff_t)j * s], b)) { b = p[(ptrdiff_t)j * s]; bi = r * it.n + j; }
        }
    }
    *best = b;
    *best_idx = bi;
}

mo_status mo_max(const mo_tensor *t, double *out)
{
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &t));
    if (t->numel == 0) return MO_ERR_ARG;
    float b;
    size_t i;
    extreme(t, 1, &b, &i);
    *out = (double)b;
    return MO_OK;
}

mo_status mo_min(const mo_tensor *t, double *out)
{
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &t));
    if (t->numel == 0) return MO_ERR_ARG;
    float b;
    size_t i;
    extreme(t, 0, &b, &i);
    *out = (double)b;
    return MO_OK;
}

mo_status mo_argmax(const mo_tensor *t, size_t *out)
{
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &t));
    if (t->numel == 0) return MO_ERR_ARG;
    float b;
    extreme(t, 1, &b, out);
    return MO_OK;
}

mo_status mo_dot(const mo_tensor *a, const mo_tensor *b, double *out)
{
    const mo_tensor *ts[2] = {a, b};
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(2, ts));
    if (a->numel != b->numel) return MO_ERR_SHAPE;

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
        s = dot_c(mo_tensor_data(pa), mo_tensor_data(pb), pa->numel);
    } else {
        const mo_tensor *ops[2] = {pa, pb};
        mo__iter it;
        mo__iter_init(&it, 2, ops);
        for (size_t r = 0; r < it.rows; r++, mo__iter_next(&it)) {
            if (it.n == 1 || (it.inner[0] == 1 && it.inner[1] == 1))
                s += dot_c(it.p[0], it.p[1], it.n);
            else
                s += dot_s(it.p[0], it.inner[0], it.p[1], it.inner[1], it.n);
        }
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
    /* float squares summed in double cannot overflow (FLT_MAX^2 ~ 1e77) */
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

/* MO_RED_* plus argmax, which shares the walk. */
#define RED_ARGMAX 4

/* Output columns handled per pass of the "column" strategy (stack buffers). */
#define RED_CHUNK 128

/*
 * One output row: o[j*so] = reduce over k < K of src[j*st + k*sd], j < n.
 *
 * Two loop orders. When the reduced dim is the inner one in memory (|sd| <=
 * |st|), each output element reduces a (usually contiguous) run of K values.
 * Otherwise (e.g. summing the rows of a row-major matrix) reading down a
 * column would stride through memory, so instead RED_CHUNK outputs are
 * accumulated side by side while k walks the rows: every read is then along
 * the contiguous direction.
 */
static void reduce_row(int op, size_t n, float *o, ptrdiff_t so, const float *src, ptrdiff_t st,
                       size_t K, ptrdiff_t sd)
{
    const double inv_k = 1.0 / (double)K; /* K > 0 here except for SUM */
    const ptrdiff_t ast = st < 0 ? -st : st, asd = sd < 0 ? -sd : sd;

    if (asd <= ast || n == 1) {
        for (size_t j = 0; j < n; j++) {
            const float *p = src + (ptrdiff_t)j * st;
            float *oj = o + (ptrdiff_t)j * so;
            if (op == MO_RED_SUM || op == MO_RED_MEAN) {
                double s = (sd == 1 || K == 1) ? sum_c(p, K) : sum_s(p, sd, K);
                *oj = (float)(op == MO_RED_MEAN ? s * inv_k : s);
            } else {
                float b = p[0];
                size_t bi = 0;
                for (size_t k = 1; k < K; k++) {
                    const float x = p[(ptrdiff_t)k * sd];
                    if (op == MO_RED_MIN ? takes_min(x, b) : takes_max(x, b)) {
                        b = x;
                        bi = k;
                    }
                }
                *oj = op == RED_ARGMAX ? (float)bi : b;
            }
        }
        return;
    }

    double acc[RED_CHUNK];
    float best[RED_CHUNK];
    size_t besti[RED_CHUNK];
    for (size_t j0 = 0; j0 < n; j0 += RED_CHUNK) {
        const size_t c = n - j0 < RED_CHUNK ? n - j0 : RED_CHUNK;
        const float *base = src + (ptrdiff_t)j0 * st;
        if (op == MO_RED_SUM || op == MO_RED_MEAN) {
            for (size_t jj = 0; jj < c; jj++) acc[jj] = 0.0;
            for (size_t k = 0; k < K; k++) {
                const float *p = base + (ptrdiff_t)k * sd;
                if (st == 1)
                    for (size_t jj = 0; jj < c; jj++) acc[jj] += (double)p[jj];
                else
                    for (size_t jj = 0; jj < c; jj++) acc[jj] += (double)p[(ptrdiff_t)jj * st];
            }
            for (size_t jj = 0; jj < c; jj++)
                o[(ptrdiff_t)(j0 + jj) * so] = (float)(op == MO_RED_MEAN ? acc[jj] * inv_k : acc[jj]);
        } else {
            for (size_t jj = 0; jj < c; jj++) {
                best[jj] = base[(ptrdiff_t)jj * st];
                besti[jj] = 0;
            }
            for (size_t k = 1; k < K; k++) {
                const float *p = base + (ptrdiff_t)k * sd;
                for (size_t jj = 0; jj < c; jj++) {
                    const float x = p[(ptrdiff_t)jj * st];
                    if (op == MO_RED_MIN ? takes_min(x, best[jj]) : takes_max(x, best[jj])) {
                        best[jj] = x;
                        besti[jj] = k;
                    }
                }
            }
            for (size_t jj = 0; jj < c; jj++)
                o[(ptrdiff_t)(j0 + jj) * so] = op == RED_ARGMAX ? (float)besti[jj] : best[jj];
        }
    }
}

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
    MO_TRY(mo_tensor_empty(&res, rest.ndim, rest.shape, a));
    if (res.numel > 0) {
        if (K == 0) {
            memset(mo_tensor_data(&res), 0, res.numel * sizeof(float));
        } else {
            const mo_tensor *ops[2] = {&res, &rest};
            mo__iter it;
            mo__iter_init(&it, 2, ops);
            for (size_t r = 0; r < it.rows; r++, mo__iter_next(&it))
                reduce_row(op, it.n, it.p[0], it.inner[0], it.p[1], it.inner[1], K, sd);
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
