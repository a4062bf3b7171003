"""Optimizers against their published update equations written out in numpy
(and against torch.optim when PyTorch is installed): same parameters after
several steps from the same gradients."""

import numpy as np
import pytest
from cnn_bp._engine import Engine

import cnn_bp
from cnn_bp import MLPClassifier

import reference as act

LR, B1, B2, EPS, WD, RHO = 0.01, 0.9, 0.999, 1e-8, 0.05, 0.9
STEPS = 6


def _problem(dtype=np.float64):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(9, 4)).astype(dtype)
    Y = np.eye(3, dtype=dtype)[rng.randint(3, size=9)]
    engine = Engine([4, 5, 3], act.activation_code("tanh"), act.loss_code("log_loss"), dtype)
    engine.params[...] = rng.uniform(-0.7, 0.7, size=engine.params.shape)
    return engine, X, Y


def _gradient(engine, X, Y, alpha, params):
    """The engine's gradient at `params` (checked against finite differences
    in test_gradients.py), leaving the engine's own parameters as they were."""
    keep = engine.params.copy()
    engine.loss_gradient(X, Y, None, alpha, params)
    engine.params[...] = keep
    return engine.grads.astype(np.float64)


def _numpy_steps(solver, engine, X, Y, alpha, clip_norm=None):
    """STEPS updates of a copy of the engine's parameters, by the equations."""
    p = engine.params.astype(np.float64)
    n_coefs = sum(c.size for c in engine.coefs)
    m, v = np.zeros_like(p), np.zeros_like(p)
    mu_product = 1.0
    for t in range(1, STEPS + 1):
        g = _gradient(engine, X, Y, alpha, p)
        if clip_norm is not None and np.linalg.norm(g) > clip_norm:
            g = g * clip_norm / np.linalg.norm(g)
        if solver in ("adam", "adamw", "nadam"):
            if solver == "adamw":  # Loshchilov & Hutter (2019), Alg. 2
                p[:n_coefs] *= 1 - LR * WD
            m = B1 * m + (1 - B1) * g
            v = B2 * v + (1 - B2) * g**2
            if solver == "adam":  # Kingma & Ba (2014), Sec. 2's efficient form,
                # as scikit-learn: epsilon is added before the bias correction
                p -= LR * np.sqrt(1 - B2**t) / (1 - B1**t) * m / (np.sqrt(v) + EPS)
                continue
            denom = np.sqrt(v / (1 - B2**t)) + EPS
            if solver == "nadam":  # Dozat (2016), momentum schedule mu_t
                mu, mu_next = (B1 * (1 - 0.5 * 0.96 ** (0.004 * k)) for k in (t, t + 1))
                mu_product *= mu
                p -= LR * (1 - mu) / (1 - mu_product) * g / denom
                p -= LR * mu_next / (1 - mu_product * mu_next) * m / denom
            else:  # Kingma & Ba (2014), Alg. 1
                p -= LR * m / (1 - B1**t) / denom
        elif solver == "rmsprop":  # Tieleman & Hinton (2012)
            v = RHO * v + (1 - RHO) * g**2
            p -= LR * g / (np.sqrt(v) + EPS)
        elif solver == "adagrad":  # Duchi, Hazan & Singer (2011)
            v += g**2
            p -= LR * g / (np.sqrt(v) + EPS)
        else:  # plain sgd
            p -= LR * g
    return p


def _engine_steps(solver, engine, X, Y, alpha, clip_norm=None):
    settings = dict(momentum=0.0) if solver == "sgd" else {}
    engine.set_optimizer(solver, LR, beta_1=B1, beta_2=B2, epsilon=EPS, weight_decay=WD,
                         rho=RHO, clip_norm=clip_norm, **settings)
    for _ in range(STEPS):  # one batch of all rows: one step per epoch
        engine.run_epoch(X, Y, None, None, len(X), alpha)
    return engine.params.astype(np.float64)


SOLVERS = ["adam", "adamw", "nadam", "rmsprop", "adagrad"]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_updates_follow_the_published_equations(solver, alpha):
    engine, X, Y = _problem()
    expected = _numpy_steps(solver, engine, X, Y, alpha)
    start = engine.params.copy()
    got = _engine_steps(solver, engine, X, Y, alpha)
    assert np.abs(got - start).max() > 1e-3  # the parameters moved
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("solver", SOLVERS)
def test_float32_updates_track_float64(solver):
    engine, X, Y = _problem(np.float32)
    expected = _numpy_steps(solver, engine, X, Y, 0.1)
    got = _engine_steps(solver, engine, X, Y, 0.1)
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_clip_norm_rescales_the_gradient(solver):
    engine, X, Y = _problem()
    norm = np.linalg.norm(_gradient(engine, X, Y, 0.0, engine.params.copy()))
    clip = norm / 3  # active from the first step
    expected = _numpy_steps(solver, engine, X, Y, 0.0, clip_norm=clip)
    unclipped = _numpy_steps(solver, engine, X, Y, 0.0)
    got = _engine_steps(solver, engine, X, Y, 0.0, clip_norm=clip)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    assert np.abs(expected - unclipped).max() > 1e-4  # clipping changed the path


@pytest.mark.parametrize("solver", SOLVERS[1:])
def test_updates_match_torch_optim(solver):
    torch = pytest.importorskip("torch")
    engine, X, Y = _problem()
    n_coefs = sum(c.size for c in engine.coefs)
    weights = torch.nn.Parameter(torch.tensor(engine.params[:n_coefs].copy()))
    biases = torch.nn.Parameter(torch.tensor(engine.params[n_coefs:].copy()))
    groups = [{"params": [weights]}, {"params": [biases]}]
    make = {  # (torch's Adam adds epsilon after bias correction; scikit-learn's,
        # and so "adam" here, before: they differ at ~1e-4, so Adam is left out)
        "adamw": lambda: torch.optim.AdamW(
            [{"params": [weights], "weight_decay": WD}, {"params": [biases], "weight_decay": 0}],
            lr=LR, betas=(B1, B2), eps=EPS),
        "nadam": lambda: torch.optim.NAdam(groups, lr=LR, betas=(B1, B2), eps=EPS),
        "rmsprop": lambda: torch.optim.RMSprop(groups, lr=LR, alpha=RHO, eps=EPS),
        "adagrad": lambda: torch.optim.Adagrad(groups, lr=LR, eps=EPS),
    }
    optimizer = make[solver]()
    for _ in range(STEPS):
        p = np.concatenate([weights.detach().numpy(), biases.detach().numpy()])
        g = _gradient(engine, X, Y, 0.1, p)
        weights.grad, biases.grad = torch.tensor(g[:n_coefs]), torch.tensor(g[n_coefs:])
        optimizer.step()
    expected = np.concatenate([weights.detach().numpy(), biases.detach().numpy()])
    got = _engine_steps(solver, engine, X, Y, 0.1)
    # torch keeps NAdam's momentum-schedule product as a float32 tensor
    rtol = 1e-6 if solver == "nadam" else 1e-9
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("solver", SOLVERS)
def test_estimators_train_resume_and_persist_with_each_solver(digits, solver, tmp_path):
    X, y = digits
    model = MLPClassifier((32,), solver=solver, learning_rate_init=0.01, max_iter=15,
                          clip_norm=5.0, random_state=0).fit(X[:1200], y[:1200])
    assert model.score(X[1200:], y[1200:]) > 0.85
    assert model._engine.optimizer_settings()["solver"] == solver
    # saved mid-training, reloaded, resumed: the same as resuming the original
    cnn_bp.save(model, tmp_path / "m.npz")
    loaded = cnn_bp.load(tmp_path / "m.npz")
    for m in (model, loaded):
        m.partial_fit(X[:200], y[:200])
    for a, b in zip(model.coefs_, loaded.coefs_):
        np.testing.assert_array_equal(a, b)


def test_max_norm_projects_each_units_incoming_weights(digits):
    """One sgd step then the projection, by numpy: columns of W^l longer
    than c shrink to c, the others stay; biases are not constrained."""
    engine, X, Y = _problem()
    c = 0.6
    p = engine.params.astype(np.float64) - LR * _gradient(engine, X, Y, 0.0, engine.params)
    expected = []
    offset = 0
    for W in engine.coefs:
        block = p[offset : offset + W.size].reshape(W.shape)
        norms = np.linalg.norm(block, axis=0)
        expected.append(block * np.where(norms > c, c / norms, 1.0))
        offset += W.size
    engine.set_optimizer("sgd", LR, momentum=0.0, max_norm=c)
    engine.run_epoch(X, Y, None, None, len(X), 0.0)
    for W, E in zip(engine.coefs, expected):
        np.testing.assert_allclose(W, E, rtol=1e-12, atol=1e-14)
    assert any((np.linalg.norm(W, axis=0) > c - 1e-9).any() for W in engine.coefs)
    np.testing.assert_allclose(engine.intercepts[0], p[offset : offset + 5], rtol=1e-12)

    Xd, yd = digits
    model = MLPClassifier((32,), max_norm=0.5, max_iter=5, random_state=0).fit(Xd, yd)
    for W in model.coefs_:
        assert np.linalg.norm(W, axis=0).max() <= 0.5 * (1 + 1e-6)
    free = MLPClassifier((32,), max_iter=5, random_state=0).fit(Xd, yd)
    assert np.linalg.norm(free.coefs_[0], axis=0).max() > 0.5
