/*
 * nn_t.h - the loops of nn.c, written once over the element type T (float or
 * double) and included by nn.c once per dtype (docs/design.md "Two dtypes").
 * No include guard on purpose; T and TN are #undef'd at the end.
 *
 * The entries in nn.c check every operand (one dtype across a call, shapes,
 * layout, aliasing) and then call one of these on contiguous arrays. Math goes
 * through <tgmath.h> (included by nn.c), so the float instance is the
 * float32-only code that existed before: expf, tanhf, erff... and float
 * constants. Sums of many terms accumulate in double for both dtypes.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including nn_t.h"
#endif

static T TN(sigmoid)(T v)
{
    /* exp of a non-positive number only, so neither branch overflows */
    if (v >= (T)0) return (T)1 / ((T)1 + exp(-v));
    T e = exp(v);
    return e / ((T)1 + e);
}

/* y[i] = act(x[i]) for i < n; y may equal x. */
static void TN(act_forward_run)(T *y, const T *x, size_t n, mo_nn_act act, T slope)
{
    switch (act) {
    case MO_ACT_NONE:
        if (y != x) memcpy(y, x, n * sizeof *y);
        break;
    case MO_ACT_RELU:
        /* v < 0 rather than max(v, 0): NaN passes through, as in PyTorch */
        NN_EACH(n, y, x[i] < (T)0 ? (T)0 : x[i]);
        break;
    case MO_ACT_LEAKY_RELU:
        NN_EACH(n, y, x[i] < (T)0 ? slope * x[i] : x[i]);
        break;
    case MO_ACT_TANH:
        for (size_t i = 0; i < n; i++) y[i] = tanh(x[i]);
        break;
    case MO_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++) y[i] = TN(sigmoid)(x[i]);
        break;
    case MO_ACT_GELU:
        for (size_t i = 0; i < n; i++)
            y[i] = (T)0.5 * x[i] * ((T)1 + erf(x[i] * (T)NN_SQRT1_2));
        break;
    case MO_ACT_GELU_TANH:
        for (size_t i = 0; i < n; i++) {
            T v = x[i];
            T inner = (T)NN_SQRT_2_PI * (v + (T)NN_GELU_KAPPA * v * v * v);
            y[i] = (T)0.5 * v * ((T)1 + tanh(inner));
        }
        break;
    case MO_ACT_COUNT_:
        break;
    }
}

/* A chunk of act_forward_run over elements [lo, hi) of an nn_ew job (nn.c). */
static void TN(act_forward_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const nn_ew *j = ctx;
    (void)chunk;
    TN(act_forward_run)((T *)j->out + lo, (const T *)j->a + lo, hi - lo, j->act, (T)j->slope);
}

/* c ? a : b with both operands loaded first, so the compiler may use a
 * vector blend (it does not if-convert a load that only one branch makes). */
static inline T TN(pick)(int c, T a, T b)
{
    return c ? a : b;
}

/* dx[i] = g[i] * act'(s[i]) for i < n, s the output or the input (see moonopt_nn.h). */
static void TN(act_backward_run)(T *dx, const T *g, const T *s, size_t n, mo_nn_act act, T slope)
{
    switch (act) {
    case MO_ACT_NONE:
        if (dx != g) memcpy(dx, g, n * sizeof *dx);
        break;
    case MO_ACT_RELU:
        /* the derivative at 0 is taken as 0, as PyTorch does */
        NN_EACH(n, dx, TN(pick)(s[i] > (T)0, g[i], (T)0));
        break;
    case MO_ACT_LEAKY_RELU:
        NN_EACH(n, dx, TN(pick)(s[i] > (T)0, g[i], g[i] * slope));
        break;
    case MO_ACT_TANH:
        NN_EACH(n, dx, g[i] * ((T)1 - s[i] * s[i]));
        break;
    case MO_ACT_SIGMOID:
        NN_EACH(n, dx, g[i] * s[i] * ((T)1 - s[i]));
        break;
    case MO_ACT_GELU:
        for (size_t i = 0; i < n; i++) {
            T v = s[i];
            T cdf = (T)0.5 * ((T)1 + erf(v * (T)NN_SQRT1_2));
            T pdf = exp((T)-0.5 * v * v) * (T)NN_INV_SQRT_2PI;
            dx[i] = g[i] * (cdf + v * pdf);
        }
        break;
    case MO_ACT_GELU_TANH:
        for (size_t i = 0; i < n; i++) {
            T v = s[i];
            T t = tanh((T)NN_SQRT_2_PI * (v + (T)NN_GELU_KAPPA * v * v * v));
            T left = (T)0.5 * ((T)1 + t);
            T right = (T)0.5 * v * ((T)1 - t * t) * (T)NN_SQRT_2_PI *
                      ((T)1 + (T)3 * (T)NN_GELU_KAPPA * v * v);
            dx[i] = g[i] * (left + right);
        }
        break;
    case MO_ACT_COUNT_:
        break;
    }
}

/* A chunk of act_backward_run: out = dx, a = g, b = the saved tensor. */
static void TN(act_backward_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const nn_ew *j = ctx;
    (void)chunk;
    TN(act_backward_run)((T *)j->out + lo, (const T *)j->a + lo, (const T *)j->b + lo, hi - lo,
                         j->act, (T)j->slope);
}

/* The pass after the matrix product over rows [lo, hi) of y {rows, cols} in place (an nn_ew
 * job: out = y, b = the bias {cols} or NULL, n = cols). */
static void TN(bias_act_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const nn_ew *j = ctx;
    const size_t cols = j->n;
    const T *b = j->b;
    const T slope = (T)j->slope;
    const mo_nn_act act = j->act;
    (void)chunk;
    /* Row by row, so the activation reads a row the bias loop has just left in L1. */
    for (size_t r = lo; r < hi; r++) {
        T *row = (T *)j->out + r * cols;
        if (b)
            NN_EACH(cols, row, row[i] + b[i]);
        if (act != MO_ACT_NONE) TN(act_forward_run)(row, row, cols, act, slope);
    }
}

/* acc[j] += sum_i g[i][j] for the columns j in [lo, hi) (a colsum_job: g's strides, checked
 * by the caller). Every column is summed over the rows in row order, whoever runs it. */
static void TN(colsum_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const colsum_job *cj = ctx;
    const mo_tensor *g = cj->g;
    T *acc = (T *)cj->acc + lo;
    const T *p = (const T *)mo_tensor_ptr(g) + (ptrdiff_t)lo * g->stride[1];
    const size_t rows = g->shape[0], cols = hi - lo;
    const ptrdiff_t s0 = g->stride[0], s1 = g->stride[1];
    (void)chunk;
    if (s1 == 1) {
        /* row-major: a vectorizable inner loop over the columns */
        for (size_t r = 0; r < rows; r++) {
            const T *row = p + (ptrdiff_t)r * s0;
            NN_EACH(cols, acc, acc[i] + row[i]);
        }
    } else {
        for (size_t j = 0; j < cols; j++) {
            T s = (T)0;
            for (size_t i = 0; i < rows; i++) s += p[(ptrdiff_t)i * s0 + (ptrdiff_t)j * s1];
            acc[j] += s;
        }
    }
}

/* Softmax along n of the lines [lo, hi) of x {outer, n, inner} (n > 0; a softmax_job: out = y,
 * a = x, y may be x). Line l is (o, k) = (l / inner, l % inner): n elements `inner` apart. */
static void TN(softmax_fwd_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const softmax_job *j = ctx;
    const size_t n = j->n, inner = j->inner;
    (void)chunk;
    for (size_t l = lo; l < hi; l++) {
        const size_t base = (l / inner) * n * inner + l % inner;
        const T *xl = (const T *)j->a + base;
        T *yl = (T *)j->out + base;
        T m = xl[0];
        for (size_t i = 1; i < n; i++)
            if (xl[i * inner] > m) m = xl[i * inner];
        double s = 0.0;
        for (size_t i = 0; i < n; i++) {
            T e = exp(xl[i * inner] - m);
            yl[i * inner] = e;
            s += e;
        }
        T r = (T)(1.0 / s);
        for (size_t i = 0; i < n; i++) yl[i * inner] *= r;
    }
}

/* dx = y * (g - sum(g * y)) along n of the lines [lo, hi) (out = dx, a = g, b = y; dx may be g). */
static void TN(softmax_bwd_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const softmax_job *j = ctx;
    const size_t n = j->n, inner = j->inner;
    const T *gp = j->a, *yp = j->b;
    T *dp = j->out;
    (void)chunk;
    for (size_t l = lo; l < hi; l++) {
        const size_t base = (l / inner) * n * inner + l % inner;
        double dot = 0.0;
        for (size_t i = 0; i < n; i++) dot += (double)gp[base + i * inner] * yp[base + i * inner];
        T fd = (T)dot;
        for (size_t i = 0; i < n; i++) {
            size_t e = base + i * inner;
            dp[e] = yp[e] * (gp[e] - fd);
        }
    }
}

/* Layer norm of the rows [lo, hi) of x {rows, d} (d > 0) into y; mean, rstd {rows};
 * gamma, beta {d} or NULL (an ln_job). */
static void TN(ln_fwd_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const ln_job *j = ctx;
    const size_t d = j->d;
    const T *gp = j->gamma, *bp = j->beta;
    T *mp = j->mean, *rp = j->rstd;
    const double inv_d = 1.0 / (double)d, eps = j->eps;
    (void)chunk;
    for (size_t r = lo; r < hi; r++) {
        const T *xr = (const T *)j->x + r * d;
        T *yr = (T *)j->y + r * d;
        /* two passes in double: no cancellation when the mean is large */
        double s = 0.0;
        for (size_t k = 0; k < d; k++) s += xr[k];
        double mu = s * inv_d;
        double v = 0.0;
        for (size_t k = 0; k < d; k++) {
            double c = xr[k] - mu;
            v += c * c;
        }
        T fmu = (T)mu;
        T fr = (T)(1.0 / sqrt(v * inv_d + eps));
        mp[r] = fmu;
        rp[r] = fr;
        if (gp && bp)
            for (size_t k = 0; k < d; k++) yr[k] = (xr[k] - fmu) * fr * gp[k] + bp[k];
        else if (gp)
            for (size_t k = 0; k < d; k++) yr[k] = (xr[k] - fmu) * fr * gp[k];
        else if (bp)
            for (size_t k = 0; k < d; k++) yr[k] = (xr[k] - fmu) * fr + bp[k];
        else
            for (size_t k = 0; k < d; k++) yr[k] = (xr[k] - fmu) * fr;
    }
}

/* Layer norm backward, the parameter gradients of the columns [lo, hi): dgamma, dbeta (either
 * may be NULL) += over every row, in row order, g * xhat and g. Runs before ln_bwd_dx_chunk,
 * which may overwrite g (dx == g). */
static void TN(ln_bwd_param_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const ln_job *j = ctx;
    const size_t d = j->d;
    const T *xp = j->x, *gp = j->g, *mp = j->mean, *rp = j->rstd;
    T *dgp = j->dgamma, *dbp = j->dbeta;
    (void)chunk;
    for (size_t r = 0; r < j->rows; r++) {
        const T *xr = xp + r * d, *gr = gp + r * d;
        const T mu = mp[r], rs = rp[r];
        if (dgp && dbp) {
            for (size_t k = lo; k < hi; k++) {
                dgp[k] += gr[k] * ((xr[k] - mu) * rs);
                dbp[k] += gr[k];
            }
        } else if (dgp) {
            for (size_t k = lo; k < hi; k++) dgp[k] += gr[k] * ((xr[k] - mu) * rs);
        } else {
            for (size_t k = lo; k < hi; k++) dbp[k] += gr[k];
        }
    }
}

/* Layer norm backward, dx of the rows [lo, hi) (dx may be g; gamma may be NULL). With
 * j->fused (one thread, rows in order) the parameter gradients are added in the same pass,
 * row by row: ln_bwd_param_chunk's sums in the same order, without a second read of x, g. */
static void TN(ln_bwd_dx_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const ln_job *j = ctx;
    const size_t d = j->d;
    const T *wp = j->gamma;
    T *dgp = j->fused ? (T *)j->dgamma : NULL, *dbp = j->fused ? (T *)j->dbeta : NULL;
    const double inv_d = 1.0 / (double)d;
    (void)chunk;
    for (size_t r = lo; r < hi; r++) {
        const T *xr = (const T *)j->x + r * d, *gr = (const T *)j->g + r * d;
        T *dxr = (T *)j->y + r * d;
        const T mu = ((const T *)j->mean)[r], rs = ((const T *)j->rstd)[r];
        /* pass 1: the two row means (read g before dx may overwrite it) */
        double a = 0.0, b = 0.0;
        for (size_t k = 0; k < d; k++) {
            T xhat = (xr[k] - mu) * rs;
            T dxhat = wp ? gr[k] * wp[k] : gr[k];
            a += dxhat;
            b += (double)dxhat * xhat;
            if (dgp) dgp[k] += gr[k] * xhat;
            if (dbp) dbp[k] += gr[k];
        }
        T fa = (T)(a * inv_d), fb = (T)(b * inv_d);
        /* pass 2: dx */
        for (size_t k = 0; k < d; k++) {
            T xhat = (xr[k] - mu) * rs;
            T dxhat = wp ? gr[k] * wp[k] : gr[k];
            dxr[k] = rs * (dxhat - fa - xhat * fb);
        }
    }
}

/* out = a * b over the elements [lo, hi) of an nn_ew job (dropout's mask products). */
static void TN(mul_chunk)(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    const nn_ew *j = ctx;
    const T *a = (const T *)j->a + lo, *b = (const T *)j->b + lo;
    T *out = (T *)j->out + lo;
    (void)chunk;
    NN_EACH(hi - lo, out, a[i] * b[i]);
}

/* The dropout mask {n}: 0 or 1 / (1 - p), from the generator; the same stream
 * (two 24-bit uniforms per draw) and so the same pattern for both dtypes. Serial on
 * purpose: the generator is one stream, so the mask is the same at any thread count. */
static void TN(dropout_mask)(T *mp, size_t n, double p, mo_rng *rng)
{
    if (p == 0.0 || p == 1.0) {
        T keep = p == 0.0 ? (T)1 : (T)0;
        for (size_t i = 0; i < n; i++) mp[i] = keep;
        return;
    }
    T scale = (T)(1.0 / (1.0 - p));
    /* keep when the 24-bit uniform u satisfies u >= thr, i.e. with probability 1 - p */
    uint32_t thr = (uint32_t)ceil(p * 16777216.0);
    size_t i = 0;
    for (; i + 1 < n; i += 2) {
        uint64_t bits = mo_rng_next(rng);
        uint32_t u0 = (uint32_t)(bits >> 40);
        uint32_t u1 = (uint32_t)(bits >> 16) & 0xFFFFFFu;
        mp[i] = u0 >= thr ? scale : (T)0;
        mp[i + 1] = u1 >= thr ? scale : (T)0;
    }
    if (i < n) {
        uint32_t u0 = (uint32_t)(mo_rng_next(rng) >> 40);
        mp[i] = u0 >= thr ? scale : (T)0;
    }
}

/* sum (o - t)^2 over the elements [lo, hi) of a loss_job (out = o, a = t); grad (or NULL)
 * = k (o - t). The caller adds the chunks' sums in chunk order and scales by inv. */
static double TN(mse_part)(void *ctx, size_t lo, size_t hi)
{
    const loss_job *j = ctx;
    const T *o = j->a, *t = j->b;
    T *gp = j->grad;
    double s = 0.0;
    if (gp) {
        T k = (T)j->k;
        for (size_t i = lo; i < hi; i++) {
            T d = o[i] - t[i];
            s += (double)d * d;
            gp[i] = k * d;
        }
    } else {
        for (size_t i = lo; i < hi; i++) {
            T d = o[i] - t[i];
            s += (double)d * d;
        }
    }
    return s;
}

/* BCE with logits summed over the elements [lo, hi) (a = x, b = y); grad (or NULL)
 * = k (sigmoid(x) - y). */
static double TN(bce_part)(void *ctx, size_t lo, size_t hi)
{
    const loss_job *j = ctx;
    const T *xp = j->a, *yp = j->b;
    T *gp = j->grad;
    T k = (T)j->k;
    double s = 0.0;
    for (size_t i = lo; i < hi; i++) {
        T v = xp[i], y = yp[i];
        /* log(1 + exp(-|x|)) never overflows; max(x, 0) - x y carries the rest */
        T l = (v > (T)0 ? v : (T)0) - v * y + log1p(exp(-fabs(v)));
        s += l;
        if (gp) gp[i] = k * (TN(sigmoid)(v) - y);
    }
    return s;
}

/* Cross entropy of the rows [lo, hi) of logits {batch, nc} against the classes in target
 * (checked, `lo_class` the first one), summed (a ce_job); grad (or NULL) {batch, nc} gets
 * inv (softmax - (1-e) onehot - e/C). */
static double TN(ce_part)(void *ctx, size_t lo, size_t hi)
{
    const ce_job *j = ctx;
    const size_t nc = j->nc;
    const double eps = j->eps, inv = j->inv;
    const double on = 1.0 - eps, off = eps / (double)nc;  /* weights of x[y] and of every x[c] */
    const T ginv = (T)inv, goff = (T)(off * inv), gon = (T)(on * inv);
    T *gp = j->grad;
    double total = 0.0;
    for (size_t i = lo; i < hi; i++) {
        const T *xr = (const T *)j->logits + i * nc;
        /* a dtype branch per row, not per element */
        size_t y = (size_t)(nn_target(j->target, i) - j->lo_class);
        T m = xr[0];
        for (size_t c = 1; c < nc; c++)
            if (xr[c] > m) m = xr[c];
        /* exp(x - max) <= 1: finite for logits of any size; kept in grad for pass 2 */
        double s = 0.0, sx = 0.0;
        if (gp) {
            T *gr = gp + i * nc;
            for (size_t c = 0; c < nc; c++) {
                T e = exp(xr[c] - m);
                gr[c] = e;
                s += e;
            }
        } else {
            for (size_t c = 0; c < nc; c++) s += exp(xr[c] - m);
        }
        if (eps > 0.0)
            for (size_t c = 0; c < nc; c++) sx += xr[c];
        double lse = (double)m + log(s);
        total += lse - on * xr[y] - off * sx;
        if (gp) {
            T *gr = gp + i * nc;
            T r = (T)(1.0 / s) * ginv;
            for (size_t c = 0; c < nc; c++) gr[c] = gr[c] * r - goff;
            gr[y] -= gon;
        }
    }
    return total;
}

#undef T
#undef TN
