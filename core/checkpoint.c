/*
 * checkpoint.c - the safetensors format: writing (atomically) and reading
 * (defensively). The format and the guarantees are described in moonopt_ckpt.h.
 *
 * Writing makes two passes over the tensors' memory: the first computes the
 * CRC-32 of the data section, which the header (written before the data)
 * records; the second writes the bytes. Neither pass copies a tensor: a
 * contiguous row of a little-endian host goes to the CRC and the file as it
 * is, anything else through one STAGE-byte staging buffer.
 *
 * Reading parses the header with a small JSON parser that knows the
 * safetensors schema (so nesting is bounded by the schema, not by the input),
 * checks every tensor's dtype, shape and offsets against the file's size
 * BEFORE allocating anything for the data, then reads each tensor straight
 * into its own storage while updating the CRC. The file's declared sizes are
 * never trusted for an allocation the file's real size does not back.
 */
#include "moonopt_internal.h"
#include "moonopt_ckpt.h"
#include "file_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef MO_HAVE_ZLIB
#include <zlib.h>
#endif

/* Bytes per staging step: a multiple of every element size (8), small enough for L2. */
#define STAGE ((size_t)1 << 16)


/* ======================================================================== */
/* CRC-32 and byte order                                                    */
/* ======================================================================== */

uint32_t mo_crc32(uint32_t crc, const void *buf, size_t n)
{
    const unsigned char *p = buf;
#ifdef MO_HAVE_ZLIB
    /* zlib takes uInt lengths: feed huge buffers in pieces */
    while (n > 0) {
        uInt k = n > (size_t)1 << 30 ? (uInt)1 << 30 : (uInt)n;
        crc = (uint32_t)crc32((uLong)crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
#else
    /* bitwise, reflected polynomial 0xEDB88320: the same values as zlib's crc32 */
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
#endif
}

static int host_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void put_f32le(unsigned char *p, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(u >> (8 * i));
}

static void put_f64le(unsigned char *p, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(u >> (8 * i));
}

static uint32_t get_u32le(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64le(const unsigned char *p)
{
    return (uint64_t)get_u32le(p) | (uint64_t)get_u32le(p + 4) << 32;
}

static float f32_of_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE binary16 -> float (exact: every half is a float). */
static float f32_of_f16(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (uint32_t)(h >> 10) & 0x1fu;
    uint32_t man = (uint32_t)h & 0x3ffu;
    if (exp == 0x1f) return f32_of_bits(sign | 0x7f800000u | man << 13);  /* inf, NaN */
    if (exp != 0) return f32_of_bits(sign | (exp + 112u) << 23 | man << 13);
    if (man == 0) return f32_of_bits(sign);
    /* subnormal man * 2^-24: shift until the implicit bit (0x400) appears */
    uint32_t e = 113;
    while (!(man & 0x400u)) {
        man <<= 1;
        e--;
    }
    return f32_of_bits(sign | e << 23 | (man & 0x3ffu) << 13);
}

/* ======================================================================== */
/* Growable byte buffer                                                     */
/* ======================================================================== */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    int failed;   /* an allocation failed: later appends are ignored */
} strbuf;

static void sb_init(strbuf *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

static void sb_append(strbuf *b, const void *s, size_t n)
{
    if (b->failed) return;
    size_t need;
    if (mo_size_add(b->len, n + 1, &need) != MO_OK) {
        b->failed = 1;
        return;
    }
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) {
                cap = need;
                break;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(strbuf *b, const char *s)
{
    sb_append(b, s, strlen(s));
}

static void sb_putc(strbuf *b, char c)
{
    sb_append(b, &c, 1);
}

static void sb_putu(strbuf *b, uint64_t v)
{
    char num[24];
    int k = snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    sb_append(b, num, (size_t)k);
}

/* Takes the text out of b (NUL-terminated; "" when empty); b is left empty. */
static char *sb_take(strbuf *b)
{
    if (!b->p) sb_append(b, "", 0);
    char *p = b->failed ? NULL : b->p;
    if (!p) free(b->p);
    sb_init(b);
    return p;
}

/* ======================================================================== */
/* UTF-8                                                                    */
/* ======================================================================== */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 when it is not
 * one (overlong forms, surrogates and code points past U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return len;
}

static int utf8_valid(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(s + i, n - i);
        if (k == 0) return 0;
        i += k;
    }
    return 1;
}

static void utf8_put(strbuf *b, uint32_t cp)
{
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | cp >> 6);
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | cp >> 12);
        u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | cp >> 18);
        u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        u[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    sb_append(b, u, n);
}

/* A JSON string literal for valid UTF-8 text s (quotes, backslashes and control characters escaped). */
static void sb_json_string(strbuf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    sb_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            sb_putc(b, '\\');
            sb_putc(b, (char)c);
        } else if (c == '\n') {
            sb_puts(b, "\\n");
        } else if (c == '\t') {
            sb_puts(b, "\\t");
        } else if (c == '\r') {
            sb_puts(b, "\\r");
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sb_append(b, e, 6);
        } else {
            sb_putc(b, (char)c);
        }
    }
    sb_putc(b, '"');
}

/* ======================================================================== */
/* Writing                                                                  */
/* ======================================================================== */

typedef mo_status (*chunk_fn)(void *ctx, const unsigned char *p, size_t n);

/* Hands tensor t's elements to fn as little-endian bytes of its dtype (F32 or F64),
 * row-major. STAGE is a multiple of both element sizes. */
static mo_status each_chunk(const mo_tensor *t, unsigned char *stage, chunk_fn fn, void *ctx)
{
    if (t->numel == 0) return MO_OK;
    const int le = host_little_endian();
    mo__iter it;
    const mo_tensor *ops[1] = {t};
    mo__iter_init(&it, 1, ops);
    size_t used = 0;
    for (size_t r = 0; r < it.rows; r++, mo__iter_next(&it)) {
        const ptrdiff_t s = it.inner[0];   /* this row: it.n elements, it.inner[0] apart */
        const size_t n = it.n, es = mo_dtype_size(t->dtype);
        if (le && s == 1) {
            if (used) {
                MO_TRY(fn(ctx, stage, used));
                used = 0;
            }
            MO_TRY(fn(ctx, (const unsigned char *)it.p[0], n * es));
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            if (t->dtype == MO_FLOAT64)
                put_f64le(stage + used, ((const double *)it.p[0])[(ptrdiff_t)k * s]);
            else
                put_f32le(stage + used, ((const float *)it.p[0])[(ptrdiff_t)k * s]);
            used += es;
            if (used == STAGE) {
                MO_TRY(fn(ctx, stage, used));
                used = 0;
            }
        }
    }
    if (used) MO_TRY(fn(ctx, stage, used));
    return MO_OK;
}

/* Raw items: bytes per element by dtype name (0: not a raw dtype). */
static size_t raw_size(const char *dt)
{
    if (!dt) return 0;
    if (strcmp(dt, "BF16") == 0) return 2;
    if (strcmp(dt, "I8") == 0 || strcmp(dt, "U8") == 0) return 1;
    return 0;
}

static mo_status raw_numel(const mo_ckpt_raw *r, size_t *n)
{
    if (r->ndim < 0 || r->ndim > MO_MAX_DIMS) return MO_ERR_DIMS;
    return mo_shape_numel(r->ndim, r->shape, n);
}

/* Hands a raw item's elements to fn as little-endian bytes. */
static mo_status raw_chunks(const mo_ckpt_raw *r, unsigned char *stage, chunk_fn fn, void *ctx)
{
    size_t n, es = raw_size(r->dtype);
    MO_TRY(raw_numel(r, &n));
    if (es == 1 || host_little_endian()) return n ? fn(ctx, r->data, n * es) : MO_OK;
    const uint16_t *h = r->data;
    size_t used = 0;
    for (size_t k = 0; k < n; k++) {
        stage[used++] = (unsigned char)(h[k] & 0xffu);
        stage[used++] = (unsigned char)(h[k] >> 8);
        if (used == STAGE) {
            MO_TRY(fn(ctx, stage, used));
            used = 0;
        }
    }
    return used ? fn(ctx, stage, used) : MO_OK;
}

/* Item i is raws[i] when raws and raws[i] are non-NULL, else items[i].tensor. */
#define RAW_AT(raws, i) ((raws) ? (raws)[i] : NULL)

static mo_status item_chunks(const mo_ckpt_item *it, const mo_ckpt_raw *r, unsigned char *stage,
                             chunk_fn fn, void *ctx)
{
    return r ? raw_chunks(r, stage, fn, ctx) : each_chunk(it->tensor, stage, fn, ctx);
}

static mo_status crc_chunk(void *ctx, const unsigned char *p, size_t n)
{
    uint32_t *crc = ctx;
    *crc = mo_crc32(*crc, p, n);
    return MO_OK;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first string that appears twice among n, or NULL (sorts a copy of the pointers). */
static mo_status find_duplicate(const char *const *s, size_t n, const char **dup)
{
    *dup = NULL;
    if (n < 2) return MO_OK;
    size_t bytes;
    MO_TRY(mo_size_mul(n, sizeof *s, &bytes));
    const char **v = malloc(bytes);
    if (!v) return MO_ERR_NOMEM;
    memcpy(v, s, bytes);
    qsort(v, n, sizeof *v, cmp_str_ptr);
    for (size_t i = 1; i < n && !*dup; i++)
        if (strcmp(v[i - 1], v[i]) == 0) *dup = v[i];
    free(v);
    return MO_OK;
}

/* The bytes item `it` (or raw item r) takes in the data section. */
static mo_status item_bytes(const mo_ckpt_item *it, const mo_ckpt_raw *r, size_t *bytes)
{
    if (!r) return mo_size_mul(it->tensor->numel, mo_dtype_size(it->tensor->dtype), bytes);
    size_t n;
    MO_TRY(raw_numel(r, &n));
    return mo_size_mul(n, raw_size(r->dtype), bytes);
}

/*
 * Checks the writer's arguments and builds the header (length prefix
 * included, padded so the data section starts 8-byte aligned). *data_len gets
 * the data section's size.
 */
static mo_status build_header(strbuf *hb, size_t *data_len, const mo_ckpt_item *items,
                              const mo_ckpt_raw *const *raws, size_t n,
                              const mo_ckpt_meta *meta, size_t nmeta, unsigned char *stage,
                              char *why, size_t why_size)
{
    if ((n > 0 && !items) || (nmeta > 0 && !meta)) {
        mo__say(why, why_size, "NULL list of tensors or metadata");
        return MO_ERR_ARG;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = items[i].name;
        const mo_ckpt_raw *r = RAW_AT(raws, i);
        if (!name || (r ? !r->data || !raw_size(r->dtype) : !items[i].tensor)) {
            mo__say(why, why_size, "tensor #%zu: NULL name or tensor (or a raw item without "
                    "data or of a dtype other than BF16, I8, U8)", i + 1);
            return MO_ERR_ARG;
        }
        if (!*name || strcmp(name, "__metadata__") == 0 || !utf8_valid(name)) {
            mo__say(why, why_size, "tensor #%zu: the name '%.80s' is %s", i + 1, name,
                *name ? (utf8_valid(name) ? "reserved" : "not valid UTF-8") : "empty");
            return MO_ERR_ARG;
        }
        if (!r && !mo_tensor_alive(items[i].tensor)) {
            mo__say(why, why_size, "tensor '%.80s' has been freed", name);
            return MO_ERR_FREED;
        }
    }
    for (size_t i = 0; i < nmeta; i++) {
        const char *k = meta[i].key, *v = meta[i].value;
        if (!k || !v) {
            mo__say(why, why_size, "metadata entry #%zu: NULL key or value", i + 1);
            return MO_ERR_ARG;
        }
        if (strcmp(k, MO_CKPT_CRC_KEY) == 0) {
            mo__say(why, why_size, "metadata key '%s' is reserved (the writer computes it)", k);
            return MO_ERR_ARG;
        }
        if (!utf8_valid(k) || !utf8_valid(v)) {
            mo__say(why, why_size, "metadata entry '%.80s': %s is not valid UTF-8", k,
                utf8_valid(k) ? "the value" : "the key");
            return MO_ERR_ARG;
        }
    }
    /* duplicates: names among themselves, keys among themselves */
    size_t most = n > nmeta ? n : nmeta, bytes;
    MO_TRY(mo_size_mul(most ? most : 1, sizeof(const char *), &bytes));
    const char **v = malloc(bytes);
    if (!v) return MO_ERR_NOMEM;
    const char *dup = NULL;
    mo_status st;
    for (size_t i = 0; i < n; i++) v[i] = items[i].name;
    st = find_duplicate(v, n, &dup);
    if (st == MO_OK && dup) {
        mo__say(why, why_size, "duplicate tensor name '%.80s'", dup);
        st = MO_ERR_ARG;
    }
    if (st == MO_OK) {
        for (size_t i = 0; i < nmeta; i++) v[i] = meta[i].key;
        st = find_duplicate(v, nmeta, &dup);
        if (st == MO_OK && dup) {
            mo__say(why, why_size, "duplicate metadata key '%.80s'", dup);
            st = MO_ERR_ARG;
        }
    }
    free(v);
    if (st != MO_OK) return st;

    /* the data section's size and checksum */
    size_t total = 0;
    uint32_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        size_t tb;
        MO_TRY(item_bytes(&items[i], RAW_AT(raws, i), &tb));
        MO_TRY(mo_size_add(total, tb, &total));
        MO_TRY(item_chunks(&items[i], RAW_AT(raws, i), stage, crc_chunk, &crc));
    }
    *data_len = total;

    /* 8 placeholder bytes for the length, then the JSON */
    sb_append(hb, "\0\0\0\0\0\0\0\0", 8);
    sb_puts(hb, "{\"__metadata__\":{");
    for (size_t i = 0; i < nmeta; i++) {
        sb_json_string(hb, meta[i].key);
        sb_putc(hb, ':');
        sb_json_string(hb, meta[i].value);
        sb_putc(hb, ',');
    }
    char crcbuf[16];
    snprintf(crcbuf, sizeof crcbuf, "%08lx", (unsigned long)crc);
    sb_json_string(hb, MO_CKPT_CRC_KEY);
    sb_putc(hb, ':');
    sb_json_string(hb, crcbuf);
    sb_putc(hb, '}');
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const mo_ckpt_raw *r = RAW_AT(raws, i);
        const mo_tensor *t = r ? NULL : items[i].tensor;
        int ndim = t ? t->ndim : r->ndim;
        const size_t *shape = t ? t->shape : r->shape;
        sb_putc(hb, ',');
        sb_json_string(hb, items[i].name);
        sb_puts(hb, ":{\"dtype\":\"");
        sb_puts(hb, t ? (t->dtype == MO_FLOAT64 ? "F64" : "F32") : r->dtype);
        sb_puts(hb, "\",\"shape\":[");
        for (int d = 0; d < ndim; d++) {
            if (d) sb_putc(hb, ',');
            sb_putu(hb, shape[d]);
        }
        sb_puts(hb, "],\"data_offsets\":[");
        sb_putu(hb, off);
        sb_putc(hb, ',');
        size_t tb = 0;
        (void)item_bytes(&items[i], r, &tb);   /* succeeded above; <= total */
        off += tb;
        sb_putu(hb, off);
        sb_puts(hb, "]}");
    }
    sb_putc(hb, '}');
    while (hb->len % 8 != 0) sb_putc(hb, ' ');
    if (hb->failed) {
        mo__say(why, why_size, "out of memory");
        return MO_ERR_NOMEM;
    }
    uint64_t hlen = (uint64_t)(hb->len - 8);
    if (hlen > MO_CKPT_MAX_HEADER) {
        mo__say(why, why_size, "the header would be %llu bytes, over the limit of %llu",
            (unsigned long long)hlen, (unsigned long long)MO_CKPT_MAX_HEADER);
        return MO_ERR_ARG;
    }
    for (int i = 0; i < 8; i++) hb->p[i] = (char)(unsigned char)(hlen >> (8 * i));
    return MO_OK;
}

/* Where the file image goes: a FILE, or a memory block of known size. */
typedef struct sink {
    FILE *fp;
    unsigned char *mem;
    size_t len;
    char *why;
    size_t why_size;
} sink;

static mo_status sink_write(void *ctx, const unsigned char *p, size_t n)
{
    sink *k = ctx;
    if (k->mem) {
        memcpy(k->mem + k->len, p, n);
        k->len += n;
        return MO_OK;
    }
    if (n > 0 && fwrite(p, 1, n, k->fp) != n) {
        mo__say_errno(k->why, k->why_size, "write error", NULL, errno);
        return MO_ERR_IO;
    }
    return MO_OK;
}

static mo_status write_image(sink *k, const strbuf *hb, const mo_ckpt_item *items,
                             const mo_ckpt_raw *const *raws, size_t n, unsigned char *stage)
{
    MO_TRY(sink_write(k, (const unsigned char *)hb->p, hb->len));
    for (size_t i = 0; i < n; i++) MO_TRY(item_chunks(&items[i], RAW_AT(raws, i), stage, sink_write, k));
    return MO_OK;
}

mo_status mo_ckpt_encode(unsigned char **out, size_t *len, const mo_ckpt_item *items, size_t n,
                         const mo_ckpt_meta *meta, size_t nmeta, char *why, size_t why_size)
{
    return mo_ckpt_encode_raw(out, len, items, NULL, n, meta, nmeta, why, why_size);
}

mo_status mo_ckpt_encode_raw(unsigned char **out, size_t *len, const mo_ckpt_item *items,
                             const mo_ckpt_raw *const *raws, size_t n, const mo_ckpt_meta *meta,
                             size_t nmeta, char *why, size_t why_size)
{
    if (!out || !len) {
        mo__say(why, why_size, "NULL output");
        return MO_ERR_ARG;
    }
    *out = NULL;
    *len = 0;
    strbuf hb;
    sb_init(&hb);
    size_t data_len = 0, total = 0;
    unsigned char *stage = malloc(STAGE);
    mo_status st = stage ? MO_OK : MO_ERR_NOMEM;
    if (st == MO_OK) st = build_header(&hb, &data_len, items, raws, n, meta, nmeta, stage, why, why_size);
    if (st == MO_OK) st = mo_size_add(hb.len, data_len, &total);
    sink k = {NULL, NULL, 0, why, why_size};
    if (st == MO_OK) {
        k.mem = malloc(total ? total : 1);
        if (!k.mem) st = MO_ERR_NOMEM;
    }
    if (st == MO_OK) st = write_image(&k, &hb, items, raws, n, stage);
    if (st == MO_OK) {
        *out = k.mem;
        *len = total;
    } else {
        free(k.mem);
        if (st == MO_ERR_NOMEM || st == MO_ERR_OVERFLOW) mo__say(why, why_size, "%s", mo_status_str(st));
    }
    free(hb.p);
    free(stage);
    return st;
}

void mo_ckpt_buffer_free(unsigned char *buf)
{
    free(buf);
}

mo_status mo_ckpt_write_file(const char *path, const mo_ckpt_item *items, size_t n,
                             const mo_ckpt_meta *meta, size_t nmeta, char *why, size_t why_size)
{
    return mo_ckpt_write_file_raw(path, items, NULL, n, meta, nmeta, why, why_size);
}

mo_status mo_ckpt_write_file_raw(const char *path, const mo_ckpt_item *items,
                                 const mo_ckpt_raw *const *raws, size_t n, const mo_ckpt_meta *meta,
                                 size_t nmeta, char *why, size_t why_size)
{
    if (!path || !*path) {
        mo__say(why, why_size, "no file name");
        return MO_ERR_ARG;
    }
    strbuf hb;
    sb_init(&hb);
    size_t data_len = 0;
    unsigned char *stage = malloc(STAGE);
    mo_status st = stage ? MO_OK : MO_ERR_NOMEM;
    if (st == MO_OK) st = build_header(&hb, &data_len, items, raws, n, meta, nmeta, stage, why, why_size);

    /* temporary file, fsync, rename, stale temporaries removed: core/file.c */
    mo__atomic_file w = {NULL, NULL, path};
    if (st == MO_OK) st = mo__atomic_begin(&w, path, why, why_size);
    if (st == MO_OK) {
        sink k = {w.fp, NULL, 0, why, why_size};
        st = write_image(&k, &hb, items, raws, n, stage);
    }
    st = mo__atomic_end(&w, st, why, why_size);
    if (st == MO_ERR_NOMEM || st == MO_ERR_OVERFLOW) mo__say(why, why_size, "%s", mo_status_str(st));
    free(hb.p);
    free(stage);
    return st;
}

/* ======================================================================== */
/* Reading: the parsed file                                                 */
/* ======================================================================== */

/* I64 (PyTorch's BatchNorm num_batches_tracked) is read into float64, exact up to 2^53; I8 and
 * U8 (lean optimizer state codes) into float32. */
enum { DT_F32, DT_F64, DT_F16, DT_BF16, DT_I64, DT_I8, DT_U8, DT_COUNT };
static const char *const dtype_names[] = {"F32", "F64", "F16", "BF16", "I64", "I8", "U8"};
static const size_t dtype_sizes[] = {4, 8, 2, 2, 8, 1, 1};

typedef struct entry {
    char *name;
    int dtype;
    int ndim;
    size_t shape[MO_MAX_DIMS];
    size_t begin, end;     /* data_offsets */
    size_t order;          /* position in the header (ties in the data order) */
    mo_tensor t;
} entry;

struct mo_ckpt {
    entry *e;              /* count entries, in data order */
    size_t count, cap;
    char **keys, **vals;   /* nmeta metadata entries, in header order */
    size_t nmeta, meta_cap;
};

void mo_ckpt_free(mo_ckpt *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->count; i++) {
        free(c->e[i].name);
        mo_tensor_release(&c->e[i].t);
    }
    for (size_t i = 0; i < c->nmeta; i++) {
        free(c->keys[i]);
        free(c->vals[i]);
    }
    free(c->e);
    free(c->keys);
    free(c->vals);
    free(c);
}

size_t mo_ckpt_count(const mo_ckpt *c) { return c ? c->count : 0; }

const char *mo_ckpt_name(const mo_ckpt *c, size_t i)
{
    return c && i < c->count ? c->e[i].name : NULL;
}

const mo_tensor *mo_ckpt_tensor(const mo_ckpt *c, size_t i)
{
    return c && i < c->count ? &c->e[i].t : NULL;
}

const char *mo_ckpt_dtype(const mo_ckpt *c, size_t i)
{
    return c && i < c->count ? dtype_names[c->e[i].dtype] : NULL;
}

size_t mo_ckpt_find(const mo_ckpt *c, const char *name)
{
    if (!c || !name) return MO_CKPT_NONE;
    for (size_t i = 0; i < c->count; i++)
        if (strcmp(c->e[i].name, name) == 0) return i;
    return MO_CKPT_NONE;
}

size_t mo_ckpt_meta_count(const mo_ckpt *c) { return c ? c->nmeta : 0; }

const char *mo_ckpt_meta_key(const mo_ckpt *c, size_t i)
{
    return c && i < c->nmeta ? c->keys[i] : NULL;
}

const char *mo_ckpt_meta_value(const mo_ckpt *c, size_t i)
{
    return c && i < c->nmeta ? c->vals[i] : NULL;
}

const char *mo_ckpt_meta_get(const mo_ckpt *c, const char *key)
{
    if (!c || !key) return NULL;
    for (size_t i = 0; i < c->nmeta; i++)
        if (strcmp(c->keys[i], key) == 0) return c->vals[i];
    return NULL;
}

/* ======================================================================== */
/* Reading: the header's JSON                                               */
/* ======================================================================== */

typedef struct jparse {
    const unsigned char *s;
    size_t n, pos;
    char *why;
    size_t why_size;
} jparse;

static mo_status jfail(jparse *p, const char *what)
{
    mo__say(p->why, p->why_size, "header JSON: %s at byte %zu of the header", what, p->pos);
    return MO_ERR_FORMAT;
}

/* The next non-blank byte (not consumed), or -1 at the end. */
static int jpeek(jparse *p)
{
    while (p->pos < p->n) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return c;
        p->pos++;
    }
    return -1;
}

static mo_status jexpect(jparse *p, int c, const char *what)
{
    if (jpeek(p) != c) return jfail(p, what);
    p->pos++;
    return MO_OK;
}

static int hexval(unsigned c)
{
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

/* Four hex digits at p->pos. */
static int jhex4(jparse *p, uint32_t *v)
{
    if (p->n - p->pos < 4) return 0;
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[p->pos + (size_t)i]);
        if (h < 0) return 0;
        x = x << 4 | (uint32_t)h;
    }
    p->pos += 4;
    *v = x;
    return 1;
}

/* A string literal, decoded into a new NUL-terminated string *out. */
static mo_status jstring(jparse *p, char **out)
{
    *out = NULL;
    if (jpeek(p) != '"') return jfail(p, "expected a string");
    p->pos++;
    strbuf b;
    sb_init(&b);
    for (;;) {
        if (p->pos >= p->n) {
            free(b.p);
            return jfail(p, "unterminated string");
        }
        unsigned c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) {
            free(b.p);
            return jfail(p, "control character in a string");
        }
        if (c != '\\') {
            size_t k = utf8_seq(p->s + p->pos, p->n - p->pos);
            if (k == 0) {
                free(b.p);
                return jfail(p, "invalid UTF-8");
            }
            sb_append(&b, p->s + p->pos, k);
            p->pos += k;
            continue;
        }
        p->pos++;
        if (p->pos >= p->n) {
            free(b.p);
            return jfail(p, "unterminated string");
        }
        c = p->s[p->pos++];
        uint32_t cp;
        switch (c) {
        case '"': case '\\': case '/': sb_putc(&b, (char)c); break;
        case 'b': sb_putc(&b, '\b'); break;
        case 'f': sb_putc(&b, '\f'); break;
        case 'n': sb_putc(&b, '\n'); break;
        case 'r': sb_putc(&b, '\r'); break;
        case 't': sb_putc(&b, '\t'); break;
        case 'u':
            if (!jhex4(p, &cp)) {
                free(b.p);
                return jfail(p, "bad \\u escape");
            }
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                free(b.p);
                return jfail(p, "unpaired surrogate in a \\u escape");
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                    free(b.p);
                    return jfail(p, "unpaired surrogate in a \\u escape");
                }
                p->pos += 2;
                if (!jhex4(p, &lo) || lo < 0xdc00 || lo > 0xdfff) {
                    free(b.p);
                    return jfail(p, "unpaired surrogate in a \\u escape");
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (cp == 0) {
                free(b.p);
                return jfail(p, "\\u0000 (NUL) in a string");
            }
            utf8_put(&b, cp);
            break;
        default:
            free(b.p);
            return jfail(p, "bad escape in a string");
        }
    }
    *out = sb_take(&b);
    if (!*out) {
        mo__say(p->why, p->why_size, "out of memory");
        return MO_ERR_NOMEM;
    }
    return MO_OK;
}

/* A non-negative integer (digits only: no sign, fraction or exponent). `what` names it. */
static mo_status juint(jparse *p, size_t *v, const char *name, const char *what)
{
    int c = jpeek(p);
    if (c < '0' || c > '9') {
        mo__say(p->why, p->why_size, "tensor '%.80s': %s must be a non-negative integer (header byte %zu)",
            name, what, p->pos);
        return MO_ERR_FORMAT;
    }
    size_t start = p->pos;
    uint64_t x = 0;
    int overflow = 0;
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        unsigned d = p->s[p->pos] - '0';
        if (x > (UINT64_MAX - d) / 10) overflow = 1;
        else x = x * 10 + d;
        p->pos++;
    }
    if (p->pos < p->n && (p->s[p->pos] == '.' || p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        mo__say(p->why, p->why_size, "tensor '%.80s': %s must be an integer (header byte %zu)", name, what,
            start);
        return MO_ERR_FORMAT;
    }
    if (p->pos - start > 1 && p->s[start] == '0') {
        p->pos = start;
        return jfail(p, "number with a leading zero");
    }
    if (overflow || x > (uint64_t)SIZE_MAX) {
        mo__say(p->why, p->why_size, "tensor '%.80s': %s is too large (header byte %zu)", name, what, start);
        return MO_ERR_FORMAT;
    }
    *v = (size_t)x;
    return MO_OK;
}

/* {"dtype": "F32", "shape": [..], "data_offsets": [b, e]} into e (e->name is set). */
static mo_status jtensor(jparse *p, entry *e)
{
    const char *name = e->name;
    MO_TRY(jexpect(p, '{', "expected '{' (a tensor's description)"));
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    if (jpeek(p) == '}') {
        p->pos++;
    } else {
        for (;;) {
            char *key;
            MO_TRY(jstring(p, &key));
            mo_status st = jexpect(p, ':', "expected ':'");
            int which = strcmp(key, "dtype") == 0 ? 0 : strcmp(key, "shape") == 0 ? 1
                      : strcmp(key, "data_offsets") == 0 ? 2 : -1;
            if (st == MO_OK && which < 0) {
                mo__say(p->why, p->why_size, "tensor '%.80s': unknown field '%.60s'", name, key);
                st = MO_ERR_FORMAT;
            }
            int *have = which == 0 ? &have_dtype : which == 1 ? &have_shape : &have_offsets;
            if (st == MO_OK && *have) {
                mo__say(p->why, p->why_size, "tensor '%.80s': field '%s' appears twice", name, key);
                st = MO_ERR_FORMAT;
            }
            free(key);
            MO_TRY(st);
            *have = 1;
            if (which == 0) {
                char *dt;
                MO_TRY(jstring(p, &dt));
                int k = -1;
                for (int i = 0; i < DT_COUNT; i++)
                    if (strcmp(dt, dtype_names[i]) == 0) k = i;
                if (k < 0) {
                    static const char *const other[] = {"BOOL", "I16", "U16", "I32", "U32",
                                                        "U64", "F8_E5M2", "F8_E4M3"};
                    int known = 0;
                    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
                        if (strcmp(dt, other[i]) == 0) known = 1;
                    if (known)
                        mo__say(p->why, p->why_size,
                            "tensor '%.80s': dtype %s is not supported (moonopt reads F32, F64, F16, BF16, I64, I8, U8)",
                            name, dt);
                    else
                        mo__say(p->why, p->why_size, "tensor '%.80s': unknown dtype '%.40s'", name, dt);
                    free(dt);
                    return MO_ERR_FORMAT;
                }
                free(dt);
                e->dtype = k;
            } else if (which == 1) {
                MO_TRY(jexpect(p, '[', "expected '[' (a shape)"));
                e->ndim = 0;
                if (jpeek(p) == ']') {
                    p->pos++;
                } else {
                    for (;;) {
                        if (e->ndim == MO_MAX_DIMS) {
                            mo__say(p->why, p->why_size, "tensor '%.80s': more than %d dimensions", name,
                                MO_MAX_DIMS);
                            return MO_ERR_DIMS;
                        }
                        MO_TRY(juint(p, &e->shape[e->ndim], name, "a size in 'shape'"));
                        e->ndim++;
                        int c = jpeek(p);
                        p->pos++;
                        if (c == ']') break;
                        if (c != ',') {
                            p->pos--;
                            return jfail(p, "expected ',' or ']' in a shape");
                        }
                    }
                }
            } else {
                MO_TRY(jexpect(p, '[', "expected '[' (data_offsets)"));
                MO_TRY(juint(p, &e->begin, name, "data_offsets[0]"));
                MO_TRY(jexpect(p, ',', "expected ',' (data_offsets holds two numbers)"));
                MO_TRY(juint(p, &e->end, name, "data_offsets[1]"));
                MO_TRY(jexpect(p, ']', "expected ']' (data_offsets holds two numbers)"));
            }
            int c = jpeek(p);
            p->pos++;
            if (c == '}') break;
            if (c != ',') {
                p->pos--;
                return jfail(p, "expected ',' or '}' in a tensor's description");
            }
        }
    }
    if (!have_dtype || !have_shape || !have_offsets) {
        mo__say(p->why, p->why_size, "tensor '%.80s': missing '%s'", name,
            !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
        return MO_ERR_FORMAT;
    }
    return MO_OK;
}

static mo_status add_meta(mo_ckpt *c, char *key, char *val)
{
    if (c->nmeta == c->meta_cap) {
        size_t cap = c->meta_cap ? 2 * c->meta_cap : 8;
        char **k = realloc(c->keys, cap * sizeof *k);
        if (k) c->keys = k;
        char **v = k ? realloc(c->vals, cap * sizeof *v) : NULL;
        if (v) c->vals = v;
        if (!k || !v) return MO_ERR_NOMEM;
        c->meta_cap = cap;
    }
    c->keys[c->nmeta] = key;
    c->vals[c->nmeta] = val;
    c->nmeta++;
    return MO_OK;
}

/* "__metadata__": {"key": "value", ...} or null. */
static mo_status jmetadata(jparse *p, mo_ckpt *c)
{
    if (jpeek(p) == 'n') {
        if (p->n - p->pos >= 4 && memcmp(p->s + p->pos, "null", 4) == 0) {
            p->pos += 4;
            return MO_OK;
        }
        return jfail(p, "expected '{' or null (__metadata__)");
    }
    MO_TRY(jexpect(p, '{', "expected '{' (__metadata__)"));
    if (jpeek(p) == '}') {
        p->pos++;
        return MO_OK;
    }
    for (;;) {
        char *key, *val;
        MO_TRY(jstring(p, &key));
        mo_status st = jexpect(p, ':', "expected ':'");
        if (st == MO_OK && jpeek(p) != '"') {
            mo__say(p->why, p->why_size, "__metadata__: the value of '%.80s' is not a string", key);
            st = MO_ERR_FORMAT;
        }
        if (st == MO_OK) st = jstring(p, &val);
        if (st == MO_OK) {
            st = add_meta(c, key, val);
            if (st != MO_OK) {
                free(val);
                mo__say(p->why, p->why_size, "out of memory");
            }
        }
        if (st != MO_OK) {
            free(key);
            return st;
        }
        int ch = jpeek(p);
        p->pos++;
        if (ch == '}') return MO_OK;
        if (ch != ',') {
            p->pos--;
            return jfail(p, "expected ',' or '}' in __metadata__");
        }
    }
}

static mo_status add_entry(mo_ckpt *c, entry **out)
{
    if (c->count == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        entry *e = realloc(c->e, cap * sizeof *e);
        if (!e) return MO_ERR_NOMEM;
        c->e = e;
        c->cap = cap;
    }
    entry *e = &c->e[c->count++];
    memset(e, 0, sizeof *e);
    mo_tensor_init(&e->t);
    e->order = c->count - 1;
    *out = e;
    return MO_OK;
}

/* The whole header: one object of tensors and __metadata__, then only blanks. */
static mo_status parse_header(jparse *p, mo_ckpt *c)
{
    MO_TRY(jexpect(p, '{', "expected '{' (the header is a JSON object)"));
    int have_meta = 0;
    if (jpeek(p) == '}') {
        p->pos++;
    } else {
        for (;;) {
            char *key;
            MO_TRY(jstring(p, &key));
            mo_status st = jexpect(p, ':', "expected ':'");
            if (st == MO_OK && strcmp(key, "__metadata__") == 0) {
                free(key);
                if (have_meta) {
                    mo__say(p->why, p->why_size, "__metadata__ appears twice");
                    return MO_ERR_FORMAT;
                }
                have_meta = 1;
                MO_TRY(jmetadata(p, c));
            } else {
                entry *e = NULL;
                if (st == MO_OK) st = add_entry(c, &e);
                if (st != MO_OK) {
                    free(key);
                    return st;
                }
                e->name = key;   /* freed with c */
                MO_TRY(jtensor(p, e));
            }
            int ch = jpeek(p);
            p->pos++;
            if (ch == '}') break;
            if (ch != ',') {
                p->pos--;
                return jfail(p, "expected ',' or '}' after a tensor");
            }
        }
    }
    if (jpeek(p) != -1) return jfail(p, "unexpected text after the header's object");
    return MO_OK;
}

/* ======================================================================== */
/* Reading: checks and data                                                 */
/* ======================================================================== */

static int cmp_entry_name(const void *a, const void *b)
{
    return strcmp((*(const entry *const *)a)->name, (*(const entry *const *)b)->name);
}

static int cmp_entry_offset(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int cmp_cstr_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void shape_text(const entry *e, char *buf, size_t size)
{
    size_t used = 0;
    int k = snprintf(buf, size, "{");
    for (int i = 0; k >= 0 && i < e->ndim; i++) {
        used += (size_t)k;
        if (used >= size) return;
        k = snprintf(buf + used, size - used, i ? ", %zu" : "%zu", e->shape[i]);
    }
    if (k < 0) return;
    used += (size_t)k;
    if (used < size) snprintf(buf + used, size - used, "}");
}

/* Names unique, sizes agree with shapes, offsets tile [0, data_len) exactly; sorts c->e into data order. */
static mo_status check_entries(mo_ckpt *c, size_t data_len, char *why, size_t why_size)
{
    mo_status st = MO_OK;
    if (c->count > 1) {
        entry **v = malloc(c->count * sizeof *v);
        if (!v) return MO_ERR_NOMEM;
        for (size_t i = 0; i < c->count; i++) v[i] = &c->e[i];
        qsort(v, c->count, sizeof *v, cmp_entry_name);
        for (size_t i = 1; i < c->count && st == MO_OK; i++) {
            if (strcmp(v[i - 1]->name, v[i]->name) == 0) {
                mo__say(why, why_size, "the tensor name '%.80s' appears twice", v[i]->name);
                st = MO_ERR_FORMAT;
            }
        }
        free(v);
        MO_TRY(st);
    }
    if (c->nmeta > 1) {
        char **v = malloc(c->nmeta * sizeof *v);
        if (!v) return MO_ERR_NOMEM;
        memcpy(v, c->keys, c->nmeta * sizeof *v);
        qsort(v, c->nmeta, sizeof *v, cmp_cstr_ptr);
        for (size_t i = 1; i < c->nmeta && st == MO_OK; i++) {
            if (strcmp(v[i - 1], v[i]) == 0) {
                mo__say(why, why_size, "the metadata key '%.80s' appears twice", v[i]);
                st = MO_ERR_FORMAT;
            }
        }
        free(v);
        MO_TRY(st);
    }
    for (size_t i = 0; i < c->count; i++) {
        entry *e = &c->e[i];
        char sh[160];
        shape_text(e, sh, sizeof sh);
        size_t numel = 1, bytes;
        if (mo_shape_numel(e->ndim, e->shape, &numel) != MO_OK ||
            mo_size_mul(numel, dtype_sizes[e->dtype], &bytes) != MO_OK) {
            mo__say(why, why_size, "tensor '%.80s': shape %s is too large", e->name, sh);
            return MO_ERR_FORMAT;
        }
        if (e->begin > e->end) {
            mo__say(why, why_size, "tensor '%.80s': data_offsets [%zu, %zu] end before they begin",
                e->name, e->begin, e->end);
            return MO_ERR_FORMAT;
        }
        if (e->end - e->begin != bytes) {
            mo__say(why, why_size, "tensor '%.80s': data_offsets [%zu, %zu] hold %zu bytes, but %s %s needs %zu",
                e->name, e->begin, e->end, e->end - e->begin, sh, dtype_names[e->dtype], bytes);
            return MO_ERR_FORMAT;
        }
        if (e->end > data_len) {
            mo__say(why, why_size,
                "truncated: tensor '%.80s' (data_offsets [%zu, %zu]) ends past the %zu bytes of "
                "data the file holds", e->name, e->begin, e->end, data_len);
            return MO_ERR_FORMAT;
        }
    }
    if (c->count > 1) qsort(c->e, c->count, sizeof *c->e, cmp_entry_offset);
    size_t at = 0;
    for (size_t i = 0; i < c->count; i++) {
        const entry *e = &c->e[i];
        if (e->begin < at) {
            const entry *o = &c->e[i - 1];
            mo__say(why, why_size, "tensor '%.80s' (data_offsets [%zu, %zu]) overlaps tensor '%.80s' ([%zu, %zu])",
                e->name, e->begin, e->end, o->name, o->begin, o->end);
            return MO_ERR_FORMAT;
        }
        if (e->begin > at) {
            mo__say(why, why_size,
                "%zu unused bytes before tensor '%.80s' (data_offsets [%zu, %zu]): tensors must be "
                "packed without gaps", e->begin - at, e->name, e->begin, e->end);
            return MO_ERR_FORMAT;
        }
        at = e->end;
    }
    if (at != data_len) {
        mo__say(why, why_size, "trailing bytes: the tensors end at data byte %zu, the file holds %zu", at,
            data_len);
        return MO_ERR_FORMAT;
    }
    return MO_OK;
}

/* Where the file's bytes come from: a FILE or a memory buffer. */
typedef struct source {
    FILE *fp;
    const unsigned char *buf;
    size_t len, pos;
} source;

static mo_status src_read(source *s, void *dst, size_t n, char *why, size_t why_size)
{
    if (s->fp) {
        if (fread(dst, 1, n, s->fp) != n) {
            if (ferror(s->fp)) {
                mo__say_errno(why, why_size, "read error", NULL, errno);
                return MO_ERR_IO;
            }
            mo__say(why, why_size, "truncated: the file ended early (was it changed while being read?)");
            return MO_ERR_FORMAT;
        }
        return MO_OK;
    }
    if (s->len - s->pos < n) {
        mo__say(why, why_size, "truncated");
        return MO_ERR_FORMAT;
    }
    memcpy(dst, s->buf + s->pos, n);
    s->pos += n;
    return MO_OK;
}

/* Reads entry e's bytes (e->t allocated: float64 for F64, else float32, converting
 * F16, BF16, I8 and U8); updates crc. */
static mo_status read_tensor(source *s, entry *e, unsigned char *stage, uint32_t *crc, char *why,
                             size_t why_size)
{
    float *dst = mo_tensor_data(&e->t);      /* contiguous, numel floats (NULL for F64) */
    double *dst64 = mo_tensor_data_f64(&e->t);
    size_t es = dtype_sizes[e->dtype], total = e->end - e->begin;
    if ((e->dtype == DT_F32 || e->dtype == DT_F64) && host_little_endian()) {
        void *raw = mo_tensor_ptr(&e->t);
        MO_TRY(src_read(s, raw, total, why, why_size));
        *crc = mo_crc32(*crc, raw, total);
        return MO_OK;
    }
    size_t done = 0, k = 0;
    while (done < total) {
        size_t n = total - done < STAGE ? total - done : STAGE;   /* a multiple of es */
        MO_TRY(src_read(s, stage, n, why, why_size));
        *crc = mo_crc32(*crc, stage, n);
        for (size_t j = 0; j < n; j += es, k++) {
            const unsigned char *q = stage + j;
            switch (e->dtype) {
            case DT_F32: dst[k] = f32_of_bits(get_u32le(q)); break;
            case DT_F64: {
                uint64_t u = get_u64le(q);
                memcpy(&dst64[k], &u, sizeof u);
                break;
            }
            case DT_I64: {
                /* two's complement bits -> int64 without implementation-defined conversion */
                uint64_t u = get_u64le(q);
                int64_t v = u >> 63 ? -(int64_t)(~u) - 1 : (int64_t)u;
                if (v > ((int64_t)1 << 53) || v < -((int64_t)1 << 53)) {
                    mo__say(why, why_size, "tensor '%.80s': I64 value %lld is beyond 2^53 (not exact in "
                            "float64)", e->name, (long long)v);
                    return MO_ERR_FORMAT;
                }
                dst64[k] = (double)v;
                break;
            }
            case DT_F16: dst[k] = f32_of_f16((uint16_t)(q[0] | q[1] << 8)); break;
            case DT_I8: dst[k] = (float)(int8_t)q[0]; break;
            case DT_U8: dst[k] = (float)q[0]; break;
            default: dst[k] = f32_of_bits((uint32_t)(q[0] | q[1] << 8) << 16); break;   /* BF16 */
            }
        }
        done += n;
    }
    return MO_OK;
}

/* The whole reading, from a source of `size` bytes. */
static mo_status read_all(mo_ckpt **out, source *s, size_t size, const mo_allocator *a, char *why,
                          size_t why_size)
{
    *out = NULL;
    if (size < 8) {
        mo__say(why, why_size, "the file is %zu bytes, too short for the 8-byte header length", size);
        return MO_ERR_FORMAT;
    }
    unsigned char lenbuf[8];
    MO_TRY(src_read(s, lenbuf, 8, why, why_size));
    uint64_t hlen = get_u64le(lenbuf);
    if (hlen > (uint64_t)(size - 8)) {
        mo__say(why, why_size, "the header length %llu exceeds the %zu bytes that follow it (not a "
            "safetensors file, or truncated)", (unsigned long long)hlen, size - 8);
        return MO_ERR_FORMAT;
    }
    if (hlen > MO_CKPT_MAX_HEADER) {
        mo__say(why, why_size, "the header length %llu is over the limit of %llu bytes",
            (unsigned long long)hlen, (unsigned long long)MO_CKPT_MAX_HEADER);
        return MO_ERR_FORMAT;
    }
    size_t data_len = size - 8 - (size_t)hlen;
    unsigned char *head = malloc((size_t)hlen + 1);
    unsigned char *stage = malloc(STAGE);
    mo_ckpt *c = calloc(1, sizeof *c);
    mo_status st = head && stage && c ? MO_OK : MO_ERR_NOMEM;
    if (st == MO_OK) st = src_read(s, head, (size_t)hlen, why, why_size);
    if (st == MO_OK) {
        jparse p = {head, (size_t)hlen, 0, why, why_size};
        st = parse_header(&p, c);
    }
    if (st == MO_OK) st = check_entries(c, data_len, why, why_size);
    /* the checksum's syntax before reading any data */
    uint32_t want = 0, got = 0;
    const char *crctext = st == MO_OK ? mo_ckpt_meta_get(c, MO_CKPT_CRC_KEY) : NULL;
    if (crctext) {
        int ok = strlen(crctext) == 8;
        for (int i = 0; ok && i < 8; i++) {
            int h = hexval((unsigned char)crctext[i]);
            if (h < 0) ok = 0;
            else want = want << 4 | (uint32_t)h;
        }
        if (!ok) {
            mo__say(why, why_size, "metadata %s is '%.40s', not 8 hex digits", MO_CKPT_CRC_KEY, crctext);
            st = MO_ERR_FORMAT;
        }
    }
    for (size_t i = 0; st == MO_OK && i < c->count; i++) {
        entry *e = &c->e[i];
        st = mo_tensor_empty_dtype(&e->t, e->ndim, e->shape,
                                   (e->dtype == DT_F64 || e->dtype == DT_I64) ? MO_FLOAT64 : MO_FLOAT32, a);
        if (st != MO_OK) {
            char sh[160];
            shape_text(e, sh, sizeof sh);
            mo__say(why, why_size, "tensor '%.80s' (shape %s): %s", e->name, sh, mo_status_str(st));
            break;
        }
        st = read_tensor(s, e, stage, &got, why, why_size);
    }
    if (st == MO_OK && crctext && got != want) {
        mo__say(why, why_size, "checksum mismatch: %s says %08lx, the data gives %08lx (the file is damaged)",
            MO_CKPT_CRC_KEY, (unsigned long)want, (unsigned long)got);
        st = MO_ERR_FORMAT;
    }
    if (st == MO_ERR_NOMEM) mo__say(why, why_size, "out of memory");
    free(head);
    free(stage);
    if (st != MO_OK) {
        mo_ckpt_free(c);
        return st;
    }
    *out = c;
    return MO_OK;
}

mo_status mo_ckpt_decode(mo_ckpt **out, const void *buf, size_t len, const mo_allocator *a,
                         char *why, size_t why_size)
{
    if (!out || (!buf && len > 0)) {
        mo__say(why, why_size, "NULL argument");
        if (out) *out = NULL;
        return MO_ERR_ARG;
    }
    source s = {NULL, buf, len, 0};
    return read_all(out, &s, len, a, why, why_size);
}

mo_status mo_ckpt_read_file(mo_ckpt **out, const char *path, const mo_allocator *a, char *why,
                            size_t why_size)
{
    if (!out || !path) {
        mo__say(why, why_size, "NULL argument");
        if (out) *out = NULL;
        return MO_ERR_ARG;
    }
    *out = NULL;
    /* a FIFO, a directory or a device is refused without blocking (core/file.c) */
    size_t size = 0;
    mo_status st = MO_OK;
    FILE *fp = mo__open_regular(path, &size, &st, why, why_size);
    if (!fp) return st;
    source s = {fp, NULL, 0, 0};
    st = read_all(out, &s, size, a, why, why_size);
    fclose(fp);
    return st;
}
