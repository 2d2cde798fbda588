/*
 * optim.c - the optimizer step for Lua, driven by the core's descriptors (mo_optim_desc,
 * moonopt_optim.h): one function steps every algorithm by name.
 *
 *   optim_step(kind, fname, groups, state, check_finite [, masks [, grads]]) -> stepped
 *       One step of every param of every group, the whole of opt:step() in one call.
 *       kind: a descriptor name ("adam"); fname: the name errors start with ("AdamW");
 *       groups: a list of param groups {params = {p, ...}, <option> = value, ...}, each
 *       option read BY NAME as the descriptor lists it (a missing one keeps the core's
 *       default); state: param -> state table ({step = n, exp_avg = tensor, ...}, keys as
 *       the descriptor names them); masks[gi][j] true: params[j] of group gi steps with
 *       weight_decay 0; grads[gi][j]: the gradient of params[j] instead of its .grad.
 *       Params without a gradient are skipped. Missing state (a new param, or a buffer an
 *       option now needs) is created here. Returns false, changing nothing, when
 *       check_finite and some gradient holds NaN or +-inf.
 *   optim_info(kind) -> {options = {name, ...}, buffers = {{name, when, lean}, ...},
 *       scalars = {{name, input}, ...}, counts_steps = bool}: what a state holds, for
 *       load_state_dict's checks.
 *   optim_check(params, fname, check_finite) -> all_finite: every param's .grad (when not
 *       nil) is a live tensor of the param's shape (used by L-BFGS and all_finite).
 *   clip_grad_norm(params, max_norm [, mode]) -> total norm; clip_grad_value(params, clip);
 *   all_finite(t) -> boolean; axpy_(y, alpha, x) -> y (y += alpha*x in place).
 *
 * Nothing half-changed: optim_step checks everything it will touch (every gradient, every
 * state tensor's liveness, shape and dtype, every step count and state number, every
 * group's options) for all params of all groups before the first write.
 *
 * Dtypes: a param steps in its own dtype (float32 or float64, the kernels' two instances,
 * docs/design.md "Two dtypes"); its grad and state must share it, and new state is made in
 * it. Lean state (a group's state_dtype "bfloat16" or "int8", for the buffers the descriptor
 * marks lean): float32 params only; those buffers are lean state objects (optim_lean.c),
 * checked like tensors (live, the param's shape, the group's dtype, the buffer's int8 map).
 *
 * Garbage collection: creating state allocates, and an allocation may run any finalizer.
 * So the call runs in phases: (1) read every group's options; (2) validate everything,
 * allocating nothing (key strings are pinned on the stack and tables read raw, so no
 * string is made and no metamethod runs); (3) only when some state is missing: create it
 * into a `pending` table pinned on the stack, commit it into `state` (both allocate), and
 * validate everything again; (4) run the kernels, re-reading every pointer from the pinned
 * tables and writing only keys that already exist (no allocation). No raw pointer is kept
 * across an allocation.
 */
#include "binding.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The largest step count a state may hold: the last integer a double holds exactly. */
#define MAX_STEP 9007199254740992.0 /* 2^53 */

/* ---- stack layout of optim_step ---- */

enum { A_KIND = 1, A_FNAME, A_GROUPS, A_STATE, A_FINITE, A_MASKS, A_GRADS, S_WORK, S_PENDING,
       S_KEYS };

typedef struct step_ctx {
    lua_State *L;
    const mo_optim_desc *d;
    const char *fname;
    lua_Integer ngroups;
    size_t stride;      /* bytes per group in the work area: 2 configs, 2 caches, the on-mask */
    unsigned char *work;
    int k_params, k_step, k_opt, k_buf, k_scal;  /* stack indices of the pinned key strings */
    int k_sdt, k_srd;   /* "state_dtype", "state_rounding" */
    int wd_option;      /* index of the "weight_decay" option, or -1 */
    int lean_ok;        /* some buffer of the descriptor may be lean */
} step_ctx;

static size_t align16(size_t n) { return (n + 15u) & ~(size_t)15u; }

static void *group_cfg(const step_ctx *c, lua_Integer gi, int masked)
{
    return c->work + (size_t)(gi - 1) * c->stride + (masked ? align16(c->d->config_size) : 0);
}

static void *group_cache(const step_ctx *c, lua_Integer gi, int masked)
{
    size_t base = 2 * align16(c->d->config_size);
    return c->work + (size_t)(gi - 1) * c->stride + base +
           (masked ? align16(c->d->cache_size) : 0);
}

/* Bit i set: buffer i is kept under group gi's options (the same for both configs). */
static unsigned *group_on(const step_ctx *c, lua_Integer gi)
{
    size_t base = 2 * align16(c->d->config_size) + 2 * align16(c->d->cache_size);
    return (unsigned *)(void *)(c->work + (size_t)(gi - 1) * c->stride + base);
}

/* Group gi's state storage: the mo_state_dtype in bits 0-3, bit 4 set for stochastic
 * rounding (the word after group_on's, in the same 16 bytes). */
static unsigned *group_lean(const step_ctx *c, lua_Integer gi)
{
    return group_on(c, gi) + 1;
}
#define LEAN_DTYPE(word) ((mo_state_dtype)((word) & 15u))
#define LEAN_ROUNDING(word) ((word) >> 4 & 1u ? MO_ROUND_STOCHASTIC : MO_ROUND_NEAREST)

/* Pushes t[key] (key: a pinned string at stack index k), raw; returns its type. */
static int rawget_key(lua_State *L, int t, int k)
{
    t = lua_absindex(L, t);
    lua_pushvalue(L, k);
    return lua_rawget(L, t);
}

/* ---- reading one group's options by name (phase 1) ---- */

static int option_index(const mo_optim_desc *d, const char *name)
{
    for (size_t i = 0; i < d->noptions; i++)
        if (strcmp(d->options[i].name, name) == 0) return (int)i;
    return -1;
}

static void option_error(const step_ctx *c, lua_Integer gi, const mo_optim_option *o,
                         const char *want, int idx)
{
    const char *got = mo__describe(c->L, idx);
    luaL_error(c->L, "%s: param group %I: option '%s' must be %s, got %s", c->fname, (lua_Integer)gi,
               o->name, want, got);
}

/* Reads the value at the top of the stack into cfg as option o (nil keeps the default). */
static void read_option(const step_ctx *c, lua_Integer gi, const mo_optim_option *o, void *cfg)
{
    lua_State *L = c->L;
    unsigned char *f = (unsigned char *)cfg + o->offset;
    int t = lua_type(L, -1);
    if (t == LUA_TNIL) return;
    double v[2];
    switch (o->type) {
    case MO_OPTT_NUMBER:
        if (t != LUA_TNUMBER) option_error(c, gi, o, "a number", -1);
        v[0] = lua_tonumber(L, -1);
        memcpy(f, &v[0], sizeof(double));
        break;
    case MO_OPTT_OFF:
        if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) v[0] = -1.0;
        else if (t == LUA_TNUMBER) v[0] = lua_tonumber(L, -1);
        else option_error(c, gi, o, "a number or false", -1);
        memcpy(f, &v[0], sizeof(double));
        break;
    case MO_OPTT_BOOL: {
        if (t != LUA_TBOOLEAN) option_error(c, gi, o, "a boolean", -1);
        int b = lua_toboolean(L, -1);
        memcpy(f, &b, sizeof(int));
        break;
    }
    case MO_OPTT_PAIR:
        if (t != LUA_TTABLE || lua_rawgeti(L, -1, 1) != LUA_TNUMBER ||
            lua_rawgeti(L, -2, 2) != LUA_TNUMBER)
            option_error(c, gi, o, "a list of two numbers", t == LUA_TTABLE ? -3 : -1);
        v[0] = lua_tonumber(L, -2);
        v[1] = lua_tonumber(L, -1);
        lua_pop(L, 2);
        memcpy(f, v, sizeof v);
        break;
    case MO_OPTT_CHOICE: {
        const char *s = t == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int k = 0;
        while (s && o->choices[k] && strcmp(o->choices[k], s) != 0) k++;
        if (!s || !o->choices[k]) option_error(c, gi, o, "one of the names the class lists", -1);
        memcpy(f, &k, sizeof(int));
        break;
    }
    }
}

static int buffer_on(const mo_optim_desc *d, size_t i, const void *cfg);

/* A group's state_dtype and state_rounding (nil: float32, nearest) as a group_lean word. The
 * class checks them first with friendlier messages (optimizer.lua); this guards the core. */
static unsigned read_lean_options(const step_ctx *c, lua_Integer gi, int group)
{
    static const char *const dtypes[] = {"float32", "bfloat16", "int8", NULL};
    static const char *const roundings[] = {"nearest", "stochastic", NULL};
    lua_State *L = c->L;
    unsigned word = 0;
    for (int which = 0; which < 2; which++) {
        const char *const *names = which ? roundings : dtypes;
        int t = rawget_key(L, group, which ? c->k_srd : c->k_sdt);
        const char *v = t == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int k = 0;
        while (v && names[k] && strcmp(names[k], v) != 0) k++;
        if (t != LUA_TNIL && (!v || !names[k]))
            luaL_error(L, "%s: param group %I: option '%s' must be %s, got %s", c->fname, (lua_Integer)gi,
                       which ? "state_rounding" : "state_dtype",
                       which ? "\"nearest\" or \"stochastic\"" : "\"float32\", \"bfloat16\" or \"int8\"",
                       mo__describe(L, -1));
        if (t != LUA_TNIL) word |= which ? (unsigned)k << 4 : (unsigned)k;
        lua_pop(L, 1);
    }
    return word;
}

/* Reads group gi's options into its two configs (the second with weight_decay 0). */
static void read_group(const step_ctx *c, lua_Integer gi, int group)
{
    lua_State *L = c->L;
    const mo_optim_desc *d = c->d;
    void *cfg = group_cfg(c, gi, 0), *nodecay = group_cfg(c, gi, 1);
    d->defaults(cfg);
    for (size_t i = 0; i < d->noptions; i++) {
        rawget_key(L, group, c->k_opt + (int)i);
        read_option(c, gi, &d->options[i], cfg);
        lua_pop(L, 1);
    }
    if (d->check(cfg) != MO_OK)
        luaL_error(L, "%s: param group %I: a hyper-parameter is outside its domain", c->fname,
                   (lua_Integer)gi);
    memcpy(nodecay, cfg, d->config_size);
    if (c->wd_option >= 0) {
        double zero = 0.0;
        memcpy((unsigned char *)nodecay + d->options[c->wd_option].offset, &zero, sizeof zero);
    }
    memset(group_cache(c, gi, 0), 0, 2 * align16(d->cache_size));
    unsigned on = 0;
    for (size_t i = 0; i < d->nbuffers; i++)
        if (buffer_on(d, i, cfg)) on |= 1u << i;
    *group_on(c, gi) = on;
    *group_lean(c, gi) = c->lean_ok ? read_lean_options(c, gi, group) : 0u;
}

/* Whether buffer i is kept under cfg (its `when` option is non-zero / true). */
static int buffer_on(const mo_optim_desc *d, size_t i, const void *cfg)
{
    const char *when = d->buffers[i].when;
    if (when == NULL) return 1;
    int k = option_index(d, when);
    if (k < 0) return 1;
    const unsigned char *f = (const unsigned char *)cfg + d->options[k].offset;
    if (d->options[k].type == MO_OPTT_BOOL || d->options[k].type == MO_OPTT_CHOICE) {
        int b;
        memcpy(&b, f, sizeof b);
        return b != 0;
    }
    double v;
    memcpy(&v, f, sizeof v);
    return v != 0.0;
}

/* ---- walking the params of every group ---- */

/* What the walk pushes for one param: the group's params table, the param, its gradient. */
typedef struct param_at {
    lua_Integer gi, j, index;  /* group, position in the group, 1-based index over all groups */
    int group, p, g;           /* stack indices */
    int masked;
} param_at;

typedef int (*param_fn)(step_ctx *c, const param_at *a, void *ud);

/* Pushes the gradient of the param at a->p (grads[gi][j] or its .grad); returns 0 for none. */
static int push_grad(step_ctx *c, const param_at *a)
{
    lua_State *L = c->L;
    if (lua_istable(L, A_GRADS)) {
        if (lua_rawgeti(L, A_GRADS, a->gi) == LUA_TTABLE) lua_rawgeti(L, -1, a->j);
        else lua_pushnil(L);
        lua_remove(L, -2);
    } else {
        lua_getiuservalue(L, a->p, 1);
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

/* Calls fn for every param with a gradient, in order. The walk itself allocates nothing. */
static int each_param(step_ctx *c, param_fn fn, void *ud)
{
    lua_State *L = c->L;
    param_at a;
    a.index = 0;
    for (a.gi = 1; a.gi <= c->ngroups; a.gi++) {
        if (lua_rawgeti(L, A_GROUPS, a.gi) != LUA_TTABLE)
            luaL_error(L, "%s: param group %I is not a table", c->fname, (lua_Integer)a.gi);
        a.group = lua_gettop(L);
        if (rawget_key(L, a.group, c->k_params) != LUA_TTABLE)
            luaL_error(L, "%s: param group %I has no 'params' list", c->fname, (lua_Integer)a.gi);
        int params = lua_gettop(L);
        int has_mask = lua_istable(L, A_MASKS) && lua_rawgeti(L, A_MASKS, a.gi) == LUA_TTABLE;
        if (lua_istable(L, A_MASKS) && !has_mask) lua_pop(L, 1);
        int mask = has_mask ? lua_gettop(L) : 0;
        lua_Integer n = (lua_Integer)lua_rawlen(L, params);
        for (a.j = 1; a.j <= n; a.j++) {
            a.index++;
            lua_rawgeti(L, params, a.j);
            a.p = lua_gettop(L);
            mo_tensor *p = mo__toarg(L, a.p);
            if (p == NULL || !mo_tensor_alive(p))
                luaL_error(L, "%s: param #%I: %s", c->fname, (lua_Integer)a.index,
                           p ? "tensor has been freed" : "not a tensor");
            if (!push_grad(c, &a)) {
                lua_pop(L, 1);
                continue;
            }
            a.g = lua_gettop(L);
            a.masked = mask && lua_rawgeti(L, mask, a.j) != LUA_TNIL && lua_toboolean(L, -1);
            if (mask) lua_pop(L, 1);
            int r = fn(c, &a, ud);
            lua_settop(L, a.p - 1);
            if (r) return r;
        }
        lua_settop(L, a.group - 1);
    }
    return 0;
}

/* Pushes state[p] (nil when there is none). */
static int push_state(step_ctx *c, const param_at *a)
{
    lua_pushvalue(c->L, a->p);
    return lua_rawget(c->L, A_STATE);
}

/* Pushes st[key], or pending[p][key] when st lacks it (st may be nil). */
static int push_entry(step_ctx *c, const param_at *a, int st, int key)
{
    lua_State *L = c->L;
    if (lua_istable(L, st) && rawget_key(L, st, key) != LUA_TNIL) return lua_type(L, -1);
    if (lua_istable(L, st)) lua_pop(L, 1);
    lua_pushvalue(L, a->p);
    if (lua_rawget(L, S_PENDING) != LUA_TTABLE) return LUA_TNIL; /* leaves nil pushed */
    rawget_key(L, -1, key);
    lua_remove(L, -2);
    return lua_type(L, -1);
}

/* ---- phase 1: options and missing state ---- */

/* Pushes pending[p], creating it (allocates). */
static int pending_table(step_ctx *c, const param_at *a)
{
    lua_State *L = c->L;
    lua_pushvalue(L, a->p);
    if (lua_rawget(L, S_PENDING) == LUA_TTABLE) return lua_gettop(L);
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, a->p);
    lua_pushvalue(L, -2);
    lua_rawset(L, S_PENDING);
    return lua_gettop(L);
}

/* A new state buffer for the param at a->p, pushed (allocates; re-reads the param after). */
static void new_buffer(step_ctx *c, const param_at *a, const mo_optim_buffer *b, const void *cfg)
{
    lua_State *L = c->L;
    mo_tensor *p = mo__toarg(L, a->p);
    size_t shape[MO_MAX_DIMS];
    int ndim = p->ndim;
    memcpy(shape, p->shape, sizeof shape);
    mo_state_dtype sdt = LEAN_DTYPE(*group_lean(c, a->gi));
    if (sdt != MO_STATE_FLOAT32 && b->lean != MO_LEAN_NONE) {
        /* lean buffers start at 0 (every lean buffer is MO_OPTI_ZERO or MO_OPTI_KERNEL) */
        mo__push_lean(L, sdt, b->lean, ndim, shape, c->fname);
        return;
    }
    /* the state has the param's dtype (the kernel refuses a mix) */
    mo_tensor *t = mo__newtensor_dtype(L, ndim, shape, p->dtype, b->init != MO_OPTI_PARAM, c->fname);
    if (b->init == MO_OPTI_OPTION) {
        int k = option_index(c->d, b->arg);
        double v = 0.0;
        if (k >= 0) memcpy(&v, (const unsigned char *)cfg + c->d->options[k].offset, sizeof v);
        mo__check(L, mo_fill(t, v), c->fname);
    } else if (b->init == MO_OPTI_PARAM) {
        p = mo__toarg(L, a->p);  /* the allocation may have run a finalizer */
        if (!mo_tensor_alive(p) || !mo__shape_is(p, ndim, shape) || p->dtype != t->dtype)
            luaL_error(L, "%s: param #%I changed while its state was made", c->fname,
                       (lua_Integer)a->index);
        mo__check(L, mo_copy(t, p), c->fname);
    }
}

static int complete_state(step_ctx *c, const param_at *a, void *ud)
{
    (void)ud;
    lua_State *L = c->L;
    const mo_optim_desc *d = c->d;
    const void *cfg = group_cfg(c, a->gi, a->masked);
    unsigned on = *group_on(c, a->gi);
    int st = (push_state(c, a), lua_gettop(L)), pend = 0;
    for (size_t i = 0; i < d->nbuffers; i++) {
        if (!(on >> i & 1u)) continue;
        int missing = push_entry(c, a, st, c->k_buf + (int)i) == LUA_TNIL;
        lua_pop(L, 1);
        if (!missing) continue;
        if (!pend) pend = pending_table(c, a);
        lua_pushvalue(L, c->k_buf + (int)i);
        new_buffer(c, a, &d->buffers[i], cfg);
        lua_rawset(L, pend);
    }
    /* every number the run phase writes must exist before it, so that writing allocates nothing */
    for (size_t i = 0; i < d->nscalars + (d->counts_steps ? 1 : 0); i++) {
        int key = i < d->nscalars ? c->k_scal + (int)i : c->k_step;
        int missing = push_entry(c, a, st, key) == LUA_TNIL;
        lua_pop(L, 1);
        if (!missing) continue;
        if (!pend) pend = pending_table(c, a);
        lua_pushvalue(L, key);
        if (i < d->nscalars) lua_pushnumber(L, d->scalars[i].init);
        else lua_pushinteger(L, 0);
        lua_rawset(L, pend);
    }
    return 0;
}

/* ---- phase 2: validation (allocates nothing until it raises) ---- */

static void state_error(step_ctx *c, const param_at *a, const char *key, const char *what)
{
    luaL_error(c->L, "%s: step: state of param #%I: '%s' %s", c->fname, (lua_Integer)a->index, key, what);
}

/* The step count at the top of the stack, checked: an integer in [0, 2^53]. */
static int64_t checked_step(step_ctx *c, const param_at *a)
{
    lua_State *L = c->L;
    if (lua_isinteger(L, -1)) {
        lua_Integer s = lua_tointeger(L, -1);
        if (s >= 0 && s <= (lua_Integer)MAX_STEP) return (int64_t)s;
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
        lua_Number s = lua_tonumber(L, -1);
        if (s >= 0 && s <= MAX_STEP && s == floor(s)) return (int64_t)s;
    }
    const char *got = mo__describe(L, -1);
    luaL_error(L, "%s: step: state of param #%I: 'step' must be an integer in [0, 2^53], got %s",
               c->fname, (lua_Integer)a->index, got);
    return 0;
}

typedef struct validate_acc {
    int all_finite, check_finite;
    int allow_missing, missing;  /* missing state: counted (first pass) or an error */
} validate_acc;

/* A state entry that is absent: noted when the pass allows it, else an error. */
static int absent(step_ctx *c, const param_at *a, validate_acc *acc, const char *key)
{
    if (!acc->allow_missing) state_error(c, a, key, "is missing");
    acc->missing = 1;
    lua_pop(c->L, 1);
    return 1;
}

static const char *dtype_word(mo_state_dtype dt)
{
    return dt == MO_STATE_BFLOAT16 ? "bfloat16" : dt == MO_STATE_INT8 ? "int8" : "float32";
}

/* The entry at the top of the stack is buffer i of the param at a->p, kept as lean state of
 * dtype sdt: a live lean object of the param's shape, the group's dtype and the buffer's map. */
static void check_lean_entry(step_ctx *c, const param_at *a, const mo_tensor *p, size_t i,
                             mo_state_dtype sdt)
{
    lua_State *L = c->L;
    const char *key = c->d->buffers[i].name;
    mo__lean_ud *u = mo__tolean(L, -1);
    if (u == NULL) {
        if (mo__toarg(L, -1) != NULL)
            luaL_error(L, "%s: step: state of param #%I: '%s' is a float tensor, the group's "
                       "state_dtype is '%s' (load_state_dict converts state between dtypes)",
                       c->fname, (lua_Integer)a->index, key, dtype_word(sdt));
        state_error(c, a, key, "is not lean state");
    }
    if (u->s.codes == NULL) state_error(c, a, key, "is a freed lean state");
    if (u->s.dtype != sdt)
        luaL_error(L, "%s: step: state of param #%I: '%s' is %s state, the group's state_dtype is "
                   "'%s' (load_state_dict converts state between dtypes)", c->fname,
                   (lua_Integer)a->index, key, dtype_word(u->s.dtype), dtype_word(sdt));
    /* the map matters for int8 codes only (bfloat16 stores the value itself) */
    if (u->s.dtype == MO_STATE_INT8 && u->s.sign != c->d->buffers[i].lean)
        state_error(c, a, key, u->s.sign == MO_LEAN_SIGNED ? "is signed lean state, this buffer is unsigned"
                                                           : "is unsigned lean state, this buffer is signed");
    int same = u->ndim == p->ndim;
    for (int k = 0; same && k < p->ndim; k++) same = u->shape[k] == p->shape[k];
    if (!same) state_error(c, a, key, "has a shape other than the param's");
}

static int validate_param(step_ctx *c, const param_at *a, void *ud)
{
    validate_acc *acc = ud;
    lua_State *L = c->L;
    const mo_optim_desc *d = c->d;
    mo_tensor *p = mo__toarg(L, a->p), *g = mo__toarg(L, a->g);
    char s1[MO__SHAPE_BUF], s2[MO__SHAPE_BUF];
    if (g == NULL || !mo_tensor_alive(g))
        luaL_error(L, "%s: grad of param #%I: %s", c->fname, (lua_Integer)a->index,
                   g ? "tensor has been freed" : "not a tensor");
    if (!mo_tensor_same_shape(g, p))
        luaL_error(L, "%s: grad shape %s does not match param #%I shape %s", c->fname,
                   mo__shapestr(g, s1), (lua_Integer)a->index, mo__shapestr(p, s2));
    /* one kernel instance per param: the grad and every state tensor in the param's dtype
     * (checked here, before any state is made or anything written) */
    if (g->dtype != p->dtype)
        luaL_error(L, "%s: grad of param #%I is %s, the param is %s (convert one with "
                   ":double() or :float())", c->fname, (lua_Integer)a->index,
                   mo_dtype_name(g->dtype), mo_dtype_name(p->dtype));
    if (acc->check_finite && acc->all_finite) mo__check(L, mo_all_finite(g, &acc->all_finite), c->fname);
    unsigned on = *group_on(c, a->gi);
    mo_state_dtype sdt = LEAN_DTYPE(*group_lean(c, a->gi));
    if (sdt != MO_STATE_FLOAT32 && p->dtype != MO_FLOAT32)
        luaL_error(L, "%s: param #%I is %s: state_dtype '%s' needs float32 params (use "
                   "state_dtype = \"float32\" for float64 ones)", c->fname, (lua_Integer)a->index,
                   mo_dtype_name(p->dtype), sdt == MO_STATE_BFLOAT16 ? "bfloat16" : "int8");
    int st = (push_state(c, a), lua_gettop(L));
    if (!lua_isnil(L, st) && !lua_istable(L, st))
        luaL_error(L, "%s: step: the state of param #%I must be a table", c->fname, (lua_Integer)a->index);
    for (size_t i = 0; i < d->nbuffers; i++) {
        if (!(on >> i & 1u)) continue;
        const char *key = d->buffers[i].name;
        if (push_entry(c, a, st, c->k_buf + (int)i) == LUA_TNIL && absent(c, a, acc, key)) continue;
        if (sdt != MO_STATE_FLOAT32 && d->buffers[i].lean != MO_LEAN_NONE) {
            check_lean_entry(c, a, p, i, sdt);
            lua_pop(L, 1);
            continue;
        }
        mo__lean_ud *lu = mo__tolean(L, -1);
        if (lu != NULL)
            luaL_error(L, "%s: step: state of param #%I: '%s' is %s state, the group's state_dtype "
                       "is 'float32' (load_state_dict converts state between dtypes)", c->fname,
                       (lua_Integer)a->index, key, lu->s.dtype == MO_STATE_BFLOAT16 ? "bfloat16" : "int8");
        mo_tensor *t = mo__toarg(L, -1);
        if (t == NULL || !mo_tensor_alive(t)) state_error(c, a, key, t ? "is a freed tensor" : "is not a tensor");
        if (!mo_tensor_same_shape(t, p))
            luaL_error(L, "%s: step: state of param #%I: '%s' has shape %s, the param has shape %s",
                       c->fname, (lua_Integer)a->index, key, mo__shapestr(t, s1), mo__shapestr(p, s2));
        if (t->dtype != p->dtype)
            luaL_error(L, "%s: step: state of param #%I: '%s' is %s, the param is %s", c->fname,
                       (lua_Integer)a->index, key, mo_dtype_name(t->dtype), mo_dtype_name(p->dtype));
        lua_pop(L, 1);
    }
    if (d->counts_steps) {
        if (push_entry(c, a, st, c->k_step) != LUA_TNIL || !absent(c, a, acc, "step")) {
            checked_step(c, a);
            lua_pop(L, 1);
        }
    }
    for (size_t i = 0; i < d->nscalars; i++) {
        int t = push_entry(c, a, st, c->k_scal + (int)i);
        if (t == LUA_TNIL && absent(c, a, acc, d->scalars[i].name)) continue;
        if (t != LUA_TNUMBER || (d->scalars[i].input && !isfinite(lua_tonumber(L, -1))))
            state_error(c, a, d->scalars[i].name, "must be a finite number");
        lua_pop(L, 1);
    }
    return 0;
}

/* ---- phase 3: commit the new state ---- */

static void commit_pending(step_ctx *c)
{
    lua_State *L = c->L;
    lua_pushnil(L);
    while (lua_next(L, S_PENDING)) {      /* p, pend */
        lua_pushvalue(L, -2);
        if (lua_rawget(L, A_STATE) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_pushvalue(L, -2);
            lua_pushvalue(L, -2);
            lua_rawset(L, A_STATE);       /* state[p] = pend */
        } else {
            int st = lua_gettop(L);
            lua_pushnil(L);
            while (lua_next(L, st - 1)) { /* st[k] = pend[k] */
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, st);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
}

/* ---- phase 4: the kernels ---- */

static int run_param(step_ctx *c, const param_at *a, void *ud)
{
    (void)ud;
    lua_State *L = c->L;
    const mo_optim_desc *d = c->d;
    const void *cfg = group_cfg(c, a->gi, a->masked);
    unsigned on = *group_on(c, a->gi);
    mo_optim_call call;
    memset(&call, 0, sizeof call);
    call.w = mo__toarg(L, a->p);
    call.g = mo__toarg(L, a->g);
    call.cache = group_cache(c, a->gi, a->masked);
    int st = (push_state(c, a), lua_gettop(L));
    lua_pushvalue(L, a->p);
    int fresh = lua_rawget(L, S_PENDING) == LUA_TTABLE ? lua_gettop(L) : 0;
    unsigned lw = *group_lean(c, a->gi);
    call.rounding = LEAN_ROUNDING(lw);
    for (size_t i = 0; i < d->nbuffers; i++) {
        if (!(on >> i & 1u)) continue;
        rawget_key(L, st, c->k_buf + (int)i);
        /* st keeps it alive */
        if (LEAN_DTYPE(lw) != MO_STATE_FLOAT32 && d->buffers[i].lean != MO_LEAN_NONE)
            call.lean[i] = &mo__tolean(L, -1)->s;
        else
            call.buf[i] = mo__toarg(L, -1);
        lua_pop(L, 1);
        call.fresh[i] = fresh && rawget_key(L, fresh, c->k_buf + (int)i) != LUA_TNIL;
        if (fresh) lua_pop(L, 1);
    }
    if (d->counts_steps) {
        rawget_key(L, st, c->k_step);
        call.step = checked_step(c, a) + 1;
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < d->nscalars; i++) {
        rawget_key(L, st, c->k_scal + (int)i);
        call.scalar[i] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    mo__check(L, d->step(cfg, &call), c->fname);
    /* the keys exist (phase 1 made them): these writes allocate nothing */
    for (size_t i = 0; i < d->nscalars; i++) {
        lua_pushvalue(L, c->k_scal + (int)i);
        lua_pushnumber(L, call.scalar[i]);
        lua_rawset(L, st);
    }
    if (d->counts_steps) {
        lua_pushvalue(L, c->k_step);
        lua_pushinteger(L, (lua_Integer)call.step);
        lua_rawset(L, st);
    }
    return 0;
}

/* ---- optim_step ---- */

static const mo_optim_desc *check_kind(lua_State *L, int idx)
{
    const char *kind = luaL_checkstring(L, idx);
    const mo_optim_desc *d = mo_optim_find(kind);
    if (d == NULL) mo__argerror(L, idx, "optim_step", "unknown optimizer kind '%s'", kind);
    return d;
}

/* Pins the key strings (params, step, options, buffers, scalars) on the stack. */
static void push_keys(step_ctx *c)
{
    lua_State *L = c->L;
    const mo_optim_desc *d = c->d;
    luaL_checkstack(L, (int)(d->noptions + d->nbuffers + d->nscalars) + 40, "optim_step");
    c->k_params = lua_gettop(L) + 1;
    lua_pushliteral(L, "params");
    c->k_step = c->k_params + 1;
    lua_pushliteral(L, "step");
    c->k_opt = c->k_step + 1;
    for (size_t i = 0; i < d->noptions; i++) lua_pushstring(L, d->options[i].name);
    c->k_buf = c->k_opt + (int)d->noptions;
    for (size_t i = 0; i < d->nbuffers; i++) lua_pushstring(L, d->buffers[i].name);
    c->k_scal = c->k_buf + (int)d->nbuffers;
    for (size_t i = 0; i < d->nscalars; i++) lua_pushstring(L, d->scalars[i].name);
    c->k_sdt = c->k_scal + (int)d->nscalars;
    lua_pushliteral(L, "state_dtype");
    c->k_srd = c->k_sdt + 1;
    lua_pushliteral(L, "state_rounding");
    c->lean_ok = 0;
    for (size_t i = 0; i < d->nbuffers; i++)
        if (d->buffers[i].lean != MO_LEAN_NONE) c->lean_ok = 1;
}

static void setup_ctx(lua_State *L, step_ctx *c)
{
    c->L = L;
    c->d = check_kind(L, A_KIND);
    c->fname = luaL_checkstring(L, A_FNAME);  /* pinned at A_FNAME */
    luaL_checktype(L, A_GROUPS, LUA_TTABLE);
    luaL_checktype(L, A_STATE, LUA_TTABLE);
    lua_settop(L, A_GRADS);
    c->ngroups = (lua_Integer)lua_rawlen(L, A_GROUPS);
    if (c->ngroups > 1000000) luaL_error(L, "%s: too many param groups", c->fname);
    c->stride = 2 * align16(c->d->config_size) + 2 * align16(c->d->cache_size) + 16;
    c->work = lua_newuserdatauv(L, c->stride * (size_t)(c->ngroups ? c->ngroups : 1), 0);
    lua_newtable(L); /* S_PENDING */
    push_keys(c);
    c->wd_option = option_index(c->d, "weight_decay");
}

/* Validates every param; returns whether all gradients are finite (when check_finite) and
 * sets *missing when some state is absent (allowed only when missing != NULL). */
static int walk_validate(step_ctx *c, int check_finite, int *missing)
{
    validate_acc acc = {1, check_finite, missing != NULL, 0};
    each_param(c, validate_param, &acc);
    if (missing) *missing = acc.missing;
    return acc.all_finite;
}

static int f_step(lua_State *L)
{
    step_ctx c;
    setup_ctx(L, &c);
    /* options, once per group */
    for (lua_Integer gi = 1; gi <= c.ngroups; gi++) {
        if (lua_rawgeti(L, A_GROUPS, gi) != LUA_TTABLE)
            luaL_error(L, "%s: param group %I is not a table", c.fname, (lua_Integer)gi);
        read_group(&c, gi, lua_gettop(L));
        lua_pop(L, 1);
    }
    /* everything there is checked before anything is written */
    int missing = 0;
    if (!walk_validate(&c, lua_toboolean(L, A_FINITE), &missing)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (missing) {
        /* new state into S_PENDING, then into state; both allocate (so may run finalizers):
         * check everything again after */
        each_param(&c, complete_state, NULL);
        commit_pending(&c);
        walk_validate(&c, 0, NULL);
    }
    each_param(&c, run_param, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- optim_info ---- */

static int f_info(lua_State *L)
{
    const mo_optim_desc *d = check_kind(L, 1);
    lua_createtable(L, 0, 4);
    lua_createtable(L, (int)d->noptions, 0);
    for (size_t i = 0; i < d->noptions; i++) {
        lua_pushstring(L, d->options[i].name);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "options");
    lua_createtable(L, (int)d->nbuffers, 0);
    for (size_t i = 0; i < d->nbuffers; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, d->buffers[i].name);
        lua_setfield(L, -2, "name");
        if (d->buffers[i].when) {
            lua_pushstring(L, d->buffers[i].when);
            lua_setfield(L, -2, "when");
        }
        if (d->buffers[i].lean != MO_LEAN_NONE) {
            lua_pushstring(L, d->buffers[i].lean == MO_LEAN_SIGNED ? "signed" : "unsigned");
            lua_setfield(L, -2, "lean");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "buffers");
    lua_createtable(L, (int)d->nscalars, 0);
    for (size_t i = 0; i < d->nscalars; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, d->scalars[i].name);
        lua_setfield(L, -2, "name");
        lua_pushboolean(L, d->scalars[i].input);
        lua_setfield(L, -2, "input");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "scalars");
    lua_pushboolean(L, d->counts_steps);
    lua_setfield(L, -2, "counts_steps");
    return 1;
}

/* ---- helpers over lists of parameters ---- */

/* Pushes params[i].grad (user value 1 of the tensor) and returns it, or NULL when nil. */
static mo_tensor *push_param_grad(lua_State *L, int list, lua_Integer i, const char *fname,
                                  mo_tensor **param)
{
    lua_rawgeti(L, list, i);
    mo_tensor *p = mo__toarg(L, -1);
    if (p == NULL) {
        const char *got = luaL_typename(L, -1);
        luaL_error(L, "%s: param #%I is not a tensor (got %s)", fname, i, got);
    }
    if (!mo_tensor_alive(p)) luaL_error(L, "%s: param #%I: tensor has been freed", fname, i);
    lua_getiuservalue(L, -1, 1);
    lua_remove(L, -2);
    *param = p;
    if (lua_isnil(L, -1)) return NULL;
    mo_tensor *g = mo__toarg(L, -1);
    if (g == NULL) luaL_error(L, "%s: grad of param #%I is not a tensor", fname, i);
    if (!mo_tensor_alive(g)) luaL_error(L, "%s: grad of param #%I: tensor has been freed", fname, i);
    return g;
}

static int f_check(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *fname = luaL_optstring(L, 2, "step");
    int want_finite = lua_toboolean(L, 3);
    int all_finite = 1;
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    for (lua_Integer i = 1; i <= n; i++) {
        mo_tensor *p;
        mo_tensor *g = push_param_grad(L, 1, i, fname, &p);
        if (g != NULL) {
            if (!mo_tensor_same_shape(g, p)) {
                char sg[MO__SHAPE_BUF], sp[MO__SHAPE_BUF];
                return luaL_error(L, "%s: grad shape %s does not match param #%I shape %s", fname,
                                  mo__shapestr(g, sg), i, mo__shapestr(p, sp));
            }
            if (want_finite && all_finite) mo__check(L, mo_all_finite(g, &all_finite), fname);
        }
        lua_pop(L, 1);
    }
    lua_pushboolean(L, all_finite);
    return 1;
}

/*
 * The .grad tensors of the list at index 1 into a userdata array (pushed); returns it and
 * the count. The array is filled after its allocation and nothing allocates after that;
 * each grad stays reachable from its param (pinned by the list at index 1).
 */
static mo_tensor **collect_grads(lua_State *L, const char *fname, size_t *count)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    if (n > 100000000) luaL_error(L, "%s: too many params", fname);
    mo_tensor **ts = (mo_tensor **)lua_newuserdatauv(L, sizeof(mo_tensor *) * (size_t)(n ? n : 1), 0);
    int at = lua_gettop(L);
    size_t k = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        mo_tensor *p;
        mo_tensor *g = push_param_grad(L, 1, i, fname, &p);
        lua_pop(L, 1);
        if (g != NULL) ts[k++] = g;
    }
    lua_settop(L, at);
    *count = k;
    return ts;
}

/* clip_grad_norm(params, max_norm [, formula [, error_if_nonfinite]]) -> total norm;
 * formula "pytorch" (default) or "global" (mo_clip_grad_norm_ex). */
static int f_clip_grad_norm(lua_State *L)
{
    static const char fn[] = "clip_grad_norm";
    static const char *const formulas[] = {"pytorch", "global", NULL};
    lua_Number max_norm = mo__checknumber(L, 2, fn);
    if (!(max_norm >= 0)) mo__argerror(L, 2, fn, "max_norm must be >= 0, got %f", max_norm);
    mo_clip_formula formula = (mo_clip_formula)luaL_checkoption(L, 3, "pytorch", formulas);
    int strict = lua_toboolean(L, 4);
    lua_settop(L, 2);
    size_t n;
    mo_tensor **ts = collect_grads(L, fn, &n);
    double total = 0.0;
    mo_status st = mo_clip_grad_norm_ex(ts, n, max_norm, formula, strict, &total);
    if (st == MO_ERR_ARG && strict && !isfinite(total)) {
        lua_pushnumber(L, total);
        const char *v = mo__describe(L, -1);
        return luaL_error(L, "%s: the total norm of the gradients is %s (error_if_nonfinite); "
                          "nothing was scaled", fn, v);
    }
    mo__check(L, st, fn);
    lua_pushnumber(L, total);
    return 1;
}

static int f_clip_grad_value(lua_State *L)
{
    static const char fn[] = "clip_grad_value";
    lua_Number clip = mo__checknumber(L, 2, fn);
    if (!(clip >= 0)) mo__argerror(L, 2, fn, "clip value must be >= 0");
    lua_settop(L, 2);
    size_t n;
    mo_tensor **ts = collect_grads(L, fn, &n);
    for (size_t i = 0; i < n; i++) mo__check(L, mo_clip_grad_value(ts[i], clip), fn);
    return 0;
}

static int f_all_finite(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "all_finite");
    int fin = 1;
    mo__check(L, mo_all_finite(t, &fin), "all_finite");
    lua_pushboolean(L, fin);
    return 1;
}

static int f_axpy(lua_State *L)
{
    static const char fn[] = "axpy_";
    mo_tensor *y = mo__checkarg(L, 1, fn);
    lua_Number a = mo__checknumber(L, 2, fn);
    mo_tensor *x = mo__checkarg(L, 3, fn);
    if (!mo_tensor_same_shape(y, x)) return mo__shape_error(L, fn, y, x);
    mo__same_dtype(L, fn, y, x);
    mo__check(L, mo_axpy(y, a, x), fn);
    lua_settop(L, 1);
    return 1;
}

static const luaL_Reg optim_functions[] = {
    {"optim_step", f_step},
    {"optim_info", f_info},
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
    mo__open_optim_lean(L);
}
