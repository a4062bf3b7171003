"""Tier 4: the same data, parameters and random_state give scikit-learn's model.

float64 results agree with sklearn.neural_network to round-off (rtol 1e-6)
after several epochs; float32 results agree to float32 accuracy.

Each test compares with the scikit-learn installed, from the oldest release
pyproject.toml declares (CI's minimum-dependencies run) to the newest: what
scikit-learn's MLP gained in a release is compared from that release on.
"""

import inspect
import warnings

import numpy as np
import pytest
import sklearn
from sklearn import neural_network as sk
from sklearn.datasets import make_regression

import cnn_bp

SKLEARN = tuple(int(part) for part in sklearn.__version__.split(".")[:2])
# scikit-learn 1.7 gave its MLP sample_weight and MLPRegressor's loss
# parameter (squared_error, poisson).
HAS_SAMPLE_WEIGHT = SKLEARN >= (1, 7)
needs_1_7 = pytest.mark.skipif(not HAS_SAMPLE_WEIGHT,
                               reason="scikit-learn < 1.7: its MLP has no sample_weight, "
                                      "no poisson loss")


def _fit(model, X, y, sample_weight):
    """model.fit with sample weights only when there are some (scikit-learn
    < 1.7 takes none); weighted fits are skipped where it cannot compare."""
    if sample_weight is None:
        return model.fit(X, y)
    if not HAS_SAMPLE_WEIGHT and model.__module__.startswith("sklearn"):
        pytest.skip("scikit-learn < 1.7: its MLP has no sample_weight")
    return model.fit(X, y, sample_weight=sample_weight)


def _pair(cls_name, **params):
    return getattr(cnn_bp, cls_name)(**params), getattr(sk, cls_name)(**params)


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_digits_float64_same_model(digits, solver, assert_same_model):
    X, y = digits
    ours, theirs = _pair("MLPClassifier", solver=solver, max_iter=8, random_state=0)
    ours.fit(X, y)
    theirs.fit(X, y)
    assert_same_model(ours, theirs)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-6,
                               atol=1e-9)


SOLVER_SCHEDULES = [("adam", "constant"), ("sgd", "constant"), ("sgd", "invscaling"),
                    ("sgd", "adaptive"), ("lbfgs", "constant")]


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("solver,schedule", SOLVER_SCHEDULES)
@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_solver_schedule_activation_early_stopping_weights(
    digits, activation, solver, schedule, early_stopping, weighted, assert_same_model
):
    """The full grid: same coefficients (rtol 1e-6) and the same predictions."""
    X, y = digits
    X, y = X[:600], y[:600]
    sw = np.random.RandomState(1).uniform(0.2, 2.0, size=len(y)) if weighted else None
    params = dict(hidden_layer_sizes=(20, 15), activation=activation, solver=solver,
                  learning_rate=schedule, learning_rate_init=0.05 if solver == "sgd" else 1e-3,
                  max_iter=6, random_state=1, n_iter_no_change=2, early_stopping=early_stopping,
                  tol=0.5 if schedule == "adaptive" else 1e-4)
    ours, theirs = _pair("MLPClassifier", **params)
    _fit(theirs, X, y, sw)
    _fit(ours, X, y, sw)
    assert_same_model(ours, theirs)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    if early_stopping and solver != "lbfgs":
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)


@pytest.mark.parametrize("name", ["MLPClassifier", "MLPRegressor"])
def test_same_signatures_and_defaults(name):
    """Positional order included: MLPRegressor's first parameter is `loss`.
    cnn_bp's own parameters follow scikit-learn's, keyword-only."""
    ours = list(inspect.signature(getattr(cnn_bp, name)).parameters.items())
    theirs = list(inspect.signature(getattr(sk, name)).parameters.items())
    if not HAS_SAMPLE_WEIGHT and name == "MLPRegressor":
        assert ours[0][0] == "loss"  # scikit-learn's from 1.7 on
        ours = ours[1:]
    assert ours[: len(theirs)] == theirs
    extensions = ours[len(theirs) :]
    expected = ["negative_slope", "weight_decay", "rho", "clip_norm", "alpha_l1",
                "lr_schedule", "scoring", "init", "max_norm", "dropout", "batch_norm"]
    expected += ["class_weight" if name == "MLPClassifier" else "huber_delta", "checkpoint_dir"]
    assert [p for p, _ in extensions] == expected
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for _, p in extensions)
    for method in ("fit", "partial_fit", "predict", "score"):
        ours = list(inspect.signature(getattr(getattr(cnn_bp, name), method)).parameters)
        theirs = list(inspect.signature(getattr(getattr(sk, name), method)).parameters)
        if "fit" in method and "sample_weight" not in theirs:  # scikit-learn < 1.7
            ours.remove("sample_weight")
        # fit and partial_fit also take validation data of the user's own
        extra = ["X_val", "y_val", "sample_weight_val"] if "fit" in method else []
        assert ours == theirs + extra


def test_divergence_raises_like_sklearn(digits):
    X, y = digits
    params = dict(activation="identity", solver="sgd", learning_rate_init=10.0, momentum=0.0,
                  max_iter=3, random_state=0)
    for model in _pair("MLPRegressor", **params):
        with pytest.raises(ValueError, match="non-finite parameter weights"):
            model.fit(X, y * 1e3)


def test_user_assigned_coefs_then_partial_fit(digits, assert_same_model):
    X, y = digits
    ours, theirs = _pair("MLPClassifier", hidden_layer_sizes=(12,), random_state=0)
    rng = np.random.RandomState(3)
    for model in (ours, theirs):
        model.partial_fit(X[:200], y[:200], classes=np.unique(y))
    coefs = [rng.normal(scale=0.2, size=c.shape) for c in ours.coefs_]
    for model in (ours, theirs):
        model.coefs_ = [c.copy() for c in coefs]
        model.partial_fit(X[200:600], y[200:600])
    assert_same_model(ours, theirs)


@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_early_stopping_sample_weight_shuffle(digits, early_stopping, weighted, shuffle,
                                              assert_same_model):
    X, y = digits
    sw = np.random.RandomState(0).uniform(0.2, 2.0, size=len(y)) if weighted else None
    params = dict(hidden_layer_sizes=(30,), early_stopping=early_stopping, shuffle=shuffle,
                  max_iter=15, n_iter_no_change=3, random_state=2)
    ours, theirs = _pair("MLPClassifier", **params)
    _fit(theirs, X, y, sw)
    _fit(ours, X, y, sw)
    assert_same_model(ours, theirs)
    if early_stopping:
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
        assert ours.best_validation_score_ == theirs.best_validation_score_


def test_binary_and_multilabel(digits, assert_same_model):
    X, y = digits
    ours, theirs = _pair("MLPClassifier", hidden_layer_sizes=(16,), max_iter=10, random_state=0)
    y_bin = np.where(y % 2 == 0, "even", "odd")
    assert_same_model(ours.fit(X, y_bin), theirs.fit(X, y_bin))
    assert ours.out_activation_ == "logistic" and list(ours.classes_) == ["even", "odd"]
    Y_multi = np.column_stack([y % 2 == 0, y > 4, y == 3]).astype(int)
    assert_same_model(ours.fit(X, Y_multi), theirs.fit(X, Y_multi))
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("n_targets", [1, 3])
def test_regression(solver, n_targets, assert_same_model):
    X, y = make_regression(n_samples=300, n_features=8, n_targets=n_targets, noise=0.1,
                           random_state=0)
    y = y / y.std()
    params = dict(hidden_layer_sizes=(12, 7), activation="tanh", solver=solver, max_iter=10,
                  random_state=3, learning_rate_init=1e-3 if solver != "sgd" else 1e-2)
    ours, theirs = _pair("MLPRegressor", **params)
    assert_same_model(ours.fit(X, y), theirs.fit(X, y))
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-6, atol=1e-9)


@needs_1_7
def test_poisson_regression(assert_same_model):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 5))
    y = rng.poisson(np.exp(0.3 * X[:, 0]))
    ours, theirs = _pair("MLPRegressor", loss="poisson", hidden_layer_sizes=(8,),
                         max_iter=10, random_state=0)
    assert_same_model(ours.fit(X, y), theirs.fit(X, y))
    assert ours.out_activation_ == "exp"


def test_partial_fit_and_warm_start_sequences(digits, assert_same_model):
    X, y = digits
    ours, theirs = _pair("MLPClassifier", hidden_layer_sizes=(25,), random_state=0)
    classes = np.unique(y)
    for start in range(0, 900, 300):
        ours.partial_fit(X[start : start + 300], y[start : start + 300], classes=classes)
        theirs.partial_fit(X[start : start + 300], y[start : start + 300], classes=classes)
    assert_same_model(ours, theirs)
    ours, theirs = _pair("MLPClassifier", hidden_layer_sizes=(25,), max_iter=3,
                         warm_start=True, random_state=0)
    for _ in range(3):
        ours.fit(X, y)
        theirs.fit(X, y)
    assert_same_model(ours, theirs)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_float32_is_kept_and_close(digits, solver, assert_same_model):
    X, y = digits
    X32 = X.astype(np.float32)
    # 10 epochs: the two runs differ by float32 ulps from the first epoch
    # (numpy's float32 exp; its two-threaded products), and past ~10 epochs
    # one such ulp can flip a unit or a sign and the runs part (with
    # OPENBLAS_NUM_THREADS=1, adam's weights then differ by 1e-4 at epoch 15).
    ours, theirs = _pair("MLPClassifier", solver=solver, max_iter=10, random_state=0)
    ours.fit(X32, y)
    theirs.fit(X32, y)
    assert all(c.dtype == np.float32 for c in ours.coefs_ + ours.intercepts_)
    assert ours.predict_proba(X32).dtype == np.float32
    assert_same_model(ours, theirs, rtol=1e-5)


# -- weights set by hand on an estimator never fitted, then partial_fit -------
#
# One step on X = [[1, 2]], y = [1], a 2-1-1 network with identity hidden
# unit, W^1 = [[0.5], [-0.25]], b^1 = [0.1], W^2 = [[2]], b^2 = [0], alpha = 0:
#   z^1 = 1 * 0.5 + 2 * (-0.25) + 0.1 = 0.1,   a^1 = 0.1
#   z^2 = 0.1 * 2 + 0 = 0.2
# Regressor (identity output, half squared error):
#   loss = (0.2 - 1)^2 / 2 = 0.32,   delta^2 = 0.2 - 1 = -0.8
# Classifier (logistic output, log-loss, y = 1):
#   p = s(0.2) = 1 / (1 + exp(-0.2)),  loss = -log(p),  delta^2 = p - 1
# Backward, for either delta^2 = d:
#   dW^2 = a^1 d = 0.1 d,  db^2 = d,  delta^1 = d * W^2 * f'(z^1) = 2 d
#   dW^1 = x^T delta^1 = [[2 d], [4 d]],  db^1 = 2 d
# sgd (momentum 0), learning rate 0.1: each parameter moves by -0.1 x its gradient.
# adam's first step, learning rate 0.1: m = (1 - b1) g, v = (1 - b2) g^2, and
# the step -0.1 * sqrt(1 - b2) / (1 - b1) * m / (sqrt(v) + eps) is -0.1 * sign(g)
# up to eps / (sqrt(1 - b2) |g|) < 1e-5 relative.

_X1, _Y1 = np.array([[1.0, 2.0]]), np.array([1])


def _hand_set(model):
    """The weights above and the attributes scikit-learn's partial_fit reads,
    all public, on an estimator that was never fitted."""
    model.coefs_ = [np.array([[0.5], [-0.25]]), np.array([[2.0]])]
    model.intercepts_ = [np.array([0.1]), np.array([0.0])]
    model.n_features_in_, model.n_layers_, model.n_outputs_ = 2, 3, 1
    classifier = type(model).__name__ == "MLPClassifier"
    model.out_activation_ = "logistic" if classifier else "identity"
    model.n_iter_, model.t_, model.loss_curve_, model.best_loss_ = 0, 0, [], np.inf
    return model


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind", ["MLPClassifier", "MLPRegressor"])
def test_hand_set_weights_then_one_partial_fit_step(kind, solver):
    params = dict(hidden_layer_sizes=(1,), activation="identity", solver=solver,
                  learning_rate_init=0.1, momentum=0.0, alpha=0.0, random_state=0)
    if kind == "MLPClassifier":
        p = 1 / (1 + np.exp(-0.2))
        d, loss = p - 1, -np.log(p)
    else:
        d, loss = 0.2 - 1, 0.32
    grads = [np.array([[2 * d], [4 * d]]), np.array([[0.1 * d]]), np.array([2 * d]),
             np.array([d])]
    steps = [-0.1 * g if solver == "sgd" else -0.1 * np.sign(g) for g in grads]
    start = [np.array([[0.5], [-0.25]]), np.array([[2.0]]), np.array([0.1]), np.array([0.0])]
    expected = [w + s for w, s in zip(start, steps)]
    models = _pair(kind, **params)
    for model in models:
        _hand_set(model)
        if kind == "MLPClassifier":
            model.partial_fit(_X1, _Y1, classes=[0, 1])
        else:
            model.partial_fit(_X1, _Y1)
    ours, theirs = models
    for model in models:  # ours worked by hand; scikit-learn's likewise
        for got, want in zip(model.coefs_ + model.intercepts_, expected):
            np.testing.assert_allclose(got, want, rtol=1e-5)
        np.testing.assert_allclose(model.loss_curve_, [loss], rtol=1e-12)
        assert model.n_iter_ == 1 and model.t_ == 1
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # and both train on from there alike
    for model in models:
        model.partial_fit(_X1, _Y1)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert ours.t_ == theirs.t_ == 2


def test_hand_set_weights_without_bookkeeping_start_as_a_fresh_fit():
    """Only coefs_ and intercepts_ set: the rest starts as a first fit's."""
    model = cnn_bp.MLPRegressor(hidden_layer_sizes=(1,), activation="identity", solver="sgd",
                                momentum=0.0, learning_rate_init=0.1, alpha=0.0)
    model.coefs_ = [np.array([[0.5], [-0.25]]), np.array([[2.0]])]
    model.intercepts_ = [np.array([0.1]), np.array([0.0])]
    model.partial_fit(_X1, [1.0])
    np.testing.assert_allclose(model.coefs_[1], [[2.0 + 0.1 * 0.08]])
    assert (model.n_iter_, model.t_, model.n_features_in_, model.n_layers_,
            model.out_activation_) == (1, 1, 2, 3, "identity")
    np.testing.assert_allclose(model.loss_curve_, [0.32])


# -- diverging sgd with early stopping: the best model is kept ---------------

def test_divergence_with_early_stopping_keeps_the_best_model():
    """scikit-learn >= 1.6 (its issue 29504) finishes such a fit with the
    weights of the best validation score and does not raise; cnn_bp stops at
    the diverging epoch with those same weights, and warns."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    params = dict(solver="sgd", learning_rate_init=1, activation="identity",
                  early_stopping=True, random_state=0)
    ours, theirs = _pair("MLPRegressor", **params)
    with pytest.warns(RuntimeWarning, match="diverged.*best validation score"):
        ours.fit(X, y)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.fit(X, y)  # raises on scikit-learn < 1.6
    for model in (ours, theirs):
        assert all(np.isfinite(w).all() for w in model.coefs_ + model.intercepts_)
        assert np.isfinite(model.predict(X)).all()
    assert ours.stopped_early_ and ours.n_iter_ == len(ours.loss_curve_) < ours.max_iter
    np.testing.assert_allclose(ours.best_validation_score_, theirs.best_validation_score_,
                               rtol=1e-9)
    # the kept weights are scikit-learn's best ones
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9)
    # without early stopping, the error stays (as scikit-learn's)
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        cnn_bp.MLPRegressor(**{**params, "early_stopping": False}).fit(X, y)
