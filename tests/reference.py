"""The activations' formulas in numpy: an oracle for the tests, independent of
the C kernels (training never calls these), beside the registry's names and
codes as the tests use them (name tuples, not cnn_bp._registry's records).
"""

import numpy as np

from cnn_bp._registry import (  # noqa: F401 (for the tests)
    ACTIVATION_NAMES,
    DERIVATIVE_FROM_Z,
    HIDDEN_ACTIVATIONS,
    LOSS_NAMES,
    OUTPUT_ACTIVATION,
    SKLEARN_ACTIVATIONS,
    activation_code,
    loss_code,
)

ACTIVATIONS = ACTIVATION_NAMES
LOSSES = LOSS_NAMES

#: SELU's constants (Klambauer et al. 2017, eq. 14).
SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


def forward(name, z, negative_slope=0.01):
    """a = f(z) for activation `name`, row-wise for softmax.

    Parameters
    ----------
    name : str
    z : ndarray of shape (n_samples, n_units)
    negative_slope : float
        leaky_relu's slope for z < 0.

    Returns
    -------
    a : ndarray of the shape of `z`
    """
    from scipy.special import erf, expit

    if name == "identity":
        return z.copy()
    if name == "logistic":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    if name == "leaky_relu":
        return np.where(z > 0, z, negative_slope * z)
    if name == "selu":
        return SELU_LAMBDA * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0)))
    if name == "softplus":
        return np.logaddexp(0, z)
    if name == "gelu":
        return 0.5 * z * (1 + erf(z / np.sqrt(2)))
    if name == "gelu_tanh":
        return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))
    if name == "silu":
        return z * expit(z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if name == "exp":
        return np.exp(z)
    raise ValueError(f"unknown activation {name!r}")


def derivative(name, a, z=None, negative_slope=0.01):
    """f'(z), from the activation a = f(z) where that is exact, else from z.

    From a: logistic a(1 - a), tanh 1 - a^2, relu [a > 0] (taking f'(0) = 0),
    elu 1 for a > 0 else a + 1, leaky_relu 1 for a > 0 else the slope, selu
    lambda for a > 0 else a + lambda alpha, softplus 1 - exp(-a), identity 1.
    From z (DERIVATIVE_FROM_Z): gelu Phi(z) + z phi(z); gelu_tanh by the
    product rule on its formula; silu sigma(z) (1 + z (1 - sigma(z))).
    """
    from scipy.special import erf, expit

    if name in DERIVATIVE_FROM_Z and z is None:
        raise ValueError(f"the derivative of {name!r} needs z")
    if name == "identity":
        return np.ones_like(a)
    if name == "logistic":
        return a * (1 - a)
    if name == "tanh":
        return 1 - a**2
    if name == "relu":
        return (a > 0).astype(a.dtype)
    if name == "elu":
        return np.where(a > 0, 1, a + 1).astype(a.dtype)
    if name == "leaky_relu":
        return np.where(a > 0, 1, negative_slope).astype(a.dtype)
    if name == "selu":
        return np.where(a > 0, SELU_LAMBDA, a + SELU_LAMBDA * SELU_ALPHA).astype(a.dtype)
    if name == "softplus":
        return -np.expm1(-a)
    if name == "gelu":
        return 0.5 * (1 + erf(z / np.sqrt(2))) + z * np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    if name == "gelu_tanh":
        c = np.sqrt(2 / np.pi)
        t = np.tanh(c * (z + 0.044715 * z**3))
        return 0.5 * (1 + t) + 0.5 * z * (1 - t**2) * c * (1 + 3 * 0.044715 * z**2)
    if name == "silu":
        s = expit(z)
        return s * (1 + z * (1 - s))
    raise ValueError(f"no derivative for activation {name!r}")
