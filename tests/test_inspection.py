"""check_gradients and backprop_trace: they can fail, and they show exactly
what the engine computes."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import cnn_bp
from cnn_bp import MLPClassifier, MLPRegressor, _inspection, backprop_trace, check_gradients

import reference as act


@pytest.fixture(scope="module")
def small_digits(digits):
    X, y = digits
    return X[:12], y[:12]


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu", "elu"])
def test_check_gradients_passes_on_correct_models(digits, small_digits, activation):
    X, y = digits
    model = MLPClassifier((7, 5), activation=activation, alpha=0.01, max_iter=3,
                          random_state=0).fit(X, y)
    report = check_gradients(model, *small_digits)
    assert report.passed, report
    assert set(report.errors) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    assert "passed" in repr(report)


def test_check_gradients_multi_output_regression_and_weights_and_float32():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 3))
    Y = np.column_stack([X.sum(axis=1), np.sin(X[:, 0])])
    sw = rng.uniform(0.5, 2, size=40)
    model = MLPRegressor(hidden_layer_sizes=(6,), activation="tanh", alpha=0.1, max_iter=5,
                         random_state=0).fit(X, Y)
    assert check_gradients(model, X[:8], Y[:8], sample_weight=sw[:8]).passed
    model32 = MLPRegressor(hidden_layer_sizes=(6,), activation="tanh", max_iter=5, random_state=0)
    model32.fit(X.astype(np.float32), Y[:, 0])
    report = check_gradients(model32, X[:8], Y[:8, 0])
    assert report.passed and report.eps == 1e-2, report


def test_check_gradients_detects_an_injected_error(digits, small_digits, monkeypatch):
    X, y = digits
    model = MLPClassifier((6,), activation="tanh", max_iter=3, random_state=0).fit(X, y)
    real = _inspection._backprop_gradient

    def perturbed(engine, *args):
        g = real(engine, *args)
        g[engine.coefs[0].size + 2] *= 1.05  # one weight of W^2 off by 5 %
        return g

    monkeypatch.setattr(_inspection, "_backprop_gradient", perturbed)
    report = check_gradients(model, *small_digits)
    assert not report.passed and not report
    assert report.errors["W2"] > 1e-4 and report.errors["W1"] < 1e-6
    assert "FAIL" in repr(report)


def test_trace_gradient_is_what_the_optimizer_receives(small_digits):
    """One plain SGD step on the batch moves W by exactly -lr * trace's dC/dW."""
    X, y = small_digits
    model = MLPClassifier((5,), solver="sgd", momentum=0.0, learning_rate_init=0.1,
                          batch_size=len(X), shuffle=False, random_state=0)
    model.partial_fit(X, y, classes=np.arange(10))
    before = [W.copy() for W in model.coefs_] + [b.copy() for b in model.intercepts_]
    trace = backprop_trace(model, X, y)
    model.partial_fit(X, y)
    for l in (1, 2):
        np.testing.assert_array_equal(model.coefs_[l - 1], before[l - 1] - 0.1 * trace[l].dC_dW)
        np.testing.assert_array_equal(model.intercepts_[l - 1],
                                      before[l + 1] - 0.1 * trace[l].dC_db)
    assert trace.loss == pytest.approx(model.loss_, rel=1e-12)


@pytest.mark.parametrize("activation", ["logistic", "relu", "elu"])
def test_trace_matches_the_four_equations_in_numpy(activation):
    """An independent numpy computation of the four equations on a small net."""
    rng = np.random.RandomState(1)
    X = rng.normal(size=(6, 4))
    y = rng.randint(3, size=6)
    sw = rng.uniform(0.5, 2.0, size=6)
    model = MLPClassifier((5, 3), activation=activation, alpha=0.2, max_iter=2,
                          random_state=0).fit(X, y)
    trace = backprop_trace(model, X, y, sample_weight=sw)
    W, b = model.coefs_, model.intercepts_
    Y = np.eye(3)[y]
    # forward: z^l = a^{l-1} W^l + b^l, a^l = f(z^l)
    a, zs, As = X, [], []
    for l in range(3):
        z = a @ W[l] + b[l]
        a = act.forward("softmax" if l == 2 else activation, z)
        zs.append(z)
        As.append(a)
    # output error, backward recursion, gradients
    deltas = [None, None, (As[2] - Y) * sw[:, None]]
    for l in (1, 0):
        deltas[l] = (deltas[l + 1] @ W[l + 1].T) * act.derivative(activation, As[l])
    inputs = [X, As[0], As[1]]
    for l in range(3):
        layer = trace[l + 1]
        np.testing.assert_allclose(layer.z, zs[l], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.a, As[l], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.delta, deltas[l], rtol=1e-10, atol=1e-14)
        dW = (inputs[l].T @ deltas[l] + 0.2 * W[l]) / sw.sum()
        np.testing.assert_allclose(layer.dC_dW, dW, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(layer.dC_db, deltas[l].sum(axis=0) / sw.sum(), rtol=1e-10)
    np.testing.assert_array_equal(trace.x, X)


def test_trace_and_check_leave_the_model_unchanged(small_digits):
    X, y = small_digits
    model = MLPClassifier((5,), max_iter=2, random_state=0).fit(X, y)
    before = model._engine.params.copy()
    backprop_trace(model, X, y)
    check_gradients(model, X[:3], y[:3])
    np.testing.assert_array_equal(model._engine.params, before)
    assert all(np.shares_memory(c, model._engine.params) for c in model.coefs_)


def test_errors(small_digits):
    X, y = small_digits
    with pytest.raises(NotFittedError):
        backprop_trace(MLPClassifier(), X, y)
    model = MLPClassifier((4,), max_iter=2, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="not in classes_"):
        check_gradients(model, X[:2], [0, 99])
    with pytest.raises(ValueError, match="features"):
        backprop_trace(model, X[:, :5], y)
    with pytest.raises(IndexError):
        backprop_trace(model, X, y)[0]
    assert len(backprop_trace(model, X, y)) == 2 and cnn_bp.BackpropTrace
