# cython: language_level=3
"""Running the plan (_plan.pyx): what the engine calls to have the passes
over many rows run on a team of threads. The only Cython that calls the
parallel C layer (csrc/parallel.h)."""
from libc.stddef cimport ptrdiff_t
from cpython.ref cimport PyObject
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from cython cimport floating

from ._kernels cimport cnnbp_lockstep
from ._passes cimport Net, Optim, Rows, Work


cdef struct Slice:
    # One pass on a team of threads: a slice of an epoch (_epoch) or the
    # gradient's full batch (_full_gradient), and what it did.
    ptrdiff_t start              # in: the row to start at; out: to go on from
    double total                 # in: the epoch's total so far; out: with this slice's
    double budget                # in: stop after the batch that ends this many
                                 # seconds after the start (_now)
    int parts                    # in: the plan's parts of a batch (cnnbp_plan_parts)
    int helpers                  # in: helpers to run them with, at most
    int used                     # out: threads it had (1 + helpers; 0: no memory)
    double shared                # out: seconds of its shared hand-overs
    double cpu                   # out: CPU seconds its threads spent in them
    ptrdiff_t block              # in: rows per block of a large batch (_signal_block)
    bint signals                 # in: look for signals between those blocks (the
                                 # caller is Python's main thread)
    PyObject *exc                # out: the exception a signal's handler raised
                                 # within a batch (a reference), or NULL


cdef class BackOff:
    # The helpers a fit's slices take on a busy machine: learnt from each
    # pass's threads (cnnbp_lockstep, csrc/team.c), one per engine.
    cdef cnnbp_lockstep lockstep
    cdef Slice slice(self, const Net *net, int parts, double budget, ptrdiff_t work)
    cdef int learn(self, Slice *sl) except -1


cdef int plan(int n_threads, ptrdiff_t rows) except -1
cdef bint _by_inputs(ptrdiff_t n_in, ptrdiff_t n1, int parts, ptrdiff_t m) noexcept nogil

cdef void _epoch(const Net *net, Optim *opt, const Work *w, const Rows *X,
                 const void *Y, bint y_u8, const floating *SW,
                 const ptrdiff_t *order, ptrdiff_t n, ptrdiff_t batch,
                 Slice *sl) noexcept nogil
cdef double _full_gradient(const Net *net, const Work *w, const Rows *X, const void *Y,
                           bint y_u8, const floating *SW, ptrdiff_t n, floating *acc,
                           Slice *sl, double *weight) noexcept nogil
cdef bint _predict(const Net *net, const Rows *X, ptrdiff_t start, ptrdiff_t n,
                   floating *out, floating *a, ptrdiff_t cap, ptrdiff_t layer,
                   bint check) noexcept nogil

# The process-wide state this extension alone holds (csrc/pool.c's helper
# threads, the one-row sharing range), for cnn_bp._hooks, the tests' wrappers.
cdef int take_helpers(int want, int *ids) noexcept nogil
cdef void give_helpers(int n, const int *ids) noexcept nogil
cdef unsigned finished_helper_jobs() noexcept nogil
cdef (ptrdiff_t, ptrdiff_t) shared_row_range(ptrdiff_t lo, ptrdiff_t hi, bint set) noexcept


cdef inline double _now() noexcept nogil:
    """CLOCK_MONOTONIC in seconds (time.monotonic's clock), callable without the GIL."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec
