/*
 * moonopt_lua.h - the public header of moonopt's Lua binding (the only part of
 * moonopt that includes lua.h).
 *
 * A Lua tensor is a full userdata holding an mo_tensor handle, with the
 * registry metatable MO_TENSOR_MT ("moonopt.Tensor"). User value 1 is the
 * tensor's .grad (nil or a tensor); user value 2 is whatever the handle's
 * memory depends on (a host's owner object), kept alive by Lua's GC.
 * A finalized, freed (t:__gc(), __close) or revoked tensor raises "tensor has
 * been freed" when used; t:__gc() and mo_lua_revoke also end every view sharing
 * its storage, while the collector's finalizer only drops one handle.
 *
 * A host application that embeds Lua and wants the whole module (the C part
 * and the Lua files, compiled into libmoonopt-lua) without any files on disk:
 *
 *     #include <lauxlib.h>
 *     #include <lualib.h>
 *     #include "moonopt_lua.h"
 *
 *     lua_State *L = luaL_newstate();
 *     luaL_openlibs(L);
 *     mo_lua_openlibs(L);                       // package.preload entries, nothing on disk
 *
 *     float xy[2] = {-1.5f, 2.0f};              // the host's own memory
 *     size_t n = 2;
 *     mo_lua_pushhost(L, xy, 1, &n, NULL, NULL, 0);   // a tensor on xy, no copy
 *     lua_setglobal(L, "params");
 *     luaL_dostring(L, "local mo = require 'moonopt' params:mul_(2)");   // xy is now {-3, 4}
 *     lua_getglobal(L, "params");
 *     mo_lua_revoke(L, -1);                     // the host takes xy back: Lua sees a freed tensor
 *     lua_pop(L, 1);
 *     lua_close(L);
 *
 * Build: cc host.c $(pkg-config --cflags --libs moonopt lua5.4). See docs/embedding.md
 * for the ownership, lifetime, thread and error rules.
 *
 * The functions here follow the Lua C API's conventions: they may raise Lua
 * errors (bad arguments, out of memory), so a host that must not panic calls
 * them inside a protected call (lua_pcall of a C function) or sets a panic
 * handler.
 */
#ifndef MOONOPT_LUA_H
#define MOONOPT_LUA_H

#include <lua.h>

#include "moonopt.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MO_TENSOR_MT "moonopt.Tensor"

/* The C module "moonopt.core". */
int luaopen_moonopt_core(lua_State *L);

/* The tensor at idx; raises a Lua error if it is not a tensor or has been freed. */
mo_tensor *mo_lua_checktensor(lua_State *L, int idx);

/* The tensor at idx, or NULL when the value is not a moonopt tensor (freed ones included). */
mo_tensor *mo_lua_testtensor(lua_State *L, int idx);

/* Pushes a new tensor userdata holding an EMPTY handle and returns the handle;
 * the caller fills it (e.g. with mo_tensor_empty). Raises on memory errors only.
 * moonopt.core must already be open in L (require, luaL_requiref, or an earlier
 * mo_lua_pushhost): the tensor metatable is made when the module opens. */
mo_tensor *mo_lua_newtensor(lua_State *L);

/* ---- host memory lent to Lua (lua/binding/host.c) ---- */

/*
 * Pushes a tensor on the host's memory without copying: `data` holds
 * numel(shape) floats, row-major and contiguous, and stays the host's.
 *
 *   owner_idx  stack index of a value the memory belongs to (e.g. a userdata
 *              whose block is `data`), or 0 for none. It is kept in the
 *              tensor's user value 2 and copied into every view made from
 *              the tensor, so Lua's collector keeps it alive as long as any
 *              tensor on the memory is reachable.
 *   release    called once as release(ud, data) when the last tensor or view
 *              on the memory is finalized (a GC cycle or lua_close), or at
 *              mo_lua_revoke, whichever comes first; may be NULL.
 *
 * Opens moonopt.core in L first (as require would) when no script has yet.
 * Returns the new handle (also at the top of the stack). Raises a Lua error
 * naming this function, the argument and its value for a NULL data pointer, a
 * pointer not aligned for float (4 bytes),
 * ndim outside 0..MO_MAX_DIMS, a NULL shape with ndim > 0, a shape with a
 * size or an element count above 2^40 (the binding's limit for every tensor)
 * or an invalid owner_idx (one outside 1..top and -top..-1 that is not the
 * registry or an upvalue pseudo-index, or an empty slot), and on out of memory; on
 * any error `release` is NOT called and the memory stays the host's alone.
 */
mo_tensor *mo_lua_pushhost(lua_State *L, float *data, int ndim, const size_t *shape,
                           mo_release_fn release, void *ud, int owner_idx);

/*
 * mo_lua_pushhost for host memory of either dtype: `data` holds numel(shape) elements of
 * dt (MO_FLOAT64: doubles, aligned to 8 bytes), e.g. a host's double array lent as a
 * float64 tensor; release(ud, data) as above, with data as passed. The same checks and
 * errors, naming mo_lua_pushhost_dtype (and an unknown dtype).
 */
mo_tensor *mo_lua_pushhost_dtype(lua_State *L, void *data, mo_dtype dt, int ndim,
                                 const size_t *shape, mo_release_data_fn release, void *ud,
                                 int owner_idx);

/*
 * The host takes back the memory behind the tensor at idx (a tensor made by
 * mo_lua_pushhost, a view of one, or any tensor): every tensor and view
 * sharing its storage then raises "tensor has been freed" when Lua uses it,
 * and the release callback runs now (owned memory is freed now). Revoking a
 * revoked or finalized tensor does nothing. Raises a Lua error when the value
 * at idx is not a moonopt tensor. Call it in the thread that runs L, not from
 * a __gc metamethod.
 */
void mo_lua_revoke(lua_State *L, int idx);

/* ---- the module without files on disk ---- */

/* One Lua source file compiled into a program (what tools/embed_lua.lua emits). */
typedef struct mo_lua_source {
    const char *name;           /* module name, "moonopt.nn" */
    const char *chunkname;      /* "@moonopt/nn/init.lua": used in error messages and tracebacks */
    const unsigned char *code;  /* the file's bytes (Lua source text, loaded in text mode) */
    size_t size;                /* bytes in code */
} mo_lua_source;

/*
 * Registers n compiled-in Lua files as package.preload loaders (the registry's
 * LUA_PRELOAD_TABLE, which the package library reads: it may be opened before
 * or after). Each loader compiles its file on the first require and calls it
 * with (module name, file name), as Lua's file searcher does. The sources must
 * outlive L (static arrays do). Existing entries with the same names are
 * replaced. Raises a Lua error for a NULL src (n > 0) or an entry with a NULL
 * name, chunkname or code (before registering anything), and on out of memory.
 */
void mo_lua_preload(lua_State *L, const mo_lua_source *src, size_t n);

/*
 * Registers the whole module in L: package.preload["moonopt.core"] =
 * luaopen_moonopt_core and one entry per .lua file under lua/moonopt/ compiled into
 * libmoonopt-lua ("moonopt", "moonopt.nn", "moonopt.optim.adam", ...), so
 * `require "moonopt"` works with an empty package.path (LUA_PATH="") and no
 * files on disk. Nothing is loaded until the first require. Has the
 * lua_CFunction signature (it takes no arguments and returns 0 results) so a
 * host can run it under lua_pcall; raises only on memory errors. Defined in the
 * generated source of libmoonopt-lua, not in the standalone module core.so.
 */
int mo_lua_openlibs(lua_State *L);

#ifdef __cplusplus
}
#endif

#endif /* MOONOPT_LUA_H */
