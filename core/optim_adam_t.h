/*
 * optim_adam_t.h - the element loops of the Adam family (Adam/AdamW with every switch,
 * Adamax, NAdam, RAdam) written once over the element type T (float or double);
 * optim_adam.c includes it once per dtype (docs/design.md "Two dtypes"). No include guard
 * on purpose; T and TN are #undef'd at the end. TN(adam_k) is the scalars struct of the
 * dtype (optim_adam.c: mo_adam_scalars for float, mo_adam_scalars64 for double).
 *
 * Configs are checked and step >= 1 before these run; each function rounds its per-step
 * scalars (computed in double) to T once, before its loop. Math goes through <tgmath.h>
 * (sqrt, fabs), so the float instance calls sqrtf/fabsf as the float-only code did.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including optim_adam_t.h"
#endif

/* Adam, elements [from, n) one at a time (the loop in optim_adam.c's comment). */
static void TN(adam_scalar)(const TN(adam_k) *k, T *w, const T *g, T *m, T *v, T *vmax,
                            size_t from, size_t n)
{
    for (size_t i = from; i < n; i++) {
        T gi = g[i], wi = w[i];
        if (k->pre) {
            gi = gi * k->scale;
            if (k->l2_pre) gi = gi + k->wd_l2 * wi;
            gi = k->clip < gi ? k->clip : gi;
            gi = -k->clip > gi ? -k->clip : gi;
        }
        if (k->l2) gi = gi + k->wd_l2 * wi;
        wi = wi * k->decay;
        T mi = m[i] * k->b1 + k->omb1 * gi;
        T vi = v[i] * k->b2 + (k->omb2 * gi) * gi;
        m[i] = mi;
        v[i] = vi;
        if (k->ams) {
            vi = vmax[i] > vi ? vmax[i] : vi;
            vmax[i] = vi;
        }
        T d = sqrt(vi) / k->bc2s + k->eps;
        if (k->dbc)
            wi = wi + k->neg_step * (mi / d + k->wd_bc * wi);
        else
            wi = wi + (k->neg_step * mi) / d;
        w[i] = wi;
    }
}

/* Adamax. w, g, m, u: {n}. */
static void TN(adamax_run)(T *w, const T *g, T *m, T *u, size_t n, const mo_adamax_config *c,
                           int64_t step)
{
    const int l2 = c->weight_decay != 0.0, neg = c->maximize != 0;
    const T wd = (T)c->weight_decay, eps = (T)c->eps;
    const T b1 = (T)c->beta1, omb1 = (T)(1.0 - c->beta1), b2 = (T)c->beta2;
    const T neg_clr = (T)-(c->lr / (1.0 - pow(c->beta1, (double)step)));
    for (size_t i = 0; i < n; i++) {
        T gi = neg ? -g[i] : g[i], wi = w[i];
        if (l2) gi = gi + wd * wi;
        T mi = m[i] * b1 + omb1 * gi;
        /* the infinity norm: u = max(b2*u, |g| + eps) (NaN from either side propagates) */
        T a = u[i] * b2, b = fabs(gi) + eps;
        T ui = (a > b || isnan(a)) ? a : b;
        m[i] = mi;
        u[i] = ui;
        w[i] = wi + (neg_clr * mi) / ui;
    }
}

/*
 * NAdam. w, g, m, v: {n}. *mu_product in/out (always written: the caller keeps the value
 * it wants on failure; nothing fails here). The product is kept in T, as PyTorch keeps it in
 * a tensor of the default dtype: float32 for float32 params, float64 under float64.
 */
static void TN(nadam_run)(T *w, const T *g, T *m, T *v, size_t n, const mo_nadam_config *c,
                          int64_t step, double *mu_product)
{
    double t = (double)step;
    double bc2 = 1.0 - pow(c->beta2, t);
    /* the momentum schedule mu_t and mu_{t+1} (Dozat; PyTorch's momentum_decay) */
    double mu = c->beta1 * (1.0 - 0.5 * pow(0.96, t * c->momentum_decay));
    double mu_next = c->beta1 * (1.0 - 0.5 * pow(0.96, (t + 1.0) * c->momentum_decay));
    /* the product is rounded to T at every step (the double factor rounded to T first, as a
       tensor times a scalar). mu_product_next = mu_product * mu_next as PyTorch >= 2.0 and
       1.13's foreach path (1.13's single-tensor path multiplied mu in twice). */
    T prod = (T)*mu_product * (T)mu;
    const T neg_c1 = (T)(-c->lr * (1.0 - mu) / (1.0 - (double)prod));
    const T neg_c2 = (T)(-c->lr * mu_next / (1.0 - (double)prod * mu_next));
    const int l2 = c->weight_decay != 0.0 && !c->decoupled_weight_decay, neg = c->maximize != 0;
    const T wd = (T)c->weight_decay;
    const T decay = c->decoupled_weight_decay ? (T)(1.0 - c->lr * c->weight_decay) : (T)1;
    const T b1 = (T)c->beta1, omb1 = (T)(1.0 - c->beta1);
    const T b2 = (T)c->beta2, omb2 = (T)(1.0 - c->beta2);
    const T sbc2 = (T)sqrt(bc2), eps = (T)c->eps;
    for (size_t i = 0; i < n; i++) {
        T gi = neg ? -g[i] : g[i], wi = w[i];
        if (l2) gi = gi + wd * wi;
        wi = wi * decay;
        T mi = m[i] * b1 + omb1 * gi;
        T vi = v[i] * b2 + (omb2 * gi) * gi;
        m[i] = mi;
        v[i] = vi;
        T d = sqrt(vi) / sbc2 + eps;
        wi = wi + (neg_c1 * gi) / d;
        w[i] = wi + (neg_c2 * mi) / d;
    }
    *mu_product = (double)prod;
}

/* RAdam. w, g, m, v: {n}. */
static void TN(radam_run)(T *w, const T *g, T *m, T *v, size_t n, const mo_radam_config *c,
                          int64_t step)
{
    double t = (double)step;
    double bc1 = 1.0 - pow(c->beta1, t);
    double bc2 = 1.0 - pow(c->beta2, t);
    /* the length of the approximated simple moving average, and its limit */
    double rho_inf = 2.0 / (1.0 - c->beta2) - 1.0;
    double rho_t = rho_inf - 2.0 * t * pow(c->beta2, t) / bc2;
    /* rectify only once the variance of the adaptive rate is tractable (rho_t > 5) */
    const int rectify = rho_t > 5.0;
    double rect = 0.0;
    if (rectify)
        rect = sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t));
    const int l2 = c->weight_decay != 0.0 && !c->decoupled_weight_decay, neg = c->maximize != 0;
    const T wd = (T)c->weight_decay;
    const T decay = c->decoupled_weight_decay ? (T)(1.0 - c->lr * c->weight_decay) : (T)1;
    const T b1 = (T)c->beta1, omb1 = (T)(1.0 - c->beta1);
    const T b2 = (T)c->beta2, omb2 = (T)(1.0 - c->beta2);
    const T fbc1 = (T)bc1, lr = (T)c->lr, eps = (T)c->eps;
    const T sbc2 = (T)sqrt(bc2), frect = (T)rect, minus_one = -1;
    for (size_t i = 0; i < n; i++) {
        T gi = neg ? -g[i] : g[i], wi = w[i];
        if (l2) gi = gi + wd * wi;
        wi = wi * decay;
        T mi = m[i] * b1 + omb1 * gi;
        T vi = v[i] * b2 + (omb2 * gi) * gi;
        m[i] = mi;
        v[i] = vi;
        T mhat = mi / fbc1;
        if (rectify) {
            T adaptive = sbc2 / (sqrt(vi) + eps);
            w[i] = wi + minus_one * (((mhat * lr) * adaptive) * frect);
        } else {
            w[i] = wi + minus_one * (mhat * lr);
        }
    }
}

#undef T
#undef TN
