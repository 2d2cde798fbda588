/*
 * kernels_only.c - moonopt's C kernels called directly from C: no Lua at all.
 *
 * 1. Rosenbrock's function minimized with the Adam kernel on plain float
 *    arrays (mo_adam_update): the host owns w, g and the two moment buffers,
 *    and computes the learning-rate schedule itself.
 * 2. A least-squares fit y = X w with the tensor API: the host's arrays are
 *    wrapped as tensors without copying (mo_tensor_wrap, with a release
 *    callback), the gradient comes from mo_matmul, and AdamW steps the
 *    weights through mo_adam_step.
 * 3. The fitted weights saved to a checkpoint (safetensors format) and read
 *    back (core/moonopt_ckpt.h).
 *
 * Every call returns an mo_status; nothing in the library exits or aborts.
 *
 * Build (installed):  cc kernels_only.c $(pkg-config --cflags --libs moonopt-core) -lm
 * Build (in tree):    make embed-demo
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moonopt.h"
#include "moonopt_ckpt.h"

#define TRY(expr)                                                                  \
    do {                                                                           \
        mo_status st_ = (expr);                                                    \
        if (st_ != MO_OK) {                                                        \
            fprintf(stderr, "kernels_only: %s: %s\n", #expr, mo_status_str(st_));  \
            return 1;                                                              \
        }                                                                          \
    } while (0)

/* ---- 1. Rosenbrock with the raw Adam kernel ---- */

static int rosenbrock(void)
{
    float w[2] = {-1.5f, 2.0f}; /* (x, y) */
    float g[2], m[2] = {0, 0}, v[2] = {0, 0};
    const int steps = 3000, warmup = 100;
    const double pi = 3.14159265358979323846, base_lr = 0.1;
    mo_adam_config cfg;
    mo_adam_defaults(&cfg);
    TRY(mo_adam_check(&cfg));
    for (int t = 1; t <= steps; t++) {
        double x = w[0], y = w[1], a = 1 - x, b = y - x * x;
        g[0] = (float)(-2 * a - 400 * x * b);
        g[1] = (float)(200 * b);
        /* warmup then cosine: the lr of step t (mo.sched.WarmupCosine's formula) */
        int s = t - 1;
        cfg.lr = s < warmup ? base_lr * s / warmup
                            : base_lr * 0.5 * (1 + cos(pi * (s - warmup) / (steps - warmup)));
        TRY(mo_adam_update(w, g, m, v, NULL, 2, &cfg, t));
    }
    double x = w[0], y = w[1];
    double f = (1 - x) * (1 - x) + 100 * (y - x * x) * (y - x * x);
    printf("rosenbrock: x=%.6f y=%.6f f=%.3g\n", x, y, f);
    return 0;
}

/* ---- 2. least squares with tensors on host memory ---- */

static void note_release(void *ud, float *data)
{
    (void)data;
    ++*(int *)ud; /* the host learns that the library let go of its buffer */
}

/* ---- 3. a checkpoint written and read back ---- */

static int checkpoint_round_trip(const mo_tensor *w)
{
    const char *dir = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/moonopt_kernels_only.safetensors",
             dir != NULL && dir[0] != '\0' ? dir : "/tmp");
    char why[MO_CKPT_WHY_SIZE];
    mo_ckpt_item items[1] = {{"weight", w}};
    mo_ckpt_meta meta[1] = {{"example", "kernels_only"}};
    /* atomic: a crash leaves the old file or the new one, never half of one */
    if (mo_ckpt_write_file(path, items, 1, meta, 1, why, sizeof why) != MO_OK) {
        fprintf(stderr, "kernels_only: %s: %s\n", path, why);
        return 1;
    }
    mo_ckpt *c;
    if (mo_ckpt_read_file(&c, path, NULL, why, sizeof why) != MO_OK) {
        fprintf(stderr, "kernels_only: %s: %s\n", path, why);
        remove(path);
        return 1;
    }
    size_t i = mo_ckpt_find(c, "weight");
    const mo_tensor *back = i == MO_CKPT_NONE ? NULL : mo_ckpt_tensor(c, i);
    int same = back != NULL && back->numel == w->numel &&
               memcmp(mo_tensor_data(back), mo_tensor_data(w), w->numel * sizeof(float)) == 0;
    const char *note = mo_ckpt_meta_get(c, "example");
    printf("checkpoint: %zu tensor(s), weight read back %s, metadata example=%s\n",
           mo_ckpt_count(c), same ? "identical" : "DIFFERENT", note ? note : "(missing)");
    mo_ckpt_free(c);
    remove(path);
    return same ? 0 : 1;
}

static int least_squares(void)
{
    enum { N = 64, D = 3 };
    static float X[N * D], y[N], pred[N], resid[N];
    float w[D] = {0, 0, 0}, grad[D], m[D] = {0}, v[D] = {0};
    const float true_w[D] = {2.0f, -1.0f, 0.5f};

    /* data from moonopt's generator: the same seed gives the same bits anywhere */
    mo_rng rng;
    mo_rng_seed(&rng, 42);
    for (int i = 0; i < N; i++) {
        y[i] = 0;
        for (int j = 0; j < D; j++) {
            X[i * D + j] = (float)mo_rng_normal(&rng);
            y[i] += X[i * D + j] * true_w[j];
        }
    }

    size_t sx[2] = {N, D}, sw[2] = {D, 1}, sy[2] = {N, 1};
    mo_tensor tX, tw, tg, tm, tv, ty, tp, tr;
    mo_tensor *all[] = {&tX, &tw, &tg, &tm, &tv, &ty, &tp, &tr};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) mo_tensor_init(all[k]);
    int released = 0, rc = 1;
    mo_status st = MO_OK;
    /* wrap every host array (no copy); w gets a release callback to show when it runs */
    if (st == MO_OK) st = mo_tensor_wrap(&tX, X, 2, sx, NULL, NULL);
    if (st == MO_OK) st = mo_tensor_wrap(&tw, w, 2, sw, note_release, &released);
    if (st == MO_OK) st = mo_tensor_wrap(&tg, grad, 2, sw, NULL, NULL);
    if (st == MO_OK) st = mo_tensor_wrap(&tm, m, 2, sw, NULL, NULL);
    if (st == MO_OK) st = mo_tensor_wrap(&tv, v, 2, sw, NULL, NULL);
    if (st == MO_OK) st = mo_tensor_wrap(&ty, y, 2, sy, NULL, NULL);
    if (st == MO_OK) st = mo_tensor_wrap(&tp, pred, 2, sy, NULL, NULL);
    if (st == MO_OK) st = mo_tensor_wrap(&tr, resid, 2, sy, NULL, NULL);

    mo_adam_config cfg;
    mo_adamw_defaults(&cfg); /* PyTorch AdamW: decoupled weight decay 1e-2 */
    cfg.lr = 0.05;
    cfg.weight_decay = 1e-4;
    double loss = 0;
    for (int t = 1; st == MO_OK && t <= 500; t++) {
        /* pred = X w; resid = pred - y; loss = mean(resid^2); grad = (2/N) X^T resid */
        st = mo_matmul(&tp, &tX, 0, &tw, 0, 1.0f, 0.0f);
        if (st == MO_OK) st = mo_binary(&tr, &tp, &ty, MO_SUB);
        if (st == MO_OK) st = mo_dot(&tr, &tr, &loss);
        if (st == MO_OK) st = mo_matmul(&tg, &tX, 1, &tr, 0, 2.0f / N, 0.0f);
        if (st == MO_OK) st = mo_adam_step(&tw, &tg, &tm, &tv, NULL, &cfg, t);
    }
    if (st != MO_OK) {
        fprintf(stderr, "kernels_only: least squares: %s\n", mo_status_str(st));
        goto done;
    }
    printf("least squares: w=(%.4f, %.4f, %.4f) (true 2, -1, 0.5) mse=%.3g\n", (double)w[0],
           (double)w[1], (double)w[2], loss / N);
    rc = checkpoint_round_trip(&tw);
done:
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) mo_tensor_release(all[k]);
    printf("release callback ran %d time(s)\n", released); /* 1: when tw was released */
    return rc;
}

int main(void)
{
    printf("moonopt %s, matmul backend: %s\n", MO_VERSION_STRING, mo_blas_backend());
    if (rosenbrock() != 0) return 1;
    if (least_squares() != 0) return 1;
    return 0;
}
