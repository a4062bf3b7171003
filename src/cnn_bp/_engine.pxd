# cython: language_level=3
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport uint64_t
from cpython.ref cimport PyObject

from ._kernels cimport cnnbp_lockstep, cnnbp_optim


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
    void *part                   # shared one-row prediction: the helper's part of
                                 # Z^l (up to n_l values, see _forward), or NULL
    bint single                  # products on the calling thread alone (the
                                 # private BLAS): passes whose threads share a batch
    int helper                   # a shared one-row prediction's helper (pool.c id)


cdef struct Slice:
    # One pass on a team of threads: a slice of an epoch (_epoch) or the
    # gradient's full batch (_full_gradient), and what it did.
    ptrdiff_t start              # in: the row to start at; out: to go on from
    double total                 # in: the epoch's total so far; out: with this slice's
    double deadline              # in: stop after the batch that ends past it (_now)
    int parts                    # in: the plan's parts of a batch (cnnbp_plan_parts)
    int helpers                  # in: helpers to run them with, at most
    int used                     # out: threads it had (1 + helpers; 0: no memory)
    double shared                # out: seconds of its shared hand-overs
    double cpu                   # out: CPU seconds its threads spent in them
    ptrdiff_t block              # in: rows per block of a large batch (Batch.block)
    bint signals                 # in: look for signals between those blocks (the
                                 # caller is Python's main thread)
    PyObject *exc                # out: the exception a signal's handler raised
                                 # within a batch (a reference), or NULL


cdef class TrainingData:
    cdef Rows rows               # X as the passes read it
    cdef readonly Py_ssize_t n_samples
    cdef object Y, sample_weight
    cdef object order            # intp row order, or None: rows as stored
    cdef list keep               # the arrays `rows` points into
    cdef object dtype            # the engine's dtype and layer_units it was
    cdef tuple layer_units       # checked for


cdef class Engine:
    cdef Net net
    cdef Optim opt
    cdef Work work
    cdef object _layout          # intp array backing net.units/w_off/b_off/blk_off
    cdef object _activation      # intc array backing net.activation
    cdef object _dropout         # float64 array backing net.dropout
    cdef object _rng             # uint64 array backing net.rng
    cdef readonly object running # (2, width) array backing net.running
    cdef object _work            # arrays backing the Work blocks, or None
    cdef object _g2              # the array backing work.g2, or None
    cdef object _sums            # the array backing work.sums, or None
    cdef object _acc             # L-BFGS's sum over blocks (_full_gradient), or None
    cdef readonly object dtype
    cdef int _typenum            # dtype's numpy type number (NPY_FLOAT / NPY_DOUBLE)
    cdef readonly tuple layer_units
    cdef readonly object params
    cdef readonly object grads
    cdef readonly object optimizer_state
    cdef readonly str solver
    cdef readonly tuple coefs
    cdef readonly tuple intercepts
    cdef readonly object last_nogil_interval
    cdef readonly Py_ssize_t stopped_at  # row where the last run_epoch stopped
    cdef readonly int last_threads       # threads the last pass took
    cdef readonly long long rows_trained  # rows of all run_epoch calls, summed
    cdef bint _busy              # a training pass is running on the buffers
    cdef object __weakref__      # for _passes_running
    cdef cnnbp_lockstep _lockstep  # helpers the slices take on a busy machine
    cdef _claim(self)
    cdef _release(self)
    cdef _idle(self)
    cdef int _plan(self, int n_threads, ptrdiff_t rows) except -1
    cdef _enter_blas(self, bint single, int parts)
    cdef Slice _slice(self, int parts)
    cdef _slice_ended(self, Slice *sl)
    cdef double _run(self, const Rows *x, Y, sample_weight, order, ptrdiff_t n,
                     ptrdiff_t batch_size, int parts, ptrdiff_t start,
                     double total, double budget) except? -1
    cdef double _full_pass(self, const Rows *x, Y, sample_weight, ptrdiff_t n,
                           bint gradient, bint training, int parts,
                           double *weight) except? -1
    cdef int _predict_rows(self, const Rows *x, ptrdiff_t n, out, work, ptrdiff_t cap,
                           ptrdiff_t at, bint check) except -1
    cdef _set_penalties(self, double alpha, double alpha_l1)
    cdef _reserve(self, ptrdiff_t cap, bint gather_x, ptrdiff_t shared=*, bint single=*)
    cdef list _allocate(self, ptrdiff_t cap, Work *w, bint keep_z)
    cdef ptrdiff_t _check_data(self, Rows *rows, X, Y, sample_weight,
                               list keep) except -1


# The process-wide state this extension alone holds (csrc/pool.c's helper
# threads, csrc/thread_blas.c's fork gate, the one-row sharing range), for
# other extensions: cnn_bp._hooks, the tests' wrappers.
cdef int take_helpers(int want, int *ids) noexcept nogil
cdef void give_helpers(int n, const int *ids) noexcept nogil
cdef unsigned finished_helper_jobs() noexcept nogil
cdef void blas_call_begin() noexcept nogil
cdef void blas_call_end() noexcept nogil
cdef (ptrdiff_t, ptrdiff_t) shared_row_range(ptrdiff_t lo, ptrdiff_t hi, bint set) noexcept
