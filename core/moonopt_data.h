/*
 * moonopt_data.h - data sets in moonopt's public C API (included by moonopt.h).
 *
 * IDX files (the format of MNIST and Fashion-MNIST) read into float32
 * tensors, raw or gzip-compressed, from a file or from a memory buffer; and a
 * few helpers a training loop needs on the C side: gathering rows into a batch
 * and normalizing features.
 *
 * IDX layout (all integers big-endian):
 *
 *     bytes 0-1  zero
 *     byte  2    element type (mo_idx_type)
 *     byte  3    number of dimensions, ndim
 *     ndim x 4   the size of each dimension (uint32)
 *     then       the elements, row-major, big-endian, nothing after them
 *
 * e.g. MNIST training images: magic 0x00000803, sizes {60000, 28, 28}, uint8.
 *
 * Usage (error handling shortened):
 *
 *     char why[MO_IDX_WHY_SIZE];
 *     mo_tensor images;
 *     mo_tensor_init(&images);
 *     // uint8 pixels scaled to [0, 1]: element = byte * (1/255) + 0
 *     if (mo_idx_read_file(&images, "train-images-idx3-ubyte.gz", 1.0f / 255, 0.0f,
 *                          NULL, why, sizeof why) != MO_OK)
 *         fprintf(stderr, "train-images-idx3-ubyte.gz: %s\n", why);
 *
 * Every reading function fills `why` (when not NULL) with the problem in words
 * ("truncated: the header promises 47040000 data bytes, the file holds 1000"),
 * and returns MO_ERR_IO (the file cannot be opened or read), MO_ERR_FORMAT
 * (damaged: wrong magic, unknown type, truncated, trailing bytes, corrupt gzip),
 * MO_ERR_DIMS (more than MO_MAX_DIMS dimensions), MO_ERR_OVERFLOW (sizes whose
 * product does not fit size_t) or MO_ERR_NOMEM. On failure `out` is unchanged.
 */
#ifndef MOONOPT_DATA_H
#define MOONOPT_DATA_H

#include <stddef.h>

#include "moonopt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The element types of IDX (the magic number's third byte). */
typedef enum mo_idx_type {
    MO_IDX_U8 = 0x08,   /* unsigned byte */
    MO_IDX_I8 = 0x09,   /* signed byte */
    MO_IDX_I16 = 0x0B,  /* short, 2 bytes */
    MO_IDX_I32 = 0x0C,  /* int, 4 bytes */
    MO_IDX_F32 = 0x0D,  /* float, 4 bytes */
    MO_IDX_F64 = 0x0E   /* double, 8 bytes */
} mo_idx_type;

/* A buffer of this size holds any message the IDX functions write into `why`. */
#define MO_IDX_WHY_SIZE 256

/* What an IDX header says. */
typedef struct mo_idx_header {
    mo_idx_type type;
    int ndim;                      /* 0..MO_MAX_DIMS */
    size_t shape[MO_MAX_DIMS];
    size_t numel;                  /* product of shape (1 for ndim 0) */
    size_t elem_size;              /* bytes per element: 1, 2, 4 or 8 */
    size_t header_bytes;           /* 4 + 4 * ndim */
    size_t data_bytes;             /* numel * elem_size */
} mo_idx_header;

/* Bytes per element of an IDX type, 0 for a value that is not one. */
size_t mo_idx_type_size(int type);

/* Name of an IDX type ("uint8", "int16", "float32", ...), "unknown" otherwise. */
const char *mo_idx_type_name(int type);

/*
 * Parse the header at the start of an uncompressed IDX buffer of `len` bytes
 * (only the header is read; `len` may be just the header's size). Checks the
 * magic, the type, ndim and that the sizes' product fits size_t.
 */
mo_status mo_idx_parse_header(const void *buf, size_t len, mo_idx_header *h,
                              char *why, size_t why_size);

/*
 * Decode a whole IDX buffer (raw, or gzip when it starts with 1f 8b) into a new
 * contiguous tensor of the header's shape: out[i] = element[i] * scale + shift,
 * computed in float (so labels 0..9 with scale 1, shift 1 become 1..10). The
 * buffer must hold exactly the header and its data: a short buffer is
 * "truncated", extra bytes are "trailing bytes". `a`: the tensor's allocator
 * (NULL: the default). `out` must be empty.
 */
mo_status mo_idx_decode(mo_tensor *out, const void *buf, size_t len, float scale, float shift,
                        const mo_allocator *a, char *why, size_t why_size);

/*
 * The same, streaming from a file (raw or gzip, detected from the first two
 * bytes, not the name). Never holds the whole compressed or uncompressed file
 * in memory besides the output tensor. Concatenated gzip members are read as
 * one stream (as gunzip does).
 */
mo_status mo_idx_read_file(mo_tensor *out, const char *path, float scale, float shift,
                           const mo_allocator *a, char *why, size_t why_size);

/*
 * Write tensor `t` (any layout) as an IDX file of element type `type`, gzip-
 * compressed at `gzip_level` 1..9, or raw when gzip_level is 0. Integer types
 * need every value to be a whole number in the type's range (else MO_ERR_RANGE,
 * nothing written); float32 is exact; float64 widens. The file is written under
 * a temporary name and renamed, so a failed write leaves no half file at `path`.
 */
mo_status mo_idx_write_file(const char *path, const mo_tensor *t, mo_idx_type type,
                            int gzip_level, char *why, size_t why_size);

/* ------------------------------------------------------------------------ */
/* Batches and normalization (core/data.c)                                  */
/* ------------------------------------------------------------------------ */

/*
 * dst[i, ...] = src[rows[i], ...] for i < n: gather rows of src {N, ...} into
 * dst {n, ...} (same sizes after the first dimension; any strides for both).
 * Rows are 0-based; every row is checked (< N) before anything is written, so
 * a bad index (MO_ERR_RANGE) leaves dst unchanged.
 */
mo_status mo_gather_rows(mo_tensor *dst, const mo_tensor *src, const size_t *rows, size_t n);

/*
 * Mean and population standard deviation of all elements (in double, two
 * passes, so large means do not cancel). numel 0: MO_ERR_ARG.
 */
mo_status mo_mean_std(const mo_tensor *t, double *mean, double *std);

/*
 * Per column of m {n, d}: mean {d} and population standard deviation {d}
 * written into existing tensors (n >= 1).
 */
mo_status mo_column_mean_std(const mo_tensor *m, mo_tensor *mean, mo_tensor *std);

/*
 * In place: t = (t - mean) / std for all elements, one pass. std must be
 * positive and finite, mean finite (else MO_ERR_ARG, nothing written).
 */
mo_status mo_normalize(mo_tensor *t, double mean, double std);

/*
 * In place per column of m {n, d}: m[i, j] = (m[i, j] - mean[j]) / std[j].
 * Every std[j] must be positive and finite (checked first). Columns with
 * std 0 are the caller's business (mo_column_mean_std reports 0; pass 1).
 */
mo_status mo_normalize_columns(mo_tensor *m, const mo_tensor *mean, const mo_tensor *std);

/*
 * Classification accuracy: *correct = the number of rows i of scores {n, c}
 * whose first maximum is at column labels[i] - base (labels {n} holds class
 * numbers as floats: base 0 for 0-based classes, 1 for Lua's 1..c). NaN scores
 * never win. Every label must be a whole number in base..base+c-1 (checked
 * first, MO_ERR_RANGE otherwise).
 */
mo_status mo_count_correct(const mo_tensor *scores, const mo_tensor *labels, float base, size_t *correct);

/*
 * Data augmentation of a batch of images (float32, both contiguous, not sharing memory):
 * dst, src {B, C, H, W}. Per example b, from a generator seeded with `seed`
 * (mo_rng_seed), in this order: dy, dx uniform in 0..2*pad, then (when flip) one bit.
 * The example is cropped at offset (dy, dx) from the image zero-padded by `pad` on every
 * side (the crop has the original size), then mirrored left-right when the bit is 1:
 *   dst[b, c, y, x] = padded[c, y + dy, (flip ? W-1-x : x) + dx]   (0 outside the image)
 * pad 0 and flip 0 copy. The same seed gives the same batch on every machine.
 */
mo_status mo_augment_crop_flip(mo_tensor *dst, const mo_tensor *src, size_t pad, int flip, uint64_t seed);

#ifdef __cplusplus
}
#endif

#endif /* MOONOPT_DATA_H */
