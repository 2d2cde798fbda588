/*
 * optim.c - the optimizer kernels for Lua (the Lua modules in lua/moonopt/optim/ build the
 * classes on them).
 *
 * Each kernel function does one optimizer step for one parameter tensor and
 * takes everything positionally: the tensors, the step count, then the
 * hyperparameters in the order of the core's config struct. The Lua layer
 * validates options (with PyTorch's messages) and calls these once per
 * parameter per step, so they avoid tables and strings on the success path.
 * Modes arrive as small integers (eps_mode 0 raw / 1 hat; weight_decay_mode
 * 0 l2 / 1 decoupled / 2 decoupled_bc).
 *
 *   optim_sgd(w, g, buf|nil, first, lr, momentum, dampening, wd, nesterov, maximize)
 *   optim_adam(w, g, m, v, vmax|nil, step, lr, b1, b2, eps, wd, eps_mode, wd_mode,
 *              bias_correction, amsgrad, maximize, rescale_grad, clip_gradient, lr_decay,
 *              [clip_weight_decay, skip_nonfinite_rescale])
 *   optim_adamax(w, g, m, u, step, lr, b1, b2, eps, wd, maximize)
 *   optim_nadam(w, g, m, v, step, mu_product, lr, b1, b2, eps, wd, momentum_decay,
 *               decoupled, maximize) -> new mu_product
 *   optim_radam(w, g, m, v, step, lr, b1, b2, eps, wd, decoupled, maximize)
 *   optim_rmsprop(w, g, square_avg, grad_avg|nil, buf|nil, lr, alpha, eps, wd, momentum,
 *                 centered, maximize)
 *   optim_adagrad(w, g, sum, step, lr, lr_decay, wd, eps, maximize)
 *   optim_adadelta(w, g, square_avg, acc_delta, lr, rho, eps, wd, maximize)
 *   optim_lion(w, g, m, lr, b1, b2, wd, maximize)
 *   optim_lamb(w, g, m, v, step, lr, b1, b2, eps, wd, bias_correction, maximize) -> trust ratio
 *
 * The same for a whole param group in one call (what the classes use; see "one call per
 * param group" below):
 *   optim_<alg>_group(params, state, from, mask, <the hyperparameters above>) -> nil | j
 *
 * Helpers:
 *   optim_check(params, fname, check_finite) -> all_finite: every param's .grad
 *       (when not nil) is a live tensor of the param's shape, else an error
 *       "fname: grad shape {3} does not match param #2 shape {2, 3}"
 *   clip_grad_norm(params, max_norm) -> total norm of the .grad tensors
 *   clip_grad_value(params, clip)
 *   all_finite(t) -> boolean
 *   axpy_(y, alpha, x) -> y     (y += alpha*x in place)
 */
#include "binding.h"

#include <math.h>

/* A tensor at idx, or NULL for nil/none. */
static mo_tensor *opt_tensor(lua_State *L, int idx, const char *fname)
{
    if (lua_isnoneornil(L, idx)) return NULL;
    return mo__checkarg(L, idx, fname);
}

static lua_Number num(lua_State *L, int idx, const char *fname)
{
    if (lua_type(L, idx) != LUA_TNUMBER) mo__typeerror(L, idx, fname, "number");
    return lua_tonumber(L, idx);
}

static int64_t step_arg(lua_State *L, int idx, const char *fname)
{
    lua_Number s = num(L, idx, fname);
    if (!(s >= 1 && s <= 9007199254740992.0) || s != floor(s))
        mo__argerror(L, idx, fname, "step must be a positive integer");
    return (int64_t)s;
}

static int check_status(lua_State *L, mo_status st, const char *fname)
{
    if (st != MO_OK) return mo__status_error(L, st, fname);
    return 0;
}

/* ---- the hyperparameters ----
 *
 * read_<alg>(L, arg, fname, &c) fills the algorithm's config from the stack, starting at
 * index arg, in the order of the config struct (the lists above). The per-tensor function
 * and the group function of an algorithm take the same list; only where it starts differs.
 */

static void read_sgd(lua_State *L, int arg, const char *fn, mo_sgd_config *c)
{
    c->lr = num(L, arg++, fn);
    c->momentum = num(L, arg++, fn);
    c->dampening = num(L, arg++, fn);
    c->weight_decay = num(L, arg++, fn);
    c->nesterov = lua_toboolean(L, arg++);
    c->maximize = lua_toboolean(L, arg);
}

static void read_adam(lua_State *L, int arg, const char *fn, mo_adam_config *c)
{
    c->lr = num(L, arg++, fn);
    c->beta1 = num(L, arg++, fn);
    c->beta2 = num(L, arg++, fn);
    c->eps = num(L, arg++, fn);
    c->weight_decay = num(L, arg++, fn);
    c->eps_mode = (mo_eps_mode)(int)num(L, arg++, fn);
    c->weight_decay_mode = (mo_wd_mode)(int)num(L, arg++, fn);
    c->bias_correction = lua_toboolean(L, arg++);
    c->amsgrad = lua_toboolean(L, arg++);
    c->maximize = lua_toboolean(L, arg++);
    c->rescale_grad = num(L, arg++, fn);
    c->clip_gradient = num(L, arg++, fn);
    c->lr_decay = num(L, arg++, fn);
    c->clip_weight_decay = lua_toboolean(L, arg++);
    c->skip_nonfinite_rescale = lua_toboolean(L, arg);
}

static void read_adamax(lua_State *L, int arg, const char *fn, mo_adamax_config *c)
{
    c->lr = num(L, arg++, fn);
    c->beta1 = num(L, arg++, fn);
    c->beta2 = num(L, arg++, fn);
    c->eps = num(L, arg++, fn);
    c->weight_decay = num(L, arg++, fn);
    c->maximize = lua_toboolean(L, arg);
}

static void read_nadam(lua_State *L, int arg, const char *fn, mo_nadam_config *c)
{
    c->lr = num(L, arg++, fn);
    c->beta1 = num(L, arg++, fn);
    c->beta2 = num(L, arg++, fn);
    c->eps = num(L, arg++, fn);
    c->weight_decay = num(L, arg++, fn);
    c->momentum_decay = num(L, arg++, fn);
    c->decoupled_weight_decay = lua_toboolean(L, arg++);
    c->maximize = lua_toboolean(L, arg);
}

static void read_radam(lua_State *L, int arg, const char *fn, mo_radam_config *c)
{
    c->lr = num(L, arg++, fn);
    c->beta1 = num(L, arg++, fn);
    c->beta2 = num(L, arg++, fn);
    c->eps = num(L, arg++, fn);
    c->weight_decay = num(L, arg++, fn);
    c->decoupled_weight_decay = lua_toboolean(L, arg++);
    c->maximize = lua_toboolean(L, arg);
}

static void read_rmsprop(lua_State *L, int arg, const char *fn, mo_rmsprop_config *c)
{
    c->lr = num(L, arg++, fn);
    c->alpha = num(L, arg++, fn);
    c->eps = num(L, arg++, fn);
    c->weight_decay = num(L, arg++, fn);
    c->momentum = num(L, arg++, fn);
    c->centered = lua_toboolean(L, arg++);
    c->maximize = lua_toboolean(L, arg);
}

static void read_adagrad(lua_State *L, int arg, const char *fn, mo_adagrad_config *c)
{
    c->lr = num(L, arg++, fn);
    c->lr_decay = num(L, arg++, fn);
    c->weight_decay = num(L, arg++, fn);
    c->initial_accumulator_value = 0.0;  /* only used to fill `sum`, which the caller did */
    c->eps = num(L, arg++, fn);
    c->maximize = lua_toboolean(L, arg);
}

static void read_adadelta(lua_State *L, int arg, const char *fn, mo_adadelta_config *c)
{
    c->lr = num(L, arg++, fn);
    c->rho = num(L, arg++, fn);
    c->eps = num(L, arg++, fn);
    c->weight_decay = num(L, arg++, fn);
    c->maximize = lua_toboolean(L, arg);
}

static void read_lion(lua_State *L, int arg, const char *fn, mo_lion_config *c)
{
    c->lr = num(L, arg++, fn);
    c->beta1 = num(L, arg++, fn);
    c->beta2 = num(L, arg++, fn);
    c->weight_decay = num(L, arg++, fn);
    c->maximize = lua_toboolean(L, arg);
}

static void read_lamb(lua_State *L, int arg, const char *fn, mo_lamb_config *c)
{
    c->lr = num(L, arg++, fn);
    c->beta1 = num(L, arg++, fn);
    c->beta2 = num(L, arg++, fn);
    c->eps = num(L, arg++, fn);
    c->weight_decay = num(L, arg++, fn);
    c->bias_correction = lua_toboolean(L, arg++);
    c->maximize = lua_toboolean(L, arg);
}

/* ---- one call per param tensor ---- */

static int f_sgd(lua_State *L)
{
    static const char fn[] = "optim_sgd";
    mo_tensor *w = mo__checkarg(L, 1, fn), *g = mo__checkarg(L, 2, fn);
    mo_tensor *buf = opt_tensor(L, 3, fn);
    int first = lua_toboolean(L, 4);
    mo_sgd_config c;
    read_sgd(L, 5, fn, &c);
    check_status(L, mo_sgd_step(w, g, buf, &c, first), fn);
    return 0;
}

static int f_adam(lua_State *L)
{
    static const char fn[] = "optim_adam";
    mo_tensor *w = mo__checkarg(L, 1, fn), *g = mo__checkarg(L, 2, fn);
    mo_tensor *m = mo__checkarg(L, 3, fn), *v = mo__checkarg(L, 4, fn);
    mo_tensor *vmax = opt_tensor(L, 5, fn);
    int64_t step = step_arg(L, 6, fn);
    mo_adam_config c;
    read_adam(L, 7, fn, &c);
    check_status(L, mo_adam_step(w, g, m, v, vmax, &c, step), fn);
    return 0;
}

static int f_adamax(lua_State *L)
{
    static const char fn[] = "optim_adamax";
    mo_tensor *w = mo__checkarg(L, 1, fn), *g = mo__checkarg(L, 2, fn);
    mo_tensor *m = mo__checkarg(L, 3, fn), *u = mo__checkarg(L, 4, fn);
    int64_t step = step_arg(L, 5, fn);
    mo_adamax_config c;
    read_adamax(L, 6, fn, &c);
    check_status(L, mo_adamax_step(w, g, m, u, &c, step), fn);
    return 0;
}

static int f_nadam(lua_State *L)
{
    static const char fn[] = "optim_nadam";
    mo_tensor *w = mo__checkarg(L, 1, fn), *g = mo__checkarg(L, 2, fn);
    mo_tensor *m = mo__checkarg(L, 3, fn), *v = mo__checkarg(L, 4, fn);
    int64_t step = step_arg(L, 5, fn);
    double mu_product = num(L, 6, fn);
    mo_nadam_config c;
    read_nadam(L, 7, fn, &c);
    check_status(L, mo_nadam_step(w, g, m, v, &c, step, &mu_product), fn);
    lua_pushnumber(L, mu_product);
    return 1;
}

static int f_radam(lua_State *L)
{
    static const char fn[] = "optim_radam";
    mo_tensor *w = mo__checkarg(L, 1, fn), *g = mo__checkarg(L, 2, fn);
    mo_tensor *m = mo__checkarg(L, 3, fn), *v = mo__checkarg(L, 4, fn);
    int64_t step = step_arg(L, 5, fn);
    mo_radam_config c;
    read_radam(L, 6, fn, &c);
    check_status(L, mo_radam_step(w, g, m, v, &c, step), fn);
    return 0;
}

static int f_rmsprop(lua_State *L)
{
    static const char fn[] = "optim_rmsprop";
    mo_tensor *w = mo__checkarg(L, 1, fn), *g = mo__checkarg(L, 2, fn);
    mo_tensor *sq = mo__checkarg(L, 3, fn);
    mo_tensor *ga = opt_tensor(L, 4, fn), *buf = opt_tensor(L, 5, fn);
    mo_rmsprop_config c;
    read_rmsprop(L, 6, fn, &c);
    check_status(L, mo_rmsprop_step(w, g, sq, ga, buf, &c), fn);
    return 0;
}

static int f_adagrad(lua_State *L)
{
    static const char fn[] = "optim_adagrad";
    mo_tensor *w = mo__checkarg(L, 1, fn), *g = mo__checkarg(L, 2, fn);
    mo_tensor *sum = mo__checkarg(L, 3, fn);
    int64_t step = step_arg(L, 4, fn);
    mo_adagrad_config c;
    read_adagrad(L, 5, fn, &c);
    check_status(L, mo_adagrad_step(w, g, sum, &c, step), fn);
    return 0;
}

static int f_adadelta(lua_State *L)
{
    static const char fn[] = "optim_adadelta";
    mo_tensor *w = mo__checkarg(L, 1, fn), *g = mo__checkarg(L, 2, fn);
    mo_tensor *sq = mo__checkarg(L, 3, fn), *acc = mo__checkarg(L, 4, fn);
    mo_adadelta_config c;
    read_adadelta(L, 5, fn, &c);
    check_status(L, mo_adadelta_step(w, g, sq, acc, &c), fn);
    return 0;
}

static int f_lion(lua_State *L)
{
    static const char fn[] = "optim_lion";
    mo_tensor *w = mo__checkarg(L, 1, fn), *g = mo__checkarg(L, 2, fn);
    mo_tensor *m = mo__checkarg(L, 3, fn);
    mo_lion_config c;
    read_lion(L, 4, fn, &c);
    check_status(L, mo_lion_step(w, g, m, &c), fn);
    return 0;
}

static int f_lamb(lua_State *L)
{
    static const char fn[] = "optim_lamb";
    mo_tensor *w = mo__checkarg(L, 1, fn), *g = mo__checkarg(L, 2, fn);
    mo_tensor *m = mo__checkarg(L, 3, fn), *v = mo__checkarg(L, 4, fn);
    int64_t step = step_arg(L, 5, fn);
    mo_lamb_config c;
    read_lamb(L, 6, fn, &c);
    double ratio = 1.0;
    check_status(L, mo_lamb_step(w, g, m, v, &c, step, &ratio), fn);
    lua_pushnumber(L, ratio);
    return 1;
}

/* ---- one call per param group ----
 *
 * optim_<alg>_group(params, state, from, mask, <hyperparameters as optim_<alg>, without
 * the tensors and the step>) -> nil | j
 *
 * Runs the kernel for params[from..] that have a .grad, in order, reading each param's
 * state table state[p] (step, the state tensors by name) and writing back step + 1 (and
 * mu_product for NAdam, trust_ratio for LAMB). It stops and returns j when params[j] has
 * no state table or lacks a state tensor the options now need: the Lua layer creates it
 * and calls again from j. mask (a table or nil): mask[j] true gives params[j] weight
 * decay 0 (Adam/AdamW's exclude_from_weight_decay). The Lua layer has checked every
 * grad's shape (optim_check) and the options before; a kernel error here (out of memory,
 * a state tensor of a wrong shape) raises.
 */

/* Where the hyperparameters of optim_<alg>_group start (after params, state, from, mask). */
#define GROUP_HYPER 5

typedef struct group_args {
    const char *fname;
    int st;      /* stack index of the param's state table (0: none) */
    int masked;  /* mask[j] was true */
} group_args;

/* The step function of one family: 0 done, 1 state incomplete (nothing changed).
 * cfg is the family's config (Adam: an adam_group_cfg with its scalars cache). */
typedef int (*group_fn)(lua_State *L, const group_args *a, mo_tensor *w, mo_tensor *g, void *cfg);

/* state[key] as a live tensor, or NULL when absent (anything that is not a tensor). */
static mo_tensor *state_tensor(lua_State *L, int st, const char *key)
{
    lua_getfield(L, st, key);
    void *p = lua_touserdata(L, -1);
    mo_tensor *t = NULL;
    if (p != NULL && lua_getmetatable(L, -1)) {
        if (lua_rawequal(L, -1, lua_upvalueindex(1)) && mo_tensor_alive((mo_tensor *)p))
            t = (mo_tensor *)p;
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* the state table keeps the tensor alive */
    return t;
}

static int64_t state_step(lua_State *L, int st)
{
    lua_getfield(L, st, "step");
    lua_Number s = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return (int64_t)s;
}

static void set_number_field(lua_State *L, int st, const char *key, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, st, key);
}

static void set_step(lua_State *L, int st, int64_t step)
{
    lua_pushinteger(L, (lua_Integer)step);
    lua_setfield(L, st, "step");
}

/* The loop every optim_<alg>_group shares; the caller has read the hyperparameters into cfg
 * (they are dropped here). needs_state = 0: a param without a state table is passed to fn
 * (a->st 0) instead of being returned (SGD without momentum keeps no state). */
static int run_group(lua_State *L, const char *fname, void *cfg, group_fn fn, int needs_state)
{
    lua_settop(L, GROUP_HYPER - 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer from = luaL_checkinteger(L, 3);
    int has_mask = lua_istable(L, 4);
    lua_Integer n = luaL_len(L, 1);
    group_args a;
    a.fname = fname;
    for (lua_Integer j = from < 1 ? 1 : from; j <= n; j++) {
        lua_rawgeti(L, 1, j);                       /* p */
        mo_tensor *w = mo__checkarg(L, -1, fname);
        lua_getiuservalue(L, -1, 1);                /* p, grad */
        if (lua_isnil(L, -1)) {
            lua_pop(L, 2);
            continue;
        }
        mo_tensor *g = mo__checkarg(L, -1, fname);
        lua_pushvalue(L, -2);
        lua_rawget(L, 2);                           /* p, grad, state[p] */
        a.st = lua_istable(L, -1) ? lua_gettop(L) : 0;
        if (a.st == 0 && needs_state) {
            lua_pushinteger(L, j);
            return 1;
        }
        a.masked = 0;
        if (has_mask) {
            a.masked = lua_rawgeti(L, 4, j) != LUA_TNIL && lua_toboolean(L, -1);
            lua_pop(L, 1);
        }
        if (fn(L, &a, w, g, cfg)) {
            lua_pushinteger(L, j);
            return 1;
        }
        lua_pop(L, 3);
    }
    return 0;
}

/* Adam's per-step scalars depend on the step count: computed once per distinct step in a
 * group call (params of one group usually share it), for the decayed and the exempt params. */
typedef struct adam_group_cfg {
    mo_adam_config c, nodecay;
    mo_adam_scalars k[2];   /* [0] with weight decay, [1] exempt (weight decay 0) */
    int64_t k_step[2];      /* the step each entry was computed for; 0: none */
} adam_group_cfg;

static int g_adam(lua_State *L, const group_args *a, mo_tensor *w, mo_tensor *g, void *cfg)
{
    adam_group_cfg *gc = cfg;
    int ams = gc->c.amsgrad;
    mo_tensor *m = state_tensor(L, a->st, "exp_avg"), *v = state_tensor(L, a->st, "exp_avg_sq");
    mo_tensor *vmax = ams ? state_tensor(L, a->st, "max_exp_avg_sq") : NULL;
    if (!m || !v || (ams && !vmax)) return 1;
    int64_t step = state_step(L, a->st) + 1;
    int which = a->masked ? 1 : 0;
    if (gc->k_step[which] != step) {
        check_status(L, mo_adam_prepare(which ? &gc->nodecay : &gc->c, step, &gc->k[which]), a->fname);
        gc->k_step[which] = step;
    }
    check_status(L, mo_adam_step_prepared(w, g, m, v, vmax, &gc->k[which]), a->fname);
    set_step(L, a->st, step);
    return 0;
}

static int f_adam_group(lua_State *L)
{
    static const char fn[] = "optim_adam_group";
    adam_group_cfg gc;
    read_adam(L, GROUP_HYPER, fn, &gc.c);
    gc.nodecay = gc.c;
    gc.nodecay.weight_decay = 0.0;
    gc.k_step[0] = gc.k_step[1] = 0;
    return run_group(L, fn, &gc, g_adam, 1);
}

static int g_adamax(lua_State *L, const group_args *a, mo_tensor *w, mo_tensor *g, void *cfg)
{
    mo_tensor *m = state_tensor(L, a->st, "exp_avg"), *u = state_tensor(L, a->st, "exp_inf");
    if (!m || !u) return 1;
    int64_t step = state_step(L, a->st) + 1;
    check_status(L, mo_adamax_step(w, g, m, u, cfg, step), a->fname);
    set_step(L, a->st, step);
    return 0;
}

static int f_adamax_group(lua_State *L)
{
    static const char fn[] = "optim_adamax_group";
    mo_adamax_config c;
    read_adamax(L, GROUP_HYPER, fn, &c);
    return run_group(L, fn, &c, g_adamax, 1);
}

static int g_nadam(lua_State *L, const group_args *a, mo_tensor *w, mo_tensor *g, void *cfg)
{
    mo_tensor *m = state_tensor(L, a->st, "exp_avg"), *v = state_tensor(L, a->st, "exp_avg_sq");
    if (!m || !v) return 1;
    lua_getfield(L, a->st, "mu_product");
    int isnum = 0;
    double mu_product = lua_tonumberx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum) return 1;
    int64_t step = state_step(L, a->st) + 1;
    check_status(L, mo_nadam_step(w, g, m, v, cfg, step, &mu_product), a->fname);
    set_number_field(L, a->st, "mu_product", mu_product);
    set_step(L, a->st, step);
    return 0;
}

static int f_nadam_group(lua_State *L)
{
    static const char fn[] = "optim_nadam_group";
    mo_nadam_config c;
    read_nadam(L, GROUP_HYPER, fn, &c);
    return run_group(L, fn, &c, g_nadam, 1);
}

static int g_radam(lua_State *L, const group_args *a, mo_tensor *w, mo_tensor *g, void *cfg)
{
    mo_tensor *m = state_tensor(L, a->st, "exp_avg"), *v = state_tensor(L, a->st, "exp_avg_sq");
    if (!m || !v) return 1;
    int64_t step = state_step(L, a->st) + 1;
    check_status(L, mo_radam_step(w, g, m, v, cfg, step), a->fname);
    set_step(L, a->st, step);
    return 0;
}

static int f_radam_group(lua_State *L)
{
    static const char fn[] = "optim_radam_group";
    mo_radam_config c;
    read_radam(L, GROUP_HYPER, fn, &c);
    return run_group(L, fn, &c, g_radam, 1);
}

static int g_sgd(lua_State *L, const group_args *a, mo_tensor *w, mo_tensor *g, void *cfg)
{
    const mo_sgd_config *c = cfg;
    if (c->momentum == 0.0) {
        check_status(L, mo_sgd_step(w, g, NULL, c, 0), a->fname);
        return 0;
    }
    if (a->st == 0) return 1;
    mo_tensor *buf = state_tensor(L, a->st, "momentum_buffer");
    int first = buf == NULL;
    if (first) {
        /* PyTorch starts the buffer at the first gradient: a new tensor the kernel fills */
        buf = mo__newtensor(L, w->ndim, w->shape, 1, a->fname);
        check_status(L, mo_sgd_step(w, g, buf, c, 1), a->fname);
        lua_setfield(L, a->st, "momentum_buffer");
        return 0;
    }
    check_status(L, mo_sgd_step(w, g, buf, c, 0), a->fname);
    return 0;
}

static int f_sgd_group(lua_State *L)
{
    static const char fn[] = "optim_sgd_group";
    mo_sgd_config c;
    read_sgd(L, GROUP_HYPER, fn, &c);
    return run_group(L, fn, &c, g_sgd, 0);
}

static int g_rmsprop(lua_State *L, const group_args *a, mo_tensor *w, mo_tensor *g, void *cfg)
{
    const mo_rmsprop_config *c = cfg;
    mo_tensor *sq = state_tensor(L, a->st, "square_avg");
    mo_tensor *ga = c->centered ? state_tensor(L, a->st, "grad_avg") : NULL;
    mo_tensor *buf = c->momentum > 0.0 ? state_tensor(L, a->st, "momentum_buffer") : NULL;
    if (!sq || (c->centered && !ga) || (c->momentum > 0.0 && !buf)) return 1;
    check_status(L, mo_rmsprop_step(w, g, sq, ga, buf, c), a->fname);
    set_step(L, a->st, state_step(L, a->st) + 1);
    return 0;
}

static int f_rmsprop_group(lua_State *L)
{
    static const char fn[] = "optim_rmsprop_group";
    mo_rmsprop_config c;
    read_rmsprop(L, GROUP_HYPER, fn, &c);
    return run_group(L, fn, &c, g_rmsprop, 1);
}

static int g_adagrad(lua_State *L, const group_args *a, mo_tensor *w, mo_tensor *g, void *cfg)
{
    mo_tensor *sum = state_tensor(L, a->st, "sum");
    if (!sum) return 1;
    int64_t step = state_step(L, a->st) + 1;
    check_status(L, mo_adagrad_step(w, g, sum, cfg, step), a->fname);
    set_step(L, a->st, step);
    return 0;
}

static int f_adagrad_group(lua_State *L)
{
    static const char fn[] = "optim_adagrad_group";
    mo_adagrad_config c;
    read_adagrad(L, GROUP_HYPER, fn, &c);
    return run_group(L, fn, &c, g_adagrad, 1);
}

static int g_adadelta(lua_State *L, const group_args *a, mo_tensor *w, mo_tensor *g, void *cfg)
{
    mo_tensor *sq = state_tensor(L, a->st, "square_avg"), *acc = state_tensor(L, a->st, "acc_delta");
    if (!sq || !acc) return 1;
    check_status(L, mo_adadelta_step(w, g, sq, acc, cfg), a->fname);
    set_step(L, a->st, state_step(L, a->st) + 1);
    return 0;
}

static int f_adadelta_group(lua_State *L)
{
    static const char fn[] = "optim_adadelta_group";
    mo_adadelta_config c;
    read_adadelta(L, GROUP_HYPER, fn, &c);
    return run_group(L, fn, &c, g_adadelta, 1);
}

static int g_lion(lua_State *L, const group_args *a, mo_tensor *w, mo_tensor *g, void *cfg)
{
    mo_tensor *m = state_tensor(L, a->st, "exp_avg");
    if (!m) return 1;
    check_status(L, mo_lion_step(w, g, m, cfg), a->fname);
    set_step(L, a->st, state_step(L, a->st) + 1);
    return 0;
}

static int f_lion_group(lua_State *L)
{
    static const char fn[] = "optim_lion_group";
    mo_lion_config c;
    read_lion(L, GROUP_HYPER, fn, &c);
    return run_group(L, fn, &c, g_lion, 1);
}

static int g_lamb(lua_State *L, const group_args *a, mo_tensor *w, mo_tensor *g, void *cfg)
{
    mo_tensor *m = state_tensor(L, a->st, "exp_avg"), *v = state_tensor(L, a->st, "exp_avg_sq");
    if (!m || !v) return 1;
    int64_t step = state_step(L, a->st) + 1;
    double ratio = 1.0;
    check_status(L, mo_lamb_step(w, g, m, v, cfg, step, &ratio), a->fname);
    set_number_field(L, a->st, "trust_ratio", ratio);
    set_step(L, a->st, step);
    return 0;
}

static int f_lamb_group(lua_State *L)
{
    static const char fn[] = "optim_lamb_group";
    mo_lamb_config c;
    read_lamb(L, GROUP_HYPER, fn, &c);
    return run_group(L, fn, &c, g_lamb, 1);
}

/* ---- helpers over lists of parameters ---- */

/* The tensor userdata at idx (freed or not) or NULL; the function calling it must have the
 * tensor metatable as upvalue 1 (every function here does: mo__setfuncs). */
static mo_tensor *fast_totensor(lua_State *L, int idx)
{
    void *p = lua_touserdata(L, idx);
    if (p == NULL || !lua_getmetatable(L, idx)) return NULL;
    int same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    return same ? (mo_tensor *)p : NULL;
}

/* Pushes params[i].grad (user value 1 of the tensor) and returns it, or NULL when nil. */
static mo_tensor *push_grad(lua_State *L, int list, lua_Integer i, const char *fname,
                            mo_tensor **param)
{
    lua_rawgeti(L, list, i);
    mo_tensor *p = fast_totensor(L, -1);
    if (p == NULL) {
        const char *got = luaL_typename(L, -1);
        luaL_error(L, "%s: param #%d is not a tensor (got %s)", fname, (int)i, got);
    }
    if (!mo_tensor_alive(p)) luaL_error(L, "%s: param #%d: tensor has been freed", fname, (int)i);
    lua_getiuservalue(L, -1, 1);
    lua_remove(L, -2);
    *param = p;
    if (lua_isnil(L, -1)) return NULL;
    mo_tensor *g = fast_totensor(L, -1);
    if (g == NULL) luaL_error(L, "%s: grad of param #%d is not a tensor", fname, (int)i);
    if (!mo_tensor_alive(g)) luaL_error(L, "%s: grad of param #%d: tensor has been freed", fname, (int)i);
    return g;
}

static int f_check(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *fname = luaL_optstring(L, 2, "step");
    int want_finite = lua_toboolean(L, 3);
    int all_finite = 1;
    lua_Integer n = luaL_len(L, 1);
    for (lua_Integer i = 1; i <= n; i++) {
        mo_tensor *p;
        mo_tensor *g = push_grad(L, 1, i, fname, &p);
        if (g != NULL) {
            if (!mo_tensor_same_shape(g, p)) {
                char sg[MO__SHAPE_BUF], sp[MO__SHAPE_BUF];
                return luaL_error(L, "%s: grad shape %s does not match param #%d shape %s", fname,
                                  mo__shapestr(g, sg), (int)i, mo__shapestr(p, sp));
            }
            if (want_finite && all_finite) {
                int fin = 1;
                check_status(L, mo_all_finite(g, &fin), fname);
                all_finite = fin;
            }
        }
        lua_pop(L, 1);
    }
    lua_pushboolean(L, all_finite);
    return 1;
}

/* The .grad tensors of the list at index 1 into a userdata array (pushed); returns count. */
static mo_tensor **collect_grads(lua_State *L, const char *fname, size_t *count)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    if (n < 0 || n > 100000000) luaL_error(L, "%s: too many params", fname);
    mo_tensor **ts = (mo_tensor **)lua_newuserdatauv(L, sizeof(mo_tensor *) * (size_t)(n ? n : 1), 0);
    int at = lua_gettop(L);
    size_t k = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        mo_tensor *p;
        mo_tensor *g = push_grad(L, 1, i, fname, &p);
        /* the grads stay reachable from their params for as long as this call runs */
        lua_pop(L, 1);
        if (g != NULL) ts[k++] = g;
    }
    lua_settop(L, at);
    *count = k;
    return ts;
}

static int f_clip_grad_norm(lua_State *L)
{
    static const char fn[] = "clip_grad_norm";
    lua_Number max_norm = num(L, 2, fn);
    if (!(max_norm >= 0)) mo__argerror(L, 2, fn, "max_norm must be >= 0");
    size_t n;
    mo_tensor **ts = collect_grads(L, fn, &n);
    double total = 0.0;
    check_status(L, mo_clip_grad_norm(ts, n, max_norm, &total), fn);
    lua_pushnumber(L, total);
    return 1;
}

static int f_clip_grad_value(lua_State *L)
{
    static const char fn[] = "clip_grad_value";
    lua_Number clip = num(L, 2, fn);
    if (!(clip >= 0)) mo__argerror(L, 2, fn, "clip value must be >= 0");
    size_t n;
    mo_tensor **ts = collect_grads(L, fn, &n);
    for (size_t i = 0; i < n; i++) check_status(L, mo_clip_grad_value(ts[i], clip), fn);
    return 0;
}

static int f_all_finite(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "all_finite");
    int fin = 1;
    check_status(L, mo_all_finite(t, &fin), "all_finite");
    lua_pushboolean(L, fin);
    return 1;
}

static int f_axpy(lua_State *L)
{
    static const char fn[] = "axpy_";
    mo_tensor *y = mo__checkarg(L, 1, fn);
    lua_Number a = num(L, 2, fn);
    mo_tensor *x = mo__checkarg(L, 3, fn);
    if (!mo_tensor_same_shape(y, x)) return mo__shape_error(L, fn, y, x);
    check_status(L, mo_axpy(y, a, x), fn);
    lua_settop(L, 1);
    return 1;
}

static const luaL_Reg optim_functions[] = {
    {"optim_sgd", f_sgd},
    {"optim_adam", f_adam},
    {"optim_adamax", f_adamax},
    {"optim_nadam", f_nadam},
    {"optim_radam", f_radam},
    {"optim_rmsprop", f_rmsprop},
    {"optim_adagrad", f_adagrad},
    {"optim_adadelta", f_adadelta},
    {"optim_lion", f_lion},
    {"optim_lamb", f_lamb},
    {"optim_sgd_group", f_sgd_group},
    {"optim_adam_group", f_adam_group},
    {"optim_adamax_group", f_adamax_group},
    {"optim_nadam_group", f_nadam_group},
    {"optim_radam_group", f_radam_group},
    {"optim_rmsprop_group", f_rmsprop_group},
    {"optim_adagrad_group", f_adagrad_group},
    {"optim_adadelta_group", f_adadelta_group},
    {"optim_lion_group", f_lion_group},
    {"optim_lamb_group", f_lamb_group},
    {"optim_check", f_check},
    {"clip_grad_norm", f_clip_grad_norm},
    {"clip_grad_value", f_clip_grad_value},
    {"all_finite", f_all_finite},
    {"axpy_", f_axpy},
    {NULL, NULL},
};

void mo__open_optim(lua_State *L)
{
    mo__setfuncs(L, optim_functions);
}
