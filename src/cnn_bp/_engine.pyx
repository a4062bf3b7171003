# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The typed core of cnn_bp: `Engine` owns every buffer of one network and
runs the forward pass, the backward pass and the optimizer update without the
GIL, a whole epoch of mini-batches per call.

Layering, calls going one way:
    C kernels (csrc/: element-wise loops, no Python, no allocation; dropout's
        masks from a counter-based generator, SplitMix64)
    -> this engine (owns the buffers, calls BLAS, runs nogil; the mathematics
        over row ranges and parameter ranges, which knows no threads)
    -> the network binding (cnn_bp/_network.py: parameters <-> engine, data
        checked once), the trainer (_training.py: RNG, the epoch loop,
        warnings) and the estimators (_mlp.py: validation, attributes)
Beside the engine, the parallel layer (csrc/team.c over csrc/pool.c's helper
threads) splits a training batch, and a one-row prediction, among threads.

Mathematics, layers l = 1..L, a mini-batch of m rows stored row-major:
    forward    Z^l = A^{l-1} W^l + b^l,   A^l = f(Z^l),   A^0 = X
    output     delta^L = A^L - Y           (canonical activation/loss pairs)
    backward   delta^l = (delta^{l+1} (W^{l+1})^T) * f'(A^l)
    gradients  dC/dW^l = ((A^{l-1})^T delta^l + alpha W^l) / s
               dC/db^l = sum_rows(delta^l) / s,    s = sum of sample weights
f' is read off the stored A^l where that is exact, so Z^l is kept only for
the activations whose derivative needs it (gelu, gelu_tanh, silu:
cnnbp_derivative_needs_z) and for inspection; otherwise each block holds Z^l
only until the activation overwrites it in place. A hidden layer may add
batch normalisation of A^{l-1} W^l before f and inverted dropout of A^l
after it (csrc/layers.c; training passes draw masks and use batch statistics,
prediction uses neither dropout nor batch statistics).

Threads: a training slice (_epoch) takes a team of T threads, the caller and
up to T - 1 helpers, and each batch is split among them (csrc/team.c): each
takes its rows forward and back (_share: SHARE_START, with a stop at every
batch-normalised layer for the whole batch's statistics, SHARE_ON), then its
share of the reduction and the update by parameter ranges (SHARE_UPDATE);
dropout masks are drawn at each row's place in the batch's stream. Each thread's
products run on that thread alone (w.single: a private OpenBLAS kept at one
thread, cnn_bp._threads.thread_blas; the process's BLAS and its thread
count, a process-wide setting, are never touched). Matrix products of a
200-row batch are too small for BLAS's own threads to pay; this way the
element-wise work, the row gathering and the optimizer run on every core
too. A one-row prediction of a mid-sized network shares each layer's inputs
with a helper likewise (_forward, cnnbp_split_inputs).

Memory: one flat parameter buffer [W^1..W^L, b^1..b^L]; `coefs` and
`intercepts` are numpy views into it. The gradient and optimizer-state
buffers have the same layout. Every array handed in is checked (dtype,
shape, contiguity, index range) before a pointer is taken.
"""
import os

import numpy as np
import scipy.sparse as sp

from ._registry import HYPERPARAMETERS, solver_code
from ._threads import register_with_threadpoolctl, thread_blas

cimport numpy as cnp
from libc.math cimport NAN, isnan, pow, sqrt
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from cython cimport floating

from ._kernels cimport (
    cnnbp_thread_blas, cnnbp_sgemm_fn, cnnbp_dgemm_fn, cnnbp_sdot_fn, cnnbp_ddot_fn,
    cnnbp_sasum_fn, cnnbp_dasum_fn,
    CNNBP_POISSON, CNNBP_HUBER, CNNBP_ABSOLUTE_ERROR, CNNBP_SOLVER_SGD,
    CNNBP_SOLVER_ADAM, CNNBP_SOLVER_ADAMW, CNNBP_SOLVER_NADAM, CNNBP_SOLVER_RMSPROP,
    CNNBP_SOLVER_ADAGRAD, CNNBP_UNKNOWN_CODE, registry_codes, adagrad_update, adam_update,
    adamw_update, add, batch_norm_apply, batch_norm_backward, batch_norm_train,
    batch_norm_moments, batch_norm_combine, batch_norm_normalise,
    batch_norm_backward_sums, batch_norm_backward_combine, batch_norm_backward_apply,
    bias_activation, cnnbp_all_finite_f32, cnnbp_all_finite_f64,
    cnnbp_row_argmax_f32, cnnbp_row_argmax_f64, cnnbp_bias_activation_f64,
    cnnbp_delta_derivative_f64, cnnbp_output_loss_f64,
    cnnbp_derivative_needs_z, cnnbp_loss_activation, column_sums,
    CNNBP_MAX_HELPERS, cnnbp_helpers_acquire, cnnbp_helper_jobs, cnnbp_helpers_release,
    cnnbp_get_num_threads, CNNBP_SPLIT_ROWS, CNNBP_ROW_BATCH, CNNBP_ROW_ALONE,
    CNNBP_ROW_SHARED, cnnbp_share, cnnbp_share_fn, cnnbp_team, cnnbp_team_begin,
    cnnbp_team_split, cnnbp_team_run, cnnbp_team_end, team_reduce, cnnbp_range_fn,
    cnnbp_row_mode, cnnbp_split_inputs, cnnbp_lockstep_init, cnnbp_lockstep_helpers,
    cnnbp_lockstep_learn, csr_matmul,
    csr_transpose_matmul_add, delta_derivative, dropout, finish_gradient,
    gather_rows, gemm, all_finite as is_finite, max_norm_columns, multiply, nadam_update,
    output_loss, row_product,
    rmsprop_update, sgd_update, sum_of_abs, sum_of_squares, targets_from_u8,
)

cnp.import_array()


def _set_thread_blas():
    """Point cnnbp_thread_blas at the private one-thread OpenBLAS
    (cnn_bp._threads.thread_blas); left NULL, batches are not shared."""
    addresses = thread_blas()
    if addresses is None:
        return
    cdef size_t[6] a
    for i, name in enumerate(("sgemm", "dgemm", "sdot", "ddot", "sasum", "dasum")):
        a[i] = addresses[name]
    cnnbp_thread_blas.sgemm = <cnnbp_sgemm_fn> a[0]
    cnnbp_thread_blas.dgemm = <cnnbp_dgemm_fn> a[1]
    cnnbp_thread_blas.sdot = <cnnbp_sdot_fn> a[2]
    cnnbp_thread_blas.ddot = <cnnbp_ddot_fn> a[3]
    cnnbp_thread_blas.sasum = <cnnbp_sasum_fn> a[4]
    cnnbp_thread_blas.dasum = <cnnbp_dasum_fn> a[5]


_set_thread_blas()
register_with_threadpoolctl()
cnnbp_get_num_threads()  # OMP_NUM_THREADS is read now, as OpenMP reads it at load

cdef char NO_TRANS = b'N'
cdef char TRANS = b'T'

# BLAS takes 32-bit integer sizes.
cdef ptrdiff_t BLAS_INT_MAX = 2147483647

# Batch normalisation's constants: PyTorch's BatchNorm1d defaults.
BN_EPSILON = 1e-5   # added to the variance
BN_MOMENTUM = 0.1   # weight of each batch in the running estimates
cdef double _BN_EPSILON = BN_EPSILON
cdef double _BN_MOMENTUM = BN_MOMENTUM

# Rows per block when predicting: as many as PREDICT_BYTES hold of input
# rows and their activations (8 MiB stay in the L3 cache, so the check of a
# block's Z^1 for NaN and inf reads it there, and the next layer's product
# too), and at least PREDICT_MIN_ROWS for efficient products; the work
# memory stays bounded whatever the number of rows.
PREDICT_BYTES = 8 << 20
PREDICT_MIN_ROWS = 256
# ... and Z^1 is checked, and activated, this many bytes at a time (_activate).
cdef enum:
    CHECK_BYTES = 16384

# The update finishes the gradient and steps this many parameters at a time
# (_finish_step): 4096 values of the parameters, gradient and two moments
# stay in L2 cache between the two.
cdef enum:
    STEP_CHUNK = 4096

# Rows per block of the full-batch loss and gradient (L-BFGS): large enough
# for efficient products, small enough to bound the work memory.
FULL_BATCH_ROWS = 4096

# A one-row prediction is shared with the helper thread (half of each
# layer's inputs each, see _forward) when the largest W^l of its network
# takes this many bytes (from, to): a row's product streams the weights, so
# bytes, not weights, say what sharing saves. Measured on Zen 4 (Engine.predict,
# shared / alone, medians of 7 x 2000 rows): 784-100-10 0.63-0.71 in float64
# (627 KB), 0.86-1.11 in float32 (314 KB: not worth it); 784-512-256-10
# 0.54-0.88; 784-1024-512-10 0.58-0.85; 784-2048-10 0.89-1.17 (6.4 and 12.8
# MB: two cores stream memory no faster than OpenBLAS's two threads).
SHARED_ROW_BYTES = (1 << 19, 1 << 23)
cdef ptrdiff_t _SHARED_ROW_MIN = SHARED_ROW_BYTES[0]
cdef ptrdiff_t _SHARED_ROW_MAX = SHARED_ROW_BYTES[1]
# A layer of fewer weights is left to BLAS in a shared row: its product
# takes about as long as the hand-over (~1 us), and OpenBLAS runs a gemv that
# small on the calling thread (interface/gemv.c: under 2304 x
# GEMM_MULTITHREAD_THRESHOLD), so a shared row never wakes OpenBLAS's threads.
cdef enum:
    SHARED_LAYER_WEIGHTS = 9216

# How _forward runs a one-row prediction's products (cnnbp_row_mode):
# BLAS on the block (CNNBP_ROW_BATCH); or, for one dense row of a network in
# SHARED_ROW_BYTES, the layers of at least SHARED_LAYER_WEIGHTS weights
# summed row by row of W^l (row_product), by this thread alone (ROW_ALONE:
# the helper is busy or asleep) or with a helper (ROW_SHARED). ROW_ALONE
# keeps off BLAS too: OpenBLAS would wake its worker for such a row, which
# then spins for ~0.1 s on the core the helper needs for the rows that follow.

# Training batches of at least this many rows are shared among threads
# (parts of at least half as many; csrc/team.c): for smaller ones the
# hand-over costs more than it saves.
SPLIT_ROWS = CNNBP_SPLIT_ROWS

# A shared batch's threads each sum the gradient of their own rows, each
# helper in a buffer of its own, so that a batch takes two hand-overs
# whatever the depth. dW^1 larger than this is the exception: summing it in
# every buffer would add its size per thread to a fit's memory, so it is
# split by rows after the backward pass instead (every part's delta^1 is
# there once the first hand-over ends).
SHARED_W1_BYTES = 1 << 18


def shared_row_bytes(lo=None, hi=None):
    """The range of SHARED_ROW_BYTES in force, (lo, hi); with arguments,
    set it first (tests and benchmarks compare the shared and the unshared
    one-row paths; lo > hi turns sharing off)."""
    global _SHARED_ROW_MIN, _SHARED_ROW_MAX
    if lo is not None:
        _SHARED_ROW_MIN, _SHARED_ROW_MAX = lo, hi
    return _SHARED_ROW_MIN, _SHARED_ROW_MAX


def num_threads():
    """T, the threads a fit may use: threadpoolctl's limit if one is set
    (threadpool_limits), else OMP_NUM_THREADS, else the cores this process
    may run on."""
    return cnnbp_get_num_threads()


def py_take_helpers(int want):
    """Helpers a caller would take now (cnnbp_helpers_acquire), for tests;
    give them back with py_give_helpers."""
    cdef int ids[CNNBP_MAX_HELPERS]
    cdef int got = cnnbp_helpers_acquire(min(want, CNNBP_MAX_HELPERS), ids)
    return [ids[k] for k in range(got)]


def py_give_helpers(list ids):
    """Give back what py_take_helpers returned (once)."""
    cdef int c_ids[CNNBP_MAX_HELPERS]
    if len(ids) > CNNBP_MAX_HELPERS or not all(0 <= i < CNNBP_MAX_HELPERS for i in ids):
        raise ValueError(f"not helper ids from py_take_helpers: {ids}")
    for k, i in enumerate(ids):
        c_ids[k] = i
    cnnbp_helpers_release(len(ids), c_ids)


def helper_jobs():
    """Jobs the helper threads have finished in this process (tests: whether
    a pass was shared)."""
    return cnnbp_helper_jobs()


def activation_codes():
    """The activation enum as compiled (csrc/registry.h), name -> code (for tests)."""
    return registry_codes()["activation"]


def all_finite(X):
    """Whether the float32 or float64 ndarray X holds no inf and no NaN.

    One vectorised pass over C-contiguous X (other layouts: numpy's
    isfinite); unlike ``isfinite(X.sum())`` it is exact when the sum of
    finite values overflows. About 0.3 us for a 784-value row.

    Raises
    ------
    TypeError
        If X is not a float32 or float64 ndarray.
    """
    # (numpy's C API: every prediction checks its outputs with this)
    cdef int typenum = cnp.PyArray_TYPE(X) if cnp.PyArray_Check(X) else -1
    if (typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE
            or cnp.PyArray_ISBYTESWAPPED(X)):
        raise TypeError("all_finite takes a float32 or float64 ndarray")
    if not cnp.PyArray_ISCARRAY_RO(X):  # C-contiguous and aligned
        return bool(np.isfinite(X).all())
    cdef ptrdiff_t size = cnp.PyArray_SIZE(X)
    cdef void *x = _data(X)
    cdef int finite
    if typenum == cnp.NPY_DOUBLE:
        with nogil:
            finite = cnnbp_all_finite_f64(size, <double *> x)
    else:
        with nogil:
            finite = cnnbp_all_finite_f32(size, <float *> x)
    return finite == 1


def row_argmax(Y):
    """The column of each row's largest value: ``Y.argmax(axis=1)``.

    The same indices as numpy's (the first of equal maxima; a row's first
    NaN, if it has one) in one pass over a C-contiguous Y, without numpy's
    per-row loop set-up: 10,000 rows of 10 probabilities take 60-80 us,
    not 160-290 (other dtypes and layouts: numpy's argmax).

    Parameters
    ----------
    Y : ndarray of shape (n_samples, n_columns)
        n_columns >= 1; C-contiguous float32 or float64 for the fast pass.

    Returns
    -------
    idx : ndarray of shape (n_samples,), intp

    Raises
    ------
    TypeError
        If Y is not an ndarray.
    ValueError
        If Y is not 2-D or has no columns.
    """
    if not cnp.PyArray_Check(Y):
        raise TypeError(f"row_argmax takes an ndarray, got {type(Y).__name__}")
    if cnp.PyArray_NDIM(Y) != 2 or cnp.PyArray_DIM(Y, 1) == 0:
        raise ValueError(f"row_argmax takes a 2-D array with columns, got shape {Y.shape}")
    cdef int typenum = cnp.PyArray_TYPE(Y)
    if (typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE
            or not cnp.PyArray_ISCARRAY_RO(Y)):  # C-contiguous, aligned, native
        return Y.argmax(axis=1)
    cdef ptrdiff_t m = cnp.PyArray_DIM(Y, 0), n = cnp.PyArray_DIM(Y, 1)
    # (numpy's C API throughout: a one-row prediction calls this)
    idx = cnp.PyArray_EMPTY(1, cnp.PyArray_DIMS(Y), cnp.NPY_INTP, 0)
    cdef void *y = _data(Y)
    cdef ptrdiff_t *out = <ptrdiff_t *> _data(idx)
    if typenum == cnp.NPY_DOUBLE:
        with nogil:
            cnnbp_row_argmax_f64(m, n, <double *> y, out)
    else:
        with nogil:
            cnnbp_row_argmax_f32(m, n, <float *> y, out)
    return idx


def derivative_needs_z(int code):
    """Whether the derivative of activation `code` is read off Z (for tests)."""
    return bool(cnnbp_derivative_needs_z(code))


def loss_codes():
    """The loss enum as compiled (csrc/registry.h), name -> code (for tests)."""
    return registry_codes()["loss"]


def solver_codes():
    """The solver enum as compiled (csrc/registry.h), name -> code (for tests)."""
    return registry_codes()["solver"]


def check_solver(str solver):
    """The code of stochastic solver `solver`, once `_step` is seen to have
    a case for it (run on an empty range: its default returns
    CNNBP_UNKNOWN_CODE); ValueError otherwise."""
    cdef Net net
    cdef Optim opt
    memset(&net, 0, sizeof(Net))
    memset(&opt, 0, sizeof(Optim))
    opt.kind = solver_code(solver)
    if _step[double](&net, &opt, NULL, NULL, 0, 0) == CNNBP_UNKNOWN_CODE:
        raise ValueError(f"the compiled core has no update step for solver {solver!r}")
    return opt.kind


def _check_codes(hidden, int loss):
    """Raise ValueError unless the kernels have a case for each hidden
    activation code in `hidden` and for `loss`: each kernel that switches on
    a code is run on one value, and its default (CNNBP_UNKNOWN_CODE, or NaN
    for the loss) becomes the exception. The passes then never meet a code
    without a case."""
    cdef double b = 0, z, y = 0, delta
    cdef int c
    for c in sorted(set(hidden)):
        z, delta = 0, 1
        if (cnnbp_bias_activation_f64(1, 1, c, 0.01, &b, &z) == CNNBP_UNKNOWN_CODE
                or cnnbp_delta_derivative_f64(1, c, 0.01, &z, &z, &delta)
                == CNNBP_UNKNOWN_CODE):
            raise ValueError(f"unknown hidden activation code {c}: the compiled core has "
                             f"no hidden activation of that code (codes: "
                             f"{activation_codes()})")
    z = 0
    if isnan(cnnbp_output_loss_f64(1, 1, loss, 1.0, &b, &y, NULL, &z, &delta)):
        raise ValueError(f"unknown loss code {loss}: the compiled core has no loss of "
                         f"that code (codes: {loss_codes()})")


# ---------------------------------------------------------------------------
# nogil core: one forward pass, one backward pass, the update, the epoch.
# ---------------------------------------------------------------------------

cdef inline const floating *_product_input(const Net *net, const Rows *x,
                                          const Work *w, floating *a, ptrdiff_t l,
                                          ptrdiff_t r0, bint training) noexcept nogil:
    """What Z^l's product reads from row r0 on: A^{l-1} (or its dropped-out
    copy), or for l = 1 the block's dense rows of X; NULL for CSR rows."""
    if l > 1:
        return _layer_output(net, w, a, l - 1, training) + r0 * net.units[l - 1]
    return <const floating *> x.x


cdef void _product(const Net *net, const Rows *x, const Work *w, floating *a,
                   ptrdiff_t l, ptrdiff_t m, ptrdiff_t r0, bint training) noexcept nogil:
    """Z^l = A^{l-1} W^l (m, n_l) into rows r0..r0 + m - 1 of block l, in
    one BLAS call; A^0 is x, the block's rows of X (dense or CSR)."""
    cdef ptrdiff_t n_in = net.units[l - 1], n_out = net.units[l]
    cdef const floating *wl = <const floating *> net.params + net.w_off[l - 1]
    cdef floating *z = a + w.cap * net.blk_off[l] + r0 * n_out
    cdef const floating *a_prev = _product_input(net, x, w, a, l, r0, training)
    cdef floating one = 1, zero = 0
    if a_prev == NULL:
        csr_matmul(m, n_out, <const floating *> x.data, x.indices, x.indptr,
                   x.rows, x.first_row, wl, z)
    else:
        gemm(w.single, NO_TRANS, NO_TRANS, m, n_out, n_in, one, a_prev, n_in, wl,
             n_out, zero, z, n_out)


cdef void _row_inputs(const Net *net, const Rows *x, const Work *w, floating *a,
                      ptrdiff_t l, ptrdiff_t k0, ptrdiff_t k1,
                      floating *z) noexcept nogil:
    """z := sum over inputs k = k0..k1 - 1 of a_k W^l[k, :], the part of one
    dense row's Z^l (prediction: row 0 of the blocks) that those inputs
    make. Each thread of a shared row streams its own rows of W^l."""
    cdef ptrdiff_t n_out = net.units[l]
    cdef const floating *wl = <const floating *> net.params + net.w_off[l - 1]
    row_product(k1 - k0, n_out, _product_input(net, x, w, a, l, 0, False) + k0,
                wl + k0 * n_out, z)


cdef struct RowJob:
    # Layer l of a one-row prediction: _row_inputs' arguments; z its Z^l.
    const Net *net
    const Rows *x
    const Work *w
    void *a
    ptrdiff_t l
    void *z


cdef void _row_range(RowJob *j, ptrdiff_t k0, ptrdiff_t k1,
                     floating *dummy) noexcept nogil:
    """Inputs k0..k1 - 1 of the row's Z^l: into z from input 0, else into
    w.part (which the caller then adds; cnnbp_split_inputs)."""
    _row_inputs(j.net, j.x, j.w, <floating *> j.a, j.l, k0, k1,
                <floating *> (j.z if k0 == 0 else j.w.part))


cdef void _row_range_f32(void *j, ptrdiff_t k0, ptrdiff_t k1) noexcept nogil:
    _row_range(<RowJob *> j, k0, k1, <float *> NULL)


cdef void _row_range_f64(void *j, ptrdiff_t k0, ptrdiff_t k1) noexcept nogil:
    _row_range(<RowJob *> j, k0, k1, <double *> NULL)


cdef inline bint _by_rows(const Net *net, ptrdiff_t l) noexcept nogil:
    """Whether layer l's product of a one-row prediction is summed by rows
    of W^l (split between the threads when shared, see _forward): at least
    SHARED_LAYER_WEIGHTS weights, and two inputs to split."""
    cdef ptrdiff_t n_in = net.units[l - 1]
    return n_in >= 2 and n_in * net.units[l] >= SHARED_LAYER_WEIGHTS


cdef void _keep_z(const floating *z, const floating *b, ptrdiff_t m,
                  ptrdiff_t n, floating *out) noexcept nogil:
    """out = z + b: a copy of Z^l for inspection (backprop_trace only)."""
    cdef ptrdiff_t i, j
    for i in range(m):
        for j in range(n):
            out[i * n + j] = z[i * n + j] + b[j]


cdef inline bint _drops(const Net *net, ptrdiff_t l, bint training) noexcept nogil:
    """Whether hidden layer l applies dropout in this pass."""
    return training and l < net.n_layers and net.dropout[l - 1] > 0


cdef ptrdiff_t _mask_values(const Net *net, ptrdiff_t l) noexcept nogil:
    """Mask values of one row in the dropout layers before layer l: a
    batch's masks are drawn layer after layer, so layer l's start at stream
    position net.rng[1] + batch rows x this."""
    cdef ptrdiff_t k, values = 0
    for k in range(1, l):
        if _drops(net, k, True):
            values += net.units[k]
    return values


cdef void _spend_masks(const Net *net, ptrdiff_t batch) noexcept nogil:
    """Move dropout's stream past the masks of a batch of `batch` rows
    (after its training forward pass, by whichever threads drew them)."""
    net.rng[1] += <uint64_t> (batch * _mask_values(net, net.n_layers))


cdef inline floating *_layer_output(const Net *net, const Work *w, floating *a,
                                    ptrdiff_t l, bint training) noexcept nogil:
    """What layer l + 1 reads of layer l: A^l, or A^l * mask under dropout."""
    if _drops(net, l, training):
        return <floating *> w.kept + w.cap * net.blk_off[l]
    return a + w.cap * net.blk_off[l]


cdef inline ptrdiff_t _width(const Net *net) noexcept nogil:
    """sum of n_l over l = 1..L: the values of one row of all blocks."""
    return net.blk_off[net.n_layers] + net.units[net.n_layers]


cdef struct Stage:
    # Where a thread's part of a shared, batch-normalised training pass
    # stops and goes on: at every normalised layer, forward and back, the
    # batch's statistics and sums need every part's rows (the caller
    # combines the parts' sums in between, _combine).
    void *sums                   # this part's sums there (2 n_l values), or NULL:
                                 # the whole batch is here, no stop
    ptrdiff_t at                 # in: 0, from the start; l: go on at layer l, its
                                 # sums combined; out: 0 done, l stopped at layer l


cdef inline bint _normalised(const Net *net, ptrdiff_t l) noexcept nogil:
    """Whether hidden layer l is batch-normalised."""
    return l < net.n_layers and net.gamma_off[l - 1] >= 0


cdef bint _normalise(const Net *net, const Work *w, const Rows *x, ptrdiff_t m,
                     ptrdiff_t l, ptrdiff_t r0, bint training, floating *z,
                     Stage *st) noexcept nogil:
    """Z^l := gamma^l Zhat^l on rows r0..r0 + m - 1 (batch normalisation of
    layer l, in place; its beta is b^l, added with the activation): from
    the batch's statistics (rows weighted by x.sw) when training, moving
    the running estimates, else from the running ones. A part of a shared
    batch (st.sums set) first leaves its moments in st.sums and returns
    False (stop); called again (st.at = l) it normalises with the batch's,
    combined. True when Z^l is normalised."""
    cdef ptrdiff_t n = net.units[l], at = net.blk_off[l], width = _width(net)
    cdef const floating *gamma = <const floating *> net.params + net.gamma_off[l - 1]
    cdef floating *running = <floating *> net.running
    cdef floating *zhat = <floating *> w.zhat + w.cap * at + r0 * n
    cdef floating *sums
    if not training:
        batch_norm_apply(m, n, _BN_EPSILON, gamma, running + at,
                         running + width + at, z)
    elif st == NULL or st.sums == NULL:
        batch_norm_train(m, n, _BN_EPSILON, _BN_MOMENTUM, <const floating *> x.sw,
                         gamma, z, zhat, <floating *> w.bn + at,
                         <floating *> w.bn + width, running + at,
                         running + width + at)
    elif st.at != l:
        sums = <floating *> st.sums
        batch_norm_moments(m, n, <const floating *> x.sw, z, sums, sums + n)
        st.at = l
        return False
    else:
        batch_norm_normalise(m, n, <floating *> w.bn + width, <floating *> w.bn + at,
                             gamma, z, zhat)
    return True


cdef bint _activate(const Net *net, ptrdiff_t l, ptrdiff_t m, floating *z,
                    bint check) noexcept nogil:
    """A^l = f(Z^l + b^l) in place, for the m rows of a block. With `check`,
    returns False (rows then partly activated) if Z^l has inf or NaN: checked
    CHECK_BYTES at a time, just before f reads them, so that the check finds
    them in L1 cache instead of reading the whole block once more from L3
    (digits, 10,000 rows: that pass took a tenth of a prediction)."""
    cdef const floating *b = <const floating *> net.params + net.b_off[l - 1]
    cdef ptrdiff_t n = net.units[l], i = 0, k
    cdef ptrdiff_t rows = max(1, CHECK_BYTES // <ptrdiff_t> (n * sizeof(floating)))
    if not check:
        rows = m
    while i < m:
        k = min(rows, m - i)
        if check and not is_finite(k * n, z + i * n):
            return False
        bias_activation(k, n, net.activation[l - 1], net.slope, b, z + i * n)
        i += k
    return True


cdef bint _forward(const Net *net, const Rows *x, ptrdiff_t m, const Work *w,
                   floating *a, bint training, ptrdiff_t r0, ptrdiff_t batch,
                   bint check, int row, ptrdiff_t last, Stage *st) noexcept nogil:
    """A^l = f(A^{l-1} W^l + b^l) for the hidden layers l < L, up to layer
    `last` (L: all; a prediction of hidden layer `last` stops there), into
    rows r0..r0 + m - 1 of the blocks of `a` (w.a, or a prediction's own
    blocks) of a batch of `batch` rows; block L receives A^{L-1} W^L, whose
    bias and output activation the caller applies (with the loss when
    training). Batch-normalised layers normalise A^{l-1} W^l first; when
    `training`, layers with dropout also leave
    A^l * mask in w.kept, which the next layer reads: the masks of these
    rows, drawn at their places in the batch's stream, so that rows taken
    apart get the masks the whole batch would (the caller then moves the
    stream on, _spend_masks). With w.z set, the pre-activation
    (A^{l-1} W^l + b^l, or gamma Zhat + b^l) is also copied there before f
    overwrites it. A part of a shared, batch-normalised batch (`st`, else
    NULL) stops at each normalised layer (st.at, see _normalise) and goes
    on from there when called again.

    With `check`, returns False, and stops, if Z^1 = X W^1 has inf or NaN:
    it has whenever X has (IEEE arithmetic: inf * 0 is NaN, NaN * w is NaN,
    inf + finite is inf; BLAS skips no factor of X that is not zero), and
    Z^1, just written, is in cache where X is not (X's own pass cost a
    fifth as much as the products of a 784-input layer); a batch-normalised
    Z^1 is checked once normalised, which keeps inf and NaN (an affine map:
    inf * 0 is NaN too). True otherwise.

    `row` (cnnbp_row_mode): CNNBP_ROW_BATCH for any block. ROW_ALONE and
    ROW_SHARED (one dense row, not training) sum the rows of W^l weighted
    by A^{l-1} in the layers _by_rows picks; ROW_SHARED (the caller holds
    helper w.helper, awake; w.part has room for n_l values) splits those
    inputs in two halves (cnnbp_split_inputs), the helper summing the
    second's rows into w.part while this thread sums the first's into Z^l,
    which then adds w.part. A row's product streams all of W^l once; two
    cores stream it twice as fast, each its own contiguous half."""
    cdef const floating *p = <const floating *> net.params
    cdef ptrdiff_t cap = w.cap
    cdef floating *z
    cdef ptrdiff_t l, n_in, n_out, L = net.n_layers
    cdef RowJob job
    cdef cnnbp_range_fn row_range = _row_range_f32 if floating is float else _row_range_f64
    cdef ptrdiff_t first = 1 if st == NULL or st.at == 0 else st.at
    job.net, job.x, job.w, job.a = net, x, w, a
    for l in range(first, last + 1):
        # Z^l = A^{l-1} W^l    (m, n_l)
        n_in, n_out = net.units[l - 1], net.units[l]
        z = a + cap * net.blk_off[l] + r0 * n_out
        if st != NULL and st.at == l:
            pass  # going on: Z^l is there, and the batch's statistics
        elif row == CNNBP_ROW_BATCH or not _by_rows(net, l):
            _product(net, x, w, a, l, m, r0, training)
        elif row == CNNBP_ROW_ALONE:
            _row_inputs(net, x, w, a, l, 0, n_in, z)
        else:  # the helper sums half of the inputs into w.part
            job.l, job.z = l, z
            cnnbp_split_inputs(w.helper, n_in, row_range, &job)
            add(n_out, <const floating *> w.part, z)
        if _normalised(net, l) and not _normalise(net, w, x, m, l, r0, training, z, st):
            return True  # stopped at st.at
        if w.z != NULL:
            _keep_z(z, p + net.b_off[l - 1], m, n_out,
                    <floating *> w.z + cap * net.blk_off[l] + r0 * n_out)
        if l == L:  # the output layer: the caller applies b^L and g
            if l == 1 and check and not is_finite(m * n_out, z):
                return False
        else:
            # A^l = f(Z^l + b^l), in place
            if not _activate(net, l, m, z, check and l == 1):
                return False
            if _drops(net, l, training):
                dropout(m * n_out, net.dropout[l - 1], net.rng[0],
                        net.rng[1] + <uint64_t> (batch * _mask_values(net, l)
                                                 + r0 * n_out), z,
                        <floating *> w.mask + cap * net.blk_off[l] + r0 * n_out,
                        <floating *> w.kept + cap * net.blk_off[l] + r0 * n_out)
    if st != NULL:
        st.at = 0
    return True


cdef double _output_loss(const Net *net, const floating *y, const floating *sw,
                         const Work *w, ptrdiff_t r0, ptrdiff_t m) noexcept nogil:
    """A^L = g(Z^L + b^L), the loss, and delta^L = (A^L - Y) * sw in one
    pass over rows r0..r0 + m - 1 of the blocks (y, sw: those rows')."""
    cdef ptrdiff_t L = net.n_layers, at = w.cap * net.blk_off[L] + r0 * net.units[L]
    return output_loss(m, net.units[L], net.loss, net.huber_delta,
                       <const floating *> net.params + net.b_off[L - 1], y, sw,
                       <floating *> w.a + at, <floating *> w.delta + at)


cdef bint _bias_gradient(const Net *net, const Rows *x, const Work *w, ptrdiff_t r0,
                         ptrdiff_t m, ptrdiff_t l, floating *g, ptrdiff_t g0,
                         Stage *st) noexcept nogil:
    """db^l += sum over rows r0..r0 + m - 1 of delta^l, into g (g[i - g0]:
    parameter i's gradient); for a batch-normalised layer dgamma^l and
    dbeta^l = db^l instead, and delta^l := dC/dZ^l of the normalisation
    (rows weighted by x.sw, as its statistics were). A part of a shared
    batch (st.sums set) leaves its rows' sums in st.sums there and returns
    False (stop); called again (st.at = l), the caller has added the
    batch's to dgamma^l and dbeta^l (_combine), and it takes delta^l on."""
    cdef ptrdiff_t at = net.blk_off[l], n_out = net.units[l], width = _width(net)
    cdef floating *d = <floating *> w.delta + w.cap * at + r0 * n_out
    cdef const floating *gamma
    cdef floating *zhat = <floating *> w.zhat + w.cap * at + r0 * n_out
    cdef floating *sums
    if not _normalised(net, l):
        column_sums(m, n_out, d, g + (net.b_off[l - 1] - g0))
        return True
    gamma = <const floating *> net.params + net.gamma_off[l - 1]
    if st == NULL or st.sums == NULL:
        batch_norm_backward(m, n_out, <const floating *> x.sw, gamma, zhat,
                            <floating *> w.bn + at, <floating *> w.bn + width,
                            g + (net.gamma_off[l - 1] - g0),
                            g + (net.b_off[l - 1] - g0), d)
    elif st.at != l:
        sums = <floating *> st.sums
        batch_norm_backward_sums(m, n_out, zhat, d, sums, sums + n_out)
        st.at = l
        return False
    else:
        batch_norm_backward_apply(m, n_out, <const floating *> x.sw, gamma, zhat,
                                  <floating *> w.bn + at, <floating *> w.bn + width,
                                  <floating *> w.bn + width + n_out, d)
    return True


cdef void _weight_gradient(const Net *net, const Rows *x, const Work *w,
                           ptrdiff_t r0, ptrdiff_t m, ptrdiff_t l, ptrdiff_t i0,
                           ptrdiff_t i1, bint training, floating *g,
                           ptrdiff_t g0) noexcept nogil:
    """Rows i0..i1 - 1 of dW^l += (A^{l-1})^T delta^l over rows r0..r0 + m - 1
    of the blocks, into g (g[i - g0]: parameter i's gradient). A^{l-1} is
    what layer l read; for l = 1 it is `x`, those m rows themselves (CSR x:
    i0 = 0, i1 = n_0). Each element is one sum over the rows whatever the
    range, so ranges computed apart give the whole product (to an ulp:
    OpenBLAS's rounding varies a little with the shapes it is given)."""
    cdef ptrdiff_t n_in = net.units[l - 1], n_out = net.units[l]
    cdef floating one = 1
    cdef floating *dw = g + (net.w_off[l - 1] - g0) + i0 * n_out
    cdef const floating *d = <floating *> w.delta + w.cap * net.blk_off[l] + r0 * n_out
    cdef const floating *a_prev
    if l > 1:
        a_prev = (_layer_output(net, w, <floating *> w.a, l - 1, training)
                  + r0 * n_in + i0)
    elif x.x != NULL:
        a_prev = <const floating *> x.x + i0
    else:
        csr_transpose_matmul_add(m, n_out, <const floating *> x.data, x.indices,
                                 x.indptr, x.rows, x.first_row, d, dw)
        return
    gemm(w.single, TRANS, NO_TRANS, i1 - i0, n_out, m, one, a_prev, n_in, d, n_out,
         one, dw, n_out)


cdef void _delta_back(const Net *net, const Work *w, ptrdiff_t l, ptrdiff_t r0,
                      ptrdiff_t m, bint training, floating *dummy) noexcept nogil:
    """delta^{l-1} = (delta^l (W^l)^T) [* mask^{l-1}] * f'(Z^{l-1}) on rows
    r0..r0 + m - 1."""
    cdef ptrdiff_t n_in = net.units[l - 1], n_out = net.units[l]
    cdef ptrdiff_t cap = w.cap, at = cap * net.blk_off[l - 1] + r0 * n_in
    cdef floating one = 1, zero = 0
    cdef floating *d_prev = <floating *> w.delta + at
    cdef const floating *z_prev = NULL
    gemm(w.single, NO_TRANS, TRANS, m, n_in, n_out, one,
         <floating *> w.delta + cap * net.blk_off[l] + r0 * n_out, n_out,
         <const floating *> net.params + net.w_off[l - 1], n_out, zero, d_prev, n_in)
    if _drops(net, l - 1, training):
        multiply(m * n_in, <floating *> w.mask + at, d_prev)
    if w.z != NULL:
        z_prev = <const floating *> w.z + at
    delta_derivative(m * n_in, net.activation[l - 2], net.slope,
                     <floating *> w.a + at, z_prev, d_prev)


cdef void _backward(const Net *net, const Rows *x, const Work *w, ptrdiff_t r0,
                    ptrdiff_t m, ptrdiff_t first, bint training, floating *g,
                    ptrdiff_t g0, Stage *st) noexcept nogil:
    """The backward pass over rows r0..r0 + m - 1 of the blocks (x: those
    rows of A^0), after _forward and _output_loss: for l = L, ..., 1, adds
    their sums of delta^l and, for l >= first, of (A^{l-1})^T delta^l into g
    (g[i - g0]: parameter i's gradient), and takes delta^{l-1} back. A part
    of a shared, batch-normalised batch (`st`, else NULL) stops at each
    normalised layer (st.at, see _bias_gradient) and goes on from there
    when called again."""
    cdef ptrdiff_t l
    cdef ptrdiff_t top = net.n_layers if st == NULL or st.at == 0 else st.at
    for l in range(top, 0, -1):
        if not _bias_gradient(net, x, w, r0, m, l, g, g0, st):
            return  # stopped at st.at
        if l >= first:
            _weight_gradient(net, x, w, r0, m, l, 0, net.units[l - 1], training, g, g0)
        if l > 1:
            _delta_back(net, w, l, r0, m, training, g)
    if st != NULL:
        st.at = 0


cdef double _loss_gradient(const Net *net, const Rows *x, const floating *y,
                           const floating *sw, ptrdiff_t m, const Work *w,
                           bint accumulate, bint backward,
                           bint training) noexcept nogil:
    """Forward and (if `backward`) backward pass over m rows, as a training
    step (dropout, batch statistics) or not. Adds the sums over rows of
    (A^{l-1})^T delta^l and delta^l (and batch norm's gamma gradients) into
    net.grads (zeroed first unless `accumulate`) and returns the weighted
    data loss sum_i sw_i C_i. The backward pass of a network with dropout or
    batch normalisation needs `training` (the caller checks)."""
    cdef Rows xs = x[0]
    xs.sw = sw  # batch statistics weigh the rows as the loss does
    _forward(net, &xs, m, w, <floating *> w.a, training, 0, m, False, CNNBP_ROW_BATCH,
             net.n_layers, NULL)
    if training:
        _spend_masks(net, m)
    cdef double data_loss = _output_loss(net, y, sw, w, 0, m)
    if not backward:
        return data_loss
    if not accumulate:
        memset(net.grads, 0, net.n_params * sizeof(floating))
    _backward(net, &xs, w, 0, m, 1, training, <floating *> net.grads, 0, NULL)
    return data_loss


cdef double _penalty(const Net *net, const floating *p, ptrdiff_t lo,
                     ptrdiff_t hi) noexcept nogil:
    """alpha/2 ||W||^2 + alpha_l1 ||W||_1 over the weights among parameters
    [lo, hi), summed layer by layer (scikit-learn's order)."""
    cdef double sq = 0, l1 = 0
    cdef ptrdiff_t l, start, end
    for l in range(net.n_layers):
        start = max(net.w_off[l], lo)
        end = min(net.w_off[l] + net.units[l] * net.units[l + 1], hi)
        if end > start:
            sq += _chunked(end - start, p + start, True)
            if net.alpha_l1 != 0:
                l1 += _chunked(end - start, p + start, False)
    return (0.5 * net.alpha) * sq + net.alpha_l1 * l1


cdef double _finish_range(const Net *net, const floating *p, floating *g,
                          double s, ptrdiff_t lo, ptrdiff_t hi) noexcept nogil:
    """On parameters [lo, hi): adds the L2 (and L1) terms to the summed
    weight gradient, divides by s, and returns the range's _penalty."""
    cdef ptrdiff_t mid = min(max(net.n_coefs, lo), hi)  # weights end here
    finish_gradient(mid - lo, net.alpha, net.alpha_l1, s, p + lo, g + lo)
    finish_gradient(hi - mid, 0.0, 0.0, s, <floating *> NULL, g + mid)
    return _penalty(net, p, lo, mid)


cdef double _finish(const Net *net, const floating *p, floating *g,
                    double data_loss, double s) noexcept nogil:
    """Finishes the whole gradient (_finish_range) and returns the loss
    data_loss / s + alpha/2 ||W||^2 / s (scikit-learn's objective) +
    alpha_l1 ||W||_1 / s."""
    return data_loss / s + _finish_range(net, p, g, s, 0, net.n_params) / s


cdef double _chunked(ptrdiff_t size, const floating *x, bint squares) noexcept nogil:
    """sum x_i^2 (squares) or sum |x_i| by BLAS, over chunks that fit its
    int sizes."""
    cdef double total = 0
    cdef ptrdiff_t start = 0, chunk = 1 << 30
    while start < size:
        if squares:
            total += sum_of_squares(<int> min(chunk, size - start), x + start)
        else:
            total += sum_of_abs(<int> min(chunk, size - start), x + start)
        start += chunk
    return total


cdef void _advance(Optim *opt) noexcept nogil:
    """Count one more update step (and move nadam's momentum product)."""
    opt.t += 1
    if opt.kind == CNNBP_SOLVER_NADAM:
        # Dozat's momentum schedule (torch's momentum_decay = 0.004)
        opt.mu_product *= opt.h.beta_1 * (1 - 0.5 * pow(0.96, 0.004 * opt.t))


cdef int _step(const Net *net, const Optim *opt, floating *p, const floating *g,
               ptrdiff_t lo, ptrdiff_t hi) noexcept nogil:
    """The optimizer's update of parameters [lo, hi), step opt.t (counted
    by _advance). Every rule is element-wise, so ranges can be updated
    apart. Returns 0, or CNNBP_UNKNOWN_CODE for a solver code without a
    case (set_optimizer checks on an empty range)."""
    cdef double lr = opt.learning_rate, b1 = opt.h.beta_1, b2 = opt.h.beta_2
    cdef double eps = opt.h.epsilon
    cdef double c1 = 1 - pow(b1, <double> opt.t), c2 = 1 - pow(b2, <double> opt.t)
    cdef double mu, mu_next
    cdef ptrdiff_t n = hi - lo
    cdef floating *s1 = NULL if opt.s1 == NULL else <floating *> opt.s1 + lo
    cdef floating *s2 = NULL if opt.s2 == NULL else <floating *> opt.s2 + lo
    p += lo
    g += lo
    if opt.kind == CNNBP_SOLVER_SGD:
        sgd_update(n, lr, opt.h.momentum, opt.h.nesterovs_momentum, g, s1, p)
    elif opt.kind == CNNBP_SOLVER_ADAM:
        # Bias correction folded into the step size (Kingma & Ba, Sec. 2).
        adam_update(n, lr * sqrt(c2) / c1, b1, b2, eps, g, s1, s2, p)
    elif opt.kind == CNNBP_SOLVER_ADAMW:
        # the weights, [0, n_coefs), decay
        adamw_update(n, min(max(net.n_coefs - lo, 0), n), lr, b1, b2, eps,
                     opt.h.weight_decay, c1, c2, g, s1, s2, p)
    elif opt.kind == CNNBP_SOLVER_NADAM:
        mu = b1 * (1 - 0.5 * pow(0.96, 0.004 * opt.t))
        mu_next = b1 * (1 - 0.5 * pow(0.96, 0.004 * (opt.t + 1)))
        nadam_update(n, b1, b2, eps, c2,
                     lr * (1 - mu) / (1 - opt.mu_product),
                     lr * mu_next / (1 - opt.mu_product * mu_next), g, s1, s2, p)
    elif opt.kind == CNNBP_SOLVER_RMSPROP:
        rmsprop_update(n, lr, opt.h.rho, eps, g, s1, p)
    elif opt.kind == CNNBP_SOLVER_ADAGRAD:
        adagrad_update(n, lr, eps, g, s1, p)
    else:
        return CNNBP_UNKNOWN_CODE
    return 0


cdef double _finish_step(const Net *net, const Optim *opt, floating *p, floating *g,
                         double s, ptrdiff_t lo, ptrdiff_t hi) noexcept nogil:
    """_finish_range, then _step, on parameters [lo, hi), STEP_CHUNK values
    at a time: the step finds the finished gradient and the parameters
    still in cache (one pass over memory, not two). Returns the range's
    _penalty."""
    cdef double penalty = 0
    cdef ptrdiff_t a = lo, b
    while a < hi:
        b = min(a + STEP_CHUNK, hi)
        penalty += _finish_range(net, p, g, s, a, b)
        _step(net, opt, p, g, a, b)
        a = b
    return penalty


cdef double _finish_update(const Net *net, Optim *opt, floating *p, floating *g,
                           double data_loss, double s) noexcept nogil:
    """The batch's loss (as _finish) from its summed gradient in g, which is
    finished and spent on one optimizer step over all parameters: clipped
    first to global norm opt.clip_norm, when set (which needs the whole
    finished gradient), and each unit's incoming weights capped to
    opt.max_norm after, when set."""
    cdef double loss, norm
    cdef ptrdiff_t l
    cdef ptrdiff_t n = net.n_params
    if opt.clip_norm > 0:
        loss = _finish(net, p, g, data_loss, s)
        norm = sqrt(_chunked(n, g, True))
        if norm > opt.clip_norm:  # g := g clip_norm / ||g|| (Pascanu et al. 2013)
            finish_gradient(n, 0.0, 0.0, norm / opt.clip_norm, <floating *> NULL, g)
        _advance(opt)
        _step(net, opt, p, g, 0, n)
    else:
        _advance(opt)
        loss = data_loss / s + _finish_step(net, opt, p, g, s, 0, n) / s
    if opt.max_norm > 0:
        # the gradient is spent: its buffer is the kernel's scratch space
        for l in range(net.n_layers):
            max_norm_columns(net.units[l], net.units[l + 1], opt.max_norm,
                             p + net.w_off[l], g)
    return loss


cdef double _weight_sum(const floating *sw, ptrdiff_t m) noexcept nogil:
    cdef floating s = 0
    cdef ptrdiff_t i
    for i in range(m):
        s += sw[i]
    return s


cdef Rows _block_rows(const Rows *X, ptrdiff_t start, ptrdiff_t n_in,
                      floating *dummy) noexcept nogil:
    """Rows start, start + 1, ... of X as a block (no copy). `dummy` only
    selects the float or double instantiation."""
    cdef Rows xb = X[0]
    if X.x != NULL:
        xb.x = <const floating *> X.x + start * n_in
    else:
        xb.first_row = start
    return xb


cdef const floating *_target_rows(const void *Y, bint y_u8, const ptrdiff_t *rows,
                                  ptrdiff_t start, ptrdiff_t m, ptrdiff_t n_out,
                                  floating *block) noexcept nogil:
    """Targets of the m batch rows (rows[i], or start + i when rows is NULL):
    Y itself where the rows lie in place in the engine's dtype, else
    gathered and/or converted from bytes into `block`."""
    if y_u8:
        if rows == NULL:
            targets_from_u8(m, n_out, <const unsigned char *> Y + start * n_out,
                            NULL, block)
        else:
            targets_from_u8(m, n_out, <const unsigned char *> Y, rows + start, block)
        return block
    if rows == NULL:
        return <const floating *> Y + start * n_out
    gather_rows(m, n_out, <const floating *> Y, rows + start, block)
    return block


cdef struct Batch:
    # One training batch, as every thread's share of it reads it (_share;
    # the parallel layer, csrc/team.c, gives each its rows and parameters).
    const Net *net
    const Work *w
    const cnnbp_team *team
    const Rows *X
    const void *Y
    bint y_u8
    const void *SW
    const ptrdiff_t *order       # NULL: rows as stored
    ptrdiff_t start              # the batch's first row in `order`
    Rows rows                    # its input rows (gathered into w.x: dense and an order)
    const Optim *opt             # SHARE_UPDATE updates the share's parameters, if set
    double s                     # the batch's weight sum (SHARE_UPDATE)
    void *sums                   # parts' sums at normalised layers (w.sums), or NULL:
                                 # the passes run through (no batch normalisation,
                                 # or one part)
    ptrdiff_t at                 # SHARE_ON: the layer to go on at, and whether
    bint back                    # backward
    ptrdiff_t stop               # out of SHARE_START / SHARE_ON (part 0's): the
    bint stop_back               # layer the parts stopped at (0: none), backward?


# _share's phases (a team's hand-overs, cnnbp_team_run): a part's rows forward
# and back; then, in a batch-normalised network, on from each normalised
# layer once the caller combined the parts' sums there; then the reduction
# and the update by parameter ranges.
cdef enum:
    SHARE_START = 0
    SHARE_UPDATE = 1
    SHARE_ON = 2


cdef void _share(Batch *b, cnnbp_share *s, floating *dummy) noexcept nogil:
    """The mathematics of share s of batch b.

    SHARE_START: gather its rows (dense rows of X into the work block, with
    an order) and weights; s.out[1] = their weight sum; the forward pass,
    the output delta (s.out[0] = the rows' weighted loss) and the backward
    pass over its rows into its own gradient sums (zeroed first; share 0:
    net.grads, share k > 0: buffer k - 1 of w.g2, from parameter w.g0 on).
    A share of all m rows ends there, its sums being the gradient. With
    b.sums (batch normalisation, shared), the passes stop at each
    normalised layer, leaving the share's sums there (Stage), and go on in
    SHARE_ON from b.at once the caller has combined them.

    SHARE_UPDATE (every share's delta^1 is there): its rows s.w1 of dW^1
    when w.g0 > 0 (summed by no share before), the others' sums added on its
    parameter ranges s.u and, with b.opt, the gradient finished and those
    parameters updated; s.out[0] = the ranges' _penalty."""
    cdef const Net *net = b.net
    cdef const Work *w = b.w
    cdef ptrdiff_t n_in = net.units[0], n_out = net.units[net.n_layers]
    cdef ptrdiff_t k, size = net.n_params - w.g0
    cdef bint split_w1 = s.parts > 1 and w.g0 > 0
    cdef ptrdiff_t first = w.g0 if split_w1 else 0  # its backward sums [first, n_params)
    cdef floating *g = <floating *> net.grads
    cdef ptrdiff_t g0 = 0
    cdef const floating *SW = <const floating *> b.SW
    cdef const floating *swb = NULL
    cdef Rows xb = b.rows
    cdef Stage st
    if s.phase == SHARE_UPDATE:
        if split_w1 and s.w1[1] > s.w1[0]:
            memset(g + s.w1[0] * net.units[1], 0,
                   (s.w1[1] - s.w1[0]) * net.units[1] * sizeof(floating))
            _weight_gradient(net, &b.rows, w, 0, s.m, 1, s.w1[0], s.w1[1], True, g, 0)
        team_reduce(b.team, s, <floating *> w.g2, g)
        s.out[0] = 0
        for k in range(0, 4, 2):
            if b.opt != NULL:
                s.out[0] += _finish_step(net, b.opt, <floating *> net.params, g, b.s,
                                         s.u[k], s.u[k + 1])
        return
    # this share's rows of the batch
    if SW != NULL:
        swb = (<const floating *> w.sw if b.order != NULL else SW + b.start) + s.r0
    xb.sw = swb
    if xb.x != NULL:
        xb.x = <const floating *> xb.x + s.r0 * n_in
    elif xb.rows != NULL:
        xb.rows = xb.rows + s.r0
    else:
        xb.first_row = xb.first_row + s.r0
    if s.tid > 0:
        g, g0 = <floating *> w.g2 + (s.tid - 1) * size, w.g0
    st.sums = NULL if b.sums == NULL else <floating *> b.sums + s.tid * w.sums_stride
    st.at = 0
    if s.phase == SHARE_START:
        if b.order != NULL and b.X.x != NULL:
            gather_rows(s.mr, n_in, <const floating *> b.X.x, b.order + b.start + s.r0,
                        <floating *> w.x + s.r0 * n_in)
        if SW != NULL and b.order != NULL:
            gather_rows(s.mr, 1, SW, b.order + b.start + s.r0, <floating *> w.sw + s.r0)
        s.out[1] = s.mr if swb == NULL else _weight_sum(swb, s.mr)
    else:
        st.at = b.at
    if s.phase == SHARE_START or not b.back:
        _forward(net, &xb, s.mr, w, <floating *> w.a, True, s.r0, s.m, False,
                 CNNBP_ROW_BATCH, net.n_layers, &st)
        if st.at != 0:
            if s.tid == 0:
                b.stop, b.stop_back = st.at, False
            return
        s.out[0] = _output_loss(net, _target_rows(b.Y, b.y_u8, b.order, b.start + s.r0,
                                                  s.mr, n_out,
                                                  <floating *> w.y + s.r0 * n_out),
                                swb, w, s.r0, s.mr)
        memset(g + (first - g0), 0, (net.n_params - first) * sizeof(floating))
    _backward(net, &xb, w, s.r0, s.mr, 2 if split_w1 else 1, True, g, g0, &st)
    if st.at != 0 and s.tid == 0:
        b.stop, b.stop_back = st.at, True


cdef void _share_f32(void *b, cnnbp_share *s) noexcept nogil:
    _share(<Batch *> b, s, <float *> NULL)


cdef void _share_f64(void *b, cnnbp_share *s) noexcept nogil:
    _share(<Batch *> b, s, <double *> NULL)


cdef struct Slice:
    # One call of _epoch: a slice of an epoch, and what it did.
    ptrdiff_t start              # in: the row to start at; out: to go on from
    double total                 # in: the epoch's total so far; out: with this slice's
    double deadline              # in: stop after the batch that ends past it (_now)
    int helpers                  # in: helpers to share batches with, at most
    int used                     # out: threads it had (1 + helpers; 0: no memory)
    double shared                # out: seconds of its shared hand-overs
    double cpu                   # out: CPU seconds its threads spent in them


cdef void _combine(const Net *net, const Work *w, const Batch *b,
                   const cnnbp_team *team, int parts, floating *g) noexcept nogil:
    """The parts' sums at normalised layer b.stop, combined. Forward: the
    batch's mean (w.bn's scratch) and inv_std, moving the running
    estimates. Backward: dgamma and dbeta added into g (part 0's sums), and
    S1 / S, S2 / S into w.bn's scratch for the parts to take delta on."""
    cdef ptrdiff_t l = b.stop, n = net.units[l], at = net.blk_off[l]
    cdef ptrdiff_t width = _width(net)
    cdef floating *bn = <floating *> w.bn
    cdef floating *running = <floating *> net.running
    cdef double weights[CNNBP_MAX_HELPERS + 1]
    cdef double weight = 0
    cdef int k
    for k in range(parts):
        weights[k] = team.share[k].out[1]
        weight += weights[k]
    if not b.stop_back:
        batch_norm_combine(parts, n, w.sums_stride, weights, <const floating *> b.sums,
                           _BN_EPSILON, _BN_MOMENTUM, bn + width, bn + at, running + at,
                           running + width + at)
    else:
        batch_norm_backward_combine(parts, n, w.sums_stride, <const floating *> b.sums,
                                    weight, g + net.gamma_off[l - 1], g + net.b_off[l - 1],
                                    bn + width)


cdef void _epoch(const Net *net, Optim *opt, const Work *w, const Rows *X,
                 const void *Y, bint y_u8, const floating *SW,
                 const ptrdiff_t *order, ptrdiff_t n, ptrdiff_t batch,
                 Slice *sl) noexcept nogil:
    """A pass over n rows in mini-batches of `batch`, rows taken in `order`
    (NULL: in storage order), from row sl.start, adding sum_batches
    loss_b * m_b to sl.total. Stops early, after a batch that ends at or past
    sl.deadline, leaving in sl.start the row to go on from (n when the pass
    is complete), in sl.used the threads it had (1 + its helpers; 0, and a
    NaN total: no memory for its records), and in sl.shared and sl.cpu the
    seconds its shared hand-overs took and the CPU seconds its threads spent
    in them (cnnbp_lockstep_learn).

    With sl.helpers > 0 (as many as are free, up to it, the buffers w.n_g2
    and this caller's share of T), each batch is split among a team of
    threads (csrc/team.c) in two hand-overs of _share: rows forward and
    back, then split dW^1, the reduction and the update by parameter
    ranges; a batch-normalised network adds one at every normalised layer
    forward and one back, after which this thread combines the parts'
    sums (_combine). The parameters are those of the one-thread pass to
    round-off (sums in parts; OpenBLAS rounds an ulp differently for other
    shapes)."""
    cdef floating *p = <floating *> net.params
    cdef floating *g = <floating *> net.grads
    cdef ptrdiff_t start = sl.start, m
    cdef double data_loss, s, penalty, total = sl.total
    cdef int k, parts
    cdef cnnbp_team team
    cdef Batch b
    cdef cnnbp_share_fn share = _share_f32 if floating is float else _share_f64
    cdef int want = min(sl.helpers, <int> w.n_g2) if w.g2 != NULL else 0
    cdef const Optim *split_update = NULL
    if opt.clip_norm == 0 and opt.max_norm == 0:  # these need the whole gradient
        split_update = opt
    sl.used = cnnbp_team_begin(&team, want, net.units[0], net.units[1], net.n_params,
                               w.g0, X.x == NULL)
    if sl.used == 0:
        cnnbp_team_end(&team)
        sl.total, sl.shared, sl.cpu = NAN, 0, 0
        return
    b.net, b.w, b.team, b.X, b.Y, b.y_u8 = net, w, &team, X, Y, y_u8
    b.SW, b.order = SW, order
    while start < n:
        if start > sl.start and _now() >= sl.deadline:
            break  # the caller's time slice is up (it may check for Ctrl-C)
        m = min(batch, n - start)
        parts = cnnbp_team_split(&team, m, CNNBP_SPLIT_ROWS // 2)
        b.start, b.opt = start, NULL
        b.rows = X[0]
        if order == NULL:
            b.rows = _block_rows(X, start, net.units[0], p)
        elif X.x != NULL:
            b.rows.x = w.x
        else:
            b.rows.rows = order + start
        b.sums = w.sums if parts > 1 else NULL
        b.stop = 0
        cnnbp_team_run(&team, parts, SHARE_START, share, &b)
        while b.stop != 0:  # the parts stopped at a normalised layer
            _combine(net, w, &b, &team, parts, g)
            b.at, b.back, b.stop = b.stop, b.stop_back, 0
            cnnbp_team_run(&team, parts, SHARE_ON, share, &b)
        _spend_masks(net, m)
        data_loss, s = 0, 0
        for k in range(parts):
            data_loss += team.share[k].out[0]
            s += team.share[k].out[1]
        if parts > 1:  # the others' sums added, and the update split too when it can be
            b.s, b.opt = s, split_update
            if split_update != NULL:
                _advance(opt)
            cnnbp_team_run(&team, parts, SHARE_UPDATE, share, &b)
        if parts > 1 and split_update != NULL:
            penalty = 0
            for k in range(parts):
                penalty += team.share[k].out[0]
            total += (data_loss / s + penalty / s) * m
        else:  # one share (its sums are the gradient), or clipping / max_norm
            total += _finish_update(net, opt, p, g, data_loss, s) * m
        start += m
    cnnbp_team_end(&team)
    sl.start, sl.total, sl.shared, sl.cpu = start, total, team.shared, team.cpu


cdef double _full_loss_gradient(const Net *net, const Work *w, const Rows *X,
                                const void *Y, bint y_u8, const floating *SW,
                                ptrdiff_t n, bint gradient, bint training,
                                double *weight) noexcept nogil:
    """The weighted data loss sum_i sw_i C_i over all n rows, and (if
    `gradient`) its gradient's sums in net.grads, in blocks of w.cap rows
    whose sums accumulate (the full-batch objective of L-BFGS before
    _finish; batch statistics, when `training`, are those of each block);
    the rows' weight sum s in *weight."""
    cdef ptrdiff_t n_in = net.units[0], n_out = net.units[net.n_layers]
    cdef ptrdiff_t start = 0, m
    cdef double data_loss = 0, s
    cdef const floating *swb = NULL
    cdef Rows xb
    while start < n:
        m = min(w.cap, n - start)
        if SW != NULL:
            swb = SW + start
        xb = _block_rows(X, start, n_in, <floating *> NULL)
        data_loss += _loss_gradient(net, &xb,
                                    _target_rows(Y, y_u8, NULL, start, m, n_out,
                                                 <floating *> w.y),
                                    swb, m, w, start > 0, gradient, training)
        start += m
    weight[0] = n if SW == NULL else _weight_sum(SW, n)
    return data_loss


cdef double _objective(const Net *net, double data_loss, double s, bint gradient,
                       floating *dummy) noexcept nogil:
    """The loss from the data loss sum and the weight sum s, and with
    `gradient` the gradient finished from its sums in net.grads (_finish)."""
    if not gradient:
        return data_loss / s + _penalty(net, <const floating *> net.params, 0, net.n_coefs) / s
    return _finish(net, <floating *> net.params, <floating *> net.grads, data_loss, s)


cdef double _trace(const Net *net, const Rows *X, const floating *Y,
                   const floating *SW, ptrdiff_t n, const Work *w) noexcept nogil:
    """One training step's forward and backward pass over all n rows in one
    block (w.cap = n), leaving Z, A and delta of every layer in w and the
    gradient in net.grads."""
    cdef double data_loss = _loss_gradient(net, X, Y, SW, n, w, False, True, True)
    return _finish(net, <floating *> net.params, <floating *> net.grads,
                   data_loss, n if SW == NULL else _weight_sum(SW, n))


cdef ptrdiff_t _largest_weights(const Net *net, ptrdiff_t itemsize) noexcept nogil:
    """Bytes of the network's largest W^l."""
    cdef ptrdiff_t l, largest = 0
    for l in range(1, net.n_layers + 1):
        largest = max(largest, net.units[l - 1] * net.units[l] * itemsize)
    return largest


cdef bint _predict(const Net *net, const Rows *X, ptrdiff_t n, floating *out,
                   floating *a, ptrdiff_t cap, ptrdiff_t layer,
                   bint check) noexcept nogil:
    """Activations A^layer of n rows into `out` (n, n_layer), cap rows at a
    time, in the caller's blocks `a` (cap rows of each, then sum n_l values
    for w.part; so concurrent predictions never share memory); layer L gives
    the outputs. With `check`, each block's rows are checked for inf and NaN
    (through Z^1, by _forward): False at the first that has any (out is then
    incomplete), else True. A single row of a network in SHARED_ROW_BYTES is
    shared with a helper thread when one is free (cnnbp_row_mode, _forward)."""
    cdef const floating *p = <const floating *> net.params
    cdef ptrdiff_t L = net.n_layers
    cdef ptrdiff_t n_in = net.units[0], n_out = net.units[layer]
    cdef ptrdiff_t start = 0, m
    cdef floating *block = a + cap * net.blk_off[layer]
    cdef bint finite = True
    cdef Rows xb
    cdef Work w
    memset(&w, 0, sizeof(Work))
    cdef int row = CNNBP_ROW_BATCH
    if n == 1 and X.x != NULL:
        row = cnnbp_row_mode(_largest_weights(net, sizeof(floating)), _SHARED_ROW_MIN,
                             _SHARED_ROW_MAX, &w.helper)
    w.cap = cap
    w.part = a + cap * _width(net)
    while finite and start < n:
        m = min(cap, n - start)
        xb = _block_rows(X, start, n_in, out)
        finite = _forward(net, &xb, m, &w, a, False, 0, m, check, row, layer, NULL)
        if finite and layer == L:
            bias_activation(m, n_out, cnnbp_loss_activation(net.loss), 0.0,
                            p + net.b_off[L - 1], block)
        if finite:
            memcpy(out + start * n_out, block, m * n_out * sizeof(floating))
        start += m
    if row == CNNBP_ROW_SHARED:
        cnnbp_helpers_release(1, &w.helper)
    return finite


# ---------------------------------------------------------------------------
# Python-facing checks: nothing reaches the nogil core unverified.
# ---------------------------------------------------------------------------

cdef enum:
    ALIGNMENT = 64  # bytes: a cache line, and a whole number of AVX-512 vectors


def aligned_empty(shape, dtype, zero=False):
    """A C-contiguous array of `shape` and `dtype` whose data starts on an
    ALIGNMENT-byte boundary (zeroed with `zero`).

    numpy aligns large allocations to 16 bytes only, so every 32-byte
    vector load of a row of W^l could straddle two cache lines; on Zen 3
    such split loads made a one-row product over a 16-byte-offset W^l take
    25 % longer (2 MB of float32 weights, one thread: 38.5 against 30.8 us).
    """
    dtype = np.dtype(dtype)
    shape = shape if isinstance(shape, tuple) else (shape,)
    cdef ptrdiff_t size = 1, extent
    for extent in shape:
        size *= extent
    cdef ptrdiff_t nbytes = size * dtype.itemsize
    raw = (np.zeros if zero else np.empty)(nbytes + ALIGNMENT, np.uint8)
    cdef size_t skip = (-<size_t> _data(raw)) % ALIGNMENT  # bytes to the next boundary
    return raw[skip:skip + nbytes].view(dtype).reshape(shape)


def _physical_memory():
    """Bytes of RAM on this machine (inf where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return float("inf")


cdef double _now() noexcept nogil:
    """CLOCK_MONOTONIC in seconds (time.monotonic's clock), callable without the GIL."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec


cdef void *_data(object array):
    return cnp.PyArray_DATA(<cnp.ndarray> array)


def _check_block(name, array, dtype, n_rows, n_cols):
    """Raise unless `array` is a C-contiguous, aligned ndarray of `dtype`
    (native byte order: a swapped dtype is another dtype) and shape
    (n_rows, n_cols) (n_cols < 0: 1-D of n_rows; n_rows < 0: any rows)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, "
                        f"got {array.dtype.name}")
    if not (array.flags.c_contiguous and array.flags.aligned):
        raise ValueError(f"{name} must be C-contiguous and aligned")
    shape = (n_rows,) if n_cols < 0 else (n_rows, n_cols)
    if array.ndim != len(shape) or (
            n_rows >= 0 and array.shape[0] != n_rows) or (
            n_cols >= 0 and array.shape[1] != n_cols):
        want = tuple("n" if s < 0 else s for s in shape)
        raise ValueError(f"{name} must have shape {want}, got {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    if array.shape[0] > BLAS_INT_MAX:
        raise ValueError(f"{name} has too many rows for 32-bit BLAS")


cdef ptrdiff_t _dense_rows(Rows *rows, X, int typenum, ptrdiff_t n_features):
    """Point `rows` at X and return its number of rows if X is a plain
    (n, n_features) ndarray of `typenum`, C-contiguous, aligned and in
    native byte order, with 0 < n < 2^31; else 0, for _set_rows to check
    fully (or raise). The prediction fast path: numpy's C API, where
    _set_rows' attribute lookups cost ~1 us of a ~10 us one-row prediction."""
    if not (cnp.PyArray_CheckExact(X) and cnp.PyArray_TYPE(X) == typenum
            and cnp.PyArray_NDIM(X) == 2 and cnp.PyArray_ISCARRAY_RO(X)
            and cnp.PyArray_DIM(X, 1) == n_features
            and 0 < cnp.PyArray_DIM(X, 0) <= BLAS_INT_MAX):
        return 0
    memset(rows, 0, sizeof(Rows))
    rows.x = cnp.PyArray_DATA(X)
    return cnp.PyArray_DIM(X, 0)


cdef int _set_rows(Rows *rows, X, dtype, ptrdiff_t n_features,
                   list keep) except -1:
    """Point `rows` at X: a dense (n, n_features) C-contiguous ndarray or a
    scipy CSR matrix of `dtype` whose structure is checked here (index arrays
    become intp; values are never copied). Returns the number of rows."""
    memset(rows, 0, sizeof(Rows))
    if not sp.issparse(X):
        _check_block("X", X, dtype, -1, n_features)
        keep.append(X)
        rows.x = _data(X)
        return X.shape[0]
    if X.format != "csr":
        raise TypeError(f"sparse X must be CSR, got {X.format.upper()}")
    n, m = X.shape
    if m != n_features or n == 0:
        raise ValueError(f"X must have shape (n, {n_features}) with n > 0, got {X.shape}")
    data = X.data
    # (aligned too: ascontiguousarray keeps misaligned intp, which C may not read)
    indices = np.require(X.indices, np.intp, ["C", "A"])
    indptr = np.require(X.indptr, np.intp, ["C", "A"])
    if data.size:
        _check_block("X.data", data, dtype, -1, -1)
    if (indptr.shape != (n + 1,) or indptr[0] != 0 or indptr[n] > indices.shape[0]
            or indptr[n] > data.shape[0] or np.any(np.diff(indptr) < 0)):
        raise ValueError("X is a corrupt CSR matrix: bad indptr")
    nnz = indptr[n]
    if nnz and (indices[:nnz].min() < 0 or indices[:nnz].max() >= n_features):
        raise ValueError("X is a corrupt CSR matrix: column index out of range")
    if not data.size:  # all zeros: give the kernels a valid pointer
        data = np.zeros(1, dtype=dtype)
        indices = np.zeros(1, dtype=np.intp)
    keep.extend((data, indices, indptr))
    rows.data = _data(data)
    rows.indices = <ptrdiff_t *> _data(indices)
    rows.indptr = <ptrdiff_t *> _data(indptr)
    return n


def _check_order(order, ptrdiff_t n):
    """Raise unless `order` is a C-contiguous intp array of n row indices in
    [0, n)."""
    _check_block("order", order, np.intp, n, -1)
    if order.min() < 0 or order.max() >= n:
        raise ValueError("order holds an index outside [0, n_samples)")


cdef class TrainingData:
    """Training rows checked for one engine (`Engine.training_data`): X, Y,
    sample_weight and their row order, held so that `Engine.train` reads
    them without checking them again."""

    def shuffle(self, random_state):
        """Permute the row order in place: ``random_state.shuffle(order)``,
        the draws and result of ``sklearn.utils.shuffle`` (checked again
        after, once per epoch; ValueError without an order)."""
        if self.order is None:
            raise ValueError("these training data take rows as stored: no order to shuffle")
        random_state.shuffle(self.order)
        _check_order(self.order, self.n_samples)


cdef class Engine:
    """All buffers of one multi-layer perceptron and the compiled passes over them.

    Parameters
    ----------
    layer_units : sequence of int
        Widths ``(n_features, n_hidden_1, ..., n_outputs)``, each >= 1.
    hidden_activation : int or sequence of int
        Code of the hidden activation (``cnn_bp._registry.activation_code``),
        one for all hidden layers or one per layer.
    loss : int
        Code of the loss (``cnn_bp._registry.loss_code``); it fixes the output
        activation (identity, softmax, logistic or exp).
    dtype : {numpy.float32, numpy.float64}
        Element type of every buffer.
    negative_slope : float
        leaky_relu's slope for z < 0.
    huber_delta : float
        The huber loss's d.
    batch_norm : bool
        Batch-normalise every hidden layer (Ioffe & Szegedy 2015): its b^l
        becomes the shift beta, and a scale gamma^l (initially 1) follows
        the biases in `params`.
    dropout : float or sequence of float
        Dropout rate of each hidden layer (one for all, or one per layer),
        in [0, 1); applied by training passes only.

    Attributes
    ----------
    params : ndarray of shape (n_params,)
        Flat parameters ``[W^1, ..., W^L, b^1, ..., b^L]``, each W^l
        row-major of shape (fan_in, fan_out).
    grads : ndarray of shape (n_params,)
        Gradient of the last pass, same layout.
    coefs, intercepts : tuple of ndarray
        Views of W^l (fan_in, fan_out) and b^l (fan_out,) into `params`.
    batch_norm_scales : tuple of ndarray
        Views of gamma^l (n_l,) of the hidden layers into `params` (empty
        without batch normalisation).
    running : ndarray of shape (2, sum(n_l))
        Batch normalisation's running means (row 0) and variances (row 1),
        unit by unit in layer order (views per layer: `running_means`,
        `running_vars`).
    optimizer_state : ndarray of shape (2, n_params) or None
        sgd: row 0 the velocity; adam: rows m and v.
    last_nogil_interval : tuple of float or None
        (start, end) on ``time.monotonic``'s clock of the last `run_epoch`'s
        GIL-free section, read inside it: intervals of two threads can only
        overlap if neither holds the GIL there.
    last_threads : int
        Threads the last `run_epoch` shared its batches among (1 + the helpers
        it could take).
    stopped_at : int
        Where the last `run_epoch` stopped: the `start` of the next slice of
        the same epoch, or n_samples when the epoch is complete.
    rows_trained : int
        Rows trained by all `run_epoch` calls of this engine (an epoch's
        n_samples once complete): what a fit interrupted mid-epoch trained.

    Raises
    ------
    ValueError
        Codes the kernels have no case for (_check_codes), widths < 1, or a
        weight matrix too large for BLAS.
    MemoryError
        When parameters, gradient and optimizer state would not fit in RAM.
    TypeError
        A dtype other than float32 or float64.
    """

    def __cinit__(self, layer_units, hidden_activation, int loss, dtype,
                  double negative_slope=0.01, double huber_delta=1.0,
                  bint batch_norm=False, dropout=0.0):
        cdef ptrdiff_t L
        cdef ptrdiff_t *lay
        units = tuple(int(u) for u in layer_units)
        if len(units) < 2 or min(units) < 1:
            raise ValueError(f"layer_units must be >= 2 positive widths, got {units}")
        if max(units) > BLAS_INT_MAX:
            raise ValueError(f"layer widths must be < 2**31, got {max(units)}")
        codes = ((int(hidden_activation),) * (len(units) - 2)
                 if np.ndim(hidden_activation) == 0
                 else tuple(int(c) for c in hidden_activation))
        if len(codes) != len(units) - 2:
            raise ValueError(f"{len(codes)} hidden activations for "
                             f"{len(units) - 2} hidden layers")
        if not negative_slope >= 0:
            raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
        if not huber_delta > 0:
            raise ValueError(f"huber_delta must be > 0, got {huber_delta}")
        _check_codes(codes, loss)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        L = len(units) - 1
        sizes = [units[l] * units[l + 1] for l in range(L)]
        if max(sizes) > BLAS_INT_MAX:
            raise ValueError("a weight matrix has 2**31 or more entries")
        n_coefs = sum(sizes)
        n_params = n_coefs + sum(units[1:])
        gamma_off = [-1] * L
        if batch_norm:
            for l in range(L - 1):
                gamma_off[l] = n_params
                n_params += units[l + 1]
        # parameters, gradient and two optimizer-state vectors
        needed = 4 * n_params * dtype.itemsize
        if needed > _physical_memory():
            raise MemoryError(
                f"a network of {n_params:,} parameters needs {needed / 2**30:.1f} GiB for "
                f"its parameters, gradient and optimizer state; this machine has "
                f"{_physical_memory() / 2**30:.1f} GiB")

        # layout: units | w_off | b_off | blk_off | gamma_off, one intp array
        w_off, b_off, blk_off = [], [], [0]
        w_at, b_at, blk_at = 0, n_coefs, 0
        for l in range(L):
            w_off.append(w_at)
            b_off.append(b_at)
            blk_off.append(blk_at)
            w_at += sizes[l]
            b_at += units[l + 1]
            blk_at += units[l + 1]
        self._layout = np.array(units + tuple(w_off) + tuple(b_off) + tuple(blk_off)
                                + tuple(gamma_off), dtype=np.intp)
        lay = <ptrdiff_t *> _data(self._layout)

        self.dtype = dtype
        self._typenum = dtype.num
        self.layer_units = units
        self.params = aligned_empty(n_params, dtype, zero=True)
        self.grads = aligned_empty(n_params, dtype, zero=True)
        self.coefs = tuple(
            self.params[w_off[l]:w_off[l] + sizes[l]].reshape(units[l], units[l + 1])
            for l in range(L))
        self.intercepts = tuple(
            self.params[b_off[l]:b_off[l] + units[l + 1]] for l in range(L))
        if batch_norm:
            self.params[gamma_off[0]:] = 1
        self.net.n_layers = L
        self.net.units = lay
        self.net.w_off = lay + (L + 1)
        self.net.b_off = lay + (2 * L + 1)
        self.net.blk_off = lay + (3 * L + 1)
        self.net.gamma_off = lay + (4 * L + 2)
        self.net.n_coefs = n_coefs
        self.net.n_params = n_params
        self._activation = np.array(codes + (0,), dtype=np.intc)  # never empty
        self.net.activation = <const int *> _data(self._activation)
        self.net.slope = negative_slope
        self.net.huber_delta = huber_delta
        self.net.loss = loss
        self.net.alpha = 0
        self.net.alpha_l1 = 0
        self.net.params = _data(self.params)
        self.net.grads = _data(self.grads)
        width = sum(units[1:])
        self.running = np.zeros((2, width), dtype=dtype)
        self.running[1] = 1  # PyTorch's initial running variance
        self.net.running = _data(self.running)
        self._dropout = np.zeros(L, dtype=np.float64)
        self.net.dropout = <const double *> _data(self._dropout)
        self.dropout = dropout
        self._rng = np.zeros(2, dtype=np.uint64)
        self.net.rng = <uint64_t *> _data(self._rng)
        self.solver = None
        self.optimizer_state = None
        self._work = None
        self.last_nogil_interval = None
        self.stopped_at = 0
        self.last_threads = 1
        cnnbp_lockstep_init(&self._lockstep)
        self.rows_trained = 0
        self._busy = False
        memset(&self.opt, 0, sizeof(Optim))
        memset(&self.work, 0, sizeof(Work))

    def holds(self, coefs, intercepts):
        """Whether the lists `coefs` and `intercepts` hold exactly this
        engine's views (`coefs` and `intercepts`, the same objects in the same
        order): the check a model makes before every pass, that no array a
        user assigned has replaced them (~0.1 us; a Python loop took ~0.6)."""
        cdef Py_ssize_t i
        if (type(coefs) is not list or type(intercepts) is not list
                or len(coefs) != len(self.coefs) or len(intercepts) != len(self.intercepts)):
            return False
        for i in range(len(coefs)):
            if coefs[i] is not self.coefs[i] or intercepts[i] is not self.intercepts[i]:
                return False
        return True

    @property
    def hidden_activation(self):
        """Activation codes of the hidden layers, a tuple of length L - 1."""
        return tuple(int(c) for c in self._activation[:self.net.n_layers - 1])

    @property
    def negative_slope(self):
        return self.net.slope

    @property
    def batch_norm(self):
        """Whether the hidden layers are batch-normalised."""
        return self.net.gamma_off[0] >= 0

    def _hidden_views(self, flat):
        """Views of a flat (sum(n_l),) array per hidden layer."""
        units = self.layer_units
        starts = np.cumsum((0,) + units[1:])
        return tuple(flat[starts[l]:starts[l + 1]] for l in range(len(units) - 2))

    @property
    def batch_norm_scales(self):
        """gamma^l of each hidden layer, views into `params` (() without
        batch normalisation)."""
        if not self.batch_norm:
            return ()
        units = self.layer_units
        return tuple(self.params[self.net.gamma_off[l]:self.net.gamma_off[l] + units[l + 1]]
                     for l in range(len(units) - 2))

    @property
    def running_means(self):
        """Running mean of A^{l-1} W^l per hidden layer, views into `running`."""
        return self._hidden_views(self.running[0])

    @property
    def running_vars(self):
        """Running (unbiased) variance of A^{l-1} W^l per hidden layer, views."""
        return self._hidden_views(self.running[1])

    @property
    def dropout(self):
        """Dropout rate of each hidden layer, a tuple of length L - 1."""
        return tuple(float(r) for r in self._dropout[:self.net.n_layers - 1])

    @dropout.setter
    def dropout(self, rates):
        self._idle()
        n_hidden = len(self.layer_units) - 2
        rates = ((float(rates),) * n_hidden if np.ndim(rates) == 0
                 else tuple(float(r) for r in rates))
        if len(rates) != n_hidden:
            raise ValueError(f"{len(rates)} dropout rates for {n_hidden} hidden layers")
        if not all(0 <= r < 1 for r in rates):
            raise ValueError(f"dropout rates must be in [0, 1), got {rates}")
        self._dropout[:self.net.n_layers - 1] = rates

    @property
    def dropout_rng(self):
        """(seed, position) of dropout's SplitMix64 stream: the next mask
        element drawn is output `position` of the stream `seed`."""
        return int(self._rng[0]), int(self._rng[1])

    @dropout_rng.setter
    def dropout_rng(self, state):
        seed, position = state
        self._rng[0] = seed
        self._rng[1] = position

    @property
    def huber_delta(self):
        return self.net.huber_delta

    @property
    def loss(self):
        return self.net.loss

    @property
    def learning_rate(self):
        """Current rate of sgd; the base rate (learning_rate_init, or the
        schedule's) of the other solvers."""
        return self.opt.learning_rate

    @learning_rate.setter
    def learning_rate(self, double value):
        self.opt.learning_rate = value

    @property
    def t(self):
        """Optimizer update steps taken so far."""
        return self.opt.t

    def set_optimizer(self, str solver, double learning_rate, *, clip_norm=None,
                      max_norm=None, state=None, long long t=0, double mu_product=1.0,
                      **hyperparameters):
        """Start a fresh optimizer (zero state) or restore a saved one.

        Parameters
        ----------
        solver : str
            A stochastic solver of ``cnn_bp._registry.SOLVERS``.
        learning_rate : float
            sgd: the current rate; the others: ``learning_rate_init``.
        clip_norm : float or None
            Rescale each gradient to this global L2 norm when larger.
        max_norm : float or None
            After each step, rescale each unit's incoming weights (a column of
            W^l) to this L2 norm when longer.
        state : ndarray of shape (2, n_params), optional
            Saved optimizer state to restore (copied).
        t : int
            Update steps already taken (with `state`).
        mu_product : float
            nadam: the product of its momentum schedule over those steps.
        **hyperparameters
            Settings of ``cnn_bp._registry.HYPERPARAMETERS`` (momentum,
            beta_1, ...); those not given take the registry's defaults.

        Raises
        ------
        ValueError
            An unknown solver, or one the compiled update has no case for.
        TypeError
            A keyword that is not a hyperparameter.
        """
        cdef int kind = check_solver(solver)
        if "nesterov" in hyperparameters:  # its name in files saved by cnn_bp 0.1
            hyperparameters["nesterovs_momentum"] = hyperparameters.pop("nesterov")
        values = {h.name: h.default for h in HYPERPARAMETERS}
        unknown = set(hyperparameters) - set(values)
        if unknown:
            raise TypeError(f"set_optimizer() got unknown hyperparameters {sorted(unknown)}")
        values.update(hyperparameters)
        self._idle()
        cdef ptrdiff_t n = self.net.n_params
        new_state = aligned_empty((2, n), self.dtype, zero=True)
        if state is not None:
            _check_block("optimizer state", state, self.dtype, 2, n)
            new_state[...] = state
        self.optimizer_state = new_state
        self.solver = solver
        self.opt.kind = kind
        self.opt.learning_rate = learning_rate
        self.opt.h = values  # Cython fills the struct from the dict, field by field
        self.opt.clip_norm = 0 if clip_norm is None else clip_norm
        self.opt.max_norm = 0 if max_norm is None else max_norm
        self.opt.t = t
        self.opt.mu_product = mu_product
        self.opt.s1 = _data(new_state)
        self.opt.s2 = _data(new_state[1])

    def optimizer_settings(self):
        """Keyword arguments that `set_optimizer` restores this state from."""
        if self.solver is None:
            return None
        return dict(solver=self.solver, learning_rate=self.opt.learning_rate,
                    clip_norm=self.opt.clip_norm if self.opt.clip_norm > 0 else None,
                    max_norm=self.opt.max_norm if self.opt.max_norm > 0 else None,
                    state=self.optimizer_state, t=self.opt.t,
                    mu_product=self.opt.mu_product, **self.opt.h)

    cdef _set_penalties(self, double alpha, double alpha_l1):
        if not (alpha >= 0 and alpha_l1 >= 0):
            raise ValueError(f"penalties must be >= 0, got alpha={alpha}, "
                             f"alpha_l1={alpha_l1}")
        self.net.alpha = alpha
        self.net.alpha_l1 = alpha_l1

    cdef list _allocate(self, ptrdiff_t cap, Work *w, bint keep_z):
        """Point `w` at new blocks for `cap` rows and return the arrays: A
        and delta; Z where `keep_z` or a derivative needs it; batch norm's
        and dropout's blocks where the network has them. (Rows of X, Y and
        sample weights are the caller's.)"""
        cdef ptrdiff_t width = sum(self.layer_units[1:])
        cdef void **slots[7]
        slots[:] = [&w.a, &w.delta, &w.z, &w.zhat, &w.bn, &w.mask, &w.kept]
        bn = self.batch_norm
        drops = any(self.dropout)
        needs_z = keep_z or any(cnnbp_derivative_needs_z(c) for c in self.hidden_activation)
        sizes = [cap * width, cap * width, cap * width if needs_z else 0,
                 cap * width if bn else 0, 3 * width if bn else 0,
                 cap * width if drops else 0, cap * width if drops else 0]
        memset(w, 0, sizeof(Work))
        w.cap = cap
        arrays = []
        for i, size in enumerate(sizes):
            arrays.append(aligned_empty(size, self.dtype) if size else None)
            if size:
                slots[i][0] = _data(arrays[i])
        return arrays

    cdef _reserve(self, ptrdiff_t cap, bint gather_x, ptrdiff_t shared=0,
                  bint single=False):
        """Work blocks for `cap` rows, kept while large enough (and while the
        dropout they were made for is on); the block that gathers rows of X
        only for shuffled dense X (CSR rows are read in place); with
        `shared` > 0, that many helper parts' partial gradients (w.g2); with
        `single`, products on each thread alone (w.single, through
        cnnbp_thread_blas), else on the process's BLAS and its threads; for
        a batch-normalised network, the parts' sums at its normalised layers
        (w.sums)."""
        units = self.layer_units
        if self.work.cap < cap or (any(self.dropout) and self.work.mask == NULL):
            cap = max(cap, self.work.cap)
            y = aligned_empty(cap * units[len(units) - 1], self.dtype)
            sw = aligned_empty(cap, self.dtype)
            self._work = self._allocate(cap, &self.work, False) + [y, sw]
            self.work.y = _data(y)
            self.work.sw = _data(sw)
        if gather_x and self.work.x == NULL:
            x = aligned_empty(self.work.cap * units[0], self.dtype)
            self._work.append(x)
            self.work.x = _data(x)
        if shared > self.work.n_g2:
            n_w1 = units[0] * units[1]
            self.work.g0 = n_w1 if n_w1 * self.dtype.itemsize > SHARED_W1_BYTES else 0
            self._g2 = aligned_empty(shared * (self.params.size - self.work.g0),
                                     self.dtype)  # (an older, smaller one is freed)
            self.work.g2 = _data(self._g2)
            self.work.n_g2 = shared
            if self.batch_norm:  # each part's 2 n_l sums at a normalised layer
                widest = max(units[1:len(units) - 1], default=1)
                stride = (2 * widest + 15) // 16 * 16  # whole cache lines
                self._sums = aligned_empty((shared + 1) * stride, self.dtype)
                self.work.sums = _data(self._sums)
                self.work.sums_stride = stride
        self.work.single = single

    cdef ptrdiff_t _check_data(self, Rows *rows, X, Y, sample_weight,
                               list keep) except -1:
        n = _set_rows(rows, X, self.dtype, self.layer_units[0], keep)
        n_out = self.layer_units[len(self.layer_units) - 1]
        if isinstance(Y, np.ndarray) and Y.dtype == np.uint8:  # 0/1 targets as bytes
            _check_block("Y", Y, np.uint8, n, n_out)
            if Y.size and Y.max() > 1:
                raise ValueError("byte targets Y must be 0 or 1")
        else:
            _check_block("Y", Y, self.dtype, n, n_out)
        if sample_weight is not None:
            _check_block("sample_weight", sample_weight, self.dtype, n, -1)
        return n

    def training_data(self, X, Y, sample_weight, order=None, bint shuffle=False):
        """Training rows for this engine, checked once: what `train` takes.

        A fit checks its data here once, not at each slice of an epoch (a
        CSR matrix's structure and byte targets are scanned in full).

        Parameters
        ----------
        X, Y, sample_weight : as for `run_epoch`
        order : ndarray of shape (n_samples,), dtype intp, or None
            A row order of the caller's (checked here), or None.
        shuffle : bool
            With order None: the data own a row order, ``arange(n_samples)``
            at first, that `TrainingData.shuffle` permutes; False takes rows
            as stored.

        Returns
        -------
        data : TrainingData

        Raises
        ------
        TypeError, ValueError
            Data the engine cannot take (as `run_epoch`).
        """
        cdef TrainingData data = TrainingData.__new__(TrainingData)
        data.keep = []
        cdef ptrdiff_t n = self._check_data(&data.rows, X, Y, sample_weight, data.keep)
        if order is not None:
            _check_order(order, n)
        elif shuffle:
            order = np.arange(n, dtype=np.intp)
        data.n_samples, data.Y, data.sample_weight, data.order = n, Y, sample_weight, order
        data.dtype, data.layer_units = self.dtype, self.layer_units
        return data

    def run_epoch(self, X, Y, sample_weight, order, Py_ssize_t batch_size,
                  double alpha, double alpha_l1=0.0, int n_threads=1,
                  Py_ssize_t start=0, double total=0.0, seconds=None):
        """One epoch of mini-batch training, or a time slice of one, in one
        nogil call: ``train(training_data(X, Y, sample_weight, order), ...)``.

        Parameters
        ----------
        X : ndarray or CSR matrix of shape (n_samples, n_features), engine dtype
            Dense X must be C-contiguous and aligned; CSR X is read in place
            (never densified).
        Y : ndarray of shape (n_samples, n_outputs), C-contiguous, engine dtype
            Targets: one-hot or indicator columns for classification (or
            those as uint8 0/1 bytes).
        sample_weight : ndarray of shape (n_samples,) or None
        order : ndarray of shape (n_samples,), dtype intp, or None
            Row order (a permutation from the estimator's random state);
            None takes rows as stored, without copying them.
        batch_size, alpha, alpha_l1, n_threads, start, total, seconds
            As for `train`.

        Returns
        -------
        total : float
            As `train` returns it.

        Raises
        ------
        RuntimeError, ValueError
            As `training_data` and `train` raise them.
        """
        return self.train(self.training_data(X, Y, sample_weight, order), batch_size, alpha,
                          alpha_l1, n_threads, start, total, seconds)

    def train(self, TrainingData data not None, Py_ssize_t batch_size, double alpha,
              double alpha_l1=0.0, int n_threads=1, Py_ssize_t start=0, double total=0.0,
              seconds=None):
        """One epoch of mini-batch training over `data`, or a time slice of
        one, in one nogil call.

        With ``n_threads`` T > 1, up to T - 1 helper threads share each
        batch of at least `SPLIT_ROWS` rows; the parameters come out as with
        one thread, to round-off (dropout's masks and batch normalisation's
        statistics are the whole batch's).

        Parameters
        ----------
        data : TrainingData
            This engine's `training_data`, in its row order (the rows as
            stored if it has none).
        batch_size : int
            Rows per mini-batch (the last batch may be smaller), >= 1.
        alpha, alpha_l1 : float
            L2 and L1 penalties.
        n_threads : int
            T >= 1: share each batch with up to T - 1 helper threads (as many
            as are free, parts of at least SPLIT_ROWS / 2 rows), each
            thread's products on that thread alone (the private one-thread
            OpenBLAS; the process's BLAS is left as it is), when that BLAS
            could be loaded. Without free helpers this one works alone, its
            products still on one thread.
        start : int
            Position in the order (row, without one) of the first batch:
            0, or `stopped_at` of the previous call of the same epoch.
        total : float
            The previous calls' total of the same epoch, which this call
            adds to (so the sum is the same however the epoch is sliced).
        seconds : float or None
            Return after the first batch that ends this many seconds after
            the call began (None: run to the end of the epoch); `stopped_at`
            then tells where to go on. Slices let the caller see Ctrl-C.

        Returns
        -------
        total : float
            `total` plus, over this call's batches, batch loss x batch rows;
            over a whole epoch, divided by n_samples, it is scikit-learn's
            ``loss_`` for the epoch.

        Raises
        ------
        RuntimeError
            If another thread is training with this engine, or no optimizer
            was set.
        ValueError
            Data checked for another network, or a bad start, batch size or
            thread count.
        """
        if self.solver is None:
            raise RuntimeError("set_optimizer must be called before run_epoch")
        if data.dtype != self.dtype or data.layer_units != self.layer_units:
            raise ValueError("these training data were checked for another network")
        cdef ptrdiff_t n = data.n_samples
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {n_threads}")
        if not 0 <= start <= n:
            raise ValueError(f"start must be in [0, {n}], got {start}")
        cdef double budget = np.inf if seconds is None else float(seconds)
        batch_size = min(batch_size, n)
        # T threads, each with its products on itself alone, T = 1 included
        # (BLAS's own threads would compete with the other fits and jobs
        # that T leaves the other cores to); parts of at least SPLIT_ROWS / 2
        # rows.
        cdef bint single = cnnbp_thread_blas.sgemm != NULL
        cdef int threads = n_threads if single else 1
        threads = min(threads, max(1, batch_size // (CNNBP_SPLIT_ROWS // 2)))
        self._idle()
        self._busy = True  # under the GIL since _idle: no other thread between
        try:
            self._reserve(batch_size, data.order is not None and data.rows.x != NULL,
                          threads - 1, single)
            self._set_penalties(alpha, alpha_l1)
            total = self._run(&data.rows, data.Y, data.sample_weight, data.order, n,
                              batch_size, threads, start, total, budget)
        finally:
            self._busy = False
        return total

    cdef double _run(self, const Rows *x, Y, sample_weight, order, ptrdiff_t n,
                     ptrdiff_t batch_size, int threads, ptrdiff_t start,
                     double total, double budget) except? -1:
        """run_epoch's nogil part, on checked arguments and reserved blocks."""
        cdef const ptrdiff_t *rows = NULL if order is None else <ptrdiff_t *> _data(order)
        cdef void *y = _data(Y)
        cdef bint y_u8 = Y.dtype == np.uint8
        cdef void *sw = NULL if sample_weight is None else _data(sample_weight)
        cdef double t0, t1
        cdef Slice sl
        sl.start, sl.total, sl.helpers = start, total, cnnbp_lockstep_helpers(
            &self._lockstep, threads - 1)
        cdef bint double = self.dtype == np.float64
        with nogil:
            t0 = _now()
            sl.deadline = t0 + budget
            if double:
                _epoch(&self.net, &self.opt, &self.work, x, y, y_u8, <double *> sw, rows,
                       n, batch_size, &sl)
            else:
                _epoch(&self.net, &self.opt, &self.work, x, y, y_u8, <float *> sw, rows,
                       n, batch_size, &sl)
            t1 = _now()
        self.last_nogil_interval = (t0, t1)
        self.rows_trained += sl.start - start
        self.stopped_at = sl.start
        self.last_threads = sl.used
        if sl.used == 0:
            raise MemoryError("no memory for the records of an epoch's threads")
        cnnbp_lockstep_learn(&self._lockstep, threads - 1, sl.used - 1, sl.cpu,
                             sl.shared)
        return sl.total

    cdef _idle(self):
        """Raise if a training pass runs on this engine's buffers (in another
        thread): a second one, or a change of optimizer, dropout or block
        sizes, would reallocate or free memory that pass is reading."""
        if self._busy:
            raise RuntimeError(
                "this network is being trained in another thread; its training "
                "buffers, optimizer and dropout cannot change until that ends")

    def loss_gradient(self, X, Y, sample_weight, double alpha, params=None,
                      double alpha_l1=0.0, bint gradient=True, bint training=False,
                      bint finish=True):
        """Full-batch loss; the gradient is left in `grads`.

        Parameters
        ----------
        X, Y, sample_weight : as in `run_epoch`.
        alpha : float
            L2 penalty.
        params : ndarray of shape (n_params,), optional
            Copied into `params` first (L-BFGS passes its iterate here).
        alpha_l1 : float
            L1 penalty.
        gradient : bool
            False: the loss only (a forward pass; `grads` is left alone).
        training : bool
            True: the loss of a training step, with dropout masks drawn (the
            stream moves on; set `dropout_rng` to repeat them) and batch
            statistics (of each block of up to 4096 rows; the running
            estimates move). False: the loss the model predicts with. A
            network with dropout or batch normalisation has a gradient only
            for training=True.
        finish : bool
            False: return the sums instead, ``(sum_i sw_i C_i, sum_i sw_i)``,
            with the gradient's sums over the rows (no penalty, not divided)
            in `grads`: sums over parts of the data add up, and
            `finish_loss_gradient` then gives what one call over all of it
            would (cnn_bp.dask sums partitions so).

        Returns
        -------
        loss : float
            ``sum_i sw_i C_i / s + alpha / 2 * ||W||^2 / s + alpha_l1 ||W||_1 / s``
            (with finish=False: the tuple of sums above).

        Raises
        ------
        ValueError
            For a gradient of a network with dropout or batch normalisation
            without `training`, or data the engine cannot take.
        """
        if gradient and not training and (self.batch_norm or any(self.dropout)):
            raise ValueError("a network with dropout or batch normalisation has a "
                             "gradient only for training passes (training=True)")
        cdef Rows x
        cdef list keep = []
        cdef ptrdiff_t n = self._check_data(&x, X, Y, sample_weight, keep)
        cdef void *y = _data(Y)
        cdef bint y_u8 = Y.dtype == np.uint8
        cdef void *sw = NULL if sample_weight is None else _data(sample_weight)
        cdef double data_loss, weight
        self._idle()
        self._busy = True  # under the GIL since _idle: no other thread between
        try:
            if params is not None:
                self.params[...] = np.asarray(params).reshape(self.params.shape)
            self._reserve(min(n, FULL_BATCH_ROWS), False)
            self._set_penalties(alpha, alpha_l1)
            if self.dtype == np.float64:
                with nogil:
                    data_loss = _full_loss_gradient(&self.net, &self.work, &x, y, y_u8,
                                                    <double *> sw, n, gradient, training,
                                                    &weight)
            else:
                with nogil:
                    data_loss = _full_loss_gradient(&self.net, &self.work, &x, y, y_u8,
                                                    <float *> sw, n, gradient, training,
                                                    &weight)
        finally:
            self._busy = False
        if not finish:
            return data_loss, weight
        return self.finish_loss_gradient(data_loss, weight, alpha, alpha_l1, gradient)

    def finish_loss_gradient(self, double data_loss, double weight, double alpha,
                             double alpha_l1=0.0, bint gradient=True):
        """The loss from the sums `loss_gradient(..., finish=False)` returns
        (added over parts of the data), and with `gradient` the gradient
        finished in place from the sums in `grads` (the penalties' terms
        added, divided by `weight`): what `loss_gradient` gives over all
        the parts at once.

        Raises
        ------
        ValueError
            For negative penalties.
        RuntimeError
            If another thread is training with this engine.
        """
        self._idle()
        self._set_penalties(alpha, alpha_l1)
        if self.dtype == np.float64:
            return _objective(&self.net, data_loss, weight, gradient, <double *> NULL)
        return _objective(&self.net, data_loss, weight, gradient, <float *> NULL)

    def trace(self, X, Y, sample_weight, double alpha, double alpha_l1=0.0):
        """One training step's forward and backward pass over all rows (without
        the update), keeping every block.

        Parameters
        ----------
        X, Y, sample_weight : as in `run_epoch` (all rows form one batch).
        alpha, alpha_l1 : float
            L2 and L1 penalties.

        Returns
        -------
        loss : float
            As `loss_gradient`; the gradient is left in `grads`.
        z, a, delta : list of ndarray of shape (n_samples, n_l), l = 1..L
            Z^l = A^{l-1} W^l + b^l, A^l = f(Z^l) and delta^l = dC_i/dZ^l
            (rows times their sample weight), exactly as the engine computed
            them. Memory: 3 x n_samples x sum(n_l) values, so keep X small.
        """
        cdef Rows x
        cdef list keep = []
        cdef ptrdiff_t n = self._check_data(&x, X, Y, sample_weight, keep)
        units = self.layer_units
        cdef Work w
        blocks = self._allocate(n, &w, True)
        a, delta, z = blocks[:3]
        self._set_penalties(alpha, alpha_l1)
        Y = Y.astype(self.dtype, copy=False)  # byte targets: one block, converted
        cdef void *y = _data(Y)
        cdef void *sw = NULL if sample_weight is None else _data(sample_weight)
        cdef double loss
        if self.dtype == np.float64:
            with nogil:
                loss = _trace(&self.net, &x, <double *> y, <double *> sw, n, &w)
        else:
            with nogil:
                loss = _trace(&self.net, &x, <float *> y, <float *> sw, n, &w)
        starts = np.cumsum((0,) + units[1:]) * n
        views = [[block[starts[l]:starts[l + 1]].reshape(n, units[l + 1])
                  for l in range(len(units) - 1)] for block in (z, a, delta)]
        return (loss, *views)

    def predict(self, X, layer=None, check_finite=False):
        """Output activations for X, or the activations of a hidden layer.

        Parameters
        ----------
        X : ndarray or CSR matrix of shape (n_samples, n_features), engine dtype
            Dense X must be C-contiguous and aligned; CSR X is read in place
            (never densified).
        layer : int, optional
            1 .. L - 1 for the hidden layer A^layer; None (or L) for the outputs.
        check_finite : bool, default=False
            Check X for inf and NaN, block by block, through Z^1 = X W^1
            (non-finite where X is; smaller than X and in cache, unlike X).

        Returns
        -------
        out : ndarray of shape (n_samples, n_layer), engine dtype, or None
            Softmax probabilities, logistic probabilities, identity or exp
            outputs, by the loss; or f(Z^layer) of that hidden layer. None
            if `check_finite` found inf or NaN in Z^1: in X, or (rarely) a
            product that overflowed.

        Notes
        -----
        Uses its own work memory, so concurrent calls are safe. One dense
        row of a network whose largest W^l takes SHARED_ROW_BYTES bytes
        takes the helper thread, when it is free and awake, for half of each
        layer's inputs (the same outputs to round-off).
        """
        cdef ptrdiff_t L = self.net.n_layers
        cdef ptrdiff_t at = L if layer is None else layer
        if not 1 <= at <= L:
            raise ValueError(f"layer must be in 1..{L}, got {layer}")
        cdef Rows x
        cdef ptrdiff_t n = _dense_rows(&x, X, self._typenum, self.net.units[0])
        cdef list keep
        if n == 0:  # not a plain dense block: check it all, or raise
            keep = []
            n = _set_rows(&x, X, self.dtype, self.net.units[0], keep)
        cdef ptrdiff_t width = _width(&self.net)
        cdef ptrdiff_t row_bytes = (self.net.units[0] + width) * self.dtype.itemsize
        cdef ptrdiff_t cap = min(n, max(PREDICT_MIN_ROWS, PREDICT_BYTES // row_bytes))
        cdef bint check = check_finite, finite
        cdef cnp.npy_intp shape[2]
        shape[0], shape[1] = n, self.net.units[at]
        out = cnp.PyArray_EMPTY(2, shape, self._typenum, 0)
        # the blocks, then one row more: w.part, the helper's part of a shared row
        shape[0] = (cap + 1) * width
        work = cnp.PyArray_EMPTY(1, shape, self._typenum, 0)
        cdef void *o = _data(out)
        cdef void *a = _data(work)
        if self._typenum == cnp.NPY_DOUBLE:
            with nogil:
                finite = _predict(&self.net, &x, n, <double *> o, <double *> a, cap, at, check)
        else:
            with nogil:
                finite = _predict(&self.net, &x, n, <float *> o, <float *> a, cap, at, check)
        return out if finite else None

    def __reduce__(self):
        return (_restore, (self.layer_units, self.hidden_activation,
                           self.net.loss, self.dtype.str, self.params,
                           self.optimizer_settings(), self.net.slope,
                           self.net.huber_delta, self.batch_norm, self.dropout,
                           self.running, self.dropout_rng))


def _restore(layer_units, hidden_activation, loss, dtype, params, optimizer,
             negative_slope, huber_delta, batch_norm=False, dropout=0.0,
             running=None, dropout_rng=(0, 0)):
    engine = Engine(layer_units, hidden_activation, loss, dtype, negative_slope,
                    huber_delta, batch_norm, dropout)
    engine.params[...] = params
    if running is not None:
        engine.running[...] = running
    engine.dropout_rng = dropout_rng
    if optimizer is not None:
        engine.set_optimizer(**optimizer)
    return engine


# ---------------------------------------------------------------------------
# Thin wrappers so tests reach the C kernels directly (in place; float64
# but for py_bias_activation, which takes float32 too).
# ---------------------------------------------------------------------------

def py_bias_activation(floating[:, ::1] z, const floating[::1] b, int activation,
                       double slope=0.01):
    """z := f(z + b) in place, float32 or float64 (tests only)."""
    if b.shape[0] != z.shape[1]:
        raise ValueError("bad shapes")
    if bias_activation(z.shape[0], z.shape[1], activation, slope, &b[0],
                       &z[0, 0]) == CNNBP_UNKNOWN_CODE:
        raise ValueError(f"unknown activation code {activation}")


def py_delta_derivative(const double[::1] a, const double[::1] z,
                        double[::1] delta, int activation, double slope=0.01):
    """delta := delta * f'(z) in place, from a = f(z) or z (tests only)."""
    if a.shape[0] != delta.shape[0] or z.shape[0] != delta.shape[0]:
        raise ValueError("bad shapes")
    if delta_derivative(a.shape[0], activation, slope, &a[0], &z[0],
                        &delta[0]) == CNNBP_UNKNOWN_CODE:
        raise ValueError(f"unknown hidden activation code {activation}")


def py_output_loss(double[:, ::1] z, const double[::1] b, const double[:, ::1] y,
                   sw, double[:, ::1] delta, int loss, double huber_delta=1.0):
    """z := g(z + b), delta := dC/dz * sw; returns the weighted loss sum."""
    cdef const double[::1] w
    cdef const double *w_ptr = NULL
    if (b.shape[0] != z.shape[1] or y.shape[0] != z.shape[0]
            or y.shape[1] != z.shape[1] or delta.shape[0] != z.shape[0]
            or delta.shape[1] != z.shape[1]):
        raise ValueError("bad shapes")
    if sw is not None:
        w = sw
        if w.shape[0] != z.shape[0]:
            raise ValueError("bad sample_weight shape")
        w_ptr = &w[0]
    total = output_loss(z.shape[0], z.shape[1], loss, huber_delta, &b[0], &y[0, 0],
                        w_ptr, &z[0, 0], &delta[0, 0])
    if cnnbp_loss_activation(loss) < 0:
        raise ValueError(f"unknown loss code {loss}")
    return total


def py_sgd_update(double[::1] p, const double[::1] g, double[::1] v,
                  double lr, double momentum, bint nesterov):
    """One SGD step in place (tests only)."""
    if g.shape[0] != p.shape[0] or v.shape[0] != p.shape[0]:
        raise ValueError("bad shapes")
    sgd_update(p.shape[0], lr, momentum, nesterov, &g[0], &v[0], &p[0])


def py_adam_update(double[::1] p, const double[::1] g, double[::1] m,
                   double[::1] v, double lr_t, double beta_1, double beta_2,
                   double epsilon):
    """One Adam step in place with the bias-corrected rate lr_t (tests only)."""
    if g.shape[0] != p.shape[0] or m.shape[0] != p.shape[0] or v.shape[0] != p.shape[0]:
        raise ValueError("bad shapes")
    adam_update(p.shape[0], lr_t, beta_1, beta_2, epsilon, &g[0], &m[0], &v[0], &p[0])
