"""How many cores a training epoch uses.

With two cores free, the engine shares each batch with a helper thread
(``Engine.run_epoch(n_threads=2)``: half the rows forward and back, their
gradient summed apart, half of the update each) while BLAS keeps to one thread per
caller, so that the two threads' matrix products do not compete with BLAS's
own threads. The model is the same either way, to round-off.
"""
import contextlib
import os
import threading

from threadpoolctl import ThreadpoolController

_controller = None  # the process's BLAS libraries (threadpoolctl), found once
# Held by the fit that set BLAS to one thread: only it may set it back, so
# that fits running side by side cannot restore BLAS under one another.
_blas_owner = threading.Lock()

# Sharing pays when the fit is longer than changing BLAS's thread count
# costs (~4 ms, paid by the next multi-threaded product after the fit):
# rows x parameters x epochs >= 2^27 is ~15 ms of training.
MIN_SHARED_WORK = 1 << 27


def available_cores():
    """How many cores this process may run on (its affinity mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def training_threads(work):
    """Context for the epochs of a fit; yields `Engine.run_epoch`'s ``n_threads``.

    `work` is rows x parameters x (at most) epochs of the fit; below
    MIN_SHARED_WORK (a partial_fit of a small chunk, a tiny network) the
    answer is 1.

    2 when the process may run on two or more cores, no other fit holds the
    helper's BLAS setting, and no BLAS library is limited to one thread
    (``threadpoolctl.threadpool_limits``, as joblib's workers and users
    running several fits in threads do); BLAS then uses one thread per
    caller until the context ends (set once: OpenBLAS takes
    ~4 ms to change its thread count, the time of two digits epochs).
    Otherwise 1, and BLAS is left alone.
    """
    global _controller
    if work < MIN_SHARED_WORK or available_cores() < 2 or not _blas_owner.acquire(blocking=False):
        yield 1
        return
    try:
        if _controller is None:
            _controller = ThreadpoolController()
        blas = _controller.select(user_api="blas")
        if not blas.lib_controllers or min(
                lib.num_threads for lib in blas.lib_controllers) < 2:
            yield 1
            return
        with blas.limit(limits=1):
            yield 2
    finally:
        _blas_owner.release()
