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
ACTIVATIONS = ("identity", "logistic", "tanh", "relu", "elu", "softmax", "exp")

#: Activations accepted for hidden layers (the ``activation`` parameter).
HIDDEN_ACTIVATIONS = ACTIVATIONS[:5]

#: Loss names; index = ``cnnbp_loss`` code.
LOSSES = ("squared_error", "log_loss", "binary_log_loss", "poisson")

#: The output activation paired with each loss: the canonical link, for
#: which the output delta dC/dZ^L is A^L - Y.
OUTPUT_ACTIVATION = {
    "squared_error": "identity",
    "log_loss": "softmax",
    "binary_log_loss": "logistic",
    "poisson": "exp",
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


def forward(name, z):
    """a = f(z) for activation `name`, row-wise for softmax.

    Parameters
    ----------
    name : str
    z : ndarray of shape (n_samples, n_units)

    Returns
    -------
    a : ndarray of the shape of `z`
    """
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
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if name == "exp":
        return np.exp(z)
    raise ValueError(f"unknown activation {name!r}")


def derivative(name, a):
    """f'(z) written in terms of the activation a = f(z).

    Exact for the hidden activations: logistic a(1 - a), tanh 1 - a^2,
    relu [a > 0] (taking f'(0) = 0), elu 1 for a > 0 else a + 1, identity 1.
    """
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
    raise ValueError(f"no derivative from the output for activation {name!r}")
