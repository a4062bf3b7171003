/*
 * activations.c -- hidden-layer activations and their derivatives.
 *
 * Each activation's forward value and its derivative sit side by side in
 * the two switches below. Derivatives are read off the stored activation
 * a = f(z), which is exact for these functions, so Z is never kept.
 */
#ifndef T
#define CNNBP_BODY "activations.c"
#include "typed.h"
#else

/* Softmax of one row in place: exp(z - max z) / sum, as scikit-learn does. */
static void FN(softmax_row)(ptrdiff_t n, T *restrict z)
{
    T zmax = z[0];
    for (ptrdiff_t j = 1; j < n; j++)
        zmax = z[j] > zmax ? z[j] : zmax;
    T sum = 0;
    for (ptrdiff_t j = 0; j < n; j++) {
        z[j] = EXP(z[j] - zmax);
        sum += z[j];
    }
    for (ptrdiff_t j = 0; j < n; j++)
        z[j] /= sum;
}

CNNBP_VECTOR_LOOP
void FN(bias_activation)(ptrdiff_t m, ptrdiff_t n, int activation,
                         const T *restrict b, T *restrict z)
{
    /* One switch per call, then plain counted loops GCC can vectorise. */
    for (ptrdiff_t i = 0; i < m; i++) {
        T *restrict row = z + i * n;
        switch (activation) {
        case CNNBP_IDENTITY:
            for (ptrdiff_t j = 0; j < n; j++)
                row[j] += b[j];
            break;
        case CNNBP_LOGISTIC:
            for (ptrdiff_t j = 0; j < n; j++)
                row[j] = 1 / (1 + EXP(-(row[j] + b[j])));
            break;
        case CNNBP_TANH:
            for (ptrdiff_t j = 0; j < n; j++)
                row[j] = TANH(row[j] + b[j]);
            break;
        case CNNBP_RELU:
            /* `x < 0 ? 0 : x` keeps NaN visible, as np.maximum does. */
            for (ptrdiff_t j = 0; j < n; j++) {
                T x = row[j] + b[j];
                row[j] = x < 0 ? 0 : x;
            }
            break;
        case CNNBP_ELU:
            for (ptrdiff_t j = 0; j < n; j++) {
                T x = row[j] + b[j];
                row[j] = x > 0 ? x : EXPM1(x);
            }
            break;
        case CNNBP_SOFTMAX:
            for (ptrdiff_t j = 0; j < n; j++)
                row[j] += b[j];
            FN(softmax_row)(n, row);
            break;
        case CNNBP_EXP:
            for (ptrdiff_t j = 0; j < n; j++)
                row[j] = EXP(row[j] + b[j]);
            break;
        }
    }
}

CNNBP_VECTOR_LOOP
void FN(delta_derivative)(ptrdiff_t size, int activation,
                          const T *restrict a, T *restrict delta)
{
    switch (activation) {
    case CNNBP_IDENTITY: /* f' = 1 */
        break;
    case CNNBP_LOGISTIC: /* f' = a (1 - a), in scikit-learn's order */
        for (ptrdiff_t i = 0; i < size; i++)
            delta[i] = delta[i] * a[i] * (1 - a[i]);
        break;
    case CNNBP_TANH: /* f' = 1 - a^2 */
        for (ptrdiff_t i = 0; i < size; i++)
            delta[i] *= 1 - a[i] * a[i];
        break;
    case CNNBP_RELU: /* f' = 1 where a > 0, else 0 */
        for (ptrdiff_t i = 0; i < size; i++)
            delta[i] = a[i] > 0 ? delta[i] : 0;
        break;
    case CNNBP_ELU: /* f' = 1 where a > 0, else exp(z) = a + 1 */
        for (ptrdiff_t i = 0; i < size; i++)
            delta[i] = a[i] > 0 ? delta[i] : delta[i] * (a[i] + 1);
        break;
    }
}

#endif
