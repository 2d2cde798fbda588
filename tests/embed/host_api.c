/*
 * host_api.c - the host-facing binding API of moonopt_lua.h: lending host
 * memory to Lua (mo_lua_pushhost) with an owner kept alive and a release
 * callback, taking it back (mo_lua_revoke), and the errors of both.
 *
 * Linked with libmoonopt-lua.a (mk/embed.mk); the states here use the
 * compiled-in Lua files (mo_lua_openlibs), so they need nothing on disk.
 */
#include <lauxlib.h>
#include <pthread.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "ctest.h"
#include "moonopt_lua.h"

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    if (L == NULL) return NULL;
    luaL_openlibs(L);
    mo_lua_openlibs(L);
    return L;
}

/* Runs `code` (returning one value, made a string by tostring) into out; 0 on a Lua error
 * (out then holds "ERROR: <message>"). */
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
    char r[1024];
    run(L, code, r, sizeof r);
    if (strcmp(r, want) != 0) {
        printf("# %s\n#   got  %s\n#   want %s\n", code, r, want);
        return 0;
    }
    return 1;
}

/* Runs `code`, which must fail with a message containing `want`. */
static int fails_with(lua_State *L, const char *code, const char *want)
{
    char r[1024];
    if (run(L, code, r, sizeof r)) {
        printf("# %s\n#   succeeded (%s), want an error containing '%s'\n", code, r, want);
        return 0;
    }
    if (strstr(r, want) == NULL) {
        printf("# %s\n#   got  %s\n#   want an error containing '%s'\n", code, r, want);
        return 0;
    }
    return 1;
}

typedef struct release_log {
    int calls;
    float *data; /* what the callback received */
} release_log;

static void log_release(void *ud, float *data)
{
    release_log *log = (release_log *)ud;
    log->calls++;
    log->data = data;
}

TEST(pushhost_shares_memory_without_copy)
{
    lua_State *L = new_state();
    CHECK(L != NULL);
    if (!L) return;
    float buf[6] = {1, 2, 3, 4, 5, 6};
    size_t shape[2] = {2, 3};
    release_log log = {0, NULL};
    mo_tensor *t = mo_lua_pushhost(L, buf, 2, shape, log_release, &log, 0);
    CHECK(t != NULL && mo_lua_testtensor(L, -1) == t);
    CHECK(mo_tensor_data(t) == buf); /* no copy */
    lua_setglobal(L, "h");
    CHECK(run_is(L, "return require('moonopt').is_tensor(h)", "true"));
    CHECK(run_is(L, "return table.concat(h:shape(), 'x')", "2x3"));
    CHECK(run_is(L, "return h:get(2, 3)", "6.0"));
    /* Lua writes land in the host's array, through views too */
    CHECK(run_is(L, "h:set(1, 1, 10) h:t():set(3, 2, 60) h:select(1, 2):mul_(2) return h:sum():item()",
                 "153.0"));
    CHECK(buf[0] == 10.0f && buf[5] == 120.0f && buf[3] == 8.0f);
    buf[1] = -7.0f; /* and host writes are seen by Lua */
    CHECK(run_is(L, "return h:get(1, 2)", "-7.0"));
    /* a .grad on a host tensor is a Lua tensor */
    CHECK(run_is(L, "h.grad = require('moonopt').ones(2, 3) return h.grad:sum():item()", "6.0"));
    /* views keep the memory; the release callback runs when the last one goes */
    CHECK(run_is(L, "v = h:narrow(2, 2, 2) h = nil collectgarbage() collectgarbage() return 0",
                 "0"));
    CHECK(log.calls == 0);
    CHECK(run_is(L, "return v:get(2, 2)", "120.0"));
    CHECK(run_is(L, "v = nil collectgarbage() collectgarbage() return 0", "0"));
    CHECK(log.calls == 1 && log.data == buf);
    lua_close(L);
    CHECK(log.calls == 1);
}

TEST(pushhost_zero_d_and_before_require)
{
    /* a bare state: no moonopt module opened yet, no standard libraries */
    lua_State *L = luaL_newstate();
    CHECK(L != NULL);
    if (!L) return;
    float x = 2.5f;
    mo_tensor *t = mo_lua_pushhost(L, &x, 0, NULL, NULL, NULL, 0);
    CHECK(t != NULL && t->ndim == 0 && t->numel == 1);
    CHECK(mo_lua_checktensor(L, -1) == t); /* the metatable exists: the module was opened */
    lua_setglobal(L, "s");
    CHECK(run_is(L, "s:mul_(4) return s:item()", "10.0"));
    CHECK(x == 10.0f);
    lua_close(L);
}

/* ---- the owner value ---- */

TEST(owner_stays_alive_while_any_view_lives)
{
    lua_State *L = new_state();
    CHECK(L != NULL);
    if (!L) return;
    /* The realistic case: the host's floats live inside a Lua userdata (the owner). If the
     * owner were collected while a view still used its block, reading through the view
     * would be a use after free (ASan and valgrind run this test). */
    float *block = (float *)lua_newuserdatauv(L, 4 * sizeof(float), 0);
    for (int i = 0; i < 4; i++) block[i] = (float)(i + 1);
    size_t n = 4;
    lua_pushvalue(L, -1);
    lua_setglobal(L, "owner");
    mo_lua_pushhost(L, block, 1, &n, NULL, NULL, -1); /* relative: moves with the push */
    lua_setglobal(L, "h");
    lua_pop(L, 1);
    CHECK(lua_gettop(L) == 0);
    /* watch the owner through a weak table; drop every other reference to it */
    CHECK(run_is(L, "weak = setmetatable({owner}, {__mode = 'v'}) owner = nil "
                    "collectgarbage() collectgarbage() return weak[1] ~= nil", "true"));
    CHECK(run_is(L, "v = h:view(2, 2):t() h = nil collectgarbage() collectgarbage() "
                    "return weak[1] ~= nil", "true"));
    CHECK(run_is(L, "return v:get(2, 1) + v:get(1, 2)", "5.0")); /* 2 + 3, block still valid */
    CHECK(run_is(L, "v = nil collectgarbage() collectgarbage() return weak[1] == nil", "true"));
    lua_close(L);
}

/* ---- revoke ---- */

TEST(revoke_reaches_every_view_and_releases_once)
{
    lua_State *L = new_state();
    CHECK(L != NULL);
    if (!L) return;
    float buf[6] = {1, 2, 3, 4, 5, 6};
    size_t shape[2] = {2, 3};
    release_log log = {0, NULL};
    mo_lua_pushhost(L, buf, 2, shape, log_release, &log, 0);
    lua_setglobal(L, "h");
    CHECK(run_is(L,
                 "mo = require 'moonopt' "
                 "views = {h:narrow(2, 2, 2), h:view(3, 2), h:t(), h:select(1, 2), "
                 "h:reshape(6), h:view(6):narrow(1, 2, 3):view(3, 1)} "
                 "copy = h:clone() "
                 "h.grad = mo.zeros(2, 3) opt = mo.optim.Adam({h}, {lr = 0.1}) "
                 "return #views",
                 "6"));
    lua_getglobal(L, "h");
    mo_tensor *t = mo_lua_testtensor(L, -1);
    CHECK(t != NULL);
    mo_lua_revoke(L, -1);
    CHECK(log.calls == 1 && log.data == buf); /* the host has its memory back now */
    CHECK(mo_lua_testtensor(L, -1) == NULL);
    mo_lua_revoke(L, -1); /* again: nothing happens */
    CHECK(log.calls == 1);
    lua_pop(L, 1);
    /* every tensor on the storage raises, whatever touches it */
    CHECK(fails_with(L, "return h:sum():item()", "tensor has been freed"));
    CHECK(fails_with(L, "return h:get(1, 1)", "tensor has been freed"));
    CHECK(fails_with(L, "h:set(1, 1, 0)", "tensor has been freed"));
    CHECK(fails_with(L, "return h.grad", "tensor has been freed"));
    CHECK(fails_with(L, "return #h", "tensor has been freed"));
    CHECK(fails_with(L, "return mo.matmul(h, mo.ones(3, 1))", "tensor has been freed"));
    CHECK(fails_with(L, "return copy:add(h)", "tensor has been freed"));
    CHECK(fails_with(L, "opt:step()", "tensor has been freed"));
    CHECK(fails_with(L, "return h:view(6)", "tensor has been freed"));
    for (int i = 1; i <= 6; i++) {
        char code[160];
        snprintf(code, sizeof code, "return views[%d]:sum():item()", i);
        CHECK(fails_with(L, code, "tensor has been freed"));
        snprintf(code, sizeof code, "views[%d]:fill(9)", i);
        CHECK(fails_with(L, code, "tensor has been freed"));
        snprintf(code, sizeof code, "return mo.is_tensor(views[%d]), tostring(views[%d])", i, i);
        CHECK(run_is(L, code, "true"));
    }
    CHECK(run_is(L, "return tostring(h)", "moonopt.Tensor (freed)"));
    /* a clone made before is the script's own memory and lives on */
    CHECK(run_is(L, "return copy:sum():item()", "21.0"));
    /* finalizing the handles later does not call release again */
    CHECK(run_is(L, "h, views, opt = nil, nil, nil collectgarbage() collectgarbage() return 0",
                 "0"));
    CHECK(log.calls == 1);
    lua_close(L);
    CHECK(log.calls == 1);
    for (int i = 0; i < 6; i++) CHECK(buf[i] == (float)(i + 1)); /* nothing wrote after revoke */
}

TEST(revoke_through_a_view_made_in_lua)
{
    lua_State *L = new_state();
    CHECK(L != NULL);
    if (!L) return;
    float buf[4] = {1, 2, 3, 4};
    size_t n = 4;
    release_log log = {0, NULL};
    mo_lua_pushhost(L, buf, 1, &n, log_release, &log, 0);
    lua_setglobal(L, "h");
    CHECK(run_is(L, "v = h:narrow(1, 2, 2) return v:sum():item()", "5.0"));
    lua_getglobal(L, "v");
    mo_lua_revoke(L, -1); /* the storage is shared: revoking a view revokes the base too */
    lua_pop(L, 1);
    CHECK(log.calls == 1);
    CHECK(fails_with(L, "return h:sum():item()", "tensor has been freed"));
    /* Lua's own tensors can be revoked too (their memory is freed now) */
    CHECK(run_is(L, "own = require('moonopt').ones(1000) own2 = own:view(10, 100) return 0", "0"));
    lua_getglobal(L, "own");
    mo_lua_revoke(L, -1);
    lua_pop(L, 1);
    CHECK(fails_with(L, "return own2:sum():item()", "tensor has been freed"));
    lua_close(L);
    CHECK(log.calls == 1);
}

/* ---- errors: Lua errors naming the function and the value, nothing taken ---- */

typedef struct bad_call {
    float *data;
    int ndim;
    const size_t *shape;
    int owner_idx;
    release_log *log;
} bad_call;

static int call_pushhost(lua_State *L)
{
    const bad_call *c = (const bad_call *)lua_touserdata(L, 1);
    mo_lua_pushhost(L, c->data, c->ndim, c->shape, log_release, c->log, c->owner_idx);
    return 1;
}

static int pushhost_fails_with(lua_State *L, bad_call c, const char *want)
{
    lua_pushcfunction(L, call_pushhost);
    lua_pushlightuserdata(L, &c);
    int top = lua_gettop(L) - 2;
    int ok = 1;
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
        printf("# mo_lua_pushhost succeeded, want an error containing '%s'\n", want);
        ok = 0;
    } else if (strstr(lua_tostring(L, -1), want) == NULL) {
        printf("# mo_lua_pushhost: got '%s', want '%s'\n", lua_tostring(L, -1), want);
        ok = 0;
    }
    lua_settop(L, top);
    return ok;
}

static int call_revoke(lua_State *L)
{
    mo_lua_revoke(L, 1);
    return 0;
}

TEST(bad_arguments_are_lua_errors)
{
    lua_State *L = new_state();
    CHECK(L != NULL);
    if (!L) return;
    float buf[4] = {0};
    size_t two[2] = {2, 2}, huge1[1] = {(size_t)1 << 41}, over[2] = {(size_t)1 << 33, (size_t)1 << 33};
    release_log log = {0, NULL};
    CHECK(pushhost_fails_with(L, (bad_call){NULL, 2, two, 0, &log}, "mo_lua_pushhost: data is NULL"));
    CHECK(pushhost_fails_with(L, (bad_call){buf, 9, two, 0, &log},
                              "mo_lua_pushhost: ndim must be 0..8, got 9"));
    CHECK(pushhost_fails_with(L, (bad_call){buf, -1, two, 0, &log}, "ndim must be 0..8, got -1"));
    CHECK(pushhost_fails_with(L, (bad_call){buf, 2, NULL, 0, &log},
                              "mo_lua_pushhost: shape is NULL for ndim 2"));
    CHECK(pushhost_fails_with(L, (bad_call){buf, 1, huge1, 0, &log},
                              "shape {2199023255552} is too large"));
    CHECK(pushhost_fails_with(L, (bad_call){buf, 2, over, 0, &log},
                              "shape {8589934592, 8589934592} is too large"));
    CHECK(pushhost_fails_with(L, (bad_call){buf, 2, two, 7, &log},
                              "mo_lua_pushhost: owner_idx 7 is not a valid stack index"));
    /* indices below the stack bottom or far above the top are undefined behaviour in the
     * Lua API: refused before anything reads them (the C function's stack holds 1 value) */
    CHECK(pushhost_fails_with(L, (bad_call){buf, 2, two, -99, &log},
                              "mo_lua_pushhost: owner_idx -99 is not a valid stack index"));
    CHECK(pushhost_fails_with(L, (bad_call){buf, 2, two, -2, &log},
                              "owner_idx -2 is not a valid stack index (the stack holds 1 values)"));
    CHECK(pushhost_fails_with(L, (bad_call){buf, 2, two, 1000000, &log},
                              "owner_idx 1000000 is not a valid stack index"));
    CHECK(pushhost_fails_with(L, (bad_call){buf, 2, two, LUA_REGISTRYINDEX - 300, &log},
                              "is not a valid stack index"));
    CHECK(pushhost_fails_with(L, (bad_call){buf, 2, two, lua_upvalueindex(1), &log},
                              "is not a valid stack index")); /* a valid pseudo-index, but empty */
    /* a float pointer that is not 4-byte aligned (inside a byte buffer) */
    _Alignas(float) unsigned char bytes[4 * sizeof(float) + 1];
    float *odd = (float *)(void *)(bytes + 1);
    CHECK(pushhost_fails_with(L, (bad_call){odd, 2, two, 0, &log}, "is not aligned to 4 bytes"));
    CHECK(log.calls == 0); /* nothing was taken, so nothing is given back */
    /* mo_lua_revoke on something else */
    lua_pushcfunction(L, call_revoke);
    lua_pushstring(L, "not a tensor");
    CHECK(lua_pcall(L, 1, 0, 0) != LUA_OK);
    CHECK(strstr(lua_tostring(L, -1), "mo_lua_revoke: moonopt.Tensor expected at index 1, got string")
          != NULL);
    lua_pop(L, 1);
    lua_close(L);
    CHECK(log.calls == 0);
}

static int call_revoke_at(lua_State *L)
{
    mo_lua_revoke(L, (int)lua_tointeger(L, 1));
    return 0;
}

TEST(revoke_refuses_an_invalid_index)
{
    lua_State *L = new_state();
    CHECK(L != NULL);
    if (!L) return;
    lua_pushcfunction(L, call_revoke_at);
    lua_pushinteger(L, -99);
    CHECK(lua_pcall(L, 1, 0, 0) != LUA_OK);
    CHECK(strstr(lua_tostring(L, -1), "mo_lua_revoke: index -99 is not a valid stack index") != NULL);
    lua_close(L);
}

/* mo_tensor_wrap (the core) refuses a pointer that is not float-aligned: the kernels load whole
 * floats, and UBSan reports every such load in ops.c and reduce.c. */
TEST(wrap_refuses_misaligned_data)
{
    _Alignas(float) unsigned char bytes[4 * sizeof(float) + 3];
    size_t n = 4;
    mo_tensor t;
    mo_tensor_init(&t);
    for (int k = 1; k < 4; k++)
        CHECK_STATUS(mo_tensor_wrap(&t, (float *)(void *)(bytes + k), 1, &n, NULL, NULL), MO_ERR_ARG);
    CHECK(t.storage == NULL);
    CHECK_OK(mo_tensor_wrap(&t, (float *)(void *)bytes, 1, &n, NULL, NULL));
    CHECK_OK(mo_fill(&t, 2.0f));
    double s = 0;
    CHECK_OK(mo_sum(&t, &s));
    CHECK(s == 8.0);
    mo_tensor_release(&t);
}

/* t:__gc() from Lua on a host tensor (or any view of it) frees it as mo_lua_revoke does: every
 * view raises, and the host's release runs now, once. The collector's finalizer does not. */
TEST(gc_method_on_host_memory_revokes_every_view)
{
    lua_State *L = new_state();
    CHECK(L != NULL);
    if (!L) return;
    float buf[6] = {1, 2, 3, 4, 5, 6};
    size_t shape[2] = {2, 3};
    release_log log = {0, NULL};
    mo_lua_pushhost(L, buf, 2, shape, log_release, &log, 0);
    lua_setglobal(L, "h");
    CHECK(run_is(L, "v = h:t() vv = v:narrow(1, 2, 2):select(2, 1) return vv:sum():item()", "5.0"));
    /* the collector finalizing the base alone: views keep the memory */
    CHECK(run_is(L, "getmetatable(h).__gc(h) return v:sum():item()", "21.0"));
    CHECK(log.calls == 0);
    CHECK(run_is(L, "vv:__gc() return 0", "0"));   /* a view of a view frees all of it */
    CHECK(log.calls == 1 && log.data == buf);
    CHECK(fails_with(L, "return v:sum():item()", "tensor has been freed"));
    CHECK(fails_with(L, "return vv:totable()", "tensor has been freed"));
    CHECK(run_is(L, "v, vv = nil, nil collectgarbage() collectgarbage() return 0", "0"));
    lua_close(L);
    CHECK(log.calls == 1);
}

/* The state's tensor allocator (lua/binding/alloc.c) caches freed large blocks and is
 * reference counted: a host's handle on a large tensor outlives lua_close and its memory
 * stays valid until the host releases it (valgrind/ASan in `make check` see a leak or a
 * use after free otherwise). Small tensors (not cached) take the same path. */
TEST(large_storage_outlives_its_state)
{
    lua_State *L = new_state();
    CHECK(L != NULL);
    if (!L) return;
    /* freed blocks are in the cache when the state closes */
    CHECK(run_is(L, "mo = require 'moonopt' for i = 1, 20 do local _ = mo.ones(300, 300) * i end "
                    "big = mo.full({512, 512}, 3) small = mo.full({4}, 2) return big:sum():item()",
                 "786432.0"));
    mo_tensor keep_big, keep_small;
    mo_tensor_init(&keep_big);
    mo_tensor_init(&keep_small);
    lua_getglobal(L, "big");
    CHECK_OK(mo_tensor_share(&keep_big, mo_lua_checktensor(L, -1)));
    lua_getglobal(L, "small");
    CHECK_OK(mo_tensor_share(&keep_small, mo_lua_checktensor(L, -1)));
    lua_pop(L, 2);
    lua_close(L);
    double s = 0;
    CHECK_OK(mo_sum(&keep_big, &s));
    CHECK(s == 786432.0);
    CHECK_OK(mo_sum(&keep_small, &s));
    CHECK(s == 8.0);
    mo_tensor_release(&keep_big);   /* the last block: frees the cache too */
    mo_tensor_release(&keep_small);
}

/* A host may release storage from any thread (docs/design.md "Memory ownership"): large
 * tensors' handles released by another thread while the state allocates and frees large
 * tensors through the same cache. Run under ASan/valgrind by `make check`. */
enum { RELEASED = 16 };
static void *release_all(void *arg)
{
    mo_tensor *ts = arg;
    for (int i = 0; i < RELEASED; i++) mo_tensor_release(&ts[i]);
    return NULL;
}

TEST(large_storage_released_from_another_thread)
{
    lua_State *L = new_state();
    CHECK(L != NULL);
    if (!L) return;
    mo_tensor keep[RELEASED];
    CHECK(run_is(L, "mo = require 'moonopt' held = {} for i = 1, 16 do held[i] = mo.full({128, 128}, i) "
                    "end return #held", "16"));
    for (int i = 0; i < RELEASED; i++) {
        mo_tensor_init(&keep[i]);
        lua_getglobal(L, "held");
        lua_rawgeti(L, -1, i + 1);
        CHECK_OK(mo_tensor_share(&keep[i], mo_lua_checktensor(L, -1)));
        lua_pop(L, 2);
    }
    CHECK(run_is(L, "held = nil collectgarbage() return 0", "0"));
    pthread_t th;
    CHECK(pthread_create(&th, NULL, release_all, keep) == 0);
    CHECK(run_is(L, "local s = 0 for i = 1, 200 do s = s + (mo.ones(128, 128) * i):sum():item() end "
                    "return s", "329318400.0"));
    CHECK(pthread_join(th, NULL) == 0);
    lua_close(L);
}

static void log_release_v(void *ud, void *data)
{
    release_log *log = (release_log *)ud;
    log->calls++;
    log->data = data;
}

/* A host's double array lent as a float64 tensor: no copy, float64 arithmetic on it (1e-12
 * survives, which float32 would lose), writes visible to the host, release once with the
 * host's pointer; a pointer not aligned for double and an unknown dtype are refused. */
TEST(pushhost_float64_shares_double_memory)
{
    lua_State *L = new_state();
    CHECK(L != NULL);
    if (!L) return;
    double buf[4] = {1.0 + 1e-12, 2.0, 3.0, 4.0};
    size_t shape[2] = {2, 2};
    release_log log = {0, NULL};
    mo_tensor *t = mo_lua_pushhost_dtype(L, buf, MO_FLOAT64, 2, shape, log_release_v, &log, 0);
    CHECK(t != NULL && mo_tensor_ptr(t) == (void *)buf && t->dtype == MO_FLOAT64);
    lua_setglobal(L, "h");
    CHECK(run_is(L, "return h.dtype", "float64"));
    CHECK(run_is(L, "return string.format('%.13f', h:sum():item())", "10.0000000000010"));
    CHECK(run_is(L, "h:mul_(2) return h:t():contiguous()[1][2]:item()", "6.0"));
    CHECK(buf[2] == 6.0 && buf[0] == 2.0 + 2e-12);
    CHECK(run_is(L, "h = nil collectgarbage() collectgarbage() return 0", "0"));
    CHECK(log.calls == 1 && (void *)log.data == (void *)buf);

    _Alignas(double) unsigned char bytes[4 * sizeof(double) + 4];
    size_t n = 2;
    mo_tensor w;
    mo_tensor_init(&w);
    CHECK_STATUS(mo_tensor_wrap_dtype(&w, bytes + 4, MO_FLOAT64, 1, &n, NULL, NULL), MO_ERR_ARG);
    CHECK_STATUS(mo_tensor_wrap_dtype(&w, bytes, (mo_dtype)7, 1, &n, NULL, NULL), MO_ERR_DTYPE);
    CHECK_OK(mo_tensor_wrap_dtype(&w, bytes + 4, MO_FLOAT32, 1, &n, NULL, NULL)); /* float: 4 is fine */
    mo_tensor_release(&w);
    lua_close(L);
}

static int push_misaligned_double(lua_State *L)
{
    static _Alignas(double) unsigned char bytes[2 * sizeof(double) + 4];
    size_t n = 2;
    mo_lua_pushhost_dtype(L, bytes + 4, MO_FLOAT64, 1, &n, NULL, NULL, 0);
    return 1;
}

TEST(pushhost_float64_refuses_misaligned_data)
{
    lua_State *L = new_state();
    CHECK(L != NULL);
    if (!L) return;
    lua_pushcfunction(L, push_misaligned_double);
    CHECK(lua_pcall(L, 0, 1, 0) != LUA_OK);
    CHECK(strstr(lua_tostring(L, -1), "mo_lua_pushhost_dtype: data") != NULL);
    CHECK(strstr(lua_tostring(L, -1), "is not aligned to 8 bytes (a double's alignment)") != NULL);
    lua_close(L);
}

int main(void)
{
    RUN(pushhost_shares_memory_without_copy);
    RUN(pushhost_zero_d_and_before_require);
    RUN(owner_stays_alive_while_any_view_lives);
    RUN(revoke_reaches_every_view_and_releases_once);
    RUN(revoke_through_a_view_made_in_lua);
    RUN(bad_arguments_are_lua_errors);
    RUN(revoke_refuses_an_invalid_index);
    RUN(wrap_refuses_misaligned_data);
    RUN(gc_method_on_host_memory_revokes_every_view);
    RUN(large_storage_outlives_its_state);
    RUN(pushhost_float64_shares_double_memory);
    RUN(pushhost_float64_refuses_misaligned_data);
    RUN(large_storage_released_from_another_thread);
    return ctest_summary();
}
