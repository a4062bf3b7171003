/*
 * losses.c -- output layer: bias, canonical activation, loss and delta.
 *
 * One pass over the (m, n) output block. For each pair below the derivative
 * of the loss with respect to Z^L collapses to A^L - Y (the canonical link),
 * which is why the delta needs no derivative of the activation (Huber and
 * absolute error, with the identity, take the derivative of C in A^L - Y):
 *   identity + squared error, softmax + log-loss,
 *   logistic + binary log-loss, exp + Poisson deviance.
 * Per-row losses follow scikit-learn's sklearn/neural_network/_base.py
 * (squared error is averaged over the outputs, the others summed).
 */
#ifndef T
#define CNNBP_BODY "losses.c"
#include "typed.h"
#else

/* Clip a probability into [eps, 1 - eps] before taking its log. */
static inline T FN(clip_prob)(T p)
{
    const T hi = (T)1 - T_EPS;
    return p < T_EPS ? T_EPS : (p > hi ? hi : p);
}

/* Weighted loss of one row whose activations a = g(z + b) are already in a. */
static double FN(row_loss)(ptrdiff_t n, int loss, double huber_delta,
                           const T *restrict a, const T *restrict y)
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
    case CNNBP_HUBER:
        for (ptrdiff_t j = 0; j < n; j++) {
            const double r = FABS(a[j] - y[j]);
            c += r <= huber_delta ? 0.5 * r * r : huber_delta * (r - 0.5 * huber_delta);
        }
        return c;
    case CNNBP_ABSOLUTE_ERROR:
        for (ptrdiff_t j = 0; j < n; j++)
            c += FABS(a[j] - y[j]);
        return c;
    default:
        return NAN;
    }
}

/* dC/dz of one output of a non-canonical loss, r = a - y. */
static inline T FN(robust_delta)(int loss, T r, T d)
{
    if (loss == CNNBP_HUBER)
        return r > d ? d : (r < -d ? -d : r);
    return (T)((r > 0) - (r < 0)); /* absolute error: sign(r) */
}

double FN(output_loss)(ptrdiff_t m, ptrdiff_t n, int loss, double huber_delta,
                       const T *restrict b, const T *restrict y,
                       const T *restrict sw, T *restrict z,
                       T *restrict delta_out)
{
    const int robust = loss == CNNBP_HUBER || loss == CNNBP_ABSOLUTE_ERROR;
    const T hd = (T)huber_delta;
    if (FN(bias_activation)(m, n, cnnbp_loss_activation(loss), 0.0, b, z) != 0)
        return NAN; /* an unknown loss (its activation -1) */
    if (loss != CNNBP_SQUARED_ERROR) /* tiny probabilities: see FLUSH */
        for (ptrdiff_t i = 0; i < m * n; i++)
            z[i] = FLUSH(z[i]);
    double total = 0;
    for (ptrdiff_t i = 0; i < m; i++) {
        const T *restrict a = z + i * n;
        const T *restrict yi = y + i * n;
        T *restrict d = delta_out + i * n;
        const double c = FN(row_loss)(n, loss, huber_delta, a, yi);
        const T w = sw == NULL ? 1 : sw[i];
        if (robust) {
            for (ptrdiff_t j = 0; j < n; j++)
                d[j] = FN(robust_delta)(loss, a[j] - yi[j], hd) * w;
        } else if (sw == NULL) {
            for (ptrdiff_t j = 0; j < n; j++)
                d[j] = a[j] - yi[j];
        } else {
            for (ptrdiff_t j = 0; j < n; j++)
                d[j] = (a[j] - yi[j]) * w;
        }
        total += sw == NULL ? c : c * w;
    }
    return total;
}

#endif
