/*
 * matmul_t.h - the portable blocked matmul of matmul.c, written once over the
 * element type T (float or double) and included by matmul.c once per dtype;
 * see moonopt_internal.h and docs/design.md "Two dtypes". No include guard on
 * purpose. T and TN are #undef'd at the end.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including matmul_t.h"
#endif

/* y[0..n) += a * x[0..n); the hot loop, vectorized at -O2 (multiple-of-8 main part). */
static void TN(axpy)(T *restrict y, const T *restrict x, T a, size_t n)
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
static void TN(gemm_portable)(size_t m, size_t n, size_t k, T alpha, const T *a,
                          ptrdiff_t as0, ptrdiff_t as1, const T *b, ptrdiff_t bs0,
                          ptrdiff_t bs1, T *c, ptrdiff_t cs0, ptrdiff_t cs1)
{
    T bp[MM_KB * MM_NB]; /* op(B)[p0 + pp][j0 + jj] at bp[pp*MM_NB + jj] */
    T acc[MM_NB];        /* C[i][j0 + jj] while row i is being updated */
    for (size_t j0 = 0; j0 < n; j0 += MM_NB) {
        const size_t nb = n - j0 < MM_NB ? n - j0 : MM_NB;
        for (size_t p0 = 0; p0 < k; p0 += MM_KB) {
            const size_t kb = k - p0 < MM_KB ? k - p0 : MM_KB;
            for (size_t pp = 0; pp < kb; pp++) {
                const T *brow = b + (ptrdiff_t)(p0 + pp) * bs0 + (ptrdiff_t)j0 * bs1;
                for (size_t jj = 0; jj < nb; jj++) bp[pp * MM_NB + jj] = brow[(ptrdiff_t)jj * bs1];
            }
            for (size_t i = 0; i < m; i++) {
                T *crow = c + (ptrdiff_t)i * cs0 + (ptrdiff_t)j0 * cs1;
                const T *arow = a + (ptrdiff_t)i * as0 + (ptrdiff_t)p0 * as1;
                for (size_t jj = 0; jj < nb; jj++) acc[jj] = crow[(ptrdiff_t)jj * cs1];
                if (nb == MM_NB) {
                    /* full tile: constant trip count, fully vectorized */
                    for (size_t pp = 0; pp < kb; pp++)
                        TN(axpy)(acc, bp + pp * MM_NB, alpha * arow[(ptrdiff_t)pp * as1], MM_NB);
                } else {
                    for (size_t pp = 0; pp < kb; pp++)
                        TN(axpy)(acc, bp + pp * MM_NB, alpha * arow[(ptrdiff_t)pp * as1], nb);
                }
                for (size_t jj = 0; jj < nb; jj++) crow[(ptrdiff_t)jj * cs1] = acc[jj];
            }
        }
    }
}

#undef T
#undef TN
