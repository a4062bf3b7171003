# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Running the plan: the passes over many rows that a team of threads shares
(csrc/team.c over csrc/pool.c's helper threads). A training slice (_epoch)
splits each batch into the plan's parts (cnnbp_plan_parts: T parts, fixed by
T and the batch size) and runs them on the caller and up to T - 1 helpers, a
thread taking several parts when fewer are free: the same sums in the same
order whichever thread ran them, so the model depends on T alone. Each part
takes its rows forward and back (_share: SHARE_START, with a stop at every
batch-normalised layer for the whole batch's statistics, SHARE_ON; first
layers wider than the batch are made by column tiles, forward and back:
SHARE_COLUMNS, SHARE_BACK), then its share of the reduction and the update
by parameter ranges (SHARE_UPDATE); dropout masks are drawn at each row's
place in the batch's stream. L-BFGS's full batch goes block by block the
same way (_full_gradient); a one-row prediction of a mid-sized network may
share each layer's inputs with a helper (_predict, cnnbp_split_inputs).

The only Cython that calls the parallel C layer (csrc/parallel.h), and the
extension that holds its process-wide state (the helper threads, their
count T, which threadpoolctl reads and limits here). The mathematics of each
part is _passes.pyx's; the buffers and the checks are the engine's.
"""
from cpython.exc cimport PyErr_CheckSignals
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from libc.math cimport INFINITY, NAN
from libc.stddef cimport ptrdiff_t
from libc.string cimport memcpy, memset
from cython cimport floating

import threading

from ._kernels cimport (
    add, batch_norm_combine, batch_norm_backward_combine, bias_activation,
    cnnbp_loss_activation, gather_rows, team_reduce,
    CNNBP_MAX_HELPERS, cnnbp_helpers_acquire, cnnbp_helper_jobs, cnnbp_helpers_release,
    cnnbp_get_num_threads, cnnbp_available_cores, CNNBP_MIN_PART_ROWS, cnnbp_plan_parts,
    CNNBP_ROW_BATCH, CNNBP_ROW_SHARED, cnnbp_share, cnnbp_share_fn, cnnbp_team,
    cnnbp_team_begin, cnnbp_team_split, cnnbp_team_run, cnnbp_team_end, cnnbp_team_cancel,
    cnnbp_team_cancelled, cnnbp_row_mode, cnnbp_split_inputs, cnnbp_lockstep_init,
    cnnbp_lockstep_helpers, cnnbp_lockstep_learn,
)
from ._passes cimport (
    Stage, _drops, _width, _normalised, blas_loaded,
    _spend_masks, _forward, _output_loss, _weight_gradient, _backward,
    _advance, _finish_step, _finish_update, _weight_sum, _block_rows,
    _target_rows, _column_tile, _column_tile_back, _input_block, _input_sums,
)
from ._passes import BN_EPSILON, BN_MOMENTUM

cnnbp_get_num_threads()  # OMP_NUM_THREADS is read now, as OpenMP reads it at load

# Batch normalisation's constants (_passes.pyx's), as the parts' sums are
# combined here (_combine).
cdef double _BN_EPSILON = BN_EPSILON
cdef double _BN_MOMENTUM = BN_MOMENTUM

# The plan's parts of a training batch have at least this many rows
# (cnnbp_plan_parts, csrc/team.c; the cost of small parts is measured in
# benchmarks/bench_scaling.py, docs/performance.md).
MIN_PART_ROWS = CNNBP_MIN_PART_ROWS

# A batch of this many parts or more makes its first layers wider than the
# batch by column tiles (_columns); with fewer, the hand-overs that takes cost
# about what it saves (docs/performance.md, "Figures behind the code").
cdef int _COLUMN_PARTS = 4

# A first layer no wider than the batch makes Z^1 by blocks of input
# features (by_inputs, _inputs) when its parts of rows would have fewer than
# INPUT_ROWS rows each and each part's block at least INPUT_FEATURES
# features: parts of few rows pack all of W^1 each, blocks of features
# pack each row of W^1 once, and adding the parts' blocks costs little
# beside the product of a wide input (docs/performance.md).
cdef ptrdiff_t _INPUT_ROWS = 64
cdef ptrdiff_t _INPUT_FEATURES = 48
INPUT_ROWS, INPUT_FEATURES = _INPUT_ROWS, _INPUT_FEATURES

# A large batch's rows go forward and back in blocks of at least this many
# rows, between which the main thread looks for signals (_signal_block).
cdef ptrdiff_t _MIN_SIGNAL_BLOCK = 64

# A one-row prediction is shared with the helper thread (half of each
# layer's inputs each, see _passes._forward) when the largest W^l of its
# network takes this many bytes (from, to): a row's product streams the
# weights, so bytes, not weights, say what sharing saves. Below the range a
# row is too short to share; above it two cores stream memory no faster than
# OpenBLAS's two threads (figures: docs/performance.md, "Figures behind the
# code").
SHARED_ROW_BYTES = (1 << 19, 1 << 23)
cdef ptrdiff_t _SHARED_ROW_MIN = SHARED_ROW_BYTES[0]
cdef ptrdiff_t _SHARED_ROW_MAX = SHARED_ROW_BYTES[1]

# How _forward runs a one-row prediction's products (cnnbp_row_mode):
# BLAS on the block (CNNBP_ROW_BATCH); or, for one dense row of a network in
# SHARED_ROW_BYTES, the layers of at least SHARED_LAYER_WEIGHTS weights
# summed row by row of W^l (row_product), by this thread alone (ROW_ALONE:
# the helper is busy or asleep) or with a helper (ROW_SHARED). ROW_ALONE
# keeps off BLAS too: OpenBLAS would wake its worker for such a row, which
# then spins on the core the helper needs for the rows that follow.


def num_threads():
    """T, the threads a fit may use: threadpoolctl's limit if one is set
    (threadpool_limits), else OMP_NUM_THREADS, else the cores this process
    may run on."""
    return cnnbp_get_num_threads()


def available_cores():
    """How many cores this process may run on (its affinity mask; the one
    count of cores, the pool's own: csrc/pool.c)."""
    return cnnbp_available_cores()


def plan_parts(int threads, Py_ssize_t rows):
    """The parts a batch of `rows` rows is split into for T = `threads`
    (cnnbp_plan_parts, csrc/team.c: T, at most one per MIN_PART_ROWS rows):
    the plan, fixed by T and the batch size alone."""
    return cnnbp_plan_parts(threads, rows)


cdef int plan(int n_threads, ptrdiff_t rows) except -1:
    """The plan's parts of a batch of `rows` rows for T = n_threads
    (cnnbp_plan_parts: fixed by T and the rows alone). Every product runs
    on the calling thread alone, T = 1 included, through the private
    one-thread BLAS (BLAS's own threads would compete with the other fits
    that T leaves the cores to, and would not survive a fork); without
    it, only T = 1."""
    if n_threads > 1 and not blas_loaded():
        raise ValueError("n_threads > 1 needs the private one-thread BLAS "
                         "(the scipy-openblas32 package), which did not load")
    return cnnbp_plan_parts(n_threads, rows)


cdef class BackOff:
    """The helpers one engine's passes take on a busy machine: as many as
    the plan has parts until threads in lockstep are seen waiting for cores
    that other work took, then fewer (cnnbp_lockstep, csrc/team.c). The
    plan's parts stay as they are: a thread takes several."""

    def __cinit__(self):
        cnnbp_lockstep_init(&self.lockstep)

    cdef Slice slice(self, const Net *net, int parts, double budget, ptrdiff_t work):
        """A pass's Slice: the plan's parts, the helpers the back-off allows,
        Ctrl-C looked for between blocks of about `work` multiply-adds of a
        large batch (in the main thread), a time `budget` (seconds; INFINITY:
        none), 0 when the helpers exceed the cores (one batch, then the
        back-off takes the cores)."""
        cdef Slice sl
        sl.start, sl.total, sl.parts = 0, 0.0, parts
        sl.helpers = cnnbp_lockstep_helpers(&self.lockstep, parts - 1)
        sl.budget = budget
        if budget < INFINITY and sl.helpers + 1 > cnnbp_available_cores():
            sl.budget = 0
        sl.block = _signal_block(net, work)
        sl.signals = threading.current_thread() is threading.main_thread()
        sl.exc = NULL
        return sl

    cdef int learn(self, Slice *sl) except -1:
        """After a pass: raise what a signal's handler raised in it (its
        batch dropped), or MemoryError when the team had no records; else
        let the back-off learn from the pass's threads."""
        if sl.exc != NULL:
            _raise(sl.exc)
        if sl.used == 0:
            raise MemoryError("no memory for the records of a pass's threads")
        cnnbp_lockstep_learn(&self.lockstep, sl.parts - 1, sl.used - 1, sl.cpu, sl.shared)
        return 0


# The parallel layer's state, for other extensions (_plan.pxd).
cdef int take_helpers(int want, int *ids) noexcept nogil:
    return cnnbp_helpers_acquire(want, ids)


cdef void give_helpers(int n, const int *ids) noexcept nogil:
    cnnbp_helpers_release(n, ids)


cdef unsigned finished_helper_jobs() noexcept nogil:
    return cnnbp_helper_jobs()


cdef (ptrdiff_t, ptrdiff_t) shared_row_range(ptrdiff_t lo, ptrdiff_t hi, bint set) noexcept:
    global _SHARED_ROW_MIN, _SHARED_ROW_MAX
    if set:
        _SHARED_ROW_MIN, _SHARED_ROW_MAX = lo, hi
    return _SHARED_ROW_MIN, _SHARED_ROW_MAX


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
    ptrdiff_t block              # a share's rows go forward and back in blocks of
                                 # this many (0: all at once; _share_blocks)
    bint signals                 # share 0 looks for signals between its blocks
    bint split_w1                # dW^1 by rows of W^1 over all rows (_split_w1), not
                                 # by the parts: a large W^1 (w.g0) or column tiles
    bint w1_apart                # SHARE_W1 computes the split dW^1, in blocks
    ptrdiff_t columns            # layers 1..columns made by column tiles (_columns;
                                 # SHARE_GATHER, SHARE_COLUMNS), or 0
    ptrdiff_t tiles              # with columns: dW^l, l <= tiles, and delta^{l-1},
                                 # 2 <= l <= tiles, by column tiles too (SHARE_BACK,
                                 # SHARE_UPDATE's _split_w1); 0 without
    bint full_inputs             # the slice's full batches make Z^1 by blocks of
                                 # input features (_by_inputs), and so w.kz holds them
    bint inputs                  # this one does (_inputs; SHARE_INPUTS), each part
                                 # then adding up its rows
    ptrdiff_t layer              # SHARE_COLUMNS, SHARE_BACK: the layer
    PyObject **exc               # where it keeps the exception a signal raised


# _share's phases (a team's hand-overs, cnnbp_team_run): a part's rows forward
# and back (a batch whose first layers are made by column tiles, _columns:
# first its rows gathered, then its columns of each such layer over all
# rows, then the rest forward and back to the first of them, then its
# columns of each such layer's delta over all rows, last to first; a batch
# whose Z^1 is made by blocks of input features, _inputs: first its block
# over all rows, then its rows on from their sum); then,
# in a batch-normalised network, on from each normalised layer once the
# caller combined the parts' sums there; for a large batch
# whose dW^1 is split by rows of W^1, those rows, in blocks of the batch's
# rows; then the reduction and the update by parameter ranges.
cdef enum:
    SHARE_START = 0
    SHARE_UPDATE = 1
    SHARE_ON = 2
    SHARE_W1 = 3
    SHARE_GATHER = 4
    SHARE_COLUMNS = 5
    SHARE_BACK = 6
    SHARE_INPUTS = 7


cdef Rows _rows_from(const Rows *x, ptrdiff_t j, ptrdiff_t n_in, const floating *sw) noexcept nogil:
    """The rows of x from its row j on (a share's of a batch, a block's of a
    share), weighted by sw."""
    cdef Rows xb = x[0]
    xb.sw = sw
    if xb.x != NULL:
        xb.x = <const floating *> xb.x + j * n_in
    elif xb.rows != NULL:
        xb.rows = xb.rows + j
    else:
        xb.first_row = xb.first_row + j
    return xb


cdef bint _signalled(Batch *b) noexcept nogil:
    """Whether a signal arrived (its Python handler run, under the GIL): the
    exception the handler raised (KeyboardInterrupt, for Ctrl-C) kept in
    b.exc (a reference) for the caller to raise, and the batch cancelled."""
    with gil:
        try:
            PyErr_CheckSignals()
            return False
        except BaseException as e:
            Py_INCREF(e)
            b.exc[0] = <PyObject *> e
    cnnbp_team_cancel(<cnnbp_team *> b.team)
    return True


cdef double _share_blocks(Batch *b, const cnnbp_share *s, const Rows *xb,
                          const floating *swb, floating *g, ptrdiff_t g0,
                          ptrdiff_t w_first) noexcept nogil:
    """SHARE_START's passes over share s's rows (xb, weighted by swb) in
    blocks of b.block rows, for a large batch of a network without batch
    normalisation (rows independent until the sums): each block forward,
    its loss and delta^L, and back, adding into the share's gradient sums g
    (zeroed by the caller; dW^l for l >= w_first); returns the rows'
    weighted loss. Between two blocks, share 0 looks for a signal (with
    b.signals); once the batch is cancelled every share stops, and the
    batch is not used."""
    cdef const Net *net = b.net
    cdef const Work *w = b.w
    cdef ptrdiff_t n_in = net.units[0], n_out = net.units[net.n_layers]
    cdef ptrdiff_t j, mb, r
    cdef const floating *swj = NULL
    cdef double loss = 0
    cdef Rows xj
    j = 0
    while j < s.mr:
        if cnnbp_team_cancelled(b.team) or (j > 0 and s.tid == 0 and b.signals
                                            and _signalled(b)):
            break
        mb, r = min(b.block, s.mr - j), s.r0 + j
        if swb != NULL:
            swj = swb + j
        xj = _rows_from(xb, j, n_in, swj)
        _forward(net, &xj, mb, w, <floating *> w.a, True, r, s.m, False, CNNBP_ROW_BATCH,
                 net.n_layers, NULL)
        loss += _output_loss(net, _target_rows(b.Y, b.y_u8, b.order, b.start + r, mb, n_out,
                                               <floating *> w.y + r * n_out),
                             swj, w, r, mb)
        _backward(net, &xj, w, r, mb, w_first, True, g, g0, NULL)
        j += mb
    return loss


cdef void _split_w1(Batch *b, const cnnbp_share *s, floating *g) noexcept nogil:
    """Share s's rows s.w1 of dW^1 (w.g0 > 0 or b.tiles: summed by no
    share in its backward pass) over the batch's m rows (every share's
    delta^1 is there); with b.w1_apart (SHARE_W1, a large batch), in blocks
    of b.block rows, share 0 looking for a signal between two and every
    share stopping once the batch is cancelled."""
    cdef const Net *net = b.net
    cdef ptrdiff_t n_in = net.units[0], n1 = net.units[1], j = 0, mb
    cdef ptrdiff_t block = b.block if b.w1_apart else s.m
    cdef Rows xj
    if s.w1[1] <= s.w1[0]:
        return
    memset(g + s.w1[0] * n1, 0, (s.w1[1] - s.w1[0]) * n1 * sizeof(floating))
    while j < s.m:
        if j > 0 and (cnnbp_team_cancelled(b.team) or (s.tid == 0 and b.signals
                                                       and _signalled(b))):
            return
        mb = min(block, s.m - j)
        xj = _rows_from(&b.rows, j, n_in, <const floating *> NULL)
        _weight_gradient(net, &xj, b.w, j, mb, 1, s.w1[0], s.w1[1], True, g, 0)
        j += mb


cdef ptrdiff_t _columns(const Net *net, const Work *w, const Batch *b, int parts,
                        ptrdiff_t m) noexcept nogil:
    """How many of the first layers are made by column tiles (each part its
    columns of W^l over all m rows: _columns_of_z) rather than by each part
    over its rows; 0 for none. A part's product packs all of its operand
    W^l (BLAS copies each operand into its blocked layout), so parts of rows
    pack W^l `parts` times, (n_{l-1}, n_l) each, and column tiles pack the
    batch's A^{l-1} `parts` times, (m, n_{l-1}) each: columns pay when
    n_l > m, and measurably from _COLUMN_PARTS parts on
    (docs/performance.md). Made so for hidden layers without dropout, batch
    normalisation or kept Z, from dense X, when the parts of rows each fit
    one block (b.block); the layers after the first that does not qualify
    go by rows. Backward, the same reckoning for delta^{l-1} = delta^l
    (W^l)^T and dW^l (parts of rows pack W^l and sum a dW^l each, column
    tiles pack delta^l, (m, n_l)) makes the same layers' delta by columns:
    see _columns_of_delta."""
    cdef ptrdiff_t l = 0
    if (parts < _COLUMN_PARTS or b.block <= 0 or b.X.x == NULL or w.z != NULL
            or (m + parts - 1) // parts > b.block):
        return 0
    while l + 1 < net.n_layers and net.units[l + 1] > m and not _drops(net, l + 1, True):
        l += 1
    return l


cdef inline ptrdiff_t _column(ptrdiff_t n, const cnnbp_share *s, int k) noexcept nogil:
    """The first of part k's columns of n (of W^l, or of X: its input
    features; k = s.parts: n, the end): equal shares, cut at multiples of 16
    values (cache lines)."""
    return n if k == s.parts else (n * k // s.parts) & ~(<ptrdiff_t> 15)


cdef bint _by_inputs(ptrdiff_t n_in, ptrdiff_t n1, int parts, ptrdiff_t m) noexcept nogil:
    """Whether a batch of m rows in `parts` parts makes Z^1 by blocks of
    input features (parts of fewer than INPUT_ROWS rows, blocks of at least
    INPUT_FEATURES features, a first layer no wider than the batch); the
    engine's buffers (w.kz) follow the same rule."""
    return (parts > 1 and m < _INPUT_ROWS * parts and n_in >= _INPUT_FEATURES * parts
            and n1 <= m)


def by_inputs(n_in, n1, parts, m):
    """_by_inputs, for tests and docs."""
    return _by_inputs(n_in, n1, parts, m)


cdef bint _inputs(const Net *net, const Work *w, const Batch *b, int parts,
                  ptrdiff_t m) noexcept nogil:
    """Whether batch b makes Z^1 by blocks of input features, each part its
    rows of W^1 over all m rows (_inputs_of_z), and then each part
    its rows of A^1 from the blocks' sum (_input_sums): a hidden first layer
    without dropout, batch normalisation or kept Z, from dense X, when the
    parts' rows each fit one block (b.block) and _by_inputs says so, for
    this batch and the slice's full ones (b.full_inputs: what the engine
    made w.kz for, so that the choice follows T and the shapes alone). The
    sum is added in the order of the parts, so the model is T's whichever
    threads ran it."""
    return (b.full_inputs and w.kz != NULL and parts <= w.n_kz and m <= w.kz_cap
            and b.X.x != NULL
            and b.block > 0 and (m + parts - 1) // parts <= b.block and w.z == NULL
            and net.n_layers > 1 and not _drops(net, 1, True) and not _normalised(net, 1)
            and _by_inputs(net.units[0], net.units[1], parts, m))


cdef void _inputs_of_z(Batch *b, const cnnbp_share *s, floating *dummy) noexcept nogil:
    """SHARE_INPUTS of share s: its block of Z^1, its input features
    (_column: equal shares cut at multiples of 16 values, so that no two
    parts write one cache line of a gathered row) over all the batch's m
    rows, into its (m, n_1) block of w.kz (_input_block); for shuffled
    rows, those features of each row gathered into w.x first (the parts'
    features side by side make the rows)."""
    cdef const Work *w = b.w
    cdef ptrdiff_t n_in = b.net.units[0], n1 = b.net.units[1], i
    cdef ptrdiff_t f0 = _column(n_in, s, s.tid), f1 = _column(n_in, s, s.tid + 1)
    cdef const floating *X = <const floating *> b.X.x
    cdef floating *x = <floating *> w.x
    cdef floating *block = <floating *> w.kz + s.tid * s.m * n1
    if f1 <= f0:  # no features (not with _by_inputs's blocks): adds nothing
        memset(block, 0, s.m * n1 * sizeof(floating))
        return
    if b.order != NULL:
        for i in range(s.m):
            memcpy(x + i * n_in + f0, X + b.order[b.start + i] * n_in + f0,
                   (f1 - f0) * sizeof(floating))
    _input_block(b.net, w, <const floating *> b.rows.x, s.m, f0, f1, block)


cdef void _columns_of_z(Batch *b, const cnnbp_share *s, floating *dummy) noexcept nogil:
    """SHARE_COLUMNS of share s at layer l = b.layer: A^l on its columns of
    W^l (_column), over all the batch's rows (_column_tile)."""
    cdef ptrdiff_t n = b.net.units[b.layer]
    cdef ptrdiff_t c0 = _column(n, s, s.tid), c1 = _column(n, s, s.tid + 1)
    if c1 > c0:
        _column_tile(b.net, b.w, <const floating *> b.rows.x, b.layer, s.m, c0, c1)


cdef void _columns_of_delta(Batch *b, const cnnbp_share *s, floating *dummy) noexcept nogil:
    """SHARE_BACK of share s at layer l = b.layer (2 <= l <= b.tiles), over
    all the batch's m rows, on its columns of n_{l-1} (_column): its rows of
    dW^l, columns of delta^{l-1} and of db^{l-1} (_column_tile_back), written
    into net.grads (part 0's sums: the other parts leave these at 0, and the
    reduction starts after W^{b.tiles})."""
    cdef ptrdiff_t n_in = b.net.units[b.layer - 1]
    cdef ptrdiff_t c0 = _column(n_in, s, s.tid), c1 = _column(n_in, s, s.tid + 1)
    if c1 > c0:
        _column_tile_back(b.net, b.w, b.layer, s.m, c0, c1, <floating *> b.net.grads)


cdef void _share_update(Batch *b, cnnbp_share *s, floating *g) noexcept nogil:
    """SHARE_UPDATE of share s: its rows s.w1 of dW^1 when split (unless
    SHARE_W1 computed them), the others' sums added on its parameter ranges
    s.u and, with b.opt, the gradient finished and those parameters
    updated; s.out[0] = the ranges' _penalty."""
    cdef const Net *net = b.net
    cdef const Work *w = b.w
    cdef int k
    if b.split_w1 and not b.w1_apart:
        _split_w1(b, s, g)
    team_reduce(b.team, s, net.w_off[b.tiles], <floating *> w.g2, g)  # after W^tiles
    s.out[0] = 0
    for k in range(0, 4, 2):
        if b.opt != NULL:
            s.out[0] += _finish_step(net, b.opt, <floating *> net.params, g, b.s,
                                     s.u[k], s.u[k + 1])


cdef void _share_rows(Batch *b, cnnbp_share *s, floating *dummy) noexcept nogil:
    """SHARE_GATHER, SHARE_START and SHARE_ON of share s: its rows of batch b.

    SHARE_START: gather its rows (dense rows of X into the work block, with
    an order) and weights; s.out[1] = their weight sum; the forward pass,
    the output delta (s.out[0] = the rows' weighted loss) and the backward
    pass over its rows into its own gradient sums (zeroed first; share 0:
    net.grads, share k > 0: buffer k - 1 of w.g2, from parameter w.g0 on;
    the parameters of a split dW^1 and of b.tiles are left out).
    A share of all m rows ends there, its sums being the gradient. With
    b.sums (batch normalisation, shared), the passes stop at each
    normalised layer, leaving the share's sums there (Stage), and go on in
    SHARE_ON from b.at once the caller has combined them. SHARE_GATHER
    gathers only (the rows of a batch whose first layers are column tiles).
    With b.inputs, its rows of A^1 come from the parts' blocks of Z^1
    (SHARE_INPUTS gathered the rows and made them): _input_sums."""
    cdef const Net *net = b.net
    cdef const Work *w = b.w
    cdef ptrdiff_t n_in = net.units[0], n_out = net.units[net.n_layers]
    cdef ptrdiff_t size = net.n_params - w.g0
    # the first layer whose dW^l the parts sum, and its backward sums [first, n_params)
    cdef ptrdiff_t w_first = b.tiles + 1 if b.tiles > 0 else 2 if b.split_w1 else 1
    cdef ptrdiff_t first = net.w_off[w_first - 1]
    cdef floating *g = <floating *> net.grads
    cdef ptrdiff_t g0 = 0
    cdef const floating *SW = <const floating *> b.SW
    cdef const floating *swb = NULL
    cdef Rows xb
    cdef Stage st
    # this share's rows of the batch
    if SW != NULL:
        swb = (<const floating *> w.sw if b.order != NULL else SW + b.start) + s.r0
    xb = _rows_from(&b.rows, s.r0, n_in, swb)
    if s.tid > 0:
        g, g0 = <floating *> w.g2 + (s.tid - 1) * size, w.g0
    st.sums = NULL if b.sums == NULL else <floating *> b.sums + s.tid * w.sums_stride
    st.at = 0
    st.done = 1 if b.inputs else b.columns
    st.bottom = max(1, b.tiles)
    if s.phase == SHARE_GATHER or (s.phase == SHARE_START and b.columns == 0):
        if b.order != NULL and b.X.x != NULL and not b.inputs:
            gather_rows(s.mr, n_in, <const floating *> b.X.x, b.order + b.start + s.r0,
                        <floating *> w.x + s.r0 * n_in)
        if SW != NULL and b.order != NULL:
            gather_rows(s.mr, 1, SW, b.order + b.start + s.r0, <floating *> w.sw + s.r0)
        if s.phase == SHARE_GATHER:
            return
    if s.phase == SHARE_START:
        s.out[1] = s.mr if swb == NULL else _weight_sum(swb, s.mr)
        if b.inputs:
            _input_sums(net, w, <const floating *> w.kz, s.parts, s.m, s.r0, s.mr)
        if b.block > 0 and s.mr > b.block:
            memset(g + (first - g0), 0, (net.n_params - first) * sizeof(floating))
            s.out[0] = _share_blocks(b, s, &xb, swb, g, g0, w_first)
            return
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
    _backward(net, &xb, w, s.r0, s.mr, w_first, True, g, g0, &st)
    if st.at != 0 and s.tid == 0:
        b.stop, b.stop_back = st.at, True


cdef void _share(Batch *b, cnnbp_share *s, floating *dummy) noexcept nogil:
    """The mathematics of share s of batch b in the team's phase s.phase."""
    cdef floating *g = <floating *> b.net.grads
    if s.phase == SHARE_UPDATE:
        _share_update(b, s, g)
    elif s.phase == SHARE_W1:
        _split_w1(b, s, g)
    elif s.phase == SHARE_COLUMNS:
        _columns_of_z(b, s, g)
    elif s.phase == SHARE_BACK:
        _columns_of_delta(b, s, g)
    elif s.phase == SHARE_INPUTS:
        _inputs_of_z(b, s, g)
    else:
        _share_rows(b, s, g)


cdef void _share_f32(void *b, cnnbp_share *s) noexcept nogil:
    _share(<Batch *> b, s, <float *> NULL)


cdef void _share_f64(void *b, cnnbp_share *s) noexcept nogil:
    _share(<Batch *> b, s, <double *> NULL)


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


cdef double _batch(const Net *net, Optim *opt, const Work *w, Batch *b,
                   cnnbp_team *team, ptrdiff_t start, ptrdiff_t m,
                   const Optim *split_update, floating *p, double *weight) noexcept nogil:
    """Train on the m rows of batch b (b.rows, from row `start`); returns
    its loss x m. The team's threads run the plan's parts of it
    (csrc/team.c) in two hand-overs of _share: rows forward and back, then
    split dW^1, the reduction and the update by parameter ranges
    (`split_update`: the optimizer, when the update may be split); a
    batch-normalised network adds one at every normalised layer forward and
    one back, after which this thread combines the parts' sums (_combine);
    first layers wider than the batch, made by column tiles (_columns), add
    one before the rows' to gather them and one for each such layer, and
    one after the rows' for each such layer but the first and the output
    (_columns_of_delta); a Z^1 made by blocks of input features (_inputs)
    adds one before the rows'.
    The parameters are those of the one-thread pass to round-off (sums in
    parts; OpenBLAS rounds an ulp differently for other shapes). With no
    `opt` (a block of L-BFGS's full batch): no update; returns the block's
    weighted data loss sum_i sw_i C_i and leaves its gradient's sums in
    net.grads. Either way *weight = the batch's weight sum; NaN when a
    signal dropped the batch."""
    cdef floating *g = <floating *> net.grads
    cdef cnnbp_share_fn share = _share_f32 if floating is float else _share_f64
    cdef double data_loss = 0, s = 0, penalty = 0
    cdef int k
    cdef ptrdiff_t l
    cdef int parts = cnnbp_team_split(team, m)
    b.start, b.opt = start, NULL
    b.sums = w.sums if parts > 1 else NULL
    b.stop = 0
    b.columns = _columns(net, w, b, parts, m)
    # their deltas too, but the output layer's (narrow: the rows' pass takes
    # it back at no cost worth a hand-over)
    b.tiles = min(b.columns + 1, net.n_layers - 1) if b.columns > 0 else 0
    b.split_w1 = parts > 1 and (w.g0 > 0 or b.tiles > 0)
    b.inputs = b.columns == 0 and _inputs(net, w, b, parts, m)
    if b.columns > 0:  # the first layers by column tiles, over every row of the batch
        if b.order != NULL:
            cnnbp_team_run(team, parts, SHARE_GATHER, share, b)
        for l in range(1, b.columns + 1):
            b.layer = l
            cnnbp_team_run(team, parts, SHARE_COLUMNS, share, b)
    elif b.inputs:  # Z^1 by blocks of input features, over every row of the batch
        cnnbp_team_run(team, parts, SHARE_INPUTS, share, b)
    cnnbp_team_run(team, parts, SHARE_START, share, b)
    if cnnbp_team_cancelled(team):
        return NAN  # Ctrl-C within the batch: dropped
    while b.stop != 0:  # the parts stopped at a normalised layer
        _combine(net, w, b, team, parts, g)
        b.at, b.back, b.stop = b.stop, b.stop_back, 0
        cnnbp_team_run(team, parts, SHARE_ON, share, b)
    for l in range(b.tiles, 1, -1):  # their deltas by column tiles, back to delta^1
        b.layer = l
        cnnbp_team_run(team, parts, SHARE_BACK, share, b)
    _spend_masks(net, m)
    for k in range(parts):
        data_loss += team.share[k].out[0]
        s += team.share[k].out[1]
    if parts > 1:  # the others' sums added, and the update split too when it can be
        b.s, b.opt = s, split_update
        b.w1_apart = b.split_w1 and b.block > 0 and m > b.block
        if b.w1_apart:  # a large batch's dW^1 first, where Ctrl-C may drop the batch
            cnnbp_team_run(team, parts, SHARE_W1, share, b)
            if cnnbp_team_cancelled(team):
                return NAN
        if split_update != NULL:
            _advance(opt)
        cnnbp_team_run(team, parts, SHARE_UPDATE, share, b)
    weight[0] = s
    if opt == NULL:
        return data_loss
    if parts > 1 and split_update != NULL:
        for k in range(parts):
            penalty += team.share[k].out[0]
        return (data_loss / s + penalty / s) * m
    # one share (its sums are the gradient), or clipping / max_norm
    return _finish_update(net, opt, p, g, data_loss, s) * m


cdef ptrdiff_t _signal_block(const Net *net, ptrdiff_t work) noexcept nogil:
    """Rows per block of a large batch (Batch.block): about `work`
    multiply-adds of its forward pass, at least _MIN_SIGNAL_BLOCK; 0 for a
    batch-normalised network, whose statistics need the batch's rows at once."""
    cdef ptrdiff_t l
    for l in range(1, net.n_layers):
        if _normalised(net, l):
            return 0
    return max(_MIN_SIGNAL_BLOCK, work // net.n_params)


cdef int _raise(PyObject *exc) except -1:
    """Raise exc, the exception _signalled kept (its reference given up)."""
    e = <object> exc
    Py_DECREF(e)
    raise e


cdef void _epoch(const Net *net, Optim *opt, const Work *w, const Rows *X,
                 const void *Y, bint y_u8, const floating *SW,
                 const ptrdiff_t *order, ptrdiff_t n, ptrdiff_t batch,
                 Slice *sl) noexcept nogil:
    """A pass over n rows in mini-batches of `batch`, rows taken in `order`
    (NULL: in storage order), from row sl.start, adding sum_batches
    loss_b * m_b to sl.total. Stops early, after a batch that ends sl.budget
    seconds or more after the start, leaving in sl.start the row to go on from (n when the pass
    is complete), in sl.used the threads it had (1 + its helpers; 0, and a
    NaN total: no memory for its records), and in sl.shared and sl.cpu the
    seconds its shared hand-overs took and the CPU seconds its threads spent
    in them (cnnbp_lockstep_learn). With sl.parts > 1 (the buffers w.n_g2
    hold their sums), each batch is split into the plan's parts (_batch),
    run by this thread and the helpers it can take (as many as are free, up
    to sl.helpers and this caller's share of T), each thread taking several
    parts in turn when fewer are free: the same sums whatever ran them."""
    cdef floating *p = <floating *> net.params
    cdef ptrdiff_t start = sl.start, m
    cdef double total = sl.total, loss, weight
    cdef cnnbp_team team
    cdef Batch b
    cdef int plan = min(sl.parts, <int> w.n_g2 + 1) if w.g2 != NULL else 1
    cdef const Optim *split_update = NULL
    cdef double deadline = _now() + sl.budget
    if opt.clip_norm == 0 and opt.max_norm == 0:  # these need the whole gradient
        split_update = opt
    sl.used = cnnbp_team_begin(&team, plan, sl.helpers, net.units[0], net.units[1],
                               net.n_params, w.g0, X.x == NULL)
    if sl.used == 0:
        cnnbp_team_end(&team)
        sl.total, sl.shared, sl.cpu = NAN, 0, 0
        return
    b.net, b.w, b.team, b.X, b.Y, b.y_u8 = net, w, &team, X, Y, y_u8
    b.SW, b.order = SW, order
    b.block, b.signals, b.exc, b.w1_apart = sl.block, sl.signals, &sl.exc, False
    b.columns = b.tiles = b.inputs = 0
    b.full_inputs = _by_inputs(net.units[0], net.units[1], plan, min(batch, n))
    while start < n:
        if start > sl.start and _now() >= deadline:
            break  # the caller's time slice is up (it may check for Ctrl-C)
        m = min(batch, n - start)
        b.rows = X[0]
        if order == NULL:
            b.rows = _block_rows(X, start, net.units[0], p)
        elif X.x != NULL:
            b.rows.x = w.x
        else:
            b.rows.rows = order + start
        loss = _batch(net, opt, w, &b, &team, start, m, split_update, p, &weight)
        if cnnbp_team_cancelled(&team):
            break  # the batch was dropped: the caller raises b.exc
        total += loss
        start += m
    cnnbp_team_end(&team)
    sl.start, sl.total, sl.shared, sl.cpu = start, total, team.shared, team.cpu


cdef double _full_gradient(const Net *net, const Work *w, const Rows *X, const void *Y,
                           bint y_u8, const floating *SW, ptrdiff_t n, floating *acc,
                           Slice *sl, double *weight) noexcept nogil:
    """The weighted data loss sum_i sw_i C_i over all n rows and its
    gradient's sums in net.grads (the full-batch objective of L-BFGS before
    _finish), in blocks of w.cap rows, each a batch of the plan's parts
    (sl.parts) on this thread and up to sl.helpers helpers, as _epoch's
    (_batch, without an update); the blocks' sums added in order in `acc`
    (n_params values; used when n > w.cap). The rows' weight sum s in
    *weight; sl.used, sl.shared, sl.cpu and sl.exc as _epoch leaves them
    (NaN: a signal dropped a block, or no memory for the team's records)."""
    cdef floating *p = <floating *> net.params
    cdef floating *g = <floating *> net.grads
    cdef ptrdiff_t start = 0, m
    cdef double data_loss = 0, s
    cdef cnnbp_team team
    cdef Batch b
    cdef int plan = min(sl.parts, <int> w.n_g2 + 1) if w.g2 != NULL else 1
    weight[0] = 0
    sl.used = cnnbp_team_begin(&team, plan, sl.helpers, net.units[0], net.units[1],
                               net.n_params, w.g0, X.x == NULL)
    if sl.used == 0:
        cnnbp_team_end(&team)
        sl.shared, sl.cpu = 0, 0
        return NAN
    b.net, b.w, b.team, b.X, b.Y, b.y_u8 = net, w, &team, X, Y, y_u8
    b.SW, b.order = SW, NULL
    b.block, b.signals, b.exc, b.w1_apart = sl.block, sl.signals, &sl.exc, False
    b.columns = b.tiles = b.inputs = 0
    b.full_inputs = _by_inputs(net.units[0], net.units[1], plan, min(w.cap, n))
    while start < n:
        m = min(w.cap, n - start)
        b.rows = _block_rows(X, start, net.units[0], p)
        data_loss += _batch(net, NULL, w, &b, &team, start, m, NULL, p, &s)
        if cnnbp_team_cancelled(&team):
            data_loss = NAN
            break
        weight[0] += s
        if start > 0:
            add(net.n_params, g, acc)
        elif m < n:
            memcpy(acc, g, net.n_params * sizeof(floating))
        start += m
    if start > w.cap and start == n:
        memcpy(g, acc, net.n_params * sizeof(floating))
    cnnbp_team_end(&team)
    sl.shared, sl.cpu = team.shared, team.cpu
    return data_loss


cdef ptrdiff_t _largest_weights(const Net *net, ptrdiff_t itemsize) noexcept nogil:
    """Bytes of the network's largest W^l."""
    cdef ptrdiff_t l, largest = 0
    for l in range(1, net.n_layers + 1):
        largest = max(largest, net.units[l - 1] * net.units[l] * itemsize)
    return largest


cdef bint _predict(const Net *net, const Rows *X, ptrdiff_t start, ptrdiff_t n,
                   floating *out, floating *a, ptrdiff_t cap, ptrdiff_t layer,
                   bint check) noexcept nogil:
    """Activations A^layer of rows start .. n - 1 into those rows of `out`
    (n, n_layer), cap rows at a time, in the caller's blocks `a` (cap rows
    of each, then sum n_l values for w.part; so concurrent predictions never
    share memory); layer L gives
    the outputs. With `check`, each block's rows are checked for inf and NaN
    (through Z^1, by _forward): False at the first that has any (out is then
    incomplete), else True. A single row of a network in SHARED_ROW_BYTES is
    shared with a helper thread when one is free (cnnbp_row_mode, _forward)."""
    cdef const floating *p = <const floating *> net.params
    cdef ptrdiff_t L = net.n_layers
    cdef ptrdiff_t n_in = net.units[0], n_out = net.units[layer]
    cdef ptrdiff_t m
    cdef floating *block = a + cap * net.blk_off[layer]
    cdef bint finite = True
    cdef Rows xb
    cdef Work w
    memset(&w, 0, sizeof(Work))
    cdef int row = CNNBP_ROW_BATCH
    if n - start == 1 and X.x != NULL:
        row = cnnbp_row_mode(_largest_weights(net, sizeof(floating)), _SHARED_ROW_MIN,
                             _SHARED_ROW_MAX, &w.helper)
    w.cap = cap
    w.part = a + cap * _width(net)
    w.split = cnnbp_split_inputs
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
