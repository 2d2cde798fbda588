/*
 * binding.h - private declarations shared by the binding's .c files.
 * Each file registers its functions into the module table through one
 * mo__open_* function that module.c calls.
 */
#ifndef MOONOPT_BINDING_H
#define MOONOPT_BINDING_H

#include <lauxlib.h>
#include <lua.h>

#include "moonopt_lua.h"

/* lua/binding/optim.c: adds the optimizer kernels to the module table at the top of the stack. */
void mo__open_optim(lua_State *L);

#endif /* MOONOPT_BINDING_H */
