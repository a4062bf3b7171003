"""Estimator parameters <-> the compiled Engine: one network, built and bound.

Layer: below the trainer (``_training.py``) and the estimators (``_mlp.py``),
above the engine. Imports the engine, the registry and scikit-learn's
utilities; never the estimators or the trainer. Persistence, Dask and the
inspection tools use it as the estimators do, so each thing below is
derived in one place:

1. the network's shape from the parameters: hidden sizes, one activation
   and one dropout rate per hidden layer, the output activation and the
   engine's loss (``layer_units``, ``hidden_activations``,
   ``dropout_rates``, ``output_activation``, ``loss_name``);
2. the engine: built (``new_engine``), initialised in scikit-learn's order
   of random draws (``initialize``), rebuilt from hand-set ``coefs_`` /
   ``intercepts_`` (``sync_engine``, ``adopt``), and made the model's, its
   views becoming the fitted attributes (``attach``);
3. data as the engine reads it: X (``engine_input``), the targets
   (``targets``), class labels <-> indicator rows and class weights
   (``indicator``, ``labels``, ``class_codes``, ``class_weight_table``), all
   of it checked once per fit (``prepare``).

Every function takes the estimator (``model``) and reads its parameters; it
sets only the fitted attributes it names.
"""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import is_classifier
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_consistent_length, check_is_fitted, validate_data

from ._checks import row_argmax
from ._compat import _check_sample_weight
from ._engine import Engine
from ._registry import HIDDEN_ACTIVATIONS, SOLVERS, STOCHASTIC_SOLVERS, activation_code, loss_code

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def engine_array(a, dtype):
    """`a` as the engine reads it: a C-contiguous, aligned array of `dtype`
    in native byte order, copied only when it is not one already (numpy's
    ascontiguousarray keeps misaligned data, which C may not read as T *)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.aligned else a.copy()


# -- 1. the network's shape ------------------------------------------------------


def hidden_layer_sizes(model):
    """hidden_layer_sizes as a list of positive ints (scikit-learn's errors)."""
    sizes = model.hidden_layer_sizes
    sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
    if not all(isinstance(h, Integral) for h in sizes):
        raise TypeError(f"hidden_layer_sizes must contain integers, got {sizes}.")
    if np.any(np.array(sizes) <= 0):
        raise ValueError("hidden_layer_sizes must be > 0, got %s." % sizes)
    return sizes


def hidden_activations(model, n_hidden):
    """The activation name of each hidden layer: `activation` repeated, or
    the list given, checked against the network."""
    if isinstance(model.activation, str):
        return [model.activation] * n_hidden
    names = list(model.activation)
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


def dropout_rates(model, n_hidden):
    """The dropout rate of each hidden layer: `dropout` repeated, or the
    list given, checked against the network."""
    if np.ndim(model.dropout) == 0:
        return [float(model.dropout)] * n_hidden
    rates = list(model.dropout)
    if len(rates) != n_hidden:
        raise ValueError(
            f"dropout lists {len(rates)} rates but the network has {n_hidden} "
            "hidden layers; give one per hidden layer, or a single rate"
        )
    if not all(isinstance(r, Real) and 0 <= r < 1 for r in rates):
        raise ValueError(f"dropout rates must be numbers in [0, 1), got {rates}")
    return [float(r) for r in rates]


def output_activation(model):
    """out_activation_ for the model's loss and targets (a classifier's
    label binarizer must be fitted)."""
    if not is_classifier(model):
        return "exp" if model.loss == "poisson" else "identity"
    return "softmax" if model._label_binarizer.y_type_ == "multiclass" else "logistic"


def loss_name(model):
    """The engine's loss: log-loss pairs with softmax, binary log-loss with
    logistic outputs (binary and multilabel), else the regressor's loss;
    read from out_activation_."""
    if is_classifier(model) and model.out_activation_ == "logistic":
        return "binary_log_loss"
    return model.loss


# -- 2. the engine -----------------------------------------------------------------


def new_engine(model, layer_units, dtype):
    """An engine for the model's network of `layer_units`: its hidden
    activations, slope, loss (from out_activation_), batch normalisation and
    dropout; its parameters uninitialised."""
    n_hidden = len(layer_units) - 2
    names = hidden_activations(model, n_hidden)
    loss = loss_name(model)
    huber_delta = model.huber_delta if loss == "huber" else 1.0
    return Engine(layer_units, [activation_code(a) for a in names], loss_code(loss),
                  dtype, model.negative_slope, huber_delta, model.batch_norm,
                  dropout_rates(model, n_hidden))


def attach(model, engine):
    """Make `engine` the model's; coefs_ and intercepts_ (and batch
    normalisation's attributes) become its views."""
    model._engine = engine
    model.coefs_ = list(engine.coefs)
    model.intercepts_ = list(engine.intercepts)
    for name, views in (("batch_norm_scales_", engine.batch_norm_scales),
                        ("running_means_", engine.running_means),
                        ("running_vars_", engine.running_vars)):
        if engine.batch_norm:
            setattr(model, name, list(views))
        else:
            model.__dict__.pop(name, None)


def sync_engine(model):
    """Rebuild the engine if the user assigned coefs_ / intercepts_ arrays
    of their own (or set them on an estimator never fitted), so that every
    pass uses exactly what the attributes show."""
    engine = model.__dict__.get("_engine")
    if engine is not None and engine.holds(model.coefs_, model.intercepts_):
        return
    coefs = [np.asarray(c) for c in model.coefs_]
    intercepts = [np.asarray(b) for b in model.intercepts_]
    units = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
    dtype = coefs[0].dtype if coefs[0].dtype == np.float32 else np.float64
    new = new_engine(model, units, dtype)
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
    attach(model, new)


def _init_coef(model, fan_in, fan_out, dtype, activation):
    """W^l and b^l drawn for `init` (see the class docstring)."""
    rng = model._random_state
    if model.init == "glorot_uniform":
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
        }[model.init]
        if model.init == "he_uniform":
            coef = rng.uniform(-scale, scale, (fan_in, fan_out))
        else:
            coef = rng.normal(0.0, scale, (fan_in, fan_out))
        intercept = np.zeros(fan_out)
    return coef.astype(dtype, copy=False), intercept.astype(dtype, copy=False)


def fresh_record(model, layer_units):
    """The fitted attributes of a network of `layer_units` that has not
    trained yet, but for its parameters (and classes_)."""
    record = dict(n_iter_=0, t_=0, n_layers_=len(layer_units),
                  n_outputs_=layer_units[-1], n_features_in_=layer_units[0],
                  out_activation_=output_activation(model))
    if model.solver in STOCHASTIC_SOLVERS:
        record.update(loss_curve_=[], _no_improvement_count=0, stopped_early_=False)
        if model.early_stopping:
            record.update(validation_scores_=[], validation_loss_curve_=[],
                          best_validation_score_=-np.inf, best_loss_=None)
        else:
            record.update(best_loss_=np.inf, validation_scores_=None,
                          validation_loss_curve_=None, best_validation_score_=None)
    return record


def initialize(model, layer_units, dtype):
    """A new network for the model, its weights drawn from model._random_state."""
    model.__dict__.update(fresh_record(model, layer_units))
    engine = new_engine(model, layer_units, dtype)
    # Draw in scikit-learn's order: W^1, b^1, W^2, b^2, ... The bound of
    # each layer follows its activation; with one activation string,
    # scikit-learn's rule: that activation's, output layer included.
    names = hidden_activations(model, len(layer_units) - 2)
    names.append(model.activation if isinstance(model.activation, str) else None)
    for coef, intercept, name in zip(engine.coefs, engine.intercepts, names):
        coef[...], intercept[...] = _init_coef(model, *coef.shape, dtype, name)
    if engine.batch_norm:
        # a batch-normalised layer's bias is its shift beta: zero, as
        # its scale gamma starts at one (Ioffe & Szegedy 2015; PyTorch)
        for intercept in engine.intercepts[:-1]:
            intercept[...] = 0
    attach(model, engine)
    model._best_params = engine.params.copy()


def adopt(model, layer_units):
    """Train on from coefs_ and intercepts_ set by hand on an estimator
    never fitted, as scikit-learn does (its documentation works one SGD
    step so): the engine is built from them, and fitted attributes not set
    by hand start as a fresh fit's."""
    for name, value in fresh_record(model, layer_units).items():
        model.__dict__.setdefault(name, value)
    sync_engine(model)
    model._best_params = model._engine.params.copy()


def build(model, layer_units, dtype, first_pass):
    """The network a fit trains: new (first_pass), else the fitted or
    hand-set one, checked to have `layer_units` and batch_norm."""
    if first_pass:
        initialize(model, layer_units, dtype)
        return
    if "_engine" in model.__dict__:
        sync_engine(model)
    else:
        adopt(model, layer_units)
    engine = model._engine
    if list(engine.layer_units) != layer_units:
        raise ValueError(
            f"The fitted network has layer sizes {engine.layer_units}"
            f" but the data and hidden_layer_sizes give {tuple(layer_units)};"
            " warm_start and partial_fit need the same architecture."
        )
    if engine.batch_norm != model.batch_norm:
        raise ValueError(
            f"The fitted network has batch_norm={engine.batch_norm}; "
            "warm_start and partial_fit cannot change it."
        )


def seed_dropout(model):
    """Give dropout its stream the first time a fit uses it: one draw from
    the random state, so that without dropout the random numbers are
    scikit-learn's."""
    engine = model._engine
    if any(engine.dropout) and engine.dropout_rng == (0, 0):
        engine.dropout_rng = (int(model._random_state.randint(1, 2**63 - 1)), 0)


def start_optimizer(model):
    """A fresh optimizer state for the model's solver and its settings."""
    solver = SOLVERS[STOCHASTIC_SOLVERS.index(model.solver)]
    settings = {name: getattr(model, name) for name in solver.hyperparameters}
    model._engine.set_optimizer(
        model.solver, float(model.learning_rate_init), clip_norm=model.clip_norm,
        max_norm=model.max_norm, **settings
    )


# -- 3. data as the engine reads it ----------------------------------------------


def engine_input(model, X):
    """X as the engine reads it, in the model's dtype: dense C-contiguous
    and aligned, or CSR (CSC is converted; sparse X is never densified)."""
    if type(X) is not np.ndarray and sp.issparse(X):
        X = X.tocsr().astype(model._engine.dtype, copy=False)
        return X if X.data.flags.aligned else X.copy()
    return engine_array(X, model._engine.dtype)


def targets(model, y):
    """y as the engine reads it, (n_samples, n_outputs) C-contiguous: a
    classifier's bool indicator matrix as bytes, converted batch by batch
    in the engine (a float copy of one-hot targets is 4-8x larger: it was
    the peak memory of float64 fits), real targets in the model's dtype."""
    if y.dtype == bool:
        return np.ascontiguousarray(y).view(np.uint8)
    return engine_array(y, model._engine.dtype)


def indicator(model, y):
    """Labels y (known to be in classes_) as the bool (n_samples,
    n_outputs) indicator matrix LabelBinarizer.transform gives, built
    without its int64 intermediate: that, 8x the bool result, was the peak
    memory of fitting many rows. Bool, not float, so float32 data is not
    upcast. The inverse of `labels`."""
    kind, classes = model._label_binarizer.y_type_, model.classes_
    if kind == "binary" and len(classes) == 2:
        return (column_or_1d(y) == classes[1]).reshape(-1, 1)
    if kind == "multiclass":
        codes = np.searchsorted(classes, column_or_1d(y))
        return codes[:, np.newaxis] == np.arange(len(classes))
    return model._label_binarizer.transform(y).astype(bool)


def labels(model, y_pred):
    """Labels of output activations (n_samples, n_outputs):
    LabelBinarizer.inverse_transform's result, without its per-call checks
    for the two common cases (argmax for multiclass, p > 0.5 for binary;
    ties and NaN resolve as there)."""
    kind = model._label_binarizer.y_type_
    if kind == "multiclass":
        return model.classes_.take(row_argmax(y_pred))
    if kind == "binary" and len(model.classes_) == 2:
        return model.classes_.take((y_pred.ravel() > 0.5).astype(np.intp))
    if model.n_outputs_ == 1:
        y_pred = y_pred.ravel()
    return model._label_binarizer.inverse_transform(y_pred)


def given_targets(model, y):
    """Targets as the estimator's fit received them, for scoring (the
    validation split, callbacks): labels for a classifier (y is its
    indicator matrix here)."""
    if is_classifier(model):
        return labels(model, y)
    return y.ravel() if y.shape[1] == 1 else y


def class_codes(Y):
    """The class index of each row of a binary or multiclass indicator matrix."""
    return Y.argmax(axis=1) if Y.shape[1] > 1 else Y[:, 0].astype(np.intp)


def class_weight_table(model, counts=None):
    """The weight of each class of classes_: class_weight's dict, or
    'balanced' from the classes' weighted row `counts`."""
    if model.class_weight != "balanced":
        return compute_sample_weight(model.class_weight, model.classes_)
    # k counts classes of positive weight: rows of weight 0 are no rows
    return np.divide(counts.sum(), np.count_nonzero(counts) * counts,
                     out=np.zeros(len(counts)), where=counts > 0)


def weigh_classes(model, Y, sample_weight):
    """sample_weight (None: ones) times the weight of each row's class, as
    scikit-learn's LogisticRegression applies class_weight: 'balanced'
    gives class c the weight S / (k S_c), S the weight sum of the rows, S_c
    that of class c's and k the number of classes among them (in
    partial_fit: among this call's rows); Y is `indicator`'s matrix. A
    regressor, or class_weight None: sample_weight as it is."""
    if getattr(model, "class_weight", None) is None:
        return sample_weight
    kind = model._label_binarizer.y_type_
    if kind not in ("binary", "multiclass"):
        raise ValueError(f"class_weight is not supported for {kind} targets")
    codes = class_codes(Y)
    counts = None
    if model.class_weight == "balanced":
        counts = np.bincount(codes, weights=sample_weight, minlength=len(model.classes_))
    weights = class_weight_table(model, counts)[codes]
    return weights if sample_weight is None else sample_weight * weights


def _validate_classifier_input(model, X, y, incremental, reset):
    X, y = validate_data(
        model, X, y, accept_sparse=["csr", "csc"], multi_output=True,
        dtype=(np.float64, np.float32), reset=reset,
    )
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    if (not hasattr(model, "classes_")) or (not model.warm_start and not incremental):
        model._label_binarizer = LabelBinarizer()
        model._label_binarizer.fit(y)
        model.classes_ = model._label_binarizer.classes_
    else:
        classes = unique_labels(y)
        if model.warm_start:
            if set(classes) != set(model.classes_):
                raise ValueError(
                    "warm_start can only be used where `y` has the same "
                    "classes as in the previous call to fit. Previously "
                    f"got {model.classes_}, `y` has {classes}"
                )
        elif len(np.setdiff1d(classes, model.classes_, assume_unique=True)):
            raise ValueError(
                "`y` has classes not in `self.classes_`. "
                f"`self.classes_` has {model.classes_}. 'y' has {classes}."
            )
    return X, indicator(model, y)


def _validate_regressor_input(model, X, y, reset):
    X, y = validate_data(
        model, X, y, accept_sparse=["csr", "csc"], multi_output=True,
        y_numeric=True, dtype=(np.float64, np.float32), reset=reset,
    )
    if y.dtype.kind in "USV":  # y_numeric converts objects only; scikit-learn's TypeError
        raise TypeError(f"y holds strings (dtype {y.dtype}): MLPRegressor needs numeric "
                        "targets; convert them first, e.g. y.astype(float)")
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    return X, y


def prepare(model, X, y, sample_weight, incremental):
    """Everything a fit does before training: the parameters and data
    checked, the classes and the random state set, the network built or
    checked; returns (X, Y, sample_weight) in the model's dtype, X as
    ``engine_input`` gives it and Y 2-D (a classifier's bool indicator)."""
    if model.lr_schedule is not None and model.learning_rate != "constant":
        raise ValueError(
            f"lr_schedule replaces scikit-learn's learning_rate={model.learning_rate!r} "
            "schedule: give one of them (learning_rate='constant' with lr_schedule)"
        )
    sizes = hidden_layer_sizes(model)
    first_pass = not hasattr(model, "coefs_") or (not model.warm_start and not incremental)
    if is_classifier(model):
        X, y = _validate_classifier_input(model, X, y, incremental, reset=first_pass)
    else:
        X, y = _validate_regressor_input(model, X, y, reset=first_pass)
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, X)
    sample_weight = weigh_classes(model, y, sample_weight)
    if y.ndim == 1:
        y = y.reshape((-1, 1))
    layer_units = [X.shape[1], *sizes, y.shape[1]]
    model._random_state = check_random_state(model.random_state)
    if model.solver == "lbfgs" and (model.batch_norm or any(dropout_rates(model, len(sizes)))):
        raise ValueError(
            "dropout and batch_norm need a stochastic solver: L-BFGS minimises "
            "one deterministic full-batch loss; use solver='adam' or 'sgd'"
        )
    build(model, layer_units, X.dtype, first_pass)
    model.n_outputs_ = y.shape[1]
    X = engine_input(model, X)
    if sample_weight is not None:
        sample_weight = engine_array(sample_weight, X.dtype)
    return X, y, sample_weight


def engine_data(model, X, y, sample_weight=None):
    """(X, Y, sample_weight) of new data as the engine reads them, for a
    fitted model (backprop_trace, check_gradients); nothing is refitted."""
    check_is_fitted(model)
    X = validate_data(model, X, accept_sparse=["csr", "csc"], reset=False)
    check_consistent_length(X, y)
    if is_classifier(model):
        y = np.asarray(y)
        if not model._label_binarizer.y_type_.startswith("multilabel"):
            unseen = np.setdiff1d(unique_labels(y), model.classes_)
            if len(unseen):
                raise ValueError(f"y has labels not in classes_: {unseen}")
        y = indicator(model, y)
    y = np.asarray(y, dtype=model._engine.dtype)
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    if y.shape[1] != model.n_outputs_:
        raise ValueError(f"y has {y.shape[1]} outputs, the model {model.n_outputs_}")
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, X, dtype=model._engine.dtype)
    sync_engine(model)
    return engine_input(model, X), targets(model, y), sample_weight
