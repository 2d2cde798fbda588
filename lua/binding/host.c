/*
 * host.c - the binding functions a host application calls (declared in
 * moonopt_lua.h): lending host memory to Lua without a copy, taking it back,
 * and registering Lua files compiled into the program as package.preload
 * loaders.
 *
 * Nothing here keeps state outside the lua_State: the owner of lent memory
 * lives in the tensor's user value 2 (and in every view's, tensor.c copies
 * it), the preload loaders carry their source as an upvalue. mo_lua_openlibs
 * itself is generated (tools/embed_lua.lua) next to the compiled-in sources,
 * so this file, which also goes into the standalone module core.so, refers to
 * none of them.
 */
#include "binding.h"

#include <stdint.h>

/* ======================================================================== */
/* Host memory                                                              */
/* ======================================================================== */

/* The tensor metatable exists only once moonopt.core has been opened in L: a
 * host may lend memory before any script ran require, so open it here the way
 * require would (package.loaded["moonopt.core"] is set, the library need not be
 * open). Without this the userdata would have no metatable and no methods. */
static void ensure_module(lua_State *L)
{
    int have = luaL_getmetatable(L, MO_TENSOR_MT) == LUA_TTABLE;
    lua_pop(L, 1);
    if (!have) {
        luaL_requiref(L, "moonopt.core", luaopen_moonopt_core, 0);
        lua_pop(L, 1);
    }
}

/* Whether idx is an index the Lua API accepts: 1..top, -top..-1, the registry,
 * or an upvalue pseudo-index (at most 256 upvalues, Lua's limit plus one). Any
 * other index (-99 with 3 values on the stack) points outside the stack, and
 * even lua_type on it is undefined behaviour. */
static int acceptable_index(lua_State *L, int idx)
{
    int top = lua_gettop(L);
    if (idx > 0) return idx <= top;
    if (idx > LUA_REGISTRYINDEX) return idx < 0 && -idx <= top;
    return idx == LUA_REGISTRYINDEX || idx >= lua_upvalueindex(256);
}

/* The value at idx (a stack index a host passed in): valid, and not none. */
static void check_index(lua_State *L, int idx, const char *fname, const char *what)
{
    if (!acceptable_index(L, idx) || lua_type(L, idx) == LUA_TNONE)
        luaL_error(L, "%s: %s %d is not a valid stack index (the stack holds %d values)", fname,
                   what, idx, lua_gettop(L));
}

/* mo_lua_pushhost and mo_lua_pushhost_dtype: one of release_f, release_v is NULL. */
static mo_tensor *push_host(lua_State *L, void *data, mo_dtype dt, int ndim, const size_t *shape,
                            mo_release_fn release_f, mo_release_data_fn release_v, void *ud,
                            int owner_idx, const char *fname)
{
    /* Every check runs before anything is pushed or wrapped: on an error the
     * host's memory is untouched and release is not called. */
    if (owner_idx != 0) {
        check_index(L, owner_idx, fname, "owner_idx");
        owner_idx = lua_absindex(L, owner_idx); /* the new userdata moves relative indices */
    }
    if ((unsigned)dt >= (unsigned)MO_DTYPE_COUNT_) luaL_error(L, "%s: unknown dtype %d", fname, (int)dt);
    if (data == NULL) luaL_error(L, "%s: data is NULL", fname);
    /* ops.c and reduce.c load and store whole elements: a misaligned pointer is
     * undefined behaviour there (mo_tensor_wrap refuses it too) */
    const int align = dt == MO_FLOAT64 ? (int)_Alignof(double) : (int)_Alignof(float);
    if ((uintptr_t)data % (uintptr_t)align != 0)
        luaL_error(L, "%s: data %p is not aligned to %d bytes (a %s's alignment)", fname, data,
                   align, dt == MO_FLOAT64 ? "double" : "float");
    if (ndim < 0 || ndim > MO_MAX_DIMS)
        luaL_error(L, "%s: ndim must be 0..%d, got %d", fname, MO_MAX_DIMS, ndim);
    if (ndim > 0 && shape == NULL) luaL_error(L, "%s: shape is NULL for ndim %d", fname, ndim);
    /* The binding's limit for every tensor (sizes and counts stay exact as
     * lua_Integer and in messages): no host buffer comes near it. */
    size_t numel;
    int too_big = mo_shape_numel(ndim, shape, &numel) != MO_OK || numel > (size_t)MO__MAX_SIZE;
    for (int i = 0; i < ndim; i++)
        if (shape[i] > (size_t)MO__MAX_SIZE) too_big = 1;
    if (too_big) {
        char buf[MO__SHAPE_BUF];
        luaL_error(L, "%s: shape %s is too large (at most 2^40 per size and in all)", fname,
                   mo__shapestr_raw(ndim, shape, buf));
    }

    ensure_module(L);
    mo_tensor *t = mo_lua_newtensor(L); /* an empty handle: an error below leaks nothing */
    mo_status st = release_v != NULL || dt != MO_FLOAT32
                       ? mo_tensor_wrap_dtype(t, data, dt, ndim, shape, release_v, ud)
                       : mo_tensor_wrap(t, data, ndim, shape, release_f, ud);
    if (st != MO_OK) {
        /* wrap failed, so it did not take the memory: release stays uncalled */
        char buf[MO__SHAPE_BUF];
        luaL_error(L, "%s: cannot wrap shape %s: %s", fname, mo__shapestr_raw(ndim, shape, buf),
                   mo_status_str(st));
    }
    if (owner_idx != 0) {
        lua_pushvalue(L, owner_idx);
        lua_setiuservalue(L, -2, 2);
    }
    return t;
}

mo_tensor *mo_lua_pushhost(lua_State *L, float *data, int ndim, const size_t *shape,
                           mo_release_fn release, void *ud, int owner_idx)
{
    return push_host(L, data, MO_FLOAT32, ndim, shape, release, NULL, ud, owner_idx,
                     "mo_lua_pushhost");
}

mo_tensor *mo_lua_pushhost_dtype(lua_State *L, void *data, mo_dtype dt, int ndim,
                                 const size_t *shape, mo_release_data_fn release, void *ud,
                                 int owner_idx)
{
    return push_host(L, data, dt, ndim, shape, NULL, release, ud, owner_idx,
                     "mo_lua_pushhost_dtype");
}

void mo_lua_revoke(lua_State *L, int idx)
{
    check_index(L, idx, "mo_lua_revoke", "index");
    mo_tensor *t = mo__totensor(L, idx);
    if (t == NULL)
        luaL_error(L, "mo_lua_revoke: %s expected at index %d, got %s", MO_TENSOR_MT, idx,
                   luaL_typename(L, idx));
    /* The storage is shared by every view: clearing its data pointer makes each
     * of them fail the liveness check every binding function starts with. */
    mo_tensor_revoke(t);
}

/* ======================================================================== */
/* Compiled-in Lua files                                                    */
/* ======================================================================== */

/* package.preload loader: upvalue 1 is a light userdata on the mo_lua_source. */
static int preload_loader(lua_State *L)
{
    const mo_lua_source *s = (const mo_lua_source *)lua_touserdata(L, lua_upvalueindex(1));
    const char *file = s->chunkname[0] == '@' ? s->chunkname + 1 : s->chunkname;
    /* Text mode only: the embedded files are sources, never precompiled chunks. */
    if (luaL_loadbufferx(L, (const char *)s->code, s->size, s->chunkname, "t") != LUA_OK)
        return luaL_error(L, "error loading module '%s' from compiled-in file '%s':\n\t%s",
                          s->name, file, lua_tostring(L, -1));
    /* The arguments Lua's file searcher gives a module: its name and its file. */
    lua_pushstring(L, s->name);
    lua_pushstring(L, file);
    lua_call(L, 2, 1);
    return 1;
}

void mo_lua_preload(lua_State *L, const mo_lua_source *src, size_t n)
{
    if (n > 0 && src == NULL) luaL_error(L, "mo_lua_preload: src is NULL for %d files", (int)n);
    for (size_t i = 0; i < n; i++)
        if (src[i].name == NULL || src[i].chunkname == NULL || src[i].code == NULL)
            luaL_error(L, "mo_lua_preload: source #%d has a NULL name, chunkname or code",
                       (int)i + 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (size_t i = 0; i < n; i++) {
        /* A light userdata cannot be const: the loader only ever reads through it. */
        lua_pushlightuserdata(L, (void *)(uintptr_t)&src[i]);
        lua_pushcclosure(L, preload_loader, 1);
        lua_setfield(L, -2, src[i].name);
    }
    lua_pop(L, 1);
}
