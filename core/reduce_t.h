/*
 * reduce_t.h - the row kernels of reduce.c, written once over the element type
 * T (float or double) and included by reduce.c once per dtype; see
 * moonopt_internal.h and docs/design.md "Two dtypes". No include guard on
 * purpose. Sums accumulate in double for both types. T and TN are #undef'd at the end.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including reduce_t.h"
#endif

/* ---- row kernels: n elements, contiguous (_c) or with stride s (_s) ---- */

static double TN(sum_c)(const T *restrict a, size_t n)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++) acc[j] += (double)a[i + j];
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += (double)a[i];
    return s;
}

static double TN(sum_s)(const T *a, ptrdiff_t sa, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[(ptrdiff_t)i * sa];
    return s;
}

static double TN(sumsq_c)(const T *restrict a, size_t n)
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

static double TN(sumsq_s)(const T *a, ptrdiff_t sa, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double x = (double)a[(ptrdiff_t)i * sa];
        s += x * x;
    }
    return s;
}

static double TN(dot_c)(const T *restrict a, const T *restrict b, size_t n)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++) acc[j] += (double)a[i + j] * (double)b[i + j];
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

static double TN(dot_s)(const T *a, ptrdiff_t sa, const T *b, ptrdiff_t sb, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[(ptrdiff_t)i * sa] * (double)b[(ptrdiff_t)i * sb];
    return s;
}

/* The update rules, shared by whole-tensor and per-dimension reductions. */
static inline int TN(takes_max)(T x, T best) { return x > best || (isnan(x) && !isnan(best)); }
static inline int TN(takes_min)(T x, T best) { return x < best || (isnan(x) && !isnan(best)); }




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
static void TN(reduce_row)(int op, size_t n, T *o, ptrdiff_t so, const T *src, ptrdiff_t st,
                       size_t K, ptrdiff_t sd)
{
    const double inv_k = 1.0 / (double)K; /* K > 0 here except for SUM */
    const ptrdiff_t ast = st < 0 ? -st : st, asd = sd < 0 ? -sd : sd;

    if (asd <= ast || n == 1) {
        for (size_t j = 0; j < n; j++) {
            const T *p = src + (ptrdiff_t)j * st;
            T *oj = o + (ptrdiff_t)j * so;
            if (op == MO_RED_SUM || op == MO_RED_MEAN) {
                double s = (sd == 1 || K == 1) ? TN(sum_c)(p, K) : TN(sum_s)(p, sd, K);
                *oj = (T)(op == MO_RED_MEAN ? s * inv_k : s);
            } else {
                T b = p[0];
                size_t bi = 0;
                for (size_t k = 1; k < K; k++) {
                    const T x = p[(ptrdiff_t)k * sd];
                    if (op == MO_RED_MIN ? TN(takes_min)(x, b) : TN(takes_max)(x, b)) {
                        b = x;
                        bi = k;
                    }
                }
                *oj = op == RED_ARGMAX ? (T)bi : b;
            }
        }
        return;
    }

    double acc[RED_CHUNK];
    T best[RED_CHUNK];
    size_t besti[RED_CHUNK];
    for (size_t j0 = 0; j0 < n; j0 += RED_CHUNK) {
        const size_t c = n - j0 < RED_CHUNK ? n - j0 : RED_CHUNK;
        const T *base = src + (ptrdiff_t)j0 * st;
        if (op == MO_RED_SUM || op == MO_RED_MEAN) {
            for (size_t jj = 0; jj < c; jj++) acc[jj] = 0.0;
            for (size_t k = 0; k < K; k++) {
                const T *p = base + (ptrdiff_t)k * sd;
                if (st == 1)
                    for (size_t jj = 0; jj < c; jj++) acc[jj] += (double)p[jj];
                else
                    for (size_t jj = 0; jj < c; jj++) acc[jj] += (double)p[(ptrdiff_t)jj * st];
            }
            for (size_t jj = 0; jj < c; jj++)
                o[(ptrdiff_t)(j0 + jj) * so] = (T)(op == MO_RED_MEAN ? acc[jj] * inv_k : acc[jj]);
        } else {
            for (size_t jj = 0; jj < c; jj++) {
                best[jj] = base[(ptrdiff_t)jj * st];
                besti[jj] = 0;
            }
            for (size_t k = 1; k < K; k++) {
                const T *p = base + (ptrdiff_t)k * sd;
                for (size_t jj = 0; jj < c; jj++) {
                    const T x = p[(ptrdiff_t)jj * st];
                    if (op == MO_RED_MIN ? TN(takes_min)(x, best[jj]) : TN(takes_max)(x, best[jj])) {
                        best[jj] = x;
                        besti[jj] = k;
                    }
                }
            }
            for (size_t jj = 0; jj < c; jj++)
                o[(ptrdiff_t)(j0 + jj) * so] = op == RED_ARGMAX ? (T)besti[jj] : best[jj];
        }
    }
}


/*
 * The first element that wins under `takes` (max or min), with its 0-based
 * row-major index. The iterator walks rows in logical row-major order, so
 * row r's element j has flat index r*n + j.
 */
static void TN(extreme)(const mo_tensor *t, int want_max, double *best, size_t *best_idx)
{
    mo__iter it;
    mo__iter_init(&it, 1, &t);
    T b = *(const T *)it.p[0];
    size_t bi = 0;
    for (size_t r = 0; r < it.rows; r++, mo__iter_next(&it)) {
        const T *p = it.p[0];
        const ptrdiff_t s = it.inner[0];
        if (want_max) {
            for (size_t j = 0; j < it.n; j++)
                if (TN(takes_max)(p[(ptrdiff_t)j * s], b)) { b = p[(ptrdiff_t)j * s]; bi = r * it.n + j; }
        } else {
            for (size_t j = 0; j < it.n; j++)
                if (TN(takes_min)(p[(ptrdiff_t)j * s], b)) { b = p[(ptrdiff_t)j * s]; bi = r * it.n + j; }
        }
    }
    *best = (double)b;
    *best_idx = bi;
}

/* sum (or sum of squares) of one row of the iterator */
static double TN(whole_row)(const mo__iter *it, int squares)
{
    const int c = it->inner[0] == 1 || it->n == 1;
    if (!squares) return c ? TN(sum_c)(it->p[0], it->n) : TN(sum_s)(it->p[0], it->inner[0], it->n);
    return c ? TN(sumsq_c)(it->p[0], it->n) : TN(sumsq_s)(it->p[0], it->inner[0], it->n);
}

/* dot product of one row pair of the iterator */
static double TN(dot_row)(const mo__iter *it)
{
    if (it->n == 1 || (it->inner[0] == 1 && it->inner[1] == 1))
        return TN(dot_c)(it->p[0], it->p[1], it->n);
    return TN(dot_s)(it->p[0], it->inner[0], it->p[1], it->inner[1], it->n);
}

#undef T
#undef TN
