# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The engine's checks: nothing reaches the nogil core unverified (codes,
arrays, CSR structure, row orders; TrainingData, a fit's rows checked once),
and the small array helpers the engine and the estimators share. Part of the
engine's layer (cimported by _engine.pyx through _checks.pxd), an extension
of its own so that each module stays one a reader can hold.
"""
import os

import numpy as np
import scipy.sparse as sp

from ._registry import solver_code

cimport numpy as cnp
from libc.math cimport isnan
from libc.stddef cimport ptrdiff_t
from libc.string cimport memset

from ._kernels cimport (
    CNNBP_UNKNOWN_CODE, registry_codes,
    cnnbp_all_finite_f32, cnnbp_all_finite_f64,
    cnnbp_row_argmax_f32, cnnbp_row_argmax_f64, cnnbp_bias_activation_f64,
    cnnbp_delta_derivative_f64, cnnbp_output_loss_f64, cnnbp_optimizer_step_f64,
    cnnbp_derivative_needs_z,
)
from ._passes cimport Optim, Rows

cnp.import_array()

# BLAS takes 32-bit integer sizes.
cdef ptrdiff_t BLAS_INT_MAX = 2147483647


def activation_codes():
    """The activation enum as compiled (csrc/registry.h), name -> code (for tests)."""
    return registry_codes()["activation"]


def all_finite(X):
    """Whether the float32 or float64 ndarray X holds no inf and no NaN.

    One vectorised pass over C-contiguous X (other layouts: numpy's
    isfinite); unlike ``isfinite(X.sum())`` it is exact when the sum of
    finite values overflows.

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
    per-row loop set-up, which dominates for few columns (other dtypes
    and layouts: numpy's argmax; figures: docs/performance.md, "Figures behind the code").

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
    """The code of stochastic solver `solver`, once the optimizer's step
    (csrc/optimizers.c) is seen to have a case for it (run on an empty
    range: its default returns CNNBP_UNKNOWN_CODE); ValueError otherwise."""
    cdef Optim opt
    memset(&opt, 0, sizeof(Optim))
    opt.kind = solver_code(solver)
    if cnnbp_optimizer_step_f64(&opt, 0, 0, 0, NULL, NULL) == CNNBP_UNKNOWN_CODE:
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


cdef enum:
    ALIGNMENT = 64  # bytes: a cache line, and a whole number of AVX-512 vectors


def aligned_empty(shape, dtype, zero=False):
    """A C-contiguous array of `shape` and `dtype` whose data starts on an
    ALIGNMENT-byte boundary (zeroed with `zero`).

    numpy aligns large allocations to 16 bytes only, so every 32-byte
    vector load of a row of W^l could straddle two cache lines, and such
    split loads slow a one-row product measurably (figures:
    docs/performance.md, "Figures behind the code").
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
    _set_rows' attribute lookups are a tenth of a one-row prediction."""
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


def _check_slice(Py_ssize_t n, Py_ssize_t batch_size, int n_threads, Py_ssize_t start):
    """Raise unless a slice of an epoch of n rows may start at `start`
    with batches of batch_size >= 1 rows on n_threads >= 1 threads."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    if not 0 <= start <= n:
        raise ValueError(f"start must be in [0, {n}], got {start}")


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


def _engine_arguments(layer_units, hidden_activation, int loss, dtype,
                      double negative_slope, double huber_delta):
    """Engine's arguments checked: (units, one activation code per hidden
    layer, dtype); ValueError or TypeError naming what is wrong."""
    units = tuple(int(u) for u in layer_units)
    if len(units) < 2 or min(units) < 1:
        raise ValueError(f"layer_units must be >= 2 positive widths, got {units}")
    if max(units) > BLAS_INT_MAX:
        raise ValueError(f"layer widths must be < 2**31, got {max(units)}")
    codes = ((int(hidden_activation),) * (len(units) - 2)
             if np.ndim(hidden_activation) == 0
             else tuple(int(c) for c in hidden_activation))
    if len(codes) != len(units) - 2:
        raise ValueError(f"{len(codes)} hidden activations for {len(units) - 2} hidden layers")
    if not negative_slope >= 0:
        raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
    if not huber_delta > 0:
        raise ValueError(f"huber_delta must be > 0, got {huber_delta}")
    _check_codes(codes, loss)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return units, codes, dtype


def _parameter_layout(units, bint batch_norm, dtype):
    """Where each W^l, b^l and gamma^l lies in the flat buffer, and each
    layer's block in the work blocks: (sizes of the W^l, number of weights,
    number of parameters, w_off, b_off, blk_off, gamma_off (-1: none));
    MemoryError before anything is allocated if the parameters, gradient
    and optimizer state cannot fit in this machine's memory."""
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
    needed = 4 * n_params * dtype.itemsize  # parameters, gradient, two state vectors
    if needed > _physical_memory():
        raise MemoryError(
            f"a network of {n_params:,} parameters needs {needed / 2**30:.1f} GiB for "
            f"its parameters, gradient and optimizer state; this machine has "
            f"{_physical_memory() / 2**30:.1f} GiB")
    w_off, b_off, blk_off = [], [], [0]
    w_at, b_at, blk_at = 0, n_coefs, 0
    for l in range(L):
        w_off.append(w_at)
        b_off.append(b_at)
        blk_off.append(blk_at)
        w_at += sizes[l]
        b_at += units[l + 1]
        blk_at += units[l + 1]
    return sizes, n_coefs, n_params, w_off, b_off, blk_off, gamma_off
