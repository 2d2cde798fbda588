/*
 * moonopt_optim.h - the optimizer kernels of moonopt's core (included by moonopt.h).
 *
 * Every algorithm comes twice:
 *
 *   mo_<alg>_update(float *w, const float *g, <state arrays>, size_t n, cfg, ...)
 *       the raw kernel on caller-owned float arrays of n elements each (a host
 *       calls it directly on its own buffers); arrays must not overlap, except
 *       that nothing stops a caller from passing the same g twice;
 *   mo_<alg>_step(mo_tensor *w, const mo_tensor *g, <state tensors>, cfg, ...)
 *       the same on tensors: checks that every tensor is alive and has w's
 *       shape and dtype, then runs the kernel of that dtype (float32: the raw
 *       kernel above; float64: its double instance, docs/design.md "Two dtypes")
 *       in place for contiguous tensors, or on contiguous copies that are written
 *       back for strided ones.
 *
 * One call is one optimizer step for one parameter tensor: a single fused pass
 * that reads w, g and the state once and writes w and the state once. Per-step
 * scalars (bias corrections, decayed learning rates, 1 - lr*wd) are computed
 * once per call in double and rounded to the tensors' dtype; the per-element
 * arithmetic is in that dtype (float32 or float64), in PyTorch 1.13's operation
 * order for the algorithms PyTorch has.
 *
 * Step counters: `step` is the 1-based number of the step being taken (the
 * caller keeps it per parameter; PyTorch's state['step'] after its increment).
 *
 * Errors (nothing is written on any error): MO_ERR_ARG for NULL pointers, a
 * missing state array the configuration needs, step < 1 or a hyperparameter
 * outside its domain (the same rules as PyTorch's constructors; mo_<alg>_check
 * tells without stepping); MO_ERR_FREED for a released or revoked tensor;
 * MO_ERR_SHAPE when a gradient or state tensor's shape differs from w's;
 * MO_ERR_DTYPE when a gradient or state tensor's dtype differs from w's;
 * MO_ERR_NOMEM when a strided tensor's temporary copy cannot be allocated.
 */
#ifndef MOONOPT_OPTIM_H
#define MOONOPT_OPTIM_H

#include "moonopt.h"  /* mo_status, mo_tensor (moonopt.h includes this file at its end) */

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* SGD (PyTorch 1.13 torch.optim.SGD)                                       */
/* ------------------------------------------------------------------------ */

typedef struct mo_sgd_config {
    double lr;            /* PyTorch requires it; the default here is 1e-3 */
    double momentum;      /* 0 */
    double dampening;     /* 0 */
    double weight_decay;  /* 0: L2, g += wd*w */
    int nesterov;         /* 0; needs momentum > 0 and dampening == 0 */
    int maximize;         /* 0 */
} mo_sgd_config;

void mo_sgd_defaults(mo_sgd_config *c);
mo_status mo_sgd_check(const mo_sgd_config *c);

/*
 * buf: the momentum buffer {n}, required when momentum != 0 (NULL otherwise).
 * first != 0 means buf holds nothing yet: it is set to the (decayed) gradient,
 * as PyTorch does, instead of being decayed.
 */
mo_status mo_sgd_update(float *w, const float *g, float *buf, size_t n,
                        const mo_sgd_config *c, int first);
mo_status mo_sgd_step(mo_tensor *w, const mo_tensor *g, mo_tensor *buf,
                      const mo_sgd_config *c, int first);

/* ------------------------------------------------------------------------ */
/* The Adam family: Adam / AdamW and their framework flavours               */
/* ------------------------------------------------------------------------ */

/* Where eps sits (see docs/design.md, "The Adam family"). */
typedef enum mo_eps_mode {
    MO_EPS_RAW = 0,  /* w -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)   (PyTorch) */
    MO_EPS_HAT = 1   /* lr_t = lr*sqrt(bc2)/bc1; w -= lr_t * m / (sqrt(v) + eps) */
} mo_eps_mode;

/* How weight decay is applied. */
typedef enum mo_wd_mode {
    MO_WD_L2 = 0,           /* g += wd*w before the moments (coupled, Adam) */
    MO_WD_DECOUPLED = 1,    /* w *= 1 - lr*wd with the raw lr (PyTorch AdamW, Keras) */
    MO_WD_DECOUPLED_BC = 2  /* w -= s*(m/denom + wd*w), s the (bias-corrected) step (MXNet AdamW) */
} mo_wd_mode;

typedef struct mo_adam_config {
    double lr;              /* 1e-3 */
    double beta1, beta2;    /* 0.9, 0.999; each in [0, 1) */
    double eps;             /* 1e-8; > 0 */
    double weight_decay;    /* 0 (Adam), 1e-2 (AdamW) */
    mo_eps_mode eps_mode;   /* MO_EPS_RAW */
    mo_wd_mode weight_decay_mode;  /* MO_WD_L2 (Adam), MO_WD_DECOUPLED (AdamW) */
    int bias_correction;    /* 1 */
    int amsgrad;            /* 0: vmax = max(vmax, v) on the raw v, used in the denominator */
    int maximize;           /* 0 */
    double rescale_grad;    /* 1: g *= rescale_grad first (MXNet) */
    double clip_gradient;   /* <= 0: off; else g = clamp(g, -clip, clip) after rescaling (MXNet) */
    double lr_decay;        /* 0: the step uses lr / (1 + (step-1)*lr_decay) (torch7's learningRateDecay) */
    int clip_weight_decay;      /* 0; MXNet <= 1.9.1: clip(rescale*g + wd*w), the sum (L2 mode) */
    int skip_nonfinite_rescale; /* 0; MXNet AdamW: rescale_grad 0 or not finite (as a float)
                                   skips the whole update, decay included */
} mo_adam_config;

void mo_adam_defaults(mo_adam_config *c);   /* PyTorch Adam */
void mo_adamw_defaults(mo_adam_config *c);  /* PyTorch AdamW: wd 1e-2, decoupled */
mo_status mo_adam_check(const mo_adam_config *c);

/*
 * w, g, m (exp_avg), v (exp_avg_sq): {n}. vmax (max_exp_avg_sq) {n} when
 * amsgrad, else ignored (may be NULL). m, v, vmax start at 0.
 */
mo_status mo_adam_update(float *w, const float *g, float *m, float *v, float *vmax, size_t n,
                         const mo_adam_config *c, int64_t step);
mo_status mo_adam_step(mo_tensor *w, const mo_tensor *g, mo_tensor *m, mo_tensor *v,
                       mo_tensor *vmax, const mo_adam_config *c, int64_t step);

/*
 * The per-step scalars of one Adam step (bias corrections, step size, decay factor),
 * for callers that step many tensors with the same configuration and step count:
 * mo_adam_prepare once, then the _prepared kernels per tensor (what mo_adam_update
 * does in one call). Fill it only through mo_adam_prepare. The scalars are computed
 * in double (f64, what float64 tensors step with) and rounded to float once (the
 * top-level fields, what float32 arrays and tensors step with).
 */
typedef struct mo_adam_scalars64 {
    int pre, l2, l2_pre, dbc, ams, skip;
    double scale, clip, wd_l2, decay, b1, omb1, b2, omb2, bc2s, eps, neg_step, wd_bc;
} mo_adam_scalars64;

typedef struct mo_adam_scalars {
    int pre, l2, l2_pre, dbc, ams, skip;
    float scale, clip, wd_l2, decay, b1, omb1, b2, omb2, bc2s, eps, neg_step, wd_bc;
    mo_adam_scalars64 f64;
} mo_adam_scalars;

mo_status mo_adam_prepare(const mo_adam_config *c, int64_t step, mo_adam_scalars *k);
/* vmax is needed (non-NULL) when the scalars came from an amsgrad config. */
mo_status mo_adam_update_prepared(float *w, const float *g, float *m, float *v, float *vmax,
                                  size_t n, const mo_adam_scalars *k);
mo_status mo_adam_step_prepared(mo_tensor *w, const mo_tensor *g, mo_tensor *m, mo_tensor *v,
                                mo_tensor *vmax, const mo_adam_scalars *k);

/* ------------------------------------------------------------------------ */
/* Adamax, NAdam, RAdam (PyTorch 1.13)                                      */
/* ------------------------------------------------------------------------ */

typedef struct mo_adamax_config {
    double lr;            /* 2e-3 */
    double beta1, beta2;  /* 0.9, 0.999 */
    double eps;           /* 1e-8 */
    double weight_decay;  /* 0 (L2) */
    int maximize;         /* 0 */
} mo_adamax_config;

void mo_adamax_defaults(mo_adamax_config *c);
mo_status mo_adamax_check(const mo_adamax_config *c);
/* m (exp_avg), u (exp_inf): {n}, start at 0. u = max(b2*u, |g| + eps). */
mo_status mo_adamax_update(float *w, const float *g, float *m, float *u, size_t n,
                           const mo_adamax_config *c, int64_t step);
mo_status mo_adamax_step(mo_tensor *w, const mo_tensor *g, mo_tensor *m, mo_tensor *u,
                         const mo_adamax_config *c, int64_t step);

typedef struct mo_nadam_config {
    double lr;              /* 2e-3 */
    double beta1, beta2;    /* 0.9, 0.999 */
    double eps;             /* 1e-8 */
    double weight_decay;    /* 0 */
    double momentum_decay;  /* 4e-3 */
    int decoupled_weight_decay;  /* 0: L2; 1: w *= 1 - lr*wd (as PyTorch >= 2.0) */
    int maximize;           /* 0 */
} mo_nadam_config;

void mo_nadam_defaults(mo_nadam_config *c);
mo_status mo_nadam_check(const mo_nadam_config *c);
/*
 * m, v: {n}, start at 0. *mu_product is the per-parameter product of the
 * momentum schedule, 1 before the first step; it is updated (rounded to
 * float32, as PyTorch keeps it in a float32 tensor) only when the call succeeds.
 * mu_product_next = mu_product*mu_next (PyTorch >= 2.0 and 1.13's foreach path).
 */
mo_status mo_nadam_update(float *w, const float *g, float *m, float *v, size_t n,
                          const mo_nadam_config *c, int64_t step, double *mu_product);
mo_status mo_nadam_step(mo_tensor *w, const mo_tensor *g, mo_tensor *m, mo_tensor *v,
                        const mo_nadam_config *c, int64_t step, double *mu_product);

typedef struct mo_radam_config {
    double lr;              /* 1e-3 */
    double beta1, beta2;    /* 0.9, 0.999 */
    double eps;             /* 1e-8 */
    double weight_decay;    /* 0 */
    int decoupled_weight_decay;  /* 0: L2; 1: w *= 1 - lr*wd */
    int maximize;           /* 0 */
} mo_radam_config;

void mo_radam_defaults(mo_radam_config *c);
mo_status mo_radam_check(const mo_radam_config *c);
/* m, v: {n}, start at 0. Rectified when rho_t > 5, plain momentum SGD otherwise. */
mo_status mo_radam_update(float *w, const float *g, float *m, float *v, size_t n,
                          const mo_radam_config *c, int64_t step);
mo_status mo_radam_step(mo_tensor *w, const mo_tensor *g, mo_tensor *m, mo_tensor *v,
                        const mo_radam_config *c, int64_t step);

/* ------------------------------------------------------------------------ */
/* RMSprop, Adagrad, Adadelta (PyTorch 1.13)                                */
/* ------------------------------------------------------------------------ */

typedef struct mo_rmsprop_config {
    double lr;            /* 1e-2 */
    double alpha;         /* 0.99 */
    double eps;           /* 1e-8 */
    double weight_decay;  /* 0 */
    double momentum;      /* 0 */
    int centered;         /* 0 */
    int maximize;         /* 0 */
} mo_rmsprop_config;

void mo_rmsprop_defaults(mo_rmsprop_config *c);
mo_status mo_rmsprop_check(const mo_rmsprop_config *c);
/* square_avg {n}; grad_avg {n} when centered; buf {n} when momentum > 0; all start at 0. */
mo_status mo_rmsprop_update(float *w, const float *g, float *square_avg, float *grad_avg,
                            float *buf, size_t n, const mo_rmsprop_config *c);
mo_status mo_rmsprop_step(mo_tensor *w, const mo_tensor *g, mo_tensor *square_avg,
                          mo_tensor *grad_avg, mo_tensor *buf, const mo_rmsprop_config *c);

typedef struct mo_adagrad_config {
    double lr;            /* 1e-2 */
    double lr_decay;      /* 0: clr = lr / (1 + (step-1)*lr_decay) */
    double weight_decay;  /* 0 */
    double initial_accumulator_value;  /* 0: what the caller fills `sum` with */
    double eps;           /* 1e-10 */
    int maximize;         /* 0 */
} mo_adagrad_config;

void mo_adagrad_defaults(mo_adagrad_config *c);
mo_status mo_adagrad_check(const mo_adagrad_config *c);
/* sum {n}: starts at initial_accumulator_value. */
mo_status mo_adagrad_update(float *w, const float *g, float *sum, size_t n,
                            const mo_adagrad_config *c, int64_t step);
mo_status mo_adagrad_step(mo_tensor *w, const mo_tensor *g, mo_tensor *sum,
                          const mo_adagrad_config *c, int64_t step);

typedef struct mo_adadelta_config {
    double lr;            /* 1.0 */
    double rho;           /* 0.9 */
    double eps;           /* 1e-6 */
    double weight_decay;  /* 0 */
    int maximize;         /* 0 */
} mo_adadelta_config;

void mo_adadelta_defaults(mo_adadelta_config *c);
mo_status mo_adadelta_check(const mo_adadelta_config *c);
/* square_avg, acc_delta: {n}, start at 0. */
mo_status mo_adadelta_update(float *w, const float *g, float *square_avg, float *acc_delta,
                             size_t n, const mo_adadelta_config *c);
mo_status mo_adadelta_step(mo_tensor *w, const mo_tensor *g, mo_tensor *square_avg,
                           mo_tensor *acc_delta, const mo_adadelta_config *c);

/* ------------------------------------------------------------------------ */
/* Lion (Chen et al. 2023) and LAMB (You et al. 2020)                       */
/* ------------------------------------------------------------------------ */

typedef struct mo_lion_config {
    double lr;            /* 1e-4 */
    double beta1, beta2;  /* 0.9, 0.99 */
    double weight_decay;  /* 0: w *= 1 - lr*wd (decoupled) */
    int maximize;         /* 0 */
} mo_lion_config;

void mo_lion_defaults(mo_lion_config *c);
mo_status mo_lion_check(const mo_lion_config *c);
/* m {n}, starts at 0: w -= lr*sign(b1*m + (1-b1)*g); m = b2*m + (1-b2)*g. */
mo_status mo_lion_update(float *w, const float *g, float *m, size_t n, const mo_lion_config *c);
mo_status mo_lion_step(mo_tensor *w, const mo_tensor *g, mo_tensor *m, const mo_lion_config *c);

typedef struct mo_lamb_config {
    double lr;            /* 1e-3 */
    double beta1, beta2;  /* 0.9, 0.999 */
    double eps;           /* 1e-6 */
    double weight_decay;  /* 0 */
    int bias_correction;  /* 1 */
    int maximize;         /* 0 */
} mo_lamb_config;

void mo_lamb_defaults(mo_lamb_config *c);
mo_status mo_lamb_check(const mo_lamb_config *c);
/*
 * m, v: {n}, start at 0. r = m_hat/(sqrt(v_hat) + eps) + wd*w over the whole
 * tensor, then w -= lr * (||w|| / ||r||) * r (ratio 1 when either norm is 0).
 * Two passes (the trust ratio needs both norms before any w changes).
 * *trust_ratio (may be NULL) receives the ratio used.
 */
mo_status mo_lamb_update(float *w, const float *g, float *m, float *v, size_t n,
                         const mo_lamb_config *c, int64_t step, double *trust_ratio);
mo_status mo_lamb_step(mo_tensor *w, const mo_tensor *g, mo_tensor *m, mo_tensor *v,
                       const mo_lamb_config *c, int64_t step, double *trust_ratio);

/* ------------------------------------------------------------------------ */
/* Schedule-free AdamW (Defazio et al. 2024)                                */
/* ------------------------------------------------------------------------ */

typedef struct mo_sfadamw_config {
    double lr;               /* 0.0025 */
    double beta1, beta2;     /* 0.9, 0.999; beta1 in (0, 1), beta2 in [0, 1) */
    double eps;              /* 1e-8 */
    double weight_decay;     /* 0: gradient += wd*y after the normalisation */
    double warmup_steps;     /* 0: a non-negative integer; linear warm-up of lr */
    double r;                /* 0: the average weights steps by (k+1)^r */
    double weight_lr_power;  /* 2: ... and by lr_max^weight_lr_power */
} mo_sfadamw_config;

void mo_sfadamw_defaults(mo_sfadamw_config *c);
mo_status mo_sfadamw_check(const mo_sfadamw_config *c);
/*
 * y (the parameter in train mode), z (starts as a copy of y), v (exp_avg_sq, starts
 * at 0): {n}. *weight_sum (starts at 0) and *lr_max (starts at -1) are the per-param
 * averaging state, updated only when the call succeeds. See optim_sfadamw.c.
 */
mo_status mo_sfadamw_update(float *y, const float *g, float *z, float *v, size_t n,
                            const mo_sfadamw_config *c, int64_t step, double *weight_sum,
                            double *lr_max);
mo_status mo_sfadamw_step(mo_tensor *y, const mo_tensor *g, mo_tensor *z, mo_tensor *v,
                          const mo_sfadamw_config *c, int64_t step, double *weight_sum,
                          double *lr_max);

/* ------------------------------------------------------------------------ */
/* Lean optimizer state: moments in bfloat16 or block-quantized int8        */
/* ------------------------------------------------------------------------ */

/*
 * A moment buffer kept in fewer bits than float32 (docs/design.md "Lean optimizer state").
 * The kernels read a block of it into float32, update it there exactly as the float32 kernel
 * does, and store it back, block by block, in one pass.
 *
 *   bfloat16: codes is uint16_t[n], the upper half of each float32 (round to nearest even;
 *       or stochastic rounding, MO_ROUND_STOCHASTIC). NaN stays NaN, +-inf stays +-inf.
 *   int8: codes is uint8_t[n], one 8-bit code per element, and absmax[b] the largest |x| of
 *       block b (elements [256 b, 256 b + 256)). x / absmax[b] is stored in an 8-bit
 *       floating-point map: signed (first moments): a sign bit, 4 exponent bits, 3 mantissa
 *       bits, |x|/absmax from 2^-17 to 1 (codes -120..120 as int8); unsigned (second
 *       moments): 5 exponent bits, 3 mantissa bits, 2^-33 to 1 (codes 0..248). Rounding is to
 *       the nearest code. A block holding NaN or +-inf stores absmax NaN: all of it reads NaN.
 */
typedef enum mo_state_dtype {
    MO_STATE_FLOAT32 = 0,
    MO_STATE_BFLOAT16 = 1,
    MO_STATE_INT8 = 2
} mo_state_dtype;

typedef enum mo_state_rounding {
    MO_ROUND_NEAREST = 0,    /* to nearest, ties to even */
    MO_ROUND_STOCHASTIC = 1  /* bfloat16: up with probability (x - down) / (up - down) */
} mo_state_rounding;

/* Which int8 map a buffer uses (and whether it may be lean at all). */
typedef enum mo_lean_sign {
    MO_LEAN_NONE = 0,      /* the buffer is always float */
    MO_LEAN_SIGNED = 1,    /* first moments, momentum */
    MO_LEAN_UNSIGNED = 2   /* second moments (never negative) */
} mo_lean_sign;

#define MO_LEAN_BLOCK 256

typedef struct mo_lean {
    mo_state_dtype dtype;  /* MO_STATE_BFLOAT16 or MO_STATE_INT8 */
    mo_lean_sign sign;     /* MO_LEAN_SIGNED or MO_LEAN_UNSIGNED (the int8 map) */
    size_t n;              /* elements */
    size_t nblocks;        /* int8: ceil(n / MO_LEAN_BLOCK); 0 for bfloat16 */
    void *codes;           /* bfloat16: uint16_t[n]; int8: uint8_t[n] (int8_t when signed) */
    float *absmax;         /* int8: [nblocks]; NULL for bfloat16 */
} mo_lean;

/* A new buffer of n elements, all 0 (codes 0, absmax 0). `s` is overwritten. */
mo_status mo_lean_init(mo_lean *s, mo_state_dtype dt, mo_lean_sign sign, size_t n);
/* Frees the arrays and leaves `s` empty (n 0, NULL arrays); safe twice. */
void mo_lean_free(mo_lean *s);
/* dst (overwritten) becomes a copy of src. */
mo_status mo_lean_copy(mo_lean *dst, const mo_lean *src);
/* x {n} -> s (n must equal s->n). seed picks the stochastic-rounding stream. */
mo_status mo_lean_encode(mo_lean *s, const float *x, size_t n, mo_state_rounding r, uint64_t seed);
/* s -> x {n} (n must equal s->n). */
mo_status mo_lean_decode(const mo_lean *s, float *x, size_t n);

/* The element codecs (exposed for tests and hosts). */
uint16_t mo_bf16_from_float(float x);         /* round to nearest even; NaN stays (quiet) NaN */
uint16_t mo_bf16_from_float_sr(float x, uint32_t r);  /* stochastic: r's low 16 bits decide */
float mo_bf16_to_float(uint16_t b);           /* exact */
uint8_t mo_q8_from_unit(float u, mo_lean_sign sign);  /* u = x / absmax in [-1, 1] -> code */
float mo_q8_to_unit(uint8_t code, mo_lean_sign sign);  /* exact; NaN for a code past the map */

/*
 * The optimizers with lean state: the same updates as mo_adam_step_prepared, mo_lion_step and
 * mo_sgd_step (w, g float32 tensors; the buffers lean, of w's numel; vmax NULL unless amsgrad).
 * `step` (0 for SGD) seeds stochastic rounding with the buffer's place in the call, so a
 * run resumed from saved state rounds as the uninterrupted one. MO_ERR_DTYPE for float64
 * tensors, MO_ERR_SHAPE when a buffer's n differs from w's numel.
 */
mo_status mo_adam_step_lean(mo_tensor *w, const mo_tensor *g, mo_lean *m, mo_lean *v,
                            mo_lean *vmax, const mo_adam_scalars *k, mo_state_rounding r,
                            int64_t step);
mo_status mo_lion_step_lean(mo_tensor *w, const mo_tensor *g, mo_lean *m, const mo_lion_config *c,
                            mo_state_rounding r, int64_t step);
mo_status mo_sgd_step_lean(mo_tensor *w, const mo_tensor *g, mo_lean *buf, const mo_sgd_config *c,
                           int first, mo_state_rounding r);

/* ------------------------------------------------------------------------ */
/* Optimizer descriptors: every algorithm above, described by name          */
/* ------------------------------------------------------------------------ */

/*
 * Each kernel file (core/optim_<alg>.c) ends with one mo_optim_desc: the names of
 * its hyper-parameters and where they live in its config struct, the names of its
 * per-parameter state, and one step function. A host that keeps options and state
 * by name (the Lua binding, lua/binding/optim.c) drives every algorithm through
 * the descriptor alone, so an algorithm's names are spelled in exactly one place.
 * See docs/design.md "Adding an optimizer".
 */

/* How one option is read into the config struct. */
typedef enum mo_optim_type {
    MO_OPTT_NUMBER = 0,  /* a double field */
    MO_OPTT_BOOL = 1,    /* an int field, 0 or 1 */
    MO_OPTT_PAIR = 2,    /* two consecutive double fields, given as a list of two ("betas") */
    MO_OPTT_CHOICE = 3,  /* an int (enum) field: the index of the name in `choices` */
    MO_OPTT_OFF = 4      /* a double field; "off" (Lua false or nil) is stored as -1 */
} mo_optim_type;

typedef struct mo_optim_option {
    const char *name;             /* the option's key in a param group ("lr", "betas") */
    mo_optim_type type;
    size_t offset;                /* offsetof(<alg> config, field) */
    const char *const *choices;   /* MO_OPTT_CHOICE: names of values 0, 1, ...; NULL-ended */
} mo_optim_option;

/* How a state buffer starts. */
typedef enum mo_optim_init {
    MO_OPTI_ZERO = 0,    /* zeros */
    MO_OPTI_OPTION = 1,  /* every element = the number option named by `arg` */
    MO_OPTI_KERNEL = 2,  /* the step function fills it (it is told by `fresh`) */
    MO_OPTI_PARAM = 3    /* a copy of the parameter */
} mo_optim_init;

/* A per-parameter state tensor of the parameter's shape. */
typedef struct mo_optim_buffer {
    const char *name;     /* the state key ("exp_avg") */
    const char *when;     /* NULL: always kept; else kept while that option is non-zero / true */
    mo_optim_init init;
    const char *arg;      /* MO_OPTI_OPTION: the option holding the initial value */
    mo_lean_sign lean;    /* MO_LEAN_NONE (0): always float; else the int8 map it may be kept in */
} mo_optim_buffer;

/* A per-parameter state number (NAdam's mu_product, LAMB's trust_ratio). */
typedef struct mo_optim_scalar {
    const char *name;
    double init;          /* its value in a new state */
    int input;            /* 1: the step reads it (a loaded state must have it, finite) */
} mo_optim_scalar;

#define MO_OPTIM_MAX_BUFFERS 4
#define MO_OPTIM_MAX_SCALARS 2

/* One parameter's step as the descriptor's step function sees it. */
typedef struct mo_optim_call {
    mo_tensor *w;                          /* the parameter (written) */
    const mo_tensor *g;                    /* its gradient, of w's shape */
    mo_tensor *buf[MO_OPTIM_MAX_BUFFERS];  /* desc->buffers order; NULL when not kept */
    int fresh[MO_OPTIM_MAX_BUFFERS];       /* 1: buf[i] was made for this step */
    int64_t step;                          /* the 1-based step being taken */
    double scalar[MO_OPTIM_MAX_SCALARS];   /* desc->scalars order: in the state's values, out the new ones */
    void *cache;                           /* desc->cache_size bytes, zeroed per config and call */
    /* Lean state (state_dtype bfloat16 / int8): lean[i] replaces buf[i] (then NULL) for the
     * buffers the descriptor marks; all NULL for float state. Only descriptors with such
     * buffers see it set. rounding: how bfloat16 state is stored. */
    mo_lean *lean[MO_OPTIM_MAX_BUFFERS];
    mo_state_rounding rounding;
} mo_optim_call;

typedef struct mo_optim_desc {
    const char *name;                  /* "adam": what a host looks it up by */
    size_t config_size;                /* sizeof(<alg> config) */
    void (*defaults)(void *config);
    mo_status (*check)(const void *config);   /* MO_ERR_ARG: a hyper-parameter out of domain */
    const mo_optim_option *options;
    size_t noptions;
    const mo_optim_buffer *buffers;
    size_t nbuffers;                   /* <= MO_OPTIM_MAX_BUFFERS */
    const mo_optim_scalar *scalars;
    size_t nscalars;                   /* <= MO_OPTIM_MAX_SCALARS */
    int counts_steps;                  /* 1: the state keeps "step" (every algorithm but SGD) */
    size_t cache_size;                 /* scratch the step function may keep across params */
    /* One step of one parameter; config already checked, buffers of w's shape. */
    mo_status (*step)(const void *config, mo_optim_call *call);
} mo_optim_desc;

/* The descriptor named `name`, or NULL. */
const mo_optim_desc *mo_optim_find(const char *name);
/* The i-th descriptor (0-based), or NULL past the last. */
const mo_optim_desc *mo_optim_at(size_t i);

/* ------------------------------------------------------------------------ */
/* Gradient utilities                                                       */
/* ------------------------------------------------------------------------ */

/* *all_finite = 1 when no element is NaN or +-inf (1 for an empty array). */
mo_status mo_all_finite_array(const float *x, size_t n, int *all_finite);
mo_status mo_all_finite(const mo_tensor *t, int *all_finite);

/*
 * Global L2 norm over n tensors (accumulated in double); when it exceeds
 * max_norm, every tensor is multiplied by max_norm / (norm + 1e-6), as
 * PyTorch's clip_grad_norm_ (a NaN norm scales by NaN, as PyTorch does).
 * *total_norm (may be NULL) receives the norm before clipping. NULL entries
 * in ts are skipped. max_norm must be >= 0 and not NaN.
 */
mo_status mo_clip_grad_norm(mo_tensor *const *ts, size_t n, double max_norm, double *total_norm);

/*
 * The one gradient-norm clipping (mo_clip_grad_norm is the PyTorch formula of this). The
 * norm is the L2 norm over every element of the n tensors, accumulated in double.
 *   MO_CLIP_PYTORCH (torch.nn.utils.clip_grad_norm_): coef = max_norm/(norm + 1e-6),
 *       applied when coef < 1. A NaN norm gives coef NaN (every element NaN), an
 *       infinite norm coef 0 (finite elements 0, infinite ones NaN), as PyTorch.
 *   MO_CLIP_GLOBAL (TF's tf.clip_by_global_norm, used by BERT's create_optimizer):
 *       coef = max_norm / max(norm, max_norm), applied when norm > max_norm. A NaN or
 *       infinite norm sets every element to NaN, as TF.
 * error_if_nonfinite != 0: a NaN or infinite norm returns MO_ERR_ARG, changing nothing
 * (*total_norm is still set). max_norm must be >= 0 and not NaN.
 */
typedef enum mo_clip_formula {
    MO_CLIP_PYTORCH = 0,
    MO_CLIP_GLOBAL = 1
} mo_clip_formula;

mo_status mo_clip_grad_norm_ex(mo_tensor *const *ts, size_t n, double max_norm,
                               mo_clip_formula formula, int error_if_nonfinite,
                               double *total_norm);

/* x = clamp(x, -clip, clip) elementwise (NaN stays NaN); clip >= 0. */
mo_status mo_clip_grad_value(mo_tensor *t, double clip);

/* y += alpha * x (same shape; for L-BFGS and the torch7 layer). */
mo_status mo_axpy(mo_tensor *y, double alpha, const mo_tensor *x);

#ifdef __cplusplus
}
#endif

#endif /* MOONOPT_OPTIM_H */
