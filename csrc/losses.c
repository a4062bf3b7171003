/*
 * losses.c -- output layer: bias, canonical activation, loss and delta.
 *
 * One pass over the (m, n) output block. For each pair below the derivative
 * of the loss with respect to Z^L collapses to A^L - Y (the canonical link),
 * which is why the delta needs no derivative of the activation:
 *   identity + squared error, softmax + log-loss,
 *   logistic + binary log-loss, exp + Poisson deviance.
 * Per-row losses follow scikit-learn's sklearn/neural_network/_base.py
 * (squared error is averaged over the outputs, the others summed).
 */
#ifndef T
#define CNNBP_BODY "losses.c"
#include "typed.h"

int cnnbp_loss_activation(int loss)
{
    switch (loss) {
    case CNNBP_SQUARED_ERROR: return CNNBP_IDENTITY;
    case CNNBP_LOG_LOSS: return CNNBP_SOFTMAX;
    case CNNBP_BINARY_LOG_LOSS: return CNNBP_LOGISTIC;
    case CNNBP_POISSON: return CNNBP_EXP;
    }
    return -1;
}
#else

/* Clip a probability into [eps, 1 - eps] before taking its log. */
static inline T FN(clip_prob)(T p)
{
    const T hi = (T)1 - T_EPS;
    return p < T_EPS ? T_EPS : (p > hi ? hi : p);
}

/* Weighted loss of one row whose activations a = g(z + b) are already in a. */
static double FN(row_loss)(ptrdiff_t n, int loss, const T *restrict a,
                           const T *restrict y)
{
    double c = 0;
    switch (loss) {
    case CNNBP_SQUARED_ERROR:
        for (ptrdiff_t j = 0; j < n; j++) {
            const T d = a[j] - y[j];
            c += (double)d * d;
        }
        return 0.5 * c / (double)n;
    case CNNBP_LOG_LOSS:
        for (ptrdiff_t j = 0; j < n; j++)
            if (y[j] != 0)
                c -= (double)y[j] * LOG(FN(clip_prob)(a[j]));
        return c;
    case CNNBP_BINARY_LOG_LOSS:
        for (ptrdiff_t j = 0; j < n; j++) {
            const T p = FN(clip_prob)(a[j]);
            if (y[j] != 0)
                c -= (double)y[j] * LOG(p);
            if (y[j] != 1)
                c -= (double)(1 - y[j]) * LOG(1 - p);
        }
        return c;
    case CNNBP_POISSON:
        for (ptrdiff_t j = 0; j < n; j++) {
            if (y[j] != 0)
                c += (double)y[j] * LOG(y[j] / a[j]);
            c += (double)a[j] - (double)y[j];
        }
        return c;
    }
    return NAN;
}

double FN(output_loss)(ptrdiff_t m, ptrdiff_t n, int loss,
                       const T *restrict b, const T *restrict y,
                       const T *restrict sw, T *restrict z,
                       T *restrict delta_out)
{
    FN(bias_activation)(m, n, cnnbp_loss_activation(loss), 0.0, b, z);
    if (loss != CNNBP_SQUARED_ERROR) /* tiny probabilities: see FLUSH */
        for (ptrdiff_t i = 0; i < m * n; i++)
            z[i] = FLUSH(z[i]);
    double total = 0;
    for (ptrdiff_t i = 0; i < m; i++) {
        const T *restrict a = z + i * n;
        const T *restrict yi = y + i * n;
        T *restrict d = delta_out + i * n;
        const double c = FN(row_loss)(n, loss, a, yi);
        if (sw == NULL) {
            for (ptrdiff_t j = 0; j < n; j++)
                d[j] = a[j] - yi[j];
            total += c;
        } else {
            const T w = sw[i];
            for (ptrdiff_t j = 0; j < n; j++)
                d[j] = (a[j] - yi[j]) * w;
            total += c * w;
        }
    }
    return total;
}

#endif
