/*
 * matmul.c - C = alpha * op(A) @ op(B) + beta * C for 2-d tensors.
 *
 * Two back ends:
 *   - CBLAS sgemm (when built with MO_HAVE_CBLAS). A row-major operand is
 *     passed as is; a column-major one (a transposed view of a row-major
 *     matrix) is passed as its row-major transpose with the trans flag
 *     flipped, so neither needs a copy. Only operands with no unit stride at
 *     all (e.g. a view that selects every other column) are copied first.
 *   - A portable cache-blocked loop (any strides, no copies of the inputs
 *     beyond one packed tile of op(B) on the stack).
 * Both follow BLAS's rules: alpha == 0 or k == 0 leaves C = beta * C, and
 * beta == 0 overwrites C without reading it (NaN in C does not leak).
 * C may not share memory with A or B in the kernels; when it does, the
 * product goes through a temporary.
 *
 * Threads: a large product is cut into fixed blocks of C's longer side, each
 * one single-threaded BLAS (or portable) call on the pool (mm_parallel); the
 * cut depends on m, n, k only, so the bits are the same at any thread count.
 * OpenBLAS's own threading is kept off (threadpool.c, docs/design.md "Threads").
 */
#include "moonopt_internal.h"
#include "threadpool.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#ifdef MO_HAVE_CBLAS
#include <cblas.h>
#endif

const char *mo_blas_backend(void)
{
#ifdef MO_HAVE_CBLAS
    return "cblas";
#else
    return "portable";
#endif
}

/* OpenBLAS picks its kernels for the CPU when it loads, and kernels sum in
 * different orders, so float32 training results depend on which one runs;
 * naming it lets a printed result say what produced it. */
const char *mo_blas_kernel(void)
{
#ifdef MO_HAVE_OPENBLAS
    const char *name = openblas_get_corename();
    return name ? name : "unknown";
#elif defined(MO_HAVE_CBLAS)
    return "unknown";
#else
    return "portable";
#endif
}

/* ---- portable kernel ---- */

/* Tile sizes: one packed KB x NB tile of op(B) is 16 KiB and stays in L1. */
#define MM_KB 64
#define MM_NB 64

#define T float
#define TN(name) name##_f32
#include "matmul_t.h"
#define T double
#define TN(name) name##_f64
#include "matmul_t.h"

/* ---- shared driver ---- */

typedef struct mm_dims {
    size_t m, n, k;
} mm_dims;

/* Validates everything; on success the dims of op(A) {m, k}, op(B) {k, n}. */
static mo_status mm_check(const mo_tensor *c, const mo_tensor *a, int ta, const mo_tensor *b,
                          int tb, mm_dims *d)
{
    const mo_tensor *ts[3] = {c, a, b};
    MO_TRY(mo__check_live(3, ts));
    MO_TRY(mo__check_dtypes(3, ts));
    if (a->ndim != 2 || b->ndim != 2 || c->ndim != 2) return MO_ERR_SHAPE;
    const size_t m = ta ? a->shape[1] : a->shape[0];
    const size_t ka = ta ? a->shape[0] : a->shape[1];
    const size_t kb = tb ? b->shape[1] : b->shape[0];
    const size_t n = tb ? b->shape[0] : b->shape[1];
    if (ka != kb || c->shape[0] != m || c->shape[1] != n) return MO_ERR_SHAPE;
    d->m = m;
    d->n = n;
    d->k = ka;
    return MO_OK;
}

static void run_portable(mo_tensor *c, const mo_tensor *a, int ta, const mo_tensor *b, int tb,
                         double alpha, const mm_dims *d)
{
    /* fold the transposes into the strides */
    const ptrdiff_t as0 = ta ? a->stride[1] : a->stride[0], as1 = ta ? a->stride[0] : a->stride[1];
    const ptrdiff_t bs0 = tb ? b->stride[1] : b->stride[0], bs1 = tb ? b->stride[0] : b->stride[1];
    if (c->dtype == MO_FLOAT64)
        gemm_portable_f64(d->m, d->n, d->k, alpha, mo_tensor_ptr(a), as0, as1, mo_tensor_ptr(b),
                          bs0, bs1, mo_tensor_ptr(c), c->stride[0], c->stride[1]);
    else
        gemm_portable_f32(d->m, d->n, d->k, (float)alpha, mo_tensor_ptr(a), as0, as1,
                          mo_tensor_ptr(b), bs0, bs1, mo_tensor_ptr(c), c->stride[0],
                          c->stride[1]);
}

#ifdef MO_HAVE_CBLAS
/*
 * How x (rows x cols) looks to row-major BLAS: *flip = 0 when element (i, j)
 * is at i*ld + j (row-major), *flip = 1 when it is at j*ld + i (column-major,
 * i.e. x^T is row-major). Returns 0 when neither holds (no unit stride, a
 * negative stride, or a leading dimension that does not fit in an int).
 * Dimensions of size 1 have no meaningful stride, so they never disqualify.
 */
static int blas_layout(const mo_tensor *x, int *flip, int *ld)
{
    const size_t rows = x->shape[0], cols = x->shape[1];
    const ptrdiff_t s0 = x->stride[0], s1 = x->stride[1];
    const ptrdiff_t mincols = cols > 1 ? (ptrdiff_t)cols : 1;
    const ptrdiff_t minrows = rows > 1 ? (ptrdiff_t)rows : 1;
    ptrdiff_t l;
    if ((cols <= 1 || s1 == 1) && (rows <= 1 || s0 >= mincols)) {
        *flip = 0;
        l = rows <= 1 ? mincols : s0;
    } else if ((rows <= 1 || s0 == 1) && (cols <= 1 || s1 >= minrows)) {
        *flip = 1;
        l = cols <= 1 ? minrows : s1;
    } else {
        return 0;
    }
    if (l > INT_MAX) return 0;
    *ld = (int)l;
    return 1;
}

/* The sgemm call for BLAS-compatible operands and dims that fit in int. */
static void run_cblas(mo_tensor *c, const mo_tensor *a, int ta, const mo_tensor *b, int tb,
                      double alpha, double beta, const mm_dims *d)
{
    int fa, fb, fc, lda, ldb, ldc;
    blas_layout(a, &fa, &lda);
    blas_layout(b, &fb, &ldb);
    blas_layout(c, &fc, &ldc);
    /* the stored row-major matrix of a column-major operand is its transpose */
    const int tA = (ta != 0) != (fa != 0), tB = (tb != 0) != (fb != 0);
    const enum CBLAS_TRANSPOSE TA = tA ? CblasTrans : CblasNoTrans;
    const enum CBLAS_TRANSPOSE TB = tB ? CblasTrans : CblasNoTrans;
    /* C column-major: compute C^T = op(B)^T @ op(A)^T, which is row-major */
    const enum CBLAS_TRANSPOSE TBt = tB ? CblasNoTrans : CblasTrans;
    const enum CBLAS_TRANSPOSE TAt = tA ? CblasNoTrans : CblasTrans;
    const int m = (int)d->m, n = (int)d->n, k = (int)d->k;
    if (c->dtype == MO_FLOAT64) {
        const double *pa = mo_tensor_ptr(a), *pb = mo_tensor_ptr(b);
        double *pc = mo_tensor_ptr(c);
        if (!fc)
            cblas_dgemm(CblasRowMajor, TA, TB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);
        else
            cblas_dgemm(CblasRowMajor, TBt, TAt, n, m, k, alpha, pb, ldb, pa, lda, beta, pc, ldc);
    } else {
        const float *pa = mo_tensor_ptr(a), *pb = mo_tensor_ptr(b);
        float *pc = mo_tensor_ptr(c);
        const float al = (float)alpha, be = (float)beta;
        if (!fc)
            cblas_sgemm(CblasRowMajor, TA, TB, m, n, k, al, pa, lda, pb, ldb, be, pc, ldc);
        else
            cblas_sgemm(CblasRowMajor, TBt, TAt, n, m, k, al, pb, ldb, pa, lda, be, pc, ldc);
    }
}
#endif

/* ---- the fixed partition of a product (docs/design.md "Threads") ---- */

/* Products below this many multiply-adds run as one call: waking the pool costs
 * tens of microseconds, about what a 2^21 multiply-add sgemm takes on one core. */
#define MM_PAR_MACS ((size_t)1 << 21)
/* Blocks of C's longer side: at least MM_MIN_BLOCK rows (or columns), so that the
 * other operand's repacking in every call stays a small share of the work, and at
 * most MM_MAX_BLOCKS of them; rounded up to a multiple of 16 (aligned SIMD rows). */
#define MM_MIN_BLOCK ((size_t)128)
#define MM_MAX_BLOCKS ((size_t)16)

typedef struct mm_job {
    mo_tensor *c;
    const mo_tensor *a, *b;
    int ta, tb, split_rows, blas;
    double alpha, beta;
    mm_dims d;
} mm_job;

/* x's view with dimension dim restricted to [lo, hi) (a handle taking no reference). */
static mo_tensor mm_narrow(const mo_tensor *x, int dim, size_t lo, size_t hi)
{
    mo_tensor v = *x;
    v.offset = (size_t)((ptrdiff_t)x->offset + (ptrdiff_t)lo * x->stride[dim]);
    v.shape[dim] = hi - lo;
    v.numel = v.shape[0] * v.shape[1];
    return v;
}

/* One block: rows [lo, hi) of C and op(A) (split_rows), or columns of C and op(B). */
static void mm_block(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const mm_job *j = ctx;
    (void)chunk;
    mm_dims d = j->d;
    mo_tensor a = *j->a, b = *j->b, c;
    if (j->split_rows) {
        a = mm_narrow(j->a, j->ta ? 1 : 0, lo, hi);
        c = mm_narrow(j->c, 0, lo, hi);
        d.m = hi - lo;
    } else {
        b = mm_narrow(j->b, j->tb ? 0 : 1, lo, hi);
        c = mm_narrow(j->c, 1, lo, hi);
        d.n = hi - lo;
    }
#ifdef MO_HAVE_CBLAS
    if (j->blas) {
        run_cblas(&c, &a, j->ta, &b, j->tb, j->alpha, j->beta, &d);
        return;
    }
#endif
    run_portable(&c, &a, j->ta, &b, j->tb, j->alpha, &d);
}

/*
 * C = alpha * op(A) @ op(B) (+ beta * C for BLAS; the portable kernel adds to C,
 * already scaled by the caller) in blocks of the longer of m and n. The block
 * size is a function of m, n, k alone; every block is the same call at any
 * thread count. A sub-view of a BLAS-compatible operand stays BLAS-compatible.
 */
static void mm_parallel(mo_tensor *c, const mo_tensor *a, int ta, const mo_tensor *b, int tb,
                        double alpha, double beta, const mm_dims *d, int blas)
{
    mm_job j = {c, a, b, ta, tb, d->m >= d->n, blas, alpha, beta, *d};
    const size_t len = j.split_rows ? d->m : d->n;
    size_t macs = 0;
    if (mo_size_mul(d->m, d->n, &macs) != MO_OK || mo_size_mul(macs, d->k, &macs) != MO_OK)
        macs = SIZE_MAX;
    if (macs < MM_PAR_MACS || len < 2 * MM_MIN_BLOCK) {
        mm_block(&j, 0, 0, len);
        return;
    }
    size_t grain = mo__grain_for(len, MM_MIN_BLOCK, MM_MAX_BLOCKS);
    grain = (grain + 15) & ~(size_t)15;
    mo__parallel_for(len, grain, mm_block, &j);
}

static mo_status matmul(mo_tensor *c, const mo_tensor *a, int ta, const mo_tensor *b, int tb,
                        double alpha, double beta, int use_blas)
{
    mm_dims d;
    MO_TRY(mm_check(c, a, ta, b, tb, &d));
    if (c->dtype == MO_FLOAT32) { /* round once, as the float32 kernels will see them */
        alpha = (float)alpha;
        beta = (float)beta;
    }
    if (d.m == 0 || d.n == 0) return MO_OK;
    /* BLAS: nothing to multiply means C = beta * C (with beta == 0 giving zeros) */
    if (d.k == 0 || alpha == 0.0) return mo__scale(c, beta);

#ifdef MO_HAVE_CBLAS
    int fl, ld;
    const int fits = d.m <= INT_MAX && d.n <= INT_MAX && d.k <= INT_MAX;
    const int c_ok = blas_layout(c, &fl, &ld);
    if (!fits) use_blas = 0;
#else
    const int c_ok = 1;
    use_blas = 0;
#endif

    /* C sharing memory with an input, or (BLAS) C with no unit stride: work in a
     * contiguous temporary holding C's old values, then copy the result back. */
    if (mo__overlaps(c, a) || mo__overlaps(c, b) || (use_blas && !c_ok)) {
        mo_tensor tmp;
        mo_tensor_init(&tmp);
        MO_TRY(mo_tensor_empty_dtype(&tmp, 2, c->shape, c->dtype, NULL));
        mo_status st = beta == 0.0 ? MO_OK : mo_copy(&tmp, c);
        if (st == MO_OK) st = matmul(&tmp, a, ta, b, tb, alpha, beta, use_blas);
        if (st == MO_OK) st = mo_copy(c, &tmp);
        mo_tensor_release(&tmp);
        return st;
    }

#ifdef MO_HAVE_CBLAS
    if (use_blas) {
        /* an operand with no unit stride: a contiguous copy (one copy, O(mk) or O(kn)) */
        mo_tensor ca, cb;
        mo_tensor_init(&ca);
        mo_tensor_init(&cb);
        const mo_tensor *pa = a, *pb = b;
        mo_status st = MO_OK;
        if (!blas_layout(a, &fl, &ld)) {
            st = mo_tensor_clone(&ca, a, NULL);
            pa = &ca;
        }
        if (st == MO_OK && !blas_layout(b, &fl, &ld)) {
            st = mo_tensor_clone(&cb, b, NULL);
            pb = &cb;
        }
        /* a clone's leading dimension is its column count, which fits in int
         * because the dims do; anything else falls back to the portable loop */
        if (st == MO_OK && blas_layout(pa, &fl, &ld) && blas_layout(pb, &fl, &ld)) {
            mm_parallel(c, pa, ta, pb, tb, alpha, beta, &d, 1);
        } else if (st == MO_OK) {
            st = mo__scale(c, beta);
            if (st == MO_OK) mm_parallel(c, pa, ta, pb, tb, alpha, 1.0, &d, 0);
        }
        mo_tensor_release(&ca);
        mo_tensor_release(&cb);
        return st;
    }
#endif

    MO_TRY(mo__scale(c, beta));
    mm_parallel(c, a, ta, b, tb, alpha, 1.0, &d, 0);
    return MO_OK;
}

mo_status mo_matmul(mo_tensor *c, const mo_tensor *a, int trans_a, const mo_tensor *b,
                    int trans_b, double alpha, double beta)
{
    return matmul(c, a, trans_a, b, trans_b, alpha, beta, 1);
}

mo_status mo_matmul_portable(mo_tensor *c, const mo_tensor *a, int trans_a, const mo_tensor *b,
                             int trans_b, double alpha, double beta)
{
    return matmul(c, a, trans_a, b, trans_b, alpha, beta, 0);
}

/* ---- torch.matmul: 1-d, 2-d and batched 3-d operands ---- */

/*
 * t as a batch of matrices {batch, rows, cols} (a handle that takes no reference, see
 * mo__borrowed_slice): a 3-d t as it is, a 2-d one as a batch of 1, a 1-d one as a row
 * {1, 1, k} on the left (left != 0) or a column {1, k, 1} on the right. The strides of
 * the added size-1 dims are 0: nothing ever steps along them.
 */
static mo_tensor as_batch(const mo_tensor *t, int left)
{
    mo_tensor v = *t;
    v.ndim = 3;
    if (t->ndim == 2) {
        v.shape[0] = 1;
        v.stride[0] = 0;
        for (int d = 0; d < 2; d++) {
            v.shape[d + 1] = t->shape[d];
            v.stride[d + 1] = t->stride[d];
        }
    } else if (t->ndim == 1) {
        const int at = left ? 2 : 1; /* where the vector's one dimension goes */
        v.shape[0] = v.shape[1] = v.shape[2] = 1;
        v.stride[0] = v.stride[1] = v.stride[2] = 0;
        v.shape[at] = t->shape[0];
        v.stride[at] = t->stride[0];
    }
    return v;
}

mo_status mo_matmul_shape(const mo_tensor *a, const mo_tensor *b, int *ndim, size_t *shape)
{
    if (!a || !b || !ndim || !shape) return MO_ERR_ARG;
    if (a->ndim > 3 || b->ndim > 3) return MO_ERR_DIMS;
    if (a->ndim < 1 || b->ndim < 1) return MO_ERR_SHAPE;
    const mo_tensor a3 = as_batch(a, 1), b3 = as_batch(b, 0);
    if (a3.shape[2] != b3.shape[1]) return MO_ERR_SHAPE;
    const size_t ba = a3.shape[0], bb = b3.shape[0];
    if (ba != bb && ba != 1 && bb != 1) return MO_ERR_SHAPE;
    int n = 0;
    if (a->ndim == 3 || b->ndim == 3) shape[n++] = ba == 1 ? bb : ba;
    if (a->ndim >= 2) shape[n++] = a3.shape[1];
    if (b->ndim >= 2) shape[n++] = b3.shape[2];
    *ndim = n;
    return MO_OK;
}

/* c's 3-d view {batch, m, n} for the result dims that exist (see mo_matmul_shape). */
static mo_tensor c_as_batch(const mo_tensor *c, const mo_tensor *a, const mo_tensor *b,
                            size_t batch, size_t m, size_t n)
{
    mo_tensor v = *c;
    const int has[3] = {a->ndim == 3 || b->ndim == 3, a->ndim >= 2, b->ndim >= 2};
    const size_t sh[3] = {batch, m, n};
    int from = 0;
    for (int d = 0; d < 3; d++) {
        v.shape[d] = sh[d];
        v.stride[d] = has[d] ? c->stride[from++] : 0;
    }
    v.ndim = 3;
    return v;
}

static int shape_equal(const mo_tensor *t, int nd, const size_t *shape)
{
    if (t->ndim != nd) return 0;
    for (int d = 0; d < nd; d++)
        if (t->shape[d] != shape[d]) return 0;
    return 1;
}

mo_status mo_matmul_nd(mo_tensor *c, const mo_tensor *a, const mo_tensor *b)
{
    const mo_tensor *ts[3] = {c, a, b};
    MO_TRY(mo__check_live(3, ts));
    MO_TRY(mo__check_dtypes(3, ts));
    int nd;
    size_t shape[3];
    MO_TRY(mo_matmul_shape(a, b, &nd, shape));
    if (!shape_equal(c, nd, shape)) return MO_ERR_SHAPE;
    mo_tensor a3 = as_batch(a, 1), b3 = as_batch(b, 0);
    const size_t batch = a3.shape[0] == 1 ? b3.shape[0] : a3.shape[0];
    const size_t m = a3.shape[1], n = b3.shape[2];
    mo_tensor c3 = c_as_batch(c, a, b, batch, m, n);
    /* one matrix on the right and row-stacked batches on the left and in c (the usual
     * contiguous case): one call of m*batch rows, as a single large gemm runs faster */
    if (b3.shape[0] == 1 && batch > 1 && a3.stride[0] == (ptrdiff_t)m * a3.stride[1] &&
        c3.stride[0] == (ptrdiff_t)m * c3.stride[1]) {
        mo_tensor af = mo__borrowed_slice(&a3, 0, 0), cf = mo__borrowed_slice(&c3, 0, 0);
        af.shape[0] *= batch; /* fits: it counts elements of a */
        cf.shape[0] *= batch;
        af.numel *= batch;
        cf.numel *= batch;
        mo_tensor bf = mo__borrowed_slice(&b3, 0, 0);
        return matmul(&cf, &af, 0, &bf, 0, 1.0, 0.0, 1);
    }
    for (size_t i = 0; i < batch; i++) {
        mo_tensor ai = mo__borrowed_slice(&a3, 0, a3.shape[0] == 1 ? 0 : i);
        mo_tensor bi = mo__borrowed_slice(&b3, 0, b3.shape[0] == 1 ? 0 : i);
        mo_tensor ci = mo__borrowed_slice(&c3, 0, i);
        MO_TRY(matmul(&ci, &ai, 0, &bi, 0, 1.0, 0.0, 1));
    }
    return MO_OK;
}
