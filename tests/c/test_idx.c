/*
 * test_idx.c - IDX reading and writing (raw and gzip, every element type,
 * every kind of damage), row gathering and normalization.
 *
 * Files go to a fresh mkdtemp directory that is removed at the end. The real
 * Fashion-MNIST files are read when Debian's dataset-fashion-mnist is
 * installed (skipped under valgrind, where 47 MB of inflate takes minutes).
 */
#include "moonopt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ZLIB_CONST
#include <zlib.h>

#include "ctest.h"
#include "ctest_files.h"

static char why[MO_IDX_WHY_SIZE];

static int file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* A 2-d tensor {r, c} holding vals (row-major). */
static mo_tensor make2(size_t r, size_t c, const float *vals)
{
    mo_tensor t;
    size_t shape[2] = {r, c};
    mo_tensor_init(&t);
    if (mo_tensor_empty(&t, 2, shape, NULL) == MO_OK) memcpy(mo_tensor_data(&t), vals, r * c * sizeof(float));
    return t;
}

static int contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

/* A gzip member holding len bytes (deflate with a gzip wrapper), malloc'ed. */
static unsigned char *gzip_bytes(const unsigned char *in, size_t len, size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    size_t cap = deflateBound(&zs, (uLong)len) + 32;
    unsigned char *out = malloc(cap);
    zs.next_in = in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int ret = deflate(&zs, Z_FINISH);
    *outlen = cap - zs.avail_out;
    deflateEnd(&zs);
    if (ret != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---- the header and hand-built buffers ---- */

/* MNIST-style images: magic 0x00000803, {2, 2, 3}, uint8 pixels 0..255. */
static const unsigned char mnist_like[] = {
    0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3,
    0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255,
};

TEST(parse_header_reads_magic_and_sizes)
{
    mo_idx_header h;
    CHECK_OK(mo_idx_parse_header(mnist_like, sizeof mnist_like, &h, why, sizeof why));
    CHECK(h.type == MO_IDX_U8);
    CHECK(h.ndim == 3);
    CHECK(h.shape[0] == 2 && h.shape[1] == 2 && h.shape[2] == 3);
    CHECK(h.numel == 12);
    CHECK(h.elem_size == 1);
    CHECK(h.header_bytes == 16);
    CHECK(h.data_bytes == 12);
    /* only the header is needed */
    CHECK_OK(mo_idx_parse_header(mnist_like, 16, &h, why, sizeof why));
    CHECK_STATUS(mo_idx_parse_header(mnist_like, 15, &h, why, sizeof why), MO_ERR_FORMAT);
    CHECK(contains(why, "truncated header"));
    CHECK(mo_idx_type_size(0x0D) == 4 && mo_idx_type_size(0x0A) == 0);
    CHECK(strcmp(mo_idx_type_name(MO_IDX_I16), "int16") == 0);
}

TEST(decode_scales_and_shifts)
{
    mo_tensor t;
    mo_tensor_init(&t);
    CHECK_OK(mo_idx_decode(&t, mnist_like, sizeof mnist_like, 1.0f / 255, 0.0f, NULL, why, sizeof why));
    CHECK(t.ndim == 3 && t.shape[0] == 2 && t.shape[1] == 2 && t.shape[2] == 3);
    const float *x = mo_tensor_data(&t);
    CHECK(x[0] == 0.0f);
    CHECK_NEAR(x[1], 1.0 / 255, 1e-7);
    CHECK(x[11] == 1.0f);  /* 255 * (1/255) rounds to exactly 1 */
    CHECK_NEAR(x[6], 250.0 / 255, 1e-7);
    mo_tensor_release(&t);

    /* labels 0..9 -> 1..10: scale 1, shift 1 */
    const unsigned char labels[] = {0, 0, 0x08, 1, 0, 0, 0, 4, 0, 9, 3, 7};
    CHECK_OK(mo_idx_decode(&t, labels, sizeof labels, 1.0f, 1.0f, NULL, why, sizeof why));
    x = mo_tensor_data(&t);
    CHECK(t.ndim == 1 && t.shape[0] == 4);
    CHECK(x[0] == 1 && x[1] == 10 && x[2] == 4 && x[3] == 8);
    mo_tensor_release(&t);
}

TEST(decode_signed_and_float_types_big_endian)
{
    mo_tensor t;
    mo_tensor_init(&t);
    const unsigned char i8[] = {0, 0, 0x09, 1, 0, 0, 0, 3, 0xff, 0x80, 0x7f};
    CHECK_OK(mo_idx_decode(&t, i8, sizeof i8, 1, 0, NULL, why, sizeof why));
    const float *x = mo_tensor_data(&t);
    CHECK(x[0] == -1 && x[1] == -128 && x[2] == 127);
    mo_tensor_release(&t);

    const unsigned char i16[] = {0, 0, 0x0B, 1, 0, 0, 0, 3, 0xff, 0xfe, 0x01, 0x00, 0x80, 0x00};
    CHECK_OK(mo_idx_decode(&t, i16, sizeof i16, 1, 0, NULL, why, sizeof why));
    x = mo_tensor_data(&t);
    CHECK(x[0] == -2 && x[1] == 256 && x[2] == -32768);
    mo_tensor_release(&t);

    const unsigned char i32[] = {0, 0, 0x0C, 1, 0, 0, 0, 3, 0x80, 0, 0, 0, 0, 0, 0x01, 0x02,
                                 0xff, 0xff, 0xff, 0xfd};
    CHECK_OK(mo_idx_decode(&t, i32, sizeof i32, 1, 0, NULL, why, sizeof why));
    x = mo_tensor_data(&t);
    CHECK(x[0] == -2147483648.0f && x[1] == 258 && x[2] == -3);
    mo_tensor_release(&t);

    /* float32 1.5 = 0x3fc00000, -2 = 0xc0000000 */
    const unsigned char f32[] = {0, 0, 0x0D, 2, 0, 0, 0, 1, 0, 0, 0, 2,
                                 0x3f, 0xc0, 0, 0, 0xc0, 0, 0, 0};
    CHECK_OK(mo_idx_decode(&t, f32, sizeof f32, 1, 0, NULL, why, sizeof why));
    x = mo_tensor_data(&t);
    CHECK(t.ndim == 2 && t.shape[0] == 1 && t.shape[1] == 2);
    CHECK(x[0] == 1.5f && x[1] == -2.0f);
    mo_tensor_release(&t);
    CHECK_OK(mo_idx_decode(&t, f32, sizeof f32, 2, 1, NULL, why, sizeof why));
    x = mo_tensor_data(&t);
    CHECK(x[0] == 4.0f && x[1] == -3.0f);
    mo_tensor_release(&t);

    /* float64 0.1 = 0x3fb999999999999a (rounds to the float nearest 0.1) */
    const unsigned char f64[] = {0, 0, 0x0E, 1, 0, 0, 0, 1, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a};
    CHECK_OK(mo_idx_decode(&t, f64, sizeof f64, 1, 0, NULL, why, sizeof why));
    CHECK(mo_tensor_data(&t)[0] == 0.1f);
    mo_tensor_release(&t);

    /* zero dimensions: a scalar; a zero size: an empty tensor */
    const unsigned char scalar[] = {0, 0, 0x08, 0, 42};
    CHECK_OK(mo_idx_decode(&t, scalar, sizeof scalar, 1, 0, NULL, why, sizeof why));
    CHECK(t.ndim == 0 && t.numel == 1 && mo_tensor_data(&t)[0] == 42);
    mo_tensor_release(&t);
    const unsigned char empty[] = {0, 0, 0x08, 2, 0, 0, 0, 0, 0, 0, 0, 5};
    CHECK_OK(mo_idx_decode(&t, empty, sizeof empty, 1, 0, NULL, why, sizeof why));
    CHECK(t.ndim == 2 && t.numel == 0 && t.shape[1] == 5);
    mo_tensor_release(&t);
}

/* One damaged buffer: the status, the words in `why`, and `out` left empty. */
static void expect_bad(const void *buf, size_t len, mo_status want, const char *words)
{
    mo_tensor t;
    mo_tensor_init(&t);
    why[0] = 0;
    CHECK_STATUS(mo_idx_decode(&t, buf, len, 1, 0, NULL, why, sizeof why), want);
    CHECK(t.storage == NULL);
    if (!contains(why, words)) {
        printf("# why = \"%s\", wanted \"%s\"\n", why, words);
        CHECK(contains(why, words));
    }
    mo_tensor_release(&t);
}

TEST(damaged_buffers_say_what_is_wrong)
{
    expect_bad("", 0, MO_ERR_FORMAT, "truncated");
    expect_bad("\0\0\x08", 3, MO_ERR_FORMAT, "too short for the 4-byte IDX magic");
    const unsigned char magic[] = {0x89, 'P', 'N', 'G', 0, 0, 0, 0};
    expect_bad(magic, sizeof magic, MO_ERR_FORMAT, "wrong magic 0x89504e47");
    const unsigned char type[] = {0, 0, 0x0A, 1, 0, 0, 0, 1, 0};
    expect_bad(type, sizeof type, MO_ERR_FORMAT, "unknown element type 0x0a");
    const unsigned char dims[] = {0, 0, 0x08, 9};
    expect_bad(dims, sizeof dims, MO_ERR_DIMS, "9 dimensions; at most 8");
    expect_bad(mnist_like, 10, MO_ERR_FORMAT, "truncated header");
    expect_bad(mnist_like, sizeof mnist_like - 1, MO_ERR_FORMAT,
               "truncated: the header says {2, 2, 3} uint8, which needs 12 data bytes; there are 11");
    unsigned char longer[sizeof mnist_like + 2];
    memcpy(longer, mnist_like, sizeof mnist_like);
    longer[sizeof mnist_like] = longer[sizeof mnist_like + 1] = 7;
    expect_bad(longer, sizeof longer, MO_ERR_FORMAT, "2 trailing bytes");
    /* 2^32-1 to the 4th: the product overflows 64 bits */
    const unsigned char over[] = {0, 0, 0x08, 4, 255, 255, 255, 255, 255, 255, 255, 255,
                                  255, 255, 255, 255, 255, 255, 255, 255};
    expect_bad(over, sizeof over, MO_ERR_OVERFLOW, "product overflows");
    /* huge but representable: must be rejected from the size, without allocating 4.6e18 bytes */
    const unsigned char huge[] = {0, 0, 0x08, 2, 0x7f, 255, 255, 255, 0x7f, 255, 255, 255, 1, 2, 3};
    expect_bad(huge, sizeof huge, MO_ERR_FORMAT, "truncated");
    /* int32 data whose length is not a multiple of 4 */
    const unsigned char ragged[] = {0, 0, 0x0C, 1, 0, 0, 0, 1, 0, 0, 1};
    expect_bad(ragged, sizeof ragged, MO_ERR_FORMAT, "truncated");
    CHECK_STATUS(mo_idx_decode(NULL, mnist_like, 4, 1, 0, NULL, why, sizeof why), MO_ERR_ARG);
    /* no message buffer is fine */
    mo_tensor t;
    mo_tensor_init(&t);
    CHECK_STATUS(mo_idx_decode(&t, magic, sizeof magic, 1, 0, NULL, NULL, 0), MO_ERR_FORMAT);
}

/* ---- files: write, read back, damage ---- */

static void round_trip(mo_idx_type type, int level, const float *vals, size_t r, size_t c)
{
    mo_tensor t = make2(r, c, vals), back;
    mo_tensor_init(&back);
    const char *p = path_of(level ? "rt.idx.gz" : "rt.idx");
    CHECK_OK(mo_idx_write_file(p, &t, type, level, why, sizeof why));
    CHECK(!file_exists(path_of(level ? "rt.idx.gz.tmp" : "rt.idx.tmp")));
    CHECK_OK(mo_idx_read_file(&back, p, 1, 0, NULL, why, sizeof why));
    CHECK(mo_tensor_same_shape(&t, &back));
    if (back.storage) {
        CHECK(memcmp(mo_tensor_data(&back), vals, r * c * sizeof(float)) == 0);
    }
    mo_tensor_release(&back);
    /* the same bytes decoded from memory */
    size_t len;
    unsigned char *bytes = slurp(p, &len);
    CHECK(bytes != NULL);
    if (bytes) {
        CHECK(level ? (bytes[0] == 0x1f && bytes[1] == 0x8b) : (bytes[0] == 0 && bytes[2] == type));
        CHECK_OK(mo_idx_decode(&back, bytes, len, 1, 0, NULL, why, sizeof why));
        if (back.storage) CHECK(memcmp(mo_tensor_data(&back), vals, r * c * sizeof(float)) == 0);
        mo_tensor_release(&back);
    }
    free(bytes);
    mo_tensor_release(&t);
}

TEST(round_trip_every_type_raw_and_gzip)
{
    const float u8[6] = {0, 1, 2, 127, 128, 255};
    const float i8[6] = {-128, -1, 0, 1, 2, 127};
    const float i16[6] = {-32768, -300, 0, 1, 300, 32767};
    const float i32[6] = {-2147483648.0f, -70000, 0, 1, 70000, 16777216};
    const float f32[6] = {-1.5f, 0.1f, 3.14159f, 1e-30f, -0.0f, 6.5e20f};
    for (int level = 0; level <= 9; level += 9) {
        round_trip(MO_IDX_U8, level, u8, 2, 3);
        round_trip(MO_IDX_I8, level, i8, 3, 2);
        round_trip(MO_IDX_I16, level, i16, 1, 6);
        round_trip(MO_IDX_I32, level, i32, 6, 1);
        round_trip(MO_IDX_F32, level, f32, 2, 3);
        round_trip(MO_IDX_F64, level, f32, 2, 3);
    }
}

TEST(round_trip_large_gzip_crosses_chunks)
{
    /* 300 x 1000 bytes: several 64 KiB chunks on both sides of zlib */
    const size_t r = 300, c = 1000;
    float *vals = malloc(r * c * sizeof *vals);
    uint32_t s = 12345;
    for (size_t i = 0; i < r * c; i++) {
        s = s * 1103515245u + 12345u;
        vals[i] = (float)((s >> 16) % 7 == 0 ? (s >> 8) & 255 : 0);  /* compressible but not trivial */
    }
    round_trip(MO_IDX_U8, 6, vals, r, c);
    round_trip(MO_IDX_U8, 0, vals, r, c);
    round_trip(MO_IDX_F64, 1, vals, r, c);
    free(vals);
}

TEST(write_strided_view_in_row_major_order)
{
    const float v[6] = {1, 2, 3, 4, 5, 6};
    mo_tensor t = make2(2, 3, v), tt, back;
    mo_tensor_init(&tt);
    mo_tensor_init(&back);
    CHECK_OK(mo_tensor_transpose(&tt, &t, 0, 1));  /* {3, 2}: 1 4 / 2 5 / 3 6 */
    const char *p = path_of("tr.idx");
    CHECK_OK(mo_idx_write_file(p, &tt, MO_IDX_U8, 0, why, sizeof why));
    CHECK_OK(mo_idx_read_file(&back, p, 1, 0, NULL, why, sizeof why));
    CHECK(back.shape[0] == 3 && back.shape[1] == 2);
    const float want[6] = {1, 4, 2, 5, 3, 6};
    if (back.storage) CHECK(memcmp(mo_tensor_data(&back), want, sizeof want) == 0);
    mo_tensor_release(&back);
    mo_tensor_release(&tt);
    mo_tensor_release(&t);
}

TEST(write_rejects_values_that_do_not_fit)
{
    const float bad_u8[2] = {1, 256};
    const float frac[2] = {1, 2.5f};
    const float neg[2] = {-1, 0};
    const float nan[2] = {NAN, 0};
    mo_tensor a = make2(1, 2, bad_u8), b = make2(1, 2, frac), c = make2(1, 2, neg), d = make2(1, 2, nan);
    const char *p = path_of("bad.idx");
    CHECK_STATUS(mo_idx_write_file(p, &a, MO_IDX_U8, 0, why, sizeof why), MO_ERR_RANGE);
    CHECK(contains(why, "element 1") && contains(why, "256") && contains(why, "uint8"));
    CHECK_STATUS(mo_idx_write_file(p, &b, MO_IDX_I16, 0, why, sizeof why), MO_ERR_RANGE);
    CHECK_STATUS(mo_idx_write_file(p, &c, MO_IDX_U8, 0, why, sizeof why), MO_ERR_RANGE);
    CHECK_STATUS(mo_idx_write_file(p, &d, MO_IDX_I32, 0, why, sizeof why), MO_ERR_RANGE);
    CHECK_OK(mo_idx_write_file(p, &c, MO_IDX_I8, 0, why, sizeof why));
    remove(p);
    CHECK_STATUS(mo_idx_write_file(p, &a, (mo_idx_type)0x0A, 0, why, sizeof why), MO_ERR_ARG);
    CHECK_STATUS(mo_idx_write_file(p, &a, MO_IDX_F32, 10, why, sizeof why), MO_ERR_ARG);
    CHECK(!file_exists(p) && !file_exists(path_of("bad.idx.tmp")));
    /* missing directories are created, but not through a regular file */
    spit(path_of("d.idx"), "x", 1);
    CHECK_STATUS(mo_idx_write_file(path_of("d.idx/sub/x.idx"), &a, MO_IDX_F32, 0, why, sizeof why), MO_ERR_IO);
    CHECK(contains(why, "d.idx: it exists and is not a directory"));
    mo_tensor_release(&a);
    CHECK_STATUS(mo_idx_write_file(p, &a, MO_IDX_F32, 0, why, sizeof why), MO_ERR_FREED);
    mo_tensor_release(&b);
    mo_tensor_release(&c);
    mo_tensor_release(&d);
}

/* Read a file that must fail: status, words, and `out` untouched. */
static void expect_bad_file(const char *p, mo_status want, const char *words)
{
    mo_tensor t;
    mo_tensor_init(&t);
    why[0] = 0;
    CHECK_STATUS(mo_idx_read_file(&t, p, 1, 0, NULL, why, sizeof why), want);
    CHECK(t.storage == NULL);
    if (!contains(why, words)) {
        printf("# %s: why = \"%s\", wanted \"%s\"\n", p, why, words);
        CHECK(contains(why, words));
    }
}

TEST(damaged_files_say_what_is_wrong)
{
    expect_bad_file(path_of("missing.idx"), MO_ERR_IO, "cannot open: No such file or directory");
    expect_bad_file(ctest_dir, MO_ERR_IO, "directory");

    /* raw, one byte short and one byte long */
    const char *p = path_of("d.idx");
    spit(p, mnist_like, sizeof mnist_like - 1);
    expect_bad_file(p, MO_ERR_FORMAT, "needs 12 data bytes; there are 11");
    unsigned char longer[sizeof mnist_like + 1];
    memcpy(longer, mnist_like, sizeof mnist_like);
    longer[sizeof mnist_like] = 0;
    spit(p, longer, sizeof longer);
    expect_bad_file(p, MO_ERR_FORMAT, "1 trailing bytes");
    spit(p, "\x1f", 1);
    expect_bad_file(p, MO_ERR_FORMAT, "too short");

    /* gzip: write a good one, then damage copies of it */
    const size_t r = 64, c = 100;
    float *vals = malloc(r * c * sizeof *vals);
    for (size_t i = 0; i < r * c; i++) vals[i] = (float)((i * 37) % 256);
    mo_tensor t = make2(r, c, vals);
    const char *gz = path_of("g.idx.gz");
    CHECK_OK(mo_idx_write_file(gz, &t, MO_IDX_U8, 6, why, sizeof why));
    size_t len;
    unsigned char *good = slurp(gz, &len);
    CHECK(good != NULL && len > 40);
    if (!good) return;
    unsigned char *buf = malloc(2 * len + 16);
    const char *q = path_of("bad.idx.gz");

    spit(q, good, len - 4);  /* the length field of the trailer cut off */
    expect_bad_file(q, MO_ERR_FORMAT, "truncated: the gzip stream ends before its end marker");
    spit(q, good, len / 2);
    expect_bad_file(q, MO_ERR_FORMAT, "truncated");

    memcpy(buf, good, len);
    buf[len - 6] ^= 0x55;  /* inside the CRC-32 */
    spit(q, buf, len);
    expect_bad_file(q, MO_ERR_FORMAT, "corrupt gzip data (incorrect data check)");

    memcpy(buf, good, len);
    for (size_t i = 12; i < 24; i++) buf[i] ^= 0xa5;  /* inside the deflate stream */
    spit(q, buf, len);
    expect_bad_file(q, MO_ERR_FORMAT, "corrupt gzip data");

    memcpy(buf, good, len);
    memcpy(buf + len, "junk", 4);
    spit(q, buf, len + 4);
    expect_bad_file(q, MO_ERR_FORMAT, "trailing bytes after the gzip data");

    /* two gzip members concatenated make one stream (as gunzip reads them): the
     * second adds data after the first's, so the sizes disagree... */
    memcpy(buf, good, len);
    memcpy(buf + len, good, len);
    spit(q, buf, 2 * len);
    expect_bad_file(q, MO_ERR_FORMAT, "trailing bytes after the 6400 data bytes of {64, 100} uint8");
    free(buf);

    /* ... while members that add up are fine: header + the first rows, then the rest */
    unsigned char *raw = malloc(16 + r * c);
    size_t zlen1, zlen2;
    memcpy(raw, (const unsigned char[]){0, 0, 8, 2, 0, 0, 0, 64, 0, 0, 0, 100}, 12);
    for (size_t i = 0; i < r * c; i++) raw[12 + i] = (unsigned char)vals[i];
    unsigned char *z1 = gzip_bytes(raw, 12 + 1000, &zlen1);
    unsigned char *z2 = gzip_bytes(raw + 12 + 1000, r * c - 1000, &zlen2);
    unsigned char *both = malloc(zlen1 + zlen2);
    memcpy(both, z1, zlen1);
    memcpy(both + zlen1, z2, zlen2);
    spit(q, both, zlen1 + zlen2);
    mo_tensor back;
    mo_tensor_init(&back);
    CHECK_OK(mo_idx_read_file(&back, q, 1, 0, NULL, why, sizeof why));
    if (back.storage) CHECK(memcmp(mo_tensor_data(&back), vals, r * c * sizeof(float)) == 0);
    mo_tensor_release(&back);
    CHECK_OK(mo_idx_decode(&back, both, zlen1 + zlen2, 1, 0, NULL, why, sizeof why));
    mo_tensor_release(&back);
    free(z1);
    free(z2);
    free(both);
    free(raw);

    /* gzip of something that is not IDX */
    unsigned char *ztext = gzip_bytes((const unsigned char *)"hello, world", 12, &zlen1);
    spit(q, ztext, zlen1);
    expect_bad_file(q, MO_ERR_FORMAT, "wrong magic 0x68656c6c");
    free(ztext);

    mo_tensor_release(&t);
    free(vals);
    free(good);
}

TEST(gzip_header_promising_too_much_is_rejected_before_allocating)
{
    /* {2^31-1, 2^31-1} uint8 = 4.6e18 bytes promised by a 30-byte gzip file: "truncated"
     * from the sizes alone (allocating first would fail or, with overcommit, thrash). */
    const unsigned char huge[] = {0, 0, 0x08, 2, 0x7f, 255, 255, 255, 0x7f, 255, 255, 255, 1, 2, 3};
    size_t zlen;
    unsigned char *z = gzip_bytes(huge, sizeof huge, &zlen);
    const char *p = path_of("hdr.idx.gz");
    spit(p, z, zlen);
    expect_bad_file(p, MO_ERR_FORMAT, "needs 4611686014132420609 data bytes");
    expect_bad_file(p, MO_ERR_FORMAT, "bytes of gzip cannot hold that many");
    expect_bad(z, zlen, MO_ERR_FORMAT, "bytes of gzip cannot hold that many");
    free(z);
}

/* ---- gather and normalize ---- */

TEST(gather_rows_contiguous_and_strided)
{
    const float v[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    mo_tensor src = make2(4, 3, v), dst, tsrc, dstv;
    size_t shape[2] = {3, 3};
    mo_tensor_init(&dst);
    CHECK_OK(mo_tensor_zeros(&dst, 2, shape, NULL));
    const size_t rows[3] = {3, 0, 3};
    CHECK_OK(mo_gather_rows(&dst, &src, rows, 3));
    const float want[9] = {10, 11, 12, 1, 2, 3, 10, 11, 12};
    CHECK(memcmp(mo_tensor_data(&dst), want, sizeof want) == 0);

    /* a bad row anywhere: nothing written */
    const size_t bad[3] = {1, 4, 0};
    CHECK_OK(mo_fill(&dst, -1));
    CHECK_STATUS(mo_gather_rows(&dst, &src, bad, 3), MO_ERR_RANGE);
    CHECK(mo_tensor_data(&dst)[0] == -1 && mo_tensor_data(&dst)[8] == -1);
    CHECK_STATUS(mo_gather_rows(&dst, &src, rows, 2), MO_ERR_SHAPE);
    CHECK_STATUS(mo_gather_rows(&dst, &dst, rows, 3), MO_ERR_ARG);

    /* strided source: the transpose {3, 4} of src; rows of it are src's columns */
    mo_tensor_init(&tsrc);
    mo_tensor_init(&dstv);
    CHECK_OK(mo_tensor_transpose(&tsrc, &src, 0, 1));
    mo_tensor d2;
    size_t s2[2] = {2, 4};
    mo_tensor_init(&d2);
    CHECK_OK(mo_tensor_zeros(&d2, 2, s2, NULL));
    const size_t cols[2] = {2, 0};
    CHECK_OK(mo_gather_rows(&d2, &tsrc, cols, 2));
    const float want2[8] = {3, 6, 9, 12, 1, 4, 7, 10};
    CHECK(memcmp(mo_tensor_data(&d2), want2, sizeof want2) == 0);

    /* 1-d: labels */
    const float lv[4] = {5, 6, 7, 8};
    size_t n4 = 4, n2 = 2;
    mo_tensor lab, lb;
    mo_tensor_init(&lab);
    mo_tensor_init(&lb);
    CHECK_OK(mo_tensor_empty(&lab, 1, &n4, NULL));
    memcpy(mo_tensor_data(&lab), lv, sizeof lv);
    CHECK_OK(mo_tensor_empty(&lb, 1, &n2, NULL));
    const size_t pick[2] = {3, 1};
    CHECK_OK(mo_gather_rows(&lb, &lab, pick, 2));
    CHECK(mo_tensor_data(&lb)[0] == 8 && mo_tensor_data(&lb)[1] == 6);

    mo_tensor_release(&lab);
    mo_tensor_release(&lb);
    mo_tensor_release(&d2);
    mo_tensor_release(&tsrc);
    mo_tensor_release(&dstv);
    mo_tensor_release(&dst);
    mo_tensor_release(&src);
}

TEST(mean_std_and_normalize)
{
    /* values 1..4 and 1e6 offsets: mean 2.5, population std sqrt(1.25) */
    const float v[4] = {1, 2, 3, 4};
    mo_tensor t = make2(2, 2, v);
    double m, s;
    CHECK_OK(mo_mean_std(&t, &m, &s));
    CHECK_NEAR(m, 2.5, 1e-12);
    CHECK_NEAR(s, sqrt(1.25), 1e-12);
    const float big[4] = {1e6f + 1, 1e6f + 2, 1e6f + 3, 1e6f + 4};
    mo_tensor b = make2(2, 2, big);
    CHECK_OK(mo_mean_std(&b, &m, &s));
    CHECK_NEAR(s, sqrt(1.25), 1e-9);  /* two passes: no cancellation */
    CHECK_OK(mo_normalize(&t, 2.5, 0.5));
    const float *x = mo_tensor_data(&t);
    CHECK(x[0] == -3 && x[1] == -1 && x[2] == 1 && x[3] == 3);
    CHECK_STATUS(mo_normalize(&t, 0, 0), MO_ERR_ARG);
    CHECK_STATUS(mo_normalize(&t, NAN, 1), MO_ERR_ARG);
    CHECK(x[0] == -3);

    /* per column: m {3, 2} = [[1, 10], [2, 20], [3, 60]] */
    const float cv[6] = {1, 10, 2, 20, 3, 60};
    mo_tensor c = make2(3, 2, cv), mean, sd;
    size_t two = 2;
    mo_tensor_init(&mean);
    mo_tensor_init(&sd);
    CHECK_OK(mo_tensor_empty(&mean, 1, &two, NULL));
    CHECK_OK(mo_tensor_empty(&sd, 1, &two, NULL));
    CHECK_OK(mo_column_mean_std(&c, &mean, &sd));
    CHECK_NEAR(mo_tensor_data(&mean)[0], 2, 1e-6);
    CHECK_NEAR(mo_tensor_data(&mean)[1], 30, 1e-6);
    CHECK_NEAR(mo_tensor_data(&sd)[0], sqrt(2.0 / 3), 1e-6);
    CHECK_NEAR(mo_tensor_data(&sd)[1], sqrt((400.0 + 100 + 900) / 3), 1e-6);
    CHECK_OK(mo_normalize_columns(&c, &mean, &sd));
    double cm, cs;
    mo_tensor col;
    mo_tensor_init(&col);
    CHECK_OK(mo_tensor_select(&col, &c, 1, 1));
    CHECK_OK(mo_mean_std(&col, &cm, &cs));  /* strided column */
    CHECK_NEAR(cm, 0, 1e-6);
    CHECK_NEAR(cs, 1, 1e-6);
    mo_tensor_release(&col);
    CHECK_OK(mo_fill(&sd, 0));
    CHECK_STATUS(mo_normalize_columns(&c, &mean, &sd), MO_ERR_ARG);
    CHECK_STATUS(mo_column_mean_std(&c, &mean, &t), MO_ERR_SHAPE);

    mo_tensor_release(&mean);
    mo_tensor_release(&sd);
    mo_tensor_release(&c);
    mo_tensor_release(&b);
    mo_tensor_release(&t);
}

TEST(count_correct_takes_the_first_maximum)
{
    /* rows: argmax 2, 0 (tie with 2: the first wins), 1, and a NaN row that never counts */
    const float sv[12] = {0.1f, 0.2f, 0.9f, 5, 1, 5, -1, 3, 2, NAN, NAN, NAN};
    mo_tensor s = make2(4, 3, sv), y, y0;
    size_t n4 = 4;
    mo_tensor_init(&y);
    mo_tensor_init(&y0);
    CHECK_OK(mo_tensor_empty(&y, 1, &n4, NULL));
    CHECK_OK(mo_tensor_empty(&y0, 1, &n4, NULL));
    const float yv[4] = {3, 3, 2, 1};   /* 1-based: right, wrong (tie goes to 1), right, NaN row */
    memcpy(mo_tensor_data(&y), yv, sizeof yv);
    size_t hits = 99;
    CHECK_OK(mo_count_correct(&s, &y, 1.0f, &hits));
    CHECK(hits == 2);
    const float y0v[4] = {2, 0, 1, 0};  /* 0-based */
    memcpy(mo_tensor_data(&y0), y0v, sizeof y0v);
    CHECK_OK(mo_count_correct(&s, &y0, 0.0f, &hits));
    CHECK(hits == 3);
    mo_tensor_data(&y)[2] = 4;          /* class 4 of 3 */
    hits = 99;
    CHECK_STATUS(mo_count_correct(&s, &y, 1.0f, &hits), MO_ERR_RANGE);
    CHECK(hits == 99);
    mo_tensor_data(&y)[2] = 1.5f;
    CHECK_STATUS(mo_count_correct(&s, &y, 1.0f, &hits), MO_ERR_RANGE);
    CHECK_STATUS(mo_count_correct(&s, &s, 1.0f, &hits), MO_ERR_SHAPE);
    mo_tensor_release(&y);
    mo_tensor_release(&y0);
    mo_tensor_release(&s);
}

/* ---- the real data set, when installed ---- */

#define FMNIST "/usr/share/datasets/fashion-mnist/"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

TEST(fashion_mnist_when_installed)
{
    if (!file_exists(FMNIST "t10k-labels-idx1-ubyte.gz") || getenv("VALGRIND")) {
        printf("# skipped: Fashion-MNIST not installed or under valgrind\n");
        return;
    }
    mo_tensor img, lab;
    mo_tensor_init(&img);
    mo_tensor_init(&lab);
    CHECK_OK(mo_idx_read_file(&lab, FMNIST "t10k-labels-idx1-ubyte.gz", 1, 0, NULL, why, sizeof why));
    CHECK(lab.ndim == 1 && lab.shape[0] == 10000);
    if (lab.storage) {
        /* the test set holds exactly 1000 of each of the 10 classes */
        size_t count[10] = {0};
        const float *y = mo_tensor_data(&lab);
        int ok = 1;
        for (size_t i = 0; i < 10000; i++) {
            if (y[i] < 0 || y[i] > 9 || y[i] != (float)(int)y[i]) ok = 0;
            else count[(int)y[i]]++;
        }
        CHECK(ok);
        for (int k = 0; k < 10; k++) CHECK(count[k] == 1000);
    }
    if (getenv("SANITIZE") == NULL) {
        /* The time is printed for information only: speed is asserted in bench/, never in
         * the suite (the machines are shared and noisy). */
        double t0 = now();
        CHECK_OK(mo_idx_read_file(&img, FMNIST "train-images-idx3-ubyte.gz", 1.0f / 255, 0, NULL, why,
                                  sizeof why));
        printf("# train-images (47 MB) read in %.3f s\n", now() - t0);
        CHECK(img.ndim == 3 && img.shape[0] == 60000 && img.shape[1] == 28 && img.shape[2] == 28);
        double m, s;
        CHECK_OK(mo_mean_std(&img, &m, &s));
        CHECK_NEAR(m, 0.2860, 1e-3);  /* the data set's well-known mean and std */
        CHECK_NEAR(s, 0.3530, 1e-3);
        mo_tensor_release(&img);
    }
    mo_tensor_release(&lab);
}

int main(void)
{
    snprintf(ctest_dir, sizeof ctest_dir, "/tmp/mo_idx_XXXXXX");
    if (!mkdtemp(ctest_dir)) {
        printf("not ok mkdtemp\n");
        return 1;
    }
    RUN(parse_header_reads_magic_and_sizes);
    RUN(decode_scales_and_shifts);
    RUN(decode_signed_and_float_types_big_endian);
    RUN(damaged_buffers_say_what_is_wrong);
    RUN(round_trip_every_type_raw_and_gzip);
    RUN(round_trip_large_gzip_crosses_chunks);
    RUN(write_strided_view_in_row_major_order);
    RUN(write_rejects_values_that_do_not_fit);
    RUN(damaged_files_say_what_is_wrong);
    RUN(gzip_header_promising_too_much_is_rejected_before_allocating);
    RUN(gather_rows_contiguous_and_strided);
    RUN(mean_std_and_normalize);
    RUN(count_correct_takes_the_first_maximum);
    RUN(fashion_mnist_when_installed);
    /* clean up the scratch directory */
    const char *names[] = {"rt.idx", "rt.idx.gz", "tr.idx", "bad.idx", "d.idx", "g.idx.gz", "bad.idx.gz",
                           "hdr.idx.gz"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) remove(path_of(names[i]));
    if (rmdir(ctest_dir) != 0) printf("# could not remove %s\n", ctest_dir);
    return ctest_summary();
}
