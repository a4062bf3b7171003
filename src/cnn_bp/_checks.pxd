# cython: language_level=3
"""The engine's checks (_checks.pyx): what the engine cimports to have its
input checked before a pointer is taken."""
cimport numpy as cnp
from libc.stddef cimport ptrdiff_t

from ._passes cimport Rows


cdef class TrainingData:
    cdef Rows rows               # X as the passes read it
    cdef readonly Py_ssize_t n_samples
    cdef object Y, sample_weight
    cdef object order            # intp row order, or None: rows as stored
    cdef list keep               # the arrays `rows` points into
    cdef object dtype            # the engine's dtype and layer_units it was
    cdef tuple layer_units       # checked for


cdef ptrdiff_t _dense_rows(Rows *rows, X, int typenum, ptrdiff_t n_features)
cdef int _set_rows(Rows *rows, X, dtype, ptrdiff_t n_features, list keep) except -1


cdef inline void *_data(object array):
    """The data pointer of ndarray `array` (checked by the caller)."""
    return cnp.PyArray_DATA(<cnp.ndarray> array)
