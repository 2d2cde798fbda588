/*
 * host.c - a C application that embeds moonopt as its scripting layer.
 *
 * The host owns the parameters (x, y) of Rosenbrock's function in its own
 * float array. It lends that array to Lua as a tensor without copying, gives
 * the script a C callback report(step, loss), runs examples/host/minimize.lua
 * (Adam + a learning-rate schedule, written in Lua), takes its memory back and
 * prints the result from its own array:
 *
 *     x=1.000000 y=1.000000
 *
 * The whole module (C and Lua parts) is compiled into libmoonopt-lua and
 * registered with mo_lua_openlibs, so nothing is read from disk but the
 * script: it runs with LUA_PATH="" from any directory.
 *
 * Build (installed):  cc host.c $(pkg-config --cflags --libs moonopt lua5.4)
 * Build (in tree):    make embed-demo
 * Run:                ./host [script.lua [steps]]
 */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>

#include "moonopt_lua.h"

/* What the host keeps about the run; report() reaches it through an upvalue,
 * not a global, so two hosts (or lua_States) in one process never mix. */
typedef struct progress {
    int calls;
    lua_Integer last_step;
    double first_loss, last_loss;
} progress;

/* report(step, loss): called by the script; prints and records progress. */
static int l_report(lua_State *L)
{
    progress *p = (progress *)lua_touserdata(L, lua_upvalueindex(1));
    lua_Integer step = luaL_checkinteger(L, 1);
    double loss = (double)luaL_checknumber(L, 2);
    if (p->calls == 0) p->first_loss = loss;
    p->calls++;
    p->last_step = step;
    p->last_loss = loss;
    printf("step %5lld  loss %.6g\n", (long long)step, loss);
    return 0;
}

/* Everything that touches Lua runs in here, under lua_pcall, so a Lua error
 * (a bad script, out of memory) comes back as a message instead of a panic.
 * Arguments: light userdata of the host's float[2], light userdata of the
 * progress record, the script's path, the number of steps. */
static int run_script(lua_State *L)
{
    float *xy = (float *)lua_touserdata(L, 1);
    progress *p = (progress *)lua_touserdata(L, 2);
    const char *script = luaL_checkstring(L, 3);
    lua_Integer steps = luaL_checkinteger(L, 4);

    luaL_openlibs(L);
    mo_lua_openlibs(L); /* require "moonopt" now works with an empty package.path */

    lua_pushlightuserdata(L, p);
    lua_pushcclosure(L, l_report, 1);
    lua_setglobal(L, "report");

    if (luaL_loadfilex(L, script, "t") != LUA_OK) return lua_error(L);
    int chunk = lua_gettop(L);

    /* The host's array as a {2} tensor: no copy, no release callback (the array
     * is the host's; it takes it back with mo_lua_revoke below). */
    size_t n = 2;
    mo_lua_pushhost(L, xy, 1, &n, NULL, NULL, 0);
    int params = lua_gettop(L);

    lua_pushvalue(L, chunk);
    lua_pushvalue(L, params);
    lua_pushinteger(L, steps);
    lua_call(L, 2, 1); /* the script returns the final loss */
    double final_loss = lua_isnumber(L, -1) ? (double)lua_tonumber(L, -1) : -1.0;
    lua_pop(L, 1);

    /* The script may have kept the tensor (or views of it) in globals: after
     * this, Lua gets "tensor has been freed" errors instead of touching xy. */
    mo_lua_revoke(L, params);
    lua_pushnumber(L, (lua_Number)final_loss);
    return 1;
}

int main(int argc, char **argv)
{
    const char *script = argc > 1 ? argv[1] : "examples/host/minimize.lua";
    long steps = 3000;
    if (argc > 2) {
        char *end;
        errno = 0;
        steps = strtol(argv[2], &end, 10);
        if (errno != 0 || *end != '\0' || steps < 1 || steps > 100000000) {
            fprintf(stderr, "host: steps must be an integer in 1..1e8, got '%s'\n", argv[2]);
            return 2;
        }
    }

    float xy[2] = {-1.5f, 2.0f}; /* the host's parameters */
    progress prog = {0, 0, 0.0, 0.0};

    lua_State *L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "host: cannot create a Lua state (out of memory)\n");
        return 1;
    }
    lua_pushcfunction(L, run_script);
    lua_pushlightuserdata(L, xy);
    lua_pushlightuserdata(L, &prog);
    lua_pushstring(L, script);
    lua_pushinteger(L, (lua_Integer)steps);
    if (lua_pcall(L, 4, 1, 0) != LUA_OK) {
        fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    double final_loss = (double)lua_tonumber(L, -1);
    lua_close(L);

    /* The result, read from the host's own memory. */
    printf("%d reports, loss %.6g -> %.6g\n", prog.calls, prog.first_loss, final_loss);
    printf("x=%.6f y=%.6f\n", (double)xy[0], (double)xy[1]);
    return 0;
}
