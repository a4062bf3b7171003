"""How many threads a training epoch uses, and the BLAS they call.

A fit shares each batch among T threads, itself and T - 1 helper threads
(csrc/pool.c; ``Engine.run_epoch(n_threads=T)``: the batch split into the
plan's T parts of rows, each forward and back, their gradient summed apart,
each its share of the update; L-BFGS's full batch likewise,
``Engine.loss_gradient(n_threads=T)``). T is the
number of cores the process may run on, or OMP_NUM_THREADS (read when cnn_bp
loads), or what
``threadpoolctl.threadpool_limits`` sets: cnn_bp registers its pool with
threadpoolctl (user_api "cnn_bp"), so ``threadpool_limits(limits=k)`` sets T
to k and ``threadpool_info()`` lists it, as scikit-learn's OpenMP code
behaves. A fit under ``threadpool_limits(1, user_api="blas")`` (joblib's
workers, users fitting in several threads) keeps to one thread too.

A 200-row batch's products are too small for BLAS's own threads to pay, so
each thread runs its products on itself alone, through a private instance
of OpenBLAS (the scipy-openblas32 package's library, loaded without
exporting its symbols) kept at one thread. The process's BLAS, which numpy
and scipy call, and its thread count, a setting of the whole process, are
never changed.

The alternatives were measured and not taken (the figures are on the
documentation's performance page, docs/performance.md): OpenBLAS's
``openblas_set_num_threads_local``, in scipy's pthreads build, changed the
count of every thread, not only the caller's; BLIS (the blis package) ran
slower per thread than OpenBLAS on an AVX-512 machine. The model is the same
for every T, to round-off.
"""
import contextlib
import ctypes
import importlib.util
import os
import sys

from . import _passes, _plan

# Sharing pays when the fit is longer than waking the helper and handing
# work over costs: rows x parameters x epochs >= 2^27 (figures:
# docs/performance.md, "Figures behind the code").
MIN_SHARED_WORK = 1 << 27

_SYMBOLS = ("sgemm", "dgemm", "sdot", "ddot", "sasum", "dasum")
_thread_blas = None  # the loaded library (kept alive), once loaded


def available_cores():
    """How many cores this process may run on (its affinity mask), as the
    pool counts them (the plan's ``available_cores``: one count)."""
    return _plan.available_cores()


def _library_path():
    """The scipy-openblas32 library's file, found without importing the
    package: its import loads the library with global symbols, which
    libraries loaded later (scipy's own) could then bind to."""
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib_dir = os.path.join(spec.submodule_search_locations[0], "lib")
    suffix = ".dll" if sys.platform == "win32" else ""
    names = sorted(f for f in os.listdir(lib_dir)
                   if f.startswith(("libscipy_openblas", "scipy_openblas"))
                   and f.endswith(suffix) and not f.endswith((".a", ".lib")))
    return os.path.join(lib_dir, names[0]) if names else None


def thread_blas():
    """Addresses of the private one-thread OpenBLAS's sgemm, dgemm, sdot,
    ddot, sasum and dasum (Fortran conventions), loaded on the first call
    with its symbols local to it; None when it cannot be loaded (then
    batches are not shared)."""
    global _thread_blas
    if _thread_blas is None:
        path = _library_path()
        if path is None:
            return None
        try:
            lib = ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_LOCAL", 0))
            lib.scipy_openblas_set_num_threads(1)
            functions = {name: getattr(lib, f"scipy_{name}_") for name in _SYMBOLS}
        except (OSError, AttributeError):
            return None
        _thread_blas = (lib, functions)
    return {name: ctypes.cast(fn, ctypes.c_void_p).value
            for name, fn in _thread_blas[1].items()}


def keep_thread_blas_single():
    """Set the private OpenBLAS back to one thread if threadpoolctl, which
    lists it like any BLAS, changed it (threadpool_limits(k) applies to every
    BLAS it finds; it restores 1 on leaving, this covers the time between)."""
    if _thread_blas is not None:
        lib = _thread_blas[0]
        if lib.scipy_openblas_get_num_threads() != 1:
            lib.scipy_openblas_set_num_threads(1)


_process_blas = None  # threadpoolctl's controllers of the process's BLAS, found once


def process_blas_threads():
    """The thread count of each BLAS of the process (threadpoolctl), cnn_bp's
    private one left out. The libraries are found once (a scan of the loaded
    libraries is slow next to an epoch); their counts are read on each call."""
    global _process_blas
    if _process_blas is None:
        from threadpoolctl import ThreadpoolController

        ours = None if _thread_blas is None else os.path.realpath(_thread_blas[0]._name)
        _process_blas = [lib for lib in ThreadpoolController().select(user_api="blas")
                         .lib_controllers if os.path.realpath(lib.filepath) != ours]
    return [lib.num_threads for lib in _process_blas]


def register_with_threadpoolctl():
    """Let threadpoolctl list and limit the helper pool: a controller found
    in the plan's extension module (``_plan*``), which holds the pool, by
    its symbol."""
    from threadpoolctl import LibController, register

    class PoolController(LibController):
        user_api = "cnn_bp"
        internal_api = "cnn_bp"
        filename_prefixes = ("_plan",)
        check_symbols = ("cnnbp_get_num_threads",)

        def get_num_threads(self):
            return self.dynlib.cnnbp_get_num_threads()

        def set_num_threads(self, num_threads):
            self.dynlib.cnnbp_set_num_threads(num_threads)

        def get_version(self):
            from ._version import __version__

            return __version__

    register(PoolController)


@contextlib.contextmanager
def training_threads(work):
    """Context for the epochs of a fit; yields T, `Engine.run_epoch`'s and
    `Engine.loss_gradient`'s ``n_threads``: the one place T is decided.

    `work` is rows x parameters x (at most) epochs of the fit; below
    MIN_SHARED_WORK (a partial_fit of a small chunk, a tiny network) the
    answer is 1. Otherwise T (the pool's thread count, see the module
    docstring), or 1 when the private BLAS could not be loaded or the
    process's BLAS is limited to one thread. Nothing is changed for it.
    """
    threads = _plan.num_threads()
    if (threads < 2 or work < MIN_SHARED_WORK or _thread_blas is None
            or min(process_blas_threads(), default=2) < 2):
        yield 1
        return
    keep_thread_blas_single()
    yield threads


# The process-wide set-up, once, when cnn_bp loads: the engine's products on
# the private BLAS, and the pool listed by threadpoolctl.
_passes.set_thread_blas(thread_blas())
register_with_threadpoolctl()
