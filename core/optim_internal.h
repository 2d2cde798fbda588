/*
 * optim_internal.h - helpers shared by the optimizer kernels (core/optim_*.c); not installed.
 */
#ifndef MO_OPTIM_INTERNAL_H
#define MO_OPTIM_INTERNAL_H

#include "moonopt_internal.h"

/* Force inlining where a tiny helper sits in a hot loop (plain inline elsewhere). */
#if defined(__GNUC__) || defined(__clang__)
#define MO__INLINE static inline __attribute__((always_inline))
#else
#define MO__INLINE static inline
#endif

/* x86-64 with GCC or clang: kernels may carry an AVX variant chosen at run time. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(MO_NO_SIMD)
#define MO__HAVE_AVX_DISPATCH 1
int mo__cpu_has_avx(void);
#endif

/* The most tensors one kernel call touches: w, g and up to three state tensors. */
#define MO__OPT_MAX 5

/*
 * The float arrays an array kernel runs on, for one tensor-level call.
 * ts[0] is the parameter (written), ts[1] the gradient (only read), ts[2..]
 * state (written). Contiguous tensors are used in place; a strided one is
 * copied into a malloc'd contiguous temporary that mo__opt_finish writes back.
 */
typedef struct mo__opt_args {
    size_t n;                          /* elements in each array (w's numel) */
    int count;                         /* entries used in the arrays below */
    float *ptr[MO__OPT_MAX];           /* {n} each; NULL where ts[i] was NULL */
    float *tmp[MO__OPT_MAX];           /* the temporary behind ptr[i], or NULL */
    const mo_tensor *src[MO__OPT_MAX]; /* where a temporary is written back to */
} mo__opt_args;

/*
 * Checks (ts[0] and ts[1] non-NULL; every non-NULL entry alive and of ts[0]'s
 * shape) and prepares the arrays. On error nothing is allocated or written.
 */
mo_status mo__opt_begin(mo__opt_args *a, int count, const mo_tensor *const *ts);

/* Writes the temporaries of written tensors back when write_back, then frees them. */
void mo__opt_finish(mo__opt_args *a, int write_back);

/* Hyperparameter domains. */
int mo__is_finite(double x);
int mo__nonneg(double x);   /* finite and >= 0 */
int mo__beta(double b);     /* in [0, 1) */
int mo__pos(double x);      /* finite and > 0 */
/* lr >= 0, both betas in [0, 1), eps > 0, weight_decay >= 0: the domains of the options
 * every Adam-style config shares (Adam, Adamax, NAdam, RAdam, LAMB). */
int mo__adam_family_ok(double lr, double beta1, double beta2, double eps, double weight_decay);

#endif /* MO_OPTIM_INTERNAL_H */
