/*
 * threads.c - moonopt in several threads at once, as docs/embedding.md says it
 * may be used: one lua_State per thread, the C kernels called concurrently,
 * no state shared through globals.
 *
 * Each job trains a small model with mo.nn + mo.optim in its own lua_State
 * (seeded with mo.manual_seed), minimizes Rosenbrock's function on host memory
 * lent to that state, and runs the Adam kernel directly on C arrays. Every job
 * is first run alone in the main thread; then THREADS jobs run concurrently
 * (two of them with the same seed) and each result must equal its
 * single-threaded one bit for bit.
 *
 * Linked with libmoonopt-lua.a and -pthread (mk/embed.mk).
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ctest.h"
#include "moonopt_lua.h"

enum { THREADS = 4, RESULT_SIZE = 8192 };

typedef struct job {
    int seed;
    int ok;
    char result[RESULT_SIZE]; /* hex floats of everything the job computed, or an error */
} job;

/* The Lua part: arguments (seed, host tensor {2}); returns a string of %a numbers. */
static const char train_code[] =
    "local seed, host = ...\n"
    "local mo = require 'moonopt'\n"
    "mo.manual_seed(seed)\n"
    "local nn = mo.nn\n"
    "local model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))\n"
    "local x = mo.randn(32, 4)\n"
    "local y = mo.matmul(x, mo.randn(4, 1))\n"
    "local loss_fn = nn.MSELoss()\n"
    "local opt = mo.optim.Adam(model:parameters(), {lr = 0.01})\n"
    "local first, loss\n"
    "for _ = 1, 60 do\n"
    "  opt:zero_grad()\n"
    "  local out = model:forward(x)\n"
    "  loss = loss_fn:forward(out, y)\n"
    "  first = first or loss\n"
    "  model:backward(x, loss_fn:backward(out, y))\n"
    "  opt:step()\n"
    "end\n"
    "local parts = {string.format('%a %a', first, loss)}\n"
    "for _, p in ipairs(model:parameters()) do\n"
    "  for _, v in ipairs(p:view(-1):totable()) do parts[#parts + 1] = string.format('%a', v) end\n"
    "end\n"
    /* Rosenbrock on the host's memory, from a seed-dependent start */
    "host:set(1, -1 - seed / 10) host:set(2, 2)\n"
    "host.grad = mo.zeros(2)\n"
    "local ropt = mo.optim.AdamW({host}, {lr = 0.05, weight_decay = 0})\n"
    "for _ = 1, 200 do\n"
    "  local a, b = 1 - host:get(1), host:get(2) - host:get(1) ^ 2\n"
    "  host.grad:set(1, -2 * a - 400 * host:get(1) * b)\n"
    "  host.grad:set(2, 200 * b)\n"
    "  ropt:step()\n"
    "end\n"
    "return table.concat(parts, ' ')\n";

/* The C-kernels-only part: Adam on 512 floats with gradients from the seed. */
static mo_status kernels_part(int seed, char *out, size_t size)
{
    enum { N = 512 };
    float w[N], g[N], m[N] = {0}, v[N] = {0};
    mo_rng rng;
    mo_rng_seed(&rng, (uint64_t)seed);
    for (int i = 0; i < N; i++) w[i] = (float)mo_rng_normal(&rng);
    mo_adam_config cfg;
    mo_adamw_defaults(&cfg);
    for (int t = 1; t <= 100; t++) {
        for (int i = 0; i < N; i++) g[i] = w[i] + (float)mo_rng_normal(&rng) * 0.1f;
        mo_status st = mo_adam_update(w, g, m, v, NULL, N, &cfg, t);
        if (st != MO_OK) return st;
    }
    double sum = 0;
    for (int i = 0; i < N; i++) sum += (double)w[i] * (i + 1);
    snprintf(out, size, " | kernels %a %a %a", sum, (double)w[0], (double)w[N - 1]);
    return MO_OK;
}

static void run_job(job *j)
{
    j->ok = 0;
    float xy[2] = {0, 0};
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        snprintf(j->result, sizeof j->result, "ERROR: luaL_newstate failed");
        return;
    }
    luaL_openlibs(L);
    mo_lua_openlibs(L);
    if (luaL_loadstring(L, train_code) != LUA_OK) {
        snprintf(j->result, sizeof j->result, "ERROR: %s", lua_tostring(L, -1));
        lua_close(L);
        return;
    }
    lua_pushinteger(L, j->seed);
    size_t n = 2;
    mo_lua_pushhost(L, xy, 1, &n, NULL, NULL, 0);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        snprintf(j->result, sizeof j->result, "ERROR: %s", lua_tostring(L, -1));
        lua_close(L);
        return;
    }
    snprintf(j->result, sizeof j->result, "%s", lua_tostring(L, -1));
    lua_close(L);
    size_t used = strlen(j->result);
    snprintf(j->result + used, sizeof j->result - used, " | host %a %a", (double)xy[0],
             (double)xy[1]);
    used = strlen(j->result);
    mo_status st = kernels_part(j->seed, j->result + used, sizeof j->result - used);
    if (st != MO_OK) {
        snprintf(j->result, sizeof j->result, "ERROR: kernels: %s", mo_status_str(st));
        return;
    }
    j->ok = 1;
}

static void *thread_main(void *arg)
{
    run_job((job *)arg);
    return NULL;
}

static job reference[3], concurrent[THREADS];

TEST(concurrent_states_match_single_threaded_runs)
{
    static const int seeds[THREADS] = {1, 2, 3, 1};
    for (int k = 0; k < 3; k++) {
        reference[k].seed = k + 1;
        run_job(&reference[k]);
        CHECK(reference[k].ok);
        if (!reference[k].ok) printf("# seed %d: %s\n", k + 1, reference[k].result);
    }
    /* different seeds give different results (the comparison below means something) */
    CHECK(strcmp(reference[0].result, reference[1].result) != 0);

    pthread_t tid[THREADS];
    int started[THREADS] = {0};
    for (int i = 0; i < THREADS; i++) {
        concurrent[i].seed = seeds[i];
        started[i] = pthread_create(&tid[i], NULL, thread_main, &concurrent[i]) == 0;
        CHECK(started[i]);
    }
    for (int i = 0; i < THREADS; i++)
        if (started[i]) CHECK(pthread_join(tid[i], NULL) == 0);
    for (int i = 0; i < THREADS; i++) {
        if (!started[i]) continue;
        const job *want = &reference[seeds[i] - 1];
        CHECK(concurrent[i].ok);
        CHECK(strcmp(concurrent[i].result, want->result) == 0);
        if (strcmp(concurrent[i].result, want->result) != 0)
            printf("# thread %d (seed %d):\n#   got  %.200s\n#   want %.200s\n", i, seeds[i],
                   concurrent[i].result, want->result);
    }
}

TEST(results_are_sane)
{
    /* the jobs did train: the model's loss went down, Rosenbrock got near (1, 1) */
    lua_State *L = luaL_newstate();
    CHECK(L != NULL);
    if (!L) return;
    luaL_openlibs(L);
    lua_pushstring(L, reference[0].result);
    lua_setglobal(L, "r");
    CHECK(luaL_dostring(L, "local first, last = r:match('^(%S+) (%S+)') "
                           "local x, y = r:match('| host (%S+) (%S+)') "
                           "x, y = tonumber(x), tonumber(y) "
                           "local f = (1 - x) ^ 2 + 100 * (y - x * x) ^ 2 "
                           "print(string.format('# loss %g -> %g, rosenbrock (%g, %g) f %g', "
                           "  tonumber(first), tonumber(last), x, y, f)) "
                           "return tonumber(last) < tonumber(first) / 4 and f < 10") == LUA_OK); /* f was 66.8 */
    CHECK(lua_toboolean(L, -1));
    lua_close(L);
}

int main(void)
{
    RUN(concurrent_states_match_single_threaded_runs);
    RUN(results_are_sane);
    return ctest_summary();
}
