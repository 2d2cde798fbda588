/*
 * checkpoint.c - Lua bindings of the core's safetensors reader and writer
 * (core/checkpoint.c) and of the default generator's state:
 *
 *   ckpt_write(path, names, tensors [, meta [, fname]])
 *       names: list of strings, tensors: list of tensors (same length, any
 *       layout) or lean optimizer state objects (written as their codes: BF16,
 *       I8 or U8), meta: nil or {string = string}. Atomic (see moonopt_ckpt.h).
 *   ckpt_encode(names, tensors [, meta [, fname]]) -> string (the file's bytes)
 *   ckpt_read(path [, fname]) -> tensors {name = tensor}, meta {key = value},
 *       names (list, in the order of the data section), dtypes {name = "F32", ...}
 *   ckpt_decode(bytes [, fname]) -> the same from a string holding a file
 *   write_file(path, bytes [, fname]): the string becomes the whole file,
 *       atomically (mo_file_write: parent directories created)
 *   file_kind(path) -> "file" | "directory" | "fifo" | "device" | "socket"
 *       | "other", or nil when path does not exist (mo_file_kind; no open)
 *   crc32(string [, crc]) -> integer (zlib's CRC-32)
 *   rng_get_state() -> string    rng_set_state(string)
 *
 * `fname` names the Lua-level function in error messages ("mo.load"); errors
 * read "<fname>: <path>: <problem>". The parsed file lives in a userdata box
 * with a __gc while its tensors are handed to Lua, so a Lua error at any point
 * (out of memory) frees it.
 */
#include "binding.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "moonopt_ckpt.h"

#define BOX_MT "moonopt.ckpt_box"

/* A string argument without embedded NULs (they would silently cut a path or a name). */
static const char *check_cstring(lua_State *L, int idx, const char *fname, const char *what)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        mo__argerror(L, idx, fname, "%s must be a string, got %s", what, luaL_typename(L, idx));
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (strlen(s) != len) mo__argerror(L, idx, fname, "%s contains a NUL byte", what);
    return s;
}

static const char *opt_fname(lua_State *L, int idx, const char *def)
{
    if (lua_type(L, idx) == LUA_TSTRING) return lua_tostring(L, idx);
    return def;
}

/* ---- writing ---------------------------------------------------------------------------- */

/*
 * Reads (names, tensors, meta) at first..first+2 into arrays that live in a
 * userdata pushed on the stack (collected with it, so an error leaks nothing).
 */
static void read_items(lua_State *L, int first, const char *fname, mo_ckpt_item **items_out,
                       const mo_ckpt_raw *const **raws_out, size_t *n_out, mo_ckpt_meta **meta_out,
                       size_t *nmeta_out)
{
    luaL_checktype(L, first, LUA_TTABLE);
    luaL_checktype(L, first + 1, LUA_TTABLE);
    int has_meta = !lua_isnoneornil(L, first + 2);
    if (has_meta) luaL_checktype(L, first + 2, LUA_TTABLE);
    lua_Unsigned n = lua_rawlen(L, first), nt = lua_rawlen(L, first + 1);
    if (n != nt)
        luaL_error(L, "%s: %I names but %I tensors", fname, (lua_Integer)n, (lua_Integer)nt);
    size_t nmeta = 0;
    if (has_meta) {
        lua_pushnil(L);
        while (lua_next(L, first + 2)) {
            nmeta++;
            lua_pop(L, 1);
        }
    }
    /* both lists are far below 2^40 entries (they live in Lua tables) */
    /* items, then meta, then the raw items of lean state objects and their pointers */
    size_t bytes = (size_t)n * (sizeof(mo_ckpt_item) + sizeof(mo_ckpt_raw) + sizeof(mo_ckpt_raw *)) +
                   nmeta * sizeof(mo_ckpt_meta) + 1;
    char *block = (char *)lua_newuserdatauv(L, bytes, 0);
    mo_ckpt_item *items = (mo_ckpt_item *)(void *)block;
    mo_ckpt_meta *meta = (mo_ckpt_meta *)(void *)(block + (size_t)n * sizeof(mo_ckpt_item));
    mo_ckpt_raw *raw = (mo_ckpt_raw *)(void *)(block + (size_t)n * sizeof(mo_ckpt_item) +
                                               nmeta * sizeof(mo_ckpt_meta));
    const mo_ckpt_raw **raws = (const mo_ckpt_raw **)(void *)(raw + n);
    for (lua_Unsigned i = 0; i < n; i++) {
        /* the strings and tensors stay alive: they are held by the argument tables */
        lua_rawgeti(L, first, (lua_Integer)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: name #%I must be a string, got %s", fname, (lua_Integer)i + 1,
                       luaL_typename(L, -1));
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len)
            luaL_error(L, "%s: name #%I contains a NUL byte", fname, (lua_Integer)i + 1);
        lua_pop(L, 1);
        lua_rawgeti(L, first + 1, (lua_Integer)i + 1);
        items[i].name = s;
        raws[i] = NULL;
        /* a lean optimizer state buffer: its codes as BF16, I8 or U8 (its int8 scales are
           another entry, a float32 tensor that lua/moonopt/checkpoint.lua adds) */
        mo__lean_ud *lean = mo__tolean(L, -1);
        if (lean != NULL) {
            if (!lean->s.codes) luaL_error(L, "%s: '%s': lean state has been freed", fname, s);
            raw[i].dtype = lean->s.dtype == MO_STATE_BFLOAT16 ? "BF16"
                           : lean->s.sign == MO_LEAN_SIGNED ? "I8" : "U8";
            raw[i].ndim = lean->ndim;
            memcpy(raw[i].shape, lean->shape, sizeof raw[i].shape);
            raw[i].data = lean->s.codes;
            raws[i] = &raw[i];
            items[i].tensor = NULL;
            lua_pop(L, 1);
            continue;
        }
        mo_tensor *t = mo__totensor(L, -1);
        if (t == NULL)
            luaL_error(L, "%s: '%s' must be a %s, got %s", fname, s, MO_TENSOR_MT, luaL_typename(L, -1));
        if (!mo_tensor_alive(t)) luaL_error(L, "%s: '%s': tensor has been freed", fname, s);
        lua_pop(L, 1);
        items[i].tensor = t;
    }
    size_t k = 0;
    if (has_meta) {
        lua_pushnil(L);
        while (lua_next(L, first + 2)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "%s: metadata must map strings to strings, got a %s key with a %s value",
                           fname, luaL_typename(L, -2), luaL_typename(L, -1));
            size_t kl, vl;
            const char *key = lua_tolstring(L, -2, &kl);
            const char *val = lua_tolstring(L, -1, &vl);
            if (strlen(key) != kl || strlen(val) != vl)
                luaL_error(L, "%s: metadata entry '%s' contains a NUL byte", fname, key);
            if (k < nmeta) {
                meta[k].key = key;
                meta[k].value = val;
                k++;
            }
            lua_pop(L, 1);
        }
    }
    *items_out = items;
    *raws_out = raws;
    *n_out = (size_t)n;
    *meta_out = meta;
    *nmeta_out = k;
}

static int f_ckpt_write(lua_State *L)
{
    const char *fname = opt_fname(L, 5, "ckpt_write");
    const char *path = check_cstring(L, 1, fname, "path");
    mo_ckpt_item *items;
    const mo_ckpt_raw *const *raws;
    mo_ckpt_meta *meta;
    size_t n, nmeta;
    read_items(L, 2, fname, &items, &raws, &n, &meta, &nmeta);
    char why[MO_CKPT_WHY_SIZE] = "";
    mo_status st = mo_ckpt_write_file_raw(path, items, raws, n, meta, nmeta, why, sizeof why);
    if (st != MO_OK) return luaL_error(L, "%s: %s: %s", fname, path, why[0] ? why : mo_status_str(st));
    return 0;
}

static int f_write_file(lua_State *L)
{
    const char *fname = opt_fname(L, 3, "write_file");
    const char *path = check_cstring(L, 1, fname, "path");
    if (lua_type(L, 2) != LUA_TSTRING) return mo__typeerror(L, 2, fname, "string");
    size_t len;
    const char *bytes = lua_tolstring(L, 2, &len); /* held by the stack slot */
    char why[MO_CKPT_WHY_SIZE] = "";
    mo_status st = mo_file_write(path, bytes, len, why, sizeof why);
    if (st != MO_OK) return luaL_error(L, "%s: %s: %s", fname, path, why[0] ? why : mo_status_str(st));
    return 0;
}

static int f_file_kind(lua_State *L)
{
    const char *kind = mo_file_kind(check_cstring(L, 1, "file_kind", "path"));
    if (kind)
        lua_pushstring(L, kind);
    else
        lua_pushnil(L);
    return 1;
}

/* ---- reading ---------------------------------------------------------------------------- */

/* What the core hands back, owned by a userdata until Lua has its own copies. */
typedef struct box {
    mo_ckpt *c;
    unsigned char *buf;
} box;

static int box_gc(lua_State *L)
{
    box *b = (box *)luaL_checkudata(L, 1, BOX_MT);
    mo_ckpt_free(b->c);
    mo_ckpt_buffer_free(b->buf);
    b->c = NULL;
    b->buf = NULL;
    return 0;
}

static box *push_box(lua_State *L)
{
    box *b = (box *)lua_newuserdatauv(L, sizeof *b, 0);
    b->c = NULL;
    b->buf = NULL;
    if (luaL_newmetatable(L, BOX_MT)) {
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return b;
}

static int f_ckpt_encode(lua_State *L)
{
    const char *fname = opt_fname(L, 4, "ckpt_encode");
    lua_settop(L, 4);
    /* The box first: read_items keeps raw pointers to names and tensors held only
     * by the argument tables, so nothing may allocate (and run a finalizer that
     * replaces their slots) between reading them and encoding. */
    box *b = push_box(L);
    mo_ckpt_item *items;
    const mo_ckpt_raw *const *raws;
    mo_ckpt_meta *meta;
    size_t n, nmeta;
    read_items(L, 1, fname, &items, &raws, &n, &meta, &nmeta);
    char why[MO_CKPT_WHY_SIZE] = "";
    size_t len = 0;
    mo_status st = mo_ckpt_encode_raw(&b->buf, &len, items, raws, n, meta, nmeta, why, sizeof why);
    if (st != MO_OK) return luaL_error(L, "%s: %s", fname, why[0] ? why : mo_status_str(st));
    lua_pushlstring(L, (const char *)b->buf, len);
    mo_ckpt_buffer_free(b->buf);
    b->buf = NULL;
    return 1;
}

/* Every tensor of a file within the binding's limit of 2^40 per size and in all
 * (a zero-element tensor {0, 2^40 + 1} passes the core's byte checks); raises
 * "<fname>: <where>tensor 'w' has shape {..}, above the limit of 2^40 per size". */
static void check_sizes(lua_State *L, const mo_ckpt *c, const char *fname, const char *path)
{
    for (size_t i = 0; i < mo_ckpt_count(c); i++) {
        const mo_tensor *t = mo_ckpt_tensor(c, i);
        int big = t->numel > (size_t)MO__MAX_SIZE;
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] > (size_t)MO__MAX_SIZE) big = 1;
        if (big) {
            char buf[MO__SHAPE_BUF];
            luaL_error(L, "%s: %s%stensor '%s' has shape %s, above the limit of 2^40 per size "
                       "and in all", fname, path ? path : "", path ? ": " : "", mo_ckpt_name(c, i),
                       mo__shapestr(t, buf));
        }
    }
}

/* Pushes tensors, meta, names, dtypes of the file in box b (at the top of the stack). */
static int push_result(lua_State *L, box *b, const char *fname, const char *path)
{
    const mo_ckpt *c = b->c;
    check_sizes(L, c, fname, path);
    size_t n = mo_ckpt_count(c);
    lua_createtable(L, 0, n < 1000000 ? (int)n : 0);        /* tensors */
    int tensors = lua_gettop(L);
    lua_createtable(L, 0, 4);                                /* meta */
    int meta = lua_gettop(L);
    lua_createtable(L, n < 1000000 ? (int)n : 0, 0);        /* names */
    int names = lua_gettop(L);
    lua_createtable(L, 0, n < 1000000 ? (int)n : 0);        /* dtypes */
    int dtypes = lua_gettop(L);
    for (size_t i = 0; i < n; i++) {
        const char *name = mo_ckpt_name(c, i);
        lua_pushstring(L, name);
        lua_rawseti(L, names, (lua_Integer)i + 1);
        lua_pushstring(L, mo_ckpt_dtype(c, i));
        lua_setfield(L, dtypes, name);
        mo_tensor *t = mo_lua_newtensor(L);
        mo_status st = mo_tensor_share(t, mo_ckpt_tensor(c, i));
        if (st != MO_OK) return mo__status_error(L, st, fname);
        mo__gc_account(L, t->numel);
        lua_setfield(L, tensors, name);
    }
    for (size_t i = 0; i < mo_ckpt_meta_count(c); i++) {
        lua_pushstring(L, mo_ckpt_meta_value(c, i));
        lua_setfield(L, meta, mo_ckpt_meta_key(c, i));
    }
    /* the tensors hold their own references: the parsed file can go now */
    mo_ckpt_free(b->c);
    b->c = NULL;
    return 4;
}

static int f_ckpt_read(lua_State *L)
{
    const char *fname = opt_fname(L, 2, "ckpt_read");
    const char *path = check_cstring(L, 1, fname, "path");
    box *b = push_box(L);
    char why[MO_CKPT_WHY_SIZE] = "";
    mo_status st = mo_ckpt_read_file(&b->c, path, NULL, why, sizeof why);
    if (st != MO_OK) return luaL_error(L, "%s: %s: %s", fname, path, why[0] ? why : mo_status_str(st));
    return push_result(L, b, fname, path);
}

static int f_ckpt_decode(lua_State *L)
{
    const char *fname = opt_fname(L, 2, "ckpt_decode");
    if (lua_type(L, 1) != LUA_TSTRING) return mo__typeerror(L, 1, fname, "string");
    size_t len;
    const char *bytes = lua_tolstring(L, 1, &len);
    box *b = push_box(L);
    char why[MO_CKPT_WHY_SIZE] = "";
    mo_status st = mo_ckpt_decode(&b->c, bytes, len, NULL, why, sizeof why);
    if (st != MO_OK) return luaL_error(L, "%s: %s", fname, why[0] ? why : mo_status_str(st));
    return push_result(L, b, fname, NULL);
}

static int f_crc32(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING) return mo__typeerror(L, 1, "crc32", "string");
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    lua_Integer start = 0;
    if (!lua_isnoneornil(L, 2)) {
        if (!lua_isinteger(L, 2) || lua_tointeger(L, 2) < 0 || lua_tointeger(L, 2) > 0xffffffffLL)
            return mo__argerror(L, 2, "crc32", "crc must be an integer in 0..2^32-1, got %s",
                                mo__describe(L, 2));
        start = lua_tointeger(L, 2);
    }
    lua_pushinteger(L, (lua_Integer)mo_crc32((uint32_t)start, s, len));
    return 1;
}

/* ---- the default generator's state ------------------------------------------------------ */

/* "xoshiro256**:" + the four state words + ":" + has_spare + ":" + the spare normal's bits. */
#define RNG_PREFIX "xoshiro256**:"
#define RNG_STATE_LEN (sizeof RNG_PREFIX - 1 + 64 + 1 + 1 + 1 + 16)

static int f_rng_get_state(lua_State *L)
{
    const mo_rng *r = mo__lua_rng(L);
    /* without a pending normal the spare slot is stale and never read: write 0, so
     * equal generator behaviour gives equal text */
    uint64_t spare = 0;
    if (r->has_spare) memcpy(&spare, &r->spare, sizeof spare);
    char buf[RNG_STATE_LEN + 1];
    snprintf(buf, sizeof buf, RNG_PREFIX "%016llx%016llx%016llx%016llx:%d:%016llx",
             (unsigned long long)r->s[0], (unsigned long long)r->s[1], (unsigned long long)r->s[2],
             (unsigned long long)r->s[3], r->has_spare ? 1 : 0, (unsigned long long)spare);
    lua_pushlstring(L, buf, RNG_STATE_LEN);
    return 1;
}

static int parse_hex64(const char *s, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return 0;
        x = x << 4 | d;
    }
    *v = x;
    return 1;
}

static int f_rng_set_state(lua_State *L)
{
    static const char fname[] = "rng_set_state";
    if (lua_type(L, 1) != LUA_TSTRING) return mo__typeerror(L, 1, fname, "string");
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    mo_rng r;
    memset(&r, 0, sizeof r);
    const char *p = s + sizeof RNG_PREFIX - 1;
    uint64_t spare = 0;
    int ok = len == RNG_STATE_LEN && memcmp(s, RNG_PREFIX, sizeof RNG_PREFIX - 1) == 0;
    for (int i = 0; ok && i < 4; i++) ok = parse_hex64(p + 16 * i, &r.s[i]);
    p += 64;
    ok = ok && p[0] == ':' && (p[1] == '0' || p[1] == '1') && p[2] == ':' && parse_hex64(p + 3, &spare);
    if (!ok)
        return mo__argerror(L, 1, fname,
                            "not a generator state (rng_get_state gives 'xoshiro256**:' followed by "
                            "64 hex digits, ':0:' or ':1:', and 16 hex digits)");
    if ((r.s[0] | r.s[1] | r.s[2] | r.s[3]) == 0)
        return mo__argerror(L, 1, fname, "the state words are all zero (xoshiro256** would only give zeros)");
    r.has_spare = p[1] == '1';
    memcpy(&r.spare, &spare, sizeof spare);
    if (r.has_spare && !isfinite(r.spare))
        return mo__argerror(L, 1, fname, "the stored normal is not finite");
    if (!r.has_spare) r.spare = 0.0;
    *mo__lua_rng(L) = r;
    return 0;
}

static const luaL_Reg checkpoint_functions[] = {
    {"ckpt_write", f_ckpt_write},
    {"ckpt_encode", f_ckpt_encode},
    {"ckpt_read", f_ckpt_read},
    {"ckpt_decode", f_ckpt_decode},
    {"write_file", f_write_file},
    {"file_kind", f_file_kind},
    {"crc32", f_crc32},
    {"rng_get_state", f_rng_get_state},
    {"rng_set_state", f_rng_set_state},
    {NULL, NULL},
};

void mo__open_checkpoint(lua_State *L)
{
    mo__setfuncs(L, checkpoint_functions);
}
