/*
 * conv.c - 2-d convolution, forward and backward (moonopt_conv.h); docs/design.md
 * "Convolutions".
 *
 * Layout NCHW, weights {O, C/G, kH, kW}. The general path lowers each image and
 * group to one matrix product:
 *   col {K, P} = im2col(x[n, group])          K = C/G * kH * kW, P = OH * OW
 *   y[n, group] {O/G, P} = w[group] {O/G, K} @ col
 * and the backward rebuilds the same col per image (the call is stateless):
 *   gw[group] += gy[n, group] @ col^T,   col = w[group]^T @ gy[n, group] -> col2im -> gx.
 * One image per gemm: those shapes already run near the large-gemm rate, and batching
 * images would need gy / y copied between {N, O, P} and {O, B*P} (docs/design.md
 * "Convolutions" has the measurements).
 * The products go through mo_matmul (CBLAS sgemm/dgemm, or the portable loop) on
 * handles that borrow the tensors' storage (no copies). Two special cases skip
 * im2col: a 1x1 kernel with stride 1 and no padding, where x[n, group] viewed
 * {C/G, H*W} already is col, and the forward of depthwise convolutions (groups == C),
 * where K = kH*kW makes each gemm tiny and direct loops win (measured on a {128, 32, 14,
 * 14} 3x3 depthwise layer: about 12% faster; its backward was slower as direct loops than
 * through im2col, so it keeps the general path).
 * One col buffer is allocated per call (its size checked) and reused. im2col and col2im
 * run on the thread pool, cut by input channel (cols_run); the products are cut by
 * mo_matmul itself.
 */
#include "moonopt_internal.h"
#include "threadpool.h"

#include <string.h>

/* The geometry of one convolution (or pooling window) over one plane. */
typedef struct conv_geom {
    size_t h, w;      /* input plane */
    size_t kh, kw;    /* kernel */
    size_t sh, sw;    /* stride */
    size_t ph, pw;    /* padding */
    size_t dh, dw;    /* dilation */
    size_t oh, ow;    /* output plane */
} conv_geom;

/*
 * The outputs o in [0, n) whose input position o * stride + off lies in [0, in):
 * [*lo, *hi) (empty when lo == hi). Computing it once per kernel tap keeps the
 * bounds tests out of the inner loops.
 */
static void win_range(size_t n, size_t stride, ptrdiff_t off, size_t in, size_t *lo, size_t *hi)
{
    const ptrdiff_t s = (ptrdiff_t)stride;
    ptrdiff_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    ptrdiff_t b = (ptrdiff_t)in - 1 - off < 0 ? 0 : ((ptrdiff_t)in - 1 - off) / s + 1;
    if (b > (ptrdiff_t)n) b = (ptrdiff_t)n;
    if (a > b) a = b;
    *lo = (size_t)a;
    *hi = (size_t)b;
}

/* One dtype's loops (conv_t.h), picked once per call. */
typedef struct conv_ops {
    void (*im2col)(const void *x, const conv_geom *g, size_t C, void *col);
    void (*col2im)(void *col, const conv_geom *g, size_t C, void *gx);
    void (*add_bias)(void *y, const void *b, ptrdiff_t bstride, size_t rows, size_t n);
    void (*fill_bias)(void *y, const void *b, ptrdiff_t bstride, size_t rows, size_t n);
    void (*row_sums)(double *acc, const void *g, size_t rows, size_t n);
    void (*add_acc)(void *gb, ptrdiff_t stride, const double *acc, size_t n);
    void (*dw_forward)(const void *x, const void *w, void *y, const conv_geom *g, size_t C,
                       size_t mult);
} conv_ops;

#define T float
#define TN(name) name##_f32
#include "conv_t.h"
#define T double
#define TN(name) name##_f64
#include "conv_t.h"

mo_status mo_conv2d_out_size(size_t in, size_t k, size_t stride, size_t pad, size_t dil,
                             size_t *out)
{
    if (!out || k == 0 || stride == 0 || dil == 0) return MO_ERR_ARG;
    size_t span, padded;
    MO_TRY(mo_size_mul(dil, k - 1, &span));
    MO_TRY(mo_size_add(span, 1, &span));
    MO_TRY(mo_size_mul(pad, 2, &padded));
    MO_TRY(mo_size_add(padded, in, &padded));
    if (span > padded) return MO_ERR_SHAPE;
    *out = (padded - span) / stride + 1;
    return MO_OK;
}

/* Everything one call needs to know, derived from x, w and the args. */
typedef struct conv_dims {
    size_t n, c, o, groups, cg, og;  /* batch, channels in/out, per group */
    size_t k, p;                     /* col {k, p}: k = cg*kh*kw, p = oh*ow */
    conv_geom g;
    int pointwise;                   /* 1x1, stride 1, no padding: x is col */
    int depthwise;                   /* groups == C > 1: direct forward loops */
    const conv_ops *ops;
    size_t esize;                    /* bytes per element of the dtype */
} conv_dims;

static mo_status conv_check(const mo_tensor *x, const mo_tensor *w, const mo_conv2d_args *a,
                            conv_dims *d)
{
    const mo_tensor *ts[2] = {x, w};
    if (!a) return MO_ERR_ARG;
    MO_TRY(mo__check_live(2, ts));
    MO_TRY(mo__check_dtypes(2, ts));
    if (x->ndim != 4 || w->ndim != 4) return MO_ERR_SHAPE;
    if (!mo_tensor_is_contiguous(x) || !mo_tensor_is_contiguous(w)) return MO_ERR_LAYOUT;
    if (a->groups == 0) return MO_ERR_ARG;
    conv_geom *g = &d->g;
    *g = (conv_geom){x->shape[2], x->shape[3], w->shape[2], w->shape[3], a->stride[0],
                     a->stride[1], a->padding[0], a->padding[1], a->dilation[0],
                     a->dilation[1], 0, 0};
    d->n = x->shape[0];
    d->c = x->shape[1];
    d->o = w->shape[0];
    d->groups = a->groups;
    d->cg = w->shape[1];
    if (d->o % d->groups != 0) return MO_ERR_ARG;
    size_t cin;
    MO_TRY(mo_size_mul(d->cg, d->groups, &cin));
    if (cin != d->c) return MO_ERR_SHAPE;
    d->og = d->o / d->groups;
    MO_TRY(mo_conv2d_out_size(g->h, g->kh, g->sh, g->ph, g->dh, &g->oh));
    MO_TRY(mo_conv2d_out_size(g->w, g->kw, g->sw, g->pw, g->dw, &g->ow));
    MO_TRY(mo_size_mul(g->oh, g->ow, &d->p));
    MO_TRY(mo_size_mul(d->cg, g->kh, &d->k));
    MO_TRY(mo_size_mul(d->k, g->kw, &d->k));
    d->pointwise = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 &&
                   g->pw == 0;
    d->depthwise = d->cg == 1 && d->groups > 1 && !d->pointwise;
    d->ops = x->dtype == MO_FLOAT64 ? &conv_ops_f64 : &conv_ops_f32;
    d->esize = mo_dtype_size(x->dtype);
    return MO_OK;
}

/* An output or gradient t: live, x's dtype, exactly `shape`, contiguous when asked,
 * sharing no memory with the n inputs. */
static mo_status check_out(const mo_tensor *t, const mo_tensor *x, int ndim, const size_t *shape,
                           int contiguous, int n, const mo_tensor *const *ins)
{
    const mo_tensor *ts[2] = {x, t};
    MO_TRY(mo__check_live(2, ts));
    MO_TRY(mo__check_dtypes(2, ts));
    if (t->ndim != ndim) return MO_ERR_SHAPE;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return MO_ERR_SHAPE;
    if (contiguous && !mo_tensor_is_contiguous(t)) return MO_ERR_LAYOUT;
    for (int i = 0; i < n; i++)
        if (ins[i] && mo__overlaps(t, ins[i])) return MO_ERR_ARG;
    return MO_OK;
}

/* A 2-d {rows, cols} row-major handle on base's storage from element `off` on; it
 * takes no reference (used within one call while base keeps the storage alive). */
static mo_tensor mat(const mo_tensor *base, size_t off, size_t rows, size_t cols)
{
    mo_tensor v = *base;
    v.offset = base->offset + off;
    v.ndim = 2;
    v.shape[0] = rows;
    v.shape[1] = cols;
    v.stride[0] = (ptrdiff_t)cols;
    v.stride[1] = 1;
    v.numel = rows * cols;
    return v;
}

/* Element `off` of a contiguous tensor, as a byte pointer of its dtype. */
static void *elem(const mo_tensor *t, size_t off)
{
    return (char *)mo_tensor_ptr(t) + off * mo_dtype_size(t->dtype);
}

/* A scratch buffer {rows, cols} of x's dtype (rows * cols checked). */
static mo_status scratch(mo_tensor *t, const mo_tensor *x, size_t rows, size_t cols)
{
    size_t n;
    MO_TRY(mo_size_mul(rows, cols, &n));
    const size_t shape[2] = {rows, cols};
    return mo_tensor_empty_dtype(t, 2, shape, x->dtype, NULL);
}

/* im2col and col2im on the pool, cut by input channel: channel c reads plane c of x and
 * writes rows [c*kH*kW, (c+1)*kH*kW) of col (im2col), or reads those rows and adds into
 * plane c of gx (col2im), so chunks touch disjoint memory and each pixel gets its
 * contributions in the serial order: the same bits at any thread count. */
typedef struct cols_job {
    const conv_dims *d;
    char *planes;  /* x (im2col) or gx (col2im): {C/G, H, W} of one image and group */
    char *col;     /* {K, P} */
    int to_col;    /* 1: im2col, 0: col2im */
} cols_job;

static void cols_chunk(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const cols_job *j = ctx;
    const conv_dims *d = j->d;
    const size_t es = d->esize;
    char *planes = j->planes + lo * d->g.h * d->g.w * es;
    char *col = j->col + lo * d->g.kh * d->g.kw * d->p * es;
    (void)chunk;
    if (j->to_col)
        d->ops->im2col(planes, &d->g, hi - lo, col);
    else
        d->ops->col2im(col, &d->g, hi - lo, planes);
}

static void cols_run(const conv_dims *d, void *planes, void *col, int to_col)
{
    cols_job j = {d, planes, col, to_col};
    /* a channel moves kH*kW*P elements: chunks of about a streaming grain */
    const size_t per = d->g.kh * d->g.kw * d->p;
    const size_t grain = per >= MO__GRAIN_STREAM ? 1 : MO__GRAIN_STREAM / (per ? per : 1);
    mo__parallel_for(d->cg, grain, cols_chunk, &j);
}

/* col {K, P} of the image and group at element offset xo of x: x itself viewed {C/G, P}
 * for a pointwise kernel, else im2col into the scratch col. */
static mo_tensor col_of(const conv_dims *d, const mo_tensor *x, size_t xo, mo_tensor *col)
{
    if (d->pointwise) return mat(x, xo, d->cg, d->p);
    cols_run(d, elem(x, xo), mo_tensor_ptr(col), 1);
    return mat(col, 0, d->k, d->p);
}

/* y[n] for every image: gemm per group (im2col unless pointwise). With a bias, y[n] is
 * first filled with it and the gemm adds (beta = 1): one pass over y[n] instead of the
 * gemm's zeroing (beta = 0) and then a bias pass. */
static mo_status forward_gemm(mo_tensor *y, const mo_tensor *x, const mo_tensor *w,
                              const mo_tensor *b, const conv_dims *d, mo_tensor *col)
{
    const size_t xplane = d->g.h * d->g.w, xs = d->c * xplane, ys = d->o * d->p;
    const double beta = b ? 1.0 : 0.0;
    for (size_t n = 0; n < d->n; n++) {
        if (b) d->ops->fill_bias(elem(y, n * ys), mo_tensor_ptr(b), b->stride[0], d->o, d->p);
        for (size_t grp = 0; grp < d->groups; grp++) {
            const size_t xo = n * xs + grp * d->cg * xplane;
            mo_tensor cv = col_of(d, x, xo, col);
            mo_tensor yv = mat(y, n * ys + grp * d->og * d->p, d->og, d->p);
            mo_tensor wv = mat(w, grp * d->og * d->k, d->og, d->k);
            MO_TRY(mo_matmul(&yv, &wv, 0, &cv, 0, 1.0, beta));
        }
    }
    return MO_OK;
}

mo_status mo_conv2d_forward(mo_tensor *y, const mo_tensor *x, const mo_tensor *w,
                            const mo_tensor *b, const mo_conv2d_args *a)
{
    conv_dims d;
    MO_TRY(conv_check(x, w, a, &d));
    if (b) {
        const size_t bs[1] = {d.o};
        const mo_tensor *none[1] = {NULL};
        MO_TRY(check_out(b, x, 1, bs, 0, 0, none));
    }
    const size_t ys[4] = {d.n, d.o, d.g.oh, d.g.ow};
    const mo_tensor *ins[3] = {x, w, b};
    MO_TRY(check_out(y, x, 4, ys, 1, 3, ins));
    if (y->numel == 0) return MO_OK;
    if (d.depthwise) {
        const size_t xs = d.c * d.g.h * d.g.w, yst = d.o * d.p;
        for (size_t n = 0; n < d.n; n++) {
            d.ops->dw_forward(elem(x, n * xs), mo_tensor_ptr(w), elem(y, n * yst), &d.g, d.c,
                              d.og);
            if (b) d.ops->add_bias(elem(y, n * yst), mo_tensor_ptr(b), b->stride[0], d.o, d.p);
        }
        return MO_OK;
    }
    mo_tensor col;
    mo_tensor_init(&col);
    if (!d.pointwise) MO_TRY(scratch(&col, x, d.k, d.p));
    mo_status st = forward_gemm(y, x, w, b, &d, &col);
    mo_tensor_release(&col);
    return st;
}

/* ---- backward ---- */

/* gw {O, K} (contiguous) += gy[n] @ col^T and gx = col2im(w^T @ gy[n]) per image and
 * group (either may be NULL), and acc (O doubles, or NULL) += gy[n]'s row sums for the
 * bias while gy[n] passes through the cache anyway. */
static mo_status backward_gemm(mo_tensor *gx, mo_tensor *gw, const mo_tensor *gy,
                               const mo_tensor *x, const mo_tensor *w, const conv_dims *d,
                               mo_tensor *col, double *acc)
{
    const size_t xplane = d->g.h * d->g.w, xs = d->c * xplane, ys = d->o * d->p;
    for (size_t n = 0; n < d->n; n++) {
        if (acc) d->ops->row_sums(acc, elem(gy, n * ys), d->o, d->p);
        /* col2im adds: zero this image's gx now, while it is about to be in cache */
        if (gx && !d->pointwise) memset(elem(gx, n * xs), 0, xs * mo_dtype_size(gx->dtype));
        for (size_t grp = 0; grp < d->groups; grp++) {
            const size_t xo = n * xs + grp * d->cg * xplane;
            mo_tensor gyv = mat(gy, n * ys + grp * d->og * d->p, d->og, d->p);
            if (gw) {
                mo_tensor cv = col_of(d, x, xo, col);
                mo_tensor gwv = mat(gw, grp * d->og * d->k, d->og, d->k);
                MO_TRY(mo_matmul(&gwv, &gyv, 0, &cv, 1, 1.0, 1.0));
            }
            if (gx) {
                mo_tensor wv = mat(w, grp * d->og * d->k, d->og, d->k);
                if (d->pointwise) {
                    mo_tensor gxv = mat(gx, xo, d->cg, d->p);
                    MO_TRY(mo_matmul(&gxv, &wv, 1, &gyv, 0, 1.0, 0.0));
                } else {
                    mo_tensor cv = mat(col, 0, d->k, d->p);
                    MO_TRY(mo_matmul(&cv, &wv, 1, &gyv, 0, 1.0, 0.0));
                    cols_run(d, elem(gx, xo), mo_tensor_ptr(col), 0);
                }
            }
        }
    }
    return MO_OK;
}

/* Validates the backward's operands (everything but the arithmetic). */
static mo_status backward_check(const mo_tensor *gx, const mo_tensor *gw, const mo_tensor *gb,
                                const mo_tensor *gy, const mo_tensor *x, const mo_tensor *w,
                                const mo_conv2d_args *a, conv_dims *d)
{
    MO_TRY(conv_check(x, w, a, d));
    const size_t ys[4] = {d->n, d->o, d->g.oh, d->g.ow};
    const mo_tensor *none[1] = {NULL};
    MO_TRY(check_out(gy, x, 4, ys, 1, 0, none));
    /* each output against the inputs and the outputs checked before it */
    const mo_tensor *ins[5] = {x, w, gy, gx, gw};
    if (gx) MO_TRY(check_out(gx, x, 4, x->shape, 1, 3, ins));
    if (gw) MO_TRY(check_out(gw, x, 4, w->shape, 0, 4, ins));
    if (gb) {
        const size_t bs[1] = {d->o};
        MO_TRY(check_out(gb, x, 1, bs, 0, 5, ins));
    }
    return MO_OK;
}

/* The arithmetic of the backward, once everything is allocated. acc: O doubles. */
static mo_status backward_run(mo_tensor *gx, mo_tensor *gw, mo_tensor *gb, const mo_tensor *gy,
                              const mo_tensor *x, const mo_tensor *w, const conv_dims *d,
                              mo_tensor *col, double *acc)
{
    const size_t ys = d->o * d->p;
    if (gx || gw) {
        MO_TRY(backward_gemm(gx, gw, gy, x, w, d, col, gb ? acc : NULL));
    } else if (gb) {
        for (size_t n = 0; n < d->n; n++) d->ops->row_sums(acc, elem(gy, n * ys), d->o, d->p);
    }
    if (gb) d->ops->add_acc(mo_tensor_ptr(gb), gb->stride[0], acc, d->o);
    return MO_OK;
}

mo_status mo_conv2d_backward(mo_tensor *gx, mo_tensor *gw, mo_tensor *gb, const mo_tensor *gy,
                             const mo_tensor *x, const mo_tensor *w, const mo_conv2d_args *a)
{
    conv_dims d;
    MO_TRY(backward_check(gx, gw, gb, gy, x, w, a, &d));
    /* every allocation before the first write: col, a contiguous stand-in for a
     * strided gw (added to it at the end), the bias sums */
    mo_tensor col, gwc, acc;
    mo_tensor_init(&col);
    mo_tensor_init(&gwc);
    mo_tensor_init(&acc);
    mo_status st = MO_OK;
    const int need_col = !d.pointwise && (gx || gw);
    if (need_col) st = scratch(&col, x, d.k, d.p);
    mo_tensor *gwr = gw;
    if (st == MO_OK && gw && !mo_tensor_is_contiguous(gw)) {
        st = mo_tensor_zeros_dtype(&gwc, 4, w->shape, w->dtype, NULL);
        gwr = &gwc;
    }
    if (st == MO_OK && gb) st = mo_tensor_zeros_dtype(&acc, 1, &d.o, MO_FLOAT64, NULL);
    if (st == MO_OK)
        st = backward_run(gx, gwr, gb, gy, x, w, &d, &col, gb ? mo_tensor_data_f64(&acc) : NULL);
    if (st == MO_OK && gwr != gw) st = mo_binary(gw, gw, &gwc, MO_ADD);
    mo_tensor_release(&col);
    mo_tensor_release(&gwc);
    mo_tensor_release(&acc);
    return st;
}
