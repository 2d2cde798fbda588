/*
 * shape.c - the shape family of the tensor language in Lua: permute, squeeze,
 * unsqueeze, flatten, expand, view/reshape, transpose/t, contiguous, select,
 * chunk, split, mo.cat, mo.stack, and t[i] / t[{...}] reading and assignment
 * (routed here from __index / __newindex in tensor.c). The stride logic is in
 * core/shape.c; this file reads arguments, names errors and makes userdata.
 *
 * Dimensions and indices are 1-based; -1 is the last (-2 the one before ...),
 * as Lua's string.sub counts, so t[-1] is the last row and t:sum(-1)-style
 * dims work as in PyTorch. 0 is always an error.
 *
 * Every view is a new userdata made BEFORE the core call that fills it, with
 * the source still pinned in its stack slot: a finalizer run by that
 * allocation may free or re-point the source, and the core call re-checks it
 * (an error "fname: tensor has been freed", never a stale pointer). Copies
 * (contiguous, reshape of a layout a view cannot express, cat, stack) are made
 * through mo__newlike and filled through mo_copy, never element by element.
 */
#include "binding.h"

#include <stdio.h>
#include <string.h>

/* The one place this file makes a new tensor: contiguous, src's element type
 * (src is the argument that decides the dtype), uninitialised. */
static mo_tensor *mo__newlike(lua_State *L, const mo_tensor *src, int ndim, const size_t *shape,
                              const char *fname)
{
    return mo__newtensor_dtype(L, ndim, shape, src->dtype, 0, fname);
}

/* Pushes an empty tensor userdata that will be a view of the tensor at src
 * (owner value copied: the view keeps a host's memory alive too). */
static mo_tensor *push_view(lua_State *L, int src)
{
    src = lua_absindex(L, src);
    mo_tensor *v = mo_lua_newtensor(L);
    mo__copy_owner(L, src, -1);
    return v;
}

/* An optional dim at arg (default `def`, 1-based). */
static int opt_dim(lua_State *L, int arg, const char *fname, const mo_tensor *t, int n, int def)
{
    if (lua_isnoneornil(L, arg)) return def - 1;
    return mo__checkdim_n(L, arg, fname, t, n);
}

/* A 1-based index into a dimension of `size` (-1: the last); returns it 0-based. */
static size_t wrap_index(lua_State *L, lua_Integer i, int arg, const char *fname,
                         const mo_tensor *t, int dim)
{
    lua_Integer size = (lua_Integer)t->shape[dim];
    lua_Integer w = i < 0 ? i + size + 1 : i;
    if (w < 1 || w > size) {
        char s[MO__SHAPE_BUF];
        mo__argerror(L, arg, fname, "index %I out of range for dimension %d of size %I (shape %s)",
                     i, dim + 1, size, mo__shapestr(t, s));
    }
    return (size_t)(w - 1);
}

/* ======================================================================== */
/* Views                                                                    */
/* ======================================================================== */

/* Reads integers from the table at `first` or from first..last; returns how many. */
static int read_ints(lua_State *L, int first, int last, const char *fname, const char *what,
                     lua_Integer *v)
{
    int fromtable = (first == last && lua_type(L, first) == LUA_TTABLE);
    lua_Integer n = fromtable ? (lua_Integer)lua_rawlen(L, first) : (lua_Integer)last - first + 1;
    if (n < 0) n = 0;
    if (n > MO_MAX_DIMS)
        luaL_error(L, "%s: too many %s (%I, at most %d)", fname, what, n, MO_MAX_DIMS);
    for (int i = 0; i < (int)n; i++) {
        int idx = first + i;
        if (fromtable) {
            lua_rawgeti(L, first, i + 1);
            idx = lua_gettop(L);
        }
        int isint = 0;
        if (lua_type(L, idx) == LUA_TNUMBER) v[i] = lua_tointegerx(L, idx, &isint);
        if (!isint)
            luaL_error(L, "%s: %s #%d must be an integer, got %s", fname, what, i + 1,
                       mo__describe(L, idx));
        if (fromtable) lua_pop(L, 1);
    }
    return (int)n;
}

/* "{1, 1}" for n integers. */
static const char *ints_str(int n, const lua_Integer *v, char *buf)
{
    size_t used = 0;
    buf[used++] = '{';
    for (int i = 0; i < n; i++) {
        int k = snprintf(buf + used, MO__SHAPE_BUF - used - 2, i ? ", %lld" : "%lld", (long long)v[i]);
        if (k < 0 || (size_t)k >= MO__SHAPE_BUF - used - 2) break;
        used += (size_t)k;
    }
    buf[used++] = '}';
    buf[used] = '\0';
    return buf;
}

/* permute(d1, d2, ...) / permute{d1, d2, ...}: dimension k of the view is dimension dk. */
static int m_permute(lua_State *L)
{
    static const char fname[] = "permute";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    lua_Integer given[MO_MAX_DIMS];
    int n = read_ints(L, 2, lua_gettop(L), fname, "dims", given);
    char sd[MO__SHAPE_BUF], ss[MO__SHAPE_BUF];
    if (n != t->ndim)
        return luaL_error(L, "%s: dims %s name %d dimensions for a %d-d tensor (shape %s)", fname,
                          ints_str(n, given, sd), n, t->ndim, mo__shapestr(t, ss));
    int dims[MO_MAX_DIMS], seen[MO_MAX_DIMS] = {0};
    for (int k = 0; k < n; k++) {
        lua_Integer w = given[k] < 0 ? given[k] + n + 1 : given[k];
        if (w < 1 || w > n)
            return luaL_error(L, "%s: dims %s: dimension %I out of range for shape %s", fname,
                              ints_str(n, given, sd), given[k], mo__shapestr(t, ss));
        dims[k] = (int)w - 1;
        if (seen[dims[k]]++)
            return luaL_error(L, "%s: dims %s repeat dimension %I (shape %s)", fname,
                              ints_str(n, given, sd), w, mo__shapestr(t, ss));
    }
    mo_tensor *v = push_view(L, 1);
    mo__check(L, mo_tensor_permute(v, mo__checkarg(L, 1, fname), n, dims), fname);
    return 1;
}

/* squeeze([dim]): without size-1 dimensions (only dim, when given). */
static int m_squeeze(lua_State *L)
{
    static const char fname[] = "squeeze";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    /* a 0-d tensor accepts dim 1 / -1, as PyTorch's scalar wrapping does */
    int d = lua_isnoneornil(L, 2) ? -1 : mo__checkdim_n(L, 2, fname, t, t->ndim > 0 ? t->ndim : 1);
    mo_tensor *v = push_view(L, 1);
    mo__check(L, mo_tensor_squeeze(v, mo__checkarg(L, 1, fname), d), fname);
    return 1;
}

/* unsqueeze(dim): a size-1 dimension inserted so that it becomes dimension dim (-1: last). */
static int m_unsqueeze(lua_State *L)
{
    static const char fname[] = "unsqueeze";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    int d = mo__checkdim_n(L, 2, fname, t, t->ndim + 1);
    char s[MO__SHAPE_BUF];
    if (t->ndim == MO_MAX_DIMS)
        return luaL_error(L, "%s: a tensor of shape %s already has %d dimensions (at most %d)",
                          fname, mo__shapestr(t, s), MO_MAX_DIMS, MO_MAX_DIMS);
    mo_tensor *v = push_view(L, 1);
    mo__check(L, mo_tensor_unsqueeze(v, mo__checkarg(L, 1, fname), d), fname);
    return 1;
}

/* expand(s1, s2, ...) / expand{...}: a broadcast view; -1 keeps a size. */
static int m_expand(lua_State *L)
{
    static const char fname[] = "expand";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    lua_Integer given[MO_MAX_DIMS];
    int n = read_ints(L, 2, lua_gettop(L), fname, "sizes", given);
    size_t shape[MO_MAX_DIMS];
    char s[MO__SHAPE_BUF], sg[MO__SHAPE_BUF];
    if (n < t->ndim)
        return luaL_error(L, "%s: sizes %s have fewer dimensions than the tensor's shape %s",
                          fname, ints_str(n, given, sg), mo__shapestr(t, s));
    int lead = n - t->ndim;
    for (int d = 0; d < n; d++) {
        lua_Integer g = given[d];
        if (g == -1 && d >= lead) g = (lua_Integer)t->shape[d - lead];
        if (g < 0 || g > MO__MAX_SIZE)
            return luaL_error(L, "%s: size #%d of %s must be a non-negative integer%s, got %I",
                              fname, d + 1, ints_str(n, given, sg),
                              d < lead ? " (a new leading dimension cannot be -1)" : " or -1",
                              given[d]);
        if (d >= lead && (size_t)g != t->shape[d - lead] && t->shape[d - lead] != 1)
            return luaL_error(L, "%s: size #%d of %s is %I, but dimension %d of shape %s is %I, "
                              "not 1", fname, d + 1, ints_str(n, given, sg), g, d - lead + 1,
                              mo__shapestr(t, s), (lua_Integer)t->shape[d - lead]);
        shape[d] = (size_t)g;
    }
    mo__shape_numel(L, fname, n, shape);
    mo_tensor *v = push_view(L, 1);
    mo__check(L, mo_tensor_expand(v, mo__checkarg(L, 1, fname), n, shape), fname);
    return 1;
}

/*
 * Pushes the tensor at 1 with a new shape: a view when the strides allow it;
 * otherwise a contiguous copy when may_copy, else the error view gives.
 */
static int reshape_to(lua_State *L, const char *fname, int ndim, const size_t *shape, int may_copy)
{
    mo_tensor *t = mo__checkarg(L, 1, fname);
    ptrdiff_t stride[MO_MAX_DIMS];
    if (mo_view_strides(t, ndim, shape, stride)) {
        mo_tensor *v = push_view(L, 1);
        mo__check(L, mo_tensor_view_any(v, mo__checkarg(L, 1, fname), ndim, shape), fname);
        return 1;
    }
    char sn[MO__SHAPE_BUF], ss[MO__SHAPE_BUF];
    if (!may_copy) {
        lua_Integer st[MO_MAX_DIMS];
        char sst[MO__SHAPE_BUF];
        for (int d = 0; d < t->ndim; d++) st[d] = (lua_Integer)t->stride[d];
        return luaL_error(L, "%s: shape %s cannot be a view of shape %s with strides %s "
                          "(use reshape or contiguous)", fname, mo__shapestr_raw(ndim, shape, sn),
                          mo__shapestr(t, ss), ints_str(t->ndim, st, sst));
    }
    mo_tensor *c = mo__newlike(L, t, ndim, shape, fname);
    mo__check(L, mo_copy_reshape(c, mo__checkarg(L, 1, fname)), fname);
    return 1;
}

/* view(...) / reshape(...): sizes as varargs or one table; one may be -1. */
static int reshape_impl(lua_State *L, const char *fname, int may_copy)
{
    mo_tensor *t = mo__checkarg(L, 1, fname);
    size_t shape[MO_MAX_DIMS];
    int infer;
    int ndim = mo__readshape(L, 2, lua_gettop(L), fname, shape, &infer);
    char buf[MO__SHAPE_BUF], sb[MO__SHAPE_BUF];
    if (infer >= 0) mo__infer_size(L, fname, ndim, shape, infer, t->numel);
    if (mo__shape_numel(L, fname, ndim, shape) != t->numel)
        return luaL_error(L, "%s: shape %s does not match the tensor's %I elements (shape %s)",
                          fname, mo__shapestr_raw(ndim, shape, buf), (lua_Integer)t->numel,
                          mo__shapestr(t, sb));
    lua_settop(L, 1);
    return reshape_to(L, fname, ndim, shape, may_copy);
}

static int m_view(lua_State *L) { return reshape_impl(L, "view", 0); }
static int m_reshape(lua_State *L) { return reshape_impl(L, "reshape", 1); }

/* flatten([start = 1 [, stop = -1]]): dimensions start..stop merged into one. */
static int m_flatten(lua_State *L)
{
    static const char fname[] = "flatten";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    int n = t->ndim > 0 ? t->ndim : 1; /* a 0-d tensor flattens to {1} */
    int a = opt_dim(L, 2, fname, t, n, 1);
    int b = lua_isnoneornil(L, 3) ? n - 1 : mo__checkdim_n(L, 3, fname, t, n);
    char s[MO__SHAPE_BUF];
    if (a > b)
        return luaL_error(L, "%s: start dimension %d comes after stop dimension %d (shape %s)",
                          fname, a + 1, b + 1, mo__shapestr(t, s));
    size_t shape[MO_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < a; d++) shape[nd++] = t->shape[d];
    size_t merged = 1;
    for (int d = a; d <= b && d < t->ndim; d++) merged *= t->shape[d]; /* numel <= 2^40 */
    shape[nd++] = merged;
    for (int d = b + 1; d < t->ndim; d++) shape[nd++] = t->shape[d];
    lua_settop(L, 1);
    return reshape_to(L, fname, nd, shape, 1);
}

static int m_transpose(lua_State *L)
{
    static const char fname[] = "transpose";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    int n = t->ndim > 0 ? t->ndim : 1;
    int d0 = mo__checkdim_n(L, 2, fname, t, n);
    int d1 = mo__checkdim_n(L, 3, fname, t, n);
    int scalar = t->ndim == 0;
    mo_tensor *v = push_view(L, 1);
    t = mo__checkarg(L, 1, fname);
    mo__check(L, scalar ? mo_tensor_share(v, t) : mo_tensor_transpose(v, t, d0, d1), fname);
    return 1;
}

/* t(): the transpose of a 2-d tensor (a 0-d or 1-d tensor gives a view of itself). */
static int m_t(lua_State *L)
{
    mo_tensor *t = mo__checkarg(L, 1, "t");
    char s[MO__SHAPE_BUF];
    if (t->ndim > 2)
        return luaL_error(L, "t: expects a tensor of at most 2 dimensions, got %d-d (shape %s)",
                          t->ndim, mo__shapestr(t, s));
    int two = t->ndim == 2;
    mo_tensor *v = push_view(L, 1);
    t = mo__checkarg(L, 1, "t");
    mo__check(L, two ? mo_tensor_transpose(v, t, 0, 1) : mo_tensor_share(v, t), "t");
    return 1;
}

/* contiguous() -> self when already contiguous, else a contiguous copy. */
static int m_contiguous(lua_State *L)
{
    static const char fname[] = "contiguous";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    lua_settop(L, 1);
    if (mo_tensor_is_contiguous(t)) return 1;
    mo_tensor *c = mo__newlike(L, t, t->ndim, t->shape, fname);
    mo__check(L, mo_copy(c, mo__checkarg(L, 1, fname)), fname);
    return 1;
}

/* select(dim, index): the slice at index along dim, one dimension less. */
static int m_select(lua_State *L)
{
    static const char fname[] = "select";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    int d = mo__checkdim_n(L, 2, fname, t, t->ndim);
    size_t i = wrap_index(L, mo__checkinteger(L, 3, fname, "index"), 3, fname, t, d);
    mo_tensor *v = push_view(L, 1);
    mo__check(L, mo_tensor_select(v, mo__checkarg(L, 1, fname), d, i), fname);
    return 1;
}

/* ======================================================================== */
/* chunk and split: tables of views along one dimension                     */
/* ======================================================================== */

/* Pushes a table of views of the tensor at 1 along d, of the `count` lengths
 * len[k] (or every one `each` long, the last shorter, when len == NULL). */
static int push_parts(lua_State *L, const char *fname, int d, size_t count, size_t each,
                      const size_t *len)
{
    lua_createtable(L, count < (size_t)1 << 24 ? (int)count : 0, 0);
    size_t at = 0;
    for (size_t k = 0; k < count; k++) {
        mo_tensor *v = push_view(L, 1);
        mo_tensor *t = mo__checkarg(L, 1, fname);
        size_t size = t->shape[d];
        size_t l = len ? len[k] : (size - at < each ? size - at : each);
        mo__check(L, mo_tensor_narrow(v, t, d, at, l), fname);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
        at += l;
    }
    return 1;
}

/* chunk(n [, dim = 1]): at most n views of ceil(size / n) elements along dim. */
static int m_chunk(lua_State *L)
{
    static const char fname[] = "chunk";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    lua_Integer n = mo__checkinteger(L, 2, fname, "chunks");
    if (n < 1) return mo__argerror(L, 2, fname, "chunks must be at least 1, got %I", n);
    int d = opt_dim(L, 3, fname, t, t->ndim, 1);
    size_t size = t->shape[d];
    char s[MO__SHAPE_BUF];
    if (size == 0 && n > (lua_Integer)1 << 24)
        return mo__argerror(L, 2, fname, "%I empty chunks of shape %s, at most 2^24", n,
                            mo__shapestr(t, s));
    size_t each = size / (size_t)n + (size % (size_t)n != 0);
    /* PyTorch: an empty dimension gives n empty chunks */
    size_t count = each == 0 ? (size_t)n : (size + each - 1) / each;
    lua_settop(L, 1);
    return push_parts(L, fname, d, count, each, NULL);
}

/* split(size [, dim = 1]): views of `size` elements along dim, the last shorter;
 * split({s1, s2, ...} [, dim]): views of those lengths (they must add up). */
static int m_split(lua_State *L)
{
    static const char fname[] = "split";
    mo_tensor *t = mo__checkarg(L, 1, fname);
    char s[MO__SHAPE_BUF];
    if (lua_type(L, 2) == LUA_TTABLE) {
        int d = opt_dim(L, 3, fname, t, t->ndim, 1);
        lua_Integer nl = (lua_Integer)lua_rawlen(L, 2);
        if (nl < 1 || nl > MO__MAX_SIZE)
            return mo__argerror(L, 2, fname, "the list of sizes is empty");
        size_t *len = (size_t *)lua_newuserdatauv(L, (size_t)nl * sizeof *len, 0);
        t = mo__checkarg(L, 1, fname);
        size_t total = 0;
        for (lua_Integer k = 0; k < nl; k++) {
            lua_rawgeti(L, 2, k + 1);
            int isint = 0;
            lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
            if (!isint || v < 0 || v > MO__MAX_SIZE)
                return luaL_error(L, "%s: size #%I must be a non-negative integer, got %s", fname,
                                  k + 1, mo__describe(L, -1));
            lua_pop(L, 1);
            len[k] = (size_t)v;
            total += len[k]; /* at most 2^40 sizes of at most 2^40 each: no wrap */
        }
        if (total != t->shape[d])
            return luaL_error(L, "%s: sizes add up to %I, but dimension %d of shape %s is %I",
                              fname, (lua_Integer)total, d + 1, mo__shapestr(t, s),
                              (lua_Integer)t->shape[d]);
        lua_replace(L, 2); /* the lengths, pinned; the user's table is not read again */
        lua_settop(L, 2);
        return push_parts(L, fname, d, (size_t)nl, 0, len);
    }
    lua_Integer each = mo__checkinteger(L, 2, fname, "size");
    int d = opt_dim(L, 3, fname, t, t->ndim, 1);
    size_t size = t->shape[d];
    if (each < 1 && !(each == 0 && size == 0))
        return mo__argerror(L, 2, fname, "size must be at least 1, got %I (shape %s)", each,
                            mo__shapestr(t, s));
    size_t count = size == 0 ? 1 : (size + (size_t)each - 1) / (size_t)each;
    lua_settop(L, 1);
    return push_parts(L, fname, d, count, (size_t)each, NULL);
}

/* ======================================================================== */
/* cat and stack                                                            */
/* ======================================================================== */

/*
 * The tensors of the list at arg 1, pinned: copied into a table of the call's
 * own (left at stack slot 3) and their handles into an array (slot 4), which
 * is returned. Each is checked to be a live tensor; *n gets the count.
 */
static const mo_tensor **pin_list(lua_State *L, const char *fname, size_t *n)
{
    if (lua_type(L, 1) != LUA_TTABLE) mo__typeerror(L, 1, fname, "table of tensors");
    lua_Integer len = (lua_Integer)lua_rawlen(L, 1);
    if (len < 1) mo__argerror(L, 1, fname, "the list of tensors is empty");
    if (len > (lua_Integer)1 << 24)
        mo__argerror(L, 1, fname, "%I tensors, at most 2^24", len);
    lua_settop(L, 2);
    lua_createtable(L, (int)len, 0);                                   /* slot 3 */
    /* allocations first: a finalizer may change the user's list or free a tensor */
    const mo_tensor **ts =
        (const mo_tensor **)lua_newuserdatauv(L, (size_t)len * sizeof *ts, 0); /* slot 4 */
    for (lua_Integer k = 1; k <= len; k++) {
        lua_rawgeti(L, 1, k);
        mo_tensor *t = mo__totensor(L, -1);
        if (t == NULL)
            luaL_error(L, "%s: element #%I of the list is a %s, not a tensor", fname, k,
                       luaL_typename(L, -1));
        if (!mo_tensor_alive(t))
            luaL_error(L, "%s: element #%I of the list: tensor has been freed", fname, k);
        if (k > 1 && t->dtype != ts[0]->dtype)
            luaL_error(L, "%s: dtype mismatch: element #1 is %s, element #%I is %s (convert one "
                       "with :double() or :float())", fname, mo_dtype_name(ts[0]->dtype), k,
                       mo_dtype_name(t->dtype));
        ts[k - 1] = t;
        lua_rawseti(L, 3, k); /* within the preallocated array part: no allocation */
    }
    *n = (size_t)len;
    return ts;
}

/* Raises "fname: tensors #1 {2, 3} and #k {..} <why>". */
static int pair_error(lua_State *L, const char *fname, const mo_tensor *const *ts, size_t k,
                      const char *why)
{
    char sa[MO__SHAPE_BUF], sb[MO__SHAPE_BUF];
    return luaL_error(L, "%s: tensors #1 %s and #%I %s %s", fname, mo__shapestr(ts[0], sa),
                      (lua_Integer)k + 1, mo__shapestr(ts[k], sb), why);
}

/* cat(list [, dim = 1]): a new tensor, the tensors one after another along dim. */
static int f_cat(lua_State *L)
{
    static const char fname[] = "cat";
    size_t n;
    const mo_tensor **ts = pin_list(L, fname, &n);
    const mo_tensor *a = ts[0];
    char s[MO__SHAPE_BUF];
    if (a->ndim == 0)
        return luaL_error(L, "%s: tensor #1 is 0-d (shape %s); cat needs at least one "
                          "dimension (use stack)", fname, mo__shapestr(a, s));
    int d = opt_dim(L, 2, fname, a, a->ndim, 1);
    for (size_t k = 1; k < n; k++) {
        if (ts[k]->ndim != a->ndim) return pair_error(L, fname, ts, k, "differ in rank");
        for (int j = 0; j < a->ndim; j++)
            if (j != d && ts[k]->shape[j] != a->shape[j]) {
                lua_pushfstring(L, "differ in dimension %d (cat along dimension %d)", j + 1, d + 1);
                return pair_error(L, fname, ts, k, lua_tostring(L, -1));
            }
    }
    size_t shape[MO_MAX_DIMS];
    mo__check(L, mo_cat_shape(n, ts, d, shape), fname);
    mo__shape_numel(L, fname, a->ndim, shape);
    mo_tensor *out = mo__newlike(L, a, a->ndim, shape, fname);
    mo__check(L, mo_tensor_cat(out, n, ts, d), fname); /* re-checks every operand */
    return 1;
}

/* stack(list [, dim = 1]): a new tensor with a new dimension dim indexing the tensors. */
static int f_stack(lua_State *L)
{
    static const char fname[] = "stack";
    size_t n;
    const mo_tensor **ts = pin_list(L, fname, &n);
    const mo_tensor *a = ts[0];
    int d = opt_dim(L, 2, fname, a, a->ndim + 1, 1);
    char s[MO__SHAPE_BUF];
    if (a->ndim == MO_MAX_DIMS)
        return luaL_error(L, "%s: tensors of shape %s already have %d dimensions (at most %d)",
                          fname, mo__shapestr(a, s), MO_MAX_DIMS, MO_MAX_DIMS);
    for (size_t k = 1; k < n; k++)
        if (!mo_tensor_same_shape(ts[k], a)) return pair_error(L, fname, ts, k, "differ in shape");
    size_t shape[MO_MAX_DIMS];
    for (int j = 0, k = 0; j <= a->ndim; j++) shape[j] = j == d ? n : a->shape[k++];
    mo__shape_numel(L, fname, a->ndim + 1, shape);
    mo_tensor *out = mo__newlike(L, a, a->ndim + 1, shape, fname);
    mo__check(L, mo_tensor_stack(out, n, ts, d), fname);
    return 1;
}

/* ======================================================================== */
/* t[i], t[{...}] and assignment                                            */
/* ======================================================================== */

/* One bound of a range: 1-based, -1 the last; returns it 1-based (unchecked). */
static lua_Integer range_bound(lua_State *L, int idx, const char *fname, int pos, size_t size)
{
    int isint = 0;
    lua_Integer v = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &isint) : 0;
    if (!isint)
        luaL_error(L, "%s: range of index #%d must hold integers, got %s", fname, pos,
                   mo__describe(L, idx));
    return v < 0 ? v + (lua_Integer)size + 1 : v;
}

/* Index #pos of a slicing (the value at idx) for dimension d of t, into *s. */
static void read_slice(lua_State *L, int idx, const char *fname, const mo_tensor *t, int pos,
                       int d, mo_slice *s)
{
    char sh[MO__SHAPE_BUF];
    size_t size = t->shape[d];
    if (lua_type(L, idx) == LUA_TNUMBER) {
        int isint = 0;
        lua_Integer i = lua_tointegerx(L, idx, &isint);
        if (!isint)
            luaL_error(L, "%s: index #%d must be an integer, got %s", fname, pos,
                       mo__describe(L, idx));
        lua_Integer w = i < 0 ? i + (lua_Integer)size + 1 : i;
        if (w < 1 || w > (lua_Integer)size)
            luaL_error(L, "%s: index #%d = %I out of range for dimension %d of size %I (shape %s)",
                       fname, pos, i, d + 1, (lua_Integer)size, mo__shapestr(t, sh));
        s->kind = MO_SLICE_INDEX;
        s->start = (size_t)(w - 1);
        s->len = 1;
        return;
    }
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: index #%d must be an integer or a range table, got %s", fname, pos,
                   luaL_typename(L, idx));
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n == 0) {
        s->kind = MO_SLICE_ALL;
        return;
    }
    if (n > 2)
        luaL_error(L, "%s: range of index #%d has %I entries, expected {}, {i} or {first, last}",
                   fname, pos, n);
    lua_rawgeti(L, idx, 1);
    lua_rawgeti(L, idx, n);
    lua_Integer a = range_bound(L, -2, fname, pos, size);
    lua_Integer b = range_bound(L, -1, fname, pos, size);
    /* a..b inclusive; b == a - 1 is an empty range (a may then be size + 1) */
    if (a < 1 || a > (lua_Integer)size + 1 || b < a - 1 || b > (lua_Integer)size) {
        lua_Integer ra = lua_tointeger(L, -2), rb = lua_tointeger(L, -1);
        luaL_error(L, "%s: range {%I, %I} of index #%d out of range for dimension %d of size %I "
                   "(shape %s)", fname, ra, rb, pos, d + 1, (lua_Integer)size, mo__shapestr(t, sh));
    }
    lua_pop(L, 2);
    s->kind = MO_SLICE_RANGE;
    s->start = (size_t)(a - 1);
    s->len = (size_t)(b - a + 1);
}

/* The slicing of key (the value at 2) for t; returns the number of entries. */
static int read_key(lua_State *L, const char *fname, const mo_tensor *t, mo_slice *s)
{
    char sh[MO__SHAPE_BUF];
    if (t->ndim == 0)
        luaL_error(L, "%s: a 0-d tensor cannot be indexed (use t:item(), or t:fill(x) to set it)",
                   fname);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        read_slice(L, 2, fname, t, 1, 0, &s[0]);
        return 1;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    if (n > t->ndim)
        luaL_error(L, "%s: %I indices for a %d-d tensor (shape %s)", fname, n, t->ndim,
                   mo__shapestr(t, sh));
    for (int k = 0; k < (int)n; k++) {
        lua_rawgeti(L, 2, k + 1);
        read_slice(L, lua_gettop(L), fname, t, k + 1, k, &s[k]);
        lua_pop(L, 1);
    }
    return (int)n;
}

int mo__index(lua_State *L)
{
    static const char fname[] = "__index";
    lua_settop(L, 2);
    mo_tensor *t = mo__checktensor(L, 1, fname);
    mo_slice s[MO_MAX_DIMS];
    int n = read_key(L, fname, t, s);
    mo_tensor *v = push_view(L, 1);
    mo__check(L, mo_tensor_slice(v, mo__checktensor(L, 1, fname), n, s), fname);
    return 1;
}

/* *b = src seen with dst's shape: leading size-1 dims dropped (as PyTorch's
 * setitem does), then expanded (size-1 and missing leading dims broadcast). */
static mo_status broadcast_value(mo_tensor *b, const mo_tensor *src, const mo_tensor *dst)
{
    mo_slice drop[MO_MAX_DIMS];
    int k = 0;
    while (src->ndim - k > dst->ndim) {
        if (src->shape[k] != 1) return MO_ERR_SHAPE;
        drop[k].kind = MO_SLICE_INDEX;
        drop[k].start = 0;
        drop[k++].len = 1;
    }
    mo_tensor core;
    mo_tensor_init(&core);
    mo_status st = mo_tensor_slice(&core, src, k, drop);
    if (st == MO_OK) st = mo_tensor_expand(b, &core, dst->ndim, dst->shape);
    mo_tensor_release(&core);
    return st;
}

int mo__newindex(lua_State *L)
{
    static const char fname[] = "__newindex";
    lua_settop(L, 3);
    mo_tensor *t = mo__checktensor(L, 1, fname);
    mo_slice s[MO_MAX_DIMS];
    int n = read_key(L, fname, t, s);
    int isnum = lua_type(L, 3) == LUA_TNUMBER;
    const mo_tensor *src = isnum ? NULL : mo__totensor(L, 3);
    if (!isnum && src == NULL)
        return luaL_error(L, "%s: the value must be a number or a tensor, got %s", fname,
                          luaL_typename(L, 3));
    if (src != NULL && !mo_tensor_alive(src))
        return luaL_error(L, "%s: the value: tensor has been freed", fname);
    if (src != NULL) mo__same_dtype(L, fname, t, src); /* converting is copy_'s job */
    /* Nothing below allocates from Lua: the handles live on the C stack. */
    mo_tensor dst, b;
    mo_tensor_init(&dst);
    mo_tensor_init(&b);
    mo_status st = mo_tensor_slice(&dst, t, n, s);
    if (st == MO_OK && isnum) {
        st = mo_fill(&dst, lua_tonumber(L, 3));
    } else if (st == MO_OK) {
        st = broadcast_value(&b, src, &dst);
        if (st == MO_ERR_SHAPE) {
            char sa[MO__SHAPE_BUF], sb[MO__SHAPE_BUF];
            mo__shapestr(src, sa);
            mo__shapestr(&dst, sb);
            mo_tensor_release(&dst);
            return luaL_error(L, "%s: a value of shape %s does not broadcast to the target's "
                              "shape %s", fname, sa, sb);
        }
        if (st == MO_OK) st = mo_copy(&dst, &b); /* overlapping source and target are fine */
    }
    mo_tensor_release(&b);
    mo_tensor_release(&dst);
    mo__check(L, st, fname);
    return 0;
}

/* ======================================================================== */
/* Registration                                                             */
/* ======================================================================== */

/* These replace tensor.c's view, reshape, transpose, t, select and contiguous. */
static const luaL_Reg shape_methods[] = {
    {"permute", m_permute},
    {"squeeze", m_squeeze},
    {"unsqueeze", m_unsqueeze},
    {"flatten", m_flatten},
    {"expand", m_expand},
    {"view", m_view},
    {"reshape", m_reshape},
    {"transpose", m_transpose},
    {"t", m_t},
    {"contiguous", m_contiguous},
    {"select", m_select},
    {"chunk", m_chunk},
    {"split", m_split},
    {NULL, NULL},
};

static const luaL_Reg shape_functions[] = {
    {"cat", f_cat},
    {"stack", f_stack},
    {NULL, NULL},
};

void mo__open_shape(lua_State *L)
{
    mo__add_methods(L, shape_methods);
    mo__setfuncs(L, shape_functions);
}
