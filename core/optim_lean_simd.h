/*
 * optim_lean_simd.h - the int8 map's decoder in vector registers, written once and used by
 * both the bulk decoder (optim_lean.c) and Adam's fused int8 loop (optim_adam.c), so the two
 * give the same bits by construction (docs/design.md "Lean optimizer state").
 *
 * The map (optim_lean.c's header comment): a code's magnitude c is a tiny float relative to
 * the block's absmax a, with MO__Q8_M = 3 mantissa bits and bias 15 (signed map, first
 * moments) or 31 (unsigned map, second moments). Decoding is integer work on the float's bits
 * and products that are exact or correctly rounded, as the scalar decoder does:
 *
 *   c >= 8:  bits (c + ((127 - bias) << 3)) << 20     c < 8:  (float)c * 2^(1 - bias - 3)
 *   value = that * a, negated (sign bit flipped, after the product) for a negative code.
 *
 * The encoder likewise, given inv = 1 / absmax (the caller handles NaN/inf blocks and a
 * subnormal absmax, whose reciprocal overflows): u = min(|x| * inv, 1) (unsigned map:
 * min(max(x * inv, 0), 1)), to nearest even on the float's bits (u >= 2^(1 - bias)) or by a
 * rounding conversion of u * 2^(bias + 2) below that; the sign applied to the integer code.
 * The scalar codec clamps the code to 1.0's; here u <= 1 already, and the largest u below 1
 * rounds up to exactly 1.0's code, so that clamp never acts and is left out.
 */
#ifndef MO_OPTIM_LEAN_SIMD_H
#define MO_OPTIM_LEAN_SIMD_H

#include "optim_internal.h"

#include <string.h>   /* memcpy */

/* The int8 maps' format (shared with the scalar codecs): mantissa bits and bias. */
#define MO__Q8_M 3
#define MO__Q8_BIAS(sign) ((sign) == MO_LEAN_SIGNED ? 15 : 31)

#ifdef MO__HAVE_AVX_DISPATCH
#include <immintrin.h>

/* The step between the map's subnormal codes: 2^(1 - bias - M), as float bits. */
#define MO__Q8_STEP_BITS(bias) ((127 - ((bias) - 1 + MO__Q8_M)) << 23)

/* 8 codes at c (8 bytes read) times the block's absmax va; sgn: the signed map (a constant
 * at every call, so the unused half folds away). */
__attribute__((target("avx2"))) static inline __m256 mo__q8_decode8(const uint8_t *c, __m256 va,
                                                                    int sgn)
{
    const int bias = sgn ? MO__Q8_BIAS(MO_LEAN_SIGNED) : MO__Q8_BIAS(MO_LEAN_UNSIGNED);
    const __m256i off = _mm256_set1_epi32((127 - bias) << MO__Q8_M);
    const __m256i small = _mm256_set1_epi32(1 << MO__Q8_M);
    const __m256 step = _mm256_castsi256_ps(_mm256_set1_epi32(MO__Q8_STEP_BITS(bias)));
    __m128i raw = _mm_loadl_epi64((const __m128i *)(const void *)c);
    __m256i q = sgn ? _mm256_cvtepi8_epi32(raw) : _mm256_cvtepu8_epi32(raw);
    __m256i m = sgn ? _mm256_abs_epi32(q) : q;
    __m256 normal = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(m, off), 23 - MO__Q8_M));
    __m256 tiny = _mm256_mul_ps(_mm256_cvtepi32_ps(m), step);
    __m256 v = _mm256_blendv_ps(normal, tiny, _mm256_castsi256_ps(_mm256_cmpgt_epi32(small, m)));
    v = _mm256_mul_ps(v, va);
    if (sgn)   /* the code's sign bit moved to the float's (negation is exact) */
        v = _mm256_xor_ps(v, _mm256_castsi256_ps(_mm256_and_si256(q, _mm256_set1_epi32((int)0x80000000u))));
    return v;
}

/* The same, 16 codes at c (16 bytes read), AVX-512F: a mask in place of the blend. */
__attribute__((target("avx512f"))) static inline __m512 mo__q8_decode16(const uint8_t *c, __m512 va,
                                                                        int sgn)
{
    const int bias = sgn ? MO__Q8_BIAS(MO_LEAN_SIGNED) : MO__Q8_BIAS(MO_LEAN_UNSIGNED);
    const __m512i off = _mm512_set1_epi32((127 - bias) << MO__Q8_M);
    const __m512i small = _mm512_set1_epi32(1 << MO__Q8_M);
    const __m512 step = _mm512_castsi512_ps(_mm512_set1_epi32(MO__Q8_STEP_BITS(bias)));
    __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)c);
    __m512i q = sgn ? _mm512_cvtepi8_epi32(raw) : _mm512_cvtepu8_epi32(raw);
    __m512i m = sgn ? _mm512_abs_epi32(q) : q;
    __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(m, off), 23 - MO__Q8_M));
    __mmask16 tiny = _mm512_cmpgt_epi32_mask(small, m);
    v = _mm512_mask_mul_ps(v, tiny, _mm512_cvtepi32_ps(m), step);
    v = _mm512_mul_ps(v, va);
    if (sgn)
        v = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v),
                                                 _mm512_and_si512(q, _mm512_set1_epi32((int)0x80000000u))));
    return v;
}

/* The encoder's rounding constant with the exponent offset folded in: code = (bits(u) +
 * 2^19 - 1 + lsb - ((127 - bias) << 23)) >> 20 equals ((bits(u) + 2^19 - 1 + lsb) >> 20) -
 * ((127 - bias) << 3) for every u >= 2^(1 - bias), the only u whose code comes from here (no
 * borrow: such bits exceed (127 - bias) << 23); smaller u take the subnormal codes. */
#define MO__Q8_RND_OFF(bias) \
    ((int)(uint32_t)((1u << (22 - MO__Q8_M)) - 1u - ((uint32_t)(127 - (bias)) << 23)))

/* 8 floats at x into 8 codes at c (8 bytes written), inv = 1 / the block's absmax. */
__attribute__((target("avx2"))) static inline void mo__q8_encode8(const float *x, uint8_t *c, __m256 vinv,
                                                                  int sgn)
{
    const int bias = sgn ? MO__Q8_BIAS(MO_LEAN_SIGNED) : MO__Q8_BIAS(MO_LEAN_UNSIGNED);
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    const __m256 thresh = _mm256_castsi256_ps(_mm256_set1_epi32((128 - bias) << 23));
    const __m256 scale = _mm256_castsi256_ps(_mm256_set1_epi32((127 + bias - 1 + MO__Q8_M) << 23));
    const __m256i rnd = _mm256_set1_epi32(MO__Q8_RND_OFF(bias)), lsb = _mm256_set1_epi32(1);
    const __m256i pick = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
    __m256 xi = _mm256_loadu_ps(x);
    __m256 u = sgn ? _mm256_mul_ps(_mm256_and_ps(xi, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))), vinv)
                   : _mm256_max_ps(_mm256_mul_ps(xi, vinv), zero);
    u = _mm256_min_ps(u, one);
    __m256i b = _mm256_castps_si256(u);
    b = _mm256_add_epi32(b, _mm256_add_epi32(rnd, _mm256_and_si256(_mm256_srli_epi32(b, 23 - MO__Q8_M), lsb)));
    __m256i normal = _mm256_srli_epi32(b, 23 - MO__Q8_M);
    __m256i tiny = _mm256_cvtps_epi32(_mm256_mul_ps(u, scale));
    __m256i q = _mm256_blendv_epi8(normal, tiny, _mm256_castps_si256(_mm256_cmp_ps(u, thresh, _CMP_LT_OQ)));
    __m256i p;
    if (sgn) {
        __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(xi, zero, _CMP_LT_OQ));
        q = _mm256_blendv_epi8(q, _mm256_sub_epi32(_mm256_setzero_si256(), q), neg);
        p = _mm256_packs_epi32(q, q);
        p = _mm256_packs_epi16(p, p);
    } else {
        p = _mm256_packus_epi32(q, q);
        p = _mm256_packus_epi16(p, p);
    }
    /* bytes 0-3 of each 128-bit lane hold the lane's four codes */
    p = _mm256_permutevar8x32_epi32(p, pick);
    _mm_storel_epi64((__m128i *)(void *)c, _mm256_castsi256_si128(p));
}

/* 16 floats at x into 16 codes at c (AVX-512F): masks in place of blends, one narrowing. */
__attribute__((target("avx512f"))) static inline void mo__q8_encode16(const float *x, uint8_t *c,
                                                                      __m512 vinv, int sgn)
{
    const int bias = sgn ? MO__Q8_BIAS(MO_LEAN_SIGNED) : MO__Q8_BIAS(MO_LEAN_UNSIGNED);
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    const __m512 thresh = _mm512_castsi512_ps(_mm512_set1_epi32((128 - bias) << 23));
    const __m512 scale = _mm512_castsi512_ps(_mm512_set1_epi32((127 + bias - 1 + MO__Q8_M) << 23));
    const __m512i rnd = _mm512_set1_epi32(MO__Q8_RND_OFF(bias)), one_i = _mm512_set1_epi32(1);
    const __m512i lsb = _mm512_set1_epi32(1 << (23 - MO__Q8_M));
    __m512 xi = _mm512_loadu_ps(x);
    __m512 u = sgn ? _mm512_mul_ps(_mm512_abs_ps(xi), vinv) : _mm512_max_ps(_mm512_mul_ps(xi, vinv), zero);
    u = _mm512_min_ps(u, one);
    __m512i b = _mm512_castps_si512(u);
    __mmask16 odd = _mm512_test_epi32_mask(b, lsb);   /* ties go to the even code */
    b = _mm512_add_epi32(b, rnd);
    b = _mm512_mask_add_epi32(b, odd, b, one_i);
    __m512i q = _mm512_srli_epi32(b, 23 - MO__Q8_M);
    __mmask16 tiny = _mm512_cmp_ps_mask(u, thresh, _CMP_LT_OQ);
    q = _mm512_mask_mov_epi32(q, tiny, _mm512_cvtps_epi32(_mm512_mul_ps(u, scale)));
    if (sgn) {
        __mmask16 neg = _mm512_cmp_ps_mask(xi, zero, _CMP_LT_OQ);
        q = _mm512_mask_sub_epi32(q, neg, _mm512_setzero_si512(), q);
    }
    /* codes are in [-120, 248]: the low byte of each is the code */
    _mm_storeu_si128((__m128i *)(void *)c, _mm512_cvtepi32_epi8(q));
}

/* A block's absmax as its new values are produced, from the bits of |x| as unsigned integers:
 * for non-negative floats their order is the floats' order, and NaN and inf have the largest
 * bits, so a lane-wise integer max finds both the absmax and whether the block holds NaN or
 * inf (the result's bits above FLT_MAX's). The max of a set is exact in any order, so this
 * equals the scalar loop's absmax. mx: the running max (start from zero); the _end forms
 * reduce the lanes, then mo__q8_absmax_result splits the bits. */
__attribute__((target("avx2"))) static inline __m256i mo__q8_absmax8(__m256 x, __m256i mx)
{
    return _mm256_max_epu32(_mm256_and_si256(_mm256_castps_si256(x), _mm256_set1_epi32(0x7fffffff)), mx);
}

__attribute__((target("avx512f"))) static inline __m512i mo__q8_absmax16(__m512 x, __m512i mx)
{
    return _mm512_max_epu32(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)), mx);
}

__attribute__((target("avx2"))) static inline uint32_t mo__q8_absmax_end8(__m256i mx)
{
    uint32_t lanes[8], m = 0;
    _mm256_storeu_si256((__m256i *)(void *)lanes, mx);
    for (int k = 0; k < 8; k++) m = lanes[k] > m ? lanes[k] : m;
    return m;
}

__attribute__((target("avx512f"))) static inline uint32_t mo__q8_absmax_end16(__m512i mx)
{
    return (uint32_t)_mm512_reduce_max_epu32(mx);
}
#endif /* MO__HAVE_AVX_DISPATCH */

/* The absmax bits into the absmax (*a) and the NaN/inf flag (*bad: then *a is meaningless). */
static inline void mo__q8_absmax_result(uint32_t bits, float *a, int *bad)
{
    *bad = bits > 0x7f7fffffu;
    memcpy(a, &bits, sizeof *a);
}


#endif /* MO_OPTIM_LEAN_SIMD_H */
