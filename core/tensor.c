/*
 * tensor.c - storage (refcounted, owned or borrowed), tensor handles and views.
 *
 * A storage is a block of `bytes` bytes (elements of the handles' dtype) plus a reference count. Every handle
 * (mo_tensor) that points at it holds one reference; the last release frees
 * owned memory through the allocator it came from, or calls the release
 * callback of borrowed memory. Views are just more handles with other
 * offset/shape/stride, so a view keeps its storage alive by construction.
 */
#include "moonopt_internal.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mo_storage {
    void *data;             /* NULL once revoked */
    size_t nbytes;          /* bytes of elements in the block */
    size_t bytes;           /* owned: the whole block, this record included */
    _Atomic size_t refs;    /* handles sharing it; atomic so the host may release from any thread */
    int owned;              /* 1: record and data are one block from `alloc`; 0: borrowed */
    mo_allocator alloc;     /* where this record (owned: with the data) came from */
    mo_release_fn release;  /* borrowed: called once with (release_ud, data) ... */
    mo_release_data_fn release_v; /* ... or this one (mo_tensor_wrap_dtype); one is NULL */
    void *release_ud;
    /* Bumped by every in-place write the Lua binding makes (mo_tensor_bump_version):
     * autograd compares it with the value a node saw when it saved a tensor
     * (docs/autograd.md). Shared by every view of the storage. */
    uint64_t version;
};

static const char *const status_text[MO_STATUS_COUNT_] = {
    [MO_OK] = "ok",
    [MO_ERR_NOMEM] = "out of memory",
    [MO_ERR_OVERFLOW] = "size overflows",
    [MO_ERR_ARG] = "invalid argument",
    [MO_ERR_SHAPE] = "shape mismatch",
    [MO_ERR_RANGE] = "index out of range",
    [MO_ERR_DIMS] = "too many dimensions (at most 8)",
    [MO_ERR_FREED] = "tensor has been freed",
    [MO_ERR_LAYOUT] = "tensor is not contiguous",
    [MO_ERR_IO] = "input/output error",
    [MO_ERR_FORMAT] = "damaged or unknown format",
    [MO_ERR_NONFINITE] = "non-finite value",
    [MO_ERR_DTYPE] = "dtype mismatch or unsupported dtype",
};

size_t mo_dtype_size(mo_dtype dt)
{
    switch (dt) {
    case MO_FLOAT32: return sizeof(float);
    case MO_FLOAT64: return sizeof(double);
    default: return 0;
    }
}

const char *mo_dtype_name(mo_dtype dt)
{
    switch (dt) {
    case MO_FLOAT32: return "float32";
    case MO_FLOAT64: return "float64";
    default: return "?";
    }
}

const char *mo_status_str(mo_status s)
{
    if ((unsigned)s >= (unsigned)MO_STATUS_COUNT_) return "unknown status";
    return status_text[s];
}

mo_status mo_size_mul(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return MO_ERR_OVERFLOW;
    *out = a * b;
    return MO_OK;
}

mo_status mo_size_add(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a) return MO_ERR_OVERFLOW;
    *out = a + b;
    return MO_OK;
}

mo_status mo_shape_numel(int ndim, const size_t *shape, size_t *numel)
{
    if (ndim < 0) return MO_ERR_ARG;
    if (ndim > MO_MAX_DIMS) return MO_ERR_DIMS;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) MO_TRY(mo_size_mul(n, shape[i], &n));
    *numel = n;
    return MO_OK;
}

/* ---- default allocator: aligned_alloc needs the size rounded to the alignment ---- */

static void *default_alloc(void *ud, size_t size, size_t align)
{
    (void)ud;
    size_t rounded;
    if (mo_size_add(size, align - 1, &rounded) != MO_OK) return NULL;
    rounded &= ~(align - 1);
    if (rounded == 0) rounded = align;
    return aligned_alloc(align, rounded);
}

static void default_free(void *ud, void *ptr, size_t size)
{
    (void)ud;
    (void)size;
    free(ptr);
}

static const mo_allocator default_allocator = {default_alloc, default_free, NULL};

/* ---- handles ---- */

void mo_tensor_init(mo_tensor *t)
{
    memset(t, 0, sizeof *t);
    t->numel = 0;
}

static void storage_free(mo_storage *s)
{
    mo_allocator a = s->alloc;
    if (s->owned) {
        a.free(a.ud, s, s->bytes); /* the data lives in the same block */
        return;
    }
    if (s->data && s->release) s->release(s->release_ud, s->data);
    if (s->data && s->release_v) s->release_v(s->release_ud, s->data);
    a.free(a.ud, s, sizeof *s);
}

void mo_tensor_release(mo_tensor *t)
{
    if (!t) return;
    mo_storage *s = t->storage;
    mo_tensor_init(t);
    if (s && --s->refs == 0) storage_free(s);
}

void mo_tensor_revoke(mo_tensor *t)
{
    if (!t) return;
    mo_storage *s = t->storage;
    if (!s || !s->data) return;
    void *data = s->data;
    s->data = NULL;
    /* Owned data shares its block with this record, which the remaining
     * handles still point at: the block goes with the last release. */
    if (!s->owned && s->release) s->release(s->release_ud, data);
    if (!s->owned && s->release_v) s->release_v(s->release_ud, data);
}

int mo_tensor_alive(const mo_tensor *t)
{
    return t && t->storage && t->storage->data;
}

void *mo_tensor_ptr(const mo_tensor *t)
{
    if (!mo_tensor_alive(t)) return NULL;
    return (char *)t->storage->data + t->offset * mo_dtype_size(t->dtype);
}

float *mo_tensor_data(const mo_tensor *t)
{
    return t && t->dtype == MO_FLOAT32 ? mo_tensor_ptr(t) : NULL;
}

double *mo_tensor_data_f64(const mo_tensor *t)
{
    return t && t->dtype == MO_FLOAT64 ? mo_tensor_ptr(t) : NULL;
}

size_t mo_tensor_refcount(const mo_tensor *t)
{
    return t->storage ? (size_t)t->storage->refs : 0;
}

uint64_t mo_tensor_version(const mo_tensor *t)
{
    return t && t->storage ? t->storage->version : 0;
}

void mo_tensor_bump_version(const mo_tensor *t)
{
    if (t && t->storage) t->storage->version++;
}

int mo_tensor_same_storage(const mo_tensor *a, const mo_tensor *b)
{
    return a->storage != NULL && a->storage == b->storage;
}

/* Fill shape, contiguous strides and numel of a handle. */
static mo_status set_contiguous_shape(mo_tensor *t, int ndim, const size_t *shape)
{
    size_t n;
    MO_TRY(mo_shape_numel(ndim, shape, &n));
    /* Strides must fit ptrdiff_t; a numel that does not fit could not be indexed. */
    if (n > (size_t)PTRDIFF_MAX) return MO_ERR_OVERFLOW;
    /* Strides skip zero-size dims (as if they were 1), so with a zero in the shape
     * they can exceed numel: check them too rather than overflow ptrdiff_t. */
    size_t stride = 1;
    for (int i = ndim - 1; i > 0; i--) {
        MO_TRY(mo_size_mul(stride, shape[i] ? shape[i] : 1, &stride));
        if (stride > (size_t)PTRDIFF_MAX) return MO_ERR_OVERFLOW;
    }
    t->ndim = ndim;
    t->numel = n;
    stride = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = (ptrdiff_t)stride;
        stride *= shape[i] ? shape[i] : 1; /* checked above (unused after i == 0) */
    }
    for (int i = ndim; i < MO_MAX_DIMS; i++) {
        t->shape[i] = 0;
        t->stride[i] = 0;
    }
    return MO_OK;
}

mo_status mo_tensor_empty_dtype(mo_tensor *out, int ndim, const size_t *shape, mo_dtype dt,
                                const mo_allocator *a)
{
    if (!out || (ndim > 0 && !shape)) return MO_ERR_ARG;
    const size_t esize = mo_dtype_size(dt);
    if (esize == 0) return MO_ERR_DTYPE;
    if (!a) a = &default_allocator;
    mo_tensor t;
    mo_tensor_init(&t);
    t.dtype = dt;
    MO_TRY(set_contiguous_shape(&t, ndim, shape));
    /* One block: the record, padded to MO_ALIGN, then the data. One allocation
     * per tensor keeps small temporaries cheap (a Lua t:add(1)). A zero-size
     * tensor still gets a block, so data is never NULL while alive. */
    const size_t head = (sizeof(mo_storage) + MO_ALIGN - 1) / MO_ALIGN * MO_ALIGN;
    size_t nbytes, bytes;
    MO_TRY(mo_size_mul(t.numel, esize, &nbytes));
    MO_TRY(mo_size_add(nbytes, head, &bytes));
    void *block = a->alloc(a->ud, bytes, MO_ALIGN);
    if (!block) return MO_ERR_NOMEM;
    mo_storage *s = block;
    s->data = (char *)block + head;
    s->nbytes = nbytes;
    s->bytes = bytes;
    s->refs = 1;
    s->version = 0;
    s->owned = 1;
    s->alloc = *a;
    s->release = NULL;
    s->release_v = NULL;
    s->release_ud = NULL;
    t.storage = s;
    *out = t;
    return MO_OK;
}

mo_status mo_tensor_empty(mo_tensor *out, int ndim, const size_t *shape, const mo_allocator *a)
{
    return mo_tensor_empty_dtype(out, ndim, shape, MO_FLOAT32, a);
}

mo_status mo_tensor_zeros_dtype(mo_tensor *out, int ndim, const size_t *shape, mo_dtype dt,
                                const mo_allocator *a)
{
    MO_TRY(mo_tensor_empty_dtype(out, ndim, shape, dt, a));
    /* all-zero bytes are +0.0 in both IEEE formats */
    memset(out->storage->data, 0, out->storage->nbytes);
    return MO_OK;
}

mo_status mo_tensor_zeros(mo_tensor *out, int ndim, const size_t *shape, const mo_allocator *a)
{
    return mo_tensor_zeros_dtype(out, ndim, shape, MO_FLOAT32, a);
}

/* Borrowed storage on `data` (elements of dt); exactly one of release_f (float32's
 * historical callback type) and release_v may be non-NULL. */
static mo_status wrap_any(mo_tensor *out, void *data, mo_dtype dt, int ndim, const size_t *shape,
                          mo_release_fn release_f, mo_release_data_fn release_v, void *ud)
{
    if (!out || !data || (ndim > 0 && !shape)) return MO_ERR_ARG;
    const size_t esize = mo_dtype_size(dt);
    if (esize == 0) return MO_ERR_DTYPE;
    /* The kernels load and store whole elements (and vectorize): a pointer that is
     * not aligned for the element type would be undefined behaviour in every one. */
    const size_t align = dt == MO_FLOAT64 ? _Alignof(double) : _Alignof(float);
    if ((uintptr_t)data % align != 0) return MO_ERR_ARG;
    mo_tensor t;
    mo_tensor_init(&t);
    t.dtype = dt;
    MO_TRY(set_contiguous_shape(&t, ndim, shape));
    size_t bytes;
    MO_TRY(mo_size_mul(t.numel, esize, &bytes));
    const mo_allocator *a = &default_allocator;
    mo_storage *s = a->alloc(a->ud, sizeof *s, _Alignof(mo_storage));
    if (!s) return MO_ERR_NOMEM;
    s->data = data;
    s->nbytes = bytes;
    s->bytes = 0;
    s->refs = 1;
    s->version = 0;
    s->owned = 0;
    s->alloc = *a;
    s->release = release_f;
    s->release_v = release_v;
    s->release_ud = ud;
    t.storage = s;
    *out = t;
    return MO_OK;
}

mo_status mo_tensor_wrap(mo_tensor *out, float *data, int ndim, const size_t *shape,
                         mo_release_fn release, void *ud)
{
    return wrap_any(out, data, MO_FLOAT32, ndim, shape, release, NULL, ud);
}

mo_status mo_tensor_wrap_dtype(mo_tensor *out, void *data, mo_dtype dt, int ndim,
                               const size_t *shape, mo_release_data_fn release, void *ud)
{
    return wrap_any(out, data, dt, ndim, shape, NULL, release, ud);
}

int mo_tensor_is_contiguous(const mo_tensor *t)
{
    if (t->numel == 0) return 1; /* no element to be out of place (e.g. a zero-length narrow) */
    ptrdiff_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != expect) return 0;
        expect *= (ptrdiff_t)t->shape[i];
    }
    return 1;
}

int mo_tensor_same_shape(const mo_tensor *a, const mo_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

void mo_shape_str(const mo_tensor *t, char *buf, size_t bufsize)
{
    if (!buf || bufsize == 0) return;
    size_t used = 0;
    int n = snprintf(buf, bufsize, "{");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < t->ndim && used < bufsize; i++) {
        n = snprintf(buf + used, bufsize - used, i ? ", %zu" : "%zu", t->shape[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
    if (used < bufsize) snprintf(buf + used, bufsize - used, "}");
}

/* ---- views ---- */

mo_status mo_tensor_share(mo_tensor *out, const mo_tensor *src)
{
    if (!out || !src) return MO_ERR_ARG;
    if (!mo_tensor_alive(src)) return MO_ERR_FREED;
    *out = *src;
    src->storage->refs++;
    return MO_OK;
}

mo_status mo_tensor_view(mo_tensor *out, const mo_tensor *src, int ndim, const size_t *shape)
{
    if (!out || !src || (ndim > 0 && !shape)) return MO_ERR_ARG;
    if (!mo_tensor_alive(src)) return MO_ERR_FREED;
    if (!mo_tensor_is_contiguous(src)) return MO_ERR_LAYOUT;
    mo_tensor t = *src;
    MO_TRY(set_contiguous_shape(&t, ndim, shape));
    if (t.numel != src->numel) return MO_ERR_SHAPE;
    src->storage->refs++;
    *out = t;
    return MO_OK;
}

mo_status mo_tensor_narrow(mo_tensor *out, const mo_tensor *src, int dim, size_t start, size_t len)
{
    if (!out || !src) return MO_ERR_ARG;
    if (!mo_tensor_alive(src)) return MO_ERR_FREED;
    if (dim < 0 || dim >= src->ndim) return MO_ERR_RANGE;
    if (start > src->shape[dim] || len > src->shape[dim] - start) return MO_ERR_RANGE;
    mo_tensor t = *src;
    /* start < shape[dim] whenever len > 0, so the offset stays inside the storage. */
    if (len > 0) t.offset = (size_t)((ptrdiff_t)t.offset + (ptrdiff_t)start * t.stride[dim]);
    t.shape[dim] = len;
    if (src->shape[dim] == 0) {
        t.numel = 0;
    } else {
        t.numel = src->numel / src->shape[dim] * len;
    }
    src->storage->refs++;
    *out = t;
    return MO_OK;
}

mo_status mo_tensor_transpose(mo_tensor *out, const mo_tensor *src, int d0, int d1)
{
    if (!out || !src) return MO_ERR_ARG;
    if (!mo_tensor_alive(src)) return MO_ERR_FREED;
    if (d0 < 0 || d0 >= src->ndim || d1 < 0 || d1 >= src->ndim) return MO_ERR_RANGE;
    mo_tensor t = *src;
    t.shape[d0] = src->shape[d1];
    t.shape[d1] = src->shape[d0];
    t.stride[d0] = src->stride[d1];
    t.stride[d1] = src->stride[d0];
    src->storage->refs++;
    *out = t;
    return MO_OK;
}

mo_status mo_tensor_select(mo_tensor *out, const mo_tensor *src, int dim, size_t index)
{
    if (!out || !src) return MO_ERR_ARG;
    if (!mo_tensor_alive(src)) return MO_ERR_FREED;
    if (dim < 0 || dim >= src->ndim) return MO_ERR_RANGE;
    if (index >= src->shape[dim]) return MO_ERR_RANGE;
    mo_tensor t = *src;
    t.offset = (size_t)((ptrdiff_t)t.offset + (ptrdiff_t)index * src->stride[dim]);
    for (int i = dim; i < src->ndim - 1; i++) {
        t.shape[i] = src->shape[i + 1];
        t.stride[i] = src->stride[i + 1];
    }
    t.ndim = src->ndim - 1;
    t.shape[t.ndim] = 0;
    t.stride[t.ndim] = 0;
    t.numel = src->numel / src->shape[dim];
    src->storage->refs++;
    *out = t;
    return MO_OK;
}

mo_status mo_tensor_clone(mo_tensor *out, const mo_tensor *src, const mo_allocator *a)
{
    if (!src) return MO_ERR_ARG;
    return mo_tensor_clone_dtype(out, src, src->dtype, a);
}

mo_status mo_tensor_clone_dtype(mo_tensor *out, const mo_tensor *src, mo_dtype dt,
                                const mo_allocator *a)
{
    if (!out || !src) return MO_ERR_ARG;
    if (!mo_tensor_alive(src)) return MO_ERR_FREED;
    mo_tensor t;
    mo_tensor_init(&t);
    MO_TRY(mo_tensor_empty_dtype(&t, src->ndim, src->shape, dt, a));
    mo_status st = mo_copy(&t, src);
    if (st != MO_OK) {
        mo_tensor_release(&t);
        return st;
    }
    *out = t;
    return MO_OK;
}

mo_status mo_tensor_index(const mo_tensor *t, const size_t *idx, size_t *offset)
{
    if (!t || (t->ndim > 0 && !idx) || !offset) return MO_ERR_ARG;
    if (!mo_tensor_alive(t)) return MO_ERR_FREED;
    ptrdiff_t off = (ptrdiff_t)t->offset;
    for (int i = 0; i < t->ndim; i++) {
        if (idx[i] >= t->shape[i]) return MO_ERR_RANGE;
        off += (ptrdiff_t)idx[i] * t->stride[i];
    }
    *offset = (size_t)off - t->offset;
    return MO_OK;
}

void mo__say(char *why, size_t why_size, const char *fmt, ...)
{
    if (!why || why_size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_size, fmt, ap);
    va_end(ap);
}
