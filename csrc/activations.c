/*
 * activations.c -- hidden-layer activations and their derivatives.
 *
 * Each activation's forward value and its derivative sit side by side in
 * the two switches below. Derivatives are read off the stored activation
 * a = f(z) where that is exact; gelu, gelu_tanh and silu are not monotonic,
 * so theirs are read off the pre-activation z, which the engine then keeps
 * (their registry entries say needs_z). A code without a case reaches the
 * switches' default: CNNBP_UNKNOWN_CODE.
 */
#ifndef T
#define CNNBP_BODY "activations.c"
#include "typed.h"
#else

/* SELU's constants (Klambauer et al. 2017, eq. 14), and GELU's. */
#define SELU_LAMBDA ((T)1.0507009873554804934193349852946)
#define SELU_ALPHA ((T)1.6732632423543772848170429916717)
#define SQRT_HALF ((T)0.70710678118654752440084436210485)       /* 1/sqrt(2) */
#define INV_SQRT_2PI ((T)0.39894228040143267793994605993438)    /* 1/sqrt(2 pi) */
#define SQRT_2_OVER_PI ((T)0.79788456080286535587989211986876)  /* sqrt(2/pi) */
#define GELU_C ((T)0.044715)

static inline T FN(logistic)(T z) { return 1 / (1 + EXP(-z)); }

/* log(1 + exp(z)) without overflow: max(z, 0) + log1p(exp(-|z|)). */
static inline T FN(softplus)(T z) { return (z > 0 ? z : 0) + LOG1P(EXP(-FABS(z))); }

/* Phi(z), the standard normal CDF: GELU's gate. */
static inline T FN(normal_cdf)(T z) { return (T)0.5 * (1 + ERF(z * SQRT_HALF)); }

static inline T FN(gelu_tanh_u)(T z) { return SQRT_2_OVER_PI * (z + GELU_C * z * z * z); }

/* Softmax of the rows of z + b in place: exp(z - max z) / sum, as
 * scikit-learn computes it. The exponentials of a chunk of rows are taken in
 * one long loop, which vectorises (a row of 10 outputs is too short a loop:
 * its latencies dominated); each row is summed left to right. */
static inline __attribute__((always_inline)) void FN(softmax_rows)(
    ptrdiff_t m, ptrdiff_t n, const T *restrict b, T *restrict z)
{
    const ptrdiff_t rows = n < 2048 ? 2048 / n : 1;  /* a chunk stays in L1 cache */
    for (ptrdiff_t i0 = 0; i0 < m; i0 += rows) {
        const ptrdiff_t k = m - i0 < rows ? m - i0 : rows;
        T *restrict chunk = z + i0 * n;
        for (ptrdiff_t i = 0; i < k; i++) {
            T *restrict row = chunk + i * n;
            for (ptrdiff_t j = 0; j < n; j++)
                row[j] += b[j];
            T zmax = row[0];
            for (ptrdiff_t j = 1; j < n; j++)
                zmax = row[j] > zmax ? row[j] : zmax;
            for (ptrdiff_t j = 0; j < n; j++)
                row[j] -= zmax;
        }
        for (ptrdiff_t j = 0; j < k * n; j++)
            chunk[j] = EXP(chunk[j]);
        for (ptrdiff_t i = 0; i < k; i++) {
            T *restrict row = chunk + i * n;
            T sum = 0;
            for (ptrdiff_t j = 0; j < n; j++)
                sum += row[j];
            for (ptrdiff_t j = 0; j < n; j++)
                row[j] /= sum;
        }
    }
}

CNNBP_VECTOR_LOOP
int FN(bias_activation)(ptrdiff_t m, ptrdiff_t n, int activation,
                        double slope, const T *restrict b, T *restrict z)
{
    const T s = (T)slope;
    if (activation == CNNBP_SOFTMAX) {
        FN(softmax_rows)(m, n, b, z);
        return 0;
    }
    /* One switch per row, then plain counted loops GCC can vectorise. */
    for (ptrdiff_t i = 0; i < m; i++) {
        T *restrict row = z + i * n;
        switch (activation) {
        case CNNBP_IDENTITY:
            for (ptrdiff_t j = 0; j < n; j++)
                row[j] += b[j];
            break;
        case CNNBP_LOGISTIC:
            for (ptrdiff_t j = 0; j < n; j++)
                row[j] = FN(logistic)(row[j] + b[j]);
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
        case CNNBP_LEAKY_RELU:
            for (ptrdiff_t j = 0; j < n; j++) {
                T x = row[j] + b[j];
                row[j] = x > 0 ? x : s * x;
            }
            break;
        case CNNBP_SELU:
            for (ptrdiff_t j = 0; j < n; j++) {
                T x = row[j] + b[j];
                row[j] = x > 0 ? SELU_LAMBDA * x : (SELU_LAMBDA * SELU_ALPHA) * EXPM1(x);
            }
            break;
        case CNNBP_SOFTPLUS:
            for (ptrdiff_t j = 0; j < n; j++)
                row[j] = FN(softplus)(row[j] + b[j]);
            break;
        case CNNBP_GELU:
            for (ptrdiff_t j = 0; j < n; j++) {
                T x = row[j] + b[j];
                row[j] = x * FN(normal_cdf)(x);
            }
            break;
        case CNNBP_GELU_TANH:
            for (ptrdiff_t j = 0; j < n; j++) {
                T x = row[j] + b[j];
                row[j] = (T)0.5 * x * (1 + TANH(FN(gelu_tanh_u)(x)));
            }
            break;
        case CNNBP_SILU:
            for (ptrdiff_t j = 0; j < n; j++) {
                T x = row[j] + b[j];
                row[j] = x * FN(logistic)(x);
            }
            break;
        case CNNBP_EXP:
            for (ptrdiff_t j = 0; j < n; j++)
                row[j] = EXP(row[j] + b[j]);
            break;
        default:
            return CNNBP_UNKNOWN_CODE;
        }
    }
    return 0;
}

CNNBP_VECTOR_LOOP
int FN(delta_derivative)(ptrdiff_t size, int activation, double slope,
                         const T *restrict a, const T *restrict z,
                         T *restrict delta)
{
    const T s = (T)slope;
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
    case CNNBP_LEAKY_RELU: /* f' = 1 where a > 0 (z > 0 as s >= 0), else s */
        for (ptrdiff_t i = 0; i < size; i++)
            delta[i] = a[i] > 0 ? delta[i] : delta[i] * s;
        break;
    case CNNBP_SELU: /* lambda alpha exp(z) = a + lambda alpha where z <= 0 */
        for (ptrdiff_t i = 0; i < size; i++)
            delta[i] *= a[i] > 0 ? SELU_LAMBDA : a[i] + SELU_LAMBDA * SELU_ALPHA;
        break;
    case CNNBP_SOFTPLUS: /* sigma(z) = 1 - exp(-a), as -expm1(-a) for small a */
        for (ptrdiff_t i = 0; i < size; i++)
            delta[i] *= -EXPM1(-a[i]);
        break;
    case CNNBP_GELU: /* Phi(z) + z phi(z) */
        for (ptrdiff_t i = 0; i < size; i++) {
            const T x = z[i];
            delta[i] *= FN(normal_cdf)(x) + x * INV_SQRT_2PI * EXP((T)-0.5 * x * x);
        }
        break;
    case CNNBP_GELU_TANH: /* (1 + t)/2 + z (1 - t^2) u'(z) / 2, t = tanh(u) */
        for (ptrdiff_t i = 0; i < size; i++) {
            const T x = z[i], t = TANH(FN(gelu_tanh_u)(x));
            const T du = SQRT_2_OVER_PI * (1 + 3 * GELU_C * x * x);
            delta[i] *= (T)0.5 * (1 + t) + (T)0.5 * x * (1 - t * t) * du;
        }
        break;
    case CNNBP_SILU: /* sigma (1 + z (1 - sigma)) */
        for (ptrdiff_t i = 0; i < size; i++) {
            const T sig = FN(logistic)(z[i]);
            delta[i] *= sig * (1 + z[i] * (1 - sig));
        }
        break;
    default: /* output-only (softmax, exp) or unknown */
        return CNNBP_UNKNOWN_CODE;
    }
    return 0;
}

#undef SELU_LAMBDA
#undef SELU_ALPHA
#undef SQRT_HALF
#undef INV_SQRT_2PI
#undef SQRT_2_OVER_PI
#undef GELU_C
#endif
