/*
 * index.c - index ops and torch.matmul for Lua:
 *   t:index_select(dim, index)          a new tensor; index 0-d or 1-d
 *   t:gather(dim, index)                a new tensor of index's shape
 *   t:scatter_add_(dim, index, src)     in place, returns t; t:scatter_add(...) a new one
 *   mo.matmul(a, b [, options])         1-d, 2-d and batched 3-d operands (t:matmul too)
 *
 * Index tensors hold 1-based integers as floats, of either dtype whatever the data's
 * dtype (docs/design.md "Two dtypes"). The core checks every entry before it writes
 * anything; a refused entry is reported with its position and value:
 *   "bad argument #3 to 'gather' (index[2][1] = 5.0 is out of range 1..4 (dimension 2
 *    has size 4))".
 * Shape errors name the op, the argument and both shapes.
 */
#include "binding.h"

#include <string.h>

/* ======================================================================== */
/* Errors                                                                   */
/* ======================================================================== */

/* Pushes "[2][1]" for flat row-major position pos of a tensor of index's shape ("" for 0-d). */
static const char *push_position(lua_State *L, const mo_tensor *index, size_t pos)
{
    size_t sub[MO_MAX_DIMS];
    for (int d = index->ndim - 1; d >= 0; d--) {
        sub[d] = index->shape[d] ? pos % index->shape[d] : 0;
        pos = index->shape[d] ? pos / index->shape[d] : 0;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int d = 0; d < index->ndim; d++) {
        lua_pushfstring(L, "[%I]", (lua_Integer)sub[d] + 1);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* Raises the error for st: a refused index entry (argument iarg) or a core failure. */
static int index_fail(lua_State *L, mo_status st, const mo_index_error *err, int iarg,
                      const mo_tensor *index, int dim, const char *fname)
{
    if (err->bad == MO_INDEX_OK) return mo__status_error(L, st, fname);
    /* copy what the message needs: the pushes below may run the collector */
    mo_index_error e = *err;
    mo_tensor shape_only = *index; /* only ndim and shape are read */
    const char *where = push_position(L, &shape_only, e.pos);
    lua_pushnumber(L, e.value);
    const char *v = mo__describe(L, lua_gettop(L));
    if (e.bad == MO_INDEX_NOT_INTEGER)
        return mo__argerror(L, iarg, fname, "index%s = %s is not an integer", where, v);
    return mo__argerror(L, iarg, fname, "index%s = %s is out of range 1..%I (dimension %d has size %I)",
                        where, v, (lua_Integer)e.limit, dim + 1, (lua_Integer)e.limit);
}

/* Raises "fname: <what> {..} vs <what2> {..}: <why>". */
static int shapes_error(lua_State *L, const char *fname, const char *an, const mo_tensor *a,
                        const char *bn, const mo_tensor *b, const char *why)
{
    char sa[MO__SHAPE_BUF], sb[MO__SHAPE_BUF];
    return luaL_error(L, "%s: %s %s and %s %s: %s", fname, an, mo__shapestr(a, sa), bn,
                      mo__shapestr(b, sb), why);
}

/* ======================================================================== */
/* index_select, gather, scatter_add                                        */
/* ======================================================================== */

/* t:index_select(dim, index) */
static int m_index_select(lua_State *L)
{
    static const char *const fname = "index_select";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    int dim = mo__checkdim(L, 2, fname, t);
    mo_tensor *index = mo__checkarg(L, 3, fname);
    if (index->ndim > 1) {
        char s[MO__SHAPE_BUF];
        return mo__argerror(L, 3, fname, "index must be 1-d (or 0-d), got shape %s",
                            mo__shapestr(index, s));
    }
    size_t shape[MO_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[dim] = index->numel;
    mo_tensor *out = mo__newtensor_dtype(L, t->ndim, shape, t->dtype, 0, fname);
    /* t and index sit in stack slots; the core re-checks them (alive, shapes) */
    mo_index_error err;
    mo_status st = mo_index_select(out, t, dim, index, 1.0, &err);
    if (st != MO_OK) return index_fail(L, st, &err, 3, index, dim, fname);
    return 1;
}

/* index has t's ndim and no size above t's outside dim (PyTorch's rule). */
static void check_gather_shapes(lua_State *L, const char *fname, const mo_tensor *t, int dim,
                                const mo_tensor *index, const char *tname)
{
    if (index->ndim != t->ndim)
        shapes_error(L, fname, "index", index, tname, t, "index must have as many dimensions");
    for (int d = 0; d < t->ndim; d++)
        if (d != dim && index->shape[d] > t->shape[d]) {
            char why[96];
            snprintf(why, sizeof why, "index is larger in dimension %d", d + 1);
            shapes_error(L, fname, "index", index, tname, t, why);
        }
}

/* t:gather(dim, index) */
static int m_gather(lua_State *L)
{
    static const char *const fname = "gather";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    int dim = mo__checkdim(L, 2, fname, t);
    mo_tensor *index = mo__checkarg(L, 3, fname);
    check_gather_shapes(L, fname, t, dim, index, "input");
    mo_tensor *out = mo__newtensor_dtype(L, index->ndim, index->shape, t->dtype, 0, fname);
    mo_index_error err;
    mo_status st = mo_gather(out, t, dim, index, 1.0, &err);
    if (st != MO_OK) return index_fail(L, st, &err, 3, index, dim, fname);
    return 1;
}

/* Checks scatter_add's arguments (t at 1, dim at 2, index at 3, src at 4). */
static void check_scatter(lua_State *L, const char *fname, mo_tensor **t, int *dim,
                          mo_tensor **index, mo_tensor **src)
{
    *t = mo__checkarg(L, 1, fname);
    *dim = mo__checkdim(L, 2, fname, *t);
    *index = mo__checkarg(L, 3, fname);
    *src = mo__checkarg(L, 4, fname);
    mo__same_dtype(L, fname, *t, *src);
    check_gather_shapes(L, fname, *t, *dim, *index, "self");
    if ((*src)->ndim != (*index)->ndim)
        shapes_error(L, fname, "index", *index, "src", *src, "src must have as many dimensions");
    for (int d = 0; d < (*src)->ndim; d++)
        if ((*index)->shape[d] > (*src)->shape[d]) {
            char why[96];
            snprintf(why, sizeof why, "index is larger than src in dimension %d", d + 1);
            shapes_error(L, fname, "index", *index, "src", *src, why);
        }
}

/* t:scatter_add_(dim, index, src): t[...index[p]...] += src[p]; returns t. */
static int m_scatter_add_(lua_State *L)
{
    static const char *const fname = "scatter_add_";
    mo_tensor *t, *index, *src;
    int dim;
    check_scatter(L, fname, &t, &dim, &index, &src);
    mo_index_error err;
    mo_status st = mo_scatter_add(t, dim, index, src, 1.0, &err);
    if (st == MO_ERR_LAYOUT)
        return luaL_error(L, "%s: self is an expanded view (a dimension with stride 0): "
                          "several elements share one memory cell; add into a contiguous copy",
                          fname);
    if (st != MO_OK) return index_fail(L, st, &err, 3, index, dim, fname);
    lua_pushvalue(L, 1);
    return 1;
}

/* t:scatter_add(dim, index, src): the same on a contiguous copy of t. */
static int m_scatter_add(lua_State *L)
{
    static const char *const fname = "scatter_add";
    mo_tensor *t, *index, *src;
    int dim;
    check_scatter(L, fname, &t, &dim, &index, &src);
    mo_tensor *out = mo__newtensor_dtype(L, t->ndim, t->shape, t->dtype, 0, fname);
    mo_status st = mo_copy(out, mo__recheck(L, 1, fname, t->ndim, t->shape));
    if (st != MO_OK) return mo__status_error(L, st, fname);
    mo_index_error err;
    st = mo_scatter_add(out, dim, index, src, 1.0, &err);
    if (st != MO_OK) return index_fail(L, st, &err, 3, index, dim, fname);
    return 1;
}

/* ======================================================================== */
/* matmul                                                                   */
/* ======================================================================== */

/* The options of the 2-d form: {trans_a =, trans_b =, alpha =, beta =, out =}. Pushes
 * the out tensor when given (*out_idx its slot, else 0). */
static void read_matmul_options(lua_State *L, const char *fname, int *trans_a, int *trans_b,
                                lua_Number *alpha, lua_Number *beta, int *has_beta, int *out_idx)
{
    if (lua_type(L, 3) != LUA_TTABLE) mo__typeerror(L, 3, fname, "table");
    /* unknown keys are typos (tranA, trans_A ...): refuse them */
    lua_pushnil(L);
    while (lua_next(L, 3)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        int v = lua_gettop(L);
        if (k != NULL && (strcmp(k, "trans_a") == 0 || strcmp(k, "trans_b") == 0)) {
            if (!lua_isboolean(L, v))
                mo__argerror(L, 3, fname, "option %s must be a boolean, got %s", k,
                             luaL_typename(L, v));
            *(k[6] == 'a' ? trans_a : trans_b) = lua_toboolean(L, v);
        } else if (k != NULL && (strcmp(k, "alpha") == 0 || strcmp(k, "beta") == 0)) {
            if (lua_type(L, v) != LUA_TNUMBER)
                mo__argerror(L, 3, fname, "option %s must be a number, got %s", k,
                             luaL_typename(L, v));
            if (k[0] == 'a') {
                *alpha = lua_tonumber(L, v);
            } else {
                *beta = lua_tonumber(L, v);
                *has_beta = 1;
            }
        } else if (k != NULL && strcmp(k, "out") == 0) {
            if (mo__totensor(L, v) == NULL)
                mo__argerror(L, 3, fname, "option out must be a %s, got %s", MO_TENSOR_MT,
                             luaL_typename(L, v));
        } else if (k != NULL) {
            mo__argerror(L, 3, fname, "unknown option '%s'", k);
        } else {
            mo__argerror(L, 3, fname, "option keys must be strings, got %s",
                         luaL_typename(L, -2));
        }
        lua_pop(L, 1);
    }
    /* raw, as lua_next read the keys: an __index function would run Lua code here */
    lua_pushliteral(L, "out");
    *out_idx = lua_rawget(L, 3) != LUA_TNIL ? lua_gettop(L) : 0;
}

/* The 2-d form with options: c = alpha * op(a) @ op(b) + beta * c. */
static int matmul_2d(lua_State *L, mo_tensor *a, mo_tensor *b)
{
    static const char *const fname = "matmul";
    int trans_a = 0, trans_b = 0, has_beta = 0, out_idx = 0;
    lua_Number alpha = 1.0, beta = 0.0;
    if (!lua_isnoneornil(L, 3))
        read_matmul_options(L, fname, &trans_a, &trans_b, &alpha, &beta, &has_beta, &out_idx);
    size_t m = a->shape[trans_a ? 1 : 0], k = a->shape[trans_a ? 0 : 1];
    size_t kb = b->shape[trans_b ? 1 : 0], n = b->shape[trans_b ? 0 : 1];
    char sa[MO__SHAPE_BUF], sb[MO__SHAPE_BUF];
    if (k != kb)
        return luaL_error(L, "matmul: shapes %s and %s do not agree%s", mo__shapestr(a, sa),
                          mo__shapestr(b, sb),
                          trans_a ? (trans_b ? " (trans_a, trans_b)" : " (trans_a)")
                                  : (trans_b ? " (trans_b)" : ""));
    if (has_beta && out_idx == 0)
        return mo__argerror(L, 3, fname, "beta needs an out tensor to add to");
    mo_tensor *c;
    if (out_idx) {
        c = mo__checkarg(L, out_idx, fname);
        if (c->ndim != 2 || c->shape[0] != m || c->shape[1] != n) {
            size_t want[2] = {m, n};
            return luaL_error(L, "matmul: out has shape %s, expected %s", mo__shapestr(c, sa),
                              mo__shapestr_raw(2, want, sb));
        }
        if (c->dtype != a->dtype)
            return luaL_error(L, "matmul: dtype mismatch: out is %s, operands are %s",
                              mo_dtype_name(c->dtype), mo_dtype_name(a->dtype));
    } else {
        size_t shape[2] = {m, n};
        c = mo__newtensor_dtype(L, 2, shape, a->dtype, 0, fname);
        out_idx = lua_gettop(L);
        beta = 0.0;
    }
    /* BLAS must not write into memory it reads: copy inputs that share out's storage */
    mo_tensor tmp_a, tmp_b;
    mo_tensor_init(&tmp_a);
    mo_tensor_init(&tmp_b);
    const mo_tensor *ua = a, *ub = b;
    mo_status st = MO_OK;
    if (mo_tensor_same_storage(c, a)) {
        st = mo_tensor_clone(&tmp_a, a, NULL);
        ua = &tmp_a;
    }
    if (st == MO_OK && mo_tensor_same_storage(c, b)) {
        st = mo_tensor_clone(&tmp_b, b, NULL);
        ub = &tmp_b;
    }
    if (st == MO_OK) st = mo_matmul(c, ua, trans_a, ub, trans_b, alpha, beta);
    mo_tensor_release(&tmp_a);
    mo_tensor_release(&tmp_b);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    lua_pushvalue(L, out_idx);
    return 1;
}

/*
 * mo.matmul(a, b [, {trans_a =, trans_b =, alpha =, beta =, out =}]) -> out or a new
 * tensor. As torch.matmul for 1-d, 2-d and 3-d operands; the options only with two 2-d
 * operands.
 */
static int f_matmul(lua_State *L)
{
    static const char *const fname = "matmul";
    mo_tensor *a = mo__checkarg(L, 1, fname);
    mo_tensor *b = mo__checkarg(L, 2, fname);
    for (int i = 1; i <= 2; i++) {
        const mo_tensor *x = i == 1 ? a : b;
        if (x->ndim < 1 || x->ndim > 3)
            return mo__argerror(L, i, fname, "1-d, 2-d or 3-d tensor expected, got %d-d",
                                x->ndim);
    }
    mo__same_dtype(L, fname, a, b);
    if (a->ndim == 2 && b->ndim == 2) return matmul_2d(L, a, b);
    char sa[MO__SHAPE_BUF], sb[MO__SHAPE_BUF];
    if (!lua_isnoneornil(L, 3))
        return mo__argerror(L, 3, fname, "options need two 2-d operands, got %s and %s",
                            mo__shapestr(a, sa), mo__shapestr(b, sb));
    int nd;
    size_t shape[3];
    if (mo_matmul_shape(a, b, &nd, shape) != MO_OK)
        return luaL_error(L, "matmul: shapes %s and %s do not agree (%s)", mo__shapestr(a, sa),
                          mo__shapestr(b, sb),
                          a->shape[a->ndim - 1] != b->shape[b->ndim == 1 ? 0 : b->ndim - 2]
                              ? "inner sizes differ"
                              : "batch sizes differ and neither is 1");
    mo_tensor *c = mo__newtensor_dtype(L, nd, shape, a->dtype, 0, fname);
    /* a and b are pinned in slots 1 and 2; the core re-checks them */
    mo_status st = mo_matmul_nd(c, a, b);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    return 1;
}

static const luaL_Reg index_methods[] = {
    {"index_select", m_index_select},
    {"gather", m_gather},
    {"scatter_add_", m_scatter_add_},
    {"scatter_add", m_scatter_add},
    {"matmul", f_matmul},
    {NULL, NULL},
};

static const luaL_Reg index_functions[] = {
    {"matmul", f_matmul},
    {NULL, NULL},
};

void mo__open_index(lua_State *L)
{
    mo__add_methods(L, index_methods);
    mo__setfuncs(L, index_functions);
}
