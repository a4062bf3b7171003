/*
 * kernels.h -- cnn_bp's C99 kernels (one of the three headers that
 * cnn_bp.h gathers: kernels.h, parallel.h, thread_blas.h).
 *
 * Layering: these kernels are element-wise loops over contiguous, row-major
 * blocks. They allocate nothing and call no Python; dropout's masks come
 * from a counter-based generator (SplitMix64 of seed and position, so any
 * range of a mask can be drawn apart). The Cython engine
 * (cnn_bp/_engine.pyx) owns the buffers, its passes (_passes.pyx) call BLAS
 * for the matrix products, and the Python estimators validate everything
 * before a kernel sees it. The threads that share the work are parallel.h's; the BLAS they
 * call, thread_blas.h's.
 *
 * Every kernel exists for float (_f32) and double (_f64), generated from one
 * body by a macro. Arguments: sizes first, then `const` inputs, then outputs
 * (`*_out`, or `*_inout` when updated in place). A block of shape (m, n) is
 * m rows of n contiguous values.
 */
#ifndef CNNBP_KERNELS_H
#define CNNBP_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* The activations, losses and solvers: their enums (CNNBP_RELU, ...,
 * CNNBP_LOG_LOSS, ..., CNNBP_SOLVER_ADAM, ...) and the switches that read
 * the registry's columns (cnnbp_derivative_needs_z, cnnbp_loss_activation),
 * generated from cnn_bp/_registry.py at build time (tools/generate.py).
 * The losses pair with the output activation that makes each a canonical
 * link, for which the output delta dC/dZ^L is simply (A^L - Y):
 *   squared error   + identity   C = 1/2 (a - y)^2, averaged over outputs
 *   log-loss        + softmax    C = -sum_k y_k log a_k
 *   binary log-loss + logistic   C = -sum_k [y_k log a_k + (1 - y_k) log(1 - a_k)]
 *   Poisson         + exp        C = sum_k [y_k log(y_k / a_k) - y_k + a_k]
 * Two robust regression losses pair with the identity but are not its
 * canonical loss; their delta is the derivative of C in r = a - y:
 *   Huber (1964)    + identity   C = sum_k r_k^2 / 2 where |r_k| <= d, else
 *                                    d (|r_k| - d / 2); delta = clip(r, -d, d)
 *   absolute error  + identity   C = sum_k |r_k|;    delta = sign(r)
 * The derivative of an activation is read off the stored activation
 * a = f(z) where that is exact (f monotonic), and off the kept
 * pre-activation z otherwise. */
#include "registry.h"

/* What a kernel whose switch meets a code it has no case for returns (the
 * engine checks every code it is given this way: _checks.pyx). */
#define CNNBP_UNKNOWN_CODE (-1)

/* An optimizer: its settings and state. The flat state buffers s1 and s2
 * mirror the parameters' layout (sgd: the velocity; adam, adamw, nadam: the
 * moments m and v; rmsprop: v; adagrad: the sum of squared gradients). */
typedef struct {
    int kind;                  /* CNNBP_SOLVER_* code */
    double learning_rate;      /* sgd: the current rate; others: learning_rate_init */
    cnnbp_hyperparameters h;   /* momentum, beta_1, ... */
    double clip_norm;          /* clip the gradient to this global norm; 0: off */
    double max_norm;           /* cap each unit's incoming weight norm; 0: off */
    long long t;               /* update steps taken so far */
    double mu_product;         /* nadam: the product of its momentum schedule so far */
    void *s1;
    void *s2;
} cnnbp_optim;

/* NAdam's momentum at step t, Dozat's schedule (torch's momentum_decay =
 * 0.004): mu_t = beta_1 (1 - 0.96^(0.004 t) / 2). */
static inline double cnnbp_nadam_mu(double beta_1, long long t)
{
    return beta_1 * (1 - 0.5 * pow(0.96, 0.004 * (double)t));
}

/* Every kernel below exists for float (_f32) and double (_f64). The build
 * reads these macros (tools/generate.py) to declare both to Cython with one
 * fused-type wrapper each: a kernel is declared here and nowhere else. */
#define CNNBP_DECLARE(T, S)                                                    \
    /* activations.c */                                                        \
    /* z_inout[i, j] := f(z_inout[i, j] + b[j]); softmax is row-wise;      \
     * slope: leaky_relu's s (unused by the others). Returns 0, or         \
     * CNNBP_UNKNOWN_CODE (m >= 1) for a code it has no case for. */        \
    int cnnbp_bias_activation_##S(ptrdiff_t m, ptrdiff_t n, int activation,    \
                                  double slope, const T *restrict b,           \
                                  T *restrict z_inout);                        \
    /* delta_inout[i] := delta_inout[i] * f'(z[i]), f' read off a[i] = f(z)  \
     * or, where cnnbp_derivative_needs_z, off z (else z may be NULL).       \
     * Returns 0, or CNNBP_UNKNOWN_CODE for an output-only or unknown code. */ \
    int cnnbp_delta_derivative_##S(ptrdiff_t size, int activation,             \
                                    double slope, const T *restrict a,         \
                                    const T *restrict z,                       \
                                    T *restrict delta_inout);                  \
    /* losses.c */                                                             \
    /* a := g(z + b) with g the loss's output activation (in z_inout);       \
     * delta_out := dC/dz * sw (sw NULL means weights 1): (a - y) * sw for   \
     * the canonical pairs; huber_delta is Huber's d (unused by the others); \
     * returns sum_i sw_i C_i, the weighted data loss of the m rows (NaN for \
     * an unknown loss code).                                                 \
     * Probabilities are clipped to [eps, 1 - eps] inside the log, as in      \
     * scikit-learn, with eps the machine epsilon of T. */                     \
    double cnnbp_output_loss_##S(ptrdiff_t m, ptrdiff_t n, int loss,           \
                                 double huber_delta,                           \
                                 const T *restrict b, const T *restrict y,     \
                                 const T *restrict sw, T *restrict z_inout,    \
                                 T *restrict delta_out);                       \
    /* optimizers.c */                                                         \
    /* Step opt->t of the optimizer opt->kind on parameters [lo, hi): every  \
     * rule is element-wise, so ranges are updated apart; the weights, which \
     * adamw decays, are [0, n_coefs). Returns 0, or CNNBP_UNKNOWN_CODE for  \
     * a solver code without a case. */                                      \
    int cnnbp_optimizer_step_##S(const cnnbp_optim *opt, ptrdiff_t n_coefs,    \
                                 ptrdiff_t lo, ptrdiff_t hi,                   \
                                 const T *restrict grad,                       \
                                 T *restrict param_inout);                     \
    /* SGD with momentum mu (Polyak, or Nesterov's in Sutskever et al. 2013's \
     * form): u = mu v - lr g; v := u; p += nesterov ? mu v - lr g : u. */     \
    void cnnbp_sgd_update_##S(ptrdiff_t size, double lr, double momentum,      \
                              int nesterov, const T *restrict grad,            \
                              T *restrict velocity_inout,                      \
                              T *restrict param_inout);                        \
    /* Adam (Kingma & Ba 2014, Alg. 1, bias correction folded into lr_t):     \
     * m := b1 m + (1-b1) g; v := b2 v + (1-b2) g^2;                           \
     * p += -lr_t m / (sqrt(v) + eps). */                                      \
    void cnnbp_adam_update_##S(ptrdiff_t size, double lr_t, double beta_1,     \
                               double beta_2, double epsilon,                  \
                               const T *restrict grad, T *restrict m_inout,    \
                               T *restrict v_inout, T *restrict param_inout);  \
    /* AdamW, NAdam, RMSprop, Adagrad: see optimizers.c for the equations;  \
     * c1 = 1 - b1^t, c2 = 1 - b2^t. */                                         \
    void cnnbp_adamw_update_##S(ptrdiff_t size, ptrdiff_t n_decay, double lr,  \
                                double beta_1, double beta_2, double epsilon,  \
                                double weight_decay, double c1, double c2,     \
                                const T *restrict grad, T *restrict m_inout,   \
                                T *restrict v_inout, T *restrict param_inout); \
    void cnnbp_nadam_update_##S(ptrdiff_t size, double beta_1, double beta_2,  \
                                double epsilon, double c2, double on_g,        \
                                double on_m, const T *restrict grad,           \
                                T *restrict m_inout, T *restrict v_inout,      \
                                T *restrict param_inout);                      \
    void cnnbp_rmsprop_update_##S(ptrdiff_t size, double lr, double rho,       \
                                  double epsilon, const T *restrict grad,      \
                                  T *restrict v_inout, T *restrict param_inout); \
    void cnnbp_adagrad_update_##S(ptrdiff_t size, double lr, double epsilon,   \
                                  const T *restrict grad, T *restrict s_inout, \
                                  T *restrict param_inout);                    \
    /* blocks.c */                                                             \
    /* dst_out[i, :] := src[rows[i], :] for i < m (src has n columns). */      \
    void cnnbp_gather_rows_##S(ptrdiff_t m, ptrdiff_t n, const T *restrict src, \
                               const ptrdiff_t *restrict rows,                 \
                               T *restrict dst_out);                           \
    /* dst_out[i, :] := src[rows[i], :] (rows NULL: src[i, :]), for targets  \
     * held as bytes (0/1 indicator matrices), converted to T. */             \
    void cnnbp_targets_from_u8_##S(ptrdiff_t m, ptrdiff_t n,                   \
                                   const unsigned char *restrict src,          \
                                   const ptrdiff_t *restrict rows,             \
                                   T *restrict dst_out);                       \
    /* 1 if every x[i] is finite (no inf, no NaN), else 0. */             \
    int cnnbp_all_finite_##S(ptrdiff_t size, const T *restrict x);             \
    /* idx_out[i] := argmax of row i of the (m, n) x (n >= 1), as numpy's:  \
     * the first of equal maxima, or the first NaN. */                      \
    void cnnbp_row_argmax_##S(ptrdiff_t m, ptrdiff_t n, const T *restrict x,  \
                              ptrdiff_t *restrict idx_out);                   \
    /* sum_inout[j] += sum_i x[i, j]: row by row, as numpy's sum(axis=0). */   \
    void cnnbp_column_sums_##S(ptrdiff_t m, ptrdiff_t n, const T *restrict x,  \
                               T *restrict sum_inout);                         \
    /* z_out := x W, x (k,), W (k, n) row-major (one row's product, summed  \
     * by rows of W; a shared prediction gives each thread some of them). */ \
    void cnnbp_row_product_##S(ptrdiff_t k, ptrdiff_t n, const T *restrict x,  \
                               const T *restrict w, T *restrict z_out);        \
    /* y_inout[i] += x[i] (the helper's partial gradient sums). */             \
    void cnnbp_add_##S(ptrdiff_t size, const T *restrict x,                    \
                       T *restrict y_inout);                                   \
    /* Each column of the (m, n) W longer than c in L2 norm is scaled to c;  \
     * scratch: n values of work space. */                                     \
    void cnnbp_max_norm_columns_##S(ptrdiff_t m, ptrdiff_t n, double c,        \
                                    T *restrict w_inout, T *restrict scratch); \
    /* g_inout := (g_inout + alpha w + alpha_l1 sign(w)) / s: the L2 and L1 \
     * terms and the 1/sum(sw) normalisation of a weight gradient (w NULL   \
     * for biases: no penalty). */                                             \
    void cnnbp_finish_gradient_##S(ptrdiff_t size, double alpha,               \
                                   double alpha_l1, double s,                  \
                                   const T *restrict w, T *restrict g_inout); \
    /* layers.c: batch normalisation and dropout (equations in layers.c). */ \
    /* mask_out[i] := 1 / (1 - rate) with probability 1 - rate, else 0, from \
     * SplitMix64(seed) at position counter + i; kept_out := a * mask_out.   */ \
    void cnnbp_dropout_##S(ptrdiff_t size, double rate, uint64_t seed,         \
                           uint64_t counter, const T *restrict a,              \
                           T *restrict mask_out, T *restrict kept_out);        \
    /* y_inout[i] *= x[i]. */                                                  \
    void cnnbp_multiply_##S(ptrdiff_t size, const T *restrict x,               \
                            T *restrict y_inout);                              \
    /* Training batch: zhat_out := (z - mu) / sqrt(var + eps) with the       \
     * batch's per-column mean and variance (rows weighted by sw, or NULL),  \
     * z_inout := gamma zhat_out, inv_std_out := 1 / sqrt(var + eps),        \
     * mean_out := mu; the running estimates move by `momentum` (left alone  \
     * when the weights sum to 1 or less). */                                \
    void cnnbp_batch_norm_train_##S(ptrdiff_t m, ptrdiff_t n, double eps,      \
                                    double momentum, const T *restrict sw,     \
                                    const T *restrict gamma,                   \
                                    T *restrict z_inout, T *restrict zhat_out, \
                                    T *restrict inv_std_out,                   \
                                    T *restrict mean_out,                      \
                                    T *restrict running_mean_inout,            \
                                    T *restrict running_var_inout);            \
    /* Parts of batch_norm_train for threads sharing a batch: each part's \
     * weight (returned), mean and m2 = sum_i w_i (z_i - mean)^2; their      \
     * combination into the batch's mean and inv_std (and the running       \
     * estimates); each part's rows normalised. */                          \
    double cnnbp_batch_norm_moments_##S(ptrdiff_t m, ptrdiff_t n,              \
                                        const T *restrict sw,                  \
                                        const T *restrict z,                   \
                                        T *restrict mean_out,                  \
                                        T *restrict m2_out);                   \
    void cnnbp_batch_norm_combine_##S(int parts, ptrdiff_t n, ptrdiff_t stride, \
                                      const double *restrict weights,          \
                                      const T *restrict moments, double eps,   \
                                      double momentum, T *restrict mean_out,   \
                                      T *restrict inv_std_out,                 \
                                      T *restrict running_mean_inout,          \
                                      T *restrict running_var_inout);          \
    void cnnbp_batch_norm_normalise_##S(ptrdiff_t m, ptrdiff_t n,              \
                                        const T *restrict mean,                \
                                        const T *restrict inv_std,             \
                                        const T *restrict gamma,               \
                                        T *restrict z_inout,                   \
                                        T *restrict zhat_out);                 \
    /* Prediction: z_inout := gamma (z - running_mean) / sqrt(running_var + eps). */ \
    void cnnbp_batch_norm_apply_##S(ptrdiff_t m, ptrdiff_t n, double eps,      \
                                    const T *restrict gamma,                   \
                                    const T *restrict running_mean,            \
                                    const T *restrict running_var,             \
                                    T *restrict z_inout);                      \
    /* delta_inout: dC/dY in, dC/dZ out (rows weighted by sw, or NULL, as   \
     * in training); adds the gamma and beta gradients; scratch: 2 n values. */ \
    void cnnbp_batch_norm_backward_##S(ptrdiff_t m, ptrdiff_t n,               \
                                       const T *restrict sw,                   \
                                       const T *restrict gamma,                \
                                       const T *restrict zhat,                 \
                                       const T *restrict inv_std,              \
                                       T *restrict scratch,                    \
                                       T *restrict dgamma_inout,               \
                                       T *restrict dbeta_inout,                \
                                       T *restrict delta_inout);               \
    /* batch_norm_backward in steps, for threads sharing a batch: each     \
     * part's S1 and S2; their sums into dgamma and dbeta, and S1 / S,      \
     * S2 / S into scratch_out (2 n values); each part's delta := dZ. */     \
    void cnnbp_batch_norm_backward_sums_##S(ptrdiff_t m, ptrdiff_t n,          \
                                            const T *restrict zhat,            \
                                            const T *restrict delta,           \
                                            T *restrict s1_out,                \
                                            T *restrict s2_out);               \
    void cnnbp_batch_norm_backward_combine_##S(int parts, ptrdiff_t n,         \
                                               ptrdiff_t stride, const T *sums, \
                                               double weight,                  \
                                               T *restrict dgamma_inout,       \
                                               T *restrict dbeta_inout,        \
                                               T *scratch_out);                \
    void cnnbp_batch_norm_backward_apply_##S(ptrdiff_t m, ptrdiff_t n,         \
                                             const T *restrict sw,             \
                                             const T *restrict gamma,          \
                                             const T *restrict zhat,           \
                                             const T *restrict inv_std,        \
                                             const T *restrict s1,             \
                                             const T *restrict s2,             \
                                             T *restrict delta_inout);         \
    /* sparse.c: X a CSR matrix (data, indices, indptr); batch row i is     \
     * rows[i], or first_row + i when rows is NULL. */                         \
    /* out[i, :] := sum_k data[k] w[indices[k], :] over row i: Z = X_B W. */   \
    void cnnbp_csr_matmul_##S(ptrdiff_t m, ptrdiff_t n, const T *restrict data, \
                              const ptrdiff_t *restrict indices,               \
                              const ptrdiff_t *restrict indptr,                \
                              const ptrdiff_t *restrict rows,                  \
                              ptrdiff_t first_row, const T *restrict w,        \
                              T *restrict out);                                \
    /* g_inout[indices[k], :] += data[k] delta[i, :]: dW += X_B^T delta. */     \
    void cnnbp_csr_transpose_matmul_add_##S(                                   \
        ptrdiff_t m, ptrdiff_t n, const T *restrict data,                      \
        const ptrdiff_t *restrict indices, const ptrdiff_t *restrict indptr,   \
        const ptrdiff_t *restrict rows, ptrdiff_t first_row,                   \
        const T *restrict delta, T *restrict g_inout);

CNNBP_DECLARE(float, f32)
CNNBP_DECLARE(double, f64)

#endif /* CNNBP_KERNELS_H */
