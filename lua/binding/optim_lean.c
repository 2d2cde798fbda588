/*
 * optim_lean.c - lean optimizer state objects for Lua (docs/design.md "Lean optimizer state").
 *
 * A moment buffer kept in bfloat16 or block-quantized int8 (the core's mo_lean) is not a
 * tensor: no tensor operation may read its bytes as floats. It is its own userdata,
 * "moonopt.LeanState", which only the optimizer step (optim.c), state_dict /
 * load_state_dict (lua/moonopt/optim/optimizer.lua) and the checkpoint writer and reader
 * handle. Methods:
 *
 *   s:dtype() -> "bfloat16" | "int8"      s:signed() -> boolean (the int8 map)
 *   s:shape() -> {..}  s:numel() -> n     (the param's)
 *   s:float() -> a new float32 tensor of the param's shape: the values it holds
 *   s:clone() -> an independent copy
 *   s:codes() -> a float32 tensor of its codes as integers (bfloat16: the 16-bit patterns
 *                0..65535; int8: -120..120 signed, 0..248 unsigned)
 *   s:absmax() -> int8: a float32 tensor {ceil(n/256)} of the block scales
 *
 * and functions in the core table:
 *
 *   lean_encode(t, dtype, sign [, rounding]) -> s   t a float32 tensor; dtype "bfloat16" |
 *       "int8"; sign "signed" | "unsigned"; rounding "nearest" (default) | "stochastic"
 *   lean_from_codes(dtype, sign, codes, absmax) -> s   the inverse of codes()/absmax() (what a
 *       checkpoint holds: I8/U8 codes read as float32, and the F32 scales); every value checked
 *   is_lean(x) -> boolean
 */
#include "binding.h"

#include <math.h>
#include <string.h>

#define LEAN_MT "moonopt.LeanState"

static const char *const dtype_names[] = {"float32", "bfloat16", "int8", NULL};
static const char *const sign_names[] = {"none", "signed", "unsigned", NULL};
static const char *const rounding_names[] = {"nearest", "stochastic", NULL};

mo__lean_ud *mo__tolean(lua_State *L, int idx)
{
    return (mo__lean_ud *)luaL_testudata(L, idx, LEAN_MT);
}

static mo__lean_ud *check_lean(lua_State *L, int idx, const char *fname)
{
    mo__lean_ud *u = mo__tolean(L, idx);
    if (u == NULL) mo__argerror(L, idx, fname, "expected a %s, got %s", LEAN_MT, mo__describe(L, idx));
    if (u->s.codes == NULL) luaL_error(L, "%s: the lean state has been freed", fname);
    return u;
}

mo__lean_ud *mo__push_lean(lua_State *L, mo_state_dtype dt, mo_lean_sign sign, int ndim,
                           const size_t *shape, const char *fname)
{
    size_t n;
    mo__check(L, mo_shape_numel(ndim, shape, &n), fname);
    mo__lean_ud *u = (mo__lean_ud *)lua_newuserdatauv(L, sizeof *u, 0);
    memset(u, 0, sizeof *u);   /* codes NULL until made: the finalizer frees nothing */
    luaL_setmetatable(L, LEAN_MT);
    u->ndim = ndim;
    memcpy(u->shape, shape, (size_t)ndim * sizeof(size_t));
    mo__check(L, mo_lean_init(&u->s, dt, sign, n), fname);
    mo__gc_account(L, dt == MO_STATE_INT8 ? n / 4 : n / 2);   /* in floats */
    return u;
}

static int l_gc(lua_State *L)
{
    mo__lean_ud *u = mo__tolean(L, 1);
    if (u) mo_lean_free(&u->s);
    return 0;
}

static int l_tostring(lua_State *L)
{
    mo__lean_ud *u = check_lean(L, 1, "tostring");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "moonopt.LeanState(%s%s, {", dtype_names[u->s.dtype],
                    u->s.dtype == MO_STATE_INT8 ? (u->s.sign == MO_LEAN_SIGNED ? " signed" : " unsigned") : "");
    luaL_addvalue(&b);
    for (int d = 0; d < u->ndim; d++) {
        lua_pushfstring(L, d ? ", %I" : "%I", (lua_Integer)u->shape[d]);
        luaL_addvalue(&b);
    }
    luaL_addstring(&b, "})");
    luaL_pushresult(&b);
    return 1;
}

static int l_dtype(lua_State *L)
{
    lua_pushstring(L, dtype_names[check_lean(L, 1, "dtype")->s.dtype]);
    return 1;
}

static int l_signed(lua_State *L)
{
    lua_pushboolean(L, check_lean(L, 1, "signed")->s.sign == MO_LEAN_SIGNED);
    return 1;
}

static int l_shape(lua_State *L)
{
    mo__lean_ud *u = check_lean(L, 1, "shape");
    int ndim = u->ndim;
    size_t shape[MO_MAX_DIMS];
    memcpy(shape, u->shape, sizeof shape);
    lua_createtable(L, ndim, 0);
    for (int d = 0; d < ndim; d++) {
        lua_pushinteger(L, (lua_Integer)shape[d]);
        lua_rawseti(L, -2, d + 1);
    }
    return 1;
}

static int l_numel(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_lean(L, 1, "numel")->s.n);
    return 1;
}

static int l_float(lua_State *L)
{
    static const char fn[] = "float";
    mo__lean_ud *u = check_lean(L, 1, fn);
    int ndim = u->ndim;
    size_t shape[MO_MAX_DIMS];
    memcpy(shape, u->shape, sizeof shape);
    mo_tensor *t = mo__newtensor_dtype(L, ndim, shape, MO_FLOAT32, 0, fn);
    u = check_lean(L, 1, fn);   /* the allocation may have run a finalizer */
    mo__check(L, mo_lean_decode(&u->s, mo_tensor_data(t), t->numel), fn);
    return 1;
}

static int l_clone(lua_State *L)
{
    static const char fn[] = "clone";
    mo__lean_ud *u = check_lean(L, 1, fn);
    mo__lean_ud *c = mo__push_lean(L, u->s.dtype, u->s.sign, u->ndim, u->shape, fn);
    u = check_lean(L, 1, fn);
    mo_lean tmp;
    mo__check(L, mo_lean_copy(&tmp, &u->s), fn);
    mo_lean_free(&c->s);
    c->s = tmp;
    return 1;
}

static int l_codes(lua_State *L)
{
    static const char fn[] = "codes";
    mo__lean_ud *u = check_lean(L, 1, fn);
    int ndim = u->ndim;
    size_t shape[MO_MAX_DIMS];
    memcpy(shape, u->shape, sizeof shape);
    mo_tensor *t = mo__newtensor_dtype(L, ndim, shape, MO_FLOAT32, 0, fn);
    u = check_lean(L, 1, fn);
    float *x = mo_tensor_data(t);
    for (size_t i = 0; i < u->s.n; i++) {
        if (u->s.dtype == MO_STATE_BFLOAT16) x[i] = (float)((const uint16_t *)u->s.codes)[i];
        else if (u->s.sign == MO_LEAN_SIGNED) x[i] = (float)((const int8_t *)u->s.codes)[i];
        else x[i] = (float)((const uint8_t *)u->s.codes)[i];
    }
    return 1;
}

static int l_absmax(lua_State *L)
{
    static const char fn[] = "absmax";
    mo__lean_ud *u = check_lean(L, 1, fn);
    if (u->s.dtype != MO_STATE_INT8) luaL_error(L, "%s: bfloat16 state has no block scales", fn);
    size_t nb = u->s.nblocks;
    mo_tensor *t = mo__newtensor_dtype(L, 1, &nb, MO_FLOAT32, 0, fn);
    u = check_lean(L, 1, fn);
    if (nb) memcpy(mo_tensor_data(t), u->s.absmax, nb * sizeof(float));
    return 1;
}

/* A float32 tensor argument, contiguous or not: returns the stack index of a contiguous
 * float32 tensor with its elements (idx itself, or a copy pushed on the stack). */
static int contiguous_arg(lua_State *L, int idx, const char *fname)
{
    mo_tensor *t = mo__checktensor(L, idx, fname);
    if (t->dtype != MO_FLOAT32)
        mo__argerror(L, idx, fname, "expected a float32 tensor, got %s", mo_dtype_name(t->dtype));
    if (mo_tensor_is_contiguous(t)) return idx;
    size_t shape[MO_MAX_DIMS];
    int ndim = t->ndim;
    memcpy(shape, t->shape, sizeof shape);
    mo_tensor *c = mo__newtensor_dtype(L, ndim, shape, MO_FLOAT32, 0, fname);
    t = mo__checktensor(L, idx, fname);
    if (!mo__shape_is(t, ndim, shape)) luaL_error(L, "%s: the tensor changed while being read", fname);
    mo__check(L, mo_copy(c, t), fname);
    return lua_gettop(L);
}

/* The elements of the contiguous tensor at idx, {n} of them, read after every allocation of
 * the call (a finalizer may have freed or reshaped it before). */
static const float *elements_at(lua_State *L, int idx, size_t n, const char *fname)
{
    mo_tensor *t = mo__toarg(L, idx);
    if (t == NULL || !mo_tensor_alive(t) || t->numel != n || !mo_tensor_is_contiguous(t))
        luaL_error(L, "%s: the tensor changed while being read", fname);
    return mo_tensor_data(t);
}

static int f_lean_encode(lua_State *L)
{
    static const char fn[] = "lean_encode";
    mo_tensor *t = mo__checktensor(L, 1, fn);
    mo_state_dtype dt = (mo_state_dtype)luaL_checkoption(L, 2, NULL, dtype_names);
    mo_lean_sign sign = (mo_lean_sign)luaL_checkoption(L, 3, NULL, sign_names);
    mo_state_rounding r = (mo_state_rounding)luaL_checkoption(L, 4, "nearest", rounding_names);
    if (dt == MO_STATE_FLOAT32) mo__argerror(L, 2, fn, "float32 state is a tensor");
    if (sign == MO_LEAN_NONE) mo__argerror(L, 3, fn, "sign must be \"signed\" or \"unsigned\"");
    lua_settop(L, 4);
    int ndim = t->ndim;
    size_t shape[MO_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    mo__push_lean(L, dt, sign, ndim, shape, fn);   /* at 5 */
    int xi = contiguous_arg(L, 1, fn);
    mo__lean_ud *u = mo__tolean(L, 5);
    const float *x = elements_at(L, xi, u->s.n, fn);
    mo__check(L, mo_lean_encode(&u->s, x, u->s.n, r, 0), fn);
    lua_settop(L, 5);
    return 1;
}

/* Checks that every element of x {n} is an integer code of (dt, sign); returns the first bad
 * index or n. */
static size_t bad_code(const float *x, size_t n, mo_state_dtype dt, mo_lean_sign sign)
{
    float lo = dt == MO_STATE_BFLOAT16 ? 0.0f : sign == MO_LEAN_SIGNED ? -120.0f : 0.0f;
    float hi = dt == MO_STATE_BFLOAT16 ? 65535.0f : sign == MO_LEAN_SIGNED ? 120.0f : 248.0f;
    for (size_t i = 0; i < n; i++)
        if (!(x[i] >= lo && x[i] <= hi) || x[i] != floorf(x[i])) return i;
    return n;
}

static int f_lean_from_codes(lua_State *L)
{
    static const char fn[] = "lean_from_codes";
    mo_state_dtype dt = (mo_state_dtype)luaL_checkoption(L, 1, NULL, dtype_names);
    mo_lean_sign sign = (mo_lean_sign)luaL_checkoption(L, 2, NULL, sign_names);
    if (dt == MO_STATE_FLOAT32) mo__argerror(L, 1, fn, "float32 state is a tensor");
    if (sign == MO_LEAN_NONE) mo__argerror(L, 2, fn, "sign must be \"signed\" or \"unsigned\"");
    mo_tensor *codes = mo__checktensor(L, 3, fn);
    int ndim = codes->ndim;
    size_t shape[MO_MAX_DIMS], n = codes->numel;
    memcpy(shape, codes->shape, sizeof shape);
    size_t nb = n / MO_LEAN_BLOCK + (n % MO_LEAN_BLOCK != 0);
    if (dt == MO_STATE_INT8) {
        mo_tensor *a = mo__checktensor(L, 4, fn);
        if (a->dtype != MO_FLOAT32 || a->ndim != 1 || a->shape[0] != nb)
            mo__argerror(L, 4, fn, "the block scales of %I elements must be a float32 tensor {%I}",
                         (lua_Integer)n, (lua_Integer)nb);
    }
    lua_settop(L, 4);
    mo__push_lean(L, dt, sign, ndim, shape, fn);   /* at 5 */
    int xi = contiguous_arg(L, 3, fn);
    int ai = dt == MO_STATE_INT8 ? contiguous_arg(L, 4, fn) : 0;
    const float *x = elements_at(L, xi, n, fn);
    const float *am = ai ? elements_at(L, ai, nb, fn) : NULL;
    size_t bad = bad_code(x, n, dt, sign);
    if (bad < n)
        luaL_error(L, "%s: code #%I is %f, not an integer code of %s %s state", fn, (lua_Integer)bad + 1,
                   (double)x[bad], sign_names[sign], dtype_names[dt]);
    mo__lean_ud *u = mo__tolean(L, 5);
    if (dt == MO_STATE_BFLOAT16) {
        for (size_t i = 0; i < n; i++) ((uint16_t *)u->s.codes)[i] = (uint16_t)x[i];
    } else {
        for (size_t b = 0; b < nb; b++)
            if (!(am[b] >= 0.0f) && !isnan(am[b]))
                luaL_error(L, "%s: block scale #%I is %f (must be >= 0 or NaN)", fn, (lua_Integer)b + 1,
                           (double)am[b]);
        for (size_t i = 0; i < n; i++)
            ((uint8_t *)u->s.codes)[i] = (uint8_t)(int8_t)(int)x[i];
        memcpy(u->s.absmax, am, nb * sizeof(float));
    }
    lua_settop(L, 5);
    return 1;
}

static int f_is_lean(lua_State *L)
{
    lua_pushboolean(L, mo__tolean(L, 1) != NULL);
    return 1;
}

static const luaL_Reg lean_methods[] = {
    {"dtype", l_dtype}, {"signed", l_signed}, {"shape", l_shape}, {"numel", l_numel},
    {"float", l_float}, {"clone", l_clone}, {"codes", l_codes}, {"absmax", l_absmax},
    {NULL, NULL},
};

static const luaL_Reg lean_functions[] = {
    {"lean_encode", f_lean_encode},
    {"lean_from_codes", f_lean_from_codes},
    {"is_lean", f_is_lean},
    {NULL, NULL},
};

void mo__open_optim_lean(lua_State *L)
{
    if (luaL_newmetatable(L, LEAN_MT)) {
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_tostring);
        lua_setfield(L, -2, "__tostring");
        luaL_newlib(L, lean_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    mo__setfuncs(L, lean_functions);
}
