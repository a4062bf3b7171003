/*
 * layers.c -- what a hidden layer may add between Z^l and the next layer:
 * batch normalisation (before the activation) and inverted dropout (after).
 *
 * Batch normalisation (Ioffe & Szegedy 2015, Alg. 1 and Sec. 3), per unit j
 * over the m rows of a training batch, Z the (m, n) block A^{l-1} W^l, row i
 * weighing w_i (its sample weight, or 1), S = sum_i w_i:
 *     mu_j = sum_i w_i Z_ij / S      var_j = sum_i w_i (Z_ij - mu_j)^2 / S
 *     Zhat = (Z - mu) / sqrt(var + eps)      Y = gamma Zhat + beta
 * (weights as frequencies: a row of weight 2 counts as two rows, one of
 * weight 0 as none, as scikit-learn's sample_weight means).
 * beta is the layer's bias b^l (added with the activation, as for any
 * layer); gamma sits after the biases in the flat parameter buffer.
 * Prediction uses running estimates instead of the batch's, moved after
 * every training batch as PyTorch's BatchNorm1d does:
 *     r := (1 - momentum) r + momentum batch,   with var S / (S - 1)
 * (Bessel's correction for frequency weights; m / (m - 1) unweighted).
 */
#ifndef T
#define CNNBP_BODY "layers.c"
#include "typed.h"
#else

#ifndef CNNBP_SPLITMIX64
#define CNNBP_SPLITMIX64
/* Output `position` of SplitMix64 seeded with `seed` (Steele, Lea & Flood
 * 2014; the generator that seeds xoshiro): a hash of seed + (position + 1)
 * times the golden-ratio increment, so any element of the stream is computed
 * without the ones before it. */
static inline uint64_t cnnbp_splitmix64(uint64_t seed, uint64_t position)
{
    uint64_t z = seed + (position + 1) * UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}
#endif

/* Inverted dropout (Srivastava et al. 2014, scaled at training time as in
 * their Sec. 10 so that prediction uses the weights as they are): element i
 * is kept with probability 1 - rate, when the top 53 bits of SplitMix64
 * output counter + i, read as a uniform u in [0, 1), are >= rate. A mask
 * therefore depends on (seed, counter) only, never on threads or timing. */
CNNBP_VECTOR_LOOP
void FN(dropout)(ptrdiff_t size, double rate, uint64_t seed, uint64_t counter,
                 const T *restrict a, T *restrict mask, T *restrict kept)
{
    /* u >= rate  <=>  (bits >> 11) >= ceil(rate 2^53), in integers */
    const uint64_t threshold = (uint64_t)ceil(rate * 9007199254740992.0);
    const T scale = (T)(1.0 / (1.0 - rate));
    for (ptrdiff_t i = 0; i < size; i++) {
        const uint64_t bits = cnnbp_splitmix64(seed, counter + (uint64_t)i) >> 11;
        mask[i] = bits >= threshold ? scale : 0;
        kept[i] = a[i] * mask[i];
    }
}

CNNBP_VECTOR_LOOP
void FN(multiply)(ptrdiff_t size, const T *restrict x, T *restrict y)
{
    for (ptrdiff_t i = 0; i < size; i++)
        y[i] *= x[i];
}

/* S = sum_i w_i of a batch's m rows (m when sw is NULL: unweighted). */
static inline double FN(row_weights)(ptrdiff_t m, const T *restrict sw)
{
    double weight = (double)m;
    if (sw) {
        weight = 0;
        for (ptrdiff_t i = 0; i < m; i++)
            weight += sw[i];
    }
    return weight;
}

/* mean_out := sum_i w_i z_i / S and m2_out := sum_i w_i (z_i - mean)^2
 * over m rows (two passes: no E[z^2] - E[z]^2 cancellation); returns S. */
CNNBP_VECTOR_LOOP
double FN(batch_norm_moments)(ptrdiff_t m, ptrdiff_t n, const T *restrict sw,
                              const T *restrict z, T *restrict mean_out,
                              T *restrict m2_out)
{
    const double weight = FN(row_weights)(m, sw); /* S */
    const T inv_s = (T)(1 / weight);
    memset(mean_out, 0, (size_t)n * sizeof(T));
    memset(m2_out, 0, (size_t)n * sizeof(T));
    for (ptrdiff_t i = 0; i < m; i++) {
        const T wi = sw ? sw[i] : 1;
        for (ptrdiff_t j = 0; j < n; j++)
            mean_out[j] += wi * z[i * n + j];
    }
    for (ptrdiff_t j = 0; j < n; j++)
        mean_out[j] *= inv_s;
    for (ptrdiff_t i = 0; i < m; i++) {
        const T wi = sw ? sw[i] : 1;
        for (ptrdiff_t j = 0; j < n; j++) {
            const T d = z[i * n + j] - mean_out[j];
            m2_out[j] += wi * d * d;
        }
    }
    return weight;
}

/* From a batch's weight S, mean and m2 (moments): var = m2 / S, the
 * running estimates moved (when S > 1), and m2_inv_std := 1 / sqrt(var + eps). */
static void FN(batch_norm_stats)(ptrdiff_t n, double eps, double momentum,
                                 double weight, const T *restrict mean,
                                 T *restrict m2_inv_std, T *restrict running_mean,
                                 T *restrict running_var)
{
    const T inv_s = (T)(1 / weight);
    for (ptrdiff_t j = 0; j < n; j++) {
        const T var = m2_inv_std[j] * inv_s;
        if (weight > 1) {
            running_mean[j] = (T)((1 - momentum) * running_mean[j] + momentum * mean[j]);
            running_var[j] = (T)((1 - momentum) * running_var[j] +
                                 momentum * var * (weight / (weight - 1)));
        }
        m2_inv_std[j] = 1 / SQRT(var + (T)eps);
    }
}

CNNBP_VECTOR_LOOP
void FN(batch_norm_normalise)(ptrdiff_t m, ptrdiff_t n, const T *restrict mean,
                              const T *restrict inv_std, const T *restrict gamma,
                              T *restrict z, T *restrict zhat)
{
    for (ptrdiff_t i = 0; i < m; i++)
        for (ptrdiff_t j = 0; j < n; j++) {
            const T h = (z[i * n + j] - mean[j]) * inv_std[j];
            zhat[i * n + j] = h;
            z[i * n + j] = gamma[j] * h;
        }
}

void FN(batch_norm_train)(ptrdiff_t m, ptrdiff_t n, double eps, double momentum,
                          const T *restrict sw, const T *restrict gamma,
                          T *restrict z, T *restrict zhat, T *restrict inv_std,
                          T *restrict mean, T *restrict running_mean,
                          T *restrict running_var)
{
    const double weight = FN(batch_norm_moments)(m, n, sw, z, mean, inv_std);
    FN(batch_norm_stats)(n, eps, momentum, weight, mean, inv_std, running_mean,
                         running_var);
    FN(batch_norm_normalise)(m, n, mean, inv_std, gamma, z, zhat);
}

/* The batch's statistics from its parts' moments (Chan, Golub & LeVeque
 * 1979, pairwise update, here over all parts at once): with part k's
 * weight S_k, mean mu_k and m2 M_k, S = sum S_k, mu = sum S_k mu_k / S,
 * M = sum M_k + S_k (mu_k - mu)^2. Part k's mean and m2 are at
 * moments + k stride and + n. Then as batch_norm_train. */
void FN(batch_norm_combine)(int parts, ptrdiff_t n, ptrdiff_t stride,
                            const double *restrict weights,
                            const T *restrict moments, double eps, double momentum,
                            T *restrict mean_out, T *restrict inv_std_out,
                            T *restrict running_mean, T *restrict running_var)
{
    double weight = 0;
    for (int k = 0; k < parts; k++)
        weight += weights[k];
    for (ptrdiff_t j = 0; j < n; j++) {
        double mu = 0, m2 = 0;
        for (int k = 0; k < parts; k++)
            mu += weights[k] * (double)moments[k * stride + j];
        mu /= weight;
        for (int k = 0; k < parts; k++) {
            const double d = (double)moments[k * stride + j] - mu;
            m2 += (double)moments[k * stride + n + j] + weights[k] * d * d;
        }
        mean_out[j] = (T)mu;
        inv_std_out[j] = (T)m2;
    }
    FN(batch_norm_stats)(n, eps, momentum, weight, mean_out, inv_std_out,
                         running_mean, running_var);
}

CNNBP_VECTOR_LOOP
void FN(batch_norm_apply)(ptrdiff_t m, ptrdiff_t n, double eps,
                          const T *restrict gamma, const T *restrict running_mean,
                          const T *restrict running_var, T *restrict z)
{
    for (ptrdiff_t i = 0; i < m; i++)
        for (ptrdiff_t j = 0; j < n; j++)
            z[i * n + j] = gamma[j] * ((z[i * n + j] - running_mean[j]) /
                                       SQRT(running_var[j] + (T)eps));
}

/* dC/dZ from dC/dY (Ioffe & Szegedy 2015, Sec. 3, with row weights w_i as
 * in batch_norm_train), for a cost summed over the rows: with S1 = sum_i
 * dY_i and S2 = sum_i dY_i Zhat_i per unit,
 *     dgamma += S2     dbeta += S1
 *     dZ_i = gamma inv_std (dY_i - w_i S1 / S - w_i Zhat_i S2 / S)
 * (mu and var depend on row i through w_i; unweighted, w_i = 1 and S = m).
 * In three steps, so that threads sharing a batch can each take their rows
 * and add their sums between: batch_norm_backward_sums, then the sums'
 * use (batch_norm_backward_combine), then batch_norm_backward_apply. */
CNNBP_VECTOR_LOOP
void FN(batch_norm_backward_sums)(ptrdiff_t m, ptrdiff_t n, const T *restrict zhat,
                                  const T *restrict delta, T *restrict s1_out,
                                  T *restrict s2_out)
{
    memset(s1_out, 0, (size_t)n * sizeof(T));
    memset(s2_out, 0, (size_t)n * sizeof(T));
    for (ptrdiff_t i = 0; i < m; i++)
        for (ptrdiff_t j = 0; j < n; j++) {
            s1_out[j] += delta[i * n + j];
            s2_out[j] += delta[i * n + j] * zhat[i * n + j];
        }
}

/* delta_inout := dZ from dY, given s1 = S1 / S and s2 = S2 / S. */
CNNBP_VECTOR_LOOP
void FN(batch_norm_backward_apply)(ptrdiff_t m, ptrdiff_t n, const T *restrict sw,
                                   const T *restrict gamma, const T *restrict zhat,
                                   const T *restrict inv_std, const T *restrict s1,
                                   const T *restrict s2, T *restrict delta)
{
    for (ptrdiff_t i = 0; i < m; i++) {
        const T wi = sw ? sw[i] : 1;
        for (ptrdiff_t j = 0; j < n; j++)
            delta[i * n + j] = gamma[j] * inv_std[j] *
                               (delta[i * n + j] - wi * (s1[j] + zhat[i * n + j] * s2[j]));
    }
}

/* S1 and S2 summed over `parts` (part k's at sums + k stride and + n, from
 * batch_norm_backward_sums) into dbeta and dgamma; scratch_out := S1 / S,
 * S2 / S (2 n values) for batch_norm_backward_apply. scratch_out may be
 * `sums` itself (one part, stride 0): each value is read before it is
 * written. */
void FN(batch_norm_backward_combine)(int parts, ptrdiff_t n, ptrdiff_t stride,
                                     const T *sums, double weight,
                                     T *restrict dgamma, T *restrict dbeta,
                                     T *scratch_out)
{
    const T inv_s = (T)(1 / weight);
    for (ptrdiff_t j = 0; j < n; j++) {
        T s1 = 0, s2 = 0;
        for (int k = 0; k < parts; k++) {
            s1 += sums[k * stride + j];
            s2 += sums[k * stride + n + j];
        }
        dgamma[j] += s2;
        dbeta[j] += s1;
        scratch_out[j] = s1 * inv_s;
        scratch_out[n + j] = s2 * inv_s;
    }
}

void FN(batch_norm_backward)(ptrdiff_t m, ptrdiff_t n, const T *restrict sw,
                             const T *restrict gamma, const T *restrict zhat,
                             const T *restrict inv_std, T *restrict scratch,
                             T *restrict dgamma, T *restrict dbeta,
                             T *restrict delta)
{
    FN(batch_norm_backward_sums)(m, n, zhat, delta, scratch, scratch + n);
    FN(batch_norm_backward_combine)(1, n, 0, scratch, FN(row_weights)(m, sw), dgamma,
                                    dbeta, scratch);
    FN(batch_norm_backward_apply)(m, n, sw, gamma, zhat, inv_std, scratch, scratch + n,
                                  delta);
}

#endif
