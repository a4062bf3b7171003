"""Shared fixtures. Tests run against the installed cnn_bp (see pyproject's
--import-mode=importlib), never the source tree's uncompiled package."""

import os
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits


@pytest.fixture(scope="module")
def restored_environment():
    """Dask's nanny leaves OMP_NUM_THREADS=1 and the like in this process's
    environment (for the workers it starts): put it back after the module
    (the Dask test modules use it)."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's embedded digits, scaled to [0, 1]: X (1797, 64), y (1797,)."""
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture(autouse=True)
def _quiet_convergence():
    # Short fits are intended here; ConvergenceWarning is tested explicitly.
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.fixture
def assert_same_model():
    """The check below, as a fixture (importlib mode cannot import conftest)."""
    return _assert_same_model


def _assert_same_model(ours, theirs, rtol=1e-6):
    """Coefficients, intercepts and loss curve equal to rtol (scaled by the
    largest entry of each array, so entries near zero do not dominate)."""
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
    if hasattr(theirs, "loss_curve_"):
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=rtol)
    assert ours.n_iter_ == theirs.n_iter_


@pytest.fixture
def misaligned():
    """A function: a copy of an array whose data starts one byte past a value
    boundary (numpy calls it unaligned; C may not read it as T *)."""
    return _misaligned


def _misaligned(a):
    out = np.empty(a.nbytes + 1, dtype=np.uint8)[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out
