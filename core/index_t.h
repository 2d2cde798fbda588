/*
 * index_t.h - the gather and scatter-add loops of index.c, written once over the element
 * type T (float or double) and included by index.c once per dtype; see
 * docs/design.md "Two dtypes". No include guard on purpose; T and TN are #undef'd at the
 * end. The index has already been checked and turned into 0-based positions (ix, one per
 * element of the index tensor, in row-major order), so these loops cannot fail.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including index_t.h"
#endif

/*
 * out[p] = src[p with p[dim] replaced by ix[k]], p running over out's shape (the index's
 * shape) in row-major order, k its flat position. An odometer over p keeps two offsets:
 * oo into out, so into src without the dim component (which ix supplies).
 */
static void TN(gather)(const mo_tensor *out, const mo_tensor *src, int dim, const size_t *ix)
{
    T *o = mo_tensor_ptr(out);
    const T *s = mo_tensor_ptr(src);
    const int nd = out->ndim;
    const ptrdiff_t sdim = src->stride[dim];
    size_t p[MO_MAX_DIMS] = {0};
    ptrdiff_t oo = 0, so = 0;
    for (size_t k = 0; k < out->numel; k++) {
        o[oo] = s[so + (ptrdiff_t)ix[k] * sdim];
        for (int d = nd - 1; d >= 0; d--) {
            const ptrdiff_t ss = d == dim ? 0 : src->stride[d];
            if (++p[d] < out->shape[d]) {
                oo += out->stride[d];
                so += ss;
                break;
            }
            oo -= (ptrdiff_t)(out->shape[d] - 1) * out->stride[d];
            so -= (ptrdiff_t)(out->shape[d] - 1) * ss;
            p[d] = 0;
        }
    }
}

/*
 * dst[p with p[dim] replaced by ix[k]] += src[p], p running over the index's shape `sh`
 * (nd dims) in row-major order. Sequential, so repeated positions accumulate in order.
 */
static void TN(scatter_add)(const mo_tensor *dst, const mo_tensor *src, int dim, int nd,
                            const size_t *sh, const size_t *ix, size_t n)
{
    T *o = mo_tensor_ptr(dst);
    const T *s = mo_tensor_ptr(src);
    const ptrdiff_t odim = dst->stride[dim];
    size_t p[MO_MAX_DIMS] = {0};
    ptrdiff_t oo = 0, so = 0;
    for (size_t k = 0; k < n; k++) {
        o[oo + (ptrdiff_t)ix[k] * odim] += s[so];
        for (int d = nd - 1; d >= 0; d--) {
            const ptrdiff_t os = d == dim ? 0 : dst->stride[d];
            if (++p[d] < sh[d]) {
                oo += os;
                so += src->stride[d];
                break;
            }
            oo -= (ptrdiff_t)(sh[d] - 1) * os;
            so -= (ptrdiff_t)(sh[d] - 1) * src->stride[d];
            p[d] = 0;
        }
    }
}

#undef T
#undef TN
