/*
 * nn.c - Lua bindings of the core's neural-network kernels (moonopt_nn.h), for the
 * Lua modules in lua/moonopt/nn/. They are module functions named nn_*, called by
 * those modules with positional arguments; user code calls the modules.
 *
 * Conventions shared by these functions:
 *   - The function name in error messages is the user-level method
 *     ("Linear:forward"), and argument #1 (#2) is the method's first (second)
 *     argument, because the Lua modules pass the user's arguments first.
 *   - Results go into buffers the module passes back in on the next call: a
 *     buffer is reused when it is a live contiguous tensor of exactly the
 *     result's shape that shares no storage with an input; otherwise a new
 *     tensor is made. So a training loop with a fixed batch size allocates
 *     nothing after its first step.
 *   - Strided inputs of elementwise kernels are copied to contiguous ones first.
 *   - Parameter gradients are read from each parameter's user value 1 (.grad,
 *     see moonopt_lua.h). When one is nil (an optimizer's zero_grad with
 *     set_to_none), a backward function returns false and changes nothing;
 *     the Lua module re-attaches the gradient and calls again.
 */
#include "binding.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* Raises "fname: <what> <shape a> <rel> <shape b>"-style messages naming both shapes. */
static int two_shapes_error(lua_State *L, const char *fname, const char *fmt, const mo_tensor *a,
                            const mo_tensor *b)
{
    char sa[MO__SHAPE_BUF], sb[MO__SHAPE_BUF];
    lua_pushfstring(L, fmt, mo__shapestr(a, sa), mo__shapestr(b, sb));
    return luaL_error(L, "%s: %s", fname, lua_tostring(L, -1));
}

/* The live tensor at idx, copied to a contiguous tensor (replacing the stack slot) if strided. */
static mo_tensor *contig_arg(lua_State *L, int idx, const char *fname)
{
    mo_tensor *t = mo__checktensor(L, idx, fname);
    if (mo_tensor_is_contiguous(t)) return t;
    mo_tensor *c = mo__newtensor_dtype(L, t->ndim, t->shape, t->dtype, 0, fname);
    t = mo__recheck(L, idx, fname, 0, NULL); /* the allocation may have run a finalizer */
    mo_status st = mo_copy(c, t);
    if (st != MO_OK) mo__status_error(L, st, fname);
    lua_replace(L, idx);
    return c;
}

/*
 * The output buffer at stack slot idx: reused when it is a live contiguous
 * tensor of the wanted shape and dtype (inputs[0]'s) sharing storage with none
 * of the `n` inputs, else a new tensor stored into slot idx. The result is
 * always at slot idx.
 */
static mo_tensor *out_buffer(lua_State *L, int idx, int ndim, const size_t *shape,
                             const mo_tensor *const *inputs, int n, const char *fname)
{
    mo_dtype dt = inputs[0]->dtype;
    mo_tensor *t = mo__totensor(L, idx);
    if (t && mo_tensor_alive(t) && mo_tensor_is_contiguous(t) && t->dtype == dt &&
        mo__shape_is(t, ndim, shape)) {
        int shared = 0;
        for (int i = 0; i < n && !shared; i++)
            shared = inputs[i] && mo_tensor_same_storage(t, inputs[i]);
        if (!shared) return t;
    }
    t = mo__newtensor_dtype(L, ndim, shape, dt, 0, fname);
    lua_replace(L, idx);
    return t;
}

/* The optional tensors a, b, c (NULL: absent) share x's dtype, else the mixing error. */
static void same_dtypes(lua_State *L, const char *fname, const mo_tensor *x, const mo_tensor *a,
                        const mo_tensor *b, const mo_tensor *c)
{
    if (a) mo__same_dtype(L, fname, x, a);
    if (b) mo__same_dtype(L, fname, x, b);
    if (c) mo__same_dtype(L, fname, x, c);
}

/* The .grad of the parameter at idx (pushed onto the stack), or NULL when it has none. */
static mo_tensor *param_grad(lua_State *L, int idx, const char *fname)
{
    lua_getiuservalue(L, idx, 1);
    if (lua_isnil(L, -1)) return NULL;
    mo_tensor *g = mo__totensor(L, -1);
    if (g == NULL || !mo_tensor_alive(g))
        luaL_error(L, "%s: a parameter's .grad has been freed", fname);
    return g;
}

/* Reads an activation code (0 .. MO_ACT_COUNT_-1); internal, so a plain check. */
static mo_nn_act check_act(lua_State *L, int idx)
{
    lua_Integer a = luaL_checkinteger(L, idx);
    luaL_argcheck(L, a >= 0 && a < MO_ACT_COUNT_, idx, "unknown activation code");
    return (mo_nn_act)a;
}

static mo_nn_reduction check_reduction(lua_State *L, int idx)
{
    lua_Integer r = luaL_checkinteger(L, idx);
    luaL_argcheck(L, r == MO_NN_MEAN || r == MO_NN_SUM, idx, "unknown reduction code");
    return (mo_nn_reduction)r;
}

/* The user-level method names of an activation code, for messages (static
 * strings: nothing is formatted on the success path). */
static const char *act_fname(mo_nn_act act, int backward)
{
    static const char *const names[][2] = {
        [MO_ACT_NONE] = {"Identity:forward", "Identity:backward"},
        [MO_ACT_RELU] = {"ReLU:forward", "ReLU:backward"},
        [MO_ACT_LEAKY_RELU] = {"LeakyReLU:forward", "LeakyReLU:backward"},
        [MO_ACT_TANH] = {"Tanh:forward", "Tanh:backward"},
        [MO_ACT_SIGMOID] = {"Sigmoid:forward", "Sigmoid:backward"},
        [MO_ACT_GELU] = {"GELU:forward", "GELU:backward"},
        [MO_ACT_GELU_TANH] = {"GELU:forward", "GELU:backward"},
    };
    return names[act][backward];
}

/* A number for a message: "6" for whole values (not "6.0"), "2.5", "nan", "inf". */
static const char *numstr(lua_State *L, lua_Number v)
{
    if (v != v) return lua_pushliteral(L, "nan");
    if (v == floor(v) && fabs(v) < 9.0e15) return lua_pushfstring(L, "%I", (lua_Integer)v);
    return lua_pushfstring(L, "%f", v);
}

/* ------------------------------------------------------------------------ */
/* Linear                                                                   */
/* ------------------------------------------------------------------------ */

/* nn_linear_forward(x, w, b|nil, act, slope, out|nil) -> out {B, out} = act(x w^T + b) */
static int l_linear_forward(lua_State *L)
{
    static const char fname[] = "Linear:forward";
    lua_settop(L, 6);
    mo_tensor *x = mo__checktensor(L, 1, fname);
    mo_tensor *w = mo__checktensor(L, 2, fname);
    mo_tensor *b = mo__opttensor(L, 3, fname);
    mo_nn_act act = check_act(L, 4);
    double slope = luaL_optnumber(L, 5, 0.0);
    same_dtypes(L, fname, x, w, b, NULL);
    if (x->ndim != 2) {
        char sx[MO__SHAPE_BUF];
        return luaL_error(L, "%s: input must be 2-d {batch, in_features}, got %s", fname,
                          mo__shapestr(x, sx));
    }
    if (x->shape[1] != w->shape[1])
        return two_shapes_error(L, fname, "input %s does not match weight %s (in_features)", x, w);
    size_t shape[2] = {x->shape[0], w->shape[0]};
    const mo_tensor *ins[3] = {x, w, b};
    mo_tensor *y = out_buffer(L, 6, 2, shape, ins, 3, fname);
    mo__check(L, mo_nn_linear_forward(y, x, w, b, act, slope), fname);
    lua_settop(L, 6);
    return 1;
}

/*
 * nn_linear_backward(x, g, w, b|nil, gi|nil, need_gi) -> gi (need_gi), nil, or
 * false when w or b has no .grad. dw += g^T x, db += colsum g, gi = g w.
 */
static int l_linear_backward(lua_State *L)
{
    static const char fname[] = "Linear:backward";
    lua_settop(L, 6);
    mo_tensor *x = mo__checktensor(L, 1, fname);
    mo_tensor *g = mo__checktensor(L, 2, fname);
    mo_tensor *w = mo__checktensor(L, 3, fname);
    mo_tensor *b = mo__opttensor(L, 4, fname);
    int need_gi = lua_toboolean(L, 6);
    same_dtypes(L, fname, x, g, w, b);
    if (x->ndim != 2 || x->shape[1] != w->shape[1])
        return two_shapes_error(L, fname, "input %s does not match weight %s", x, w);
    if (g->ndim != 2 || g->shape[0] != x->shape[0] || g->shape[1] != w->shape[0]) {
        char sg[MO__SHAPE_BUF], sx[MO__SHAPE_BUF], sw[MO__SHAPE_BUF];
        return luaL_error(L, "%s: grad_output %s does not match the output {%I, %I} of input %s "
                          "and weight %s", fname, mo__shapestr(g, sg), (lua_Integer)x->shape[0],
                          (lua_Integer)w->shape[0], mo__shapestr(x, sx), mo__shapestr(w, sw));
    }
    mo_tensor *dw = param_grad(L, 3, fname);          /* slot 7 */
    if (dw == NULL) { lua_pushboolean(L, 0); return 1; }
    mo_tensor *db = NULL;
    if (b) {
        db = param_grad(L, 4, fname);                  /* slot 8 */
        if (db == NULL) { lua_pushboolean(L, 0); return 1; }
    }
    mo_tensor *gi = NULL;
    if (need_gi) {
        size_t shape[2] = {x->shape[0], x->shape[1]};
        const mo_tensor *ins[5] = {x, g, w, dw, db};
        gi = out_buffer(L, 5, 2, shape, ins, 5, fname);
        /* out_buffer may have run a finalizer that replaced or dropped a .grad:
         * read both again (pinned in slots 7, 8) after the last allocation */
        lua_settop(L, 6);
        dw = param_grad(L, 3, fname);
        if (dw == NULL) { lua_pushboolean(L, 0); return 1; }
        if (b) {
            db = param_grad(L, 4, fname);
            if (db == NULL) { lua_pushboolean(L, 0); return 1; }
        }
    }
    mo__check(L, mo_nn_linear_backward(gi, dw, db, g, x, w), fname);
    if (need_gi)
        lua_pushvalue(L, 5);
    else
        lua_pushnil(L);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Activations                                                              */
/* ------------------------------------------------------------------------ */

/* nn_act_forward(x, act, slope, out|nil) -> out = act(x) */
static int l_act_forward(lua_State *L)
{
    lua_settop(L, 4);
    mo_nn_act act = check_act(L, 2);
    const char *fname = act_fname(act, 0);
    mo_tensor *x = contig_arg(L, 1, fname);
    double slope = luaL_optnumber(L, 3, 0.0);
    const mo_tensor *ins[1] = {x};
    mo_tensor *y = out_buffer(L, 4, x->ndim, x->shape, ins, 1, fname);
    mo__check(L, mo_nn_act_forward(y, x, act, slope), fname);
    lua_settop(L, 4);
    return 1;
}

/* nn_act_backward(saved, g, act, slope, gi|nil) -> gi = g * act'(saved) */
static int l_act_backward(lua_State *L)
{
    lua_settop(L, 5);
    mo_nn_act act = check_act(L, 3);
    const char *fname = act_fname(act, 1);
    mo_tensor *s = contig_arg(L, 1, fname);
    mo_tensor *g = contig_arg(L, 2, fname);
    double slope = luaL_optnumber(L, 4, 0.0);
    same_dtypes(L, fname, s, g, NULL, NULL);
    if (!mo_tensor_same_shape(g, s))
        return two_shapes_error(L, fname, "grad_output %s does not match input %s", g, s);
    const mo_tensor *ins[2] = {s, g};
    mo_tensor *gi = out_buffer(L, 5, g->ndim, g->shape, ins, 2, fname);
    mo__check(L, mo_nn_act_backward(gi, g, s, act, slope), fname);
    lua_settop(L, 5);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Softmax                                                                  */
/* ------------------------------------------------------------------------ */

/* A Softmax dimension: 1-based, or negative counting from the end (-1: last). */
static int softmax_dim(lua_State *L, int idx, const mo_tensor *t, const char *fname)
{
    lua_Integer d = luaL_checkinteger(L, idx);
    lua_Integer nd = t->ndim;
    lua_Integer r = d < 0 ? nd + d : d - 1;
    if (r < 0 || r >= nd) {
        char st[MO__SHAPE_BUF];
        luaL_error(L, "%s: dimension %I out of range for a %I-d input %s", fname, d, nd,
                   mo__shapestr(t, st));
    }
    return (int)r;
}

/* nn_softmax_forward(x, dim, out|nil) -> out */
static int l_softmax_forward(lua_State *L)
{
    static const char fname[] = "Softmax:forward";
    lua_settop(L, 3);
    mo_tensor *x = contig_arg(L, 1, fname);
    int dim = softmax_dim(L, 2, x, fname);
    const mo_tensor *ins[1] = {x};
    mo_tensor *y = out_buffer(L, 3, x->ndim, x->shape, ins, 1, fname);
    mo__check(L, mo_nn_softmax_forward(y, x, dim), fname);
    lua_settop(L, 3);
    return 1;
}

/* nn_softmax_backward(y, g, dim, gi|nil) -> gi */
static int l_softmax_backward(lua_State *L)
{
    static const char fname[] = "Softmax:backward";
    lua_settop(L, 4);
    mo_tensor *y = contig_arg(L, 1, fname);
    mo_tensor *g = contig_arg(L, 2, fname);
    same_dtypes(L, fname, y, g, NULL, NULL);
    if (!mo_tensor_same_shape(g, y))
        return two_shapes_error(L, fname, "grad_output %s does not match output %s", g, y);
    int dim = softmax_dim(L, 3, y, fname);
    const mo_tensor *ins[2] = {y, g};
    mo_tensor *gi = out_buffer(L, 4, g->ndim, g->shape, ins, 2, fname);
    mo__check(L, mo_nn_softmax_backward(gi, g, y, dim), fname);
    lua_settop(L, 4);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* LayerNorm                                                                */
/* ------------------------------------------------------------------------ */

/* Checks that x ends in the normalized size d; returns the number of rows. */
static size_t ln_rows(lua_State *L, const mo_tensor *x, lua_Integer d, const char *fname)
{
    if (d < 1 || x->ndim < 1 || (lua_Integer)x->shape[x->ndim - 1] != d) {
        char sx[MO__SHAPE_BUF];
        luaL_error(L, "%s: input %s does not end in the normalized size %I", fname,
                   mo__shapestr(x, sx), d);
    }
    return x->numel / (size_t)d;
}

/* nn_layernorm_forward(x, d, gamma|nil, beta|nil, eps, out, mean, rstd) -> out, mean, rstd */
static int l_layernorm_forward(lua_State *L)
{
    static const char fname[] = "LayerNorm:forward";
    lua_settop(L, 8);
    mo_tensor *x = contig_arg(L, 1, fname);
    lua_Integer d = luaL_checkinteger(L, 2);
    mo_tensor *gamma = mo__opttensor(L, 3, fname);
    mo_tensor *beta = mo__opttensor(L, 4, fname);
    double eps = luaL_checknumber(L, 5);
    same_dtypes(L, fname, x, gamma, beta, NULL);
    size_t rows = ln_rows(L, x, d, fname);
    const mo_tensor *ins[3] = {x, gamma, beta};
    mo_tensor *y = out_buffer(L, 6, x->ndim, x->shape, ins, 3, fname);
    mo_tensor *mean = out_buffer(L, 7, 1, &rows, ins, 3, fname);
    mo_tensor *rstd = out_buffer(L, 8, 1, &rows, ins, 3, fname);
    mo__check(L, mo_nn_layernorm_forward(y, mean, rstd, x, gamma, beta, eps), fname);
    lua_settop(L, 8);
    return 3;
}

/* nn_layernorm_backward(x, g, d, gamma|nil, beta|nil, mean, rstd, gi|nil) -> gi, or false */
static int l_layernorm_backward(lua_State *L)
{
    static const char fname[] = "LayerNorm:backward";
    lua_settop(L, 8);
    mo_tensor *x = contig_arg(L, 1, fname);
    mo_tensor *g = contig_arg(L, 2, fname);
    lua_Integer d = luaL_checkinteger(L, 3);
    mo_tensor *gamma = mo__opttensor(L, 4, fname);
    mo_tensor *beta = mo__opttensor(L, 5, fname);
    mo_tensor *mean = mo__checktensor(L, 6, fname);
    mo_tensor *rstd = mo__checktensor(L, 7, fname);
    same_dtypes(L, fname, x, g, gamma, beta);
    size_t rows = ln_rows(L, x, d, fname);
    if (!mo_tensor_same_shape(g, x))
        return two_shapes_error(L, fname, "grad_output %s does not match input %s", g, x);
    if (mean->numel != rows || rstd->numel != rows)
        return luaL_error(L, "%s: call forward with this input first", fname);
    mo_tensor *dgamma = NULL, *dbeta = NULL;
    if (gamma) {
        dgamma = param_grad(L, 4, fname);              /* slot 9 */
        if (dgamma == NULL) { lua_pushboolean(L, 0); return 1; }
    }
    if (beta) {
        dbeta = param_grad(L, 5, fname);               /* slot 10 */
        if (dbeta == NULL) { lua_pushboolean(L, 0); return 1; }
    }
    const mo_tensor *ins[7] = {x, g, gamma, mean, rstd, dgamma, dbeta};
    mo_tensor *gi = out_buffer(L, 8, x->ndim, x->shape, ins, 7, fname);
    /* the .grads again (slots 9, 10) after the last allocation, as in Linear:backward */
    lua_settop(L, 8);
    if (gamma) {
        dgamma = param_grad(L, 4, fname);
        if (dgamma == NULL) { lua_pushboolean(L, 0); return 1; }
    }
    if (beta) {
        dbeta = param_grad(L, 5, fname);
        if (dbeta == NULL) { lua_pushboolean(L, 0); return 1; }
    }
    mo__check(L, mo_nn_layernorm_backward(gi, dgamma, dbeta, g, x, mean, rstd, gamma), fname);
    lua_pushvalue(L, 8);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Dropout                                                                  */
/* ------------------------------------------------------------------------ */

/* nn_dropout_forward(x, p, out|nil, mask|nil) -> out, mask (the lua_State's RNG) */
static int l_dropout_forward(lua_State *L)
{
    static const char fname[] = "Dropout:forward";
    lua_settop(L, 4);
    mo_tensor *x = contig_arg(L, 1, fname);
    double p = luaL_checknumber(L, 2);
    const mo_tensor *ins[1] = {x};
    mo_tensor *y = out_buffer(L, 3, x->ndim, x->shape, ins, 1, fname);
    const mo_tensor *ins2[2] = {x, y};
    mo_tensor *mask = out_buffer(L, 4, x->ndim, x->shape, ins2, 2, fname);
    mo__check(L, mo_nn_dropout_forward(y, mask, x, p, mo__lua_rng(L)), fname);
    lua_settop(L, 4);
    return 2;
}

/* nn_dropout_backward(g, mask, gi|nil) -> gi = g * mask */
static int l_dropout_backward(lua_State *L)
{
    static const char fname[] = "Dropout:backward";
    lua_settop(L, 3);
    mo_tensor *g = contig_arg(L, 1, fname);
    mo_tensor *mask = mo__checktensor(L, 2, fname);
    same_dtypes(L, fname, g, mask, NULL, NULL);
    if (!mo_tensor_same_shape(g, mask))
        return two_shapes_error(L, fname, "grad_output %s does not match input %s", g, mask);
    const mo_tensor *ins[2] = {g, mask};
    mo_tensor *gi = out_buffer(L, 3, g->ndim, g->shape, ins, 2, fname);
    mo__check(L, mo_nn_dropout_backward(gi, g, mask), fname);
    lua_settop(L, 3);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Losses                                                                   */
/* ------------------------------------------------------------------------ */

/* Shared by MSELoss and BCEWithLogitsLoss:
 * f(out, target, reduction, want_grad, grad|nil) -> loss [, grad] */
static int pair_loss(lua_State *L, const char *fwd_name, const char *bwd_name,
                     mo_status (*fn)(double *, mo_tensor *, const mo_tensor *, const mo_tensor *,
                                     mo_nn_reduction))
{
    lua_settop(L, 5);
    int want_grad = lua_toboolean(L, 4);
    const char *fname = want_grad ? bwd_name : fwd_name;
    mo_tensor *out = contig_arg(L, 1, fname);
    mo_tensor *target = contig_arg(L, 2, fname);
    mo_nn_reduction red = check_reduction(L, 3);
    same_dtypes(L, fname, out, target, NULL, NULL);
    if (!mo_tensor_same_shape(out, target))
        return two_shapes_error(L, fname, "input %s and target %s have different shapes", out,
                                target);
    mo_tensor *grad = NULL;
    if (want_grad) {
        const mo_tensor *ins[2] = {out, target};
        grad = out_buffer(L, 5, out->ndim, out->shape, ins, 2, fname);
    }
    double loss;
    mo__check(L, fn(&loss, grad, out, target, red), fname);
    lua_pushnumber(L, loss);
    if (!want_grad) return 1;
    lua_pushvalue(L, 5);
    return 2;
}

static int l_mse(lua_State *L)
{
    return pair_loss(L, "MSELoss:forward", "MSELoss:backward", mo_nn_mse);
}

static int l_bce_logits(lua_State *L)
{
    return pair_loss(L, "BCEWithLogitsLoss:forward", "BCEWithLogitsLoss:backward",
                     mo_nn_bce_logits);
}

/* Class indices 1..nc from a Lua table: a new {B} float64 tensor (pushed onto the stack;
 * float64 holds every index exactly). */
static mo_tensor *targets_from_table(lua_State *L, int idx, size_t batch, size_t nc,
                                     const char *fname)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if ((size_t)n != batch)
        luaL_error(L, "%s: target has %I class indices for a batch of %I", fname, n,
                   (lua_Integer)batch);
    mo_tensor *t = mo__newtensor_dtype(L, 1, &batch, MO_FLOAT64, 0, fname);
    double *p = mo_tensor_ptr(t);
    for (lua_Integer i = 1; i <= n; i++) {
        int ty = lua_rawgeti(L, idx, i);
        if (ty != LUA_TNUMBER)
            luaL_error(L, "%s: target[%I] must be a class index, got %s", fname, i,
                       lua_typename(L, ty));
        lua_Number v = lua_tonumber(L, -1);
        if (!(v >= 1 && v <= (lua_Number)nc) || v != floor(v))
            luaL_error(L, "%s: target[%I] = %s is not a class index in 1..%I", fname, i,
                       numstr(L, v), (lua_Integer)nc);
        p[i - 1] = v;
        lua_pop(L, 1);
    }
    return t;
}

/* nn_cross_entropy(logits, target, smoothing, reduction, want_grad, grad|nil) -> loss [, grad] */
static int l_cross_entropy(lua_State *L)
{
    lua_settop(L, 6);
    int want_grad = lua_toboolean(L, 5);
    const char *fname = want_grad ? "CrossEntropyLoss:backward" : "CrossEntropyLoss:forward";
    mo_tensor *x = contig_arg(L, 1, fname);
    double smoothing = luaL_checknumber(L, 3);
    mo_nn_reduction red = check_reduction(L, 4);
    if (x->ndim != 2) {
        char sx[MO__SHAPE_BUF];
        return luaL_error(L, "%s: input must be 2-d {batch, classes}, got %s", fname,
                          mo__shapestr(x, sx));
    }
    size_t batch = x->shape[0], nc = x->shape[1];
    mo_tensor *target;
    if (lua_type(L, 2) == LUA_TTABLE) {
        target = targets_from_table(L, 2, batch, nc, fname);
        lua_replace(L, 2);
    } else {
        target = mo__totensor(L, 2);
        if (target == NULL) return mo__typeerror(L, 2, fname, "table or " MO_TENSOR_MT);
        target = contig_arg(L, 2, fname);
        if (target->numel != batch)
            return two_shapes_error(L, fname, "target %s does not match input %s (one class "
                                    "index per row)", target, x);
    }
    mo_tensor *grad = NULL;
    if (want_grad) {
        const mo_tensor *ins[2] = {x, target};
        grad = out_buffer(L, 6, 2, x->shape, ins, 2, fname);
    }
    double loss;
    size_t bad = 0;
    mo_status st = mo_nn_cross_entropy(&loss, grad, x, target, 1, smoothing, red, &bad);
    if (st == MO_ERR_RANGE) {
        lua_Number v = target->dtype == MO_FLOAT64 ? ((const double *)mo_tensor_ptr(target))[bad]
                                                   : ((const float *)mo_tensor_ptr(target))[bad];
        return luaL_error(L, "%s: target[%I] = %s is not a class index in 1..%I", fname,
                          (lua_Integer)bad + 1, numstr(L, v), (lua_Integer)nc);
    }
    mo__check(L, st, fname);
    lua_pushnumber(L, loss);
    if (!want_grad) return 1;
    lua_pushvalue(L, 6);
    return 2;
}

/* ------------------------------------------------------------------------ */
/* Flat parameters                                                          */
/* ------------------------------------------------------------------------ */

/*
 * nn_flatten(params) -> flat_params, flat_grads
 *
 * Moves every parameter (a list of distinct tensors) into one new contiguous
 * buffer, in list order, preserving its values, and gives each a .grad that is
 * a view into a second buffer of the same layout (holding the old gradient's
 * values, or zeros). The parameter tensors keep their identity: each userdata's
 * handle is re-pointed at its slice of the flat buffer, so every reference a
 * module or a user holds sees the new home. Everything that can fail (checks,
 * allocation of both buffers and of every view) happens before the first
 * parameter changes, so an error leaves all parameters as they were.
 *
 * Stack: 1 the user's list, 2 the parameters copied out of it (a finalizer may
 * replace the list's slots; this table is the call's own), 3 the set used to
 * find duplicates, 4 and 5 the flat buffers, 6 and 7 the new parameter handles
 * and grad views (empty tensors until filled, collected if anything fails).
 * All allocation happens in flatten_alloc; what any finalizer it ran could have
 * changed (a parameter freed or moved, a .grad replaced) is checked again after
 * it, and nothing allocates from there to the end.
 */

/* Pass 1: copies the list into slot 2, checks it (one dtype, stored in *dt), and returns
 * the total size. */
static size_t flatten_collect(lua_State *L, lua_Integer n, mo_dtype *dt, int convert,
                              const char *fname)
{
    size_t total = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        mo_tensor *p = mo__totensor(L, -1);
        if (p == NULL || !mo_tensor_alive(p))
            luaL_error(L, "%s: parameter #%I is not a live %s", fname, i, MO_TENSOR_MT);
        if (i == 1 && !convert) *dt = p->dtype;
        if (p->dtype != *dt && !convert)
            luaL_error(L, "%s: parameter #%I is %s, parameter #1 %s (convert the model with "
                       ":double() or :float())", fname, i, mo_dtype_name(p->dtype),
                       mo_dtype_name(*dt));
        lua_pushvalue(L, -1);
        if (lua_rawget(L, 3) != LUA_TNIL)
            luaL_error(L, "%s: parameter #%I appears twice", fname, i);
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushboolean(L, 1);
        lua_rawset(L, 3);   /* raw sets never run the collector */
        lua_rawseti(L, 2, i);
        if (mo_size_add(total, p->numel, &total) != MO_OK || total > (size_t)MO__MAX_SIZE)
            luaL_error(L, "%s: the parameters hold more than 2^40 elements", fname);
    }
    return total;
}

/* Pass 3, after the last allocation: every parameter still live, the same total
 * (nn_flatten keeps shapes, t:__gc() empties a handle), every .grad of its shape. */
static void flatten_recheck(lua_State *L, lua_Integer n, size_t total, const char *fname)
{
    size_t now = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        mo_tensor *p = mo__totensor(L, -1);
        if (!mo_tensor_alive(p))
            luaL_error(L, "%s: parameter #%I has been freed", fname, i);
        now += p->numel; /* each <= total <= 2^40: no overflow */
        mo_tensor *g = param_grad(L, lua_gettop(L), fname);
        if (g && !mo_tensor_same_shape(g, p))
            two_shapes_error(L, fname, "a parameter %s has a .grad of shape %s", p, g);
        lua_pop(L, 2);
    }
    if (now != total)
        luaL_error(L, "%s: the parameters changed size during the call", fname);
}

/* Fills the empty handles at slots 6, 7 with views of the flat buffers fp, fg
 * holding each parameter's values and old gradient. Allocates nothing. */
static void flatten_fill(lua_State *L, lua_Integer n, mo_tensor *fp, mo_tensor *fg,
                         const char *fname)
{
    size_t off = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        int pidx = lua_gettop(L);
        mo_tensor *p = mo__totensor(L, pidx);
        lua_rawgeti(L, 6, i);
        mo_tensor *np = mo__totensor(L, -1);
        lua_rawgeti(L, 7, i);
        mo_tensor *ng = mo__totensor(L, -1);
        mo_tensor slice;
        mo_tensor_init(&slice);
        mo_status st = mo_tensor_narrow(&slice, fp, 0, off, p->numel);
        if (st == MO_OK) st = mo_tensor_view(np, &slice, p->ndim, p->shape);
        mo_tensor_release(&slice);
        if (st == MO_OK) st = mo_copy(np, p);
        if (st == MO_OK) st = mo_tensor_narrow(&slice, fg, 0, off, p->numel);
        if (st == MO_OK) st = mo_tensor_view(ng, &slice, p->ndim, p->shape);
        mo_tensor_release(&slice);
        mo_tensor *og = param_grad(L, pidx, fname);
        if (st == MO_OK && og) st = mo_copy(ng, og);
        mo__check(L, st, fname);
        lua_settop(L, pidx - 1);
        off += p->numel;
    }
}

/* nn_flatten(params [, dtype]) -> flat_params, flat_grads; with a dtype the parameters
 * and their gradients are converted to it (model:double()), else they must share one. */
static int l_flatten(lua_State *L)
{
    static const char fname[] = "flatten";
    luaL_checktype(L, 1, LUA_TTABLE);
    int convert = !lua_isnoneornil(L, 2);
    mo_dtype dt = convert ? mo__checkdtype(L, 2, fname) : MO_FLOAT32;
    lua_settop(L, 1);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    if (n > INT_MAX) return luaL_error(L, "%s: too many parameters (%I)", fname, n);
    lua_createtable(L, (int)n, 0);  /* 2: the parameters */
    lua_createtable(L, 0, (int)n);  /* 3: the set */
    size_t total = flatten_collect(L, n, &dt, convert, fname);

    /* pass 2: every allocation */
    mo_tensor *fp = mo__newtensor_dtype(L, 1, &total, dt, 0, fname);  /* 4 */
    mo_tensor *fg = mo__newtensor_dtype(L, 1, &total, dt, 1, fname);  /* 5 */
    lua_createtable(L, (int)n, 0);                          /* 6 */
    lua_createtable(L, (int)n, 0);                          /* 7 */
    for (lua_Integer i = 1; i <= n; i++) {
        mo_lua_newtensor(L);
        lua_rawseti(L, 6, i);
        mo_lua_newtensor(L);
        lua_rawseti(L, 7, i);
    }

    flatten_recheck(L, n, total, fname);
    flatten_fill(L, n, fp, fg, fname);

    /* pass 4: commit; nothing here can fail */
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        mo_tensor *p = mo__totensor(L, -1);
        lua_rawgeti(L, 6, i);
        mo_tensor *np = mo__totensor(L, -1);
        mo_tensor_release(p);
        mo_tensor_share(p, np);  /* np is live: cannot fail */
        mo_tensor_release(np);   /* the temporary tensor is now empty; its __gc does nothing */
        lua_pop(L, 1);
        lua_rawgeti(L, 7, i);
        lua_setiuservalue(L, -2, 1); /* .grad = the view */
        lua_pushnil(L);
        lua_setiuservalue(L, -2, 2); /* no longer on anyone else's memory */
        lua_pop(L, 1);
    }
    lua_pushvalue(L, 4);
    lua_pushvalue(L, 5);
    return 2;
}

/* ------------------------------------------------------------------------ */

static const luaL_Reg nn_funcs[] = {
    {"nn_linear_forward", l_linear_forward},
    {"nn_linear_backward", l_linear_backward},
    {"nn_act_forward", l_act_forward},
    {"nn_act_backward", l_act_backward},
    {"nn_softmax_forward", l_softmax_forward},
    {"nn_softmax_backward", l_softmax_backward},
    {"nn_layernorm_forward", l_layernorm_forward},
    {"nn_layernorm_backward", l_layernorm_backward},
    {"nn_dropout_forward", l_dropout_forward},
    {"nn_dropout_backward", l_dropout_backward},
    {"nn_mse", l_mse},
    {"nn_bce_logits", l_bce_logits},
    {"nn_cross_entropy", l_cross_entropy},
    {"nn_flatten", l_flatten},
    {NULL, NULL}
};

void mo__open_nn(lua_State *L)
{
    luaL_setfuncs(L, nn_funcs, 0);
    /* the activation and reduction codes the Lua side passes */
    static const struct { const char *name; int value; } codes[] = {
        {"NN_ACT_NONE", MO_ACT_NONE},       {"NN_ACT_RELU", MO_ACT_RELU},
        {"NN_ACT_LEAKY_RELU", MO_ACT_LEAKY_RELU}, {"NN_ACT_TANH", MO_ACT_TANH},
        {"NN_ACT_SIGMOID", MO_ACT_SIGMOID}, {"NN_ACT_GELU", MO_ACT_GELU},
        {"NN_ACT_GELU_TANH", MO_ACT_GELU_TANH},
        {"NN_MEAN", MO_NN_MEAN},            {"NN_SUM", MO_NN_SUM},
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        lua_pushinteger(L, codes[i].value);
        lua_setfield(L, -2, codes[i].name);
    }
}
