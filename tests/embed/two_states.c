/*
 * two_states.c - moonopt embedded in a C program: two lua_States in one
 * process share no state (each has its own default RNG and its own tensor
 * metatable), and the public binding header (moonopt_lua.h) works for a host
 * that lends its own memory to Lua and takes it back (revoke).
 *
 * Run with cwd = the repository root and LUA_PATH set to find lua/moonopt
 * (tests/run.sh does both).
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "ctest.h"
#include "moonopt_lua.h"

/* A state with the standard libraries, the statically linked moonopt.core and
 * the global `mo` = require "moonopt". NULL (and a message) on failure. */
static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    if (L == NULL) return NULL;
    luaL_openlibs(L);
    luaL_requiref(L, "moonopt.core", luaopen_moonopt_core, 0);
    lua_pop(L, 1);
    if (luaL_dostring(L, "mo = require 'moonopt'") != LUA_OK) {
        printf("# require 'moonopt' failed: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    return L;
}

/* Runs `code` (which returns one string) and copies the result into out. */
static int run(lua_State *L, const char *code, char *out, size_t size)
{
    if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        snprintf(out, size, "ERROR: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return 0;
    }
    const char *s = lua_tostring(L, -1);
    snprintf(out, size, "%s", s ? s : "(not a string)");
    lua_pop(L, 1);
    return 1;
}

/* Lua snippet: the next n values of mo.rand as text, e.g. draw(4). */
#define DRAW(n) "local t = mo.rand(" #n "):totable() " \
                "for i = 1, #t do t[i] = string.format('%.9g', t[i]) end " \
                "return table.concat(t, ' ')"

TEST(same_seed_same_stream)
{
    lua_State *a = new_state(), *b = new_state();
    CHECK(a != NULL && b != NULL);
    if (!a || !b) goto done;
    char ra[512], rb[512];
    CHECK(run(a, "mo.manual_seed(42) return ''", ra, sizeof ra));
    CHECK(run(b, "mo.manual_seed(42) return ''", rb, sizeof rb));
    /* interleaved draws: each state follows its own copy of the stream */
    for (int i = 0; i < 3; i++) {
        CHECK(run(a, DRAW(4), ra, sizeof ra));
        CHECK(run(b, DRAW(4), rb, sizeof rb));
        CHECK(strcmp(ra, rb) == 0);
    }
    CHECK(run(a, "return table.concat(mo.randperm(8), ',')", ra, sizeof ra));
    CHECK(run(b, "return table.concat(mo.randperm(8), ',')", rb, sizeof rb));
    CHECK(strcmp(ra, rb) == 0);
done:
    if (a) lua_close(a);
    if (b) lua_close(b);
}

TEST(seeding_one_state_leaves_the_other_alone)
{
    lua_State *a = new_state(), *b = new_state();
    CHECK(a != NULL && b != NULL);
    if (!a || !b) goto done;
    char first[512], again[512], other[512], tmp[512];
    /* a's stream after seed 42 */
    CHECK(run(a, "mo.manual_seed(42) return ''", tmp, sizeof tmp));
    CHECK(run(a, DRAW(6), first, sizeof first));
    /* b is seeded with 42, then a is reseeded and drawn from many times */
    CHECK(run(b, "mo.manual_seed(42) return ''", tmp, sizeof tmp));
    CHECK(run(a, "mo.manual_seed(7) mo.randn(1000) return ''", tmp, sizeof tmp));
    CHECK(run(b, DRAW(6), again, sizeof again));
    CHECK(strcmp(first, again) == 0);
    /* and a's new stream differs from b's */
    CHECK(run(a, DRAW(6), other, sizeof other));
    CHECK(strcmp(other, first) != 0);
done:
    if (a) lua_close(a);
    if (b) lua_close(b);
}

TEST(unseeded_states_start_from_the_same_default)
{
    lua_State *a = new_state();
    char ra[512], rb[512], tmp[512];
    CHECK(a != NULL);
    if (!a) return;
    CHECK(run(a, DRAW(5), ra, sizeof ra));
    CHECK(run(a, DRAW(50), tmp, sizeof tmp));
    lua_State *b = new_state();
    CHECK(b != NULL);
    if (b) {
        CHECK(run(b, DRAW(5), rb, sizeof rb));
        CHECK(strcmp(ra, rb) == 0);
        lua_close(b);
    }
    lua_close(a);
}

TEST(metatables_and_modules_are_per_state)
{
    lua_State *a = new_state(), *b = new_state();
    CHECK(a != NULL && b != NULL);
    if (!a || !b) goto done;
    char r[512];
    CHECK(run(a, "mo.Tensor.probe = function() return 'a' end return mo.zeros(1):probe()", r,
              sizeof r));
    CHECK(strcmp(r, "a") == 0);
    CHECK(run(b, "return tostring(mo.zeros(1).probe)", r, sizeof r));
    CHECK(strcmp(r, "nil") == 0);
    /* tensors of b keep working after a is closed */
    CHECK(run(b, "keep = mo.arange(3) return ''", r, sizeof r));
    lua_close(a);
    a = NULL;
    CHECK(run(b, "collectgarbage() return tostring(keep:sum():item())", r, sizeof r));
    CHECK(strcmp(r, "6.0") == 0);
done:
    if (a) lua_close(a);
    if (b) lua_close(b);
}

/* ---- the public binding API, as a host uses it ---- */

static int released;

static void count_release(void *ud, float *data)
{
    (void)data;
    (*(int *)ud)++;
}

TEST(host_memory_lent_to_lua_and_revoked)
{
    lua_State *L = new_state();
    CHECK(L != NULL);
    if (!L) return;
    float buf[6] = {1, 2, 3, 4, 5, 6};
    size_t shape[2] = {2, 3};
    released = 0;
    mo_tensor *t = mo_lua_newtensor(L);
    CHECK(t != NULL && !mo_tensor_alive(t));
    CHECK_OK(mo_tensor_wrap(t, buf, 2, shape, count_release, &released));
    lua_setglobal(L, "host");
    char r[512];
    /* Lua sees the host's values and writes into the host's memory, also through a view */
    CHECK(run(L, "local v = host:t() v:set(3, 2, 60) host:mul_(2) return tostring(host:sum():item())", r,
              sizeof r));
    CHECK(strcmp(r, "150.0") == 0);
    CHECK(buf[5] == 120.0f && buf[0] == 2.0f);
    /* check/test from C */
    lua_getglobal(L, "host");
    CHECK(mo_lua_testtensor(L, -1) == t);
    CHECK(mo_lua_checktensor(L, -1) == t);
    lua_pop(L, 1);
    lua_pushinteger(L, 3);
    CHECK(mo_lua_testtensor(L, -1) == NULL);
    lua_pop(L, 1);
    /* a view made in Lua shares the storage: revoking through the host's handle reaches it */
    CHECK(run(L, "view = host:narrow(2, 1, 2) return ''", r, sizeof r));
    mo_tensor_revoke(t);
    CHECK(released == 1);
    CHECK(run(L, "local ok, e = pcall(host.sum, host) return e", r, sizeof r));
    CHECK(strstr(r, "tensor has been freed") != NULL);
    CHECK(
        run(L, "local ok, e = pcall(function() return view:get(1, 1) end) return e", r, sizeof r));
    CHECK(strstr(r, "tensor has been freed") != NULL);
    lua_getglobal(L, "host");
    CHECK(mo_lua_testtensor(L, -1) == NULL);
    lua_pop(L, 1);
    lua_close(L);
    CHECK(released == 1); /* once, not again when the handles are finalized */
}

/* Protected call of mo_lua_checktensor on a non-tensor: a Lua error, not a crash. */
static int check_arg1(lua_State *L)
{
    mo_lua_checktensor(L, 1);
    return 0;
}

TEST(checktensor_raises_lua_errors)
{
    lua_State *L = new_state();
    CHECK(L != NULL);
    if (!L) return;
    lua_pushcfunction(L, check_arg1);
    lua_pushstring(L, "x");
    CHECK(lua_pcall(L, 1, 0, 0) != LUA_OK);
    CHECK(strstr(lua_tostring(L, -1), "moonopt.Tensor expected, got string") != NULL);
    lua_pop(L, 1);
    lua_pushcfunction(L, check_arg1);
    CHECK(luaL_dostring(L, "local t = mo.zeros(2) t:__gc() return t") == LUA_OK);
    CHECK(lua_pcall(L, 1, 0, 0) != LUA_OK);
    CHECK(strstr(lua_tostring(L, -1), "tensor has been freed") != NULL);
    lua_pop(L, 1);
    lua_close(L);
}

/* The host's owned tensors freed by lua_close: the host's release runs exactly once. */
TEST(lua_close_releases_borrowed_memory_once)
{
    lua_State *L = new_state();
    CHECK(L != NULL);
    if (!L) return;
    float buf[4] = {0};
    size_t n = 4;
    released = 0;
    mo_tensor *t = mo_lua_newtensor(L);
    CHECK_OK(mo_tensor_wrap(t, buf, 1, &n, count_release, &released));
    lua_setglobal(L, "host");
    char r[64];
    CHECK(
        run(L, "a = host:view(2, 2) b = a:t() host = nil collectgarbage() return ''", r, sizeof r));
    CHECK(released == 0); /* views keep the memory */
    lua_close(L);
    CHECK(released == 1);
}

int main(void)
{
    RUN(same_seed_same_stream);
    RUN(seeding_one_state_leaves_the_other_alone);
    RUN(unseeded_states_start_from_the_same_default);
    RUN(metatables_and_modules_are_per_state);
    RUN(host_memory_lent_to_lua_and_revoked);
    RUN(checktensor_raises_lua_errors);
    RUN(lua_close_releases_borrowed_memory_once);
    return ctest_summary();
}
