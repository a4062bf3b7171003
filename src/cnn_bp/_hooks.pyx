# cython: language_level=3
"""Test-only hooks: thin wrappers so tests reach the C kernels, the helper
threads and the fork gate directly. An extension of its own, not the engine:
the process-wide state it touches is the plan's and the passes' (cimported
from _plan.pxd and _passes.pxd), the kernels are stateless C.
"""
from cython cimport floating
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.unistd cimport usleep

from ._plan cimport finished_helper_jobs, give_helpers, shared_row_range, take_helpers
from ._passes cimport blas_call_begin, blas_call_end
from ._kernels cimport (
    CNNBP_MAX_HELPERS, CNNBP_UNKNOWN_CODE, adam_update, bias_activation, cnnbp_loss_activation,
    delta_derivative, output_loss, sgd_update,
)


def shared_row_bytes(lo=None, hi=None):
    """The range of SHARED_ROW_BYTES in force, (lo, hi); with arguments,
    set it first (tests and benchmarks compare the shared and the unshared
    one-row paths; lo > hi turns sharing off)."""
    if lo is None:
        return shared_row_range(0, 0, False)
    return shared_row_range(lo, hi, True)


def py_take_helpers(int want):
    """Helpers a caller would take now (cnnbp_helpers_acquire), for tests;
    give them back with py_give_helpers."""
    cdef int ids[CNNBP_MAX_HELPERS]
    cdef int got = take_helpers(min(want, CNNBP_MAX_HELPERS), ids)
    return [ids[k] for k in range(got)]


def py_give_helpers(list ids):
    """Give back what py_take_helpers returned (once)."""
    cdef int c_ids[CNNBP_MAX_HELPERS]
    if len(ids) > CNNBP_MAX_HELPERS or not all(0 <= i < CNNBP_MAX_HELPERS for i in ids):
        raise ValueError(f"not helper ids from py_take_helpers: {ids}")
    for k, i in enumerate(ids):
        c_ids[k] = i
    give_helpers(len(ids), c_ids)


def helper_jobs():
    """Jobs the helper threads have finished in this process (tests: whether
    a pass was shared)."""
    return finished_helper_jobs()


def py_hold_blas_gate(double seconds, held):
    """Hold the fork gate as a call of the private BLAS does
    (csrc/thread_blas.h), for `seconds` after calling held() in it (tests:
    a fork waits for the calls under way)."""
    cdef timespec now
    cdef double end
    with nogil:
        blas_call_begin()
    try:
        held()
    finally:
        with nogil:
            clock_gettime(CLOCK_MONOTONIC, &now)
            end = now.tv_sec + now.tv_nsec * 1e-9 + seconds
            while now.tv_sec + now.tv_nsec * 1e-9 < end:
                usleep(1000)
                clock_gettime(CLOCK_MONOTONIC, &now)
            blas_call_end()


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
