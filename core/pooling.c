/*
 * pooling.c - max, average and adaptive-average 2-d pooling, forward and backward
 * (moonopt_conv.h); docs/design.md "Convolutions". (core/threadpool.c is the thread
 * pool; this file is the pooling layers.)
 *
 * x is any contiguous tensor of ndim >= 3 whose last two dims are the plane {H, W};
 * the leading dims (N, C) are walked as `planes` independent planes. The loops
 * live in pooling_t.h, one table of them per dtype picked once per call.
 *
 * Threads (docs/design.md "Threads"): the planes are cut into fixed chunks of
 * whole planes (the grain a function of the plane's size alone) and run on the
 * pool; a backward zeroes its own planes of gx in its chunk. A plane is computed
 * exactly as before, so the results are bit-identical at any thread count.
 */
#include "moonopt_internal.h"
#include "threadpool.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The window geometry over one plane. */
typedef struct pool_geom {
    size_t h, w, kh, kw, sh, sw, ph, pw, oh, ow;
} pool_geom;

/*
 * Window o along one dimension: input rows [*lo, *hi) (clipped to the input) and,
 * when n is not NULL, PyTorch's count_include_pad divisor part: the window clipped
 * to the PADDED input, min(start + k, in + pad) - start, start = o * stride - pad.
 */
static void pool_clip(size_t o, size_t stride, size_t pad, size_t k, size_t in, size_t *lo,
                      size_t *hi, size_t *n)
{
    const ptrdiff_t start = (ptrdiff_t)(o * stride) - (ptrdiff_t)pad;
    ptrdiff_t end = start + (ptrdiff_t)k;
    const ptrdiff_t padded_end = (ptrdiff_t)(in + pad);
    if (end > padded_end) end = padded_end;
    if (n) *n = (size_t)(end - start);
    *lo = start < 0 ? 0 : (size_t)start;
    *hi = end > (ptrdiff_t)in ? in : (size_t)end;
}

/* Adaptive bins: floor(i * in / out) and ceil((i + 1) * in / out) (sizes < 2^40: no overflow). */
static size_t adapt_lo(size_t i, size_t in, size_t out) { return i * in / out; }
static size_t adapt_hi(size_t i, size_t in, size_t out) { return ((i + 1) * in + out - 1) / out; }

/*
 * Outputs [*a, *b) of a row have windows wholly inside the plane's columns: start
 * ow * sw - pw >= 0 and end ow * sw - pw + kw <= W (so no column clipping).
 */
static void pool_interior(const pool_geom *g, size_t *a, size_t *b)
{
    const size_t lo = (g->pw + g->sw - 1) / g->sw;
    size_t hi = 0;
    if (g->w + g->pw >= g->kw) hi = (g->w + g->pw - g->kw) / g->sw + 1;
    if (hi > g->ow) hi = g->ow;
    *a = lo;
    *b = hi > lo ? hi : lo;
}

/* Outputs per branch-free block of max pooling (pooling_t.h's max_block). */
#define POOL_BLOCK 8

/* One pooling call: in -> out (x -> y forward, gy -> gx backward), idx the max positions. */
typedef struct pool_job {
    const void *in;
    void *out, *idx;
    const pool_geom *g;
    double base;
    size_t n, op; /* max backward and idx_bad: the input plane's size, the output plane's */
    int cip, backward;
} pool_job;

typedef struct pool_ops {
    mo__chunk_fn max_fwd;
    double (*idx_bad)(void *ctx, size_t lo, size_t hi);
    mo__chunk_fn max_bwd, avg_fwd, avg_bwd, adaptive;
} pool_ops;

/* Runs fn over the planes of job in fixed chunks of whole planes: about MO__GRAIN_STREAM
 * input and output elements per chunk (plane_elems = both planes' sizes). */
static void run_planes(size_t planes, size_t plane_elems, mo__chunk_fn fn, pool_job *job)
{
    size_t grain = plane_elems ? MO__GRAIN_STREAM / plane_elems : 1;
    mo__parallel_for(planes, grain ? grain : 1, fn, job);
}

/* T's bits as a signed integer TK for max_block's keys: TK_MAG clears the sign bit,
 * TK_INF is +inf's bits (a larger magnitude is a NaN). */
#define T float
#define TN(name) name##_f32
#define TK int32_t
#define TK_MAG INT32_MAX
#define TK_INF ((int32_t)0x7F800000)
#include "pooling_t.h"
#define T double
#define TN(name) name##_f64
#define TK int64_t
#define TK_MAG INT64_MAX
#define TK_INF ((int64_t)0x7FF0000000000000)
#include "pooling_t.h"

static const pool_ops *ops_of(const mo_tensor *t)
{
    return t->dtype == MO_FLOAT64 ? &pool_ops_f64 : &pool_ops_f32;
}

/* Live, one dtype, contiguous, ndim >= 3, and no output overlapping an input:
 * ts[0..nin-1] inputs, ts[nin..n-1] outputs. */
static mo_status check_tensors(int n, int nin, const mo_tensor *const *ts)
{
    MO_TRY(mo__check_live(n, ts));
    MO_TRY(mo__check_dtypes(n, ts));
    for (int i = 0; i < n; i++) {
        if (ts[i]->ndim < 3) return MO_ERR_SHAPE;
        if (!mo_tensor_is_contiguous(ts[i])) return MO_ERR_LAYOUT;
    }
    for (int o = nin; o < n; o++)
        for (int i = 0; i < o; i++)
            if (mo__overlaps(ts[o], ts[i])) return MO_ERR_ARG;
    return MO_OK;
}

/* Whether a and b have the same leading (plane-indexing) dims and ndim. */
static int same_lead(const mo_tensor *a, const mo_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim - 2; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

/* The geometry of x -> y under args a (checked: kernel, stride >= 1, padding at most
 * half the kernel, y's plane the output size). */
static mo_status pool_geometry(const mo_tensor *x, const mo_tensor *y, const mo_pool2d_args *a,
                               pool_geom *g)
{
    if (!a) return MO_ERR_ARG;
    for (int i = 0; i < 2; i++)
        if (a->kernel[i] == 0 || a->stride[i] == 0 || a->padding[i] > a->kernel[i] / 2)
            return MO_ERR_ARG;
    const int n = x->ndim;
    /* an empty plane: the windows would hold nothing but padding */
    if (x->shape[n - 2] == 0 || x->shape[n - 1] == 0) return MO_ERR_SHAPE;
    *g = (pool_geom){x->shape[n - 2], x->shape[n - 1], a->kernel[0], a->kernel[1], a->stride[0],
                     a->stride[1], a->padding[0], a->padding[1], 0, 0};
    MO_TRY(mo_conv2d_out_size(g->h, g->kh, g->sh, g->ph, 1, &g->oh));
    MO_TRY(mo_conv2d_out_size(g->w, g->kw, g->sw, g->pw, 1, &g->ow));
    if (!same_lead(x, y) || y->shape[n - 2] != g->oh || y->shape[n - 1] != g->ow)
        return MO_ERR_SHAPE;
    return MO_OK;
}

static size_t planes_of(const mo_tensor *t)
{
    const size_t plane = t->shape[t->ndim - 2] * t->shape[t->ndim - 1];
    return plane == 0 ? 0 : t->numel / plane;
}

mo_status mo_max_pool2d_forward(mo_tensor *y, mo_tensor *idx, const mo_tensor *x,
                                const mo_pool2d_args *a, size_t index_base)
{
    const mo_tensor *ts[3] = {x, y, idx};
    MO_TRY(check_tensors(3, 1, ts));
    pool_geom g;
    MO_TRY(pool_geometry(x, y, a, &g));
    if (!mo_tensor_same_shape(y, idx)) return MO_ERR_SHAPE;
    /* float32 holds every integer up to 2^24 exactly; past that positions would round */
    if (x->dtype == MO_FLOAT32 && (double)(g.h * g.w) + (double)index_base > 16777216.0)
        return MO_ERR_RANGE;
    pool_job j = {.in = mo_tensor_ptr(x), .out = mo_tensor_ptr(y), .idx = mo_tensor_ptr(idx),
                  .g = &g, .base = (double)index_base};
    run_planes(planes_of(x), g.h * g.w + 2 * g.oh * g.ow, ops_of(x)->max_fwd, &j);
    return MO_OK;
}

mo_status mo_max_pool2d_backward(mo_tensor *gx, const mo_tensor *gy, const mo_tensor *idx,
                                 size_t index_base)
{
    const mo_tensor *ts[3] = {gy, idx, gx};
    MO_TRY(check_tensors(3, 2, ts));
    if (!mo_tensor_same_shape(gy, idx) || !same_lead(gx, gy)) return MO_ERR_SHAPE;
    const size_t plane = gx->shape[gx->ndim - 2] * gx->shape[gx->ndim - 1];
    const size_t op = gy->shape[gy->ndim - 2] * gy->shape[gy->ndim - 1];
    const pool_ops *ops = ops_of(gx);
    pool_job j = {.in = mo_tensor_ptr(gy), .out = mo_tensor_ptr(gx), .idx = mo_tensor_ptr(idx),
                  .base = (double)index_base, .n = plane, .op = op};
    /* every index first (a count of the bad ones, in any order: a whole number), so a bad
     * one leaves gx untouched */
    if (idx->numel > 0 && mo__parallel_sum(idx->numel, MO__GRAIN_STREAM, ops->idx_bad, &j) != 0.0)
        return MO_ERR_RANGE;
    run_planes(planes_of(gx), plane + 2 * op, ops->max_bwd, &j);
    return MO_OK;
}

mo_status mo_avg_pool2d_forward(mo_tensor *y, const mo_tensor *x, const mo_pool2d_args *a)
{
    const mo_tensor *ts[2] = {x, y};
    MO_TRY(check_tensors(2, 1, ts));
    pool_geom g;
    MO_TRY(pool_geometry(x, y, a, &g));
    pool_job j = {.in = mo_tensor_ptr(x), .out = mo_tensor_ptr(y), .g = &g,
                  .cip = a->count_include_pad};
    run_planes(planes_of(x), g.h * g.w + g.oh * g.ow, ops_of(x)->avg_fwd, &j);
    return MO_OK;
}

mo_status mo_avg_pool2d_backward(mo_tensor *gx, const mo_tensor *gy, const mo_pool2d_args *a)
{
    const mo_tensor *ts[2] = {gy, gx};
    MO_TRY(check_tensors(2, 1, ts));
    pool_geom g;
    MO_TRY(pool_geometry(gx, gy, a, &g));
    pool_job j = {.in = mo_tensor_ptr(gy), .out = mo_tensor_ptr(gx), .g = &g,
                  .cip = a->count_include_pad};
    run_planes(planes_of(gx), g.h * g.w + g.oh * g.ow, ops_of(gx)->avg_bwd, &j);
    return MO_OK;
}

/* The geometry of adaptive pooling from x's plane to y's (both >= 1). */
static mo_status adaptive_geometry(const mo_tensor *x, const mo_tensor *y, pool_geom *g)
{
    const int n = x->ndim;
    if (!same_lead(x, y)) return MO_ERR_SHAPE;
    *g = (pool_geom){x->shape[n - 2], x->shape[n - 1], 0, 0, 0, 0, 0, 0, y->shape[n - 2],
                     y->shape[n - 1]};
    if (g->oh == 0 || g->ow == 0) return MO_ERR_SHAPE;
    return MO_OK;
}

mo_status mo_adaptive_avg_pool2d_forward(mo_tensor *y, const mo_tensor *x)
{
    const mo_tensor *ts[2] = {x, y};
    MO_TRY(check_tensors(2, 1, ts));
    pool_geom g;
    MO_TRY(adaptive_geometry(x, y, &g));
    /* an empty plane has nothing to average (every bin would divide by 0) */
    if ((g.h == 0 || g.w == 0) && y->numel > 0) return MO_ERR_SHAPE;
    pool_job j = {.in = mo_tensor_ptr(x), .out = mo_tensor_ptr(y), .g = &g};
    run_planes(planes_of(y), g.h * g.w + g.oh * g.ow, ops_of(x)->adaptive, &j);
    return MO_OK;
}

mo_status mo_adaptive_avg_pool2d_backward(mo_tensor *gx, const mo_tensor *gy)
{
    const mo_tensor *ts[2] = {gy, gx};
    MO_TRY(check_tensors(2, 1, ts));
    pool_geom g;
    MO_TRY(adaptive_geometry(gx, gy, &g));
    if ((g.h == 0 || g.w == 0) && gy->numel > 0) return MO_ERR_SHAPE;
    pool_job j = {.in = mo_tensor_ptr(gy), .out = mo_tensor_ptr(gx), .g = &g, .backward = 1};
    if (g.h == 0 || g.w == 0) return MO_OK; /* gx is empty */
    run_planes(planes_of(gy), g.h * g.w + g.oh * g.ow, ops_of(gx)->adaptive, &j);
    return MO_OK;
}
