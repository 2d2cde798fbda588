/*
 * data.c - Lua bindings of the core's data functions (core/idx.c, core/data.c)
 * and two bits of the terminal and BLAS that mo.train and the examples need.
 *
 * Added to the moonopt.core module table (lua/moonopt/data.lua builds the
 * user-facing mo.data on top of them):
 *   read_idx(path [, scale [, shift]])        -> tensor (element * scale + shift)
 *   decode_idx(bytes [, scale [, shift]])     -> tensor (an IDX file's bytes in a string)
 *   write_idx(path, t, type [, gzip_level])   type "uint8" | "int8" | "int16" | "int32" |
 *                                              "float32" | "float64"; level 0 = raw
 *   gather_rows(dst, src, rows, first, count) -> dst: dst[i] = src[rows[first + i - 1]]
 *   mean_std(t)                               -> mean, std (population, all elements)
 *   column_mean_std(m)                        -> mean {d}, std {d} of m {n, d}
 *   normalize_(t, mean, std)                  -> t, in place (t - mean) / std
 *   normalize_columns_(m, mean, std)          -> m, in place per column
 *   count_correct(scores, labels)             -> rows of scores {n, c} whose argmax is labels[i] (1..c)
 *   augment_crop_flip(dst, src, pad, flip, seed) -> dst: random crop (zero padding pad) and flip
 *   augment_seed()                            -> an integer from the default generator
 *   isatty([fd = 1])                          -> whether fd is a terminal
 *   blas_set_threads(n)                       -> true when OpenBLAS took it, else false
 *   blas_get_threads()                        -> OpenBLAS's thread count, or nil
 *
 * IDX errors name the function, the file and the problem:
 *   "read_idx: /data/t10k-images-idx3-ubyte.gz: truncated: the gzip stream ends before its end marker"
 */
#include "binding.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

/*
 * OpenBLAS's thread setter, when the module is linked against OpenBLAS. A weak
 * reference resolves to NULL under any other BLAS (or none), so the module
 * links everywhere and blas_set_threads just answers false there.
 */
#if defined(MO_HAVE_CBLAS) && defined(__GNUC__) && defined(__ELF__)
extern void openblas_set_num_threads(int n) __attribute__((weak));
extern int openblas_get_num_threads(void) __attribute__((weak));
#define MO__OPENBLAS_WEAK 1
#endif

/* A string argument without embedded zeros (a path); numbers are not paths. */
static const char *check_path(lua_State *L, int idx, const char *fname)
{
    if (lua_type(L, idx) != LUA_TSTRING) mo__typeerror(L, idx, fname, "string");
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (strlen(s) != len) mo__argerror(L, idx, fname, "path contains a zero byte");
    return s;
}

/* A finite number (default def when absent), as a float that stays finite. */
static float opt_finite(lua_State *L, int idx, const char *fname, const char *what, lua_Number def)
{
    lua_Number x = mo__optnumber(L, idx, fname, def);
    if (!isfinite(x) || !isfinite((float)x))
        mo__argerror(L, idx, fname, "%s must be a finite number, got %f", what, x);
    return (float)x;
}

/* An integer argument in lo..hi (integral floats accepted). */
static lua_Integer check_int_range(lua_State *L, int idx, const char *fname, const char *what,
                                   lua_Integer lo, lua_Integer hi)
{
    mo__checknumber(L, idx, fname);
    lua_Integer v = mo__checkinteger(L, idx, fname, what);
    if (v < lo || v > hi)
        return mo__argerror(L, idx, fname, "%s must be in %I..%I, got %I", what, lo, hi, v);
    return v;
}

/* ======================================================================== */
/* IDX                                                                      */
/* ======================================================================== */

/* read_idx(path [, scale [, shift]]) -> tensor */
static int f_read_idx(lua_State *L)
{
    const char *path = check_path(L, 1, "read_idx");
    float scale = opt_finite(L, 2, "read_idx", "scale", 1);
    float shift = opt_finite(L, 3, "read_idx", "shift", 0);
    mo_tensor *t = mo_lua_newtensor(L);  /* empty until the read succeeds: nothing leaks on error */
    char why[MO_IDX_WHY_SIZE];
    mo_status st = mo_idx_read_file(t, path, scale, shift, NULL, why, sizeof why);
    if (st != MO_OK) return luaL_error(L, "read_idx: %s: %s", path, why);
    mo__gc_account(L, t->numel);
    return 1;
}

/* decode_idx(bytes [, scale [, shift]]) -> tensor */
static int f_decode_idx(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING) mo__typeerror(L, 1, "decode_idx", "string");
    size_t len;
    const char *bytes = lua_tolstring(L, 1, &len);
    float scale = opt_finite(L, 2, "decode_idx", "scale", 1);
    float shift = opt_finite(L, 3, "decode_idx", "shift", 0);
    mo_tensor *t = mo_lua_newtensor(L);
    char why[MO_IDX_WHY_SIZE];
    mo_status st = mo_idx_decode(t, bytes, len, scale, shift, NULL, why, sizeof why);
    if (st != MO_OK) return luaL_error(L, "decode_idx: %s", why);
    mo__gc_account(L, t->numel);
    return 1;
}

static const char *const idx_type_names[] = {"uint8", "int8", "int16", "int32", "float32", "float64", NULL};
static const mo_idx_type idx_types[] = {MO_IDX_U8, MO_IDX_I8, MO_IDX_I16, MO_IDX_I32, MO_IDX_F32, MO_IDX_F64};

/* write_idx(path, t, type [, gzip_level = 0]) */
static int f_write_idx(lua_State *L)
{
    const char *path = check_path(L, 1, "write_idx");
    mo_tensor *t = mo__checktensor(L, 2, "write_idx");
    if (lua_type(L, 3) != LUA_TSTRING) mo__typeerror(L, 3, "write_idx", "string");
    const char *name = lua_tostring(L, 3);
    int which = -1;
    for (int i = 0; idx_type_names[i]; i++)
        if (strcmp(name, idx_type_names[i]) == 0) which = i;
    if (which < 0)
        return mo__argerror(L, 3, "write_idx", "unknown IDX type '%s' (uint8, int8, int16, int32, "
                            "float32 or float64)", name);
    int level = lua_isnoneornil(L, 4) ? 0 : (int)check_int_range(L, 4, "write_idx", "gzip level", 0, 9);
    char why[MO_IDX_WHY_SIZE];
    mo_status st = mo_idx_write_file(path, t, idx_types[which], level, why, sizeof why);
    if (st != MO_OK) return luaL_error(L, "write_idx: %s: %s", path, why);
    return 0;
}

/* ======================================================================== */
/* Batches                                                                  */
/* ======================================================================== */

/* Row numbers go to the core in chunks of this many (no allocation per batch). */
#define ROW_CHUNK 256

/* rows[first + i] for i < n as a 0-based row of a tensor with nrows rows (already validated). */
static size_t row_at(lua_State *L, int rows, lua_Integer pos)
{
    lua_rawgeti(L, rows, pos);
    lua_Integer r = lua_tointegerx(L, -1, NULL); /* validated by the caller, nothing ran since */
    lua_pop(L, 1);
    return (size_t)(r - 1);
}

/*
 * gather_rows(dst, src, rows, first, count) -> dst
 * dst {count, ...}, src {N, ...}; rows a Lua list of 1-based row numbers of
 * src; rows[first .. first+count-1] are gathered. Every row number is checked
 * before anything is written.
 */
static int f_gather_rows(lua_State *L)
{
    static const char fname[] = "gather_rows";
    mo_tensor *dst = mo__checktensor(L, 1, fname);
    mo_tensor *src = mo__checktensor(L, 2, fname);
    if (lua_type(L, 3) != LUA_TTABLE) mo__typeerror(L, 3, fname, "table");
    lua_Integer len = (lua_Integer)lua_rawlen(L, 3);
    lua_Integer first = check_int_range(L, 4, fname, "first", 1, len + 1);
    lua_Integer count = check_int_range(L, 5, fname, "count", 0, len - first + 1);
    if (src->ndim < 1) return mo__argerror(L, 2, fname, "a tensor with at least one dimension expected");
    mo__same_dtype(L, fname, dst, src);
    int shapes_ok = dst->ndim == src->ndim && dst->shape[0] == (size_t)count;
    for (int i = 1; shapes_ok && i < src->ndim; i++) shapes_ok = dst->shape[i] == src->shape[i];
    if (!shapes_ok) {
        char a[MO__SHAPE_BUF], b[MO__SHAPE_BUF];
        return luaL_error(L, "%s: destination %s cannot hold %I rows of %s", fname, mo__shapestr(dst, a),
                          count, mo__shapestr(src, b));
    }
    if (mo_tensor_same_storage(dst, src)) return luaL_error(L, "%s: destination and source share memory", fname);
    const lua_Integer nrows = (lua_Integer)src->shape[0];
    for (lua_Integer i = 0; i < count; i++) {
        int ty = lua_rawgeti(L, 3, first + i);
        int ok = 0;
        lua_Integer r = 0;
        if (ty == LUA_TNUMBER) r = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok || r < 1 || r > nrows)
            return luaL_error(L, "%s: row number at position %I must be an integer in 1..%I", fname,
                              first + i, nrows);
    }
    size_t rows[ROW_CHUNK];
    for (lua_Integer done = 0; done < count;) {
        lua_Integer n = count - done < ROW_CHUNK ? count - done : ROW_CHUNK;
        for (lua_Integer i = 0; i < n; i++) rows[i] = row_at(L, 3, first + done + i);
        mo_tensor part;
        mo_tensor_init(&part);
        mo_status st = mo_tensor_narrow(&part, dst, 0, (size_t)done, (size_t)n);
        if (st == MO_OK) st = mo_gather_rows(&part, src, rows, (size_t)n);
        mo_tensor_release(&part);
        if (st != MO_OK) return mo__status_error(L, st, fname);
        done += n;
    }
    lua_settop(L, 1);
    return 1;
}

/* ======================================================================== */
/* Normalization                                                            */
/* ======================================================================== */

/* mean_std(t) -> mean, std */
static int f_mean_std(lua_State *L)
{
    mo_tensor *t = mo__checktensor(L, 1, "mean_std");
    if (t->numel == 0) return mo__argerror(L, 1, "mean_std", "tensor has no elements");
    double m, s;
    mo_status st = mo_mean_std(t, &m, &s);
    if (st != MO_OK) return mo__status_error(L, st, "mean_std");
    lua_pushnumber(L, (lua_Number)m);
    lua_pushnumber(L, (lua_Number)s);
    return 2;
}

/* A 2-d tensor with at least one row. */
static mo_tensor *check_matrix(lua_State *L, int idx, const char *fname)
{
    mo_tensor *m = mo__checktensor(L, idx, fname);
    if (m->ndim != 2) {
        char buf[MO__SHAPE_BUF];
        mo__argerror(L, idx, fname, "a 2-d tensor {n, d} expected, got %s", mo__shapestr(m, buf));
    }
    return m;
}

/* column_mean_std(m) -> mean {d}, std {d} */
static int f_column_mean_std(lua_State *L)
{
    static const char fname[] = "column_mean_std";
    mo_tensor *m = check_matrix(L, 1, fname);
    if (m->shape[0] == 0) return mo__argerror(L, 1, fname, "tensor has no rows");
    size_t d = m->shape[1];
    mo_dtype dt = m->dtype;
    size_t was[2] = {m->shape[0], d};
    mo_tensor *mean = mo__newtensor_dtype(L, 1, &d, dt, 0, fname);
    mo_tensor *sd = mo__newtensor_dtype(L, 1, &d, dt, 0, fname);
    m = mo__recheck(L, 1, fname, 2, was); /* the allocations may have run a finalizer */
    mo_status st = mo_column_mean_std(m, mean, sd);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    return 2;
}

/* normalize_(t, mean, std) -> t */
static int f_normalize_(lua_State *L)
{
    static const char fname[] = "normalize_";
    mo_tensor *t = mo__checktensor(L, 1, fname);
    lua_Number mean = mo__checknumber(L, 2, fname);
    lua_Number sd = mo__checknumber(L, 3, fname);
    if (!isfinite(mean)) return mo__argerror(L, 2, fname, "mean must be finite, got %f", mean);
    if (!isfinite(sd) || !(sd > 0) || !isfinite(1.0 / sd))
        return mo__argerror(L, 3, fname, "std must be positive and finite, got %f", sd);
    mo_status st = mo_normalize(t, mean, sd);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    lua_settop(L, 1);
    return 1;
}

/* normalize_columns_(m, mean, std) -> m */
static int f_normalize_columns_(lua_State *L)
{
    static const char fname[] = "normalize_columns_";
    mo_tensor *m = check_matrix(L, 1, fname);
    mo_tensor *mean = mo__checktensor(L, 2, fname);
    mo_tensor *sd = mo__checktensor(L, 3, fname);
    mo__same_dtype(L, fname, m, mean);
    mo__same_dtype(L, fname, m, sd);
    char a[MO__SHAPE_BUF], b[MO__SHAPE_BUF];
    if (mean->ndim != 1 || mean->shape[0] != m->shape[1])
        return luaL_error(L, "%s: mean %s does not match the columns of %s", fname, mo__shapestr(mean, a),
                          mo__shapestr(m, b));
    if (sd->ndim != 1 || sd->shape[0] != m->shape[1])
        return luaL_error(L, "%s: std %s does not match the columns of %s", fname, mo__shapestr(sd, a),
                          mo__shapestr(m, b));
    mo_status st = mo_normalize_columns(m, mean, sd);
    if (st == MO_ERR_ARG)
        return luaL_error(L, "%s: every mean must be finite and every std positive and finite", fname);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    lua_settop(L, 1);
    return 1;
}

/* count_correct(scores {n, c}, labels {n}) -> number of rows whose argmax is the label (1..c) */
static int f_count_correct(lua_State *L)
{
    static const char fname[] = "count_correct";
    mo_tensor *s = check_matrix(L, 1, fname);
    mo_tensor *y = mo__checktensor(L, 2, fname);
    if (y->ndim != 1 || y->shape[0] != s->shape[0]) {
        char a[MO__SHAPE_BUF], b[MO__SHAPE_BUF];
        return luaL_error(L, "%s: labels %s do not match scores %s (want {%I})", fname, mo__shapestr(y, a),
                          mo__shapestr(s, b), (lua_Integer)s->shape[0]);
    }
    size_t hits;
    mo_status st = mo_count_correct(s, y, 1.0f, &hits);
    if (st == MO_ERR_RANGE)
        return luaL_error(L, "%s: every label must be a class number in 1..%I", fname, (lua_Integer)s->shape[1]);
    if (st != MO_OK) return mo__status_error(L, st, fname);
    lua_pushinteger(L, (lua_Integer)hits);
    return 1;
}

/* ======================================================================== */
/* Augmentation                                                             */
/* ======================================================================== */

/*
 * augment_crop_flip(dst, src, pad, flip, seed) -> dst
 * dst, src {B, C, H, W} contiguous, distinct, of one dtype; pad >= 0 (zero padding of the random
 * crop), flip a boolean (random horizontal flip), seed an integer: the generator of this
 * batch (core/moonopt_data.h, mo_augment_crop_flip).
 */
static int f_augment_crop_flip(lua_State *L)
{
    static const char fname[] = "augment_crop_flip";
    mo_tensor *dst = mo__checktensor(L, 1, fname);
    mo_tensor *src = mo__checktensor(L, 2, fname);
    lua_Integer pad = check_int_range(L, 3, fname, "pad", 0, 1 << 20);
    luaL_checktype(L, 4, LUA_TBOOLEAN);
    int flip = lua_toboolean(L, 4);
    mo__checknumber(L, 5, fname);
    lua_Integer seed = mo__checkinteger(L, 5, fname, "seed");
    int shapes_ok = dst->ndim == 4 && src->ndim == 4;
    for (int i = 0; shapes_ok && i < 4; i++) shapes_ok = dst->shape[i] == src->shape[i];
    if (!shapes_ok) {
        char a[MO__SHAPE_BUF], b[MO__SHAPE_BUF];
        return luaL_error(L, "%s: destination %s and source %s must be one shape {B, C, H, W}", fname,
                          mo__shapestr(dst, a), mo__shapestr(src, b));
    }
    if (mo_tensor_same_storage(dst, src)) return luaL_error(L, "%s: destination and source share memory", fname);
    mo__check(L, mo_augment_crop_flip(dst, src, (size_t)pad, flip, (uint64_t)seed), fname);
    lua_settop(L, 1);
    return 1;
}

/* augment_seed() -> a non-negative integer drawn from the default generator (63 bits) */
static int f_augment_seed(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)(mo_rng_next(mo__lua_rng(L)) >> 1));
    return 1;
}

/* ======================================================================== */
/* Terminal and BLAS threads                                                */
/* ======================================================================== */

/* isatty([fd = 1]) -> boolean */
static int f_isatty(lua_State *L)
{
    int fd = lua_isnoneornil(L, 1) ? 1 : (int)check_int_range(L, 1, "isatty", "fd", 0, 1 << 20);
    lua_pushboolean(L, isatty(fd) == 1);
    return 1;
}

/* blas_set_threads(n) -> true when OpenBLAS applied it */
static int f_blas_set_threads(lua_State *L)
{
    int n = (int)check_int_range(L, 1, "blas_set_threads", "thread count", 1, 1024);
#ifdef MO__OPENBLAS_WEAK
    if (openblas_set_num_threads) {
        openblas_set_num_threads(n);
        lua_pushboolean(L, 1);
        return 1;
    }
#endif
    (void)n;
    lua_pushboolean(L, 0);
    return 1;
}

/* blas_get_threads() -> integer, or nil without OpenBLAS */
static int f_blas_get_threads(lua_State *L)
{
#ifdef MO__OPENBLAS_WEAK
    if (openblas_get_num_threads) {
        lua_pushinteger(L, openblas_get_num_threads());
        return 1;
    }
#endif
    lua_pushnil(L);
    return 1;
}

static const luaL_Reg data_functions[] = {
    {"read_idx", f_read_idx},
    {"decode_idx", f_decode_idx},
    {"write_idx", f_write_idx},
    {"gather_rows", f_gather_rows},
    {"mean_std", f_mean_std},
    {"column_mean_std", f_column_mean_std},
    {"normalize_", f_normalize_},
    {"normalize_columns_", f_normalize_columns_},
    {"count_correct", f_count_correct},
    {"augment_crop_flip", f_augment_crop_flip},
    {"augment_seed", f_augment_seed},
    {"isatty", f_isatty},
    {"blas_set_threads", f_blas_set_threads},
    {"blas_get_threads", f_blas_get_threads},
    {NULL, NULL},
};

void mo__open_data(lua_State *L)
{
    luaL_setfuncs(L, data_functions, 0);
}
