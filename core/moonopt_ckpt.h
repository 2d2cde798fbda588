/*
 * moonopt_ckpt.h - checkpoints in the safetensors format (public C API).
 *
 * A file is
 *
 *     8 bytes    N, the header length, unsigned little-endian
 *     N bytes    a UTF-8 JSON object (padded with spaces):
 *                  {"__metadata__": {"key": "value", ...},
 *                   "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...}
 *     the rest   the data section: every tensor's elements, row-major,
 *                little-endian, packed in order without gaps; data_offsets
 *                [begin, end) count bytes from the start of this section
 *
 * so Python's `safetensors` package and ten lines of NumPy read it (see
 * docs/checkpoints.md). Writing stores each tensor in its dtype (float32 as
 * "F32", float64 as "F64"); reading gives F64 as float64 tensors and F32, F16,
 * BF16, I8 and U8 as float32 ones (converted; every BF16, I8 and U8 value is exact in
 * float32). mo_ckpt_write_file_raw writes BF16, I8 and U8 items. The writer adds the metadata entry
 * "moonopt.crc32": the CRC-32 (zlib's) of the data section as 8 lowercase hex
 * digits; the reader checks it when present (files from other tools have none).
 *
 * Writing a file is atomic: missing parent directories are created, the bytes
 * go to a new temporary file in the same directory
 * ("<path>.tmp.<host>.<pid>.<8 hex digits>"), which is flushed, fsync'ed and
 * renamed over `path`; then the directory is fsync'ed. A process killed at any
 * moment leaves either the old file or the new one at `path` (and possibly a
 * stale temporary file), never a mixture. The next successful write of the same
 * `path` removes the temporaries that dead processes of this host left (those
 * of live processes and of other hosts are kept: they may be in use).
 *
 * Reading refuses anything but a regular file (a FIFO, a directory, a device)
 * without blocking: "not a regular file but a FIFO".
 *
 * Reading is defensive: the whole file is parsed and checked (header length,
 * JSON syntax, names, dtypes, shapes, that the offsets tile the data section
 * exactly, the checksum) and every tensor read before the call returns; on any
 * problem nothing is returned and `why` says what is wrong, e.g.
 * "tensor 'model.0.weight': data_offsets [0, 20] hold 20 bytes, but {2, 3} F32 needs 24".
 * Memory use is bounded by the file: nothing is allocated for data the file
 * does not hold.
 *
 * Usage (error handling shortened):
 *
 *     char why[MO_CKPT_WHY_SIZE];
 *     mo_ckpt_item items[2] = {{"w", &w}, {"b", &b}};
 *     mo_ckpt_meta meta[1] = {{"note", "first run"}};
 *     if (mo_ckpt_write_file("run.safetensors", items, 2, meta, 1, why, sizeof why) != MO_OK)
 *         fprintf(stderr, "run.safetensors: %s\n", why);
 *
 *     mo_ckpt *c;
 *     if (mo_ckpt_read_file(&c, "run.safetensors", NULL, why, sizeof why) != MO_OK) ...
 *     size_t i = mo_ckpt_find(c, "w");             // MO_CKPT_NONE when absent
 *     mo_tensor w2;
 *     mo_tensor_init(&w2);
 *     mo_tensor_share(&w2, mo_ckpt_tensor(c, i));  // keep it beyond mo_ckpt_free
 *     mo_ckpt_free(c);
 *
 * Status codes: MO_ERR_ARG (bad arguments to a writer: NULL, empty or
 * duplicate names, text that is not UTF-8, a reserved metadata key),
 * MO_ERR_FREED (a tensor to write is dead), MO_ERR_IO (a file cannot be
 * opened, read, written, synced or renamed), MO_ERR_FORMAT (the file is
 * damaged), MO_ERR_DIMS, MO_ERR_OVERFLOW, MO_ERR_NOMEM.
 */
#ifndef MOONOPT_CKPT_H
#define MOONOPT_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "moonopt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A buffer of this size holds any message the functions below write into `why`. */
#define MO_CKPT_WHY_SIZE 320

/* The largest header accepted (the limit of the safetensors library). */
#define MO_CKPT_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

/* The metadata key of the data checksum (written by the writer, checked by the reader). */
#define MO_CKPT_CRC_KEY "moonopt.crc32"

/* mo_ckpt_find's answer for a name the file does not hold. */
#define MO_CKPT_NONE ((size_t)-1)

/* Elements of a dtype the tensor type does not have (lean optimizer state, moonopt_optim.h
 * "Lean optimizer state"), written as they are: "BF16" (uint16_t bit patterns), "I8"
 * (int8_t) or "U8" (uint8_t), numel of them in host order, row-major. */
typedef struct mo_ckpt_raw {
    const char *dtype;
    int ndim;
    size_t shape[MO_MAX_DIMS];
    const void *data;
} mo_ckpt_raw;

/* One tensor to write: its name in the file (UTF-8, not empty, not "__metadata__") and
 * the tensor (any layout; strided views are written row-major). */
typedef struct mo_ckpt_item {
    const char *name;
    const mo_tensor *tensor;
} mo_ckpt_item;

/* One metadata entry: two UTF-8 strings. */
typedef struct mo_ckpt_meta {
    const char *key;
    const char *value;
} mo_ckpt_meta;

/*
 * Writes n tensors (in this order in the data section) and nmeta metadata
 * entries, plus MO_CKPT_CRC_KEY (which the caller must not pass), atomically
 * to `path` (see the top of this file). Names and keys must be unique.
 * Nothing is created at `path` when any argument is bad.
 */
mo_status mo_ckpt_write_file(const char *path, const mo_ckpt_item *items, size_t n,
                             const mo_ckpt_meta *meta, size_t nmeta, char *why, size_t why_size);

/*
 * Writes `len` bytes as the whole file at `path`, atomically in the same way
 * (parent directories created, temporary file, fsync, rename, stale temporaries
 * removed). MO_ERR_ARG for a NULL or empty path or one ending in '/', MO_ERR_IO
 * when a directory cannot be made (a path component exists and is not a
 * directory) or the file cannot be written.
 */
mo_status mo_file_write(const char *path, const void *data, size_t len, char *why, size_t why_size);

/*
 * What `path` is, without opening it (symbolic links followed): "file",
 * "directory", "fifo", "device", "socket" or "other"; NULL when it does not
 * exist or cannot be examined. For probing paths that a reader would refuse.
 */
const char *mo_file_kind(const char *path);

/* The same file image in memory: *out (free it with mo_ckpt_buffer_free) of *len bytes. */
mo_status mo_ckpt_encode(unsigned char **out, size_t *len, const mo_ckpt_item *items, size_t n,
                         const mo_ckpt_meta *meta, size_t nmeta, char *why, size_t why_size);
void mo_ckpt_buffer_free(unsigned char *buf);

/*
 * The two writers with raw items: raws is NULL or n pointers; where raws[i] is non-NULL,
 * item i is written from it (dtype "BF16", "I8" or "U8") and items[i].tensor is not read
 * (may be NULL). Used for lean optimizer state (moonopt_optim.h "Lean optimizer state").
 */
mo_status mo_ckpt_write_file_raw(const char *path, const mo_ckpt_item *items,
                                 const mo_ckpt_raw *const *raws, size_t n, const mo_ckpt_meta *meta,
                                 size_t nmeta, char *why, size_t why_size);
mo_status mo_ckpt_encode_raw(unsigned char **out, size_t *len, const mo_ckpt_item *items,
                             const mo_ckpt_raw *const *raws, size_t n, const mo_ckpt_meta *meta,
                             size_t nmeta, char *why, size_t why_size);

/* A file read into memory: its tensors and metadata. */
typedef struct mo_ckpt mo_ckpt;

/*
 * Reads and checks a whole file. The tensors' storage comes from allocator `a`
 * (NULL: the default). On success *out holds the result (free it with
 * mo_ckpt_free); on failure *out is NULL.
 */
mo_status mo_ckpt_read_file(mo_ckpt **out, const char *path, const mo_allocator *a,
                            char *why, size_t why_size);

/* The same from a buffer holding a file's bytes. */
mo_status mo_ckpt_decode(mo_ckpt **out, const void *buf, size_t len, const mo_allocator *a,
                         char *why, size_t why_size);

/* Frees everything (tensors shared out with mo_tensor_share stay alive). NULL is fine. */
void mo_ckpt_free(mo_ckpt *c);

/* The tensors, in the order of the data section (the writer's order). */
size_t mo_ckpt_count(const mo_ckpt *c);
const char *mo_ckpt_name(const mo_ckpt *c, size_t i);
/* Tensor i: contiguous, float64 for an F64 entry, else float32; owned by c (share it to keep it). */
const mo_tensor *mo_ckpt_tensor(const mo_ckpt *c, size_t i);
/* The dtype tensor i had in the file ("F32", "F64", "F16", "BF16"). */
const char *mo_ckpt_dtype(const mo_ckpt *c, size_t i);
/* The index of the tensor called `name`, or MO_CKPT_NONE. */
size_t mo_ckpt_find(const mo_ckpt *c, const char *name);

/* The metadata entries, in the file's order. */
size_t mo_ckpt_meta_count(const mo_ckpt *c);
const char *mo_ckpt_meta_key(const mo_ckpt *c, size_t i);
const char *mo_ckpt_meta_value(const mo_ckpt *c, size_t i);
/* The value stored under `key`, or NULL. */
const char *mo_ckpt_meta_get(const mo_ckpt *c, const char *key);

/* The CRC-32 (zlib's polynomial, initial value 0) of n bytes, continuing from crc. */
uint32_t mo_crc32(uint32_t crc, const void *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* MOONOPT_CKPT_H */
