"""Activation and loss names, their integer codes in the compiled core, and
numpy reference formulas.

The tuples below are the Python mirror of the enums in ``csrc/cnn_bp.h``: a
name's position is its C code (``tests/test_kernels.py`` checks they agree).
The numpy functions are the formulas in readable form, used by the tests as
an independent oracle; training never calls them.
"""

import numpy as np

#: Activation names; index = ``cnnbp_activation`` code. The last two are
#: output activations only.
ACTIVATIONS = (
    "identity", "logistic", "tanh", "relu", "elu", "leaky_relu", "selu",
    "softplus", "gelu", "gelu_tanh", "silu", "softmax", "exp",
)

#: Activations accepted for hidden layers (the ``activation`` parameter).
HIDDEN_ACTIVATIONS = ACTIVATIONS[:-2]

#: The hidden activations scikit-learn's MLP has.
SKLEARN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")

#: Hidden activations whose derivative is computed from z, not a = f(z)
#: (they are not monotonic, so a does not determine z).
DERIVATIVE_FROM_Z = ("gelu", "gelu_tanh", "silu")

#: SELU's constants (Klambauer et al. 2017, eq. 14).
SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717

#: Loss names; index = ``cnnbp_loss`` code.
LOSSES = ("squared_error", "log_loss", "binary_log_loss", "poisson", "huber",
          "absolute_error")

#: The output activation paired with each loss: the canonical link, for
#: which the output delta dC/dZ^L is A^L - Y (the identity for the robust
#: losses huber and absolute_error, whose delta is dC/dr, r = A^L - Y).
OUTPUT_ACTIVATION = {
    "squared_error": "identity",
    "log_loss": "softmax",
    "binary_log_loss": "logistic",
    "poisson": "exp",
    "huber": "identity",
    "absolute_error": "identity",
}


def activation_code(name):
    """Integer code of activation `name`; ValueError if it is unknown."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    return ACTIVATIONS.index(name)


def loss_code(name):
    """Integer code of loss `name`; ValueError if it is unknown."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {LOSSES}")
    return LOSSES.index(name)


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
