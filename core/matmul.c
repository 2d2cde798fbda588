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

/* y[0..n) += a * x[0..n); the hot loop, vectorized at -O2 (multiple-of-8 main part). */
static void axpy(float *restrict y, const float *restrict x, float a, size_t n)
{
    size_t n8 = n & ~(size_t)7, i;
    for (i = 0; i < n8; i++) y[i] += a * x[i];
    for (; i < n; i++) y[i] += a * x[i];
}

/*
 * C += alpha * opA @ opB with explicit element strides (the transposes are
 * already folded into the strides): opA(i, p) = a[i*as0 + p*as1] is m x k,
 * opB(p, j) = b[p*bs0 + j*bs1] is k x n, C(i, j) = c[i*cs0 + j*cs1] is m x n.
 * C must not overlap A or B. Loop order per tile: j-block, k-block (pack the
 * op(B) tile contiguously), then for each row i: k inner to j innermost
 * (i-k-j), accumulating a row piece of C in a contiguous local buffer.
 */
static void gemm_portable(size_t m, size_t n, size_t k, float alpha, const float *a,
                          ptrdiff_t as0, ptrdiff_t as1, const float *b, ptrdiff_t bs0,
                          ptrdiff_t bs1, float *c, ptrdiff_t cs0, ptrdiff_t cs1)
{
    float bp[MM_KB * MM_NB]; /* op(B)[p0 + pp][j0 + jj] at bp[pp*MM_NB + jj] */
    float acc[MM_NB];        /* C[i][j0 + jj] while row i is being updated */
    for (size_t j0 = 0; j0 < n; j0 += MM_NB) {
        const size_t nb = n - j0 < MM_NB ? n - j0 : MM_NB;
        for (size_t p0 = 0; p0 < k; p0 += MM_KB) {
            const size_t kb = k - p0 < MM_KB ? k - p0 : MM_KB;
            for (size_t pp = 0; pp < kb; pp++) {
                const float *brow = b + (ptrdiff_t)(p0 + pp) * bs0 + (ptrdiff_t)j0 * bs1;
                for (size_t jj = 0; jj < nb; jj++) bp[pp * MM_NB + jj] = brow[(ptrdiff_t)jj * bs1];
            }
            for (size_t i = 0; i < m; i++) {
                float *crow = c + (ptrdiff_t)i * cs0 + (ptrdiff_t)j0 * cs1;
                const float *arow = a + (ptrdiff_t)i * as0 + (ptrdiff_t)p0 * as1;
                for (size_t jj = 0; jj < nb; jj++) acc[jj] = crow[(ptrdiff_t)jj * cs1];
                if (nb == MM_NB) {
                    /* full tile: constant trip count, fully vectorized */
                    for (size_t pp = 0; pp < kb; pp++)
                        axpy(acc, bp + pp * MM_NB, alpha * arow[(ptrdiff_t)pp * as1], MM_NB);
                } else {
                    for (size_t pp = 0; pp < kb; pp++)
                        axpy(acc, bp + pp * MM_NB, alpha * arow[(ptrdiff_t)pp * as1], nb);
                }
                for (size_t jj = 0; jj < nb; jj++) crow[(ptrdiff_t)jj * cs1] = acc[jj];
            }
        }
    }
}

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
                         float alpha, const mm_dims *d)
{
    /* fold the transposes into the strides */
    const ptrdiff_t as0 = ta ? a->stride[1] : a->stride[0], as1 = ta ? a->stride[0] : a->stride[1];
    const ptrdiff_t bs0 = tb ? b->stride[1] : b->stride[0], bs1 = tb ? b->stride[0] : b->stride[1];
    gemm_portable(d->m, d->n, d->k, alpha, mo_tensor_data(a), as0, as1, mo_tensor_data(b), bs0,
                  bs1, mo_tensor_data(c), c->stride[0], c->stride[1]);
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
                      float alpha, float beta, const mm_dims *d)
{
    int fa, fb, fc, lda, ldb, ldc;
    blas_layout(a, &fa, &lda);
    blas_layout(b, &fb, &ldb);
    blas_layout(c, &fc, &ldc);
    /* the stored row-major matrix of a column-major operand is its transpose */
    const int tA = (ta != 0) != (fa != 0), tB = (tb != 0) != (fb != 0);
    const enum CBLAS_TRANSPOSE TA = tA ? CblasTrans : CblasNoTrans;
    const enum CBLAS_TRANSPOSE TB = tB ? CblasTrans : CblasNoTrans;
    if (!fc) {
        cblas_sgemm(CblasRowMajor, TA, TB, (int)d->m, (int)d->n, (int)d->k, alpha,
                    mo_tensor_data(a), lda, mo_tensor_data(b), ldb, beta, mo_tensor_data(c), ldc);
    } else {
        /* C column-major: compute C^T = op(B)^T @ op(A)^T, which is row-major */
        const enum CBLAS_TRANSPOSE TBt = tB ? CblasNoTrans : CblasTrans;
        const enum CBLAS_TRANSPOSE TAt = tA ? CblasNoTrans : CblasTrans;
        cblas_sgemm(CblasRowMajor, TBt, TAt, (int)d->n, (int)d->m, (int)d->k, alpha,
                    mo_tensor_data(b), ldb, mo_tensor_data(a), lda, beta, mo_tensor_data(c), ldc);
    }
}
#endif

static mo_status matmul(mo_tensor *c, const mo_tensor *a, int ta, const mo_tensor *b, int tb,
                        float alpha, float beta, int use_blas)
{
    mm_dims d;
    MO_TRY(mm_check(c, a, ta, b, tb, &d));
    if (d.m == 0 || d.n == 0) return MO_OK;
    /* BLAS: nothing to multiply means C = beta * C (with beta == 0 giving zeros) */
    if (d.k == 0 || alpha == 0.0f) return mo__scale(c, beta);

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
        MO_TRY(mo_tensor_empty(&tmp, 2, c->shape, NULL));
        mo_status st = beta == 0.0f ? MO_OK : mo_copy(&tmp, c);
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
                    int trans_b, float alpha, float beta)
{
    return matmul(c, a, trans_a, b, trans_b, alpha, beta, 1);
}

mo_status mo_matmul_portable(mo_tensor *c, const mo_tensor *a, int trans_a, const mo_tensor *b,
                             int trans_b, float alpha, float beta)
{
    return matmul(c, a, trans_a, b, trans_b, alpha, beta, 0);
}
