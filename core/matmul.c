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
 */
#include "moonopt_internal.h"

#include <limits.h>
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
            run_cblas(c, pa, ta, pb, tb, alpha, beta, &d);
        } else if (st == MO_OK) {
            st = mo__scale(c, beta);
            if (st == MO_OK) run_portable(c, pa, ta, pb, tb, alpha, &d);
        }
        mo_tensor_release(&ca);
        mo_tensor_release(&cb);
        return st;
    }
#endif

    MO_TRY(mo__scale(c, beta));
    run_portable(c, a, ta, b, tb, alpha, &d);
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
