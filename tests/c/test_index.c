/*
 * test_index.c - the index family's core API (core/index.c, mo_matmul_nd in core/matmul.c)
 * from C: 0-based indices (base 0), index tensors of the other dtype, the mo_index_error
 * report, nothing written on a refused entry, argument checks, torch.matmul shapes through
 * both the BLAS and the portable path. The Lua side (1-based, PyTorch goldens) is
 * tests/lua/test_index.lua.
 */
#include "ctest.h"
#include "moonopt.h"

#include <string.h>

/* A new contiguous tensor of dtype dt holding vals (numel of shape). */
static void make(mo_tensor *t, int ndim, const size_t *shape, mo_dtype dt, const double *vals)
{
    mo_tensor_init(t);
    CHECK_OK(mo_tensor_empty_dtype(t, ndim, shape, dt, NULL));
    for (size_t i = 0; i < t->numel; i++) {
        if (dt == MO_FLOAT64)
            mo_tensor_data_f64(t)[i] = vals[i];
        else
            mo_tensor_data(t)[i] = (float)vals[i];
    }
}

static double at(const mo_tensor *t, size_t i)
{
    return t->dtype == MO_FLOAT64 ? mo_tensor_data_f64(t)[i] : (double)mo_tensor_data(t)[i];
}

TEST(index_select_both_dtypes_and_mixed_index)
{
    const size_t s23[2] = {2, 3}, s2[1] = {2}, s22[2] = {2, 2};
    const double v[6] = {1, 2, 3, 4, 5, 6}, ix[2] = {2, 0};
    for (int d = 0; d < 2; d++) {
        const mo_dtype dt = d ? MO_FLOAT64 : MO_FLOAT32, it = d ? MO_FLOAT32 : MO_FLOAT64;
        mo_tensor src, idx, out;
        make(&src, 2, s23, dt, v);
        make(&idx, 1, s2, it, ix);
        mo_tensor_init(&out);
        CHECK_OK(mo_tensor_empty_dtype(&out, 2, s22, dt, NULL));
        mo_index_error err;
        CHECK_OK(mo_index_select(&out, &src, 1, &idx, 0.0, &err));
        CHECK(err.bad == MO_INDEX_OK);
        CHECK(at(&out, 0) == 3 && at(&out, 1) == 1 && at(&out, 2) == 6 && at(&out, 3) == 4);
        /* a wrong out shape, out overlapping src, a dim out of range */
        CHECK_STATUS(mo_index_select(&src, &src, 1, &idx, 0.0, &err), MO_ERR_SHAPE);
        CHECK_STATUS(mo_index_select(&out, &src, 2, &idx, 0.0, NULL), MO_ERR_RANGE);
        mo_tensor_release(&src);
        mo_tensor_release(&idx);
        mo_tensor_release(&out);
    }
}

TEST(refused_entries_are_reported_and_nothing_is_written)
{
    const size_t s23[2] = {2, 3}, s13[2] = {1, 3};
    const double v[6] = {1, 2, 3, 4, 5, 6}, ones[3] = {1, 1, 1};
    const double bad_range[3] = {0, 1, 2}, bad_frac[3] = {0, 0.5, 0};
    mo_tensor self, src, idx;
    make(&self, 2, s23, MO_FLOAT32, v);
    make(&src, 2, s13, MO_FLOAT32, ones);
    make(&idx, 2, s13, MO_FLOAT64, bad_range);
    mo_index_error err;
    CHECK_STATUS(mo_scatter_add(&self, 0, &idx, &src, 0.0, &err), MO_ERR_RANGE);
    CHECK(err.bad == MO_INDEX_OUT_OF_RANGE && err.pos == 2 && err.value == 2 && err.limit == 2);
    mo_tensor_release(&idx);
    make(&idx, 2, s13, MO_FLOAT32, bad_frac);
    CHECK_STATUS(mo_scatter_add(&self, 0, &idx, &src, 0.0, &err), MO_ERR_ARG);
    CHECK(err.bad == MO_INDEX_NOT_INTEGER && err.pos == 1 && err.value == 0.5);
    for (size_t i = 0; i < 6; i++) CHECK(at(&self, i) == v[i]);
    /* base 1: the same entries plus one are valid */
    const double one_based[3] = {1, 2, 2};
    mo_tensor_release(&idx);
    make(&idx, 2, s13, MO_FLOAT32, one_based);
    CHECK_OK(mo_scatter_add(&self, 0, &idx, &src, 1.0, &err));
    CHECK(at(&self, 0) == 2 && at(&self, 4) == 6 && at(&self, 5) == 7 && at(&self, 3) == 4);
    /* dtypes of self and src must agree (the index alone may differ) */
    mo_tensor src64;
    make(&src64, 2, s13, MO_FLOAT64, ones);
    CHECK_STATUS(mo_scatter_add(&self, 0, &idx, &src64, 1.0, &err), MO_ERR_DTYPE);
    mo_tensor_release(&src64);
    mo_tensor_release(&self);
    mo_tensor_release(&src);
    mo_tensor_release(&idx);
}

TEST(gather_strided_source)
{
    const size_t s23[2] = {2, 3}, s32[2] = {3, 2};
    const double v[6] = {1, 2, 3, 4, 5, 6}, ix[6] = {1, 0, 0, 1, 1, 1};
    mo_tensor base, src, idx, out;
    make(&base, 2, s23, MO_FLOAT64, v);
    mo_tensor_init(&src);
    CHECK_OK(mo_tensor_transpose(&src, &base, 0, 1)); /* {3, 2}: {{1, 4}, {2, 5}, {3, 6}} */
    make(&idx, 2, s32, MO_FLOAT32, ix);
    mo_tensor_init(&out);
    CHECK_OK(mo_tensor_empty_dtype(&out, 2, s32, MO_FLOAT64, NULL));
    CHECK_OK(mo_gather(&out, &src, 1, &idx, 0.0, NULL));
    const double want[6] = {4, 1, 2, 5, 6, 6};
    for (size_t i = 0; i < 6; i++) CHECK(at(&out, i) == want[i]);
    mo_tensor_release(&out);
    mo_tensor_release(&idx);
    mo_tensor_release(&src);
    mo_tensor_release(&base);
}

/* c = a @ b for torch.matmul shapes, both dtypes; every element compared with a loop. */
TEST(matmul_nd_shapes)
{
    const size_t s234[3] = {2, 3, 4}, s45[2] = {4, 5}, s4[1] = {4}, s145[3] = {1, 4, 5};
    double va[24], vb[20];
    for (int i = 0; i < 24; i++) va[i] = 0.25 * i - 2;
    for (int i = 0; i < 20; i++) vb[i] = 1.0 / (i + 1);
    for (int d = 0; d < 2; d++) {
        const mo_dtype dt = d ? MO_FLOAT64 : MO_FLOAT32;
        mo_tensor a, b, b1, v, c;
        make(&a, 3, s234, dt, va);
        make(&b, 2, s45, dt, vb);
        make(&b1, 3, s145, dt, vb);
        make(&v, 1, s4, dt, vb);
        int nd;
        size_t shape[3];
        const mo_tensor *rhs[2] = {&b, &b1};
        for (int r = 0; r < 2; r++) { /* {2,3,4} @ {4,5} and @ {1,4,5} */
            CHECK_OK(mo_matmul_shape(&a, rhs[r], &nd, shape));
            CHECK(nd == 3 && shape[0] == 2 && shape[1] == 3 && shape[2] == 5);
            mo_tensor_init(&c);
            CHECK_OK(mo_tensor_empty_dtype(&c, nd, shape, dt, NULL));
            CHECK_OK(mo_matmul_nd(&c, &a, rhs[r]));
            for (size_t i = 0; i < 6; i++)
                for (size_t j = 0; j < 5; j++) {
                    double s = 0;
                    for (size_t k = 0; k < 4; k++) s += va[i * 4 + k] * vb[k * 5 + j];
                    CHECK_NEAR(at(&c, i * 5 + j), s, d ? 1e-14 : 1e-6);
                }
            mo_tensor_release(&c);
        }
        /* {2,3,4} @ {4} -> {2,3}; {4} @ {4} -> 0-d; mismatches */
        CHECK_OK(mo_matmul_shape(&a, &v, &nd, shape));
        CHECK(nd == 2 && shape[0] == 2 && shape[1] == 3);
        CHECK_OK(mo_matmul_shape(&v, &v, &nd, shape));
        CHECK(nd == 0);
        mo_tensor_init(&c);
        CHECK_OK(mo_tensor_empty_dtype(&c, 0, NULL, dt, NULL));
        CHECK_OK(mo_matmul_nd(&c, &v, &v));
        CHECK_NEAR(at(&c, 0), 1 + 1.0 / 4 + 1.0 / 9 + 1.0 / 16, 1e-6);
        CHECK_STATUS(mo_matmul_nd(&c, &a, &v), MO_ERR_SHAPE); /* c has the wrong shape */
        mo_tensor_release(&c);
        CHECK_STATUS(mo_matmul_shape(&b, &a, &nd, shape), MO_ERR_SHAPE);
        mo_tensor_release(&a);
        mo_tensor_release(&b);
        mo_tensor_release(&b1);
        mo_tensor_release(&v);
    }
}

int main(void)
{
    RUN(index_select_both_dtypes_and_mixed_index);
    RUN(refused_entries_are_reported_and_nothing_is_written);
    RUN(gather_strided_source);
    RUN(matmul_nd_shapes);
    return ctest_summary();
}
