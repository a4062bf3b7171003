"""MLPClassifier and MLPRegressor: scikit-learn's estimators over the compiled engine.

This module is the Python layer of cnn_bp: it validates input, draws every
random number (from ``check_random_state(random_state)``, in scikit-learn's
order), keeps the fitted attributes and runs the epoch loop (early stopping,
``n_iter_no_change``, learning-rate schedules, verbose output). The
arithmetic, a whole epoch per call, happens in ``cnn_bp._engine.Engine``.
"""

import contextlib
import copy
import functools
import math
import re
import textwrap
import threading
import warnings
from abc import ABC, abstractmethod
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, check_scoring, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_consistent_length, check_is_fitted, validate_data

from ._compat import (
    CallbackSupportMixin,
    Interval,
    Options,
    StrOptions,
    _check_optimize_result,
    _check_partial_fit_first_call,
    _check_sample_weight,
    _fit_context,
    _get_additional_lbfgs_options_dict,
)
from ._engine import BN_EPSILON, Engine, all_finite, check_solver, row_argmax
from ._registry import (
    ACTIVATIONS,
    HIDDEN_ACTIVATIONS,
    HYPERPARAMETERS,
    LOSSES,
    SKLEARN_ACTIVATIONS,
    SOLVER_CHOICES,
    SOLVERS,
    STOCHASTIC_SOLVERS,
    activation_code,
    loss_code,
)
from ._threads import training_threads

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_NON_FINITE = (
    "Solver produced non-finite parameter weights. The input data may"
    " contain large values and need to be preprocessed."
)


# Training returns to Python this often (seconds of compiled work), so that
# Ctrl-C interrupts a long epoch between two mini-batches.
_SLICE_SECONDS = 0.02

# Estimators being fitted now (their ids), with the lock that guards the set:
# a second fit of the same estimator would rebuild what the first is using.
_fitting = set()
_fitting_lock = threading.Lock()


def _exclusive(fit_method):
    """Let one fit, partial_fit or warm start of an estimator run at a time;
    a second one, from another thread or a callback, raises RuntimeError
    before touching anything (predict may run alongside)."""

    @functools.wraps(fit_method)
    def wrapper(self, *args, **kwargs):
        with _fitting_lock:
            if id(self) in _fitting:
                raise RuntimeError(
                    f"This {type(self).__name__} is being fitted in another thread "
                    f"(or by a callback of its own fit): {fit_method.__name__} cannot "
                    "run until that fit returns. Fit a clone to train in parallel."
                )
            _fitting.add(id(self))
        try:
            return fit_method(self, *args, **kwargs)
        finally:
            with _fitting_lock:
                _fitting.discard(id(self))

    return wrapper


@contextlib.contextmanager
def _restored_on_error(estimator, state):
    """Any error inside leaves the estimator's __dict__ as `state` (a
    snapshot taken before anything changed)."""
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(state)
        raise


def _engine_array(a, dtype):
    """`a` as the engine reads it: a C-contiguous, aligned array of `dtype`
    in native byte order, copied only when it is not one already (numpy's
    ascontiguousarray keeps misaligned data, which C may not read as T *)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.aligned else a.copy()


def _shuffle(indices, random_state):
    """``indices = sklearn.utils.shuffle(indices, random_state=random_state)``
    in place: the same draws and result (shuffle's swaps depend on positions
    only, so shuffling `indices` is indexing them by the shuffled arange),
    without its input checks (0.4 ms, a fifth of a digits epoch) or copies."""
    random_state.shuffle(indices)


class _Epochs:
    """The epochs of a fit on rows in memory: `run` trains one, shuffled
    from the estimator's random state when it shuffles, in slices of
    compiled work between which Python sees a pending Ctrl-C.
    (cnn_bp.dask has another, whose epochs run where a cluster holds the rows.)"""

    def __init__(self, model, X, y, sample_weight):
        self.model, self.X, self.y, self.sample_weight = model, X, y, sample_weight
        self.Y = model._targets(y)
        self.n_samples = X.shape[0]
        self.order = np.arange(self.n_samples, dtype=np.intp)
        # for callbacks: the fit's data, its targets computed on demand
        self.hook_data = dict(X=X, y=lambda: model._given_targets(y))

    def run(self, batch_size, n_threads):
        """One epoch; returns the sum over its batches of batch loss x batch rows."""
        model, engine = self.model, self.model._engine
        order = None
        if model.shuffle:  # indices, not rows: the engine gathers each batch
            _shuffle(self.order, model._random_state)
            order = self.order
        total, start = 0.0, 0
        while start < self.n_samples:
            total = engine.run_epoch(
                self.X, self.Y, self.sample_weight, order, batch_size, model.alpha,
                alpha_l1=model.alpha_l1, n_threads=n_threads, start=start, total=total,
                seconds=_SLICE_SECONDS,
            )
            start = engine.stopped_at
        return total


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
        "init": [StrOptions({"glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                             "lecun_normal"})],
        # the solvers' (cnn_bp._registry.HYPERPARAMETERS)
        **{h.name: ["boolean" if h.interval == "boolean"
                    else Interval(Real, *h.interval[:2], closed=h.interval[2])]
           for h in HYPERPARAMETERS},
    }

    @abstractmethod
    def __init__(
        self, hidden_layer_sizes, activation, solver, alpha, batch_size,
        learning_rate, learning_rate_init, power_t, max_iter, loss, shuffle,
        random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
        early_stopping, validation_fraction, beta_1, beta_2, epsilon,
        n_iter_no_change, max_fun, negative_slope, weight_decay, rho, clip_norm,
        alpha_l1, lr_schedule, scoring, init, max_norm, dropout, batch_norm,
    ):
        self.activation = activation
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.negative_slope = negative_slope
        self.weight_decay = weight_decay
        self.rho = rho
        self.clip_norm = clip_norm
        self.alpha_l1 = alpha_l1
        self.lr_schedule = lr_schedule
        self.scoring = scoring
        self.init = init
        self.max_norm = max_norm
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun

    # -- the engine and the fitted attributes that view it -------------------

    def _loss_name(self):
        """The engine's loss: log-loss pairs with softmax, binary log-loss with
        logistic outputs (binary and multilabel), else the regressor's loss."""
        if self.out_activation_ == "logistic":
            return "binary_log_loss"
        return self.loss

    def __sklearn_is_fitted__(self):
        # The engine is made by the first successful fit (a failed one
        # restores __dict__): one lookup instead of scanning vars(self).
        return "_engine" in self.__dict__

    def _attach(self, engine):
        """Make `engine` the model's; coefs_ and intercepts_ (and batch
        normalisation's attributes) become its views."""
        self._engine = engine
        self.coefs_ = list(engine.coefs)
        self.intercepts_ = list(engine.intercepts)
        for name, views in (("batch_norm_scales_", engine.batch_norm_scales),
                            ("running_means_", engine.running_means),
                            ("running_vars_", engine.running_vars)):
            if engine.batch_norm:
                setattr(self, name, list(views))
            else:
                self.__dict__.pop(name, None)

    def _sync_engine(self):
        """Rebuild the engine if the user assigned coefs_ / intercepts_ arrays
        of their own (or set them on an estimator never fitted), so that
        every pass uses exactly what the attributes show."""
        engine = self.__dict__.get("_engine")
        if engine is not None and engine.holds(self.coefs_, self.intercepts_):
            return
        coefs = [np.asarray(c) for c in self.coefs_]
        intercepts = [np.asarray(b) for b in self.intercepts_]
        units = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
        dtype = coefs[0].dtype if coefs[0].dtype == np.float32 else np.float64
        new = self._new_engine(units, self._loss_name(), dtype)
        for dst, src in zip(new.coefs + new.intercepts, coefs + intercepts):
            if dst.shape != src.shape:
                raise ValueError(
                    f"coefs_/intercepts_ hold an array of shape {src.shape} where "
                    f"shape {dst.shape} is needed"
                )
            dst[...] = src
        if engine is not None and new.params.shape == engine.params.shape:
            # the state beyond coefs_ and intercepts_: batch norm's scales and
            # running estimates, dropout's stream
            for dst, src in zip(new.batch_norm_scales, engine.batch_norm_scales):
                dst[...] = src
            new.running[...] = engine.running
            new.dropout_rng = engine.dropout_rng
            settings = engine.optimizer_settings()
            if settings is not None:
                new.set_optimizer(**settings)
        self._attach(new)

    def __getstate__(self):
        if hasattr(self, "_engine"):
            self._sync_engine()
        state = dict(super().__getstate__())  # may be the live __dict__
        # coefs_ / intercepts_ are views of the engine's buffer: rebuilt on load.
        state.pop("coefs_", None)
        state.pop("intercepts_", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "_engine" in state:
            self._attach(self._engine)

    def _hidden_activations(self, n_hidden):
        """The activation name of each hidden layer: `activation` repeated, or
        the list given, checked against the network."""
        if isinstance(self.activation, str):
            return [self.activation] * n_hidden
        names = list(self.activation)
        if len(names) != n_hidden:
            raise ValueError(
                f"activation lists {len(names)} activations but the network has "
                f"{n_hidden} hidden layers; give one per hidden layer, or a string"
            )
        unknown = [a for a in names if a not in HIDDEN_ACTIVATIONS]
        if unknown:
            raise ValueError(
                f"unknown activation(s) {unknown}; expected names from {HIDDEN_ACTIVATIONS}"
            )
        return names

    def _dropout_rates(self, n_hidden):
        """The dropout rate of each hidden layer: `dropout` repeated, or the
        list given, checked against the network."""
        if np.ndim(self.dropout) == 0:
            return [float(self.dropout)] * n_hidden
        rates = list(self.dropout)
        if len(rates) != n_hidden:
            raise ValueError(
                f"dropout lists {len(rates)} rates but the network has {n_hidden} "
                "hidden layers; give one per hidden layer, or a single rate"
            )
        if not all(isinstance(r, Real) and 0 <= r < 1 for r in rates):
            raise ValueError(f"dropout rates must be numbers in [0, 1), got {rates}")
        return [float(r) for r in rates]

    def _new_engine(self, layer_units, loss, dtype):
        """An engine for this network: its hidden activations, slope, loss,
        batch normalisation and dropout."""
        n_hidden = len(layer_units) - 2
        names = self._hidden_activations(n_hidden)
        huber_delta = self.huber_delta if loss == "huber" else 1.0
        return Engine(layer_units, [activation_code(a) for a in names], loss_code(loss),
                      dtype, self.negative_slope, huber_delta, self.batch_norm,
                      self._dropout_rates(n_hidden))

    def _seed_dropout(self):
        """Give dropout its stream the first time a fit uses it: one draw
        from the random state, so that without dropout the random numbers
        are scikit-learn's."""
        engine = self._engine
        if any(engine.dropout) and engine.dropout_rng == (0, 0):
            engine.dropout_rng = (int(self._random_state.randint(1, 2**63 - 1)), 0)

    def _init_coef(self, fan_in, fan_out, dtype, activation):
        """W^l and b^l drawn for `init` (see the class docstring)."""
        rng = self._random_state
        if self.init == "glorot_uniform":
            # scikit-learn's: Glorot & Bengio (2010) bounds, factor 2 for
            # logistic units, biases drawn alike
            factor = 2.0 if activation == "logistic" else 6.0
            init_bound = np.sqrt(factor / (fan_in + fan_out))
            coef = rng.uniform(-init_bound, init_bound, (fan_in, fan_out))
            intercept = rng.uniform(-init_bound, init_bound, fan_out)
        else:
            scale = {
                "glorot_normal": np.sqrt(2.0 / (fan_in + fan_out)),  # Glorot & Bengio (2010)
                "he_normal": np.sqrt(2.0 / fan_in),  # He et al. (2015)
                "lecun_normal": np.sqrt(1.0 / fan_in),  # LeCun et al. (1998), for selu
                "he_uniform": np.sqrt(6.0 / fan_in),  # He et al. (2015): the bound
            }[self.init]
            if self.init == "he_uniform":
                coef = rng.uniform(-scale, scale, (fan_in, fan_out))
            else:
                coef = rng.normal(0.0, scale, (fan_in, fan_out))
            intercept = np.zeros(fan_out)
        return coef.astype(dtype, copy=False), intercept.astype(dtype, copy=False)

    def _output_activation(self):
        """out_activation_ for this estimator's loss and targets."""
        if not is_classifier(self):
            return "exp" if self.loss == "poisson" else "identity"
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _fresh_record(self, layer_units):
        """The fitted attributes of a network of `layer_units` that has not
        trained yet, but for its parameters (and classes_)."""
        record = dict(n_iter_=0, t_=0, n_layers_=len(layer_units),
                      n_outputs_=layer_units[-1], n_features_in_=layer_units[0],
                      out_activation_=self._output_activation())
        if self.solver in STOCHASTIC_SOLVERS:
            record.update(loss_curve_=[], _no_improvement_count=0, stopped_early_=False)
            if self.early_stopping:
                record.update(validation_scores_=[], validation_loss_curve_=[],
                              best_validation_score_=-np.inf, best_loss_=None)
            else:
                record.update(best_loss_=np.inf, validation_scores_=None,
                              validation_loss_curve_=None, best_validation_score_=None)
        return record

    def _adopt(self, layer_units):
        """Train on from coefs_ and intercepts_ set by hand on an estimator
        never fitted, as scikit-learn does (its documentation works one SGD
        step so): the engine is built from them, and fitted attributes not
        set by hand start as a fresh fit's."""
        for name, value in self._fresh_record(layer_units).items():
            self.__dict__.setdefault(name, value)
        self._sync_engine()
        self._best_params = self._engine.params.copy()

    def _initialize(self, y, layer_units, dtype):
        self.__dict__.update(self._fresh_record(layer_units))
        engine = self._new_engine(layer_units, self._loss_name(), dtype)
        # Draw in scikit-learn's order: W^1, b^1, W^2, b^2, ... The bound of
        # each layer follows its activation; with one activation string,
        # scikit-learn's rule: that activation's, output layer included.
        names = self._hidden_activations(len(layer_units) - 2)
        names.append(self.activation if isinstance(self.activation, str) else None)
        for coef, intercept, name in zip(engine.coefs, engine.intercepts, names):
            coef[...], intercept[...] = self._init_coef(*coef.shape, dtype, name)
        if engine.batch_norm:
            # a batch-normalised layer's bias is its shift beta: zero, as
            # its scale gamma starts at one (Ioffe & Szegedy 2015; PyTorch)
            for intercept in engine.intercepts[:-1]:
                intercept[...] = 0
        self._attach(engine)
        self._best_params = engine.params.copy()

    def _start_validation_record(self):
        """Empty per-epoch validation records: early stopping starts."""
        self.validation_scores_ = []
        self.validation_loss_curve_ = []
        self.best_validation_score_ = -np.inf
        self.best_loss_ = None
        self._no_improvement_count = 0

    # -- fitting ---------------------------------------------------------------

    def _fit(self, X, y, sample_weight=None, incremental=False, state=None,
             validation=(None, None, None)):
        """Validate, (re)initialise, train. Until training starts, any error
        leaves the estimator exactly as it was (`state`: a snapshot of its
        __dict__ taken by the caller, else here)."""
        state = self.__dict__.copy() if state is None else state
        stochastic = self.solver in STOCHASTIC_SOLVERS
        if self.early_stopping and incremental and validation[0] is None:
            # scikit-learn's error (its partial_fit has no validation data)
            raise ValueError(
                "partial_fit does not support early_stopping=True without validation "
                "data: pass X_val and y_val, the same on every call"
            )
        if incremental and self.early_stopping and getattr(self, "stopped_early_", False):
            warnings.warn(
                f"Early stopping ended training after {len(self.validation_scores_)} "
                "validated partial_fit calls (the validation score did not improve by tol for "
                f"n_iter_no_change={self.n_iter_no_change} calls) and restored the best "
                "parameters: this call does nothing. Call fit to start afresh, or set "
                "early_stopping=False to train on.",
                UserWarning,
            )
            return self
        with _restored_on_error(self, state):
            X, y, sample_weight = self._prepare(X, y, sample_weight, incremental,
                                                validation)
            if stochastic:
                check_solver(self.solver)  # one the compiled core steps
                train, validation = self._validation_split(X, y, sample_weight, validation)
                # the first epoch's scheduled rate, checked before anything trains
                rate = None if self.lr_schedule is None else self._scheduled_rate()
            elif validation[0] is not None:
                raise ValueError("X_val is for early stopping, which lbfgs does not do")
        if stochastic:
            self._fit_stochastic(train, validation, incremental, rate)
        else:
            start = self._engine.params.copy()
            self._fit_lbfgs(X, y, sample_weight)
            if not np.isfinite(self._engine.params).all():
                self._engine.params[...] = start
                raise ValueError(_NON_FINITE + " The model keeps its parameters from before fit.")
        return self

    def _prepare(self, X, y, sample_weight, incremental, validation):
        """Everything before training: checks, the network, engine-ready data."""
        if self.lr_schedule is not None and self.learning_rate != "constant":
            raise ValueError(
                f"lr_schedule replaces scikit-learn's learning_rate={self.learning_rate!r} "
                "schedule: give one of them (learning_rate='constant' with lr_schedule)"
            )
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)
        if not all(isinstance(h, Integral) for h in hidden_layer_sizes):
            raise TypeError(
                f"hidden_layer_sizes must contain integers, got {hidden_layer_sizes}."
            )
        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError(
                "hidden_layer_sizes must be > 0, got %s." % hidden_layer_sizes
            )
        first_pass = not hasattr(self, "coefs_") or (
            not self.warm_start and not incremental
        )
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        sample_weight = self._weigh_classes(y, sample_weight)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        layer_units = [X.shape[1], *hidden_layer_sizes, y.shape[1]]
        self._random_state = check_random_state(self.random_state)
        rates = self._dropout_rates(len(hidden_layer_sizes))
        if self.solver == "lbfgs" and (self.batch_norm or any(rates)):
            raise ValueError(
                "dropout and batch_norm need a stochastic solver: L-BFGS minimises "
                "one deterministic full-batch loss; use solver='adam' or 'sgd'"
            )

        if first_pass:
            self._initialize(y, layer_units, X.dtype)
        else:
            if "_engine" in self.__dict__:
                self._sync_engine()
            else:
                self._adopt(layer_units)
            if list(self._engine.layer_units) != layer_units:
                raise ValueError(
                    f"The fitted network has layer sizes {self._engine.layer_units}"
                    f" but the data and hidden_layer_sizes give {tuple(layer_units)};"
                    " warm_start and partial_fit need the same architecture."
                )
            if self._engine.batch_norm != self.batch_norm:
                raise ValueError(
                    f"The fitted network has batch_norm={self._engine.batch_norm}; "
                    "warm_start and partial_fit cannot change it."
                )
        self.n_outputs_ = y.shape[1]
        X = self._engine_input(X)
        if sample_weight is not None:
            sample_weight = _engine_array(sample_weight, X.dtype)
        return X, y, sample_weight

    def _weigh_classes(self, y, sample_weight):
        """sample_weight times the class weights (MLPClassifier's class_weight);
        the regressor has none."""
        return sample_weight

    def _engine_input(self, X):
        """X as the engine reads it, in the model's dtype: dense C-contiguous
        and aligned, or CSR (CSC is converted; sparse X is never densified)."""
        if type(X) is not np.ndarray and sp.issparse(X):
            X = X.tocsr().astype(self._engine.dtype, copy=False)
            return X if X.data.flags.aligned else X.copy()
        return _engine_array(X, self._engine.dtype)

    def _targets(self, y):
        """y as the engine reads it, (n_samples, n_outputs) C-contiguous: a
        classifier's bool indicator matrix as bytes, converted batch by batch
        in the engine (a float copy of one-hot targets is 4-8x larger: it was
        the peak memory of float64 fits), real targets in the model's dtype."""
        if y.dtype == bool:
            return np.ascontiguousarray(y).view(np.uint8)
        return _engine_array(y, self._engine.dtype)

    def _fit_lbfgs(self, X, y, sample_weight):
        engine = self._engine
        Y = self._targets(y)

        def loss_and_gradient(params):
            loss = engine.loss_gradient(X, Y, sample_weight, self.alpha, params,
                                        alpha_l1=self.alpha_l1)
            return loss, engine.grads.astype(np.float64)

        self._minimize_lbfgs(loss_and_gradient)

    def _minimize_lbfgs(self, loss_and_gradient):
        """scipy's L-BFGS-B from the engine's parameters, as scikit-learn
        runs it; `loss_and_gradient(params)` gives (loss, float64 gradient)."""
        engine = self._engine
        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        result = scipy.optimize.minimize(
            loss_and_gradient,
            engine.params.astype(np.float64),
            method="L-BFGS-B",
            jac=True,
            options={
                "maxfun": self.max_fun,
                "maxiter": self.max_iter,
                "gtol": self.tol,
                **_get_additional_lbfgs_options_dict("iprint", iprint),
            },
        )
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = result.fun
        engine.params[...] = result.x

    def _scheduled_rate(self):
        """lr_schedule's rate for the next epoch (numbered over all fits and
        partial_fit calls: len(loss_curve_)), checked to be a finite number >= 0
        (0, where an annealing ends as torch's CosineAnnealingLR does, takes
        no step; a negative rate would climb the loss)."""
        epoch = len(self.loss_curve_)
        rate = self.lr_schedule(epoch, self.learning_rate_init)
        if (isinstance(rate, Real) and not isinstance(rate, (bool, np.bool_))
                and math.isfinite(rate) and rate >= 0):
            return float(rate)
        raise ValueError(
            f"lr_schedule returned {rate!r} for epoch {epoch} (lr_init="
            f"{self.learning_rate_init}); a learning rate must be a finite number >= 0"
        )

    def _start_optimizer(self):
        solver = SOLVERS[STOCHASTIC_SOLVERS.index(self.solver)]
        settings = {name: getattr(self, name) for name in solver.hyperparameters}
        self._engine.set_optimizer(
            self.solver, float(self.learning_rate_init), clip_norm=self.clip_norm,
            max_norm=self.max_norm, **settings
        )

    def _validation_split(self, X, y, sample_weight, given):
        """(train, validation): (X, y, sample_weight) to train on and
        (X, labels, sample_weight, targets) to validate on. With early
        stopping: the given validation data (X_val, y_val, sample_weight_val),
        or a split as scikit-learn does (stratified for single-output
        classification, from the same random state, right after the weights
        were drawn); else everything trains and validation is (None,) * 4."""
        X_val, y_val, sw_val = given
        if X_val is not None or y_val is not None or sw_val is not None:
            if X_val is None or y_val is None:
                raise ValueError("X_val and y_val must be given together")
            if not self.early_stopping:
                raise ValueError(
                    "X_val and y_val are passed while early_stopping is False; "
                    "validation data serves early stopping only: set early_stopping=True"
                )
            X_e, Y_e, sw_e = self._engine_data(X_val, y_val, sw_val)
            y_val = np.asarray(y_val)
            if is_classifier(self) and y_val.ndim == 2 and y_val.shape[1] == 1:
                y_val = y_val.ravel()
            return (X, y, sample_weight), (X_e, y_val, sw_e, Y_e)
        if not self.early_stopping:
            return (X, y, sample_weight), (None, None, None, None)
        stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
        arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
        parts = train_test_split(
            *arrays,
            random_state=self._random_state,
            test_size=self.validation_fraction,
            stratify=stratify,
        )
        X_train, X_val, y_train, y_val = parts[:4]
        sw_train, sw_val = parts[4:] if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' "
                "or the size of your dataset."
            )
        return (X_train, y_train, sw_train), (
            X_val, self._given_targets(y_val), sw_val, self._targets(y_val))

    def _fit_stochastic(self, train, validation, incremental, rate=None):
        """The epoch loop; `rate`: lr_schedule's checked rate for the first epoch."""
        engine = self._engine
        if not incremental or engine.solver is None:
            self._start_optimizer()
        # dropout may change between fits (warm_start, partial_fit)
        engine.dropout = self._dropout_rates(len(engine.layer_units) - 2)
        self._seed_dropout()
        early_stopping = self.early_stopping
        self.stopped_early_ = False
        # partial_fit calls may switch early stopping on or off
        if early_stopping and self.validation_scores_ is None:
            self._start_validation_record()
        elif not early_stopping and self.best_loss_ is None:
            self.best_loss_ = np.inf
        epochs = self._epochs(train)
        n_samples = epochs.n_samples
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than "
                    "sample size. It is going to be clipped"
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        good = np.empty_like(engine.params)  # parameters after the last finite epoch
        # what this call trained, for an interruption (Ctrl-C) at any point
        epochs_before, t_before, rows_before = len(self.loss_curve_), self.t_, engine.rows_trained
        # scikit-learn's callbacks (set_callbacks): the fit is a task, each
        # epoch a subtask; arguments are lazy, so no callbacks cost nothing.
        hook_data = epochs.hook_data
        fit_ctx = self._init_callback_context(max_subtasks=1 if incremental else self.max_iter)
        fit_ctx.call_on_fit_task_begin(estimator=self, **hook_data)
        try:
            self.n_iter_ = 0
            work = n_samples * engine.params.size * (1 if incremental else self.max_iter)
            with training_threads(work) as n_threads:
                for _ in range(self.max_iter):
                    epoch_ctx = fit_ctx.subcontext(task_name="epoch")
                    epoch_ctx.call_on_fit_task_begin(estimator=self, **hook_data)
                    if self.lr_schedule is not None:
                        engine.learning_rate = (rate if self.n_iter_ == 0
                                                else self._scheduled_rate())
                    np.copyto(good, engine.params)
                    total = epochs.run(batch_size, n_threads)
                    if not (math.isfinite(total) and all_finite(engine.params)):
                        self._stop_diverged(good, total)
                        break
                    self.n_iter_ += 1
                    self.loss_ = total / n_samples
                    self.t_ += n_samples
                    self.loss_curve_.append(self.loss_)
                    if self.verbose:
                        print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

                    self._update_no_improvement_count(early_stopping, validation)
                    if epoch_ctx.call_on_fit_task_end(
                        estimator=self, reconstruction_attributes=self._snapshot, **hook_data
                    ):
                        break  # a callback asked to stop
                    if self.solver == "sgd" and self.learning_rate == "invscaling":
                        engine.learning_rate = (
                            float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
                        )
                    if self._no_improvement_count > self.n_iter_no_change:
                        if self._trigger_stopping(early_stopping):
                            self.stopped_early_ = early_stopping
                            break
                        self._no_improvement_count = 0
                    if incremental:
                        break
                    if self.n_iter_ == self.max_iter:
                        warnings.warn(
                            "Stochastic Optimizer: Maximum iterations (%d) "
                            "reached and the optimization hasn't converged yet."
                            % self.max_iter,
                            ConvergenceWarning,
                        )
        except KeyboardInterrupt:
            # As scikit-learn: keep what was trained, warn. The mini-batches
            # of an unfinished epoch stay trained: t_ counts their rows, while
            # n_iter_ and loss_curve_ count finished epochs only.
            self.n_iter_ = len(self.loss_curve_) - epochs_before
            self.t_ = t_before + (engine.rows_trained - rows_before)
            if not all_finite(engine.params):
                engine.params[...] = good
                self._start_optimizer()
            warnings.warn("Training interrupted by user.")

        if early_stopping and (self.stopped_early_ or not incremental):
            engine.params[...] = self._best_params
        fit_ctx.call_on_fit_task_end(
            estimator=self, reconstruction_attributes=self._snapshot, **hook_data
        )

    def _snapshot(self):
        """The fitted state now, for a callback's fitted_estimator (copies:
        the model predicts from them as from user-assigned weights)."""
        return {"coefs_": [c.copy() for c in self.coefs_],
                "intercepts_": [b.copy() for b in self.intercepts_]}

    def _given_targets(self, y):
        """Targets as the estimator's fit received them, for scoring (the
        validation split, callbacks): labels for a classifier (y is its
        indicator matrix here)."""
        if is_classifier(self):
            return self._labels(y)
        return y.ravel() if y.shape[1] == 1 else y

    def _stop_diverged(self, good, total):
        """The last epoch gave a non-finite loss or weights: put back the
        parameters from before it and restart the optimizer (its state holds
        the overflow). Non-finite weights raise, as in scikit-learn, unless
        early stopping has a best model to return to (scikit-learn >= 1.6
        returns that one too); a non-finite loss alone warns (scikit-learn
        would go on)."""
        weights_finite = all_finite(self._engine.params)
        self._engine.params[...] = good
        self._start_optimizer()
        kept = f"The model keeps its parameters from after epoch {self.n_iter_}."
        if self.early_stopping:
            # the caller restores the best parameters; later partial_fit
            # calls do nothing, as after any early stop
            self.stopped_early_ = True
            kept = ("Early stopping keeps the parameters of the best validation score, "
                    f"{self.best_validation_score_}.")
        elif not weights_finite:
            raise ValueError(f"{_NON_FINITE} {kept}")
        what = f"the loss became {total}" if weights_finite else "the weights overflowed"
        warnings.warn(
            f"Training diverged in epoch {self.n_iter_ + 1} ({what}): training "
            f"stopped; lower learning_rate_init or scale the data. {kept}",
            RuntimeWarning,
        )

    def _trigger_stopping(self, early_stopping):
        """After n_iter_no_change epochs without improvement: stop (True), or
        for sgd's 'adaptive' schedule divide the rate by 5 first."""
        what = "Validation score" if early_stopping else "Training loss"
        msg = "%s did not improve more than tol=%f for %d consecutive epochs." % (
            what, self.tol, self.n_iter_no_change)
        engine = self._engine
        if not (engine.solver == "sgd" and self.learning_rate == "adaptive"):
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if engine.learning_rate <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        engine.learning_rate /= 5.0
        if self.verbose:
            print(msg + " Setting learning rate to %f" % engine.learning_rate)
        return False

    def _validation_metrics(self, validation):
        """(loss, score) of the model now on the validation data: the mean
        data loss (no penalty) and `scoring`'s score (None: scikit-learn's,
        accuracy or R^2; 'loss': minus the loss)."""
        X_val, y_val, sw_val, Y_val = validation
        # a forward pass, no gradient
        val_loss = self._engine.loss_gradient(X_val, Y_val, sw_val, 0.0, gradient=False)
        if self.scoring is None:
            return val_loss, self._score(X_val, y_val, sample_weight=sw_val)
        if self.scoring == "loss":
            return val_loss, -val_loss
        return val_loss, check_scoring(self, self.scoring)(self, X_val, y_val,
                                                           sample_weight=sw_val)

    def _epochs(self, train):
        """What runs the epochs of `train` (X, y, sample_weight): _Epochs."""
        return _Epochs(self, *train)

    def _update_no_improvement_count(self, early_stopping, validation):
        if early_stopping:
            val_loss, val_score = self._validation_metrics(validation)
            self.validation_loss_curve_.append(val_loss)
            self.validation_scores_.append(val_score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            if val_score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if val_score > self.best_validation_score_:
                self.best_validation_score_ = val_score
                self._best_params = self._engine.params.copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    @_fit_context(prefer_skip_nested_validation=True)
    @_exclusive
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
        return self._fit(X, y, sample_weight=sample_weight, incremental=False,
                         validation=(X_val, y_val, sample_weight_val))

    def _check_solver(self):
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic"
                " optimizers. %s is not stochastic." % self.solver
            )
        return True

    # -- prediction -------------------------------------------------------------

    def _check_fitted(self):
        """check_is_fitted, without its cost (2.5 us, a tenth of a 1-row
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
        self._sync_engine()
        out = self._engine.predict(self._engine_input(X), layer=layer, check_finite=fast)
        if out is None:
            # inf or NaN in Z^1 = X W^1: validate_data raises scikit-learn's error
            # if X has any; else a product overflowed, and this reruns unchecked
            X = validate_data(self, X, reset=False)
            out = self._engine.predict(self._engine_input(X), layer=layer)
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
        names = set(self._hidden_activations(self.n_layers_ - 2)) or {"relu"}
        if len(names) > 1 or not names <= set(SKLEARN_ACTIVATIONS):
            raise ValueError(
                f"scikit-learn's MLP has no hidden activation(s) {sorted(names)}: it has "
                f"{SKLEARN_ACTIVATIONS}, one for all layers"
            )
        if getattr(self, "loss", None) in ("huber", "absolute_error"):
            raise ValueError(f"scikit-learn's MLPRegressor has no loss {self.loss!r}")
        cls = getattr(neural_network, type(self).__name__)
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
        prediction fast path (validate_data costs ~90 us, 10x a 1-row forward
        pass): the engine checks X (through X W^1) for inf and NaN, and on
        any, validate_data raises scikit-learn's error; anything else goes
        through validate_data first."""
        return (
            type(X) is np.ndarray
            and X.ndim == 2
            and X.dtype in _FLOAT_DTYPES
            and X.shape[0] > 0
            and X.shape[1] == self.n_features_in_
            and "feature_names_in_" not in self.__dict__
        )

    def _engine_data(self, X, y, sample_weight=None):
        """(X, Y, sample_weight) of new data as the engine reads them, for a
        fitted model (backprop_trace, check_gradients); nothing is refitted."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        check_consistent_length(X, y)
        if is_classifier(self):
            y = np.asarray(y)
            if not self._label_binarizer.y_type_.startswith("multilabel"):
                unseen = np.setdiff1d(unique_labels(y), self.classes_)
                if len(unseen):
                    raise ValueError(f"y has labels not in classes_: {unseen}")
            y = self._indicator(y)
        y = np.asarray(y, dtype=self._engine.dtype)
        y = y.reshape(-1, 1) if y.ndim == 1 else y
        if y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y.shape[1]} outputs, the model {self.n_outputs_}")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=self._engine.dtype)
        self._sync_engine()
        return self._engine_input(X), self._targets(y), sample_weight

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


_PARAMETERS_DOC = """
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer.
    @activation
    @solver
    alpha : float, default=0.0001
        Strength of the L2 penalty alpha / 2 * ||W||^2, divided by the sum of
        sample weights of the batch.
    batch_size : int, default='auto'
        Mini-batch size of the stochastic solvers; 'auto' is
        min(200, n_samples). Larger than n_samples: clipped, with a warning.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Schedule for 'sgd': constant; learning_rate_init / (t + 1) ** power_t
        with t the samples seen; or divided by 5 whenever the loss stalls.
    learning_rate_init : float, default=0.001
        Initial step size of 'sgd' and 'adam'.
    power_t : float, default=0.5
        Exponent of the 'invscaling' schedule.
    max_iter : int, default=200
        Maximum epochs (stochastic solvers) or iterations ('lbfgs').
    shuffle : bool, default=True
        Whether to shuffle the samples every epoch (stochastic solvers).
    random_state : int, RandomState instance, default=None
        Seeds weight initialisation, shuffling and the early-stopping split,
        drawn in scikit-learn's order: the same seed gives the same model.
    tol : float, default=1e-4
        Improvement below which an epoch counts as no progress.
    verbose : bool, default=False
        Print the loss after every epoch.
    warm_start : bool, default=False
        Start from the previous fit's weights instead of new ones.
    @momentum
    @nesterovs_momentum
    early_stopping : bool, default=False
        Hold out validation_fraction of the data and stop when its score does
        not improve by tol for n_iter_no_change epochs.
    validation_fraction : float, default=0.1
        Proportion of the data held out for early stopping.
    @beta_1
    @beta_2
    @epsilon
    n_iter_no_change : int, default=10
        Epochs without improvement tolerated before stopping.
    max_fun : int, default=15000
        Maximum loss evaluations of 'lbfgs'.
    negative_slope : float, default=0.01
        Slope of leaky_relu for z < 0, >= 0 (a cnn_bp extension).
    @weight_decay
    @rho
    lr_schedule : callable or None, default=None
        A schedule for every stochastic solver, ``lr_schedule(epoch, lr_init)
        -> rate`` called before each epoch (epoch 0, 1, ... counted over
        partial_fit calls too): the rate sgd steps with, the base rate of the
        others. ``cnn_bp.schedules`` has CosineAnnealing, StepDecay and Warmup
        (torch's CosineAnnealingLR, StepLR, LinearLR). None keeps
        scikit-learn's behaviour, where learning_rate schedules only sgd; with
        a schedule, learning_rate must stay 'constant'. A rate that is not a
        finite number >= 0 raises ValueError naming the epoch.
    scoring : str, callable or None, default=None
        What early stopping watches on the validation data: None for
        scikit-learn's (accuracy for the classifier, R^2 for the regressor),
        'loss' for the validation loss (negated, so higher is better), or a
        scorer name or callable as in sklearn.metrics.get_scorer.
    init : {'glorot_uniform', 'glorot_normal', 'he_uniform', 'he_normal', \
'lecun_normal'}, default='glorot_uniform'
        How W^l is drawn (from random_state). 'glorot_uniform' is scikit-learn's:
        U(-r, r), r = sqrt(6 / (fan_in + fan_out)) (2 instead of 6 for
        logistic), biases alike (Glorot & Bengio, 2010). The others draw
        zero biases and W^l from N(0, 2 / (fan_in + fan_out)) (glorot_normal),
        U(-r, r) with r = sqrt(6 / fan_in) (he_uniform) or N(0, 2 / fan_in)
        (he_normal; both He et al., 2015, for relu-type units), or
        N(0, 1 / fan_in) (lecun_normal; LeCun et al., 1998; the one selu's
        self-normalisation assumes, Klambauer et al., 2017); N(0, s) meaning
        variance s, untruncated.
    max_norm : float or None, default=None
        Stochastic solvers: after each step, the incoming weights of each unit
        (each column of each W^l) longer than max_norm in L2 norm are scaled
        back to it (Srivastava et al., 2014, Sec. 5.1).
    dropout : float or list of float, default=0.0
        Stochastic solvers: the rate, in [0, 1), at which each hidden unit's
        activation is dropped (set to 0) during training, one rate for all
        hidden layers or a list with one per layer; kept activations are
        scaled by 1 / (1 - rate) ("inverted dropout", Srivastava et al., 2014),
        so prediction uses the network as it is, without dropout. Masks come
        from a counter-based generator (SplitMix64) seeded by one draw from
        random_state, made only when dropout is used.
    batch_norm : bool, default=False
        Stochastic solvers: normalise each hidden layer's A^{l-1} W^l over
        the batch before the activation, Y = gamma (Z - mean) / sqrt(var +
        eps) + beta (Ioffe & Szegedy, 2015), eps = 1e-5. The layer's
        intercept b^l is beta (initially 0); the scale gamma (initially 1) is
        trained by the same solver (without the L2 term). Prediction uses
        running estimates, moved by 0.1 of each batch's mean and unbiased
        variance (PyTorch's BatchNorm1d convention). Sample weights weigh
        the batch statistics as they weigh the loss, as frequencies (a row
        of weight 2 counts as two rows; the running variance's correction is
        S / (S - 1), S the batch's weight sum, and a batch whose weights sum
        to 1 or less leaves the running estimates as they are).
    alpha_l1 : float, default=0.0
        Strength of an L1 penalty alpha_l1 * ||W||_1 on the weights (not the
        biases), divided like alpha's by the batch's sum of sample weights;
        its subgradient is alpha_l1 * sign(W), with sign(0) = 0 (a cnn_bp
        extension; with alpha, an elastic net).
    clip_norm : float or None, default=None
        Stochastic solvers: when the gradient of the objective (L2 term
        included) has a global L2 norm above clip_norm, rescale it to
        clip_norm before the step (Pascanu, Mikolov & Bengio, 2013)."""


def _registry_entries(doc):
    """`doc` with each line ``@name`` replaced by the entry the registry
    (cnn_bp._registry) makes for that parameter: the activations, the
    solvers, and each solver hyperparameter."""

    def paragraph(text):
        # no line starts with an operator (reST could read "- 1" as a list)
        text = re.sub(r" ([-+*/=]) ", "\0\\1\0", text)
        return textwrap.fill(text, 78, initial_indent=" " * 8, subsequent_indent=" " * 8,
                             break_on_hyphens=False).replace("\0", " ")

    activations = "; ".join(f"{a.name}: {a.doc}" for a in ACTIVATIONS if not a.output)
    entries = {
        "activation": "    activation : str or list of str, default='relu'\n" + paragraph(
            "Hidden-layer activation f, one name for all hidden layers or a list with "
            f"one per hidden layer. {activations}. Weights are drawn with scikit-learn's "
            "Glorot bound, sqrt(2 / (fan_in + fan_out)) for logistic layers and "
            "sqrt(6 / (fan_in + fan_out)) otherwise (with a single name: its rule for "
            "every layer, the output layer included, as scikit-learn)."),
        "solver": "    solver : {%s}, default='adam'\n" % ", ".join(
            repr(name) for name in SOLVER_CHOICES) + paragraph(
            "'lbfgs': scipy's L-BFGS-B on the full-batch loss; "
            + "; ".join(f"'{s.name}': {s.doc}" for s in SOLVERS)
            + ". Those beyond scikit-learn's follow their torch.optim namesakes. All "
            "stochastic solvers use learning_rate_init; "
            + "; ".join(f"{s.name} also {', '.join(s.hyperparameters)}" for s in SOLVERS)
            + "."),
    }
    for h in HYPERPARAMETERS:
        kind = "bool" if h.interval == "boolean" else "float"
        entries[h.name] = f"    {h.name} : {kind}, default={h.default!r}\n" + paragraph(h.doc)
    doc = re.sub(r"^    @(\w+)$", lambda m: entries.pop(m.group(1)), doc, flags=re.M)
    if entries:  # a registry entry without its place in the docstring
        raise RuntimeError(f"_PARAMETERS_DOC has no @line for {sorted(entries)}")
    return doc


_PARAMETERS_DOC = _registry_entries(_PARAMETERS_DOC)

_ATTRIBUTES_DOC = """
    loss_ : float
        The loss at the end of fitting (penalty included).
    best_loss_ : float or None
        Lowest training loss seen (None with early stopping).
    loss_curve_ : list of shape (`n_iter_`,)
        Loss after each epoch (stochastic solvers).
    validation_scores_ : list of shape (`n_iter_`,) or None
        Validation score after each epoch with early stopping.
    validation_loss_curve_ : list of shape (`n_iter_`,) or None
        Mean loss on the validation data after each epoch with early stopping
        (data term only, no penalty; a cnn_bp extension).
    best_validation_score_ : float or None
        Best validation score with early stopping.
    stopped_early_ : bool
        Whether early stopping on validation data ended the last training
        (stochastic solvers): the parameters are then the best ones seen,
        and further partial_fit calls do nothing.
    t_ : int
        Number of training samples seen by the solver.
    coefs_ : list of shape (n_layers - 1,)
        W^l, ndarray (fan_in, fan_out) each: views into the engine's flat
        parameter buffer.
    intercepts_ : list of shape (n_layers - 1,)
        b^l, ndarray (fan_out,) each: views into the same buffer.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Feature names, when X had string column names.
    n_iter_ : int
        Epochs (or L-BFGS iterations) run by the last fit.
    n_layers_ : int
        Number of layers, input and output included.
    n_outputs_ : int
        Number of outputs.
    out_activation_ : str
        Output activation: 'softmax', 'logistic', 'identity' or 'exp'.
    batch_norm_scales_ : list of shape (n_layers - 2,)
        With batch_norm: gamma^l of each hidden layer, ndarray (n_l,), views
        into the parameter buffer (the shifts beta^l are ``intercepts_``).
    running_means_, running_vars_ : list of shape (n_layers - 2,)
        With batch_norm: the running mean and variance of each hidden
        layer's A^{l-1} W^l, ndarray (n_l,), that prediction normalises with."""

_NOTES_DOC = """
    Notes
    -----
    The mathematics (Rumelhart, Hinton & Williams, 1986), for layers
    l = 1..L and a batch of B rows::

        Z^l = A^{l-1} W^l + b^l,  A^l = f(Z^l),  A^0 = X
        delta^L = A^L - Y
        delta^l = (delta^{l+1} (W^{l+1})^T) * f'(Z^l)
        dC/dW^l = ((A^{l-1})^T delta^l + alpha W^l) / B,  dC/db^l = sum(delta^l) / B

    Forward, backward and update of a whole epoch run in one compiled call
    that releases the GIL. Sparse X (CSR, CSC) is never densified.

    Deliberate differences from scikit-learn: the model computes in the dtype
    it was fitted with, so a float32 model returns float32 even for float64
    X (scikit-learn upcasts), and ``solver='lbfgs'`` keeps float32 weights
    float32 (scikit-learn's become float64). During training, probabilities
    and optimizer moments below smallest-normal / epsilon (about 1e-31 in
    float32) are set to zero, as subnormal arithmetic is ~100x slower."""


class MLPClassifier(ClassifierMixin, BaseMultilayerPerceptron):
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
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation,
            solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, loss="log_loss", shuffle=shuffle,
            random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            negative_slope=negative_slope, weight_decay=weight_decay, rho=rho,
            clip_norm=clip_norm, alpha_l1=alpha_l1, lr_schedule=lr_schedule,
            scoring=scoring, init=init, max_norm=max_norm, dropout=dropout,
            batch_norm=batch_norm,
        )
        self.class_weight = class_weight

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
            dtype=(np.float64, np.float32), reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        return X, self._indicator(y)

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Predicted labels (an indicator matrix for multilabel targets).
        """
        self._check_fitted()
        return self._predict(X)

    def _weigh_classes(self, y, sample_weight):
        """sample_weight (None: ones) times the weight of each row's class, as
        scikit-learn's LogisticRegression applies class_weight: 'balanced'
        gives class c the weight S / (k S_c), S the weight sum of the rows,
        S_c that of class c's and k the number of classes among them (in
        partial_fit: among this call's rows); y is _indicator's matrix."""
        if self.class_weight is None:
            return sample_weight
        kind = self._label_binarizer.y_type_
        if kind not in ("binary", "multiclass"):
            raise ValueError(f"class_weight is not supported for {kind} targets")
        codes = y.argmax(axis=1) if y.shape[1] > 1 else y[:, 0].astype(np.intp)
        counts = None
        if self.class_weight == "balanced":
            counts = np.bincount(codes, weights=sample_weight, minlength=len(self.classes_))
        weights = self._class_weight_table(counts)[codes]
        return weights if sample_weight is None else sample_weight * weights

    def _class_weight_table(self, counts=None):
        """The weight of each class of classes_: class_weight's dict, or
        'balanced' from the classes' weighted row `counts`."""
        if self.class_weight != "balanced":
            return compute_sample_weight(self.class_weight, self.classes_)
        # k counts classes of positive weight: rows of weight 0 are no rows
        return np.divide(counts.sum(), np.count_nonzero(counts) * counts,
                         out=np.zeros(len(counts)), where=counts > 0)

    def _indicator(self, y):
        """Labels y (known to be in classes_) as the bool (n_samples,
        n_outputs) indicator matrix LabelBinarizer.transform gives, built
        without its int64 intermediate: that, 8x the bool result, was the
        peak memory of fitting many rows. Bool, not float, so float32 data is
        not upcast. The inverse of _labels."""
        kind, classes = self._label_binarizer.y_type_, self.classes_
        if kind == "binary" and len(classes) == 2:
            return (column_or_1d(y) == classes[1]).reshape(-1, 1)
        if kind == "multiclass":
            codes = np.searchsorted(classes, column_or_1d(y))
            return codes[:, np.newaxis] == np.arange(len(classes))
        return self._label_binarizer.transform(y).astype(bool)

    def _predict(self, X, check_input=True):
        return self._labels(self._forward_pass_fast(X, check_input=check_input))

    def _labels(self, y_pred):
        """Labels of output activations (n_samples, n_outputs):
        LabelBinarizer.inverse_transform's result, without its per-call
        checks for the two common cases (argmax for multiclass, p > 0.5 for
        binary; ties and NaN resolve as there)."""
        kind = self._label_binarizer.y_type_
        if kind == "multiclass":
            return self.classes_.take(row_argmax(y_pred))
        if kind == "binary" and len(self.classes_) == 2:
            return self.classes_.take((y_pred.ravel() > 0.5).astype(np.intp))
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, accuracy_score)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    @_exclusive
    def partial_fit(self, X, y, sample_weight=None, classes=None, *, X_val=None, y_val=None,
                    sample_weight_val=None):
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
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
            The trained model.

        Raises
        ------
        ValueError
            early_stopping=True without X_val and y_val (scikit-learn's
            error), X_val without early_stopping, or bad input.
        RuntimeError
            If the estimator is being fitted in another thread.
        """
        state = self.__dict__.copy()
        with _restored_on_error(self, state):
            if _check_partial_fit_first_call(self, classes):
                self._label_binarizer = LabelBinarizer()
                if type_of_target(y).startswith("multilabel"):
                    self._label_binarizer.fit(y)
                else:
                    self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True, state=state,
                         validation=(X_val, y_val, sample_weight_val))

    def predict_proba(self, X):
        """Probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            Probability of each class, in the order of ``classes_``.
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
            The input data.

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
        """
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # class_weight weighs rows by one class each: not multilabel targets
        tags.classifier_tags.multi_label = self.class_weight is None
        return tags


MLPClassifier.__doc__ = f"""Multi-layer perceptron classifier trained by backpropagation.

    A drop-in replacement for :class:`sklearn.neural_network.MLPClassifier`:
    the same parameters, attributes and results for the same random_state,
    computed by a compiled engine. Minimises the log-loss (softmax output for
    multiclass, logistic outputs for binary and multilabel targets).

    Parameters
    ----------{_PARAMETERS_DOC}
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, {{label: weight}}, multiplying sample_weight
        as in scikit-learn's linear models; 'balanced' weighs each class by
        n_samples / (n_classes * its count) in the data given to fit, counts
        and n_samples summing sample weights (as LogisticRegression does);
        partial_fit counts the rows of each call. Binary and multiclass
        targets only: ValueError otherwise.

    Attributes
    ----------
    classes_ : ndarray or list of ndarray of shape (n_classes,)
        Class labels.{_ATTRIBUTES_DOC}
{_NOTES_DOC}

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from cnn_bp import MLPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MLPClassifier(random_state=0, max_iter=300).fit(X / 16, y)
    >>> clf.predict(X[:3] / 16)
    array([0, 1, 2])
    """


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
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation,
            solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, loss=loss, shuffle=shuffle,
            random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            negative_slope=negative_slope, weight_decay=weight_decay, rho=rho,
            clip_norm=clip_norm, alpha_l1=alpha_l1, lr_schedule=lr_schedule,
            scoring=scoring, init=init, max_norm=max_norm, dropout=dropout,
            batch_norm=batch_norm,
        )
        self.huber_delta = huber_delta

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
            y_numeric=True, dtype=(np.float64, np.float32), reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def predict(self, X):
        """Predict using the multi-layer perceptron model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values.
        """
        self._check_fitted()
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, r2_score)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    @_exclusive
    def partial_fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
                    sample_weight_val=None):
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
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
        return self._fit(X, y, sample_weight=sample_weight, incremental=True,
                         validation=(X_val, y_val, sample_weight_val))


MLPRegressor.__doc__ = f"""Multi-layer perceptron regressor trained by backpropagation.

    A drop-in replacement for :class:`sklearn.neural_network.MLPRegressor`:
    the same parameters, attributes and results for the same random_state,
    computed by a compiled engine.

    Parameters
    ----------
    loss : {{'squared_error', 'poisson', 'huber', 'absolute_error'}}, \
default='squared_error'
        Half squared error with an identity output, or half Poisson deviance
        with an exp output (requires y >= 0); cnn_bp's robust losses, with an
        identity output and summed over the outputs: 'huber' (Huber, 1964),
        r^2 / 2 for abs(r) <= huber_delta and huber_delta (abs(r) - huber_delta / 2)
        beyond, r = prediction - y, and 'absolute_error' abs(r) (its gradient
        is sign(r), so it fits the conditional median).{_PARAMETERS_DOC}
    huber_delta : float, default=1.0
        Where the 'huber' loss turns from quadratic to linear, > 0, in the
        units of y.

    Attributes
    ----------{_ATTRIBUTES_DOC}
{_NOTES_DOC}

    Examples
    --------
    >>> import numpy as np
    >>> from cnn_bp import MLPRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), activation="tanh", solver="lbfgs",
    ...                    random_state=0).fit(X, np.sin(3 * X).ravel())
    >>> round(reg.score(X, np.sin(3 * X).ravel()), 2)
    1.0
    """
