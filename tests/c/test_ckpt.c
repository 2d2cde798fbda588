/*
 * test_ckpt.c - safetensors checkpoints: round trips (file and memory), the
 * exact byte layout, atomic replacement, the writer's argument checks, the
 * dtype conversions, and every kind of damage the reader must refuse with a
 * message (plus every truncation and every single-byte change of a small file,
 * which must never crash and, in the data, must trip the checksum).
 *
 * Files go to a fresh mkdtemp directory that is removed at the end.
 */
#include "moonopt.h"
#include "moonopt_ckpt.h"

#include <dirent.h>
#include <fcntl.h>
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctest.h"
#include "ctest_files.h"

static char why[MO_CKPT_WHY_SIZE];

/* Number of directory entries whose name contains `part`. */
static int count_files(const char *part)
{
    DIR *d = opendir(ctest_dir);
    int n = 0;
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, part)) n++;
    closedir(d);
    return n;
}

/* A file image: 8-byte length, the JSON text, then data_len bytes of data. */
static unsigned char *image(const char *json, const void *data, size_t data_len, size_t *len)
{
    size_t n = strlen(json);
    *len = 8 + n + data_len;
    unsigned char *p = malloc(*len);
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(p + 8, json, n);
    if (data_len) memcpy(p + 8 + n, data, data_len);
    return p;
}

/* Decoding must fail with MO_ERR_FORMAT (or `want`) and a message containing `part`. */
static int refuses(const unsigned char *buf, size_t len, mo_status want, const char *part)
{
    mo_ckpt *c = (mo_ckpt *)1;
    why[0] = '\0';
    mo_status st = mo_ckpt_decode(&c, buf, len, NULL, why, sizeof why);
    int ok = st == want && c == NULL && strstr(why, part) != NULL;
    if (!ok) printf("# got status %d, why \"%s\"; want %d and \"%s\"\n", (int)st, why, (int)want, part);
    mo_ckpt_free(st == MO_OK ? c : NULL);
    return ok;
}

static int refuses_json(const char *json, const void *data, size_t data_len, const char *part)
{
    size_t len;
    unsigned char *p = image(json, data, data_len, &len);
    int ok = refuses(p, len, MO_ERR_FORMAT, part);
    free(p);
    return ok;
}

static void fill_seq(mo_tensor *t, float start)
{
    float *p = mo_tensor_data(t);
    for (size_t i = 0; i < t->numel; i++) p[i] = start + (float)i * 0.25f;
}

static int same_bits(const mo_tensor *a, const float *want, size_t n)
{
    if (a->numel != n || !mo_tensor_is_contiguous(a)) return 0;
    return n == 0 || memcmp(mo_tensor_data(a), want, n * sizeof(float)) == 0;
}

TEST(crc32_known_value)
{
    CHECK(mo_crc32(0, "123456789", 9) == 0xCBF43926u);
    /* continuing a CRC over two pieces equals one pass */
    CHECK(mo_crc32(mo_crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u);
    CHECK(mo_crc32(0, "", 0) == 0);
}

/* Tensors of every shape kind: 2-d, a strided view (transpose), 0-d, zero-size, 3-d. */
typedef struct fixture {
    mo_tensor a, at, s, z, c;
} fixture;

static void fixture_make(fixture *f)
{
    size_t sa[2] = {2, 3}, sz[2] = {0, 4}, sc[3] = {2, 2, 2};
    mo_tensor_init(&f->a);
    mo_tensor_init(&f->at);
    mo_tensor_init(&f->s);
    mo_tensor_init(&f->z);
    mo_tensor_init(&f->c);
    mo_tensor_empty(&f->a, 2, sa, NULL);
    fill_seq(&f->a, 1.0f);
    mo_tensor_transpose(&f->at, &f->a, 0, 1);   /* {3, 2}, not contiguous */
    mo_tensor_empty(&f->s, 0, NULL, NULL);
    mo_tensor_data(&f->s)[0] = -0.0f;
    mo_tensor_empty(&f->z, 2, sz, NULL);
    mo_tensor_empty(&f->c, 3, sc, NULL);
    fill_seq(&f->c, -3.0f);
    mo_tensor_data(&f->c)[1] = 1.0f / 3.0f;
    mo_tensor_data(&f->c)[2] = (float)HUGE_VAL;
    mo_tensor_data(&f->c)[3] = 1e-45f;   /* subnormal */
}

static void fixture_free(fixture *f)
{
    mo_tensor_release(&f->at);
    mo_tensor_release(&f->a);
    mo_tensor_release(&f->s);
    mo_tensor_release(&f->z);
    mo_tensor_release(&f->c);
}

static void check_fixture_read(const mo_ckpt *c, const fixture *f)
{
    CHECK(mo_ckpt_count(c) == 5);
    const char *names[5] = {"a", "a.T", "scalar", "empty", "model.0.weight"};
    for (size_t i = 0; i < 5 && i < mo_ckpt_count(c); i++) {
        CHECK(strcmp(mo_ckpt_name(c, i), names[i]) == 0);
        CHECK(strcmp(mo_ckpt_dtype(c, i), "F32") == 0);
        CHECK(mo_ckpt_find(c, names[i]) == i);
    }
    CHECK(mo_ckpt_find(c, "nope") == MO_CKPT_NONE);
    const mo_tensor *a = mo_ckpt_tensor(c, 0), *at = mo_ckpt_tensor(c, 1);
    CHECK(a && mo_tensor_same_shape(a, &f->a) && same_bits(a, mo_tensor_data(&f->a), 6));
    /* the transposed view is written row-major: at[i][j] = a[j][i] */
    const float want_t[6] = {1.0f, 1.75f, 1.25f, 2.0f, 1.5f, 2.25f};
    CHECK(at && at->ndim == 2 && at->shape[0] == 3 && at->shape[1] == 2 && same_bits(at, want_t, 6));
    const mo_tensor *s = mo_ckpt_tensor(c, 2);
    CHECK(s && s->ndim == 0 && s->numel == 1);
    if (s) {
        float v = mo_tensor_data(s)[0];
        CHECK(v == 0.0f && signbit(v));
    }
    const mo_tensor *z = mo_ckpt_tensor(c, 3);
    CHECK(z && z->ndim == 2 && z->shape[0] == 0 && z->shape[1] == 4 && z->numel == 0);
    const mo_tensor *m = mo_ckpt_tensor(c, 4);
    CHECK(m && mo_tensor_same_shape(m, &f->c) && same_bits(m, mo_tensor_data(&f->c), 8));
    CHECK(mo_ckpt_meta_get(c, "note") && strcmp(mo_ckpt_meta_get(c, "note"), "é \"quoted\"\n\ttab") == 0);
    CHECK(mo_ckpt_meta_get(c, "empty") && strcmp(mo_ckpt_meta_get(c, "empty"), "") == 0);
    CHECK(mo_ckpt_meta_get(c, MO_CKPT_CRC_KEY) != NULL);
    CHECK(mo_ckpt_meta_count(c) == 3);
    CHECK(mo_ckpt_meta_get(c, "missing") == NULL);
}

static size_t fixture_items(fixture *f, mo_ckpt_item *items, mo_ckpt_meta *meta)
{
    items[0] = (mo_ckpt_item){"a", &f->a};
    items[1] = (mo_ckpt_item){"a.T", &f->at};
    items[2] = (mo_ckpt_item){"scalar", &f->s};
    items[3] = (mo_ckpt_item){"empty", &f->z};
    items[4] = (mo_ckpt_item){"model.0.weight", &f->c};
    meta[0] = (mo_ckpt_meta){"note", "é \"quoted\"\n\ttab"};
    meta[1] = (mo_ckpt_meta){"empty", ""};
    return 5;
}

TEST(round_trip_file_and_memory)
{
    fixture f;
    fixture_make(&f);
    mo_ckpt_item items[5];
    mo_ckpt_meta meta[2];
    size_t n = fixture_items(&f, items, meta);
    const char *p = path_of("rt.safetensors");
    CHECK_OK(mo_ckpt_write_file(p, items, n, meta, 2, why, sizeof why));
    mo_ckpt *c = NULL;
    CHECK_OK(mo_ckpt_read_file(&c, p, NULL, why, sizeof why));
    if (c) check_fixture_read(c, &f);

    /* a tensor shared out of the result outlives it */
    mo_tensor keep;
    mo_tensor_init(&keep);
    if (c) CHECK_OK(mo_tensor_share(&keep, mo_ckpt_tensor(c, 0)));
    mo_ckpt_free(c);
    CHECK(mo_tensor_alive(&keep) && mo_tensor_data(&keep)[5] == 2.25f);
    mo_tensor_release(&keep);

    /* the memory image is byte for byte the file */
    unsigned char *mem = NULL;
    size_t mlen = 0, flen = 0;
    CHECK_OK(mo_ckpt_encode(&mem, &mlen, items, n, meta, 2, why, sizeof why));
    unsigned char *file = slurp(p, &flen);
    CHECK(file && mem && mlen == flen && memcmp(mem, file, flen) == 0);
    c = NULL;
    CHECK_OK(mo_ckpt_decode(&c, mem, mlen, NULL, why, sizeof why));
    if (c) check_fixture_read(c, &f);
    mo_ckpt_free(c);
    mo_ckpt_buffer_free(mem);
    free(file);
    CHECK(count_files(".tmp") == 0);
    fixture_free(&f);
}

TEST(byte_layout)
{
    size_t shape[1] = {2};
    mo_tensor t;
    mo_tensor_init(&t);
    CHECK_OK(mo_tensor_empty(&t, 1, shape, NULL));
    mo_tensor_data(&t)[0] = 1.0f;
    mo_tensor_data(&t)[1] = -2.0f;
    mo_ckpt_item it = {"w", &t};
    unsigned char *buf = NULL;
    size_t len = 0;
    CHECK_OK(mo_ckpt_encode(&buf, &len, &it, 1, NULL, 0, why, sizeof why));
    if (buf) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = n << 8 | buf[i];
        CHECK(8 + n + 8 == len);          /* header, then 2 floats */
        CHECK((8 + n) % 8 == 0);          /* the data section starts aligned */
        CHECK(buf[8] == '{');
        char *json = malloc((size_t)n + 1);
        memcpy(json, buf + 8, (size_t)n);
        json[n] = '\0';
        CHECK(strstr(json, "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}") != NULL);
        CHECK(strstr(json, "\"__metadata__\":{\"moonopt.crc32\":\"") != NULL);
        /* CRC of the data section, 8 lowercase hex digits */
        char want[32];
        snprintf(want, sizeof want, "\"%08lx\"", (unsigned long)mo_crc32(0, buf + 8 + n, 8));
        CHECK(strstr(json, want) != NULL);
        /* little-endian float32: 1.0f is 00 00 80 3f */
        const unsigned char one[4] = {0x00, 0x00, 0x80, 0x3f}, mtwo[4] = {0x00, 0x00, 0x00, 0xc0};
        CHECK(memcmp(buf + 8 + n, one, 4) == 0 && memcmp(buf + 12 + n, mtwo, 4) == 0);
        free(json);
    }
    mo_ckpt_buffer_free(buf);
    mo_tensor_release(&t);
}

TEST(atomic_replace_and_failures)
{
    size_t shape[1] = {3};
    mo_tensor t, dead;
    mo_tensor_init(&t);
    mo_tensor_init(&dead);
    CHECK_OK(mo_tensor_zeros(&t, 1, shape, NULL));
    const char *p = path_of("atomic.safetensors");
    mo_ckpt_item it = {"x", &t};
    CHECK_OK(mo_ckpt_write_file(p, &it, 1, NULL, 0, why, sizeof why));
    mo_fill(&t, 7.0f);
    CHECK_OK(mo_ckpt_write_file(p, &it, 1, NULL, 0, why, sizeof why));
    mo_ckpt *c = NULL;
    CHECK_OK(mo_ckpt_read_file(&c, p, NULL, why, sizeof why));
    CHECK(c && mo_tensor_data(mo_ckpt_tensor(c, 0))[2] == 7.0f);
    mo_ckpt_free(c);
    size_t before_len = 0;
    unsigned char *before = slurp(p, &before_len);

    /* bad arguments: nothing written, the old file intact, no temporary left */
    mo_ckpt_item dup[2] = {{"x", &t}, {"x", &t}};
    CHECK_STATUS(mo_ckpt_write_file(p, dup, 2, NULL, 0, why, sizeof why), MO_ERR_ARG);
    CHECK(strstr(why, "duplicate tensor name 'x'") != NULL);
    mo_ckpt_item empty = {"", &t};
    CHECK_STATUS(mo_ckpt_write_file(p, &empty, 1, NULL, 0, why, sizeof why), MO_ERR_ARG);
    CHECK(strstr(why, "empty") != NULL);
    mo_ckpt_item reserved = {"__metadata__", &t};
    CHECK_STATUS(mo_ckpt_write_file(p, &reserved, 1, NULL, 0, why, sizeof why), MO_ERR_ARG);
    CHECK(strstr(why, "reserved") != NULL);
    mo_ckpt_item bad_utf8 = {"caf\xe9", &t};
    CHECK_STATUS(mo_ckpt_write_file(p, &bad_utf8, 1, NULL, 0, why, sizeof why), MO_ERR_ARG);
    CHECK(strstr(why, "UTF-8") != NULL);
    mo_ckpt_item freed = {"d", &dead};
    CHECK_STATUS(mo_ckpt_write_file(p, &freed, 1, NULL, 0, why, sizeof why), MO_ERR_FREED);
    mo_ckpt_meta crc = {MO_CKPT_CRC_KEY, "00000000"};
    CHECK_STATUS(mo_ckpt_write_file(p, &it, 1, &crc, 1, why, sizeof why), MO_ERR_ARG);
    mo_ckpt_meta dupm[2] = {{"k", "1"}, {"k", "2"}};
    CHECK_STATUS(mo_ckpt_write_file(p, &it, 1, dupm, 2, why, sizeof why), MO_ERR_ARG);
    CHECK(strstr(why, "duplicate metadata key 'k'") != NULL);
    mo_ckpt_meta badv = {"k", "\xff"};
    CHECK_STATUS(mo_ckpt_write_file(p, &it, 1, &badv, 1, why, sizeof why), MO_ERR_ARG);
    CHECK_STATUS(mo_ckpt_write_file(NULL, &it, 1, NULL, 0, why, sizeof why), MO_ERR_ARG);
    CHECK_STATUS(mo_ckpt_write_file(p, NULL, 1, NULL, 0, why, sizeof why), MO_ERR_ARG);
    size_t after_len = 0;
    unsigned char *after = slurp(p, &after_len);
    CHECK(before && after && before_len == after_len && memcmp(before, after, after_len) == 0);
    free(before);
    free(after);

    /* a path through a regular file: an I/O error naming the component that is no directory */
    CHECK_STATUS(mo_ckpt_write_file(path_of("atomic.safetensors/sub/x.safetensors"), &it, 1, NULL, 0, why,
                                    sizeof why), MO_ERR_IO);
    CHECK(strstr(why, "atomic.safetensors: it exists and is not a directory") != NULL);
    /* a missing file, a directory */
    c = (mo_ckpt *)1;
    CHECK_STATUS(mo_ckpt_read_file(&c, path_of("missing"), NULL, why, sizeof why), MO_ERR_IO);
    CHECK(c == NULL && strstr(why, "cannot open") != NULL);
    CHECK_STATUS(mo_ckpt_read_file(&c, ctest_dir, NULL, why, sizeof why), MO_ERR_IO);
    CHECK(count_files(".tmp") == 0);
    mo_tensor_release(&t);
}

TEST(header_length_bounds)
{
    unsigned char small[5] = {1, 0, 0, 0, 0};
    CHECK(refuses(small, 5, MO_ERR_FORMAT, "too short for the 8-byte header length"));
    CHECK(refuses(small, 0, MO_ERR_FORMAT, "the file is 0 bytes"));
    unsigned char big[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    CHECK(refuses(big, 16, MO_ERR_FORMAT, "exceeds the 8 bytes that follow it"));
    unsigned char nine[16] = {9, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    CHECK(refuses(nine, 16, MO_ERR_FORMAT, "header length 9 exceeds the 8 bytes"));

    /* over 100 MB: a sparse file, so the test stays cheap; refused before reading */
    const char *p = path_of("huge.safetensors");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    if (fd >= 0) {
        uint64_t n = MO_CKPT_MAX_HEADER + 1;
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
        CHECK(write(fd, len8, 8) == 8);
        CHECK(ftruncate(fd, (off_t)(MO_CKPT_MAX_HEADER + 100)) == 0);
        close(fd);
        mo_ckpt *c = NULL;
        CHECK_STATUS(mo_ckpt_read_file(&c, p, NULL, why, sizeof why), MO_ERR_FORMAT);
        CHECK(strstr(why, "over the limit") != NULL);
        remove(p);
    }
    /* a file that is exactly the length and "{}" is valid and empty */
    unsigned char ok[10] = {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    mo_ckpt *c = NULL;
    CHECK_OK(mo_ckpt_decode(&c, ok, 10, NULL, why, sizeof why));
    CHECK(c && mo_ckpt_count(c) == 0 && mo_ckpt_meta_count(c) == 0);
    mo_ckpt_free(c);
}

TEST(json_errors)
{
    const float d[2] = {1, 2};
    CHECK(refuses_json("", NULL, 0, "expected '{'"));
    CHECK(refuses_json("[]", NULL, 0, "expected '{'"));
    CHECK(refuses_json("{", NULL, 0, "expected a string"));
    CHECK(refuses_json("{\"a\" {}}", NULL, 0, "expected ':'"));
    CHECK(refuses_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", d, 8,
                       "expected a string"));
    CHECK(refuses_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", d, 8,
                       "unexpected text after"));
    CHECK(refuses_json("{\"a", NULL, 0, "unterminated string"));
    CHECK(refuses_json("{\"a\\q\":1}", NULL, 0, "bad escape"));
    CHECK(refuses_json("{\"a\\ud800\":1}", NULL, 0, "unpaired surrogate"));
    CHECK(refuses_json("{\"a\\u0000\":1}", NULL, 0, "NUL"));
    CHECK(refuses_json("{\"a\\u12\":1}", NULL, 0, "bad \\u escape"));
    CHECK(refuses_json("{\"caf\xe9\":1}", NULL, 0, "invalid UTF-8"));
    CHECK(refuses_json("{\"a\tb\":1}", NULL, 0, "control character"));
    CHECK(refuses_json("{\"a\":5}", NULL, 0, "expected '{' (a tensor's description)"));
    CHECK(refuses_json("{\"__metadata__\":{\"k\":1}}", NULL, 0, "the value of 'k' is not a string"));
    CHECK(refuses_json("{\"__metadata__\":{},\"__metadata__\":{}}", NULL, 0, "__metadata__ appears twice"));
    CHECK(refuses_json("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", NULL, 0, "metadata key 'k' appears twice"));
    CHECK(refuses_json("{\"__metadata__\":nul}", NULL, 0, "null"));
    /* escapes decode: "\u00e9" is é, "\ud83d\ude00" is an emoji, "\/" is / */
    size_t len;
    unsigned char *p = image("{\"__metadata__\":{\"k\\u00e9\":\"\\ud83d\\ude00\\/\"}}", NULL, 0, &len);
    mo_ckpt *c = NULL;
    CHECK_OK(mo_ckpt_decode(&c, p, len, NULL, why, sizeof why));
    CHECK(c && mo_ckpt_meta_get(c, "k\xc3\xa9") && strcmp(mo_ckpt_meta_get(c, "k\xc3\xa9"), "\xf0\x9f\x98\x80/") == 0);
    mo_ckpt_free(c);
    free(p);
    /* __metadata__: null is no metadata */
    p = image("{\"__metadata__\":null}", NULL, 0, &len);
    CHECK_OK(mo_ckpt_decode(&c, p, len, NULL, why, sizeof why));
    mo_ckpt_free(c);
    free(p);
}

TEST(tensor_entry_errors)
{
    const float d[4] = {1, 2, 3, 4};
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", d, 8,
                       "tensor 'w': unknown dtype 'F33'"));
    CHECK(refuses_json("{\"w\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[0,8]}}", d, 8,
                       "dtype U64 is not supported"));
    /* I64 is read into float64 when exact: the bytes of floats 1, 2 as an int64 are not */
    CHECK(refuses_json("{\"w\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", d, 8,
                       "I64 value 4611686019492741120 is beyond 2^53"));
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", d, 8, "tensor 'w': missing 'data_offsets'"));
    CHECK(refuses_json("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", d, 8, "missing 'dtype'"));
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", d, 8,
                       "unknown field 'x'"));
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\"}}", d, 8, "field 'dtype' appears twice"));
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", d, 8,
                       "must be a non-negative integer"));
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", d, 8,
                       "must be an integer"));
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", d, 8, "leading zero"));
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}", d,
                       8, "too large"));
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                       "\"data_offsets\":[0,8]}}", d, 8, "is too large"));
    size_t len;
    unsigned char *p = image("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
                             d, 4, &len);
    CHECK(refuses(p, len, MO_ERR_DIMS, "tensor 'w': more than 8 dimensions"));
    free(p);
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", d, 8,
                       "data_offsets holds two numbers"));
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", d, 16,
                       "the tensor name 'w' appears twice"));
}

TEST(offset_errors)
{
    const float d[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    /* shape * 4 disagrees with the offsets */
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", d, 20,
                       "tensor 'w': data_offsets [0, 20] hold 20 bytes, but {2, 3} F32 needs 24"));
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", d, 8,
                       "end before they begin"));
    /* past the end of the file: truncated */
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d, 12,
                       "truncated: tensor 'w' (data_offsets [0, 16]) ends past the 12 bytes"));
    CHECK(refuses_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1000000,1000004]}}", d, 8,
                       "truncated"));
    /* overlap, gap, trailing bytes */
    CHECK(refuses_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", d, 12,
                       "tensor 'b' (data_offsets [4, 12]) overlaps tensor 'a' ([0, 8])"));
    CHECK(refuses_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", d, 20,
                       "4 unused bytes before tensor 'b'"));
    CHECK(refuses_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", d, 12,
                       "trailing bytes: the tensors end at data byte 8, the file holds 12"));
    CHECK(refuses_json("{}", d, 4, "trailing bytes"));
    /* out of header order but tiling exactly: fine (Python writers sort by dtype, then name) */
    size_t len;
    unsigned char *p = image("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                             "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                             "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}   ", d, 8, &len);
    mo_ckpt *c = NULL;
    CHECK_OK(mo_ckpt_decode(&c, p, len, NULL, why, sizeof why));
    CHECK(c && mo_ckpt_count(c) == 3 && strcmp(mo_ckpt_name(c, 0), "a") == 0 &&
          strcmp(mo_ckpt_name(c, 1), "e") == 0 && strcmp(mo_ckpt_name(c, 2), "b") == 0);
    CHECK(c && mo_tensor_data(mo_ckpt_tensor(c, 2))[0] == 2.0f);
    mo_ckpt_free(c);
    free(p);
}

TEST(checksum)
{
    size_t shape[1] = {4};
    mo_tensor t;
    mo_tensor_init(&t);
    CHECK_OK(mo_tensor_empty(&t, 1, shape, NULL));
    fill_seq(&t, 0.5f);
    mo_ckpt_item it = {"w", &t};
    unsigned char *buf = NULL;
    size_t len = 0;
    CHECK_OK(mo_ckpt_encode(&buf, &len, &it, 1, NULL, 0, why, sizeof why));
    if (buf) {
        buf[len - 3] ^= 0x10;   /* one bit of the data */
        CHECK(refuses(buf, len, MO_ERR_FORMAT, "checksum mismatch: moonopt.crc32 says"));
        buf[len - 3] ^= 0x10;
        /* a checksum that is not 8 hex digits */
        char *k = strstr((char *)buf + 8, "\"moonopt.crc32\":\"");
        CHECK(k != NULL);
        if (k) {
            k[17] = 'z';
            CHECK(refuses(buf, len, MO_ERR_FORMAT, "not 8 hex digits"));
        }
    }
    mo_ckpt_buffer_free(buf);
    mo_tensor_release(&t);
}

TEST(other_dtypes)
{
    /* F64 (read as float64, exact): 1.5, -1e300, 3.4028235e38, NaN; converted to float32
     * with mo_copy they become 1.5, -inf, FLT_MAX (just over it, rounds to it), NaN */
    double f64[4] = {1.5, -1e300, 3.4028235e38, 0.0};
    uint64_t nanbits = 0x7ff8000000000000ull;
    memcpy(&f64[3], &nanbits, 8);
    /* F16: 1.0, -2.0, smallest subnormal 2^-24, 65504 (max), inf, -0 */
    const uint16_t f16[6] = {0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00, 0x8000};
    /* BF16: 1.0, -3.0, 0x3f81 = 1.0078125 */
    const uint16_t bf16[3] = {0x3f80, 0xc040, 0x3f81};
    unsigned char data[32 + 12 + 6];
    memcpy(data, f64, 32);   /* the test runs on little-endian hosts (x86, arm) */
    memcpy(data + 32, f16, 12);
    memcpy(data + 44, bf16, 6);
    size_t len;
    unsigned char *p = image("{\"d\":{\"dtype\":\"F64\",\"shape\":[4],\"data_offsets\":[0,32]},"
                             "\"h\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[32,44]},"
                             "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[44,50]}}",
                             data, sizeof data, &len);
    mo_ckpt *c = NULL;
    CHECK_OK(mo_ckpt_decode(&c, p, len, NULL, why, sizeof why));
    if (c) {
        const mo_tensor *t64 = mo_ckpt_tensor(c, 0);
        const double *dd = mo_tensor_data_f64(t64);
        CHECK(strcmp(mo_ckpt_dtype(c, 0), "F64") == 0);
        CHECK(t64->dtype == MO_FLOAT64 && mo_tensor_data(t64) == NULL);
        CHECK(dd && dd[0] == 1.5 && dd[1] == -1e300 && dd[2] == 3.4028235e38 && isnan(dd[3]));
        mo_tensor f32;
        mo_tensor_init(&f32);
        CHECK_OK(mo_tensor_empty(&f32, 1, t64->shape, NULL));
        CHECK_OK(mo_copy(&f32, t64));
        const float *d = mo_tensor_data(&f32);
        CHECK(d && d[0] == 1.5f && isinf(d[1]) && d[1] < 0 && d[2] == FLT_MAX && isnan(d[3]));
        mo_tensor_release(&f32);
        const float *h = mo_tensor_data(mo_ckpt_tensor(c, 1));
        CHECK(h[0] == 1.0f && h[1] == -2.0f && h[2] == ldexpf(1.0f, -24) && h[3] == 65504.0f);
        CHECK(isinf(h[4]) && h[4] > 0 && h[5] == 0.0f && signbit(h[5]));
        const float *b = mo_tensor_data(mo_ckpt_tensor(c, 2));
        CHECK(b[0] == 1.0f && b[1] == -3.0f && b[2] == 1.0078125f);
    }
    mo_ckpt_free(c);
    free(p);
    /* every F16 subnormal and normal converts to the value its bits denote */
    for (uint32_t bits = 0; bits < 0x7c00; bits += 7) {
        uint16_t h16 = (uint16_t)bits;
        unsigned char d2[2] = {(unsigned char)(h16 & 0xff), (unsigned char)(h16 >> 8)};
        unsigned char *q = image("{\"h\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,2]}}", d2, 2, &len);
        mo_ckpt *c2 = NULL;
        if (mo_ckpt_decode(&c2, q, len, NULL, why, sizeof why) == MO_OK) {
            unsigned e = bits >> 10, m = bits & 0x3ff;
            float want = e ? ldexpf(1.0f + (float)m / 1024.0f, (int)e - 15) : ldexpf((float)m, -24);
            if (mo_tensor_data(mo_ckpt_tensor(c2, 0))[0] != want) {
                CHECK(!"f16 conversion");
                bits = 0x7c00;
            }
        }
        mo_ckpt_free(c2);
        free(q);
    }
}

/* Every prefix of a valid file fails cleanly; every one-byte change fails or, in
 * the header's blanks or the checksum-free parts, still yields a sane result. */
TEST(truncations_and_byte_flips)
{
    fixture f;
    fixture_make(&f);
    mo_ckpt_item items[5];
    mo_ckpt_meta meta[2];
    size_t n = fixture_items(&f, items, meta);
    unsigned char *buf = NULL;
    size_t len = 0;
    CHECK_OK(mo_ckpt_encode(&buf, &len, items, n, meta, 2, why, sizeof why));
    if (!buf) return;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    int bad_prefix = 0, data_flips_missed = 0;
    for (size_t k = 0; k < len; k++) {
        mo_ckpt *c = NULL;
        if (mo_ckpt_decode(&c, buf, k, NULL, why, sizeof why) == MO_OK || c != NULL) bad_prefix++;
        mo_ckpt_free(c);
    }
    for (size_t k = 0; k < len; k++) {
        for (int bit = 0; bit < 8; bit += 3) {
            buf[k] ^= (unsigned char)(1u << bit);
            mo_ckpt *c = NULL;
            mo_status st = mo_ckpt_decode(&c, buf, len, NULL, why, sizeof why);
            if (st == MO_OK && k >= 8 + hlen) data_flips_missed++;
            if (st != MO_OK) CHECK(c == NULL && why[0] != '\0');
            mo_ckpt_free(c);
            buf[k] ^= (unsigned char)(1u << bit);
        }
    }
    CHECK(bad_prefix == 0);
    CHECK(data_flips_missed == 0);
    mo_ckpt_buffer_free(buf);
    fixture_free(&f);
}

TEST(refcount_and_shrunk_file)
{
    /* a tensor read back is referenced once, by the result */
    size_t shape[1] = {5};
    mo_tensor t;
    mo_tensor_init(&t);
    CHECK_OK(mo_tensor_zeros(&t, 1, shape, NULL));
    mo_ckpt_item it = {"w", &t};
    const char *p = path_of("alloc.safetensors");
    CHECK_OK(mo_ckpt_write_file(p, &it, 1, NULL, 0, why, sizeof why));
    mo_tensor_release(&t);
    mo_ckpt *c = NULL;
    CHECK_OK(mo_ckpt_read_file(&c, p, NULL, why, sizeof why));
    CHECK(c && mo_tensor_refcount(mo_ckpt_tensor(c, 0)) == 1);
    mo_ckpt_free(c);
    /* a file changed to hold less after the write: refused, no crash */
    size_t len = 0;
    unsigned char *b = slurp(p, &len);
    if (b) {
        spit(p, b, len - 1);
        c = NULL;
        CHECK_STATUS(mo_ckpt_read_file(&c, p, NULL, why, sizeof why), MO_ERR_FORMAT);
        CHECK(strstr(why, "truncated") != NULL);
        free(b);
    }
}

int main(void)
{
    snprintf(ctest_dir, sizeof ctest_dir, "/tmp/moonopt-ckpt-XXXXXX");
    if (!mkdtemp(ctest_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(crc32_known_value);
    RUN(round_trip_file_and_memory);
    RUN(byte_layout);
    RUN(atomic_replace_and_failures);
    RUN(header_length_bounds);
    RUN(json_errors);
    RUN(tensor_entry_errors);
    RUN(offset_errors);
    RUN(checksum);
    RUN(other_dtypes);
    RUN(truncations_and_byte_flips);
    RUN(refcount_and_shrunk_file);
    /* clean up: every file made here, then the directory */
    DIR *d = opendir(ctest_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.') remove(path_of(e->d_name));
        closedir(d);
    }
    rmdir(ctest_dir);
    return ctest_summary();
}
