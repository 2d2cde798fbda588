/*
 * optim_lean.c - lean optimizer state: moment buffers kept in bfloat16 or in block-quantized
 * 8-bit codes (moonopt_optim.h "Lean optimizer state"; docs/design.md "Lean optimizer state"),
 * and the block driver the lean kernels of Adam, Lion and SGD share.
 *
 * The driver walks a parameter in blocks of MO_LEAN_BLOCK elements: it decodes each lean
 * buffer's block into a float32 scratch array on the stack ({MO_LEAN_BLOCK} per buffer, in
 * L1), runs the float32 kernel of the algorithm on that block (the very loop float32 state
 * runs, AVX included), and encodes the block back. So one pass reads and writes each byte of
 * state once, and a lean step is the float32 step applied to the decoded state. The blocks
 * are shared out over the thread pool in fixed chunks of whole blocks (mo__opt_parallel). A
 * caller may pass fused loops (mo__lean_fused; Adam's): one that reads and writes bfloat16
 * itself, and one that steps a whole int8 block from its codes, in registers, into scratch,
 * whose codes this driver then has written during the next block's loop (lean_q8_blocks).
 * The codecs have AVX2 and AVX-512 forms (optim_lean_simd.h), chosen once per call, with the
 * scalar codecs' bits.
 *
 * The int8 map (why not a linear one): a block of 256 second moments spans many orders of
 * magnitude, and a linear map sends everything below absmax/255 to 0, where Adam's
 * denominator collapses to eps and the update explodes. Dettmers et al.'s dynamic map keeps
 * relative precision over ~7 decades instead. This one does the same with a tiny
 * floating-point format relative to the block's absmax (signed 1-4-3, unsigned 0-5-3 bits:
 * 2^-17 resp. 2^-33 of absmax at the bottom, 3 mantissa bits everywhere above), and has
 * one property the tree map lacks: its codes are computed from the float's bits (a
 * rounding add and a shift, no search over 256 values) and decoded by the reverse shift.
 */
#include "optim_internal.h"
#include "optim_lean_simd.h"   /* the int8 decoder in registers (immintrin.h) */

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- bfloat16 ---- */

static uint32_t f32_bits(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

static float f32_of(uint32_t b)
{
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

uint16_t mo_bf16_from_float(float x)
{
    uint32_t b = f32_bits(x);
    /* NaN: keep the sign and the top of the payload, force it quiet (the rounding add could
       carry a NaN into inf) */
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x0040u);
    /* to nearest, ties to the even upper half; a carry into the exponent is the right answer,
       up to inf for |x| above the largest bfloat16 plus half its ulp */
    b += 0x7fffu + ((b >> 16) & 1u);
    return (uint16_t)(b >> 16);
}

/* mo_bf16_from_float_sr, inlined into the block encoder's loop. */
MO__INLINE uint16_t bf16_sr(float x, uint32_t r)
{
    uint32_t b = f32_bits(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x0040u);
    /* adds a uniform 16-bit fraction of the ulp: rounds up with probability equal to the
       dropped fraction (inf + r stays inf: the mantissa bits added are below the exponent) */
    b += r & 0xffffu;
    return (uint16_t)(b >> 16);
}

uint16_t mo_bf16_from_float_sr(float x, uint32_t r) { return bf16_sr(x, r); }

float mo_bf16_to_float(uint16_t h) { return f32_of((uint32_t)h << 16); }

/* ---- the 8-bit map ---- */

/* The format of each map: EB exponent bits, 3 mantissa bits, bias so that the largest
 * exponent's first code is exactly 1.0. */
#define Q8_M MO__Q8_M
#define Q8_BIAS(sign) MO__Q8_BIAS(sign)
#define Q8_MAX(sign) (Q8_BIAS(sign) << Q8_M)   /* the code of 1.0: 120 or 248 */

/* u in [0, 1] (not NaN) -> magnitude code (0 .. Q8_MAX), to nearest (ties to even). */
MO__INLINE unsigned q8_mag(float u, int bias)
{
    /* below the smallest normal 2^(1-bias): evenly spaced steps of 2^(1-bias-M) */
    if (u < f32_of((uint32_t)(128 - bias) << 23))
        return (unsigned)rintf(u * f32_of((uint32_t)(127 + bias - 1 + Q8_M) << 23));
    uint32_t b = f32_bits(u);
    b += (1u << (22 - Q8_M)) - 1u + ((b >> (23 - Q8_M)) & 1u);
    unsigned c = (unsigned)(b >> (23 - Q8_M)) - ((unsigned)(127 - bias) << Q8_M);
    unsigned top = (unsigned)bias << Q8_M;
    return c > top ? top : c;
}

MO__INLINE float q8_mag_value(unsigned c, int bias)
{
    if (c < (1u << Q8_M)) return (float)c * f32_of((uint32_t)(127 - (bias - 1 + Q8_M)) << 23);
    return f32_of((uint32_t)(c + ((unsigned)(127 - bias) << Q8_M)) << (23 - Q8_M));
}

uint8_t mo_q8_from_unit(float u, mo_lean_sign sign)
{
    int bias = Q8_BIAS(sign);
    if (isnan(u)) return 0;
    if (sign == MO_LEAN_SIGNED) {
        float a = fabsf(u);
        unsigned c = q8_mag(a > 1.0f ? 1.0f : a, bias);
        int q = u < 0.0f ? -(int)c : (int)c;
        return (uint8_t)(int8_t)q;
    }
    return (uint8_t)q8_mag(u < 0.0f ? 0.0f : (u > 1.0f ? 1.0f : u), bias);
}

float mo_q8_to_unit(uint8_t code, mo_lean_sign sign)
{
    int bias = Q8_BIAS(sign);
    if (sign == MO_LEAN_SIGNED) {
        int q = (int8_t)code;
        unsigned c = (unsigned)(q < 0 ? -q : q);
        if (c > (unsigned)Q8_MAX(sign)) return NAN;
        float v = q8_mag_value(c, bias);
        return q < 0 ? -v : v;
    }
    if (code > Q8_MAX(sign)) return NAN;
    return q8_mag_value(code, bias);
}

/* The encoders' multiplier for absmax a: 1 / a, 0 for a zero block (every code 0); inf for a
 * subnormal a (the caller then divides). */
static float q8_inverse(float a) { return a > 0.0f ? 1.0f / a : 0.0f; }

/* ---- buffers ---- */

mo_status mo_lean_init(mo_lean *s, mo_state_dtype dt, mo_lean_sign sign, size_t n)
{
    if (!s) return MO_ERR_ARG;
    memset(s, 0, sizeof *s);
    if ((dt != MO_STATE_BFLOAT16 && dt != MO_STATE_INT8) ||
        (sign != MO_LEAN_SIGNED && sign != MO_LEAN_UNSIGNED))
        return MO_ERR_ARG;
    size_t es = dt == MO_STATE_BFLOAT16 ? 2 : 1, bytes;
    MO_TRY(mo_size_mul(n, es, &bytes));
    size_t nb = dt == MO_STATE_INT8 ? n / MO_LEAN_BLOCK + (n % MO_LEAN_BLOCK != 0) : 0;
    void *codes = calloc(bytes ? bytes : 1, 1);
    float *absmax = nb ? calloc(nb, sizeof(float)) : NULL;
    if (!codes || (nb && !absmax)) {
        free(codes);
        free(absmax);
        return MO_ERR_NOMEM;
    }
    s->dtype = dt;
    s->sign = sign;
    s->n = n;
    s->nblocks = nb;
    s->codes = codes;
    s->absmax = absmax;
    return MO_OK;
}

void mo_lean_free(mo_lean *s)
{
    if (!s) return;
    free(s->codes);
    free(s->absmax);
    memset(s, 0, sizeof *s);
}

mo_status mo_lean_copy(mo_lean *dst, const mo_lean *src)
{
    if (!dst || !src || !src->codes) return MO_ERR_ARG;
    mo_lean t;
    MO_TRY(mo_lean_init(&t, src->dtype, src->sign, src->n));
    memcpy(t.codes, src->codes, src->n * (src->dtype == MO_STATE_BFLOAT16 ? 2 : 1));
    if (t.nblocks) memcpy(t.absmax, src->absmax, t.nblocks * sizeof(float));
    *dst = t;
    return MO_OK;
}

/* ---- one block ---- */

/* The stochastic rounding bits of element i: a hash of the stream seed, the index and the
 * value being rounded (so the stream is a function of the saved state alone). */
MO__INLINE uint32_t sr_bits(uint64_t seed, size_t i, float x)
{
    uint64_t h = seed ^ ((uint64_t)i * 0x9e3779b97f4a7c15u) ^ ((uint64_t)f32_bits(x) << 29);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53u;
    h ^= h >> 33;
    return (uint32_t)h;
}

#ifdef MO__HAVE_AVX_DISPATCH
/*
 * The codecs 8 elements at a time (AVX2), the same bits as the scalar loops below: integer
 * operations on the floats' bits, conversions that round to nearest even as rintf does, and
 * products by powers of two (exact). Each does [0, n rounded down to 8) and returns that.
 */
__attribute__((target("avx2"))) static size_t bf16_decode_avx2(const uint16_t *c, float *x, size_t n)
{
    const size_t end = n - n % 8;
    for (size_t i = 0; i < end; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(c + i));
        __m256i b = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(x + i, _mm256_castsi256_ps(b));
    }
    return end;
}

__attribute__((target("avx2"))) static size_t bf16_encode_avx2(const float *x, uint16_t *c, size_t n)
{
    const __m256i absmask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    const __m256i half = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
    const __m256i quiet = _mm256_set1_epi32(0x40);
    const size_t end = n - n % 8;
    for (size_t i = 0; i < end; i += 8) {
        __m256i b = _mm256_castps_si256(_mm256_loadu_ps(x + i));
        __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(b, absmask), inf);
        __m256i hi = _mm256_srli_epi32(b, 16);
        __m256i r = _mm256_add_epi32(b, _mm256_add_epi32(half, _mm256_and_si256(hi, one)));
        r = _mm256_blendv_epi8(_mm256_srli_epi32(r, 16), _mm256_or_si256(hi, quiet), nan);
        /* 8 x 32 -> 8 x 16 bits: packed per 128-bit lane, then the two lanes' halves joined */
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
        _mm_storeu_si128((__m128i *)(void *)(c + i), _mm256_castsi256_si128(p));
    }
    return end;
}

__attribute__((target("avx2"))) static size_t q8_decode_avx2(const uint8_t *c, float *x, size_t n,
                                                            float a, mo_lean_sign sign)
{
    const __m256 va = _mm256_set1_ps(a);
    const size_t end = n - n % 8;
    if (sign == MO_LEAN_SIGNED)
        for (size_t i = 0; i < end; i += 8) _mm256_storeu_ps(x + i, mo__q8_decode8(c + i, va, 1));
    else
        for (size_t i = 0; i < end; i += 8) _mm256_storeu_ps(x + i, mo__q8_decode8(c + i, va, 0));
    return end;
}

/* The block's largest |x| (*a) and whether some x is NaN or +-inf. */
__attribute__((target("avx2"))) static size_t q8_absmax_avx2(const float *x, size_t n, float *a, int *bad)
{
    __m256i mx = _mm256_setzero_si256();
    const size_t end = n - n % 8;
    for (size_t i = 0; i < end; i += 8) mx = mo__q8_absmax8(_mm256_loadu_ps(x + i), mx);
    mo__q8_absmax_result(mo__q8_absmax_end8(mx), a, bad);
    return end;
}

__attribute__((target("avx2"))) static size_t q8_encode_avx2(const float *x, uint8_t *c, size_t n,
                                                            float inv, mo_lean_sign sign)
{
    const __m256 vinv = _mm256_set1_ps(inv);
    const size_t end = n - n % 8;
    if (sign == MO_LEAN_SIGNED)
        for (size_t i = 0; i < end; i += 8) mo__q8_encode8(x + i, c + i, vinv, 1);
    else
        for (size_t i = 0; i < end; i += 8) mo__q8_encode8(x + i, c + i, vinv, 0);
    return end;
}

/* The same 16 at a time (AVX-512F). */
__attribute__((target("avx512f"))) static size_t q8_encode_avx512(const float *x, uint8_t *c, size_t n,
                                                                 float inv, mo_lean_sign sign)
{
    const __m512 vinv = _mm512_set1_ps(inv);
    const size_t end = n - n % 16;
    if (sign == MO_LEAN_SIGNED)
        for (size_t i = 0; i < end; i += 16) mo__q8_encode16(x + i, c + i, vinv, 1);
    else
        for (size_t i = 0; i < end; i += 16) mo__q8_encode16(x + i, c + i, vinv, 0);
    return end;
}

__attribute__((target("avx512f"))) static size_t q8_absmax_avx512(const float *x, size_t n, float *a, int *bad)
{
    __m512i mx = _mm512_setzero_si512();
    const size_t end = n - n % 16;
    for (size_t i = 0; i < end; i += 16) mx = mo__q8_absmax16(_mm512_loadu_ps(x + i), mx);
    mo__q8_absmax_result(mo__q8_absmax_end16(mx), a, bad);
    return end;
}
#endif

/* Elements [off, off + len) of s into x {len}; vec: the AVX2 codecs may run. */
static void decode_block(const mo_lean *s, size_t off, size_t len, float *x, int vec)
{
    size_t i = 0;
    (void)vec;
    if (s->dtype == MO_STATE_BFLOAT16) {
        const uint16_t *c = (const uint16_t *)s->codes + off;
#ifdef MO__HAVE_AVX_DISPATCH
        if (vec) i = bf16_decode_avx2(c, x, len);
#endif
        for (; i < len; i++) x[i] = mo_bf16_to_float(c[i]);
        return;
    }
    const uint8_t *c = (const uint8_t *)s->codes + off;
    const float a = s->absmax[off / MO_LEAN_BLOCK];
    const int bias = Q8_BIAS(s->sign);
#ifdef MO__HAVE_AVX_DISPATCH
    if (vec) i = q8_decode_avx2(c, x, len, a, s->sign);
#endif
    if (s->sign == MO_LEAN_SIGNED) {
        for (; i < len; i++) {
            int q = (int8_t)c[i];
            float v = q8_mag_value((unsigned)(q < 0 ? -q : q), bias) * a;
            x[i] = q < 0 ? -v : v;
        }
    } else {
        for (; i < len; i++) x[i] = q8_mag_value(c[i], bias) * a;
    }
}

/* The block's largest |x| and whether it holds NaN or +-inf. */
static float block_absmax(const float *x, size_t len, int *bad, int vec)
{
    float a = 0.0f;
    size_t i = 0;
    *bad = 0;
    (void)vec;
#ifdef MO__HAVE_AVX_DISPATCH
    if (vec >= 2) i = q8_absmax_avx512(x, len, &a, bad);
    else if (vec) i = q8_absmax_avx2(x, len, &a, bad);
#endif
    for (; i < len; i++) {
        float m = fabsf(x[i]);
        *bad |= !(m <= FLT_MAX);   /* NaN or inf */
        a = m > a ? m : a;
    }
    return a;
}

/* The int8 block at off (a multiple of MO_LEAN_BLOCK) from x {len}, whose absmax is a and
 * which holds a NaN or inf when bad: stores the scale and the codes. */
static void q8_store_block(mo_lean *s, size_t off, size_t len, const float *x, float a, int bad,
                           int vec)
{
    uint8_t *c = (uint8_t *)s->codes + off;
    size_t i = 0;
    if (bad) {
        s->absmax[off / MO_LEAN_BLOCK] = NAN;
        memset(c, 0, len);
        return;
    }
    s->absmax[off / MO_LEAN_BLOCK] = a;
    /* x / a through one reciprocal: |x| * inv may exceed 1 by an ulp; the codec clamps. For a
       subnormal absmax the reciprocal overflows: those blocks divide, element by element */
    const float inv = q8_inverse(a);
    const int divide = !(inv <= FLT_MAX);
    const int bias = Q8_BIAS(s->sign);
    (void)vec;
#ifdef MO__HAVE_AVX_DISPATCH
    if (vec >= 2 && !divide) i = q8_encode_avx512(x, c, len, inv, s->sign);
    else if (vec && !divide) i = q8_encode_avx2(x, c, len, inv, s->sign);
#endif
    if (s->sign == MO_LEAN_SIGNED) {
        for (; i < len; i++) {
            float u = divide ? fabsf(x[i]) / a : fabsf(x[i]) * inv;
            unsigned m = q8_mag(u > 1.0f ? 1.0f : u, bias);
            c[i] = (uint8_t)(int8_t)(x[i] < 0.0f ? -(int)m : (int)m);
        }
    } else {
        for (; i < len; i++) {
            float u = divide ? x[i] / a : x[i] * inv;   /* second moments are >= 0; a negative one stores 0 */
            c[i] = (uint8_t)q8_mag(u < 0.0f ? 0.0f : (u > 1.0f ? 1.0f : u), bias);
        }
    }
}

/* x {len} into elements [off, off + len) of s (off a multiple of MO_LEAN_BLOCK for int8). */
static void encode_block(mo_lean *s, size_t off, size_t len, const float *x, mo_state_rounding r,
                         uint64_t seed, int vec)
{
    size_t i = 0;
    if (s->dtype == MO_STATE_BFLOAT16) {
        uint16_t *c = (uint16_t *)s->codes + off;
        if (r == MO_ROUND_STOCHASTIC) {
            for (; i < len; i++) c[i] = bf16_sr(x[i], sr_bits(seed, off + i, x[i]));
            return;
        }
#ifdef MO__HAVE_AVX_DISPATCH
        if (vec) i = bf16_encode_avx2(x, c, len);
#endif
        for (; i < len; i++) c[i] = mo_bf16_from_float(x[i]);
        return;
    }
    int bad;
    const float a = block_absmax(x, len, &bad, vec);
    q8_store_block(s, off, len, x, a, bad, vec);
}

/* Which vector codecs may run on this CPU: 0 none, 1 AVX2, 2 AVX2 and the AVX-512 int8
 * encoder (asked once per call, not per block). */
static int codec_vec(void)
{
#ifdef MO__HAVE_AVX_DISPATCH
    if (!mo__cpu_has_avx2()) return 0;
    return mo__simd_level() >= MO__SIMD_AVX512 ? 2 : 1;
#else
    return 0;
#endif
}

mo_status mo__lean_encode_vec(mo_lean *s, const float *x, size_t n, mo_state_rounding r,
                             uint64_t seed, int vec)
{
    if (!s || !s->codes || (!x && n) || n != s->n) return MO_ERR_ARG;
    vec = vec ? codec_vec() : 0;
    for (size_t off = 0; off < n; off += MO_LEAN_BLOCK) {
        size_t len = n - off < MO_LEAN_BLOCK ? n - off : MO_LEAN_BLOCK;
        encode_block(s, off, len, x + off, r, seed, vec);
    }
    return MO_OK;
}

mo_status mo__lean_decode_vec(const mo_lean *s, float *x, size_t n, int vec)
{
    if (!s || !s->codes || (!x && n) || n != s->n) return MO_ERR_ARG;
    vec = vec ? codec_vec() : 0;
    for (size_t off = 0; off < n; off += MO_LEAN_BLOCK) {
        size_t len = n - off < MO_LEAN_BLOCK ? n - off : MO_LEAN_BLOCK;
        decode_block(s, off, len, x + off, vec);
    }
    return MO_OK;
}

mo_status mo_lean_encode(mo_lean *s, const float *x, size_t n, mo_state_rounding r, uint64_t seed)
{
    return mo__lean_encode_vec(s, x, n, r, seed, 1);
}

mo_status mo_lean_decode(const mo_lean *s, float *x, size_t n)
{
    return mo__lean_decode_vec(s, x, n, 1);
}

/* ---- the block driver ---- */

/* A distinct stream per (step, buffer slot). */
static uint64_t slot_seed(int64_t step, int slot)
{
    return (uint64_t)step * 0xd1b54a32d192ed03u + (uint64_t)(slot + 1) * 0x8cb92ba72f3d8dd7u;
}

/* What every chunk of a lean step shares. */
typedef struct lean_job {
    mo_lean *const *st;
    int nst;
    mo__lean_fn fn;
    mo__lean_fused_fn bf16;   /* NULL: not this call (nearest or stochastic, as r) */
    mo__lean_q8_fn q8;        /* NULL: not this call */
    const void *ctx;
    mo_state_rounding r;
    int64_t step;
    int vec;             /* codec_vec(), asked once */
} lean_job;

/* The whole int8 blocks of a chunk through the fused loop (mo__lean_q8_fn), software-
 * pipelined: block i's moments are stepped into one half of a double scratch
 * {2, MO__LEAN_MAX, MO_LEAN_BLOCK} (6 KiB, L1) with their absmax found on the way, and are
 * encoded during block i + 1's loop; the last block's after it. A block whose absmax has no
 * finite reciprocal (NaN/inf inside, or subnormal) or is bad is stored at once by the
 * general path. Returns the elements done (whole blocks). */
static size_t lean_q8_blocks(const lean_job *j, float *w, const float *g, size_t n, size_t off)
{
    float scratch[2][MO__LEAN_MAX][MO_LEAN_BLOCK];
    float amax[MO__LEAN_MAX] = {0.0f};
    int bad[MO__LEAN_MAX] = {0};
    mo__q8_io io[MO__LEAN_MAX];
    memset(io, 0, sizeof io);
    size_t b = 0;
    for (; n - b >= MO_LEAN_BLOCK; b += MO_LEAN_BLOCK) {
        const size_t blk = (off + b) / MO_LEAN_BLOCK;
        float (*cur)[MO_LEAN_BLOCK] = scratch[b / MO_LEAN_BLOCK % 2];
        for (int k = 0; k < j->nst; k++) {
            if (!j->st[k]) continue;
            io[k].c = (const uint8_t *)j->st[k]->codes + off + b;
            io[k].a = j->st[k]->absmax[blk];
            io[k].out = cur[k];
            io[k].amax = &amax[k];
            io[k].bad = &bad[k];
        }
        j->q8(j->ctx, w + b, g + b, io, MO_LEAN_BLOCK);
        for (int k = 0; k < j->nst; k++) {
            if (!j->st[k]) continue;
            const float inv = q8_inverse(amax[k]);
            io[k].px = NULL;
            if (bad[k] || !(inv <= FLT_MAX)) {
                q8_store_block(j->st[k], off + b, MO_LEAN_BLOCK, cur[k], amax[k], bad[k], j->vec);
                continue;
            }
            j->st[k]->absmax[blk] = amax[k];   /* its codes follow in the next loop */
            io[k].px = cur[k];
            io[k].pc = (uint8_t *)j->st[k]->codes + off + b;
            io[k].pinv = inv;
        }
    }
    for (int k = 0; k < j->nst; k++)
        if (j->st[k] && io[k].px)
            q8_store_block(j->st[k], off + b - MO_LEAN_BLOCK, MO_LEAN_BLOCK, io[k].px, amax[k], 0, j->vec);
    return b;
}

/* mo__opt_body: the blocks of one chunk of the pool (p: w, g at element off; off and the
 * chunk's length are whole blocks but for the last). The scratch is this thread's stack. */
static void lean_body(const void *ctx, void *const *p, size_t n, size_t off)
{
    const lean_job *j = ctx;
    float scratch[MO__LEAN_MAX][MO_LEAN_BLOCK];
    float *bufs[MO__LEAN_MAX] = {NULL};
    float *w = p[0];
    const float *g = p[1];
    size_t b = 0;
    if (j->bf16) {
        void *codes[MO__LEAN_MAX] = {NULL};
        uint64_t seed[MO__LEAN_MAX] = {0};
        for (int k = 0; k < j->nst; k++) {
            if (j->st[k]) codes[k] = (uint16_t *)j->st[k]->codes + off;
            seed[k] = slot_seed(j->step, k);
        }
        b = j->bf16(j->ctx, w, g, codes, n, off, seed);   /* bfloat16: the rest may start anywhere */
    } else if (j->q8) {
        b = lean_q8_blocks(j, w, g, n, off);
    }
    for (; b < n; b += MO_LEAN_BLOCK) {
        size_t len = n - b < MO_LEAN_BLOCK ? n - b : MO_LEAN_BLOCK;
        for (int k = 0; k < j->nst; k++) {
            bufs[k] = j->st[k] ? scratch[k] : NULL;
            if (j->st[k]) decode_block(j->st[k], off + b, len, scratch[k], j->vec);
        }
        j->fn(j->ctx, w + b, g + b, bufs, len);
        for (int k = 0; k < j->nst; k++)
            if (j->st[k]) encode_block(j->st[k], off + b, len, scratch[k], j->r, slot_seed(j->step, k), j->vec);
    }
}

mo_status mo__lean_run(mo_tensor *w, const mo_tensor *g, mo_lean *const *st, int nst,
                       mo__lean_fn fn, const void *ctx, mo_state_rounding r, int64_t step)
{
    return mo__lean_run_fused(w, g, st, nst, fn, NULL, ctx, r, step);
}

mo_status mo__lean_run_fused(mo_tensor *w, const mo_tensor *g, mo_lean *const *st, int nst,
                             mo__lean_fn fn, const mo__lean_fused *fused, const void *ctx,
                             mo_state_rounding r, int64_t step)
{
    if (!w || !g || nst < 1 || nst > MO__LEAN_MAX) return MO_ERR_ARG;
    const mo_tensor *ts[2] = {w, g};
    mo__opt_args a;
    MO_TRY(mo__opt_begin(&a, 2, ts));
    mo_status bad = a.dtype != MO_FLOAT32 ? MO_ERR_DTYPE : MO_OK;
    for (int j = 0; j < nst && bad == MO_OK; j++) {
        if (st[j] == NULL) continue;
        if (!st[j]->codes) bad = MO_ERR_ARG;
        else if (st[j]->n != a.n) bad = MO_ERR_SHAPE;
    }
    if (bad != MO_OK || fn == NULL) {
        mo__opt_finish(&a, 0);
        return bad;
    }
    /* every block is decoded, stepped and encoded by one chunk alone: chunks are whole blocks
       (mo__opt_parallel_arrays), and a block's absmax slot is its own */
    int all_bf16 = 1, all_q8 = 1;
    for (int k = 0; k < nst; k++) {
        if (st[k] && st[k]->dtype != MO_STATE_BFLOAT16) all_bf16 = 0;
        if (st[k] && st[k]->dtype != MO_STATE_INT8) all_q8 = 0;
    }
    lean_job j = {st, nst, fn, NULL, NULL, ctx, r, step, codec_vec()};
    if (fused && all_bf16) j.bf16 = r == MO_ROUND_STOCHASTIC ? fused->bf16_sr : fused->bf16;
    if (fused && all_q8) j.q8 = fused->q8;
    mo__opt_parallel(&a, lean_body, &j);
    mo__opt_finish(&a, 1);
    return MO_OK;
}
