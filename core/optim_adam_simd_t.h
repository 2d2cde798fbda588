/*
 * optim_adam_simd_t.h - Adam's vector loop written once over a vector ISA; optim_adam.c
 * includes it once per (dtype, ISA): float32 x AVX (8 lanes), float32 x AVX-512 (16),
 * float64 x AVX (4), float64 x AVX-512 (8) (docs/design.md "SIMD dispatch"). No include
 * guard on purpose; every macro below is #undef'd at the end.
 *
 * The operations are those of TN(adam_scalar) (optim_adam_t.h), in the same order, each
 * correctly rounded (add, mul, div, sqrt; min and max return their second operand when one is
 * NaN, as the scalar ternaries do), and none fused: the file is compiled -std=c11, where GCC
 * does not contract a*b + c into an FMA (-ffp-contract=off), and the intrinsics name every
 * operation. So every path gives the scalar loop's bits (tests/c/test_optim.c compares them).
 *
 * Define before including:
 *   SIMD_NAME   the function's name               SIMD_TARGET  "avx" or "avx512f"
 *   SIMD_T      the element type                  SIMD_K       the scalars struct
 *   SIMD_V      the vector type                   SIMD_W       lanes per vector
 *   SIMD_LOAD, SIMD_STORE, SIMD_SET1, SIMD_ADD, SIMD_MUL, SIMD_DIV, SIMD_SQRT, SIMD_MIN,
 *   SIMD_MAX    the intrinsics (unaligned loads and stores)
 * and optionally, for moments kept in another form (lean state: the fused loops):
 *   SIMD_S      the type of m, v, vmax            SIMD_LOAD_S(p, i), SIMD_STORE_S(p, i, x):
 *               (default: SIMD_T *)               the vector of elements [i, i + SIMD_W) of
 *                                                 p (default: SIMD_LOAD/STORE at p + i)
 *   SIMD_LOAD_M, SIMD_STORE_M  the same for m alone (int8: the signed map; default: _S)
 *   SIMD_LOAD_X, SIMD_STORE_X  the same for vmax alone (default: _S)
 *   SIMD_BEGIN, SIMD_EACH(i), SIMD_END  statements run before the loop, at the end of each
 *               iteration and after the loop (int8: absmax accumulators, the previous block's
 *               encoding); they may use the parameters and the switch locals (ams, ...)
 * bfloat16 moments: SIMD_S uint16_t *, loads widen and stores round. int8: SIMD_S is a struct,
 * by value, of a block's codes, scale and float32 output; loads decode, stores write the
 * output (optim_adam.c). By value, and the switches copied to locals below, so the vector
 * stores (which may alias anything) do not make the loop reload them.
 */
#if !defined(SIMD_NAME) || !defined(SIMD_W)
#error "define the SIMD_* macros before including optim_adam_simd_t.h"
#endif
#ifndef SIMD_S
#define SIMD_S SIMD_T *
#define SIMD_LOAD_S(p, i) SIMD_LOAD((p) + (i))
#define SIMD_STORE_S(p, i, x) SIMD_STORE((p) + (i), x)
#endif
#ifndef SIMD_LOAD_M
#define SIMD_LOAD_M SIMD_LOAD_S
#define SIMD_STORE_M SIMD_STORE_S
#endif
#ifndef SIMD_LOAD_X
#define SIMD_LOAD_X SIMD_LOAD_S
#define SIMD_STORE_X SIMD_STORE_S
#endif
#ifndef SIMD_BEGIN
#define SIMD_BEGIN
#endif
#ifndef SIMD_EACH
#define SIMD_EACH(i)
#endif
#ifndef SIMD_END
#define SIMD_END
#endif

/* Elements [0, end) with end = n rounded down to SIMD_W lanes; returns end. */
__attribute__((target(SIMD_TARGET))) static size_t SIMD_NAME(const SIMD_K *k, SIMD_T *w,
                                                             const SIMD_T *g, SIMD_S m,
                                                             SIMD_S v, SIMD_S vmax, size_t n)
{
    const int pre = k->pre, l2_pre = k->l2_pre, l2 = k->l2, ams = k->ams, dbc = k->dbc;
    const SIMD_V scale = SIMD_SET1(k->scale), clip = SIMD_SET1(k->clip);
    const SIMD_V nclip = SIMD_SET1(-k->clip), wd_l2 = SIMD_SET1(k->wd_l2);
    const SIMD_V decay = SIMD_SET1(k->decay), b1 = SIMD_SET1(k->b1);
    const SIMD_V omb1 = SIMD_SET1(k->omb1), b2 = SIMD_SET1(k->b2);
    const SIMD_V omb2 = SIMD_SET1(k->omb2), bc2s = SIMD_SET1(k->bc2s);
    const SIMD_V eps = SIMD_SET1(k->eps), neg_step = SIMD_SET1(k->neg_step);
    const SIMD_V wd_bc = SIMD_SET1(k->wd_bc);
    const size_t end = n - n % SIMD_W;
    SIMD_BEGIN
    for (size_t i = 0; i < end; i += SIMD_W) {
        SIMD_V gi = SIMD_LOAD(g + i), wi = SIMD_LOAD(w + i);
        if (pre) {
            gi = SIMD_MUL(gi, scale);
            if (l2_pre) gi = SIMD_ADD(gi, SIMD_MUL(wd_l2, wi));
            gi = SIMD_MIN(clip, gi);   /* clip < g ? clip : g, as the scalar loop */
            gi = SIMD_MAX(nclip, gi);  /* -clip > g ? -clip : g */
        }
        if (l2) gi = SIMD_ADD(gi, SIMD_MUL(wd_l2, wi));
        wi = SIMD_MUL(wi, decay);
        SIMD_V mi = SIMD_ADD(SIMD_MUL(SIMD_LOAD_M(m, i), b1), SIMD_MUL(omb1, gi));
        SIMD_V vi = SIMD_ADD(SIMD_MUL(SIMD_LOAD_S(v, i), b2), SIMD_MUL(SIMD_MUL(omb2, gi), gi));
        SIMD_STORE_M(m, i, mi);
        SIMD_STORE_S(v, i, vi);
        if (ams) {
            vi = SIMD_MAX(SIMD_LOAD_X(vmax, i), vi);
            SIMD_STORE_X(vmax, i, vi);
        }
        SIMD_V d = SIMD_ADD(SIMD_DIV(SIMD_SQRT(vi), bc2s), eps);
        if (dbc)
            wi = SIMD_ADD(wi, SIMD_MUL(neg_step, SIMD_ADD(SIMD_DIV(mi, d), SIMD_MUL(wd_bc, wi))));
        else
            wi = SIMD_ADD(wi, SIMD_DIV(SIMD_MUL(neg_step, mi), d));
        SIMD_STORE(w + i, wi);
        SIMD_EACH(i)
    }
    SIMD_END
    return end;
}

#undef SIMD_NAME
#undef SIMD_TARGET
#undef SIMD_T
#undef SIMD_K
#undef SIMD_V
#undef SIMD_W
#undef SIMD_LOAD
#undef SIMD_STORE
#undef SIMD_SET1
#undef SIMD_ADD
#undef SIMD_MUL
#undef SIMD_DIV
#undef SIMD_SQRT
#undef SIMD_MIN
#undef SIMD_MAX
#undef SIMD_S
#undef SIMD_LOAD_S
#undef SIMD_STORE_S
#undef SIMD_LOAD_M
#undef SIMD_STORE_M
#undef SIMD_LOAD_X
#undef SIMD_STORE_X
#undef SIMD_BEGIN
#undef SIMD_EACH
#undef SIMD_END
