"""Backpropagation made visible: a layer-by-layer trace and a gradient check.

Both read what the compiled engine computes (``Engine.trace`` and
``Engine.loss_gradient``); nothing here is a second implementation of the
forward or backward pass. Notation of the standard lecture derivations, for
layers l = 1..L and a batch of B rows (X is A^0)::

    Z^l = A^{l-1} W^l + b^l          A^l = f(Z^l)
    delta^L = A^L - Y                delta^l = (delta^{l+1} (W^{l+1})^T) * f'(Z^l)
    dC/dW^l = ((A^{l-1})^T delta^l + alpha W^l + alpha_l1 sign(W^l)) / B
    dC/db^l = sum_rows(delta^l) / B
"""

import copy
from dataclasses import dataclass

import numpy as np

from . import _network as network
from ._registry import LOSS_NAMES


@dataclass(frozen=True, repr=False)
class LayerTrace:
    """One layer l of a forward and backward pass.

    Attributes
    ----------
    l : int
        Layer number, 1 (first hidden layer) to L (output layer).
    W : ndarray of shape (n_{l-1}, n_l)
        Weights W^l (a copy).
    b : ndarray of shape (n_l,)
        Biases b^l (a copy).
    z : ndarray of shape (B, n_l)
        Weighted inputs Z^l = A^{l-1} W^l + b^l.
    a : ndarray of shape (B, n_l)
        Activations A^l = f(Z^l).
    delta : ndarray of shape (B, n_l)
        Errors delta^l = dC_i/dZ^l of each row i (times its sample weight).
    dC_dW : ndarray of shape (n_{l-1}, n_l)
        Gradient of the cost with respect to W^l, L2 term included.
    dC_db : ndarray of shape (n_l,)
        Gradient of the cost with respect to b^l.
    """

    l: int
    W: np.ndarray
    b: np.ndarray
    z: np.ndarray
    a: np.ndarray
    delta: np.ndarray
    dC_dW: np.ndarray
    dC_db: np.ndarray

    def __repr__(self):
        return (
            f"LayerTrace(l={self.l}, W{self.W.shape}, z/a/delta{self.z.shape}, "
            f"|dC/dW|max={np.abs(self.dC_dW).max():.3g}, "
            f"|dC/db|max={np.abs(self.dC_db).max():.3g})"
        )


@dataclass(frozen=True, repr=False)
class BackpropTrace:
    """The result of :func:`backprop_trace`: ``trace[l]`` is layer l (1-based).

    Built by `backprop_trace`; each parameter is also an attribute.

    Parameters
    ----------
    loss : float
        The cost C (as the estimator's ``loss_``), L2 term included.
    x : ndarray of shape (B, n_0)
        The input rows A^0 (dense).
    layers : tuple of LayerTrace
        Layers 1..L.
    """

    loss: float
    x: np.ndarray
    layers: tuple

    def __getitem__(self, l):
        if not 1 <= l <= len(self.layers):
            raise IndexError(f"layers are numbered 1..{len(self.layers)}, got {l}")
        return self.layers[l - 1]

    def __len__(self):
        return len(self.layers)

    def __repr__(self):
        lines = [f"BackpropTrace(loss={self.loss:.6g}, B={self.x.shape[0]}, L={len(self)})"]
        lines += [f"  {layer!r}" for layer in self.layers]
        return "\n".join(lines)


def backprop_trace(estimator, X, y, sample_weight=None):
    """Run one forward and backward pass of a fitted model and return every
    intermediate, per layer, in the lecture notation.

    The numbers are those the engine computes when training on the batch X
    (the same kernels and BLAS calls; dropout masks as the model's next step
    would draw them, batch normalisation with the statistics of X); the
    model is not changed. ``z`` of a batch-normalised layer is its
    normalised pre-activation gamma Zhat + b.

    Parameters
    ----------
    estimator : fitted MLPClassifier or MLPRegressor
    X : {array-like, sparse matrix} of shape (B, n_features)
        The batch; keep it small: the trace holds 3 x B x sum(n_l) values.
    y : array-like of shape (B,) or (B, n_outputs)
        Labels (classifier; must be among ``classes_``) or targets.
    sample_weight : array-like of shape (B,), default=None

    Returns
    -------
    trace : BackpropTrace
        ``trace[l].z``, ``.a``, ``.delta``, ``.dC_dW``, ``.dC_db`` for
        l = 1..L; ``trace.x`` is A^0 and ``trace.loss`` the cost.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    ValueError
        For input the estimator itself would reject, or unseen labels.
    """
    X, Y, sw = network.engine_data(estimator, X, y, sample_weight)
    engine = copy.deepcopy(estimator._engine)  # leaves the model untouched
    loss, z, a, delta = engine.trace(X, Y, sw, estimator.alpha, estimator.alpha_l1)
    grads = _split(engine, engine.grads)
    layers = tuple(
        LayerTrace(l + 1, W.copy(), b.copy(), z[l], a[l], delta[l], *grads[l])
        for l, (W, b) in enumerate(zip(engine.coefs, engine.intercepts))
    )
    dense_x = X.toarray() if hasattr(X, "toarray") else X
    return BackpropTrace(loss, dense_x, layers)


def _split(engine, flat):
    """[(dW^l, db^l) for l = 1..L] from a flat vector in the engine's layout."""
    out, w_at = [], 0
    b_at = sum(c.size for c in engine.coefs)
    for W, b in zip(engine.coefs, engine.intercepts):
        out.append((flat[w_at : w_at + W.size].reshape(W.shape), flat[b_at : b_at + b.size]))
        w_at += W.size
        b_at += b.size
    return out


@dataclass(frozen=True, repr=False)
class GradientCheckReport:
    """The result of :func:`check_gradients`.

    Built by `check_gradients`; each parameter is also an attribute, and
    `max_error` and `passed` sum them up.

    Parameters
    ----------
    errors : dict of str to float
        Relative error per block, keys ``"W1", "b1", ..., "WL", "bL"`` (and
        ``"gamma1", ...`` for batch normalisation's scales):
        max|backprop - numeric| / max(max|numeric|, max|backprop|, floor),
        floor = 10 eps_dtype max(abs(C), 1) / (h tol): a difference of ten
        round-offs of the difference quotient passes.
    tol : float
        The error up to which a block passes.
    eps : float
        The finite-difference step h.
    """

    errors: dict
    tol: float
    eps: float

    @property
    def max_error(self):
        """The largest relative error over all blocks."""
        return max(self.errors.values())

    @property
    def passed(self):
        """True when every block's relative error is at most `tol`."""
        return self.max_error <= self.tol

    def __bool__(self):
        return self.passed

    def __repr__(self):
        verdict = "passed" if self.passed else "FAILED"
        lines = [f"GradientCheckReport: {verdict} (max relative error "
                 f"{self.max_error:.2e}, tol {self.tol:.0e}, h {self.eps:.0e})"]
        for name, err in self.errors.items():
            flag = "ok" if err <= self.tol else "FAIL"
            lines.append(f"  {name:>4}  {err:.2e}  {flag}")
        return "\n".join(lines)


def _training_pass(engine, X, Y, sw, penalties, params=None):
    """The loss of a training step, its gradient left in engine.grads;
    penalties = (alpha, alpha_l1). Every call draws the same dropout masks
    (the stream is rewound to where the model's next step would start), so
    the cost is one deterministic function of the parameters."""
    alpha, alpha_l1 = penalties
    rng = engine.dropout_rng
    loss = engine.loss_gradient(X, Y, sw, alpha, params, alpha_l1=alpha_l1, training=True)
    engine.dropout_rng = rng
    return loss


def _backprop_gradient(engine, X, Y, sw, penalties):
    """The engine's gradient (what the optimizer receives), flat."""
    _training_pass(engine, X, Y, sw, penalties)
    return engine.grads.astype(np.float64)


def _objective(engine, X, Y, sw, penalties, params):
    """The cost whose gradient backpropagation computes.

    scikit-learn reports squared error averaged over the k outputs while its
    output delta A - Y is the gradient of their sum, so for k > 1 the data
    term is multiplied by k here; every other loss is used as reported.
    """
    alpha, alpha_l1 = penalties
    loss = _training_pass(engine, X, Y, sw, penalties, params)
    k = Y.shape[1]
    if LOSS_NAMES[engine.loss] != "squared_error" or k == 1:
        return loss
    n_coefs = sum(c.size for c in engine.coefs)
    w = np.asarray(params[:n_coefs], dtype=np.float64)
    s = Y.shape[0] if sw is None else float(np.sum(sw))
    penalty = (0.5 * alpha * np.dot(w, w) + alpha_l1 * np.abs(w).sum()) / s
    return k * (loss - penalty) + penalty


def _numeric_gradient(engine, X, Y, sw, alpha, w0, eps):
    """The centred differences (C(w0 + h e_i) - C(w0 - h e_i)) / 2h, h = eps."""
    numeric = np.empty_like(w0)
    for i in range(w0.size):
        w = w0.copy()
        w[i] += eps
        up = _objective(engine, X, Y, sw, alpha, w)
        w[i] -= 2 * eps
        down = _objective(engine, X, Y, sw, alpha, w)
        numeric[i] = (up - down) / (2 * eps)
    return numeric


def check_gradients(estimator, X, y, eps=None, sample_weight=None, tol=None):
    """Compare backpropagation's gradient with centred finite differences.

    For every weight and bias w_i of a fitted model, the numeric derivative
    (C(w + h e_i) - C(w - h e_i)) / 2h of the cost on (X, y) is compared
    with the gradient the engine computes by backpropagation, block by
    block (each W^l and b^l). The truncation error of the centred difference
    is O(h^2); its round-off error O(machine eps / h). For a model with
    dropout or batch normalisation the cost is a training step's: with the
    dropout masks the model's next step would draw (the same at every
    evaluation) and the batch statistics of X, whose gradient flows through
    the normalisation; the scales gamma^l are checked too.

    Parameters
    ----------
    estimator : fitted MLPClassifier or MLPRegressor
        Not modified (the check runs on a copy of its parameters).
    X : {array-like, sparse matrix} of shape (B, n_features)
        A small batch: the check costs 2 passes over X per parameter.
    y : array-like of shape (B,) or (B, n_outputs)
        Labels (classifier; among ``classes_``) or targets.
    eps : float, default=None
        Step h; None means 1e-6 for float64 models, 1e-2 for float32.
    sample_weight : array-like of shape (B,), default=None
    tol : float, default=None
        Largest relative error that passes; None means 1e-6 (float64) or
        2e-2 (float32).

    Returns
    -------
    report : GradientCheckReport
        Per-block relative errors, ``passed`` and a readable ``repr``.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    ValueError
        If X, y or sample_weight would be rejected by the estimator, or y
        holds labels not in ``classes_``.

    Notes
    -----
    A ReLU network has kinks: a pre-activation within h of 0 makes the
    numeric derivative meaningless there, which can fail the check without
    any error in backpropagation. Use float64 models and small h.
    """
    X, Y, sw = network.engine_data(estimator, X, y, sample_weight)
    engine = copy.deepcopy(estimator._engine)
    double = engine.dtype == np.float64
    eps = (1e-6 if double else 1e-2) if eps is None else float(eps)
    tol = (1e-6 if double else 2e-2) if tol is None else float(tol)
    alpha = (estimator.alpha, estimator.alpha_l1)

    analytic = _backprop_gradient(engine, X, Y, sw, alpha)
    w0 = engine.params.astype(np.float64)
    numeric = _numeric_gradient(engine, X, Y, sw, alpha, w0, eps)

    # Errors are relative to the block's largest entry, but a difference of
    # up to 10 round-offs of the quotient (eps_T |C| / h each) always passes:
    # below that the numeric derivative has no digits left to compare.
    cost = abs(_objective(engine, X, Y, sw, alpha, w0))
    floor = 10 * np.finfo(engine.dtype).eps * max(cost, 1.0) / (eps * tol)
    errors = {}
    for (name, g), (_, n) in zip(_blocks(engine, analytic), _blocks(engine, numeric)):
        scale = max(np.abs(n).max(), np.abs(g).max(), floor)
        errors[name] = float(np.abs(g - n).max() / scale)
    return GradientCheckReport(errors, tol, eps)


def _blocks(engine, flat):
    """(name, block) of a flat vector in the engine's layout: W1, b1, ...,
    WL, bL, then batch normalisation's gamma1, ..., gamma(L-1)."""
    out = []
    for l, (dW, db) in enumerate(_split(engine, flat), start=1):
        out += [(f"W{l}", dW), (f"b{l}", db)]
    at = sum(c.size + b.size for c, b in zip(engine.coefs, engine.intercepts))
    for l, gamma in enumerate(engine.batch_norm_scales, start=1):
        out.append((f"gamma{l}", flat[at : at + gamma.size]))
        at += gamma.size
    return out
