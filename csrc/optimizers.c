/*
 * optimizers.c -- parameter updates over the flat parameter buffer.
 *
 * One pass over all weights and biases at once; the operation order follows
 * scikit-learn's sklearn/neural_network/_stochastic_optimizers.py so that
 * float64 results agree with it to round-off. Moments and velocities that
 * decay towards zero are flushed once subnormal (FLUSH in typed.h).
 */
#ifndef T
#define CNNBP_BODY "optimizers.c"
#include "typed.h"
#else

CNNBP_VECTOR_LOOP
void FN(sgd_update)(ptrdiff_t size, double lr, double momentum, int nesterov,
                    const T *restrict g, T *restrict v, T *restrict p)
{
    const T mu = (T)momentum, eta = (T)lr;
    if (nesterov) {
        for (ptrdiff_t i = 0; i < size; i++) {
            const T u = FLUSH(mu * v[i] - eta * g[i]);
            v[i] = u;
            p[i] += mu * u - eta * g[i];
        }
    } else {
        for (ptrdiff_t i = 0; i < size; i++) {
            const T u = FLUSH(mu * v[i] - eta * g[i]);
            v[i] = u;
            p[i] += u;
        }
    }
}

CNNBP_VECTOR_LOOP
void FN(adam_update)(ptrdiff_t size, double lr_t, double beta_1, double beta_2,
                     double epsilon, const T *restrict g, T *restrict m,
                     T *restrict v, T *restrict p)
{
    const T b1 = (T)beta_1, c1 = (T)(1 - beta_1);
    const T b2 = (T)beta_2, c2 = (T)(1 - beta_2);
    const T eps = (T)epsilon, step = (T)-lr_t;
    for (ptrdiff_t i = 0; i < size; i++) {
        m[i] = FLUSH(b1 * m[i] + c1 * g[i]);
        v[i] = FLUSH(b2 * v[i] + c2 * (g[i] * g[i]));
        /* The quotient is formed in double from the rate rounded to T, as
         * numpy evaluates scikit-learn's expression: float32 models then
         * track scikit-learn's (5e-7 after 60 epochs, not 5e-3). */
        p[i] += (T)(((double)step * m[i]) / (double)(SQRT(v[i]) + eps));
    }
}

#endif
