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

/* AdamW (Loshchilov & Hutter 2019, Alg. 2, as torch.optim.AdamW): the
 * first n_decay values (the weights) shrink by lr * weight_decay, apart from
 * the gradient; then Adam's step with bias corrections c1 = 1 - b1^t,
 * c2 = 1 - b2^t. */
CNNBP_VECTOR_LOOP
void FN(adamw_update)(ptrdiff_t size, ptrdiff_t n_decay, double lr,
                      double beta_1, double beta_2, double epsilon,
                      double weight_decay, double c1, double c2,
                      const T *restrict g, T *restrict m, T *restrict v,
                      T *restrict p)
{
    const T shrink = (T)(1 - lr * weight_decay);
    for (ptrdiff_t i = 0; i < n_decay; i++)
        p[i] *= shrink;
    const T b1 = (T)beta_1, d1 = (T)(1 - beta_1);
    const T b2 = (T)beta_2, d2 = (T)(1 - beta_2);
    const T eps = (T)epsilon, step = (T)(lr / c1), root_c2 = (T)sqrt(c2);
    for (ptrdiff_t i = 0; i < size; i++) {
        m[i] = FLUSH(b1 * m[i] + d1 * g[i]);
        v[i] = FLUSH(b2 * v[i] + d2 * (g[i] * g[i]));
        p[i] -= step * m[i] / (SQRT(v[i]) / root_c2 + eps);
    }
}

/* NAdam (Dozat 2016, as torch.optim.NAdam): Adam whose step looks one
 * momentum step ahead. The caller folds the momentum schedule
 * mu_t = b1 (1 - 0.96^(0.004 t) / 2) into the two step sizes:
 * on_g = lr (1 - mu_t) / (1 - prod_{i<=t} mu_i) and
 * on_m = lr mu_{t+1} / (1 - prod_{i<=t+1} mu_i); c2 = 1 - b2^t. */
CNNBP_VECTOR_LOOP
void FN(nadam_update)(ptrdiff_t size, double beta_1, double beta_2,
                      double epsilon, double c2, double on_g, double on_m,
                      const T *restrict g, T *restrict m, T *restrict v,
                      T *restrict p)
{
    const T b1 = (T)beta_1, d1 = (T)(1 - beta_1);
    const T b2 = (T)beta_2, d2 = (T)(1 - beta_2);
    const T eps = (T)epsilon, root_c2 = (T)sqrt(c2);
    const T step_g = (T)on_g, step_m = (T)on_m;
    for (ptrdiff_t i = 0; i < size; i++) {
        m[i] = FLUSH(b1 * m[i] + d1 * g[i]);
        v[i] = FLUSH(b2 * v[i] + d2 * (g[i] * g[i]));
        const T denom = SQRT(v[i]) / root_c2 + eps;
        p[i] -= (step_g * g[i] + step_m * m[i]) / denom;
    }
}

/* RMSprop (Tieleman & Hinton 2012, lecture 6.5; torch.optim.RMSprop):
 * v := rho v + (1 - rho) g^2; p -= lr g / (sqrt(v) + eps). */
CNNBP_VECTOR_LOOP
void FN(rmsprop_update)(ptrdiff_t size, double lr, double rho, double epsilon,
                        const T *restrict g, T *restrict v, T *restrict p)
{
    const T r = (T)rho, d = (T)(1 - rho), eps = (T)epsilon, eta = (T)lr;
    for (ptrdiff_t i = 0; i < size; i++) {
        v[i] = FLUSH(r * v[i] + d * (g[i] * g[i]));
        p[i] -= eta * g[i] / (SQRT(v[i]) + eps);
    }
}

/* Adagrad (Duchi, Hazan & Singer 2011; torch.optim.Adagrad):
 * s += g^2; p -= lr g / (sqrt(s) + eps). */
CNNBP_VECTOR_LOOP
void FN(adagrad_update)(ptrdiff_t size, double lr, double epsilon,
                        const T *restrict g, T *restrict s, T *restrict p)
{
    const T eps = (T)epsilon, eta = (T)lr;
    for (ptrdiff_t i = 0; i < size; i++) {
        s[i] += g[i] * g[i];
        p[i] -= eta * g[i] / (SQRT(s[i]) + eps);
    }
}

int FN(optimizer_step)(const cnnbp_optim *opt, ptrdiff_t n_coefs, ptrdiff_t lo,
                       ptrdiff_t hi, const T *restrict g, T *restrict p)
{
    const double lr = opt->learning_rate, b1 = opt->h.beta_1, b2 = opt->h.beta_2;
    const double eps = opt->h.epsilon, t = (double)opt->t;
    const double c1 = 1 - pow(b1, t), c2 = 1 - pow(b2, t);
    const ptrdiff_t n = hi - lo;
    T *s1 = opt->s1 == NULL ? NULL : (T *)opt->s1 + lo;
    T *s2 = opt->s2 == NULL ? NULL : (T *)opt->s2 + lo;
    g += lo;
    p += lo;
    switch (opt->kind) {
    case CNNBP_SOLVER_SGD:
        FN(sgd_update)(n, lr, opt->h.momentum, opt->h.nesterovs_momentum, g, s1, p);
        return 0;
    case CNNBP_SOLVER_ADAM:  /* bias correction folded into the rate (Kingma & Ba, Sec. 2) */
        FN(adam_update)(n, lr * sqrt(c2) / c1, b1, b2, eps, g, s1, s2, p);
        return 0;
    case CNNBP_SOLVER_ADAMW: {
        const ptrdiff_t decayed = n_coefs - lo;
        FN(adamw_update)(n, decayed < 0 ? 0 : decayed < n ? decayed : n, lr, b1, b2, eps,
                         opt->h.weight_decay, c1, c2, g, s1, s2, p);
        return 0;
    }
    case CNNBP_SOLVER_NADAM: {
        const double mu = cnnbp_nadam_mu(b1, opt->t);
        const double mu_next = cnnbp_nadam_mu(b1, opt->t + 1);
        FN(nadam_update)(n, b1, b2, eps, c2, lr * (1 - mu) / (1 - opt->mu_product),
                         lr * mu_next / (1 - opt->mu_product * mu_next), g, s1, s2, p);
        return 0;
    }
    case CNNBP_SOLVER_RMSPROP:
        FN(rmsprop_update)(n, lr, opt->h.rho, eps, g, s1, p);
        return 0;
    case CNNBP_SOLVER_ADAGRAD:
        FN(adagrad_update)(n, lr, eps, g, s1, p);
        return 0;
    default:
        return CNNBP_UNKNOWN_CODE;
    }
}

#endif
