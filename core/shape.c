/*
 * shape.c - the shape family of views and copies: permute, squeeze, unsqueeze,
 * expand, stride-aware view, slicing (torch7's t[{ {1, 3}, 2 }]), cat and stack.
 *
 * Every view here is a new handle on the source's storage (mo_tensor_share,
 * then new shape/stride/offset fields): nothing is copied and nothing is
 * allocated. Strides are in elements, so none of this depends on the element
 * type. Copies (cat, stack, a reshape the strides do not allow) go through
 * mo_copy into a tensor the caller made.
 *
 * Every function validates all of its operands itself (alive, ranks, sizes),
 * even when a caller checked them already: the Lua binding may have run a
 * finalizer between its checks and this call (docs/design.md "Layers").
 * Dimensions and indices are 0-based here.
 */
#include "moonopt_internal.h"

#include <string.h>

/* out = a handle on src's storage with the given fields (ndim entries of shape
 * and stride, offset in elements). Clears the unused dims as tensor.c does. */
static mo_status make_view(mo_tensor *out, const mo_tensor *src, size_t offset, int ndim,
                           const size_t *shape, const ptrdiff_t *stride)
{
    size_t numel;
    MO_TRY(mo_shape_numel(ndim, shape, &numel));
    mo_tensor t;
    MO_TRY(mo_tensor_share(&t, src));
    t.offset = offset;
    t.ndim = ndim;
    t.numel = numel;
    for (int d = 0; d < MO_MAX_DIMS; d++) {
        t.shape[d] = d < ndim ? shape[d] : 0;
        t.stride[d] = d < ndim ? stride[d] : 0;
    }
    *out = t;
    return MO_OK;
}

static mo_status check_src(const mo_tensor *out, const mo_tensor *src)
{
    if (!out || !src) return MO_ERR_ARG;
    return mo_tensor_alive(src) ? MO_OK : MO_ERR_FREED;
}

mo_status mo_tensor_permute(mo_tensor *out, const mo_tensor *src, int ndim, const int *dims)
{
    MO_TRY(check_src(out, src));
    if (ndim != src->ndim || (ndim > 0 && !dims)) return MO_ERR_ARG;
    size_t shape[MO_MAX_DIMS];
    ptrdiff_t stride[MO_MAX_DIMS];
    int seen[MO_MAX_DIMS] = {0};
    for (int k = 0; k < ndim; k++) {
        int d = dims[k];
        if (d < 0 || d >= ndim) return MO_ERR_RANGE;
        if (seen[d]++) return MO_ERR_ARG;
        shape[k] = src->shape[d];
        stride[k] = src->stride[d];
    }
    return make_view(out, src, src->offset, ndim, shape, stride);
}

mo_status mo_tensor_squeeze(mo_tensor *out, const mo_tensor *src, int dim)
{
    MO_TRY(check_src(out, src));
    if (dim < -1 || dim >= (src->ndim > 0 ? src->ndim : 1)) return MO_ERR_RANGE;
    size_t shape[MO_MAX_DIMS];
    ptrdiff_t stride[MO_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < src->ndim; d++) {
        if (src->shape[d] == 1 && (dim == -1 || dim == d)) continue;
        shape[n] = src->shape[d];
        stride[n++] = src->stride[d];
    }
    return make_view(out, src, src->offset, n, shape, stride);
}

mo_status mo_tensor_unsqueeze(mo_tensor *out, const mo_tensor *src, int dim)
{
    MO_TRY(check_src(out, src));
    if (dim < 0 || dim > src->ndim) return MO_ERR_RANGE;
    if (src->ndim == MO_MAX_DIMS) return MO_ERR_DIMS;
    size_t shape[MO_MAX_DIMS];
    ptrdiff_t stride[MO_MAX_DIMS];
    for (int d = 0, k = 0; d <= src->ndim; d++) {
        if (d == dim) {
            /* any stride is right for a size-1 dim; this one keeps a contiguous
             * source contiguous by every definition (PyTorch's choice) */
            shape[d] = 1;
            stride[d] = d < src->ndim ? src->stride[d] * (ptrdiff_t)src->shape[d] : 1;
            continue;
        }
        shape[d] = src->shape[k];
        stride[d] = src->stride[k++];
    }
    return make_view(out, src, src->offset, src->ndim + 1, shape, stride);
}

mo_status mo_tensor_expand(mo_tensor *out, const mo_tensor *src, int ndim, const size_t *shape)
{
    MO_TRY(check_src(out, src));
    if (ndim > MO_MAX_DIMS) return MO_ERR_DIMS;
    if (ndim < src->ndim || (ndim > 0 && !shape)) return MO_ERR_SHAPE;
    ptrdiff_t stride[MO_MAX_DIMS];
    int lead = ndim - src->ndim; /* new leading dims: every index reads the same data */
    for (int d = 0; d < ndim; d++) {
        if (d < lead) {
            stride[d] = 0;
            continue;
        }
        size_t have = src->shape[d - lead];
        if (have == shape[d])
            stride[d] = src->stride[d - lead];
        else if (have == 1)
            stride[d] = 0;
        else
            return MO_ERR_SHAPE;
    }
    return make_view(out, src, src->offset, ndim, shape, stride);
}

/*
 * Strides for viewing src with `shape` (same numel) without a copy, or 0 when
 * the layout does not allow it. The rule is PyTorch's (computeStride): src's
 * dims are grouped into maximal runs that are contiguous with each other
 * (stride[d] == stride[d+1] * shape[d+1]); a view is possible exactly when the
 * new shape splits into consecutive groups of the same element counts, each
 * then laid out contiguously over its run's innermost stride.
 */
int mo_view_strides(const mo_tensor *src, int ndim, const size_t *shape, ptrdiff_t *stride)
{
    size_t numel;
    if (ndim < 0 || ndim > MO_MAX_DIMS || mo_shape_numel(ndim, shape, &numel) != MO_OK ||
        numel != src->numel)
        return 0;
    if (numel <= 1) {
        /* no two elements to keep apart: contiguous strides (a 0-d source included) */
        ptrdiff_t s = 1;
        for (int d = ndim - 1; d >= 0; d--) {
            stride[d] = s;
            s *= shape[d] ? (ptrdiff_t)shape[d] : 1;
        }
        return 1;
    }
    int vd = ndim - 1;
    ptrdiff_t base = src->stride[src->ndim - 1]; /* innermost stride of the current run */
    size_t tnumel = 1, vnumel = 1;
    for (int td = src->ndim - 1; td >= 0; td--) {
        tnumel *= src->shape[td];
        int run_ends = td == 0 || (src->shape[td - 1] != 1 &&
                                   src->stride[td - 1] != (ptrdiff_t)tnumel * base);
        if (!run_ends) continue;
        while (vd >= 0 && (vnumel < tnumel || shape[vd] == 1)) {
            stride[vd] = (ptrdiff_t)vnumel * base;
            vnumel *= shape[vd];
            vd--;
        }
        if (vnumel != tnumel) return 0;
        if (td > 0) {
            base = src->stride[td - 1];
            tnumel = vnumel = 1;
        }
    }
    return vd == -1;
}

mo_status mo_tensor_view_any(mo_tensor *out, const mo_tensor *src, int ndim, const size_t *shape)
{
    MO_TRY(check_src(out, src));
    if (ndim < 0 || ndim > MO_MAX_DIMS) return MO_ERR_DIMS;
    if (ndim > 0 && !shape) return MO_ERR_ARG;
    size_t numel;
    MO_TRY(mo_shape_numel(ndim, shape, &numel));
    if (numel != src->numel) return MO_ERR_SHAPE;
    ptrdiff_t stride[MO_MAX_DIMS];
    if (!mo_view_strides(src, ndim, shape, stride)) return MO_ERR_LAYOUT;
    return make_view(out, src, src->offset, ndim, shape, stride);
}

mo_status mo_copy_reshape(mo_tensor *dst, const mo_tensor *src)
{
    if (!dst || !src) return MO_ERR_ARG;
    const mo_tensor *ts[2] = {dst, src};
    MO_TRY(mo__check_live(2, ts));
    if (dst->numel != src->numel) return MO_ERR_SHAPE;
    /* one side seen with the other's shape, so mo_copy walks both in row-major order */
    mo_tensor v;
    mo_tensor_init(&v);
    mo_status st;
    if (mo_tensor_view_any(&v, dst, src->ndim, src->shape) == MO_OK)
        st = mo_copy(&v, src);
    else if ((st = mo_tensor_view_any(&v, src, dst->ndim, dst->shape)) == MO_OK)
        st = mo_copy(dst, &v);
    mo_tensor_release(&v);
    return st;
}

mo_status mo_tensor_slice(mo_tensor *out, const mo_tensor *src, int n, const mo_slice *s)
{
    MO_TRY(check_src(out, src));
    if (n < 0 || n > src->ndim) return MO_ERR_RANGE;
    if (n > 0 && !s) return MO_ERR_ARG;
    size_t shape[MO_MAX_DIMS];
    ptrdiff_t stride[MO_MAX_DIMS];
    ptrdiff_t offset = (ptrdiff_t)src->offset;
    int nd = 0;
    for (int d = 0; d < src->ndim; d++) {
        size_t size = src->shape[d];
        const mo_slice *k = d < n ? &s[d] : NULL;
        if (k == NULL || k->kind == MO_SLICE_ALL) {
            shape[nd] = size;
            stride[nd++] = src->stride[d];
        } else if (k->kind == MO_SLICE_INDEX) {
            if (k->start >= size) return MO_ERR_RANGE;
            offset += (ptrdiff_t)k->start * src->stride[d];
        } else if (k->kind == MO_SLICE_RANGE) {
            if (k->start > size || k->len > size - k->start) return MO_ERR_RANGE;
            /* an empty range keeps the offset: start may be one past the end */
            if (k->len > 0) offset += (ptrdiff_t)k->start * src->stride[d];
            shape[nd] = k->len;
            stride[nd++] = src->stride[d];
        } else {
            return MO_ERR_ARG;
        }
    }
    return make_view(out, src, (size_t)offset, nd, shape, stride);
}

/* The shape shared by all n operands except along `dim` (checked); *along the sum there. */
mo_status mo_cat_shape(size_t n, const mo_tensor *const *ts, int dim, size_t *shape)
{
    if (n == 0 || !ts || !shape) return MO_ERR_ARG;
    for (size_t k = 0; k < n; k++) {
        if (!ts[k]) return MO_ERR_ARG;
        if (!mo_tensor_alive(ts[k])) return MO_ERR_FREED;
    }
    const mo_tensor *a = ts[0];
    if (dim < 0 || dim >= a->ndim) return MO_ERR_RANGE;
    size_t along = 0;
    for (size_t k = 0; k < n; k++) {
        if (ts[k]->ndim != a->ndim) return MO_ERR_SHAPE;
        for (int d = 0; d < a->ndim; d++)
            if (d != dim && ts[k]->shape[d] != a->shape[d]) return MO_ERR_SHAPE;
        MO_TRY(mo_size_add(along, ts[k]->shape[dim], &along));
    }
    memcpy(shape, a->shape, (size_t)a->ndim * sizeof *shape);
    shape[dim] = along;
    size_t numel;
    return mo_shape_numel(a->ndim, shape, &numel);
}

mo_status mo_tensor_cat(mo_tensor *out, size_t n, const mo_tensor *const *ts, int dim)
{
    size_t shape[MO_MAX_DIMS];
    if (!out) return MO_ERR_ARG;
    MO_TRY(mo_cat_shape(n, ts, dim, shape));
    if (!mo_tensor_alive(out)) return MO_ERR_FREED;
    if (out->ndim != ts[0]->ndim) return MO_ERR_SHAPE;
    for (int d = 0; d < out->ndim; d++)
        if (out->shape[d] != shape[d]) return MO_ERR_SHAPE;
    size_t at = 0;
    for (size_t k = 0; k < n; k++) {
        /* out[..., at .. at+len-1, ...] = ts[k] */
        mo_tensor part;
        mo_tensor_init(&part);
        MO_TRY(mo_tensor_narrow(&part, out, dim, at, ts[k]->shape[dim]));
        mo_status st = mo_copy(&part, ts[k]);
        mo_tensor_release(&part);
        MO_TRY(st);
        at += ts[k]->shape[dim];
    }
    return MO_OK;
}

mo_status mo_tensor_stack(mo_tensor *out, size_t n, const mo_tensor *const *ts, int dim)
{
    if (!out || !ts || n == 0) return MO_ERR_ARG;
    for (size_t k = 0; k < n; k++) {
        if (!ts[k]) return MO_ERR_ARG;
        if (!mo_tensor_alive(ts[k])) return MO_ERR_FREED;
        if (!mo_tensor_same_shape(ts[k], ts[0])) return MO_ERR_SHAPE;
    }
    if (!mo_tensor_alive(out)) return MO_ERR_FREED;
    const mo_tensor *a = ts[0];
    if (dim < 0 || dim > a->ndim) return MO_ERR_RANGE;
    if (out->ndim != a->ndim + 1 || out->shape[dim] != n) return MO_ERR_SHAPE;
    for (int d = 0, k = 0; d < out->ndim; d++)
        if (d != dim && out->shape[d] != a->shape[k++]) return MO_ERR_SHAPE;
    for (size_t k = 0; k < n; k++) {
        mo_tensor part; /* out with index k along dim: ts[k]'s shape */
        mo_tensor_init(&part);
        MO_TRY(mo_tensor_select(&part, out, dim, k));
        mo_status st = mo_copy(&part, ts[k]);
        mo_tensor_release(&part);
        MO_TRY(st);
    }
    return MO_OK;
}
