/*
 * moonopt_conv.h - convolution, pooling and batch-norm kernels of moonopt's core
 * (included by moonopt.h); docs/design.md "Convolutions".
 *
 *     mo_conv2d_args a = {.stride = {1, 1}, .padding = {1, 1}, .dilation = {1, 1}, .groups = 1};
 *     size_t oh, ow;
 *     mo_conv2d_out_size(32, 3, 1, 1, 1, &oh);              // 32
 *     mo_conv2d_forward(&y, &x, &w, &b, &a);                // y {N, O, OH, OW}
 *     mo_conv2d_backward(&gx, &gw, &gb, &gy, &x, &w, &a);   // gw += ..., gb += ...
 *
 * Conventions (on top of moonopt.h's):
 *   - Layout NCHW; weights {O, C/groups, kH, kW} (PyTorch's). Index pairs are
 *     {height, width}.
 *   - Both dtypes; every tensor of one call shares x's dtype (MO_ERR_DTYPE).
 *   - Inputs and outputs must be contiguous (MO_ERR_LAYOUT), except the
 *     accumulated parameter gradients (gw, gb, dweight, dbias: any strides).
 *   - Outputs exist already with the right shape (MO_ERR_SHAPE otherwise) and do
 *     not overlap the inputs (MO_ERR_ARG). "+=" means the kernel ACCUMULATES into
 *     that output (a parameter's gradient); everything else is overwritten.
 *   - Everything is validated, and every scratch buffer allocated, before the
 *     first write: on error no output has changed.
 *   - Ceil mode (PyTorch's ceil_mode=True) is not supported.
 */
#ifndef MOONOPT_CONV_H
#define MOONOPT_CONV_H

#include <stddef.h>

#include "moonopt.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The output size of a convolution or pooling window along one dimension:
 *   out = floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1.
 * MO_ERR_ARG for k, stride or dil of 0; MO_ERR_SHAPE when the dilated kernel
 * dil (k - 1) + 1 is larger than the padded input in + 2 pad (out would be < 1).
 */
mo_status mo_conv2d_out_size(size_t in, size_t k, size_t stride, size_t pad, size_t dil,
                             size_t *out);

typedef struct mo_conv2d_args {
    size_t stride[2];    /* >= 1 */
    size_t padding[2];   /* zeros added on both sides */
    size_t dilation[2];  /* >= 1 */
    size_t groups;       /* >= 1, divides C and O */
} mo_conv2d_args;

/*
 * y = conv2d(x, w) + b: x {N, C, H, W}, w {O, C/groups, kH, kW}, b {O} or NULL,
 * y {N, O, OH, OW} with OH, OW from mo_conv2d_out_size. im2col + gemm per image
 * and group (mo_matmul: CBLAS when built with it); a 1x1 stride-1 unpadded
 * convolution multiplies x directly. MO_ERR_SHAPE for a channel count that is
 * not w's C/groups times groups or a wrong y; MO_ERR_ARG for bad args.
 */
mo_status mo_conv2d_forward(mo_tensor *y, const mo_tensor *x, const mo_tensor *w,
                            const mo_tensor *b, const mo_conv2d_args *a);

/*
 * Its backward for gy = dLoss/dy {N, O, OH, OW}:
 *   gw {O, C/groups, kH, kW} += dLoss/dw,   gb {O} += sums of gy over N, OH, OW,
 *   gx {N, C, H, W} = dLoss/dx (overwritten).
 * Any of gx, gw, gb may be NULL to skip it.
 */
mo_status mo_conv2d_backward(mo_tensor *gx, mo_tensor *gw, mo_tensor *gb, const mo_tensor *gy,
                             const mo_tensor *x, const mo_tensor *w, const mo_conv2d_args *a);

/* ---- pooling (core/pooling.c) ---- */

typedef struct mo_pool2d_args {
    size_t kernel[2];        /* >= 1 */
    size_t stride[2];        /* >= 1 */
    size_t padding[2];       /* <= kernel / 2 (PyTorch's rule) */
    int count_include_pad;   /* avg only: divide by the window including padding */
} mo_pool2d_args;

/*
 * Max pooling over x {N, C, H, W} (or {C, H, W}: any ndim >= 3, the last two
 * pooled) into y {..., OH, OW}; padding counts as -inf. idx (y's shape and
 * dtype) receives, for each output, the position of its maximum within its
 * (n, c) plane, flattened row-major (h * W + w) and counted from index_base
 * (0 from C, 1 from Lua). NaN wins (the last NaN of a window, as PyTorch).
 * MO_ERR_RANGE for float32 with H * W > 2^24 (positions no longer exact).
 */
mo_status mo_max_pool2d_forward(mo_tensor *y, mo_tensor *idx, const mo_tensor *x,
                                const mo_pool2d_args *a, size_t index_base);

/* gx (x's shape, overwritten) = zeros, then gx[plane][idx] += gy for every output. An idx
 * entry outside the plane (it comes from the caller) gives MO_ERR_RANGE, nothing written. */
mo_status mo_max_pool2d_backward(mo_tensor *gx, const mo_tensor *gy, const mo_tensor *idx,
                                 size_t index_base);

/*
 * Average pooling (PyTorch's divisor): each window is clipped to the padded input
 * for the count_include_pad divisor, and to the input itself otherwise.
 */
mo_status mo_avg_pool2d_forward(mo_tensor *y, const mo_tensor *x, const mo_pool2d_args *a);
mo_status mo_avg_pool2d_backward(mo_tensor *gx, const mo_tensor *gy, const mo_pool2d_args *a);

/*
 * Adaptive average pooling to y's last two sizes {oh, ow} (>= 1): output i along a
 * dimension of size H averages rows floor(i H / oh) .. ceil((i + 1) H / oh) - 1.
 */
mo_status mo_adaptive_avg_pool2d_forward(mo_tensor *y, const mo_tensor *x);
mo_status mo_adaptive_avg_pool2d_backward(mo_tensor *gx, const mo_tensor *gy);

/* ---- batch normalization (core/batchnorm.c) ---- */

/*
 * Batch normalization over x {N, C}, {N, C, L} or {N, C, H, W} (any ndim >= 2,
 * channel dim 1): per channel c, over the M = N * L... values of that channel,
 *   y = (x - mean) * invstd * weight[c] + bias[c].
 * Training: mean and the biased variance of the batch (accumulated in double),
 * invstd = 1 / sqrt(var + eps); running_mean and running_var (either may be NULL,
 * then neither is updated) become (1 - momentum) r + momentum s, s being the mean
 * and the UNBIASED variance (PyTorch's); M must be > 1 (MO_ERR_SHAPE).
 * Evaluation: mean = running_mean, invstd = 1 / sqrt(running_var + eps) (both
 * needed, MO_ERR_ARG otherwise). save_mean, save_invstd {C} receive the mean and
 * invstd used, for the backward. weight, bias {C} or NULL (1 and 0). eps > 0,
 * 0 <= momentum <= 1.
 */
mo_status mo_batch_norm_forward(mo_tensor *y, mo_tensor *save_mean, mo_tensor *save_invstd,
                                const mo_tensor *x, const mo_tensor *weight,
                                const mo_tensor *bias, mo_tensor *running_mean,
                                mo_tensor *running_var, int training, double momentum,
                                double eps);

/*
 * Its backward for gy (x's shape), with xhat = (x - save_mean) * save_invstd:
 *   dweight {C} += sum gy * xhat,   dbias {C} += sum gy,
 *   gx = weight * invstd * (gy - mean(gy) - xhat * mean(gy * xhat))   (training),
 *   gx = weight * invstd * gy                                          (evaluation).
 * Any of gx, dweight, dbias may be NULL.
 */
mo_status mo_batch_norm_backward(mo_tensor *gx, mo_tensor *dweight, mo_tensor *dbias,
                                 const mo_tensor *x, const mo_tensor *gy,
                                 const mo_tensor *weight, const mo_tensor *save_mean,
                                 const mo_tensor *save_invstd, int training);

#ifdef __cplusplus
}
#endif

#endif /* MOONOPT_CONV_H */
