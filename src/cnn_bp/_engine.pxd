# cython: language_level=3
from libc.stddef cimport ptrdiff_t

from ._passes cimport Net, Optim, Rows, Work
from ._plan cimport BackOff, Slice


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
    cdef object _kz              # the array backing work.kz, or None
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
    cdef BackOff _backoff        # helpers the slices take on a busy machine
    cdef _claim(self)
    cdef _release(self)
    cdef _idle(self)
    cdef _enter_blas(self, bint single, int parts)
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
