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
 * otherwise, and a sum with a NaN is NaN. The sums run in LANES
 * independent lanes, a vector's worth, so the loop vectorises without
 * reordering any sum (an int flag per value took 4x as long: its 0/1 had
 * to be narrowed out of each vector compare). */
CNNBP_VECTOR_LOOP
int FN(all_finite)(ptrdiff_t size, const T *restrict x)
{
    enum { LANES = 64 / sizeof(T) };
    T lane[LANES] = {0};
    ptrdiff_t i = 0;
    for (; i + LANES <= size; i += LANES)
        for (int j = 0; j < LANES; j++)
            lane[j] += x[i + j] - x[i + j];
    for (; i < size; i++)
        lane[0] += x[i] - x[i];
    T sum = 0;
    for (int j = 0; j < LANES; j++)
        sum += lane[j];
    return sum == sum;
}

/* idx_out[i] := the column of row i's largest value, the first of equal
 * ones, or of its first NaN: numpy's argmax(axis=1), without its loop
 * set-up for every row. Column by column over blocks of rows, so that the
 * loop over rows vectorises and has no branch: where the maximum lies
 * varies from row to row (a branch per row took 3x as long as this). */
CNNBP_VECTOR_LOOP
void FN(row_argmax)(ptrdiff_t m, ptrdiff_t n, const T *restrict x,
                    ptrdiff_t *restrict idx_out)
{
    enum { ROWS = 128 };
    T top[ROWS];
    for (ptrdiff_t i0 = 0; i0 < m; i0 += ROWS) {
        const ptrdiff_t rows = m - i0 < ROWS ? m - i0 : ROWS;
        const T *restrict blk = x + i0 * n;
        ptrdiff_t *restrict best = idx_out + i0;
        for (ptrdiff_t r = 0; r < rows; r++) {
            top[r] = blk[r * n];
            best[r] = 0;
        }
        for (ptrdiff_t j = 1; j < n; j++) {
            for (ptrdiff_t r = 0; r < rows; r++) {
                const T v = blk[r * n + j];
                /* a NaN wins once, then nothing beats it */
                const int take = (v > top[r]) | ((v != v) & (top[r] == top[r]));
                top[r] = take ? v : top[r];
                best[r] = take ? j : best[r];
            }
        }
    }
}

CNNBP_VECTOR_LOOP
void FN(column_sums)(ptrdiff_t m, ptrdiff_t n, const T *restrict x,
                     T *restrict sum)
{
    for (ptrdiff_t i = 0; i < m; i++)
        for (ptrdiff_t j = 0; j < n; j++)
            sum[j] += x[i * n + j];
}

/* z_out := x W for one row x (k,) and W (k, n) row-major: the rows of W
 * scaled by x_i and summed, four at a time so that z is read and written
 * once per four rows. A one-row product reads each weight once, so it runs
 * at the speed memory delivers W; this loop does, and OpenBLAS's gemv did
 * not (docs/performance.md, "Figures behind the code"). No factor is
 * skipped: inf or NaN in x gives NaN or inf in z, as in BLAS. */
CNNBP_VECTOR_LOOP
void FN(row_product)(ptrdiff_t k, ptrdiff_t n, const T *restrict x,
                     const T *restrict w, T *restrict z_out)
{
    ptrdiff_t i = 0;
    for (ptrdiff_t j = 0; j < n; j++)
        z_out[j] = 0;
    for (; i + 4 <= k; i += 4) {
        const T *restrict w0 = w + i * n, *restrict w1 = w0 + n;
        const T *restrict w2 = w1 + n, *restrict w3 = w2 + n;
        const T x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
        for (ptrdiff_t j = 0; j < n; j++)
            z_out[j] += (x0 * w0[j] + x1 * w1[j]) + (x2 * w2[j] + x3 * w3[j]);
    }
    for (; i < k; i++) {
        const T *restrict w0 = w + i * n;
        const T x0 = x[i];
        for (ptrdiff_t j = 0; j < n; j++)
            z_out[j] += x0 * w0[j];
    }
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
