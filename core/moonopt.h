/*
 * moonopt.h - the public C API of moonopt's core (pure C11, no Lua).
 *
 * The core owns float32 and float64 tensors and the kernels that act on them. It has no
 * global mutable state, never calls exit()/abort()/longjmp, and every function
 * that can fail returns an mo_status (MO_OK == 0). A host application may link
 * libmoonopt.a alone and call everything here without lua.h.
 *
 * Usage (error handling shortened):
 *
 *     #include "moonopt.h"
 *
 *     size_t shape[2] = {2, 3};
 *     mo_tensor a, b;
 *     mo_tensor_init(&a);                         // valid empty handles first
 *     mo_tensor_init(&b);
 *     if (mo_tensor_zeros(&a, 2, shape, NULL) != MO_OK) goto fail;  // NULL: default allocator
 *     mo_fill(&a, 1.5f);
 *     mo_tensor_transpose(&b, &a, 0, 1);          // a 3x2 view sharing a's storage
 *     double s;
 *     mo_sum(&b, &s);                             // s == 9
 *     mo_tensor_release(&b);                      // views and bases release in any order
 *     mo_tensor_release(&a);
 *
 *     // host memory, borrowed without a copy; `release` runs when the last view goes
 *     float xy[2] = {-1.5f, 2.0f};
 *     size_t n = 2;
 *     mo_tensor p;
 *     mo_tensor_init(&p);
 *     mo_tensor_wrap(&p, xy, 1, &n, NULL, NULL);  // no release callback: host keeps xy
 *
 * Conventions: indices and dimensions are 0-based here (the Lua binding turns
 * Lua's 1-based ones into these). Output tensors are caller-provided handles; a
 * function that fails leaves its output handle as it was. Strides are in
 * elements. Operations accept strided (non-contiguous) tensors; contiguous ones
 * take a fast path.
 */
#ifndef MOONOPT_H
#define MOONOPT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MO_VERSION_MAJOR 0
#define MO_VERSION_MINOR 1
#define MO_VERSION_PATCH 0
#define MO_VERSION_STRING "0.1.0"

/* The largest number of dimensions a tensor may have. */
#define MO_MAX_DIMS 8

/* ------------------------------------------------------------------------ */
/* Status codes                                                             */
/* ------------------------------------------------------------------------ */

typedef enum mo_status {
    MO_OK = 0,
    MO_ERR_NOMEM,      /* an allocation failed */
    MO_ERR_OVERFLOW,   /* a size or byte count does not fit in size_t */
    MO_ERR_ARG,        /* an argument is invalid (NULL, NaN, negative, ...) */
    MO_ERR_SHAPE,      /* shapes do not agree */
    MO_ERR_RANGE,      /* an index or dimension is out of range */
    MO_ERR_DIMS,       /* more than MO_MAX_DIMS dimensions */
    MO_ERR_FREED,      /* the tensor is empty, released or revoked */
    MO_ERR_LAYOUT,     /* the operation needs a contiguous tensor */
    MO_ERR_IO,         /* reading or writing a file failed */
    MO_ERR_FORMAT,     /* a file or buffer is damaged or of an unknown format */
    MO_ERR_NONFINITE,  /* a value is NaN or infinite where it must not be */
    MO_ERR_DTYPE,      /* dtypes differ, or the operation does not support the dtype */
    MO_STATUS_COUNT_
} mo_status;

/* A static, human-readable message for a status ("out of memory", ...). */
const char *mo_status_str(mo_status s);

/* Overflow-checked size arithmetic: return MO_ERR_OVERFLOW instead of wrapping. */
mo_status mo_size_mul(size_t a, size_t b, size_t *out);
mo_status mo_size_add(size_t a, size_t b, size_t *out);

/* ------------------------------------------------------------------------ */
/* Allocation hooks                                                         */
/* ------------------------------------------------------------------------ */

/*
 * Storage memory comes from an allocator the caller passes in (NULL: the
 * default, aligned_alloc/free). The storage remembers its allocator and frees
 * through it, so different tensors may use different allocators. Blocks are
 * 64-byte aligned; `alloc` must honour `align` (a power of two).
 */
typedef struct mo_allocator {
    void *(*alloc)(void *ud, size_t size, size_t align);
    void (*free)(void *ud, void *ptr, size_t size);
    void *ud;
} mo_allocator;

#define MO_ALIGN 64

/* ------------------------------------------------------------------------ */
/* Storage and tensors                                                      */
/* ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------ */
/* Element types                                                            */
/* ------------------------------------------------------------------------ */

/*
 * A tensor's element type. MO_FLOAT32 is 0, so an mo_tensor_init'ed handle and
 * every function without a dtype parameter (mo_tensor_empty, mo_tensor_zeros,
 * mo_tensor_wrap, ...) mean float32, as before float64 existed. Every
 * elementwise, reduction and matmul kernel takes both; operands of one call
 * must share a dtype (MO_ERR_DTYPE otherwise), except mo_copy, which converts.
 * Scalars are passed as double and rounded once to float for float32 tensors.
 * The nn kernels (moonopt_nn.h) and the data helpers (moonopt_data.h) take
 * both too; mo_tensor_wrap lends float memory, mo_tensor_wrap_dtype either.
 */
typedef enum mo_dtype { MO_FLOAT32, MO_FLOAT64, MO_DTYPE_COUNT_ } mo_dtype;

/* Bytes per element (4 or 8; 0 for an invalid value). */
size_t mo_dtype_size(mo_dtype dt);
/* "float32" or "float64" ("?" for an invalid value). */
const char *mo_dtype_name(mo_dtype dt);

/* Called once when the last reference to borrowed memory goes away. */
typedef void (*mo_release_fn)(void *ud, float *data);

/*
 * A reference-counted block of elements (bytes; the handles say their type): owned (allocated through an
 * mo_allocator) or borrowed (somebody else's memory, with an optional release
 * callback). Opaque: use the functions below.
 */
typedef struct mo_storage mo_storage;

/*
 * A tensor is a handle: a strided view into a storage. The struct is public so
 * it can live inside other objects (a Lua userdata, a host's struct), but its
 * fields are read-only to callers; create and change handles through the
 * functions below. storage == NULL means the handle is empty (initialised,
 * released or never filled in).
 *
 *   element (i0, ..., i{n-1}) lives at data[offset + sum(ik * stride[k])]
 */
typedef struct mo_tensor {
    mo_storage *storage;
    size_t offset;                  /* in elements, from the storage's start */
    size_t numel;                   /* product of shape (1 for 0-d) */
    int ndim;                       /* 0..MO_MAX_DIMS */
    mo_dtype dtype;                 /* element type; views inherit it */
    size_t shape[MO_MAX_DIMS];
    ptrdiff_t stride[MO_MAX_DIMS];  /* in elements */
} mo_tensor;

/* Puts a handle in the valid empty state (no allocation, cannot fail). */
void mo_tensor_init(mo_tensor *t);

/* Drops the handle's reference (freeing the storage on the last one) and
 * leaves the handle empty. Safe on an empty handle and when called twice. */
void mo_tensor_release(mo_tensor *t);

/* New contiguous tensors. `out` must be empty (init'ed or released). */
mo_status mo_tensor_empty(mo_tensor *out, int ndim, const size_t *shape,
                          const mo_allocator *a);                     /* uninitialised */
mo_status mo_tensor_zeros(mo_tensor *out, int ndim, const size_t *shape,
                          const mo_allocator *a);
/* The same with an element type (the two above are these with MO_FLOAT32). */
mo_status mo_tensor_empty_dtype(mo_tensor *out, int ndim, const size_t *shape, mo_dtype dt,
                                const mo_allocator *a);
mo_status mo_tensor_zeros_dtype(mo_tensor *out, int ndim, const size_t *shape, mo_dtype dt,
                                const mo_allocator *a);

/* Borrow `data` (numel floats, row-major, contiguous). `release(ud, data)`
 * runs when the last handle sharing it is released (release may be NULL). On
 * failure `release` is NOT called and the caller still owns data. `data` must
 * be aligned for float (4 bytes; malloc'd and float-array memory always is): a
 * misaligned pointer (e.g. into a packed byte buffer) gives MO_ERR_ARG, since
 * every kernel loads and stores whole floats. */
mo_status mo_tensor_wrap(mo_tensor *out, float *data, int ndim, const size_t *shape,
                         mo_release_fn release, void *ud);

/* --- t11: host memory of either dtype --- */
/* The release callback of mo_tensor_wrap_dtype: data as the host passed it. */
typedef void (*mo_release_data_fn)(void *ud, void *data);
/* mo_tensor_wrap for elements of dtype dt (numel of them, row-major, contiguous),
 * e.g. a host's double array as a float64 tensor. `data` must be aligned for the
 * element type (8 bytes for float64): MO_ERR_ARG otherwise; MO_ERR_DTYPE for an
 * invalid dt. On failure `release` is not called. */
mo_status mo_tensor_wrap_dtype(mo_tensor *out, void *data, mo_dtype dt, int ndim,
                               const size_t *shape, mo_release_data_fn release, void *ud);

/*
 * Revoke the storage behind `t`: every handle sharing it now reports
 * MO_ERR_FREED (mo_tensor_data returns NULL), and the release callback runs now
 * for borrowed memory (owned memory, which shares one block with the storage
 * record, is freed with the last handle). The handles themselves must
 * still be released. For hosts that take their memory back while Lua may still
 * hold tensors on it.
 */
void mo_tensor_revoke(mo_tensor *t);

/* True when the handle refers to live storage. */
int mo_tensor_alive(const mo_tensor *t);

/* Pointer to element (0, ..., 0) of a float32 tensor, or NULL for an empty or
 * revoked handle or a float64 tensor (so float32 code never misreads doubles). */
float *mo_tensor_data(const mo_tensor *t);
/* The same for a float64 tensor (NULL for float32). */
double *mo_tensor_data_f64(const mo_tensor *t);
/* Element (0, ..., 0) of either dtype, or NULL for an empty or revoked handle. */
void *mo_tensor_ptr(const mo_tensor *t);

/* Row-major contiguous (strides are the suffix products of the shape). */
int mo_tensor_is_contiguous(const mo_tensor *t);

/* Same ndim and shape. */
int mo_tensor_same_shape(const mo_tensor *a, const mo_tensor *b);

/* Whether two handles share one storage. */
int mo_tensor_same_storage(const mo_tensor *a, const mo_tensor *b);

/* The number of handles sharing the storage (for tests), 0 when empty. */
size_t mo_tensor_refcount(const mo_tensor *t);

/* Writes "{2, 3}" style text of the shape into buf (always NUL-terminated). */
void mo_shape_str(const mo_tensor *t, char *buf, size_t bufsize);

/* numel of a shape with overflow checking (ndim 0 gives 1). */
mo_status mo_shape_numel(int ndim, const size_t *shape, size_t *numel);

/* --- views: share storage, `out` must be empty, `src` is not changed --- */

/* Another handle on exactly the same view. */
mo_status mo_tensor_share(mo_tensor *out, const mo_tensor *src);
/* Reshape; src must be contiguous and numel must agree. */
mo_status mo_tensor_view(mo_tensor *out, const mo_tensor *src, int ndim, const size_t *shape);
/* Elements start..start+len-1 along dim. */
mo_status mo_tensor_narrow(mo_tensor *out, const mo_tensor *src, int dim, size_t start, size_t len);
/* Swap two dimensions. */
mo_status mo_tensor_transpose(mo_tensor *out, const mo_tensor *src, int d0, int d1);
/* Index `index` along dim; the result has one dimension less. */
mo_status mo_tensor_select(mo_tensor *out, const mo_tensor *src, int dim, size_t index);

/* A new contiguous copy of src's dtype (with allocator `a`, NULL for the default). */
mo_status mo_tensor_clone(mo_tensor *out, const mo_tensor *src, const mo_allocator *a);
/* A new contiguous copy converted to dtype dt (float64 -> float32 rounds to nearest). */
mo_status mo_tensor_clone_dtype(mo_tensor *out, const mo_tensor *src, mo_dtype dt,
                                const mo_allocator *a);

/* Offset in elements of the element at 0-based `idx` (ndim entries), checked. */
mo_status mo_tensor_index(const mo_tensor *t, const size_t *idx, size_t *offset);

/* ------------------------------------------------------------------------ */
/* Shape and indexing views, cat and stack (core/shape.c)                   */
/*   Views share src's storage and allocate nothing; `out` must be empty    */
/*   and is left alone on failure. Dimensions are 0-based.                  */
/* ------------------------------------------------------------------------ */

/* Dimension k of out is dimension dims[k] of src; dims is a permutation of
 * 0..src->ndim-1 (ndim must equal src->ndim; a repeat gives MO_ERR_ARG). */
mo_status mo_tensor_permute(mo_tensor *out, const mo_tensor *src, int ndim, const int *dims);
/* Without dimension dim when its size is 1 (else an equal view); dim == -1:
 * without every size-1 dimension. */
mo_status mo_tensor_squeeze(mo_tensor *out, const mo_tensor *src, int dim);
/* A size-1 dimension inserted at position dim (0..src->ndim). */
mo_status mo_tensor_unsqueeze(mo_tensor *out, const mo_tensor *src, int dim);
/* Broadcast view with `shape` (ndim >= src->ndim, aligned at the end): a size
 * of 1 in src may become any size and new leading dims are added, both with
 * stride 0; any other size must match (MO_ERR_SHAPE). */
mo_status mo_tensor_expand(mo_tensor *out, const mo_tensor *src, int ndim, const size_t *shape);
/* Whether src (any strides) can be seen with `shape` (same numel) without a
 * copy; the strides go to stride[0..ndim-1]. PyTorch's view rule. */
int mo_view_strides(const mo_tensor *src, int ndim, const size_t *shape, ptrdiff_t *stride);
/* A view with a new shape of the same numel (MO_ERR_SHAPE otherwise) when the
 * strides allow it (mo_view_strides), else MO_ERR_LAYOUT. */
mo_status mo_tensor_view_any(mo_tensor *out, const mo_tensor *src, int ndim, const size_t *shape);
/* dst's elements = src's in row-major order; any shapes of equal numel; one
 * of the two must be viewable with the other's shape (a contiguous one is). */
mo_status mo_copy_reshape(mo_tensor *dst, const mo_tensor *src);

/* One entry of a slicing: ALL keeps the dimension, RANGE keeps elements
 * start..start+len-1 (start may equal the size when len is 0), INDEX selects
 * element start and drops the dimension. */
typedef enum mo_slice_kind { MO_SLICE_ALL, MO_SLICE_RANGE, MO_SLICE_INDEX } mo_slice_kind;
typedef struct mo_slice {
    mo_slice_kind kind;
    size_t start;
    size_t len;
} mo_slice;
/* s[d] applies to dimension d (n <= src->ndim); dimensions past n are kept whole. */
mo_status mo_tensor_slice(mo_tensor *out, const mo_tensor *src, int n, const mo_slice *s);

/* The shape of the concatenation of ts[0..n-1] along dim (ts[0]->ndim sizes
 * into shape): same ndim, sizes equal except along dim. */
mo_status mo_cat_shape(size_t n, const mo_tensor *const *ts, int dim, size_t *shape);
/* Copies ts[0..n-1] one after another along dim into out, which must have the
 * mo_cat_shape shape and share no memory with them. */
mo_status mo_tensor_cat(mo_tensor *out, size_t n, const mo_tensor *const *ts, int dim);
/* Copies ts[k] (all one shape) into out's index k along dim; out has that
 * shape with n inserted at position dim. */
mo_status mo_tensor_stack(mo_tensor *out, size_t n, const mo_tensor *const *ts, int dim);

/* ------------------------------------------------------------------------ */
/* Elementwise kernels                                                      */
/*   out may be the same handle (or view) as an input: in-place is fine.    */
/*   Unary ops need out and a of one shape. Binary ops and mo_where         */
/*   broadcast (NumPy's rules): every input must broadcast to out's shape,  */
/*   read with stride 0 along its size-1 or missing dims, never copied      */
/*   (MO_ERR_SHAPE otherwise). Dtypes must agree (MO_ERR_DTYPE). Scalars    */
/*   are double; float32 kernels round them once.                           */
/* ------------------------------------------------------------------------ */

typedef enum mo_unary_op {
    MO_NEG, MO_SQRT, MO_EXP, MO_LOG, MO_TANH, MO_SIGMOID, MO_RELU, MO_ABS, MO_SIGN,
    /* elementwise family (issue 11) */
    MO_LOG1P, MO_EXPM1, MO_RSQRT, MO_SIN, MO_COS, MO_TAN,
    MO_FLOOR, MO_CEIL, MO_ROUND, /* round: half to even, as PyTorch */
    MO_ERF,                      /* the error function (gelu's, and its gradients') */
    MO_UNARY_COUNT_
} mo_unary_op;

typedef enum mo_binary_op {
    MO_ADD, MO_SUB, MO_MUL, MO_DIV,
    /* elementwise family (issue 11): pow(x, y); maximum/minimum propagate NaN; the
     * comparisons write 1 where true and 0 where false (NaN compares unequal to all) */
    MO_POW, MO_MAXIMUM, MO_MINIMUM, MO_EQ, MO_NE, MO_LT, MO_LE, MO_GT, MO_GE,
    MO_BINARY_COUNT_
} mo_binary_op;

mo_status mo_fill(mo_tensor *t, double value);
/* dst and src have the same shape (any strides); different dtypes convert. */
mo_status mo_copy(mo_tensor *dst, const mo_tensor *src);

mo_status mo_unary(mo_tensor *out, const mo_tensor *a, mo_unary_op op);
/* out = a OP b; a and b broadcast to out's shape */
mo_status mo_binary(mo_tensor *out, const mo_tensor *a, const mo_tensor *b, mo_binary_op op);
/* out = a OP s (any op; a of out's shape) */
mo_status mo_binary_scalar(mo_tensor *out, const mo_tensor *a, double s, mo_binary_op op);
/* out = s OP a (any op: s - a, s / a, s ^ a, s < a, ...) */
mo_status mo_scalar_binary(mo_tensor *out, double s, const mo_tensor *a, mo_binary_op op);
/* out = a ^ p */
mo_status mo_pow_scalar(mo_tensor *out, const mo_tensor *a, double p);
/* out = min(max(a, lo), hi); lo <= hi, neither NaN */
mo_status mo_clamp(mo_tensor *out, const mo_tensor *a, double lo, double hi);
/* out = a + value * t1 * t2 */
mo_status mo_addcmul(mo_tensor *out, const mo_tensor *a, double value,
                     const mo_tensor *t1, const mo_tensor *t2);
/* out = a + value * t1 / t2 */
mo_status mo_addcdiv(mo_tensor *out, const mo_tensor *a, double value,
                     const mo_tensor *t1, const mo_tensor *t2);
/* m: {rows, cols}, bias: {cols}; m[i][j] += bias[j] for every row (in place). */
mo_status mo_add_row_bias(mo_tensor *m, const mo_tensor *bias);

/* ---- elementwise family (issue 11): broadcasting ---- */

/*
 * The shape that n tensors broadcast to by NumPy's rules (shapes aligned at
 * their last dims; each pair of sizes equal or one of them 1; missing leading
 * dims count as 1). NULL entries are skipped (numbers in a call); with no
 * tensor at all the result is 0-d. MO_ERR_SHAPE when they do not broadcast,
 * MO_ERR_DIMS never (the inputs have <= MO_MAX_DIMS dims each).
 * shape must hold MO_MAX_DIMS entries.
 */
mo_status mo_broadcast_shape(int n, const mo_tensor *const *ts, int *ndim, size_t *shape);

/*
 * out = cond != 0 ? a : b, elementwise (a NaN in cond counts as true). a == NULL
 * means the number sa, b == NULL the number sb. cond, a and b broadcast to
 * out's shape; all tensors share out's dtype.
 */
mo_status mo_where(mo_tensor *out, const mo_tensor *cond, const mo_tensor *a, double sa,
                   const mo_tensor *b, double sb);

/* ------------------------------------------------------------------------ */
/* Reductions (accumulate in double)                                        */
/* ------------------------------------------------------------------------ */

mo_status mo_sum(const mo_tensor *t, double *out);
mo_status mo_mean(const mo_tensor *t, double *out);            /* numel 0: ARG */
mo_status mo_max(const mo_tensor *t, double *out);             /* numel 0: ARG */
mo_status mo_min(const mo_tensor *t, double *out);
/* 0-based flat (row-major) index of the first maximum; NaN counts as largest. */
mo_status mo_argmax(const mo_tensor *t, size_t *out);
mo_status mo_dot(const mo_tensor *a, const mo_tensor *b, double *out);  /* same numel */
mo_status mo_norm2(const mo_tensor *t, double *out);           /* sqrt(sum x^2) */
/* sqrt(sum over tensors of sum x^2), over n tensors (pointers). */
mo_status mo_norm2_many(const mo_tensor *const *ts, size_t n, double *out);

/* The first four are mo_reduce_dim's; the rest belong to mo_reduce (reduce family). */
typedef enum mo_reduce_op {
    MO_RED_SUM, MO_RED_MEAN, MO_RED_MAX, MO_RED_MIN,
    MO_RED_PROD, MO_RED_VAR, MO_RED_STD, MO_RED_NORM, MO_RED_LOGSUMEXP,
    MO_RED_ARGMAX, MO_RED_ARGMIN, MO_RED_ANY, MO_RED_ALL
} mo_reduce_op;
/*
 * Along one dimension. `out` must be empty; it receives a new tensor whose
 * shape is src's with dimension `dim` removed (ndim-1; a 1-d source gives a
 * 0-d tensor). Allocator `a` (NULL: default). Only SUM..MIN; a zero-length
 * dim is an error except for SUM.
 */
mo_status mo_reduce_dim(mo_tensor *out, const mo_tensor *src, int dim, mo_reduce_op op,
                        const mo_allocator *a);
/* argmax along dim: 0-based indices stored in a new tensor of src's dtype as above. */
mo_status mo_argmax_dim(mo_tensor *out, const mo_tensor *src, int dim, const mo_allocator *a);

/* ---- reduce family: reductions, scans and sorts along a dim (core/reduce.c) ---- */

/* mo_reduce's dim for "over all elements" (the result is 0-d, or all ones with keepdim). */
#define MO_DIM_ALL (-1)

typedef struct mo_reduce_args {
    int keepdim;        /* keep the reduced dim (all dims for MO_DIM_ALL) with size 1 */
    double p;           /* MO_RED_NORM: the order, > 0 (INFINITY: max |x|) */
    double correction;  /* MO_RED_VAR/STD: divide by max(K - correction, 0); 1 is unbiased */
    size_t index_base;  /* added to every index written (0 from C, 1 from Lua) */
} mo_reduce_args;

/*
 * out (empty) receives op over dim (0-based; a 0-d src takes dim 0) or over every
 * element (MO_DIM_ALL), in src's dtype: the shape of src without that dim (or
 * with it as 1 under keepdim). With MO_RED_MAX/MIN, `indices` may be an empty
 * handle that receives the 0-based (+ index_base) positions of the winners in
 * src's dtype; ARGMAX/ARGMIN write those positions as the result (flat
 * row-major positions for MO_DIM_ALL). The first maximum/minimum wins ties and
 * NaN counts as the extreme (it propagates). Sums accumulate in double
 * (pairwise over blocks of a contiguous lane). Empty lanes: SUM 0, PROD 1,
 * MEAN/VAR/STD NaN, NORM 0, LOGSUMEXP -inf, ANY 0, ALL 1; MAX..ARGMIN refuse them
 * (MO_ERR_ARG). Errors: MO_ERR_RANGE for a bad dim, or for float32 indices past
 * 2^24 (not exact); MO_ERR_ARG for a bad p, a non-empty out or op.
 */
mo_status mo_reduce(mo_tensor *out, mo_tensor *indices, const mo_tensor *src, int dim,
                    mo_reduce_op op, const mo_reduce_args *ra, const mo_allocator *a);

typedef enum mo_scan_op { MO_SCAN_SOFTMAX, MO_SCAN_LOG_SOFTMAX, MO_SCAN_CUMSUM } mo_scan_op;
/* out (empty) receives op along dim in a new contiguous tensor of src's shape and dtype
 * (softmax and log_softmax shifted by the lane's max; cumsum accumulates in double). */
mo_status mo_scan(mo_tensor *out, const mo_tensor *src, int dim, mo_scan_op op,
                  const mo_allocator *a);
/*
 * Stable sort along dim (NaN sorts as the largest value; descending keeps equal
 * values in their original order too). values and indices (both empty) receive
 * the first k of each sorted lane (shape of src with dim of size k, src's dtype;
 * indices 0-based + index_base). k <= size of dim (MO_ERR_RANGE otherwise).
 */
mo_status mo_sort(mo_tensor *values, mo_tensor *indices, const mo_tensor *src, int dim,
                  size_t k, int descending, size_t index_base, const mo_allocator *a);

/* ------------------------------------------------------------------------ */
/* Matrix multiply                                                          */
/* ------------------------------------------------------------------------ */

/*
 * C = alpha * op(A) @ op(B) + beta * C, where op(X) is X or X^T.
 * A, B, C are 2-d; op(A): {m, k}, op(B): {k, n}, C: {m, n} (C must exist).
 * Operands share one dtype. Uses CBLAS sgemm (dgemm for float64) when the library was built with it and the operands have a
 * unit stride in one dimension; otherwise a portable blocked loop. beta == 0
 * ignores C's old contents (NaN in C does not leak through).
 */
mo_status mo_matmul(mo_tensor *c, const mo_tensor *a, int trans_a,
                    const mo_tensor *b, int trans_b, double alpha, double beta);

/* The same with the portable loop forced (for tests and hosts without BLAS). */
mo_status mo_matmul_portable(mo_tensor *c, const mo_tensor *a, int trans_a,
                             const mo_tensor *b, int trans_b, double alpha, double beta);

/* Which backend mo_matmul uses: "cblas" or "portable". */
const char *mo_blas_backend(void);
/* The name of the BLAS kernel set in use: OpenBLAS's core name ("Haswell",
 * "SkylakeX", ...), "portable" without CBLAS, "unknown" for another CBLAS. */
const char *mo_blas_kernel(void);

/* ------------------------------------------------------------------------ */
/* Random numbers                                                           */
/* ------------------------------------------------------------------------ */

/*
 * xoshiro256** (Blackman & Vigna), seeded through splitmix64 from one 64-bit
 * seed. Pure integer arithmetic, so the same seed gives the same bits on every
 * machine. Uniform floats use the top 24 bits (exact in float32); normals use
 * the Box-Muller transform in double precision, rounded to float.
 */
typedef struct mo_rng {
    uint64_t s[4];
    double spare;      /* the second Box-Muller normal, when has_spare */
    int has_spare;
} mo_rng;

void mo_rng_seed(mo_rng *r, uint64_t seed);
uint64_t mo_rng_next(mo_rng *r);                  /* 64 random bits */
double mo_rng_uniform(mo_rng *r);                 /* [0, 1), 53 bits */
double mo_rng_normal(mo_rng *r);                  /* mean 0, sd 1 */
/* Uniform integer in [0, n), without modulo bias; n > 0. */
uint64_t mo_rng_below(mo_rng *r, uint64_t n);

/* Fill t with U[lo, hi) / N(mean, sd) in row-major order. float32 draws use the
 * generator exactly as before float64 existed; float64 uniforms use 53 bits. */
mo_status mo_rand_uniform(mo_tensor *t, mo_rng *r, double lo, double hi);
mo_status mo_rand_normal(mo_tensor *t, mo_rng *r, double mean, double sd);
/* Fisher-Yates: perm[0..n-1] becomes a random permutation of 0..n-1. */
mo_status mo_randperm(size_t *perm, size_t n, mo_rng *r);

/* ------------------------------------------------------------------------ */
/* Index ops and torch.matmul shapes (family: index)                        */
/* ------------------------------------------------------------------------ */

/*
 * Index tensors hold integers stored as floats, of either dtype whatever the data's dtype
 * (the one place dtypes may differ), counted from `base` (0 from C, 1 from Lua). Every
 * entry is checked before anything is written: a non-integral entry (NaN, inf, 2.5) gives
 * MO_ERR_ARG, one outside base .. base + limit - 1 gives MO_ERR_RANGE, and *err (may be
 * NULL) then names the first bad entry. `out` tensors exist already with the result's
 * shape and must not share memory with src.
 */
typedef enum mo_index_fault {
    MO_INDEX_OK, MO_INDEX_NOT_INTEGER, MO_INDEX_OUT_OF_RANGE
} mo_index_fault;

typedef struct mo_index_error {
    mo_index_fault bad;  /* MO_INDEX_OK unless an entry was refused */
    size_t pos;          /* its flat (row-major) position in the index tensor, 0-based */
    double value;        /* its value */
    size_t limit;        /* the size of the indexed dimension */
} mo_index_error;

/* out = src with dimension dim reduced to the entries named by index (0-d or 1-d):
 * out's shape is src's with shape[dim] = index->numel. */
mo_status mo_index_select(mo_tensor *out, const mo_tensor *src, int dim, const mo_tensor *index,
                          double base, mo_index_error *err);
/* out[p] = src[p with p[dim] = index[p]]; index has src's ndim and no size larger than
 * src's outside dim; out has index's shape. */
mo_status mo_gather(mo_tensor *out, const mo_tensor *src, int dim, const mo_tensor *index,
                    double base, mo_index_error *err);
/* dst[p with p[dim] = index[p]] += src[p] for every p of index's shape (repeated
 * positions accumulate); index, src and dst have one ndim, index no size larger than
 * src's, nor than dst's outside dim. In place on dst; MO_ERR_LAYOUT for a dst with a
 * stride-0 (expanded) dimension. src may overlap dst (it is copied first). */
mo_status mo_scatter_add(mo_tensor *dst, int dim, const mo_tensor *index, const mo_tensor *src,
                         double base, mo_index_error *err);

/*
 * torch.matmul for 1-d, 2-d and 3-d operands: 1-d . 1-d is a dot product (0-d result),
 * a 1-d left operand is a row vector and a 1-d right one a column vector whose
 * dimension is dropped from the result, and 3-d operands are batches of matrices (a 2-d
 * or 1-d operand, or a batch of 1, is used for every batch entry). mo_matmul_shape
 * writes the result's ndim and shape (MO_ERR_SHAPE when the operands do not agree,
 * MO_ERR_DIMS for more than 3 dims); mo_matmul_nd computes c = a @ b into an existing
 * c of that shape, through mo_matmul per batch entry (one call when b is 2-d and a's
 * batch folds into its rows).
 */
mo_status mo_matmul_shape(const mo_tensor *a, const mo_tensor *b, int *ndim, size_t *shape);
mo_status mo_matmul_nd(mo_tensor *c, const mo_tensor *a, const mo_tensor *b);

/* ---- threads (core/threadpool.c; docs/design.md "Threads") ---------------------------- */

/* The largest thread count mo_set_num_threads accepts. */
#define MO_MAX_THREADS 1024

/*
 * The size of the one process-wide thread pool that the elementwise, broadcast and
 * reduction kernels (and, as they are converted, the optimizer and nn kernels) share,
 * counting the calling thread: 1 runs every kernel in the caller. MO_ERR_ARG outside
 * [1, MO_MAX_THREADS]. When moonopt is linked with OpenBLAS it also sets OpenBLAS's
 * thread count to n (BLAS runs outside the pool's kernels, so the two never run at
 * once). Results are bit-identical for every n. Threads start on the first kernel large
 * enough to use them, not here.
 */
mo_status mo_set_num_threads(int n);
/* The pool's size: the last mo_set_num_threads, else MOONOPT_NUM_THREADS (a decimal
 * integer in [1, MO_MAX_THREADS]; other values are ignored), else the number of online
 * cores. */
int mo_get_num_threads(void);
/* ---- autograd support (docs/autograd.md) ---- */
/* The storage's write counter: 0 for new storage; mo_tensor_bump_version adds one (the
 * Lua binding calls it after every in-place write it makes). Views share it. 0 and a
 * no-op for an empty handle. Not atomic: writes to one storage are not concurrent. */
uint64_t mo_tensor_version(const mo_tensor *t);
void mo_tensor_bump_version(const mo_tensor *t);

/* The optimizer kernels (SGD, the Adam family, ...), the neural-network kernels and the
 * file formats (IDX data sets, safetensors checkpoints) have headers of their own. */
#include "moonopt_optim.h"
#include "moonopt_nn.h"
#include "moonopt_data.h"
#include "moonopt_ckpt.h"
/* convolutions, pooling, batch norm (issue 13) */
#include "moonopt_conv.h"

#ifdef __cplusplus
}
#endif

#endif /* MOONOPT_H */
