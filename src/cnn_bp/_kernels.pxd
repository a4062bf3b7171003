# cython: language_level=3
"""Declarations of the C99 kernels (csrc/cnn_bp.h) and BLAS, with fused-type
wrappers so that one Cython body serves float32 and float64.

Every ``cdef extern`` of the project lives here, once.
"""
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport uint64_t
from cython cimport floating
from scipy.linalg.cython_blas cimport sasum, dasum, sgemm, dgemm, sgemv, dgemv, sdot, ddot

cdef extern from "cnn_bp.h" nogil:
    ctypedef void (*cnnbp_sgemm_fn)(const char *, const char *, const int *, const int *,
                                    const int *, const float *, const float *,
                                    const int *, const float *, const int *,
                                    const float *, float *, const int *)
    ctypedef void (*cnnbp_dgemm_fn)(const char *, const char *, const int *, const int *,
                                    const int *, const double *, const double *,
                                    const int *, const double *, const int *,
                                    const double *, double *, const int *)
    ctypedef float (*cnnbp_sdot_fn)(const int *, const float *, const int *,
                                    const float *, const int *)
    ctypedef double (*cnnbp_ddot_fn)(const int *, const double *, const int *,
                                     const double *, const int *)
    ctypedef float (*cnnbp_sasum_fn)(const int *, const float *, const int *)
    ctypedef double (*cnnbp_dasum_fn)(const int *, const double *, const int *)
    ctypedef struct cnnbp_blas:
        cnnbp_sgemm_fn sgemm
        cnnbp_dgemm_fn dgemm
        cnnbp_sdot_fn sdot
        cnnbp_ddot_fn ddot
        cnnbp_sasum_fn sasum
        cnnbp_dasum_fn dasum
    cnnbp_blas cnnbp_thread_blas

    enum:
        CNNBP_IDENTITY
        CNNBP_LOGISTIC
        CNNBP_TANH
        CNNBP_RELU
        CNNBP_ELU
        CNNBP_LEAKY_RELU
        CNNBP_SELU
        CNNBP_SOFTPLUS
        CNNBP_GELU
        CNNBP_GELU_TANH
        CNNBP_SILU
        CNNBP_SOFTMAX
        CNNBP_EXP
        CNNBP_N_ACTIVATIONS
        CNNBP_SQUARED_ERROR
        CNNBP_LOG_LOSS
        CNNBP_BINARY_LOG_LOSS
        CNNBP_POISSON
        CNNBP_HUBER
        CNNBP_ABSOLUTE_ERROR
        CNNBP_N_LOSSES

    int cnnbp_loss_activation(int loss)

    int cnnbp_derivative_needs_z(int activation)

    void cnnbp_bias_activation_f32(ptrdiff_t m, ptrdiff_t n, int activation,
                                   double slope, const float *b, float *z)
    void cnnbp_bias_activation_f64(ptrdiff_t m, ptrdiff_t n, int activation,
                                   double slope, const double *b, double *z)
    void cnnbp_delta_derivative_f32(ptrdiff_t size, int activation, double slope,
                                    const float *a, const float *z, float *delta)
    void cnnbp_delta_derivative_f64(ptrdiff_t size, int activation, double slope,
                                    const double *a, const double *z, double *delta)
    double cnnbp_output_loss_f32(ptrdiff_t m, ptrdiff_t n, int loss, double huber_delta,
                                 const float *b, const float *y,
                                 const float *sw, float *z, float *delta)
    double cnnbp_output_loss_f64(ptrdiff_t m, ptrdiff_t n, int loss, double huber_delta,
                                 const double *b, const double *y,
                                 const double *sw, double *z, double *delta)
    void cnnbp_sgd_update_f32(ptrdiff_t size, double lr, double momentum,
                              int nesterov, const float *g, float *v, float *p)
    void cnnbp_sgd_update_f64(ptrdiff_t size, double lr, double momentum,
                              int nesterov, const double *g, double *v,
                              double *p)
    void cnnbp_adam_update_f32(ptrdiff_t size, double lr_t, double beta_1,
                               double beta_2, double epsilon, const float *g,
                               float *m, float *v, float *p)
    void cnnbp_adam_update_f64(ptrdiff_t size, double lr_t, double beta_1,
                               double beta_2, double epsilon, const double *g,
                               double *m, double *v, double *p)
    void cnnbp_adamw_update_f32(ptrdiff_t size, ptrdiff_t n_decay, double lr,
                                double beta_1, double beta_2, double epsilon,
                                double weight_decay, double c1, double c2,
                                const float *g, float *m, float *v, float *p)
    void cnnbp_nadam_update_f32(ptrdiff_t size, double beta_1, double beta_2,
                                double epsilon, double c2, double on_g,
                                double on_m, const float *g, float *m, float *v,
                                float *p)
    void cnnbp_rmsprop_update_f32(ptrdiff_t size, double lr, double rho,
                                  double epsilon, const float *g, float *v, float *p)
    void cnnbp_adagrad_update_f32(ptrdiff_t size, double lr, double epsilon,
                                  const float *g, float *s, float *p)
    void cnnbp_adamw_update_f64(ptrdiff_t size, ptrdiff_t n_decay, double lr,
                                double beta_1, double beta_2, double epsilon,
                                double weight_decay, double c1, double c2,
                                const double *g, double *m, double *v, double *p)
    void cnnbp_nadam_update_f64(ptrdiff_t size, double beta_1, double beta_2,
                                double epsilon, double c2, double on_g,
                                double on_m, const double *g, double *m, double *v,
                                double *p)
    void cnnbp_rmsprop_update_f64(ptrdiff_t size, double lr, double rho,
                                  double epsilon, const double *g, double *v, double *p)
    void cnnbp_adagrad_update_f64(ptrdiff_t size, double lr, double epsilon,
                                  const double *g, double *s, double *p)
    void cnnbp_gather_rows_f32(ptrdiff_t m, ptrdiff_t n, const float *src,
                               const ptrdiff_t *rows, float *dst)
    void cnnbp_gather_rows_f64(ptrdiff_t m, ptrdiff_t n, const double *src,
                               const ptrdiff_t *rows, double *dst)
    int cnnbp_all_finite_f32(ptrdiff_t size, const float *x)
    int cnnbp_all_finite_f64(ptrdiff_t size, const double *x)
    void cnnbp_row_argmax_f32(ptrdiff_t m, ptrdiff_t n, const float *x, ptrdiff_t *idx)
    void cnnbp_row_argmax_f64(ptrdiff_t m, ptrdiff_t n, const double *x, ptrdiff_t *idx)
    void cnnbp_column_sums_f32(ptrdiff_t m, ptrdiff_t n, const float *x,
                               float *sums)
    void cnnbp_column_sums_f64(ptrdiff_t m, ptrdiff_t n, const double *x,
                               double *sums)
    void cnnbp_targets_from_u8_f32(ptrdiff_t m, ptrdiff_t n, const unsigned char *src,
                                   const ptrdiff_t *rows, float *dst)
    void cnnbp_targets_from_u8_f64(ptrdiff_t m, ptrdiff_t n, const unsigned char *src,
                                   const ptrdiff_t *rows, double *dst)
    void cnnbp_row_product_f32(ptrdiff_t k, ptrdiff_t n, const float *x,
                               const float *w, float *z)
    void cnnbp_row_product_f64(ptrdiff_t k, ptrdiff_t n, const double *x,
                               const double *w, double *z)
    void cnnbp_add_f32(ptrdiff_t size, const float *x, float *y)
    void cnnbp_add_f64(ptrdiff_t size, const double *x, double *y)
    void cnnbp_max_norm_columns_f32(ptrdiff_t m, ptrdiff_t n, double c, float *w,
                                    float *scratch)
    void cnnbp_max_norm_columns_f64(ptrdiff_t m, ptrdiff_t n, double c, double *w,
                                    double *scratch)
    void cnnbp_finish_gradient_f32(ptrdiff_t size, double alpha, double alpha_l1,
                                   double s, const float *w, float *g)
    void cnnbp_finish_gradient_f64(ptrdiff_t size, double alpha, double alpha_l1,
                                   double s, const double *w, double *g)
    void cnnbp_dropout_f32(ptrdiff_t size, double rate, uint64_t seed,
                           uint64_t counter, const float *a, float *mask, float *kept)
    void cnnbp_dropout_f64(ptrdiff_t size, double rate, uint64_t seed,
                           uint64_t counter, const double *a, double *mask, double *kept)
    void cnnbp_multiply_f32(ptrdiff_t size, const float *x, float *y)
    void cnnbp_multiply_f64(ptrdiff_t size, const double *x, double *y)
    void cnnbp_batch_norm_train_f32(ptrdiff_t m, ptrdiff_t n, double eps,
                                    double momentum, const float *sw, const float *gamma, float *z,
                                    float *zhat, float *inv_std, float *mean,
                                    float *running_mean, float *running_var)
    void cnnbp_batch_norm_train_f64(ptrdiff_t m, ptrdiff_t n, double eps,
                                    double momentum, const double *sw, const double *gamma, double *z,
                                    double *zhat, double *inv_std, double *mean,
                                    double *running_mean, double *running_var)
    void cnnbp_batch_norm_apply_f32(ptrdiff_t m, ptrdiff_t n, double eps,
                                    const float *gamma, const float *running_mean,
                                    const float *running_var, float *z)
    void cnnbp_batch_norm_apply_f64(ptrdiff_t m, ptrdiff_t n, double eps,
                                    const double *gamma, const double *running_mean,
                                    const double *running_var, double *z)
    void cnnbp_batch_norm_backward_f32(ptrdiff_t m, ptrdiff_t n, const float *sw,
                                       const float *gamma,
                                       const float *zhat, const float *inv_std,
                                       float *scratch, float *dgamma, float *dbeta,
                                       float *delta)
    void cnnbp_batch_norm_backward_f64(ptrdiff_t m, ptrdiff_t n, const double *sw,
                                       const double *gamma,
                                       const double *zhat, const double *inv_std,
                                       double *scratch, double *dgamma, double *dbeta,
                                       double *delta)
    double cnnbp_batch_norm_moments_f32(ptrdiff_t m, ptrdiff_t n, const float *sw,
                                        const float *z, float *mean, float *m2)
    void cnnbp_batch_norm_combine_f32(int parts, ptrdiff_t n, ptrdiff_t stride,
                                      const double *weights, const float *moments,
                                      double eps, double momentum, float *mean,
                                      float *inv_std, float *running_mean, float *running_var)
    void cnnbp_batch_norm_normalise_f32(ptrdiff_t m, ptrdiff_t n, const float *mean,
                                        const float *inv_std, const float *gamma,
                                        float *z, float *zhat)
    void cnnbp_batch_norm_backward_sums_f32(ptrdiff_t m, ptrdiff_t n, const float *zhat,
                                            const float *delta, float *s1, float *s2)
    void cnnbp_batch_norm_backward_combine_f32(int parts, ptrdiff_t n, ptrdiff_t stride,
                                               const float *sums, double weight,
                                               float *dgamma, float *dbeta, float *scratch)
    void cnnbp_batch_norm_backward_apply_f32(ptrdiff_t m, ptrdiff_t n, const float *sw,
                                             const float *gamma, const float *zhat,
                                             const float *inv_std, const float *s1,
                                             const float *s2, float *delta)
    double cnnbp_batch_norm_moments_f64(ptrdiff_t m, ptrdiff_t n, const double *sw,
                                        const double *z, double *mean, double *m2)
    void cnnbp_batch_norm_combine_f64(int parts, ptrdiff_t n, ptrdiff_t stride,
                                      const double *weights, const double *moments,
                                      double eps, double momentum, double *mean,
                                      double *inv_std, double *running_mean, double *running_var)
    void cnnbp_batch_norm_normalise_f64(ptrdiff_t m, ptrdiff_t n, const double *mean,
                                        const double *inv_std, const double *gamma,
                                        double *z, double *zhat)
    void cnnbp_batch_norm_backward_sums_f64(ptrdiff_t m, ptrdiff_t n, const double *zhat,
                                            const double *delta, double *s1, double *s2)
    void cnnbp_batch_norm_backward_combine_f64(int parts, ptrdiff_t n, ptrdiff_t stride,
                                               const double *sums, double weight,
                                               double *dgamma, double *dbeta, double *scratch)
    void cnnbp_batch_norm_backward_apply_f64(ptrdiff_t m, ptrdiff_t n, const double *sw,
                                             const double *gamma, const double *zhat,
                                             const double *inv_std, const double *s1,
                                             const double *s2, double *delta)
    void cnnbp_csr_matmul_f32(ptrdiff_t m, ptrdiff_t n, const float *data,
                              const ptrdiff_t *indices, const ptrdiff_t *indptr,
                              const ptrdiff_t *rows, ptrdiff_t first_row,
                              const float *w, float *out)
    void cnnbp_csr_matmul_f64(ptrdiff_t m, ptrdiff_t n, const double *data,
                              const ptrdiff_t *indices, const ptrdiff_t *indptr,
                              const ptrdiff_t *rows, ptrdiff_t first_row,
                              const double *w, double *out)
    void cnnbp_csr_transpose_matmul_add_f32(
        ptrdiff_t m, ptrdiff_t n, const float *data, const ptrdiff_t *indices,
        const ptrdiff_t *indptr, const ptrdiff_t *rows, ptrdiff_t first_row,
        const float *delta, float *g)
    void cnnbp_csr_transpose_matmul_add_f64(
        ptrdiff_t m, ptrdiff_t n, const double *data, const ptrdiff_t *indices,
        const ptrdiff_t *indptr, const ptrdiff_t *rows, ptrdiff_t first_row,
        const double *delta, double *g)
    # csrc/pool.c: the helper threads
    enum: CNNBP_MAX_HELPERS
    int cnnbp_helpers_acquire(int want, int *ids)
    void cnnbp_helpers_release(int n, const int *ids)
    unsigned cnnbp_helper_jobs()
    int cnnbp_get_num_threads()
    void cnnbp_set_num_threads(int n)
    # csrc/team.c: the parallel layer (the fields the engine reads)
    enum: CNNBP_SPLIT_ROWS
    enum: CNNBP_ROW_BATCH, CNNBP_ROW_ALONE, CNNBP_ROW_SHARED
    ctypedef struct cnnbp_share:
        int tid
        int parts
        int phase
        ptrdiff_t m
        ptrdiff_t r0
        ptrdiff_t mr
        ptrdiff_t w1[2]
        ptrdiff_t u[4]
        double out[2]
    ctypedef void (*cnnbp_share_fn)(void *batch, cnnbp_share *s) noexcept nogil
    ctypedef struct cnnbp_team:
        cnnbp_share *share
        double shared
        double cpu
    int cnnbp_team_begin(cnnbp_team *t, int want, ptrdiff_t n_in, ptrdiff_t n1,
                         ptrdiff_t n_params, ptrdiff_t g0, int csr)
    int cnnbp_team_split(cnnbp_team *t, ptrdiff_t m, ptrdiff_t min_rows)
    void cnnbp_team_run(cnnbp_team *t, int parts, int phase, cnnbp_share_fn fn,
                        void *batch)
    void cnnbp_team_end(cnnbp_team *t)
    void cnnbp_team_reduce_f32(const cnnbp_team *t, const cnnbp_share *s,
                               const float *sums, float *g)
    void cnnbp_team_reduce_f64(const cnnbp_team *t, const cnnbp_share *s,
                               const double *sums, double *g)
    ctypedef void (*cnnbp_range_fn)(void *ctx, ptrdiff_t k0, ptrdiff_t k1) noexcept nogil
    int cnnbp_row_mode(ptrdiff_t largest_bytes, ptrdiff_t lo, ptrdiff_t hi, int *helper)
    void cnnbp_split_inputs(int helper, ptrdiff_t n, cnnbp_range_fn fn, void *ctx)
    ctypedef struct cnnbp_lockstep:
        pass
    void cnnbp_lockstep_init(cnnbp_lockstep *l)
    int cnnbp_lockstep_helpers(const cnnbp_lockstep *l, int wanted)
    void cnnbp_lockstep_learn(cnnbp_lockstep *l, int wanted, int had, double cpu,
                              double seconds)


cdef inline void bias_activation(ptrdiff_t m, ptrdiff_t n, int activation,
                                 double slope, const floating *b,
                                 floating *z) noexcept nogil:
    if floating is float:
        cnnbp_bias_activation_f32(m, n, activation, slope, b, z)
    else:
        cnnbp_bias_activation_f64(m, n, activation, slope, b, z)


cdef inline void delta_derivative(ptrdiff_t size, int activation, double slope,
                                  const floating *a, const floating *z,
                                  floating *delta) noexcept nogil:
    if floating is float:
        cnnbp_delta_derivative_f32(size, activation, slope, a, z, delta)
    else:
        cnnbp_delta_derivative_f64(size, activation, slope, a, z, delta)


cdef inline double output_loss(ptrdiff_t m, ptrdiff_t n, int loss,
                               double huber_delta, const floating *b,
                               const floating *y, const floating *sw,
                               floating *z, floating *delta) noexcept nogil:
    if floating is float:
        return cnnbp_output_loss_f32(m, n, loss, huber_delta, b, y, sw, z, delta)
    else:
        return cnnbp_output_loss_f64(m, n, loss, huber_delta, b, y, sw, z, delta)


cdef inline void sgd_update(ptrdiff_t size, double lr, double momentum,
                            int nesterov, const floating *g, floating *v,
                            floating *p) noexcept nogil:
    if floating is float:
        cnnbp_sgd_update_f32(size, lr, momentum, nesterov, g, v, p)
    else:
        cnnbp_sgd_update_f64(size, lr, momentum, nesterov, g, v, p)


cdef inline void adam_update(ptrdiff_t size, double lr_t, double beta_1,
                             double beta_2, double epsilon, const floating *g,
                             floating *m, floating *v, floating *p) noexcept nogil:
    if floating is float:
        cnnbp_adam_update_f32(size, lr_t, beta_1, beta_2, epsilon, g, m, v, p)
    else:
        cnnbp_adam_update_f64(size, lr_t, beta_1, beta_2, epsilon, g, m, v, p)


cdef inline void adamw_update(ptrdiff_t size, ptrdiff_t n_decay, double lr,
                              double beta_1, double beta_2, double epsilon,
                              double weight_decay, double c1, double c2,
                              const floating *g, floating *m, floating *v,
                              floating *p) noexcept nogil:
    if floating is float:
        cnnbp_adamw_update_f32(size, n_decay, lr, beta_1, beta_2, epsilon,
                               weight_decay, c1, c2, g, m, v, p)
    else:
        cnnbp_adamw_update_f64(size, n_decay, lr, beta_1, beta_2, epsilon,
                               weight_decay, c1, c2, g, m, v, p)


cdef inline void nadam_update(ptrdiff_t size, double beta_1, double beta_2,
                              double epsilon, double c2, double on_g,
                              double on_m, const floating *g, floating *m,
                              floating *v, floating *p) noexcept nogil:
    if floating is float:
        cnnbp_nadam_update_f32(size, beta_1, beta_2, epsilon, c2, on_g, on_m,
                               g, m, v, p)
    else:
        cnnbp_nadam_update_f64(size, beta_1, beta_2, epsilon, c2, on_g, on_m,
                               g, m, v, p)


cdef inline void rmsprop_update(ptrdiff_t size, double lr, double rho,
                                double epsilon, const floating *g, floating *v,
                                floating *p) noexcept nogil:
    if floating is float:
        cnnbp_rmsprop_update_f32(size, lr, rho, epsilon, g, v, p)
    else:
        cnnbp_rmsprop_update_f64(size, lr, rho, epsilon, g, v, p)


cdef inline void adagrad_update(ptrdiff_t size, double lr, double epsilon,
                                const floating *g, floating *s,
                                floating *p) noexcept nogil:
    if floating is float:
        cnnbp_adagrad_update_f32(size, lr, epsilon, g, s, p)
    else:
        cnnbp_adagrad_update_f64(size, lr, epsilon, g, s, p)


cdef inline void gather_rows(ptrdiff_t m, ptrdiff_t n, const floating *src,
                             const ptrdiff_t *rows, floating *dst) noexcept nogil:
    if floating is float:
        cnnbp_gather_rows_f32(m, n, src, rows, dst)
    else:
        cnnbp_gather_rows_f64(m, n, src, rows, dst)


cdef inline bint is_finite(ptrdiff_t size, const floating *x) noexcept nogil:
    if floating is float:
        return cnnbp_all_finite_f32(size, x)
    else:
        return cnnbp_all_finite_f64(size, x)


cdef inline void column_sums(ptrdiff_t m, ptrdiff_t n, const floating *x,
                             floating *sums) noexcept nogil:
    if floating is float:
        cnnbp_column_sums_f32(m, n, x, sums)
    else:
        cnnbp_column_sums_f64(m, n, x, sums)


cdef inline void targets_from_u8(ptrdiff_t m, ptrdiff_t n, const unsigned char *src,
                                 const ptrdiff_t *rows, floating *dst) noexcept nogil:
    if floating is float:
        cnnbp_targets_from_u8_f32(m, n, src, rows, dst)
    else:
        cnnbp_targets_from_u8_f64(m, n, src, rows, dst)


cdef inline void row_product(ptrdiff_t k, ptrdiff_t n, const floating *x,
                             const floating *w, floating *z) noexcept nogil:
    if floating is float:
        cnnbp_row_product_f32(k, n, x, w, z)
    else:
        cnnbp_row_product_f64(k, n, x, w, z)


cdef inline void team_reduce(const cnnbp_team *t, const cnnbp_share *s,
                             const floating *sums, floating *g) noexcept nogil:
    if floating is float:
        cnnbp_team_reduce_f32(t, s, sums, g)
    else:
        cnnbp_team_reduce_f64(t, s, sums, g)


cdef inline void add(ptrdiff_t size, const floating *x, floating *y) noexcept nogil:
    if floating is float:
        cnnbp_add_f32(size, x, y)
    else:
        cnnbp_add_f64(size, x, y)


cdef inline void max_norm_columns(ptrdiff_t m, ptrdiff_t n, double c,
                                  floating *w, floating *scratch) noexcept nogil:
    if floating is float:
        cnnbp_max_norm_columns_f32(m, n, c, w, scratch)
    else:
        cnnbp_max_norm_columns_f64(m, n, c, w, scratch)


cdef inline void finish_gradient(ptrdiff_t size, double alpha, double alpha_l1,
                                 double s, const floating *w,
                                 floating *g) noexcept nogil:
    if floating is float:
        cnnbp_finish_gradient_f32(size, alpha, alpha_l1, s, w, g)
    else:
        cnnbp_finish_gradient_f64(size, alpha, alpha_l1, s, w, g)


cdef inline void dropout(ptrdiff_t size, double rate, uint64_t seed,
                         uint64_t counter, const floating *a, floating *mask,
                         floating *kept) noexcept nogil:
    if floating is float:
        cnnbp_dropout_f32(size, rate, seed, counter, a, mask, kept)
    else:
        cnnbp_dropout_f64(size, rate, seed, counter, a, mask, kept)


cdef inline void multiply(ptrdiff_t size, const floating *x,
                          floating *y) noexcept nogil:
    if floating is float:
        cnnbp_multiply_f32(size, x, y)
    else:
        cnnbp_multiply_f64(size, x, y)


cdef inline void batch_norm_train(ptrdiff_t m, ptrdiff_t n, double eps,
                                  double momentum, const floating *sw,
                                  const floating *gamma,
                                  floating *z, floating *zhat, floating *inv_std,
                                  floating *mean, floating *running_mean,
                                  floating *running_var) noexcept nogil:
    if floating is float:
        cnnbp_batch_norm_train_f32(m, n, eps, momentum, sw, gamma, z, zhat, inv_std,
                                   mean, running_mean, running_var)
    else:
        cnnbp_batch_norm_train_f64(m, n, eps, momentum, sw, gamma, z, zhat, inv_std,
                                   mean, running_mean, running_var)


cdef inline void batch_norm_apply(ptrdiff_t m, ptrdiff_t n, double eps,
                                  const floating *gamma, const floating *running_mean,
                                  const floating *running_var,
                                  floating *z) noexcept nogil:
    if floating is float:
        cnnbp_batch_norm_apply_f32(m, n, eps, gamma, running_mean, running_var, z)
    else:
        cnnbp_batch_norm_apply_f64(m, n, eps, gamma, running_mean, running_var, z)


cdef inline void batch_norm_backward(ptrdiff_t m, ptrdiff_t n, const floating *sw,
                                     const floating *gamma,
                                     const floating *zhat, const floating *inv_std,
                                     floating *scratch, floating *dgamma,
                                     floating *dbeta, floating *delta) noexcept nogil:
    if floating is float:
        cnnbp_batch_norm_backward_f32(m, n, sw, gamma, zhat, inv_std, scratch, dgamma,
                                      dbeta, delta)
    else:
        cnnbp_batch_norm_backward_f64(m, n, sw, gamma, zhat, inv_std, scratch, dgamma,
                                      dbeta, delta)


cdef inline double batch_norm_moments(ptrdiff_t m, ptrdiff_t n, const floating *sw,
                                      const floating *z, floating *mean,
                                      floating *m2) noexcept nogil:
    if floating is float:
        return cnnbp_batch_norm_moments_f32(m, n, sw, z, mean, m2)
    else:
        return cnnbp_batch_norm_moments_f64(m, n, sw, z, mean, m2)


cdef inline void batch_norm_combine(int parts, ptrdiff_t n, ptrdiff_t stride,
                                    const double *weights, const floating *moments,
                                    double eps, double momentum, floating *mean,
                                    floating *inv_std, floating *running_mean,
                                    floating *running_var) noexcept nogil:
    if floating is float:
        cnnbp_batch_norm_combine_f32(parts, n, stride, weights, moments, eps, momentum,
                                     mean, inv_std, running_mean, running_var)
    else:
        cnnbp_batch_norm_combine_f64(parts, n, stride, weights, moments, eps, momentum,
                                     mean, inv_std, running_mean, running_var)


cdef inline void batch_norm_normalise(ptrdiff_t m, ptrdiff_t n, const floating *mean,
                                      const floating *inv_std, const floating *gamma,
                                      floating *z, floating *zhat) noexcept nogil:
    if floating is float:
        cnnbp_batch_norm_normalise_f32(m, n, mean, inv_std, gamma, z, zhat)
    else:
        cnnbp_batch_norm_normalise_f64(m, n, mean, inv_std, gamma, z, zhat)


cdef inline void batch_norm_backward_sums(ptrdiff_t m, ptrdiff_t n, const floating *zhat,
                                          const floating *delta, floating *s1,
                                          floating *s2) noexcept nogil:
    if floating is float:
        cnnbp_batch_norm_backward_sums_f32(m, n, zhat, delta, s1, s2)
    else:
        cnnbp_batch_norm_backward_sums_f64(m, n, zhat, delta, s1, s2)


cdef inline void batch_norm_backward_combine(int parts, ptrdiff_t n, ptrdiff_t stride,
                                             const floating *sums, double weight,
                                             floating *dgamma, floating *dbeta,
                                             floating *scratch) noexcept nogil:
    if floating is float:
        cnnbp_batch_norm_backward_combine_f32(parts, n, stride, sums, weight, dgamma,
                                              dbeta, scratch)
    else:
        cnnbp_batch_norm_backward_combine_f64(parts, n, stride, sums, weight, dgamma,
                                              dbeta, scratch)


cdef inline void batch_norm_backward_apply(ptrdiff_t m, ptrdiff_t n, const floating *sw,
                                           const floating *gamma, const floating *zhat,
                                           const floating *inv_std, const floating *s1,
                                           const floating *s2,
                                           floating *delta) noexcept nogil:
    if floating is float:
        cnnbp_batch_norm_backward_apply_f32(m, n, sw, gamma, zhat, inv_std, s1, s2, delta)
    else:
        cnnbp_batch_norm_backward_apply_f64(m, n, sw, gamma, zhat, inv_std, s1, s2, delta)


cdef inline void csr_matmul(ptrdiff_t m, ptrdiff_t n, const floating *data,
                            const ptrdiff_t *indices, const ptrdiff_t *indptr,
                            const ptrdiff_t *rows, ptrdiff_t first_row,
                            const floating *w, floating *out) noexcept nogil:
    if floating is float:
        cnnbp_csr_matmul_f32(m, n, data, indices, indptr, rows, first_row, w, out)
    else:
        cnnbp_csr_matmul_f64(m, n, data, indices, indptr, rows, first_row, w, out)


cdef inline void csr_transpose_matmul_add(
        ptrdiff_t m, ptrdiff_t n, const floating *data, const ptrdiff_t *indices,
        const ptrdiff_t *indptr, const ptrdiff_t *rows, ptrdiff_t first_row,
        const floating *delta, floating *g) noexcept nogil:
    if floating is float:
        cnnbp_csr_transpose_matmul_add_f32(m, n, data, indices, indptr, rows,
                                           first_row, delta, g)
    else:
        cnnbp_csr_transpose_matmul_add_f64(m, n, data, indices, indptr, rows,
                                           first_row, delta, g)


cdef inline void gemm(bint single, char trans_a, char trans_b, int m, int n, int k,
                      floating alpha, const floating *a, int lda,
                      const floating *b, int ldb, floating beta,
                      floating *c, int ldc) noexcept nogil:
    """Row-major C := alpha op(A) op(B) + beta C, op(A) (m, k), op(B) (k, n).

    With `single` (threads sharing a batch), on the calling thread alone:
    cnnbp_thread_blas, a private OpenBLAS kept at one thread; else the
    process's BLAS (scipy's), on its own threads.

    BLAS is column-major, where a row-major matrix reads as its transpose, so
    C^T = op(B)^T op(A)^T is computed by swapping the operands (as
    sklearn/utils/_cython_blas.pyx does).

    A single row (m = 1, op(A) = A) goes to gemv instead: gemm would first
    pack all of B, which made a 1-row prediction of a 784-100 network 60 us
    where the products take 5.
    """
    if single:
        if floating is float:
            cnnbp_thread_blas.sgemm(&trans_b, &trans_a, &n, &m, &k, &alpha, b, &ldb,
                                    a, &lda, &beta, c, &ldc)
        else:
            cnnbp_thread_blas.dgemm(&trans_b, &trans_a, &n, &m, &k, &alpha, b, &ldb,
                                    a, &lda, &beta, c, &ldc)
        return
    if m == 1 and trans_a == c'N':
        # c^T = op(B)^T a^T; row-major B is the column-major (ldb-rows) B^T
        if trans_b == c'N':
            _gemv(c'N', n, k, alpha, b, ldb, a, beta, c)
        else:
            _gemv(c'T', k, n, alpha, b, ldb, a, beta, c)
        return
    if floating is float:
        sgemm(&trans_b, &trans_a, &n, &m, &k, &alpha, <float *> b, &ldb,
              <float *> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&trans_b, &trans_a, &n, &m, &k, &alpha, <double *> b, &ldb,
              <double *> a, &lda, &beta, c, &ldc)


cdef inline void _gemv(char trans, int m, int n, floating alpha,
                       const floating *a, int lda, const floating *x,
                       floating beta, floating *y) noexcept nogil:
    """Column-major y := alpha op(A) x + beta y, A (m, n), unit strides."""
    cdef int inc = 1
    if floating is float:
        sgemv(&trans, &m, &n, &alpha, <float *> a, &lda, <float *> x, &inc,
              &beta, y, &inc)
    else:
        dgemv(&trans, &m, &n, &alpha, <double *> a, &lda, <double *> x, &inc,
              &beta, y, &inc)


cdef inline double sum_of_abs(int n, const floating *x) noexcept nogil:
    """sum |x_i| through BLAS asum: cnnbp_thread_blas's (on the calling
    thread) once loaded, else the process's."""
    cdef int one = 1
    if floating is float:
        if cnnbp_thread_blas.sasum != NULL:
            return cnnbp_thread_blas.sasum(&n, x, &one)
        return sasum(&n, <float *> x, &one)
    else:
        if cnnbp_thread_blas.dasum != NULL:
            return cnnbp_thread_blas.dasum(&n, x, &one)
        return dasum(&n, <double *> x, &one)


cdef inline double sum_of_squares(int n, const floating *x) noexcept nogil:
    """x . x through BLAS (accumulated in the dtype of x, as numpy's dot):
    cnnbp_thread_blas's (on the calling thread) once loaded, else the
    process's."""
    cdef int one = 1
    if floating is float:
        if cnnbp_thread_blas.sdot != NULL:
            return cnnbp_thread_blas.sdot(&n, x, &one, x, &one)
        return sdot(&n, <float *> x, &one, <float *> x, &one)
    else:
        if cnnbp_thread_blas.ddot != NULL:
            return cnnbp_thread_blas.ddot(&n, x, &one, x, &one)
        return ddot(&n, <double *> x, &one, <double *> x, &one)
