"""The model file: what a fitted estimator's file holds, written and read.

Layer: beside the network (``_network.py``), which it calls to rebuild an
engine; imports ``_archive`` and the version, never the estimators. The
format: a ``.npz`` archive of numeric and text arrays plus one JSON header
(parameters, scalar fitted attributes, a SHA-256 of every array). ``read``
checks every size before anything is allocated (``cnn_bp._archive``), then
every name, shape, dtype and digest; ``restore`` sets a checked state on an
estimator of the right class. ``cnn_bp.save`` and ``cnn_bp.load``
(``_persistence.py``) and the checkpoints of a fit (``_checkpoint.py``) are
built on it. Nothing in a file is ever executed; every malformed file
raises ModelFileError.
"""

import contextlib
import hashlib
import json
import os
import zipfile

import numpy as np
from sklearn.base import is_classifier
from sklearn.preprocessing import LabelBinarizer

from . import _network as network
from ._archive import Archive
from ._version import __version__ as _cnn_bp_version

FORMAT = "cnn_bp.model"
FORMAT_VERSION = 1
_SCALARS = ("n_iter_", "t_", "loss_", "best_loss_", "best_validation_score_",
            "n_layers_", "n_outputs_", "out_activation_", "n_features_in_",
            "_no_improvement_count", "stopped_early_")
_LISTS = ("loss_curve_", "validation_scores_", "validation_loss_curve_")
_HEADER = "__header__"


class ModelFileError(ValueError):
    """A model file that is not a valid cnn_bp model: corrupt, truncated,
    tampered with, or of a newer format."""


# What a model file may declare (checked before anything is allocated; the
# archive's own limits are in cnn_bp._archive):
MAX_HEADER_BYTES = 1 << 20  # the JSON header
MAX_HEADER_DEPTH = 32  # nesting of its lists and objects
MAX_LAYERS = 1024  # layers of the network, input and output included
MAX_ARRAY_KINDS = {"layer_units": "i", "params": "f", "best_params": "f", "running": "f",
                   "optimizer_state": "f", "classes": "iufbU", "feature_names_in": "U"}


def _digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _plain(value):
    """A parameter value as JSON (tuples become lists)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
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


def contents(model, extra=None):
    """(header, arrays): what a model file holds, for a fitted model whose
    engine shows its attributes (the header describes the arrays when they
    are written: `describe`); `extra`, a dict of plain values, is stored in
    the header as its "extra" field (load ignores it)."""
    name = getattr(model, "_local_class", type(model)).__name__  # Dask: the local class
    engine = model._engine
    # a Dask estimator's client is a live connection, not part of the model
    raw_params = {k: v for k, v in model.get_params().items() if k != "client"}
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
    if is_classifier(model):
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
    }
    if extra is not None:
        header["extra"] = extra
    return header, arrays


def describe(header, arrays):
    """Add to `header` what it says of each array: dtype, shape, SHA-256."""
    header["arrays"] = {k: {"dtype": v.dtype.str, "shape": list(v.shape), "sha256": _digest(v)}
                        for k, v in arrays.items()}


def write(model, file):
    """Write fitted `model` to the open binary `file`."""
    network.sync_engine(model)
    write_contents(file, *contents(model))


def write_contents(file, header, arrays):
    """Write `contents`' (header, arrays) to the open binary `file`, the
    header describing the arrays."""
    describe(header, arrays)
    blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(file, **{_HEADER: blob}, **arrays)


def read(path):
    """(header, files): the JSON header and the arrays of the model file at
    `path` (a path or binary file), every size checked before it is
    allocated (``cnn_bp._archive``), the header's fields and the arrays'
    shapes, dtypes and digests checked; ModelFileError for anything else."""
    with errors(path):
        return _read(path)


@contextlib.contextmanager
def errors(path):
    """Any error inside, as a ModelFileError about `path` (the cause chained)."""
    try:
        yield
    except ModelFileError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise ModelFileError(f"{path}: not a readable .npz model file ({exc})") from exc
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ModelFileError(f"{path}: inconsistent model file ({exc!r})") from exc
    except Exception as exc:  # whatever else a malformed file makes a library raise
        raise ModelFileError(f"{path}: not a valid cnn_bp model file: {exc}") from exc


def _read(path):
    with Archive(path) as archive:
        if _HEADER not in archive.entries:
            raise ModelFileError(f"{path}: no valid cnn_bp header")
        header = _read_header(archive.read(_HEADER, "u", max_bytes=MAX_HEADER_BYTES), path)
        specs = header["arrays"]
        if set(archive.entries) != set(specs) | {_HEADER}:
            raise ModelFileError(f"{path}: arrays {sorted(archive.entries)} do not match the "
                                 f"header {sorted(specs)}")
        files = {"layer_units": archive.read("layer_units", "i", shape=specs["layer_units"]
                                             ["shape"], max_bytes=8 * MAX_LAYERS)}
        units = [int(u) for u in files["layer_units"]]
        weights, scales = _parameter_count(units)
        for key in ("params", "best_params"):
            if key in specs and specs[key]["shape"] not in ([weights], [weights + scales]):
                raise ModelFileError(f"{key!r} has shape {specs[key]['shape']}; the network "
                                     f"{units} has {weights} parameters")
        for key, spec in specs.items():
            if key not in files:
                files[key] = archive.read(key, MAX_ARRAY_KINDS.get(key, ""), shape=spec["shape"])
    _check_arrays(header, files)
    return header, files


def _read_header(blob, path):
    """The JSON header: checked for size and nesting before it is parsed,
    then for the format, its version and the types load relies on."""
    # nesting (brackets inside strings count too: an overestimate is safe)
    steps = np.isin(blob, list(b"[{")).astype(np.int32) - np.isin(blob, list(b"]}"))
    deepest = int(np.cumsum(steps, dtype=np.int32).max(initial=0))
    if deepest > MAX_HEADER_DEPTH:
        raise ModelFileError(f"{path}: header nested {deepest} deep")
    header = json.loads(blob.tobytes().decode())
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a cnn_bp model file")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: format version {header.get('format_version')!r} is newer than this "
            f"cnn_bp ({_cnn_bp_version}) reads; upgrade cnn_bp"
        )
    for key, kind in (("params", dict), ("fitted", dict), ("arrays", dict),
                      ("tuple_params", list), ("object_arrays", list), ("estimator", str),
                      ("dtype", str)):
        if not isinstance(header.get(key), kind):
            raise ModelFileError(f"{path}: header field {key!r} is not a {kind.__name__}")
    for key, spec in header["arrays"].items():
        if not (isinstance(spec, dict) and isinstance(spec.get("shape"), list)
                and all(type(n) is int and n >= 0 for n in spec["shape"])
                and isinstance(spec.get("dtype"), str) and isinstance(spec.get("sha256"), str)):
            raise ModelFileError(f"{path}: header describes array {key!r} as {spec!r}")
    if "layer_units" not in header["arrays"] or "params" not in header["arrays"]:
        raise ModelFileError(f"{path}: header lists no layer_units or params")
    return header


def _parameter_count(units):
    """(weights and biases, batch normalisation's scales) of a network of
    `units`, checked: 2 to MAX_LAYERS layers of at least one unit."""
    if not 2 <= len(units) <= MAX_LAYERS or min(units) < 1:
        raise ModelFileError(f"layer sizes {units[:8]}... describe no network")
    return sum(a * b + b for a, b in zip(units[:-1], units[1:])), sum(units[1:-1])


def _check_arrays(header, files):
    """Raise ModelFileError unless the arrays are those the header describes."""
    described = header["arrays"]
    for key, array in files.items():
        spec = described[key]
        if array.dtype.str != spec["dtype"] or list(array.shape) != spec["shape"]:
            raise ModelFileError(f"array {key!r} has dtype/shape {array.dtype.str} "
                                 f"{array.shape}, the header says {spec}")
        if _digest(array) != spec["sha256"]:
            raise ModelFileError(f"array {key!r} fails its SHA-256 check: the file was altered")


def restore(model, header, files):
    """Set the fitted state `header` and `files` (read) describe on `model`,
    an estimator of the header's class and parameters: every attribute
    checked against the network, the engine built and loaded, and the model
    checked to predict; ModelFileError (or what the caller translates) where
    anything does not fit."""
    _check_arrays(header, files)
    _restore_fitted(model, header["fitted"])
    units = [int(u) for u in files["layer_units"]]
    if is_classifier(model):
        _restore_classes(model, header, files, units[-1])
    if model.out_activation_ != network.output_activation(model):
        raise ModelFileError(f"output activation {model.out_activation_!r} does not fit the "
                             "estimator's loss and targets")
    if model.n_layers_ != len(units) or model.n_features_in_ != units[0] or (
            model.n_outputs_ != units[-1]):
        raise ModelFileError("fitted attributes do not match the network's layers")
    dtype = np.dtype(header["dtype"])
    if dtype not in network.FLOAT_DTYPES or files["params"].dtype != dtype:
        raise ModelFileError(f"dtype {header['dtype']!r} of params {files['params'].dtype}")
    try:
        engine = network.new_engine(model, units, dtype)
    except ValueError as error:
        raise ModelFileError(f"the header describes no valid network: {error}") from None
    for key in ("params", "best_params"):
        if key in files and files[key].shape != engine.params.shape:
            raise ModelFileError(f"{key!r} has {files[key].size} values, the network "
                                 f"{units} has {engine.params.size}")
    if not np.isfinite(files["params"]).all():
        raise ModelFileError("the parameters hold NaN or infinity")
    engine.params[...] = files["params"]
    if "running" in files:
        if files["running"].shape != engine.running.shape:
            raise ModelFileError("'running' does not fit the network's layers")
        engine.running[...] = files["running"]
    engine.dropout_rng = header.get("dropout_rng", (0, 0))
    if header["optimizer"] is not None:
        engine.set_optimizer(**header["optimizer"], state=files["optimizer_state"])
    network.attach(model, engine)
    if "best_params" in files:
        model._best_params = files["best_params"].copy()
    if "feature_names_in" in files:
        names = files["feature_names_in"]
        if names.shape != (units[0],):
            raise ModelFileError(f"{names.size} feature names for {units[0]} features")
        model.feature_names_in_ = names.astype(object)
    _check_predicts(model, dtype)
    return model


# The type each fitted attribute must have (None allowed where it may be None).
_SCALAR_TYPES = {"n_iter_": int, "t_": int, "n_layers_": int, "n_outputs_": int,
                 "n_features_in_": int, "_no_improvement_count": int, "out_activation_": str,
                 "stopped_early_": bool, "loss_": (int, float, type(None)),
                 "best_loss_": (int, float, type(None)),
                 "best_validation_score_": (int, float, type(None))}


def _restore_fitted(model, fitted):
    """The fitted attributes the header holds, each checked for its type."""
    for key in ("n_layers_", "n_outputs_", "n_features_in_", "out_activation_"):
        if key not in fitted:
            raise ModelFileError(f"the header has no fitted {key}")
    for key in _SCALARS:
        if key in fitted:
            value = fitted[key]
            kind = _SCALAR_TYPES[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ModelFileError(f"fitted {key} is {value!r}")
            setattr(model, key, value)
    for key in _LISTS:
        if key in fitted:
            value = fitted[key]
            if value is not None and not (isinstance(value, list) and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
                raise ModelFileError(f"fitted {key} is not a list of numbers")
            setattr(model, key, value)


def _restore_classes(model, header, files, n_out):
    """A classifier's classes_ and label binarizer, checked against its
    n_out outputs."""
    classes = files["classes"]
    if classes.ndim != 1 or not len(classes) or len(np.unique(classes)) != len(classes):
        raise ModelFileError(f"classes {classes!r} are no list of distinct labels")
    if "classes" in header["object_arrays"]:
        classes = classes.astype(object)
    y_type = header["fitted"].get("y_type_")
    several = y_type in ("multiclass", "multilabel-indicator")
    if not several and y_type != "binary":
        raise ModelFileError(f"unknown target type {y_type!r}")
    if n_out != (len(classes) if several else 1) or (y_type == "binary" and len(classes) > 2):
        raise ModelFileError(f"{len(classes)} classes do not fit {n_out} outputs")
    binarizer = LabelBinarizer()
    binarizer.classes_ = classes
    binarizer.y_type_ = y_type
    binarizer.sparse_input_ = False
    model._label_binarizer = binarizer
    model.classes_ = classes


def _check_predicts(model, dtype):
    """A file that loads predicts: one row of zeros through the network and,
    for a classifier, to labels (the steps of predict after its input
    checks, whose attributes were checked above)."""
    X = np.zeros((1, model.n_features_in_), dtype=dtype)
    try:
        out = model._engine.predict(network.engine_input(model, X))
        if is_classifier(model):
            network.labels(model, out)
    except Exception as exc:
        raise ModelFileError(f"the model fails to predict ({exc!r})") from exc
