/*
 * reduce.c - the reduce family for Lua (core/reduce.c): sum, mean, prod, std,
 * var, max, min, argmax, argmin, norm, logsumexp, softmax, log_softmax, cumsum,
 * sort, topk, any, all as tensor methods.
 *
 * Registered after math.c, so these methods replace math.c's first sum, mean,
 * max, min, argmax and norm (which returned Lua numbers). Conventions:
 *   - dims are 1-based; negative dims count from the end (-1 the last); a 0-d
 *     tensor takes dim 1 or -1, as PyTorch takes 0 or -1;
 *   - without a dim a reduction covers every element and returns a 0-d tensor
 *     (t:item() gives the number), except any() and all(), which return Lua
 *     booleans (there is no bool dtype); with a dim, any/all give 0/1 masks;
 *   - results have the input's dtype, indices included (exact 1-based integers;
 *     float32 refuses index ranges past 2^24, float64 holds them exactly);
 *   - keepdim keeps the reduced dim with size 1;
 *   - sum, mean, std, var, logsumexp and norm also take a list of dims ({1, 3}): the
 *     listed dims are permuted last and flattened into one lane (reduce_dims).
 * Every argument is checked before the first allocation; the input is checked
 * again after the result userdata exist (a finalizer may have freed it).
 */
#include "binding.h"

#include <math.h>

/* ---- arguments ---- */

/* A dim argument (1-based, or negative from the end) of t; returns it 0-based. A 0-d
 * tensor has one pseudo-dim (1 or -1). */
static int checkdim(lua_State *L, int idx, const char *fname, const mo_tensor *t)
{
    lua_Integer d = mo__checkinteger(L, idx, fname, "dimension");
    const lua_Integer n = t->ndim > 0 ? t->ndim : 1;
    if (d < 0) d += n + 1;
    if (d < 1 || d > n) {
        char sb[MO__SHAPE_BUF];
        mo__argerror(L, idx, fname, "dimension %s out of range for a %d-d tensor of shape %s (expected 1..%I or -%I..-1)",
                     mo__describe(L, idx), t->ndim, mo__shapestr(t, sb), n, n);
    }
    return (int)(d - 1);
}

/* An optional boolean (nil or absent: def). */
static int optbool(lua_State *L, int idx, const char *fname, const char *what, int def)
{
    if (lua_isnoneornil(L, idx)) return def;
    if (lua_type(L, idx) != LUA_TBOOLEAN)
        mo__argerror(L, idx, fname, "%s must be a boolean, got %s", what, mo__describe(L, idx));
    return lua_toboolean(L, idx);
}

/* Refuses to take max/min/argmax/argmin over no elements. */
static void need_elements(lua_State *L, const char *fname, const mo_tensor *t, int dim)
{
    char sb[MO__SHAPE_BUF];
    if (dim == MO_DIM_ALL && t->numel == 0)
        luaL_error(L, "%s: the tensor of shape %s is empty", fname, mo__shapestr(t, sb));
    if (dim != MO_DIM_ALL && t->ndim > 0 && t->shape[dim] == 0)
        luaL_error(L, "%s: dimension %d of shape %s has size 0", fname, dim + 1, mo__shapestr(t, sb));
}

/* Refuses float32 index ranges float32 cannot hold exactly (positions past 2^24). */
static void need_exact_indices(lua_State *L, const char *fname, const mo_tensor *t, int dim)
{
    const size_t n = dim == MO_DIM_ALL ? t->numel : (t->ndim > 0 ? t->shape[dim] : 1);
    if (t->dtype == MO_FLOAT32 && n > ((size_t)1 << 24))
        luaL_error(L, "%s: float32 cannot hold indices up to %I exactly (use t:double())", fname,
                   (lua_Integer)n);
}

static void account(lua_State *L, const mo_tensor *r)
{
    mo__gc_account(L, r->numel * (mo_dtype_size(r->dtype) / sizeof(float)));
}

/* The input at 1 again after allocations, with the shape it had when checked. */
static const mo_tensor *recheck(lua_State *L, const char *fname, int ndim, const size_t *shape)
{
    return mo__recheck(L, 1, fname, ndim, shape);
}

/* Pushes op over dim (or MO_DIM_ALL) of the tensor at 1; with_idx: also the indices. */
static int push_reduce(lua_State *L, const char *fname, int dim, mo_reduce_op op,
                       const mo_reduce_args *ra, int with_idx)
{
    const mo_tensor *t = mo__checkarg(L, 1, fname);
    const int ndim = t->ndim;
    size_t shape[MO_MAX_DIMS];
    for (int d = 0; d < ndim; d++) shape[d] = t->shape[d];
    mo_tensor *r = mo_lua_newtensor(L);
    mo_tensor *ri = with_idx ? mo_lua_newtensor(L) : NULL;
    t = recheck(L, fname, ndim, shape);
    mo__check(L, mo_reduce(r, ri, t, dim, op, ra, NULL), fname);
    account(L, r);
    if (ri) account(L, ri);
    return with_idx ? 2 : 1;
}

/* ---- several dims at once: sum, mean, std, var, logsumexp ({d1, d2, ...}) ---- */

/* The dims listed in the table at idx (1-based or negative, distinct) as a bit set of
 * 0-based dims of t; an empty list means every dim (as PyTorch's dim=[]). */
static unsigned checkdims(lua_State *L, int idx, const char *fname, const mo_tensor *t)
{
    const lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    const int nd = t->ndim > 0 ? t->ndim : 1;
    if (n == 0) return (1u << nd) - 1u;
    if (n > nd)
        mo__argerror(L, idx, fname, "%I dimensions listed for a %d-d tensor", n, t->ndim);
    unsigned set = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        int ok = 0;
        lua_Integer d = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (ok && d < 0) d += nd + 1;
        if (!ok || d < 1 || d > nd) {
            char sb[MO__SHAPE_BUF];
            lua_rawgeti(L, idx, i);
            mo__argerror(L, idx, fname, "dims[%I] = %s is not a dimension of a %d-d tensor of "
                         "shape %s (expected 1..%d or -%d..-1)", i, mo__describe(L, -1),
                         t->ndim, mo__shapestr(t, sb), nd, nd);
        }
        if (set & (1u << (d - 1)))
            mo__argerror(L, idx, fname, "dimension %I appears twice in the list", d);
        set |= 1u << (d - 1);
    }
    return set;
}

/*
 * op over the dims in `set` of t (a C handle, checked): the reduced dims are permuted to
 * the end and flattened into one (a view when the strides allow, else one contiguous
 * copy), then reduced as one dim into `out` (empty), reshaped to keep them as 1 under
 * keepdim. a: the allocator of the result.
 */
static mo_status reduce_dims(mo_tensor *out, const mo_tensor *t, unsigned set, mo_reduce_op op,
                             const mo_reduce_args *ra, const mo_allocator *a)
{
    const int nd = t->ndim;
    int perm[MO_MAX_DIMS], nk = 0;
    size_t flat[MO_MAX_DIMS], keep[MO_MAX_DIMS], lane = 1;
    for (int d = 0; d < nd; d++)
        if (!(set & (1u << d))) {
            perm[nk] = d;
            flat[nk++] = t->shape[d];
        }
    for (int d = 0, j = nk; d < nd; d++)
        if (set & (1u << d)) {
            perm[j++] = d;
            lane *= t->shape[d]; /* a factor of numel: no overflow */
        }
    flat[nk] = lane;
    for (int d = 0; d < nd; d++) keep[d] = (set & (1u << d)) ? 1 : t->shape[d];
    mo_tensor pv, fv, copy, r;
    mo_tensor_init(&pv);
    mo_tensor_init(&fv);
    mo_tensor_init(&copy);
    mo_tensor_init(&r);
    mo_status st = mo_tensor_permute(&pv, t, nd, perm);
    if (st == MO_OK && mo_tensor_view_any(&fv, &pv, nk + 1, flat) != MO_OK) {
        st = mo_tensor_clone(&copy, &pv, NULL);
        if (st == MO_OK) st = mo_tensor_view(&fv, &copy, nk + 1, flat);
    }
    const mo_reduce_args one = {0, ra->p, ra->correction, ra->index_base};
    if (st == MO_OK) st = mo_reduce(ra->keepdim ? &r : out, NULL, &fv, nk, op, &one, a);
    if (st == MO_OK && ra->keepdim) st = mo_tensor_view(out, &r, nd, keep);
    mo_tensor_release(&pv);
    mo_tensor_release(&fv);
    mo_tensor_release(&copy);
    mo_tensor_release(&r);
    return st;
}

/* Pushes op over the dims listed in the table at dims_idx of the tensor at 1. */
static int push_reduce_dims(lua_State *L, const char *fname, int dims_idx, mo_reduce_op op,
                            const mo_reduce_args *ra)
{
    const mo_tensor *t = mo__checkarg(L, 1, fname);
    const unsigned set = checkdims(L, dims_idx, fname, t);
    const int ndim = t->ndim;
    if (ndim == 0) return push_reduce(L, fname, MO_DIM_ALL, op, ra, 0); /* one pseudo-dim */
    size_t shape[MO_MAX_DIMS];
    for (int d = 0; d < ndim; d++) shape[d] = t->shape[d];
    const size_t bytes = t->numel * mo_dtype_size(t->dtype); /* the result's, at most */
    mo_tensor *r = mo_lua_newtensor(L);
    const mo_allocator *a = mo__allocator(L, bytes);
    t = recheck(L, fname, ndim, shape);
    mo__check(L, reduce_dims(r, t, set, op, ra, a), fname);
    account(L, r);
    return 1;
}

/* ---- sum, mean, prod: ([dim [, keepdim]]) ---- */

static int simple(lua_State *L, mo_reduce_op op, const char *fname)
{
    const mo_tensor *t = mo__checkarg(L, 1, fname);
    const mo_reduce_args ra = {optbool(L, 3, fname, "keepdim", 0), 2.0, 1.0, 1};
    if (lua_type(L, 2) == LUA_TTABLE && op != MO_RED_PROD) /* PyTorch's prod takes one dim */
        return push_reduce_dims(L, fname, 2, op, &ra);
    const int dim = lua_isnoneornil(L, 2) ? MO_DIM_ALL : checkdim(L, 2, fname, t);
    return push_reduce(L, fname, dim, op, &ra, 0);
}

static int m_sum(lua_State *L) { return simple(L, MO_RED_SUM, "sum"); }
static int m_mean(lua_State *L) { return simple(L, MO_RED_MEAN, "mean"); }
static int m_prod(lua_State *L) { return simple(L, MO_RED_PROD, "prod"); }

/* ---- std, var: ([dim [, unbiased = true [, keepdim]]]) or (unbiased) ---- */

static int spread(lua_State *L, mo_reduce_op op, const char *fname)
{
    const mo_tensor *t = mo__checkarg(L, 1, fname);
    int dim = MO_DIM_ALL, ub_idx = 3;
    if (lua_type(L, 2) == LUA_TBOOLEAN)
        ub_idx = 2; /* std(false): every element, biased */
    else if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TTABLE)
        dim = checkdim(L, 2, fname, t);
    const int unbiased = optbool(L, ub_idx, fname, "unbiased", 1);
    const mo_reduce_args ra = {optbool(L, ub_idx + 1, fname, "keepdim", 0), 2.0, unbiased ? 1.0 : 0.0, 1};
    if (lua_type(L, 2) == LUA_TTABLE) return push_reduce_dims(L, fname, 2, op, &ra);
    return push_reduce(L, fname, dim, op, &ra, 0);
}

static int m_std(lua_State *L) { return spread(L, MO_RED_STD, "std"); }
static int m_var(lua_State *L) { return spread(L, MO_RED_VAR, "var"); }

/* ---- max, min: () -> 0-d; (dim [, keepdim]) -> values, indices ---- */

static int extreme(lua_State *L, mo_reduce_op op, const char *fname)
{
    const mo_tensor *t = mo__checkarg(L, 1, fname);
    if (mo__totensor(L, 2))
        return mo__argerror(L, 2, fname, "dimension must be an integer, got a tensor (use mo.%s for elementwise %s)",
                            op == MO_RED_MAX ? "maximum" : "minimum", fname);
    const int dim = lua_isnoneornil(L, 2) ? MO_DIM_ALL : checkdim(L, 2, fname, t);
    const mo_reduce_args ra = {optbool(L, 3, fname, "keepdim", 0), 2.0, 1.0, 1};
    need_elements(L, fname, t, dim);
    if (dim == MO_DIM_ALL) return push_reduce(L, fname, dim, op, &ra, 0);
    need_exact_indices(L, fname, t, dim);
    return push_reduce(L, fname, dim, op, &ra, 1);
}

static int m_max(lua_State *L) { return extreme(L, MO_RED_MAX, "max"); }
static int m_min(lua_State *L) { return extreme(L, MO_RED_MIN, "min"); }

/* argmax/argmin([dim [, keepdim]]): without dim, the 1-based flat (row-major) position. */
static int arg_extreme(lua_State *L, mo_reduce_op op, const char *fname)
{
    const mo_tensor *t = mo__checkarg(L, 1, fname);
    const int dim = lua_isnoneornil(L, 2) ? MO_DIM_ALL : checkdim(L, 2, fname, t);
    const mo_reduce_args ra = {optbool(L, 3, fname, "keepdim", 0), 2.0, 1.0, 1};
    need_elements(L, fname, t, dim);
    need_exact_indices(L, fname, t, dim);
    return push_reduce(L, fname, dim, op, &ra, 0);
}

static int m_argmax(lua_State *L) { return arg_extreme(L, MO_RED_ARGMAX, "argmax"); }
static int m_argmin(lua_State *L) { return arg_extreme(L, MO_RED_ARGMIN, "argmin"); }

/* ---- norm([p = 2 [, dim [, keepdim]]]) ---- */

static int m_norm(lua_State *L)
{
    const mo_tensor *t = mo__checkarg(L, 1, "norm");
    const lua_Number p = mo__optnumber(L, 2, "norm", 2.0);
    if (!(p > 0))
        return mo__argerror(L, 2, "norm", "p must be a positive number or math.huge, got %s",
                            mo__describe(L, 2));
    const mo_reduce_args ra = {optbool(L, 4, "norm", "keepdim", 0), (double)p, 1.0, 1};
    if (lua_type(L, 3) == LUA_TTABLE) return push_reduce_dims(L, "norm", 3, MO_RED_NORM, &ra);
    const int dim = lua_isnoneornil(L, 3) ? MO_DIM_ALL : checkdim(L, 3, "norm", t);
    return push_reduce(L, "norm", dim, MO_RED_NORM, &ra, 0);
}

/* ---- logsumexp(dim [, keepdim]) ---- */

static int m_logsumexp(lua_State *L)
{
    const mo_tensor *t = mo__checkarg(L, 1, "logsumexp");
    const mo_reduce_args ra = {optbool(L, 3, "logsumexp", "keepdim", 0), 2.0, 1.0, 1};
    if (lua_type(L, 2) == LUA_TTABLE)
        return push_reduce_dims(L, "logsumexp", 2, MO_RED_LOGSUMEXP, &ra);
    const int dim = checkdim(L, 2, "logsumexp", t);
    return push_reduce(L, "logsumexp", dim, MO_RED_LOGSUMEXP, &ra, 0);
}

/* ---- any, all: () -> boolean; (dim [, keepdim]) -> 0/1 mask ---- */

static int logical(lua_State *L, mo_reduce_op op, const char *fname)
{
    const mo_tensor *t = mo__checkarg(L, 1, fname);
    if (lua_isnoneornil(L, 2)) {
        /* a 0-d result read right away: no Lua allocation in between */
        const mo_reduce_args ra = {0, 2.0, 1.0, 1};
        mo_tensor r;
        mo_tensor_init(&r);
        mo_status st = mo_reduce(&r, NULL, t, MO_DIM_ALL, op, &ra, NULL);
        double v = 0.0;
        if (st == MO_OK)
            v = r.dtype == MO_FLOAT64 ? *(const double *)mo_tensor_ptr(&r)
                                      : (double)*(const float *)mo_tensor_ptr(&r);
        mo_tensor_release(&r);
        mo__check(L, st, fname);
        lua_pushboolean(L, v != 0.0);
        return 1;
    }
    const int dim = checkdim(L, 2, fname, t);
    const mo_reduce_args ra = {optbool(L, 3, fname, "keepdim", 0), 2.0, 1.0, 1};
    return push_reduce(L, fname, dim, op, &ra, 0);
}

static int m_any(lua_State *L) { return logical(L, MO_RED_ANY, "any"); }
static int m_all(lua_State *L) { return logical(L, MO_RED_ALL, "all"); }

/* ---- softmax, log_softmax, cumsum: (dim) -> a tensor of t's shape ---- */

static int scan(lua_State *L, mo_scan_op op, const char *fname)
{
    const mo_tensor *t = mo__checkarg(L, 1, fname);
    const int dim = checkdim(L, 2, fname, t);
    const int ndim = t->ndim;
    size_t shape[MO_MAX_DIMS];
    for (int d = 0; d < ndim; d++) shape[d] = t->shape[d];
    mo_tensor *r = mo_lua_newtensor(L);
    t = recheck(L, fname, ndim, shape);
    mo__check(L, mo_scan(r, t, dim, op, NULL), fname);
    account(L, r);
    return 1;
}

static int m_softmax(lua_State *L) { return scan(L, MO_SCAN_SOFTMAX, "softmax"); }
static int m_log_softmax(lua_State *L) { return scan(L, MO_SCAN_LOG_SOFTMAX, "log_softmax"); }
static int m_cumsum(lua_State *L) { return scan(L, MO_SCAN_CUMSUM, "cumsum"); }

/* ---- sort([dim = -1 [, descending]]) or (descending); topk(k [, dim = -1 [, largest [, sorted]]]) ---- */

static int push_sort(lua_State *L, const char *fname, int dim, size_t k, int desc)
{
    const mo_tensor *t = mo__checkarg(L, 1, fname);
    need_exact_indices(L, fname, t, dim);
    const int ndim = t->ndim;
    size_t shape[MO_MAX_DIMS];
    for (int d = 0; d < ndim; d++) shape[d] = t->shape[d];
    mo_tensor *v = mo_lua_newtensor(L);
    mo_tensor *ix = mo_lua_newtensor(L);
    t = recheck(L, fname, ndim, shape);
    mo__check(L, mo_sort(v, ix, t, dim, k, desc, 1, NULL), fname);
    account(L, v);
    account(L, ix);
    return 2;
}

static int m_sort(lua_State *L)
{
    const mo_tensor *t = mo__checkarg(L, 1, "sort");
    int desc_idx = 3, dim;
    if (lua_type(L, 2) == LUA_TBOOLEAN) {
        desc_idx = 2; /* sort(true): the last dim, descending */
        dim = t->ndim > 0 ? t->ndim - 1 : 0;
    } else {
        dim = lua_isnoneornil(L, 2) ? (t->ndim > 0 ? t->ndim - 1 : 0) : checkdim(L, 2, "sort", t);
    }
    const int desc = optbool(L, desc_idx, "sort", "descending", 0);
    return push_sort(L, "sort", dim, t->ndim > 0 ? t->shape[dim] : 1, desc);
}

static int m_topk(lua_State *L)
{
    const mo_tensor *t = mo__checkarg(L, 1, "topk");
    const lua_Integer k = mo__checkinteger(L, 2, "topk", "k");
    const int dim = lua_isnoneornil(L, 3) ? (t->ndim > 0 ? t->ndim - 1 : 0) : checkdim(L, 3, "topk", t);
    const int largest = optbool(L, 4, "topk", "largest", 1);
    (void)optbool(L, 5, "topk", "sorted", 1); /* the values always come sorted */
    const size_t K = t->ndim > 0 ? t->shape[dim] : 1;
    if (k < 0 || (lua_Unsigned)k > (lua_Unsigned)K) {
        char sb[MO__SHAPE_BUF];
        return mo__argerror(L, 2, "topk", "k %I out of range for dimension %d of size %I (shape %s)",
                            k, dim + 1, (lua_Integer)K, mo__shapestr(t, sb));
    }
    return push_sort(L, "topk", dim, (size_t)k, largest);
}

static const luaL_Reg reduce_methods[] = {
    {"sum", m_sum},
    {"mean", m_mean},
    {"prod", m_prod},
    {"std", m_std},
    {"var", m_var},
    {"max", m_max},
    {"min", m_min},
    {"argmax", m_argmax},
    {"argmin", m_argmin},
    {"norm", m_norm},
    {"logsumexp", m_logsumexp},
    {"softmax", m_softmax},
    {"log_softmax", m_log_softmax},
    {"cumsum", m_cumsum},
    {"sort", m_sort},
    {"topk", m_topk},
    {"any", m_any},
    {"all", m_all},
    {NULL, NULL},
};

void mo__open_reduce(lua_State *L) { mo__add_methods(L, reduce_methods); }
