/*
 * moonopt_internal.h - helpers shared by the core's .c files; not installed.
 * Private names use the mo__ prefix (or are static).
 */
#ifndef MOONOPT_INTERNAL_H
#define MOONOPT_INTERNAL_H

#include "moonopt.h"

/* Return the status of `expr` from the enclosing function unless it is MO_OK. */
#define MO_TRY(expr)                          \
    do {                                      \
        mo_status mo__st = (expr);            \
        if (mo__st != MO_OK) return mo__st;   \
    } while (0)

/* ---- strided N-d iteration (defined in ops.c) -------------------------- */

/*
 * Walks up to MO__ITER_MAX tensors of ONE logical shape together, row by row,
 * in row-major (logical) order. Dimensions of size 1 are dropped and adjacent
 * dimensions that are contiguous with each other in EVERY operand are merged,
 * so contiguous operands give a single row of numel elements (the fast path)
 * and e.g. a narrowed matrix gives one row per matrix row.
 *
 *     mo__iter it;
 *     const mo_tensor *ops[2] = {out, a};
 *     mo__iter_init(&it, 2, ops);
 *     for (size_t r = 0; r < it.rows; r++, mo__iter_next(&it))
 *         kernel(it.p[0], it.inner[0], it.p[1], it.inner[1], it.n);
 *
 * The element k of the current row of operand j is ((T *)it.p[j])[k * it.inner[j]],
 * T being the operand's element type (strides and inner are in elements; the
 * iterator steps each pointer by its own operand's element size, so operands
 * of different dtypes may be walked together, as mo_copy's conversion does).
 * Operands must be alive and have the same shape (callers check both).
 */
#define MO__ITER_MAX 4

typedef struct mo__iter {
    int nops;
    int ndim;                                  /* merged dims, >= 1; the last is the row */
    size_t n;                                  /* row length (elements) */
    size_t rows;                               /* rows to visit (0 when numel == 0) */
    size_t shape[MO_MAX_DIMS];                 /* merged shape, ndim entries */
    size_t idx[MO_MAX_DIMS];                   /* the current row's index in dims 0..ndim-2 */
    ptrdiff_t stride[MO__ITER_MAX][MO_MAX_DIMS];
    ptrdiff_t inner[MO__ITER_MAX];             /* stride along the row, per operand */
    size_t esize[MO__ITER_MAX];                /* bytes per element, per operand */
    void *p[MO__ITER_MAX];                     /* the current row's first element, per operand */
} mo__iter;

void mo__iter_init(mo__iter *it, int nops, const mo_tensor *const *ts);
/* Moves to the next row; returns 0 (pointers back at the start) after the last. */
int mo__iter_next(mo__iter *it);

/* ---- broadcasting (defined in broadcast.c) ---------------------------- */

/*
 * Whether src broadcasts to the shape (ndim sizes): src's dims, aligned at the
 * last, are each 1 or the same size, and src has no more dims than the shape.
 */
int mo__broadcasts_to(const mo_tensor *src, int ndim, const size_t *shape);
/*
 * Fills *view with a shallow view of src at the given shape: the same storage
 * and first element, stride 0 along the dims src lacks or has of size 1 (so one
 * element of src is read for every index there; nothing is copied). *view
 * holds no reference: it is for the iterator within one core call, never to
 * be released or to outlive src. src must pass mo__broadcasts_to.
 */
void mo__broadcast_view(mo_tensor *view, const mo_tensor *src, int ndim, const size_t *shape);

/* MO_ERR_ARG if any of the n handles is NULL, else MO_ERR_FREED if any is dead. */
mo_status mo__check_live(int n, const mo_tensor *const *ts);

/* MO_ERR_DTYPE unless the n handles (non-NULL) all have ts[0]'s dtype. */
mo_status mo__check_dtypes(int n, const mo_tensor *const *ts);

/*
 * Two dtypes, one kernel source (docs/design.md "Two dtypes"). A file's
 * dtype-generic kernels live in a template header "<file>_t.h", written once
 * in plain C over the element type T, with every function name wrapped in
 * TN(name). The .c file includes it once per dtype:
 *
 *     #define T float
 *     #define TN(name) name##_f32
 *     #include "ops_t.h"            // the header #undefs T and TN at its end
 *     #define T double
 *     #define TN(name) name##_f64
 *     #include "ops_t.h"
 *
 * and dispatches on t->dtype once per call (or per row), outside the loops.
 * Math in a template uses <tgmath.h>'s names (exp, sqrt, fabs, pow), which
 * become expf/sqrtf/fabsf/powf for float and exp/sqrt/... for double, so the
 * float32 instance is the very code that existed before float64.
 */

/* Whether the memory spans of a and b intersect (conservative: span, not elements). */
int mo__overlaps(const mo_tensor *a, const mo_tensor *b);

/* Same first element, shape and strides (ignoring dims of size 1): in-place safe. */
int mo__same_layout(const mo_tensor *a, const mo_tensor *b);

/*
 * out = s * out (in place, any strides), with s == 0 writing zeros so NaN or
 * Inf in out does not leak (BLAS's beta == 0 rule); s == 1 leaves out alone.
 */
mo_status mo__scale(mo_tensor *out, double s);

/*
 * Slice i of t along dim (one dimension less) as a handle that takes NO reference: for
 * use inside one call while t keeps the storage alive; never released (index.c).
 */
mo_tensor mo__borrowed_slice(const mo_tensor *t, int dim, size_t i);

#if defined(__GNUC__)
#define MO__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MO__PRINTF(f, a)
#endif

/*
 * Writes a message about a problem into the caller's buffer, when it gave one
 * (why may be NULL or why_size 0): the file readers' "why" out-parameters.
 */
void mo__say(char *why, size_t why_size, const char *fmt, ...) MO__PRINTF(3, 4);

#endif /* MOONOPT_INTERNAL_H */
