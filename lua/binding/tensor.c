/*
 * tensor.c - the moonopt.Tensor userdata: creation, checking, metamethods,
 * element access and views; plus the argument and error helpers every file of
 * the binding shares (declared in binding.h).
 *
 * A tensor is a full userdata whose block is an mo__tblock (one mo_tensor handle
 * and autograd's flag bits), with four user values: [1] .grad (nil or a tensor),
 * [2] what the handle's memory depends on (a host's owner object; views copy it
 * from their source), [3] autograd's node or non-differentiable op name and [4]
 * the output index in that node (autograd.c, docs/autograd.md). The
 * handle starts empty, so an allocation error after lua_newuserdatauv leaves a
 * valid object that __gc handles; __gc and __close release the handle and are
 * safe to call any number of times. An empty or revoked handle makes every
 * method raise "tensor has been freed".
 *
 * Indices, dimensions and starts are 1-based in Lua and become 0-based size_t
 * here only after they were range-checked as lua_Integer.
 */
#include "binding.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Registry key of the methods table (its address is the key; never written). */
static const char methods_key = 'm';

/* ======================================================================== */
/* Errors                                                                   */
/* ======================================================================== */

int mo__argerror(lua_State *L, int arg, const char *fname, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *msg = lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    /* Number arguments as Lua's own luaL_argerror does: in t:get(9) the 9 is #1. */
    lua_Debug ar;
    if (lua_getstack(L, 0, &ar)) {
        lua_getinfo(L, "n", &ar);
        if (ar.namewhat != NULL && strcmp(ar.namewhat, "method") == 0) {
            arg--;
            if (arg == 0) return luaL_error(L, "calling '%s' on bad self (%s)", fname, msg);
        }
    }
    return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, fname, msg);
}

int mo__status_error(lua_State *L, mo_status st, const char *fname)
{
    return luaL_error(L, "%s: %s", fname, mo_status_str(st));
}

const char *mo__shapestr_raw(int ndim, const size_t *shape, char *buf)
{
    size_t used = 0;
    buf[used++] = '{';
    for (int i = 0; i < ndim; i++) {
        int n = snprintf(buf + used, MO__SHAPE_BUF - used, i ? ", %llu" : "%llu",
                         (unsigned long long)shape[i]);
        if (n < 0 || (size_t)n >= MO__SHAPE_BUF - used - 1) break;
        used += (size_t)n;
    }
    buf[used++] = '}';
    buf[used] = '\0';
    return buf;
}

const char *mo__shapestr(const mo_tensor *t, char *buf)
{
    return mo__shapestr_raw(t->ndim, t->shape, buf);
}

int mo__shape_error(lua_State *L, const char *fname, const mo_tensor *a, const mo_tensor *b)
{
    char sa[MO__SHAPE_BUF], sb[MO__SHAPE_BUF];
    return luaL_error(L, "%s: shape mismatch: %s vs %s", fname, mo__shapestr(a, sa),
                      mo__shapestr(b, sb));
}

const char *mo__describe(lua_State *L, int idx)
{
    if (lua_isinteger(L, idx)) return lua_pushfstring(L, "%I", lua_tointeger(L, idx));
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Number x = lua_tonumber(L, idx);
        if (x != x) return lua_pushstring(L, "nan");
        return lua_pushfstring(L, "%f", x);
    }
    return lua_pushstring(L, luaL_typename(L, idx));
}

int mo__typeerror(lua_State *L, int arg, const char *fname, const char *expected)
{
    const char *got;
    if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING)
        got = lua_tostring(L, -1);
    else if (lua_type(L, arg) == LUA_TLIGHTUSERDATA)
        got = "light userdata";
    else
        got = luaL_typename(L, arg);
    return mo__argerror(L, arg, fname, "%s expected, got %s", expected, got);
}

/* ======================================================================== */
/* Checking arguments                                                       */
/* ======================================================================== */

mo_tensor *mo__totensor(lua_State *L, int idx)
{
    void *p = lua_touserdata(L, idx);
    if (p != NULL && lua_getmetatable(L, idx)) {
        luaL_getmetatable(L, MO_TENSOR_MT);
        int same = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (same) return (mo_tensor *)p;
    }
    return NULL;
}

mo_tensor *mo__toarg(lua_State *L, int idx)
{
    /* The hot path of every method (t:get(1, 1) must stay well under 0.2 us):
     * compare the metatable with upvalue 1 instead of looking the registry up by name. */
    void *p = lua_touserdata(L, idx);
    if (p == NULL || !lua_getmetatable(L, idx)) return NULL;
    int same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    return same ? (mo_tensor *)p : NULL;
}

mo_tensor *mo__checkarg(lua_State *L, int idx, const char *fname)
{
    /* anything else (no such upvalue, another type, freed) takes the full check */
    mo_tensor *t = mo__toarg(L, idx);
    if (t != NULL && mo_tensor_alive(t)) return t;
    return mo__checktensor(L, idx, fname);
}

mo_tensor *mo__checktensor(lua_State *L, int idx, const char *fname)
{
    mo_tensor *t = mo__totensor(L, idx);
    if (t == NULL) mo__typeerror(L, idx, fname, MO_TENSOR_MT);
    if (!mo_tensor_alive(t)) mo__argerror(L, idx, fname, "tensor has been freed");
    return t;
}

mo_tensor *mo__recheck(lua_State *L, int idx, const char *fname, int ndim, const size_t *shape)
{
    mo_tensor *t = mo__checkarg(L, idx, fname);
    if (shape != NULL && !mo__shape_is(t, ndim, shape)) {
        char was[MO__SHAPE_BUF], now[MO__SHAPE_BUF];
        luaL_error(L, "%s: the tensor changed from %s to %s during the call", fname,
                   mo__shapestr_raw(ndim, shape, was), mo__shapestr(t, now));
    }
    return t;
}

lua_Number mo__checknumber(lua_State *L, int idx, const char *fname)
{
    if (lua_type(L, idx) != LUA_TNUMBER) mo__typeerror(L, idx, fname, "number");
    return lua_tonumber(L, idx);
}

mo_tensor *mo__opttensor(lua_State *L, int idx, const char *fname)
{
    if (lua_isnoneornil(L, idx)) return NULL;
    return mo__checkarg(L, idx, fname);
}

void mo__check(lua_State *L, mo_status st, const char *fname)
{
    if (st != MO_OK) mo__status_error(L, st, fname);
}

int mo__shape_is(const mo_tensor *t, int ndim, const size_t *shape)
{
    if (t->ndim != ndim) return 0;
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] != shape[d]) return 0;
    return 1;
}

lua_Number mo__optnumber(lua_State *L, int idx, const char *fname, lua_Number def)
{
    if (lua_isnoneornil(L, idx)) return def;
    return mo__checknumber(L, idx, fname);
}

lua_Integer mo__checkinteger(lua_State *L, int idx, const char *fname, const char *what)
{
    if (lua_type(L, idx) == LUA_TNUMBER) {
        /* lua_tointegerx converts a float only when its value is an exact integer
         * in range (NaN, inf, 2^63, 1.5 fail): no C cast of an arbitrary double. */
        int isint;
        lua_Integer v = lua_tointegerx(L, idx, &isint);
        if (isint) return v;
    }
    mo__argerror(L, idx, fname, "%s must be an integer, got %s", what, mo__describe(L, idx));
    return 0;
}


int mo__checkdim_n(lua_State *L, int idx, const char *fname, const mo_tensor *t, int n)
{
    lua_Integer d = mo__checkinteger(L, idx, fname, "dimension");
    lua_Integer w = d < 0 ? d + n + 1 : d;
    if (w < 1 || w > n) {
        char s[MO__SHAPE_BUF];
        mo__argerror(L, idx, fname, "dimension %I out of range for a %d-d tensor of shape %s", d,
                     t->ndim, mo__shapestr(t, s));
    }
    return (int)(w - 1);
}

int mo__checkdim(lua_State *L, int idx, const char *fname, const mo_tensor *t)
{
    return mo__checkdim_n(L, idx, fname, t, t->ndim);
}

/* One size of a shape; pos is its 1-based position (for the message). */
static size_t read_size(lua_State *L, int idx, const char *fname, int pos, int *infer, int dim)
{
    const char *want = infer ? "a non-negative integer or -1" : "a non-negative integer";
    lua_Integer v = 0;
    int ok = 0;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        /* exact integers only, never a C cast of the double (NaN, 2^63 are UB there) */
        v = lua_tointegerx(L, idx, &ok);
        lua_Number x = lua_tonumber(L, idx);
        if (!ok && x == floor(x) && x > (lua_Number)MO__MAX_SIZE && x != HUGE_VAL)
            luaL_error(L, "%s: size #%d must be at most 2^40, got %s", fname, pos,
                       mo__describe(L, idx));
    }
    if (ok && v == -1 && infer) {
        if (*infer >= 0) luaL_error(L, "%s: only one size may be -1", fname);
        *infer = dim;
        return 0;
    }
    if (!ok || v < 0)
        luaL_error(L, "%s: size #%d must be %s, got %s", fname, pos, want, mo__describe(L, idx));
    if (v > MO__MAX_SIZE)
        luaL_error(L, "%s: size #%d must be at most 2^40, got %I", fname, pos, v);
    return (size_t)v;
}

int mo__readshape(lua_State *L, int first, int last, const char *fname, size_t *shape, int *infer)
{
    int fromtable = (first == last && lua_type(L, first) == LUA_TTABLE);
    lua_Integer n = fromtable ? (lua_Integer)lua_rawlen(L, first) : (lua_Integer)last - first + 1;
    if (n < 0) n = 0;
    if (n > MO_MAX_DIMS)
        luaL_error(L, "%s: too many dimensions (%I, at most %d)", fname, n, MO_MAX_DIMS);
    if (infer) *infer = -1;
    for (int i = 0; i < (int)n; i++) {
        if (fromtable) {
            lua_rawgeti(L, first, i + 1);
            shape[i] = read_size(L, lua_gettop(L), fname, i + 1, infer, i);
            lua_pop(L, 1);
        } else {
            shape[i] = read_size(L, first + i, fname, i + 1, infer, i);
        }
    }
    return (int)n;
}

size_t mo__shape_numel(lua_State *L, const char *fname, int ndim, const size_t *shape)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) return 0;
    for (int i = 0; i < ndim; i++) {
        /* Each size is <= 2^40 here, so compare by division and never wrap. */
        if (n > (size_t)MO__MAX_SIZE / shape[i]) {
            char buf[MO__SHAPE_BUF];
            luaL_error(L, "%s: shape %s has more than 2^40 elements", fname,
                       mo__shapestr_raw(ndim, shape, buf));
        }
        n *= shape[i];
    }
    return n;
}

void mo__infer_size(lua_State *L, const char *fname, int ndim, size_t *shape, int infer,
                    size_t numel)
{
    size_t known = 1;
    int saturated = 0;
    for (int i = 0; i < ndim; i++) {
        if (i == infer) continue;
        if (shape[i] != 0 && known > SIZE_MAX / shape[i])
            saturated = 1;
        else
            known *= shape[i];
    }
    if (saturated || known == 0 || numel % known != 0)
        luaL_error(L, "%s: cannot infer size #%d: %I elements are not a multiple of the other "
                   "sizes' product", fname, infer + 1, (lua_Integer)numel);
    shape[infer] = numel / known;
}

/* ======================================================================== */
/* Making tensors                                                           */
/* ======================================================================== */

mo_tensor *mo_lua_newtensor(lua_State *L)
{
    /* The handle is valid and empty before the metatable (and its __gc) is set
     * and before any storage exists: an error at any later point leaks nothing. */
    mo__tblock *b = (mo__tblock *)lua_newuserdatauv(L, sizeof *b, MO__TENSOR_UVS);
    mo_tensor *t = &b->t;
    mo_tensor_init(t);
    b->ag = 0;
    luaL_setmetatable(L, MO_TENSOR_MT);
    return t;
}

mo_tensor *mo_lua_testtensor(lua_State *L, int idx)
{
    mo_tensor *t = mo__totensor(L, idx);
    return (t != NULL && mo_tensor_alive(t)) ? t : NULL;
}

mo_tensor *mo_lua_checktensor(lua_State *L, int idx)
{
    return mo__checktensor(L, idx, "mo_lua_checktensor");
}

mo_tensor *mo__newtensor(lua_State *L, int ndim, const size_t *shape, int zero, const char *fname)
{
    return mo__newtensor_dtype(L, ndim, shape, MO_FLOAT32, zero, fname);
}

mo_tensor *mo__newtensor_dtype(lua_State *L, int ndim, const size_t *shape, mo_dtype dt, int zero,
                               const char *fname)
{
    /* shape often points into another tensor's handle (new_like(a) passes a->shape), and
     * the allocation below can run a finalizer that frees that tensor, which zeroes its
     * handle: copy the sizes first. */
    size_t sizes[MO_MAX_DIMS];
    if (ndim < 0 || ndim > MO_MAX_DIMS) mo__status_error(L, MO_ERR_DIMS, fname);
    if (ndim > 0) memcpy(sizes, shape, (size_t)ndim * sizeof *sizes);
    /* Reported before the new handle exists (alloc.c): a collection run here
     * finds the caller's previous temporaries dead while they are still young. */
    size_t n = 1;
    for (int i = 0; i < ndim && n != 0; i++)
        if (mo_size_mul(n, sizes[i], &n) != MO_OK) n = 0; /* the allocation below says why */
    mo__gc_account(L, n * (mo_dtype_size(dt) / sizeof(float))); /* in floats */
    mo_tensor *t = mo_lua_newtensor(L);
    const mo_allocator *a = mo__allocator(L, n * mo_dtype_size(dt)); /* after the last Lua allocation */
    mo_status st = zero ? mo_tensor_zeros_dtype(t, ndim, sizes, dt, a)
                        : mo_tensor_empty_dtype(t, ndim, sizes, dt, a);
    if (st != MO_OK) mo__status_error(L, st, fname);
    return t;
}

/* ---- dtypes ---- */

int mo__same_dtype(lua_State *L, const char *fname, const mo_tensor *a, const mo_tensor *b)
{
    if (a->dtype == b->dtype) return 1;
    return luaL_error(L, "%s: dtype mismatch: %s vs %s (convert one with :double() or :float())",
                      fname, mo_dtype_name(a->dtype), mo_dtype_name(b->dtype));
}

mo_dtype mo__checkdtype(lua_State *L, int idx, const char *fname)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx);
        if (strcmp(s, "float32") == 0) return MO_FLOAT32;
        if (strcmp(s, "float64") == 0) return MO_FLOAT64;
    }
    mo__argerror(L, idx, fname, "dtype must be \"float32\" or \"float64\", got %s",
                 lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : luaL_typename(L, idx));
    return MO_FLOAT32;
}

int mo__is_options(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE || lua_rawlen(L, idx) != 0) return 0;
    lua_pushnil(L);
    if (lua_next(L, idx < 0 ? idx - 1 : idx) == 0) return 0; /* {} is an empty shape */
    lua_pop(L, 2);
    return 1;
}

int mo__optdtype(lua_State *L, int *last, const char *fname, mo_dtype *dt)
{
    *dt = MO_FLOAT32;
    if (*last < 1 || !mo__is_options(L, *last)) return 0;
    const int idx = *last;
    /* every key must be known: a misspelt option is an error, not a silent default */
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int known = lua_type(L, -2) == LUA_TSTRING;
        if (known && strcmp(lua_tostring(L, -2), "requires_grad") == 0) {
            /* applied to the result by the autograd dispatcher (ag_call) */
            if (!lua_isboolean(L, -1))
                return mo__argerror(L, idx, fname, "requires_grad must be a boolean, got %s",
                                    luaL_typename(L, -1));
        } else if (!(known && strcmp(lua_tostring(L, -2), "dtype") == 0)) {
            lua_pop(L, 1);
            return mo__argerror(L, idx, fname, "unknown option %s (options: dtype, requires_grad)",
                                lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                                : luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    lua_getfield(L, idx, "dtype");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING || (strcmp(lua_tostring(L, -1), "float32") != 0 &&
                                                strcmp(lua_tostring(L, -1), "float64") != 0))
            return mo__argerror(L, idx, fname,
                                "dtype must be \"float32\" or \"float64\", got %s",
                                lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                                : luaL_typename(L, -1));
        *dt = strcmp(lua_tostring(L, -1), "float64") == 0 ? MO_FLOAT64 : MO_FLOAT32;
    }
    lua_pop(L, 1);
    *last = idx - 1;
    return 1;
}

/* Element `off` (elements from element (0, ..., 0)) of t, as a double (exact in both dtypes). */
static double read_el(const mo_tensor *t, ptrdiff_t off)
{
    if (t->dtype == MO_FLOAT64) return mo_tensor_data_f64(t)[off];
    return (double)mo_tensor_data(t)[off];
}

void mo__copy_owner(lua_State *L, int src, int dst)
{
    src = lua_absindex(L, src);
    dst = lua_absindex(L, dst);
    lua_getiuservalue(L, src, 2);
    lua_setiuservalue(L, dst, 2);
}

static int same_view(const mo_tensor *a, const mo_tensor *b)
{
    if (a->storage != b->storage || a->offset != b->offset || a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i] || (a->shape[i] > 1 && a->stride[i] != b->stride[i]))
            return 0;
    return 1;
}

mo_status mo__unalias(mo_tensor *tmp, const mo_tensor *out, const mo_tensor **in)
{
    mo_tensor_init(tmp);
    if (!mo_tensor_same_storage(out, *in) || same_view(out, *in) || (*in)->numel == 0) return MO_OK;
    mo_status st = mo_tensor_clone(tmp, *in, NULL);
    if (st == MO_OK) *in = tmp;
    return st;
}

/* Pushes a new tensor for a view of the tensor at src (made by the caller into
 * the returned handle) and copies src's owner value. */
static mo_tensor *push_view(lua_State *L, int src)
{
    mo_tensor *v = mo_lua_newtensor(L);
    mo__copy_owner(L, src, -1);
    return v;
}

/* ======================================================================== */
/* Metamethods                                                              */
/* ======================================================================== */

/* __gc (the collector's finalizer): release this handle, drop .grad and the
 * owner. Views made from the tensor hold their own references and keep working
 * (a view routinely outlives the temporary it was taken from). A second call
 * finds an empty handle and does nothing harmful. */
static int t_gc(lua_State *L)
{
    mo_tensor *t = mo__totensor(L, 1);
    if (t == NULL) return mo__typeerror(L, 1, "__gc", MO_TENSOR_MT);
    mo_tensor_release(t);
    mo__ag_forget(L, t);
    for (int uv = 1; uv <= MO__TENSOR_UVS; uv++) {
        lua_pushnil(L);
        lua_setiuservalue(L, 1, uv);
    }
    return 0;
}

/* t:__gc() and __close (`local t <close>`): free the memory now. The storage is
 * revoked, so every view sharing it (views of views, and the tensor a view was
 * taken from) raises "tensor has been freed" from now on instead of keeping the
 * memory alive; borrowed host memory gets its release callback now. Then the
 * handle is released as by the collector. Harmless on a freed tensor. */
static int t_free(lua_State *L)
{
    mo_tensor *t = mo__totensor(L, 1);
    if (t == NULL) return mo__typeerror(L, 1, "__gc", MO_TENSOR_MT);
    mo_tensor_revoke(t);
    return t_gc(L);
}

/* Walks the first `limit` elements in row-major order (any strides). */
static size_t first_values(const mo_tensor *t, double *vals, size_t limit)
{
    size_t idx[MO_MAX_DIMS] = {0};
    size_t n = t->numel < limit ? t->numel : limit;
    for (size_t k = 0; k < n; k++) {
        ptrdiff_t off = 0;
        for (int d = 0; d < t->ndim; d++) off += (ptrdiff_t)idx[d] * t->stride[d];
        vals[k] = read_el(t, off);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
    return n;
}

static int t_len(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "__len");
    if (t->ndim == 0) return luaL_error(L, "__len: a 0-d tensor has no length");
    lua_pushinteger(L, (lua_Integer)t->shape[0]);
    return 1;
}

/* Upvalues of t_index and t_newindex: 1..MO__AG_NUPVALUES a dispatcher's
 * (mo__ag_push_upvalues), then the methods table and the name "__index_t". */
enum { UV_METHODS = MO__AG_NUPVALUES + 1, UV_INDEX_T = MO__AG_NUPVALUES + 2 };

/* __index: methods first, then .grad (user value 1) and .dtype. */
static int t_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(UV_METHODS)) != LUA_TNIL) return 1;
    /* a view: may be recorded. A number key's node saves the key as is (a declarative save,
       done in C); a table key's is copied by a Lua save (the caller may change the table) */
    if (lua_type(L, 2) == LUA_TNUMBER)
        return mo__ag_call_uv(L, mo__index, lua_upvalueindex(MO__AG_UV_NAME), 0);
    if (lua_type(L, 2) == LUA_TTABLE)
        return mo__ag_call_uv(L, mo__index, lua_upvalueindex(UV_INDEX_T), 0);
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *k = lua_tostring(L, 2);
        if (strcmp(k, "grad") == 0) {
            mo__checkarg(L, 1, "grad");
            lua_getiuservalue(L, 1, 1);
        } else if (strcmp(k, "requires_grad") == 0) {
            lua_pushboolean(L, (mo__ag_flags(mo__checkarg(L, 1, k)) & MO__AG_REQ) != 0);
        } else if (strcmp(k, "is_leaf") == 0) {
            lua_pushboolean(L, (mo__ag_flags(mo__checkarg(L, 1, k)) & MO__AG_NONLEAF) == 0);
        } else if (strcmp(k, "grad_fn") == 0) {
            if (mo__ag_flags(mo__checkarg(L, 1, k)) & MO__AG_NONLEAF)
                lua_getiuservalue(L, 1, 3);
            else
                lua_pushnil(L);
        } else if (strcmp(k, "_version") == 0) {
            lua_pushinteger(L, (lua_Integer)mo_tensor_version(mo__checkarg(L, 1, k)));
        } else if (strcmp(k, "dtype") == 0) {
            mo_tensor *t = mo__totensor(L, 1);
            if (t) lua_pushstring(L, mo_dtype_name(t->dtype)); /* a freed tensor keeps its dtype */
        }
    }
    return 1;
}

/* __newindex: only t.grad = nil | tensor of t's shape. */
static int t_newindex(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "__newindex");
    if (lua_type(L, 2) == LUA_TNUMBER || lua_type(L, 2) == LUA_TTABLE)
        return mo__ag_call_uv(L, mo__newindex, lua_upvalueindex(MO__AG_UV_NAME), MO__AG_INPLACE);
    if (!(lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "grad") == 0)) {
        if (lua_type(L, 2) == LUA_TSTRING)
            return luaL_error(L, "%s: cannot set field '%s' (only .grad is assignable)",
                              MO_TENSOR_MT, lua_tostring(L, 2));
        return luaL_error(L, "%s: cannot set a field with a %s key (only .grad is assignable)",
                          MO_TENSOR_MT, luaL_typename(L, 2));
    }
    if (!lua_isnil(L, 3)) {
        mo_tensor *g = mo__totensor(L, 3);
        if (g == NULL)
            return luaL_error(L, "grad: must be nil or a %s, got %s", MO_TENSOR_MT,
                              luaL_typename(L, 3));
        if (!mo_tensor_alive(g)) return luaL_error(L, "grad: tensor has been freed");
        if (!mo_tensor_same_shape(t, g)) {
            char st[MO__SHAPE_BUF], sg[MO__SHAPE_BUF];
            return luaL_error(L, "grad: shape mismatch: tensor %s vs grad %s", mo__shapestr(t, st),
                              mo__shapestr(g, sg));
        }
        if (g->dtype != t->dtype)
            return luaL_error(L, "grad: dtype mismatch: tensor %s vs grad %s",
                              mo_dtype_name(t->dtype), mo_dtype_name(g->dtype));
    }
    lua_settop(L, 3);
    lua_setiuservalue(L, 1, 1);
    return 0;
}

/* ======================================================================== */
/* Shape queries                                                            */
/* ======================================================================== */

static void push_sizes(lua_State *L, const mo_tensor *t, int strides)
{
    /* copied first: creating the table may run a finalizer that frees t */
    lua_Integer v[MO_MAX_DIMS];
    int ndim = t->ndim;
    for (int i = 0; i < ndim; i++)
        v[i] = strides ? (lua_Integer)t->stride[i] : (lua_Integer)t->shape[i];
    lua_createtable(L, ndim, 0);
    for (int i = 0; i < ndim; i++) {
        lua_pushinteger(L, v[i]);
        lua_rawseti(L, -2, i + 1); /* within the preallocated array part: no allocation */
    }
}

static int m_shape(lua_State *L)
{
    push_sizes(L, mo__checkarg(L, 1, "shape"), 0);
    return 1;
}

/* size() -> the shape table; size(dim) -> one size. */
static int m_size(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "size");
    if (lua_isnoneornil(L, 2)) {
        push_sizes(L, t, 0);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)t->shape[mo__checkdim(L, 2, "size", t)]);
    return 1;
}

/* stride() / stride(dim), in elements. */
static int m_stride(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "stride");
    if (lua_isnoneornil(L, 2)) {
        push_sizes(L, t, 1);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)t->stride[mo__checkdim(L, 2, "stride", t)]);
    return 1;
}

static int m_numel(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)mo__checkarg(L, 1, "numel")->numel);
    return 1;
}

static int m_dim(lua_State *L)
{
    lua_pushinteger(L, mo__checkarg(L, 1, "dim")->ndim);
    return 1;
}

static int m_is_contiguous(lua_State *L)
{
    lua_pushboolean(L, mo_tensor_is_contiguous(mo__checkarg(L, 1, "is_contiguous")));
    return 1;
}

static int m_same_storage(lua_State *L)
{
    mo_tensor *a = mo__checkarg(L, 1, "same_storage");
    mo_tensor *b = mo__checkarg(L, 2, "same_storage");
    lua_pushboolean(L, mo_tensor_same_storage(a, b));
    return 1;
}

/* ======================================================================== */
/* Element access                                                           */
/* ======================================================================== */

/* The element offset (from mo_tensor_ptr, in elements) of the indices at first..first+ndim-1. */
static ptrdiff_t element_offset(lua_State *L, const mo_tensor *t, int first, const char *fname)
{
    ptrdiff_t off = 0;
    for (int d = 0; d < t->ndim; d++) {
        int arg = first + d;
        lua_Integer i = lua_isinteger(L, arg) ? lua_tointeger(L, arg)
                                              : mo__checkinteger(L, arg, fname, "index");
        if (i < 1 || (lua_Unsigned)i > (lua_Unsigned)t->shape[d])
            mo__argerror(L, arg, fname, "index %I out of range for dimension %d of size %I", i,
                         d + 1, (lua_Integer)t->shape[d]);
        off += (ptrdiff_t)(i - 1) * t->stride[d];
    }
    return off;
}

/* get(i, j, ...) -> number: one index per dimension. */
static int m_get(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "get");
    int n = lua_gettop(L) - 1;
    if (n != t->ndim)
        return luaL_error(L, "get: a %d-d tensor needs %d indices, got %d", t->ndim, t->ndim, n);
    ptrdiff_t off = element_offset(L, t, 2, "get");
    lua_pushnumber(L, (lua_Number)read_el(t, off));
    return 1;
}

/* set(i, j, ..., value) -> self. */
static int m_set(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "set");
    int top = lua_gettop(L);
    if (top - 2 != t->ndim)
        return luaL_error(L, "set: a %d-d tensor needs %d indices and a value, got %d arguments",
                          t->ndim, t->ndim, top - 1);
    ptrdiff_t off = element_offset(L, t, 2, "set");
    lua_Number v = mo__checknumber(L, top, "set");
    if (t->dtype == MO_FLOAT64)
        mo_tensor_data_f64(t)[off] = (double)v;
    else
        mo_tensor_data(t)[off] = (float)v;
    lua_pushvalue(L, 1); /* return self */
    return 1;
}

/* item() -> the value of a one-element tensor. */
static int m_item(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "item");
    if (t->numel != 1)
        return luaL_error(L, "item: the tensor has %I elements, expected 1", (lua_Integer)t->numel);
    double v;
    first_values(t, &v, 1);
    lua_pushnumber(L, (lua_Number)v);
    return 1;
}

/* Pushes nested tables for dimensions d.. of t starting at element offset p. t and p belong to
 * a private copy that only the caller's stack slot holds (see m_totable). */
static void push_nested(lua_State *L, const mo_tensor *t, ptrdiff_t p, int d)
{
    size_t n = t->shape[d];
    ptrdiff_t s = t->stride[d];
    lua_createtable(L, n < (size_t)INT_MAX ? (int)n : 0, 0);
    if (d == t->ndim - 1) {
        for (size_t i = 0; i < n; i++) {
            lua_pushnumber(L, (lua_Number)read_el(t, p + (ptrdiff_t)i * s));
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        push_nested(L, t, p + (ptrdiff_t)i * s, d + 1);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* totable() -> nested tables ({{1, 2}, {3, 4}}); a 0-d tensor gives its number. */
static int m_totable(lua_State *L)
{
    static const char fname[] = "totable";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    if (t->ndim == 0) {
        lua_pushnumber(L, (lua_Number)read_el(t, 0));
        return 1;
    }
    /* Every table made below can run a finalizer that frees t or moves its
     * storage (nn_flatten), so the values are read from a copy no Lua code can
     * reach (it lives in stack slot 2 only), taken after the copy's own
     * allocation and a fresh check of t. */
    size_t shape[MO_MAX_DIMS];
    int ndim = t->ndim;
    memcpy(shape, t->shape, (size_t)ndim * sizeof *shape);
    lua_settop(L, 1);
    mo_tensor *c = mo__newtensor_dtype(L, ndim, shape, t->dtype, 0, fname);
    t = mo__recheck(L, 1, fname, ndim, shape);
    mo__check(L, mo_copy(c, t), fname); /* same dtype: a finalizer cannot change t's */
    push_nested(L, c, 0, 0);
    return 1;
}

/* ======================================================================== */
/* Filling and copying                                                      */
/* ======================================================================== */

static int fill_impl(lua_State *L, const char *fname)
{
    mo_tensor *t = mo__checkarg(L, 1, fname);
    lua_Number v = mo__checknumber(L, 2, fname);
    mo_status st = mo_fill(t, v);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    lua_pushvalue(L, 1); /* return self */
    return 1;
}

static int m_fill(lua_State *L) { return fill_impl(L, "fill"); }
static int m_fill_(lua_State *L) { return fill_impl(L, "fill_"); }

static int m_zero_(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "zero_");
    mo_status st = mo_fill(t, 0.0f);
    if (st != MO_OK) return mo__status_error(L, st, "zero_");
    lua_pushvalue(L, 1); /* return self */
    return 1;
}

static int copy_impl(lua_State *L, const char *fname)
{
    mo_tensor *dst = mo__checkarg(L, 1, fname);
    const mo_tensor *src = mo__checkarg(L, 2, fname);
    if (!mo_tensor_same_shape(dst, src)) return mo__shape_error(L, fname, dst, src);
    mo_tensor tmp;
    mo_status st = mo__unalias(&tmp, dst, &src);
    if (st == MO_OK) st = mo_copy(dst, src);
    mo_tensor_release(&tmp);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    lua_pushvalue(L, 1); /* return self */
    return 1;
}

static int m_copy(lua_State *L) { return copy_impl(L, "copy"); }
static int m_copy_(lua_State *L) { return copy_impl(L, "copy_"); }

/* to(dtype) -> self when it already has that dtype, else a new converted contiguous copy
 * (float64 -> float32 rounds to nearest; beyond float's range gives +-inf). */
static int to_dtype(lua_State *L, mo_dtype dt, const char *fname)
{
    mo_tensor *t = mo__checkarg(L, 1, fname);
    if (t->dtype == dt) {
        lua_pushvalue(L, 1); /* return self, as PyTorch's .to() does */
        return 1;
    }
    mo__gc_account(L, t->numel * (mo_dtype_size(dt) / sizeof(float))); /* before: alloc.c */
    const size_t bytes = t->numel * mo_dtype_size(dt);
    mo_tensor *r = mo_lua_newtensor(L);
    const mo_allocator *a = mo__allocator(L, bytes);
    t = mo__recheck(L, 1, fname, 0, NULL);
    mo_status st = mo_tensor_clone_dtype(r, t, dt, a);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    return 1;
}

static int m_to(lua_State *L)
{
    mo__checkarg(L, 1, "to");
    return to_dtype(L, mo__checkdtype(L, 2, "to"), "to");
}
static int m_double(lua_State *L) { return to_dtype(L, MO_FLOAT64, "double"); }
static int m_float(lua_State *L) { return to_dtype(L, MO_FLOAT32, "float"); }

/* clone() -> a new contiguous tensor with the same values (no .grad). */
static int m_clone(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "clone");
    mo__gc_account(L, t->numel * (mo_dtype_size(t->dtype) / sizeof(float))); /* before: alloc.c */
    const size_t bytes = t->numel * mo_dtype_size(t->dtype);
    mo_tensor *r = mo_lua_newtensor(L);
    const mo_allocator *a = mo__allocator(L, bytes);
    t = mo__recheck(L, 1, "clone", 0, NULL); /* the allocations may have freed it */
    mo_status st = mo_tensor_clone(r, t, a);
    if (st != MO_OK) return mo__status_error(L, st, "clone");
    return 1;
}

/* ======================================================================== */
/* Views                                                                    */
/* ======================================================================== */

/* narrow(dim, start, len): elements start..start+len-1 along dim. */
static int m_narrow(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "narrow");
    int d = mo__checkdim(L, 2, "narrow", t);
    lua_Integer size = (lua_Integer)t->shape[d];
    lua_Integer start = mo__checkinteger(L, 3, "narrow", "start");
    if (start < 1 || start > size + 1)
        return mo__argerror(L, 3, "narrow", "start %I out of range for dimension %d of size %I",
                            start, d + 1, size);
    lua_Integer len = mo__checkinteger(L, 4, "narrow", "length");
    if (len < 0 || len > size - start + 1)
        return mo__argerror(L, 4, "narrow",
                            "length %I out of range: dimension %d of size %I from start %I", len,
                            d + 1, size, start);
    mo_tensor *v = push_view(L, 1);
    mo_status st = mo_tensor_narrow(v, t, d, (size_t)(start - 1), (size_t)len);
    if (st != MO_OK) return mo__status_error(L, st, "narrow");
    return 1;
}

/* ======================================================================== */
/* Registration                                                             */
/* ======================================================================== */

/* is_tensor(x) -> true for a moonopt tensor (even a freed one). */
static int f_is_tensor(lua_State *L)
{
    lua_pushboolean(L, mo__totensor(L, 1) != NULL);
    return 1;
}

static const luaL_Reg tensor_methods[] = {
    {"shape", m_shape},
    {"size", m_size},
    {"stride", m_stride},
    {"numel", m_numel},
    {"dim", m_dim},
    {"is_contiguous", m_is_contiguous},
    {"same_storage", m_same_storage},
    {"get", m_get},
    {"set", m_set},
    {"item", m_item},
    {"totable", m_totable},
    {"fill", m_fill},
    {"fill_", m_fill_},
    {"zero_", m_zero_},
    {"copy", m_copy},
    {"copy_", m_copy_},
    {"clone", m_clone},
    {"to", m_to},
    {"double", m_double},
    {"float", m_float},
    {"narrow", m_narrow},
    {"__gc", t_free},
    {"__close", t_free},
    {NULL, NULL},
};

void mo__setfuncs(lua_State *L, const luaL_Reg *l)
{
    luaL_getmetatable(L, MO_TENSOR_MT);
    mo__ag_setfuncs(L, l); /* each behind autograd's dispatcher (autograd.c) */
    lua_pop(L, 1);
}

void mo__push_methods(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &methods_key);
}

void mo__add_methods(lua_State *L, const luaL_Reg *l)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &methods_key);
    mo__setfuncs(L, l);
    lua_pop(L, 1);
}

void mo__open_tensor(lua_State *L)
{
    mo__ag_open(L); /* before any function is registered: dispatchers capture its state */
    /* the metatable first: every function gets it as upvalue 1 (see mo__checkarg) */
    luaL_newmetatable(L, MO_TENSOR_MT);
    int mt = lua_gettop(L);

    /* the methods table, shared by every tensor of this lua_State */
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &methods_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &methods_key);
    }
    int methods = lua_gettop(L);
    mo__setfuncs(L, tensor_methods);

    lua_pushcfunction(L, t_gc);
    lua_setfield(L, mt, "__gc");
    lua_pushcfunction(L, t_free);
    lua_setfield(L, mt, "__close");
    lua_pushcfunction(L, mo__tensor_tostring); /* print.c */
    lua_setfield(L, mt, "__tostring");
    lua_pushcfunction(L, t_len);
    lua_setfield(L, mt, "__len");
    mo__ag_push_upvalues(L, mt, mo__index, 0, "__index");
    lua_pushvalue(L, methods);
    lua_pushliteral(L, "__index_t");
    lua_pushcclosure(L, t_index, UV_INDEX_T);
    lua_setfield(L, mt, "__index");
    mo__ag_push_upvalues(L, mt, mo__newindex, MO__AG_INPLACE, "__newindex");
    lua_pushcclosure(L, t_newindex, MO__AG_NUPVALUES);
    lua_setfield(L, mt, "__newindex");

    /* module.Tensor: the methods table, for Lua code that adds methods */
    lua_setfield(L, mt - 1, "Tensor");
    lua_pop(L, 1); /* metatable */
    lua_pushcfunction(L, f_is_tensor);
    lua_setfield(L, -2, "is_tensor");
    mo__open_autograd(L);
}
