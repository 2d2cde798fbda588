/*
 * optim_adam.c - the Adam family: Adam/AdamW with every switch and flavour
 * (docs/design.md "The Adam family"; the framework code each flavour follows is named in
 * docs/optimizers.md), Adamax, NAdam and RAdam.
 *
 * Adam is the hot kernel (benchmark: one AdamW step on 16M floats). Its loop
 * exists in several forms with the same operations in the same order: a scalar C loop,
 * and vector loops (optim_adam_simd_t.h: AVX and AVX-512, float32 and float64, the widest
 * the CPU has chosen at run time on x86-64, docs/design.md "SIMD dispatch"). None
 * uses fused multiply-add, so all round every operation the same way and a
 * result never depends on which loop, or which part of a loop, produced it.
 * The mode switches are loop-invariant branches: perfectly predicted, and
 * in the AVX loop taken once per 8 elements.
 *
 * float64 (docs/design.md "Two dtypes"): every element loop is written once in
 * optim_adam_t.h and instantiated for float and double; the steps pick the instance from
 * the tensors' dtype, once per call. The per-step scalars are computed in double and, for
 * float32, rounded to float once, so the float32 results are those of the float-only code;
 * float64 has vector loops too (4 and 8 lanes).
 */
#include "optim_internal.h"

#include <float.h>
#include <tgmath.h> /* sqrt, fabs, pow pick float or double by argument (optim_adam_t.h) */

#include "optim_lean_simd.h"   /* the int8 decoder in registers (immintrin.h) */

/* TN(adam_k) of optim_adam_t.h: the Adam scalars rounded to each dtype */
typedef mo_adam_scalars adam_k_f32;
typedef mo_adam_scalars64 adam_k_f64;

#define T float
#define TN(name) name##_f32
#include "optim_adam_t.h"
#define T double
#define TN(name) name##_f64
#include "optim_adam_t.h"

void mo_adam_defaults(mo_adam_config *c)
{
    c->lr = 1e-3;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->weight_decay = 0.0;
    c->eps_mode = MO_EPS_RAW;
    c->weight_decay_mode = MO_WD_L2;
    c->bias_correction = 1;
    c->amsgrad = 0;
    c->maximize = 0;
    c->rescale_grad = 1.0;
    c->clip_gradient = -1.0;
    c->lr_decay = 0.0;
    c->clip_weight_decay = 0;
    c->skip_nonfinite_rescale = 0;
}

void mo_adamw_defaults(mo_adam_config *c)
{
    mo_adam_defaults(c);
    c->weight_decay = 1e-2;
    c->weight_decay_mode = MO_WD_DECOUPLED;
}

mo_status mo_adam_check(const mo_adam_config *c)
{
    if (!c) return MO_ERR_ARG;
    /* a non-finite rescale_grad is an error, unless it is the signal to skip the step */
    if (!mo__adam_family_ok(c->lr, c->beta1, c->beta2, c->eps, c->weight_decay) ||
        (!mo__is_finite(c->rescale_grad) && !c->skip_nonfinite_rescale) ||
        isnan(c->clip_gradient) || !mo__nonneg(c->lr_decay))
        return MO_ERR_ARG;
    if (c->eps_mode != MO_EPS_RAW && c->eps_mode != MO_EPS_HAT) return MO_ERR_ARG;
    if (c->weight_decay_mode != MO_WD_L2 && c->weight_decay_mode != MO_WD_DECOUPLED &&
        c->weight_decay_mode != MO_WD_DECOUPLED_BC)
        return MO_ERR_ARG;
    return MO_OK;
}

/*
 * One Adam call's per-step constants, each computed once in double and
 * rounded to float. With them every flavour is the same loop:
 *
 *   g  = clamp(g * scale, -clip, clip)            if pre
 *        (g * scale + wd_l2 * w before the clamp   if l2_pre: MXNet <= 1.9.1 clips the sum)
 *   g += wd_l2 * w                                if l2
 *   w *= decay                                    (decay = 1 - lr*wd, or exactly 1)
 *   m  = m*b1 + omb1*g;  v = v*b2 + (omb2*g)*g
 *   vv = amsgrad ? (vmax = max(vmax, v)) : v
 *   d  = sqrt(vv)/bc2s + eps                      (bc2s = sqrt(bc2) for raw eps, else exactly 1)
 *   w  = w + (neg_step*m)/d                       PyTorch's addcdiv order
 *   w  = w + neg_step*(m/d + wd_bc*w)             if dbc (decoupled_bc)
 *
 * skip: the call changes nothing (MXNet AdamW's rescale_grad 0 / not finite).
 *
 * (mo_adam_scalars, moonopt_optim.h): pre, l2, l2_pre, dbc, ams switch the optional lines;
 * scale = rescale_grad negated for maximize, clip = the bound (+inf: off); decay = 1 - lr*wd
 * for decoupled, else exactly 1 (w*1 is exact); bc2s = sqrt(bc2) for raw eps, else exactly 1;
 * neg_step = -(lr/bc1) raw, -(lr*sqrt(bc2)/bc1) hat, -lr without bias correction.
 */
typedef mo_adam_scalars adam_k;

/* MXNet's AdamW receives rescale_grad as a float32 tensor and skips the update when that
   float is 0 or not finite: so a double that rounds to 0 or overflows to inf skips too. */
static int rescale_skips(double r)
{
    if (!mo__is_finite(r)) return 1;
    /* |r| >= FLT_MAX + half its ulp (2^103) rounds to inf; tested before converting, as an
       out-of-range conversion is undefined in C */
    if (fabs(r) >= (double)FLT_MAX + 0x1p103) return 1;
    return (float)r == 0.0f;
}

/* The scalars in double (what float64 steps with); adam_prepare rounds them for float32. */
static void adam_prepare64(const mo_adam_config *c, int64_t step, mo_adam_scalars64 *k)
{
    double lr = c->lr;
    if (c->lr_decay != 0.0) lr = lr / (1.0 + (double)(step - 1) * c->lr_decay);
    double wd = c->weight_decay;
    int clipping = c->clip_gradient > 0.0;
    k->skip = c->skip_nonfinite_rescale && rescale_skips(c->rescale_grad);
    double rescale = k->skip ? 0.0 : c->rescale_grad;  /* unused when skipping */
    k->pre = rescale != 1.0 || clipping || c->maximize;
    /* clamp(-x) == -clamp(x) for a symmetric clamp, so maximize folds into the scale */
    k->scale = c->maximize ? -rescale : rescale;
    k->clip = clipping ? c->clip_gradient : (double)INFINITY;
    int l2 = c->weight_decay_mode == MO_WD_L2 && wd != 0.0;
    /* clipping the sum differs from clipping the gradient only when something is clipped;
       without pre the two orders are the same operations */
    k->l2_pre = l2 && k->pre && c->clip_weight_decay;
    k->l2 = l2 && !k->l2_pre;
    k->wd_l2 = wd;
    /* Decoupled decay shrinks w by the raw lr*wd outside the adaptive update: it is not
       L2, whose wd*w would be divided by sqrt(v) along with the gradient (AdamW's point). */
    k->decay = c->weight_decay_mode == MO_WD_DECOUPLED ? 1.0 - lr * wd : 1.0;
    k->dbc = c->weight_decay_mode == MO_WD_DECOUPLED_BC;
    k->wd_bc = wd;
    k->ams = c->amsgrad != 0;
    k->b1 = c->beta1;
    k->omb1 = 1.0 - c->beta1;
    k->b2 = c->beta2;
    k->omb2 = 1.0 - c->beta2;
    k->eps = c->eps;
    if (!c->bias_correction) {
        k->bc2s = 1.0;
        k->neg_step = -lr;
    } else {
        double bc1 = 1.0 - pow(c->beta1, (double)step);
        double bc2 = 1.0 - pow(c->beta2, (double)step);
        if (c->eps_mode == MO_EPS_RAW) {
            k->bc2s = sqrt(bc2);
            k->neg_step = -(lr / bc1);
        } else {
            k->bc2s = 1.0;
            k->neg_step = -(lr * sqrt(bc2) / bc1);
        }
    }
}

/* Both sets: each float field is its double rounded once (exactly the float32 code's
   (float)(expression in double)); exact values (1, +inf) stay exact. */
static void adam_prepare(const mo_adam_config *c, int64_t step, adam_k *k)
{
    const mo_adam_scalars64 *d = &k->f64;
    adam_prepare64(c, step, &k->f64);
    k->pre = d->pre;
    k->l2 = d->l2;
    k->l2_pre = d->l2_pre;
    k->dbc = d->dbc;
    k->ams = d->ams;
    k->skip = d->skip;
    k->scale = (float)d->scale;
    k->clip = (float)d->clip;
    k->wd_l2 = (float)d->wd_l2;
    k->decay = (float)d->decay;
    k->b1 = (float)d->b1;
    k->omb1 = (float)d->omb1;
    k->b2 = (float)d->b2;
    k->omb2 = (float)d->omb2;
    k->bc2s = (float)d->bc2s;
    k->eps = (float)d->eps;
    k->neg_step = (float)d->neg_step;
    k->wd_bc = (float)d->wd_bc;
}

#ifdef MO__HAVE_AVX_DISPATCH
/* The same operations on vectors (optim_adam_simd_t.h): float32 in 8 and 16 lanes, float64 in
 * 4 and 8; each returns how many elements it did (a multiple of its lanes). */
#define SIMD_T float
#define SIMD_K adam_k
#define SIMD_TARGET "avx"
#define SIMD_NAME adam_avx_f32
#define SIMD_V __m256
#define SIMD_W 8
#define SIMD_LOAD _mm256_loadu_ps
#define SIMD_STORE _mm256_storeu_ps
#define SIMD_SET1 _mm256_set1_ps
#define SIMD_ADD _mm256_add_ps
#define SIMD_MUL _mm256_mul_ps
#define SIMD_DIV _mm256_div_ps
#define SIMD_SQRT _mm256_sqrt_ps
#define SIMD_MIN _mm256_min_ps
#define SIMD_MAX _mm256_max_ps
#include "optim_adam_simd_t.h"

#define SIMD_T float
#define SIMD_K adam_k
#define SIMD_TARGET "avx512f"
#define SIMD_NAME adam_avx512_f32
#define SIMD_V __m512
#define SIMD_W 16
#define SIMD_LOAD _mm512_loadu_ps
#define SIMD_STORE _mm512_storeu_ps
#define SIMD_SET1 _mm512_set1_ps
#define SIMD_ADD _mm512_add_ps
#define SIMD_MUL _mm512_mul_ps
#define SIMD_DIV _mm512_div_ps
#define SIMD_SQRT _mm512_sqrt_ps
#define SIMD_MIN _mm512_min_ps
#define SIMD_MAX _mm512_max_ps
#include "optim_adam_simd_t.h"

/* bfloat16 moments (lean state), 16 lanes: the loads widen the codes (exact), the stores round
 * to nearest even as mo_bf16_from_float (NaN kept quiet). */
__attribute__((target("avx512f"))) static inline __m512 bf16_load16(const uint16_t *p)
{
    __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(b, 16));
}

__attribute__((target("avx512f"))) static inline void bf16_store16(uint16_t *p, __m512 x)
{
    __m512i b = _mm512_castps_si512(x);
    __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(b, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    __m512i hi = _mm512_srli_epi32(b, 16);
    __m512i r = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                                     _mm512_and_si512(hi, _mm512_set1_epi32(1))));
    r = _mm512_mask_blend_epi32(nan, _mm512_srli_epi32(r, 16), _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
    _mm256_storeu_si256((__m256i *)(void *)p, _mm512_cvtepi32_epi16(r));
}

#define SIMD_T float
#define SIMD_K adam_k
#define SIMD_TARGET "avx512f"
#define SIMD_NAME adam_avx512_bf16
#define SIMD_V __m512
#define SIMD_W 16
#define SIMD_LOAD _mm512_loadu_ps
#define SIMD_STORE _mm512_storeu_ps
#define SIMD_SET1 _mm512_set1_ps
#define SIMD_ADD _mm512_add_ps
#define SIMD_MUL _mm512_mul_ps
#define SIMD_DIV _mm512_div_ps
#define SIMD_SQRT _mm512_sqrt_ps
#define SIMD_MIN _mm512_min_ps
#define SIMD_MAX _mm512_max_ps
#define SIMD_S uint16_t *
#define SIMD_LOAD_S(p, i) bf16_load16((p) + (i))
#define SIMD_STORE_S(p, i, x) bf16_store16((p) + (i), x)
#include "optim_adam_simd_t.h"

/* Stochastic rounding to bfloat16 (docs/design.md "Lean optimizer state"), 16 lanes: the bits
 * added are optim_lean.c's sr_bits(seed, i, x) for the element's index i in its buffer, as
 * two halves of 8 64-bit lanes (AVX-512DQ's 64-bit products); each 64-bit operation wraps as
 * the scalar uint64_t one does, so the bits are the scalar codec's. */
typedef struct bf16_sr_io {
    uint16_t *c;     /* the chunk's codes */
    uint64_t seed;   /* the buffer's stream this step */
    size_t off;      /* the index in the buffer of c[0] */
} bf16_sr_io;

__attribute__((target("avx512f,avx512dq"))) static inline __m512i sr_hash8(__m512i seed, __m512i idx,
                                                                           __m512i xbits)
{
    __m512i h = _mm512_mullo_epi64(idx, _mm512_set1_epi64((long long)0x9e3779b97f4a7c15u));
    h = _mm512_xor_si512(seed, _mm512_xor_si512(h, _mm512_slli_epi64(xbits, 29)));
    h = _mm512_xor_si512(h, _mm512_srli_epi64(h, 33));
    h = _mm512_mullo_epi64(h, _mm512_set1_epi64((long long)0xff51afd7ed558ccdu));
    h = _mm512_xor_si512(h, _mm512_srli_epi64(h, 33));
    h = _mm512_mullo_epi64(h, _mm512_set1_epi64((long long)0xc4ceb9fe1a85ec53u));
    return _mm512_xor_si512(h, _mm512_srli_epi64(h, 33));
}

/* x into p[0..16) rounded stochastically (mo_bf16_from_float_sr); i0: the index of p[0]. */
__attribute__((target("avx512f,avx512dq"))) static inline void bf16_store16_sr(uint16_t *p, __m512 x,
                                                                               size_t i0, uint64_t seed)
{
    __m512i b = _mm512_castps_si512(x);
    const __m512i s = _mm512_set1_epi64((long long)seed), base = _mm512_set1_epi64((long long)i0);
    __m512i ilo = _mm512_add_epi64(base, _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
    __m512i ihi = _mm512_add_epi64(base, _mm512_setr_epi64(8, 9, 10, 11, 12, 13, 14, 15));
    __m512i xlo = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(b));
    __m512i xhi = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(b, 1));
    __m256i rlo = _mm512_cvtepi64_epi32(sr_hash8(s, ilo, xlo));   /* the low 32 bits */
    __m256i rhi = _mm512_cvtepi64_epi32(sr_hash8(s, ihi, xhi));
    __m512i r = _mm512_inserti64x4(_mm512_castsi256_si512(rlo), rhi, 1);
    r = _mm512_and_si512(r, _mm512_set1_epi32(0xffff));
    __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(b, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    __m512i hi = _mm512_srli_epi32(b, 16);
    r = _mm512_srli_epi32(_mm512_add_epi32(b, r), 16);
    r = _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
    _mm256_storeu_si256((__m256i *)(void *)p, _mm512_cvtepi32_epi16(r));
}

#define SIMD_T float
#define SIMD_K adam_k
#define SIMD_TARGET "avx512f,avx512dq"
#define SIMD_NAME adam_avx512_bf16_sr
#define SIMD_V __m512
#define SIMD_W 16
#define SIMD_LOAD _mm512_loadu_ps
#define SIMD_STORE _mm512_storeu_ps
#define SIMD_SET1 _mm512_set1_ps
#define SIMD_ADD _mm512_add_ps
#define SIMD_MUL _mm512_mul_ps
#define SIMD_DIV _mm512_div_ps
#define SIMD_SQRT _mm512_sqrt_ps
#define SIMD_MIN _mm512_min_ps
#define SIMD_MAX _mm512_max_ps
#define SIMD_S bf16_sr_io
#define SIMD_LOAD_S(p, i) bf16_load16((p).c + (i))
#define SIMD_STORE_S(p, i, x) bf16_store16_sr((p).c + (i), x, (p).off + (i), (p).seed)
#include "optim_adam_simd_t.h"

/* int8 moments (lean state), one block at a time (mo__lean_q8_fn, optim_internal.h): the codes
 * decoded in registers by optim_lean_simd.h's decoder (the bulk decoder's own code), the
 * stepped moments stored to the driver's scratch with their absmax kept on the way, and the
 * previous block's moments encoded by the bulk encoder's code in the same iterations (its
 * integer work fills the cycles the divisions leave idle). First moments use the signed map,
 * second moments (v, vmax) the unsigned one. mo__q8_io is passed by value: its fields stay
 * in registers across the vector stores. */
__attribute__((target("avx512f"))) static inline void q8_keep16(float *out, __m512 x, __m512i *mx)
{
    _mm512_storeu_ps(out, x);
    *mx = mo__q8_absmax16(x, *mx);
}

__attribute__((target("avx2"))) static inline void q8_keep8(float *out, __m256 x, __m256i *mx)
{
    _mm256_storeu_ps(out, x);
    *mx = mo__q8_absmax8(x, *mx);
}

/* A buffer's absmax bits into its io's outputs. */
static inline void q8_result(const mo__q8_io *p, uint32_t bits)
{
    mo__q8_absmax_result(bits, p->amax, p->bad);
}

#define SIMD_T float
#define SIMD_K adam_k
#define SIMD_TARGET "avx512f"
#define SIMD_NAME adam_avx512_q8
#define SIMD_V __m512
#define SIMD_W 16
#define SIMD_LOAD _mm512_loadu_ps
#define SIMD_STORE _mm512_storeu_ps
#define SIMD_SET1 _mm512_set1_ps
#define SIMD_ADD _mm512_add_ps
#define SIMD_MUL _mm512_mul_ps
#define SIMD_DIV _mm512_div_ps
#define SIMD_SQRT _mm512_sqrt_ps
#define SIMD_MIN _mm512_min_ps
#define SIMD_MAX _mm512_max_ps
#define SIMD_S mo__q8_io
#define SIMD_BEGIN                                                                     \
    const __m512 q8am = _mm512_set1_ps(m.a), q8av = _mm512_set1_ps(v.a);               \
    const __m512 q8ax = _mm512_set1_ps(vmax.a), q8pm = _mm512_set1_ps(m.pinv);         \
    const __m512 q8pv = _mm512_set1_ps(v.pinv), q8px = _mm512_set1_ps(vmax.pinv);      \
    __m512i q8mm = _mm512_setzero_si512(), q8mv = q8mm, q8mx = q8mm;
#define SIMD_LOAD_M(p, i) mo__q8_decode16((p).c + (i), q8am, 1)
#define SIMD_LOAD_S(p, i) mo__q8_decode16((p).c + (i), q8av, 0)
#define SIMD_LOAD_X(p, i) mo__q8_decode16((p).c + (i), q8ax, 0)
#define SIMD_STORE_M(p, i, x) q8_keep16((p).out + (i), x, &q8mm)
#define SIMD_STORE_S(p, i, x) q8_keep16((p).out + (i), x, &q8mv)
#define SIMD_STORE_X(p, i, x) q8_keep16((p).out + (i), x, &q8mx)
#define SIMD_EACH(i)                                                                   \
    if (m.px) mo__q8_encode16(m.px + (i), m.pc + (i), q8pm, 1);                        \
    if (v.px) mo__q8_encode16(v.px + (i), v.pc + (i), q8pv, 0);                        \
    if (ams && vmax.px) mo__q8_encode16(vmax.px + (i), vmax.pc + (i), q8px, 0);
#define SIMD_END                                                                       \
    q8_result(&m, mo__q8_absmax_end16(q8mm));                                          \
    q8_result(&v, mo__q8_absmax_end16(q8mv));                                          \
    if (ams) q8_result(&vmax, mo__q8_absmax_end16(q8mx));
#include "optim_adam_simd_t.h"

/* The same in 8 lanes; AVX2 for the codecs' integer work (the arithmetic is AVX's). */
#define SIMD_T float
#define SIMD_K adam_k
#define SIMD_TARGET "avx2"
#define SIMD_NAME adam_avx2_q8
#define SIMD_V __m256
#define SIMD_W 8
#define SIMD_LOAD _mm256_loadu_ps
#define SIMD_STORE _mm256_storeu_ps
#define SIMD_SET1 _mm256_set1_ps
#define SIMD_ADD _mm256_add_ps
#define SIMD_MUL _mm256_mul_ps
#define SIMD_DIV _mm256_div_ps
#define SIMD_SQRT _mm256_sqrt_ps
#define SIMD_MIN _mm256_min_ps
#define SIMD_MAX _mm256_max_ps
#define SIMD_S mo__q8_io
#define SIMD_BEGIN                                                                     \
    const __m256 q8am = _mm256_set1_ps(m.a), q8av = _mm256_set1_ps(v.a);               \
    const __m256 q8ax = _mm256_set1_ps(vmax.a), q8pm = _mm256_set1_ps(m.pinv);         \
    const __m256 q8pv = _mm256_set1_ps(v.pinv), q8px = _mm256_set1_ps(vmax.pinv);      \
    __m256i q8mm = _mm256_setzero_si256(), q8mv = q8mm, q8mx = q8mm;
#define SIMD_LOAD_M(p, i) mo__q8_decode8((p).c + (i), q8am, 1)
#define SIMD_LOAD_S(p, i) mo__q8_decode8((p).c + (i), q8av, 0)
#define SIMD_LOAD_X(p, i) mo__q8_decode8((p).c + (i), q8ax, 0)
#define SIMD_STORE_M(p, i, x) q8_keep8((p).out + (i), x, &q8mm)
#define SIMD_STORE_S(p, i, x) q8_keep8((p).out + (i), x, &q8mv)
#define SIMD_STORE_X(p, i, x) q8_keep8((p).out + (i), x, &q8mx)
#define SIMD_EACH(i)                                                                   \
    if (m.px) mo__q8_encode8(m.px + (i), m.pc + (i), q8pm, 1);                         \
    if (v.px) mo__q8_encode8(v.px + (i), v.pc + (i), q8pv, 0);                         \
    if (ams && vmax.px) mo__q8_encode8(vmax.px + (i), vmax.pc + (i), q8px, 0);
#define SIMD_END                                                                       \
    q8_result(&m, mo__q8_absmax_end8(q8mm));                                           \
    q8_result(&v, mo__q8_absmax_end8(q8mv));                                           \
    if (ams) q8_result(&vmax, mo__q8_absmax_end8(q8mx));
#include "optim_adam_simd_t.h"

#define SIMD_T double
#define SIMD_K mo_adam_scalars64
#define SIMD_TARGET "avx"
#define SIMD_NAME adam_avx_f64
#define SIMD_V __m256d
#define SIMD_W 4
#define SIMD_LOAD _mm256_loadu_pd
#define SIMD_STORE _mm256_storeu_pd
#define SIMD_SET1 _mm256_set1_pd
#define SIMD_ADD _mm256_add_pd
#define SIMD_MUL _mm256_mul_pd
#define SIMD_DIV _mm256_div_pd
#define SIMD_SQRT _mm256_sqrt_pd
#define SIMD_MIN _mm256_min_pd
#define SIMD_MAX _mm256_max_pd
#include "optim_adam_simd_t.h"

#define SIMD_T double
#define SIMD_K mo_adam_scalars64
#define SIMD_TARGET "avx512f"
#define SIMD_NAME adam_avx512_f64
#define SIMD_V __m512d
#define SIMD_W 8
#define SIMD_LOAD _mm512_loadu_pd
#define SIMD_STORE _mm512_storeu_pd
#define SIMD_SET1 _mm512_set1_pd
#define SIMD_ADD _mm512_add_pd
#define SIMD_MUL _mm512_mul_pd
#define SIMD_DIV _mm512_div_pd
#define SIMD_SQRT _mm512_sqrt_pd
#define SIMD_MIN _mm512_min_pd
#define SIMD_MAX _mm512_max_pd
#include "optim_adam_simd_t.h"
#endif

/* The float32 loop: the widest vector loop the CPU has (once per call), then narrower ones
 * and the scalar loop for the tail; every path rounds alike, so the split changes no bit. */
void mo__adam_run_level(const adam_k *k, float *w, const float *g, float *m, float *v,
                        float *vmax, size_t n, int level)
{
    size_t done = 0;
#ifdef MO__HAVE_AVX_DISPATCH
    if (n < 8) level = MO__SIMD_SCALAR;
    if (level >= MO__SIMD_AVX512) done = adam_avx512_f32(k, w, g, m, v, vmax, n);
    if (level >= MO__SIMD_AVX && n - done >= 8)
        done += adam_avx_f32(k, w + done, g + done, m + done, v + done, vmax ? vmax + done : NULL,
                             n - done);
#else
    (void)level;
#endif
    adam_scalar_f32(k, w, g, m, v, vmax, done, n);
}

/* The same for float64. */
void mo__adam_run64_level(const mo_adam_scalars64 *k, double *w, const double *g, double *m,
                          double *v, double *vmax, size_t n, int level)
{
    size_t done = 0;
#ifdef MO__HAVE_AVX_DISPATCH
    if (n < 4) level = MO__SIMD_SCALAR;
    if (level >= MO__SIMD_AVX512) done = adam_avx512_f64(k, w, g, m, v, vmax, n);
    if (level >= MO__SIMD_AVX && n - done >= 4)
        done += adam_avx_f64(k, w + done, g + done, m + done, v + done, vmax ? vmax + done : NULL,
                             n - done);
#else
    (void)level;
#endif
    adam_scalar_f64(k, w, g, m, v, vmax, done, n);
}

static void adam_run(const adam_k *k, float *w, const float *g, float *m, float *v, float *vmax,
                     size_t n)
{
    mo__adam_run_level(k, w, g, m, v, vmax, n, mo__simd_level());
}

static void adam_run64(const mo_adam_scalars64 *k, double *w, const double *g, double *m,
                       double *v, double *vmax, size_t n)
{
    mo__adam_run64_level(k, w, g, m, v, vmax, n, mo__simd_level());
}

/* mo__opt_body: one chunk of the pool (p: w, g, m, v, vmax). */
static void adam_body32(const void *ctx, void *const *p, size_t n, size_t off)
{
    (void)off;
    adam_run(ctx, p[0], p[1], p[2], p[3], p[4], n);
}

static void adam_body64(const void *ctx, void *const *p, size_t n, size_t off)
{
    (void)off;
    adam_run64(ctx, p[0], p[1], p[2], p[3], p[4], n);
}

/* mo__lean_fn: one block of decoded state (st: m, v, vmax or NULL). */
static void adam_lean_block(const void *ctx, float *w, const float *g, float *const *st, size_t n)
{
    adam_run(ctx, w, g, st[0], st[1], st[2], n);
}

#ifdef MO__HAVE_AVX_DISPATCH
/* mo__lean_fused_fn: bfloat16 moments read and written by the AVX-512 loop itself, rounded to
 * nearest (off and seed unused) or stochastically. */
static size_t adam_lean_bf16_avx512(const void *ctx, float *w, const float *g, void *const *codes,
                                    size_t n, size_t off, const uint64_t *seed)
{
    (void)off;
    (void)seed;
    return adam_avx512_bf16(ctx, w, g, codes[0], codes[1], codes[2], n);
}

/* The same rounding stochastically (codes[2] NULL without amsgrad: never read). */
static size_t adam_lean_bf16_sr_avx512(const void *ctx, float *w, const float *g, void *const *codes,
                                       size_t n, size_t off, const uint64_t *seed)
{
    bf16_sr_io io[3];
    for (int k = 0; k < 3; k++) io[k] = (bf16_sr_io){codes[k], seed[k], off};
    return adam_avx512_bf16_sr(ctx, w, g, io[0], io[1], io[2], n);
}

/* mo__lean_q8_fn: one int8 block (io[2] all zero without amsgrad: the loop never reads it). */
#define ADAM_LEAN_Q8(name, loop)                                                              \
    static void name(const void *ctx, float *w, const float *g, const mo__q8_io *io,         \
                     size_t len)                                                              \
    {                                                                                         \
        loop(ctx, w, g, io[0], io[1], io[2], len);                                            \
    }
ADAM_LEAN_Q8(adam_lean_q8_avx512, adam_avx512_q8)
ADAM_LEAN_Q8(adam_lean_q8_avx2, adam_avx2_q8)
#endif

mo_status mo__adam_step_lean_level(mo_tensor *w, const mo_tensor *g, mo_lean *m, mo_lean *v,
                                   mo_lean *vmax, const mo_adam_scalars *k, mo_state_rounding r,
                                   int64_t step, int level)
{
    if (!k || !m || !v || (k->ams && !vmax)) return MO_ERR_ARG;
    mo_lean *st[3] = {m, v, k->ams ? vmax : NULL};
    mo__lean_fused fused = {NULL, NULL, NULL};
#ifdef MO__HAVE_AVX_DISPATCH
    if (level > mo__simd_level()) level = mo__simd_level();
    /* the int8 loop decodes m with the signed map, v and vmax with the unsigned one */
    int maps = m->sign == MO_LEAN_SIGNED && v->sign == MO_LEAN_UNSIGNED &&
               (!k->ams || vmax->sign == MO_LEAN_UNSIGNED);
    if (level >= MO__SIMD_AVX512) {
        fused.bf16 = adam_lean_bf16_avx512;
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512dq")) fused.bf16_sr = adam_lean_bf16_sr_avx512;
        if (maps) fused.q8 = adam_lean_q8_avx512;
    } else if (level >= MO__SIMD_AVX && maps && mo__cpu_has_avx2()) {
        fused.q8 = adam_lean_q8_avx2;
    }
#else
    (void)level;
#endif
    /* a skipped step (MXNet AdamW's signal) checks its arguments and changes nothing */
    return mo__lean_run_fused(w, g, st, 3, k->skip ? NULL : adam_lean_block, &fused, k, r, step);
}

mo_status mo_adam_step_lean(mo_tensor *w, const mo_tensor *g, mo_lean *m, mo_lean *v,
                            mo_lean *vmax, const mo_adam_scalars *k, mo_state_rounding r,
                            int64_t step)
{
    return mo__adam_step_lean_level(w, g, m, v, vmax, k, r, step, mo__simd_level());
}

mo_status mo_adam_prepare(const mo_adam_config *c, int64_t step, mo_adam_scalars *k)
{
    if (!c || !k || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_adam_check(c));
    adam_prepare(c, step, k);
    return MO_OK;
}

mo_status mo_adam_update_prepared(float *w, const float *g, float *m, float *v, float *vmax,
                                  size_t n, const mo_adam_scalars *k)
{
    if (!w || !g || !m || !v || !k || (k->ams && !vmax)) return MO_ERR_ARG;
    if (k->skip) return MO_OK;
    void *p[5] = {w, MO__UNCONST(g), m, v, k->ams ? vmax : NULL};
    mo__opt_parallel_arrays(MO_FLOAT32, n, 5, p, adam_body32, k);
    return MO_OK;
}

mo_status mo_adam_update(float *w, const float *g, float *m, float *v, float *vmax, size_t n,
                         const mo_adam_config *c, int64_t step)
{
    if (!w || !g || !m || !v || !c || (c->amsgrad && !vmax) || step < 1) return MO_ERR_ARG;
    adam_k k;
    MO_TRY(mo_adam_prepare(c, step, &k));
    return mo_adam_update_prepared(w, g, m, v, vmax, n, &k);
}

mo_status mo_adam_step_prepared(mo_tensor *w, const mo_tensor *g, mo_tensor *m, mo_tensor *v,
                                mo_tensor *vmax, const mo_adam_scalars *k)
{
    if (!k || !m || !v || (k->ams && !vmax)) return MO_ERR_ARG;
    const mo_tensor *ts[5] = {w, g, m, v, k->ams ? vmax : NULL};
    mo__opt_args a;
    MO_TRY(mo__opt_begin(&a, 5, ts));
    mo_status st = MO_OK;
    if (a.dtype == MO_FLOAT64) {
        if (!k->skip) mo__opt_parallel(&a, adam_body64, &k->f64);
    } else {
        st = mo_adam_update_prepared(a.ptr[0], a.ptr[1], a.ptr[2], a.ptr[3], a.ptr[4], a.n, k);
    }
    mo__opt_finish(&a, st == MO_OK);
    return st;
}

mo_status mo_adam_step(mo_tensor *w, const mo_tensor *g, mo_tensor *m, mo_tensor *v,
                       mo_tensor *vmax, const mo_adam_config *c, int64_t step)
{
    if (!c || !m || !v || (c->amsgrad && !vmax) || step < 1) return MO_ERR_ARG;
    adam_k k;
    MO_TRY(mo_adam_prepare(c, step, &k));
    return mo_adam_step_prepared(w, g, m, v, vmax, &k);
}

/* ------------------------------------------------------------------------ */
/* Adamax, NAdam, RAdam on the pool: one body per algorithm and dtype         */
/* ------------------------------------------------------------------------ */

/* What a chunk needs besides its arrays (p: w, g, m, v). */
typedef struct family_job {
    const void *c;
    int64_t step;
    double mu_product;   /* NAdam: the product before this step (each chunk reads a copy) */
} family_job;

#define FAMILY_BODY(alg, sfx, T)                                                          \
    static void alg##_body_##sfx(const void *ctx, void *const *p, size_t n, size_t off)   \
    {                                                                                     \
        const family_job *j = ctx;                                                        \
        (void)off;                                                                        \
        alg##_run_##sfx((T *)p[0], (const T *)p[1], (T *)p[2], (T *)p[3], n, j->c, j->step); \
    }
FAMILY_BODY(adamax, f32, float)
FAMILY_BODY(adamax, f64, double)
FAMILY_BODY(radam, f32, float)
FAMILY_BODY(radam, f64, double)
/* NAdam's chunks step with a private copy of the product; the caller stores the new one */
#define NADAM_BODY(sfx, T)                                                                \
    static void nadam_body_##sfx(const void *ctx, void *const *p, size_t n, size_t off)   \
    {                                                                                     \
        const family_job *j = ctx;                                                        \
        double mp = j->mu_product;                                                        \
        (void)off;                                                                        \
        nadam_run_##sfx((T *)p[0], (const T *)p[1], (T *)p[2], (T *)p[3], n, j->c, j->step, &mp); \
    }
NADAM_BODY(f32, float)
NADAM_BODY(f64, double)

/* Runs an algorithm's body of the arrays' dtype over 4 arrays of n. */
static void family_run(mo_dtype dt, void *const *p, size_t n, mo__opt_body f32, mo__opt_body f64,
                       const family_job *j)
{
    mo__opt_parallel_arrays(dt, n, 4, p, dt == MO_FLOAT64 ? f64 : f32, j);
}

/* ------------------------------------------------------------------------ */
/* Adamax                                                                   */
/* ------------------------------------------------------------------------ */

void mo_adamax_defaults(mo_adamax_config *c)
{
    c->lr = 2e-3;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->weight_decay = 0.0;
    c->maximize = 0;
}

mo_status mo_adamax_check(const mo_adamax_config *c)
{
    if (!c) return MO_ERR_ARG;
    if (!mo__adam_family_ok(c->lr, c->beta1, c->beta2, c->eps, c->weight_decay)) return MO_ERR_ARG;
    return MO_OK;
}

mo_status mo_adamax_update(float *w, const float *g, float *m, float *u, size_t n,
                           const mo_adamax_config *c, int64_t step)
{
    if (!w || !g || !m || !u || !c || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_adamax_check(c));
    family_job j = {c, step, 0.0};
    void *p[4] = {w, MO__UNCONST(g), m, u};
    family_run(MO_FLOAT32, p, n, adamax_body_f32, adamax_body_f64, &j);
    return MO_OK;
}

mo_status mo_adamax_step(mo_tensor *w, const mo_tensor *g, mo_tensor *m, mo_tensor *u,
                         const mo_adamax_config *c, int64_t step)
{
    if (!c || !m || !u || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_adamax_check(c));
    const mo_tensor *ts[4] = {w, g, m, u};
    mo__opt_args a;
    MO_TRY(mo__opt_begin(&a, 4, ts));
    family_job j = {c, step, 0.0};
    family_run(a.dtype, a.ptr, a.n, adamax_body_f32, adamax_body_f64, &j);
    mo__opt_finish(&a, 1);
    return MO_OK;
}

/* ------------------------------------------------------------------------ */
/* NAdam                                                                    */
/* ------------------------------------------------------------------------ */

void mo_nadam_defaults(mo_nadam_config *c)
{
    c->lr = 2e-3;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->weight_decay = 0.0;
    c->momentum_decay = 4e-3;
    c->decoupled_weight_decay = 0;
    c->maximize = 0;
}

mo_status mo_nadam_check(const mo_nadam_config *c)
{
    if (!c) return MO_ERR_ARG;
    if (!mo__adam_family_ok(c->lr, c->beta1, c->beta2, c->eps, c->weight_decay) ||
        !mo__nonneg(c->momentum_decay))
        return MO_ERR_ARG;
    return MO_OK;
}

mo_status mo_nadam_update(float *w, const float *g, float *m, float *v, size_t n,
                          const mo_nadam_config *c, int64_t step, double *mu_product)
{
    if (!w || !g || !m || !v || !c || !mu_product || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_nadam_check(c));
    family_job j = {c, step, *mu_product};
    void *p[4] = {w, MO__UNCONST(g), m, v};
    family_run(MO_FLOAT32, p, n, nadam_body_f32, nadam_body_f64, &j);
    nadam_run_f32(NULL, NULL, NULL, NULL, 0, c, step, mu_product);   /* the product alone */
    return MO_OK;
}

mo_status mo_nadam_step(mo_tensor *w, const mo_tensor *g, mo_tensor *m, mo_tensor *v,
                        const mo_nadam_config *c, int64_t step, double *mu_product)
{
    if (!c || !m || !v || !mu_product || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_nadam_check(c));
    const mo_tensor *ts[4] = {w, g, m, v};
    mo__opt_args a;
    MO_TRY(mo__opt_begin(&a, 4, ts));
    family_job j = {c, step, *mu_product};
    family_run(a.dtype, a.ptr, a.n, nadam_body_f32, nadam_body_f64, &j);
    /* the product alone (no elements) */
    if (a.dtype == MO_FLOAT64) nadam_run_f64(NULL, NULL, NULL, NULL, 0, c, step, mu_product);
    else nadam_run_f32(NULL, NULL, NULL, NULL, 0, c, step, mu_product);
    mo__opt_finish(&a, 1);
    return MO_OK;
}

/* ------------------------------------------------------------------------ */
/* RAdam                                                                    */
/* ------------------------------------------------------------------------ */

void mo_radam_defaults(mo_radam_config *c)
{
    c->lr = 1e-3;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->weight_decay = 0.0;
    c->decoupled_weight_decay = 0;
    c->maximize = 0;
}

mo_status mo_radam_check(const mo_radam_config *c)
{
    if (!c) return MO_ERR_ARG;
    if (!mo__adam_family_ok(c->lr, c->beta1, c->beta2, c->eps, c->weight_decay)) return MO_ERR_ARG;
    return MO_OK;
}

mo_status mo_radam_update(float *w, const float *g, float *m, float *v, size_t n,
                          const mo_radam_config *c, int64_t step)
{
    if (!w || !g || !m || !v || !c || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_radam_check(c));
    family_job j = {c, step, 0.0};
    void *p[4] = {w, MO__UNCONST(g), m, v};
    family_run(MO_FLOAT32, p, n, radam_body_f32, radam_body_f64, &j);
    return MO_OK;
}

mo_status mo_radam_step(mo_tensor *w, const mo_tensor *g, mo_tensor *m, mo_tensor *v,
                        const mo_radam_config *c, int64_t step)
{
    if (!c || !m || !v || step < 1) return MO_ERR_ARG;
    MO_TRY(mo_radam_check(c));
    const mo_tensor *ts[4] = {w, g, m, v};
    mo__opt_args a;
    MO_TRY(mo__opt_begin(&a, 4, ts));
    family_job j = {c, step, 0.0};
    family_run(a.dtype, a.ptr, a.n, radam_body_f32, radam_body_f64, &j);
    mo__opt_finish(&a, 1);
    return MO_OK;
}

/* ---- descriptors (see moonopt_optim.h "Optimizer descriptors") ---- */

static const char *const adam_eps_modes[] = {"raw", "hat", NULL};              /* mo_eps_mode */
static const char *const adam_wd_modes[] = {"l2", "decoupled", "decoupled_bc", NULL}; /* mo_wd_mode */

static void adam_defaults_v(void *c) { mo_adam_defaults(c); }
static mo_status adam_check_v(const void *c) { return mo_adam_check(c); }

/* The per-step scalars, computed once per step count for every param of a group (the
 * params of a group share their step count, so once per group call in practice). */
typedef struct adam_cache {
    int64_t step;          /* 0 (zeroed): none yet */
    mo_adam_scalars k;
} adam_cache;

static mo_status adam_step_v(const void *c, mo_optim_call *a)
{
    adam_cache *k = a->cache;
    if (k->step != a->step) {
        mo_status st = mo_adam_prepare(c, a->step, &k->k);
        if (st != MO_OK) return st;
        k->step = a->step;
    }
    if (a->lean[0])
        return mo_adam_step_lean(a->w, a->g, a->lean[0], a->lean[1], a->lean[2], &k->k, a->rounding,
                                 a->step);
    return mo_adam_step_prepared(a->w, a->g, a->buf[0], a->buf[1], a->buf[2], &k->k);
}

MO__PAIR_OK(mo_adam_config, beta1, beta2);
static const mo_optim_option adam_options[] = {
    MO__OPTION(mo_adam_config, "lr", MO_OPTT_NUMBER, lr),
    MO__PAIR(mo_adam_config, "betas", beta1),
    MO__OPTION(mo_adam_config, "eps", MO_OPTT_NUMBER, eps),
    MO__OPTION(mo_adam_config, "weight_decay", MO_OPTT_NUMBER, weight_decay),
    MO__CHOICE(mo_adam_config, "eps_mode", eps_mode, adam_eps_modes),
    MO__CHOICE(mo_adam_config, "weight_decay_mode", weight_decay_mode, adam_wd_modes),
    MO__OPTION(mo_adam_config, "bias_correction", MO_OPTT_BOOL, bias_correction),
    MO__OPTION(mo_adam_config, "amsgrad", MO_OPTT_BOOL, amsgrad),
    MO__OPTION(mo_adam_config, "maximize", MO_OPTT_BOOL, maximize),
    MO__OPTION(mo_adam_config, "rescale_grad", MO_OPTT_NUMBER, rescale_grad),
    MO__OPTION(mo_adam_config, "clip_gradient", MO_OPTT_OFF, clip_gradient),
    MO__OPTION(mo_adam_config, "lr_decay", MO_OPTT_NUMBER, lr_decay),
    MO__OPTION(mo_adam_config, "clip_weight_decay", MO_OPTT_BOOL, clip_weight_decay),
    MO__OPTION(mo_adam_config, "skip_nonfinite_rescale", MO_OPTT_BOOL, skip_nonfinite_rescale),
};
static const mo_optim_buffer adam_buffers[] = {
    {"exp_avg", NULL, MO_OPTI_ZERO, NULL, MO_LEAN_SIGNED},
    {"exp_avg_sq", NULL, MO_OPTI_ZERO, NULL, MO_LEAN_UNSIGNED},
    {"max_exp_avg_sq", "amsgrad", MO_OPTI_ZERO, NULL, MO_LEAN_UNSIGNED},
};

const mo_optim_desc mo__optim_adam = {
    "adam", sizeof(mo_adam_config), adam_defaults_v, adam_check_v,
    adam_options, MO__COUNT(adam_options), adam_buffers, MO__COUNT(adam_buffers), NULL, 0,
    1, sizeof(adam_cache), adam_step_v,
};

static const mo_optim_buffer moment_buffers[] = {
    {"exp_avg", NULL, MO_OPTI_ZERO, NULL, MO_LEAN_NONE},
    {"exp_avg_sq", NULL, MO_OPTI_ZERO, NULL, MO_LEAN_NONE},
};

static void adamax_defaults_v(void *c) { mo_adamax_defaults(c); }
static mo_status adamax_check_v(const void *c) { return mo_adamax_check(c); }
static mo_status adamax_step_v(const void *c, mo_optim_call *a)
{
    return mo_adamax_step(a->w, a->g, a->buf[0], a->buf[1], c, a->step);
}

MO__PAIR_OK(mo_adamax_config, beta1, beta2);
static const mo_optim_option adamax_options[] = {
    MO__OPTION(mo_adamax_config, "lr", MO_OPTT_NUMBER, lr),
    MO__PAIR(mo_adamax_config, "betas", beta1),
    MO__OPTION(mo_adamax_config, "eps", MO_OPTT_NUMBER, eps),
    MO__OPTION(mo_adamax_config, "weight_decay", MO_OPTT_NUMBER, weight_decay),
    MO__OPTION(mo_adamax_config, "maximize", MO_OPTT_BOOL, maximize),
};
static const mo_optim_buffer adamax_buffers[] = {
    {"exp_avg", NULL, MO_OPTI_ZERO, NULL, MO_LEAN_NONE},
    {"exp_inf", NULL, MO_OPTI_ZERO, NULL, MO_LEAN_NONE},
};

const mo_optim_desc mo__optim_adamax = {
    "adamax", sizeof(mo_adamax_config), adamax_defaults_v, adamax_check_v,
    adamax_options, MO__COUNT(adamax_options), adamax_buffers, MO__COUNT(adamax_buffers),
    NULL, 0, 1, 0, adamax_step_v,
};

static void nadam_defaults_v(void *c) { mo_nadam_defaults(c); }
static mo_status nadam_check_v(const void *c) { return mo_nadam_check(c); }
static mo_status nadam_step_v(const void *c, mo_optim_call *a)
{
    return mo_nadam_step(a->w, a->g, a->buf[0], a->buf[1], c, a->step, &a->scalar[0]);
}

MO__PAIR_OK(mo_nadam_config, beta1, beta2);
static const mo_optim_option nadam_options[] = {
    MO__OPTION(mo_nadam_config, "lr", MO_OPTT_NUMBER, lr),
    MO__PAIR(mo_nadam_config, "betas", beta1),
    MO__OPTION(mo_nadam_config, "eps", MO_OPTT_NUMBER, eps),
    MO__OPTION(mo_nadam_config, "weight_decay", MO_OPTT_NUMBER, weight_decay),
    MO__OPTION(mo_nadam_config, "momentum_decay", MO_OPTT_NUMBER, momentum_decay),
    MO__OPTION(mo_nadam_config, "decoupled_weight_decay", MO_OPTT_BOOL, decoupled_weight_decay),
    MO__OPTION(mo_nadam_config, "maximize", MO_OPTT_BOOL, maximize),
};
/* the product of the momentum schedule so far (PyTorch's state['mu_product']) */
static const mo_optim_scalar nadam_scalars[] = {{"mu_product", 1.0, 1}};

const mo_optim_desc mo__optim_nadam = {
    "nadam", sizeof(mo_nadam_config), nadam_defaults_v, nadam_check_v,
    nadam_options, MO__COUNT(nadam_options), moment_buffers, MO__COUNT(moment_buffers),
    nadam_scalars, MO__COUNT(nadam_scalars), 1, 0, nadam_step_v,
};

static void radam_defaults_v(void *c) { mo_radam_defaults(c); }
static mo_status radam_check_v(const void *c) { return mo_radam_check(c); }
static mo_status radam_step_v(const void *c, mo_optim_call *a)
{
    return mo_radam_step(a->w, a->g, a->buf[0], a->buf[1], c, a->step);
}

MO__PAIR_OK(mo_radam_config, beta1, beta2);
static const mo_optim_option radam_options[] = {
    MO__OPTION(mo_radam_config, "lr", MO_OPTT_NUMBER, lr),
    MO__PAIR(mo_radam_config, "betas", beta1),
    MO__OPTION(mo_radam_config, "eps", MO_OPTT_NUMBER, eps),
    MO__OPTION(mo_radam_config, "weight_decay", MO_OPTT_NUMBER, weight_decay),
    MO__OPTION(mo_radam_config, "decoupled_weight_decay", MO_OPTT_BOOL, decoupled_weight_decay),
    MO__OPTION(mo_radam_config, "maximize", MO_OPTT_BOOL, maximize),
};

const mo_optim_desc mo__optim_radam = {
    "radam", sizeof(mo_radam_config), radam_defaults_v, radam_check_v,
    radam_options, MO__COUNT(radam_options), moment_buffers, MO__COUNT(moment_buffers),
    NULL, 0, 1, 0, radam_step_v,
};
