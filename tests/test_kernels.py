"""Tier 1: the C kernels against numpy formulas (tests/reference.py)."""

import numpy as np
import pytest
from scipy.special import xlogy

from cnn_bp import _checks, _engine
from cnn_bp import _hooks as hooks

import reference as act


def test_python_tables_mirror_the_c_enums():
    codes = _checks.activation_codes()
    assert {name: act.ACTIVATIONS.index(name) for name in act.ACTIVATIONS} == codes
    assert {name: act.LOSSES.index(name) for name in act.LOSSES} == _checks.loss_codes()


def test_unknown_names_are_errors_not_fallbacks():
    with pytest.raises(ValueError, match="unknown activation"):
        act.activation_code("swish-ish")
    with pytest.raises(ValueError, match="unknown loss"):
        act.loss_code("hinge")
    with pytest.raises(ValueError, match="activation"):
        hooks.py_bias_activation(np.zeros((1, 2)), np.zeros(2), 99)


@pytest.mark.parametrize("name", act.ACTIVATIONS)
def test_bias_activation_matches_numpy(name):
    rng = np.random.RandomState(0)
    z = rng.normal(scale=3, size=(7, 5))
    b = rng.normal(size=5)
    expected = act.forward(name, z + b)
    hooks.py_bias_activation(z, b, act.activation_code(name))
    np.testing.assert_allclose(z, expected, rtol=1e-13, atol=1e-15)


def test_relu_propagates_nan_and_softmax_survives_large_inputs():
    z = np.array([[np.nan, -1.0, 2.0]])
    hooks.py_bias_activation(z, np.zeros(3), act.activation_code("relu"))
    assert np.isnan(z[0, 0]) and z[0, 1] == 0 and z[0, 2] == 2
    z = np.array([[1000.0, 1001.0, -1000.0]])
    hooks.py_bias_activation(z, np.zeros(3), act.activation_code("softmax"))
    np.testing.assert_allclose(z.sum(), 1.0)
    assert np.all(np.isfinite(z))


def _exp(x):
    """The kernels' exp (csrc/exp.h) of a float32/float64 array, through the
    'exp' output activation with a zero bias."""
    z = np.ascontiguousarray(x).reshape(1, -1).copy()
    hooks.py_bias_activation(z, np.zeros(z.shape[1], z.dtype), act.activation_code("exp"))
    return z.ravel()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_is_within_an_ulp(dtype):
    # against exp in long double (x86's 64-bit mantissa: exact enough here),
    # over the whole finite range, the subnormal results included
    rng = np.random.RandomState(0)
    info = np.finfo(dtype)
    hi = np.log(info.max)
    lo = np.log(info.smallest_subnormal)
    x = np.concatenate([rng.uniform(lo, hi, 20000), rng.uniform(-1, 1, 20000),
                        rng.uniform(-1e-6, 1e-6, 1000)]).astype(dtype)
    got = _exp(x)
    ref = np.exp(x.astype(np.longdouble))
    assert np.all(got[ref > 0] > 0)
    err = np.abs(got.astype(np.longdouble) - ref) / np.spacing(ref.astype(dtype))
    assert err.max() <= 1.1, err.max()
    assert np.median(err) <= 0.3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_of_special_values(dtype):
    info = np.finfo(dtype)
    # ln(max) rounded down to the dtype (numpy < 2's float32 log may round it up)
    hi = dtype(np.log(np.float64(info.max)))
    while np.exp(np.float64(hi)) > info.max:
        hi = np.nextafter(hi, dtype(0))
    lo = np.log(info.smallest_subnormal)
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e4, -1e4, hi * 1.001,
                  lo - 1, 1.0], dtype=dtype)  # e^(lo - 1): under half the least subnormal
    got = _exp(x)
    assert got[0] == 1 and got[1] == 1  # exactly: softmax's largest entry
    assert got[2] == np.inf and got[3] == 0 and np.isnan(got[4])
    assert got[5] == np.inf and got[6] == 0 and got[7] == np.inf and got[8] == 0
    np.testing.assert_allclose(got[9], np.e, rtol=2 * info.eps)
    # the largest finite result and the smallest subnormal one are reached
    edge = np.array([np.nextafter(hi, 0), np.nextafter(lo, 0)], dtype=dtype)
    got = _exp(edge)
    assert np.isfinite(got[0]) and got[0] > info.max / 2
    assert got[1] == info.smallest_subnormal


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-5), (np.float64, 1e-13)])
@pytest.mark.parametrize("shape", [(1000, 10), (3, 3000), (1, 1)])
def test_softmax_of_many_rows_matches_numpy(dtype, rtol, shape):
    # rows are taken in chunks (3000 columns: a row at a time); float32's
    # tolerance is that of a sum of 3000 terms
    rng = np.random.RandomState(2)
    z = rng.normal(scale=4, size=shape).astype(dtype)
    b = rng.normal(size=shape[1]).astype(dtype)
    expected = act.forward("softmax", (z + b).astype(np.float64))
    hooks.py_bias_activation(z, b, act.activation_code("softmax"))
    assert z.dtype == dtype
    np.testing.assert_allclose(z, expected, rtol=rtol, atol=1e-30)
    np.testing.assert_allclose(z.sum(axis=1), 1, rtol=rtol * 10)


@pytest.mark.parametrize("name", act.HIDDEN_ACTIVATIONS)
def test_delta_derivative_matches_numpy(name):
    rng = np.random.RandomState(1)
    z = rng.normal(scale=2, size=40)
    a = act.forward(name, z)
    if name == "relu":
        a[:5] = 0.0  # inactive units must get exactly zero
    delta = rng.normal(size=40)
    expected = delta * act.derivative(name, a, z)
    hooks.py_delta_derivative(a, z, delta, act.activation_code(name))
    np.testing.assert_allclose(delta, expected, rtol=1e-13, atol=1e-14)
    if name == "relu":
        assert np.all(delta[:5] == 0)


@pytest.mark.parametrize("name", act.HIDDEN_ACTIVATIONS)
def test_numpy_derivatives_are_those_of_the_numpy_activations(name):
    """The oracle itself: derivative(name, f(z), z) against centred finite
    differences of forward(name, z), away from relu-type kinks at 0."""
    z = np.concatenate([np.linspace(-6, -0.01, 40), np.linspace(0.01, 6, 40)])
    h = 1e-6
    fd = (act.forward(name, z + h, 0.2) - act.forward(name, z - h, 0.2)) / (2 * h)
    got = act.derivative(name, act.forward(name, z, 0.2), z, 0.2)
    np.testing.assert_allclose(got, fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("slope", [0.0, 0.2, 1.5])
def test_leaky_relu_slope_reaches_the_kernels(slope):
    code = act.activation_code("leaky_relu")
    z = np.array([[-2.0, -0.5, 0.0, 3.0]])
    hooks.py_bias_activation(z, np.zeros(4), code, slope)
    np.testing.assert_array_equal(z, [[-2 * slope, -0.5 * slope, 0.0, 3.0]])
    delta = np.ones(4)
    hooks.py_delta_derivative(z[0].copy(), z[0].copy(), delta, code, slope)
    np.testing.assert_array_equal(delta, [slope, slope, slope, 1.0])


def test_only_non_monotonic_activations_read_z():
    """The derivative is read off z exactly for the activations that are
    not monotonic (f' < 0 somewhere), where a = f(z) does not fix z."""
    needs = {n for n in act.HIDDEN_ACTIVATIONS
             if _checks.derivative_needs_z(act.activation_code(n))}
    z = np.linspace(-5, 5, 1001)
    falling = {n for n in act.HIDDEN_ACTIVATIONS
               if (act.derivative(n, act.forward(n, z), z) < 0).any()}
    assert needs == set(act.DERIVATIVE_FROM_Z) == falling >= {"gelu", "gelu_tanh", "silu"}


HUBER_DELTA = 0.7


def _numpy_loss(loss, a, y):
    """Per-row losses as scikit-learn's sklearn/neural_network/_base.py, and
    Huber's (1964) and the absolute error summed over the outputs."""
    r = np.abs(a - y)
    if loss == "huber":
        return np.where(r <= HUBER_DELTA, 0.5 * r**2, HUBER_DELTA * (r - 0.5 * HUBER_DELTA)).sum(1)
    if loss == "absolute_error":
        return r.sum(axis=1)
    eps = np.finfo(a.dtype).eps
    p = np.clip(a, eps, 1 - eps)
    if loss == "squared_error":
        return 0.5 * ((a - y) ** 2).mean(axis=1)
    if loss == "log_loss":
        return -xlogy(y, p).sum(axis=1)
    if loss == "binary_log_loss":
        return -(xlogy(y, p) + xlogy(1 - y, 1 - p)).sum(axis=1)
    return (xlogy(y, y / a) - y + a).sum(axis=1)


@pytest.mark.parametrize("loss", act.LOSSES)
@pytest.mark.parametrize("weighted", [False, True])
def test_output_loss_and_delta_match_numpy(loss, weighted):
    rng = np.random.RandomState(2)
    m, n = 9, 4
    z = rng.normal(size=(m, n))
    b = rng.normal(size=n)
    if loss == "log_loss":
        y = np.eye(n)[rng.randint(n, size=m)]
    elif loss == "binary_log_loss":
        y = (rng.uniform(size=(m, n)) > 0.5).astype(float)
    elif loss == "poisson":
        y = rng.poisson(2.0, size=(m, n)).astype(float)
    else:
        y = rng.normal(size=(m, n))
    sw = rng.uniform(0.5, 2, size=m) if weighted else None
    w = np.ones(m) if sw is None else sw
    a_expected = act.forward(act.OUTPUT_ACTIVATION[loss], z + b)
    delta = np.empty_like(z)
    total = hooks.py_output_loss(z, b, y, sw, delta, act.loss_code(loss), HUBER_DELTA)
    np.testing.assert_allclose(z, a_expected, rtol=1e-14)
    r = a_expected - y
    d_expected = {"huber": np.clip(r, -HUBER_DELTA, HUBER_DELTA),
                  "absolute_error": np.sign(r)}.get(loss, r)
    np.testing.assert_allclose(delta, d_expected * w[:, None], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(total, (w * _numpy_loss(loss, a_expected, y)).sum(), rtol=1e-13)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_update_follows_the_published_equations(nesterov):
    rng = np.random.RandomState(3)
    p, g, v = rng.normal(size=(3, 50))
    lr, mu = 0.1, 0.9
    # Sutskever et al. (2013): v <- mu v - lr g; Nesterov looks ahead once more
    v_new = mu * v - lr * g
    p_new = p + (mu * v_new - lr * g if nesterov else v_new)
    hooks.py_sgd_update(p, g, v, lr, mu, nesterov)
    np.testing.assert_allclose(v, v_new, rtol=1e-15)
    np.testing.assert_allclose(p, p_new, rtol=1e-15)


def test_adam_update_follows_the_published_equations():
    rng = np.random.RandomState(4)
    p, g, m = rng.normal(size=(3, 50))
    v = rng.uniform(size=50)
    b1, b2, eps, lr_t = 0.9, 0.999, 1e-8, 0.003
    # Kingma & Ba (2014), Algorithm 1 with the bias correction in lr_t
    m_new = b1 * m + (1 - b1) * g
    v_new = b2 * v + (1 - b2) * g**2
    p_new = p - lr_t * m_new / (np.sqrt(v_new) + eps)
    hooks.py_adam_update(p, g, m, v, lr_t, b1, b2, eps)
    np.testing.assert_allclose(m, m_new, rtol=1e-15)
    np.testing.assert_allclose(v, v_new, rtol=1e-15)
    np.testing.assert_allclose(p, p_new, rtol=1e-14)


def test_training_output_flushes_negligible_probabilities_prediction_keeps_them():
    """Probabilities below smallest-normal / eps are zeroed in the training
    pass (subnormal arithmetic is ~100x slower), never in predictions."""
    z = np.array([[0.0, -700.0, 1.0]])  # exp(-701) ~ 1e-305: tiny but normal
    b = np.zeros(3)
    y = np.array([[0.0, 0.0, 1.0]])
    kept = z.copy()
    hooks.py_bias_activation(kept, b, act.activation_code("softmax"))
    assert 0 < kept[0, 1] < 1e-300
    delta = np.empty_like(z)
    hooks.py_output_loss(z, b, y, None, delta, act.loss_code("log_loss"))
    assert z[0, 1] == 0 and delta[0, 1] == 0
    np.testing.assert_allclose(z[0, [0, 2]], kept[0, [0, 2]], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_byte_targets_train_as_float_targets(dtype):
    """Indicator targets given as bytes (what classifiers pass, 1/8 of a
    float64 copy) give the same epochs and losses as the float targets."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(53, 6)).astype(dtype)
    Y = (rng.uniform(size=(53, 3)) > 0.6)
    order = rng.permutation(53).astype(np.intp)
    results = []
    for targets in (Y.astype(dtype), Y.view(np.uint8)):
        engine = _engine.Engine([6, 5, 3], act.activation_code("tanh"),
                                act.loss_code("binary_log_loss"), dtype)
        engine.params[...] = np.linspace(-0.5, 0.5, engine.params.size)
        engine.set_optimizer("adam", 0.01)
        totals = [engine.run_epoch(X, targets, None, o, 10, 1e-3) for o in (order, None)]
        full = engine.loss_gradient(X, targets, None, 1e-3, gradient=False)
        results.append((totals, full, engine.params.copy()))
    assert results[0][0] == results[1][0] and results[0][1] == results[1][1]
    np.testing.assert_array_equal(results[0][2], results[1][2])
    with pytest.raises(ValueError, match="0 or 1"):
        engine.loss_gradient(X, np.full((53, 3), 2, dtype=np.uint8), None, 0.0)
