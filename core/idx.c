/*
 * idx.c - IDX files (MNIST, Fashion-MNIST) to float32 tensors and back.
 *
 * Reading streams: a `source` hands out the uncompressed bytes of a raw or
 * gzip-compressed file or memory buffer, CHUNK bytes at a time, and each chunk
 * is converted into the output tensor as it arrives. So reading the 26 MB
 * Fashion-MNIST training images never holds the 47 MB of pixels besides the
 * 188 MB float tensor they become.
 *
 * Damage is detected as early as possible, before the output is allocated when
 * the input's size is known: a raw input must hold exactly header + data; a
 * gzip input cannot expand by more than deflate's maximum ratio, so a header
 * promising gigabytes in a small file is "truncated" without allocating them.
 */
#include "moonopt_internal.h"
#include "file_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef MO_HAVE_ZLIB
#define ZLIB_CONST
#include <zlib.h>
#endif

/* Bytes per read-and-convert step: a multiple of every element size (8), so an
 * element never straddles two chunks; large enough that the per-call overhead
 * of fread/inflate vanishes, small enough to stay in L2. */
#define CHUNK ((size_t)1 << 16)

/* Deflate cannot expand its input more than about 1032:1 (258-byte matches
 * coded in 2 bits); with slack for headers, an upper bound on what a gzip
 * input of n bytes can decompress to. */
#define GZ_MAX_RATIO 1040


size_t mo_idx_type_size(int type)
{
    switch (type) {
    case MO_IDX_U8:
    case MO_IDX_I8: return 1;
    case MO_IDX_I16: return 2;
    case MO_IDX_I32:
    case MO_IDX_F32: return 4;
    case MO_IDX_F64: return 8;
    default: return 0;
    }
}

const char *mo_idx_type_name(int type)
{
    switch (type) {
    case MO_IDX_U8: return "uint8";
    case MO_IDX_I8: return "int8";
    case MO_IDX_I16: return "int16";
    case MO_IDX_I32: return "int32";
    case MO_IDX_F32: return "float32";
    case MO_IDX_F64: return "float64";
    default: return "unknown";
    }
}

/* "{60000, 28, 28} uint8" into buf, for messages. */
static void describe(const mo_idx_header *h, char *buf, size_t size)
{
    size_t used = 0;
    int n = snprintf(buf, size, "{");
    for (int i = 0; n >= 0 && i < h->ndim; i++) {
        used += (size_t)n;
        if (used >= size) return;
        n = snprintf(buf + used, size - used, i ? ", %zu" : "%zu", h->shape[i]);
    }
    if (n < 0) return;
    used += (size_t)n;
    if (used < size) snprintf(buf + used, size - used, "} %s", mo_idx_type_name((int)h->type));
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t be64(const unsigned char *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* ------------------------------------------------------------------------ */
/* The header                                                               */
/* ------------------------------------------------------------------------ */

/* The 4-byte magic: checks and fills type, ndim, elem_size, header_bytes. */
static mo_status parse_magic(const unsigned char *m, mo_idx_header *h, char *why, size_t why_size)
{
    if (m[0] != 0 || m[1] != 0) {
        mo__say(why, why_size, "wrong magic 0x%02x%02x%02x%02x: not an IDX file (it must start with two zero bytes)",
            m[0], m[1], m[2], m[3]);
        return MO_ERR_FORMAT;
    }
    size_t es = mo_idx_type_size(m[2]);
    if (es == 0) {
        mo__say(why, why_size, "unknown element type 0x%02x in magic 0x%02x%02x%02x%02x "
            "(known: 0x08 uint8, 0x09 int8, 0x0b int16, 0x0c int32, 0x0d float32, 0x0e float64)",
            m[2], m[0], m[1], m[2], m[3]);
        return MO_ERR_FORMAT;
    }
    if (m[3] > MO_MAX_DIMS) {
        mo__say(why, why_size, "%u dimensions; at most %d are supported", (unsigned)m[3], MO_MAX_DIMS);
        return MO_ERR_DIMS;
    }
    memset(h, 0, sizeof *h);
    h->type = (mo_idx_type)m[2];
    h->ndim = m[3];
    h->elem_size = es;
    h->header_bytes = 4 + 4 * (size_t)h->ndim;
    return MO_OK;
}

/* The sizes (4 * ndim bytes after the magic): fills shape, numel, data_bytes. */
static mo_status parse_sizes(const unsigned char *p, mo_idx_header *h, char *why, size_t why_size)
{
    size_t numel = 1;
    int overflow = 0;
    for (int i = 0; i < h->ndim; i++) {
        h->shape[i] = be32(p + 4 * (size_t)i);
        if (mo_size_mul(numel, h->shape[i], &numel) != MO_OK) overflow = 1;
    }
    size_t bytes = 0;
    if (!overflow && mo_size_mul(numel, h->elem_size, &bytes) != MO_OK) overflow = 1;
    /* A tensor indexes its elements with ptrdiff_t strides. */
    if (!overflow && numel > (size_t)PTRDIFF_MAX) overflow = 1;
    if (overflow) {
        char d[160];
        describe(h, d, sizeof d);
        mo__say(why, why_size, "sizes %s: their product overflows", d);
        return MO_ERR_OVERFLOW;
    }
    h->numel = numel;
    h->data_bytes = bytes;
    return MO_OK;
}

mo_status mo_idx_parse_header(const void *buf, size_t len, mo_idx_header *h, char *why, size_t why_size)
{
    if (!buf || !h) {
        mo__say(why, why_size, "NULL argument");
        return MO_ERR_ARG;
    }
    const unsigned char *p = buf;
    if (len < 4) {
        mo__say(why, why_size, "truncated: %zu bytes, too short for the 4-byte IDX magic", len);
        return MO_ERR_FORMAT;
    }
    mo_idx_header tmp;
    MO_TRY(parse_magic(p, &tmp, why, why_size));
    if (len < tmp.header_bytes) {
        mo__say(why, why_size, "truncated header: %d dimensions need %zu header bytes, got %zu",
            tmp.ndim, tmp.header_bytes, len);
        return MO_ERR_FORMAT;
    }
    MO_TRY(parse_sizes(p + 4, &tmp, why, why_size));
    *h = tmp;
    return MO_OK;
}

/* ------------------------------------------------------------------------ */
/* Sources of uncompressed bytes                                            */
/* ------------------------------------------------------------------------ */

typedef struct source {
    FILE *fp;                   /* a file, or NULL for memory */
    const unsigned char *mem;   /* memory input (all of it) */
    size_t mem_len;
    size_t mem_pos;             /* memory: next byte not yet consumed / handed to zlib */
    int size_known;
    size_t total;               /* input bytes (compressed when gzip), when size_known */
    int gz;
    unsigned char *inbuf;       /* file input: CHUNK bytes read ahead */
    size_t in_len, in_pos;      /* raw file: inbuf[in_pos..in_len) not yet consumed */
#ifdef MO_HAVE_ZLIB
    z_stream zs;
    int zs_live;                /* inflateInit2 succeeded: inflateEnd needed */
    int member_done;            /* the current gzip member ended (Z_STREAM_END) */
#endif
    char *why;
    size_t why_size;
} source;

/* File input: read up to CHUNK bytes into inbuf; *n = 0 at end of file. */
static mo_status file_fill(source *s, size_t *n)
{
    size_t got = fread(s->inbuf, 1, CHUNK, s->fp);
    if (got < CHUNK && ferror(s->fp)) {
        mo__say_errno(s->why, s->why_size, "read error", NULL, errno);
        return MO_ERR_IO;
    }
    *n = got;
    return MO_OK;
}

#ifdef MO_HAVE_ZLIB
/* Give zlib more compressed input; zs.avail_in stays 0 at the end of the input. */
static mo_status gz_fill(source *s)
{
    if (s->fp) {
        size_t n;
        MO_TRY(file_fill(s, &n));
        s->zs.next_in = s->inbuf;
        s->zs.avail_in = (uInt)n;
    } else {
        size_t n = s->mem_len - s->mem_pos;
        if (n > UINT_MAX) n = UINT_MAX;  /* avail_in is an unsigned int */
        s->zs.next_in = s->mem + s->mem_pos;
        s->zs.avail_in = (uInt)n;
        s->mem_pos += n;
    }
    return MO_OK;
}

static mo_status gz_read(source *s, unsigned char *dst, size_t n, size_t *got)
{
    size_t done = 0;
    while (done < n) {
        if (s->member_done) {
            /* End of a member: the end of the input, or another member (as gunzip reads them). */
            if (s->zs.avail_in == 0) MO_TRY(gz_fill(s));
            if (s->zs.avail_in == 0) break;
            if (s->zs.next_in[0] != 0x1f) {
                mo__say(s->why, s->why_size, "trailing bytes after the gzip data");
                return MO_ERR_FORMAT;
            }
            if (inflateReset(&s->zs) != Z_OK) {
                mo__say(s->why, s->why_size, "corrupt gzip data (cannot restart for the next member)");
                return MO_ERR_FORMAT;
            }
            s->member_done = 0;
        }
        if (s->zs.avail_in == 0) {
            MO_TRY(gz_fill(s));
            if (s->zs.avail_in == 0) {
                mo__say(s->why, s->why_size, "truncated: the gzip stream ends before its end marker");
                return MO_ERR_FORMAT;
            }
        }
        size_t want = n - done;
        if (want > UINT_MAX) want = UINT_MAX;
        s->zs.next_out = dst + done;
        s->zs.avail_out = (uInt)want;
        int ret = inflate(&s->zs, Z_NO_FLUSH);
        done += want - s->zs.avail_out;
        if (ret == Z_STREAM_END) {
            s->member_done = 1;
        } else if (ret == Z_MEM_ERROR) {
            mo__say(s->why, s->why_size, "out of memory in zlib");
            return MO_ERR_NOMEM;
        } else if (ret == Z_BUF_ERROR && s->zs.avail_in == 0) {
            continue;  /* needs more input: the loop refills */
        } else if (ret != Z_OK) {
            mo__say(s->why, s->why_size, "corrupt gzip data (%s)", s->zs.msg ? s->zs.msg : "inflate failed");
            return MO_ERR_FORMAT;
        }
    }
    *got = done;
    return MO_OK;
}
#endif

/* Up to n uncompressed bytes into dst; *got < n only at the end of the data. */
static mo_status src_read(source *s, unsigned char *dst, size_t n, size_t *got)
{
#ifdef MO_HAVE_ZLIB
    if (s->gz) return gz_read(s, dst, n, got);
#endif
    if (!s->fp) {
        size_t avail = s->mem_len - s->mem_pos;
        if (n > avail) n = avail;
        memcpy(dst, s->mem + s->mem_pos, n);
        s->mem_pos += n;
        *got = n;
        return MO_OK;
    }
    /* Raw file: first what was read ahead to look for the gzip magic, then straight from the file. */
    size_t done = s->in_len - s->in_pos;
    if (done > n) done = n;
    memcpy(dst, s->inbuf + s->in_pos, done);
    s->in_pos += done;
    if (done < n) {
        size_t r = fread(dst + done, 1, n - done, s->fp);
        if (r < n - done && ferror(s->fp)) {
            mo__say_errno(s->why, s->why_size, "read error", NULL, errno);
            return MO_ERR_IO;
        }
        done += r;
    }
    *got = done;
    return MO_OK;
}

/* Look at the first bytes and set up raw or gzip decoding. */
static mo_status src_start(source *s)
{
    const unsigned char *head;
    size_t head_len;
    if (s->fp) {
        MO_TRY(file_fill(s, &s->in_len));
        s->in_pos = 0;
        head = s->inbuf;
        head_len = s->in_len;
    } else {
        head = s->mem;
        head_len = s->mem_len;
    }
    s->gz = head_len >= 2 && head[0] == 0x1f && head[1] == 0x8b;
    if (!s->gz) return MO_OK;
#ifdef MO_HAVE_ZLIB
    memset(&s->zs, 0, sizeof s->zs);
    /* 16 + MAX_WBITS: a gzip wrapper (header, CRC-32 and length checked by zlib). */
    int ret = inflateInit2(&s->zs, 16 + MAX_WBITS);
    if (ret != Z_OK) {
        mo__say(s->why, s->why_size, "cannot start zlib (%s)", ret == Z_MEM_ERROR ? "out of memory" : "error");
        return ret == Z_MEM_ERROR ? MO_ERR_NOMEM : MO_ERR_IO;
    }
    s->zs_live = 1;
    s->member_done = 0;
    if (s->fp) {
        s->zs.next_in = s->inbuf;
        s->zs.avail_in = (uInt)s->in_len;
    }
    return MO_OK;
#else
    mo__say(s->why, s->why_size, "gzip-compressed, but moonopt was built without zlib: gunzip it first");
    return MO_ERR_FORMAT;
#endif
}

static void src_end(source *s)
{
#ifdef MO_HAVE_ZLIB
    if (s->zs_live) inflateEnd(&s->zs);
    s->zs_live = 0;
#endif
    (void)s;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * dst[i] = value(src element i) * scale + shift for `count` elements of `type`
 * (src: count * elem_size big-endian bytes, dst: count floats). The arithmetic
 * runs in double and rounds once; scale 1 and shift 0 keep every value as it
 * is (float32 bit for bit, NaN payloads and -0.0 included).
 */
static void convert(float *dst, const unsigned char *src, size_t count, mo_idx_type type,
                    double scale, double shift)
{
    size_t i;
    /* x * 1 + 0 is x except for -0.0 (which becomes +0.0): keep values exact then. */
    const int identity = scale == 1.0 && shift == 0.0;
    switch (type) {
    case MO_IDX_U8:
        for (i = 0; i < count; i++) dst[i] = (float)((double)src[i] * scale + shift);
        break;
    case MO_IDX_I8:
        for (i = 0; i < count; i++) {
            int v = src[i] > 127 ? (int)src[i] - 256 : (int)src[i];
            dst[i] = (float)((double)v * scale + shift);
        }
        break;
    case MO_IDX_I16:
        for (i = 0; i < count; i++) {
            long u = (long)src[2 * i] << 8 | (long)src[2 * i + 1];
            long v = u > 32767 ? u - 65536 : u;
            dst[i] = (float)((double)v * scale + shift);
        }
        break;
    case MO_IDX_I32:
        for (i = 0; i < count; i++) {
            int64_t u = (int64_t)be32(src + 4 * i);
            int64_t v = u > INT32_MAX ? u - ((int64_t)1 << 32) : u;
            dst[i] = (float)((double)v * scale + shift);
        }
        break;
    case MO_IDX_F32:
        if (identity) {
            for (i = 0; i < count; i++) {
                uint32_t u = be32(src + 4 * i);
                memcpy(&dst[i], &u, sizeof u);  /* bit-exact, NaN payloads included */
            }
        } else {
            for (i = 0; i < count; i++) {
                uint32_t u = be32(src + 4 * i);
                float f;
                memcpy(&f, &u, sizeof f);
                dst[i] = (float)((double)f * scale + shift);
            }
        }
        break;
    case MO_IDX_F64:
        for (i = 0; i < count; i++) {
            uint64_t u = be64(src + 8 * i);
            double d;
            memcpy(&d, &u, sizeof d);
            dst[i] = identity ? (float)d : (float)(d * scale + shift);
        }
        break;
    }
}

/*
 * Everything after the source is set up: header, size checks, the tensor, the
 * data, and nothing after it. `out` is written only on success.
 */
static mo_status decode(source *s, mo_tensor *out, float scale, float shift, const mo_allocator *a,
                        unsigned char *chunk)
{
    char *why = s->why;
    size_t why_size = s->why_size;
    mo_idx_header h;
    size_t got;

    MO_TRY(src_read(s, chunk, 4, &got));
    if (got < 4) {
        mo__say(why, why_size, "truncated: %zu bytes of data, too short for the 4-byte IDX magic", got);
        return MO_ERR_FORMAT;
    }
    MO_TRY(parse_magic(chunk, &h, why, why_size));
    size_t size_bytes = 4 * (size_t)h.ndim;
    MO_TRY(src_read(s, chunk + 4, size_bytes, &got));
    if (got < size_bytes) {
        mo__say(why, why_size, "truncated header: %d dimensions need %zu header bytes, got %zu",
            h.ndim, h.header_bytes, 4 + got);
        return MO_ERR_FORMAT;
    }
    MO_TRY(parse_sizes(chunk + 4, &h, why, why_size));

    char d[160];
    describe(&h, d, sizeof d);
    if (s->size_known && !s->gz) {
        /* Raw: the exact size is known, so say exactly how far off it is. */
        size_t have = s->total - h.header_bytes;
        if (have < h.data_bytes) {
            mo__say(why, why_size, "truncated: the header says %s, which needs %zu data bytes; there are %zu",
                d, h.data_bytes, have);
            return MO_ERR_FORMAT;
        }
        if (have > h.data_bytes) {
            mo__say(why, why_size, "%zu trailing bytes after the %zu data bytes of %s (sizes disagree with the file size)",
                have - h.data_bytes, h.data_bytes, d);
            return MO_ERR_FORMAT;
        }
    } else if (s->size_known) {
        size_t most;
        if (mo_size_mul(s->total, GZ_MAX_RATIO, &most) == MO_OK && h.data_bytes > most) {
            mo__say(why, why_size, "truncated: the header says %s, which needs %zu data bytes; "
                "%zu bytes of gzip cannot hold that many", d, h.data_bytes, s->total);
            return MO_ERR_FORMAT;
        }
    }

    mo_tensor t;
    mo_tensor_init(&t);
    mo_status st = mo_tensor_empty(&t, h.ndim, h.shape, a);
    if (st != MO_OK) {
        mo__say(why, why_size, "%s for a tensor of %s", mo_status_str(st), d);
        return st;
    }
    float *dst = mo_tensor_data(&t);
    const double dscale = scale, dshift = shift;
    size_t left = h.data_bytes;
    while (left > 0) {
        size_t want = left < CHUNK ? left : CHUNK;
        st = src_read(s, chunk, want, &got);
        if (st != MO_OK) goto fail;
        if (got < want) {
            mo__say(why, why_size, "truncated: the header says %s, which needs %zu data bytes; there are %zu",
                d, h.data_bytes, h.data_bytes - left + got);
            st = MO_ERR_FORMAT;
            goto fail;
        }
        size_t count = want / h.elem_size;
        convert(dst, chunk, count, h.type, dscale, dshift);
        dst += count;
        left -= want;
    }
    /* Nothing may follow the data (for gzip this also makes zlib check the CRC and length). */
    st = src_read(s, chunk, 1, &got);
    if (st != MO_OK) goto fail;
    if (got != 0) {
        mo__say(why, why_size, "trailing bytes after the %zu data bytes of %s (sizes disagree with the data)",
            h.data_bytes, d);
        st = MO_ERR_FORMAT;
        goto fail;
    }
    *out = t;
    return MO_OK;
fail:
    mo_tensor_release(&t);
    return st;
}

mo_status mo_idx_decode(mo_tensor *out, const void *buf, size_t len, float scale, float shift,
                        const mo_allocator *a, char *why, size_t why_size)
{
    if (!out || (!buf && len > 0)) {
        mo__say(why, why_size, "NULL argument");
        return MO_ERR_ARG;
    }
    static const unsigned char nothing[1] = {0};
    source s;
    memset(&s, 0, sizeof s);
    s.mem = buf ? buf : nothing;
    s.mem_len = len;
    s.size_known = 1;
    s.total = len;
    s.why = why;
    s.why_size = why_size;
    unsigned char *chunk = malloc(CHUNK);
    if (!chunk) {
        mo__say(why, why_size, "out of memory");
        return MO_ERR_NOMEM;
    }
    mo_status st = src_start(&s);
    if (st == MO_OK) st = decode(&s, out, scale, shift, a, chunk);
    src_end(&s);
    free(chunk);
    return st;
}

mo_status mo_idx_read_file(mo_tensor *out, const char *path, float scale, float shift,
                           const mo_allocator *a, char *why, size_t why_size)
{
    if (!out || !path) {
        mo__say(why, why_size, "NULL argument");
        return MO_ERR_ARG;
    }
    source s;
    memset(&s, 0, sizeof s);
    s.why = why;
    s.why_size = why_size;
    /* A FIFO, a directory or a device is refused without blocking (core/file.c); a
     * regular file's size cannot change under us without the reads noticing (they
     * check the count again). */
    mo_status st = MO_OK;
    s.fp = mo__open_regular(path, &s.total, &st, why, why_size);
    if (!s.fp) return st;
    s.size_known = 1;
    unsigned char *chunk = malloc(CHUNK);
    s.inbuf = malloc(CHUNK);
    if (!chunk || !s.inbuf) {
        mo__say(why, why_size, "out of memory");
        st = MO_ERR_NOMEM;
    }
    if (st == MO_OK) st = src_start(&s);
    if (st == MO_OK) st = decode(&s, out, scale, shift, a, chunk);
    src_end(&s);
    free(chunk);
    free(s.inbuf);
    fclose(s.fp);  /* read-only: a failing close loses nothing */
    return st;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */
/* ------------------------------------------------------------------------ */

/* Walks a tensor of any layout in row-major order. */
typedef struct walker {
    const mo_tensor *t;
    const float *base;
    size_t idx[MO_MAX_DIMS];
    ptrdiff_t off;
} walker;

static void walk_start(walker *w, const mo_tensor *t)
{
    memset(w, 0, sizeof *w);
    w->t = t;
    w->base = mo_tensor_data(t);
}

/* The current element, then step to the next one. */
static float walk_next(walker *w)
{
    float v = w->base[w->off];
    const mo_tensor *t = w->t;
    for (int k = t->ndim - 1; k >= 0; k--) {
        if (++w->idx[k] < t->shape[k]) {
            w->off += t->stride[k];
            return v;
        }
        w->off -= (ptrdiff_t)(w->idx[k] - 1) * t->stride[k];
        w->idx[k] = 0;
    }
    return v;
}

/* Integer types hold only whole numbers in their range: check all before writing any. */
static mo_status check_range(const mo_tensor *t, mo_idx_type type, char *why, size_t why_size)
{
    double lo, hi;
    switch (type) {
    case MO_IDX_U8: lo = 0; hi = 255; break;
    case MO_IDX_I8: lo = -128; hi = 127; break;
    case MO_IDX_I16: lo = -32768; hi = 32767; break;
    case MO_IDX_I32: lo = -2147483648.0; hi = 2147483647.0; break;
    default: return MO_OK;
    }
    walker w;
    walk_start(&w, t);
    for (size_t i = 0; i < t->numel; i++) {
        double v = walk_next(&w);
        if (!(v >= lo && v <= hi) || v != (double)(int64_t)v) {
            mo__say(why, why_size, "element %zu (0-based, row-major) is %.9g: not a whole number in %s's range",
                i, v, mo_idx_type_name((int)type));
            return MO_ERR_RANGE;
        }
    }
    return MO_OK;
}

/* Where encoded bytes go: a file, through deflate when compressing. */
typedef struct sink {
    FILE *fp;
    int gz;
    unsigned char *zbuf;   /* CHUNK bytes of deflate output */
#ifdef MO_HAVE_ZLIB
    z_stream zs;
    int zs_live;
#endif
    char *why;
    size_t why_size;
} sink;

static mo_status sink_fwrite(sink *k, const unsigned char *p, size_t n)
{
    if (n > 0 && fwrite(p, 1, n, k->fp) != n) {
        mo__say_errno(k->why, k->why_size, "write error", NULL, errno);
        return MO_ERR_IO;
    }
    return MO_OK;
}

#ifdef MO_HAVE_ZLIB
/* Feed n bytes to deflate (flush: Z_NO_FLUSH or Z_FINISH) and write what comes out. */
static mo_status sink_deflate(sink *k, const unsigned char *p, size_t n, int flush)
{
    k->zs.next_in = p;
    k->zs.avail_in = (uInt)n;  /* n <= CHUNK */
    for (;;) {
        k->zs.next_out = k->zbuf;
        k->zs.avail_out = (uInt)CHUNK;
        int ret = deflate(&k->zs, flush);
        if (ret == Z_STREAM_ERROR) {
            mo__say(k->why, k->why_size, "zlib deflate failed");
            return MO_ERR_IO;
        }
        MO_TRY(sink_fwrite(k, k->zbuf, CHUNK - k->zs.avail_out));
        if (flush == Z_FINISH ? ret == Z_STREAM_END : k->zs.avail_out != 0) return MO_OK;
    }
}
#endif

static mo_status sink_write(sink *k, const unsigned char *p, size_t n)
{
#ifdef MO_HAVE_ZLIB
    if (k->gz) return sink_deflate(k, p, n, Z_NO_FLUSH);
#endif
    return sink_fwrite(k, p, n);
}

/* Encode one value big-endian at p (the range was checked for integer types). */
static void encode(unsigned char *p, float v, mo_idx_type type)
{
    uint64_t u;
    switch (type) {
    case MO_IDX_U8:
        p[0] = (unsigned char)(int)v;
        return;
    case MO_IDX_I8:
        p[0] = (unsigned char)((int)v & 0xff);  /* two's complement */
        return;
    case MO_IDX_I16: {
        uint16_t h = (uint16_t)((int)v & 0xffff);
        p[0] = (unsigned char)(h >> 8);
        p[1] = (unsigned char)h;
        return;
    }
    case MO_IDX_I32: {
        uint32_t w = (uint32_t)((int64_t)v & 0xffffffff);
        for (int i = 0; i < 4; i++) p[i] = (unsigned char)(w >> (24 - 8 * i));
        return;
    }
    case MO_IDX_F32: {
        uint32_t w;
        memcpy(&w, &v, sizeof w);
        for (int i = 0; i < 4; i++) p[i] = (unsigned char)(w >> (24 - 8 * i));
        return;
    }
    case MO_IDX_F64: {
        double d = v;
        memcpy(&u, &d, sizeof u);
        for (int i = 0; i < 8; i++) p[i] = (unsigned char)(u >> (56 - 8 * i));
        return;
    }
    }
}

static mo_status write_all(sink *k, const mo_tensor *t, mo_idx_type type, unsigned char *buf)
{
    /* header: magic then the sizes */
    unsigned char head[4 + 4 * MO_MAX_DIMS];
    head[0] = 0;
    head[1] = 0;
    head[2] = (unsigned char)type;
    head[3] = (unsigned char)t->ndim;
    for (int i = 0; i < t->ndim; i++) {
        uint32_t n = (uint32_t)t->shape[i];
        for (int b = 0; b < 4; b++) head[4 + 4 * i + b] = (unsigned char)(n >> (24 - 8 * b));
    }
    MO_TRY(sink_write(k, head, 4 + 4 * (size_t)t->ndim));
    size_t es = mo_idx_type_size(type);
    size_t per_chunk = CHUNK / es, used = 0;
    walker w;
    walk_start(&w, t);
    for (size_t i = 0; i < t->numel; i++) {
        encode(buf + used * es, walk_next(&w), type);
        if (++used == per_chunk) {
            MO_TRY(sink_write(k, buf, used * es));
            used = 0;
        }
    }
    MO_TRY(sink_write(k, buf, used * es));
#ifdef MO_HAVE_ZLIB
    if (k->gz) MO_TRY(sink_deflate(k, buf, 0, Z_FINISH));
#endif
    if (fflush(k->fp) != 0) {
        mo__say_errno(k->why, k->why_size, "write error", NULL, errno);
        return MO_ERR_IO;
    }
    return MO_OK;
}

mo_status mo_idx_write_file(const char *path, const mo_tensor *t, mo_idx_type type,
                            int gzip_level, char *why, size_t why_size)
{
    if (!path || !t) {
        mo__say(why, why_size, "NULL argument");
        return MO_ERR_ARG;
    }
    if (!mo_tensor_alive(t)) {
        mo__say(why, why_size, "%s", mo_status_str(MO_ERR_FREED));
        return MO_ERR_FREED;
    }
    if (t->dtype != MO_FLOAT32) {
        mo__say(why, why_size, "IDX files are written from float32 tensors, got %s",
                mo_dtype_name(t->dtype));
        return MO_ERR_DTYPE;
    }
    if (mo_idx_type_size((int)type) == 0) {
        mo__say(why, why_size, "unknown element type 0x%02x", (unsigned)type);
        return MO_ERR_ARG;
    }
    if (gzip_level < 0 || gzip_level > 9) {
        mo__say(why, why_size, "gzip level %d outside 0..9", gzip_level);
        return MO_ERR_ARG;
    }
#ifndef MO_HAVE_ZLIB
    if (gzip_level > 0) {
        mo__say(why, why_size, "moonopt was built without zlib: cannot compress");
        return MO_ERR_ARG;
    }
#endif
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] > UINT32_MAX) {
            mo__say(why, why_size, "dimension %d has size %zu; IDX sizes are 32-bit", i + 1, t->shape[i]);
            return MO_ERR_RANGE;
        }
    }
    MO_TRY(check_range(t, type, why, why_size));

    /* The bytes go to a temporary file renamed over path only when everything has been
     * written (core/file.c: parent directories, fsync, stale temporaries). */
    mo__atomic_file w = {NULL, NULL, path};
    unsigned char *buf = malloc(CHUNK);
    sink k;
    memset(&k, 0, sizeof k);
    k.why = why;
    k.why_size = why_size;
    k.gz = gzip_level > 0;
    k.zbuf = malloc(CHUNK);
    mo_status st = MO_OK;
    if (!buf || !k.zbuf) {
        mo__say(why, why_size, "out of memory");
        st = MO_ERR_NOMEM;
        goto done;
    }
#ifdef MO_HAVE_ZLIB
    if (k.gz) {
        /* 16 + MAX_WBITS: gzip wrapper; memLevel 8 is zlib's default. */
        if (deflateInit2(&k.zs, gzip_level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            mo__say(why, why_size, "cannot start zlib");
            st = MO_ERR_NOMEM;
            goto done;
        }
        k.zs_live = 1;
    }
#endif
    st = mo__atomic_begin(&w, path, why, why_size);
    if (st != MO_OK) goto done;
    k.fp = w.fp;
    st = write_all(&k, t, type, buf);
    st = mo__atomic_end(&w, st, why, why_size);
    k.fp = NULL;
done:
#ifdef MO_HAVE_ZLIB
    if (k.zs_live) deflateEnd(&k.zs);
#endif
    free(k.zbuf);
    free(buf);
    return st;
}
