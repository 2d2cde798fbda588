/*
 * reduce.c - the reduce family: reductions over one dimension or over every
 * element (sum, mean, prod, var, std, norm, logsumexp, max/min with indices,
 * argmax/argmin, any/all), lane-to-lane ops (softmax, log_softmax, cumsum),
 * stable sort/topk, plus the older whole-tensor helpers (mo_sum ... mo_norm2_many,
 * mo_dot) that return doubles.
 *
 * Sums accumulate in double: float32 accumulation over a million elements
 * loses about three digits, and the gradient norm used for clipping must not.
 * The summation order is fixed (see reduce_t.h): pairwise over blocks of
 * RED_BLOCK values for a contiguous lane, one running double sum for a strided
 * lane; a reduction over every element is cut into chunks of RED_GRAIN elements
 * whose partials are added in chunk order (docs/design.md "Threads"). So a result
 * depends only on the values and the layout, never on the thread count.
 * max/min propagate NaN; the first maximum/minimum wins ties and counts NaN as
 * the extreme (PyTorch 1.13 on CPU does the same). The lane kernels are written
 * once over the element type in reduce_t.h (docs/design.md "Two dtypes");
 * results have src's dtype, indices included (float32 holds them exactly up to
 * 2^24, so larger float32 index ranges are refused).
 */
#include "moonopt_internal.h"
#include "threadpool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Contiguous lanes are summed in blocks of this many values, blocks pairwise. */
#define RED_BLOCK 256
/* Output columns handled per pass of the "column" strategy (stack buffers). */
#define RED_CHUNK 128
/* Private ops of the whole-tensor path: sum of x^2, sum of |x|^p (max |x| for p = inf),
 * sum of (x - aux)^2 (var's second pass), sum of exp(x - aux) (logsumexp's). */
#define RED_SUMSQ 64
#define RED_ABSPOW 65
#define RED_DEV2 66
#define RED_EXPSUM 67
/* Threads: a full reduction is cut into chunks of RED_GRAIN elements (at most
 * RED_MAX_CHUNKS: the grain grows with n beyond that), a reduction along a dim into
 * chunks of about RED_GRAIN input elements' worth of outputs. Both partitions depend
 * only on the sizes, and partials are combined in chunk order (docs/design.md "Threads"). */
#define RED_GRAIN ((size_t)65536)
#define RED_MAX_CHUNKS 256
/* float32 integers are exact up to here */
#define F32_EXACT ((size_t)1 << 24)

/*
 * AVX2 kernels for one block (<= RED_BLOCK contiguous values) of a sum: the innermost
 * reduction must run at memory speed (issue 11 "Numbers": x:sum(2) on {4096, 1024} at
 * least as fast as PyTorch). Built for x86-64 with GCC or Clang through the target
 * attribute and used only when the CPU has AVX2 (checked at run time), so the library
 * still runs on any x86-64; elsewhere simd_sum_* decline and the portable loop sums.
 * float32: per chunk of 512 values, 64 float lanes each add 8 values, the eight vector
 * sums are added in a tree (each of the 8 partials: 64 values, 10 float roundings at
 * most), and the 8 partials go into 8 double lanes for the whole lane (blocked, not
 * pairwise: in double that is plenty); float64: one block in 16 double lanes, blocks
 * pairwise as in reduce_t.h. The order is fixed, so a result depends only on the
 * values, the layout and whether the CPU has AVX2.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/*
 * Chunks of 512: eight independent vector sums (the adds' latency hidden behind the
 * loads), added in a tree, then widened into two double vectors. Why one widening per
 * chunk and not one per vector sum: 8 widenings (16 conversions, 16 double adds) per
 * chunk made a {4096, 1024} x:sum(2) 3-9 % slower from L3 and memory and 12-16 % slower
 * with the rows in L1 or L2 (C harness, the two kernels alternated); the tree costs
 * three float roundings per partial.
 */
__attribute__((target("avx2"))) static double avx2_sum_f32(const float *a, size_t n)
{
    __m256d d0 = _mm256_setzero_pd(), d1 = d0;
    size_t i = 0;
    while (i + 64 <= n) {
        __m256 f0 = _mm256_setzero_ps(), f1 = f0, f2 = f0, f3 = f0, f4 = f0, f5 = f0, f6 = f0,
               f7 = f0;
        const size_t end = n - i >= 512 ? i + 512 : n - (n - i) % 64;
        for (; i < end; i += 64) {
            f0 = _mm256_add_ps(f0, _mm256_loadu_ps(a + i));
            f1 = _mm256_add_ps(f1, _mm256_loadu_ps(a + i + 8));
            f2 = _mm256_add_ps(f2, _mm256_loadu_ps(a + i + 16));
            f3 = _mm256_add_ps(f3, _mm256_loadu_ps(a + i + 24));
            f4 = _mm256_add_ps(f4, _mm256_loadu_ps(a + i + 32));
            f5 = _mm256_add_ps(f5, _mm256_loadu_ps(a + i + 40));
            f6 = _mm256_add_ps(f6, _mm256_loadu_ps(a + i + 48));
            f7 = _mm256_add_ps(f7, _mm256_loadu_ps(a + i + 56));
        }
        /* the float partials leave for double before they grow */
        const __m256 f = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(f0, f1), _mm256_add_ps(f2, f3)),
                                       _mm256_add_ps(_mm256_add_ps(f4, f5), _mm256_add_ps(f6, f7)));
        d0 = _mm256_add_pd(d0, _mm256_cvtps_pd(_mm256_castps256_ps128(f)));
        d1 = _mm256_add_pd(d1, _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(d0, d1));
    double s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) s += (double)a[i];
    return s;
}

__attribute__((target("avx2"))) static double avx2_sum_f64(const double *a, size_t n)
{
    __m256d d0 = _mm256_setzero_pd(), d1 = d0, d2 = d0, d3 = d0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        d0 = _mm256_add_pd(d0, _mm256_loadu_pd(a + i));
        d1 = _mm256_add_pd(d1, _mm256_loadu_pd(a + i + 4));
        d2 = _mm256_add_pd(d2, _mm256_loadu_pd(a + i + 8));
        d3 = _mm256_add_pd(d3, _mm256_loadu_pd(a + i + 12));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(_mm256_add_pd(d0, d1), _mm256_add_pd(d2, d3)));
    double s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) s += a[i];
    return s;
}

/* 1 and *s = the sum of a[0..n) when the AVX2 kernel may run, else 0 (float32: a whole
 * lane, blocked; float64: one block of <= RED_BLOCK, the blocks then added pairwise). */
static int simd_sum_f32(const float *a, size_t n, double *s)
{
    if (n < 64 || !__builtin_cpu_supports("avx2")) return 0;
    *s = avx2_sum_f32(a, n);
    return 1;
}

static int simd_sum_f64(const double *a, size_t n, double *s)
{
    if (n < 16 || !__builtin_cpu_supports("avx2")) return 0;
    *s = avx2_sum_f64(a, n);
    return 1;
}
#else
static int simd_sum_f32(const float *a, size_t n, double *s)
{
    (void)a, (void)n, (void)s;
    return 0;
}

static int simd_sum_f64(const double *a, size_t n, double *s)
{
    (void)a, (void)n, (void)s;
    return 0;
}
#endif

#define T float
#define TN(name) name##_f32
#include "reduce_t.h"
#define T double
#define TN(name) name##_f64
#include "reduce_t.h"

/* ---- helpers ---- */

static int is_arg_op(int op) { return op == MO_RED_ARGMAX || op == MO_RED_ARGMIN; }
static int is_extreme_op(int op)
{
    return op == MO_RED_MAX || op == MO_RED_MIN || is_arg_op(op);
}

/* One lane of either dtype (the private whole-tensor ops included; aux their parameter). */
static double lane(mo_dtype dt, int op, const void *p, ptrdiff_t s, size_t K,
                   const mo_reduce_args *ra, double aux, size_t *idx)
{
    const int f64 = dt == MO_FLOAT64;
    switch (op) {
    case RED_SUMSQ: return f64 ? lane_sum_f64(p, s, K, 1) : lane_sum_f32(p, s, K, 1);
    case RED_ABSPOW: return f64 ? lane_abspow_f64(p, s, K, ra->p) : lane_abspow_f32(p, s, K, ra->p);
    case RED_DEV2: return f64 ? lane_dev2_f64(p, s, K, aux) : lane_dev2_f32(p, s, K, aux);
    case RED_EXPSUM: return f64 ? lane_expsum_f64(p, s, K, aux) : lane_expsum_f32(p, s, K, aux);
    default:
        return f64 ? lane_reduce_f64(op, p, s, K, ra, idx) : lane_reduce_f32(op, p, s, K, ra, idx);
    }
}

/* x replaces best (double copies of the elements; conversion keeps order and NaN). */
static int takes(int want_max, double x, double best)
{
    return (want_max ? x > best : x < best) || (isnan(x) && !isnan(best));
}

/* MO_ERR_RANGE when the largest index written (count - 1 + base) is not exact in dt. */
static mo_status check_index_range(mo_dtype dt, size_t count, size_t base)
{
    if (dt == MO_FLOAT32 && count > 0 && count - 1 + base > F32_EXACT) return MO_ERR_RANGE;
    return MO_OK;
}

/* The view of t without dimension d (a descriptor only; it takes no reference). Its
 * count is checked: with t's dim d of size 0 the other sizes may multiply past size_t. */
static mo_status drop_dim(mo_tensor *v, const mo_tensor *t, int d)
{
    *v = *t;
    for (int k = d; k < t->ndim - 1; k++) {
        v->shape[k] = t->shape[k + 1];
        v->stride[k] = t->stride[k + 1];
    }
    v->ndim = t->ndim - 1;
    v->shape[v->ndim] = 0;
    v->stride[v->ndim] = 0;
    return mo_shape_numel(v->ndim, v->shape, &v->numel);
}

/* A freshly made contiguous tensor gets a size-1 dimension at d (keepdim). */
static void insert_unit_dim(mo_tensor *t, int d)
{
    for (int k = t->ndim; k > d; k--) {
        t->shape[k] = t->shape[k - 1];
        t->stride[k] = t->stride[k - 1];
    }
    t->shape[d] = 1;
    t->stride[d] = d < t->ndim ? t->stride[d + 1] * (ptrdiff_t)t->shape[d + 1] : 1;
    t->ndim++;
}

/* A 0-d tensor seen as 1-d {1} (any other tensor unchanged). */
static void as_1d(mo_tensor *v, const mo_tensor *t)
{
    *v = *t;
    if (t->ndim == 0) {
        v->ndim = 1;
        v->shape[0] = 1;
        v->stride[0] = 1;
    }
}

static void store(void *p, mo_dtype dt, double v)
{
    if (dt == MO_FLOAT64)
        *(double *)p = v;
    else
        *(float *)p = (float)v;
}

/* ---- over every element ---- */

/* A partial result of a full reduction: the value and, for the extreme ops, the flat
 * row-major index of the winner; `has` is 0 until the first lane is folded in. */
typedef struct red_part {
    double v;
    size_t i;
    int has;
} red_part;

/* One pass of a full reduction: lanes of row op `op` folded into partials per chunk. */
typedef struct whole_job {
    mo_dtype dt;
    int op;
    const mo_reduce_args *ra;
    double aux;
    size_t grain;
    red_part part[RED_MAX_CHUNKS];
} whole_job;

/*
 * acc <- acc combined with a lane's (or chunk's) result x, its winner at flat index i:
 * the first value is taken as is (so one lane gives exactly lane()'s result), then
 * added, multiplied, or'ed/and'ed, or compared (the first extreme wins; NaN counts as
 * the extreme; max |x| keeps the first NaN).
 */
static void fold(int op, const mo_reduce_args *ra, red_part *acc, double x, size_t i)
{
    if (!acc->has) {
        acc->v = x;
        acc->i = i;
        acc->has = 1;
        return;
    }
    if (is_extreme_op(op)) {
        if (takes(op == MO_RED_MAX || op == MO_RED_ARGMAX, x, acc->v)) {
            acc->v = x;
            acc->i = i;
        }
    } else if (op == RED_ABSPOW && isinf(ra->p)) {
        if (x > acc->v || isnan(x)) acc->v = x; /* nothing compares above a NaN: it stays */
    } else if (op == MO_RED_PROD) {
        acc->v *= x;
    } else if (op == MO_RED_ANY) {
        acc->v = (acc->v != 0.0 || x != 0.0) ? 1.0 : 0.0;
    } else if (op == MO_RED_ALL) {
        acc->v = (acc->v != 0.0 && x != 0.0) ? 1.0 : 0.0;
    } else {
        acc->v += x;
    }
}

/* One piece of a row: its lane result folded into its chunk's partial. */
static void whole_piece(void *ctx, size_t chunk, size_t pos, const mo__iter *piece)
{
    whole_job *j = ctx;
    red_part *acc = &j->part[chunk];
    if (pos == chunk * j->grain) acc->has = 0; /* the chunk's first piece */
    size_t i = 0;
    const double x = lane(j->dt, j->op, piece->p[0], piece->n == 1 ? 1 : piece->inner[0],
                          piece->n, j->ra, j->aux, &i);
    fold(j->op, j->ra, acc, x, pos + i);
}

/* Row op `op` over every element the iterator visits (numel > 0): chunks in parallel,
 * then their partials in chunk order. */
static red_part whole_pass(const mo__iter *it, mo_dtype dt, int op, const mo_reduce_args *ra,
                           double aux)
{
    whole_job j;
    const size_t n = it->rows * it->n;
    j.dt = dt;
    j.op = op;
    j.ra = ra;
    j.aux = aux;
    j.grain = mo__grain_for(n, RED_GRAIN, RED_MAX_CHUNKS);
    mo__iter_parallel(it, j.grain, whole_piece, &j);
    red_part acc = {0.0, 0, 0};
    const size_t nchunks = mo__parallel_chunks(n, j.grain);
    for (size_t c = 0; c < nchunks; c++) fold(op, ra, &acc, j.part[c].v, j.part[c].i);
    return acc;
}

/*
 * op over every element of t (live, numel > 0 for the extreme ops) as a double, *idx
 * the flat row-major index of the winner. The elements are cut into chunks that depend
 * only on numel (whole_pass), so the value does not depend on the thread count; var,
 * std and logsumexp take two passes (the mean, or the max, first).
 */
static mo_status whole(const mo_tensor *t, int op, const mo_reduce_args *ra, double *v,
                       size_t *idx)
{
    mo__iter it;
    mo__iter_init(&it, 1, &t);
    *idx = 0;
    if (t->numel == 0) { /* the empty lane's value: 0, 1, NaN, -inf ... (lane_reduce) */
        *v = lane(t->dtype, op, mo_tensor_ptr(t), 1, 0, ra, 0.0, idx);
        return MO_OK;
    }
    const double n = (double)t->numel;
    if (op == MO_RED_VAR || op == MO_RED_STD) {
        const double mean = whole_pass(&it, t->dtype, MO_RED_SUM, ra, 0.0).v / n;
        const double div = n - ra->correction;
        const double dev2 = whole_pass(&it, t->dtype, RED_DEV2, ra, mean).v;
        const double var = dev2 / (div > 0.0 ? div : 0.0);
        *v = op == MO_RED_STD ? sqrt(var) : var;
        return MO_OK;
    }
    if (op == MO_RED_LOGSUMEXP) {
        const double m = whole_pass(&it, t->dtype, MO_RED_MAX, ra, 0.0).v;
        *v = isfinite(m) ? m + log(whole_pass(&it, t->dtype, RED_EXPSUM, ra, m).v) : m;
        return MO_OK;
    }
    int row_op = op == MO_RED_MEAN ? MO_RED_SUM : op;
    if (op == MO_RED_NORM) row_op = ra->p == 2.0 ? RED_SUMSQ : RED_ABSPOW;
    const red_part r = whole_pass(&it, t->dtype, row_op, ra, 0.0);
    double acc = r.v;
    if (op == MO_RED_MEAN) acc /= n;
    if (op == MO_RED_NORM && ra->p == 2.0) acc = sqrt(acc);
    if (op == MO_RED_NORM && ra->p != 2.0 && ra->p != 1.0 && !isinf(ra->p))
        acc = pow(acc, 1.0 / ra->p);
    *v = acc;
    *idx = r.i;
    return MO_OK;
}

/* ---- along one dimension ---- */

/* A reduction along a dim: K values per lane, step sd; pieces of the output rows. */
typedef struct along_job {
    mo_dtype dt;
    int op, has_idx;
    size_t K;
    ptrdiff_t sd;
    const mo_reduce_args *ra;
} along_job;

static void along_piece(void *ctx, size_t chunk, size_t pos, const mo__iter *it)
{
    const along_job *j = ctx;
    (void)chunk, (void)pos;
    void *oi = j->has_idx ? it->p[2] : NULL;
    const ptrdiff_t soi = j->has_idx ? it->inner[2] : 0;
    if (j->dt == MO_FLOAT64)
        reduce_row_f64(j->op, it->n, it->p[0], it->inner[0], oi, soi, it->p[1], it->inner[1],
                       j->K, j->sd, j->ra);
    else
        reduce_row_f32(j->op, it->n, it->p[0], it->inner[0], oi, soi, it->p[1], it->inner[1],
                       j->K, j->sd, j->ra);
}

/* Outputs per chunk for lanes of K values: about RED_GRAIN values read per chunk. Each
 * output is computed whole by one thread, so any grain gives the same values. */
static size_t lane_grain(size_t K) { return K >= RED_GRAIN ? 1 : RED_GRAIN / (K ? K : 1); }

/* res, ires (when not NULL) and src without dim `dim` walked together, in parallel. */
static void along(mo_tensor *res, mo_tensor *ires, const mo_tensor *src, int dim, int op,
                  const mo_reduce_args *ra)
{
    mo_tensor rest;
    (void)drop_dim(&rest, src, dim); /* checked by the caller */
    const mo_tensor *ops[3] = {res, &rest, ires};
    mo__iter it;
    mo__iter_init(&it, ires ? 3 : 2, ops);
    along_job j = {src->dtype, op, ires != NULL, src->shape[dim], src->stride[dim], ra};
    mo__iter_parallel(&it, lane_grain(j.K), along_piece, &j);
}

static mo_status check_reduce(const mo_tensor *out, const mo_tensor *indices,
                              const mo_tensor *src, int dim, int op, const mo_reduce_args *ra)
{
    if (!out || !ra) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &src));
    if (out->storage || (indices && indices->storage)) return MO_ERR_ARG; /* must be empty */
    if (op < MO_RED_SUM || op > MO_RED_ALL) return MO_ERR_ARG;
    if (indices && op != MO_RED_MAX && op != MO_RED_MIN) return MO_ERR_ARG;
    if (op == MO_RED_NORM && !(ra->p > 0.0)) return MO_ERR_ARG; /* NaN too */
    if (op == MO_RED_VAR || op == MO_RED_STD)
        if (isnan(ra->correction)) return MO_ERR_ARG;
    if (dim != MO_DIM_ALL && (dim < 0 || dim >= (src->ndim > 0 ? src->ndim : 1)))
        return MO_ERR_RANGE;
    const size_t K = dim == MO_DIM_ALL ? src->numel : (src->ndim ? src->shape[dim] : 1);
    if (is_extreme_op(op) && K == 0) return MO_ERR_ARG;
    if (indices || is_arg_op(op)) MO_TRY(check_index_range(src->dtype, K, ra->index_base));
    return MO_OK;
}

/* Over every element: a 0-d result (all ones under keepdim). */
static mo_status reduce_all(mo_tensor *out, mo_tensor *indices, const mo_tensor *src, int op,
                            const mo_reduce_args *ra, const mo_allocator *a)
{
    double v;
    size_t i;
    MO_TRY(whole(src, op, ra, &v, &i));
    mo_tensor res, ires;
    mo_tensor_init(&res);
    mo_tensor_init(&ires);
    MO_TRY(mo_tensor_empty_dtype(&res, 0, NULL, src->dtype, a));
    if (indices) {
        mo_status st = mo_tensor_empty_dtype(&ires, 0, NULL, src->dtype, a);
        if (st != MO_OK) {
            mo_tensor_release(&res);
            return st;
        }
        store(mo_tensor_ptr(&ires), src->dtype, (double)(i + ra->index_base));
    }
    store(mo_tensor_ptr(&res), src->dtype, is_arg_op(op) ? (double)(i + ra->index_base) : v);
    if (ra->keepdim)
        for (int d = 0; d < src->ndim; d++) {
            insert_unit_dim(&res, d);
            if (indices) insert_unit_dim(&ires, d);
        }
    *out = res;
    if (indices) *indices = ires;
    return MO_OK;
}

mo_status mo_reduce(mo_tensor *out, mo_tensor *indices, const mo_tensor *src, int dim,
                    mo_reduce_op op, const mo_reduce_args *ra, const mo_allocator *a)
{
    MO_TRY(check_reduce(out, indices, src, dim, (int)op, ra));
    if (dim == MO_DIM_ALL) return reduce_all(out, indices, src, (int)op, ra, a);

    mo_tensor s1, rest, res, ires;
    as_1d(&s1, src);
    MO_TRY(drop_dim(&rest, &s1, dim));
    mo_tensor_init(&res);
    mo_tensor_init(&ires);
    MO_TRY(mo_tensor_empty_dtype(&res, rest.ndim, rest.shape, src->dtype, a));
    if (indices) {
        mo_status st = mo_tensor_empty_dtype(&ires, rest.ndim, rest.shape, src->dtype, a);
        if (st != MO_OK) {
            mo_tensor_release(&res);
            return st;
        }
    }
    if (res.numel > 0) along(&res, indices ? &ires : NULL, &s1, dim, (int)op, ra);
    if (ra->keepdim && src->ndim > 0) {
        insert_unit_dim(&res, dim);
        if (indices) insert_unit_dim(&ires, dim);
    }
    *out = res;
    if (indices) *indices = ires;
    return MO_OK;
}

/* mo_reduce_dim and mo_argmax_dim: the first API (0-d sources and empty lanes refused). */
static mo_status old_dim(mo_tensor *out, const mo_tensor *src, int dim, int op,
                         const mo_allocator *a)
{
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &src));
    if (out->storage) return MO_ERR_ARG;
    if (dim < 0 || dim >= src->ndim) return MO_ERR_RANGE;
    if (src->shape[dim] == 0 && op != MO_RED_SUM) return MO_ERR_ARG;
    const mo_reduce_args ra = {0, 2.0, 1.0, 0};
    return mo_reduce(out, NULL, src, dim, (mo_reduce_op)op, &ra, a);
}

mo_status mo_reduce_dim(mo_tensor *out, const mo_tensor *src, int dim, mo_reduce_op op,
                        const mo_allocator *a)
{
    if ((unsigned)op > (unsigned)MO_RED_MIN) return MO_ERR_ARG;
    return old_dim(out, src, dim, (int)op, a);
}

mo_status mo_argmax_dim(mo_tensor *out, const mo_tensor *src, int dim, const mo_allocator *a)
{
    return old_dim(out, src, dim, MO_RED_ARGMAX, a);
}

/* ---- lanes to lanes: softmax, log_softmax, cumsum ---- */

/* A scan along a dim: lanes of K values, step sd in the source and od in the output. */
typedef struct scan_job {
    mo_dtype dt;
    int op;
    size_t K;
    ptrdiff_t sd, od;
} scan_job;

/* One piece of lanes (each lane whole in one thread). Operands: output rest, source rest. */
static void scan_piece(void *ctx, size_t chunk, size_t pos, const mo__iter *it)
{
    const scan_job *s = ctx;
    (void)chunk, (void)pos;
    for (size_t j = 0; j < it->n; j++) {
        if (s->dt == MO_FLOAT64)
            lane_scan_f64(s->op, (const double *)it->p[1] + (ptrdiff_t)j * it->inner[1], s->sd,
                          (double *)it->p[0] + (ptrdiff_t)j * it->inner[0], s->od, s->K);
        else
            lane_scan_f32(s->op, (const float *)it->p[1] + (ptrdiff_t)j * it->inner[1], s->sd,
                          (float *)it->p[0] + (ptrdiff_t)j * it->inner[0], s->od, s->K);
    }
}

mo_status mo_scan(mo_tensor *out, const mo_tensor *src, int dim, mo_scan_op op,
                  const mo_allocator *a)
{
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &src));
    if (out->storage) return MO_ERR_ARG;
    if ((unsigned)op > (unsigned)MO_SCAN_CUMSUM) return MO_ERR_ARG;
    if (dim < 0 || dim >= (src->ndim > 0 ? src->ndim : 1)) return MO_ERR_RANGE;
    mo_tensor res;
    mo_tensor_init(&res);
    MO_TRY(mo_tensor_empty_dtype(&res, src->ndim, src->shape, src->dtype, a));
    if (res.numel > 0) {
        mo_tensor s1, o1, srest, orest;
        as_1d(&s1, src);
        as_1d(&o1, &res);
        (void)drop_dim(&srest, &s1, dim); /* numel > 0: no overflow */
        (void)drop_dim(&orest, &o1, dim);
        const mo_tensor *ops[2] = {&orest, &srest};
        mo__iter it;
        mo__iter_init(&it, 2, ops);
        scan_job j = {src->dtype, (int)op, s1.shape[dim], s1.stride[dim], o1.stride[dim]};
        mo__iter_parallel(&it, lane_grain(j.K), scan_piece, &j);
    }
    *out = res;
    return MO_OK;
}

/* ---- sort / topk ---- */

/* Sorting on the pool: the lanes (every position of the other dims) are independent, so
 * they are cut into fixed chunks of whole lanes, each chunk with its own scratch of K values
 * and 2K indices (SORT_WORDS words per lane value). A chunk of about SORT_GRAIN values is
 * worth a thread's wake-up; the chunks are capped so that their scratch stays within
 * SORT_SCRATCH bytes (a single lane larger than that sorts alone, as the serial code did).
 * The partition depends on the shape only, and each lane's result is that of the serial
 * sort: the same bits at any thread count. */
#define SORT_WORDS 3
#define SORT_GRAIN ((size_t)8192)
#define SORT_SCRATCH ((size_t)16 << 20)
#define SORT_MAX_CHUNKS ((size_t)64)

typedef struct sort_job {
    ptrdiff_t sd, vd, id;   /* strides along dim of the source, values, indices */
    size_t K, k, base;
    int desc, f64;
    char *scratch;          /* chunk c: scratch + c * lane_bytes */
    size_t lane_bytes;      /* SORT_WORDS * K words */
} sort_job;

static void sort_piece(void *ctx, size_t chunk, size_t pos, const mo__iter *it)
{
    const sort_job *j = ctx;
    size_t *idx = (size_t *)(void *)(j->scratch + chunk * j->lane_bytes), *tmp = idx + j->K;
    void *key = tmp + j->K;
    (void)pos;
    for (size_t l = 0; l < it->n; l++) {
        if (j->f64)
            lane_sort_f64((const double *)it->p[0] + (ptrdiff_t)l * it->inner[0], j->sd, j->K,
                          (double *)it->p[1] + (ptrdiff_t)l * it->inner[1], j->vd,
                          (double *)it->p[2] + (ptrdiff_t)l * it->inner[2], j->id, j->k,
                          j->desc, j->base, key, idx, tmp);
        else
            lane_sort_f32((const float *)it->p[0] + (ptrdiff_t)l * it->inner[0], j->sd, j->K,
                          (float *)it->p[1] + (ptrdiff_t)l * it->inner[1], j->vd,
                          (float *)it->p[2] + (ptrdiff_t)l * it->inner[2], j->id, j->k,
                          j->desc, j->base, key, idx, tmp);
    }
}

/* Sorts every lane of s1 along dim into v and ix (same rank as s1 after as_1d, dim of size
 * j->k), `grain` lanes per chunk; j has everything but the strides, set here. */
static void sort_run(const mo_tensor *v, const mo_tensor *ix, const mo_tensor *s1, int dim,
                     size_t grain, sort_job *j)
{
    mo_tensor v1, i1, srest, vrest, irest;
    as_1d(&v1, v);
    as_1d(&i1, ix);
    (void)drop_dim(&srest, s1, dim); /* numel > 0: no overflow */
    (void)drop_dim(&vrest, &v1, dim);
    (void)drop_dim(&irest, &i1, dim);
    j->sd = s1->stride[dim];
    j->vd = v1.stride[dim];
    j->id = i1.stride[dim];
    const mo_tensor *ops[3] = {&srest, &vrest, &irest};
    mo__iter it;
    mo__iter_init(&it, 3, ops);
    mo__iter_parallel(&it, grain, sort_piece, j);
}

/* Lanes per chunk for lanes of K values whose scratch is lane_bytes each (a function of the
 * shape alone). */
static size_t sort_grain(size_t lanes, size_t K, size_t lane_bytes)
{
    size_t max_chunks = lane_bytes > 0 ? SORT_SCRATCH / lane_bytes : SORT_MAX_CHUNKS;
    if (max_chunks < 1) max_chunks = 1;
    if (max_chunks > SORT_MAX_CHUNKS) max_chunks = SORT_MAX_CHUNKS;
    const size_t grain = K >= SORT_GRAIN ? 1 : SORT_GRAIN / (K ? K : 1);
    return mo__grain_for(lanes, grain, max_chunks);
}

mo_status mo_sort(mo_tensor *values, mo_tensor *indices, const mo_tensor *src, int dim,
                  size_t k, int descending, size_t index_base, const mo_allocator *a)
{
    if (!values || !indices || values == indices) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &src));
    if (values->storage || indices->storage) return MO_ERR_ARG;
    if (dim < 0 || dim >= (src->ndim > 0 ? src->ndim : 1)) return MO_ERR_RANGE;
    mo_tensor s1;
    as_1d(&s1, src);
    const size_t K = s1.shape[dim];
    if (k > K) return MO_ERR_RANGE;
    MO_TRY(check_index_range(src->dtype, K, index_base));
    size_t shape[MO_MAX_DIMS];
    for (int d = 0; d < s1.ndim; d++) shape[d] = s1.shape[d];
    shape[dim] = k;
    const int nd = src->ndim; /* a 0-d source gives 0-d results */

    /* scratch per chunk: K indices twice, then K keys (8-byte aligned after the size_t
       arrays); one lane's worth per chunk */
    size_t lane_bytes = 0, words = 0, bytes = 0;
    MO_TRY(mo_size_mul(K, SORT_WORDS, &words));
    MO_TRY(mo_size_mul(words, sizeof(size_t) > sizeof(double) ? sizeof(size_t) : sizeof(double),
                       &lane_bytes));
    const size_t lanes = K > 0 ? s1.numel / K : 0;
    const size_t grain = sort_grain(lanes, K, lane_bytes);
    MO_TRY(mo_size_mul(lane_bytes, lanes > 0 ? mo__parallel_chunks(lanes, grain) : 1, &bytes));
    mo_tensor v, ix;
    mo_tensor_init(&v);
    mo_tensor_init(&ix);
    mo_status st = mo_tensor_empty_dtype(&v, nd, shape, src->dtype, a);
    if (st == MO_OK) st = mo_tensor_empty_dtype(&ix, nd, shape, src->dtype, a);
    void *scratch = NULL;
    if (st == MO_OK && v.numel > 0) {
        scratch = malloc(bytes);
        if (!scratch) st = MO_ERR_NOMEM;
    }
    if (st != MO_OK) {
        mo_tensor_release(&v);
        mo_tensor_release(&ix);
        return st;
    }
    if (v.numel > 0) {
        sort_job j = {0, 0, 0, K, k, index_base, descending, s1.dtype == MO_FLOAT64,
                      (char *)scratch, lane_bytes};
        sort_run(&v, &ix, &s1, dim, grain, &j);
    }
    free(scratch);
    *values = v;
    *indices = ix;
    return MO_OK;
}

/* ---- the first whole-tensor API: doubles out ---- */

static mo_status whole_value(const mo_tensor *t, int op, double p, double *out, size_t *idx)
{
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo__check_live(1, &t));
    if (t->numel == 0 && (op == MO_RED_MEAN || is_extreme_op(op))) return MO_ERR_ARG;
    const mo_reduce_args ra = {0, p, 1.0, 0};
    size_t i = 0;
    MO_TRY(whole(t, op, &ra, out, &i));
    if (idx) *idx = i;
    return MO_OK;
}

mo_status mo_sum(const mo_tensor *t, double *out) { return whole_value(t, MO_RED_SUM, 2.0, out, NULL); }
mo_status mo_mean(const mo_tensor *t, double *out) { return whole_value(t, MO_RED_MEAN, 2.0, out, NULL); }
mo_status mo_max(const mo_tensor *t, double *out) { return whole_value(t, MO_RED_MAX, 2.0, out, NULL); }
mo_status mo_min(const mo_tensor *t, double *out) { return whole_value(t, MO_RED_MIN, 2.0, out, NULL); }
mo_status mo_norm2(const mo_tensor *t, double *out)
{
    /* float squares summed in double cannot overflow (FLT_MAX^2 ~ 1e77); float64
     * squares can (above ~1e154), as in a plain sum of squares */
    return whole_value(t, MO_RED_NORM, 2.0, out, NULL);
}

mo_status mo_argmax(const mo_tensor *t, size_t *out)
{
    if (!out) return MO_ERR_ARG;
    double v;
    return whole_value(t, MO_RED_ARGMAX, 2.0, &v, out);
}

mo_status mo_norm2_many(const mo_tensor *const *ts, size_t n, double *out)
{
    if (!out || (n > 0 && !ts)) return MO_ERR_ARG;
    /* validate everything before computing anything */
    for (size_t i = 0; i < n; i++)
        if (!ts[i]) return MO_ERR_ARG;
    for (size_t i = 0; i < n; i++)
        if (!mo_tensor_alive(ts[i])) return MO_ERR_FREED;
    const mo_reduce_args ra = {0, 2.0, 1.0, 0};
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double v;
        size_t j;
        MO_TRY(whole(ts[i], RED_SUMSQ, &ra, &v, &j));
        s += v;
    }
    *out = sqrt(s);
    return MO_OK;
}

/* A dot product in chunks: part[c] the sum of chunk c's pieces, then the parts in order. */
typedef struct dot_job {
    mo_dtype dt;
    size_t grain;
    double part[RED_MAX_CHUNKS];
} dot_job;

static void dot_piece(void *ctx, size_t chunk, size_t pos, const mo__iter *it)
{
    dot_job *j = ctx;
    const double x = j->dt == MO_FLOAT64 ? dot_row_f64(it) : dot_row_f32(it);
    if (pos == chunk * j->grain)
        j->part[chunk] = x;
    else
        j->part[chunk] += x;
}

/* sum a[i] * b[i] over two live tensors of one shape (numel may be 0), in double. */
static double dot_pairs(const mo_tensor *a, const mo_tensor *b, mo_dtype dt)
{
    if (a->numel == 0) return 0.0;
    const mo_tensor *ops[2] = {a, b};
    mo__iter it;
    mo__iter_init(&it, 2, ops);
    dot_job j;
    j.dt = dt;
    j.grain = mo__grain_for(a->numel, RED_GRAIN, RED_MAX_CHUNKS);
    mo__iter_parallel(&it, j.grain, dot_piece, &j);
    double s = j.part[0];
    const size_t nchunks = mo__parallel_chunks(a->numel, j.grain);
    for (size_t c = 1; c < nchunks; c++) s += j.part[c];
    return s;
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

    /* different shapes: both contiguous now, so both are read as flat vectors */
    mo_tensor fa = *pa, fb = *pb;
    if (!mo_tensor_same_shape(pa, pb)) {
        fa.ndim = fb.ndim = 1;
        fa.shape[0] = fb.shape[0] = pa->numel;
        fa.stride[0] = fb.stride[0] = 1;
    }
    const double s = dot_pairs(&fa, &fb, f64 ? MO_FLOAT64 : MO_FLOAT32);
    mo_tensor_release(&ca);
    mo_tensor_release(&cb);
    *out = s;
    return MO_OK;
}
