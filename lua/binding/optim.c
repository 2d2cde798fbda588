/*
 * optim.c - Lua bindings of the core's optimizer kernels (filled in by the optimizer work).
 */
#include "binding.h"

void mo__open_optim(lua_State *L)
{
    (void)L;
}
