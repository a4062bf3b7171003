"""Model files that hold only numbers and plain settings: safe to load.

A pickle can run code when it is loaded, so a model received from someone
else should not be unpickled. ``save`` writes a ``.npz`` archive instead:
numeric and text arrays plus one JSON header (parameters, scalar fitted
attributes, a SHA-256 of every array). ``load`` reads it with
``allow_pickle=False``, checks every name, shape, dtype and digest, and
rebuilds the estimator through its own validation; nothing in the file is
ever executed.
"""

import hashlib
import json
import zipfile

import numpy as np
from sklearn.preprocessing import LabelBinarizer

from . import _network as network
from ._mlp import MLPClassifier, MLPRegressor
from ._version import __version__ as _cnn_bp_version

FORMAT = "cnn_bp.model"
FORMAT_VERSION = 1
_CLASSES = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}
_SCALARS = ("n_iter_", "t_", "loss_", "best_loss_", "best_validation_score_",
            "n_layers_", "n_outputs_", "out_activation_", "n_features_in_",
            "_no_improvement_count", "stopped_early_")
_LISTS = ("loss_curve_", "validation_scores_", "validation_loss_curve_")
_HEADER = "__header__"


def _digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _plain(value):
    """A parameter value as JSON (tuples become lists)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _text_array(values, what):
    """Labels or names as an array numpy stores without pickle: numbers or
    unicode. Returns (array, whether it was an object array of str)."""
    values = np.asarray(values)
    if values.dtype.kind in "iufbU":
        return values, False
    if values.dtype == object and all(isinstance(v, str) for v in values.ravel()):
        return values.astype(str), True
    raise TypeError(f"{what} of dtype {values.dtype} cannot be saved without pickle")


def _contents(model):
    """(header, arrays): what a model file holds, for a fitted model whose
    engine shows its attributes."""
    name = type(model).__name__
    engine = model._engine
    raw_params = model.get_params()
    params = {k: _plain(v) for k, v in raw_params.items()}
    if not (params["random_state"] is None or isinstance(params["random_state"], int)):
        params["random_state"] = None
    arrays = {
        "layer_units": np.asarray(engine.layer_units, dtype=np.int64),
        "params": engine.params,
    }
    if engine.batch_norm:
        arrays["running"] = engine.running
    if getattr(model, "_best_params", None) is not None:
        arrays["best_params"] = model._best_params
    settings = engine.optimizer_settings()
    if settings is not None:
        arrays["optimizer_state"] = settings.pop("state")
    fitted = {k: _plain(getattr(model, k)) for k in _SCALARS if hasattr(model, k)}
    for k in _LISTS:
        value = getattr(model, k, None)
        fitted[k] = None if value is None else [float(v) for v in value]
    text_as_object = {}
    if hasattr(model, "feature_names_in_"):
        arrays["feature_names_in"], _ = _text_array(model.feature_names_in_, "feature names")
    if name == "MLPClassifier":
        binarizer = model._label_binarizer
        arrays["classes"], text_as_object["classes"] = _text_array(binarizer.classes_, "classes")
        fitted["y_type_"] = binarizer.y_type_
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cnn_bp_version": _cnn_bp_version,
        "estimator": name,
        "dtype": engine.dtype.name,
        "params": params,
        "tuple_params": [k for k, v in raw_params.items() if isinstance(v, tuple)],
        "fitted": fitted,
        "optimizer": settings,
        "dropout_rng": list(engine.dropout_rng),
        "object_arrays": [k for k, v in text_as_object.items() if v],
        "arrays": {k: {"dtype": v.dtype.str, "shape": list(v.shape), "sha256": _digest(v)}
                   for k, v in arrays.items()},
    }
    return header, arrays


def save(model, path):
    """Write a fitted MLPClassifier or MLPRegressor to `path` (an ``.npz`` archive).

    The file holds arrays and plain settings only; :func:`load` never
    unpickles or executes anything from it.

    Parameters
    ----------
    model : fitted MLPClassifier or MLPRegressor
    path : str, path-like or binary file object
        Destination, written exactly as named whatever its extension (no
        ``.npz`` is added), or an open file, written from its position.

    Returns
    -------
    path : str, path-like or file object
        `path`, as given: what :func:`load` reads the model back from.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the model is not fitted.
    TypeError
        If the model is not a cnn_bp estimator, or its classes are objects
        that are neither numbers nor strings.

    Notes
    -----
    A ``random_state`` given as a RandomState instance is stored as None.
    """
    from sklearn.utils.validation import check_is_fitted

    name = type(model).__name__
    if _CLASSES.get(name) is not type(model):
        raise TypeError(
            "save takes a cnn_bp.MLPClassifier or cnn_bp.MLPRegressor, got "
            f"{type(model).__module__}.{type(model).__qualname__}"
            + (" (a Dask estimator: save its to_local())" if hasattr(model, "to_local") else "")
        )
    check_is_fitted(model)
    network.sync_engine(model)
    header, arrays = _contents(model)
    blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    if hasattr(path, "write"):
        np.savez(path, **{_HEADER: blob}, **arrays)
    else:  # numpy would append .npz to a name without it
        with open(path, "wb") as file:
            np.savez(file, **{_HEADER: blob}, **arrays)
    return path


class ModelFileError(ValueError):
    """A model file that is not a valid cnn_bp model: corrupt, truncated,
    tampered with, or of a newer format."""


def load(path):
    """Read a model written by :func:`save`; nothing in the file is executed.

    Parameters
    ----------
    path : str, path-like or binary file object
        A file written by :func:`cnn_bp.save` (whatever its extension), or
        an open file positioned at such a model.

    Returns
    -------
    model : MLPClassifier or MLPRegressor
        Fitted, predicting exactly as the saved model did; ``partial_fit``
        resumes with the saved optimizer state.

    Raises
    ------
    cnn_bp.ModelFileError (a ValueError)
        If the file is not a cnn_bp model, is truncated or corrupt, fails its
        checksums, holds inconsistent arrays, or comes from a newer format.
    sklearn.utils._param_validation.InvalidParameterError (a ValueError)
        If a stored parameter is invalid.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            files = {k: archive[k] for k in archive.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise ModelFileError(f"{path}: not a readable .npz model file ({exc})") from exc
    try:
        header = json.loads(files.pop(_HEADER).tobytes().decode())
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: no valid cnn_bp header ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a cnn_bp model file")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: format version {header.get('format_version')!r} is newer than this "
            f"cnn_bp ({_cnn_bp_version}) reads; upgrade cnn_bp"
        )
    try:
        return _rebuild(header, files)
    except ModelFileError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ModelFileError(f"{path}: inconsistent model file ({exc!r})") from exc


def _check_arrays(header, files):
    """Raise ModelFileError unless the arrays are those the header describes."""
    described = header["arrays"]
    if set(described) != set(files):
        raise ModelFileError(f"arrays {sorted(files)} do not match the header {sorted(described)}")
    for key, array in files.items():
        spec = described[key]
        if array.dtype.str != spec["dtype"] or list(array.shape) != spec["shape"]:
            raise ModelFileError(f"array {key!r} has dtype/shape {array.dtype.str} "
                                 f"{array.shape}, the header says {spec}")
        if _digest(array) != spec["sha256"]:
            raise ModelFileError(f"array {key!r} fails its SHA-256 check: the file was altered")


def _rebuild(header, files):
    _check_arrays(header, files)
    cls = _CLASSES[header["estimator"]]
    params = dict(header["params"])
    for key in header["tuple_params"]:
        params[key] = tuple(params[key])
    model = cls(**params)
    model._validate_params()

    fitted = header["fitted"]
    units = [int(u) for u in files["layer_units"]]
    model.out_activation_ = fitted["out_activation_"]  # what the engine's loss follows
    try:
        engine = network.new_engine(model, units, np.dtype(header["dtype"]))
    except ValueError as error:
        raise ModelFileError(f"the header describes no valid network: {error}") from None
    for key in ("params", "best_params"):
        if key in files and files[key].shape != engine.params.shape:
            raise ModelFileError(f"{key!r} has {files[key].size} values, the network "
                                 f"{units} has {engine.params.size}")
    engine.params[...] = files["params"]
    if "running" in files:
        if files["running"].shape != engine.running.shape:
            raise ModelFileError("'running' does not fit the network's layers")
        engine.running[...] = files["running"]
    engine.dropout_rng = header.get("dropout_rng", (0, 0))
    if header["optimizer"] is not None:
        engine.set_optimizer(**header["optimizer"], state=files["optimizer_state"])
    network.attach(model, engine)
    for key in _SCALARS:
        if key in fitted:
            setattr(model, key, fitted[key])
    for key in _LISTS:
        if key in fitted:
            setattr(model, key, fitted[key])
    if model.n_layers_ != len(units) or model.n_features_in_ != units[0]:
        raise ModelFileError("fitted attributes do not match the network's layers")
    if "best_params" in files:
        model._best_params = files["best_params"].copy()
    if "feature_names_in" in files:
        model.feature_names_in_ = files["feature_names_in"].astype(object)
    if cls is MLPClassifier:
        _restore_classes(model, header, files, units[-1])
    return model


def _restore_classes(model, header, files, n_out):
    """A classifier's classes_ and label binarizer, checked against its
    n_out outputs."""
    classes = files["classes"]
    if "classes" in header["object_arrays"]:
        classes = classes.astype(object)
    binarizer = LabelBinarizer()
    binarizer.classes_ = classes
    binarizer.y_type_ = header["fitted"]["y_type_"]
    binarizer.sparse_input_ = False
    several = binarizer.y_type_ in ("multiclass", "multilabel-indicator")
    expected = len(classes) if several else 1
    if n_out != expected:
        raise ModelFileError(f"{len(classes)} classes do not fit {n_out} outputs")
    model._label_binarizer = binarizer
    model.classes_ = classes
