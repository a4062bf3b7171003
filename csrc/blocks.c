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

CNNBP_VECTOR_LOOP
void FN(column_sums)(ptrdiff_t m, ptrdiff_t n, const T *restrict x,
                     T *restrict sum)
{
    for (ptrdiff_t i = 0; i < m; i++)
        for (ptrdiff_t j = 0; j < n; j++)
            sum[j] += x[i * n + j];
}

CNNBP_VECTOR_LOOP
void FN(finish_gradient)(ptrdiff_t size, double alpha, double s,
                         const T *restrict w, T *restrict g)
{
    const T a = (T)alpha, ts = (T)s;
    if (w == NULL || alpha == 0) {
        for (ptrdiff_t i = 0; i < size; i++)
            g[i] /= ts;
    } else {
        for (ptrdiff_t i = 0; i < size; i++)
            g[i] = (g[i] + a * w[i]) / ts;
    }
}

#endif
