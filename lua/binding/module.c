/*
 * module.c - luaopen_moonopt_core: the C module "moonopt.core".
 *
 * The module table holds the tensor constructors and functions (tensor.c,
 * create.c, math.c), the optimizer, nn and data kernels (optim.c, nn.c,
 * data.c), and:
 *   _VERSION      "moonopt 0.1.0"
 *   blas_backend  "cblas" or "portable" (what mo.matmul uses)
 *   blas_kernel   OpenBLAS's kernel set for this CPU ("Haswell", ...), "portable", "unknown"
 *   clock()       monotonic seconds (CLOCK_MONOTONIC), for timing loops
 *   manual_seed(n) reseeds this lua_State's default generator
 *
 * The default generator is per lua_State, never a C global: an mo_rng inside
 * a userdata stored in the registry under the address of rng_key. Two
 * lua_States in one process therefore have independent streams; each starts
 * from MO__DEFAULT_SEED, so an unseeded script is still reproducible.
 */
#include "binding.h"

#include <time.h>

/* Registry key of the default generator (its address is the key; never written). */
static const char rng_key = 'r';

mo_rng *mo__lua_rng(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &rng_key);
    mo_rng *r = (mo_rng *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (r == NULL)
        luaL_error(L, "moonopt.core: the random generator is missing (module not opened)");
    return r;
}

/* manual_seed(n): n an integer (any lua_Integer; negative ones wrap to 64 bits). */
static int f_manual_seed(lua_State *L)
{
    mo__checknumber(L, 1, "manual_seed");
    lua_Integer seed = mo__checkinteger(L, 1, "manual_seed", "seed");
    mo_rng_seed(mo__lua_rng(L), (uint64_t)seed);
    return 0;
}

/* clock() -> seconds of a monotonic clock (only differences are meaningful). */
static int f_clock(lua_State *L)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return luaL_error(L, "clock: clock_gettime failed");
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

static const luaL_Reg module_functions[] = {
    {"manual_seed", f_manual_seed},
    {"clock", f_clock},
    {NULL, NULL},
};

int luaopen_moonopt_core(lua_State *L)
{
    /* the generator first: constructors may be called as soon as the module exists;
     * a second open in the same state (package.loaded cleared) keeps the stream */
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &rng_key) != LUA_TUSERDATA) {
        mo_rng *r = (mo_rng *)lua_newuserdatauv(L, sizeof *r, 0);
        mo_rng_seed(r, MO__DEFAULT_SEED);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &rng_key);
    }
    lua_pop(L, 1);

    lua_newtable(L);
    mo__open_tensor(L);
    mo__open_create(L);
    mo__open_math(L);
    mo__open_shape(L);
    mo__open_reduce(L);
    mo__open_index(L);
    mo__open_optim(L);
    mo__open_nn(L);
    mo__open_data(L);
    mo__open_checkpoint(L);
    mo__open_conv(L);
    mo__open_threads(L);
    luaL_setfuncs(L, module_functions, 0);
    lua_pushliteral(L, "moonopt " MO_VERSION_STRING);
    lua_setfield(L, -2, "_VERSION");
    lua_pushstring(L, mo_blas_backend());
    lua_setfield(L, -2, "blas_backend");
    lua_pushstring(L, mo_blas_kernel());
    lua_setfield(L, -2, "blas_kernel");
    return 1;
}
