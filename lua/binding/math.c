/*
 * math.c - tensor math for Lua: elementwise operations (new result or in
 * place), arithmetic operators, reductions, dot/norm (matmul: index.c).
 *
 * Naming follows PyTorch: a:add(b) returns a new tensor, a:add_(b) changes a
 * and returns it. Every argument is checked before anything is written, so a
 * failing call leaves all tensors as they were. New results are contiguous
 * tensors of the input's shape.
 */
#include "binding.h"

#include <math.h>
#include <string.h>

/* A new contiguous tensor of a's shape and dtype (uninitialised; the kernel writes
 * every element). */
static mo_tensor *new_like(lua_State *L, const mo_tensor *a, const char *fname)
{
    return mo__newtensor_dtype(L, a->ndim, a->shape, a->dtype, 0, fname);
}

/* ======================================================================== */
/* Unary                                                                    */
/* ======================================================================== */

static int unary(lua_State *L, mo_unary_op op, const char *fname, int inplace)
{
    mo_tensor *a = mo__checkarg(L, 1, fname);
    mo_tensor *out = inplace ? a : new_like(L, a, fname);
    mo_status st = mo_unary(out, a, op);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    if (inplace) lua_pushvalue(L, 1); /* return self */
    return 1;
}

#define UNARY(name, OP)                                                                   \
    static int m_##name(lua_State *L) { return unary(L, OP, #name, 0); }                  \
    static int m_##name##_(lua_State *L) { return unary(L, OP, #name "_", 1); }

UNARY(neg, MO_NEG)
UNARY(sqrt, MO_SQRT)
UNARY(exp, MO_EXP)
UNARY(log, MO_LOG)
UNARY(tanh, MO_TANH)
UNARY(sigmoid, MO_SIGMOID)
UNARY(relu, MO_RELU)
UNARY(abs, MO_ABS)
UNARY(sign, MO_SIGN)

/* pow(p): p a number. */
static int power(lua_State *L, const char *fname, int inplace)
{
    mo_tensor *a = mo__checkarg(L, 1, fname);
    lua_Number p = mo__checknumber(L, 2, fname);
    mo_tensor *out = inplace ? a : new_like(L, a, fname);
    mo_status st = mo_pow_scalar(out, a, p);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    if (inplace) lua_pushvalue(L, 1); /* return self */
    return 1;
}

static int m_pow(lua_State *L) { return power(L, "pow", 0); }
static int m_pow_(lua_State *L) { return power(L, "pow_", 1); }

/* clamp(lo, hi): either bound may be nil (unbounded), not both; lo <= hi, no NaN. */
static int clamp(lua_State *L, const char *fname, int inplace)
{
    mo_tensor *a = mo__checkarg(L, 1, fname);
    if (lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3))
        return luaL_error(L, "%s: at least one of lo and hi must be given", fname);
    lua_Number lo = mo__optnumber(L, 2, fname, -HUGE_VAL);
    lua_Number hi = mo__optnumber(L, 3, fname, HUGE_VAL);
    if (lo != lo) return mo__argerror(L, 2, fname, "lo is NaN");
    if (hi != hi) return mo__argerror(L, 3, fname, "hi is NaN");
    if (lo > hi)
        return mo__argerror(L, 3, fname, "hi %s is less than lo %s", mo__describe(L, 3),
                            mo__describe(L, 2));
    mo_tensor *out = inplace ? a : new_like(L, a, fname);
    mo_status st = mo_clamp(out, a, lo, hi);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    if (inplace) lua_pushvalue(L, 1); /* return self */
    return 1;
}

static int m_clamp(lua_State *L) { return clamp(L, "clamp", 0); }
static int m_clamp_(lua_State *L) { return clamp(L, "clamp_", 1); }

/* ======================================================================== */
/* Binary: a OP b with b a tensor of a's shape or a number                  */
/* ======================================================================== */

/* out = a OP (tensor or number at arg b_idx); out is a (in place) or a new tensor. */
static int binary(lua_State *L, mo_binary_op op, const char *fname, int inplace)
{
    mo_tensor *a = mo__checkarg(L, 1, fname);
    mo_status st;
    if (lua_type(L, 2) == LUA_TNUMBER) {
        lua_Number s = lua_tonumber(L, 2);
        mo_tensor *out = inplace ? a : new_like(L, a, fname);
        st = mo_binary_scalar(out, a, s, op);
    } else {
        const mo_tensor *b = mo__totensor(L, 2);
        if (b == NULL) return mo__typeerror(L, 2, fname, MO_TENSOR_MT " or number");
        if (!mo_tensor_alive(b)) return mo__argerror(L, 2, fname, "tensor has been freed");
        if (!mo_tensor_same_shape(a, b)) return mo__shape_error(L, fname, a, b);
        mo__same_dtype(L, fname, a, b);
        if (inplace) {
            mo_tensor tmp;
            st = mo__unalias(&tmp, a, &b);
            if (st == MO_OK) st = mo_binary(a, a, b, op);
            mo_tensor_release(&tmp);
        } else {
            st = mo_binary(new_like(L, a, fname), a, b, op);
        }
    }
    if (st != MO_OK) return mo__status_error(L, st, fname);
    if (inplace) lua_pushvalue(L, 1); /* return self */
    return 1;
}

#define BINARY(name, OP)                                                                  \
    static int m_##name(lua_State *L) { return binary(L, OP, #name, 0); }                 \
    static int m_##name##_(lua_State *L) { return binary(L, OP, #name "_", 1); }

BINARY(add, MO_ADD)
BINARY(sub, MO_SUB)
BINARY(mul, MO_MUL)
BINARY(div, MO_DIV)

/* Operators: tensor OP tensor, tensor OP number, number OP tensor; always a new tensor. */
static int arith(lua_State *L, mo_binary_op op, const char *fname)
{
    const mo_tensor *a = mo__totensor(L, 1);
    const mo_tensor *b = mo__totensor(L, 2);
    mo_status st;
    if (a != NULL && b != NULL) {
        a = mo__checkarg(L, 1, fname);
        b = mo__checkarg(L, 2, fname);
        if (!mo_tensor_same_shape(a, b)) return mo__shape_error(L, fname, a, b);
        mo__same_dtype(L, fname, a, b);
        st = mo_binary(new_like(L, a, fname), a, b, op);
    } else if (a != NULL) {
        a = mo__checkarg(L, 1, fname);
        lua_Number s = mo__checknumber(L, 2, fname);
        st = mo_binary_scalar(new_like(L, a, fname), a, s, op);
    } else {
        b = mo__checkarg(L, 2, fname);
        lua_Number s = mo__checknumber(L, 1, fname);
        mo_tensor *out = new_like(L, b, fname);
        /* s + b and s * b commute; s - b and s / b need the reversed kernel */
        st = (op == MO_ADD || op == MO_MUL) ? mo_binary_scalar(out, b, s, op)
                                            : mo_scalar_binary(out, s, b, op);
    }
    if (st != MO_OK) return mo__status_error(L, st, fname);
    return 1;
}

static int mm_add(lua_State *L) { return arith(L, MO_ADD, "__add"); }
static int mm_sub(lua_State *L) { return arith(L, MO_SUB, "__sub"); }
static int mm_mul(lua_State *L) { return arith(L, MO_MUL, "__mul"); }
static int mm_div(lua_State *L) { return arith(L, MO_DIV, "__div"); }

static int mm_unm(lua_State *L)
{
    mo_tensor *a = mo__checkarg(L, 1, "__unm");
    mo_status st = mo_unary(new_like(L, a, "__unm"), a, MO_NEG);
    if (st != MO_OK) return mo__status_error(L, st, "__unm");
    return 1;
}

/* t ^ p with p a number. */
static int mm_pow(lua_State *L)
{
    mo_tensor *a = mo__checkarg(L, 1, "__pow");
    lua_Number p = mo__checknumber(L, 2, "__pow");
    mo_status st = mo_pow_scalar(new_like(L, a, "__pow"), a, p);
    if (st != MO_OK) return mo__status_error(L, st, "__pow");
    return 1;
}

/* ======================================================================== */
/* addcmul / addcdiv / add_row_bias                                         */
/* ======================================================================== */

/*
 * self + value * t1 OP t2. Arguments (value, t1, t2) as torch7, or (t1, t2
 * [, value]) as PyTorch (value defaults to 1).
 */
static int addc(lua_State *L, int is_div, const char *fname, int inplace)
{
    mo_tensor *a = mo__checkarg(L, 1, fname);
    int i1 = 3, i2 = 4;
    lua_Number value;
    if (lua_type(L, 2) == LUA_TNUMBER) {
        value = lua_tonumber(L, 2);
    } else {
        i1 = 2;
        i2 = 3;
        value = mo__optnumber(L, 4, fname, 1.0);
    }
    const mo_tensor *t1 = mo__checkarg(L, i1, fname);
    const mo_tensor *t2 = mo__checkarg(L, i2, fname);
    if (!mo_tensor_same_shape(a, t1)) return mo__shape_error(L, fname, a, t1);
    if (!mo_tensor_same_shape(a, t2)) return mo__shape_error(L, fname, a, t2);
    mo__same_dtype(L, fname, a, t1);
    mo__same_dtype(L, fname, a, t2);
    mo_status st;
    mo_tensor tmp1, tmp2;
    mo_tensor_init(&tmp1);
    mo_tensor_init(&tmp2);
    mo_tensor *out;
    if (inplace) {
        out = a;
        st = mo__unalias(&tmp1, a, &t1);
        if (st == MO_OK) st = mo__unalias(&tmp2, a, &t2);
    } else {
        out = new_like(L, a, fname);
        st = MO_OK;
    }
    if (st == MO_OK)
        st = is_div ? mo_addcdiv(out, a, value, t1, t2) : mo_addcmul(out, a, value, t1, t2);
    mo_tensor_release(&tmp1);
    mo_tensor_release(&tmp2);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    if (inplace) lua_pushvalue(L, 1); /* return self */
    return 1;
}

static int m_addcmul(lua_State *L) { return addc(L, 0, "addcmul", 0); }
static int m_addcmul_(lua_State *L) { return addc(L, 0, "addcmul_", 1); }
static int m_addcdiv(lua_State *L) { return addc(L, 1, "addcdiv", 0); }
static int m_addcdiv_(lua_State *L) { return addc(L, 1, "addcdiv_", 1); }

/* m {r, c} += bias {c} on every row. */
static int row_bias(lua_State *L, const char *fname, int inplace)
{
    mo_tensor *m = mo__checkarg(L, 1, fname);
    const mo_tensor *bias = mo__checkarg(L, 2, fname);
    if (m->ndim != 2 || bias->ndim != 1 || bias->shape[0] != m->shape[1]) {
        char sm[MO__SHAPE_BUF], sb[MO__SHAPE_BUF];
        return luaL_error(L, "%s: shapes %s and %s do not agree (want {r, c} and {c})", fname,
                          mo__shapestr(m, sm), mo__shapestr(bias, sb));
    }
    mo__same_dtype(L, fname, m, bias);
    mo_status st;
    mo_tensor tmp;
    mo_tensor_init(&tmp);
    mo_tensor *out = m;
    if (inplace) {
        st = mo__unalias(&tmp, m, &bias);
    } else {
        out = mo_lua_newtensor(L);
        st = mo_tensor_clone(out, m, NULL);
        if (st == MO_OK) mo__gc_account(L, out->numel);
    }
    if (st == MO_OK) st = mo_add_row_bias(out, bias);
    mo_tensor_release(&tmp);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    if (inplace) lua_pushvalue(L, 1); /* return self */
    return 1;
}

static int m_add_row_bias(lua_State *L) { return row_bias(L, "add_row_bias", 0); }
static int m_add_row_bias_(lua_State *L) { return row_bias(L, "add_row_bias_", 1); }

/* ======================================================================== */
/* Reductions                                                               */
/* ======================================================================== */

/* sum() / mean() / max() / min() -> number; with a dim -> a new tensor without that dim. */
static int reduce(lua_State *L, mo_reduce_op op, const char *fname)
{
    mo_tensor *t = mo__checkarg(L, 1, fname);
    int needs_elements = (op != MO_RED_SUM);
    mo_status st;
    if (lua_isnoneornil(L, 2)) {
        if (needs_elements && t->numel == 0)
            return luaL_error(L, "%s: the tensor is empty", fname);
        double r = 0.0;
        switch (op) {
        case MO_RED_SUM: st = mo_sum(t, &r); break;
        case MO_RED_MEAN: st = mo_mean(t, &r); break;
        case MO_RED_MAX: st = mo_max(t, &r); break;
        default: st = mo_min(t, &r); break;
        }
        if (st != MO_OK) return mo__status_error(L, st, fname);
        lua_pushnumber(L, (lua_Number)r);
        return 1;
    }
    int d = mo__checkdim(L, 2, fname, t);
    if (needs_elements && t->shape[d] == 0)
        return luaL_error(L, "%s: dimension %d has size 0", fname, d + 1);
    mo_tensor *r = mo_lua_newtensor(L);
    t = mo__recheck(L, 1, fname, 0, NULL);
    st = mo_reduce_dim(r, t, d, op, NULL);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    mo__gc_account(L, r->numel * (mo_dtype_size(r->dtype) / sizeof(float)));
    return 1;
}

static int m_sum(lua_State *L) { return reduce(L, MO_RED_SUM, "sum"); }
static int m_mean(lua_State *L) { return reduce(L, MO_RED_MEAN, "mean"); }
static int m_max(lua_State *L) { return reduce(L, MO_RED_MAX, "max"); }
static int m_min(lua_State *L) { return reduce(L, MO_RED_MIN, "min"); }

/* argmax() -> 1-based flat index of the first maximum;
 * argmax(dim) -> a tensor of 1-based indices. */
static int m_argmax(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "argmax");
    mo_status st;
    if (lua_isnoneornil(L, 2)) {
        if (t->numel == 0) return luaL_error(L, "argmax: the tensor is empty");
        size_t i = 0;
        st = mo_argmax(t, &i);
        if (st != MO_OK) return mo__status_error(L, st, "argmax");
        lua_pushinteger(L, (lua_Integer)i + 1);
        return 1;
    }
    int d = mo__checkdim(L, 2, "argmax", t);
    if (t->shape[d] == 0) return luaL_error(L, "argmax: dimension %d has size 0", d + 1);
    mo_tensor *r = mo_lua_newtensor(L);
    t = mo__recheck(L, 1, "argmax", 0, NULL);
    st = mo_argmax_dim(r, t, d, NULL); /* indices in t's dtype (float64: exact past 2^24) */
    /* the core's indices are 0-based; Lua's are 1-based */
    if (st == MO_OK) st = mo_binary_scalar(r, r, 1.0, MO_ADD);
    if (st != MO_OK) return mo__status_error(L, st, "argmax");
    mo__gc_account(L, r->numel * (mo_dtype_size(r->dtype) / sizeof(float)));
    return 1;
}

/* dot(b) -> sum of a*b over a tensor of the same shape. */
static int m_dot(lua_State *L)
{
    mo_tensor *a = mo__checkarg(L, 1, "dot");
    mo_tensor *b = mo__checkarg(L, 2, "dot");
    if (!mo_tensor_same_shape(a, b)) return mo__shape_error(L, "dot", a, b);
    mo__same_dtype(L, "dot", a, b);
    double r = 0.0;
    mo_status st = mo_dot(a, b, &r);
    if (st != MO_OK) return mo__status_error(L, st, "dot");
    lua_pushnumber(L, (lua_Number)r);
    return 1;
}

/* norm() -> the L2 norm sqrt(sum x^2). */
static int m_norm(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "norm");
    double r = 0.0;
    mo_status st = mo_norm2(t, &r);
    if (st != MO_OK) return mo__status_error(L, st, "norm");
    lua_pushnumber(L, (lua_Number)r);
    return 1;
}

/* norm_many(list) -> the global L2 norm of a list of tensors (0 for an empty list). */
static int f_norm_many(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TTABLE) return mo__typeerror(L, 1, "norm_many", "table");
    lua_Unsigned n = lua_rawlen(L, 1);
    if (n > (lua_Unsigned)(MO__MAX_SIZE))
        return mo__argerror(L, 1, "norm_many", "list too long");
    /* the pointer array lives in a userdata so an error below cannot leak it */
    const mo_tensor **ts = (const mo_tensor **)lua_newuserdatauv(L, (size_t)n * sizeof *ts + 1, 0);
    for (lua_Unsigned i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        mo_tensor *t = mo__totensor(L, -1);
        if (t == NULL)
            return mo__argerror(L, 1, "norm_many", "element %I is not a %s (got %s)",
                                (lua_Integer)i + 1, MO_TENSOR_MT, luaL_typename(L, -1));
        if (!mo_tensor_alive(t))
            return mo__argerror(L, 1, "norm_many", "element %I: tensor has been freed",
                                (lua_Integer)i + 1);
        ts[i] = t;
        lua_pop(L, 1); /* the list keeps it alive */
    }
    double r = 0.0;
    mo_status st = mo_norm2_many(ts, (size_t)n, &r);
    if (st != MO_OK) return mo__status_error(L, st, "norm_many");
    lua_pushnumber(L, (lua_Number)r);
    return 1;
}

/* ======================================================================== */
/* Registration                                                             */
/* ======================================================================== */

#define BOTH(name) {#name, m_##name}, {#name "_", m_##name##_}

static const luaL_Reg math_methods[] = {
    BOTH(neg), BOTH(sqrt), BOTH(exp), BOTH(log), BOTH(tanh), BOTH(sigmoid), BOTH(relu),
    BOTH(abs), BOTH(sign), BOTH(pow), BOTH(clamp),
    BOTH(add), BOTH(sub), BOTH(mul), BOTH(div),
    BOTH(addcmul), BOTH(addcdiv), BOTH(add_row_bias),
    {"sum", m_sum}, {"mean", m_mean}, {"max", m_max}, {"min", m_min}, {"argmax", m_argmax},
    {"dot", m_dot}, {"norm", m_norm},
    {NULL, NULL},
};

static const luaL_Reg operators[] = {
    {"__add", mm_add}, {"__sub", mm_sub}, {"__mul", mm_mul}, {"__div", mm_div},
    {"__unm", mm_unm}, {"__pow", mm_pow},
    {NULL, NULL},
};

static const luaL_Reg math_functions[] = {
    {"norm_many", f_norm_many},
    {NULL, NULL},
};

void mo__open_math(lua_State *L)
{
    mo__add_methods(L, math_methods);
    luaL_getmetatable(L, MO_TENSOR_MT);
    mo__setfuncs(L, operators);
    lua_pop(L, 1);
    mo__setfuncs(L, math_functions);
}
