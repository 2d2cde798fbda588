/*
 * optim_internal.h - helpers shared by the optimizer kernels (core/optim_*.c); not installed.
 */
#ifndef MO_OPTIM_INTERNAL_H
#define MO_OPTIM_INTERNAL_H

#include "moonopt_internal.h"

#include <stddef.h>  /* offsetof (the descriptors) */
#include <stdint.h>  /* uintptr_t (MO__UNCONST) */

/* Force inlining where a tiny helper sits in a hot loop (plain inline elsewhere). */
#if defined(__GNUC__) || defined(__clang__)
#define MO__INLINE static inline __attribute__((always_inline))
#else
#define MO__INLINE static inline
#endif

/* x86-64 with GCC or clang: kernels may carry AVX and AVX-512 variants chosen at run time
 * (docs/design.md "SIMD dispatch"). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(MO_NO_SIMD)
#define MO__HAVE_AVX_DISPATCH 1
int mo__cpu_has_avx(void);
int mo__cpu_has_avx2(void);
#endif

/* The vector loops: MO__SIMD_SCALAR (none), MO__SIMD_AVX (256-bit), MO__SIMD_AVX512 (512-bit). */
enum { MO__SIMD_SCALAR = 0, MO__SIMD_AVX = 1, MO__SIMD_AVX512 = 2 };
/* The widest loop the CPU (and OS) support. Every path gives the same bits. */
int mo__simd_level(void);
/* Adam's float32 and float64 loops at a given level (at most mo__simd_level(); lower runs a
 * narrower path), one thread: what the kernels run per chunk, exposed so tests and benchmarks
 * can run and compare each path (no global switch: the core keeps no writable state). */
void mo__adam_run_level(const mo_adam_scalars *k, float *w, const float *g, float *m, float *v,
                        float *vmax, size_t n, int level);
/* mo_adam_step_lean with its fused loops at most at `level` (MO__SIMD_SCALAR: none, the
 * block path alone; MO__SIMD_AVX: the AVX2 int8 loop; MO__SIMD_AVX512: the AVX-512 int8 and
 * bfloat16 loops), for tests and benchmarks: every level gives the same bits. */
mo_status mo__adam_step_lean_level(mo_tensor *w, const mo_tensor *g, mo_lean *m, mo_lean *v,
                                   mo_lean *vmax, const mo_adam_scalars *k, mo_state_rounding r,
                                   int64_t step, int level);
void mo__adam_run64_level(const mo_adam_scalars64 *k, double *w, const double *g, double *m,
                          double *v, double *vmax, size_t n, int level);

/* The most tensors one kernel call touches: w, g and up to three state tensors. */
#define MO__OPT_MAX 5

/*
 * The arrays an array kernel runs on, for one tensor-level call. Every tensor
 * has ts[0]'s dtype, so each ptr[i] is a float * (MO_FLOAT32) or a double *
 * (MO_FLOAT64): the step picks the kernel instance from `dtype`, once per call
 * (docs/design.md "Two dtypes").
 * ts[0] is the parameter (written), ts[1] the gradient (only read), ts[2..]
 * state (written). Contiguous tensors are used in place; a strided one is
 * copied into a malloc'd contiguous temporary that mo__opt_finish writes back.
 */
typedef struct mo__opt_args {
    size_t n;                          /* elements in each array (w's numel) */
    int count;                         /* entries used in the arrays below */
    mo_dtype dtype;                    /* the element type of every array */
    void *ptr[MO__OPT_MAX];            /* {n} each; NULL where ts[i] was NULL */
    void *tmp[MO__OPT_MAX];            /* the temporary behind ptr[i], or NULL */
    const mo_tensor *src[MO__OPT_MAX]; /* where a temporary is written back to */
} mo__opt_args;

/*
 * Checks (ts[0] and ts[1] non-NULL; every non-NULL entry alive, of ts[0]'s
 * shape (MO_ERR_SHAPE) and of ts[0]'s dtype (MO_ERR_DTYPE)) and prepares the
 * arrays. On error nothing is allocated or written.
 */
mo_status mo__opt_begin(mo__opt_args *a, int count, const mo_tensor *const *ts);

/* Writes the temporaries of written tensors back when write_back, then frees them. */
void mo__opt_finish(mo__opt_args *a, int write_back);

/*
 * Threads (docs/design.md "Threads"): an elementwise kernel runs as body(ctx, p, n, off) over
 * the pool's fixed chunks of MO__GRAIN_STREAM elements (a multiple of MO_LEAN_BLOCK): p[i] is
 * ptr[i] advanced to element `off` of the chunk (NULL stays NULL), n the chunk's length. Every
 * element's arithmetic is the same in any chunk, so the results are the same bits at any
 * thread count. ptr: count arrays of n elements of dtype dt (a read-only one passed through
 * MO__UNCONST).
 */
typedef void (*mo__opt_body)(const void *ctx, void *const *p, size_t n, size_t off);
void mo__opt_parallel_arrays(mo_dtype dt, size_t n, int count, void *const *ptr,
                             mo__opt_body body, const void *ctx);
/* The same over the arrays of a tensor-level call. */
void mo__opt_parallel(const mo__opt_args *a, mo__opt_body body, const void *ctx);
/* A read-only array into a ptr list (the bodies never write what the caller only reads). */
#define MO__UNCONST(p) ((void *)(uintptr_t)(const void *)(p))

/*
 * The lean-state driver (optim_lean.c): runs fn over w, g and the decoded float32 blocks of
 * up to MO__LEAN_MAX lean buffers (st[j] may be NULL: fn gets NULL there), MO_LEAN_BLOCK
 * elements at a time, storing each block back (docs/design.md "Lean optimizer state").
 * Checks w and g (float32: MO_ERR_DTYPE otherwise) and every buffer's n before any write;
 * fn NULL: only checks.
 */
#define MO__LEAN_MAX 3
typedef void (*mo__lean_fn)(const void *ctx, float *w, const float *g, float *const *st, size_t n);
/* Optional fused loops (docs/design.md "Lean optimizer state"), each with the same bits as
 * decode + fn + encode:
 * - bf16, bf16_sr: read and write bfloat16 moments themselves (codes[k]: uint16_t * at the
 *   chunk's first element, NULL where st[k] is; off: that element's index in the buffers;
 *   seed[k]: buffer k's stochastic-rounding stream this step); return how many leading
 *   elements they did. Used only when every buffer is bfloat16, bf16 when rounding is to
 *   nearest, bf16_sr when it is stochastic.
 * - q8: one whole block of int8 moments, io[k] per buffer (io[k].c NULL where st[k] is NULL):
 *   decodes io[k].c {len} with the block's absmax io[k].a in registers, steps, writes the new
 *   float32 moments to io[k].out {len} (the driver's scratch, in L1) and their absmax and
 *   NaN/inf flag to *io[k].amax, *io[k].bad, all in one pass; meanwhile it encodes the
 *   previous block's moments io[k].px {len} (when not NULL) into its codes io[k].pc with
 *   1 / its absmax io[k].pinv, so that integer work overlaps this block's divisions. Used
 *   only when every buffer is int8; len is MO_LEAN_BLOCK. */
typedef size_t (*mo__lean_fused_fn)(const void *ctx, float *w, const float *g, void *const *codes,
                                    size_t n, size_t off, const uint64_t *seed);
typedef struct mo__q8_io {
    const uint8_t *c;   /* this block's codes {len}; NULL: no such buffer */
    float a;            /* this block's absmax */
    float *out;         /* {len}: the stepped moments */
    float *amax;        /* out: their largest |x| (meaningless when *bad) */
    int *bad;           /* out: nonzero when one of them is NaN or +-inf */
    const float *px;    /* the previous block's stepped moments {len}, or NULL */
    uint8_t *pc;        /* where their codes go {len} */
    float pinv;         /* 1 / their absmax (finite) */
} mo__q8_io;
typedef void (*mo__lean_q8_fn)(const void *ctx, float *w, const float *g, const mo__q8_io *io,
                               size_t len);
typedef struct mo__lean_fused {
    mo__lean_fused_fn bf16;   /* NULL: none */
    mo__lean_fused_fn bf16_sr;
    mo__lean_q8_fn q8;        /* NULL: none */
} mo__lean_fused;
mo_status mo__lean_run(mo_tensor *w, const mo_tensor *g, mo_lean *const *st, int nst,
                       mo__lean_fn fn, const void *ctx, mo_state_rounding r, int64_t step);
/* fused NULL: as mo__lean_run */
mo_status mo__lean_run_fused(mo_tensor *w, const mo_tensor *g, mo_lean *const *st, int nst,
                             mo__lean_fn fn, const mo__lean_fused *fused, const void *ctx,
                             mo_state_rounding r, int64_t step);

/* mo_lean_encode / mo_lean_decode with the vector codecs allowed (vec 1, where the CPU has
 * AVX2) or not (vec 0): the same bits either way; tests compare them. */
mo_status mo__lean_encode_vec(mo_lean *s, const float *x, size_t n, mo_state_rounding r,
                             uint64_t seed, int vec);
mo_status mo__lean_decode_vec(const mo_lean *s, float *x, size_t n, int vec);

/* Hyperparameter domains. */
int mo__is_finite(double x);
int mo__nonneg(double x);   /* finite and >= 0 */
int mo__beta(double b);     /* in [0, 1) */
int mo__pos(double x);      /* finite and > 0 */
/* lr >= 0, both betas in [0, 1), eps > 0, weight_decay >= 0: the domains of the options
 * every Adam-style config shares (Adam, Adamax, NAdam, RAdam, LAMB). */
int mo__adam_family_ok(double lr, double beta1, double beta2, double eps, double weight_decay);

/* ---- descriptors (mo_optim_desc, moonopt_optim.h) ----
 * Every kernel file defines one `const mo_optim_desc mo__optim_<alg>`; MO__OPTIMIZERS lists
 * them once, in the order mo_optim_at returns them (optim_util.c builds the table from it). */
#define MO__OPTIMIZERS(X) \
    X(sgd) X(adam) X(adamax) X(nadam) X(radam) X(rmsprop) X(adagrad) X(adadelta) X(lion) \
    X(lamb) X(sfadamw)

#define MO__DECLARE_OPTIMIZER(alg) extern const mo_optim_desc mo__optim_##alg;
MO__OPTIMIZERS(MO__DECLARE_OPTIMIZER)

#define MO__COUNT(a) (sizeof(a) / sizeof((a)[0]))
/* Option table entries: MO__OPTION(mo_adam_config, "lr", MO_OPTT_NUMBER, lr). */
#define MO__OPTION(cfg, key, type, field) {key, type, offsetof(cfg, field), NULL}
#define MO__CHOICE(cfg, key, field, names) {key, MO_OPTT_CHOICE, offsetof(cfg, field), names}
/* A pair of doubles (betas) read into two consecutive fields; the static assertion in
 * MO__PAIR_OK proves they are consecutive. */
#define MO__PAIR(cfg, key, first) {key, MO_OPTT_PAIR, offsetof(cfg, first), NULL}
#define MO__PAIR_OK(cfg, first, second) \
    _Static_assert(offsetof(cfg, second) == offsetof(cfg, first) + sizeof(double), \
                   #cfg ": " #first " and " #second " must be consecutive doubles")

#endif /* MO_OPTIM_INTERNAL_H */
