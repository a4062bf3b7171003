# cython: language_level=3
"""The nogil mathematics of one part of a batch (_passes.pyx): the types the
passes read, and what the plan and the engine call. Knows no threads."""
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport uint64_t
from cython cimport floating

from ._kernels cimport cnnbp_optim, cnnbp_range_fn


# How a one-row prediction's layer inputs are split with a helper thread:
# cnnbp_split_inputs (csrc/parallel.h), set by the plan that holds it.
ctypedef void (*SplitInputs)(int helper, ptrdiff_t n, cnnbp_range_fn fn,
                             void *ctx) noexcept nogil


cdef struct Net:
    # Read-only description of a network plus pointers to its parameters.
    ptrdiff_t n_layers           # L: number of weight layers
    const ptrdiff_t *units       # L + 1 widths: n_0 (features) .. n_L (outputs)
    const ptrdiff_t *w_off       # L offsets of W^1..W^L (fan_in x fan_out) in params
    const ptrdiff_t *b_off       # L offsets of b^1..b^L in params
    const ptrdiff_t *blk_off     # L + 1: A^l / delta^l block starts, in rows of width 1
    ptrdiff_t n_coefs            # number of weights (the L2-penalised part)
    ptrdiff_t n_params           # weights + biases
    const int *activation        # L - 1 cnnbp_activation codes, hidden layer l at l - 1
    double slope                 # leaky_relu's negative slope
    int loss                     # cnnbp_loss code (fixes the output activation)
    double huber_delta           # Huber loss's d
    double alpha                 # L2 penalty
    double alpha_l1              # L1 penalty
    const ptrdiff_t *gamma_off   # L offsets of the batch-norm scales gamma^l in
                                 # params, hidden layer l at l - 1; -1: none
    void *running                # batch norm's running means (width values,
                                 # layer l at blk_off[l]), then running variances
    const double *dropout        # L dropout rates, hidden layer l at l - 1 (0: none)
    uint64_t *rng                # dropout's generator: seed, then the stream
                                 # position, advanced by every mask drawn
    void *params                 # n_params values: W^1..W^L, b^1..b^L, then the
                                 # gamma^l of batch-normalised layers
    void *grads                  # n_params values, same layout


# The optimizer's settings and state (csrc/kernels.h), stepped by
# cnnbp_optimizer_step (csrc/optimizers.c).
ctypedef cnnbp_optim Optim


cdef struct Rows:
    # The input rows of one block: dense, or rows of a CSR matrix.
    const void *x                # (m, n_0) row-major block, or NULL when sparse
    const void *data             # CSR values / column indices / row pointers
    const ptrdiff_t *indices
    const ptrdiff_t *indptr
    const ptrdiff_t *rows        # CSR row of block row i, or NULL: first_row + i
    ptrdiff_t first_row
    const void *sw               # the block rows' sample weights, or NULL (for
                                 # batch statistics; set by the training passes)


cdef struct Work:
    # Preallocated blocks for `cap` rows; nothing is allocated inside an epoch.
    ptrdiff_t cap                # rows each block holds
    void *a                      # A^1..A^L, block l at cap * blk_off[l]
    void *delta                  # delta^1..delta^L, same places
    void *x                      # gathered batch rows of X (cap, n_0)
    void *y                      # gathered batch rows of Y (cap, n_L)
    void *sw                     # gathered batch sample weights (cap,)
    void *z                      # Z^1..Z^L kept (inspection; derivatives that need
                                 # z, see cnnbp_derivative_needs_z), or NULL
    void *zhat                   # batch norm: Zhat^l of the batch, as a; or NULL
    void *bn                     # batch norm: 1/sqrt(var + eps) per unit (at blk_off),
                                 # then 2 x width scratch values; or NULL
    void *mask                   # dropout: each element's 0 or 1/(1 - rate), as a
    void *kept                   # dropout: A^l * mask, what layer l + 1 reads
    void *g2                     # shared epochs: parts 1..n_g2's partial gradients
                                 # of parameters [g0, n_params), one after the
                                 # other (part k's: g2 + (k - 1) (n_params - g0),
                                 # parameter i at [i - g0]), or NULL
    ptrdiff_t g0
    ptrdiff_t n_g2               # how many such buffers g2 holds
    void *sums                   # shared batch-normalised epochs: parts 0..n_g2's
                                 # sums at a normalised layer (2 n_l values each,
                                 # part k's at k sums_stride), or NULL
    ptrdiff_t sums_stride
    void *kz                     # shared epochs: Z^1 of a batch by blocks of input
                                 # features, one (m, n_1) block a part (_input_block),
                                 # for batches of up to kz_cap rows in up to n_kz
                                 # parts; or NULL
    ptrdiff_t kz_cap
    ptrdiff_t n_kz
    void *part                   # shared one-row prediction: the helper's part of
                                 # Z^l (up to n_l values, see _forward), or NULL
    bint single                  # products on the calling thread alone (the
                                 # private BLAS): passes whose threads share a batch
    int helper                   # a shared one-row prediction's helper (pool.c id)
    SplitInputs split            # and how its inputs are split with it
                                 # (cnnbp_split_inputs; the passes know no threads)


cdef struct Stage:
    # Where a thread's part of a shared, batch-normalised training pass
    # stops and goes on: at every normalised layer, forward and back, the
    # batch's statistics and sums need every part's rows (the caller
    # combines the parts' sums in between, _combine).
    void *sums                   # this part's sums there (2 n_l values), or NULL:
                                 # the whole batch is here, no stop
    ptrdiff_t at                 # in: 0, from the start; l: go on at layer l, its
                                 # sums combined; out: 0 done, l stopped at layer l
    ptrdiff_t done               # in: layers 1..done are computed already (A^l of the
                                 # layers the parts made by columns, _columns)
    ptrdiff_t bottom             # in: the backward pass ends at layer bottom's bias
                                 # sums (>= 1; the layers below are made by column
                                 # tiles, _columns_of_delta)


cdef inline bint _drops(const Net *net, ptrdiff_t l, bint training) noexcept nogil:
    """Whether hidden layer l applies dropout in this pass."""
    return training and l < net.n_layers and net.dropout[l - 1] > 0


cdef inline ptrdiff_t _width(const Net *net) noexcept nogil:
    """sum of n_l over l = 1..L: the values of one row of all blocks."""
    return net.blk_off[net.n_layers] + net.units[net.n_layers]


cdef inline bint _normalised(const Net *net, ptrdiff_t l) noexcept nogil:
    """Whether hidden layer l is batch-normalised."""
    return l < net.n_layers and net.gamma_off[l - 1] >= 0


# The private one-thread BLAS (csrc/thread_blas.c, linked into this extension
# alone): whether it loaded, entering and leaving an epoch's threads
# (cnnbp_blas_enter), and the fork gate.
cdef bint blas_loaded() noexcept nogil
cdef bint blas_enter(int threads) noexcept nogil
cdef void blas_leave(int threads) noexcept nogil
cdef void blas_call_begin() noexcept nogil
cdef void blas_call_end() noexcept nogil


# What the plan runs on each part (_plan.pyx), in the order of a batch.
cdef void _spend_masks(const Net *net, ptrdiff_t batch) noexcept nogil
cdef bint _forward(const Net *net, const Rows *x, ptrdiff_t m, const Work *w,
                   floating *a, bint training, ptrdiff_t r0, ptrdiff_t batch,
                   bint check, int row, ptrdiff_t last, Stage *st) noexcept nogil
cdef double _output_loss(const Net *net, const floating *y, const floating *sw,
                         const Work *w, ptrdiff_t r0, ptrdiff_t m) noexcept nogil
cdef void _weight_gradient(const Net *net, const Rows *x, const Work *w,
                           ptrdiff_t r0, ptrdiff_t m, ptrdiff_t l, ptrdiff_t i0,
                           ptrdiff_t i1, bint training, floating *g,
                           ptrdiff_t g0) noexcept nogil
cdef void _backward(const Net *net, const Rows *x, const Work *w, ptrdiff_t r0,
                    ptrdiff_t m, ptrdiff_t first, bint training, floating *g,
                    ptrdiff_t g0, Stage *st) noexcept nogil
cdef void _advance(Optim *opt) noexcept nogil
cdef double _finish_step(const Net *net, const Optim *opt, floating *p, floating *g,
                         double s, ptrdiff_t lo, ptrdiff_t hi) noexcept nogil
cdef double _finish_update(const Net *net, Optim *opt, floating *p, floating *g,
                           double data_loss, double s) noexcept nogil
cdef double _weight_sum(const floating *sw, ptrdiff_t m) noexcept nogil
cdef Rows _block_rows(const Rows *X, ptrdiff_t start, ptrdiff_t n_in,
                      floating *dummy) noexcept nogil
cdef const floating *_target_rows(const void *Y, bint y_u8, const ptrdiff_t *rows,
                                  ptrdiff_t start, ptrdiff_t m, ptrdiff_t n_out,
                                  floating *block) noexcept nogil
cdef void _column_tile(const Net *net, const Work *w, const floating *x, ptrdiff_t l,
                       ptrdiff_t m, ptrdiff_t c0, ptrdiff_t c1) noexcept nogil
cdef void _column_tile_back(const Net *net, const Work *w, ptrdiff_t l, ptrdiff_t m,
                            ptrdiff_t c0, ptrdiff_t c1, floating *g) noexcept nogil
cdef void _input_block(const Net *net, const Work *w, const floating *x, ptrdiff_t m,
                       ptrdiff_t f0, ptrdiff_t f1, floating *out) noexcept nogil
cdef void _input_sums(const Net *net, const Work *w, const floating *blocks,
                      ptrdiff_t n_blocks, ptrdiff_t m, ptrdiff_t r0,
                      ptrdiff_t mr) noexcept nogil


# The passes of one thread over all rows, block by block, that the engine
# calls: the full batch's loss (L-BFGS's line search), its objective
# finished from the sums, and a traced step.
cdef double _full_loss(const Net *net, const Work *w, const Rows *X, const void *Y,
                       bint y_u8, const floating *SW, ptrdiff_t n, bint training,
                       double *weight) noexcept nogil
cdef double _objective(const Net *net, double data_loss, double s, bint gradient,
                       floating *dummy) noexcept nogil
cdef double _trace(const Net *net, const Rows *X, const floating *Y,
                   const floating *SW, ptrdiff_t n, const Work *w) noexcept nogil
