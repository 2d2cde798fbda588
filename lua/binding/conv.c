/*
 * conv.c - Lua bindings of the convolution, pooling and batch-norm kernels
 * (core/moonopt_conv.h): core.conv2d_forward, core.max_pool2d_forward, ... with
 * positional arguments, for the nn modules and mo.nn.functional to build on.
 *
 * Conventions shared by these functions:
 *   - Every size and argument is checked here, before anything is allocated,
 *     with a message naming the op, the argument and the value or shapes; the
 *     core checks again and its status is only a last resort.
 *   - Strided tensor inputs are copied to contiguous ones (the kernels need
 *     NCHW-contiguous planes); parameter gradients (gw, gb) are written in
 *     place whatever their strides, ACCUMULATED (+=), since callers pass a
 *     parameter's .grad, possibly a view into one flat gradient buffer.
 *   - Results are new tensors. All allocations happen first; then every tensor
 *     argument is checked again (mo__recheck: a finalizer run by an allocation
 *     may have freed or reshaped one) before the core call.
 *   - max pooling's indices: a tensor of y's shape and dtype holding, for each
 *     output, the 1-based flat position h * W + w + 1 of its maximum within its
 *     (n, c) plane of x.
 */
#include "binding.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* An integer argument >= min (and <= MO__MAX_SIZE), named `what` in messages. */
static size_t check_size(lua_State *L, int idx, const char *fname, const char *what,
                         lua_Integer min)
{
    lua_Integer v = mo__checkinteger(L, idx, fname, what);
    if (v < min || v > MO__MAX_SIZE)
        mo__argerror(L, idx, fname, "%s must be %s, got %I", what,
                     min > 0 ? "a positive integer" : "a non-negative integer", v);
    return (size_t)v;
}

/* The live tensor at idx, with x's dtype (x NULL: any). */
static mo_tensor *check_t(lua_State *L, int idx, const char *fname, const mo_tensor *x)
{
    mo_tensor *t = mo__checkarg(L, idx, fname);
    if (x) mo__same_dtype(L, fname, x, t);
    return t;
}

/* check_t for an optional argument (nil: NULL). */
static mo_tensor *opt_t(lua_State *L, int idx, const char *fname, const mo_tensor *x)
{
    return lua_isnoneornil(L, idx) ? NULL : check_t(L, idx, fname, x);
}

/* Replaces a strided tensor at idx by a contiguous copy (allocates: callers recheck). */
static void make_contig(lua_State *L, int idx, const char *fname)
{
    mo_tensor *t = mo__checkarg(L, idx, fname);
    if (mo_tensor_is_contiguous(t)) return;
    mo_tensor *c = mo__newtensor_dtype(L, t->ndim, t->shape, t->dtype, 0, fname);
    t = mo__recheck(L, idx, fname, c->ndim, c->shape);
    mo__check(L, mo_copy(c, t), fname);
    lua_replace(L, idx);
}

/* Raises "fname: <what> must be <n>-d <layout>, got <shape>" unless t has ndim dims. */
static void need_ndim(lua_State *L, const char *fname, const char *what, const mo_tensor *t,
                      int ndim, const char *layout)
{
    if (t->ndim == ndim) return;
    char s[MO__SHAPE_BUF];
    luaL_error(L, "%s: %s must be %d-d %s, got %s", fname, what, ndim, layout,
               mo__shapestr(t, s));
}

/* Raises "fname: <what> must have shape <want>, got <shape>" unless t has that shape. */
static void need_shape(lua_State *L, const char *fname, const char *what, const mo_tensor *t,
                       int ndim, const size_t *shape)
{
    if (mo__shape_is(t, ndim, shape)) return;
    char s[MO__SHAPE_BUF], w[MO__SHAPE_BUF];
    luaL_error(L, "%s: %s must have shape %s, got %s", fname, what,
               mo__shapestr_raw(ndim, shape, w), mo__shapestr(t, s));
}

/*
 * One output size of a window (conv or pooling): raises a message naming the
 * input, the window and the size it would have when the (dilated) kernel is
 * larger than the padded input, i.e. the output would be empty or negative.
 */
static size_t out_size(lua_State *L, const char *fname, const char *dim, const mo_tensor *x,
                       size_t in, size_t k, size_t s, size_t p, size_t d)
{
    size_t o;
    mo_status st = mo_conv2d_out_size(in, k, s, p, d, &o);
    if (st == MO_ERR_SHAPE) {
        char sx[MO__SHAPE_BUF];
        lua_Integer span = (lua_Integer)(d * (k - 1) + 1), padded = (lua_Integer)(in + 2 * p);
        lua_Integer would = (padded - span) / (lua_Integer)s + 1;
        if (padded - span < 0) would = -((span - padded + (lua_Integer)s - 1) / (lua_Integer)s) + 1;
        luaL_error(L, "%s: the kernel's %s extent %I (kernel %I, dilation %I) is larger than "
                   "the padded input %I (size %I + 2 * padding %I) of input %s: the output %s "
                   "would be %I", fname, dim, span, (lua_Integer)k, (lua_Integer)d, padded,
                   (lua_Integer)in, (lua_Integer)p, mo__shapestr(x, sx), dim, would);
    }
    mo__check(L, st, fname);
    return o;
}

/* ------------------------------------------------------------------------ */
/* Conv2d                                                                   */
/* ------------------------------------------------------------------------ */

/* Reads stride, padding, dilation, groups at first .. first+6. */
static void read_conv_args(lua_State *L, int first, const char *fname, mo_conv2d_args *a)
{
    a->stride[0] = check_size(L, first, fname, "stride_h", 1);
    a->stride[1] = check_size(L, first + 1, fname, "stride_w", 1);
    a->padding[0] = check_size(L, first + 2, fname, "padding_h", 0);
    a->padding[1] = check_size(L, first + 3, fname, "padding_w", 0);
    a->dilation[0] = check_size(L, first + 4, fname, "dilation_h", 1);
    a->dilation[1] = check_size(L, first + 5, fname, "dilation_w", 1);
    a->groups = check_size(L, first + 6, fname, "groups", 1);
}

/* Checks x {N, C, H, W} against w {O, C/groups, kH, kW} and the args; the output shape
 * {N, O, OH, OW} into ys. */
static void conv_shapes(lua_State *L, const char *fname, const mo_tensor *x, const mo_tensor *w,
                        const mo_conv2d_args *a, size_t *ys)
{
    need_ndim(L, fname, "input", x, 4, "{N, C, H, W}");
    need_ndim(L, fname, "weight", w, 4, "{out_channels, in_channels/groups, kH, kW}");
    char sx[MO__SHAPE_BUF], sw[MO__SHAPE_BUF];
    const size_t C = x->shape[1], O = w->shape[0], G = a->groups;
    if (C % G != 0 || O % G != 0)
        luaL_error(L, "%s: groups %I must divide both the input channels %I and the output "
                   "channels %I", fname, (lua_Integer)G, (lua_Integer)C, (lua_Integer)O);
    if (w->shape[1] * G != C)
        luaL_error(L, "%s: input %s has %I channels, but weight %s with groups %I expects "
                   "%I (weight's dim 2 times groups)", fname, mo__shapestr(x, sx),
                   (lua_Integer)C, mo__shapestr(w, sw), (lua_Integer)G,
                   (lua_Integer)(w->shape[1] * G));
    ys[0] = x->shape[0];
    ys[1] = O;
    ys[2] = out_size(L, fname, "height", x, x->shape[2], w->shape[2], a->stride[0],
                     a->padding[0], a->dilation[0]);
    ys[3] = out_size(L, fname, "width", x, x->shape[3], w->shape[3], a->stride[1],
                     a->padding[1], a->dilation[1]);
}

/* conv2d_forward(x, w, b|nil, sh, sw, ph, pw, dh, dw, groups) -> y {N, O, OH, OW} */
static int l_conv2d_forward(lua_State *L)
{
    static const char fname[] = "conv2d_forward";
    lua_settop(L, 10);
    mo_tensor *x = check_t(L, 1, fname, NULL);
    mo_tensor *w = check_t(L, 2, fname, x);
    mo_tensor *b = opt_t(L, 3, fname, x);
    mo_conv2d_args a;
    read_conv_args(L, 4, fname, &a);
    size_t ys[4];
    conv_shapes(L, fname, x, w, &a, ys);
    if (b) need_shape(L, fname, "bias", b, 1, &ys[1]);
    const size_t xs[4] = {x->shape[0], x->shape[1], x->shape[2], x->shape[3]};
    size_t wsh[4];
    memcpy(wsh, w->shape, sizeof wsh);
    make_contig(L, 1, fname);
    make_contig(L, 2, fname);
    mo_tensor *y = mo__newtensor_dtype(L, 4, ys, x->dtype, 0, fname);
    x = mo__recheck(L, 1, fname, 4, xs);
    w = mo__recheck(L, 2, fname, 4, wsh);
    if (b) b = mo__recheck(L, 3, fname, 1, &ys[1]);
    mo__check(L, mo_conv2d_forward(y, x, w, b, &a), fname);
    return 1;
}

/*
 * conv2d_backward(x, w, gy, sh, sw, ph, pw, dh, dw, groups, gw|nil, gb|nil, need_gx)
 *   -> gx or nil. gw += dL/dw, gb += dL/db (in place, any strides).
 */
static int l_conv2d_backward(lua_State *L)
{
    static const char fname[] = "conv2d_backward";
    lua_settop(L, 13);
    mo_tensor *x = check_t(L, 1, fname, NULL);
    mo_tensor *w = check_t(L, 2, fname, x);
    mo_tensor *gy = check_t(L, 3, fname, x);
    mo_conv2d_args a;
    read_conv_args(L, 4, fname, &a);
    mo_tensor *gw = opt_t(L, 11, fname, x);
    mo_tensor *gb = opt_t(L, 12, fname, x);
    const int need_gx = lua_toboolean(L, 13);
    size_t ys[4];
    conv_shapes(L, fname, x, w, &a, ys);
    need_shape(L, fname, "grad_output", gy, 4, ys);
    size_t xs[4], wsh[4];
    memcpy(xs, x->shape, sizeof xs);
    memcpy(wsh, w->shape, sizeof wsh);
    if (gw) need_shape(L, fname, "grad_weight", gw, 4, wsh);
    if (gb) need_shape(L, fname, "grad_bias", gb, 1, &ys[1]);
    make_contig(L, 1, fname);
    make_contig(L, 2, fname);
    make_contig(L, 3, fname);
    mo_tensor *gx = NULL;
    if (need_gx) gx = mo__newtensor_dtype(L, 4, xs, x->dtype, 0, fname);
    else lua_pushnil(L);
    x = mo__recheck(L, 1, fname, 4, xs);
    w = mo__recheck(L, 2, fname, 4, wsh);
    gy = mo__recheck(L, 3, fname, 4, ys);
    if (gw) gw = mo__recheck(L, 11, fname, 4, wsh);
    if (gb) gb = mo__recheck(L, 12, fname, 1, &ys[1]);
    mo__check(L, mo_conv2d_backward(gx, gw, gb, gy, x, w, &a), fname);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Pooling                                                                  */
/* ------------------------------------------------------------------------ */

/* x must be 3-d {C, H, W} or 4-d {N, C, H, W}. */
static void need_planes(lua_State *L, const char *fname, const char *what, const mo_tensor *t)
{
    if (t->ndim == 3 || t->ndim == 4) return;
    char s[MO__SHAPE_BUF];
    luaL_error(L, "%s: %s must be 3-d {C, H, W} or 4-d {N, C, H, W}, got %s", fname, what,
               mo__shapestr(t, s));
}

/* Reads kernel, stride, padding at first .. first+5 (padding at most half the kernel,
 * PyTorch's rule: every window then holds at least one input element). */
static void read_pool_args(lua_State *L, int first, const char *fname, mo_pool2d_args *a)
{
    static const char *const names[6] = {"kernel_h", "kernel_w", "stride_h", "stride_w",
                                         "padding_h", "padding_w"};
    size_t v[6];
    for (int i = 0; i < 6; i++) v[i] = check_size(L, first + i, fname, names[i], i < 4 ? 1 : 0);
    for (int i = 0; i < 2; i++) {
        a->kernel[i] = v[i];
        a->stride[i] = v[2 + i];
        a->padding[i] = v[4 + i];
        if (v[4 + i] > v[i] / 2)
            mo__argerror(L, first + 4 + i, fname, "%s must be at most half of %s, got %s = %I "
                         "and %s = %I", names[4 + i], names[i], names[4 + i],
                         (lua_Integer)v[4 + i], names[i], (lua_Integer)v[i]);
    }
    a->count_include_pad = 0;
}

/* The pooled shape of x under a into ys (x's leading dims, then OH, OW). */
static void pool_shape(lua_State *L, const char *fname, const mo_tensor *x, const mo_pool2d_args *a,
                       size_t *ys)
{
    const int n = x->ndim;
    for (int d = 0; d < n - 2; d++) ys[d] = x->shape[d];
    if (x->shape[n - 2] == 0 || x->shape[n - 1] == 0) {
        char s[MO__SHAPE_BUF];
        luaL_error(L, "%s: input %s has an empty plane", fname, mo__shapestr(x, s));
    }
    ys[n - 2] = out_size(L, fname, "height", x, x->shape[n - 2], a->kernel[0], a->stride[0],
                         a->padding[0], 1);
    ys[n - 1] = out_size(L, fname, "width", x, x->shape[n - 1], a->kernel[1], a->stride[1],
                         a->padding[1], 1);
}

/* max_pool2d_forward(x, kh, kw, sh, sw, ph, pw) -> y, idx (1-based positions in the plane) */
static int l_max_pool2d_forward(lua_State *L)
{
    static const char fname[] = "max_pool2d_forward";
    lua_settop(L, 7);
    mo_tensor *x = check_t(L, 1, fname, NULL);
    mo_pool2d_args a;
    read_pool_args(L, 2, fname, &a);
    need_planes(L, fname, "input", x);
    const int nd = x->ndim;
    size_t xs[4], ys[4];
    memcpy(xs, x->shape, sizeof xs);
    pool_shape(L, fname, x, &a, ys);
    if (x->dtype == MO_FLOAT32 && xs[nd - 2] * xs[nd - 1] > ((size_t)1 << 24))
        luaL_error(L, "%s: a float32 input's plane of %I elements is too large for exact "
                   "float32 indices (at most 2^24; use float64)", fname,
                   (lua_Integer)(xs[nd - 2] * xs[nd - 1]));
    make_contig(L, 1, fname);
    mo_tensor *y = mo__newtensor_dtype(L, nd, ys, x->dtype, 0, fname);
    mo_tensor *idx = mo__newtensor_dtype(L, nd, ys, x->dtype, 0, fname);
    x = mo__recheck(L, 1, fname, nd, xs);
    mo__check(L, mo_max_pool2d_forward(y, idx, x, &a, 1), fname);
    return 2;
}

/* max_pool2d_backward(gy, idx, x) -> gx (x's shape; x only for its shape and dtype) */
static int l_max_pool2d_backward(lua_State *L)
{
    static const char fname[] = "max_pool2d_backward";
    lua_settop(L, 3);
    mo_tensor *gy = check_t(L, 1, fname, NULL);
    mo_tensor *idx = check_t(L, 2, fname, gy);
    mo_tensor *x = check_t(L, 3, fname, gy);
    need_planes(L, fname, "input", x);
    const int nd = x->ndim;
    size_t xs[4], ys[4];
    memcpy(xs, x->shape, sizeof xs);
    memcpy(ys, gy->shape, sizeof ys);
    int ok = gy->ndim == nd;
    for (int d = 0; ok && d < nd - 2; d++) ok = gy->shape[d] == xs[d];
    if (!ok) {
        char sg[MO__SHAPE_BUF], sx[MO__SHAPE_BUF];
        luaL_error(L, "%s: grad_output %s does not match input %s", fname, mo__shapestr(gy, sg),
                   mo__shapestr(x, sx));
    }
    need_shape(L, fname, "indices", idx, nd, ys);
    make_contig(L, 1, fname);
    make_contig(L, 2, fname);
    mo_tensor *gx = mo__newtensor_dtype(L, nd, xs, gy->dtype, 0, fname);
    gy = mo__recheck(L, 1, fname, nd, ys);
    idx = mo__recheck(L, 2, fname, nd, ys);
    mo_status st = mo_max_pool2d_backward(gx, gy, idx, 1);
    if (st == MO_ERR_RANGE)
        luaL_error(L, "%s: indices hold a value that is not a whole number in 1 .. %I (the "
                   "input's plane): not max_pool2d_forward's indices for this input", fname,
                   (lua_Integer)(xs[nd - 2] * xs[nd - 1]));
    mo__check(L, st, fname);
    return 1;
}

/* count_include_pad at idx: a boolean. */
static int check_bool(lua_State *L, int idx, const char *fname)
{
    if (!lua_isboolean(L, idx)) mo__typeerror(L, idx, fname, "boolean (count_include_pad)");
    return lua_toboolean(L, idx);
}

/* avg_pool2d_forward(x, kh, kw, sh, sw, ph, pw, count_include_pad) -> y */
static int l_avg_pool2d_forward(lua_State *L)
{
    static const char fname[] = "avg_pool2d_forward";
    lua_settop(L, 8);
    mo_tensor *x = check_t(L, 1, fname, NULL);
    mo_pool2d_args a;
    read_pool_args(L, 2, fname, &a);
    a.count_include_pad = check_bool(L, 8, fname);
    need_planes(L, fname, "input", x);
    const int nd = x->ndim;
    size_t xs[4], ys[4];
    memcpy(xs, x->shape, sizeof xs);
    pool_shape(L, fname, x, &a, ys);
    make_contig(L, 1, fname);
    mo_tensor *y = mo__newtensor_dtype(L, nd, ys, x->dtype, 0, fname);
    x = mo__recheck(L, 1, fname, nd, xs);
    mo__check(L, mo_avg_pool2d_forward(y, x, &a), fname);
    return 1;
}

/* avg_pool2d_backward(gy, x, kh, kw, sh, sw, ph, pw, count_include_pad) -> gx */
static int l_avg_pool2d_backward(lua_State *L)
{
    static const char fname[] = "avg_pool2d_backward";
    lua_settop(L, 9);
    mo_tensor *gy = check_t(L, 1, fname, NULL);
    mo_tensor *x = check_t(L, 2, fname, gy);
    mo_pool2d_args a;
    read_pool_args(L, 3, fname, &a);
    a.count_include_pad = check_bool(L, 9, fname);
    need_planes(L, fname, "input", x);
    const int nd = x->ndim;
    size_t xs[4], ys[4];
    memcpy(xs, x->shape, sizeof xs);
    pool_shape(L, fname, x, &a, ys);
    need_shape(L, fname, "grad_output", gy, nd, ys);
    make_contig(L, 1, fname);
    mo_tensor *gx = mo__newtensor_dtype(L, nd, xs, gy->dtype, 0, fname);
    gy = mo__recheck(L, 1, fname, nd, ys);
    mo__check(L, mo_avg_pool2d_backward(gx, gy, &a), fname);
    return 1;
}

/* adaptive_avg_pool2d_forward(x, oh, ow) -> y {..., oh, ow} */
static int l_adaptive_forward(lua_State *L)
{
    static const char fname[] = "adaptive_avg_pool2d_forward";
    lua_settop(L, 3);
    mo_tensor *x = check_t(L, 1, fname, NULL);
    const size_t oh = check_size(L, 2, fname, "output_h", 1);
    const size_t ow = check_size(L, 3, fname, "output_w", 1);
    need_planes(L, fname, "input", x);
    const int nd = x->ndim;
    size_t xs[4], ys[4];
    memcpy(xs, x->shape, sizeof xs);
    memcpy(ys, x->shape, sizeof ys);
    ys[nd - 2] = oh;
    ys[nd - 1] = ow;
    if (xs[nd - 2] == 0 || xs[nd - 1] == 0) {
        char s[MO__SHAPE_BUF];
        luaL_error(L, "%s: input %s has an empty plane", fname, mo__shapestr(x, s));
    }
    mo__shape_numel(L, fname, nd, ys);
    make_contig(L, 1, fname);
    mo_tensor *y = mo__newtensor_dtype(L, nd, ys, x->dtype, 0, fname);
    x = mo__recheck(L, 1, fname, nd, xs);
    mo__check(L, mo_adaptive_avg_pool2d_forward(y, x), fname);
    return 1;
}

/* adaptive_avg_pool2d_backward(gy, x) -> gx (x's shape; the output size is gy's) */
static int l_adaptive_backward(lua_State *L)
{
    static const char fname[] = "adaptive_avg_pool2d_backward";
    lua_settop(L, 2);
    mo_tensor *gy = check_t(L, 1, fname, NULL);
    mo_tensor *x = check_t(L, 2, fname, gy);
    need_planes(L, fname, "input", x);
    const int nd = x->ndim;
    size_t xs[4], ys[4];
    memcpy(xs, x->shape, sizeof xs);
    memcpy(ys, gy->shape, sizeof ys);
    int ok = gy->ndim == nd && ys[nd - 2] > 0 && ys[nd - 1] > 0;
    for (int d = 0; ok && d < nd - 2; d++) ok = ys[d] == xs[d];
    if (!ok || xs[nd - 2] == 0 || xs[nd - 1] == 0) {
        char sg[MO__SHAPE_BUF], sx[MO__SHAPE_BUF];
        luaL_error(L, "%s: grad_output %s does not match input %s", fname, mo__shapestr(gy, sg),
                   mo__shapestr(x, sx));
    }
    make_contig(L, 1, fname);
    mo_tensor *gx = mo__newtensor_dtype(L, nd, xs, gy->dtype, 0, fname);
    gy = mo__recheck(L, 1, fname, nd, ys);
    mo__check(L, mo_adaptive_avg_pool2d_backward(gx, gy), fname);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Batch norm                                                               */
/* ------------------------------------------------------------------------ */

/* x must be {N, C, ...}; returns C. */
static size_t bn_channels(lua_State *L, const char *fname, const mo_tensor *x)
{
    if (x->ndim < 2) {
        char s[MO__SHAPE_BUF];
        luaL_error(L, "%s: input must have at least 2 dims {N, C, ...}, got %s", fname,
                   mo__shapestr(x, s));
    }
    return x->shape[1];
}

/* The optional {C} tensor at idx (nil: NULL), named `what`. */
static mo_tensor *bn_vec(lua_State *L, int idx, const char *fname, const char *what,
                         const mo_tensor *x, const size_t *c)
{
    mo_tensor *t = opt_t(L, idx, fname, x);
    if (t) need_shape(L, fname, what, t, 1, c);
    return t;
}

/* training at idx: a boolean. */
static int bn_training(lua_State *L, int idx, const char *fname)
{
    if (!lua_isboolean(L, idx)) mo__typeerror(L, idx, fname, "boolean (training)");
    return lua_toboolean(L, idx);
}

/*
 * batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps)
 *   -> y, save_mean, save_invstd. running_* updated in place when training.
 */
static int l_bn_forward(lua_State *L)
{
    static const char fname[] = "batch_norm_forward";
    lua_settop(L, 8);
    mo_tensor *x = check_t(L, 1, fname, NULL);
    const size_t c = bn_channels(L, fname, x);
    static const char *const names[4] = {"weight", "bias", "running_mean", "running_var"};
    mo_tensor *v[4];
    for (int i = 0; i < 4; i++) v[i] = bn_vec(L, 2 + i, fname, names[i], x, &c);
    const int training = bn_training(L, 6, fname);
    const lua_Number momentum = mo__checknumber(L, 7, fname);
    const lua_Number eps = mo__checknumber(L, 8, fname);
    if (!(momentum >= 0 && momentum <= 1))
        mo__argerror(L, 7, fname, "momentum must be in [0, 1], got %s", mo__describe(L, 7));
    if (!(eps > 0) || eps == HUGE_VAL)
        mo__argerror(L, 8, fname, "eps must be a positive finite number, got %s",
                     mo__describe(L, 8));
    if ((v[2] == NULL) != (v[3] == NULL))
        luaL_error(L, "%s: running_mean and running_var must be given together", fname);
    if (!training && !v[2])
        luaL_error(L, "%s: running_mean and running_var are needed when not training", fname);
    char sx[MO__SHAPE_BUF];
    if (training && x->numel / (c ? c : 1) <= 1)
        luaL_error(L, "%s: expected more than 1 value per channel when training, got input %s",
                   fname, mo__shapestr(x, sx));
    const int nd = x->ndim;
    size_t xs[MO_MAX_DIMS];
    memcpy(xs, x->shape, sizeof xs);
    make_contig(L, 1, fname);
    mo_tensor *y = mo__newtensor_dtype(L, nd, xs, x->dtype, 0, fname);         /* 9 */
    mo_tensor *sm = mo__newtensor_dtype(L, 1, &c, x->dtype, 0, fname);        /* 10 */
    mo_tensor *si = mo__newtensor_dtype(L, 1, &c, x->dtype, 0, fname);        /* 11 */
    x = mo__recheck(L, 1, fname, nd, xs);
    for (int i = 0; i < 4; i++)
        if (v[i]) v[i] = mo__recheck(L, 2 + i, fname, 1, &c);
    mo__check(L, mo_batch_norm_forward(y, sm, si, x, v[0], v[1], v[2], v[3], training, momentum,
                                       eps), fname);
    return 3;
}

/*
 * batch_norm_backward(x, gy, weight, save_mean, save_invstd, training, gw, gb, need_gx)
 *   -> gx or nil; gw += dL/dweight, gb += dL/dbias (in place, any strides).
 */
static int l_bn_backward(lua_State *L)
{
    static const char fname[] = "batch_norm_backward";
    lua_settop(L, 9);
    mo_tensor *x = check_t(L, 1, fname, NULL);
    mo_tensor *gy = check_t(L, 2, fname, x);
    const size_t c = bn_channels(L, fname, x);
    const int nd = x->ndim;
    size_t xs[MO_MAX_DIMS];
    memcpy(xs, x->shape, sizeof xs);
    need_shape(L, fname, "grad_output", gy, nd, xs);
    static const char *const names[3] = {"weight", "save_mean", "save_invstd"};
    mo_tensor *v[3];
    for (int i = 0; i < 3; i++) v[i] = bn_vec(L, 3 + i, fname, names[i], x, &c);
    if (!v[1] || !v[2]) luaL_error(L, "%s: save_mean and save_invstd are needed", fname);
    const int training = bn_training(L, 6, fname);
    mo_tensor *gw = bn_vec(L, 7, fname, "grad_weight", x, &c);
    mo_tensor *gb = bn_vec(L, 8, fname, "grad_bias", x, &c);
    const int need_gx = lua_toboolean(L, 9);
    make_contig(L, 1, fname);
    make_contig(L, 2, fname);
    mo_tensor *gx = NULL;
    if (need_gx) gx = mo__newtensor_dtype(L, nd, xs, x->dtype, 0, fname);
    else lua_pushnil(L);
    x = mo__recheck(L, 1, fname, nd, xs);
    gy = mo__recheck(L, 2, fname, nd, xs);
    for (int i = 0; i < 3; i++)
        if (v[i]) v[i] = mo__recheck(L, 3 + i, fname, 1, &c);
    if (gw) gw = mo__recheck(L, 7, fname, 1, &c);
    if (gb) gb = mo__recheck(L, 8, fname, 1, &c);
    mo__check(L, mo_batch_norm_backward(gx, gw, gb, x, gy, v[0], v[1], v[2], training), fname);
    return 1;
}

/* ------------------------------------------------------------------------ */

static const luaL_Reg conv_funcs[] = {
    {"conv2d_forward", l_conv2d_forward},
    {"conv2d_backward", l_conv2d_backward},
    {"max_pool2d_forward", l_max_pool2d_forward},
    {"max_pool2d_backward", l_max_pool2d_backward},
    {"avg_pool2d_forward", l_avg_pool2d_forward},
    {"avg_pool2d_backward", l_avg_pool2d_backward},
    {"adaptive_avg_pool2d_forward", l_adaptive_forward},
    {"adaptive_avg_pool2d_backward", l_adaptive_backward},
    {"batch_norm_forward", l_bn_forward},
    {"batch_norm_backward", l_bn_backward},
    {NULL, NULL}
};

void mo__open_conv(lua_State *L)
{
    mo__setfuncs(L, conv_funcs);
}
