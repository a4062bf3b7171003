"""Activations beyond scikit-learn's, and one activation per hidden layer,
through the estimators: the network computes what the formulas say."""

import pickle

import numpy as np
import pytest
from sklearn.neural_network import MLPClassifier as SkMLPClassifier

import cnn_bp
from cnn_bp import MLPClassifier, MLPRegressor
from cnn_bp import _network as network

import reference as act

NEW = ["elu", "leaky_relu", "selu", "softplus", "gelu", "gelu_tanh", "silu"]


def _numpy_proba(model, X):
    """Softmax output of the fitted network, by numpy and the formulas of
    cnn_bp._activations (an independent forward pass)."""
    names = network.hidden_activations(model, len(model.coefs_) - 1)
    A = X.astype(np.float64)
    for W, b, name in zip(model.coefs_[:-1], model.intercepts_[:-1], names):
        A = act.forward(name, A @ W + b, model.negative_slope)
    return act.forward("softmax", A @ model.coefs_[-1] + model.intercepts_[-1])


@pytest.mark.parametrize("activation", NEW)
def test_new_activations_learn_digits(digits, activation):
    X, y = digits
    model = MLPClassifier((32,), activation=activation, max_iter=40, random_state=0)
    model.fit(X[:1200], y[:1200])
    assert model.score(X[1200:], y[1200:]) > 0.85  # relu: 0.89
    assert model.loss_curve_[-1] < model.loss_curve_[0] / 4
    np.testing.assert_allclose(model.predict_proba(X[1200:1300]),
                               _numpy_proba(model, X[1200:1300]), rtol=1e-9, atol=1e-12)


def test_one_activation_per_hidden_layer(digits):
    X, y = digits
    names = ["gelu", "tanh", "leaky_relu"]
    model = MLPClassifier((24, 16, 12), activation=names, negative_slope=0.1,
                          max_iter=20, random_state=0).fit(X, y)
    assert model.activation == names
    assert model._engine.hidden_activation == tuple(map(act.activation_code, names))
    np.testing.assert_allclose(model.predict_proba(X[:50]), _numpy_proba(model, X[:50]),
                               rtol=1e-9, atol=1e-12)
    # and it survives pickling and cnn_bp.save / cnn_bp.load
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X[:50]), model.predict_proba(X[:50]))


def test_save_and_load_keep_activations_and_slope(digits, tmp_path):
    X, y = digits
    model = MLPRegressor(hidden_layer_sizes=(8, 8), activation=["leaky_relu", "silu"],
                         negative_slope=0.3, max_iter=5, random_state=0).fit(X, y)
    cnn_bp.save(model, tmp_path / "m.npz")
    loaded = cnn_bp.load(tmp_path / "m.npz")
    assert loaded.activation == ["leaky_relu", "silu"] and loaded.negative_slope == 0.3
    np.testing.assert_array_equal(loaded.predict(X[:20]), model.predict(X[:20]))


def test_a_list_of_one_name_is_that_name(digits):
    """Same draws and the same network: identical to the string (and so to
    scikit-learn's model) for activations other than logistic."""
    X, y = digits
    as_list = MLPClassifier((16, 8), activation=["tanh", "tanh"], max_iter=5,
                            random_state=0).fit(X, y)
    as_str = MLPClassifier((16, 8), activation="tanh", max_iter=5, random_state=0).fit(X, y)
    theirs = SkMLPClassifier((16, 8), activation="tanh", max_iter=5, random_state=0).fit(X, y)
    for a, b, c in zip(as_list.coefs_, as_str.coefs_, theirs.coefs_):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-9)


def test_leaky_relu_with_zero_slope_is_relu(digits):
    X, y = digits
    leaky = MLPClassifier((16,), activation="leaky_relu", negative_slope=0.0, max_iter=5,
                          random_state=0).fit(X, y)
    relu = MLPClassifier((16,), activation="relu", max_iter=5, random_state=0).fit(X, y)
    for a, b in zip(leaky.coefs_, relu.coefs_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("activation,message", [
    (["relu"], "lists 1 activations but the network has 2 hidden layers"),
    (["relu", "swish"], "unknown activation"),
    ("swish", "activation"),
])
def test_bad_activation_lists_are_rejected_before_training(digits, activation, message):
    X, y = digits
    model = MLPClassifier((8, 8), max_iter=2, random_state=0).fit(X[:100], y[:100])
    before = pickle.dumps(model)
    model.set_params(activation=activation)
    with pytest.raises(ValueError, match=message):
        model.fit(X[:100], y[:100])
    model.set_params(activation="relu")
    assert pickle.dumps(model) == before


def test_negative_slope_must_be_non_negative(digits):
    X, y = digits
    with pytest.raises(ValueError, match="negative_slope"):
        MLPClassifier(activation="leaky_relu", negative_slope=-0.1).fit(X[:50], y[:50])
