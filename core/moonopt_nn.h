/*
 * moonopt_nn.h - the neural-network kernels of moonopt's core (included by moonopt.h).
 *
 * The forward and backward passes of the layers and losses that lua/moonopt/nn builds
 * on, as plain functions on mo_tensor handles, callable from any C program:
 *
 *     // y = relu(x W^T + b), then the gradients for a loss gradient g
 *     mo_nn_linear_forward(&y, &x, &w, &b, MO_ACT_RELU, 0.0f);
 *     mo_nn_act_backward(&gz, &g, &y, MO_ACT_RELU, 0.0f);      // gz = g * relu'(z)
 *     mo_nn_linear_backward(&dx, &dw, &db, &gz, &x, &w);       // dw += gz^T x, ...
 *
 * Conventions (on top of moonopt.h's):
 *   - Shapes are written {B, in} etc. in the comments; B is the batch size.
 *   - Every tensor an elementwise kernel reads or writes must be contiguous
 *     (MO_ERR_LAYOUT otherwise); only the matrix operands of the Linear
 *     functions (x, w, dw) may be strided, since they go through mo_matmul.
 *     The Lua binding copies strided inputs to contiguous ones first.
 *   - Outputs are existing tensors of the right shape (MO_ERR_SHAPE otherwise).
 *     "+=" in a comment means the kernel ACCUMULATES into that output (parameter
 *     gradients); everything else is overwritten.
 *   - An output may be the very same tensor as the input it replaces where a
 *     comment says so (in place); any other overlap is MO_ERR_ARG.
 *   - Inputs are validated before anything is written: on error no output has
 *     changed (except where a comment says otherwise).
 *   - Both dtypes (docs/design.md "Two dtypes"): the tensor operands of one call
 *     share a dtype (MO_ERR_DTYPE otherwise), except cross entropy's targets (an
 *     index tensor, either dtype). Scalars (slope, eps, p, label_smoothing) are
 *     double and are rounded to float once per call for float32 tensors, so
 *     float32 results are those of the float32-only kernels.
 */
#ifndef MOONOPT_NN_H
#define MOONOPT_NN_H

#include <stddef.h>

#include "moonopt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Elementwise activations. `slope` is LeakyReLU's negative slope (ignored by the others). */
typedef enum mo_nn_act {
    MO_ACT_NONE = 0,    /* identity */
    MO_ACT_RELU,        /* max(x, 0) */
    MO_ACT_LEAKY_RELU,  /* x >= 0 ? x : slope * x */
    MO_ACT_TANH,
    MO_ACT_SIGMOID,     /* 1 / (1 + exp(-x)), evaluated without overflow */
    MO_ACT_GELU,        /* x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), PyTorch's default */
    MO_ACT_GELU_TANH,   /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    MO_ACT_COUNT_
} mo_nn_act;

/* How a loss combines its per-element terms. */
typedef enum mo_nn_reduction {
    MO_NN_MEAN = 0,     /* average (over the batch for cross entropy, over all elements otherwise) */
    MO_NN_SUM
} mo_nn_reduction;

/* "relu", "tanh", ... ("unknown" for a value out of range). */
const char *mo_nn_act_name(mo_nn_act act);

/*
 * Whether mo_nn_act_backward needs the activation's OUTPUT (1: tanh, sigmoid)
 * or its INPUT (0: leaky_relu, gelu, gelu_tanh). For none and relu either
 * works (relu(z) > 0 exactly when z > 0), and 1 is returned.
 */
int mo_nn_act_uses_output(mo_nn_act act);

/* y = act(x); x, y: the same shape. y may be x (in place). */
mo_status mo_nn_act_forward(mo_tensor *y, const mo_tensor *x, mo_nn_act act, double slope);

/*
 * dx = g * act'(.), where `saved` is the forward's output or input as
 * mo_nn_act_uses_output says. dx, g, saved: the same shape; dx may be g.
 */
mo_status mo_nn_act_backward(mo_tensor *dx, const mo_tensor *g, const mo_tensor *saved,
                             mo_nn_act act, double slope);

/* In place: y[i][j] = act(y[i][j] + b[j]); y {rows, cols}, b {cols} or NULL (no bias). */
mo_status mo_nn_bias_act(mo_tensor *y, const mo_tensor *b, mo_nn_act act, double slope);

/* acc[j] += sum over i of g[i][j]; g {rows, cols} (any strides), acc {cols}. */
mo_status mo_nn_colsum_acc(mo_tensor *acc, const mo_tensor *g);

/*
 * Linear layer (PyTorch's layout): y = act(x w^T + b), one mo_matmul and one
 * fused pass for bias and activation. x {B, in}, w {out, in}, b {out} or NULL,
 * y {B, out} (contiguous, not overlapping x, w or b).
 */
mo_status mo_nn_linear_forward(mo_tensor *y, const mo_tensor *x, const mo_tensor *w,
                               const mo_tensor *b, mo_nn_act act, double slope);

/*
 * Linear backward for g = dLoss/dy {B, out} (after any activation's backward):
 *   dw {out, in} += g^T x,   db {out} += column sums of g,   dx {B, in} = g w.
 * Any of dx, dw, db may be NULL to skip that product. dx must not overlap the
 * other operands. Shapes and layouts are checked before anything is written;
 * after that only mo_matmul itself can fail (out of memory while copying a
 * strided operand), and dx is computed first so that such a failure never
 * leaves dw accumulated without db.
 */
mo_status mo_nn_linear_backward(mo_tensor *dx, mo_tensor *dw, mo_tensor *db, const mo_tensor *g,
                                const mo_tensor *x, const mo_tensor *w);

/*
 * Softmax along dimension `dim` (0-based) of x (any ndim >= 1):
 *   y = exp(x - max) / sum exp(x - max)      (max-subtracted, so large inputs stay finite)
 * y may be x (in place).
 */
mo_status mo_nn_softmax_forward(mo_tensor *y, const mo_tensor *x, int dim);

/* dx = y * (g - sum_dim(g * y)) for y = softmax(x) along dim; dx may be g. */
mo_status mo_nn_softmax_backward(mo_tensor *dx, const mo_tensor *g, const mo_tensor *y, int dim);

/*
 * Layer normalization over the last dimension (size D) of x; R = numel / D rows:
 *   y = (x - mean) * rstd * gamma + beta,   rstd = 1 / sqrt(var + eps)   (biased var)
 * gamma, beta {D}, either may be NULL (gamma 1, beta 0). mean and rstd: R elements each
 * (any shape), written for the backward pass. eps > 0. y may be x (in place).
 * Statistics are accumulated in double.
 */
mo_status mo_nn_layernorm_forward(mo_tensor *y, mo_tensor *mean, mo_tensor *rstd,
                                  const mo_tensor *x, const mo_tensor *gamma,
                                  const mo_tensor *beta, double eps);

/*
 * Its backward for g = dLoss/dy (shape of x), with xhat = (x - mean) * rstd:
 *   dx = rstd * (g*gamma - mean_D(g*gamma) - xhat * mean_D(g*gamma * xhat))
 *   dgamma {D} += sum over rows of g * xhat,   dbeta {D} += sum over rows of g
 * gamma NULL means gamma = 1; dgamma or dbeta may be NULL to skip them. dx may be
 * g (in place) and must not overlap the other operands.
 */
mo_status mo_nn_layernorm_backward(mo_tensor *dx, mo_tensor *dgamma, mo_tensor *dbeta,
                                   const mo_tensor *g, const mo_tensor *x,
                                   const mo_tensor *mean, const mo_tensor *rstd,
                                   const mo_tensor *gamma);

/*
 * Inverted dropout: mask[i] = 0 with probability p, else 1/(1-p); y = x * mask.
 * x, y, mask: the same shape; y may be x. 0 <= p <= 1: p == 0 keeps everything
 * and p == 1 zeroes everything, neither draws random numbers. Otherwise one
 * mo_rng_next() per two elements: element 2k uses bits 40..63 and element 2k+1
 * bits 16..39 of the k-th draw as a 24-bit uniform u, and is kept when
 * u >= ceil(p * 2^24). The same generator state gives the same mask everywhere.
 */
mo_status mo_nn_dropout_forward(mo_tensor *y, mo_tensor *mask, const mo_tensor *x, double p,
                                mo_rng *rng);

/* dx = g * mask; all the same shape, dx may be g. */
mo_status mo_nn_dropout_backward(mo_tensor *dx, const mo_tensor *g, const mo_tensor *mask);

/*
 * Losses. Each writes the loss (accumulated in double) to *loss and, when grad
 * is not NULL, dLoss/dout into grad (same shape as out; may not overlap the
 * inputs). One pass over the inputs computes both.
 */

/* Mean (or sum) of (out - target)^2; grad = 2 (out - target) / N (N = 1 for SUM). */
mo_status mo_nn_mse(double *loss, mo_tensor *grad, const mo_tensor *out, const mo_tensor *target,
                    mo_nn_reduction red);

/*
 * Binary cross entropy on logits x with targets y (same shape), the stable form
 *   l = max(x, 0) - x y + log(1 + exp(-|x|)),   grad = (sigmoid(x) - y) / N.
 */
mo_status mo_nn_bce_logits(double *loss, mo_tensor *grad, const mo_tensor *x,
                           const mo_tensor *target, mo_nn_reduction red);

/*
 * Cross entropy of logits {B, C} against class indices (log-softmax and
 * negative log-likelihood fused, max-subtracted so logits of any size stay
 * finite). target: B floats (any shape with numel B, contiguous), each a whole
 * number in base .. base + C - 1 (base 0 for C callers, 1 for Lua). With label
 * smoothing e in [0, 1] (PyTorch's definition) the per-row loss is
 *   l = (1 - e) * (lse - x[y]) + (e / C) * sum_c (lse - x[c]),  lse = log sum_c exp x[c]
 * averaged over the B rows (MO_NN_MEAN) or summed, and
 *   grad[i][c] = (softmax(x_i)[c] - (1 - e) [c == y_i] - e / C) / B   (/ 1 for SUM).
 * A target that is not such a whole number returns MO_ERR_RANGE and, when
 * bad_pos is not NULL, its 0-based position in *bad_pos; nothing is written.
 */
mo_status mo_nn_cross_entropy(double *loss, mo_tensor *grad, const mo_tensor *logits,
                              const mo_tensor *target, int base, double label_smoothing,
                              mo_nn_reduction red, size_t *bad_pos);

#ifdef __cplusplus
}
#endif

#endif /* MOONOPT_NN_H */
