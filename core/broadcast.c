/*
 * broadcast.c - NumPy's broadcasting rules, written once for every op that
 * broadcasts (binary ops, where, masked_fill in ops.c).
 *
 * Broadcasting never copies: an input of shape {3} added to a {2, 3} output
 * is read through a view of shape {2, 3} with strides {0, 1}
 * (mo__broadcast_view), and the strided iterator mo__iter walks that view as
 * it walks any other. Because the iterator merges dims only where every
 * operand is contiguous across them, {1024, 1024} + {1024} becomes 1024 rows
 * of 1024 elements with unit stride in every operand: the contiguous,
 * vectorized loop of ops_t.h runs on each row.
 */
#include "moonopt_internal.h"

mo_status mo_broadcast_shape(int n, const mo_tensor *const *ts, int *ndim, size_t *shape)
{
    int nd = 0;
    for (int j = 0; j < n; j++)
        if (ts[j] && ts[j]->ndim > nd) nd = ts[j]->ndim;
    for (int d = 0; d < nd; d++) shape[d] = 1;
    for (int j = 0; j < n; j++) {
        const mo_tensor *t = ts[j];
        if (!t) continue;
        /* t's dim k sits at dim k + off of the result (aligned at the last dim) */
        const int off = nd - t->ndim;
        for (int k = 0; k < t->ndim; k++) {
            const size_t sz = t->shape[k];
            size_t *r = &shape[k + off];
            if (sz == *r || sz == 1) continue;
            if (*r != 1) return MO_ERR_SHAPE;
            *r = sz; /* a size-0 dim broadcasts only against 1 or 0, as NumPy */
        }
    }
    *ndim = nd;
    return MO_OK;
}

int mo__broadcasts_to(const mo_tensor *src, int ndim, const size_t *shape)
{
    if (src->ndim > ndim) return 0;
    const int off = ndim - src->ndim;
    for (int k = 0; k < src->ndim; k++)
        if (src->shape[k] != 1 && src->shape[k] != shape[k + off]) return 0;
    return 1;
}

void mo__broadcast_view(mo_tensor *view, const mo_tensor *src, int ndim, const size_t *shape)
{
    const int off = ndim - src->ndim;
    *view = *src; /* storage, offset, dtype: the same first element */
    view->ndim = ndim;
    view->numel = 1;
    for (int d = 0; d < ndim; d++) {
        const int k = d - off;
        const int kept = k >= 0 && src->shape[k] == shape[d];
        view->shape[d] = shape[d];
        view->stride[d] = kept ? src->stride[k] : 0;
        view->numel *= shape[d]; /* <= the output's numel, which exists: no overflow */
    }
}
