/*
 * host_example.c - examples/host/minimize.lua driven the way examples/host/host.c
 * drives it (host memory lent without a copy, a report() callback registered by
 * the host), checked against the same optimization done by the C kernels
 * alone (mo_adam_update on the host's arrays, the schedule computed in C, as
 * examples/host/kernels_only.c does): the two must agree bit for bit, and
 * land near Rosenbrock's minimum (1, 1).
 *
 * Run with cwd = the repository root (tests/run.sh does): it reads the script
 * from examples/host/.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ctest.h"
#include "moonopt_lua.h"

typedef struct reports {
    int calls, ordered;
    lua_Integer last_step;
    double last_loss;
} reports;

static int l_report(lua_State *L)
{
    reports *r = (reports *)lua_touserdata(L, lua_upvalueindex(1));
    lua_Integer step = luaL_checkinteger(L, 1);
    double loss = (double)luaL_checknumber(L, 2);
    if (r->calls > 0 && step <= r->last_step) r->ordered = 0;
    r->calls++;
    r->last_step = step;
    r->last_loss = loss;
    return 0;
}

/* Runs the script on xy for `steps` steps; returns its final loss (NAN on error). */
static double run_script(float *xy, lua_Integer steps, reports *rep)
{
    lua_State *L = luaL_newstate();
    if (L == NULL) return NAN;
    luaL_openlibs(L);
    mo_lua_openlibs(L);
    lua_pushlightuserdata(L, rep);
    lua_pushcclosure(L, l_report, 1);
    lua_setglobal(L, "report");
    double loss = NAN;
    if (luaL_loadfilex(L, "examples/host/minimize.lua", "t") != LUA_OK) {
        printf("# %s\n", lua_tostring(L, -1));
        lua_close(L);
        return NAN;
    }
    size_t n = 2;
    mo_lua_pushhost(L, xy, 1, &n, NULL, NULL, 0);
    lua_pushinteger(L, steps);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK)
        printf("# minimize.lua: %s\n", lua_tostring(L, -1));
    else
        loss = (double)lua_tonumber(L, -1);
    lua_close(L);
    return loss;
}

/* The same optimization with the C kernel only. */
static mo_status run_kernels(float *w, int steps)
{
    float g[2], m[2] = {0, 0}, v[2] = {0, 0};
    const int warmup = 100;
    const double pi = 3.14159265358979323846, base_lr = 0.1;
    mo_adam_config cfg;
    mo_adam_defaults(&cfg);
    for (int t = 1; t <= steps; t++) {
        double x = w[0], y = w[1], a = 1 - x, b = y - x * x;
        g[0] = (float)(-2 * a - 400 * x * b);
        g[1] = (float)(200 * b);
        int s = t - 1;
        cfg.lr = s < warmup ? base_lr * s / warmup
                            : base_lr * 0.5 * (1 + cos(pi * (s - warmup) / (steps - warmup)));
        mo_status st = mo_adam_update(w, g, m, v, NULL, 2, &cfg, t);
        if (st != MO_OK) return st;
    }
    return MO_OK;
}

TEST(script_on_host_memory_matches_the_c_kernels)
{
    float lua_xy[2] = {-1.5f, 2.0f}, c_xy[2] = {-1.5f, 2.0f};
    reports rep = {0, 1, 0, 0.0};
    double loss = run_script(lua_xy, 3000, &rep);
    CHECK(loss == loss && loss < 1e-6);
    CHECK(rep.calls == 7 && rep.ordered && rep.last_step == 3000); /* steps 1, 500, ..., 3000 */
    CHECK(fabs(lua_xy[0] - 1.0f) < 1e-3f && fabs(lua_xy[1] - 1.0f) < 1e-3f);
    CHECK_OK(run_kernels(c_xy, 3000));
    CHECK(memcmp(lua_xy, c_xy, sizeof lua_xy) == 0);
    if (memcmp(lua_xy, c_xy, sizeof lua_xy) != 0)
        printf("# lua (%a, %a) vs C (%a, %a)\n", (double)lua_xy[0], (double)lua_xy[1],
               (double)c_xy[0], (double)c_xy[1]);
}

TEST(script_errors_come_back_as_messages)
{
    /* a wrong argument from the host: the script refuses it with a message */
    lua_State *L = luaL_newstate();
    CHECK(L != NULL);
    if (!L) return;
    luaL_openlibs(L);
    mo_lua_openlibs(L);
    CHECK(luaL_loadfilex(L, "examples/host/minimize.lua", "t") == LUA_OK);
    lua_pushinteger(L, 3);
    CHECK(lua_pcall(L, 1, 1, 0) != LUA_OK);
    CHECK(strstr(lua_tostring(L, -1), "expects the host's {x, y} tensor") != NULL);
    lua_close(L);
}

int main(void)
{
    RUN(script_on_host_memory_matches_the_c_kernels);
    RUN(script_errors_come_back_as_messages);
    return ctest_summary();
}
