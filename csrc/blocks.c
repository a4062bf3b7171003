/*
 * blocks.c -- moving rows between blocks and finishing gradients.
 */
#ifndef T
#define CNNBP_BODY "blocks.c"
#include "typed.h"
#else

void FN(gather_rows)(ptrdiff_t m, ptrdiff_t n, const T *restrict src,
                     const ptrdiff_t *restrict rows, T *restrict dst)
{
    for (ptrdiff_t i = 0; i < m; i++)
        memcpy(dst + i * n, src + rows[i] * n, (size_t)n * sizeof(T));
}

/* dst_out[i, :] := src[rows[i], :] (rows NULL: src[i, :]) for 0/1 targets
 * stored as bytes (a bool indicator matrix), converted to T. */
void FN(targets_from_u8)(ptrdiff_t m, ptrdiff_t n, const unsigned char *restrict src,
                         const ptrdiff_t *restrict rows, T *restrict dst)
{
    for (ptrdiff_t i = 0; i < m; i++) {
        const unsigned char *restrict row = src + (rows == NULL ? i : rows[i]) * n;
        for (ptrdiff_t j = 0; j < n; j++)
            dst[i * n + j] = (T)row[j];
    }
}

/* 1 when no element is inf or NaN: x - x is 0 for finite x and NaN
 * otherwise; the flags are OR-ed as integers, so the loop vectorises. */
CNNBP_VECTOR_LOOP
int FN(all_finite)(ptrdiff_t size, const T *restrict x)
{
    int bad = 0;
    for (ptrdiff_t i = 0; i < size; i++) {
        const T d = x[i] - x[i];
        bad |= d != d;
    }
    return !bad;
}

CNNBP_VECTOR_LOOP
void FN(column_sums)(ptrdiff_t m, ptrdiff_t n, const T *restrict x,
                     T *restrict sum)
{
    for (ptrdiff_t i = 0; i < m; i++)
        for (ptrdiff_t j = 0; j < n; j++)
            sum[j] += x[i * n + j];
}

CNNBP_VECTOR_LOOP
void FN(add)(ptrdiff_t size, const T *restrict x, T *restrict y)
{
    for (ptrdiff_t i = 0; i < size; i++)
        y[i] += x[i];
}

/* Max-norm constraint (Srivastava et al. 2014, Sec. 5.1): each column j of
 * the (m, n) row-major W, the weights into unit j, is rescaled to L2 norm c
 * when longer. `scratch` holds n values (the column sums of squares). */
CNNBP_VECTOR_LOOP
void FN(max_norm_columns)(ptrdiff_t m, ptrdiff_t n, double c, T *restrict w,
                          T *restrict scratch)
{
    memset(scratch, 0, (size_t)n * sizeof(T));
    for (ptrdiff_t i = 0; i < m; i++)
        for (ptrdiff_t j = 0; j < n; j++)
            scratch[j] += w[i * n + j] * w[i * n + j];
    for (ptrdiff_t j = 0; j < n; j++) {
        const T norm = SQRT(scratch[j]);
        scratch[j] = norm > (T)c ? (T)c / norm : 1;
    }
    for (ptrdiff_t i = 0; i < m; i++)
        for (ptrdiff_t j = 0; j < n; j++)
            w[i * n + j] *= scratch[j];
}

CNNBP_VECTOR_LOOP
void FN(finish_gradient)(ptrdiff_t size, double alpha, double alpha_l1, double s,
                         const T *restrict w, T *restrict g)
{
    const T a = (T)alpha, l1 = (T)alpha_l1, ts = (T)s;
    if (w == NULL || (alpha == 0 && alpha_l1 == 0)) {
        for (ptrdiff_t i = 0; i < size; i++)
            g[i] /= ts;
    } else if (alpha_l1 == 0) { /* scikit-learn's expression, its rounding */
        for (ptrdiff_t i = 0; i < size; i++)
            g[i] = (g[i] + a * w[i]) / ts;
    } else { /* sign(0) = 0: the subgradient that leaves zero weights alone */
        for (ptrdiff_t i = 0; i < size; i++)
            g[i] = (g[i] + a * w[i] + l1 * (T)((w[i] > 0) - (w[i] < 0))) / ts;
    }
}

#endif
