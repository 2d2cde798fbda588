/*
 * moonopt_lua.h - the public header of moonopt's Lua binding (the only part of
 * moonopt that includes lua.h).
 *
 * A Lua tensor is a full userdata holding an mo_tensor handle, with the
 * registry metatable MO_TENSOR_MT ("moonopt.Tensor"). User value 1 is the
 * tensor's .grad (nil or a tensor); user value 2 is whatever the handle's
 * memory depends on (a host's owner object), kept alive by Lua's GC.
 * A finalized or revoked tensor has an empty handle and raises
 * "tensor has been freed" when used.
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
 * the caller fills it (e.g. with mo_tensor_empty). Raises on memory errors only. */
mo_tensor *mo_lua_newtensor(lua_State *L);

#ifdef __cplusplus
}
#endif

#endif /* MOONOPT_LUA_H */
