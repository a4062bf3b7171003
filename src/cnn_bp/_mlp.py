"""MLPClassifier and MLPRegressor: scikit-learn's estimators over the compiled engine.

Layer: the top, the estimators only. Imports the trainer (``_training.py``:
how a fit runs), the network (``_network.py``: parameters <-> engine), the
engine (for prediction), the registry and the docstrings; nothing imports
this module but the package's public names, ``cnn_bp.dask`` (which
subclasses the estimators) and persistence (which rebuilds them).

An estimator holds its parameters (and their constraints) and fitted
attributes, and predicts: a fit is ``Trainer(self).fit(...)``, which checks
the data through the network; a prediction is one engine call after the
cheapest check that is exact (a plain float ndarray of the fitted width
skips ``validate_data``; the engine checks finiteness through X W^1).
"""

import copy
import os
from abc import ABC, abstractmethod
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _docstrings
from . import _network as network
from ._checks import all_finite
from ._compat import (
    CallbackSupportMixin,
    Interval,
    Options,
    StrOptions,
    _check_partial_fit_first_call,
    _fit_context,
)
from ._passes import BN_EPSILON
from ._registry import (
    HIDDEN_ACTIVATIONS,
    HYPERPARAMETERS,
    LOSSES,
    SKLEARN_ACTIVATIONS,
    SOLVER_CHOICES,
    STOCHASTIC_SOLVERS,
)
from ._training import Trainer, exclusive, restored_on_error


def _set_params(estimator, params):
    """Store an __init__'s arguments (its ``locals()``) as attributes, as
    given: scikit-learn's convention, one line for the 30-odd parameters."""
    for name, value in params.items():
        if name != "self":
            setattr(estimator, name, value)


class BaseMultilayerPerceptron(CallbackSupportMixin, BaseEstimator, ABC):
    """Shared fitting and prediction logic; use MLPClassifier or MLPRegressor."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS)), list, tuple],
        "solver": [StrOptions(set(SOLVER_CHOICES))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"),
            Options(Real, {np.inf}),
        ],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "negative_slope": [Interval(Real, 0, None, closed="left")],
        "clip_norm": [None, Interval(Real, 0, None, closed="neither")],
        "alpha_l1": [Interval(Real, 0, None, closed="left")],
        "lr_schedule": [None, callable],
        "scoring": [None, str, callable],
        "max_norm": [None, Interval(Real, 0, None, closed="neither")],
        "dropout": [Interval(Real, 0, 1, closed="left"), list, tuple],
        "batch_norm": ["boolean"],
        "checkpoint_dir": [None, str, os.PathLike],
        "init": [StrOptions({"glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                             "lecun_normal"})],
        # the solvers' (cnn_bp._registry.HYPERPARAMETERS)
        **{h.name: ["boolean" if h.interval == "boolean"
                    else Interval(Real, *h.interval[:2], closed=h.interval[2])]
           for h in HYPERPARAMETERS},
    }

    def __sklearn_is_fitted__(self):
        # The engine is made by the first successful fit (a failed one
        # restores __dict__): one lookup instead of scanning vars(self).
        return "_engine" in self.__dict__

    def __getstate__(self):
        if hasattr(self, "_engine"):
            network.sync_engine(self)
        state = dict(super().__getstate__())  # may be the live __dict__
        # coefs_ / intercepts_ are views of the engine's buffer: rebuilt on load.
        state.pop("coefs_", None)
        state.pop("intercepts_", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "_engine" in state:
            network.attach(self, self._engine)

    # -- fitting (cnn_bp._training) --------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    @exclusive
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data, float32 or float64 (other numeric types become
            float64; the model keeps the dtype it was fitted with).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (classification) or real targets (regression).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the loss and its gradient.
        X_val, y_val : array-like of shape (n_val, n_features) and (n_val,) \
or (n_val, n_outputs), default=None
            Validation data of your own for early stopping (as
            HistGradientBoosting's fit): used instead of holding out
            validation_fraction of X. Needs early_stopping=True.
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation samples.

        Returns
        -------
        self : object
            The fitted estimator.

        Raises
        ------
        ValueError
            Invalid parameters, NaN/inf or badly shaped input, validation data
            without early_stopping, an lr_schedule rate that is not a finite
            number >= 0 (the model keeps the epochs trained before it), or a
            solver that produced non-finite weights (the model keeps those
            of the last finite epoch; with early_stopping, the best model is
            kept instead, with a RuntimeWarning, as scikit-learn >= 1.6 does).
        RuntimeError
            If the estimator is being fitted in another thread.

        Notes
        -----
        Ctrl-C (KeyboardInterrupt) stops training between two mini-batches,
        with a warning, as scikit-learn does: the model keeps what was
        trained; ``n_iter_`` and ``loss_curve_`` count finished epochs, and
        ``t_`` the rows trained.
        """
        return Trainer(self).fit(X, y, sample_weight=sample_weight, incremental=False,
                                 validation=(X_val, y_val, sample_weight_val))

    def _check_solver(self):
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic"
                " optimizers. %s is not stochastic." % self.solver
            )
        return True

    # -- prediction -------------------------------------------------------------

    def predict(self, X):
        """Predict with the fitted network.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data, float32 or float64 (the model's dtype reads it without
            a copy); other numeric types are converted.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (MLPClassifier; an indicator matrix for multilabel
            targets) or predicted values (MLPRegressor).
        """
        self._check_fitted()
        return self._predict(X)

    @abstractmethod
    def _predict(self, X, check_input=True):
        """Predictions for X: labels (classifier) or values (regressor)."""

    def _check_fitted(self):
        """check_is_fitted, without its cost (a tenth of a 1-row
        prediction) for a fitted model."""
        if not self.__sklearn_is_fitted__():
            check_is_fitted(self)

    def _forward_pass_fast(self, X, check_input=True, layer=None):
        """Output activations (n_samples, n_outputs) for X, in the model's
        dtype; or those of layer `layer` (1 .. n_layers_ - 2, the engine's
        numbering of hidden layers)."""
        fast = check_input and self._needs_no_validation(X)
        if check_input and not fast:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        network.sync_engine(self)
        out = self._engine.predict(network.engine_input(self, X), layer=layer,
                                   check_finite=fast)
        if out is None:
            # inf or NaN in Z^1 = X W^1: validate_data raises scikit-learn's error
            # if X has any; else a product overflowed, and this reruns unchecked
            X = validate_data(self, X, reset=False)
            out = self._engine.predict(network.engine_input(self, X), layer=layer)
        if check_input and not all_finite(out):
            # scikit-learn would return inf/NaN here; internal scoring (which
            # passes check_input=False) still sees them and scores NaN.
            raise ValueError(
                "The network's output overflows (is not finite) for this input: its "
                "weights or the input are too large. Scale X (e.g. with "
                "StandardScaler) and refit."
            )
        return out

    def to_sklearn(self):
        """This fitted model as a fitted scikit-learn estimator.

        The same weights in ``sklearn.neural_network.MLPClassifier`` /
        ``MLPRegressor``, so that tools built for those (ONNX export through
        skl2onnx, say) take it. Predictions agree to round-off. Batch
        normalisation, an affine map at prediction time, is folded into the
        weights: W^l diag(s) and (b^l - s mu^l), s = gamma^l / sqrt(var^l +
        eps) with the running estimates; dropout is off at prediction.

        Returns
        -------
        model : sklearn.neural_network.MLPClassifier or MLPRegressor
            Fitted; its weights are copies. A cnn_bp-only solver becomes
            'adam' there (it only matters if that model is trained further).

        Raises
        ------
        ValueError
            If the model uses what scikit-learn lacks: an activation other
            than identity/logistic/tanh/relu or one per layer, or the huber
            or absolute_error loss.
        """
        from sklearn import neural_network

        check_is_fitted(self)
        names = set(network.hidden_activations(self, self.n_layers_ - 2)) or {"relu"}
        lacking = sorted(names - set(SKLEARN_ACTIVATIONS))
        if lacking:
            raise ValueError(
                f"scikit-learn's MLP has no hidden activation {', '.join(lacking)}: its "
                f"activations are {', '.join(SKLEARN_ACTIVATIONS)}"
            )
        if len(names) > 1:
            raise ValueError(
                f"scikit-learn's MLP has one activation for all hidden layers; this model "
                f"has {', '.join(sorted(names))}"
            )
        cls = getattr(neural_network, type(self).__name__)
        if self.loss in ("huber", "absolute_error") or (
                self.loss == "poisson" and "loss" not in cls().get_params()):
            raise ValueError(f"scikit-learn's MLPRegressor has no loss {self.loss!r} "
                             "(poisson came with scikit-learn 1.7)")
        ours = self.get_params()
        params = {k: ours[k] for k in cls().get_params()}
        params["activation"] = names.pop()
        if params["solver"] not in ("lbfgs", "sgd", "adam"):
            params["solver"] = "adam"
        model = cls(**params)
        own = ("coefs_", "intercepts_", "batch_norm_scales_", "running_means_",
               "running_vars_")
        for name, value in vars(self).items():
            if name.endswith("_") and not name.startswith("_") and name not in own:
                setattr(model, name, copy.deepcopy(value))
        model.coefs_ = [c.copy() for c in self.coefs_]
        model.intercepts_ = [b.copy() for b in self.intercepts_]
        if self.batch_norm:
            for l, (gamma, mean, var) in enumerate(
                zip(self.batch_norm_scales_, self.running_means_, self.running_vars_)
            ):
                scale = gamma / np.sqrt(var + BN_EPSILON)
                model.coefs_[l] *= scale
                model.intercepts_[l] -= scale * mean
        if hasattr(self, "_label_binarizer"):
            model._label_binarizer = copy.deepcopy(self._label_binarizer)
        return model

    def hidden_activations(self, X, layer=-1):
        """Activations of a hidden layer for X: the learned representation.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data, validated as by ``predict``.
        layer : int, default=-1
            Which hidden layer: 0 is the first, -1 the last (Python indexing
            over the ``n_layers_ - 2`` hidden layers).

        Returns
        -------
        A : ndarray of shape (n_samples, hidden_layer_sizes[layer])
            f(Z) of that layer, in the model's dtype.

        Raises
        ------
        IndexError
            If the network has no such hidden layer.
        """
        check_is_fitted(self)
        n_hidden = self.n_layers_ - 2
        if not -n_hidden <= layer < n_hidden:
            raise IndexError(
                f"layer {layer} is out of range for a network of {n_hidden} hidden layers"
            )
        return self._forward_pass_fast(X, layer=layer % n_hidden + 1)

    def _needs_no_validation(self, X):
        """Whether X is already what validate_data would return, but for
        finiteness: a plain 2-D float ndarray, non-empty, of the fitted
        width, for a model fitted without feature names. This is the
        prediction fast path (validate_data costs ten 1-row forward
        passes): the engine checks X (through X W^1) for inf and NaN, and on
        any, validate_data raises scikit-learn's error; anything else goes
        through validate_data first."""
        return (
            type(X) is np.ndarray
            and X.ndim == 2
            and X.dtype in network.FLOAT_DTYPES
            and X.shape[0] > 0
            and X.shape[1] == self.n_features_in_
            and "feature_names_in_" not in self.__dict__
        )

    def _score_with_function(self, X, y, sample_weight, score_function):
        """Score without input validation (validation would drop feature names)."""
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, BaseMultilayerPerceptron):
    loss = "log_loss"  # not a parameter: the one loss of a classifier

    _parameter_constraints: dict = {
        **BaseMultilayerPerceptron._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
        alpha=0.0001, batch_size="auto", learning_rate="constant",
        learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
        random_state=None, tol=1e-4, verbose=False, warm_start=False,
        momentum=0.9, nesterovs_momentum=True, early_stopping=False,
        validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
        n_iter_no_change=10, max_fun=15000, negative_slope=0.01,
        weight_decay=0.01, rho=0.9, clip_norm=None, alpha_l1=0.0,
        lr_schedule=None, scoring=None, init="glorot_uniform",
        max_norm=None, dropout=0.0, batch_norm=False, class_weight=None,
        checkpoint_dir=None,
    ):
        _set_params(self, locals())

    def _predict(self, X, check_input=True):
        return network.labels(self, self._forward_pass_fast(X, check_input=check_input))

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, accuracy_score)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    @exclusive
    def partial_fit(self, X, y, sample_weight=None, classes=None, *, X_val=None, y_val=None,
                    sample_weight_val=None):
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            A chunk of the training data (every call's with the same columns).
        y : array-like of shape (n_samples,)
            The target labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        classes : array of shape (n_classes,), default=None
            All classes that y may hold over the calls; required on the first.
        X_val, y_val, sample_weight_val : default=None
            Validation data for early stopping across calls (see
            ``MLPRegressor.partial_fit``).

        Returns
        -------
        self : object
            The model, trained one epoch more on X and y.

        Raises
        ------
        ValueError
            No classes on the first call, labels in y that are not among
            them, early_stopping=True without X_val and y_val
            (scikit-learn's error), X_val without early_stopping, or bad
            input.
        RuntimeError
            If the estimator is being fitted in another thread.
        """
        state = self.__dict__.copy()
        with restored_on_error(self, state):
            if _check_partial_fit_first_call(self, classes):
                self._label_binarizer = LabelBinarizer()
                if type_of_target(y).startswith("multilabel"):
                    self._label_binarizer.fit(y)
                else:
                    self._label_binarizer.fit(classes)
        return Trainer(self).fit(X, y, sample_weight=sample_weight, incremental=True,
                                 state=state, validation=(X_val, y_val, sample_weight_val))

    def predict_proba(self, X):
        """Probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data, checked as by ``predict``.

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            Probability of each class, in the order of ``classes_`` (for
            a binary target two columns, 1 - p and p).
        """
        self._check_fitted()
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X):
        """Logarithm of the probability estimates, ``log(predict_proba(X))``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            As for ``predict_proba``.

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
            The natural logarithm of each class's probability, in the
            model's dtype (-inf where a probability underflowed to 0).
        """
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # class_weight weighs rows by one class each: not multilabel targets
        tags.classifier_tags.multi_label = self.class_weight is None
        return tags


MLPClassifier.__doc__ = _docstrings.CLASSIFIER


class MLPRegressor(RegressorMixin, BaseMultilayerPerceptron):
    _parameter_constraints: dict = {
        **BaseMultilayerPerceptron._parameter_constraints,
        "loss": [StrOptions({loss.name for loss in LOSSES if loss.estimator == "regressor"})],
        "huber_delta": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu",
        *, solver="adam", alpha=0.0001, batch_size="auto",
        learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
        max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
        warm_start=False, momentum=0.9, nesterovs_momentum=True,
        early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
        epsilon=1e-8, n_iter_no_change=10, max_fun=15000, negative_slope=0.01,
        weight_decay=0.01, rho=0.9, clip_norm=None, alpha_l1=0.0,
        lr_schedule=None, scoring=None, init="glorot_uniform",
        max_norm=None, dropout=0.0, batch_norm=False, huber_delta=1.0,
        checkpoint_dir=None,
    ):
        _set_params(self, locals())

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, r2_score)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    @exclusive
    def partial_fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
                    sample_weight_val=None):
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            A chunk of the training data (every call's with the same columns).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        X_val, y_val : array-like of shape (n_val, n_features) and (n_val,) \
or (n_val, n_outputs), default=None
            Validation data for early stopping across partial_fit calls (a
            cnn_bp extension; scikit-learn refuses early_stopping here): with
            early_stopping=True, pass the same validation data on every
            call. Each call then scores it (``validation_scores_``,
            ``validation_loss_curve_``) and keeps the best parameters; after
            n_iter_no_change calls without an improvement of tol, the model
            returns to its best parameters, sets ``stopped_early_`` and
            later calls do nothing but warn.
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation samples.

        Returns
        -------
        self : object
            The trained model.

        Raises
        ------
        ValueError
            early_stopping=True without X_val and y_val (scikit-learn's
            error), X_val without early_stopping, or bad input.
        RuntimeError
            If the estimator is being fitted in another thread.
        """
        return Trainer(self).fit(X, y, sample_weight=sample_weight, incremental=True,
                                 validation=(X_val, y_val, sample_weight_val))


MLPRegressor.__doc__ = _docstrings.REGRESSOR
