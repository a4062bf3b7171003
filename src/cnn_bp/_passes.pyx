# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The nogil mathematics of one part of a batch: forward, backward, the
gradient's finish and the optimizer step over row and parameter ranges, and
the column tiles of a layer; and the one-thread passes over all rows (the
full batch's loss, a traced step). Knows no threads: the plan (_plan.pyx)
says which part of which product a thread computes, and calls these.

Its products run on the BLAS this module holds: the private one-thread
OpenBLAS (csrc/thread_blas.c, set by cnn_bp._threads) when Work.single,
else the process's (scipy's).
"""
from libc.math cimport INFINITY, NAN, isnan, pow, sqrt
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memset
from cython cimport floating

from ._kernels cimport (
    cnnbp_thread_blas, cnnbp_blas_enter, cnnbp_blas_leave, cnnbp_blas_call_begin,
    cnnbp_blas_call_end, cnnbp_sgemm_fn, cnnbp_dgemm_fn, cnnbp_sdot_fn, cnnbp_ddot_fn,
    cnnbp_sasum_fn, cnnbp_dasum_fn, CNNBP_SOLVER_NADAM, CNNBP_ROW_BATCH, CNNBP_ROW_ALONE,
    add, batch_norm_apply, batch_norm_backward, batch_norm_train, batch_norm_moments,
    batch_norm_normalise, batch_norm_backward_sums, batch_norm_backward_apply,
    bias_activation, cnnbp_nadam_mu, column_sums, cnnbp_range_fn, csr_matmul,
    csr_transpose_matmul_add, delta_derivative, dropout, finish_gradient, gather_rows, gemm,
    all_finite as is_finite, max_norm_columns, multiply, optimizer_step, output_loss,
    row_product, sum_of_abs, sum_of_squares, targets_from_u8,
)


cdef char NO_TRANS = b'N'
cdef char TRANS = b'T'

# Batch normalisation's constants: PyTorch's BatchNorm1d defaults.
BN_EPSILON = 1e-5   # added to the variance
BN_MOMENTUM = 0.1   # weight of each batch in the running estimates
cdef double _BN_EPSILON = BN_EPSILON
cdef double _BN_MOMENTUM = BN_MOMENTUM

# Z^1 is checked for NaN and inf, and activated, this many bytes at a time
# (_activate).
cdef enum:
    CHECK_BYTES = 16384

# The update finishes the gradient and steps this many parameters at a time
# (_finish_step): 4096 values of the parameters, gradient and two moments
# stay in L2 cache between the two.
cdef enum:
    STEP_CHUNK = 4096

# A layer of fewer weights is left to BLAS in a shared row: its product
# takes about as long as the hand-over, and OpenBLAS runs a gemv that
# small on the calling thread (interface/gemv.c: under 2304 x
# GEMM_MULTITHREAD_THRESHOLD), so a shared row never wakes OpenBLAS's threads.
cdef enum:
    SHARED_LAYER_WEIGHTS = 9216


def set_thread_blas(addresses):
    """Point cnnbp_thread_blas at the private one-thread OpenBLAS: a dict of
    the addresses of its sgemm, dgemm, sdot, ddot, sasum and dasum
    (cnn_bp._threads.thread_blas). Not called, or None: batches are not
    shared."""
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


# The private BLAS's state, for the engine and the tests' hooks (_passes.pxd).
cdef bint blas_loaded() noexcept nogil:
    return cnnbp_thread_blas.sgemm != NULL


cdef bint blas_enter(int threads) noexcept nogil:
    return cnnbp_blas_enter(threads)


cdef void blas_leave(int threads) noexcept nogil:
    cnnbp_blas_leave(threads)


cdef void blas_call_begin() noexcept nogil:
    cnnbp_blas_call_begin()


cdef void blas_call_end() noexcept nogil:
    cnnbp_blas_call_end()


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


cdef void _layer_product(const Net *net, const Rows *x, const Work *w, floating *a,
                         ptrdiff_t l, ptrdiff_t m, ptrdiff_t r0, bint training, int row,
                         floating *z) noexcept nogil:
    """Z^l = A^{l-1} W^l (m, n_l) of rows r0.. into z, by `row`
    (cnnbp_row_mode): CNNBP_ROW_BATCH for any block, one GEMM. ROW_ALONE and
    ROW_SHARED (one dense row, not training) sum the rows of W^l weighted by
    A^{l-1} in the layers _by_rows picks; ROW_SHARED (the caller holds
    helper w.helper, awake; w.part has room for n_l values) splits those
    inputs in two halves (cnnbp_split_inputs), the helper summing the
    second's rows into w.part while this thread sums the first's into Z^l,
    which then adds w.part. A row's product streams all of W^l once; two
    cores stream it twice as fast, each its own contiguous half."""
    cdef RowJob job
    cdef cnnbp_range_fn row_range = _row_range_f32 if floating is float else _row_range_f64
    if row == CNNBP_ROW_BATCH or not _by_rows(net, l):
        _product(net, x, w, a, l, m, r0, training)
    elif row == CNNBP_ROW_ALONE:
        _row_inputs(net, x, w, a, l, 0, net.units[l - 1], z)
    else:  # the helper sums half of the inputs into w.part
        job.net, job.x, job.w, job.a, job.l, job.z = net, x, w, a, l, z
        w.split(w.helper, net.units[l - 1], row_range, &job)
        add(net.units[l], <const floating *> w.part, z)


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
    inf * 0 is NaN too). True otherwise. `row`: see _layer_product."""
    cdef const floating *p = <const floating *> net.params
    cdef ptrdiff_t cap = w.cap
    cdef floating *z
    cdef ptrdiff_t l, n_out, L = net.n_layers
    cdef ptrdiff_t first = 1 if st == NULL or st.at == 0 else st.at
    if st != NULL and st.done >= first:
        first = st.done + 1
    for l in range(first, last + 1):
        n_out = net.units[l]
        z = a + cap * net.blk_off[l] + r0 * n_out
        if st == NULL or st.at != l:  # else going on: Z^l is there, and its statistics
            _layer_product(net, x, w, a, l, m, r0, training, row, z)
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
    rows of A^0), after _forward and _output_loss: for l = L, ..., 1
    (st.bottom with a Stage), adds their sums of delta^l and, for l >= first,
    of (A^{l-1})^T delta^l into g (g[i - g0]: parameter i's gradient), and
    takes delta^{l-1} back. A part of a shared, batch-normalised batch
    (`st`, else NULL) stops at each normalised layer (st.at, see
    _bias_gradient) and goes on from there when called again."""
    cdef ptrdiff_t l
    cdef ptrdiff_t top = net.n_layers if st == NULL or st.at == 0 else st.at
    cdef ptrdiff_t bottom = 1 if st == NULL else st.bottom
    for l in range(top, bottom - 1, -1):
        if not _bias_gradient(net, x, w, r0, m, l, g, g0, st):
            return  # stopped at st.at
        if l >= first:
            _weight_gradient(net, x, w, r0, m, l, 0, net.units[l - 1], training, g, g0)
        if l > bottom:
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
        opt.mu_product *= cnnbp_nadam_mu(opt.h.beta_1, opt.t)


cdef double _finish_step(const Net *net, const Optim *opt, floating *p, floating *g,
                         double s, ptrdiff_t lo, ptrdiff_t hi) noexcept nogil:
    """_finish_range, then the optimizer's step, on parameters [lo, hi), STEP_CHUNK values
    at a time: the step finds the finished gradient and the parameters
    still in cache (one pass over memory, not two). Returns the range's
    _penalty."""
    cdef double penalty = 0
    cdef ptrdiff_t a = lo, b
    while a < hi:
        b = min(a + STEP_CHUNK, hi)
        penalty += _finish_range(net, p, g, s, a, b)
        optimizer_step(opt, net.n_coefs, a, b, g, p)
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
        optimizer_step(opt, net.n_coefs, 0, n, g, p)
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


cdef void _column_tile(const Net *net, const Work *w, const floating *x, ptrdiff_t l,
                       ptrdiff_t m, ptrdiff_t c0, ptrdiff_t c1) noexcept nogil:
    """A^l[:, c0:c1] = f(A^{l-1} W^l[:, c0:c1] + b^l[c0:c1]) over m rows: a
    column tile of layer l (A^0 = x, the batch's rows of X)."""
    cdef ptrdiff_t r, n_in = net.units[l - 1], n = net.units[l]
    cdef const floating *p = <const floating *> net.params
    cdef floating *a = <floating *> w.a
    cdef const floating *a_prev = x if l == 1 else a + w.cap * net.blk_off[l - 1]
    cdef floating *z = a + w.cap * net.blk_off[l]
    cdef floating one = 1, zero = 0
    gemm(w.single, NO_TRANS, NO_TRANS, m, c1 - c0, n_in, one, a_prev, n_in,
         p + net.w_off[l - 1] + c0, n, zero, z + c0, n)
    for r in range(m):
        bias_activation(1, c1 - c0, net.activation[l - 1], net.slope,
                        p + net.b_off[l - 1] + c0, z + r * n + c0)


cdef void _column_tile_back(const Net *net, const Work *w, ptrdiff_t l, ptrdiff_t m,
                            ptrdiff_t c0, ptrdiff_t c1, floating *g) noexcept nogil:
    """Over m rows, on columns c0..c1 - 1 of n_{l-1} (2 <= l): rows c0.. of
    dW^l = (A^{l-1})^T delta^l; delta^{l-1}[:, c0:c1] = (delta^l
    (W^l)^T)[:, c0:c1] * f'(Z^{l-1}) (f' off A: the layer has no dropout and
    no kept Z); and db^{l-1}[c0:c1], its column sums; into g."""
    cdef ptrdiff_t r, n_in = net.units[l - 1], n = net.units[l]
    cdef const floating *p = <const floating *> net.params
    cdef floating *a_prev = <floating *> w.a + w.cap * net.blk_off[l - 1]
    cdef floating *d_prev = <floating *> w.delta + w.cap * net.blk_off[l - 1]
    cdef const floating *d = <floating *> w.delta + w.cap * net.blk_off[l]
    cdef floating one = 1, zero = 0
    gemm(w.single, TRANS, NO_TRANS, c1 - c0, n, m, one, a_prev + c0, n_in, d, n,
         zero, g + net.w_off[l - 1] + c0 * n, n)
    gemm(w.single, NO_TRANS, TRANS, m, c1 - c0, n, one, d, n,
         p + net.w_off[l - 1] + c0 * n, n, zero, d_prev + c0, n_in)
    for r in range(m):
        delta_derivative(c1 - c0, net.activation[l - 2], net.slope,
                         a_prev + r * n_in + c0, <const floating *> NULL,
                         d_prev + r * n_in + c0)
        column_sums(1, c1 - c0, d_prev + r * n_in + c0, g + net.b_off[l - 2] + c0)


cdef void _input_block(const Net *net, const Work *w, const floating *x, ptrdiff_t m,
                       ptrdiff_t f0, ptrdiff_t f1, floating *out) noexcept nogil:
    """out (m, n_1) = x[:, f0:f1] W^1[f0:f1, :] over m rows: input features
    f0..f1 - 1's share of Z^1 (x: the batch's rows of X)."""
    cdef ptrdiff_t n_in = net.units[0], n = net.units[1]
    cdef floating one = 1, zero = 0
    gemm(w.single, NO_TRANS, NO_TRANS, m, n, f1 - f0, one, x + f0, n_in,
         <const floating *> net.params + net.w_off[0] + f0 * n, n, zero, out, n)


cdef void _input_sums(const Net *net, const Work *w, const floating *blocks,
                      ptrdiff_t n_blocks, ptrdiff_t m, ptrdiff_t r0,
                      ptrdiff_t mr) noexcept nogil:
    """A^1 of rows r0..r0 + mr - 1 of a batch of m rows, from Z^1 in
    n_blocks blocks of input features (`blocks`: n_blocks (m, n_1) blocks,
    _input_block): f(their sum, added in block order, + b^1)."""
    cdef ptrdiff_t n = net.units[1], k
    cdef floating *z = <floating *> w.a + w.cap * net.blk_off[1] + r0 * n
    memcpy(z, blocks + r0 * n, mr * n * sizeof(floating))
    for k in range(1, n_blocks):
        add(mr * n, blocks + (k * m + r0) * n, z)
    _activate(net, 1, mr, z, False)


cdef double _full_loss(const Net *net, const Work *w, const Rows *X, const void *Y,
                       bint y_u8, const floating *SW, ptrdiff_t n, bint training,
                       double *weight) noexcept nogil:
    """The weighted data loss sum_i sw_i C_i over all n rows, forward only,
    in blocks of w.cap rows, on this thread (batch statistics, when
    `training`, are those of each block); the rows' weight sum s in
    *weight."""
    cdef ptrdiff_t n_in = net.units[0], n_out = net.units[net.n_layers]
    cdef ptrdiff_t start = 0, m
    cdef double data_loss = 0
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
                                    swb, m, w, start > 0, False, training)
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
