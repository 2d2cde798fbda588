/*
 * print.c - tostring(t) / print(t): a readable tensor, in torch7's layout.
 *
 *       1.5000   2.0000  -3.2500         a 2-d tensor: one line per row,
 *       4.0000   5.0000   6.0000         columns right-aligned to one width
 *     [moonopt.Tensor float32 of size {2, 3}]
 *
 * A 1-d tensor is one row; a 0-d tensor its value; an empty one only the last line.
 * 3-d and more: one matrix per index of the leading dims, labelled "(1,2,.,.) =" (1-based).
 * Numbers share one format chosen from every value shown: integers when all are
 * integral, else fixed "%.4f", or "%.4e" when the magnitudes span more than 1e4 or reach
 * outside [1e-4, 1e8). With more than 1000 elements, every dimension longer than 6 shows
 * its first and last three indices around "..." (PyTorch's edge items). A row wider than
 * 80 characters is split into blocks of columns, each headed "Columns 1 to 8" (a 1-d
 * tensor simply continues on the next line).
 */
#include "binding.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { PR_EDGE = 3, PR_THRESHOLD = 1000, PR_WIDTH = 80 };

typedef enum { PR_INT, PR_FIXED, PR_SCI } pr_mode;

/* Which indices are shown: all of a dimension, or its first and last PR_EDGE. */
typedef struct pr_plan {
    int ndim;
    size_t shape[MO_MAX_DIMS];
    size_t cnt[MO_MAX_DIMS]; /* indices shown per dimension */
    size_t nshown;           /* product of cnt */
} pr_plan;

/* The actual 0-based index of the j-th shown index of dimension d. */
static size_t pick(const pr_plan *p, int d, size_t j)
{
    return p->cnt[d] == p->shape[d] || j < PR_EDGE ? j : p->shape[d] - 2 * PR_EDGE + j;
}

/* Whether "..." follows the j-th shown index of dimension d. */
static int gap_after(const pr_plan *p, int d, size_t j)
{
    return p->cnt[d] < p->shape[d] && j == PR_EDGE - 1;
}

static void make_plan(pr_plan *p, const mo_tensor *t)
{
    const int elide = t->numel > PR_THRESHOLD;
    p->ndim = t->ndim;
    p->nshown = 1;
    for (int d = 0; d < t->ndim; d++) {
        p->shape[d] = t->shape[d];
        p->cnt[d] = elide && t->shape[d] > 2 * PR_EDGE ? 2 * PR_EDGE : t->shape[d];
        p->nshown *= p->cnt[d];
    }
}

/* Copies the shown values of t (row-major over the shown grid) into v. */
static void copy_shown(const pr_plan *p, const mo_tensor *t, double *v)
{
    const char *base = mo_tensor_ptr(t);
    const size_t es = mo_dtype_size(t->dtype);
    size_t j[MO_MAX_DIMS] = {0};
    for (size_t k = 0; k < p->nshown; k++) {
        ptrdiff_t off = 0;
        for (int d = 0; d < p->ndim; d++) off += (ptrdiff_t)pick(p, d, j[d]) * t->stride[d];
        const char *e = base + off * (ptrdiff_t)es;
        v[k] = t->dtype == MO_FLOAT64 ? *(const double *)(const void *)e
                                      : (double)*(const float *)(const void *)e;
        for (int d = p->ndim - 1; d >= 0; d--) {
            if (++j[d] < p->cnt[d]) break;
            j[d] = 0;
        }
    }
}

/* One number in the chosen mode, unpadded. */
static void fmt_num(char *buf, size_t size, double x, pr_mode mode)
{
    if (isnan(x))
        snprintf(buf, size, "nan");
    else if (isinf(x))
        snprintf(buf, size, x > 0 ? "inf" : "-inf");
    else
        snprintf(buf, size, mode == PR_INT ? "%.0f" : mode == PR_FIXED ? "%.4f" : "%.4e", x);
}

/* The mode that suits every value, and the width of the widest one in it. */
static pr_mode choose_mode(const double *v, size_t n, int *width)
{
    int integral = 1;
    double lo = HUGE_VAL, hi = 0.0; /* smallest nonzero and largest magnitude */
    for (size_t k = 0; k < n; k++) {
        if (!isfinite(v[k])) continue;
        const double a = fabs(v[k]);
        if (v[k] != floor(v[k])) integral = 0;
        if (a > hi) hi = a;
        if (a > 0 && a < lo) lo = a;
    }
    pr_mode mode = PR_FIXED;
    if (integral && hi < 1e9)
        mode = PR_INT;
    else if (hi >= 1e8 || (lo < HUGE_VAL && (lo < 1e-4 || hi / lo > 1e4)))
        mode = PR_SCI;
    *width = 1;
    for (size_t k = 0; k < n; k++) {
        char buf[64];
        fmt_num(buf, sizeof buf, v[k], mode);
        const int w = (int)strlen(buf);
        if (w > *width) *width = w;
    }
    return mode;
}

typedef struct pr_out {
    luaL_Buffer *b;
    const pr_plan *p;
    pr_mode mode;
    int width;
} pr_out;

static void put_num(const pr_out *o, double x)
{
    char num[64], cell[80];
    fmt_num(num, sizeof num, x, o->mode);
    snprintf(cell, sizeof cell, "  %*s", o->width, num);
    luaL_addstring(o->b, cell);
}

/* Shown columns c0..c1-1 of `rows` shown rows (row r at m + r * cols); rd is the dim
 * the rows run along (-1 for a 1-d tensor), cd the columns' dim. */
static void emit_rows(const pr_out *o, const double *m, size_t rows, size_t cols, int rd, int cd,
                      size_t c0, size_t c1)
{
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = c0; c < c1; c++) {
            put_num(o, m[r * cols + c]);
            if (gap_after(o->p, cd, c) && c + 1 < c1) luaL_addstring(o->b, "  ...");
        }
        luaL_addchar(o->b, '\n');
        if (rd >= 0 && gap_after(o->p, rd, r)) luaL_addstring(o->b, "  ...\n");
    }
}

/* A matrix (or one row), split into column blocks when a row would pass PR_WIDTH. */
static void emit_matrix(const pr_out *o, const double *m, size_t rows, size_t cols, int rd,
                        int cd)
{
    const size_t per = (size_t)(PR_WIDTH / (o->width + 2)) > 0 ? (size_t)(PR_WIDTH / (o->width + 2)) : 1;
    if (cols <= per) {
        emit_rows(o, m, rows, cols, rd, cd, 0, cols);
        return;
    }
    for (size_t c0 = 0; c0 < cols; c0 += per) {
        const size_t c1 = c0 + per < cols ? c0 + per : cols;
        if (rd < 0) { /* a 1-d tensor: plain continuation lines */
            emit_rows(o, m, 1, cols, rd, cd, c0, c1);
            continue;
        }
        lua_pushfstring(o->b->L, "%sColumns %I to %I\n", c0 ? "\n" : "",
                        (lua_Integer)pick(o->p, cd, c0) + 1, (lua_Integer)pick(o->p, cd, c1 - 1) + 1);
        luaL_addvalue(o->b);
        emit_rows(o, m, rows, cols, rd, cd, c0, c1);
    }
}

/* 3-d and more: one labelled matrix per shown index of the leading dims. */
static void emit_slices(const pr_out *o, const double *v)
{
    const pr_plan *p = o->p;
    const int lead = p->ndim - 2;
    const size_t rows = p->cnt[lead], cols = p->cnt[lead + 1], per = rows * cols;
    size_t j[MO_MAX_DIMS] = {0};
    for (size_t s = 0; per > 0 && s < p->nshown / per; s++) {
        luaL_addchar(o->b, '(');
        for (int d = 0; d < lead; d++) {
            lua_pushfstring(o->b->L, "%I,", (lua_Integer)pick(p, d, j[d]) + 1);
            luaL_addvalue(o->b);
        }
        luaL_addstring(o->b, ".,.) =\n");
        emit_matrix(o, v + s * per, rows, cols, lead, lead + 1);
        luaL_addchar(o->b, '\n');
        for (int d = lead - 1; d >= 0; d--) { /* the next slice; "..." past an elided gap */
            const int gap = gap_after(p, d, j[d]);
            if (++j[d] < p->cnt[d]) {
                if (gap) luaL_addstring(o->b, "...\n\n");
                break;
            }
            j[d] = 0;
        }
    }
}

static void emit_trailer(luaL_Buffer *b, mo_dtype dt, int ndim, const size_t *shape)
{
    char s[MO__SHAPE_BUF];
    luaL_addstring(b, "[" MO_TENSOR_MT " ");
    luaL_addstring(b, mo_dtype_name(dt));
    luaL_addstring(b, " of size ");
    luaL_addstring(b, mo__shapestr_raw(ndim, shape, s));
    luaL_addchar(b, ']');
}

int mo__tensor_tostring(lua_State *L)
{
    mo_tensor *t = mo__totensor(L, 1);
    if (t == NULL) return mo__typeerror(L, 1, "__tostring", MO_TENSOR_MT);
    if (!mo_tensor_alive(t)) {
        lua_pushliteral(L, MO_TENSOR_MT " (freed)");
        return 1;
    }
    pr_plan p;
    make_plan(&p, t);
    const mo_dtype dt = t->dtype;
    /* the shown values go to a userdata first; allocating it may run a finalizer that
     * frees or re-points t, so t is checked again, and never read after the copy */
    double *v = lua_newuserdatauv(L, (p.nshown ? p.nshown : 1) * sizeof *v, 0);
    t = mo__recheck(L, 1, "__tostring", p.ndim, p.shape);
    if (t->numel > 0) copy_shown(&p, t, v);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (t->numel > 0) {
        pr_out o = {&b, &p, PR_FIXED, 1};
        o.mode = choose_mode(v, p.nshown, &o.width);
        if (p.ndim == 0) {
            put_num(&o, v[0]);
            luaL_addchar(&b, '\n');
        } else if (p.ndim == 1) {
            emit_matrix(&o, v, 1, p.cnt[0], -1, 0);
        } else if (p.ndim == 2) {
            emit_matrix(&o, v, p.cnt[0], p.cnt[1], 0, 1);
        } else {
            emit_slices(&o, v);
        }
    }
    emit_trailer(&b, dt, p.ndim, p.shape);
    luaL_pushresult(&b);
    return 1;
}
