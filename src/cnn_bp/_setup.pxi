# The engine's tuning constants and the process-wide state it keeps (the
# private BLAS is _passes.pyx's). Included by _engine.pyx.

cnnbp_get_num_threads()  # OMP_NUM_THREADS is read now, as OpenMP reads it at load


# Batch normalisation's constants (_passes.pyx's), as the parts' sums are
# combined here.
cdef double _BN_EPSILON = BN_EPSILON
cdef double _BN_MOMENTUM = BN_MOMENTUM

# BLAS takes 32-bit integer sizes.
cdef ptrdiff_t BLAS_INT_MAX = 2147483647


# Rows per block when predicting: as many as PREDICT_BYTES hold of input
# rows and their activations (8 MiB stay in the L3 cache, so the check of a
# block's Z^1 for NaN and inf reads it there, and the next layer's product
# too), and at least PREDICT_MIN_ROWS for efficient products; the work
# memory stays bounded whatever the number of rows.
PREDICT_BYTES = 8 << 20
PREDICT_MIN_ROWS = 256
# Multiply-adds between two looks for Ctrl-C (a few milliseconds of work):
# a prediction returns to Python after about this many, and a large
# training batch is taken forward and back in blocks of about this many rows
# x parameters, the caller looking for a pending signal between two.
SIGNAL_WORK = 1 << 26


# Rows per block of the full-batch loss and gradient (L-BFGS): large enough
# for efficient products, small enough to bound the work memory.
FULL_BATCH_ROWS = 4096

# A one-row prediction is shared with the helper thread (half of each
# layer's inputs each, see _forward) when the largest W^l of its network
# takes this many bytes (from, to): a row's product streams the weights, so
# bytes, not weights, say what sharing saves. Below the range a row is too
# short to share; above it two cores stream memory no faster than OpenBLAS's
# two threads (figures: docs/performance.md, "Figures behind the code").
SHARED_ROW_BYTES = (1 << 19, 1 << 23)
cdef ptrdiff_t _SHARED_ROW_MIN = SHARED_ROW_BYTES[0]
cdef ptrdiff_t _SHARED_ROW_MAX = SHARED_ROW_BYTES[1]

# How _forward runs a one-row prediction's products (cnnbp_row_mode):
# BLAS on the block (CNNBP_ROW_BATCH); or, for one dense row of a network in
# SHARED_ROW_BYTES, the layers of at least SHARED_LAYER_WEIGHTS weights
# summed row by row of W^l (row_product), by this thread alone (ROW_ALONE:
# the helper is busy or asleep) or with a helper (ROW_SHARED). ROW_ALONE
# keeps off BLAS too: OpenBLAS would wake its worker for such a row, which
# then spins for ~0.1 s on the core the helper needs for the rows that follow.

# The plan's parts of a training batch have at least this many rows
# (cnnbp_plan_parts, csrc/team.c; the cost of small parts is measured in
# benchmarks/bench_scaling.py, docs/performance.md).
MIN_PART_ROWS = CNNBP_MIN_PART_ROWS

# A batch of this many parts or more makes its first layers wider than the
# batch by column tiles (_columns); with fewer, the hand-overs that takes cost
# about what it saves (docs/performance.md, "Figures behind the code").
cdef int _COLUMN_PARTS = 4

# A large batch's rows go forward and back in blocks of at least this many
# rows, between which the main thread looks for signals (_signal_block).
cdef ptrdiff_t _MIN_SIGNAL_BLOCK = 64

# A shared batch's threads each sum the gradient of their own rows, each
# helper in a buffer of its own, so that a batch takes two hand-overs
# whatever the depth. dW^1 larger than this is the exception: summing it in
# every buffer would add its size per thread to a fit's memory, so it is
# split by rows after the backward pass instead (every part's delta^1 is
# there once the first hand-over ends).
SHARED_W1_BYTES = 1 << 18


# Engines a training pass runs on now. A forked child has none of its
# parent's threads, so their passes do not run there: the child frees the
# buffers they held (os.register_at_fork), and may train those engines.
_passes_running = weakref.WeakSet()


def _free_in_child():
    for engine in list(_passes_running):
        (<Engine> engine)._busy = False
    _passes_running.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_free_in_child)


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


# The state above and the parallel layer's, for other extensions (_engine.pxd).
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
