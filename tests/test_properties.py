"""Property-based tests (hypothesis): random shapes, dtypes, layer and batch
sizes and values, extremes included. Whatever is drawn: no crash, either a
clear ValueError or finite outputs, probabilities that sum to one, and
gradients that match finite differences. Examples are bounded, and
derandomized so that CI is reproducible (set HYPOTHESIS_PROFILE=explore to
draw new examples locally)."""

import os
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cnn_bp import MLPClassifier, MLPRegressor, check_gradients

EXPLORE = os.environ.get("HYPOTHESIS_PROFILE") == "explore"
SETTINGS = settings(max_examples=500 if EXPLORE else 60, derandomize=not EXPLORE,
                    deadline=None, suppress_health_check=[HealthCheck.too_slow])
GRADIENT_SETTINGS = settings(max_examples=200 if EXPLORE else 20, derandomize=not EXPLORE,
                             deadline=None)

# finite values from tiny to huge (float32 overflows near 3e38: stay below)
VALUES = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1e-300, -1e-30, 1e20, -1e20, 3e15]),
)


@st.composite
def problems(draw):
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    X = draw(arrays(np.float64, (n, d), elements=VALUES)).astype(dtype)
    hidden = tuple(draw(st.lists(st.integers(1, 8), min_size=1, max_size=3)))
    params = dict(
        hidden_layer_sizes=hidden,
        activation=draw(st.sampled_from(["identity", "logistic", "tanh", "relu", "elu"])),
        solver=draw(st.sampled_from(["adam", "sgd", "lbfgs"])),
        batch_size=draw(st.integers(1, 50)),
        alpha=draw(st.sampled_from([0.0, 1e-4, 1.0])),
        max_iter=3,
        random_state=draw(st.integers(0, 2**16)),
    )
    return X, params, draw(st.data())


def _predicts(method, X):
    """Call a prediction method; an overflowing output must be a clear error."""
    try:
        return method(X)
    except ValueError as exc:
        assert "overflows" in str(exc)
        return None


def _fit(model, X, y):
    """Fit; the only acceptable failure is a ValueError that names the problem."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.fit(X, y)
        except ValueError as exc:
            assert str(exc), "a ValueError must say what is wrong"
            return False
    return True


@SETTINGS
@given(problems())
def test_classifier_never_crashes_and_predicts_probabilities(problem):
    X, params, data = problem
    n_classes = data.draw(st.integers(2, 4))
    if len(X) < 2:
        X = np.vstack([X, X])
    y = data.draw(arrays(np.int64, len(X), elements=st.integers(0, n_classes - 1)))
    y[:2] = [0, 1]  # at least two classes (one class is scikit-learn's special case)
    model = MLPClassifier(**params)
    if not _fit(model, X, y):
        return
    proba = _predicts(model.predict_proba, X)
    if proba is None:
        return
    assert proba.shape == (len(X), len(model.classes_))
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-4)
    assert set(model.predict(X)) <= set(model.classes_)


@SETTINGS
@given(problems())
def test_regressor_never_crashes_and_predicts_finite_values(problem):
    X, params, data = problem
    y = data.draw(arrays(np.float64, len(X), elements=st.floats(-1e3, 1e3)))
    model = MLPRegressor(**params)
    if not _fit(model, X, y):
        return
    assert np.isfinite(model._engine.params).all()
    prediction = _predicts(model.predict, X)
    assert prediction is None or (prediction.shape == (len(X),) and np.isfinite(prediction).all())


@GRADIENT_SETTINGS
@given(
    hidden=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    activation=st.sampled_from(["identity", "logistic", "tanh", "elu"]),
    n=st.integers(2, 8),
    seed=st.integers(0, 2**16),
    regression=st.booleans(),
)
def test_gradients_match_finite_differences(hidden, activation, n, seed, regression):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 3))
    if regression:
        y = rng.normal(size=(n, 2))
        model = MLPRegressor(hidden_layer_sizes=tuple(hidden), activation=activation,
                             alpha=0.1, max_iter=1, random_state=seed)
    else:
        y = np.arange(n) % 3
        model = MLPClassifier(tuple(hidden), activation=activation, alpha=0.1, max_iter=1,
                              random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    report = check_gradients(model, X, y)
    assert report.passed, report
