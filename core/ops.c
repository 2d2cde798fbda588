/*
 * ops.c - elementwise kernels (fill, copy, unary, binary, scalar ops, pow,
 * clamp, addcmul, addcdiv, add_row_bias) and the strided N-d iterator that the
 * kernels and reductions share.
 *
 * Structure: every public function validates its arguments completely before
 * writing anything, then hands an `ew_op` descriptor to ew_apply(), which
 *   1. sends the operation through a temporary when the output overlaps an
 *      input with a DIFFERENT layout (out = a^T on a's own storage: writing
 *      element (i, j) would clobber input element (j, i) before it is read);
 *   2. walks all operands row by row with mo__iter (merged dims, so contiguous
 *      tensors are one row of numel elements);
 *   3. per row, picks ONE loop for the op (the switch is outside the loops):
 *      a contiguous `restrict` loop, an in-place loop (out is exactly an
 *      input: same pointer, so `restrict` would be a lie), or a strided loop.
 *
 * The contiguous loops are plain `for` loops over T* and size_t n written
 * so that GCC/Clang vectorize them at -O2 (see VLOOP). They are written once
 * over the element type T in ops_t.h and instantiated for float and double
 * (docs/design.md "Two dtypes"); ew_row picks the instance by dtype.
 */
#include "moonopt_internal.h"
#include "threadpool.h"

#include <float.h>
#include <stdint.h>
#include <string.h>
#include <tgmath.h> /* exp, sqrt, pow, ... pick float or double by argument (ops_t.h) */

/* ------------------------------------------------------------------------ */
/* The strided iterator and layout helpers (declared in moonopt_internal.h)  */
/* ------------------------------------------------------------------------ */

void mo__iter_init(mo__iter *it, int nops, const mo_tensor *const *ts)
{
    const mo_tensor *t0 = ts[0];
    /* Built innermost-first, then reversed: rshape[0] is the row. */
    size_t rshape[MO_MAX_DIMS];
    ptrdiff_t rstride[MO__ITER_MAX][MO_MAX_DIMS];
    int nd = 0;

    it->nops = nops;
    for (int j = 0; j < MO__ITER_MAX; j++) {
        it->p[j] = j < nops ? mo_tensor_ptr(ts[j]) : NULL;
        it->esize[j] = j < nops ? mo_dtype_size(ts[j]->dtype) : 0;
        it->inner[j] = 0;
    }
    for (int k = 0; k < MO_MAX_DIMS; k++) it->idx[k] = 0;
    if (t0->numel == 0) {
        it->ndim = 1;
        it->shape[0] = 0;
        it->n = 0;
        it->rows = 0;
        return;
    }
    for (int d = t0->ndim - 1; d >= 0; d--) {
        size_t sz = t0->shape[d];
        if (sz == 1) continue; /* size-1 dims never move a pointer */
        if (nd > 0) {
            /* dim d merges into the dim inside it when, in every operand, stepping
             * d once is the same as stepping over the whole inner dim */
            int merge = 1;
            for (int j = 0; j < nops; j++)
                if (ts[j]->stride[d] != rstride[j][nd - 1] * (ptrdiff_t)rshape[nd - 1]) merge = 0;
            if (merge) {
                rshape[nd - 1] *= sz;
                continue;
            }
        }
        rshape[nd] = sz;
        for (int j = 0; j < nops; j++) rstride[j][nd] = ts[j]->stride[d];
        nd++;
    }
    if (nd == 0) { /* one element (0-d or all dims of size 1) */
        rshape[0] = 1;
        for (int j = 0; j < nops; j++) rstride[j][0] = 1;
        nd = 1;
    }
    it->ndim = nd;
    it->rows = 1;
    for (int k = 0; k < nd; k++) {
        it->shape[k] = rshape[nd - 1 - k];
        for (int j = 0; j < nops; j++) it->stride[j][k] = rstride[j][nd - 1 - k];
        if (k < nd - 1) it->rows *= it->shape[k]; /* <= numel, cannot overflow */
    }
    it->n = it->shape[nd - 1];
    for (int j = 0; j < nops; j++) it->inner[j] = it->stride[j][nd - 1];
}

int mo__iter_next(mo__iter *it)
{
    /* odometer over the outer dims ndim-2 .. 0 */
    for (int d = it->ndim - 2; d >= 0; d--) {
        if (++it->idx[d] < it->shape[d]) {
            for (int j = 0; j < it->nops; j++)
                it->p[j] = (char *)it->p[j] + it->stride[j][d] * (ptrdiff_t)it->esize[j];
            return 1;
        }
        it->idx[d] = 0;
        for (int j = 0; j < it->nops; j++)
            it->p[j] = (char *)it->p[j] -
                       it->stride[j][d] * (ptrdiff_t)(it->shape[d] - 1) * (ptrdiff_t)it->esize[j];
    }
    return 0;
}

/* Moves a freshly initialized iterator (pointers at row 0) to row r < it->rows. */
static void iter_seek(mo__iter *it, size_t r)
{
    for (int d = it->ndim - 2; d >= 0; d--) {
        const size_t i = r % it->shape[d];
        r /= it->shape[d];
        it->idx[d] = i;
        for (int j = 0; j < it->nops; j++)
            it->p[j] = (char *)it->p[j] + it->stride[j][d] * (ptrdiff_t)i * (ptrdiff_t)it->esize[j];
    }
}

typedef struct iter_job {
    const mo__iter *it;
    mo__row_fn fn;
    void *ctx;
} iter_job;

/* Elements [lo, hi) of the iteration, as pieces of rows in order. */
static void iter_chunk(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const iter_job *job = ctx;
    mo__iter it = *job->it;
    const size_t n = it.n;
    size_t j = lo % n;
    iter_seek(&it, lo / n);
    mo__iter piece;
    piece.nops = it.nops;
    for (int k = 0; k < MO__ITER_MAX; k++) {
        piece.inner[k] = it.inner[k];
        piece.p[k] = NULL;
    }
    while (lo < hi) {
        const size_t cnt = n - j < hi - lo ? n - j : hi - lo;
        for (int k = 0; k < it.nops; k++)
            piece.p[k] = (char *)it.p[k] + (ptrdiff_t)j * it.inner[k] * (ptrdiff_t)it.esize[k];
        piece.n = cnt;
        job->fn(job->ctx, chunk, lo, &piece);
        lo += cnt;
        j = 0;
        if (lo < hi) mo__iter_next(&it);
    }
}

void mo__iter_parallel(const mo__iter *it, size_t grain, mo__row_fn fn, void *ctx)
{
    if (it->rows == 0 || it->n == 0) return;
    iter_job job = {it, fn, ctx};
    mo__parallel_for(it->rows * it->n, grain, iter_chunk, &job); /* <= numel: no overflow */
}

mo_status mo__check_live(int n, const mo_tensor *const *ts)
{
    for (int i = 0; i < n; i++)
        if (!ts[i]) return MO_ERR_ARG;
    for (int i = 0; i < n; i++)
        if (!mo_tensor_alive(ts[i])) return MO_ERR_FREED;
    return MO_OK;
}

/* [lo, hi) addresses of the bytes a live tensor with numel > 0 can touch. */
static void span(const mo_tensor *t, uintptr_t *lo, uintptr_t *hi)
{
    const char *p = mo_tensor_ptr(t);
    const ptrdiff_t es = (ptrdiff_t)mo_dtype_size(t->dtype);
    ptrdiff_t mn = 0, mx = 0;
    for (int d = 0; d < t->ndim; d++) {
        ptrdiff_t ext = (ptrdiff_t)(t->shape[d] - 1) * t->stride[d];
        if (ext < 0)
            mn += ext;
        else
            mx += ext;
    }
    *lo = (uintptr_t)(p + mn * es);
    *hi = (uintptr_t)(p + mx * es) + (uintptr_t)es;
}

int mo__overlaps(const mo_tensor *a, const mo_tensor *b)
{
    if (!mo_tensor_alive(a) || !mo_tensor_alive(b) || a->numel == 0 || b->numel == 0) return 0;
    /* Compared as addresses, not storages: two wraps of one host buffer overlap too. */
    uintptr_t alo, ahi, blo, bhi;
    span(a, &alo, &ahi);
    span(b, &blo, &bhi);
    return alo < bhi && blo < ahi;
}

int mo__same_layout(const mo_tensor *a, const mo_tensor *b)
{
    if (mo_tensor_ptr(a) != mo_tensor_ptr(b) || a->dtype != b->dtype || !mo_tensor_same_shape(a, b))
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] > 1 && a->stride[d] != b->stride[d]) return 0;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Loop kernels (ops_t.h, once per dtype)                                   */
/* ------------------------------------------------------------------------ */

/*
 * One loop over n contiguous elements of T: blocks of two runs of VRUN (32
 * bytes: 8 floats or 4 doubles), at most one more run, then the tail. Each
 * run is straight-line code once GCC/Clang unroll its constant trip count,
 * and the SLP vectorizer packs it into two SSE operations (one AVX2
 * operation in the AVX2 instance); `restrict` on the kernels that use it says
 * the pointers do not alias. Why not a plain `for` for the loop vectorizer:
 * its one vector per iteration ran at memory speed or 1.5x slower depending
 * on where the linker placed the loop (an iteration crossing a 64-byte fetch
 * boundary halves its rate on the AMD Zen 4 development machine: {1024,
 * 1024} + {1024} took 145 us instead of 100); several vectors per iteration
 * hide that. (A single run of 16 floats is not unrolled at -O2.)
 */
#define VRUN (32 / sizeof(T))
#define VLOOP(n, i, ...)                                                        \
    do {                                                                        \
        const size_t vloop_n_ = (n);                                            \
        size_t vloop_b_ = 0, i;                                                 \
        for (; vloop_n_ - vloop_b_ >= 2 * VRUN; vloop_b_ += 2 * VRUN) {         \
            for (size_t vloop_j_ = 0; vloop_j_ < VRUN; vloop_j_++) {            \
                i = vloop_b_ + vloop_j_;                                        \
                __VA_ARGS__;                                                    \
            }                                                                   \
            for (size_t vloop_j_ = VRUN; vloop_j_ < 2 * VRUN; vloop_j_++) {     \
                i = vloop_b_ + vloop_j_;                                        \
                __VA_ARGS__;                                                    \
            }                                                                   \
        }                                                                       \
        if (vloop_n_ - vloop_b_ >= VRUN) {                                      \
            for (size_t vloop_j_ = 0; vloop_j_ < VRUN; vloop_j_++) {            \
                i = vloop_b_ + vloop_j_;                                        \
                __VA_ARGS__;                                                    \
            }                                                                   \
            vloop_b_ += VRUN;                                                   \
        }                                                                       \
        for (i = vloop_b_; i < vloop_n_; i++) { __VA_ARGS__; }                  \
    } while (0)

/* Element i of a strided row. */
#define AT(p, s, i) (p)[(ptrdiff_t)(i) * (s)]

/* The loops of one expression over the element type T: contiguous (_c), in place (_ip,
 * _ipa, _ipb) and strided (_s). Used inside ops_t.h, where T and TN are defined. */
#define UNARY_FNS(name, EXPR)                                                             \
    static void TN(name##_c)(T *restrict o, const T *restrict a, size_t n)                \
    {                                                                                     \
        VLOOP(n, i, { const T x = a[i]; o[i] = (EXPR); });                                \
    }                                                                                     \
    static void TN(name##_ip)(T *o, size_t n)                                             \
    {                                                                                     \
        VLOOP(n, i, { const T x = o[i]; o[i] = (EXPR); });                                \
    }                                                                                     \
    static void TN(name##_s)(T *o, ptrdiff_t so, const T *a, ptrdiff_t sa, size_t n)      \
    {                                                                                     \
        for (size_t i = 0; i < n; i++) {                                                  \
            const T x = AT(a, sa, i);                                                     \
            AT(o, so, i) = (EXPR);                                                        \
        }                                                                                 \
    }

#define BINARY_FNS(name, EXPR)                                                              \
    static void TN(name##_c)(T *restrict o, const T *restrict a, const T *restrict b,       \
                             size_t n)                                                      \
    {                                                                                       \
        VLOOP(n, i, { const T x = a[i], y = b[i]; o[i] = (EXPR); });                        \
    }                                                                                       \
    static void TN(name##_ipa)(T *restrict o, const T *restrict b, size_t n)                \
    {                                                                                       \
        VLOOP(n, i, { const T x = o[i], y = b[i]; o[i] = (EXPR); });                        \
    }                                                                                       \
    static void TN(name##_ipb)(T *restrict o, const T *restrict a, size_t n)                \
    {                                                                                       \
        VLOOP(n, i, { const T x = a[i], y = o[i]; o[i] = (EXPR); });                        \
    }                                                                                       \
    static void TN(name##_s)(T *o, ptrdiff_t so, const T *a, ptrdiff_t sa, const T *b,      \
                             ptrdiff_t sb, size_t n)                                        \
    {                                                                                       \
        for (size_t i = 0; i < n; i++) {                                                    \
            const T x = AT(a, sa, i), y = AT(b, sb, i);                                     \
            AT(o, so, i) = (EXPR);                                                          \
        }                                                                                   \
    }

#define SCALAR_FNS(name, EXPR)                                                              \
    static void TN(name##_c)(T *restrict o, const T *restrict a, T s, T t, size_t n)        \
    {                                                                                       \
        (void)s;                                                                            \
        (void)t;                                                                            \
        VLOOP(n, i, { const T x = a[i]; o[i] = (EXPR); });                                  \
    }                                                                                       \
    static void TN(name##_ip)(T *o, T s, T t, size_t n)                                     \
    {                                                                                       \
        (void)s;                                                                            \
        (void)t;                                                                            \
        VLOOP(n, i, { const T x = o[i]; o[i] = (EXPR); });                                  \
    }                                                                                       \
    static void TN(name##_s)(T *o, ptrdiff_t so, const T *a, ptrdiff_t sa, T s, T t,        \
                             size_t n)                                                      \
    {                                                                                       \
        (void)s;                                                                            \
        (void)t;                                                                            \
        for (size_t i = 0; i < n; i++) {                                                    \
            const T x = AT(a, sa, i);                                                       \
            AT(o, so, i) = (EXPR);                                                          \
        }                                                                                   \
    }

#define TERNARY_FNS(name, EXPR)                                                             \
    static void TN(name##_c)(T *restrict o, const T *restrict a, const T *restrict b,       \
                             const T *restrict c, T s, size_t n)                            \
    {                                                                                       \
        VLOOP(n, i, { const T x = a[i], y = b[i], z = c[i]; o[i] = (EXPR); });              \
    }                                                                                       \
    static void TN(name##_ip)(T *restrict o, const T *restrict b, const T *restrict c, T s, \
                              size_t n)                                                     \
    {                                                                                       \
        VLOOP(n, i, { const T x = o[i], y = b[i], z = c[i]; o[i] = (EXPR); });              \
    }                                                                                       \
    static void TN(name##_s)(T *o, ptrdiff_t so, const T *a, ptrdiff_t sa, const T *b,      \
                             ptrdiff_t sb, const T *c, ptrdiff_t sc, T s, size_t n)         \
    {                                                                                       \
        for (size_t i = 0; i < n; i++) {                                                    \
            const T x = AT(a, sa, i), y = AT(b, sb, i), z = AT(c, sc, i);                   \
            AT(o, so, i) = (EXPR);                                                          \
        }                                                                                   \
    }

/* The operations with scalars: a OP s, s OP a (RSUB, RDIV), pow, clamp to [s, t]. */
enum { SC_ADD, SC_SUB, SC_MUL, SC_DIV, SC_RSUB, SC_RDIV, SC_POW, SC_SQUARE, SC_CLAMP, SC_COUNT_ };
/* out = a + s * t1 OP t2 */
enum { TE_ADDCMUL, TE_ADDCDIV, TE_COUNT_ };

typedef enum ew_kind {
    EW_FILL,     /* out = s */
    EW_COPY,     /* out = in0 */
    EW_UNARY,    /* out = unary_tab[op](in0) */
    EW_BINARY,   /* out = in0 OP in1 */
    EW_SCALAR,   /* out = scalar_tab[op](in0, s, t): a OP s, s OP a, pow, clamp */
    EW_TERNARY,  /* out = ternary_tab[op](in0, in1, in2, s) */
    EW_BINSC,    /* out = in0 OP s, any mo_binary_op */
    EW_SCBIN,    /* out = s OP in0 */
    EW_WHERE,    /* out = in0 != 0 ? in1 : in2; op: WH_* bits say which are the numbers s, t */
} ew_kind;

/* mo_where's number operands: the iterator walks only the tensors (cond first). */
enum { WH_A_NUMBER = 1, WH_B_NUMBER = 2 };

typedef struct ew_op {
    ew_kind kind;
    int op;        /* index into the kind's table (mo_unary_op, mo_binary_op, SC_*, TE_*) */
    double s, t;   /* scalars, rounded to the operands' type once per row */
} ew_op;

/* a OP s for + - * /, and s OP a (s + a and s * a commute: the a OP s loops) */
static const int tscalar_op[MO_DIV + 1] = {
    [MO_ADD] = SC_ADD, [MO_SUB] = SC_SUB, [MO_MUL] = SC_MUL, [MO_DIV] = SC_DIV};
static const int scalart_op[MO_DIV + 1] = {
    [MO_ADD] = SC_ADD, [MO_SUB] = SC_RSUB, [MO_MUL] = SC_MUL, [MO_DIV] = SC_RDIV};

#define T float
#define TN(name) name##_f32
#include "ops_t.h"
#define T double
#define TN(name) name##_f64
#include "ops_t.h"

/*
 * The same loops once more, compiled for AVX2 (x86-64, GCC or Clang): the
 * blocks of 8 become one 8-float (two 4-double) operation. Picked at run
 * time when the CPU has AVX2 (ew_kernels), so the library still runs on any
 * x86-64. The values are the same bits on either path: every operation is
 * the same IEEE operation in every lane, libm calls stay calls, and nothing
 * is fused (AVX2 alone brings no FMA, and -std=c11 keeps contraction off);
 * see docs/design.md "SIMD dispatch". An in-place {1024, 1024} + {1024} add
 * takes 57 us instead of 90 on the development machine.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EW_HAVE_AVX2 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2")
#endif
#define T float
#define TN(name) name##_f32_avx2
#include "ops_t.h"
#define T double
#define TN(name) name##_f64_avx2
#include "ops_t.h"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

/* ------------------------------------------------------------------------ */
/* The driver                                                               */
/* ------------------------------------------------------------------------ */

/* Which instance of ops_t.h runs a call: dtype x instruction set. */
typedef enum ew_kset { EW_K_F32, EW_K_F64, EW_K_F32_AVX2, EW_K_F64_AVX2 } ew_kset;

/* Chosen once per call. */
static ew_kset ew_kernels(mo_dtype dt)
{
#ifdef EW_HAVE_AVX2
    if (__builtin_cpu_supports("avx2")) return dt == MO_FLOAT64 ? EW_K_F64_AVX2 : EW_K_F32_AVX2;
#endif
    return dt == MO_FLOAT64 ? EW_K_F64 : EW_K_F32;
}

/* One row. */
static void ew_row(const ew_op *e, const mo__iter *it, ew_kset ks)
{
    switch (ks) {
#ifdef EW_HAVE_AVX2
    case EW_K_F32_AVX2: ew_row_f32_avx2(e, it); break;
    case EW_K_F64_AVX2: ew_row_f64_avx2(e, it); break;
#endif
    case EW_K_F64: ew_row_f64(e, it); break;
    default: ew_row_f32(e, it); break;
    }
}

/* `rows` rows of a 2-D iteration (ew_rows in ops_t.h). */
static void ew_rows(const ew_op *e, mo__iter *piece, size_t rows, const ptrdiff_t *step,
                    ew_kset ks)
{
    switch (ks) {
#ifdef EW_HAVE_AVX2
    case EW_K_F32_AVX2: ew_rows_f32_avx2(e, piece, rows, step); break;
    case EW_K_F64_AVX2: ew_rows_f64_avx2(e, piece, rows, step); break;
#endif
    case EW_K_F64: ew_rows_f64(e, piece, rows, step); break;
    default: ew_rows_f32(e, piece, rows, step); break;
    }
}

/* The op and kernels of a parallel elementwise run. */
typedef struct ew_job {
    const ew_op *e;
    ew_kset ks;
} ew_job;

static void ew_piece(void *ctx, size_t chunk, size_t pos, const mo__iter *piece)
{
    (void)chunk, (void)pos;
    const ew_job *j = ctx;
    ew_row(j->e, piece, j->ks);
}

/* Elements per chunk: ops with a libm call per element are worth threads sooner. Any
 * grain gives the same values (elementwise: each output depends on its inputs alone). */
static size_t ew_grain(const ew_op *e)
{
    if (e->kind == EW_UNARY && e->op != MO_NEG && e->op != MO_RELU && e->op != MO_ABS &&
        e->op != MO_SIGN && e->op != MO_SQRT && e->op != MO_FLOOR && e->op != MO_CEIL)
        return MO__GRAIN_HEAVY;
    if ((e->kind == EW_BINARY || e->kind == EW_BINSC || e->kind == EW_SCBIN) && e->op == MO_POW)
        return MO__GRAIN_HEAVY;
    if (e->kind == EW_SCALAR && e->op == SC_POW) return MO__GRAIN_HEAVY;
    return MO__GRAIN_STREAM;
}

/* A 2-D elementwise run: whole rows of a mo__iter with ndim == 2. */
typedef struct ew_rows_job {
    const ew_op *e;
    ew_kset ks;
    const mo__iter *it;
    ptrdiff_t step[MO__ITER_MAX]; /* bytes from one row to the next, per operand */
} ew_rows_job;

/* Rows [lo, hi). */
static void ew_rows_chunk(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    (void)chunk;
    const ew_rows_job *j = ctx;
    mo__iter piece = *j->it;
    for (int k = 0; k < piece.nops; k++)
        piece.p[k] = (char *)piece.p[k] + (ptrdiff_t)lo * j->step[k];
    ew_rows(j->e, &piece, hi - lo, j->step, j->ks);
}

/* Runs e over out and nin inputs (all validated, same shape, no harmful overlap). */
static void ew_direct(mo_tensor *out, int nin, const mo_tensor *const *in, const ew_op *e,
                      ew_kset ks)
{
    const mo_tensor *ops[MO__ITER_MAX] = {out, NULL, NULL, NULL};
    for (int j = 0; j < nin; j++) ops[j + 1] = in[j];
    mo__iter it;
    mo__iter_init(&it, nin + 1, ops);
    const size_t grain = ew_grain(e);
    if (it.ndim == 2 && it.n > 0) {
        /* {1024, 1024} + {1024}: rows in chunks of about a grain of elements (any
         * partition gives the same values: each output depends on its inputs alone) */
        ew_rows_job job = {e, ks, &it, {0, 0, 0, 0}};
        for (int j = 0; j < it.nops; j++)
            job.step[j] = it.stride[j][0] * (ptrdiff_t)it.esize[j];
        mo__parallel_for(it.rows, grain / it.n + 1, ew_rows_chunk, &job);
        return;
    }
    ew_job job = {e, ks};
    mo__iter_parallel(&it, grain, ew_piece, &job);
}

/*
 * The common case in one flat row: every operand contiguous, and each input
 * either the output itself or disjoint from it. Skips the general iterator's
 * set-up, which dominates for small tensors (a Lua t:add_(1) on 16 floats).
 */
static int ew_flat(mo__iter *it, const mo_tensor *out, int nin, const mo_tensor *const *in)
{
    if (!mo_tensor_is_contiguous(out)) return 0;
    void *o = mo_tensor_ptr(out);
    it->nops = nin + 1;
    it->n = out->numel;
    it->rows = 1;
    for (int j = 0; j < MO__ITER_MAX; j++) {
        it->p[j] = NULL;
        it->inner[j] = 1;
    }
    it->p[0] = o;
    for (int j = 0; j < nin; j++) {
        if (!mo_tensor_is_contiguous(in[j])) return 0;
        void *a = mo_tensor_ptr(in[j]);
        if (a != o && mo__overlaps(out, in[j])) return 0;
        it->p[j + 1] = a;
    }
    return 1;
}

/*
 * Runs e, through a contiguous temporary when out overlaps an input with a
 * different layout. The only possible failure (allocating the temporary)
 * happens before anything is written.
 */
static mo_status ew_apply(mo_tensor *out, int nin, const mo_tensor *const *in, const ew_op *e)
{
    if (out->numel == 0) return MO_OK;
    const ew_kset ks = ew_kernels(out->dtype);
    mo__iter flat;
    if (ew_flat(&flat, out, nin, in)) {
        if (out->numel <= ew_grain(e)) { /* one chunk: skip the pool's bookkeeping */
            ew_row(e, &flat, ks);
        } else {
            for (int j = 0; j < MO__ITER_MAX; j++) flat.esize[j] = mo_dtype_size(out->dtype);
            flat.ndim = 1;
            flat.shape[0] = flat.n;
            ew_job job = {e, ks};
            mo__iter_parallel(&flat, ew_grain(e), ew_piece, &job);
        }
        return MO_OK;
    }
    int need_tmp = 0;
    for (int j = 0; j < nin; j++)
        if (mo__overlaps(out, in[j]) && !mo__same_layout(out, in[j])) need_tmp = 1;
    if (!need_tmp) {
        ew_direct(out, nin, in, e, ks);
        return MO_OK;
    }
    mo_tensor tmp;
    mo_tensor_init(&tmp);
    MO_TRY(mo_tensor_empty_dtype(&tmp, out->ndim, out->shape, out->dtype, NULL));
    ew_direct(&tmp, nin, in, e, ks);
    const mo_tensor *src[1] = {&tmp};
    const ew_op copy = {EW_COPY, 0, 0.0, 0.0};
    ew_direct(out, 1, src, &copy, ks);
    mo_tensor_release(&tmp);
    return MO_OK;
}

mo_status mo__check_dtypes(int n, const mo_tensor *const *ts)
{
    for (int i = 1; i < n; i++)
        if (ts[i]->dtype != ts[0]->dtype) return MO_ERR_DTYPE;
    return MO_OK;
}

/* Validation shared by the public functions: NULL -> ARG, dead -> FREED, shapes -> SHAPE,
 * dtypes -> DTYPE. */
static mo_status check_same(int n, const mo_tensor *const *ts)
{
    MO_TRY(mo__check_live(n, ts));
    for (int i = 1; i < n; i++)
        if (!mo_tensor_same_shape(ts[0], ts[i])) return MO_ERR_SHAPE;
    return mo__check_dtypes(n, ts);
}

/* ------------------------------------------------------------------------ */
/* Public functions                                                         */
/* ------------------------------------------------------------------------ */

mo_status mo_fill(mo_tensor *t, double value)
{
    const mo_tensor *ts[1] = {t};
    MO_TRY(check_same(1, ts));
    const ew_op e = {EW_FILL, 0, value, 0.0};
    return ew_apply(t, 0, NULL, &e);
}

/* double -> float, rounding to nearest; out-of-range values become +-inf or
 * +-FLT_MAX as IEEE rounding says, without the undefined behaviour of a cast. */
static float f32_of_f64(double d)
{
    if (d != d) return (float)d;
    double a = d < 0 ? -d : d;
    if (a <= (double)FLT_MAX) return (float)d;
    /* FLT_MAX + half an ulp (2^103) is the midpoint to 2^128; ties go to the even one, inf */
    float big = a < 0x1.ffffffp+127 ? FLT_MAX : (float)HUGE_VAL;
    return d < 0 ? -big : big;
}

/* One piece of a conversion; ctx points at the destination's dtype. */
static void convert_piece(void *ctx, size_t chunk, size_t pos, const mo__iter *it)
{
    (void)chunk, (void)pos;
    const ptrdiff_t so = it->inner[0], sa = it->inner[1];
    if (*(const mo_dtype *)ctx == MO_FLOAT64) {
        double *o = it->p[0];
        const float *a = it->p[1];
        for (size_t i = 0; i < it->n; i++) AT(o, so, i) = (double)AT(a, sa, i);
    } else {
        float *o = it->p[0];
        const double *a = it->p[1];
        for (size_t i = 0; i < it->n; i++) AT(o, so, i) = f32_of_f64(AT(a, sa, i));
    }
}

/* dst = src converted between float32 and float64, strided rows in parallel pieces. */
static void convert_rows(mo_tensor *dst, const mo_tensor *src)
{
    const mo_tensor *ops[2] = {dst, src};
    mo__iter it;
    mo__iter_init(&it, 2, ops);
    mo_dtype dt = dst->dtype;
    mo__iter_parallel(&it, MO__GRAIN_STREAM, convert_piece, &dt);
}

mo_status mo_copy(mo_tensor *dst, const mo_tensor *src)
{
    const mo_tensor *ts[2] = {dst, src};
    MO_TRY(mo__check_live(2, ts));
    if (!mo_tensor_same_shape(dst, src)) return MO_ERR_SHAPE;
    if (dst->dtype == src->dtype) {
        const ew_op e = {EW_COPY, 0, 0.0, 0.0};
        return ew_apply(dst, 1, ts + 1, &e);
    }
    if (dst->numel == 0) return MO_OK;
    if (!mo__overlaps(dst, src)) {
        convert_rows(dst, src);
        return MO_OK;
    }
    /* two dtypes on overlapping memory (two wraps of one host buffer): convert a copy */
    mo_tensor tmp;
    mo_tensor_init(&tmp);
    MO_TRY(mo_tensor_clone(&tmp, src, NULL));
    convert_rows(dst, &tmp);
    mo_tensor_release(&tmp);
    return MO_OK;
}

mo_status mo_unary(mo_tensor *out, const mo_tensor *a, mo_unary_op op)
{
    const mo_tensor *ts[2] = {out, a};
    MO_TRY(check_same(2, ts));
    if ((unsigned)op >= (unsigned)MO_UNARY_COUNT_) return MO_ERR_ARG;
    const ew_op e = {EW_UNARY, (int)op, 0.0, 0.0};
    return ew_apply(out, 1, ts + 1, &e);
}

/*
 * Validation of a broadcasting op (n handles, out first, NULL entries are
 * numbers): NULL out -> ARG, dead -> FREED, an input that does not broadcast
 * to out's shape -> SHAPE, dtypes -> DTYPE. Then the inputs as the iterator
 * reads them, into in[0..]: the handle itself when it has out's shape (the
 * common case costs nothing), else a stride-0 view in views[j].
 */
static mo_status check_broadcast(int n, const mo_tensor *const *ts, mo_tensor *views,
                                 const mo_tensor **in, int *nin)
{
    const mo_tensor *out = ts[0];
    if (!out) return MO_ERR_ARG;
    if (!mo_tensor_alive(out)) return MO_ERR_FREED;
    *nin = 0;
    for (int j = 1; j < n; j++) {
        const mo_tensor *t = ts[j];
        if (!t) continue;
        if (!mo_tensor_alive(t)) return MO_ERR_FREED;
        if (!mo__broadcasts_to(t, out->ndim, out->shape)) return MO_ERR_SHAPE;
        if (t->dtype != out->dtype) return MO_ERR_DTYPE;
    }
    for (int j = 1; j < n; j++) {
        const mo_tensor *t = ts[j];
        if (!t) continue;
        if (mo_tensor_same_shape(t, out)) {
            in[(*nin)++] = t;
        } else {
            mo__broadcast_view(&views[j], t, out->ndim, out->shape);
            in[(*nin)++] = &views[j];
        }
    }
    return MO_OK;
}

mo_status mo_binary(mo_tensor *out, const mo_tensor *a, const mo_tensor *b, mo_binary_op op)
{
    if (!a || !b) return MO_ERR_ARG;
    const mo_tensor *ts[3] = {out, a, b};
    mo_tensor views[3];
    const mo_tensor *in[2];
    int nin;
    MO_TRY(check_broadcast(3, ts, views, in, &nin));
    if ((unsigned)op >= (unsigned)MO_BINARY_COUNT_) return MO_ERR_ARG;
    const ew_op e = {EW_BINARY, (int)op, 0.0, 0.0};
    return ew_apply(out, 2, in, &e);
}

mo_status mo_where(mo_tensor *out, const mo_tensor *cond, const mo_tensor *a, double sa,
                   const mo_tensor *b, double sb)
{
    if (!cond) return MO_ERR_ARG;
    const mo_tensor *ts[4] = {out, cond, a, b};
    mo_tensor views[4];
    const mo_tensor *in[3];
    int nin;
    MO_TRY(check_broadcast(4, ts, views, in, &nin));
    const ew_op e = {EW_WHERE, (a ? 0 : WH_A_NUMBER) | (b ? 0 : WH_B_NUMBER), sa, sb};
    return ew_apply(out, nin, in, &e);
}

mo_status mo_binary_scalar(mo_tensor *out, const mo_tensor *a, double s, mo_binary_op op)
{
    const mo_tensor *ts[2] = {out, a};
    MO_TRY(check_same(2, ts));
    if ((unsigned)op >= (unsigned)MO_BINARY_COUNT_) return MO_ERR_ARG;
    /* + - * / keep their own loops (the same code as before broadcasting existed) */
    const ew_op e = op <= MO_DIV ? (ew_op){EW_SCALAR, tscalar_op[op], s, 0.0}
                                 : (ew_op){EW_BINSC, (int)op, s, 0.0};
    return ew_apply(out, 1, ts + 1, &e);
}

mo_status mo_scalar_binary(mo_tensor *out, double s, const mo_tensor *a, mo_binary_op op)
{
    const mo_tensor *ts[2] = {out, a};
    MO_TRY(check_same(2, ts));
    if ((unsigned)op >= (unsigned)MO_BINARY_COUNT_) return MO_ERR_ARG;
    const ew_op e = op <= MO_DIV ? (ew_op){EW_SCALAR, scalart_op[op], s, 0.0}
                                 : (ew_op){EW_SCBIN, (int)op, s, 0.0};
    return ew_apply(out, 1, ts + 1, &e);
}

mo_status mo_pow_scalar(mo_tensor *out, const mo_tensor *a, double p)
{
    const mo_tensor *ts[2] = {out, a};
    MO_TRY(check_same(2, ts));
    /* x^1 = x * 1, x^2 = x * x and x^-1 = 1 / x are exact and vectorize; pow
     * gives the same values for them (NaN and infinities included). The
     * exponent is compared in the tensor's type, as the kernel will see it. */
    const double pt = a->dtype == MO_FLOAT32 ? (double)(float)p : p;
    ew_op e = {EW_SCALAR, SC_POW, p, 0.0};
    if (pt == 1.0) {
        e.op = SC_MUL;
    } else if (pt == 2.0) {
        e.op = SC_SQUARE;
    } else if (pt == -1.0) {
        e.op = SC_RDIV;
        e.s = 1.0;
    }
    return ew_apply(out, 1, ts + 1, &e);
}

mo_status mo_clamp(mo_tensor *out, const mo_tensor *a, double lo, double hi)
{
    const mo_tensor *ts[2] = {out, a};
    MO_TRY(check_same(2, ts));
    if (isnan(lo) || isnan(hi) || lo > hi) return MO_ERR_ARG;
    const ew_op e = {EW_SCALAR, SC_CLAMP, lo, hi};
    return ew_apply(out, 1, ts + 1, &e);
}

mo_status mo_addcmul(mo_tensor *out, const mo_tensor *a, double value, const mo_tensor *t1,
                     const mo_tensor *t2)
{
    const mo_tensor *ts[4] = {out, a, t1, t2};
    MO_TRY(check_same(4, ts));
    const ew_op e = {EW_TERNARY, TE_ADDCMUL, value, 0.0};
    return ew_apply(out, 3, ts + 1, &e);
}

mo_status mo_addcdiv(mo_tensor *out, const mo_tensor *a, double value, const mo_tensor *t1,
                     const mo_tensor *t2)
{
    const mo_tensor *ts[4] = {out, a, t1, t2};
    MO_TRY(check_same(4, ts));
    const ew_op e = {EW_TERNARY, TE_ADDCDIV, value, 0.0};
    return ew_apply(out, 3, ts + 1, &e);
}

/* mo_add_row_bias's operands: m {rows, cols} (strides rs, cs), bias {cols} (stride bs). */
typedef struct bias_job {
    ew_kset ks;
    void *m;
    size_t cols;
    ptrdiff_t rs, cs;
    const void *b;
    ptrdiff_t bs;
} bias_job;

/* Rows [lo, hi) of m. */
static void bias_chunk(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const bias_job *j = ctx;
    (void)chunk;
    const size_t rows = hi - lo;
    switch (j->ks) {
#ifdef EW_HAVE_AVX2
    case EW_K_F32_AVX2:
        add_rows_f32_avx2((float *)j->m + (ptrdiff_t)lo * j->rs, rows, j->cols, j->rs, j->cs,
                          j->b, j->bs);
        break;
    case EW_K_F64_AVX2:
        add_rows_f64_avx2((double *)j->m + (ptrdiff_t)lo * j->rs, rows, j->cols, j->rs, j->cs,
                          j->b, j->bs);
        break;
#endif
    case EW_K_F64:
        add_rows_f64((double *)j->m + (ptrdiff_t)lo * j->rs, rows, j->cols, j->rs, j->cs, j->b,
                     j->bs);
        break;
    default:
        add_rows_f32((float *)j->m + (ptrdiff_t)lo * j->rs, rows, j->cols, j->rs, j->cs, j->b,
                     j->bs);
        break;
    }
}

mo_status mo_add_row_bias(mo_tensor *m, const mo_tensor *bias)
{
    const mo_tensor *ts[2] = {m, bias};
    MO_TRY(mo__check_live(2, ts));
    if (m->ndim != 2 || bias->ndim != 1 || bias->shape[0] != m->shape[1]) return MO_ERR_SHAPE;
    MO_TRY(mo__check_dtypes(2, ts));
    if (m->numel == 0) return MO_OK;

    /* bias inside m (e.g. one of m's rows) would change while rows are added: copy it first */
    mo_tensor tmp;
    mo_tensor_init(&tmp);
    const mo_tensor *bt = bias;
    if (mo__overlaps(m, bias)) {
        MO_TRY(mo_tensor_clone(&tmp, bias, NULL));
        bt = &tmp;
    }
    /* m: {rows, cols}, row i at data + i*stride[0]; bias: {cols} */
    const size_t cols = m->shape[1];
    bias_job job = {ew_kernels(m->dtype), mo_tensor_ptr(m), cols, m->stride[0], cols > 1 ? m->stride[1] : 1,
                    mo_tensor_ptr(bt), cols > 1 ? bt->stride[0] : 1};
    /* rows in chunks of about a stream grain of elements */
    mo__parallel_for(m->shape[0], MO__GRAIN_STREAM / cols + 1, bias_chunk, &job);
    mo_tensor_release(&tmp);
    return MO_OK;
}

mo_status mo__scale(mo_tensor *out, double s)
{
    if (s == 1.0) {
        const mo_tensor *ts[1] = {out};
        return mo__check_live(1, ts);
    }
    if (s == 0.0) return mo_fill(out, 0.0);
    return mo_binary_scalar(out, out, s, MO_MUL);
}
