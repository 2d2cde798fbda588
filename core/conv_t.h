/*
 * conv_t.h - the dtype-generic loops of conv.c (im2col, col2im, bias, row sums),
 * written once over T and included by conv.c once per dtype; see
 * moonopt_internal.h and docs/design.md "Two dtypes". The matrix products go
 * through mo_matmul, which dispatches on the dtype itself. No include guard on
 * purpose; T and TN are #undef'd at the end.
 *
 * Every function takes void pointers so that conv.c can pick one table of
 * them per call (TN(conv_ops) at the end) and never dispatch inside a loop.
 */
#if !defined(T) || !defined(TN)
#error "define T and TN before including conv_t.h"
#endif

/* p[0..n) = 0. The zero runs of im2col / col2im are mostly the padding columns of a tap:
 * one element (3x3, padding 1) or none, stored here inline (a plain loop would be turned
 * into a memset call by GCC, which costs more than one or two stores); longer runs (the
 * padding rows) go to memset. */
static inline void TN(zero_few)(T *p, size_t n)
{
    if (n == 0) return;
    p[0] = 0;
    if (n == 1) return;
    p[1] = 0;
    if (n > 2) memset(p + 2, 0, (n - 2) * sizeof(T));
}

/*
 * One row of col for a stride-1 tap whose output rows are as long as the input's (OW ==
 * W, the usual "same" convolution): output rows h0..h1-1 read ONE contiguous run of the
 * plane, from the first valid element of the first row to the last valid element of the
 * last row, so it is copied in one go and the few columns outside [w0, w1) of each row
 * (which the run wrapped in from the neighbouring input rows) are zeroed afterwards.
 */
static void TN(im2col_rows_same)(T *row, const T *xc, size_t OW, size_t h0, size_t h1,
                                 ptrdiff_t offh, ptrdiff_t offw, size_t w0, size_t w1)
{
    const size_t from = (size_t)(((ptrdiff_t)h0 + offh) * (ptrdiff_t)OW + offw + (ptrdiff_t)w0);
    const size_t n = (h1 - h0 - 1) * OW + w1 - w0;
    memcpy(row + h0 * OW + w0, xc + from, n * sizeof(T));
    TN(zero_few)(row + h0 * OW, w0);
    for (size_t oh = h0; oh + 1 < h1; oh++) /* row oh's tail and row oh+1's head: one run */
        TN(zero_few)(row + oh * OW + w1, OW - w1 + w0);
    TN(zero_few)(row + (h1 - 1) * OW + w1, OW - w1);
}

/* The general row: output rows h0..h1-1, columns w0..w1-1 read from the plane. */
static void TN(im2col_rows)(T *row, const T *xc, const conv_geom *g, size_t h0, size_t h1,
                            ptrdiff_t offh, ptrdiff_t offw, size_t w0, size_t w1)
{
    const size_t OW = g->ow;
    const ptrdiff_t sw = (ptrdiff_t)g->sw;
    for (size_t oh = h0; oh < h1; oh++) {
        T *r = row + oh * OW;
        const T *src = xc + (size_t)((ptrdiff_t)(oh * g->sh) + offh) * g->w;
        TN(zero_few)(r, w0);
        if (sw == 1) {
            for (size_t ow = w0; ow < w1; ow++) r[ow] = src[(ptrdiff_t)ow + offw];
        } else {
            for (size_t ow = w0; ow < w1; ow++) r[ow] = src[(ptrdiff_t)ow * sw + offw];
        }
        TN(zero_few)(r + w1, OW - w1);
    }
}

/*
 * col {C*kH*kW, OH*OW} from the planes x {C, H, W}: row (c*kH + i)*kW + j, column
 * oh*OW + ow holds x[c][oh*sh - ph + i*dh][ow*sw - pw + j*dw], 0 outside the input.
 * The valid output rows and columns of each tap are computed once (win_range) so
 * the inner loops have no bounds tests.
 */
static void TN(im2col)(const void *xv, const conv_geom *g, size_t C, void *colv)
{
    const T *x = xv;
    T *col = colv;
    const size_t OH = g->oh, OW = g->ow, P = OH * OW, plane = g->h * g->w;
    const int same = g->sh == 1 && g->sw == 1 && OW == g->w;
    for (size_t c = 0; c < C; c++) {
        const T *xc = x + c * plane;
        for (size_t i = 0; i < g->kh; i++) {
            const ptrdiff_t offh = (ptrdiff_t)(i * g->dh) - (ptrdiff_t)g->ph;
            size_t h0, h1; /* output rows whose input row is inside */
            win_range(OH, g->sh, offh, g->h, &h0, &h1);
            for (size_t j = 0; j < g->kw; j++) {
                T *row = col + ((c * g->kh + i) * g->kw + j) * P;
                const ptrdiff_t offw = (ptrdiff_t)(j * g->dw) - (ptrdiff_t)g->pw;
                size_t w0, w1;
                win_range(OW, g->sw, offw, g->w, &w0, &w1);
                TN(zero_few)(row, h0 * OW);
                if (same && h1 > h0 && w1 > w0)
                    TN(im2col_rows_same)(row, xc, OW, h0, h1, offh, offw, w0, w1);
                else
                    TN(im2col_rows)(row, xc, g, h0, h1, offh, offw, w0, w1);
                TN(zero_few)(row + h1 * OW, (OH - h1) * OW);
            }
        }
    }
}

/* d[k] += s[k] for k < n. Blocks of eight: GCC's -O2 vectorizes such a fixed-size block
 * (SLP) but not a loop whose count is known only at run time. */
static void TN(add_run)(T *restrict d, const T *restrict s, size_t n)
{
    size_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (size_t j = 0; j < 8; j++) d[k + j] += s[k + j];
    for (; k < n; k++) d[k] += s[k];
}

/*
 * The adjoint of TN(im2col_rows_same): one row of col (output rows h0..h1-1 valid,
 * columns w0..w1-1) added into the plane gc as ONE contiguous run. The run also covers
 * the columns outside [w0, w1) of its inner rows, which belong to no input pixel of this
 * row: they are zeroed in col first (col is scratch), so they add +0 (exact: gc was
 * zeroed and a sum of floats starting at +0 is never -0). Each pixel of gc thus gets
 * the same contributions in the same order as with the row-by-row loop.
 */
static void TN(col2im_rows_same)(T *row, T *gc, size_t OW, size_t h0, size_t h1,
                                 ptrdiff_t offh, ptrdiff_t offw, size_t w0, size_t w1)
{
    for (size_t oh = h0; oh + 1 < h1; oh++) /* row oh's tail and row oh+1's head: one run */
        TN(zero_few)(row + oh * OW + w1, OW - w1 + w0);
    const size_t to = (size_t)(((ptrdiff_t)h0 + offh) * (ptrdiff_t)OW + offw + (ptrdiff_t)w0);
    TN(add_run)(gc + to, row + h0 * OW + w0, (h1 - h0 - 1) * OW + w1 - w0);
}

/* The general row: output rows h0..h1-1, columns w0..w1-1 added into the plane. */
static void TN(col2im_rows)(const T *row, T *gc, const conv_geom *g, size_t h0, size_t h1,
                            ptrdiff_t offh, ptrdiff_t offw, size_t w0, size_t w1)
{
    const size_t OW = g->ow;
    const ptrdiff_t sw = (ptrdiff_t)g->sw;
    for (size_t oh = h0; oh < h1; oh++) {
        const T *r = row + oh * OW;
        T *dst = gc + (size_t)((ptrdiff_t)(oh * g->sh) + offh) * g->w;
        if (sw == 1) {
            TN(add_run)(dst + (ptrdiff_t)w0 + offw, r + w0, w1 - w0);
        } else {
            for (size_t ow = w0; ow < w1; ow++) dst[(ptrdiff_t)ow * sw + offw] += r[ow];
        }
    }
}

/*
 * The adjoint of im2col: gx {C, H, W} += col {C*kH*kW, OH*OW} scattered back. col is
 * scratch: the "same" case zeroes some of its padding entries (TN(col2im_rows_same)).
 */
static void TN(col2im)(void *colv, const conv_geom *g, size_t C, void *gxv)
{
    T *col = colv;
    T *gx = gxv;
    const size_t OW = g->ow, P = g->oh * OW, plane = g->h * g->w;
    const int same = g->sh == 1 && g->sw == 1 && OW == g->w;
    for (size_t c = 0; c < C; c++) {
        T *gc = gx + c * plane;
        for (size_t i = 0; i < g->kh; i++) {
            const ptrdiff_t offh = (ptrdiff_t)(i * g->dh) - (ptrdiff_t)g->ph;
            size_t h0, h1;
            win_range(g->oh, g->sh, offh, g->h, &h0, &h1);
            for (size_t j = 0; j < g->kw; j++) {
                T *row = col + ((c * g->kh + i) * g->kw + j) * P;
                const ptrdiff_t offw = (ptrdiff_t)(j * g->dw) - (ptrdiff_t)g->pw;
                size_t w0, w1;
                win_range(OW, g->sw, offw, g->w, &w0, &w1);
                if (h1 <= h0 || w1 <= w0) continue;
                if (same)
                    TN(col2im_rows_same)(row, gc, OW, h0, h1, offh, offw, w0, w1);
                else
                    TN(col2im_rows)(row, gc, g, h0, h1, offh, offw, w0, w1);
            }
        }
    }
}

/* y {rows, n}: y[r][k] += b[r * bstride] (the bias of the row's output channel). */
static void TN(add_bias)(void *yv, const void *bv, ptrdiff_t bstride, size_t rows, size_t n)
{
    T *y = yv;
    const T *b = bv;
    for (size_t r = 0; r < rows; r++) {
        const T br = b[(ptrdiff_t)r * bstride];
        T *yr = y + r * n;
        size_t k = 0;
        for (; k + 8 <= n; k += 8) /* a fixed-size block: vectorized at -O2, see add_run */
            for (size_t j = 0; j < 8; j++) yr[k + j] += br;
        for (; k < n; k++) yr[k] += br;
    }
}

/* y {rows, n}: y[r][k] = b[r * bstride] (the bias of the row's output channel). */
static void TN(fill_bias)(void *yv, const void *bv, ptrdiff_t bstride, size_t rows, size_t n)
{
    T *y = yv;
    const T *b = bv;
    for (size_t r = 0; r < rows; r++) {
        const T br = b[(ptrdiff_t)r * bstride];
        T *yr = y + r * n;
        size_t k = 0;
        for (; k + 8 <= n; k += 8) /* a fixed-size block: vectorized at -O2, see add_run */
            for (size_t j = 0; j < 8; j++) yr[k + j] = br;
        for (; k < n; k++) yr[k] = br;
    }
}

/* acc[r] += sum of row r of g {rows, n} (double accumulation; summed over the batch).
 * Eight partial sums: one chain of dependent adds would wait on the add latency. */
static void TN(row_sums)(double *acc, const void *gv, size_t rows, size_t n)
{
    const T *g = gv;
    for (size_t r = 0; r < rows; r++) {
        const T *gr = g + r * n;
        double s8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t k = 0;
        for (; k + 8 <= n; k += 8)
            for (size_t j = 0; j < 8; j++) s8[j] += gr[k + j];
        double s = 0.0;
        for (; k < n; k++) s += gr[k];
        for (size_t j = 0; j < 8; j++) s += s8[j];
        acc[r] += s;
    }
}

/* gb[o * stride] += acc[o] (gb any stride). */
static void TN(add_acc)(void *gbv, ptrdiff_t stride, const double *acc, size_t n)
{
    T *gb = gbv;
    for (size_t o = 0; o < n; o++) gb[(ptrdiff_t)o * stride] += (T)acc[o];
}

/*
 * Depthwise direct forward (groups == C, one filter per output channel o reading
 * channel o / mult): y[o] = sum_{i,j} w[o][i][j] * x[c] shifted, no im2col.
 * For each tap the valid output window is computed once; the inner loop is a
 * contiguous axpy when sw == 1.
 */
static void TN(dw_forward)(const void *xv, const void *wv, void *yv, const conv_geom *g,
                           size_t C, size_t mult)
{
    const T *x = xv, *w = wv;
    T *y = yv;
    const size_t OW = g->ow, P = g->oh * OW, plane = g->h * g->w, kk = g->kh * g->kw;
    for (size_t o = 0; o < C * mult; o++) {
        const T *xc = x + (o / mult) * plane;
        T *yo = y + o * P;
        memset(yo, 0, P * sizeof(T));
        for (size_t i = 0; i < g->kh; i++) {
            const ptrdiff_t offh = (ptrdiff_t)(i * g->dh) - (ptrdiff_t)g->ph;
            size_t h0, h1;
            win_range(g->oh, g->sh, offh, g->h, &h0, &h1);
            for (size_t j = 0; j < g->kw; j++) {
                const T wt = w[o * kk + i * g->kw + j];
                const ptrdiff_t offw = (ptrdiff_t)(j * g->dw) - (ptrdiff_t)g->pw;
                size_t w0, w1;
                win_range(OW, g->sw, offw, g->w, &w0, &w1);
                const ptrdiff_t sw = (ptrdiff_t)g->sw;
                for (size_t oh = h0; oh < h1; oh++) {
                    T *r = yo + oh * OW;
                    const T *s = xc + (size_t)((ptrdiff_t)(oh * g->sh) + offh) * g->w;
                    if (sw == 1) {
                        for (size_t ow = w0; ow < w1; ow++) r[ow] += wt * s[(ptrdiff_t)ow + offw];
                    } else {
                        for (size_t ow = w0; ow < w1; ow++)
                            r[ow] += wt * s[(ptrdiff_t)ow * sw + offw];
                    }
                }
            }
        }
    }
}

static const conv_ops TN(conv_ops) = {
    TN(im2col), TN(col2im),  TN(add_bias),   TN(fill_bias),
    TN(row_sums), TN(add_acc), TN(dw_forward),
};

#undef T
#undef TN
