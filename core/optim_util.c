/*
 * optim_util.c - what every optimizer kernel shares: turning tensors into the
 * contiguous float arrays the raw kernels take (with a gather/scatter path for
 * strided tensors), hyperparameter domain checks, the CPU feature test, and
 * the gradient utilities (finiteness check, clipping, axpy).
 */
#include "optim_internal.h"
#include "threadpool.h"

#include <math.h>
#include <string.h>
#include <stdlib.h>

#ifdef MO__HAVE_AVX_DISPATCH
int mo__cpu_has_avx(void)
{
    /* libgcc/compiler-rt keep the CPU model (the test also checks that the OS saves YMM).
       Its constructor may not have run in a shared object loaded by dlopen (the Lua module),
       so initialise explicitly: idempotent and cheap after the first call. */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx");
}

int mo__cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}
#endif

int mo__simd_level(void)
{
    int level = MO__SIMD_SCALAR;
#ifdef MO__HAVE_AVX_DISPATCH
    /* cheap after the first call (a read of libgcc's CPU model); the AVX-512 test also checks
       that the OS saves the ZMM registers */
    if (mo__cpu_has_avx()) level = __builtin_cpu_supports("avx512f") ? MO__SIMD_AVX512 : MO__SIMD_AVX;
#endif
    return level;
}

int mo__is_finite(double x) { return isfinite(x); }
int mo__nonneg(double x) { return isfinite(x) && x >= 0.0; }
int mo__beta(double b) { return b >= 0.0 && b < 1.0; }
int mo__pos(double x) { return isfinite(x) && x > 0.0; }

int mo__adam_family_ok(double lr, double beta1, double beta2, double eps, double weight_decay)
{
    return mo__nonneg(lr) && mo__beta(beta1) && mo__beta(beta2) && mo__pos(eps) &&
           mo__nonneg(weight_decay);
}

/* ---- strided <-> contiguous ---- */

/*
 * Visit every element of t in row-major order: flat[k] = element k when
 * `gather`, element k = flat[k] otherwise; elements are `es` bytes (t's
 * dtype), flat is {numel} of them. An odometer over the dimensions; the
 * innermost dimension is a plain strided loop.
 */
static void strided_copy(const mo_tensor *t, void *flat_v, size_t es, int gather)
{
    unsigned char *base = mo_tensor_ptr(t), *flat = flat_v;
    if (t->numel == 0) return;
    if (t->ndim == 0) {
        if (gather) memcpy(flat, base, es);
        else memcpy(base, flat, es);
        return;
    }
    size_t idx[MO_MAX_DIMS] = {0};
    int last = t->ndim - 1;
    size_t inner = t->shape[last];
    ptrdiff_t istride = t->stride[last] * (ptrdiff_t)es;  /* in bytes */
    ptrdiff_t off = 0;  /* element offset of idx (with idx[last] = 0) from base */
    size_t k = 0;
    for (;;) {
        unsigned char *p = base + off * (ptrdiff_t)es;
        if (gather) {
            for (size_t j = 0; j < inner; j++) memcpy(flat + (k + j) * es, p + (ptrdiff_t)j * istride, es);
        } else {
            for (size_t j = 0; j < inner; j++) memcpy(p + (ptrdiff_t)j * istride, flat + (k + j) * es, es);
        }
        k += inner;
        int d = last - 1;
        while (d >= 0) {
            idx[d]++;
            off += t->stride[d];
            if (idx[d] < t->shape[d]) break;
            off -= (ptrdiff_t)idx[d] * t->stride[d];
            idx[d] = 0;
            d--;
        }
        if (d < 0) return;
    }
}

/* ---- the elementwise kernels on the pool ---- */

typedef struct par_job {
    size_t es;
    int count;
    void *const *ptr;
    mo__opt_body body;
    const void *ctx;
} par_job;

static void par_chunk(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const par_job *j = ctx;
    void *p[MO__OPT_MAX];
    (void)chunk;
    for (int i = 0; i < j->count; i++)
        p[i] = j->ptr[i] ? (unsigned char *)j->ptr[i] + lo * j->es : NULL;
    j->body(j->ctx, p, hi - lo, lo);
}

void mo__opt_parallel_arrays(mo_dtype dt, size_t n, int count, void *const *ptr,
                             mo__opt_body body, const void *ctx)
{
    par_job j = {mo_dtype_size(dt), count, ptr, body, ctx};
    /* the lean driver needs chunks of whole blocks */
    _Static_assert(MO__GRAIN_STREAM % MO_LEAN_BLOCK == 0, "chunks must hold whole lean blocks");
    mo__parallel_for(n, MO__GRAIN_STREAM, par_chunk, &j);
}

void mo__opt_parallel(const mo__opt_args *a, mo__opt_body body, const void *ctx)
{
    mo__opt_parallel_arrays(a->dtype, a->n, a->count, a->ptr, body, ctx);
}

mo_status mo__opt_begin(mo__opt_args *a, int count, const mo_tensor *const *ts)
{
    if (!a || !ts || count < 2 || count > MO__OPT_MAX || !ts[0] || !ts[1]) return MO_ERR_ARG;
    for (int i = 0; i < count; i++) {
        if (!ts[i]) continue;
        if (!mo_tensor_alive(ts[i])) return MO_ERR_FREED;
        if (i > 0 && !mo_tensor_same_shape(ts[i], ts[0])) return MO_ERR_SHAPE;
        /* one kernel instance per call: every operand in the parameter's dtype */
        if (ts[i]->dtype != ts[0]->dtype) return MO_ERR_DTYPE;
    }
    a->n = ts[0]->numel;
    a->count = count;
    a->dtype = ts[0]->dtype;
    const size_t es = mo_dtype_size(a->dtype);
    size_t bytes;
    MO_TRY(mo_size_mul(a->n ? a->n : 1, es, &bytes));
    for (int i = 0; i < count; i++) {
        a->ptr[i] = NULL;
        a->tmp[i] = NULL;
        a->src[i] = ts[i];
    }
    for (int i = 0; i < count; i++) {
        if (!ts[i]) continue;
        if (mo_tensor_is_contiguous(ts[i])) {
            a->ptr[i] = mo_tensor_ptr(ts[i]);
            continue;
        }
        void *tmp = malloc(bytes);
        if (!tmp) {
            mo__opt_finish(a, 0);
            return MO_ERR_NOMEM;
        }
        strided_copy(ts[i], tmp, es, 1);
        a->tmp[i] = tmp;
        a->ptr[i] = tmp;
    }
    return MO_OK;
}

void mo__opt_finish(mo__opt_args *a, int write_back)
{
    for (int i = 0; i < a->count; i++) {
        if (!a->tmp[i]) continue;
        /* index 1 is the gradient: read, never written */
        if (write_back && i != 1) strided_copy(a->src[i], a->tmp[i], mo_dtype_size(a->dtype), 0);
        free(a->tmp[i]);
        a->tmp[i] = NULL;
    }
}

/* ---- gradient utilities ---- */

mo_status mo_all_finite_array(const float *x, size_t n, int *all_finite)
{
    if ((!x && n) || !all_finite) return MO_ERR_ARG;
    /* x - x is 0 for finite x and NaN for NaN and +-inf; summing keeps any NaN, branch-free. */
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++) acc += x[i] - x[i];
    *all_finite = (acc == 0.0f);
    return MO_OK;
}

mo_status mo_all_finite(const mo_tensor *t, int *all_finite)
{
    if (!t || !all_finite) return MO_ERR_ARG;
    if (!mo_tensor_alive(t)) return MO_ERR_FREED;
    if (t->dtype == MO_FLOAT64) {
        /* as mo_all_finite_array: x - x is 0 for finite x, NaN otherwise */
        mo__iter it;
        mo__iter_init(&it, 1, &t);
        double acc = 0.0;
        for (size_t r = 0; r < it.rows; r++, mo__iter_next(&it)) {
            const double *x = it.p[0];
            for (size_t j = 0; j < it.n; j++) {
                const double v = x[(ptrdiff_t)j * it.inner[0]];
                acc += v - v;
            }
        }
        *all_finite = acc == 0.0;
        return MO_OK;
    }
    if (mo_tensor_is_contiguous(t)) return mo_all_finite_array(mo_tensor_data(t), t->numel, all_finite);
    mo__opt_args a;
    const mo_tensor *ts[2] = {t, t};
    MO_TRY(mo__opt_begin(&a, 2, ts));
    mo_status st = mo_all_finite_array(a.ptr[0], a.n, all_finite);
    mo__opt_finish(&a, 0);
    return st;
}

/* Sum of squares of one tensor in double. */
static mo_status sum_squares(const mo_tensor *t, double *out)
{
    if (t->dtype == MO_FLOAT64) return mo_dot(t, t, out);
    mo__opt_args a;
    const mo_tensor *ts[2] = {t, t};
    MO_TRY(mo__opt_begin(&a, 2, ts));
    double s = 0.0;
    const float *x = a.ptr[0];
    for (size_t i = 0; i < a.n; i++) s += (double)x[i] * (double)x[i];
    mo__opt_finish(&a, 0);
    *out = s;
    return MO_OK;
}

static mo_status scale_tensor(mo_tensor *t, double coef)
{
    if (t->dtype == MO_FLOAT64) return mo_binary_scalar(t, t, coef, MO_MUL);
    const float s = (float)coef;
    mo__opt_args a;
    const mo_tensor *ts[2] = {t, t};  /* entry 0 is written back; entry 1 only read */
    MO_TRY(mo__opt_begin(&a, 2, ts));
    float *x = a.ptr[0];
    for (size_t i = 0; i < a.n; i++) x[i] *= s;
    mo__opt_finish(&a, 1);
    return MO_OK;
}

mo_status mo_clip_grad_norm_ex(mo_tensor *const *ts, size_t n, double max_norm,
                               mo_clip_formula formula, int error_if_nonfinite,
                               double *total_norm)
{
    if ((!ts && n) || isnan(max_norm) || max_norm < 0.0) return MO_ERR_ARG;
    if (formula != MO_CLIP_PYTORCH && formula != MO_CLIP_GLOBAL) return MO_ERR_ARG;
    for (size_t i = 0; i < n; i++)
        if (ts[i] && !mo_tensor_alive(ts[i])) return MO_ERR_FREED;
    double sq = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!ts[i]) continue;
        double s;
        MO_TRY(sum_squares(ts[i], &s));
        sq += s;
    }
    double norm = sqrt(sq);
    if (total_norm) *total_norm = norm;
    if (!isfinite(norm) && error_if_nonfinite) return MO_ERR_ARG;
    double coef;
    if (formula == MO_CLIP_PYTORCH) {
        /* clamp(max_norm/(norm + 1e-6), max=1): a factor of exactly 1 changes nothing */
        coef = max_norm / (norm + 1e-6);
        if (coef >= 1.0) return MO_OK;
    } else {
        if (!isfinite(norm)) coef = NAN;   /* TF: "all set to NaN" */
        else if (norm <= max_norm) return MO_OK;
        else coef = max_norm / norm;
    }
    for (size_t i = 0; i < n; i++)
        if (ts[i]) MO_TRY(scale_tensor(ts[i], coef));
    return MO_OK;
}

mo_status mo_clip_grad_norm(mo_tensor *const *ts, size_t n, double max_norm, double *total_norm)
{
    return mo_clip_grad_norm_ex(ts, n, max_norm, MO_CLIP_PYTORCH, 0, total_norm);
}

mo_status mo_clip_grad_value(mo_tensor *t, double clip)
{
    if (!t || isnan(clip) || clip < 0.0) return MO_ERR_ARG;
    if (!mo_tensor_alive(t)) return MO_ERR_FREED;
    if (t->dtype == MO_FLOAT64) return mo_clamp(t, t, -clip, clip);
    mo__opt_args a;
    const mo_tensor *ts[2] = {t, t};  /* entry 0 is written back; entry 1 only read */
    MO_TRY(mo__opt_begin(&a, 2, ts));
    float hi = (float)clip, lo = -hi;
    float *x = a.ptr[0];
    for (size_t i = 0; i < a.n; i++) {
        float v = x[i];
        v = v > hi ? hi : v;
        x[i] = v < lo ? lo : v;
    }
    mo__opt_finish(&a, 1);
    return MO_OK;
}

mo_status mo_axpy(mo_tensor *y, double alpha, const mo_tensor *x)
{
    if (!y || !x || isnan(alpha)) return MO_ERR_ARG;
    if (y->dtype == MO_FLOAT64 && x->dtype == MO_FLOAT64 && mo_tensor_alive(y) &&
        mo_tensor_alive(x) && mo_tensor_same_shape(x, y)) {
        mo__iter it; /* y += alpha * x in double; x and y as the caller's shapes */
        const mo_tensor *ops[2] = {y, x};
        if (mo__overlaps(y, x) && !mo__same_layout(y, x)) return MO_ERR_ARG;
        mo__iter_init(&it, 2, ops);
        for (size_t r = 0; r < it.rows; r++, mo__iter_next(&it)) {
            double *yy = it.p[0];
            const double *xx = it.p[1];
            for (size_t j = 0; j < it.n; j++)
                yy[(ptrdiff_t)j * it.inner[0]] += alpha * xx[(ptrdiff_t)j * it.inner[1]];
        }
        return MO_OK;
    }
    mo__opt_args a;
    const mo_tensor *ts[2] = {y, x};
    MO_TRY(mo__opt_begin(&a, 2, ts));
    float al = (float)alpha;
    float *yy = a.ptr[0];
    const float *xx = a.ptr[1];
    for (size_t i = 0; i < a.n; i++) yy[i] = yy[i] + al * xx[i];
    mo__opt_finish(&a, 1);
    return MO_OK;
}

/* ---- the descriptor table ---- */

#define MO__OPTIMIZER_ENTRY(alg) &mo__optim_##alg,
static const mo_optim_desc *const optimizers[] = {MO__OPTIMIZERS(MO__OPTIMIZER_ENTRY)};

const mo_optim_desc *mo_optim_at(size_t i)
{
    return i < MO__COUNT(optimizers) ? optimizers[i] : NULL;
}

const mo_optim_desc *mo_optim_find(const char *name)
{
    if (name == NULL) return NULL;
    for (size_t i = 0; i < MO__COUNT(optimizers); i++)
        if (strcmp(optimizers[i]->name, name) == 0) return optimizers[i];
    return NULL;
}
