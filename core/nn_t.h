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

/* The pass after the matrix product: y {rows, cols} in place, b {cols} or NULL. */
static void TN(bias_act_run)(T *y, const T *b, size_t rows, size_t cols, mo_nn_act act, T slope)
{
    /* Row by row, so the activation reads a row the bias loop has just left in L1. */
    for (size_t r = 0; r < rows; r++) {
        T *row = y + r * cols;
        if (b)
            NN_EACH(cols, row, row[i] + b[i]);
        if (act != MO_ACT_NONE) TN(act_forward_run)(row, row, cols, act, slope);
    }
}

/* acc[j] += sum_i g[i][j] with g's strides; the caller has checked everything. */
static void TN(colsum_run)(T *acc, const mo_tensor *g)
{
    const T *p = mo_tensor_ptr(g);
    size_t rows = g->shape[0], cols = g->shape[1];
    ptrdiff_t s0 = g->stride[0], s1 = g->stride[1];
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

/* Softmax of x {outer, n, inner} along n (n > 0) into y; y may be x. */
static void TN(softmax_fwd)(T *yp, const T *xp, size_t outer, size_t n, size_t inner)
{
    for (size_t o = 0; o < outer; o++) {
        for (size_t k = 0; k < inner; k++) {
            /* one line of n elements, `inner` apart */
            const T *xl = xp + o * n * inner + k;
            T *yl = yp + o * n * inner + k;
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
}

/* dx = y * (g - sum(g * y)) along n of {outer, n, inner}; dx may be g. */
static void TN(softmax_bwd)(T *dp, const T *gp, const T *yp, size_t outer, size_t n, size_t inner)
{
    for (size_t o = 0; o < outer; o++) {
        for (size_t k = 0; k < inner; k++) {
            size_t base = o * n * inner + k;
            double dot = 0.0;
            for (size_t i = 0; i < n; i++) dot += (double)gp[base + i * inner] * yp[base + i * inner];
            T fd = (T)dot;
            for (size_t i = 0; i < n; i++) {
                size_t j = base + i * inner;
                dp[j] = yp[j] * (gp[j] - fd);
            }
        }
    }
}

/* Layer norm of x {rows, d} (d > 0) into y; mean, rstd {rows}; gp, bp {d} or NULL. */
static void TN(ln_fwd)(T *yp, T *mp, T *rp, const T *xp, const T *gp, const T *bp, size_t rows,
                       size_t d, double eps)
{
    double inv_d = 1.0 / (double)d;
    for (size_t r = 0; r < rows; r++) {
        const T *xr = xp + r * d;
        T *yr = yp + r * d;
        /* two passes in double: no cancellation when the mean is large */
        double s = 0.0;
        for (size_t j = 0; j < d; j++) s += xr[j];
        double mu = s * inv_d;
        double v = 0.0;
        for (size_t j = 0; j < d; j++) {
            double c = xr[j] - mu;
            v += c * c;
        }
        T fmu = (T)mu;
        T fr = (T)(1.0 / sqrt(v * inv_d + eps));
        mp[r] = fmu;
        rp[r] = fr;
        if (gp && bp)
            for (size_t j = 0; j < d; j++) yr[j] = (xr[j] - fmu) * fr * gp[j] + bp[j];
        else if (gp)
            for (size_t j = 0; j < d; j++) yr[j] = (xr[j] - fmu) * fr * gp[j];
        else if (bp)
            for (size_t j = 0; j < d; j++) yr[j] = (xr[j] - fmu) * fr + bp[j];
        else
            for (size_t j = 0; j < d; j++) yr[j] = (xr[j] - fmu) * fr;
    }
}

/* Layer norm backward over rows of d; dgp, dbp += (NULL to skip); dxp may be gp. */
static void TN(ln_bwd)(T *dxp, T *dgp, T *dbp, const T *gp, const T *xp, const T *mp,
                       const T *rp, const T *wp, size_t rows, size_t d)
{
    double inv_d = 1.0 / (double)d;
    for (size_t r = 0; r < rows; r++) {
        const T *xr = xp + r * d, *gr = gp + r * d;
        T *dxr = dxp + r * d;
        T mu = mp[r], rs = rp[r];
        /* pass 1: the two row means, and the parameter gradients (reads g before dx may overwrite it) */
        double a = 0.0, b = 0.0;
        for (size_t j = 0; j < d; j++) {
            T xhat = (xr[j] - mu) * rs;
            T dxhat = wp ? gr[j] * wp[j] : gr[j];
            a += dxhat;
            b += (double)dxhat * xhat;
            if (dgp) dgp[j] += gr[j] * xhat;
            if (dbp) dbp[j] += gr[j];
        }
        T fa = (T)(a * inv_d), fb = (T)(b * inv_d);
        /* pass 2: dx */
        for (size_t j = 0; j < d; j++) {
            T xhat = (xr[j] - mu) * rs;
            T dxhat = wp ? gr[j] * wp[j] : gr[j];
            dxr[j] = rs * (dxhat - fa - xhat * fb);
        }
    }
}

static void TN(mul_run)(T *out, const T *a, const T *b, size_t n)
{
    NN_EACH(n, out, a[i] * b[i]);
}

/* The dropout mask {n}: 0 or 1 / (1 - p), from the generator; the same stream
 * (two 24-bit uniforms per draw) and so the same pattern for both dtypes. */
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

/* sum (o - t)^2 over n > 0 elements, times inv; grad (or NULL) = 2 inv (o - t). */
static double TN(mse_run)(T *gp, const T *o, const T *t, size_t n, double inv)
{
    double s = 0.0;
    if (gp) {
        T k = (T)(2.0 * inv);
        for (size_t i = 0; i < n; i++) {
            T d = o[i] - t[i];
            s += (double)d * d;
            gp[i] = k * d;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            T d = o[i] - t[i];
            s += (double)d * d;
        }
    }
    return s * inv;
}

/* BCE with logits over n > 0 elements, times inv; grad (or NULL) = inv (sigmoid(x) - y). */
static double TN(bce_run)(T *gp, const T *xp, const T *yp, size_t n, double inv)
{
    T k = (T)inv;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        T v = xp[i], y = yp[i];
        /* log(1 + exp(-|x|)) never overflows; max(x, 0) - x y carries the rest */
        T l = (v > (T)0 ? v : (T)0) - v * y + log1p(exp(-fabs(v)));
        s += l;
        if (gp) gp[i] = k * (TN(sigmoid)(v) - y);
    }
    return s * inv;
}

/* Cross entropy of logits {batch, nc} against the classes in target (checked,
 * `lo` the first one); returns the summed loss times inv; grad (or NULL) {batch, nc}. */
static double TN(ce_run)(T *gp, const T *xp, const mo_tensor *target, double lo, size_t batch,
                         size_t nc, double inv, double eps)
{
    double on = 1.0 - eps, off = eps / (double)nc;  /* weights of x[y] and of every x[c] */
    T ginv = (T)inv;
    T goff = (T)(off * inv), gon = (T)(on * inv);
    double total = 0.0;
    for (size_t i = 0; i < batch; i++) {
        const T *xr = xp + i * nc;
        size_t y = (size_t)(nn_target(target, i) - lo); /* a dtype branch per row, not per element */
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
            /* grad = (softmax - (1-e) onehot - e/C) / B */
            T *gr = gp + i * nc;
            T r = (T)(1.0 / s) * ginv;
            for (size_t c = 0; c < nc; c++) gr[c] = gr[c] * r - goff;
            gr[y] -= gon;
        }
    }
    return total * inv;
}

#undef T
#undef TN
