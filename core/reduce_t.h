/*
 * reduce_t.h - the lane kernels of reduce.c, written once over the element type
 * T (float or double) and included by reduce.c once per dtype; see
 * moonopt_internal.h and docs/design.md "Two dtypes". No include guard on
 * purpose. T and TN are #undef'd at the end.
 *
 * A "lane" is the K values one output reduces: p[k * s] for k < K (s in
 * elements, any sign). Every sum accumulates in double for both dtypes.
 * Summation order (deterministic: it depends only on K, the layout and whether
 * the CPU has AVX2, never on alignment or threads): a contiguous lane is cut
 * into blocks of RED_BLOCK values, each summed with eight interleaved double
 * accumulators (float64 on an AVX2 CPU: sixteen, in reduce.c), and the block
 * sums are added pairwise, so the rounding error grows with log2(K / RED_BLOCK),
 * not with K. float32 lanes on an AVX2 CPU go to reduce.c's kernel whole (float
 * partials of 64 values, accumulated in double).
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including reduce_t.h"
#endif

/* ---- sums ---- */

/* Eight interleaved accumulators over n <= RED_BLOCK contiguous values (sq: of squares). */
static double TN(block_sum)(const T *restrict a, size_t n, int sq)
{
    double simd;
    if (!sq && sizeof(T) == sizeof(double) && TN(simd_sum)(a, n, &simd)) return simd;
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    if (sq) {
        for (; i + 8 <= n; i += 8)
            for (size_t j = 0; j < 8; j++) acc[j] += (double)a[i + j] * (double)a[i + j];
    } else {
        for (; i + 8 <= n; i += 8)
            for (size_t j = 0; j < 8; j++) acc[j] += (double)a[i + j];
    }
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += sq ? (double)a[i] * (double)a[i] : (double)a[i];
    return s;
}

/* Pairwise over blocks: the sum (or sum of squares) of n contiguous values. */
static double TN(sum_c)(const T *a, size_t n, int sq)
{
    double simd; /* float32 with AVX2: the whole lane in one kernel (reduce.c) */
    if (!sq && sizeof(T) == sizeof(float) && TN(simd_sum)(a, n, &simd)) return simd;
    if (n <= RED_BLOCK) return TN(block_sum)(a, n, sq);
    /* split on a block boundary so the blocks do not depend on the recursion depth */
    const size_t half = (n / RED_BLOCK + 1) / 2 * RED_BLOCK;
    return TN(sum_c)(a, half, sq) + TN(sum_c)(a + half, n - half, sq);
}

/* A lane's sum of x (or of x^2): pairwise when contiguous, one running sum otherwise. */
static double TN(lane_sum)(const T *p, ptrdiff_t s, size_t K, int sq)
{
    if (s == 1 || K == 1) return TN(sum_c)(p, K, sq);
    double acc = 0.0;
    for (size_t k = 0; k < K; k++) {
        const double x = (double)p[(ptrdiff_t)k * s];
        acc += sq ? x * x : x;
    }
    return acc;
}

/* sum of (x - mean)^2 over a lane: the second pass of var/std */
static double TN(lane_dev2)(const T *p, ptrdiff_t s, size_t K, double mean)
{
    double acc = 0.0;
    for (size_t k = 0; k < K; k++) {
        const double d = (double)p[(ptrdiff_t)k * s] - mean;
        acc += d * d;
    }
    return acc;
}

/* sum of exp(x - shift) over a lane: the second pass of a full logsumexp */
static double TN(lane_expsum)(const T *p, ptrdiff_t s, size_t K, double shift)
{
    double acc = 0.0;
    for (size_t k = 0; k < K; k++) acc += exp((double)p[(ptrdiff_t)k * s] - shift);
    return acc;
}

static double TN(lane_prod)(const T *p, ptrdiff_t s, size_t K)
{
    double acc = 1.0;
    for (size_t k = 0; k < K; k++) acc *= (double)p[(ptrdiff_t)k * s];
    return acc;
}

/* sum |x| (pw 1), max |x| (pw inf, NaN propagating) or sum |x|^pw (other pw > 0) */
static double TN(lane_abspow)(const T *p, ptrdiff_t s, size_t K, double pw)
{
    double acc = 0.0;
    if (pw == 1.0) {
        for (size_t k = 0; k < K; k++) acc += fabs((double)p[(ptrdiff_t)k * s]);
    } else if (isinf(pw)) {
        for (size_t k = 0; k < K; k++) {
            const double x = fabs((double)p[(ptrdiff_t)k * s]);
            if (x > acc || isnan(x)) acc = x;
            if (isnan(acc)) break;
        }
    } else {
        for (size_t k = 0; k < K; k++) acc += pow(fabs((double)p[(ptrdiff_t)k * s]), pw);
    }
    return acc;
}

/* ---- max / min with the index of the first winner ---- */

/* x replaces best: larger (smaller), or the first NaN (NaN counts as the extreme). */
static inline int TN(takes_max)(T x, T best) { return x > best || (isnan(x) && !isnan(best)); }
static inline int TN(takes_min)(T x, T best) { return x < best || (isnan(x) && !isnan(best)); }

/* The 0-based index of the first maximum (want_max) or minimum of a lane, K > 0. */
static size_t TN(lane_extreme)(const T *p, ptrdiff_t s, size_t K, int want_max)
{
    T b = p[0];
    size_t bi = 0;
    if (want_max) {
        for (size_t k = 1; k < K; k++)
            if (TN(takes_max)(p[(ptrdiff_t)k * s], b)) { b = p[(ptrdiff_t)k * s]; bi = k; }
    } else {
        for (size_t k = 1; k < K; k++)
            if (TN(takes_min)(p[(ptrdiff_t)k * s], b)) { b = p[(ptrdiff_t)k * s]; bi = k; }
    }
    return bi;
}

/* log(sum exp x) shifted by the lane's max m: m + log(sum exp(x - m)). An infinite or
 * NaN m is the answer itself (all -inf gives -inf; any +inf gives +inf). K > 0. */
static double TN(lane_lse)(const T *p, ptrdiff_t s, size_t K)
{
    const double m = (double)p[(ptrdiff_t)TN(lane_extreme)(p, s, K, 1) * s];
    if (!isfinite(m)) return m;
    double acc = 0.0;
    for (size_t k = 0; k < K; k++) acc += exp((double)p[(ptrdiff_t)k * s] - m);
    return m + log(acc);
}

/* ---- one output value of a reduction ---- */

/*
 * The reduction `op` of one lane (K may be 0 where the op allows it; the caller
 * refused the others). *idx receives the 0-based winner of MAX/MIN/ARGMAX/ARGMIN.
 */
static double TN(lane_reduce)(int op, const T *p, ptrdiff_t s, size_t K, const mo_reduce_args *ra,
                              size_t *idx)
{
    switch (op) {
    case MO_RED_SUM: return TN(lane_sum)(p, s, K, 0);
    case MO_RED_MEAN: return TN(lane_sum)(p, s, K, 0) / (double)K; /* K == 0: NaN */
    case MO_RED_PROD: return TN(lane_prod)(p, s, K);
    case MO_RED_VAR:
    case MO_RED_STD: {
        const double mean = TN(lane_sum)(p, s, K, 0) / (double)K;
        const double div = (double)K - ra->correction;
        const double v = TN(lane_dev2)(p, s, K, mean) / (div > 0.0 ? div : 0.0);
        return op == MO_RED_STD ? sqrt(v) : v;
    }
    case MO_RED_NORM:
        if (ra->p == 2.0) return sqrt(TN(lane_sum)(p, s, K, 1));
        if (ra->p == 1.0 || isinf(ra->p)) return TN(lane_abspow)(p, s, K, ra->p);
        return pow(TN(lane_abspow)(p, s, K, ra->p), 1.0 / ra->p);
    case MO_RED_LOGSUMEXP: return K == 0 ? -HUGE_VAL : TN(lane_lse)(p, s, K);
    case MO_RED_ANY:
        for (size_t k = 0; k < K; k++)
            if (p[(ptrdiff_t)k * s] != 0) return 1.0; /* NaN is nonzero */
        return 0.0;
    case MO_RED_ALL:
        for (size_t k = 0; k < K; k++)
            if (p[(ptrdiff_t)k * s] == 0) return 0.0;
        return 1.0;
    default: { /* MAX, MIN, ARGMAX, ARGMIN */
        const int want_max = op == MO_RED_MAX || op == MO_RED_ARGMAX;
        *idx = TN(lane_extreme)(p, s, K, want_max);
        return (double)p[(ptrdiff_t)*idx * s];
    }
    }
}

/* Stores one result: the value (or, for ARGMAX/ARGMIN, the index) and the index. */
static inline void TN(put)(int op, T *o, T *oi, double v, size_t i, size_t base)
{
    if (op == MO_RED_ARGMAX || op == MO_RED_ARGMIN)
        *o = (T)(i + base);
    else
        *o = (T)v;
    if (oi) *oi = (T)(i + base);
}

/*
 * Column strategy for SUM/MEAN/MAX/MIN/ARGMAX/ARGMIN when the reduced dim is the
 * outer one in memory (e.g. summing the rows of a row-major matrix): reading down
 * each lane would stride through memory, so RED_CHUNK outputs are accumulated side
 * by side while k walks the lanes, and every read is along the contiguous direction.
 * n outputs at o[j*so] (indices at oi[j*soi]); lane j starts at src[j*st]; K > 0.
 */
static void TN(reduce_cols)(int op, size_t n, T *o, ptrdiff_t so, T *oi, ptrdiff_t soi,
                            const T *src, ptrdiff_t st, size_t K, ptrdiff_t sd, size_t base)
{
    double acc[RED_CHUNK];
    T best[RED_CHUNK];
    size_t besti[RED_CHUNK];
    const int sum = op == MO_RED_SUM || op == MO_RED_MEAN;
    const int want_max = op == MO_RED_MAX || op == MO_RED_ARGMAX;
    const double div = op == MO_RED_MEAN ? (double)K : 1.0; /* divide, as lane_reduce does */
    for (size_t j0 = 0; j0 < n; j0 += RED_CHUNK) {
        const size_t c = n - j0 < RED_CHUNK ? n - j0 : RED_CHUNK;
        const T *base_p = src + (ptrdiff_t)j0 * st;
        if (sum) {
            for (size_t jj = 0; jj < c; jj++) acc[jj] = 0.0;
            for (size_t k = 0; k < K; k++) {
                const T *p = base_p + (ptrdiff_t)k * sd;
                if (st == 1)
                    for (size_t jj = 0; jj < c; jj++) acc[jj] += (double)p[jj];
                else
                    for (size_t jj = 0; jj < c; jj++) acc[jj] += (double)p[(ptrdiff_t)jj * st];
            }
            for (size_t jj = 0; jj < c; jj++) o[(ptrdiff_t)(j0 + jj) * so] = (T)(acc[jj] / div);
            continue;
        }
        for (size_t jj = 0; jj < c; jj++) {
            best[jj] = base_p[(ptrdiff_t)jj * st];
            besti[jj] = 0;
        }
        for (size_t k = 1; k < K; k++) {
            const T *p = base_p + (ptrdiff_t)k * sd;
            for (size_t jj = 0; jj < c; jj++) {
                const T x = p[(ptrdiff_t)jj * st];
                if (want_max ? TN(takes_max)(x, best[jj]) : TN(takes_min)(x, best[jj])) {
                    best[jj] = x;
                    besti[jj] = k;
                }
            }
        }
        for (size_t jj = 0; jj < c; jj++)
            TN(put)(op, o + (ptrdiff_t)(j0 + jj) * so, oi ? oi + (ptrdiff_t)(j0 + jj) * soi : NULL,
                    (double)best[jj], besti[jj], base);
    }
}

/* One row of outputs of reduce_dim: n outputs, lane j at src + j*st (stride sd, K values). */
static void TN(reduce_row)(int op, size_t n, T *o, ptrdiff_t so, T *oi, ptrdiff_t soi,
                           const T *src, ptrdiff_t st, size_t K, ptrdiff_t sd,
                           const mo_reduce_args *ra)
{
    const ptrdiff_t ast = st < 0 ? -st : st, asd = sd < 0 ? -sd : sd;
    const int columnar = op == MO_RED_SUM || op == MO_RED_MEAN || op == MO_RED_MAX ||
                         op == MO_RED_MIN || op == MO_RED_ARGMAX || op == MO_RED_ARGMIN;
    if (columnar && K > 0 && n > 1 && asd > ast) {
        TN(reduce_cols)(op, n, o, so, oi, soi, src, st, K, sd, ra->index_base);
        return;
    }
    for (size_t j = 0; j < n; j++) {
        size_t i = 0;
        const double v = TN(lane_reduce)(op, src + (ptrdiff_t)j * st, sd, K, ra, &i);
        TN(put)(op, o + (ptrdiff_t)j * so, oi ? oi + (ptrdiff_t)j * soi : NULL, v, i,
                ra->index_base);
    }
}

/* ---- lanes in, lanes out: softmax, log_softmax, cumsum ---- */

/* o[k*so] = op of the lane p[k*s], k < K (K > 0). o may not overlap p unless o == p
 * with so == s (each value is read before its slot is written). */
static void TN(lane_scan)(int op, const T *p, ptrdiff_t s, T *o, ptrdiff_t so, size_t K)
{
    if (op == MO_SCAN_CUMSUM) {
        double acc = 0.0;
        for (size_t k = 0; k < K; k++) {
            acc += (double)p[(ptrdiff_t)k * s];
            o[(ptrdiff_t)k * so] = (T)acc;
        }
        return;
    }
    /* shift by the max so exp never overflows; a NaN max makes the lane NaN, an
     * all -inf lane gives NaN (0/0), as PyTorch */
    const double m = (double)p[(ptrdiff_t)TN(lane_extreme)(p, s, K, 1) * s];
    double acc = 0.0;
    if (op == MO_SCAN_SOFTMAX) {
        for (size_t k = 0; k < K; k++) {
            const double e = exp((double)p[(ptrdiff_t)k * s] - m);
            o[(ptrdiff_t)k * so] = (T)e;
            acc += e;
        }
        const double inv = 1.0 / acc;
        for (size_t k = 0; k < K; k++) o[(ptrdiff_t)k * so] = (T)((double)o[(ptrdiff_t)k * so] * inv);
        return;
    }
    for (size_t k = 0; k < K; k++) acc += exp((double)p[(ptrdiff_t)k * s] - m);
    const double shift = m + log(acc);
    for (size_t k = 0; k < K; k++) o[(ptrdiff_t)k * so] = (T)((double)p[(ptrdiff_t)k * s] - shift);
}

/* ---- sort ---- */

/* Whether key a sorts strictly after key b ascending (NaN is the largest). */
static inline int TN(after)(T a, T b) { return a > b || (isnan(a) && !isnan(b)); }

/*
 * Stable merge sort of the indices ix[0..n) by key[ix[i]] (descending: larger
 * first; equal keys keep their order either way). tmp holds n indices.
 * Runs of 16 are insertion-sorted first, then merged bottom-up.
 */
static void TN(sort_idx)(const T *key, size_t *ix, size_t *tmp, size_t n, int desc)
{
    const size_t RUN = 16;
    for (size_t r0 = 0; r0 < n; r0 += RUN) {
        const size_t r1 = r0 + RUN < n ? r0 + RUN : n;
        for (size_t i = r0 + 1; i < r1; i++) {
            const size_t v = ix[i];
            size_t j = i;
            while (j > r0 && (desc ? TN(after)(key[v], key[ix[j - 1]])
                                   : TN(after)(key[ix[j - 1]], key[v]))) {
                ix[j] = ix[j - 1];
                j--;
            }
            ix[j] = v;
        }
    }
    size_t *a = ix, *b = tmp;
    for (size_t w = RUN; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            const size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                /* the right run's head goes first only when it sorts strictly before */
                const int right = desc ? TN(after)(key[a[j]], key[a[i]])
                                       : TN(after)(key[a[i]], key[a[j]]);
                b[k++] = right ? a[j++] : a[i++];
            }
            while (i < mid) b[k++] = a[i++];
            while (j < hi) b[k++] = a[j++];
        }
        size_t *t = a;
        a = b;
        b = t;
    }
    if (a != ix) memcpy(ix, a, n * sizeof *ix);
}

/* Sorts one lane (K values at p[k*s]) and writes its first kk values and indices + base.
 * key holds K values and ix, tmp K indices each (scratch). */
static void TN(lane_sort)(const T *p, ptrdiff_t s, size_t K, T *ov, ptrdiff_t sov, T *oi,
                          ptrdiff_t soi, size_t kk, int desc, size_t base, T *key, size_t *ix,
                          size_t *tmp)
{
    for (size_t k = 0; k < K; k++) {
        key[k] = p[(ptrdiff_t)k * s];
        ix[k] = k;
    }
    TN(sort_idx)(key, ix, tmp, K, desc);
    for (size_t k = 0; k < kk; k++) {
        ov[(ptrdiff_t)k * sov] = key[ix[k]];
        oi[(ptrdiff_t)k * soi] = (T)(ix[k] + base);
    }
}

/* ---- dot products ---- */

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

/* dot product of one row pair of the iterator */
static double TN(dot_row)(const mo__iter *it)
{
    if (it->n == 1 || (it->inner[0] == 1 && it->inner[1] == 1))
        return TN(dot_c)(it->p[0], it->p[1], it->n);
    const T *a = it->p[0], *b = it->p[1];
    double s = 0.0;
    for (size_t i = 0; i < it->n; i++)
        s += (double)a[(ptrdiff_t)i * it->inner[0]] * (double)b[(ptrdiff_t)i * it->inner[1]];
    return s;
}

#undef T
#undef TN
