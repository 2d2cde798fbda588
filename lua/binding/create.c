/*
 * create.c - tensor constructors for Lua (tensor, zeros, ones, full, empty,
 * arange, rand, randn, linspace, eye, zeros_like, ones_like, rand_like, randn_like,
 * randint), randperm, and the in-place random fills uniform_ and
 * normal_. Random numbers come from the lua_State's default generator
 * (mo__lua_rng), so two lua_States never share a stream.
 */
#include "binding.h"

#include <limits.h>
#include <math.h>

/* ======================================================================== */
/* From shapes                                                              */
/* ======================================================================== */

/* Reads a shape from arguments first..top (varargs or one table) and pushes the new tensor. */
/* A shape at first..last (varargs or one table), then optionally {dtype = ...}. */
static mo_tensor *new_from_args(lua_State *L, int first, int last, int zero, const char *fname)
{
    mo_dtype dt;
    mo__optdtype(L, &last, fname, &dt); /* a trailing {dtype = ...} */
    size_t shape[MO_MAX_DIMS];
    int ndim = mo__readshape(L, first, last, fname, shape, NULL);
    mo__shape_numel(L, fname, ndim, shape);
    return mo__newtensor_dtype(L, ndim, shape, dt, zero, fname);
}

/* zeros(2, 3) / zeros{2, 3}; zeros() is a 0-d tensor. */
static int f_zeros(lua_State *L)
{
    new_from_args(L, 1, lua_gettop(L), 1, "zeros");
    return 1;
}

static int f_ones(lua_State *L)
{
    mo_tensor *t = new_from_args(L, 1, lua_gettop(L), 0, "ones");
    mo_status st = mo_fill(t, 1.0);
    if (st != MO_OK) return mo__status_error(L, st, "ones");
    return 1;
}

/* empty(...): uninitialised values. */
static int f_empty(lua_State *L)
{
    new_from_args(L, 1, lua_gettop(L), 0, "empty");
    return 1;
}

/* full(shape, value): shape a table or one integer. */
static int f_full(lua_State *L)
{
    lua_Number v = mo__checknumber(L, 2, "full");
    int last = 3; /* full(shape, value [, options]) */
    mo_dtype dt = MO_FLOAT32;
    if (!lua_isnoneornil(L, 3) && !mo__optdtype(L, &last, "full", &dt))
        return mo__typeerror(L, 3, "full", "options table");
    size_t shape[MO_MAX_DIMS];
    int ndim = mo__readshape(L, 1, 1, "full", shape, NULL);
    mo__shape_numel(L, "full", ndim, shape);
    mo_tensor *t = mo__newtensor_dtype(L, ndim, shape, dt, 0, "full");
    mo_status st = mo_fill(t, v);
    if (st != MO_OK) return mo__status_error(L, st, "full");
    return 1;
}

/* rand(...): U[0, 1) */
static int f_rand(lua_State *L)
{
    mo_tensor *t = new_from_args(L, 1, lua_gettop(L), 0, "rand");
    mo_status st = mo_rand_uniform(t, mo__lua_rng(L), 0.0, 1.0);
    if (st != MO_OK) return mo__status_error(L, st, "rand");
    return 1;
}

/* randn(...): N(0, 1) */
static int f_randn(lua_State *L)
{
    mo_tensor *t = new_from_args(L, 1, lua_gettop(L), 0, "randn");
    mo_status st = mo_rand_normal(t, mo__lua_rng(L), 0.0, 1.0);
    if (st != MO_OK) return mo__status_error(L, st, "randn");
    return 1;
}

/* ======================================================================== */
/* tensor(data [, shape])                                                   */
/* ======================================================================== */

/* Pushes "[2][3]" for the first `depth` entries of the 1-based path. */
/* Element k of the contiguous new tensor t = v (rounded once for float32). */
static void put_el(const mo_tensor *t, size_t k, lua_Number v)
{
    if (t->dtype == MO_FLOAT64)
        mo_tensor_data_f64(t)[k] = (double)v;
    else
        mo_tensor_data(t)[k] = (float)v;
}

static const char *push_path(lua_State *L, const size_t *path, int depth)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; i < depth; i++) {
        lua_pushfstring(L, "[%I]", (lua_Integer)path[i]);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* Copies the nested table at idx (dimension d) into *p, checking it is rectangular. */
static void fill_nested(lua_State *L, int idx, int d, const mo_tensor *t, size_t *k, size_t *path)
{
    size_t n = (size_t)lua_rawlen(L, idx);
    if (n != t->shape[d])
        luaL_error(L, "tensor: ragged nested table: element %s has %I entries, expected %I",
                   push_path(L, path, d), (lua_Integer)n, (lua_Integer)t->shape[d]);
    int leaf = (d == t->ndim - 1);
    luaL_checkstack(L, 2, "tensor: nested tables too deep");
    for (size_t i = 0; i < n; i++) {
        path[d] = i + 1;
        int type = lua_rawgeti(L, idx, (lua_Integer)i + 1);
        if (leaf) {
            if (type != LUA_TNUMBER)
                luaL_error(L, "tensor: element %s must be a number, got %s",
                           push_path(L, path, d + 1), luaL_typename(L, -1));
            put_el(t, (*k)++, lua_tonumber(L, -1));
        } else {
            if (type != LUA_TTABLE)
                luaL_error(L, "tensor: element %s must be a table (the tensor is %d-d), got %s",
                           push_path(L, path, d + 1), t->ndim, luaL_typename(L, -1));
            fill_nested(L, lua_gettop(L), d + 1, t, k, path);
        }
        lua_pop(L, 1);
    }
}

/*
 * tensor{{1, 2}, {3, 4}} (nested tables; the shape is read from the first
 * elements and every row must agree), tensor({1, 2, 3, 4}, {2, 2}) (a flat
 * list and a shape, one size may be -1), tensor(3.5) (0-d), tensor(t) (a copy).
 */
static int f_tensor(lua_State *L)
{
    static const char *const fname = "tensor";
    /* a trailing options table: tensor(data, opts) or tensor(flat, shape, opts) */
    int last = lua_gettop(L);
    mo_dtype dt;
    const int has_opts = last >= 2 && mo__optdtype(L, &last, fname, &dt);
    if (!has_opts) dt = MO_FLOAT32;
    lua_settop(L, last);
    mo_tensor *src = mo__totensor(L, 1);
    if (src != NULL) {
        src = mo__checkarg(L, 1, fname);
        if (!has_opts) dt = src->dtype; /* a copy keeps the dtype unless told otherwise */
        mo_tensor *r = mo_lua_newtensor(L);
        src = mo__recheck(L, 1, fname, 0, NULL);
        mo_status st = mo_tensor_clone_dtype(r, src, dt, NULL);
        if (st != MO_OK) return mo__status_error(L, st, fname);
        mo__gc_account(L, r->numel * (mo_dtype_size(dt) / sizeof(float)));
        return 1;
    }
    if (lua_type(L, 1) == LUA_TNUMBER) {
        lua_Number v = lua_tonumber(L, 1);
        mo_tensor *t = mo__newtensor_dtype(L, 0, NULL, dt, 0, fname);
        put_el(t, 0, v);
        return 1;
    }
    if (lua_type(L, 1) != LUA_TTABLE) return mo__typeerror(L, 1, fname, "table");

    size_t shape[MO_MAX_DIMS];
    int ndim = 0;
    if (!lua_isnoneornil(L, 2)) {
        /* a flat list and a shape */
        lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
        int infer;
        ndim = mo__readshape(L, 2, 2, fname, shape, &infer);
        if (infer >= 0) mo__infer_size(L, fname, ndim, shape, infer, (size_t)n);
        size_t numel = mo__shape_numel(L, fname, ndim, shape);
        if (numel != (size_t)n) {
            char buf[MO__SHAPE_BUF];
            return luaL_error(L, "tensor: %I values do not fill shape %s (%I elements)", n,
                              mo__shapestr_raw(ndim, shape, buf), (lua_Integer)numel);
        }
        mo_tensor *t = mo__newtensor_dtype(L, ndim, shape, dt, 0, fname);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, 1, i) != LUA_TNUMBER)
                return luaL_error(L, "tensor: element [%I] must be a number, got %s", i,
                                  luaL_typename(L, -1));
            put_el(t, (size_t)(i - 1), lua_tonumber(L, -1));
            lua_pop(L, 1);
        }
        return 1;
    }

    /* nested tables: follow the first elements down to find the shape */
    int base = lua_gettop(L);
    lua_pushvalue(L, 1);
    while (lua_type(L, -1) == LUA_TTABLE) {
        if (ndim == MO_MAX_DIMS)
            return luaL_error(L, "tensor: too many dimensions (nested deeper than %d)",
                              MO_MAX_DIMS);
        lua_Unsigned n = lua_rawlen(L, -1);
        if (n > (lua_Unsigned)MO__MAX_SIZE)
            return luaL_error(L, "tensor: size #%d must be at most 2^40", ndim + 1);
        shape[ndim++] = (size_t)n;
        if (n == 0) break;
        lua_rawgeti(L, -1, 1);
    }
    lua_settop(L, base);
    mo__shape_numel(L, fname, ndim, shape);
    mo_tensor *t = mo__newtensor_dtype(L, ndim, shape, dt, 0, fname);
    size_t path[MO_MAX_DIMS], k = 0;
    fill_nested(L, 1, 0, t, &k, path);
    return 1;
}

/* ======================================================================== */
/* arange, randperm                                                         */
/* ======================================================================== */

/* A finite number argument. */
static lua_Number check_finite(lua_State *L, int idx, const char *fname, const char *what)
{
    lua_Number x = mo__checknumber(L, idx, fname);
    if (!isfinite(x))
        return mo__argerror(L, idx, fname, "%s must be finite, got %s", what, mo__describe(L, idx));
    return x;
}

/* An integer count 0..max at idx. */
static lua_Integer check_count(lua_State *L, int idx, const char *fname, lua_Integer max)
{
    mo__checknumber(L, idx, fname);
    int isint;
    lua_Integer n = lua_tointegerx(L, idx, &isint); /* exact integers only: no cast */
    if (isint && n >= 0 && n <= max) return n;
    return mo__argerror(L, idx, fname, "n must be an integer in 0..%I, got %s", max,
                        mo__describe(L, idx));
}

/*
 * arange(n) -> {1, 2, ..., n} (Lua's 1-based counting, not PyTorch's 0..n-1);
 * arange(a, b [, step]) -> the values a + k*step, k = 0, 1, ..., up to b (included
 * when some a + k*step equals it, in double): as `for i = a, b, step` visits them when
 * the arguments are integers (a float loop accumulates, so its values can differ).
 */
static int f_arange(lua_State *L)
{
    static const char *const fname = "arange";
    lua_Number start = 1.0, step = 1.0;
    size_t count;
    int last = lua_gettop(L);
    mo_dtype dt;
    mo__optdtype(L, &last, fname, &dt);
    lua_settop(L, last);
    if (lua_gettop(L) <= 1) {
        count = (size_t)check_count(L, 1, fname, MO__MAX_SIZE);
    } else {
        start = check_finite(L, 1, fname, "start");
        lua_Number stop = check_finite(L, 2, fname, "stop");
        step = lua_isnoneornil(L, 3) ? 1.0 : check_finite(L, 3, fname, "step");
        if (step == 0) return mo__argerror(L, 3, fname, "step must not be 0");
        /* the last k with start + k*step on this side of stop, as the values are
         * computed: the quotient's rounding can be one off either way. The bounds come
         * first, so k is a small exact integer when the loops step it (the quotient may
         * be inf: 1e300 / 1e-300). */
        lua_Number k = floor((stop - start) / step);
        if (k < -1) k = -1; /* an empty range */
        if (!(k + 1 <= (lua_Number)MO__MAX_SIZE)) return luaL_error(L, "arange: more than 2^40 values");
        while (k >= 0 && (step > 0 ? start + k * step > stop : start + k * step < stop)) k--;
        while (step > 0 ? start + (k + 1) * step <= stop : start + (k + 1) * step >= stop)
            if (++k + 1 > (lua_Number)MO__MAX_SIZE)
                return luaL_error(L, "arange: more than 2^40 values");
        count = (size_t)(k + 1);
    }
    mo_tensor *t = mo__newtensor_dtype(L, 1, &count, dt, 0, fname);
    for (size_t i = 0; i < count; i++) put_el(t, i, start + (lua_Number)i * step);
    return 1;
}

/* randperm(n) -> a Lua table holding 1..n in random order (Fisher-Yates, default generator). */
static int f_randperm(lua_State *L)
{
    lua_Integer n = check_count(L, 1, "randperm", INT_MAX);
    /* the work array lives in a userdata: no leak if a Lua error happens */
    size_t *perm = (size_t *)lua_newuserdatauv(L, (size_t)n * sizeof *perm + 1, 0);
    mo_status st = mo_randperm(perm, (size_t)n, mo__lua_rng(L));
    if (st != MO_OK) return mo__status_error(L, st, "randperm");
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_pushinteger(L, (lua_Integer)perm[i] + 1);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* ======================================================================== */
/* linspace, eye, *_like, randint                                           */
/* ======================================================================== */

/* Reads a trailing options table at `at` (nothing else may follow it); returns whether it
 * named a dtype, with *dt set (float32 when there is none). */
static int trailing_dtype(lua_State *L, int at, const char *fname, mo_dtype *dt)
{
    int last = lua_gettop(L);
    *dt = MO_FLOAT32;
    if (last < at) return 0;
    if (last > at) return mo__argerror(L, at + 1, fname, "unexpected argument (%s)",
                                       luaL_typename(L, at + 1));
    if (lua_isnil(L, at)) return 0;
    if (!mo__optdtype(L, &last, fname, dt)) return mo__typeerror(L, at, fname, "options table");
    return 1;
}

/*
 * linspace(a, b, n [, {dtype =}]) -> n values from a to b, both included, evenly spaced.
 * As PyTorch computes them: the first half as a + i*step, the second as b - (n-1-i)*step,
 * so both ends are exact (step = (b - a) / (n - 1); n == 1 gives {a}).
 */
static int f_linspace(lua_State *L)
{
    static const char *const fname = "linspace";
    const lua_Number a = check_finite(L, 1, fname, "start");
    const lua_Number b = check_finite(L, 2, fname, "stop");
    const size_t n = (size_t)check_count(L, 3, fname, MO__MAX_SIZE);
    mo_dtype dt;
    trailing_dtype(L, 4, fname, &dt);
    mo_tensor *t = mo__newtensor_dtype(L, 1, &n, dt, 0, fname);
    /* the first `half` from a, the rest from b; n == 1 is {a} (PyTorch's special case) */
    const size_t half = n == 1 ? 1 : n / 2;
    if (dt == MO_FLOAT32) { /* in float, as PyTorch computes a float32 linspace */
        const float fa = (float)a, fb = (float)b;
        const float step = n > 1 ? (fb - fa) / (float)(n - 1) : 0.0f;
        float *p = mo_tensor_data(t);
        for (size_t i = 0; i < n; i++)
            p[i] = i < half ? fa + step * (float)i : fb - step * (float)(n - 1 - i);
        return 1;
    }
    const double step = n > 1 ? (b - a) / (double)(n - 1) : 0.0;
    double *p = mo_tensor_data_f64(t);
    for (size_t i = 0; i < n; i++)
        p[i] = i < half ? a + step * (double)i : b - step * (double)(n - 1 - i);
    return 1;
}

/* eye(n [, m] [, {dtype =}]) -> an n x m (default n x n) matrix, ones on the diagonal. */
static int f_eye(lua_State *L)
{
    static const char *const fname = "eye";
    const size_t n = (size_t)check_count(L, 1, fname, MO__MAX_SIZE);
    const int has_m = lua_type(L, 2) == LUA_TNUMBER;
    const size_t m = has_m ? (size_t)check_count(L, 2, fname, MO__MAX_SIZE) : n;
    mo_dtype dt;
    trailing_dtype(L, has_m ? 3 : 2, fname, &dt);
    const size_t shape[2] = {n, m};
    mo__shape_numel(L, fname, 2, shape);
    mo_tensor *t = mo__newtensor_dtype(L, 2, shape, dt, 1, fname);
    for (size_t i = 0; i < n && i < m; i++) put_el(t, i * m + i, 1.0);
    return 1;
}

/* The tensor at 1 and the dtype for a *_like result: t's unless {dtype =} says otherwise. */
static mo_tensor *like(lua_State *L, const char *fname, mo_dtype *dt)
{
    mo_tensor *src = mo__checkarg(L, 1, fname);
    const mo_dtype own = src->dtype;
    if (!trailing_dtype(L, 2, fname, dt)) *dt = own;
    src = mo__checkarg(L, 1, fname); /* reading the options may have run Lua code */
    return mo__newtensor_dtype(L, src->ndim, src->shape, *dt, 0, fname);
}

static int f_zeros_like(lua_State *L)
{
    mo_dtype dt;
    mo__check(L, mo_fill(like(L, "zeros_like", &dt), 0.0), "zeros_like");
    return 1;
}

static int f_ones_like(lua_State *L)
{
    mo_dtype dt;
    mo__check(L, mo_fill(like(L, "ones_like", &dt), 1.0), "ones_like");
    return 1;
}

static int f_rand_like(lua_State *L)
{
    mo_dtype dt;
    mo_tensor *t = like(L, "rand_like", &dt);
    mo__check(L, mo_rand_uniform(t, mo__lua_rng(L), 0.0, 1.0), "rand_like");
    return 1;
}

static int f_randn_like(lua_State *L)
{
    mo_dtype dt;
    mo_tensor *t = like(L, "randn_like", &dt);
    mo__check(L, mo_rand_normal(t, mo__lua_rng(L), 0.0, 1.0), "randn_like");
    return 1;
}

/* The largest integer magnitude every smaller one of which a dtype holds exactly. */
static lua_Integer exact_limit(mo_dtype dt)
{
    return dt == MO_FLOAT64 ? (lua_Integer)1 << 53 : (lua_Integer)1 << 24;
}

/*
 * randint(lo, hi, shape [, {dtype =}]) -> integers drawn uniformly from lo..hi, BOTH
 * included (Lua's math.random(lo, hi), not PyTorch's exclusive high); randint(hi, shape)
 * draws from 1..hi, like math.random(hi), so the values are valid 1-based indices of a
 * dimension of size hi. Stored as floats; |lo| and |hi| at most 2^24 (float32) or 2^53
 * (float64), where every integer is exact.
 */
static int f_randint(lua_State *L)
{
    static const char *const fname = "randint";
    const int two = lua_type(L, 2) == LUA_TNUMBER; /* randint(lo, hi, shape, ...) */
    const int sh = two ? 3 : 2;
    mo_dtype dt;
    trailing_dtype(L, sh + 1, fname, &dt);
    mo__checknumber(L, 1, fname);
    lua_Integer lo = 1, hi = mo__checkinteger(L, 1, fname, two ? "lo" : "hi");
    if (two) {
        lo = hi;
        hi = mo__checkinteger(L, 2, fname, "hi");
    }
    const lua_Integer lim = exact_limit(dt);
    if (lo > hi)
        return mo__argerror(L, two ? 2 : 1, fname, "hi %I is less than lo %I", hi, lo);
    if (lo < -lim || hi > lim)
        return mo__argerror(L, two ? 2 : 1, fname,
                            "range %I..%I goes past %I, beyond which %s does not hold every integer",
                            lo, hi, lim, mo_dtype_name(dt));
    if (lua_type(L, sh) != LUA_TTABLE) return mo__typeerror(L, sh, fname, "shape table");
    size_t shape[MO_MAX_DIMS];
    int ndim = mo__readshape(L, sh, sh, fname, shape, NULL);
    mo__shape_numel(L, fname, ndim, shape);
    mo_tensor *t = mo__newtensor_dtype(L, ndim, shape, dt, 0, fname);
    mo_rng *r = mo__lua_rng(L);
    const uint64_t span = (uint64_t)(hi - lo) + 1; /* <= 2^54 + 1: no overflow */
    for (size_t i = 0; i < t->numel; i++)
        put_el(t, i, (lua_Number)(lo + (lua_Integer)mo_rng_below(r, span)));
    return 1;
}

/* ======================================================================== */
/* In-place random fills                                                    */
/* ======================================================================== */

/* t:uniform_([lo = 0, hi = 1]) fills with U[lo, hi); returns t. */
static int m_uniform_(lua_State *L)
{
    static const char *const fname = "uniform_";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    lua_Number lo = lua_isnoneornil(L, 2) ? 0.0 : check_finite(L, 2, fname, "lo");
    lua_Number hi = lua_isnoneornil(L, 3) ? 1.0 : check_finite(L, 3, fname, "hi");
    if (lo > hi)
        return mo__argerror(L, 3, fname, "hi %s is less than lo %s", mo__describe(L, 3),
                            mo__describe(L, 2));
    mo_status st = mo_rand_uniform(t, mo__lua_rng(L), lo, hi);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    lua_pushvalue(L, 1); /* return self */
    return 1;
}

/* t:normal_([mean = 0, sd = 1]) fills with N(mean, sd^2); returns t. */
static int m_normal_(lua_State *L)
{
    static const char *const fname = "normal_";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    lua_Number mean = lua_isnoneornil(L, 2) ? 0.0 : check_finite(L, 2, fname, "mean");
    lua_Number sd = lua_isnoneornil(L, 3) ? 1.0 : check_finite(L, 3, fname, "sd");
    if (sd < 0)
        return mo__argerror(L, 3, fname, "sd must be non-negative, got %s", mo__describe(L, 3));
    mo_status st = mo_rand_normal(t, mo__lua_rng(L), mean, sd);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    lua_pushvalue(L, 1); /* return self */
    return 1;
}

static const luaL_Reg create_functions[] = {
    {"tensor", f_tensor},
    {"zeros", f_zeros},
    {"ones", f_ones},
    {"full", f_full},
    {"empty", f_empty},
    {"rand", f_rand},
    {"randn", f_randn},
    {"arange", f_arange},
    {"randperm", f_randperm},
    {"linspace", f_linspace},
    {"eye", f_eye},
    {"zeros_like", f_zeros_like},
    {"ones_like", f_ones_like},
    {"rand_like", f_rand_like},
    {"randn_like", f_randn_like},
    {"randint", f_randint},
    {NULL, NULL},
};

static const luaL_Reg create_methods[] = {
    {"uniform_", m_uniform_},
    {"normal_", m_normal_},
    {NULL, NULL},
};

void mo__open_create(lua_State *L)
{
    mo__setfuncs(L, create_functions);
    mo__add_methods(L, create_methods);
}
