/*
 * test_optim.c - the optimizer kernels against independent float64
 * transcriptions of their formulas (a few steps each), hand-computed values,
 * the strided path against the contiguous one, and bad input.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ctest.h"
#include "moonopt.h"
#include "optim_internal.h"   /* mo__adam_run_level, mo__simd_level: run each vector path */

#define N 11 /* more than one 8-wide vector plus a tail */

static const float W0[N] = {0.5f, -1.25f, 2.0f, 0.0f, 3.5f, -0.75f, 1e-3f, -2.5f, 0.25f, 4.0f, -3.0f};

/* deterministic gradients for step t (1-based), element i; include tiny and zero values */
static float grad_at(int t, int i)
{
    static const float base[N] = {0.3f, -0.7f, 1.5f, 1e-8f, -2.0f, 0.0f, 0.05f, -0.4f, 2.5f, -1e-7f, 0.9f};
    return base[i] * (float)(1.0 + 0.25 * t) * ((t + i) % 3 == 0 ? -1.0f : 1.0f);
}

/* |a-b| <= tol*max(|b|, 1e-3) elementwise */
static int near_rel(const float *a, const double *b, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++) {
        double scale = fabs(b[i]) > 1e-3 ? fabs(b[i]) : 1e-3;
        if (!(fabs((double)a[i] - b[i]) <= tol * scale)) {
            printf("#   element %zu: got %.9g want %.9g\n", i, (double)a[i], b[i]);
            return 0;
        }
    }
    return 1;
}

/* ---- float64 reference for the Adam family (docs/design.md "The Adam family") ---- */

static void ref_adam(double *w, double *m, double *v, double *vmax, const mo_adam_config *c, int t,
                     const float *gs)
{
    double lr = c->lr / (1.0 + (t - 1) * c->lr_decay);
    double bc1 = c->bias_correction ? 1 - pow(c->beta1, t) : 1;
    double bc2 = c->bias_correction ? 1 - pow(c->beta2, t) : 1;
    for (int i = 0; i < N; i++) {
        double g = (double)gs[i] * c->rescale_grad;
        if (c->clip_gradient > 0) g = fmin(fmax(g, -c->clip_gradient), c->clip_gradient);
        if (c->maximize) g = -g;
        if (c->weight_decay_mode == MO_WD_L2) g += c->weight_decay * w[i];
        if (c->weight_decay_mode == MO_WD_DECOUPLED) w[i] *= 1 - lr * c->weight_decay;
        m[i] = c->beta1 * m[i] + (1 - c->beta1) * g;
        v[i] = c->beta2 * v[i] + (1 - c->beta2) * g * g;
        double vv = v[i];
        if (c->amsgrad) vv = vmax[i] = fmax(vmax[i], v[i]);
        double s, d;
        if (c->eps_mode == MO_EPS_RAW) {
            s = lr / bc1;
            d = sqrt(vv) / sqrt(bc2) + c->eps;
        } else {
            s = lr * sqrt(bc2) / bc1;
            d = sqrt(vv) + c->eps;
        }
        if (c->weight_decay_mode == MO_WD_DECOUPLED_BC)
            w[i] -= s * (m[i] / d + c->weight_decay * w[i]);
        else
            w[i] -= s * m[i] / d;
    }
}

static int run_adam_case(const mo_adam_config *c, int steps, double tol)
{
    float w[N], m[N] = {0}, v[N] = {0}, vmax[N] = {0}, g[N];
    double rw[N], rm[N] = {0}, rv[N] = {0}, rvmax[N] = {0};
    for (int i = 0; i < N; i++) rw[i] = w[i] = W0[i];
    for (int t = 1; t <= steps; t++) {
        for (int i = 0; i < N; i++) g[i] = grad_at(t, i);
        if (mo_adam_update(w, g, m, v, vmax, N, c, t) != MO_OK) return 0;
        ref_adam(rw, rm, rv, rvmax, c, t, g);
        if (!near_rel(w, rw, N, tol) || !near_rel(m, rm, N, tol)) {
            printf("#   at step %d\n", t);
            return 0;
        }
    }
    return 1;
}

TEST(adam_first_step_by_hand)
{
    /* step 1, PyTorch Adam: m = 0.1g, v = 0.001g^2, w -= lr*(m/0.1)/(sqrt(v/0.001)+eps) = lr*g/(|g|+eps) */
    mo_adam_config c;
    mo_adam_defaults(&c);
    float w[2] = {1.0f, -2.0f}, g[2] = {0.5f, -4.0f}, m[2] = {0}, v[2] = {0};
    CHECK_OK(mo_adam_update(w, g, m, v, NULL, 2, &c, 1));
    CHECK_NEAR(w[0], 1.0 - 1e-3 * 0.5 / (0.5 + 1e-8), 1e-7);
    CHECK_NEAR(w[1], -2.0 + 1e-3 * 4.0 / (4.0 + 1e-8), 1e-7);
    CHECK_NEAR(m[0], 0.05, 1e-8);
    CHECK_NEAR(v[1], 0.016, 1e-8);
    /* AdamW: w first shrinks by 1 - lr*wd = 0.99999 */
    mo_adamw_defaults(&c);
    float w2[1] = {1.0f}, g2[1] = {0.5f}, m2[1] = {0}, v2[1] = {0};
    CHECK_OK(mo_adam_update(w2, g2, m2, v2, NULL, 1, &c, 1));
    CHECK_NEAR(w2[0], 0.99999 - 1e-3 * 0.5 / (0.5 + 1e-8), 1e-7);
}

TEST(adam_every_switch_matches_reference)
{
    int cases = 0, ok = 0;
    for (int eps_mode = 0; eps_mode < 2; eps_mode++)
        for (int wd_mode = 0; wd_mode < 3; wd_mode++)
            for (int bc = 0; bc < 2; bc++)
                for (int ams = 0; ams < 2; ams++)
                    for (int pre = 0; pre < 3; pre++) {
                        mo_adam_config c;
                        mo_adam_defaults(&c);
                        c.lr = 0.01;
                        c.weight_decay = 0.05;
                        c.eps_mode = (mo_eps_mode)eps_mode;
                        c.weight_decay_mode = (mo_wd_mode)wd_mode;
                        c.bias_correction = bc;
                        c.amsgrad = ams;
                        if (pre == 1) {
                            c.rescale_grad = 0.5;
                            c.clip_gradient = 0.6;
                        } else if (pre == 2) {
                            c.maximize = 1;
                            c.lr_decay = 0.1;
                        }
                        cases++;
                        if (run_adam_case(&c, 6, 2e-5)) ok++;
                        else
                            printf("# eps_mode %d wd_mode %d bc %d ams %d pre %d\n", eps_mode, wd_mode,
                                   bc, ams, pre);
                    }
    CHECK(ok == cases);
}

TEST(adam_eps_placement_matters_for_tiny_grads)
{
    /* |g| ~ 1e-9: raw divides sqrt(v) by sqrt(bc2) before adding eps; hat does not */
    mo_adam_config raw, hat;
    mo_adam_defaults(&raw);
    mo_adam_defaults(&hat);
    hat.eps_mode = MO_EPS_HAT;
    float wr[1] = {0}, wh[1] = {0}, g[1] = {1e-9f}, mr[1] = {0}, vr[1] = {0}, mh[1] = {0}, vh[1] = {0};
    CHECK_OK(mo_adam_update(wr, g, mr, vr, NULL, 1, &raw, 1));
    CHECK_OK(mo_adam_update(wh, g, mh, vh, NULL, 1, &hat, 1));
    /* raw: lr * 1e-9/(1e-9 + 1e-8); hat: lr*sqrt(0.001)/0.1 * 1e-10/(sqrt(1e-21)+1e-8) */
    CHECK_NEAR(wr[0], -1e-3 * 1e-9 / (1e-9 + 1e-8), 1e-9);
    CHECK_NEAR(wh[0], -1e-3 * sqrt(1e-3) / 0.1 * 1e-10 / (sqrt(1e-21) + 1e-8), 1e-9);
    CHECK(fabs(wr[0] - wh[0]) > 1e-6);
}

TEST(adam_simd_and_scalar_paths_agree_bitwise)
{
    /* 19 elements at once (vector body + tail) against one element per call (scalar only) */
    mo_adam_config c;
    mo_adamw_defaults(&c);
    c.amsgrad = 1;
    c.rescale_grad = 2.0;
    c.clip_gradient = 1.0;
    float wa[19], wb[19], ma[19] = {0}, mb[19] = {0}, va[19] = {0}, vb[19] = {0};
    float xa[19] = {0}, xb[19] = {0}, g[19];
    for (int i = 0; i < 19; i++) wa[i] = wb[i] = 0.1f * (float)(i - 9);
    for (int t = 1; t <= 4; t++) {
        for (int i = 0; i < 19; i++) g[i] = (float)sin(0.7 * i + t) * 1.3f;
        CHECK_OK(mo_adam_update(wa, g, ma, va, xa, 19, &c, t));
        for (int i = 0; i < 19; i++)
            CHECK_OK(mo_adam_update(wb + i, g + i, mb + i, vb + i, xb + i, 1, &c, t));
    }
    CHECK(memcmp(wa, wb, sizeof wa) == 0);
    CHECK(memcmp(va, vb, sizeof va) == 0);
    CHECK(memcmp(xa, xb, sizeof xa) == 0);
}

TEST(adam_bad_input_writes_nothing)
{
    mo_adam_config c;
    mo_adam_defaults(&c);
    float w[2] = {1, 2}, g[2] = {1, 1}, m[2] = {0}, v[2] = {0};
    CHECK_STATUS(mo_adam_update(NULL, g, m, v, NULL, 2, &c, 1), MO_ERR_ARG);
    CHECK_STATUS(mo_adam_update(w, g, m, v, NULL, 2, &c, 0), MO_ERR_ARG);
    c.amsgrad = 1;
    CHECK_STATUS(mo_adam_update(w, g, m, v, NULL, 2, &c, 1), MO_ERR_ARG);
    mo_adam_defaults(&c);
    c.beta1 = 1.0;
    CHECK_STATUS(mo_adam_update(w, g, m, v, NULL, 2, &c, 1), MO_ERR_ARG);
    mo_adam_defaults(&c);
    c.eps = 0.0;
    CHECK_STATUS(mo_adam_check(&c), MO_ERR_ARG);
    mo_adam_defaults(&c);
    c.lr = -1;
    CHECK_STATUS(mo_adam_check(&c), MO_ERR_ARG);
    mo_adam_defaults(&c);
    c.lr = NAN;
    CHECK_STATUS(mo_adam_check(&c), MO_ERR_ARG);
    mo_adam_defaults(&c);
    c.weight_decay_mode = (mo_wd_mode)7;
    CHECK_STATUS(mo_adam_check(&c), MO_ERR_ARG);
    CHECK(w[0] == 1 && w[1] == 2 && m[0] == 0 && v[1] == 0);
}

/* ---- tensors: strided equals contiguous; shapes, NULL, freed ---- */

static void make(mo_tensor *t, size_t r, size_t c, const float *vals)
{
    size_t shape[2] = {r, c};
    mo_tensor_init(t);
    mo_tensor_empty(t, 2, shape, NULL);
    float *d = mo_tensor_data(t);
    for (size_t i = 0; i < r * c; i++) d[i] = vals ? vals[i] : 0.0f;
}

TEST(adam_step_strided_equals_contiguous)
{
    /* param = the transpose of a 3x4 buffer (a {4, 3} view, not contiguous) */
    float base[12], gv[12];
    for (int i = 0; i < 12; i++) {
        base[i] = 0.3f * (float)i - 1.0f;
        gv[i] = (float)cos(i) * 0.8f;
    }
    mo_tensor buf, wt, g, m, v, vmax;
    make(&buf, 3, 4, base);
    mo_tensor_init(&wt);
    CHECK_OK(mo_tensor_transpose(&wt, &buf, 0, 1));
    CHECK(!mo_tensor_is_contiguous(&wt));
    make(&g, 4, 3, gv);
    make(&m, 4, 3, NULL);
    make(&v, 4, 3, NULL);
    make(&vmax, 4, 3, NULL);
    /* the same numbers, contiguous: wc[i][j] = base[j][i] */
    float wc[12], mc[12] = {0}, vc[12] = {0}, xc[12] = {0};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) wc[i * 3 + j] = base[j * 4 + i];
    mo_adam_config c;
    mo_adamw_defaults(&c);
    c.amsgrad = 1;
    for (int t = 1; t <= 3; t++) {
        CHECK_OK(mo_adam_step(&wt, &g, &m, &v, &vmax, &c, t));
        CHECK_OK(mo_adam_update(wc, gv, mc, vc, xc, 12, &c, t));
    }
    const float *bd = mo_tensor_data(&buf);
    int same = 1;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) same &= bd[j * 4 + i] == wc[i * 3 + j];
    CHECK(same);
    CHECK(memcmp(mo_tensor_data(&v), vc, sizeof vc) == 0);
    mo_tensor_release(&wt);
    mo_tensor_release(&buf);
    mo_tensor_release(&g);
    mo_tensor_release(&m);
    mo_tensor_release(&v);
    mo_tensor_release(&vmax);
}

TEST(step_bad_tensors_write_nothing)
{
    float wv[6] = {1, 2, 3, 4, 5, 6}, gv[6] = {1, 1, 1, 1, 1, 1};
    mo_tensor w, g, m, v, bad;
    make(&w, 2, 3, wv);
    make(&g, 2, 3, gv);
    make(&m, 2, 3, NULL);
    make(&v, 2, 3, NULL);
    make(&bad, 3, 2, NULL);
    mo_adam_config c;
    mo_adam_defaults(&c);
    CHECK_STATUS(mo_adam_step(&w, &bad, &m, &v, NULL, &c, 1), MO_ERR_SHAPE);
    CHECK_STATUS(mo_adam_step(&w, &g, &m, &bad, NULL, &c, 1), MO_ERR_SHAPE);
    CHECK_STATUS(mo_adam_step(&w, &g, NULL, &v, NULL, &c, 1), MO_ERR_ARG);
    CHECK_STATUS(mo_adam_step(NULL, &g, &m, &v, NULL, &c, 1), MO_ERR_ARG);
    mo_sgd_config sc;
    mo_sgd_defaults(&sc);
    sc.momentum = 0.9;
    CHECK_STATUS(mo_sgd_step(&w, &g, NULL, &sc, 1), MO_ERR_ARG);
    CHECK_STATUS(mo_sgd_step(&w, &bad, &m, &sc, 1), MO_ERR_SHAPE);
    mo_tensor_release(&v);
    CHECK_STATUS(mo_adam_step(&w, &g, &m, &v, NULL, &c, 1), MO_ERR_FREED); /* released: empty */
    make(&v, 2, 3, NULL);
    mo_tensor_revoke(&g);
    CHECK_STATUS(mo_adam_step(&w, &g, &m, &v, NULL, &c, 1), MO_ERR_FREED);
    mo_tensor_revoke(&m);
    mo_lion_config lc;
    mo_lion_defaults(&lc);
    mo_tensor_release(&g);
    make(&g, 2, 3, gv);  /* a fresh gradient; m is revoked */
    CHECK_STATUS(mo_lion_step(&w, &g, &m, &lc), MO_ERR_FREED);
    const float *d = mo_tensor_data(&w);
    CHECK(memcmp(d, wv, sizeof wv) == 0);
    const float *dv = mo_tensor_data(&v);
    CHECK(dv[0] == 0 && dv[5] == 0);
    mo_tensor_release(&w);
    mo_tensor_release(&g);
    mo_tensor_release(&m);
    mo_tensor_release(&v);
    mo_tensor_release(&bad);
}

/* ---- SGD ---- */

TEST(sgd_by_hand)
{
    /* w = 1, g = 0.5 each step, lr 0.1, momentum 0.9, dampening 0.5, wd 0.1 */
    mo_sgd_config c;
    mo_sgd_defaults(&c);
    c.lr = 0.1;
    c.momentum = 0.9;
    c.dampening = 0.5;
    c.weight_decay = 0.1;
    float w[1] = {1.0f}, g[1] = {0.5f}, b[1] = {0};
    /* step 1: d = 0.5 + 0.1*1 = 0.6; buf = 0.6 (not damped); w = 1 - 0.06 = 0.94 */
    CHECK_OK(mo_sgd_update(w, g, b, 1, &c, 1));
    CHECK_NEAR(b[0], 0.6, 1e-7);
    CHECK_NEAR(w[0], 0.94, 1e-7);
    /* step 2: d = 0.5 + 0.094 = 0.594; buf = 0.54 + 0.5*0.594 = 0.837; w = 0.94 - 0.0837 */
    CHECK_OK(mo_sgd_update(w, g, b, 1, &c, 0));
    CHECK_NEAR(b[0], 0.837, 1e-6);
    CHECK_NEAR(w[0], 0.8563, 1e-6);
    /* nesterov: step 1 d = g + mu*buf = 0.5 + 0.9*0.5 = 0.95 */
    mo_sgd_defaults(&c);
    c.lr = 0.1;
    c.momentum = 0.9;
    c.nesterov = 1;
    float w2[1] = {1.0f}, b2[1] = {0};
    CHECK_OK(mo_sgd_update(w2, g, b2, 1, &c, 1));
    CHECK_NEAR(w2[0], 0.905, 1e-7);
    /* maximize, no momentum: w += lr*g */
    mo_sgd_defaults(&c);
    c.lr = 0.1;
    c.maximize = 1;
    float w3[1] = {1.0f};
    CHECK_OK(mo_sgd_update(w3, g, NULL, 1, &c, 1));
    CHECK_NEAR(w3[0], 1.05, 1e-7);
    /* nesterov with dampening is refused */
    c.maximize = 0;
    c.momentum = 0.9;
    c.nesterov = 1;
    c.dampening = 0.1;
    CHECK_STATUS(mo_sgd_check(&c), MO_ERR_ARG);
    c.dampening = 0;
    c.momentum = -0.1;
    CHECK_STATUS(mo_sgd_check(&c), MO_ERR_ARG);
}

/* ---- Adamax, NAdam, RAdam ---- */

TEST(adamax_matches_reference)
{
    mo_adamax_config c;
    mo_adamax_defaults(&c);
    c.weight_decay = 0.1;
    float w[N], m[N] = {0}, u[N] = {0}, g[N];
    double rw[N], rm[N] = {0}, ru[N] = {0};
    for (int i = 0; i < N; i++) rw[i] = w[i] = W0[i];
    int ok = 1;
    for (int t = 1; t <= 5; t++) {
        for (int i = 0; i < N; i++) {
            g[i] = grad_at(t, i);
            double gi = g[i] + 0.1 * rw[i];
            rm[i] = 0.9 * rm[i] + 0.1 * gi;
            ru[i] = fmax(0.999 * ru[i], fabs(gi) + 1e-8);
            rw[i] -= 2e-3 / (1 - pow(0.9, t)) * rm[i] / ru[i];
        }
        CHECK_OK(mo_adamax_update(w, g, m, u, N, &c, t));
        ok &= near_rel(w, rw, N, 1e-5);
    }
    CHECK(ok);
}

TEST(nadam_matches_reference)
{
    for (int dec = 0; dec < 2; dec++) {
        mo_nadam_config c;
        mo_nadam_defaults(&c);
        c.weight_decay = 0.05;
        c.decoupled_weight_decay = dec;
        float w[N], m[N] = {0}, v[N] = {0}, g[N];
        double rw[N], rm[N] = {0}, rv[N] = {0}, prod = 1.0, rprod = 1.0;
        for (int i = 0; i < N; i++) rw[i] = w[i] = W0[i];
        int ok = 1;
        for (int t = 1; t <= 5; t++) {
            double mu = 0.9 * (1 - 0.5 * pow(0.96, t * 4e-3));
            double mu_next = 0.9 * (1 - 0.5 * pow(0.96, (t + 1) * 4e-3));
            rprod *= mu;
            double rprod_next = rprod * mu_next;
            for (int i = 0; i < N; i++) {
                g[i] = grad_at(t, i);
                double gi = g[i];
                if (dec) rw[i] *= 1 - 2e-3 * 0.05;
                else gi += 0.05 * rw[i];
                rm[i] = 0.9 * rm[i] + 0.1 * gi;
                rv[i] = 0.999 * rv[i] + 0.001 * gi * gi;
                double d = sqrt(rv[i] / (1 - pow(0.999, t))) + 1e-8;
                rw[i] -= 2e-3 * (1 - mu) / (1 - rprod) * gi / d;
                rw[i] -= 2e-3 * mu_next / (1 - rprod_next) * rm[i] / d;
            }
            CHECK_OK(mo_nadam_update(w, g, m, v, N, &c, t, &prod));
            ok &= near_rel(w, rw, N, 2e-5);
        }
        CHECK(ok);
        CHECK_NEAR(prod, rprod, 1e-6);
    }
}

TEST(radam_matches_reference_both_branches)
{
    mo_radam_config c;
    mo_radam_defaults(&c);
    c.lr = 0.01;
    c.weight_decay = 0.05;
    float w[N], m[N] = {0}, v[N] = {0}, g[N];
    double rw[N], rm[N] = {0}, rv[N] = {0};
    for (int i = 0; i < N; i++) rw[i] = w[i] = W0[i];
    int ok = 1, rectified = 0;
    for (int t = 1; t <= 8; t++) { /* rho_t passes 5 at t = 6 for beta2 = 0.999 */
        double bc1 = 1 - pow(0.9, t), bc2 = 1 - pow(0.999, t);
        double rho_inf = 2 / (1 - 0.999) - 1, rho = rho_inf - 2 * t * pow(0.999, t) / bc2;
        for (int i = 0; i < N; i++) {
            g[i] = grad_at(t, i);
            double gi = g[i] + 0.05 * rw[i];
            rm[i] = 0.9 * rm[i] + 0.1 * gi;
            rv[i] = 0.999 * rv[i] + 0.001 * gi * gi;
            if (rho > 5) {
                double r = sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho));
                rw[i] -= 0.01 * rm[i] / bc1 * r * sqrt(bc2) / (sqrt(rv[i]) + 1e-8);
            } else {
                rw[i] -= 0.01 * rm[i] / bc1;
            }
        }
        rectified += rho > 5;
        CHECK_OK(mo_radam_update(w, g, m, v, N, &c, t));
        ok &= near_rel(w, rw, N, 2e-5);
    }
    CHECK(ok);
    CHECK(rectified > 0 && rectified < 8);
}

/* ---- RMSprop, Adagrad, Adadelta ---- */

TEST(rmsprop_matches_reference)
{
    for (int variant = 0; variant < 4; variant++) {
        mo_rmsprop_config c;
        mo_rmsprop_defaults(&c);
        c.centered = variant & 1;
        c.momentum = (variant & 2) ? 0.9 : 0.0;
        c.weight_decay = 0.01;
        float w[N], sq[N] = {0}, ga[N] = {0}, buf[N] = {0}, g[N];
        double rw[N], rsq[N] = {0}, rga[N] = {0}, rb[N] = {0};
        for (int i = 0; i < N; i++) rw[i] = w[i] = W0[i];
        int ok = 1;
        for (int t = 1; t <= 5; t++) {
            for (int i = 0; i < N; i++) {
                g[i] = grad_at(t, i);
                double gi = g[i] + 0.01 * rw[i];
                rsq[i] = 0.99 * rsq[i] + 0.01 * gi * gi;
                double avg;
                if (c.centered) {
                    rga[i] = 0.99 * rga[i] + 0.01 * gi;
                    avg = sqrt(rsq[i] - rga[i] * rga[i]) + 1e-8;
                } else {
                    avg = sqrt(rsq[i]) + 1e-8;
                }
                if (c.momentum > 0) {
                    rb[i] = 0.9 * rb[i] + gi / avg;
                    rw[i] -= 0.01 * rb[i];
                } else {
                    rw[i] -= 0.01 * gi / avg;
                }
            }
            CHECK_OK(mo_rmsprop_update(w, g, sq, ga, buf, N, &c));
            ok &= near_rel(w, rw, N, 2e-5);
        }
        CHECK(ok);
    }
}

TEST(adagrad_and_adadelta_match_reference)
{
    mo_adagrad_config ac;
    mo_adagrad_defaults(&ac);
    ac.lr_decay = 0.1;
    ac.weight_decay = 0.02;
    ac.initial_accumulator_value = 0.1;
    mo_adadelta_config dc;
    mo_adadelta_defaults(&dc);
    dc.weight_decay = 0.02;
    float w[N], s[N], w2[N], sq[N] = {0}, acc[N] = {0}, g[N];
    double rw[N], rs[N], rw2[N], rsq[N] = {0}, racc[N] = {0};
    for (int i = 0; i < N; i++) {
        rw[i] = w[i] = rw2[i] = w2[i] = W0[i];
        rs[i] = s[i] = 0.1f;
    }
    int ok = 1;
    for (int t = 1; t <= 5; t++) {
        double clr = 1e-2 / (1 + (t - 1) * 0.1);
        for (int i = 0; i < N; i++) {
            g[i] = grad_at(t, i);
            double gi = g[i] + 0.02 * rw[i];
            rs[i] += gi * gi;
            rw[i] -= clr * gi / (sqrt(rs[i]) + 1e-10);
            double gd = g[i] + 0.02 * rw2[i];
            rsq[i] = 0.9 * rsq[i] + 0.1 * gd * gd;
            double delta = sqrt(racc[i] + 1e-6) / sqrt(rsq[i] + 1e-6) * gd;
            racc[i] = 0.9 * racc[i] + 0.1 * delta * delta;
            rw2[i] -= delta;
        }
        CHECK_OK(mo_adagrad_update(w, g, s, N, &ac, t));
        CHECK_OK(mo_adadelta_update(w2, g, sq, acc, N, &dc));
        ok &= near_rel(w, rw, N, 2e-5) && near_rel(w2, rw2, N, 2e-5);
    }
    CHECK(ok);
}

/* ---- Lion, LAMB ---- */

TEST(lion_by_hand)
{
    mo_lion_config c;
    mo_lion_defaults(&c);
    c.lr = 0.1;
    c.weight_decay = 0.5;
    float w[3] = {1.0f, 1.0f, 1.0f}, g[3] = {0.5f, -0.5f, 0.0f}, m[3] = {0.0f, 0.0f, 0.0f};
    /* update = sign(0.1*g); w = w*(1 - 0.05) - 0.1*sign; m = 0.01*g */
    CHECK_OK(mo_lion_update(w, g, m, 3, &c));
    CHECK_NEAR(w[0], 0.85, 1e-7);
    CHECK_NEAR(w[1], 1.05, 1e-7);
    CHECK_NEAR(w[2], 0.95, 1e-7);
    CHECK_NEAR(m[0], 0.005, 1e-8);
    /* second step: interpolation 0.9*m + 0.1*g decides the sign, m was 0.005 and g now -0.01 */
    float g2[3] = {-0.01f, 0.0f, 0.0f};
    CHECK_OK(mo_lion_update(w, g2, m, 3, &c));
    CHECK_NEAR(w[0], 0.85 * 0.95 - 0.1, 1e-6); /* 0.0045 - 0.001 > 0 */
}

TEST(lamb_matches_reference)
{
    mo_lamb_config c;
    mo_lamb_defaults(&c);
    c.lr = 0.01;
    c.weight_decay = 0.1;
    float w[N], m[N] = {0}, v[N] = {0}, g[N];
    double rw[N], rm[N] = {0}, rv[N] = {0}, r[N];
    for (int i = 0; i < N; i++) rw[i] = w[i] = W0[i];
    int ok = 1;
    double ratio = 0;
    for (int t = 1; t <= 4; t++) {
        double wn = 0, rn = 0;
        for (int i = 0; i < N; i++) {
            g[i] = grad_at(t, i);
            rm[i] = 0.9 * rm[i] + 0.1 * g[i];
            rv[i] = 0.999 * rv[i] + 0.001 * (double)g[i] * g[i];
            double mh = rm[i] / (1 - pow(0.9, t)), vh = rv[i] / (1 - pow(0.999, t));
            r[i] = mh / (sqrt(vh) + 1e-6) + 0.1 * rw[i];
            wn += rw[i] * rw[i];
            rn += r[i] * r[i];
        }
        double tr = sqrt(wn) / sqrt(rn);
        for (int i = 0; i < N; i++) rw[i] -= 0.01 * tr * r[i];
        CHECK_OK(mo_lamb_update(w, g, m, v, N, &c, t, &ratio));
        CHECK_NEAR(ratio, tr, 1e-5);
        ok &= near_rel(w, rw, N, 2e-5);
    }
    CHECK(ok);
    /* a zero tensor has ||w|| = 0: ratio 1 */
    float z[2] = {0, 0}, gz[2] = {1, -1}, mz[2] = {0}, vz[2] = {0};
    mo_lamb_defaults(&c);
    CHECK_OK(mo_lamb_update(z, gz, mz, vz, 2, &c, 1, &ratio));
    CHECK(ratio == 1.0);
    CHECK_NEAR(z[0], -1e-3 / (1 + 1e-6), 1e-7);
}

/* ---- utilities ---- */

TEST(all_finite_and_clipping)
{
    float x[5] = {1, -2, 3, 0, 5};
    int fin = 0;
    CHECK_OK(mo_all_finite_array(x, 5, &fin));
    CHECK(fin == 1);
    x[3] = NAN;
    CHECK_OK(mo_all_finite_array(x, 5, &fin));
    CHECK(fin == 0);
    x[3] = -INFINITY;
    CHECK_OK(mo_all_finite_array(x, 5, &fin));
    CHECK(fin == 0);
    CHECK_OK(mo_all_finite_array(NULL, 0, &fin));
    CHECK(fin == 1);

    /* two tensors with global norm 5 (3-4-0 and 0) clipped to 1 */
    float av[6] = {3, 0, 0, 0, 0, 0}, bv[6] = {0, 4, 0, 0, 0, 0};
    mo_tensor a, b, t;
    make(&a, 2, 3, av);
    make(&b, 2, 3, bv);
    mo_tensor *ts[3] = {&a, NULL, &b};
    double norm = 0;
    CHECK_OK(mo_clip_grad_norm(ts, 3, 10.0, &norm));
    CHECK_NEAR(norm, 5.0, 1e-12);
    CHECK(mo_tensor_data(&a)[0] == 3.0f); /* below max_norm: unchanged */
    CHECK_OK(mo_clip_grad_norm(ts, 3, 1.0, &norm));
    CHECK_NEAR(mo_tensor_data(&a)[0], 3.0 / (5.0 + 1e-6), 1e-7);
    CHECK_NEAR(mo_tensor_data(&b)[1], 4.0 / (5.0 + 1e-6), 1e-7);
    CHECK_STATUS(mo_clip_grad_norm(ts, 3, -1.0, &norm), MO_ERR_ARG);

    /* clip by value on a transposed (strided) view */
    float cv[6] = {-3, 0.5f, 2, NAN, -0.25f, 9};
    mo_tensor_release(&b);
    make(&b, 2, 3, cv);
    mo_tensor_init(&t);
    CHECK_OK(mo_tensor_transpose(&t, &b, 0, 1));
    CHECK_OK(mo_all_finite(&t, &fin));
    CHECK(fin == 0);
    CHECK_OK(mo_clip_grad_value(&t, 1.0));
    const float *d = mo_tensor_data(&b);
    CHECK(d[0] == -1.0f && d[1] == 0.5f && d[2] == 1.0f && isnan(d[3]) && d[4] == -0.25f && d[5] == 1.0f);
    CHECK_STATUS(mo_clip_grad_value(&t, -1.0), MO_ERR_ARG);

    /* axpy */
    CHECK_OK(mo_axpy(&a, 2.0, &a));
    CHECK_NEAR(mo_tensor_data(&a)[0], 3 * 3.0 / (5.0 + 1e-6), 1e-6);
    CHECK_STATUS(mo_axpy(&a, 1.0, &t), MO_ERR_SHAPE);
    mo_tensor_release(&t);
    mo_tensor_release(&a);
    mo_tensor_release(&b);
}

/* ---- the MXNet switches: clip_weight_decay (MXNet <= 1.9.1), skip_nonfinite_rescale ---- */

TEST(adam_clip_weight_decay_clips_the_sum)
{
    /* one element, hat eps, one step: MXNet 1.x g = clip(rs*g + wd*w), 2.x clip(rs*g) + wd*w.
       w 2, g 0.1, rs 0.5, wd 0.5, clip 0.3: 1.x clip(0.05 + 1) = 0.3; 2.x 0.05 + 1 = 1.05.
       The first hat step is w - lr * g/(|g| + eps) whatever g is, so look at m and v. */
    mo_adam_config c;
    mo_adam_defaults(&c);
    c.eps_mode = MO_EPS_HAT;
    c.rescale_grad = 0.5;
    c.weight_decay = 0.5;
    c.clip_gradient = 0.3;
    float w1 = 2, g = 0.1f, m1 = 0, v1 = 0, w2 = 2, m2 = 0, v2 = 0;
    c.clip_weight_decay = 1;
    CHECK_OK(mo_adam_update(&w1, &g, &m1, &v1, NULL, 1, &c, 1));
    c.clip_weight_decay = 0;
    CHECK_OK(mo_adam_update(&w2, &g, &m2, &v2, NULL, 1, &c, 1));
    CHECK_NEAR(m1, 0.1 * 0.3, 1e-7);
    CHECK_NEAR(v1, 0.001 * 0.09, 1e-9);
    CHECK_NEAR(m2, 0.1 * 1.05, 1e-7);
    CHECK_NEAR(v2, 0.001 * 1.05 * 1.05, 1e-9);
    /* without clipping the two orders are the same operations: bit-identical */
    c.clip_gradient = -1;
    float wa = 2, ma = 0, va = 0, wb = 2, mb = 0, vb = 0;
    c.clip_weight_decay = 1;
    CHECK_OK(mo_adam_update(&wa, &g, &ma, &va, NULL, 1, &c, 1));
    c.clip_weight_decay = 0;
    CHECK_OK(mo_adam_update(&wb, &g, &mb, &vb, NULL, 1, &c, 1));
    CHECK(wa == wb && ma == mb && va == vb);
}

TEST(adam_mxnet_switches_simd_and_scalar_agree_bitwise)
{
    /* clip_weight_decay with L2, and the skip switch armed but not firing, through the vector
       body + tail at once and one element per call */
    mo_adam_config c;
    mo_adam_defaults(&c);
    c.eps_mode = MO_EPS_HAT;
    c.weight_decay = 0.7;
    c.rescale_grad = 0.5;
    c.clip_gradient = 0.6;
    c.clip_weight_decay = 1;
    c.skip_nonfinite_rescale = 1;
    c.maximize = 1;
    float wa[19], wb[19], ma[19] = {0}, mb[19] = {0}, va[19] = {0}, vb[19] = {0}, g[19];
    for (int i = 0; i < 19; i++) wa[i] = wb[i] = 0.15f * (float)(i - 9);
    for (int t = 1; t <= 4; t++) {
        for (int i = 0; i < 19; i++) g[i] = (float)cos(0.9 * i + t) * 1.7f;
        CHECK_OK(mo_adam_update(wa, g, ma, va, NULL, 19, &c, t));
        for (int i = 0; i < 19; i++)
            CHECK_OK(mo_adam_update(wb + i, g + i, mb + i, vb + i, NULL, 1, &c, t));
    }
    CHECK(memcmp(wa, wb, sizeof wa) == 0);
    CHECK(memcmp(ma, mb, sizeof ma) == 0);
    CHECK(memcmp(va, vb, sizeof va) == 0);
}

TEST(adamw_skip_nonfinite_rescale_changes_nothing)
{
    /* MXNet AdamW: rescale_grad 0, +-inf, NaN, or a double that is 0 or inf as a float32
       skips the whole update (decay included); without the switch a non-finite one is an
       error and 0 is an ordinary zero gradient (the decay still applies) */
    static const double skips[] = {0.0, INFINITY, -INFINITY, NAN, 1e-50, -1e-46, 1e300, 3.5e38};
    mo_adam_config c;
    mo_adamw_defaults(&c);
    c.eps_mode = MO_EPS_HAT;
    c.weight_decay_mode = MO_WD_DECOUPLED_BC;
    c.weight_decay = 0.5;
    c.skip_nonfinite_rescale = 1;
    for (size_t k = 0; k < sizeof skips / sizeof skips[0]; k++) {
        float w[9], m[9], v[9], g[9];
        for (int i = 0; i < 9; i++) w[i] = m[i] = v[i] = g[i] = 0.25f * (float)(i + 1);
        c.rescale_grad = skips[k];
        CHECK_OK(mo_adam_update(w, g, m, v, NULL, 9, &c, 3));
        for (int i = 0; i < 9; i++) CHECK(w[i] == m[i] && m[i] == v[i] && v[i] == g[i]);
    }
    /* a finite rescale that stays finite and non-zero as a float updates */
    float w = 1, m = 0, v = 0, g = 1;
    c.rescale_grad = 3e38;
    CHECK_OK(mo_adam_update(&w, &g, &m, &v, NULL, 1, &c, 1));
    CHECK(w != 1 && m != 0);
    /* without the switch */
    c.skip_nonfinite_rescale = 0;
    c.rescale_grad = INFINITY;
    CHECK_STATUS(mo_adam_check(&c), MO_ERR_ARG);
    c.rescale_grad = NAN;
    CHECK_STATUS(mo_adam_update(&w, &g, &m, &v, NULL, 1, &c, 1), MO_ERR_ARG);
    c.rescale_grad = 0.0;
    w = 1, m = 0, v = 0;
    CHECK_OK(mo_adam_update(&w, &g, &m, &v, NULL, 1, &c, 1));
    CHECK(w < 1 && m == 0);
}

TEST(clip_formulas_and_nonfinite_policy)
{
    float av[6] = {3, 0, 0, 0, 0, 0}, bv[6] = {0, 4, 0, 0, 0, 0};
    mo_tensor a, b;
    make(&a, 2, 3, av);
    make(&b, 2, 3, bv);
    mo_tensor *ts[2] = {&a, &b};
    double norm = 0;
    /* TF's global formula: max/max(norm, max); norm == max leaves the grads alone */
    CHECK_OK(mo_clip_grad_norm_ex(ts, 2, 5.0, MO_CLIP_GLOBAL, 0, &norm));
    CHECK(mo_tensor_data(&a)[0] == 3.0f);
    CHECK_OK(mo_clip_grad_norm_ex(ts, 2, 1.0, MO_CLIP_GLOBAL, 0, &norm));
    CHECK(mo_tensor_data(&b)[1] == 4.0f * (float)(1.0 / 5.0));
    /* PyTorch's: a norm a hair under max_norm is still scaled (coef < 1) */
    mo_tensor_data(&a)[0] = 3;
    mo_tensor_data(&b)[1] = 4;
    CHECK_OK(mo_clip_grad_norm_ex(ts, 2, 5.0 + 5e-7, MO_CLIP_PYTORCH, 0, &norm));
    CHECK(mo_tensor_data(&b)[1] < 4.0f);
    /* non-finite norms: error_if_nonfinite changes nothing; else NaN (TF) or 0 (PyTorch, inf) */
    mo_tensor_data(&a)[0] = INFINITY;
    mo_tensor_data(&b)[1] = 4;
    CHECK_STATUS(mo_clip_grad_norm_ex(ts, 2, 1.0, MO_CLIP_PYTORCH, 1, &norm), MO_ERR_ARG);
    CHECK(isinf(norm) && mo_tensor_data(&b)[1] == 4.0f);
    CHECK_OK(mo_clip_grad_norm_ex(ts, 2, 1.0, MO_CLIP_PYTORCH, 0, &norm));
    CHECK(mo_tensor_data(&b)[1] == 0.0f);
    mo_tensor_data(&b)[1] = 4;
    CHECK_OK(mo_clip_grad_norm_ex(ts, 2, 1.0, MO_CLIP_GLOBAL, 0, &norm));
    CHECK(isnan(mo_tensor_data(&b)[1]));
    CHECK_STATUS(mo_clip_grad_norm_ex(ts, 2, 1.0, (mo_clip_formula)7, 0, &norm), MO_ERR_ARG);
    mo_tensor_release(&a);
    mo_tensor_release(&b);
}

/* Every descriptor: found by its name, options inside its config, at most the buffers and
 * numbers mo_optim_call holds, and its defaults pass its own check. */
TEST(descriptors_are_consistent)
{
    size_t count = 0;
    for (const mo_optim_desc *d; (d = mo_optim_at(count)) != NULL; count++) {
        CHECK(mo_optim_find(d->name) == d);
        CHECK(d->nbuffers <= MO_OPTIM_MAX_BUFFERS && d->nscalars <= MO_OPTIM_MAX_SCALARS);
        for (size_t i = 0; i < d->noptions; i++) {
            size_t width = d->options[i].type == MO_OPTT_PAIR ? 2 * sizeof(double) : sizeof(int);
            CHECK(d->options[i].offset + width <= d->config_size);
        }
        double cfg[64];
        CHECK(d->config_size <= sizeof cfg);
        d->defaults(cfg);
        CHECK_OK(d->check(cfg));
    }
    CHECK(count == 11);
    CHECK(mo_optim_find("nope") == NULL && mo_optim_find(NULL) == NULL);
}

/* Schedule-free AdamW's first step by hand: ckp1 = 1 so y moves to z, then by the step. */
TEST(sfadamw_first_step_by_hand)
{
    mo_sfadamw_config c;
    mo_sfadamw_defaults(&c);
    c.lr = 0.1;
    float y[2] = {1.0f, -2.0f}, g[2] = {0.5f, -1.0f}, z[2] = {1.0f, -2.0f}, v[2] = {0, 0};
    double ws = 0.0, lr_max = -1.0;
    CHECK_OK(mo_sfadamw_update(y, g, z, v, 2, &c, 1, &ws, &lr_max));
    double lr1 = 0.1 * sqrt(1 - 0.999);
    CHECK_NEAR(lr_max, lr1, 1e-15);
    CHECK_NEAR(ws, lr1 * lr1, 1e-15);
    for (int i = 0; i < 2; i++) {
        double gi = i ? -1.0 : 0.5, u = gi / (sqrt(0.001 * gi * gi) + 1e-8);
        double y0 = i ? -2.0 : 1.0;
        CHECK_NEAR(z[i], y0 - lr1 * u, 1e-6);
        CHECK_NEAR(y[i], y0 + lr1 * (0.9 * 0.0 - 1.0) * u, 1e-6);
    }
    c.beta1 = 0.0;  /* eval() divides by beta1 */
    CHECK_STATUS(mo_sfadamw_update(y, g, z, v, 2, &c, 2, &ws, &lr_max), MO_ERR_ARG);
    c.beta1 = 0.9;
    c.warmup_steps = 1.5;
    CHECK_STATUS(mo_sfadamw_check(&c), MO_ERR_ARG);
}

/* ---- float64 (docs/design.md "Two dtypes") ---- */

static void make64(mo_tensor *t, size_t n, const double *vals)
{
    size_t shape[1] = {n};
    mo_tensor_init(t);
    mo_tensor_zeros_dtype(t, 1, shape, MO_FLOAT64, NULL);
    double *d = mo_tensor_ptr(t);
    for (size_t i = 0; i < n; i++) d[i] = vals ? vals[i] : 0.0;
}

/* every Adam switch on float64 tensors against the double reference: 1e-12, which the
   float32 instance misses by ~1e5 */
TEST(adam_float64_every_switch_matches_reference)
{
    int cases = 0, ok = 0;
    for (int eps_mode = 0; eps_mode < 2; eps_mode++)
        for (int wd_mode = 0; wd_mode < 3; wd_mode++)
            for (int ams = 0; ams < 2; ams++) {
                mo_adam_config c;
                mo_adam_defaults(&c);
                c.lr = 0.01;
                c.weight_decay = 0.05;
                c.eps_mode = (mo_eps_mode)eps_mode;
                c.weight_decay_mode = (mo_wd_mode)wd_mode;
                c.amsgrad = ams;
                c.rescale_grad = 0.5;
                c.clip_gradient = 0.6;
                double rw[N], rm[N] = {0}, rv[N] = {0}, rvx[N] = {0};
                float gs[N];
                mo_tensor w, g, m, v, vmax;
                for (int i = 0; i < N; i++) rw[i] = W0[i];
                make64(&w, N, rw);
                make64(&g, N, NULL);
                make64(&m, N, NULL);
                make64(&v, N, NULL);
                make64(&vmax, N, NULL);
                int good = 1;
                for (int t = 1; t <= 6 && good; t++) {
                    double *gd = mo_tensor_ptr(&g);
                    for (int i = 0; i < N; i++) gd[i] = gs[i] = grad_at(t, i);
                    good = mo_adam_step(&w, &g, &m, &v, &vmax, &c, t) == MO_OK;
                    ref_adam(rw, rm, rv, rvx, &c, t, gs);
                    const double *wd = mo_tensor_ptr(&w);
                    for (int i = 0; i < N && good; i++) {
                        double scale = fabs(rw[i]) > 1e-3 ? fabs(rw[i]) : 1e-3;
                        good = fabs(wd[i] - rw[i]) <= 1e-12 * scale;
                    }
                }
                cases++;
                if (good) ok++;
                else printf("# eps_mode %d wd_mode %d ams %d\n", eps_mode, wd_mode, ams);
                mo_tensor_release(&w);
                mo_tensor_release(&g);
                mo_tensor_release(&m);
                mo_tensor_release(&v);
                mo_tensor_release(&vmax);
            }
    CHECK(ok == cases);
}

/* Every descriptor's step: float64 runs (close to the float32 run), and a float32 state
   tensor beside a float64 param is MO_ERR_DTYPE with nothing written. */
TEST(every_descriptor_float64_and_mixed)
{
    for (size_t k = 0; mo_optim_at(k); k++) {
        const mo_optim_desc *d = mo_optim_at(k);
        unsigned char cfg[512];
        CHECK(d->config_size <= sizeof cfg);
        d->defaults(cfg);
        double w0[N], g0[N];
        for (int i = 0; i < N; i++) {
            w0[i] = W0[i];
            g0[i] = grad_at(1, i);
        }
        mo_tensor w, g, w32, g32, bufs[MO_OPTIM_MAX_BUFFERS], b32[MO_OPTIM_MAX_BUFFERS], odd;
        make64(&w, N, w0);
        make64(&g, N, g0);
        size_t shape[1] = {N};
        mo_tensor_init(&w32);
        mo_tensor_init(&g32);
        CHECK_OK(mo_tensor_clone_dtype(&w32, &w, MO_FLOAT32, NULL));
        CHECK_OK(mo_tensor_clone_dtype(&g32, &g, MO_FLOAT32, NULL));
        mo_optim_call c64, c32;
        memset(&c64, 0, sizeof c64);
        memset(&c32, 0, sizeof c32);
        unsigned char cache64[256] = {0}, cache32[256] = {0};
        CHECK(d->cache_size <= sizeof cache64);
        c64.w = &w, c64.g = &g, c64.step = 1, c64.cache = cache64;
        c32.w = &w32, c32.g = &g32, c32.step = 1, c32.cache = cache32;
        for (size_t i = 0; i < d->nbuffers; i++) {
            make64(&bufs[i], N, d->buffers[i].init == MO_OPTI_PARAM ? w0 : NULL);
            mo_tensor_init(&b32[i]);
            CHECK_OK(mo_tensor_clone_dtype(&b32[i], &bufs[i], MO_FLOAT32, NULL));
            c64.buf[i] = &bufs[i], c32.buf[i] = &b32[i];
            c64.fresh[i] = c32.fresh[i] = 1;
        }
        for (size_t i = 0; i < d->nscalars; i++) c64.scalar[i] = c32.scalar[i] = d->scalars[i].init;
        /* a float32 state tensor (one the default config uses) with the float64 param:
           refused, nothing written */
        size_t used = 0;
        while (used < d->nbuffers && d->buffers[used].when) used++;
        if (used < d->nbuffers) {
            mo_tensor_init(&odd);
            CHECK_OK(mo_tensor_zeros_dtype(&odd, 1, shape, MO_FLOAT32, NULL));
            mo_optim_call mixed = c64;
            mixed.buf[used] = &odd;
            CHECK_STATUS(d->step(cfg, &mixed), MO_ERR_DTYPE);
            CHECK(memcmp(mo_tensor_ptr(&w), w0, sizeof w0) == 0);
            mo_tensor_release(&odd);
        }
        CHECK_OK(d->step(cfg, &c64));
        CHECK_OK(d->step(cfg, &c32));
        const double *a = mo_tensor_ptr(&w);
        const float *b = mo_tensor_ptr(&w32);
        int close = memcmp(a, w0, sizeof w0) != 0;  /* it moved */
        for (int i = 0; i < N; i++) close &= fabs(a[i] - (double)b[i]) <= 1e-5 * (1 + fabs(a[i]));
        if (!close) printf("# %s\n", d->name);
        CHECK(close);
        for (size_t i = 0; i < d->nbuffers; i++) {
            mo_tensor_release(&bufs[i]);
            mo_tensor_release(&b32[i]);
        }
        mo_tensor_release(&w);
        mo_tensor_release(&g);
        mo_tensor_release(&w32);
        mo_tensor_release(&g32);
    }
}


/* Every Adam switch combination (27 configs), float32 and float64, through the scalar, AVX and
 * AVX-512 loops (mo__adam_run_level; a level the CPU lacks runs the widest it has):
 * the same bits from every path, including NaN, inf, -0 and huge values in the data. 135
 * elements: AVX-512 body, an AVX tail and a scalar tail. */
#define XN 135
static void adam_paths_config(int which, mo_adam_config *c)
{
    mo_adamw_defaults(c);
    c->weight_decay_mode = (mo_wd_mode)(which % 3);
    c->eps_mode = (mo_eps_mode)(which / 3 % 2);
    c->amsgrad = which / 6 % 2;
    c->bias_correction = which % 4 != 3;
    c->maximize = which % 5 == 1;
    if (which % 3 == 0) c->weight_decay = 0.3;
    if (which / 9 == 1) {
        c->rescale_grad = 0.75;
        c->clip_gradient = 0.5;
        c->clip_weight_decay = which % 2;
    }
    if (which / 9 == 2) c->lr_decay = 0.1;
}

static float path_data(int t, int i)
{
    if (i == 7) return NAN;
    if (i == 8) return t % 2 ? INFINITY : -INFINITY;
    if (i == 9) return -0.0f;
    if (i == 10) return 1e30f;
    return (float)sin(0.37 * i + 1.3 * t) * (i % 11 == 0 ? 1e-6f : 2.0f);
}

static void adam_paths_run_f32(const mo_adam_config *c, int level, float out[4][XN])
{
    float g[XN];
    for (int i = 0; i < XN; i++) {
        out[0][i] = 0.01f * (float)(i - 60);
        out[1][i] = out[2][i] = out[3][i] = 0.0f;
    }
    for (int t = 1; t <= 3; t++) {
        for (int i = 0; i < XN; i++) g[i] = path_data(t, i);
        mo_adam_scalars k;
        CHECK_OK(mo_adam_prepare(c, t, &k));
        if (!k.skip) mo__adam_run_level(&k, out[0], g, out[1], out[2], out[3], XN, level);
    }
}

static void adam_paths_run_f64(const mo_adam_config *c, int level, double out[4][XN])
{
    double g[XN];
    for (int i = 0; i < XN; i++) {
        out[0][i] = 0.01 * (i - 60);
        out[1][i] = out[2][i] = out[3][i] = 0.0;
    }
    for (int t = 1; t <= 3; t++) {
        for (int i = 0; i < XN; i++) g[i] = (double)path_data(t, i) * (1.0 + 1e-12 * i);
        mo_adam_scalars k;
        CHECK_OK(mo_adam_prepare(c, t, &k));
        if (!k.skip) mo__adam_run64_level(&k.f64, out[0], g, out[1], out[2], out[3], XN, level);
    }
}

TEST(adam_simd_paths_agree_bitwise_every_switch)
{
    static float f[3][4][XN];
    static double d[3][4][XN];
    for (int which = 0; which < 27; which++) {
        mo_adam_config c;
        adam_paths_config(which, &c);
        for (int level = 0; level < 3; level++) {
            int lv = level < mo__simd_level() ? level : mo__simd_level();
            adam_paths_run_f32(&c, lv, f[level]);
            adam_paths_run_f64(&c, lv, d[level]);
        }
        for (int cap = 1; cap < 3; cap++) {
            int same32 = memcmp(f[0], f[cap], sizeof f[0]) == 0;
            int same64 = memcmp(d[0], d[cap], sizeof d[0]) == 0;
            if (!same32 || !same64) printf("#   config %d, path %d: float32 %d float64 %d\n", which, cap, same32, same64);
            CHECK(same32);
            CHECK(same64);
        }
    }
    /* the paths were really taken where the CPU has them (so the test compares something) */
    printf("# widest path on this CPU: %d (0 scalar, 1 AVX, 2 AVX-512)\n", mo__simd_level());
}

/* bfloat16: round to nearest even, NaN kept quiet, inf kept, overflow to inf */
TEST(lean_bf16_codec)
{
    CHECK(mo_bf16_from_float(1.0f + 0x1p-8f) == 0x3F80);          /* tie: down to even */
    CHECK(mo_bf16_from_float(1.0f + 3 * 0x1p-8f) == 0x3F82);      /* tie: up to even */
    CHECK(mo_bf16_from_float(-1.0f - 0x1p-8f - 0x1p-20f) == 0xBF81);
    CHECK(mo_bf16_from_float(INFINITY) == 0x7F80);
    CHECK(mo_bf16_from_float(-INFINITY) == 0xFF80);
    CHECK(mo_bf16_from_float(3.4028235e38f) == 0x7F80);
    uint16_t q = mo_bf16_from_float(NAN);
    CHECK((q & 0x7F80) == 0x7F80 && (q & 0x7F) != 0);
    CHECK(mo_bf16_to_float(0x3F82) == 1.0f + 0x1p-6f);
    /* stochastic: r below the dropped fraction's complement rounds down, at or above up */
    CHECK(mo_bf16_from_float_sr(1.0f + 0x1p-9f, 0xBFFF) == 0x3F80);
    CHECK(mo_bf16_from_float_sr(1.0f + 0x1p-9f, 0xC000) == 0x3F81);
    CHECK(mo_bf16_from_float_sr(INFINITY, 0xFFFF) == 0x7F80);
}

/* int8 maps: every code decodes to a value that encodes back to it; 1.0 is a code; the
 * error of any u in [0, 1] is within 1/16 relative or the smallest step */
TEST(lean_q8_codec)
{
    for (int signed_map = 0; signed_map < 2; signed_map++) {
        mo_lean_sign sg = signed_map ? MO_LEAN_SIGNED : MO_LEAN_UNSIGNED;
        int top = signed_map ? 120 : 248;
        for (int c = 0; c <= top; c++) {
            uint8_t code = (uint8_t)c;
            float u = mo_q8_to_unit(code, sg);
            CHECK(mo_q8_from_unit(u, sg) == code);
            if (signed_map && c) {
                uint8_t neg = (uint8_t)(int8_t)-c;
                CHECK(mo_q8_from_unit(-u, sg) == neg);
                CHECK(mo_q8_to_unit(neg, sg) == -u);
            }
            if (c) CHECK(u > mo_q8_to_unit((uint8_t)(c - 1), sg));   /* increasing */
        }
        CHECK(mo_q8_to_unit((uint8_t)top, sg) == 1.0f);
        CHECK(isnan(mo_q8_to_unit((uint8_t)(top + 1), sg)));
        float floor_step = signed_map ? 0x1p-17f : 0x1p-33f;
        for (int i = 0; i <= 100000; i++) {
            float u = powf(2.0f, -36.0f * (float)i / 100000.0f);
            float back = mo_q8_to_unit(mo_q8_from_unit(u, sg), sg);
            CHECK(fabsf(back - u) <= u / 16 + floor_step);
        }
    }
}


/* The AVX2 and AVX-512 codecs against the scalar ones: the same codes, scales and decoded
 * values for data spanning 40 octaves, both signs, zeros, -0, a block with a subnormal absmax,
 * a block holding NaN, a block of exact rounding ties, a partial last block; the same at every
 * length 0..40 (vector body + tails). */
TEST(lean_vector_codecs_match_scalar)
{
    enum { LN = 256 * 5 + 77 };
    static float x[LN], da[LN], db[LN];
    for (int i = 0; i < LN; i++) {
        float mag = powf(2.0f, -40.0f * (float)((i * 7919) % 1000) / 1000.0f);
        x[i] = (i % 3 == 0 ? -mag : mag) * (float)(1 + i % 5);
    }
    x[5] = 0.0f;
    x[6] = -0.0f;
    for (int i = 256; i < 512; i++) x[i] = (float)(i - 300) * 1e-42f;   /* subnormal absmax */
    x[600] = NAN;
    /* block 3: absmax 1 and exact ties of the map's 3 mantissa bits (odd and even codes, both
       signs), down into its subnormal codes, and values just below 1 */
    x[768] = 1.0f;
    for (int i = 769; i < 1024; i++) {
        float tie = (16.0f + (float)(2 * (i % 8) + 1)) / 32.0f;   /* (8 + k + 1/2) / 16 */
        x[i] = ldexpf(tie, -(i / 8 % 40)) * (i % 3 == 0 ? -1.0f : 1.0f);
    }
    x[1020] = 1.0f - 0x1p-24f;
    x[1021] = 1.0f - 0x1p-5f;
    for (int dt = 1; dt <= 2; dt++) {
        for (int sg = 1; sg <= 2; sg++) {
            for (int len = 0; len <= LN; len += len < 40 ? 1 : LN - 40) {
                mo_lean a, b;
                CHECK_OK(mo_lean_init(&a, (mo_state_dtype)dt, (mo_lean_sign)sg, (size_t)len));
                CHECK_OK(mo_lean_init(&b, (mo_state_dtype)dt, (mo_lean_sign)sg, (size_t)len));
                CHECK_OK(mo__lean_encode_vec(&a, x, (size_t)len, MO_ROUND_NEAREST, 0, 1));
                CHECK_OK(mo__lean_encode_vec(&b, x, (size_t)len, MO_ROUND_NEAREST, 0, 0));
                size_t es = dt == MO_STATE_BFLOAT16 ? 2 : 1;
                CHECK(memcmp(a.codes, b.codes, (size_t)len * es) == 0);
                if (a.nblocks) CHECK(memcmp(a.absmax, b.absmax, a.nblocks * sizeof(float)) == 0);
                CHECK_OK(mo__lean_decode_vec(&a, da, (size_t)len, 1));
                CHECK_OK(mo__lean_decode_vec(&a, db, (size_t)len, 0));
                CHECK(memcmp(da, db, (size_t)len * sizeof(float)) == 0);
                mo_lean_free(&a);
                mo_lean_free(&b);
            }
        }
    }
}


/* A lean Adam step is the float32 step on the decoded moments, stored back: against that
 * reference built from the public codecs and mo_adam_update_prepared, bit for bit, for
 * bfloat16 (the fused AVX-512 loop where the CPU has it, blocks for the tail) and int8, with
 * and without amsgrad, over 3 steps. */
TEST(lean_adam_step_is_the_float_step_on_decoded_state)
{
    enum { LN = 256 * 4 + 21 };
    static float w[LN], g[LN], rw[LN], rm[LN], rv[LN], rx[LN];
    for (int dt = 1; dt <= 2; dt++) {
        for (int ams = 0; ams <= 1; ams++) {
            mo_adam_config c;
            mo_adamw_defaults(&c);
            c.amsgrad = ams;
            c.lr = 1e-2;
            size_t shape[1] = {LN};
            mo_tensor tw, tg;
            mo_tensor_init(&tw);
            mo_tensor_init(&tg);
            CHECK_OK(mo_tensor_wrap(&tw, w, 1, shape, NULL, NULL));
            CHECK_OK(mo_tensor_wrap(&tg, g, 1, shape, NULL, NULL));
            mo_lean m, v, x, cm, cv, cx;
            CHECK_OK(mo_lean_init(&m, (mo_state_dtype)dt, MO_LEAN_SIGNED, LN));
            CHECK_OK(mo_lean_init(&v, (mo_state_dtype)dt, MO_LEAN_UNSIGNED, LN));
            CHECK_OK(mo_lean_init(&x, (mo_state_dtype)dt, MO_LEAN_UNSIGNED, LN));
            CHECK_OK(mo_lean_init(&cm, (mo_state_dtype)dt, MO_LEAN_SIGNED, LN));
            CHECK_OK(mo_lean_init(&cv, (mo_state_dtype)dt, MO_LEAN_UNSIGNED, LN));
            CHECK_OK(mo_lean_init(&cx, (mo_state_dtype)dt, MO_LEAN_UNSIGNED, LN));
            for (int i = 0; i < LN; i++) w[i] = rw[i] = 0.01f * (float)(i % 97) - 0.4f;
            for (int t = 1; t <= 3; t++) {
                for (int i = 0; i < LN; i++) g[i] = (float)sin(0.3 * i + t) * (i % 13 == 0 ? 1e-4f : 1.0f);
                mo_adam_scalars k;
                CHECK_OK(mo_adam_prepare(&c, t, &k));
                CHECK_OK(mo_adam_step_lean(&tw, &tg, &m, &v, ams ? &x : NULL, &k, MO_ROUND_NEAREST, t));
                /* the reference: decode, step in float32, encode */
                CHECK_OK(mo_lean_decode(&cm, rm, LN));
                CHECK_OK(mo_lean_decode(&cv, rv, LN));
                CHECK_OK(mo_lean_decode(&cx, rx, LN));
                CHECK_OK(mo_adam_update_prepared(rw, g, rm, rv, rx, LN, &k));
                CHECK_OK(mo_lean_encode(&cm, rm, LN, MO_ROUND_NEAREST, 0));
                CHECK_OK(mo_lean_encode(&cv, rv, LN, MO_ROUND_NEAREST, 0));
                CHECK_OK(mo_lean_encode(&cx, rx, LN, MO_ROUND_NEAREST, 0));
            }
            size_t es = dt == MO_STATE_BFLOAT16 ? 2 : 1;
            CHECK(memcmp(w, rw, sizeof w) == 0);
            CHECK(memcmp(m.codes, cm.codes, LN * es) == 0);
            CHECK(memcmp(v.codes, cv.codes, LN * es) == 0);
            if (ams) CHECK(memcmp(x.codes, cx.codes, LN * es) == 0);
            if (m.nblocks) CHECK(memcmp(m.absmax, cm.absmax, m.nblocks * sizeof(float)) == 0);
            mo_lean_free(&m);
            mo_lean_free(&v);
            mo_lean_free(&x);
            mo_lean_free(&cm);
            mo_lean_free(&cv);
            mo_lean_free(&cx);
            mo_tensor_release(&tw);
            mo_tensor_release(&tg);
        }
    }
}

/* The fused lean loops (int8 at AVX2 and AVX-512, bfloat16 at AVX-512 rounded to nearest and
 * stochastically) against the block path (decode, the float32 loop, encode), bit for bit: random data over three pool chunks
 * and a partial last block, with blocks whose moments turn NaN (a NaN gradient), inf (an
 * overflowing square), stay zero, or stay subnormal (a subnormal absmax: the dividing
 * encoder); amsgrad off and on, clipping and L2 switches, 4 steps, 1 and 3 threads. Paths
 * the CPU lacks fall back to the block path (and then compare trivially). */
static uint32_t lcg_next(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static float lcg_unit(uint32_t *s) { return (float)lcg_next(s) / 16777216.0f * 2.0f - 1.0f; }

enum { FZ_N = 32768 * 2 + 256 * 3 + 37, FZ_PATHS = 3 };

/* What one path owns: the param, its moments, their codes after the steps. */
typedef struct fz_run {
    float w[FZ_N];
    mo_lean m, v, x;
} fz_run;

static void fz_state_init(fz_run *r, int dt, const float *m0, const float *v0)
{
    size_t n = FZ_N;
    CHECK_OK(mo_lean_init(&r->m, (mo_state_dtype)dt, MO_LEAN_SIGNED, n));
    CHECK_OK(mo_lean_init(&r->v, (mo_state_dtype)dt, MO_LEAN_UNSIGNED, n));
    CHECK_OK(mo_lean_init(&r->x, (mo_state_dtype)dt, MO_LEAN_UNSIGNED, n));
    CHECK_OK(mo_lean_encode(&r->m, m0, n, MO_ROUND_NEAREST, 0));
    CHECK_OK(mo_lean_encode(&r->v, v0, n, MO_ROUND_NEAREST, 0));
    CHECK_OK(mo_lean_encode(&r->x, v0, n, MO_ROUND_NEAREST, 0));
}

static int fz_same(const fz_run *a, const fz_run *b, int ams)
{
    size_t es = a->m.dtype == MO_STATE_BFLOAT16 ? 2 : 1;
    int ok = memcmp(a->w, b->w, sizeof a->w) == 0 && memcmp(a->m.codes, b->m.codes, FZ_N * es) == 0 &&
             memcmp(a->v.codes, b->v.codes, FZ_N * es) == 0 &&
             (!ams || memcmp(a->x.codes, b->x.codes, FZ_N * es) == 0);
    if (ok && a->m.nblocks)
        ok = memcmp(a->m.absmax, b->m.absmax, a->m.nblocks * sizeof(float)) == 0 &&
             memcmp(a->v.absmax, b->v.absmax, a->v.nblocks * sizeof(float)) == 0 &&
             (!ams || memcmp(a->x.absmax, b->x.absmax, a->x.nblocks * sizeof(float)) == 0);
    return ok;
}

/* The data: block 3 gets a NaN gradient, block 5 an overflowing one, block 7 zero gradients
 * and zero state, block 9 zero gradients and subnormal state; the rest random over 12 octaves. */
static void fz_data(float *w, float *m0, float *v0, float (*g)[FZ_N], int steps)
{
    uint32_t seed = 12345u;
    for (int i = 0; i < FZ_N; i++) {
        w[i] = lcg_unit(&seed);
        m0[i] = lcg_unit(&seed) * powf(2.0f, (float)(lcg_next(&seed) % 12) - 10.0f);
        v0[i] = fabsf(lcg_unit(&seed)) * powf(2.0f, (float)(lcg_next(&seed) % 12) - 20.0f);
    }
    for (int t = 0; t < steps; t++)
        for (int i = 0; i < FZ_N; i++) g[t][i] = lcg_unit(&seed) * powf(2.0f, (float)(lcg_next(&seed) % 12) - 6.0f);
    for (int i = 256 * 7; i < 256 * 8; i++) m0[i] = v0[i] = 0.0f;
    for (int i = 256 * 9; i < 256 * 10; i++) {
        m0[i] = (float)(i % 7 - 3) * 1e-41f;
        v0[i] = (float)(i % 5) * 1e-41f;
    }
    for (int t = 0; t < steps; t++) {
        g[t][256 * 3 + 17] = NAN;
        g[t][256 * 5 + 200] = 1e30f;
        for (int i = 256 * 7; i < 256 * 8; i++) g[t][i] = 0.0f;
        for (int i = 256 * 9; i < 256 * 10; i++) g[t][i] = 0.0f;
    }
}

TEST(lean_adam_fused_equals_block_path)
{
    enum { STEPS = 4 };
    static float w0[FZ_N], m0[FZ_N], v0[FZ_N], g[STEPS][FZ_N];
    static fz_run runs[FZ_PATHS];
    fz_data(w0, m0, v0, g, STEPS);
    size_t shape[1] = {FZ_N};
    /* dt 0: bfloat16 rounded stochastically; 1: bfloat16 to nearest; 2: int8 */
    for (int dti = 0; dti <= 2; dti++) {
        const int dt = dti == 0 ? MO_STATE_BFLOAT16 : dti;
        const mo_state_rounding rnd = dti == 0 ? MO_ROUND_STOCHASTIC : MO_ROUND_NEAREST;
        for (int cfg = 0; cfg < 3; cfg++) {
            for (int threads = 1; threads <= 3; threads += 2) {
                mo_adam_config c;
                mo_adamw_defaults(&c);
                c.lr = 1e-2;
                c.amsgrad = cfg >= 1;
                if (cfg == 2) {
                    c.clip_gradient = 0.5;
                    c.weight_decay_mode = MO_WD_L2;
                    c.maximize = 1;
                }
                CHECK_OK(mo_set_num_threads(threads));
                for (int p = 0; p < FZ_PATHS; p++) {
                    fz_run *r = &runs[p];
                    memcpy(r->w, w0, sizeof w0);
                    fz_state_init(r, dt, m0, v0);
                    mo_tensor tw, tg;
                    mo_tensor_init(&tw);
                    mo_tensor_init(&tg);
                    CHECK_OK(mo_tensor_wrap(&tw, r->w, 1, shape, NULL, NULL));
                    for (int t = 1; t <= STEPS; t++) {
                        mo_adam_scalars k;
                        CHECK_OK(mo_adam_prepare(&c, t, &k));
                        CHECK_OK(mo_tensor_wrap(&tg, g[t - 1], 1, shape, NULL, NULL));
                        /* path p: MO__SIMD_SCALAR (blocks), _AVX (int8 AVX2), _AVX512 */
                        CHECK_OK(mo__adam_step_lean_level(&tw, &tg, &r->m, &r->v, c.amsgrad ? &r->x : NULL,
                                                          &k, rnd, t, p));
                        mo_tensor_release(&tg);
                    }
                    mo_tensor_release(&tw);
                }
                for (int p = 1; p < FZ_PATHS; p++) {
                    int same = fz_same(&runs[p], &runs[0], c.amsgrad);
                    if (!same) printf("#   dtype %d rounding %d config %d threads %d: path %d differs\n", dt, (int)rnd, cfg, threads, p);
                    CHECK(same);
                }
                /* the special blocks did what they are for (int8, without the clipping and L2
                   decay that would tame them): NaN, inf, zero, subnormal */
                if (dt == MO_STATE_INT8 && cfg < 2) {
                    const mo_lean *v = &runs[0].v;
                    CHECK(isnan(v->absmax[3]) && isnan(v->absmax[5]));
                    CHECK(v->absmax[7] == 0.0f);
                    CHECK(v->absmax[9] > 0.0f && v->absmax[9] < FLT_MIN);
                    CHECK(runs[0].m.absmax[9] > 0.0f && runs[0].m.absmax[9] < FLT_MIN);
                }
                for (int p = 0; p < FZ_PATHS; p++) {
                    mo_lean_free(&runs[p].m);
                    mo_lean_free(&runs[p].v);
                    mo_lean_free(&runs[p].x);
                }
            }
        }
    }
    CHECK_OK(mo_set_num_threads(1));
}

int main(void)
{
    RUN(adam_first_step_by_hand);
    RUN(adam_float64_every_switch_matches_reference);
    RUN(every_descriptor_float64_and_mixed);
    RUN(adam_every_switch_matches_reference);
    RUN(adam_eps_placement_matters_for_tiny_grads);
    RUN(adam_simd_and_scalar_paths_agree_bitwise);
    RUN(adam_bad_input_writes_nothing);
    RUN(adam_step_strided_equals_contiguous);
    RUN(step_bad_tensors_write_nothing);
    RUN(sgd_by_hand);
    RUN(adamax_matches_reference);
    RUN(nadam_matches_reference);
    RUN(radam_matches_reference_both_branches);
    RUN(rmsprop_matches_reference);
    RUN(adagrad_and_adadelta_match_reference);
    RUN(lion_by_hand);
    RUN(lamb_matches_reference);
    RUN(all_finite_and_clipping);
    RUN(adam_clip_weight_decay_clips_the_sum);
    RUN(adam_mxnet_switches_simd_and_scalar_agree_bitwise);
    RUN(adamw_skip_nonfinite_rescale_changes_nothing);
    RUN(clip_formulas_and_nonfinite_policy);
    RUN(descriptors_are_consistent);
    RUN(sfadamw_first_step_by_hand);
    RUN(adam_simd_paths_agree_bitwise_every_switch);
    RUN(lean_bf16_codec);
    RUN(lean_q8_codec);
    RUN(lean_vector_codecs_match_scalar);
    RUN(lean_adam_step_is_the_float_step_on_decoded_state);
    RUN(lean_adam_fused_equals_block_path);
    return ctest_summary();
}
