/*
 * test_tensor.c - storage and handles: creation, overflow and dimension
 * limits, allocator hooks (counting and failing), views and their offsets,
 * reference counts released in any order, borrowed memory with a release
 * callback, and revocation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "moonopt.h"

/* ---- a counting allocator that can be told to fail its n-th call ---- */

typedef struct counting {
    int calls;        /* alloc calls so far */
    int fail_at;      /* 0: never fail; k: the k-th call returns NULL */
    int allocs, frees;
    size_t live;      /* bytes allocated and not yet freed */
} counting;

static void *c_alloc(void *ud, size_t size, size_t align)
{
    counting *c = ud;
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at) return NULL;
    size_t rounded = (size + align - 1) / align * align;
    void *p = aligned_alloc(align, rounded ? rounded : align);
    if (p) {
        c->allocs++;
        c->live += size;
    }
    return p;
}

static void c_free(void *ud, void *ptr, size_t size)
{
    counting *c = ud;
    c->frees++;
    c->live -= size;
    free(ptr);
}

static mo_allocator counting_allocator(counting *c)
{
    memset(c, 0, sizeof *c);
    mo_allocator a = {c_alloc, c_free, c};
    return a;
}

/* ---- a release callback that records its calls ---- */

typedef struct released {
    int calls;
    float *data;
} released;

static void on_release(void *ud, float *data)
{
    released *r = ud;
    r->calls++;
    r->data = data;
}

/* Element `flat` (row-major) of any tensor. */
static float at(const mo_tensor *t, size_t flat)
{
    ptrdiff_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (ptrdiff_t)(flat % t->shape[d]) * t->stride[d];
        flat /= t->shape[d];
    }
    return mo_tensor_data(t)[off];
}

/* A {3, 4, 5} tensor holding 0, 1, ..., 59. */
static mo_tensor arange345(const mo_allocator *a)
{
    mo_tensor t;
    mo_tensor_init(&t);
    CHECK_OK(mo_tensor_empty(&t, 3, (size_t[]){3, 4, 5}, a));
    for (size_t i = 0; i < 60; i++) mo_tensor_data(&t)[i] = (float)i;
    return t;
}

/* ------------------------------------------------------------------------ */

TEST(status_and_size_arithmetic)
{
    for (int s = 0; s < MO_STATUS_COUNT_; s++) {
        CHECK(mo_status_str((mo_status)s) != NULL);
        CHECK(strcmp(mo_status_str((mo_status)s), "unknown status") != 0);
    }
    CHECK(strcmp(mo_status_str(MO_ERR_FREED), "tensor has been freed") == 0);
    CHECK(strcmp(mo_status_str(MO_STATUS_COUNT_), "unknown status") == 0);
    CHECK(strcmp(mo_status_str((mo_status)-1), "unknown status") == 0);

    size_t r = 7;
    CHECK_STATUS(mo_size_mul(SIZE_MAX / 2, 3, &r), MO_ERR_OVERFLOW);
    CHECK(r == 7);
    CHECK_OK(mo_size_mul(0, SIZE_MAX, &r));
    CHECK(r == 0);
    CHECK_OK(mo_size_mul(SIZE_MAX / 3, 3, &r));
    CHECK_STATUS(mo_size_add(SIZE_MAX, 1, &r), MO_ERR_OVERFLOW);
    CHECK_OK(mo_size_add(SIZE_MAX - 1, 1, &r));
    CHECK(r == SIZE_MAX);

    size_t n = 5;
    CHECK_OK(mo_shape_numel(0, NULL, &n));
    CHECK(n == 1);
    CHECK_OK(mo_shape_numel(3, (size_t[]){2, 0, 7}, &n));
    CHECK(n == 0);
    CHECK_STATUS(mo_shape_numel(2, (size_t[]){SIZE_MAX / 2, 3}, &n), MO_ERR_OVERFLOW);
    CHECK_STATUS(mo_shape_numel(-1, NULL, &n), MO_ERR_ARG);
    CHECK_STATUS(mo_shape_numel(9, (size_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, &n), MO_ERR_DIMS);
}

TEST(create_contiguous)
{
    mo_tensor t;
    mo_tensor_init(&t);
    CHECK(t.storage == NULL && !mo_tensor_alive(&t) && mo_tensor_data(&t) == NULL);
    CHECK(mo_tensor_refcount(&t) == 0);
    CHECK_OK(mo_tensor_zeros(&t, 3, (size_t[]){2, 3, 4}, NULL));
    CHECK(t.ndim == 3 && t.numel == 24 && t.offset == 0);
    CHECK(t.stride[0] == 12 && t.stride[1] == 4 && t.stride[2] == 1);
    CHECK(mo_tensor_is_contiguous(&t) && mo_tensor_refcount(&t) == 1);
    CHECK((uintptr_t)mo_tensor_data(&t) % MO_ALIGN == 0);
    int zeros = 1;
    for (size_t i = 0; i < 24; i++) zeros &= mo_tensor_data(&t)[i] == 0.0f;
    CHECK(zeros);
    char buf[32];
    mo_shape_str(&t, buf, sizeof buf);
    CHECK(strcmp(buf, "{2, 3, 4}") == 0);
    mo_shape_str(&t, buf, 5);
    CHECK(strlen(buf) == 4 && strncmp(buf, "{2, ", 4) == 0);
    /* out must be empty: creating into a live handle would leak it */
    mo_tensor_release(&t);
    CHECK(t.storage == NULL);
    mo_tensor_release(&t); /* twice is fine */
    mo_tensor_release(NULL);

    /* 0-d: one element; a zero-size dim: no element but a live handle */
    CHECK_OK(mo_tensor_zeros(&t, 0, NULL, NULL));
    CHECK(t.ndim == 0 && t.numel == 1 && mo_tensor_data(&t)[0] == 0.0f);
    mo_shape_str(&t, buf, sizeof buf);
    CHECK(strcmp(buf, "{}") == 0);
    mo_tensor_release(&t);
    CHECK_OK(mo_tensor_empty(&t, 2, (size_t[]){0, 5}, NULL));
    CHECK(t.numel == 0 && mo_tensor_alive(&t) && mo_tensor_data(&t) != NULL);
    mo_tensor_release(&t);
}

TEST(overflow_and_dims_allocate_nothing)
{
    counting c;
    mo_allocator a = counting_allocator(&c);
    mo_tensor t;
    mo_tensor_init(&t);
    CHECK_STATUS(mo_tensor_empty(&t, 2, (size_t[]){SIZE_MAX / 2, 3}, &a), MO_ERR_OVERFLOW);
    /* numel fits size_t but not ptrdiff_t (strides) */
    CHECK_STATUS(mo_tensor_empty(&t, 2, (size_t[]){SIZE_MAX / 8, 3}, &a), MO_ERR_OVERFLOW);
    /* numel fits, the byte count does not */
    CHECK_STATUS(mo_tensor_zeros(&t, 2, (size_t[]){SIZE_MAX / 16, 5}, &a), MO_ERR_OVERFLOW);
    /* numel 0, but the strides of the other dims would overflow */
    CHECK_STATUS(mo_tensor_empty(&t, 3, (size_t[]){SIZE_MAX / 2, 3, 0}, &a), MO_ERR_OVERFLOW);
    CHECK_STATUS(mo_tensor_empty(&t, 3, (size_t[]){0, SIZE_MAX / 2, 3}, &a), MO_ERR_OVERFLOW);
    CHECK_STATUS(mo_tensor_empty(&t, 9, (size_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, &a), MO_ERR_DIMS);
    CHECK_STATUS(mo_tensor_empty(&t, -1, (size_t[]){1}, &a), MO_ERR_ARG);
    CHECK_STATUS(mo_tensor_empty(&t, 2, NULL, &a), MO_ERR_ARG);
    CHECK_STATUS(mo_tensor_empty(NULL, 1, (size_t[]){1}, &a), MO_ERR_ARG);
    float host[4];
    CHECK_STATUS(mo_tensor_wrap(&t, host, 2, (size_t[]){SIZE_MAX / 2, 3}, NULL, NULL), MO_ERR_OVERFLOW);
    CHECK_STATUS(mo_tensor_wrap(&t, NULL, 1, (size_t[]){4}, NULL, NULL), MO_ERR_ARG);
    CHECK(c.calls == 0 && c.allocs == 0);
    CHECK(t.storage == NULL);

    /* 8 dims is the limit and works */
    CHECK_OK(mo_tensor_zeros(&t, 8, (size_t[]){2, 1, 2, 1, 2, 1, 2, 1}, &a));
    CHECK(t.numel == 16 && t.stride[0] == 8);
    mo_tensor_release(&t);
    CHECK(c.allocs == 1 && c.frees == 1 && c.live == 0);
}

TEST(allocator_hooks)
{
    counting c;
    mo_allocator a = counting_allocator(&c);
    mo_tensor t = arange345(&a), v, n;
    mo_tensor_init(&v);
    mo_tensor_init(&n);
    CHECK(c.allocs == 1); /* the storage record and the data share one block */
    CHECK((uintptr_t)mo_tensor_data(&t) % MO_ALIGN == 0);
    CHECK_OK(mo_tensor_view(&v, &t, 2, (size_t[]){12, 5}));
    CHECK_OK(mo_tensor_narrow(&n, &v, 0, 2, 3));
    CHECK(c.allocs == 1); /* views allocate nothing */
    mo_tensor cl;
    mo_tensor_init(&cl);
    CHECK_OK(mo_tensor_clone(&cl, &n, &a));
    CHECK(c.allocs == 2 && !mo_tensor_same_storage(&cl, &n));
    mo_tensor_release(&t);
    mo_tensor_release(&v);
    CHECK(c.frees == 0);
    mo_tensor_release(&n);
    CHECK(c.frees == 1);
    mo_tensor_release(&cl);
    CHECK(c.frees == 2 && c.live == 0);
}

TEST(failing_allocator_leaks_nothing)
{
    counting c;
    for (int fail = 1; fail <= 1; fail++) { /* a tensor is one block: one call to fail */
        mo_allocator a = counting_allocator(&c);
        c.fail_at = fail;
        mo_tensor t;
        mo_tensor_init(&t);
        CHECK_STATUS(mo_tensor_zeros(&t, 2, (size_t[]){3, 3}, &a), MO_ERR_NOMEM);
        CHECK(t.storage == NULL);
        CHECK(c.allocs == c.frees && c.live == 0);
    }
    /* clone and reduce_dim into a failing allocator: NOMEM, out stays empty, no leak */
    mo_tensor src = arange345(NULL), out;
    mo_tensor_init(&out);
    for (int fail = 1; fail <= 1; fail++) {
        mo_allocator a = counting_allocator(&c);
        c.fail_at = fail;
        CHECK_STATUS(mo_tensor_clone(&out, &src, &a), MO_ERR_NOMEM);
        CHECK(out.storage == NULL && c.allocs == c.frees && c.live == 0);
        c.calls = 0;
        CHECK_STATUS(mo_reduce_dim(&out, &src, 1, MO_RED_SUM, &a), MO_ERR_NOMEM);
        CHECK(out.storage == NULL && c.allocs == c.frees && c.live == 0);
    }
    CHECK(mo_tensor_refcount(&src) == 1);
    mo_tensor_release(&src);
}

TEST(refcounts_any_release_order)
{
    /* base + two views, released in each of the 6 orders: the block is freed
     * exactly at the last release and the views stay readable until then */
    static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                     {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int o = 0; o < 6; o++) {
        counting c;
        mo_allocator a = counting_allocator(&c);
        mo_tensor h[3];
        h[0] = arange345(&a);
        mo_tensor_init(&h[1]);
        mo_tensor_init(&h[2]);
        CHECK_OK(mo_tensor_transpose(&h[1], &h[0], 0, 2));
        CHECK_OK(mo_tensor_select(&h[2], &h[1], 0, 4)); /* a view of a view */
        CHECK(mo_tensor_refcount(&h[0]) == 3 && mo_tensor_refcount(&h[2]) == 3);
        for (int k = 0; k < 3; k++) {
            mo_tensor_release(&h[orders[o][k]]);
            CHECK(c.frees == (k == 2 ? 1 : 0));
            for (int j = k + 1; j < 3; j++) {
                const mo_tensor *left = &h[orders[o][j]];
                CHECK(mo_tensor_alive(left) && mo_tensor_refcount(left) == (size_t)(2 - k));
                /* element [0] of each handle: base 0, transpose 0, select(0, 4) of it 4 */
                CHECK(at(left, 0) == (orders[o][j] == 2 ? 4.0f : 0.0f));
            }
        }
        CHECK(c.live == 0);
    }

    /* share is one more reference on the same view */
    mo_tensor t = arange345(NULL), s;
    mo_tensor_init(&s);
    CHECK_OK(mo_tensor_share(&s, &t));
    CHECK(mo_tensor_refcount(&t) == 2 && mo_tensor_same_storage(&s, &t));
    CHECK(mo_tensor_data(&s) == mo_tensor_data(&t) && mo_tensor_same_shape(&s, &t));
    mo_tensor_release(&t);
    CHECK(mo_tensor_refcount(&s) == 1 && at(&s, 59) == 59.0f);
    mo_tensor_release(&s);
}

TEST(view_offsets_and_errors)
{
    mo_tensor t = arange345(NULL), v;
    mo_tensor_init(&v);

    /* narrow(dim 1, start 1, len 2): offset 5, shape {3, 2, 5} */
    CHECK_OK(mo_tensor_narrow(&v, &t, 1, 1, 2));
    CHECK(v.offset == 5 && v.shape[1] == 2 && v.numel == 30 && !mo_tensor_is_contiguous(&v));
    CHECK(at(&v, 0) == 5.0f && at(&v, 10) == 25.0f && at(&v, 29) == 54.0f);
    mo_tensor_release(&v);

    /* select(dim 2, index 3): offset 3, shape {3, 4}, strides {20, 5} */
    CHECK_OK(mo_tensor_select(&v, &t, 2, 3));
    CHECK(v.ndim == 2 && v.offset == 3 && v.stride[0] == 20 && v.stride[1] == 5 && v.numel == 12);
    CHECK(at(&v, 0) == 3.0f && at(&v, 5) == 28.0f);
    mo_tensor_release(&v);

    /* transpose(0, 2): shape {5, 4, 3}, strides {1, 5, 20}; element (i,j,k) = t(k,j,i) */
    CHECK_OK(mo_tensor_transpose(&v, &t, 0, 2));
    CHECK(v.shape[0] == 5 && v.shape[2] == 3 && v.stride[0] == 1 && v.stride[2] == 20);
    CHECK(at(&v, 1) == 20.0f && at(&v, 3) == 5.0f && at(&v, 12) == 1.0f);
    size_t off;
    CHECK_OK(mo_tensor_index(&v, (size_t[]){4, 3, 2}, &off));
    CHECK(off == 4 + 15 + 40);
    CHECK_STATUS(mo_tensor_index(&v, (size_t[]){5, 0, 0}, &off), MO_ERR_RANGE);

    /* a narrowed transposed view: offsets compose */
    mo_tensor w;
    mo_tensor_init(&w);
    CHECK_OK(mo_tensor_narrow(&w, &v, 0, 2, 3)); /* i in 2..4 */
    CHECK(w.offset == 2 && at(&w, 0) == 2.0f);
    mo_tensor_release(&w);

    /* view of a non-contiguous tensor: LAYOUT; nothing changes */
    size_t refs = mo_tensor_refcount(&t);
    CHECK_STATUS(mo_tensor_view(&w, &v, 1, (size_t[]){60}), MO_ERR_LAYOUT);
    CHECK(w.storage == NULL && mo_tensor_refcount(&t) == refs);
    /* range and shape errors */
    CHECK_STATUS(mo_tensor_view(&w, &t, 2, (size_t[]){7, 9}), MO_ERR_SHAPE);
    CHECK_STATUS(mo_tensor_view(&w, &t, 9, (size_t[]){60, 1, 1, 1, 1, 1, 1, 1, 1}), MO_ERR_DIMS);
    CHECK_STATUS(mo_tensor_narrow(&w, &t, 1, 3, 2), MO_ERR_RANGE);
    CHECK_STATUS(mo_tensor_narrow(&w, &t, 1, 5, 0), MO_ERR_RANGE);
    CHECK_STATUS(mo_tensor_narrow(&w, &t, 3, 0, 1), MO_ERR_RANGE);
    CHECK_STATUS(mo_tensor_narrow(&w, &t, -1, 0, 1), MO_ERR_RANGE);
    CHECK_STATUS(mo_tensor_narrow(&w, &t, 1, SIZE_MAX, 2), MO_ERR_RANGE);
    CHECK_STATUS(mo_tensor_select(&w, &t, 0, 3), MO_ERR_RANGE);
    CHECK_STATUS(mo_tensor_transpose(&w, &t, 0, 3), MO_ERR_RANGE);
    CHECK_STATUS(mo_tensor_share(&w, NULL), MO_ERR_ARG);
    CHECK(w.storage == NULL && mo_tensor_refcount(&t) == refs);

    /* a contiguous view of a contiguous narrow (dim 0), and a zero-length narrow */
    CHECK_OK(mo_tensor_narrow(&w, &t, 0, 1, 2));
    mo_tensor x;
    mo_tensor_init(&x);
    CHECK(mo_tensor_is_contiguous(&w));
    CHECK_OK(mo_tensor_view(&x, &w, 1, (size_t[]){40}));
    CHECK(x.offset == 20 && at(&x, 39) == 59.0f);
    mo_tensor_release(&x);
    mo_tensor_release(&w);
    CHECK_OK(mo_tensor_narrow(&w, &t, 2, 5, 0));
    CHECK(w.numel == 0 && mo_tensor_is_contiguous(&w));
    CHECK_OK(mo_tensor_view(&x, &w, 1, (size_t[]){0}));
    mo_tensor_release(&x);
    mo_tensor_release(&w);

    /* clone of a transposed view: contiguous, logical order, own storage */
    CHECK_OK(mo_tensor_clone(&w, &v, NULL));
    CHECK(mo_tensor_is_contiguous(&w) && !mo_tensor_same_storage(&w, &v));
    CHECK(mo_tensor_refcount(&w) == 1 && mo_tensor_same_shape(&w, &v));
    int same = 1;
    for (size_t i = 0; i < 60; i++) same &= mo_tensor_data(&w)[i] == at(&v, i);
    CHECK(same);
    mo_tensor_release(&w);

    mo_tensor_release(&v);
    mo_tensor_release(&t);
}

TEST(wrap_release_once)
{
    float host[6] = {1, 2, 3, 4, 5, 6};
    released r = {0, NULL};
    mo_tensor t, v, s;
    mo_tensor_init(&t);
    mo_tensor_init(&v);
    mo_tensor_init(&s);
    CHECK_OK(mo_tensor_wrap(&t, host, 2, (size_t[]){2, 3}, on_release, &r));
    CHECK(mo_tensor_data(&t) == host && t.numel == 6);
    CHECK_OK(mo_tensor_transpose(&v, &t, 0, 1));
    CHECK_OK(mo_tensor_select(&s, &v, 1, 1)); /* column... row 1 of t: {4, 5, 6} */
    CHECK(at(&s, 2) == 6.0f);
    CHECK_OK(mo_fill(&s, -1.0f)); /* writes go to the host's memory */
    CHECK(host[3] == -1.0f && host[5] == -1.0f && host[0] == 1.0f);
    mo_tensor_release(&t);
    mo_tensor_release(&s);
    CHECK(r.calls == 0);
    mo_tensor_release(&v);
    CHECK(r.calls == 1 && r.data == host);
    mo_tensor_release(&v);
    CHECK(r.calls == 1);

    /* a failed wrap does not call release; a NULL callback is fine */
    r.calls = 0;
    CHECK_STATUS(mo_tensor_wrap(&t, host, 9, (size_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, on_release, &r),
                 MO_ERR_DIMS);
    CHECK(r.calls == 0 && t.storage == NULL);
    CHECK_OK(mo_tensor_wrap(&t, host, 1, (size_t[]){6}, NULL, NULL));
    mo_tensor_release(&t);
}

TEST(revoke)
{
    float host[6] = {1, 2, 3, 4, 5, 6};
    released r = {0, NULL};
    mo_tensor t, v, out;
    mo_tensor_init(&t);
    mo_tensor_init(&v);
    mo_tensor_init(&out);
    CHECK_OK(mo_tensor_wrap(&t, host, 2, (size_t[]){2, 3}, on_release, &r));
    CHECK_OK(mo_tensor_narrow(&v, &t, 1, 1, 2));
    mo_tensor_revoke(&v); /* through a view: the whole storage */
    CHECK(r.calls == 1 && r.data == host);
    CHECK(!mo_tensor_alive(&t) && !mo_tensor_alive(&v));
    CHECK(mo_tensor_data(&t) == NULL && mo_tensor_data(&v) == NULL);
    double d;
    CHECK_STATUS(mo_fill(&t, 0.0f), MO_ERR_FREED);
    CHECK_STATUS(mo_sum(&v, &d), MO_ERR_FREED);
    CHECK_STATUS(mo_tensor_share(&out, &t), MO_ERR_FREED);
    CHECK_STATUS(mo_tensor_narrow(&out, &t, 0, 0, 1), MO_ERR_FREED);
    CHECK_STATUS(mo_tensor_view(&out, &t, 1, (size_t[]){6}), MO_ERR_FREED);
    CHECK_STATUS(mo_tensor_clone(&out, &v, NULL), MO_ERR_FREED);
    CHECK_STATUS(mo_tensor_index(&t, (size_t[]){0, 0}, (size_t[]){0}), MO_ERR_FREED);
    CHECK(out.storage == NULL);
    CHECK(host[0] == 1.0f && host[5] == 6.0f); /* nothing written after revoke */
    mo_tensor_revoke(&t); /* again: nothing happens */
    mo_tensor_release(&t);
    mo_tensor_release(&v);
    CHECK(r.calls == 1);

    /* owned memory: dead at revoke; its one block (record + data) goes at the last release */
    counting c;
    mo_allocator a = counting_allocator(&c);
    t = arange345(&a);
    CHECK_OK(mo_tensor_share(&v, &t));
    mo_tensor_revoke(&t);
    CHECK(c.frees == 0 && !mo_tensor_alive(&v) && mo_tensor_data(&v) == NULL);
    mo_tensor_release(&t);
    CHECK(c.frees == 0 && mo_tensor_refcount(&v) == 1);
    mo_tensor_release(&v);
    CHECK(c.frees == 1 && c.live == 0);
    mo_tensor_revoke(NULL);
}

int main(void)
{
    RUN(status_and_size_arithmetic);
    RUN(create_contiguous);
    RUN(overflow_and_dims_allocate_nothing);
    RUN(allocator_hooks);
    RUN(failing_allocator_leaks_nothing);
    RUN(refcounts_any_release_order);
    RUN(view_offsets_and_errors);
    RUN(wrap_release_once);
    RUN(revoke);
    return ctest_summary();
}
