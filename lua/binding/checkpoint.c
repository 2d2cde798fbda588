/*
 * checkpoint.c - Lua bindings of the core's checkpoint format (being written).
 */
#include "binding.h"

void mo__open_checkpoint(lua_State *L)
{
    (void)L;
}
