"""Batch normalisation and dropout: the engine's forward pass against the
equations in numpy (Ioffe & Szegedy 2015; Srivastava et al. 2014, with
SplitMix64 masks), gradients against finite differences, train/predict
behaviour, and (when installed) PyTorch's BatchNorm1d."""

import pickle

import numpy as np
import pytest
from cnn_bp._engine import Engine
from cnn_bp._passes import BN_EPSILON, BN_MOMENTUM
from sklearn.datasets import load_digits

import cnn_bp
from cnn_bp import MLPClassifier, MLPRegressor, check_gradients

import reference as act

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _splitmix64(seed, positions):
    """SplitMix64 (Steele, Lea & Flood 2014) output at `positions`, in numpy."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (positions.astype(np.uint64) + np.uint64(1)) * np.uint64(
            0x9E3779B97F4A7C15
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _mask(seed, start, shape, rate):
    """Inverted-dropout mask: 1 / (1 - rate) where u >= rate, else 0."""
    u = (_splitmix64(seed, np.arange(start, start + np.prod(shape))) >> np.uint64(11)) * 2.0**-53
    return np.where(u >= rate, 1 / (1 - rate), 0.0).reshape(shape)


def _data(dtype=np.float64, n=12, n_in=4, n_out=3, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, n_in)).astype(dtype)
    Y = np.eye(n_out, dtype=dtype)[rng.randint(n_out, size=n)]
    return X, Y


def _engine(units, activation="tanh", dtype=np.float64, seed=0, **kw):
    engine = Engine(units, act.activation_code(activation), act.loss_code("log_loss"), dtype,
                    **kw)
    rng = np.random.RandomState(seed)
    engine.params[...] = rng.uniform(-0.8, 0.8, size=engine.params.shape)
    return engine


def _softmax_loss(Z, Y):
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    return -np.sum(Y * np.log(P)) / len(Y)


def _bn_train(Z, gamma, beta):
    mu, var = Z.mean(axis=0), Z.var(axis=0)
    return gamma * (Z - mu) / np.sqrt(var + BN_EPSILON) + beta


# -- the forward pass against the equations ---------------------------------


def test_dropout_mask_is_splitmix64_and_inverted():
    """The training loss with dropout equals numpy's forward pass with the
    masks written out; the stream position advances by every element drawn."""
    X, Y = _data(n=50)
    rates = (0.3, 0.6)
    engine = _engine([4, 7, 5, 3], dropout=rates)
    engine.dropout_rng = (12345, 17)
    W1, W2, W3 = engine.coefs
    b1, b2, b3 = engine.intercepts
    M1 = _mask(12345, 17, (50, 7), rates[0])
    M2 = _mask(12345, 17 + 50 * 7, (50, 5), rates[1])
    A1 = np.tanh(X @ W1 + b1) * M1
    A2 = np.tanh(A1 @ W2 + b2) * M2
    expected = _softmax_loss(A2 @ W3 + b3, Y)
    loss = engine.loss_gradient(X, Y, None, 0.0, training=True)
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    assert engine.dropout_rng == (12345, 17 + 50 * 7 + 50 * 5)
    # without training, no dropout: the plain network
    plain = _softmax_loss(np.tanh(np.tanh(X @ W1 + b1) @ W2 + b2) @ W3 + b3, Y)
    np.testing.assert_allclose(engine.loss_gradient(X, Y, None, 0.0, gradient=False),
                               plain, rtol=1e-12)


def test_dropout_keeps_the_expected_fraction():
    mask = _mask(7, 0, (200_000,), 0.3)
    assert abs(np.mean(mask > 0) - 0.7) < 0.005
    np.testing.assert_allclose(np.unique(mask), [0, 1 / 0.7])


def test_batch_norm_forward_train_and_predict():
    """Training uses the batch's statistics and moves the running estimates
    as PyTorch does; prediction uses the running estimates."""
    X, Y = _data(n=40)
    engine = _engine([4, 6, 3], activation="relu", batch_norm=True)
    W1, W2 = engine.coefs
    b1, b2 = engine.intercepts
    (gamma,) = engine.batch_norm_scales
    assert engine.params.size == 4 * 6 + 6 * 3 + 6 + 3 + 6
    Z = X @ W1
    expected = _softmax_loss(np.maximum(_bn_train(Z, gamma, b1), 0) @ W2 + b2, Y)
    engine.set_optimizer("sgd", 0.0, momentum=0.0)  # lr 0: parameters stay
    total = engine.run_epoch(X, Y, None, None, 40, 0.0)
    np.testing.assert_allclose(total / 40, expected, rtol=1e-12)
    (mean,), (var,) = engine.running_means, engine.running_vars
    np.testing.assert_allclose(mean, BN_MOMENTUM * Z.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        var, (1 - BN_MOMENTUM) + BN_MOMENTUM * Z.var(axis=0, ddof=1), rtol=1e-12
    )
    hidden = np.maximum(gamma * (Z - mean) / np.sqrt(var + BN_EPSILON) + b1, 0)
    np.testing.assert_allclose(engine.predict(X, layer=1), hidden, rtol=1e-12, atol=1e-14)


def test_batch_norm_weighs_batch_statistics_by_sample_weight():
    """A row of integer weight k counts as k rows in the batch statistics (and
    a row of weight 0 as none): the weighted mean, variance and running
    estimates (with S / (S - 1), S the weight sum) and a training epoch equal
    those of the batch with each row repeated k times."""
    X, Y = _data(n=12)
    sw = np.array([0, 1, 2, 3, 1, 0, 4, 1, 2, 1, 3, 2], dtype=np.float64)
    engines = [_engine([4, 6, 3], activation="tanh", batch_norm=True) for _ in range(2)]
    for engine in engines:
        engine.set_optimizer("sgd", 0.1, momentum=0.0)
    weighted, repeated = engines
    rows = np.repeat(np.arange(12), sw.astype(int))
    total_w = weighted.run_epoch(X, Y, sw, None, 12, 0.0)
    total_r = repeated.run_epoch(X[rows], Y[rows], None, None, len(rows), 0.0)
    np.testing.assert_allclose(total_w / 12, total_r / len(rows), rtol=1e-12)  # mean losses
    np.testing.assert_allclose(weighted.params, repeated.params, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(weighted.running, repeated.running, rtol=1e-12)
    Z = X[rows] @ _engine([4, 6, 3], activation="tanh", batch_norm=True).coefs[0]
    np.testing.assert_allclose(weighted.running_vars[0],
                               (1 - BN_MOMENTUM) + BN_MOMENTUM * Z.var(axis=0, ddof=1),
                               rtol=1e-12)


def test_batch_norm_trace_shows_the_normalised_preactivation():
    X, Y = _data(n=30)
    engine = _engine([4, 5, 3], activation="gelu", batch_norm=True)
    _, z, a, _ = engine.trace(X, Y, None, 0.0)
    (gamma,) = engine.batch_norm_scales
    np.testing.assert_allclose(z[0], _bn_train(X @ engine.coefs[0], gamma,
                                               engine.intercepts[0]), rtol=1e-12)
    np.testing.assert_allclose(a[0], act.forward("gelu", z[0]), rtol=1e-12)


# -- gradients against finite differences ------------------------------------


def _fd_check(engine, X, Y, sw, h, alpha=0.0):
    """Max relative error of the engine's training gradient against centred
    differences of its training loss, dropout masks fixed by rewinding."""
    rng = engine.dropout_rng

    def loss(params):
        engine.dropout_rng = rng
        return engine.loss_gradient(X, Y, sw, alpha, params, training=True)

    w0 = engine.params.astype(np.float64)
    loss(w0.copy())
    grad = engine.grads.astype(np.float64)
    fd = np.empty_like(w0)
    for i in range(w0.size):
        w = w0.copy()
        w[i] += h
        up = loss(w)
        w[i] -= 2 * h
        fd[i] = (up - loss(w)) / (2 * h)
    return np.abs(grad - fd).max() / np.abs(fd).max()


@pytest.mark.parametrize("dtype, h, tol", [(np.float64, 1e-6, 1e-6), (np.float32, 1e-2, 2e-2)])
@pytest.mark.parametrize("activation", ["tanh", "logistic", "gelu", "softplus", "silu"])
@pytest.mark.parametrize(
    "kw",
    [dict(batch_norm=True), dict(dropout=0.4), dict(dropout=(0.2, 0.5), batch_norm=True)],
    ids=["batch_norm", "dropout", "both"],
)
def test_gradients_match_finite_differences(kw, activation, dtype, h, tol):
    X, Y = _data(dtype, n=16)
    sw = np.random.RandomState(1).uniform(0.5, 2, size=16).astype(dtype)
    engine = _engine([4, 6, 5, 3], activation=activation, dtype=dtype, **kw)
    engine.dropout_rng = (99, 0)
    assert _fd_check(engine, X, Y, sw, h, alpha=0.1) <= tol


def test_dropout_needs_a_training_pass_for_gradients():
    X, Y = _data()
    for kw in (dict(batch_norm=True), dict(dropout=0.1)):
        with pytest.raises(ValueError, match="training=True"):
            _engine([4, 5, 3], **kw).loss_gradient(X, Y, None, 0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_check_gradients_of_fitted_models(dtype):
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(dtype)
    for kw in (dict(batch_norm=True), dict(dropout=[0.1, 0.3]),
               dict(batch_norm=True, dropout=0.2)):
        model = MLPClassifier((12, 8), activation="tanh", max_iter=2, random_state=0, **kw)
        model.fit(X[:300], y[:300])
        report = check_gradients(model, X[:20], y[:20])
        assert report.passed, report
        if model.batch_norm:
            assert {"gamma1", "gamma2"} <= set(report.errors)


# -- PyTorch's BatchNorm1d (when installed) ------------------------------------


def test_batch_norm_matches_torch():
    torch = pytest.importorskip("torch")
    X, Y = _data(n=25, n_in=5, n_out=4)
    engine = _engine([5, 6, 4], activation="tanh", batch_norm=True)
    W1, W2 = engine.coefs
    b1, b2 = engine.intercepts
    (gamma,) = engine.batch_norm_scales
    torch.set_default_dtype(torch.float64)
    try:
        lin1 = torch.nn.Linear(5, 6, bias=False)
        bn = torch.nn.BatchNorm1d(6, eps=BN_EPSILON, momentum=BN_MOMENTUM)
        lin2 = torch.nn.Linear(6, 4)
        with torch.no_grad():
            lin1.weight.copy_(torch.tensor(W1.T))
            bn.weight.copy_(torch.tensor(gamma))
            bn.bias.copy_(torch.tensor(b1))
            lin2.weight.copy_(torch.tensor(W2.T))
            lin2.bias.copy_(torch.tensor(b2))
        net = torch.nn.Sequential(lin1, bn, torch.nn.Tanh(), lin2)
        out = net(torch.tensor(X))
        loss = torch.nn.functional.cross_entropy(out, torch.tensor(Y.argmax(axis=1)))
        loss.backward()
    finally:
        torch.set_default_dtype(torch.float32)
    ours = engine.loss_gradient(X, Y, None, 0.0, training=True)
    np.testing.assert_allclose(ours, loss.item(), rtol=1e-12)
    (dgamma,) = cnn_bp._inspection._blocks(engine, engine.grads)[4:]
    np.testing.assert_allclose(engine.grads[: W1.size].reshape(W1.shape),
                               lin1.weight.grad.numpy().T, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(dgamma[1], bn.weight.grad.numpy(), rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(engine.running_means[0], bn.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(engine.running_vars[0], bn.running_var.numpy(), rtol=1e-12)
    net.eval()
    with torch.no_grad():
        hidden = torch.tanh(bn(lin1(torch.tensor(X)))).numpy()
    np.testing.assert_allclose(engine.predict(X, layer=1), hidden, rtol=1e-10, atol=1e-14)


# -- the estimators -------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y


@pytest.mark.parametrize("kw", [dict(batch_norm=True), dict(dropout=0.2),
                                dict(dropout=[0.1, 0.3], batch_norm=True)])
def test_estimators_learn_and_predict_deterministically(digits, kw):
    X, y = digits
    model = MLPClassifier((64, 32), max_iter=40, random_state=0, **kw).fit(X[:1200], y[:1200])
    # the plain network scores 0.916 on these last 597 digits (written by other people)
    assert model.score(X[1200:], y[1200:]) > 0.89
    np.testing.assert_array_equal(model.predict_proba(X[1200:]), model.predict_proba(X[1200:]))
    again = MLPClassifier((64, 32), max_iter=40, random_state=0, **kw).fit(X[:1200], y[:1200])
    # the same masks; sums split among as many threads as were free (round-off)
    np.testing.assert_allclose(model.coefs_[0], again.coefs_[0], rtol=1e-9, atol=1e-12)


def test_dropout_changes_training_and_defaults_change_nothing(digits):
    X, y = digits
    base = MLPClassifier((30,), max_iter=5, random_state=0).fit(X, y)
    same = MLPClassifier((30,), max_iter=5, random_state=0, dropout=0.0,
                         batch_norm=False).fit(X, y)
    np.testing.assert_array_equal(base.coefs_[0], same.coefs_[0])
    dropped = MLPClassifier((30,), max_iter=5, random_state=0, dropout=0.3).fit(X, y)
    assert not np.allclose(base.coefs_[0], dropped.coefs_[0])
    # a prediction is the plain forward pass (no masks, no scaling)
    W1, W2 = dropped.coefs_
    b1, b2 = dropped.intercepts_
    Z = np.maximum(X @ W1 + b1, 0) @ W2 + b2
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(dropped.predict_proba(X), P / P.sum(axis=1, keepdims=True),
                               rtol=1e-10)


def test_batch_norm_estimator_attributes_and_sklearn_export(digits):
    X, y = digits
    model = MLPRegressor(hidden_layer_sizes=(20, 10), max_iter=30, random_state=0,
                         batch_norm=True)
    model.fit(X, y.astype(float))
    assert [g.shape for g in model.batch_norm_scales_] == [(20,), (10,)]
    assert [m.shape for m in model.running_means_] == [(20,), (10,)]
    assert all(np.all(v > 0) for v in model.running_vars_)
    assert not np.allclose(model.batch_norm_scales_[0], 1)  # gamma is trained
    exported = model.to_sklearn()  # normalisation folded into W and b
    np.testing.assert_allclose(exported.predict(X), model.predict(X), rtol=1e-9, atol=1e-9)
    assert not hasattr(MLPRegressor(max_iter=3).fit(X, y), "running_means_")


@pytest.mark.parametrize("kw", [dict(batch_norm=True), dict(dropout=0.5)])
def test_lbfgs_refuses_stochastic_layers(digits, kw):
    X, y = digits
    with pytest.raises(ValueError, match="stochastic solver"):
        MLPClassifier(solver="lbfgs", **kw).fit(X[:100], y[:100])


def test_bad_dropout_rates_are_rejected(digits):
    X, y = digits
    with pytest.raises(ValueError, match="2 rates but the network has 1"):
        MLPClassifier((10,), dropout=[0.1, 0.2]).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        MLPClassifier((10,), dropout=[1.0]).fit(X[:50], y[:50])
    with pytest.raises(ValueError):
        MLPClassifier((10,), dropout=1.0).fit(X[:50], y[:50])


def test_warm_start_cannot_switch_batch_norm_but_can_change_dropout(digits):
    X, y = digits
    model = MLPClassifier((10,), max_iter=2, random_state=0, warm_start=True).fit(X, y)
    model.set_params(batch_norm=True)
    with pytest.raises(ValueError, match="batch_norm"):
        model.fit(X, y)
    model.set_params(batch_norm=False, dropout=0.3)
    model.fit(X, y)
    assert model._engine.dropout == (0.3,)
    assert model._engine.dropout_rng[1] > 0


def test_partial_fit_continues_the_dropout_stream(digits):
    X, y = digits
    model = MLPClassifier((10,), dropout=0.5, random_state=0)
    model.partial_fit(X, y, classes=np.unique(y))
    first = model._engine.dropout_rng
    model.partial_fit(X, y)
    second = model._engine.dropout_rng
    assert second[0] == first[0] and second[1] == 2 * first[1] > 0


@pytest.mark.parametrize("how", ["pickle", "save"])
def test_persistence_keeps_running_statistics_and_stream(digits, tmp_path, how):
    X, y = digits
    model = MLPClassifier((16,), max_iter=5, random_state=0, batch_norm=True, dropout=0.2)
    model.fit(X, y)
    if how == "pickle":
        loaded = pickle.loads(pickle.dumps(model))
    else:
        cnn_bp.save(model, tmp_path / "m.npz")
        loaded = cnn_bp.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.running_vars_[0], model.running_vars_[0])
    assert loaded._engine.dropout_rng == model._engine.dropout_rng
    # training resumes identically
    for m in (model, loaded):
        m.partial_fit(X, y)
    np.testing.assert_array_equal(loaded.coefs_[0], model.coefs_[0])


def test_assigned_coefs_keep_batch_norm_state(digits):
    X, y = digits
    model = MLPClassifier((16,), max_iter=5, random_state=0, batch_norm=True).fit(X, y)
    before = model.predict_proba(X)
    model.coefs_ = [c.copy() for c in model.coefs_]  # the user's own arrays
    np.testing.assert_array_equal(model.predict_proba(X), before)
