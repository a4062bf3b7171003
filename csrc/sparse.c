/*
 * sparse.c -- the first layer's products when X is a CSR matrix.
 *
 * Only layer 1 touches X, so only its two products need a sparse form:
 * forward Z = X_B W (X_B the batch rows) and the weight gradient
 * dW += X_B^T delta. Both walk the nonzeros of each row and touch whole
 * contiguous rows of W / dW, so they stay vectorised over the fan_out axis.
 * X is never densified. Batch rows are named by `rows` (NULL: consecutive
 * rows from `first_row`), so shuffled batches need no copy of X either.
 */
#ifndef T
#define CNNBP_BODY "sparse.c"
#include "typed.h"
#else

void FN(csr_matmul)(ptrdiff_t m, ptrdiff_t n, const T *restrict data,
                    const ptrdiff_t *restrict indices,
                    const ptrdiff_t *restrict indptr,
                    const ptrdiff_t *restrict rows, ptrdiff_t first_row,
                    const T *restrict w, T *restrict out)
{
    for (ptrdiff_t i = 0; i < m; i++) {
        const ptrdiff_t r = rows ? rows[i] : first_row + i;
        T *restrict o = out + i * n;
        for (ptrdiff_t j = 0; j < n; j++)
            o[j] = 0;
        for (ptrdiff_t k = indptr[r]; k < indptr[r + 1]; k++) {
            const T x = data[k];
            const T *restrict wrow = w + indices[k] * n;
            for (ptrdiff_t j = 0; j < n; j++)
                o[j] += x * wrow[j];
        }
    }
}

void FN(csr_transpose_matmul_add)(ptrdiff_t m, ptrdiff_t n,
                                  const T *restrict data,
                                  const ptrdiff_t *restrict indices,
                                  const ptrdiff_t *restrict indptr,
                                  const ptrdiff_t *restrict rows,
                                  ptrdiff_t first_row, const T *restrict delta,
                                  T *restrict g)
{
    for (ptrdiff_t i = 0; i < m; i++) {
        const ptrdiff_t r = rows ? rows[i] : first_row + i;
        const T *restrict d = delta + i * n;
        for (ptrdiff_t k = indptr[r]; k < indptr[r + 1]; k++) {
            const T x = data[k];
            T *restrict grow = g + indices[k] * n;
            for (ptrdiff_t j = 0; j < n; j++)
                grow[j] += x * d[j];
        }
    }
}

#endif
