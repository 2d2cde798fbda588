/*
 * threadpool.c - the one process-wide thread pool (POSIX threads) that the
 * kernels share; the API and how a kernel uses it are in threadpool.h, the
 * reasons (pthreads rather than OpenMP, why this is the core's one piece of
 * global mutable state and how it stays safe) in docs/design.md "Threads".
 *
 * Shape of the pool: P_size threads counting the submitter, so P_size - 1
 * workers, started lazily by the first kernel that has more than one chunk.
 * A job is (fn, ctx, n, grain); its chunks are handed out by one atomic
 * counter, so a worker that is descheduled (the machine is shared) simply takes
 * fewer chunks. The partition itself never changes with the thread count.
 *
 * One submitter at a time: a second host thread that calls a kernel while the
 * pool is busy fails the try-lock on P.submit and runs its chunks inline, so
 * concurrent lua_States never wait for each other and never oversubscribe.
 *
 * Job protocol (all under P.lock except running chunks):
 *   submitter: post fn..nchunks, next = 0, open = 1, gen++, wake the sleepers;
 *              run chunks; open = 0; wait until active == 0.
 *   worker:    on a new gen, if the job is open and its id < want: active++,
 *              run chunks, active--, signal `done` when the last one leaves a
 *              closed job. A worker that wakes after the job closed skips it,
 *              so a slow wake-up never delays the submitter.
 */
#include "moonopt_internal.h"
#include "threadpool.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef MO_HAVE_OPENBLAS
/* OpenBLAS's own setter (declared here: cblas.h differs between BLAS builds). */
void openblas_set_num_threads(int n);
#endif

static struct {
    pthread_mutex_t lock;   /* everything below except `next` */
    pthread_cond_t wake;    /* workers wait here for a new gen */
    pthread_cond_t done;    /* the submitter waits here for active == 0 */
    pthread_mutex_t submit; /* held by the one submitting thread */
    pthread_t threads[MO_MAX_THREADS];
    int nworkers;           /* started and not joined */
    int sleepers;           /* workers waiting on `wake` */
    atomic_int shutdown;
    atomic_ulong gen;       /* job counter (written under lock; spinning workers poll it) */
    int open, active, want; /* job accepting workers / workers in it / worker ids < want join */
    mo__chunk_fn fn;
    void *ctx;
    size_t n, grain, nchunks;
    atomic_size_t next;     /* the next chunk to hand out */
} P = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
       .done = PTHREAD_COND_INITIALIZER, .submit = PTHREAD_MUTEX_INITIALIZER};

/* The configured size; 0 until resolved (mo_set_num_threads, the environment, the cores). */
static atomic_int P_size;
/* Set while this thread runs chunks: a nested parallel_for runs inline. */
static _Thread_local int t_in_chunk;
static pthread_once_t P_atfork_once = PTHREAD_ONCE_INIT;

int mo__parse_num_threads(const char *s)
{
    if (!s) return 0;
    while (*s == ' ' || *s == '\t') s++;
    if (*s < '0' || *s > '9') return 0; /* also refuses a sign */
    long v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (*s - '0');
        if (v > MO_MAX_THREADS) return 0;
    }
    while (*s == ' ' || *s == '\t' || *s == '\n') s++;
    if (*s != '\0' || v < 1) return 0;
    return (int)v;
}

static int online_cores(void)
{
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    if (c < 1) return 1;
    return c > MO_MAX_THREADS ? MO_MAX_THREADS : (int)c;
}

/*
 * OpenBLAS stays single-threaded for good: its own threading splits a product by
 * the thread count, which changes the bits of some products (issue 14). matmul.c
 * cuts large products into fixed chunks and runs them on this pool instead
 * (docs/design.md "Threads"). Applied once, before the pool's size is first set
 * or resolved, so no BLAS call made through moonopt sees OpenBLAS's default.
 */
static pthread_once_t P_blas_once = PTHREAD_ONCE_INIT;

static void blas_single(void)
{
#ifdef MO_HAVE_OPENBLAS
    openblas_set_num_threads(1);
#endif
    /* another BLAS sizes itself (its own environment variables) */
}

static int pool_size(void)
{
    int n = atomic_load_explicit(&P_size, memory_order_relaxed);
    if (n > 0) return n;
    (void)pthread_once(&P_blas_once, blas_single);
    const int env = mo__parse_num_threads(getenv("MOONOPT_NUM_THREADS"));
    int expected = 0;
    atomic_compare_exchange_strong(&P_size, &expected, env ? env : online_cores());
    return atomic_load(&P_size);
}

mo_status mo_set_num_threads(int n)
{
    if (n < 1 || n > MO_MAX_THREADS) return MO_ERR_ARG;
    (void)pthread_once(&P_blas_once, blas_single);
    atomic_store(&P_size, n);
    return MO_OK;
}

int mo_get_num_threads(void) { return pool_size(); }

int mo__pool_threads(void) { return t_in_chunk ? 1 : pool_size(); }

size_t mo__parallel_chunks(size_t n, size_t grain)
{
    if (grain == 0) grain = 1;
    return n / grain + (n % grain != 0);
}

size_t mo__grain_for(size_t n, size_t grain, size_t max_chunks)
{
    if (grain == 0) grain = 1;
    if (max_chunks == 0) max_chunks = 1;
    const size_t g = n / max_chunks + (n % max_chunks != 0);
    return g > grain ? g : grain;
}

/* Takes chunks until none is left (the submitter and the workers alike). */
static void run_chunks(mo__chunk_fn fn, void *ctx, size_t n, size_t grain, size_t nchunks)
{
    t_in_chunk = 1;
    for (;;) {
        const size_t k = atomic_fetch_add_explicit(&P.next, 1, memory_order_relaxed);
        if (k >= nchunks) break;
        const size_t lo = k * grain, hi = n - lo > grain ? lo + grain : n;
        fn(ctx, k, lo, hi);
    }
    t_in_chunk = 0;
}

/*
 * After a job a worker polls for the next one for a short while (about 50 us: kernels
 * come in bursts, e.g. the ops of one training step, and a sleeping thread takes tens of
 * microseconds to wake), then sleeps on the condition variable.
 */
#define SPIN_POLLS 2000

static void cpu_relax(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *arg)
{
    const int id = (int)(intptr_t)arg;
    pthread_mutex_lock(&P.lock);
    unsigned long seen = P.gen;
    for (;;) {
        if (P.gen == seen && !P.shutdown) {
            pthread_mutex_unlock(&P.lock);
            for (int k = 0; k < SPIN_POLLS; k++) {
                if (atomic_load_explicit(&P.gen, memory_order_relaxed) != seen) break;
                cpu_relax();
            }
            pthread_mutex_lock(&P.lock);
        }
        while (P.gen == seen && !P.shutdown) {
            P.sleepers++;
            pthread_cond_wait(&P.wake, &P.lock);
            P.sleepers--;
        }
        if (P.shutdown) break;
        seen = P.gen;
        if (!P.open || id >= P.want) continue;
        P.active++;
        mo__chunk_fn fn = P.fn;
        void *ctx = P.ctx;
        const size_t n = P.n, grain = P.grain, nchunks = P.nchunks;
        pthread_mutex_unlock(&P.lock);
        run_chunks(fn, ctx, n, grain, nchunks);
        pthread_mutex_lock(&P.lock);
        if (--P.active == 0 && !P.open) pthread_cond_signal(&P.done);
    }
    pthread_mutex_unlock(&P.lock);
    return NULL;
}

/* In a child after fork the workers do not exist and the locks may be held by threads
 * that do not exist either: start from nothing (the threads array is just forgotten). */
static void atfork_child(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    P.lock = m;
    P.submit = m;
    P.wake = c;
    P.done = c;
    P.nworkers = 0;
    P.sleepers = 0;
    P.shutdown = 0;
    P.open = 0;
    P.active = 0;
}

static void register_atfork(void) { (void)pthread_atfork(NULL, NULL, atfork_child); }

/* Starts workers up to `want` (fewer if the system refuses threads); returns how many
 * exist. Workers block every signal: a host's handlers keep running in its own threads. */
static int ensure_workers(int want)
{
    pthread_once(&P_atfork_once, register_atfork);
    pthread_mutex_lock(&P.lock);
    if (P.nworkers < want) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        while (P.nworkers < want &&
               pthread_create(&P.threads[P.nworkers], NULL, worker_main,
                              (void *)(intptr_t)P.nworkers) == 0)
            P.nworkers++;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    const int have = P.nworkers < want ? P.nworkers : want;
    pthread_mutex_unlock(&P.lock);
    return have;
}

void mo__parallel_for(size_t n, size_t grain, mo__chunk_fn fn, void *ctx)
{
    if (grain == 0) grain = 1;
    const size_t nchunks = mo__parallel_chunks(n, grain);
    if (nchunks == 0) return;
    int threads = 1;
    if (nchunks > 1 && !t_in_chunk) threads = pool_size();
    if (threads <= 1 || pthread_mutex_trylock(&P.submit) != 0) {
        /* inline: the same chunks, in order */
        for (size_t k = 0; k < nchunks; k++)
            fn(ctx, k, k * grain, n - k * grain > grain ? (k + 1) * grain : n);
        return;
    }
    const int want = (size_t)(threads - 1) < nchunks - 1 ? threads - 1 : (int)(nchunks - 1);
    const int have = ensure_workers(want);
    pthread_mutex_lock(&P.lock);
    P.fn = fn;
    P.ctx = ctx;
    P.n = n;
    P.grain = grain;
    P.nchunks = nchunks;
    atomic_store_explicit(&P.next, 0, memory_order_relaxed);
    P.want = have;
    P.open = 1;
    P.gen++;
    if (P.sleepers > 0) pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.lock);

    run_chunks(fn, ctx, n, grain, nchunks);

    pthread_mutex_lock(&P.lock);
    P.open = 0;
    while (P.active > 0) pthread_cond_wait(&P.done, &P.lock);
    pthread_mutex_unlock(&P.lock);
    pthread_mutex_unlock(&P.submit);
}

/* ---- a double sum with partials in chunk order ---- */

enum { SUM_MAX_CHUNKS = 256 };

typedef struct sum_job {
    double (*fn)(void *ctx, size_t lo, size_t hi);
    void *ctx;
    double part[SUM_MAX_CHUNKS];
} sum_job;

static void sum_chunk(void *ctx, size_t chunk, size_t lo, size_t hi)
{
    sum_job *j = ctx;
    j->part[chunk] = j->fn(j->ctx, lo, hi);
}

double mo__parallel_sum(size_t n, size_t grain, double (*fn)(void *ctx, size_t lo, size_t hi),
                        void *ctx)
{
    grain = mo__grain_for(n, grain, SUM_MAX_CHUNKS);
    const size_t nchunks = mo__parallel_chunks(n, grain);
    sum_job j;
    j.fn = fn;
    j.ctx = ctx;
    mo__parallel_for(n, grain, sum_chunk, &j);
    double acc = 0.0;
    for (size_t k = 0; k < nchunks; k++) acc += j.part[k];
    return acc;
}

/* ---- unloading ---- */

/*
 * When the library is unloaded (dlclose of the Lua module by lua_close, or the process
 * exiting) the workers are told to stop and joined: a worker must never wake up in
 * unmapped code. GCC and Clang only; elsewhere idle workers simply end with the process.
 */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((destructor)) static void pool_unload(void)
{
    pthread_mutex_lock(&P.lock);
    const int n = P.nworkers;
    P.shutdown = 1;
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.lock);
    for (int i = 0; i < n; i++) pthread_join(P.threads[i], NULL);
    pthread_mutex_lock(&P.lock);
    P.nworkers = 0;
    P.shutdown = 0;
    pthread_mutex_unlock(&P.lock);
}
#endif
