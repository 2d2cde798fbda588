/*
 * test_threads.c - the thread pool (core/threadpool.c): every chunk runs once with
 * the fixed partition at any pool size, reductions give the same bits at 1, 2, 3 and
 * 8 threads, nested and concurrent submitters run, fork leaves a usable pool, and
 * the size's setter and MOONOPT_NUM_THREADS's parser refuse bad values.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctest.h"
#include "moonopt.h"
#include "threadpool.h"

/* Records which chunk saw each item, and the bounds it was given. */
typedef struct cover_ctx {
    size_t n, grain;
    unsigned char *hits; /* n counters */
    int bad_bounds;
} cover_ctx;

static void cover_chunk(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    cover_ctx *c = ctx;
    const size_t want_hi = (chunk + 1) * c->grain < c->n ? (chunk + 1) * c->grain : c->n;
    if (lo != chunk * c->grain || hi != want_hi) c->bad_bounds = 1;
    for (size_t i = lo; i < hi; i++) c->hits[i]++;
}

TEST(every_item_once_with_the_fixed_partition)
{
    const size_t ns[] = {0, 1, 5, 100, 4096, 100001};
    const size_t grains[] = {0, 1, 7, 4096, 100000};
    for (int t = 1; t <= 4; t++) {
        CHECK_OK(mo_set_num_threads(t));
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
            for (size_t b = 0; b < sizeof grains / sizeof *grains; b++) {
                const size_t n = ns[a];
                cover_ctx c = {n, grains[b] ? grains[b] : 1, calloc(n + 1, 1), 0};
                CHECK(c.hits != NULL);
                if (!c.hits) return;
                mo__parallel_for(n, grains[b], cover_chunk, &c);
                CHECK(!c.bad_bounds);
                for (size_t i = 0; i < n; i++) CHECK(c.hits[i] == 1);
                free(c.hits);
            }
    }
    CHECK(mo__parallel_chunks(10, 3) == 4);
    CHECK(mo__parallel_chunks(9, 3) == 3);
    CHECK(mo__parallel_chunks(0, 3) == 0);
    CHECK(mo__grain_for(1000, 10, 8) == 125);
    CHECK(mo__grain_for(1000, 200, 8) == 200);
}

/* A float sum whose rounding depends on the order: values spanning many magnitudes. */
static double sum_range(void *ctx, size_t lo, size_t hi)
{
    const float *x = ctx;
    double s = 0.0;
    for (size_t i = lo; i < hi; i++) s += (double)x[i];
    return s;
}

TEST(parallel_sum_same_bits_at_any_thread_count)
{
    const size_t n = 1000003;
    float *x = malloc(n * sizeof *x);
    CHECK(x != NULL);
    if (!x) return;
    uint32_t r = 12345;
    for (size_t i = 0; i < n; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (float)((int32_t)r) * 1e-3f * (float)(1 + i % 97);
    }
    CHECK_OK(mo_set_num_threads(1));
    const double one = mo__parallel_sum(n, 1000, sum_range, x);
    const int counts[] = {2, 3, 8};
    for (int k = 0; k < 3; k++) {
        CHECK_OK(mo_set_num_threads(counts[k]));
        for (int rep = 0; rep < 5; rep++) {
            const double v = mo__parallel_sum(n, 1000, sum_range, x);
            CHECK(memcmp(&v, &one, sizeof v) == 0);
        }
    }
    free(x);
}

/* Every full reduction of a float64 tensor of 300001 elements (5 chunks of 65536), as a
 * contiguous vector and as a transposed view, gives the same bits at 1, 2, 3 threads. */
static void full_reductions(const mo_tensor *t, double *vals, int *count)
{
    const mo_reduce_op ops[] = {MO_RED_SUM,  MO_RED_MEAN,      MO_RED_MAX,    MO_RED_MIN,
                                MO_RED_PROD, MO_RED_VAR,       MO_RED_STD,    MO_RED_NORM,
                                MO_RED_NORM, MO_RED_NORM,      MO_RED_LOGSUMEXP, MO_RED_ARGMAX,
                                MO_RED_ARGMIN, MO_RED_ANY,     MO_RED_ALL};
    const double ps[] = {2, 2, 2, 2, 2, 2, 2, 2, 3, INFINITY, 2, 2, 2, 2, 2};
    *count = 0;
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        const mo_reduce_args ra = {0, ps[k], 1.0, 0};
        mo_tensor out;
        mo_tensor_init(&out);
        CHECK_OK(mo_reduce(&out, NULL, t, MO_DIM_ALL, ops[k], &ra, NULL));
        vals[(*count)++] = *(const double *)mo_tensor_ptr(&out);
        mo_tensor_release(&out);
    }
}

TEST(full_reductions_same_bits_at_any_thread_count)
{
    const size_t shape[2] = {300001, 1}, tshape[2] = {547, 548};
    mo_tensor v, m;
    mo_tensor_init(&v);
    mo_tensor_init(&m);
    CHECK_OK(mo_tensor_empty_dtype(&v, 2, shape, MO_FLOAT64, NULL));
    CHECK_OK(mo_tensor_empty_dtype(&m, 2, tshape, MO_FLOAT64, NULL));
    double *x = mo_tensor_ptr(&v), *y = mo_tensor_ptr(&m);
    uint32_t r = 99;
    for (size_t i = 0; i < 300001; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (double)(int32_t)r * 1e-9 * (double)(1 + i % 13); /* magnitudes vary */
        if (i < 547 * 548) y[i] = 1.0 + x[i] * 1e-3;                /* near 1: prod */
    }
    mo_tensor mt;
    mo_tensor_init(&mt);
    CHECK_OK(mo_tensor_transpose(&mt, &m, 0, 1));
    double ref[2][16], got[16];
    int count = 0;
    CHECK_OK(mo_set_num_threads(1));
    full_reductions(&v, ref[0], &count);
    full_reductions(&mt, ref[1], &count);
    for (int t = 2; t <= 3; t++) {
        CHECK_OK(mo_set_num_threads(t));
        full_reductions(&v, got, &count);
        CHECK(memcmp(got, ref[0], (size_t)count * sizeof *got) == 0);
        full_reductions(&mt, got, &count);
        CHECK(memcmp(got, ref[1], (size_t)count * sizeof *got) == 0);
    }
    mo_tensor_release(&mt);
    mo_tensor_release(&v);
    mo_tensor_release(&m);
}

/* A chunk that itself calls parallel_for: the inner call runs inline. */
static void inner_chunk(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    (void)chunk;
    int *v = ctx;
    for (size_t i = lo; i < hi; i++) v[i] += 1;
}

static void outer_chunk(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    int *v = ctx;
    (void)lo, (void)hi;
    CHECK(mo__pool_threads() == 1);
    mo__parallel_for(100, 10, inner_chunk, v + chunk * 100);
}

TEST(nested_calls_run_inline)
{
    CHECK_OK(mo_set_num_threads(3));
    int *v = calloc(800, sizeof *v);
    CHECK(v != NULL);
    if (!v) return;
    mo__parallel_for(8, 1, outer_chunk, v);
    for (int i = 0; i < 800; i++) CHECK(v[i] == 1);
    free(v);
}

/* Several host threads submitting at once: each gets its own complete result. */
typedef struct host_job {
    int *v;
    size_t n;
    int ok;
} host_job;

static void *host_main(void *arg)
{
    host_job *j = arg;
    j->ok = 1;
    for (int rep = 0; rep < 50; rep++) {
        memset(j->v, 0, j->n * sizeof *j->v);
        mo__parallel_for(j->n, 997, inner_chunk, j->v);
        for (size_t i = 0; i < j->n; i++)
            if (j->v[i] != 1) j->ok = 0;
    }
    return NULL;
}

TEST(concurrent_submitters)
{
    CHECK_OK(mo_set_num_threads(2));
    enum { HOSTS = 4 };
    pthread_t th[HOSTS];
    host_job jobs[HOSTS];
    for (int h = 0; h < HOSTS; h++) {
        jobs[h].n = 50000 + (size_t)h;
        jobs[h].v = malloc(jobs[h].n * sizeof(int));
        CHECK(jobs[h].v != NULL);
        if (!jobs[h].v) return;
        CHECK(pthread_create(&th[h], NULL, host_main, &jobs[h]) == 0);
    }
    for (int h = 0; h < HOSTS; h++) {
        pthread_join(th[h], NULL);
        CHECK(jobs[h].ok);
        free(jobs[h].v);
    }
}

TEST(fork_child_gets_a_working_pool)
{
    CHECK_OK(mo_set_num_threads(3));
    int v[1000] = {0};
    mo__parallel_for(1000, 10, inner_chunk, v); /* the workers exist now */
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int w[1000] = {0};
        mo__parallel_for(1000, 10, inner_chunk, w);
        for (int i = 0; i < 1000; i++)
            if (w[i] != 1) _exit(1);
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < 1000; i++) CHECK(v[i] == 1);
}

TEST(set_and_get)
{
    CHECK_OK(mo_set_num_threads(3));
    CHECK(mo_get_num_threads() == 3);
    CHECK_STATUS(mo_set_num_threads(0), MO_ERR_ARG);
    CHECK_STATUS(mo_set_num_threads(-1), MO_ERR_ARG);
    CHECK_STATUS(mo_set_num_threads(MO_MAX_THREADS + 1), MO_ERR_ARG);
    CHECK(mo_get_num_threads() == 3); /* unchanged by the refused calls */
    CHECK_OK(mo_set_num_threads(1));
    CHECK(mo_get_num_threads() == 1);
}

TEST(env_rule)
{
    CHECK(mo__parse_num_threads("4") == 4);
    CHECK(mo__parse_num_threads("  2 ") == 2);
    CHECK(mo__parse_num_threads("1\n") == 1);
    CHECK(mo__parse_num_threads("1024") == MO_MAX_THREADS);
    CHECK(mo__parse_num_threads(NULL) == 0);
    CHECK(mo__parse_num_threads("") == 0);
    CHECK(mo__parse_num_threads("0") == 0);
    CHECK(mo__parse_num_threads("-2") == 0);
    CHECK(mo__parse_num_threads("+2") == 0);
    CHECK(mo__parse_num_threads("2x") == 0);
    CHECK(mo__parse_num_threads("2.5") == 0);
    CHECK(mo__parse_num_threads("abc") == 0);
    CHECK(mo__parse_num_threads("1025") == 0);
    CHECK(mo__parse_num_threads("99999999999999999999") == 0);
}

int main(void)
{
    RUN(every_item_once_with_the_fixed_partition);
    RUN(parallel_sum_same_bits_at_any_thread_count);
    RUN(full_reductions_same_bits_at_any_thread_count);
    RUN(nested_calls_run_inline);
    RUN(concurrent_submitters);
    RUN(fork_child_gets_a_working_pool);
    RUN(set_and_get);
    RUN(env_rule);
    return ctest_summary();
}
