/*
 * host_preload.c - the whole module registered without files on disk:
 * mo_lua_openlibs puts moonopt.core and every compiled-in lua/moonopt file in
 * package.preload, so `require "moonopt"` (and every submodule) works with
 * LUA_PATH="" and LUA_CPATH=""; mo_lua_preload embeds a host's own scripts.
 *
 * Linked with libmoonopt-lua.a (mk/embed.mk).
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "moonopt_lua.h"

/* A state whose package.path and cpath come from an empty LUA_PATH / LUA_CPATH:
 * the searchers find nothing on disk, whatever the current directory holds. */
static lua_State *diskless_state(void)
{
    unsetenv("LUA_PATH_5_4");
    unsetenv("LUA_CPATH_5_4");
    setenv("LUA_PATH", "", 1);
    setenv("LUA_CPATH", "", 1);
    lua_State *L = luaL_newstate();
    if (L == NULL) return NULL;
    luaL_openlibs(L);
    return L;
}

static int run(lua_State *L, const char *code, char *out, size_t size)
{
    if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        snprintf(out, size, "ERROR: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return 0;
    }
    const char *s = luaL_tolstring(L, -1, NULL);
    snprintf(out, size, "%s", s);
    lua_pop(L, 2);
    return 1;
}

static int run_is(lua_State *L, const char *code, const char *want)
{
    char r[2048];
    run(L, code, r, sizeof r);
    if (strcmp(r, want) != 0) {
        printf("# %s\n#   got  %s\n#   want %s\n", code, r, want);
        return 0;
    }
    return 1;
}

TEST(nothing_on_disk_without_openlibs)
{
    lua_State *L = diskless_state();
    CHECK(L != NULL);
    if (!L) return;
    CHECK(run_is(L, "return package.path .. '|' .. package.cpath", "|"));
    /* the test runs in the repository root, where lua/moonopt exists: still not found */
    CHECK(run_is(L, "return (pcall(require, 'moonopt'))", "false"));
    lua_close(L);
}

TEST(require_moonopt_with_empty_path)
{
    lua_State *L = diskless_state();
    CHECK(L != NULL);
    if (!L) return;
    CHECK(mo_lua_openlibs(L) == 0);
    CHECK(lua_gettop(L) == 0);
    CHECK(run_is(L, "return package.path .. '|' .. package.cpath", "|"));
    CHECK(run_is(L, "mo = require 'moonopt' return mo._VERSION", "moonopt " MO_VERSION_STRING));
    /* the C part came from the preload entry, not from a core.so */
    CHECK(run_is(L, "return package.preload['moonopt.core'] ~= nil and "
                    "require('moonopt.core') == package.loaded['moonopt.core']", "true"));
    /* submodules resolve lazily through package.preload (init.lua's __index) */
    CHECK(run_is(L, "local n = {} for _, k in ipairs{'nn', 'optim', 'sched', 'train', 'data', "
                    "'plot'} do n[#n + 1] = type(mo[k]) end return table.concat(n, ',')",
                 "table,table,table,table,table,table"));
    CHECK(run_is(L, "return mo.nosuchmodule == nil", "true"));
    /* and they work: a tiny regression trained with mo.nn + mo.optim + mo.sched */
    CHECK(run_is(L,
                 "mo.manual_seed(1) local nn = mo.nn "
                 "local model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)) "
                 "local x = mo.randn(16, 3) local y = mo.matmul(x, mo.randn(3, 1)) "
                 "local loss_fn = nn.MSELoss() "
                 "local opt = mo.optim.AdamW(model:parameters(), {lr = 0.05}) "
                 "local sched = mo.sched.WarmupCosine(opt, {warmup = 5, total = 100}) "
                 "local first, last "
                 "for _ = 1, 100 do opt:zero_grad() local out = model:forward(x) "
                 "  last = loss_fn:forward(out, y) first = first or last "
                 "  model:backward(x, loss_fn:backward(out, y)) opt:step() sched:step() end "
                 "return last < first / 10",
                 "true"));
    lua_close(L);
}

TEST(every_compiled_in_module_loads)
{
    lua_State *L = diskless_state();
    CHECK(L != NULL);
    if (!L) return;
    mo_lua_openlibs(L);
    /* every preload entry runs without the file system; the known ones are there */
    CHECK(run_is(L,
                 "local names = {} for name in pairs(package.preload) do names[#names + 1] = name end "
                 "table.sort(names) "
                 "for _, name in ipairs(names) do "
                 "  local ok, err = pcall(require, name) "
                 "  if not ok then return name .. ': ' .. tostring(err) end end "
                 "for _, name in ipairs{'moonopt', 'moonopt.core', 'moonopt.nn', 'moonopt.nn.linear', "
                 "  'moonopt.optim', 'moonopt.optim.adam', 'moonopt.optim.optimizer', "
                 "  'moonopt.sched', 'moonopt.train', 'moonopt.data', 'moonopt.plot', "
                 "  'moonopt.progress'} do "
                 "  if package.preload[name] == nil then return 'missing ' .. name end end "
                 "return #names >= 20",
                 "true"));
    /* functions of embedded files carry their file name (errors and tracebacks show it) */
    CHECK(run_is(L, "return debug.getinfo(require('moonopt.optim.optimizer').class, 'S').source",
                 "@moonopt/optim/optimizer.lua"));
    lua_close(L);
}

/* ---- a host's own scripts, the same way ---- */

static const unsigned char hello_src[] = "local name, file = ...\n"
                                         "return {answer = 42, name = name, file = file}\n";
static const unsigned char broken_src[] = "return {\n";
/* the start of a precompiled chunk: text mode must refuse it */
static const unsigned char binary_src[] = "\x1bLua\x54\x00";

static const mo_lua_source host_scripts[] = {
    {"host.hello", "@scripts/hello.lua", hello_src, sizeof hello_src - 1},
    {"host.broken", "@scripts/broken.lua", broken_src, sizeof broken_src - 1},
    {"host.binary", "=binary", binary_src, sizeof binary_src - 1},
};

TEST(host_scripts_through_mo_lua_preload)
{
    lua_State *L = diskless_state();
    CHECK(L != NULL);
    if (!L) return;
    mo_lua_preload(L, host_scripts, sizeof host_scripts / sizeof host_scripts[0]);
    CHECK(run_is(L, "local h = require 'host.hello' return h.answer .. ' ' .. h.name .. ' ' .. h.file",
                 "42 host.hello scripts/hello.lua"));
    CHECK(run_is(L, "return require 'host.hello' == require 'host.hello'", "true"));
    char r[1024];
    CHECK(!run(L, "return require 'host.broken'", r, sizeof r));
    CHECK(strstr(r, "error loading module 'host.broken' from compiled-in file "
                    "'scripts/broken.lua'") != NULL);
    CHECK(strstr(r, "scripts/broken.lua:") != NULL); /* the syntax error names the file */
    CHECK(!run(L, "return require 'host.binary'", r, sizeof r));
    CHECK(strstr(r, "attempt to load a binary chunk") != NULL);
    /* mo_lua_preload can be called before the package library is open */
    lua_State *bare = luaL_newstate();
    CHECK(bare != NULL);
    if (bare) {
        mo_lua_preload(bare, host_scripts, 1);
        luaL_openlibs(bare);
        CHECK(run_is(bare, "return require('host.hello').answer", "42"));
        lua_close(bare);
    }
    lua_close(L);
}

int main(void)
{
    RUN(nothing_on_disk_without_openlibs);
    RUN(require_moonopt_with_empty_path);
    RUN(every_compiled_in_module_loads);
    RUN(host_scripts_through_mo_lua_preload);
    return ctest_summary();
}
