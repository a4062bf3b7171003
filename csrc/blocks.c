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
