"""Model files that hold only numbers and plain settings: safe to load.

A pickle can run code when it is loaded, so a model received from someone
else should not be unpickled. ``save`` writes a ``.npz`` archive instead:
numeric and text arrays plus one JSON header (parameters, scalar fitted
attributes, a SHA-256 of every array). ``load`` reads it through
``cnn_bp._model_file`` (every size checked before anything is allocated, no
pickle; every name, shape, dtype and digest checked), rebuilds the estimator
through its own validation and checks that it predicts; nothing in the file
is ever executed, and every malformed file raises ModelFileError.

Layer: beside the estimators, which it builds; imports them and the model
file.
"""

from sklearn.utils.validation import check_is_fitted

from . import _model_file
from ._mlp import MLPClassifier, MLPRegressor
from ._model_file import ModelFileError

__all__ = ["ModelFileError", "load", "save"]

_CLASSES = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}


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
    name = type(model).__name__
    if _CLASSES.get(name) is not type(model):
        raise TypeError(
            "save takes a cnn_bp.MLPClassifier or cnn_bp.MLPRegressor, got "
            f"{type(model).__module__}.{type(model).__qualname__}"
            + (" (a Dask estimator: save its to_local())" if hasattr(model, "to_local") else "")
        )
    check_is_fitted(model)
    if hasattr(path, "write"):
        _model_file.write(model, path)
    else:  # numpy would append .npz to a name without it
        with open(path, "wb") as file:
            _model_file.write(model, file)
    return path


def load(path):
    """Read a model written by :func:`save`; nothing in the file is executed.

    Memory is bounded by what the file holds: every size the file declares
    is checked against the bytes it has before anything is allocated, and
    the arrays are read as streams that stop at their declared size
    (``cnn_bp._archive``), so a load allocates at most a small multiple of
    the file's size (its arrays, then the network built from them).

    Parameters
    ----------
    path : str, path-like or binary file object
        A file written by :func:`cnn_bp.save` (whatever its extension), or
        an open file positioned at such a model.

    Returns
    -------
    model : MLPClassifier or MLPRegressor
        Fitted, predicting exactly as the saved model did (checked on a row
        of zeros before it is returned); ``partial_fit`` resumes with the
        saved optimizer state.

    Raises
    ------
    cnn_bp.ModelFileError (a ValueError)
        For every file that is not a valid cnn_bp model: not an archive,
        truncated or corrupt, failing its checksums, declaring sizes it does
        not hold, inconsistent, holding an invalid parameter, or of a newer
        format. The cause is chained.
    """
    header, files = _model_file.read(path)
    with _model_file.errors(path):
        params = dict(header["params"])
        for key in header["tuple_params"]:
            params[key] = tuple(params[key])
        model = _CLASSES[header["estimator"]](**params)
        model._validate_params()
        return _model_file.restore(model, header, files)
