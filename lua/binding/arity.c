/*
 * arity.c - how many arguments each public tensor function takes, so that an extra one is
 * an error instead of being ignored (docs/api.md "Conventions": extra arguments are
 * errors where they would otherwise be silently ignored).
 *
 * Why: torch7 spells `t + 2 * u` as `t:add(2, u)`; moonopt's add takes one operand, so
 * that call used to return `t + 2` and drop `u` without a word. The registration
 * (mo__ag_setfuncs, autograd.c) looks each name up here once and the function's closure
 * checks the count on every call (one compare).
 *
 * Counts are Lua's: a method's self is argument 1 (`t:add(u)` passes 2). Trailing nils are
 * not extra (`t:sum(nil, nil, nil)` is `t:sum()`). Functions taking any number of sizes
 * or dims (zeros, view, permute, get, ...) and the kernels the Lua modules call
 * (conv2d_forward, optim_step, ckpt_read, ...) are not listed: they are not checked here.
 */
#include "binding.h"

#include <string.h>

typedef struct arity {
    const char *name;
    int max;
} arity;

/* Grouped as docs/api.md lists them; each entry the most arguments, self included. */
static const arity table[] = {
    /* creation (zeros, ones, empty, rand, randn: any number of sizes) */
    {"tensor", 3}, {"full", 3}, {"arange", 4}, {"linspace", 4}, {"eye", 3}, {"randint", 4},
    {"randperm", 1}, {"zeros_like", 2}, {"ones_like", 2}, {"rand_like", 2},
    {"randn_like", 2},
    /* facts, conversion, copies */
    {"shape", 1}, {"size", 2}, {"stride", 2}, {"numel", 1}, {"dim", 1}, {"is_contiguous", 1},
    {"same_storage", 2}, {"item", 1}, {"totable", 1}, {"clone", 1}, {"contiguous", 1},
    {"double", 1}, {"float", 1}, {"to", 2}, {"copy", 2}, {"copy_", 2}, {"fill", 2},
    {"fill_", 2}, {"zero_", 1}, {"uniform_", 3}, {"normal_", 3},
    /* elementwise: unary */
    {"neg", 1}, {"neg_", 1}, {"sqrt", 1}, {"sqrt_", 1}, {"exp", 1}, {"exp_", 1},
    {"log", 1}, {"log_", 1}, {"tanh", 1}, {"tanh_", 1}, {"sigmoid", 1}, {"sigmoid_", 1},
    {"relu", 1}, {"relu_", 1}, {"abs", 1}, {"abs_", 1}, {"sign", 1}, {"sign_", 1},
    {"log1p", 1}, {"log1p_", 1}, {"expm1", 1}, {"expm1_", 1}, {"rsqrt", 1}, {"rsqrt_", 1},
    {"sin", 1}, {"sin_", 1}, {"cos", 1}, {"cos_", 1}, {"tan", 1}, {"tan_", 1},
    {"floor", 1}, {"floor_", 1}, {"ceil", 1}, {"ceil_", 1}, {"round", 1}, {"round_", 1},
    {"erf", 1}, {"erf_", 1},
    /* elementwise: with operands */
    {"add", 2}, {"add_", 2}, {"sub", 2}, {"sub_", 2}, {"mul", 2}, {"mul_", 2},
    {"div", 2}, {"div_", 2}, {"pow", 2}, {"pow_", 2}, {"eq", 2}, {"eq_", 2}, {"ne", 2},
    {"ne_", 2}, {"lt", 2}, {"lt_", 2}, {"le", 2}, {"le_", 2}, {"gt", 2}, {"gt_", 2},
    {"ge", 2}, {"ge_", 2}, {"maximum", 2}, {"minimum", 2}, {"dot", 2}, {"clamp", 3},
    {"clamp_", 3}, {"masked_fill", 3}, {"masked_fill_", 3}, {"where", 3}, {"addcmul", 4},
    {"addcmul_", 4}, {"addcdiv", 4}, {"addcdiv_", 4}, {"add_row_bias", 2},
    {"add_row_bias_", 2}, {"matmul", 3},
    /* reductions and scans */
    {"sum", 3}, {"mean", 3}, {"prod", 3}, {"any", 3}, {"all", 3}, {"max", 3}, {"min", 3},
    {"argmax", 3}, {"argmin", 3}, {"logsumexp", 3}, {"std", 4}, {"var", 4}, {"norm", 4},
    {"softmax", 2}, {"log_softmax", 2}, {"cumsum", 2}, {"sort", 3}, {"topk", 5},
    /* shape (view, reshape, expand, permute: any number of dims) and indexing */
    {"t", 1}, {"transpose", 3}, {"squeeze", 2}, {"unsqueeze", 2}, {"flatten", 3},
    {"narrow", 4}, {"select", 3}, {"chunk", 3}, {"split", 3}, {"cat", 2}, {"stack", 2},
    {"index_select", 3}, {"gather", 3}, {"scatter_add", 4}, {"scatter_add_", 4},
};

int mo__max_args(const char *name)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].name, name) == 0) return table[i].max;
    return -1;
}

int mo__check_arity(lua_State *L, int max, const char *fname)
{
    const int top = lua_gettop(L);
    int extra = max + 1; /* the first argument past max that is not nil, as create.c names it */
    while (extra <= top && lua_isnil(L, extra)) extra++;
    if (extra > top) return 0;
    const char *what = luaL_getmetafield(L, extra, "__name") == LUA_TSTRING
                           ? lua_tostring(L, -1)
                       : lua_type(L, extra) == LUA_TNUMBER
                           ? lua_pushfstring(L, "number %s", mo__describe(L, extra))
                           : luaL_typename(L, extra);
    /* torch7 spells t + v * u as t:add(v, u) (and t - v * u as t:sub(v, u)) */
    const int torch7 = strcmp(fname, "add") == 0 || strcmp(fname, "add_") == 0 ||
                       strcmp(fname, "sub") == 0 || strcmp(fname, "sub_") == 0;
    if (torch7)
        return mo__argerror(L, extra, fname, "unexpected argument (%s); torch7's t:%s(v, u) "
                            "is t:%s(u * v) here", what, fname, fname);
    return mo__argerror(L, extra, fname, "unexpected argument (%s)", what);
}
