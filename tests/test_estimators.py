"""Tier 3: behaviour through the public attributes: views into the flat
buffer, pickling, user-assigned weights, errors, warnings, a hand-worked step."""

import copy
import pickle

import numpy as np
import pytest
from sklearn import neural_network as sk
from sklearn.exceptions import ConvergenceWarning

from cnn_bp import MLPClassifier, MLPRegressor, _checks, _engine
from cnn_bp import _network as network


@pytest.fixture
def fitted(digits):
    X, y = digits
    return MLPClassifier(hidden_layer_sizes=(20, 10), max_iter=5, random_state=0).fit(X, y)


def test_coefs_and_intercepts_are_views_of_one_flat_buffer(fitted):
    flat = fitted._engine.params
    arrays = fitted.coefs_ + fitted.intercepts_
    assert [a.shape for a in fitted.coefs_] == [(64, 20), (20, 10), (10, 10)]
    assert all(np.shares_memory(a, flat) for a in arrays)
    assert sum(a.size for a in arrays) == flat.size
    # writing through a view changes what the model computes
    before = fitted.predict_proba(np.ones((1, 64)))
    fitted.intercepts_[-1][0] += 5.0
    assert fitted.predict_proba(np.ones((1, 64)))[0, 0] > before[0, 0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_buffers_start_on_a_cache_line(digits, dtype):
    # numpy aligns to 16 bytes; the engine's buffers start on 64 (vector
    # loads of W^l rows then never straddle two cache lines needlessly)
    X, y = digits
    model = MLPClassifier(hidden_layer_sizes=(30,), max_iter=2, random_state=0)
    model.fit(X.astype(dtype), y)
    restored = pickle.loads(pickle.dumps(model))
    for engine in (model._engine, restored._engine):
        for buffer in (engine.params, engine.grads, engine.optimizer_state):
            assert buffer.dtype == dtype and buffer.flags.c_contiguous
            assert buffer.ctypes.data % 64 == 0
    for shape in (7, (3, 5), (2, 1001)):
        a = _checks.aligned_empty(shape, dtype, zero=True)
        assert a.shape == (shape if isinstance(shape, tuple) else (shape,))
        assert a.ctypes.data % 64 == 0 and a.flags.c_contiguous and not a.any()


@pytest.mark.parametrize("dumps", [pickle.dumps, copy.deepcopy])
def test_pickle_round_trip_keeps_views_and_predictions(fitted, digits, dumps):
    X, _ = digits
    restored = pickle.loads(dumps(fitted)) if dumps is pickle.dumps else dumps(fitted)
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    assert all(np.shares_memory(c, restored._engine.params) for c in restored.coefs_)
    assert not np.shares_memory(restored._engine.params, fitted._engine.params)


def test_pickled_mid_partial_fit_resumes_identically(digits):
    X, y = digits
    a = MLPClassifier(hidden_layer_sizes=(15,), random_state=0)
    a.partial_fit(X[:500], y[:500], classes=np.unique(y))
    b = pickle.loads(pickle.dumps(a))
    for model in (a, b):
        model.partial_fit(X[500:1000], y[500:1000])
    for ca, cb in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(ca, cb)


def test_user_assigned_coefs_are_used_like_sklearn(fitted, digits):
    X, y = digits
    theirs = sk.MLPClassifier(hidden_layer_sizes=(20, 10), max_iter=5, random_state=0).fit(X, y)
    rng = np.random.RandomState(1)
    new_coefs = [rng.normal(scale=0.3, size=c.shape) for c in fitted.coefs_]
    new_intercepts = [rng.normal(size=b.shape) for b in fitted.intercepts_]
    for model in (fitted, theirs):
        model.coefs_ = [c.copy() for c in new_coefs]
        model.intercepts_ = [b.copy() for b in new_intercepts]
    np.testing.assert_allclose(fitted.predict_proba(X), theirs.predict_proba(X), rtol=1e-12)
    # the engine adopted them: coefs_ are views again, with the assigned values
    assert all(np.shares_memory(c, fitted._engine.params) for c in fitted.coefs_)
    np.testing.assert_array_equal(fitted.coefs_[0], new_coefs[0])


def test_hand_worked_sgd_step():
    """One sample, one hidden identity unit, squared error, lr 0.1, no momentum.

    x = 1, W1 = 0.5, b1 = 0, W2 = 2, b2 = 0, y = 3:
      forward   z1 = a1 = 0.5,  a2 = 2 * 0.5 = 1
      output    delta2 = a2 - y = -2
      backward  delta1 = delta2 * W2 * f'(z1) = -4
      gradients dW2 = a1 * delta2 = -1, db2 = -2, dW1 = x * delta1 = -4, db1 = -4
      update    W2 = 2.1, b2 = 0.2, W1 = 0.9, b1 = 0.4;  loss = (1 - 3)^2 / 2 = 2
    """
    model = MLPRegressor(hidden_layer_sizes=(1,), activation="identity", solver="sgd",
                         learning_rate_init=0.1, momentum=0.0, alpha=0.0, random_state=0)
    X, y = np.array([[1.0]]), np.array([3.0])
    model.partial_fit(X, y)  # builds the network
    model.coefs_[0][...] = 0.5
    model.coefs_[1][...] = 2.0
    model.intercepts_[0][...] = 0.0
    model.intercepts_[1][...] = 0.0
    network.start_optimizer(model)  # fresh momentum buffers for the hand-set weights
    model.partial_fit(X, y)
    assert model.loss_ == pytest.approx(2.0)
    assert model.coefs_[1][0, 0] == pytest.approx(2.1)
    assert model.intercepts_[1][0] == pytest.approx(0.2)
    assert model.coefs_[0][0, 0] == pytest.approx(0.9)
    assert model.intercepts_[0][0] == pytest.approx(0.4)


def test_predict_proba_rows_sum_to_one_and_log_proba(fitted, digits):
    X, _ = digits
    proba = fitted.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(fitted.predict_log_proba(X), np.log(proba))
    assert fitted.predict(X).shape == (len(X),)


@pytest.mark.parametrize("block_bytes", [1, _engine.PREDICT_BYTES])
def test_large_input_is_predicted_in_blocks(fitted, digits, monkeypatch, block_bytes):
    X, _ = digits
    big = np.tile(X, (6, 1))  # 10782 rows: in blocks of PREDICT_MIN_ROWS, or of 8 MiB
    monkeypatch.setattr(_engine, "PREDICT_BYTES", block_bytes)
    np.testing.assert_allclose(fitted.predict_proba(big)[-len(X):], fitted.predict_proba(X),
                               rtol=1e-12)


@pytest.mark.parametrize("params,error", [
    (dict(hidden_layer_sizes=(0,)), ValueError),
    (dict(hidden_layer_sizes=(10, -1)), ValueError),
    (dict(activation="softmax"), ValueError),
    (dict(solver="newton"), ValueError),
    (dict(alpha=-1.0), ValueError),
    (dict(learning_rate_init=0.0), ValueError),
    (dict(batch_size=0), ValueError),
    (dict(momentum=1.5), ValueError),
])
def test_invalid_parameters_raise_like_sklearn(digits, params, error):
    X, y = digits
    with pytest.raises(error):
        MLPClassifier(**params).fit(X[:50], y[:50])
    with pytest.raises(error):
        sk.MLPClassifier(**params).fit(X[:50], y[:50])


def test_bad_input_leaves_a_fitted_model_unchanged(fitted, digits):
    X, y = digits
    before = fitted._engine.params.copy()
    bad_X = X[:20].copy()
    bad_X[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted.fit(bad_X, y[:20])
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:, :10])
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        fitted.partial_fit(X[:5], np.array([0, 1, 2, 3, 99]))
    np.testing.assert_array_equal(fitted._engine.params, before)


def test_convergence_warning_and_verbose(digits, capsys):
    X, y = digits
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, verbose=True).fit(X, y)
    assert "Iteration 2, loss = " in capsys.readouterr().out


def test_partial_fit_is_not_offered_for_lbfgs():
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert hasattr(MLPRegressor(solver="sgd"), "partial_fit")


def test_warm_start_with_changed_architecture_is_a_clear_error(fitted, digits):
    X, y = digits
    fitted.set_params(warm_start=True, hidden_layer_sizes=(7,))
    with pytest.raises(ValueError, match="same architecture"):
        fitted.fit(X, y)


def test_regressor_multi_output_shapes():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 3))
    Y = np.column_stack([X.sum(axis=1), X[:, 0] * 2])
    model = MLPRegressor(hidden_layer_sizes=(10,), max_iter=50, random_state=0).fit(X, Y)
    assert model.predict(X).shape == (80, 2)
    assert model.n_outputs_ == 2 and model.out_activation_ == "identity"
    assert model.predict(X[:, :]).dtype == np.float64


def test_class_weight_multiplies_sample_weight(digits):
    """As scikit-learn's LogisticRegression: sample_weight times the class
    weights of compute_class_weight(class_weight, ..., sample_weight=), whose
    'balanced' counts weigh the rows by sample_weight."""
    import inspect

    from sklearn.utils.class_weight import compute_class_weight

    if "sample_weight" not in inspect.signature(compute_class_weight).parameters:
        pytest.skip("scikit-learn < 1.7: compute_class_weight, the oracle, takes no weights")
    X, y = digits[0][:400], digits[1][:400]
    sw = np.random.RandomState(0).uniform(0.5, 2, size=len(y))
    params = dict(hidden_layer_sizes=(16,), max_iter=5, random_state=0)
    weights = {c: 1.0 + c / 3 for c in range(10)}
    for class_weight in (weights, "balanced"):
        ours = MLPClassifier(class_weight=class_weight, **params).fit(X, y, sample_weight=sw)
        per_class = compute_class_weight(class_weight, classes=np.arange(10), y=y,
                                         sample_weight=sw)
        plain = MLPClassifier(**params).fit(X, y, sample_weight=sw * per_class[y])
        for a, b in zip(ours.coefs_, plain.coefs_):
            np.testing.assert_allclose(a, b, rtol=1e-12)
    # binary, string labels
    labels = np.where(y > 4, "big", "small")
    ours = MLPClassifier(class_weight={"big": 3.0, "small": 1.0}, **params).fit(X, labels)
    plain = MLPClassifier(**params).fit(X, labels, sample_weight=np.where(y > 4, 3.0, 1.0))
    np.testing.assert_array_equal(ours.coefs_[0], plain.coefs_[0])
    unweighted = MLPClassifier(**params).fit(X, labels)
    assert not np.array_equal(ours.coefs_[0], unweighted.coefs_[0])


def test_balanced_partial_fit_weighs_by_the_call_s_rows(digits):
    """partial_fit with class_weight='balanced' weighs each call by its own
    rows' class counts (classes absent from the call count for nothing)."""
    from sklearn.utils.class_weight import compute_sample_weight

    X, y = digits[0][:300], digits[1][:300] % 4
    params = dict(hidden_layer_sizes=(16,), random_state=0)
    ours = MLPClassifier(class_weight="balanced", **params)
    plain = MLPClassifier(**params)
    for rows in (slice(0, 100), slice(100, 300)):
        chunk = y[rows] if rows.start else np.where(y[rows] == 3, 2, y[rows])  # no 3s
        ours.partial_fit(X[rows], chunk, classes=np.arange(4))
        plain.partial_fit(X[rows], chunk, classes=np.arange(4),
                          sample_weight=compute_sample_weight("balanced", chunk))
    for a, b in zip(ours.coefs_ + ours.intercepts_, plain.coefs_ + plain.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_class_weight_errors(digits):
    X, y = digits[0][:200], digits[1][:200]
    with pytest.raises(ValueError, match="multilabel"):
        MLPClassifier(class_weight={0: 1.0}).fit(X, np.column_stack([y > 4, y % 2]))
    with pytest.raises(ValueError, match="class_weight"):
        MLPClassifier(class_weight="nonsense").fit(X, y)
    model = MLPClassifier(class_weight={c: 2.0 for c in range(10)}, max_iter=2)
    model.partial_fit(X, y, classes=np.arange(10))  # a dict works incrementally
    assert model.n_iter_ == 1


@pytest.mark.parametrize("loss", ["huber", "absolute_error"])
def test_robust_losses_resist_outliers(loss):
    """y = 2x + noise with 10 % gross outliers: the robust fits stay near the
    line where squared error is pulled away."""
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(400, 1))
    y = 2 * X.ravel() + rng.normal(scale=0.05, size=400)
    y[::10] += 20  # outliers, all upwards
    grid = np.linspace(-0.9, 0.9, 50).reshape(-1, 1)
    errors = {}
    for name in ("squared_error", loss):
        model = MLPRegressor(loss=name, hidden_layer_sizes=(16,), solver="lbfgs",
                             huber_delta=0.5, max_iter=500, random_state=0).fit(X, y)
        errors[name] = np.abs(model.predict(grid) - 2 * grid.ravel()).mean()
    assert errors[loss] < 0.3 < errors["squared_error"], errors


def test_alpha_l1_penalises_the_weights(digits):
    X, y = digits[0][:500], digits[1][:500]
    params = dict(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=50, random_state=0)
    plain = MLPClassifier(**params).fit(X, y)
    l1 = MLPClassifier(alpha_l1=0.5, **params).fit(X, y)
    weights = lambda m: np.concatenate([c.ravel() for c in m.coefs_])  # noqa: E731
    assert np.abs(weights(l1)).sum() < 0.5 * np.abs(weights(plain)).sum()
    # loss_ is the data loss plus both penalties, over the samples
    proba = l1.predict_proba(X)
    data = -np.log(np.clip(proba[np.arange(len(y)), y], 1e-16, 1)).mean()
    w = weights(l1)
    expected = data + (0.5 * l1.alpha * w @ w + 0.5 * np.abs(w).sum()) / len(y)
    np.testing.assert_allclose(l1.loss_, expected, rtol=1e-6)


@pytest.mark.parametrize("init,variance", [
    ("glorot_normal", lambda i, o: 2 / (i + o)), ("he_uniform", lambda i, o: 2 / i),
    ("he_normal", lambda i, o: 2 / i), ("lecun_normal", lambda i, o: 1 / i),
])
def test_initialisations_have_their_published_variance(init, variance):
    X, y = np.random.RandomState(0).normal(size=(20, 400)), np.arange(20) % 3
    model = MLPClassifier((300,), init=init, max_iter=1, learning_rate_init=1e-12,
                          random_state=0).fit(X, y)
    W = model.coefs_[0]  # 400 x 300, one tiny step away from its draw
    np.testing.assert_allclose(W.var(), variance(400, 300), rtol=0.03)
    assert abs(W.mean()) < 0.01 * W.std()
    np.testing.assert_allclose(model.intercepts_[0], 0, atol=1e-9)
    if init == "he_uniform":
        assert np.abs(W).max() <= np.sqrt(6 / 400) + 1e-6


def test_default_init_is_scikit_learns(digits):
    X, y = digits
    ours = MLPClassifier((16,), init="glorot_uniform", max_iter=1, random_state=0).fit(X, y)
    theirs = sk.MLPClassifier((16,), max_iter=1, random_state=0).fit(X, y)
    np.testing.assert_allclose(ours.coefs_[0], theirs.coefs_[0], rtol=1e-10)
