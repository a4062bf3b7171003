"""Tier 2: backpropagation against centred finite differences of the loss.

For every hidden activation x output/loss pair x dtype, on networks of 1-3
hidden layers with and without the L2 term, the engine's gradient must match
(f(w + h e_i) - f(w - h e_i)) / 2h of the loss it reports.
"""

import numpy as np
import pytest
from cnn_bp._engine import Engine

import reference as act


def _problem(loss, n_samples, n_out, rng, dtype):
    X = rng.normal(size=(n_samples, 4)).astype(dtype)
    if loss == "log_loss":
        Y = np.eye(n_out)[rng.randint(n_out, size=n_samples)]
    elif loss == "binary_log_loss":
        Y = (rng.uniform(size=(n_samples, n_out)) > 0.5).astype(float)
    elif loss == "poisson":
        Y = rng.poisson(1.5, size=(n_samples, n_out)).astype(float)
    else:
        Y = rng.normal(size=(n_samples, n_out))
    return X, np.ascontiguousarray(Y, dtype=dtype)


def _engine(hidden, activation, loss, n_out, dtype, rng):
    units = [4, *hidden, n_out]
    # huber_delta 0.5: residuals fall on both sides of Huber's switch
    engine = Engine(units, act.activation_code(activation), act.loss_code(loss), dtype,
                    huber_delta=0.5)
    engine.params[...] = rng.uniform(-0.7, 0.7, size=engine.params.shape)
    return engine


def _finite_differences(engine, X, Y, sw, alpha, h, alpha_l1=0.0):
    w0 = engine.params.astype(np.float64)
    fd = np.empty_like(w0)
    for i in range(w0.size):
        w = w0.copy()
        w[i] += h
        up = engine.loss_gradient(X, Y, sw, alpha, w, alpha_l1=alpha_l1)
        w[i] -= 2 * h
        down = engine.loss_gradient(X, Y, sw, alpha, w, alpha_l1=alpha_l1)
        fd[i] = (up - down) / (2 * h)
    engine.params[...] = w0
    return fd


def _layer_errors(engine, grad, fd):
    """Max relative error of each W^l and b^l (infinity norms). A block whose
    gradient is below 1e-3 of the network's largest entry is measured against
    that 1e-3 (the round-off of the difference quotient is absolute, so it
    would otherwise dominate the block's relative error)."""
    errors = {}
    floor = max(1e-3 * np.abs(fd).max(), 1e-12)
    offset = 0
    for kind, blocks in (("W", engine.coefs), ("b", engine.intercepts)):
        for layer, block in enumerate(blocks, start=1):
            g = grad[offset : offset + block.size]
            f = fd[offset : offset + block.size]
            errors[f"{kind}{layer}"] = np.abs(g - f).max() / max(np.abs(f).max(), floor)
            offset += block.size
    return errors


# (loss, n_outputs): softmax multiclass, logistic binary and multilabel,
# identity regression, exp/Poisson regression.
OUTPUTS = [("log_loss", 3), ("binary_log_loss", 1), ("binary_log_loss", 2),
           ("squared_error", 1), ("poisson", 1), ("huber", 2),
           ("absolute_error", 1)]
HIDDEN = [(5,), (5, 4), (4, 3, 5)]


@pytest.mark.parametrize("activation", act.HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("loss,n_out", OUTPUTS)
@pytest.mark.parametrize("hidden", HIDDEN, ids=str)
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_gradient_float64(activation, loss, n_out, hidden, alpha):
    rng = np.random.RandomState(len(hidden) + 10 * n_out)
    X, Y = _problem(loss, 7, n_out, rng, np.float64)
    sw = rng.uniform(0.5, 2.0, size=7) if alpha > 0 else None
    engine = _engine(hidden, activation, loss, n_out, np.float64, rng)
    engine.loss_gradient(X, Y, sw, alpha)
    grad = engine.grads.copy()
    fd = _finite_differences(engine, X, Y, sw, alpha, h=1e-6)
    errors = _layer_errors(engine, grad, fd)
    assert max(errors.values()) <= 1e-6, errors


@pytest.mark.parametrize("loss,n_out", OUTPUTS)
def test_gradient_of_a_single_sample(loss, n_out):
    """One row: every product of the forward and backward pass is then a
    matrix-vector product (gemv, not gemm; see _kernels.gemm)."""
    rng = np.random.RandomState(n_out)
    X, Y = _problem(loss, 1, n_out, rng, np.float64)
    engine = _engine((5, 4), "tanh", loss, n_out, np.float64, rng)
    engine.loss_gradient(X, Y, None, 0.3)
    grad = engine.grads.copy()
    fd = _finite_differences(engine, X, Y, None, 0.3, h=1e-6)
    assert max(_layer_errors(engine, grad, fd).values()) <= 1e-6


@pytest.mark.parametrize("dtype,h,tol", [(np.float64, 1e-6, 1e-6), (np.float32, 2e-3, 2e-2)])
@pytest.mark.parametrize("loss,n_out", [("log_loss", 3), ("squared_error", 1)])
def test_gradient_with_l1_and_l2(dtype, h, tol, loss, n_out):
    """Elastic net: alpha_l1 sign(W) joins alpha W (weights kept away from
    the L1 kink at 0, and tanh units from nothing: smooth everywhere)."""
    rng = np.random.RandomState(5)
    X, Y = _problem(loss, 7, n_out, rng, dtype)
    engine = _engine((5, 4), "tanh", loss, n_out, dtype, rng)
    w = engine.params[: sum(c.size for c in engine.coefs)]
    w[np.abs(w) < 0.05] = 0.05  # |W| > h: the penalty is differentiable there
    sw = rng.uniform(0.5, 2.0, size=7).astype(dtype)
    engine.loss_gradient(X, Y, sw, 0.3, alpha_l1=0.2)
    grad = engine.grads.astype(np.float64)
    fd = _finite_differences(engine, X, Y, sw, 0.3, h, alpha_l1=0.2)
    assert max(_layer_errors(engine, grad, fd).values()) <= tol
    without = engine.loss_gradient(X, Y, sw, 0.3)  # the L1 term is really there
    assert engine.loss_gradient(X, Y, sw, 0.3, alpha_l1=0.2) > without


def _min_abs_hidden_z(engine, X):
    """Smallest |Z^l| over the hidden layers, by a numpy forward pass."""
    a, smallest = X.astype(np.float64), np.inf
    name = act.ACTIVATIONS[engine.hidden_activation[0]]
    for W, b in zip(engine.coefs[:-1], engine.intercepts[:-1]):
        z = a @ W + b
        smallest = min(smallest, np.abs(z).min())
        a = act.forward(name, z)
    return smallest


@pytest.mark.parametrize("activation", act.HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("loss,n_out", OUTPUTS)
def test_gradient_float32(activation, loss, n_out):
    """float32 gradients match finite differences to float32 accuracy and
    the float64 gradient of the same network to ~1e-5."""
    # float32 needs a large step h, so keep every relu pre-activation well
    # away from its kink at 0, where finite differences are meaningless.
    for seed in range(100):
        rng = np.random.RandomState(seed)
        X, Y = _problem(loss, 7, n_out, rng, np.float32)
        e32 = _engine((5, 4), activation, loss, n_out, np.float32, rng)
        if _min_abs_hidden_z(e32, X) > 0.05:
            break
    e32.loss_gradient(X, Y, None, 0.2)
    grad = e32.grads.astype(np.float64)
    fd = _finite_differences(e32, X, Y, None, 0.2, h=2e-3)
    assert max(_layer_errors(e32, grad, fd).values()) <= 2e-2

    e64 = Engine(e32.layer_units, e32.hidden_activation, e32.loss, np.float64,
                 huber_delta=e32.huber_delta)
    e64.params[...] = e32.params
    e64.loss_gradient(X.astype(np.float64), Y.astype(np.float64), None, 0.2)
    np.testing.assert_allclose(grad, e64.grads, rtol=1e-4, atol=1e-5)


def test_gradient_detects_a_wrong_derivative():
    """The check can fail: a gradient for another network does not pass."""
    rng = np.random.RandomState(0)
    X, Y = _problem("log_loss", 7, 3, rng, np.float64)
    engine = _engine((5,), "tanh", "log_loss", 3, np.float64, rng)
    engine.loss_gradient(X, Y, None, 0.0)
    grad = engine.grads.copy()
    grad[3] *= 1.01
    errors = _layer_errors(engine, grad, _finite_differences(engine, X, Y, None, 0.0, 1e-6))
    assert errors["W1"] > 1e-4


def test_multi_output_squared_error_gradient_is_that_of_the_summed_loss():
    """scikit-learn reports squared error averaged over the k outputs but its
    delta A - Y is the gradient of the sum over outputs; cnn_bp keeps both
    conventions, so the gradient is k times that of the reported data loss."""
    rng = np.random.RandomState(5)
    X, Y = _problem("squared_error", 8, 3, rng, np.float64)
    engine = _engine((6,), "tanh", "squared_error", 3, np.float64, rng)
    engine.loss_gradient(X, Y, None, 0.0)
    grad = engine.grads.copy()
    fd = 3 * _finite_differences(engine, X, Y, None, 0.0, 1e-6)
    assert max(_layer_errors(engine, grad, fd).values()) <= 1e-6


def test_full_batch_gradient_is_chunk_invariant():
    """loss_gradient accumulates over row blocks; the result must equal one
    block holding every row (large n forces several blocks)."""
    rng = np.random.RandomState(6)
    n = 9000  # > the 4096-row block of the engine
    X, Y = _problem("log_loss", n, 3, rng, np.float64)
    engine = _engine((8,), "relu", "log_loss", 3, np.float64, rng)
    loss = engine.loss_gradient(X, Y, None, 0.1)
    grad = engine.grads.copy()
    # the same objective from the two halves, weighted by their sizes
    half = n // 2
    l1 = engine.loss_gradient(X[:half].copy(), Y[:half].copy(), None, 0.0)
    g1 = engine.grads.copy()
    l2 = engine.loss_gradient(X[half:].copy(), Y[half:].copy(), None, 0.0)
    g2 = engine.grads.copy()
    n_coefs = sum(c.size for c in engine.coefs)
    penalty = 0.5 * 0.1 * (engine.params[:n_coefs] ** 2).sum() / n
    np.testing.assert_allclose(loss, (half * l1 + (n - half) * l2) / n + penalty, rtol=1e-12)
    expected = (half * g1 + (n - half) * g2) / n
    expected[:n_coefs] += 0.1 * engine.params[:n_coefs] / n
    np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-14)
