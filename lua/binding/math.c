/*
 * math.c - tensor math for Lua: elementwise operations (new result or in
 * place, broadcasting by NumPy's rules, numbers on either side), comparisons,
 * where/masked_fill, arithmetic operators, dot and norm_many (reductions: reduce.c;
 * matmul: index.c).
 *
 * Naming follows PyTorch: a:add(b) returns a new tensor, a:add_(b) changes a
 * and returns it. Every argument is checked before anything is written, so a
 * failing call leaves all tensors as they were. New results are contiguous
 * tensors of the broadcast shape of the inputs (core/broadcast.c); an in-place
 * result keeps self's shape, only the other operand broadcasts.
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
UNARY(log1p, MO_LOG1P)
UNARY(expm1, MO_EXPM1)
UNARY(rsqrt, MO_RSQRT)
UNARY(sin, MO_SIN)
UNARY(cos, MO_COS)
UNARY(tan, MO_TAN)
UNARY(floor, MO_FLOOR)
UNARY(ceil, MO_CEIL)
UNARY(round, MO_ROUND)
UNARY(erf, MO_ERF)

static int clamp_tensors(lua_State *L, const char *fname, int inplace);

/* clamp(lo, hi): either bound may be nil (unbounded), not both; numbers: lo <= hi, no NaN;
 * either may be a tensor (clamp_tensors). */
static int clamp(lua_State *L, const char *fname, int inplace)
{
    mo_tensor *a = mo__checkarg(L, 1, fname);
    if (lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3))
        return luaL_error(L, "%s: at least one of lo and hi must be given", fname);
    if (mo__toarg(L, 2) != NULL || mo__toarg(L, 3) != NULL || mo__totensor(L, 2) != NULL ||
        mo__totensor(L, 3) != NULL)
        return clamp_tensors(L, fname, inplace);
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
/* Broadcasting binary ops: tensors or numbers on either side               */
/* ======================================================================== */

/* The operand at idx: a live tensor (returned), or a number (*s set, NULL returned);
 * anything else raises. */
static mo_tensor *operand(lua_State *L, int idx, const char *fname, lua_Number *s)
{
    mo_tensor *t = mo__toarg(L, idx);
    if (t != NULL) return mo__checkarg(L, idx, fname);
    if (lua_type(L, idx) == LUA_TNUMBER) {
        *s = lua_tonumber(L, idx);
        return NULL;
    }
    /* not this module's tensor by the fast test: the full test and its message */
    if (mo__totensor(L, idx) != NULL) return mo__checktensor(L, idx, fname);
    mo__typeerror(L, idx, fname, MO_TENSOR_MT " or number");
    return NULL;
}

/*
 * The shape the n entries of ts (NULL: numbers) broadcast to, into *nd and shape;
 * raises "fname: shapes {2, 3} and {4} cannot broadcast" (every tensor's shape
 * named) when they do not.
 */
static void broadcast_or_raise(lua_State *L, const char *fname, int n, const mo_tensor *const *ts,
                               int *nd, size_t *shape)
{
    if (mo_broadcast_shape(n, ts, nd, shape) == MO_OK) return;
    luaL_Buffer b;
    luaL_buffinit(L, &b); /* may allocate: only names are read from here on */
    int k = 0, total = 0;
    for (int j = 0; j < n; j++) total += ts[j] != NULL;
    for (int j = 0; j < n; j++) {
        if (!ts[j]) continue;
        char s[MO__SHAPE_BUF];
        if (k > 0) luaL_addstring(&b, k == total - 1 ? " and " : ", ");
        luaL_addstring(&b, mo__shapestr(ts[j], s));
        k++;
    }
    luaL_pushresult(&b);
    luaL_error(L, "%s: shapes %s cannot broadcast", fname, lua_tostring(L, -1));
}

/* A bound of clamp_tensors at idx: a number or nil becomes (in place of it on the stack)
 * the 0-d tensor of a's dtype holding it, or dflt for nil; a tensor stays. */
static void clamp_bound(lua_State *L, int idx, mo_dtype dt, double dflt, const char *fname)
{
    if (!lua_isnil(L, idx) && lua_type(L, idx) != LUA_TNUMBER) {
        mo__checkarg(L, idx, fname);
        return;
    }
    double v = lua_isnil(L, idx) ? dflt : lua_tonumber(L, idx);
    mo_tensor *t = mo__newtensor_dtype(L, 0, NULL, dt, 0, fname);
    mo__check(L, mo_fill(t, v), fname);
    lua_replace(L, idx);
}

/*
 * clamp(lo, hi) with a tensor bound: min(max(self, lo), hi) elementwise as PyTorch (where
 * lo > hi the result is hi; a NaN bound gives NaN), every operand broadcasting; a number
 * or nil stands for a constant (nil: unbounded). In place, self keeps its shape.
 */
static int clamp_tensors(lua_State *L, const char *fname, int inplace)
{
    lua_settop(L, 3);
    mo_dtype dt = mo__checkarg(L, 1, fname)->dtype;
    /* which bounds the caller gave as tensors: only those are named in shape errors */
    const int given_lo = lua_type(L, 2) == LUA_TUSERDATA, given_hi = lua_type(L, 3) == LUA_TUSERDATA;
    clamp_bound(L, 2, dt, -HUGE_VAL, fname);
    clamp_bound(L, 3, dt, HUGE_VAL, fname);
    /* the allocations above may have run a finalizer: read the operands now */
    mo_tensor *a = mo__checkarg(L, 1, fname);
    const mo_tensor *lo = mo__checkarg(L, 2, fname);
    const mo_tensor *hi = mo__checkarg(L, 3, fname);
    mo__same_dtype(L, fname, a, lo);
    mo__same_dtype(L, fname, a, hi);
    /* a bound made here from a number or nil is 0-d: leaving it out changes no shape */
    const mo_tensor *ts[3] = {a, given_lo ? lo : NULL, given_hi ? hi : NULL};
    int nd;
    size_t shape[MO_MAX_DIMS];
    broadcast_or_raise(L, fname, 3, ts, &nd, shape);
    mo_tensor *out = a;
    if (inplace) {
        if (!mo__shape_is(a, nd, shape)) {
            /* the bound to name: lo when it alone widens self's shape, else hi */
            const mo_tensor *pair[2] = {a, lo};
            int nd2;
            size_t s2[MO_MAX_DIMS];
            const int lo_bad = given_lo && (mo_broadcast_shape(2, pair, &nd2, s2) != MO_OK ||
                                            !mo__shape_is(a, nd2, s2));
            char sa[MO__SHAPE_BUF], sb[MO__SHAPE_BUF];
            return luaL_error(L, "%s: bound %s does not broadcast to self's shape %s", fname,
                              mo__shapestr(lo_bad ? lo : hi, sb), mo__shapestr(a, sa));
        }
    } else {
        out = mo__newtensor_dtype(L, nd, shape, a->dtype, 0, fname);
        a = mo__checkarg(L, 1, fname);
        lo = mo__checkarg(L, 2, fname);
        hi = mo__checkarg(L, 3, fname);
    }
    /* in place, a bound sharing self's memory is read before it is overwritten */
    mo_tensor tl, th;
    mo_status st = mo__unalias(&tl, out, &lo);
    mo_tensor_init(&th);
    if (st == MO_OK) st = mo__unalias(&th, out, &hi);
    if (st == MO_OK) st = mo_binary(out, a, lo, MO_MAXIMUM);
    if (st == MO_OK) st = mo_binary(out, out, hi, MO_MINIMUM);
    mo_tensor_release(&tl);
    mo_tensor_release(&th);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    if (inplace) lua_pushvalue(L, 1); /* return self */
    return 1;
}

/*
 * x OP y with x, y the arguments 1 and 2, each a tensor or a number (not both
 * numbers). self_first: argument 1 must be a tensor (methods). inplace: the
 * result goes into argument 1, whose shape it must have (the other operand
 * broadcasts, self does not). Otherwise a new tensor of the broadcast shape.
 */
static int binop(lua_State *L, mo_binary_op op, const char *fname, int inplace, int self_first)
{
    lua_Number sx = 0, sy = 0;
    mo_tensor *a = self_first ? mo__checkarg(L, 1, fname) : operand(L, 1, fname, &sx);
    const mo_tensor *b = operand(L, 2, fname, &sy);
    mo_tensor *out;
    mo_status st;
    if (a != NULL && b != NULL) {
        mo__same_dtype(L, fname, a, b);
        const mo_tensor *ts[2] = {a, b};
        int nd;
        size_t shape[MO_MAX_DIMS];
        broadcast_or_raise(L, fname, 2, ts, &nd, shape);
        if (inplace) {
            if (!mo__shape_is(a, nd, shape)) {
                char sa[MO__SHAPE_BUF], sb[MO__SHAPE_BUF];
                return luaL_error(L, "%s: shape %s does not broadcast to self's shape %s", fname,
                                  mo__shapestr(b, sb), mo__shapestr(a, sa));
            }
            out = a;
        } else {
            out = mo__newtensor_dtype(L, nd, shape, a->dtype, 0, fname);
        }
        st = mo_binary(out, a, b, op);
    } else if (a != NULL) {
        out = inplace ? a : new_like(L, a, fname);
        /* x^1, x^2, x^-1 have exact, vectorized loops there */
        st = op == MO_POW ? mo_pow_scalar(out, a, sy) : mo_binary_scalar(out, a, sy, op);
    } else if (b != NULL) {
        out = new_like(L, b, fname);
        st = mo_scalar_binary(out, sx, b, op);
    } else {
        return mo__typeerror(L, 1, fname, MO_TENSOR_MT);
    }
    if (st != MO_OK) return mo__status_error(L, st, fname);
    if (inplace) lua_pushvalue(L, 1); /* return self */
    return 1;
}

#define BINARY(name, OP)                                                                  \
    static int m_##name(lua_State *L) { return binop(L, OP, #name, 0, 1); }               \
    static int m_##name##_(lua_State *L) { return binop(L, OP, #name "_", 1, 1); }

BINARY(add, MO_ADD)
BINARY(sub, MO_SUB)
BINARY(mul, MO_MUL)
BINARY(div, MO_DIV)
BINARY(pow, MO_POW)

/* comparisons: 0/1 masks of self's dtype; eq_ ... ge_ write the mask into self */
BINARY(eq, MO_EQ)
BINARY(ne, MO_NE)
BINARY(lt, MO_LT)
BINARY(le, MO_LE)
BINARY(gt, MO_GT)
BINARY(ge, MO_GE)

/* Methods without an in-place form: maximum/minimum. */
#define BINARY_NEW(name, OP)                                                              \
    static int m_##name(lua_State *L) { return binop(L, OP, #name, 0, 1); }

BINARY_NEW(maximum, MO_MAXIMUM)
BINARY_NEW(minimum, MO_MINIMUM)

/* mo.maximum(a, b), mo.minimum(a, b): either may be a number. */
static int f_maximum(lua_State *L) { return binop(L, MO_MAXIMUM, "maximum", 0, 0); }
static int f_minimum(lua_State *L) { return binop(L, MO_MINIMUM, "minimum", 0, 0); }

/* Operators: tensor OP tensor (broadcasting), tensor OP number, number OP tensor. */
static int mm_add(lua_State *L) { return binop(L, MO_ADD, "__add", 0, 0); }
static int mm_sub(lua_State *L) { return binop(L, MO_SUB, "__sub", 0, 0); }
static int mm_mul(lua_State *L) { return binop(L, MO_MUL, "__mul", 0, 0); }
static int mm_div(lua_State *L) { return binop(L, MO_DIV, "__div", 0, 0); }
static int mm_pow(lua_State *L) { return binop(L, MO_POW, "__pow", 0, 0); }

static int mm_unm(lua_State *L)
{
    mo_tensor *a = mo__checkarg(L, 1, "__unm");
    mo_status st = mo_unary(new_like(L, a, "__unm"), a, MO_NEG);
    if (st != MO_OK) return mo__status_error(L, st, "__unm");
    return 1;
}

/* ======================================================================== */
/* where / masked_fill                                                      */
/* ======================================================================== */

/* mo.where(mask, a, b): mask != 0 ? a : b; a and b tensors or numbers; all broadcast. */
static int f_where(lua_State *L)
{
    const mo_tensor *c = mo__checkarg(L, 1, "where");
    lua_Number sa = 0, sb = 0;
    const mo_tensor *a = operand(L, 2, "where", &sa);
    const mo_tensor *b = operand(L, 3, "where", &sb);
    if (a) mo__same_dtype(L, "where", c, a);
    if (b) mo__same_dtype(L, "where", c, b);
    const mo_tensor *ts[3] = {c, a, b};
    int nd;
    size_t shape[MO_MAX_DIMS];
    broadcast_or_raise(L, "where", 3, ts, &nd, shape);
    mo_tensor *out = mo__newtensor_dtype(L, nd, shape, c->dtype, 0, "where");
    mo_status st = mo_where(out, c, a, sa, b, sb);
    if (st != MO_OK) return mo__status_error(L, st, "where");
    return 1;
}

/* t:masked_fill(mask, v): v where mask != 0, else t; the mask broadcasts to t's shape. */
static int masked_fill(lua_State *L, const char *fname, int inplace)
{
    mo_tensor *t = mo__checkarg(L, 1, fname);
    const mo_tensor *mask = mo__checkarg(L, 2, fname);
    lua_Number v = mo__checknumber(L, 3, fname);
    mo__same_dtype(L, fname, t, mask);
    const mo_tensor *ts[2] = {t, mask};
    int nd;
    size_t shape[MO_MAX_DIMS];
    if (mo_broadcast_shape(2, ts, &nd, shape) != MO_OK || !mo__shape_is(t, nd, shape)) {
        char st_[MO__SHAPE_BUF], sm[MO__SHAPE_BUF];
        return luaL_error(L, "%s: mask shape %s does not broadcast to self's shape %s", fname,
                          mo__shapestr(mask, sm), mo__shapestr(t, st_));
    }
    mo_tensor *out = inplace ? t : new_like(L, t, fname);
    mo_status st = mo_where(out, mask, NULL, v, t, 0.0);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    if (inplace) lua_pushvalue(L, 1); /* return self */
    return 1;
}

static int m_masked_fill(lua_State *L) { return masked_fill(L, "masked_fill", 0); }
static int m_masked_fill_(lua_State *L) { return masked_fill(L, "masked_fill_", 1); }

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
    mo__same_dtype(L, fname, a, t1);
    mo__same_dtype(L, fname, a, t2);
    const mo_tensor *ts[3] = {a, t1, t2};
    int nd;
    size_t shape[MO_MAX_DIMS];
    broadcast_or_raise(L, fname, 3, ts, &nd, shape);
    mo_tensor *out = a;
    if (inplace) {
        if (!mo__shape_is(a, nd, shape)) {
            char sa[MO__SHAPE_BUF], s1[MO__SHAPE_BUF], s2[MO__SHAPE_BUF];
            return luaL_error(L, "%s: shapes %s and %s do not broadcast to self's shape %s",
                              fname, mo__shapestr(t1, s1), mo__shapestr(t2, s2),
                              mo__shapestr(a, sa));
        }
    } else {
        out = mo__newtensor_dtype(L, nd, shape, a->dtype, 0, fname);
        /* the allocation may have run a finalizer: read the operands again */
        a = mo__checkarg(L, 1, fname);
        t1 = mo__checkarg(L, i1, fname);
        t2 = mo__checkarg(L, i2, fname);
    }
    /* the kernel wants one shape: stride-0 views of the operands that broadcast */
    mo_tensor va, v1, v2, tmp1, tmp2;
    mo_tensor_init(&va);
    mo_tensor_init(&v1);
    mo_tensor_init(&v2);
    mo_tensor_init(&tmp1);
    mo_tensor_init(&tmp2);
    mo_status st = mo_tensor_expand(&va, a, nd, shape);
    if (st == MO_OK) st = mo_tensor_expand(&v1, t1, nd, shape);
    if (st == MO_OK) st = mo_tensor_expand(&v2, t2, nd, shape);
    const mo_tensor *p1 = &v1, *p2 = &v2;
    if (st == MO_OK && inplace) st = mo__unalias(&tmp1, out, &p1);
    if (st == MO_OK && inplace) st = mo__unalias(&tmp2, out, &p2);
    if (st == MO_OK)
        st = is_div ? mo_addcdiv(out, &va, value, p1, p2) : mo_addcmul(out, &va, value, p1, p2);
    mo_tensor_release(&va);
    mo_tensor_release(&v1);
    mo_tensor_release(&v2);
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
/* dot and norm_many (the reductions over dims are reduce.c's)             */
/* ======================================================================== */

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
    /* a 0-d tensor of the operands' dtype, like every reduction without a dim */
    mo_tensor *out = mo__newtensor_dtype(L, 0, NULL, a->dtype, 0, "dot");
    mo__check(L, mo_fill(out, r), "dot");
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
    BOTH(log1p), BOTH(expm1), BOTH(rsqrt), BOTH(sin), BOTH(cos), BOTH(tan),
    BOTH(floor), BOTH(ceil), BOTH(round), BOTH(erf),
    BOTH(add), BOTH(sub), BOTH(mul), BOTH(div),
    {"eq", m_eq}, {"ne", m_ne}, {"lt", m_lt}, {"le", m_le}, {"gt", m_gt}, {"ge", m_ge},
    {"eq_", m_eq_}, {"ne_", m_ne_}, {"lt_", m_lt_}, {"le_", m_le_}, {"gt_", m_gt_}, {"ge_", m_ge_},
    {"maximum", m_maximum}, {"minimum", m_minimum}, BOTH(masked_fill),
    BOTH(addcmul), BOTH(addcdiv), BOTH(add_row_bias),
    {"dot", m_dot},
    {NULL, NULL},
};

static const luaL_Reg operators[] = {
    {"__add", mm_add}, {"__sub", mm_sub}, {"__mul", mm_mul}, {"__div", mm_div},
    {"__unm", mm_unm}, {"__pow", mm_pow},
    {NULL, NULL},
};

static const luaL_Reg math_functions[] = {
    {"norm_many", f_norm_many},
    {"maximum", f_maximum}, {"minimum", f_minimum}, {"where", f_where},
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
