"""to_sklearn: the same fitted network as a scikit-learn estimator, and from
there ONNX (when skl2onnx and onnxruntime are installed)."""

import numpy as np
import pytest
from sklearn import neural_network as sk

from cnn_bp import MLPClassifier, MLPRegressor


def _cases(digits):
    X, y = digits[0][:600], digits[1][:600]
    fit = dict(max_iter=8, random_state=0)
    return X, [
        MLPClassifier((16, 8), **fit).fit(X, y),
        MLPClassifier((16,), activation="tanh", solver="nadam", **fit).fit(X, y > 4),
        MLPClassifier((16,), activation="logistic", **fit).fit(X, np.column_stack([y > 4, y % 2])),
        MLPRegressor(hidden_layer_sizes=(16,), **fit).fit(X, y * 0.1),
        MLPRegressor(loss="poisson", hidden_layer_sizes=(16,), **fit).fit(X, y),
        MLPClassifier((16,), **fit).fit(X.astype(np.float32), y),
    ]


@pytest.mark.parametrize("index", range(6))
def test_to_sklearn_predicts_the_same(digits, index):
    X, models = _cases(digits)
    ours = models[index]
    if getattr(ours, "loss", None) == "poisson" and "loss" not in sk.MLPRegressor().get_params():
        with pytest.raises(ValueError, match="no loss 'poisson'"):  # scikit-learn < 1.7
            ours.to_sklearn()
        return
    theirs = ours.to_sklearn()
    assert type(theirs) is getattr(sk, type(ours).__name__)
    rtol = 1e-5 if ours.coefs_[0].dtype == np.float32 else 1e-12
    if hasattr(ours, "predict_proba"):
        np.testing.assert_array_equal(theirs.predict(X), ours.predict(X))
        np.testing.assert_allclose(theirs.predict_proba(X), ours.predict_proba(X), rtol=rtol,
                                   atol=rtol * 1e-2)
    else:  # same products, another BLAS call: equal to round-off
        np.testing.assert_allclose(theirs.predict(X), ours.predict(X), rtol=rtol, atol=1e-12)
    theirs.coefs_[0][0, 0] += 1  # copies, not views of our buffer
    assert theirs.coefs_[0][0, 0] != ours.coefs_[0][0, 0]


@pytest.mark.parametrize("params, message", [
    (dict(activation="gelu"), "scikit-learn's MLP has no hidden activation gelu: its"),
    # only what it lacks is named, not the tanh it has
    (dict(activation=["gelu", "tanh"]), "no hidden activation gelu: its activations are "
                                        "identity, logistic, tanh, relu$"),
    (dict(activation=["relu", "tanh"]), "one activation for all hidden layers; this model "
                                        "has relu, tanh$"),
])
def test_what_scikit_learn_lacks_is_an_error(digits, params, message):
    X, y = digits
    model = MLPClassifier((8, 8), max_iter=2, **params).fit(X[:100], y[:100])
    with pytest.raises(ValueError, match=message):
        model.to_sklearn()
    reg = MLPRegressor(loss="huber", hidden_layer_sizes=(8,), max_iter=2).fit(X[:100], y[:100])
    with pytest.raises(ValueError, match="no loss 'huber'"):
        reg.to_sklearn()


def test_onnx_export_predicts_the_same(digits):
    skl2onnx = pytest.importorskip("skl2onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    X, models = _cases(digits)
    model = models[0].to_sklearn()
    onx = skl2onnx.to_onnx(model, X[:1].astype(np.float32))
    session = onnxruntime.InferenceSession(onx.SerializeToString())
    labels = session.run(None, {session.get_inputs()[0].name: X.astype(np.float32)})[0]
    np.testing.assert_array_equal(labels, models[0].predict(X))
