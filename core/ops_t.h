/*
 * ops_t.h - the elementwise loop kernels of ops.c, written once over the
 * element type T (float or double) and included by ops.c once per dtype; see
 * moonopt_internal.h and docs/design.md "Two dtypes". No include guard on
 * purpose. T and TN are #undef'd at the end.
 *
 * The macros UNARY_FNS, BINARY_FNS, SCALAR_FNS and TERNARY_FNS (defined in
 * ops.c) stamp out, for one expression, a contiguous `restrict` loop, an
 * in-place loop and a strided loop; ew_row picks one per row.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including ops_t.h"
#endif

/* --- fill and copy --- */

static void TN(fill_c)(T *restrict o, T v, size_t n)
{
    /* blocks of 8 (straight-line stores the SLP vectorizer packs) survive
     * inlining into ew_row, where VLOOP's trip-count hint gets lost */
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++) o[i + j] = v;
    for (; i < n; i++) o[i] = v;
}

static void TN(fill_s)(T *o, ptrdiff_t so, T v, size_t n)
{
    for (size_t i = 0; i < n; i++) AT(o, so, i) = v;
}

static void TN(copy_s)(T *o, ptrdiff_t so, const T *a, ptrdiff_t sa, size_t n)
{
    for (size_t i = 0; i < n; i++) AT(o, so, i) = AT(a, sa, i);
}

/* --- unary: EXPR reads x --- */

typedef struct TN(unary_fns) {
    void (*c)(T *restrict o, const T *restrict a, size_t n);   /* o != a */
    void (*ip)(T *o, size_t n);                                /* o == a */
    void (*s)(T *o, ptrdiff_t so, const T *a, ptrdiff_t sa, size_t n);
} TN(unary_fns);

/* Two branches so that exp() never overflows: 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below. */
static inline T TN(sigmoid)(T x)
{
    if (x >= 0) return 1 / (1 + exp(-x));
    const T e = exp(x); /* NaN lands here and stays NaN */
    return e / (1 + e);
}

/* relu and sign keep NaN (as PyTorch does); sign keeps the sign of zero. */
UNARY_FNS(un_neg, -x)
UNARY_FNS(un_sqrt, sqrt(x))
UNARY_FNS(un_exp, exp(x))
UNARY_FNS(un_log, log(x))
UNARY_FNS(un_tanh, tanh(x))
UNARY_FNS(un_sigmoid, TN(sigmoid)(x))
UNARY_FNS(un_relu, x < 0 ? (T)0 : x)
UNARY_FNS(un_abs, fabs(x))
UNARY_FNS(un_sign, x > 0 ? (T)1 : (x < 0 ? (T)-1 : x))
UNARY_FNS(un_log1p, log1p(x))
UNARY_FNS(un_expm1, expm1(x))
UNARY_FNS(un_rsqrt, 1 / sqrt(x))
UNARY_FNS(un_sin, sin(x))
UNARY_FNS(un_cos, cos(x))
UNARY_FNS(un_tan, tan(x))
UNARY_FNS(un_floor, floor(x))
UNARY_FNS(un_ceil, ceil(x))
/* nearbyint in the default rounding mode: halves to even (2.5 -> 2), as torch.round */
UNARY_FNS(un_round, nearbyint(x))
UNARY_FNS(un_erf, erf(x))

#define UNARY_ENTRY(name) {TN(name##_c), TN(name##_ip), TN(name##_s)}
static const TN(unary_fns) TN(unary_tab)[MO_UNARY_COUNT_] = {
    [MO_NEG] = UNARY_ENTRY(un_neg),         [MO_SQRT] = UNARY_ENTRY(un_sqrt),
    [MO_EXP] = UNARY_ENTRY(un_exp),         [MO_LOG] = UNARY_ENTRY(un_log),
    [MO_TANH] = UNARY_ENTRY(un_tanh),       [MO_SIGMOID] = UNARY_ENTRY(un_sigmoid),
    [MO_RELU] = UNARY_ENTRY(un_relu),       [MO_ABS] = UNARY_ENTRY(un_abs),
    [MO_SIGN] = UNARY_ENTRY(un_sign),       [MO_LOG1P] = UNARY_ENTRY(un_log1p),
    [MO_EXPM1] = UNARY_ENTRY(un_expm1),     [MO_RSQRT] = UNARY_ENTRY(un_rsqrt),
    [MO_SIN] = UNARY_ENTRY(un_sin),         [MO_COS] = UNARY_ENTRY(un_cos),
    [MO_TAN] = UNARY_ENTRY(un_tan),         [MO_FLOOR] = UNARY_ENTRY(un_floor),
    [MO_CEIL] = UNARY_ENTRY(un_ceil),       [MO_ROUND] = UNARY_ENTRY(un_round),
    [MO_ERF] = UNARY_ENTRY(un_erf),
};
#undef UNARY_ENTRY

/* --- tensor OP tensor: EXPR reads x (from a) and y (from b) --- */

typedef struct TN(binary_fns) {
    void (*c)(T *restrict o, const T *restrict a, const T *restrict b, size_t n);
    void (*ipa)(T *restrict o, const T *restrict b, size_t n);  /* o == a, b distinct */
    void (*ipb)(T *restrict o, const T *restrict a, size_t n);  /* o == b, a distinct */
    void (*s)(T *o, ptrdiff_t so, const T *a, ptrdiff_t sa, const T *b, ptrdiff_t sb,
              size_t n);                                         /* anything else */
} TN(binary_fns);

BINARY_FNS(bi_add, x + y)
BINARY_FNS(bi_sub, x - y)
BINARY_FNS(bi_mul, x * y)
BINARY_FNS(bi_div, x / y)
BINARY_FNS(bi_pow, pow(x, y))
/* NaN in either operand gives NaN (torch.maximum / torch.minimum) */
BINARY_FNS(bi_max, (x > y || x != x) ? x : y)
BINARY_FNS(bi_min, (x < y || x != x) ? x : y)
/* masks: 1 or 0 in the operands' type */
BINARY_FNS(bi_eq, (T)(x == y))
BINARY_FNS(bi_ne, (T)(x != y))
BINARY_FNS(bi_lt, (T)(x < y))
BINARY_FNS(bi_le, (T)(x <= y))
BINARY_FNS(bi_gt, (T)(x > y))
BINARY_FNS(bi_ge, (T)(x >= y))

#define BINARY_ENTRY(name) {TN(name##_c), TN(name##_ipa), TN(name##_ipb), TN(name##_s)}
static const TN(binary_fns) TN(binary_tab)[MO_BINARY_COUNT_] = {
    [MO_ADD] = BINARY_ENTRY(bi_add), [MO_SUB] = BINARY_ENTRY(bi_sub),
    [MO_MUL] = BINARY_ENTRY(bi_mul), [MO_DIV] = BINARY_ENTRY(bi_div),
    [MO_POW] = BINARY_ENTRY(bi_pow), [MO_MAXIMUM] = BINARY_ENTRY(bi_max),
    [MO_MINIMUM] = BINARY_ENTRY(bi_min), [MO_EQ] = BINARY_ENTRY(bi_eq),
    [MO_NE] = BINARY_ENTRY(bi_ne),   [MO_LT] = BINARY_ENTRY(bi_lt),
    [MO_LE] = BINARY_ENTRY(bi_le),   [MO_GT] = BINARY_ENTRY(bi_gt),
    [MO_GE] = BINARY_ENTRY(bi_ge),
};
#undef BINARY_ENTRY

/* --- tensor with scalars: EXPR reads x (element), s and t (scalars) --- */

typedef struct TN(scalar_fns) {
    void (*c)(T *restrict o, const T *restrict a, T s, T t, size_t n);
    void (*ip)(T *o, T s, T t, size_t n);
    void (*s)(T *o, ptrdiff_t so, const T *a, ptrdiff_t sa, T s, T t, size_t n);
} TN(scalar_fns);

SCALAR_FNS(ts_add, x + s)
SCALAR_FNS(ts_sub, x - s)
SCALAR_FNS(ts_mul, x * s)
SCALAR_FNS(ts_div, x / s)
SCALAR_FNS(st_sub, s - x)
SCALAR_FNS(st_div, s / x)
SCALAR_FNS(pw_gen, pow(x, s))
SCALAR_FNS(pw_sq, x * x)
/* clamp to [s, t]; the comparisons keep NaN */
SCALAR_FNS(cl_clamp, x < s ? s : (x > t ? t : x))

#define SCALAR_ENTRY(name) {TN(name##_c), TN(name##_ip), TN(name##_s)}
static const TN(scalar_fns) TN(scalar_tab)[SC_COUNT_] = {
    [SC_ADD] = SCALAR_ENTRY(ts_add),   [SC_SUB] = SCALAR_ENTRY(ts_sub),
    [SC_MUL] = SCALAR_ENTRY(ts_mul),   [SC_DIV] = SCALAR_ENTRY(ts_div),
    [SC_RSUB] = SCALAR_ENTRY(st_sub),  [SC_RDIV] = SCALAR_ENTRY(st_div),
    [SC_POW] = SCALAR_ENTRY(pw_gen),   [SC_SQUARE] = SCALAR_ENTRY(pw_sq),
    [SC_CLAMP] = SCALAR_ENTRY(cl_clamp),
};
#undef SCALAR_ENTRY

/* --- a + s * t1 OP t2: EXPR reads x (a), y (t1), z (t2), s --- */

typedef struct TN(ternary_fns) {
    void (*c)(T *restrict o, const T *restrict a, const T *restrict b, const T *restrict c, T s,
              size_t n);
    void (*ip)(T *restrict o, const T *restrict b, const T *restrict c, T s,
               size_t n);  /* o == a; t1, t2 distinct from o */
    void (*s)(T *o, ptrdiff_t so, const T *a, ptrdiff_t sa, const T *b, ptrdiff_t sb,
              const T *c, ptrdiff_t sc, T s, size_t n);
} TN(ternary_fns);

/* PyTorch's order of evaluation: input + value * tensor1 * tensor2 (or / tensor2) */
TERNARY_FNS(te_addcmul, x + s * y * z)
TERNARY_FNS(te_addcdiv, x + s * y / z)

static const TN(ternary_fns) TN(ternary_tab)[TE_COUNT_] = {
    [TE_ADDCMUL] = {TN(te_addcmul_c), TN(te_addcmul_ip), TN(te_addcmul_s)},
    [TE_ADDCDIV] = {TN(te_addcdiv_c), TN(te_addcdiv_ip), TN(te_addcdiv_s)},
};

/* --- where: o = c != 0 ? a : b; a number operand is read through stride 0 --- */

static void TN(where_s)(T *o, ptrdiff_t so, const T *c, ptrdiff_t sc, const T *a, ptrdiff_t sa,
                        const T *b, ptrdiff_t sb, size_t n)
{
    for (size_t i = 0; i < n; i++) AT(o, so, i) = AT(c, sc, i) != 0 ? AT(a, sa, i) : AT(b, sb, i);
}

/*
 * A binary row where one input is constant along the row (a number, or a
 * tensor broadcast along this dim: inner stride 0) and the others contiguous:
 * for + - * / the vectorized scalar loops run it with that one value.
 * rev != 0: the constant is the LEFT operand (v OP x). Returns 0 when no
 * scalar loop applies (the caller runs the strided loop).
 */
static int TN(binary_const_row)(int op, int rev, T *o, const T *x, T v, size_t n)
{
    if (op > MO_DIV) return 0;
    const TN(scalar_fns) *f = &TN(scalar_tab)[rev ? scalart_op[op] : tscalar_op[op]];
    if (o == x)
        f->ip(o, v, 0, n);
    else
        f->c(o, x, v, 0, n);
    return 1;
}

static void TN(binary_row)(const ew_op *e, const mo__iter *it, int contig)
{
    const TN(binary_fns) *f = &TN(binary_tab)[e->op];
    const size_t n = it->n;
    T *o = it->p[0];
    const T *a = it->p[1], *b = it->p[2];
    const ptrdiff_t so = it->inner[0], sa = it->inner[1], sb = it->inner[2];
    if (contig) {
        if (o == a && o == b)
            f->s(o, 1, a, 1, b, 1, n);
        else if (o == a)
            f->ipa(o, b, n);
        else if (o == b)
            f->ipb(o, a, n);
        else
            f->c(o, a, b, n);
        return;
    }
    /* a row of a broadcast: {1024, 1024} + {1024, 1} reads one b per row */
    if (so == 1 && sa == 1 && sb == 0 && TN(binary_const_row)(e->op, 0, o, a, *b, n)) return;
    if (so == 1 && sb == 1 && sa == 0 && TN(binary_const_row)(e->op, 1, o, b, *a, n)) return;
    f->s(o, so, a, sa, b, sb, n);
}

/* tensor OP number (EW_BINSC) or number OP tensor (EW_SCBIN), e->s the number. */
static void TN(binary_scalar_row)(const ew_op *e, const mo__iter *it, int contig)
{
    const T v = (T)e->s;
    const int rev = e->kind == EW_SCBIN;
    const size_t n = it->n;
    T *o = it->p[0];
    const T *x = it->p[1];
    const ptrdiff_t so = contig ? 1 : it->inner[0], sx = contig ? 1 : it->inner[1];
    if (contig && TN(binary_const_row)(e->op, rev, o, x, v, n)) return;
    const TN(binary_fns) *f = &TN(binary_tab)[e->op];
    if (rev)
        f->s(o, so, &v, 0, x, sx, n);
    else
        f->s(o, so, x, sx, &v, 0, n);
}

/* where: operands out, cond, then a and b unless they are numbers (e->op bits). */
static void TN(where_row)(const ew_op *e, const mo__iter *it, int contig)
{
    const T av = (T)e->s, bv = (T)e->t;
    const T *c = it->p[1];
    const ptrdiff_t sc = contig ? 1 : it->inner[1];
    int j = 2; /* the next tensor operand */
    const T *a = &av, *b = &bv;
    ptrdiff_t sa = 0, sb = 0;
    if (!(e->op & WH_A_NUMBER)) {
        a = it->p[j];
        sa = contig ? 1 : it->inner[j];
        j++;
    }
    if (!(e->op & WH_B_NUMBER)) {
        b = it->p[j];
        sb = contig ? 1 : it->inner[j];
    }
    TN(where_s)(it->p[0], contig ? 1 : it->inner[0], c, sc, a, sa, b, sb, it->n);
}

/* One row of the iteration: choose the loop once, then run it. */
static void TN(ew_row)(const ew_op *e, const mo__iter *it)
{
    const size_t n = it->n;
    T *o = it->p[0];
    const T *a = it->p[1], *b = it->p[2], *c = it->p[3];
    const ptrdiff_t so = it->inner[0], sa = it->inner[1], sb = it->inner[2], sc = it->inner[3];
    const T s = (T)e->s, t = (T)e->t; /* the scalars, rounded once for float */
    int contig = 1;
    for (int j = 0; j < it->nops; j++)
        if (it->inner[j] != 1) contig = 0;
    if (n == 1) contig = 1; /* a single element has no stride */

    switch (e->kind) {
    case EW_FILL:
        if (contig)
            TN(fill_c)(o, s, n);
        else
            TN(fill_s)(o, so, s, n);
        break;
    case EW_COPY:
        if (o == a) break; /* copy onto itself */
        if (contig)
            memcpy(o, a, n * sizeof *o);
        else
            TN(copy_s)(o, so, a, sa, n);
        break;
    case EW_UNARY: {
        const TN(unary_fns) *f = &TN(unary_tab)[e->op];
        if (!contig)
            f->s(o, so, a, sa, n);
        else if (o == a)
            f->ip(o, n);
        else
            f->c(o, a, n);
        break;
    }
    case EW_BINARY:
        TN(binary_row)(e, it, contig);
        break;
    case EW_BINSC:
    case EW_SCBIN:
        TN(binary_scalar_row)(e, it, contig);
        break;
    case EW_WHERE:
        TN(where_row)(e, it, contig);
        break;
    case EW_SCALAR: {
        const TN(scalar_fns) *f = &TN(scalar_tab)[e->op];
        if (!contig)
            f->s(o, so, a, sa, s, t, n);
        else if (o == a)
            f->ip(o, s, t, n);
        else
            f->c(o, a, s, t, n);
        break;
    }
    case EW_TERNARY: {
        const TN(ternary_fns) *f = &TN(ternary_tab)[e->op];
        if (contig && o != b && o != c) {
            if (o == a)
                f->ip(o, b, c, s, n);
            else
                f->c(o, a, b, c, s, n);
        } else {
            f->s(o, contig ? 1 : so, a, contig ? 1 : sa, b, contig ? 1 : sb, c,
                 contig ? 1 : sc, s, n);
        }
        break;
    }
    }
}

/*
 * `rows` rows of a 2-D iteration: *piece holds the first row (p, n, inner);
 * row r of operand j starts step[j] bytes after row r - 1. Loops over ew_row
 * directly, without the general iterator's per-row odometer (~100
 * instructions a row: 10% of a {1024, 1024} + {1024} add).
 */
static void TN(ew_rows)(const ew_op *e, mo__iter *piece, size_t rows, const ptrdiff_t *step)
{
    const int nops = piece->nops;
    /* tensor OP tensor on unit-stride rows, the output distinct from both inputs or
     * exactly the first ({1024, 1024} + {1024}, c:add_(b)): the loop chosen once. The
     * relation holds on every row (an input that overlaps the output with another layout
     * was sent through a temporary by ew_apply). */
    if (e->kind == EW_BINARY && piece->n > 1 && piece->inner[0] == 1 && piece->inner[1] == 1 &&
        piece->inner[2] == 1 && piece->p[0] != piece->p[2]) {
        const TN(binary_fns) *f = &TN(binary_tab)[e->op];
        char *o = piece->p[0];
        const char *a = piece->p[1], *b = piece->p[2];
        const size_t n = piece->n;
        if (o == a) {
            for (size_t r = 0; r < rows; r++, o += step[0], b += step[2])
                f->ipa((T *)o, (const T *)b, n);
        } else {
            for (size_t r = 0; r < rows; r++, o += step[0], a += step[1], b += step[2])
                f->c((T *)o, (const T *)a, (const T *)b, n);
        }
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        TN(ew_row)(e, piece);
        for (int j = 0; j < nops; j++) piece->p[j] = (char *)piece->p[j] + step[j];
    }
}

/* m[i][j] += bias[j] for the rows of m: {rows, cols} with strides rs, cs; bias stride bs. */
static void TN(add_rows)(T *m0, size_t rows, size_t cols, ptrdiff_t rs, ptrdiff_t cs,
                         const T *b, ptrdiff_t bs)
{
    const TN(binary_fns) *f = &TN(binary_tab)[MO_ADD];
    for (size_t i = 0; i < rows; i++) {
        T *row = m0 + (ptrdiff_t)i * rs;
        if (cs == 1 && bs == 1)
            f->ipa(row, b, cols);
        else
            f->s(row, cs, row, cs, b, bs, cols);
    }
}

#undef T
#undef TN
