"""Checkpoints: a fit's training state in a file, and a fit that resumes from it.

Layer: beside the trainer, which alone uses it (``Trainer.fit`` with
``checkpoint_dir`` set); imports the model file (``_model_file.py``), never
the estimators.

A checkpoint is a model file (``cnn_bp.load`` reads it) whose header also
holds the fit's own state: the epochs it trained and whether it finished.
Everything else a resumed fit needs is in the model file already (the
parameters, the optimizer's state and step count, the dropout stream's
position, the curves, the best parameters and the no-improvement count) or
is drawn again: the fit's set-up (initial weights, validation split, dropout
seed) comes from the same random_state, and the row orders of the epochs
trained are drawn again, not trained (``Epochs.skip``). So a resumed fit
ends with the model of the fit that was never stopped.

The file's name is keyed as ``joblib.Memory`` keys its cache: a hash of the
estimator's class, cnn_bp's version, the parameters that shape the model
(not ``checkpoint_dir``, ``verbose`` nor a Dask estimator's ``client``) and
a fingerprint of the data (X, y, sample_weight: each array's shape, dtype
and the XXH3 hash of its bytes, far faster than joblib.hash's MD5
(docs/performance.md); a Dask collection's token; other objects through joblib.hash)
and, for a warm_start fit of a fitted model, of the parameters
it starts from. Clones in a grid search get files of their own, and a fit
never resumes another's state.

Writes are atomic (a temporary file in the same directory, flushed to disk,
then renamed over the old one): a kill at any instant leaves the previous
checkpoint or the new one.
"""

import contextlib
import glob
import os
import tempfile
import time
import warnings

import joblib
import numpy as np
import scipy.sparse as sp
import xxhash

from . import _model_file
from ._model_file import ModelFileError
from ._version import __version__

# A fit writes its checkpoint after an epoch at most once every SECONDS
# (and always when it ends or Ctrl-C stops it).
SECONDS = 5.0
# Parameters that do not shape the model, left out of the key (a Dask
# estimator's client among them: any cluster trains the same model).
_NOT_KEYED = ("checkpoint_dir", "verbose", "client")


def key(model, X, y, sample_weight):
    """The checkpoint's name for fitting `model` on (X, y, sample_weight).

    Raises
    ------
    ValueError
        If a parameter cannot be hashed (joblib.hash pickles it: a lambda
        cannot be).
    """
    params = {k: v for k, v in model.get_params(deep=False).items() if k not in _NOT_KEYED}
    data = [_fingerprint(value) for value in (X, y, sample_weight)]
    if model.warm_start and "_engine" in vars(model):  # it starts from these parameters
        data.append(_fingerprint(model._engine.params))
    try:
        digest = joblib.hash((type(model).__name__, __version__, params, data))
    except Exception as exc:  # pickling a lambda, a local function, ...
        raise ValueError(
            "checkpoint_dir keys a checkpoint by the estimator's parameters, and one of "
            f"them cannot be hashed ({exc}): pass module-level functions, not lambdas"
        ) from exc
    return f"{type(model).__name__}-{digest}.npz"


def _fingerprint(value):
    """What keys the data `value`: an array's (or a CSR/CSC matrix's arrays')
    shape, dtype and XXH3-128 of its bytes; a Dask collection's token (its
    graph's name, which Dask derives from the data it was made from);
    anything else (a list, a dataframe) as it is, for joblib.hash."""
    if hasattr(value, "__dask_graph__"):  # dask is imported where one exists
        import dask.base

        return ("dask", type(value).__name__, dask.base.tokenize(value))
    if sp.issparse(value) and value.format in ("csr", "csc"):
        return (value.format, value.shape,
                [_fingerprint(a) for a in (value.data, value.indices, value.indptr)])
    if isinstance(value, np.ndarray) and not value.dtype.hasobject:
        array = np.ascontiguousarray(value)
        return (array.shape, array.dtype.str,
                xxhash.xxh3_128_hexdigest(memoryview(array.reshape(-1)).cast("B")))
    return value


class Checkpoints:
    """The checkpoint file of one fit, in `directory`: read when the fit
    starts, written as it goes.

    Raises
    ------
    ValueError
        If `directory` is not a directory that can be written (checked by
        creating it if needed and writing a file there).
    """

    def __init__(self, model, directory, X, y, sample_weight):
        self.model = model
        self.directory = os.fspath(directory)
        try:
            os.makedirs(self.directory, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.directory):
                pass
        except OSError as exc:
            raise ValueError(f"checkpoint_dir={directory!r} cannot be written: {exc}") from exc
        self.path = os.path.join(self.directory, key(model, X, y, sample_weight))
        # a temporary file of this key is a writer's that was killed mid-write
        for stale in glob.glob(glob.escape(self._temporary_prefix()) + "*.tmp"):
            with contextlib.suppress(OSError):
                os.unlink(stale)
        self.written = -np.inf  # when the last write ended (time.monotonic)
        self.pending = None  # the state after the last epoch, not written yet

    def _temporary_prefix(self):
        return os.path.join(self.directory, "." + os.path.basename(self.path) + ".")

    def read(self):
        """(header, files, extra) of this fit's checkpoint, or None when
        there is none; a damaged one warns and is None (training starts
        afresh)."""
        if not os.path.exists(self.path):
            return None
        try:
            header, files = _model_file.read(self.path)
            extra = header.get("extra")
            if not (isinstance(extra, dict) and isinstance(extra.get("epochs"), int)
                    and isinstance(extra.get("finished"), bool) and extra["epochs"] >= 0):
                raise ModelFileError(f"{self.path}: not a checkpoint (no epochs recorded)")
            return header, files, extra
        except ModelFileError as exc:
            warnings.warn(f"the checkpoint {self.path} is damaged and was not used; training "
                          f"starts afresh ({exc})", RuntimeWarning, stacklevel=4)
            return None

    def epoch_ended(self, epochs):
        """Keep the state after `epochs` epochs of this fit; write it when
        SECONDS have passed since the last write."""
        self.pending = _snapshot(self.model, {"epochs": epochs, "finished": False})
        if time.monotonic() - self.written >= SECONDS:
            self.flush()

    def finished(self, epochs):
        """Write the fitted model's state: a fit run again returns it."""
        self.pending = _snapshot(self.model, {"epochs": epochs, "finished": True})
        self.flush()

    def flush(self):
        """Write the kept state, if any (Ctrl-C: the state after the last
        epoch, not the interrupted one's rows). A failed write (a full
        disk) warns and keeps the previous checkpoint; training goes on."""
        if self.pending is None:
            return
        header, arrays = self.pending
        self.pending = None
        try:
            _write_atomically(self.path, self._temporary_prefix(), header, arrays)
        except OSError as exc:
            warnings.warn(f"the checkpoint {self.path} was not written ({exc}); the previous "
                          "one is kept and training goes on", RuntimeWarning, stacklevel=3)
        self.written = time.monotonic()


def _snapshot(model, extra):
    """The model file's (header, arrays) of `model` now, the arrays copied
    (the engine's go on changing); digested when written."""
    header, arrays = _model_file.contents(model, extra)
    return header, {name: array.copy() for name, array in arrays.items()}


def _write_atomically(path, prefix, header, arrays):
    """Write the model file (header, arrays) to `path` through a temporary
    file `prefix`...``.tmp`` in its directory: flushed and synced, renamed
    over `path`, the directory synced, so that `path` is always the old
    file or the new."""
    directory = os.path.dirname(path)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=os.path.basename(prefix),
                                     suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            _model_file.write_contents(file, header, arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # the rename reaches the disk, where it can
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
