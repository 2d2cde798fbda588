/*
 * threadpool.h - the one thread pool every kernel shares (core/threadpool.c);
 * not installed. See docs/design.md "Threads".
 *
 * How a kernel uses it
 * --------------------
 * Cut the work into n items (elements, output values, rows ...) and hand a
 * chunk function to mo__parallel_for with a grain:
 *
 *     typedef struct { float *w; const float *g; float lr; } sgd_ctx;
 *     static void sgd_chunk(void *ctx, size_t chunk, size_t lo, size_t hi)
 *     {
 *         const sgd_ctx *c = ctx;
 *         (void)chunk;
 *         for (size_t i = lo; i < hi; i++) c->w[i] -= c->lr * c->g[i];
 *     }
 *     ...
 *     sgd_ctx c = {w, g, lr};
 *     mo__parallel_for(n, MO__GRAIN_STREAM, sgd_chunk, &c);
 *
 * The partition is FIXED: chunk k is [k * grain, min(n, (k + 1) * grain)),
 * there are mo__parallel_chunks(n, grain) of them, and it depends only on n and
 * grain, never on the thread count or on which thread runs a chunk. A chunk runs
 * exactly once; chunks run concurrently in any order, so they must write
 * disjoint memory. Everything written by the chunks is visible to the caller
 * when mo__parallel_for returns.
 *
 * Reductions: give each chunk its own partial (partials[chunk]) and combine the
 * partials IN CHUNK ORDER after the call; the result is then bit-identical at
 * any thread count (mo__parallel_sum does this for a double sum). Keep the
 * number of chunks bounded for a stack array by choosing the grain from n
 * (mo__grain_for(n, grain, max_chunks)), which is still a function of n alone.
 *
 * One chunk (n <= grain), a pool of size 1, a call from inside a chunk (nested),
 * or a call while another host thread is using the pool: the chunks run inline
 * in the calling thread, in order, with no locking beyond one try-lock. The
 * chunk function must not fail; validate and allocate before calling.
 */
#ifndef MOONOPT_THREADPOOL_H
#define MOONOPT_THREADPOOL_H

#include <stddef.h>

/* A chunk: items [lo, hi) of n, chunk index `chunk` (0-based, lo = chunk * grain). */
typedef void (*mo__chunk_fn)(void *ctx, size_t chunk, size_t lo, size_t hi);

/*
 * Grains measured on this project's machines (docs/design.md "Threads"): below
 * about two chunks of these sizes a thread's wake-up costs more than it saves.
 * STREAM: memory-bound elementwise work (a float add, an optimizer step), in
 * elements; HEAVY: elementwise work with a libm call per element (exp, tanh).
 */
#define MO__GRAIN_STREAM ((size_t)32768)
#define MO__GRAIN_HEAVY ((size_t)4096)

/* The number of chunks of n items at this grain: ceil(n / grain) (grain 0 counts as 1). */
size_t mo__parallel_chunks(size_t n, size_t grain);

/* max(grain, ceil(n / max_chunks)): a grain giving at most max_chunks chunks. */
size_t mo__grain_for(size_t n, size_t grain, size_t max_chunks);

/* Runs fn over every chunk of n items at this grain, on the pool's threads. */
void mo__parallel_for(size_t n, size_t grain, mo__chunk_fn fn, void *ctx);

/* The sum of fn(ctx, lo, hi) over the chunks, added in chunk order (starting from 0.0).
 * At most 256 chunks: the grain is raised with mo__grain_for when n needs it. */
double mo__parallel_sum(size_t n, size_t grain, double (*fn)(void *ctx, size_t lo, size_t hi),
                        void *ctx);

/*
 * The strided iterator in parallel (defined in ops.c, next to mo__iter): the
 * it->rows * it->n elements in row-major order are cut into chunks of `grain`
 * elements, and fn gets each chunk's pieces of rows in order, with the chunk's
 * index and the piece's position (the flat row-major index of its first
 * element; a chunk's first piece has pos == chunk * grain). A piece is a
 * mo__iter whose nops, n, inner[] and p[] are set (p at the piece's first
 * element, n its length); nothing else of it is. it is not changed.
 */
struct mo__iter;
typedef void (*mo__row_fn)(void *ctx, size_t chunk, size_t pos, const struct mo__iter *piece);
void mo__iter_parallel(const struct mo__iter *it, size_t grain, mo__row_fn fn, void *ctx);

/* The thread count a parallel_for would use now (the pool's size; 1 inside a chunk). */
int mo__pool_threads(void);

/* MOONOPT_NUM_THREADS's rule: a decimal integer in [1, MO_MAX_THREADS], blanks around it
 * allowed; anything else (NULL, empty, 0, negative, junk after the digits, too large)
 * gives 0, "not set". */
int mo__parse_num_threads(const char *s);

#endif
