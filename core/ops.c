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
 * The contiguous loops are plain `for` loops over float* and size_t n written
 * so that GCC/Clang vectorize them at -O2 (see VLOOP).
 */
#include "moonopt_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

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
        it->p[j] = j < nops ? mo_tensor_data(ts[j]) : NULL;
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
            for (int j = 0; j < it->nops; j++) it->p[j] += it->stride[j][d];
            return 1;
        }
        it->idx[d] = 0;
        for (int j = 0; j < it->nops; j++)
            it->p[j] -= it->stride[j][d] * (ptrdiff_t)(it->shape[d] - 1);
    }
    return 0;
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
    const float *p = mo_tensor_data(t);
    ptrdiff_t mn = 0, mx = 0;
    for (int d = 0; d < t->ndim; d++) {
        ptrdiff_t ext = (ptrdiff_t)(t->shape[d] - 1) * t->stride[d];
        if (ext < 0)
            mn += ext;
        else
            mx += ext;
    }
    *lo = (uintptr_t)(p + mn);
    *hi = (uintptr_t)(p + mx) + sizeof(float);
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
    if (mo_tensor_data(a) != mo_tensor_data(b) || !mo_tensor_same_shape(a, b)) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] > 1 && a->stride[d] != b->stride[d]) return 0;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Loop kernels                                                             */
/* ------------------------------------------------------------------------ */

/*
 * One loop over n contiguous elements. The main part runs to a multiple of 8
 * because GCC's -O2 vectorizer ("very cheap" cost model) only vectorizes a
 * loop whose trip count is a known multiple of the vector width and whose
 * pointers cannot alias (hence `restrict` on the kernels that use it); the
 * second loop finishes the tail.
 */
#define VLOOP(n, i, ...)                                   \
    do {                                                   \
        size_t vloop_n8_ = (n) & ~(size_t)7, i;            \
        for (i = 0; i < vloop_n8_; i++) { __VA_ARGS__; }   \
        for (; i < (n); i++) { __VA_ARGS__; }              \
    } while (0)

/* Element i of a strided row. */
#define AT(p, s, i) (p)[(ptrdiff_t)(i) * (s)]

/* --- fill and copy --- */

static void fill_c(float *restrict o, float v, size_t n)
{
    /* blocks of 8 (straight-line stores the SLP vectorizer packs) survive
     * inlining into ew_row, where VLOOP's trip-count hint gets lost */
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++) o[i + j] = v;
    for (; i < n; i++) o[i] = v;
}

static void fill_s(float *o, ptrdiff_t so, float v, size_t n)
{
    for (size_t i = 0; i < n; i++) AT(o, so, i) = v;
}

static void copy_s(float *o, ptrdiff_t so, const float *a, ptrdiff_t sa, size_t n)
{
    for (size_t i = 0; i < n; i++) AT(o, so, i) = AT(a, sa, i);
}

/* --- unary: EXPR reads x --- */

typedef struct unary_fns {
    void (*c)(float *restrict o, const float *restrict a, size_t n);   /* o != a */
    void (*ip)(float *o, size_t n);                                    /* o == a */
    void (*s)(float *o, ptrdiff_t so, const float *a, ptrdiff_t sa, size_t n);
} unary_fns;

#define UNARY_FNS(name, EXPR)                                                             \
    static void name##_c(float *restrict o, const float *restrict a, size_t n)            \
    {                                                                                     \
        VLOOP(n, i, { const float x = a[i]; o[i] = (EXPR); });                            \
    }                                                                                     \
    static void name##_ip(float *o, size_t n)                                             \
    {                                                                                     \
        VLOOP(n, i, { const float x = o[i]; o[i] = (EXPR); });                            \
    }                                                                                     \
    static void name##_s(float *o, ptrdiff_t so, const float *a, ptrdiff_t sa, size_t n)  \
    {                                                                                     \
        for (size_t i = 0; i < n; i++) {                                                  \
            const float x = AT(a, sa, i);                                                 \
            AT(o, so, i) = (EXPR);                                                        \
        }                                                                                 \
    }

/* Two branches so that exp() never overflows: 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below. */
static inline float sigmoidf(float x)
{
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    const float e = expf(x); /* NaN lands here and stays NaN */
    return e / (1.0f + e);
}

/* relu and sign keep NaN (as PyTorch does); sign keeps the sign of zero. */
UNARY_FNS(un_neg, -x)
UNARY_FNS(un_sqrt, sqrtf(x))
UNARY_FNS(un_exp, expf(x))
UNARY_FNS(un_log, logf(x))
UNARY_FNS(un_tanh, tanhf(x))
UNARY_FNS(un_sigmoid, sigmoidf(x))
UNARY_FNS(un_relu, x < 0.0f ? 0.0f : x)
UNARY_FNS(un_abs, fabsf(x))
UNARY_FNS(un_sign, x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x))

#define UNARY_ENTRY(name) {name##_c, name##_ip, name##_s}
static const unary_fns unary_tab[MO_UNARY_COUNT_] = {
    [MO_NEG] = UNARY_ENTRY(un_neg),         [MO_SQRT] = UNARY_ENTRY(un_sqrt),
    [MO_EXP] = UNARY_ENTRY(un_exp),         [MO_LOG] = UNARY_ENTRY(un_log),
    [MO_TANH] = UNARY_ENTRY(un_tanh),       [MO_SIGMOID] = UNARY_ENTRY(un_sigmoid),
    [MO_RELU] = UNARY_ENTRY(un_relu),       [MO_ABS] = UNARY_ENTRY(un_abs),
    [MO_SIGN] = UNARY_ENTRY(un_sign),
};

/* --- tensor OP tensor: EXPR reads x (from a) and y (from b) --- */

typedef struct binary_fns {
    void (*c)(float *restrict o, const float *restrict a, const float *restrict b, size_t n);
    void (*ipa)(float *restrict o, const float *restrict b, size_t n);  /* o == a, b distinct */
    void (*ipb)(float *restrict o, const float *restrict a, size_t n);  /* o == b, a distinct */
    void (*s)(float *o, ptrdiff_t so, const float *a, ptrdiff_t sa, const float *b,
              ptrdiff_t sb, size_t n);                                   /* anything else */
} binary_fns;

#define BINARY_FNS(name, EXPR)                                                              \
    static void name##_c(float *restrict o, const float *restrict a,                        \
                         const float *restrict b, size_t n)                                 \
    {                                                                                       \
        VLOOP(n, i, { const float x = a[i], y = b[i]; o[i] = (EXPR); });                    \
    }                                                                                       \
    static void name##_ipa(float *restrict o, const float *restrict b, size_t n)            \
    {                                                                                       \
        VLOOP(n, i, { const float x = o[i], y = b[i]; o[i] = (EXPR); });                    \
    }                                                                                       \
    static void name##_ipb(float *restrict o, const float *restrict a, size_t n)            \
    {                                                                                       \
        VLOOP(n, i, { const float x = a[i], y = o[i]; o[i] = (EXPR); });                    \
    }                                                                                       \
    static void name##_s(float *o, ptrdiff_t so, const float *a, ptrdiff_t sa,              \
                         const float *b, ptrdiff_t sb, size_t n)                            \
    {                                                                                       \
        for (size_t i = 0; i < n; i++) {                                                    \
            const float x = AT(a, sa, i), y = AT(b, sb, i);                                 \
            AT(o, so, i) = (EXPR);                                                          \
        }                                                                                   \
    }

BINARY_FNS(bi_add, x + y)
BINARY_FNS(bi_sub, x - y)
BINARY_FNS(bi_mul, x * y)
BINARY_FNS(bi_div, x / y)

#define BINARY_ENTRY(name) {name##_c, name##_ipa, name##_ipb, name##_s}
static const binary_fns binary_tab[MO_BINARY_COUNT_] = {
    [MO_ADD] = BINARY_ENTRY(bi_add), [MO_SUB] = BINARY_ENTRY(bi_sub),
    [MO_MUL] = BINARY_ENTRY(bi_mul), [MO_DIV] = BINARY_ENTRY(bi_div),
};

/* --- tensor with scalars: EXPR reads x (element), s and t (scalars) --- */

typedef struct scalar_fns {
    void (*c)(float *restrict o, const float *restrict a, float s, float t, size_t n);
    void (*ip)(float *o, float s, float t, size_t n);
    void (*s)(float *o, ptrdiff_t so, const float *a, ptrdiff_t sa, float s, float t, size_t n);
} scalar_fns;

#define SCALAR_FNS(name, EXPR)                                                              \
    static void name##_c(float *restrict o, const float *restrict a, float s, float t,      \
                         size_t n)                                                          \
    {                                                                                       \
        (void)s;                                                                            \
        (void)t;                                                                            \
        VLOOP(n, i, { const float x = a[i]; o[i] = (EXPR); });                              \
    }                                                                                       \
    static void name##_ip(float *o, float s, float t, size_t n)                             \
    {                                                                                       \
        (void)s;                                                                            \
        (void)t;                                                                            \
        VLOOP(n, i, { const float x = o[i]; o[i] = (EXPR); });                              \
    }                                                                                       \
    static void name##_s(float *o, ptrdiff_t so, const float *a, ptrdiff_t sa, float s,     \
                         float t, size_t n)                                                 \
    {                                                                                       \
        (void)s;                                                                            \
        (void)t;                                                                            \
        for (size_t i = 0; i < n; i++) {                                                    \
            const float x = AT(a, sa, i);                                                   \
            AT(o, so, i) = (EXPR);                                                          \
        }                                                                                   \
    }

/* a OP s */
SCALAR_FNS(ts_add, x + s)
SCALAR_FNS(ts_sub, x - s)
SCALAR_FNS(ts_mul, x * s)
SCALAR_FNS(ts_div, x / s)
/* s OP a */
SCALAR_FNS(st_sub, s - x)
SCALAR_FNS(st_div, s / x)
/* pow: the general case and the common exponents done exactly and fast */
SCALAR_FNS(pw_gen, powf(x, s))
SCALAR_FNS(pw_sq, x * x)
/* clamp to [s, t]; the comparisons keep NaN */
SCALAR_FNS(cl_clamp, x < s ? s : (x > t ? t : x))

#define SCALAR_ENTRY(name) {name##_c, name##_ip, name##_s}
static const scalar_fns tscalar_tab[MO_BINARY_COUNT_] = {
    [MO_ADD] = SCALAR_ENTRY(ts_add), [MO_SUB] = SCALAR_ENTRY(ts_sub),
    [MO_MUL] = SCALAR_ENTRY(ts_mul), [MO_DIV] = SCALAR_ENTRY(ts_div),
};
/* s + a and s * a commute, so they reuse the a OP s loops */
static const scalar_fns scalart_tab[MO_BINARY_COUNT_] = {
    [MO_ADD] = SCALAR_ENTRY(ts_add), [MO_SUB] = SCALAR_ENTRY(st_sub),
    [MO_MUL] = SCALAR_ENTRY(ts_mul), [MO_DIV] = SCALAR_ENTRY(st_div),
};
static const scalar_fns pw_gen_fns = SCALAR_ENTRY(pw_gen);
static const scalar_fns pw_sq_fns = SCALAR_ENTRY(pw_sq);
static const scalar_fns clamp_fns = SCALAR_ENTRY(cl_clamp);

/* --- a + s * t1 OP t2: EXPR reads x (a), y (t1), z (t2), s --- */

typedef struct ternary_fns {
    void (*c)(float *restrict o, const float *restrict a, const float *restrict b,
              const float *restrict c, float s, size_t n);
    void (*ip)(float *restrict o, const float *restrict b, const float *restrict c, float s,
               size_t n);  /* o == a; t1, t2 distinct from o */
    void (*s)(float *o, ptrdiff_t so, const float *a, ptrdiff_t sa, const float *b,
              ptrdiff_t sb, const float *c, ptrdiff_t sc, float s, size_t n);
} ternary_fns;

#define TERNARY_FNS(name, EXPR)                                                             \
    static void name##_c(float *restrict o, const float *restrict a,                        \
                         const float *restrict b, const float *restrict c, float s,         \
                         size_t n)                                                          \
    {                                                                                       \
        VLOOP(n, i, { const float x = a[i], y = b[i], z = c[i]; o[i] = (EXPR); });          \
    }                                                                                       \
    static void name##_ip(float *restrict o, const float *restrict b,                       \
                          const float *restrict c, float s, size_t n)                       \
    {                                                                                       \
        VLOOP(n, i, { const float x = o[i], y = b[i], z = c[i]; o[i] = (EXPR); });          \
    }                                                                                       \
    static void name##_s(float *o, ptrdiff_t so, const float *a, ptrdiff_t sa,              \
                         const float *b, ptrdiff_t sb, const float *c, ptrdiff_t sc,        \
                         float s, size_t n)                                                 \
    {                                                                                       \
        for (size_t i = 0; i < n; i++) {                                                    \
            const float x = AT(a, sa, i), y = AT(b, sb, i), z = AT(c, sc, i);               \
            AT(o, so, i) = (EXPR);                                                          \
        }                                                                                   \
    }

/* PyTorch's order of evaluation: input + value * tensor1 * tensor2 (or / tensor2) */
TERNARY_FNS(te_addcmul, x + s * y * z)
TERNARY_FNS(te_addcdiv, x + s * y / z)

static const ternary_fns addcmul_fns = {te_addcmul_c, te_addcmul_ip, te_addcmul_s};
static const ternary_fns addcdiv_fns = {te_addcdiv_c, te_addcdiv_ip, te_addcdiv_s};

/* ------------------------------------------------------------------------ */
/* The driver                                                               */
/* ------------------------------------------------------------------------ */

typedef enum ew_kind {
    EW_FILL,     /* out = s */
    EW_COPY,     /* out = in0 */
    EW_UNARY,    /* out = unary_tab[op](in0) */
    EW_BINARY,   /* out = in0 OP in1 */
    EW_SCALAR,   /* out = fns(in0, s, t): a OP s, s OP a, pow, clamp */
    EW_TERNARY,  /* out = in0 + s * in1 OP in2 */
} ew_kind;

typedef struct ew_op {
    ew_kind kind;
    int op;                        /* EW_UNARY, EW_BINARY */
    const scalar_fns *sfns;        /* EW_SCALAR */
    const ternary_fns *tfns;       /* EW_TERNARY */
    float s, t;
} ew_op;

/* One row of the iteration: choose the loop once, then run it. */
static void ew_row(const ew_op *e, const mo__iter *it)
{
    const size_t n = it->n;
    float *o = it->p[0];
    const float *a = it->p[1], *b = it->p[2], *c = it->p[3];
    const ptrdiff_t so = it->inner[0], sa = it->inner[1], sb = it->inner[2], sc = it->inner[3];
    int contig = 1;
    for (int j = 0; j < it->nops; j++)
        if (it->inner[j] != 1) contig = 0;
    if (n == 1) contig = 1; /* a single element has no stride */

    switch (e->kind) {
    case EW_FILL:
        if (contig)
            fill_c(o, e->s, n);
        else
            fill_s(o, so, e->s, n);
        break;
    case EW_COPY:
        if (o == a) break; /* copy onto itself */
        if (contig)
            memcpy(o, a, n * sizeof *o);
        else
            copy_s(o, so, a, sa, n);
        break;
    case EW_UNARY: {
        const unary_fns *f = &unary_tab[e->op];
        if (!contig)
            f->s(o, so, a, sa, n);
        else if (o == a)
            f->ip(o, n);
        else
            f->c(o, a, n);
        break;
    }
    case EW_BINARY: {
        const binary_fns *f = &binary_tab[e->op];
        if (!contig || (o == a && o == b))
            f->s(o, so, a, contig ? 1 : sa, b, contig ? 1 : sb, n);
        else if (o == a)
            f->ipa(o, b, n);
        else if (o == b)
            f->ipb(o, a, n);
        else
            f->c(o, a, b, n);
        break;
    }
    case EW_SCALAR: {
        const scalar_fns *f = e->sfns;
        if (!contig)
            f->s(o, so, a, sa, e->s, e->t, n);
        else if (o == a)
            f->ip(o, e->s, e->t, n);
        else
            f->c(o, a, e->s, e->t, n);
        break;
    }
    case EW_TERNARY: {
        const ternary_fns *f = e->tfns;
        if (contig && o != b && o != c) {
            if (o == a)
                f->ip(o, b, c, e->s, n);
            else
                f->c(o, a, b, c, e->s, n);
        } else {
            f->s(o, contig ? 1 : so, a, contig ? 1 : sa, b, contig ? 1 : sb, c,
                 contig ? 1 : sc, e->s, n);
        }
        break;
    }
    }
}

/* Runs e over out and nin inputs (all validated, same shape, no harmful overlap). */
static void ew_direct(mo_tensor *out, int nin, const mo_tensor *const *in, const ew_op *e)
{
    const mo_tensor *ops[MO__ITER_MAX] = {out, NULL, NULL, NULL};
    for (int j = 0; j < nin; j++) ops[j + 1] = in[j];
    mo__iter it;
    mo__iter_init(&it, nin + 1, ops);
    for (size_t r = 0; r < it.rows; r++, mo__iter_next(&it)) ew_row(e, &it);
}

/*
 * Runs e, through a contiguous temporary when out overlaps an input with a
 * different layout. The only possible failure (allocating the temporary)
 * happens before anything is written.
 */
/*
 * The common case in one flat row: every operand contiguous, and each input
 * either the output itself or disjoint from it. Skips the general iterator's
 * set-up, which dominates for small tensors (a Lua t:add_(1) on 16 floats).
 */
static int ew_flat(mo__iter *it, const mo_tensor *out, int nin, const mo_tensor *const *in)
{
    if (!mo_tensor_is_contiguous(out)) return 0;
    float *o = mo_tensor_data(out);
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
        float *a = mo_tensor_data(in[j]);
        if (a != o && mo__overlaps(out, in[j])) return 0;
        it->p[j + 1] = a;
    }
    return 1;
}

static mo_status ew_apply(mo_tensor *out, int nin, const mo_tensor *const *in, const ew_op *e)
{
    if (out->numel == 0) return MO_OK;
    mo__iter flat;
    if (ew_flat(&flat, out, nin, in)) {
        ew_row(e, &flat);
        return MO_OK;
    }
    int need_tmp = 0;
    for (int j = 0; j < nin; j++)
        if (mo__overlaps(out, in[j]) && !mo__same_layout(out, in[j])) need_tmp = 1;
    if (!need_tmp) {
        ew_direct(out, nin, in, e);
        return MO_OK;
    }
    mo_tensor tmp;
    mo_tensor_init(&tmp);
    MO_TRY(mo_tensor_empty(&tmp, out->ndim, out->shape, NULL));
    ew_direct(&tmp, nin, in, e);
    const mo_tensor *src[1] = {&tmp};
    const ew_op copy = {EW_COPY, 0, NULL, NULL, 0.0f, 0.0f};
    ew_direct(out, 1, src, &copy);
    mo_tensor_release(&tmp);
    return MO_OK;
}

/* Validation shared by the public functions: NULL -> ARG, dead -> FREED, shapes -> SHAPE. */
static mo_status check_same(int n, const mo_tensor *const *ts)
{
    MO_TRY(mo__check_live(n, ts));
    for (int i = 1; i < n; i++)
        if (!mo_tensor_same_shape(ts[0], ts[i])) return MO_ERR_SHAPE;
    return MO_OK;
}

/* ------------------------------------------------------------------------ */
/* Public functions                                                         */
/* ------------------------------------------------------------------------ */

mo_status mo_fill(mo_tensor *t, float value)
{
    const mo_tensor *ts[1] = {t};
    MO_TRY(check_same(1, ts));
    const ew_op e = {EW_FILL, 0, NULL, NULL, value, 0.0f};
    return ew_apply(t, 0, NULL, &e);
}

mo_status mo_copy(mo_tensor *dst, const mo_tensor *src)
{
    const mo_tensor *ts[2] = {dst, src};
    MO_TRY(check_same(2, ts));
    const ew_op e = {EW_COPY, 0, NULL, NULL, 0.0f, 0.0f};
    return ew_apply(dst, 1, ts + 1, &e);
}

mo_status mo_unary(mo_tensor *out, const mo_tensor *a, mo_unary_op op)
{
    const mo_tensor *ts[2] = {out, a};
    MO_TRY(check_same(2, ts));
    if ((unsigned)op >= (unsigned)MO_UNARY_COUNT_) return MO_ERR_ARG;
    const ew_op e = {EW_UNARY, (int)op, NULL, NULL, 0.0f, 0.0f};
    return ew_apply(out, 1, ts + 1, &e);
}

mo_status mo_binary(mo_tensor *out, const mo_tensor *a, const mo_tensor *b, mo_binary_op op)
{
    const mo_tensor *ts[3] = {out, a, b};
    MO_TRY(check_same(3, ts));
    if ((unsigned)op >= (unsigned)MO_BINARY_COUNT_) return MO_ERR_ARG;
    const ew_op e = {EW_BINARY, (int)op, NULL, NULL, 0.0f, 0.0f};
    return ew_apply(out, 2, ts + 1, &e);
}

mo_status mo_binary_scalar(mo_tensor *out, const mo_tensor *a, float s, mo_binary_op op)
{
    const mo_tensor *ts[2] = {out, a};
    MO_TRY(check_same(2, ts));
    if ((unsigned)op >= (unsigned)MO_BINARY_COUNT_) return MO_ERR_ARG;
    const ew_op e = {EW_SCALAR, 0, &tscalar_tab[op], NULL, s, 0.0f};
    return ew_apply(out, 1, ts + 1, &e);
}

mo_status mo_scalar_binary(mo_tensor *out, float s, const mo_tensor *a, mo_binary_op op)
{
    const mo_tensor *ts[2] = {out, a};
    MO_TRY(check_same(2, ts));
    if ((unsigned)op >= (unsigned)MO_BINARY_COUNT_) return MO_ERR_ARG;
    const ew_op e = {EW_SCALAR, 0, &scalart_tab[op], NULL, s, 0.0f};
    return ew_apply(out, 1, ts + 1, &e);
}

mo_status mo_pow_scalar(mo_tensor *out, const mo_tensor *a, float p)
{
    const mo_tensor *ts[2] = {out, a};
    MO_TRY(check_same(2, ts));
    /* x^1 = x * 1, x^2 = x * x and x^-1 = 1 / x are exact and vectorize; powf
     * gives the same values for them (NaN and infinities included). */
    ew_op e = {EW_SCALAR, 0, &pw_gen_fns, NULL, p, 0.0f};
    if (p == 1.0f) {
        e.sfns = &tscalar_tab[MO_MUL];
    } else if (p == 2.0f) {
        e.sfns = &pw_sq_fns;
    } else if (p == -1.0f) {
        e.sfns = &scalart_tab[MO_DIV];
        e.s = 1.0f;
    }
    return ew_apply(out, 1, ts + 1, &e);
}

mo_status mo_clamp(mo_tensor *out, const mo_tensor *a, float lo, float hi)
{
    const mo_tensor *ts[2] = {out, a};
    MO_TRY(check_same(2, ts));
    if (isnan(lo) || isnan(hi) || lo > hi) return MO_ERR_ARG;
    const ew_op e = {EW_SCALAR, 0, &clamp_fns, NULL, lo, hi};
    return ew_apply(out, 1, ts + 1, &e);
}

mo_status mo_addcmul(mo_tensor *out, const mo_tensor *a, float value, const mo_tensor *t1,
                     const mo_tensor *t2)
{
    const mo_tensor *ts[4] = {out, a, t1, t2};
    MO_TRY(check_same(4, ts));
    const ew_op e = {EW_TERNARY, 0, NULL, &addcmul_fns, value, 0.0f};
    return ew_apply(out, 3, ts + 1, &e);
}

mo_status mo_addcdiv(mo_tensor *out, const mo_tensor *a, float value, const mo_tensor *t1,
                     const mo_tensor *t2)
{
    const mo_tensor *ts[4] = {out, a, t1, t2};
    MO_TRY(check_same(4, ts));
    const ew_op e = {EW_TERNARY, 0, NULL, &addcdiv_fns, value, 0.0f};
    return ew_apply(out, 3, ts + 1, &e);
}

mo_status mo_add_row_bias(mo_tensor *m, const mo_tensor *bias)
{
    const mo_tensor *ts[2] = {m, bias};
    MO_TRY(mo__check_live(2, ts));
    if (m->ndim != 2 || bias->ndim != 1 || bias->shape[0] != m->shape[1]) return MO_ERR_SHAPE;
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
    const size_t rows = m->shape[0], cols = m->shape[1];
    const ptrdiff_t rs = m->stride[0], cs = cols > 1 ? m->stride[1] : 1;
    const ptrdiff_t bs = cols > 1 ? bt->stride[0] : 1;
    float *m0 = mo_tensor_data(m);
    const float *b = mo_tensor_data(bt);
    const binary_fns *f = &binary_tab[MO_ADD];
    for (size_t i = 0; i < rows; i++) {
        float *row = m0 + (ptrdiff_t)i * rs;
        if (cs == 1 && bs == 1)
            f->ipa(row, b, cols);
        else
            f->s(row, cs, row, cs, b, bs, cols);
    }
    mo_tensor_release(&tmp);
    return MO_OK;
}

mo_status mo__scale(mo_tensor *out, float s)
{
    if (s == 1.0f) {
        const mo_tensor *ts[1] = {out};
        return mo__check_live(1, ts);
    }
    if (s == 0.0f) return mo_fill(out, 0.0f);
    return mo_binary_scalar(out, out, s, MO_MUL);
}
