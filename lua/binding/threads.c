/*
 * threads.c - set_num_threads / get_num_threads: the size of the core's one
 * thread pool (core/threadpool.c, docs/design.md "Threads"). The pool is
 * process-wide, not per lua_State: a size set in one state applies to every
 * state in the process (the one exception to "no global state"; results are
 * bit-identical at every size, so no state can observe another's choice
 * except through timing).
 */
#include "binding.h"

#include "moonopt.h"

/* set_num_threads(n): n an integer in [1, MO_MAX_THREADS]. */
static int f_set_num_threads(lua_State *L)
{
    mo__checknumber(L, 1, "set_num_threads");
    lua_Integer n = mo__checkinteger(L, 1, "set_num_threads", "thread count");
    if (n < 1 || n > MO_MAX_THREADS)
        return mo__argerror(L, 1, "set_num_threads", "thread count must be in [1, %d], got %I",
                            MO_MAX_THREADS, n);
    mo__check(L, mo_set_num_threads((int)n), "set_num_threads");
    return 0;
}

/* get_num_threads() -> integer */
static int f_get_num_threads(lua_State *L)
{
    lua_pushinteger(L, mo_get_num_threads());
    return 1;
}

static const luaL_Reg thread_functions[] = {
    {"set_num_threads", f_set_num_threads},
    {"get_num_threads", f_get_num_threads},
    {NULL, NULL},
};

void mo__open_threads(lua_State *L) { luaL_setfuncs(L, thread_functions, 0); }
