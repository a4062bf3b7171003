"""One model trained on a Dask cluster, where the partitions of its data live.

``DaskMLPClassifier`` and ``DaskMLPRegressor`` take every parameter of
`cnn_bp.MLPClassifier` / `cnn_bp.MLPRegressor`, plus ``client`` (a
``distributed.Client``; None: the default client). Their ``fit`` takes
``dask.array`` or ``dask.dataframe`` X, y and sample_weight, chunked along
rows only, and trains where the partitions are: no step gathers X or y on
the client or on one worker, and each worker holds only its partitions and
a model. Like ``xgboost.dask`` and ``lightgbm.dask``, they hand back a
plain local model (`to_local`), and on numpy input they are the local
estimator.

Two schemes, by solver:

- ``solver="lbfgs"``: the exact gradient. Each worker computes the loss and
  gradient sums of its partitions with the compiled engine
  (``Engine.loss_gradient(..., finish=False)``); the sums are added in a
  tree of tasks, and scipy's L-BFGS steps on the client, as Spark MLlib's
  ``MultilayerPerceptronClassifier`` does (treeAggregate). Only parameters
  and gradients cross the network. The model is the in-memory fit's on the
  same rows, to round-off.
- the stochastic solvers (``adam``, ``sgd``, ...): iterative parameter
  mixing (McDonald, Hall & Mann 2010, "Distributed training strategies for
  the structured perceptron", NAACL; Zinkevich, Weimer, Smola & Li 2010,
  "Parallelized stochastic gradient descent", NIPS). Each epoch every
  worker trains a copy of the current model over its own partitions (in
  order, or shuffled within the worker) with the compiled epoch; then the
  copies' parameters, optimizer state (moments and step count) and batch
  normalisation's running estimates are averaged, weighted by the rows each
  trained. With one worker, or one partition, that is exactly the
  in-memory fit with ``shuffle=False`` over those rows.

Lost workers: everything a fit sends to the workers is a task of the
graph, never scattered data, so the scheduler recomputes what a lost worker
held and the fit goes on (an L-BFGS evaluation gives the same sums; an
epoch trains the lost shard again elsewhere from the parameters at its
start; each epoch spreads the partitions over the workers live then, new
ones included). Every wait is watched (`_gather`): RuntimeError only when
no worker can run a partition. With ``checkpoint_dir``, the client writes
the checkpoints.

Early stopping validates on ``X_val``/``y_val`` (numpy, scored on the
client, or Dask collections, scored on the workers) or on whole partitions
held out from the collection (``validation_fraction`` of them, drawn from
the random state; at least one, and one left to train on); ``scoring`` is
then None or ``"loss"``.
"""

import contextlib
import copy
import inspect
import time
import warnings
from concurrent.futures import CancelledError

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.utils.validation import check_is_fitted

try:
    import dask
    import dask.array as da
    import dask.dataframe as dd
    from distributed import default_client, wait
    from distributed.scheduler import KilledWorker
except ImportError as error:  # pragma: no cover - the extra is missing
    raise ImportError(
        "cnn_bp.dask needs Dask's array, dataframe and distributed packages: "
        'pip install ".[dask]" from the cnn_bp checkout, or pip install '
        '"dask[array,dataframe,distributed]"'
    ) from error

from . import _network as network
from ._compat import _fit_context
from ._mlp import MLPClassifier, MLPRegressor
from ._registry import STOCHASTIC_SOLVERS
from ._threads import training_threads
from ._training import Trainer, exclusive, given_validation, restored_on_error

__all__ = ["DaskMLPClassifier", "DaskMLPRegressor"]

# Partial sums are added FAN_IN at a time, in a tree of tasks.
FAN_IN = 4
# While waiting for tasks, check this often that no worker has left.
WATCH_SECONDS = 1.0
# With no worker in the cluster, wait this long for one (a nanny restarting
# a killed worker) before the fit gives up.
LOST_SECONDS = 10.0


def _is_dask(data):
    return isinstance(data, (da.Array, dd.DataFrame, dd.Series))


def _rows_array(name, data, ndims):
    """`data` as a dask array of known row chunks, whole along its columns."""
    if isinstance(data, (dd.DataFrame, dd.Series)):
        data = data.to_dask_array(lengths=True)
    if not isinstance(data, da.Array):
        raise TypeError(f"{name} must be a dask array or dask dataframe, got "
                        f"{type(data).__name__}")
    if data.ndim not in ndims:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dimensions, "
                         f"got shape {data.shape}")
    if any(np.isnan(c) for c in data.chunks[0]):
        raise ValueError(
            f"{name} has unknown chunk sizes (a dataframe's partitions before their "
            "lengths are known): call .compute_chunk_sizes() on the array, or "
            ".to_dask_array(lengths=True) on the dataframe"
        )
    if data.ndim == 2 and len(data.chunks[1]) > 1:
        raise ValueError(
            f"{name} is chunked along its columns (column chunks {data.chunks[1]}): "
            f"each partition must hold whole rows; rechunk with {name}.rechunk({{1: -1}})"
        )
    return data


def _collections(X, y, sample_weight):
    """X, y and sample_weight as dask arrays with the same row partitions."""
    X = _rows_array("X", X, (2,))
    y = _rows_array("y", y, (1, 2))
    if y.chunks[0] != X.chunks[0]:
        raise ValueError(
            f"y's row partitions {y.chunks[0]} do not match X's {X.chunks[0]}: "
            "rechunk y to X's row chunks (y.rechunk({0: X.chunks[0]}))"
        )
    if sample_weight is not None:
        sample_weight = _rows_array("sample_weight", sample_weight, (1,))
        if sample_weight.chunks[0] != X.chunks[0]:
            raise ValueError(
                f"sample_weight's row partitions {sample_weight.chunks[0]} do not "
                f"match X's {X.chunks[0]}"
            )
    if X.shape[0] == 0:
        raise ValueError("X has no rows")
    return X, y, sample_weight


# -- tasks run on the workers --------------------------------------------------


def _block(model, X, y, sample_weight, index):
    """A partition as the engine trains on it: (X, Y, sample_weight), the
    targets as `model` builds them, class weights applied; checked first."""
    X = np.asarray(X)
    if not np.isfinite(X).all():
        raise ValueError(f"Input X contains NaN or infinity (partition {index} of the "
                         "Dask collection)")
    y = np.asarray(y)
    if is_classifier(model):
        unknown = np.setdiff1d(np.unique(y), model.classes_)
        if len(unknown):
            raise ValueError(f"partition {index} has labels {unknown} not among the "
                             f"classes {model.classes_}")
        Y = network.indicator(model, y)
    else:
        if not np.isfinite(y).all():
            raise ValueError(f"Input y contains NaN or infinity (partition {index} of "
                             "the Dask collection)")
        Y = y.reshape(len(y), -1)
    dtype = model._engine.dtype
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if not np.isfinite(sample_weight).all() or (sample_weight < 0).any():
            raise ValueError(f"sample_weight of partition {index} has NaN, inf or "
                             "negative values")
    if is_classifier(model) and model.class_weight is not None:
        weights = model._class_weight_table_[network.class_codes(Y)]
        sample_weight = weights if sample_weight is None else sample_weight * weights
    if sample_weight is not None:
        sample_weight = network.engine_array(sample_weight, dtype)
    return network.engine_array(X, dtype), network.targets(model, Y), sample_weight


def _class_counts(model, y, sample_weight):
    """Weighted rows of each class of model.classes_ in one partition."""
    codes = np.searchsorted(model.classes_, np.asarray(y).ravel())
    return np.bincount(codes, weights=None if sample_weight is None
                       else np.asarray(sample_weight, dtype=np.float64),
                       minlength=len(model.classes_))


def _aligned(block):
    """A prepared partition as the engine reads it: moved between workers,
    its arrays may arrive unaligned (copied then, else as they are)."""
    X, Y, sw = block
    return (network.engine_array(X, X.dtype), np.ascontiguousarray(Y),
            None if sw is None else network.engine_array(sw, sw.dtype))


def _concatenate(*blocks):
    """A worker's partitions as one block (rows in partition order)."""
    if len(blocks) == 1:
        return _aligned(blocks[0])
    X = np.concatenate([b[0] for b in blocks])
    Y = np.concatenate([b[1] for b in blocks])
    sw = None if blocks[0][2] is None else np.concatenate([b[2] for b in blocks])
    return _aligned((X, Y, sw))


def _loss_gradient_sums(engine, params, block):
    """(sum_i sw_i C_i, sum_i sw_i, the gradient's sums) over one partition."""
    engine = copy.deepcopy(engine)  # tasks on one worker share its copy
    X, Y, sw = _aligned(block)
    data_loss, weight = engine.loss_gradient(X, Y, sw, 0.0, params, finish=False)
    return data_loss, weight, engine.grads.copy()


def _add(*parts):
    return tuple(sum(values) for values in zip(*parts))


def _train_shard(engine, shard, k, seed, shuffle, batch_size, alpha, alpha_l1):
    """One epoch of a copy of `engine` over worker k's rows; returns the
    trained copy, the epoch's sum of batch loss x batch rows, and the
    seconds the epoch took on the worker."""
    engine = copy.deepcopy(engine)
    X, Y, sw = _aligned(shard)
    if k > 0 and any(engine.dropout):  # each worker its own masks
        engine.dropout_rng = (int(np.random.SeedSequence([engine.dropout_rng[0], k])
                                  .generate_state(1, np.uint64)[0]) | 1, 0)
    order = None
    if shuffle:
        order = np.random.RandomState([seed, k]).permutation(len(X)).astype(np.intp)
    start = time.perf_counter()
    with training_threads(len(X) * engine.params.size) as n_threads:
        total = engine.run_epoch(X, Y, sw, order, min(batch_size, len(X)), alpha,
                                 alpha_l1=alpha_l1, n_threads=n_threads)
    return engine, total, time.perf_counter() - start


def _validation_sums(model, params, block):
    """Validation sums of one partition for the model with `params`:
    (data loss, weight, score numerator, then R^2's sums per output)."""
    model = copy.deepcopy(model)
    engine = model._engine
    engine.params[...] = params
    X, Y, sw = _aligned(block)
    data_loss, weight = engine.loss_gradient(X, Y, sw, 0.0, gradient=False, finish=False)
    w = np.ones(len(X)) if sw is None else sw.astype(np.float64)
    out = engine.predict(X)
    if is_classifier(model):
        right = network.labels(model, out) == network.labels(model, Y.astype(out.dtype))
        return data_loss, weight, np.array([w @ right])
    y, out = Y.astype(np.float64), out.astype(np.float64)
    return data_loss, weight, np.concatenate([w @ (y - out) ** 2, w @ y, w @ y**2])


def _for_workers(model):
    """A shallow copy of `model` to send to the workers: without the client
    (a live connection does not travel)."""
    model = copy.copy(model)
    model.__dict__.pop("client", None)
    return model


def _predict_block(X, model, method, empty):
    """`method` of `model` on one partition; an empty one gives `empty`."""
    if X.shape[0] == 0:
        return empty
    return getattr(model, method)(X)


# -- the client side ------------------------------------------------------------


class _Partitions:
    """Futures of prepared partitions (_block), computed from their graph
    (so the scheduler recomputes one a lost worker held), with the index of
    each in the collection, their rows, and the collections they came from."""

    def __init__(self, client, blocks, indices, rows, X, y):
        self.client, self.blocks, self.indices = client, blocks, indices
        self.rows, self.X, self.y = rows, X, y

    def subset(self, positions):
        return _Partitions(self.client, *([part[i] for i in positions] for part in
                                          (self.blocks, self.indices, self.rows)),
                           self.X, self.y)

    def label(self, positions=None):
        """The partitions at `positions` (default: all) by their indices."""
        indices = self.indices if positions is None else [self.indices[i] for i in positions]
        return f"partition{'s' * (len(indices) > 1)} {', '.join(map(str, indices))}"


class _ShardEpochs:
    """The epochs of a Dask fit: iterative parameter mixing (module docstring)
    over shards, each a worker's partitions concatenated on that worker.

    Each epoch spreads the partitions over the workers live as it starts
    (_spread), so a worker that joined trains from the next epoch on. Its
    tasks start from a recomputable future of the parameters at its start
    (_put): a worker lost mid-epoch has its shard rebuilt from the
    partitions' graph and trained again on another worker, and the epoch
    goes on. A lost or new worker changes the shards of later epochs, and
    so the model, as any other spread over workers would."""

    def __init__(self, model, parts):
        self.model, self.client, self.parts = model, parts.client, parts
        self.n_samples = sum(parts.rows)
        self.hook_data = dict(X=parts.X, y=lambda: parts.y)
        self._spread, self._shards = None, None  # the last epoch's
        # per epoch: (its seconds on the client, the slowest worker's seconds
        # of training): the rest is communication and averaging
        self.timings = []

    def shards(self):
        """[(worker, future of its block, its rows, its label)] for an epoch
        starting now, built anew only when the live workers changed."""
        parts, client = self.parts, self.client
        held = _spread(len(parts.blocks), _workers_now(client, parts.label()))
        if held != self._spread:
            by_worker = {}
            for position, worker in enumerate(held):
                by_worker.setdefault(worker, []).append(position)
            self._spread, self._shards = held, [
                (worker, client.submit(_concatenate, *[parts.blocks[i] for i in positions],
                                       workers=[worker], allow_other_workers=True, pure=False),
                 sum(parts.rows[i] for i in positions), parts.label(positions))
                for worker, positions in by_worker.items()
            ]
        return self._shards

    def run(self, batch_size, n_threads):
        model, client, engine = self.model, self.client, self.model._engine
        start = time.perf_counter()
        seed = int(model._random_state.randint(2**31 - 1)) if model.shuffle else 0
        shards = self.shards()
        state = _put(client, engine)
        results = _gather(client, [
            client.submit(_train_shard, state, shard, k, seed, model.shuffle, batch_size,
                          model.alpha, model.alpha_l1, workers=[worker],
                          allow_other_workers=True, pure=False)
            for k, (worker, shard, _, _) in enumerate(shards)
        ], [f"the epoch of {label}" for _, _, _, label in shards])
        trained = [(e, total) for e, total, _ in results]
        weights = np.array([rows for _, _, rows, _ in shards], float) / self.n_samples
        engine.params[...] = sum(w * e.params for w, (e, _) in zip(weights, trained))
        engine.running[...] = sum(w * e.running for w, (e, _) in zip(weights, trained))
        settings = trained[0][0].optimizer_settings()
        if settings["state"] is not None:
            settings["state"] = sum(w * e.optimizer_state for w, (e, _) in zip(weights, trained))
        settings["t"] = int(round(sum(w * e.t for w, (e, _) in zip(weights, trained))))
        settings["mu_product"] = sum(w * e.optimizer_settings()["mu_product"]
                                     for w, (e, _) in zip(weights, trained))
        engine.set_optimizer(**settings)
        engine.dropout_rng = trained[0][0].dropout_rng
        self.timings.append((time.perf_counter() - start, max(r[2] for r in results)))
        return sum(total for _, total in trained)

    def skip(self, epochs):
        """Draw what `epochs` epochs draw (their shuffling seeds) without
        training them: a resumed fit's random state after those epochs."""
        if self.model.shuffle:
            for _ in range(epochs):
                self.model._random_state.randint(2**31 - 1)


def _live_workers(client):
    """The addresses of the cluster's workers now; RuntimeError naming the
    cause when the client was closed or lost its scheduler (whose empty
    report surfaced as KeyError: 'workers')."""
    info = {}
    if client.status not in ("closing", "closed"):
        try:  # every worker (distributed 2025.x reported 5 unless asked for all)
            info = client.scheduler_info(n_workers=-1)
        except TypeError:  # older: no n_workers, and every worker
            info = client.scheduler_info()
    if "workers" not in info:
        raise RuntimeError(
            f"the Dask client is {client.status} (closed during the fit, or its scheduler "
            "is gone): the fit cannot go on; the estimator is left as it was"
        )
    return info["workers"]


def _workers_now(client, what):
    """The sorted addresses of the live workers, waiting up to LOST_SECONDS
    for one (a nanny restarting a killed worker); RuntimeError naming
    `what` when none comes."""
    deadline = time.monotonic() + LOST_SECONDS
    while True:
        workers = sorted(_live_workers(client))
        if workers:
            return workers
        if time.monotonic() >= deadline:
            raise RuntimeError(f"no Dask worker is left to run {what}; the estimator is "
                               "left as it was")
        time.sleep(0.25)


def _spread(n, workers):
    """The worker of each of `n` partitions: contiguous runs, partition i on
    worker i W // n of the W sorted workers (fits of the same data on the
    same workers train the same shards, whatever the scheduler did before)."""
    return [workers[i * len(workers) // n] for i in range(n)]


def _identity(data):
    return data


def _put(client, data):
    """A future of `data` that the cluster can recompute: a task that
    returns it (the value kept in the scheduler's graph), not scattered data,
    which a lost worker takes with it for good (distributed PR #9261).
    Models over 10 MB would make each call warn of a large graph: that
    warning is the point of the design, so it is filtered here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        return client.submit(_identity, data, pure=False)


def _gather(client, futures, labels, results=True):
    """The results of `futures` (what each computes: `labels`; with
    `results` False, only wait for them), in a watched wait. A lost worker
    is the scheduler's to recover from: it recomputes lost partitions from
    their graph and re-runs the lost worker's tasks on the others, and the
    wait goes on. RuntimeError naming what it waited for (the futures
    cancelled) when no worker is left for LOST_SECONDS, when a task killed
    every worker that ran it (``KilledWorker``: Dask's ``allowed-failures``),
    when data cannot be recomputed or a task was cancelled, or when the
    client is closed."""
    alone_since = None
    while True:
        try:
            try:
                with client.as_current():  # wait() asks for the default client
                    wait(futures, timeout=WATCH_SECONDS)
                _raise_erred(futures)
                # each with a timeout: a result lost after the wait is computed again
                return [future.result(timeout=WATCH_SECONDS) for future in futures
                        ] if results else None
            except OSError:  # a timeout, a connection lost with a worker: watch
                _raise_erred(futures)  # now: the others may never end
        except KilledWorker as error:
            with contextlib.suppress(Exception):  # the other failures come in too
                with client.as_current():
                    wait(futures, timeout=2 * WATCH_SECONDS)
            erred = [label for future, label in zip(futures, labels) if future.status == "error"]
            client.cancel(list(futures))
            raise RuntimeError(
                f"{', '.join(erred) or _pending(futures, labels)}: every worker that ran its "
                f"task {error.task!r} died ({error.allowed_failures + 1} times, Dask's "
                "distributed.scheduler.allowed-failures); the estimator is left as it was"
            ) from error
        except CancelledError as error:
            _live_workers(client)  # a closed client is named as such
            raise RuntimeError(
                f"{_pending(futures, labels)}: a task was cancelled (by hand, or its data held "
                "by a lost worker cannot be recomputed: scattered data); the estimator is "
                "left as it was"
            ) from error
        if _live_workers(client):
            alone_since = None
        elif alone_since is None:
            alone_since = time.monotonic()
        elif time.monotonic() - alone_since >= LOST_SECONDS:
            client.cancel(list(futures))
            raise RuntimeError(f"no Dask worker is left to run {_pending(futures, labels)}; "
                               "the estimator is left as it was")


def _raise_erred(futures):
    """The error of the first erred future, if one has."""
    for future in futures:
        if future.status == "error":
            future.result()


def _pending(futures, labels):
    """The labels of the futures not done, in one phrase."""
    left = [label for future, label in zip(futures, labels) if not future.done()]
    return ", ".join(left or labels)


def _tree_sum(client, parts, label):
    """The sum of futures of tuples, added FAN_IN at a time (_gather)."""
    while len(parts) > 1:
        parts = [client.submit(_add, *parts[i:i + FAN_IN], pure=False)
                 for i in range(0, len(parts), FAN_IN)]
    return _gather(client, parts, [label])[0]


class _ClusterTrainer(Trainer):
    """The trainer of a Dask fit: the estimator's data are partitions on
    the workers (module docstring). Its epochs are _ShardEpochs, its
    validation sums over partitions, its L-BFGS gradient a tree of sums."""

    def __init__(self, model, client):
        super().__init__(model)
        self.client = client

    def fit(self, X, y, sample_weight, given):
        model = self.model
        # keyed by the collections as given (their dask tokens), written here, on the client
        self.checkpoints = self.checkpoints_of(X, y, sample_weight, False)
        X, y, sample_weight = _collections(X, y, sample_weight)
        stochastic = model.solver in STOCHASTIC_SOLVERS
        if is_classifier(model) and y.ndim != 1:
            raise ValueError("DaskMLPClassifier takes 1-D labels y")
        given_validation(model, given)
        if stochastic and model.early_stopping and model.scoring not in (None, "loss"):
            raise ValueError(
                f"scoring={model.scoring!r}: early stopping on a Dask collection scores "
                "with scoring=None (accuracy or R^2) or 'loss'"
            )
        self._initialize(X, y)
        parts = self._blocks(X, y, sample_weight)
        if not stochastic:
            self._fit_lbfgs(parts)
            return
        train, validation = self._split_by_partition(parts, given)
        self.fit_stochastic(train, validation, incremental=False,
                            rate=None if model.lr_schedule is None else self.scheduled_rate())

    def _initialize(self, X, y):
        """Initialise the network as a local fit on the same rows would: the
        classes, widths and dtype from the collections' metadata, the weights
        from the random state."""
        dtype = np.float32 if X.dtype == np.float32 else np.float64
        if is_classifier(self.model):
            client = self.client
            classes = np.unique(_gather(client, [client.compute(da.unique(y))],
                                        ["the classes of y"])[0])
            meta_X, meta_y = np.zeros((len(classes), X.shape[1]), dtype), classes
        else:
            n_outputs = 1 if y.ndim == 1 else y.shape[1]
            meta_X = np.zeros((2, X.shape[1]), dtype)
            meta_y = np.zeros(2) if y.ndim == 1 else np.zeros((2, n_outputs))
        network.prepare(self.model, meta_X, meta_y, None, False)

    def _blocks(self, X, y, sample_weight):
        """Futures of the partitions as the engine takes them, prepared on
        the workers in contiguous runs (_spread) and computed from their
        graph, so that the scheduler recomputes those a lost worker held.
        Empty partitions (common after filtering) hold no rows and are left
        out, so the fit is the one without them."""
        client, model = self.client, _for_workers(self.model)
        sws = (sample_weight.to_delayed().ravel() if sample_weight is not None
               else [None] * X.numblocks[0])
        rows = list(X.chunks[0])
        kept = [i for i, n in enumerate(rows) if n > 0]
        labels = [f"partition {i}" for i in kept]
        Xs, ys = X.to_delayed().ravel(), y.to_delayed().ravel()
        if not _live_workers(client):
            raise ValueError("the Dask cluster has no workers")
        if is_classifier(model) and model.class_weight is not None:
            counts = None
            if model.class_weight == "balanced":
                counts = sum(_gather(client, client.compute([
                    dask.delayed(_class_counts)(model, ys[i], sws[i]) for i in kept]), labels))
            model._class_weight_table_ = network.class_weight_table(model, counts)
        model_future = _put(client, model)
        tasks = [dask.delayed(_block, pure=False)(model_future, Xs[i], ys[i], sws[i], i)
                 for i in kept]
        held = _spread(len(tasks), _workers_now(client, "the fit's partitions"))
        blocks = [client.compute(task, workers=[worker], allow_other_workers=True)
                  for task, worker in zip(tasks, held)]
        _gather(client, blocks, labels, results=False)  # a partition's error now
        return _Partitions(client, blocks, kept, [rows[i] for i in kept], X, y)

    def _fit_lbfgs(self, parts):
        """L-BFGS on the cluster's sums. An evaluation that loses a worker
        waits until the scheduler has recomputed its partitions elsewhere:
        each partition's sums do not depend on the worker that computed
        them, so the model is the one without the loss."""
        done, finished = self.resume()
        if finished:
            return  # a finished fit's checkpoint: its model
        client, model, engine = self.client, self.model, self.model._engine
        template = _put(client, engine)
        label = f"the loss and gradient of {parts.label()}"

        def loss_and_gradient(params):
            p = _put(client, params.astype(engine.dtype))
            data_loss, weight, grads = _tree_sum(client, [
                client.submit(_loss_gradient_sums, template, p, block, pure=False)
                for block in parts.blocks], label)
            engine.params[...] = params  # the penalty's terms are the iterate's
            engine.grads[...] = grads
            loss = engine.finish_loss_gradient(data_loss, weight, model.alpha, model.alpha_l1)
            return loss, engine.grads.astype(np.float64)

        self.minimize_lbfgs(loss_and_gradient, done)
        if self.checkpoints is not None:
            self.checkpoints.finished(model.n_iter_)

    def _split_by_partition(self, parts, given):
        """(train, validation) for fit_stochastic: the training partitions,
        and X_val / y_val or held-out partitions for early stopping."""
        model = self.model
        if not model.early_stopping:
            return parts, None
        X_val, y_val, sw_val = given
        if X_val is not None and not _is_dask(X_val):
            return parts, self.validation_split(None, None, None, given)[1]
        if X_val is not None:
            return parts, self._blocks(*_collections(X_val, y_val, sw_val))
        n = len(parts.blocks)
        if n < 2:
            raise ValueError(
                "early_stopping on a Dask collection holds out whole partitions: give X "
                "at least 2 partitions, or pass X_val and y_val"
            )
        n_val = min(max(int(round(model.validation_fraction * n)), 1), n - 1)
        held = sorted(model._random_state.permutation(n)[:n_val].tolist())
        return parts.subset([i for i in range(n) if i not in held]), parts.subset(held)

    def epochs(self, train):
        if isinstance(train, _Partitions):
            return _ShardEpochs(self.model, train)
        return super().epochs(train)

    def validation_metrics(self, validation):
        if not isinstance(validation, _Partitions):
            return super().validation_metrics(validation)
        client, model = self.client, self.model
        model_future = _put(client, _for_workers(model))
        p = _put(client, model._engine.params.copy())
        data_loss, weight, sums = _tree_sum(client, [
            client.submit(_validation_sums, model_future, p, block, pure=False)
            for block in validation.blocks], f"the validation of {validation.label()}")
        loss = data_loss / weight
        if model.scoring == "loss":
            return loss, -loss
        if is_classifier(model):
            return loss, float(sums[0] / weight)
        n = len(sums) // 3
        residual, total, squares = sums[:n], sums[n:2 * n], sums[2 * n:]
        spread = squares - total**2 / weight
        return loss, float(np.mean(_r2(residual, spread)))


class _DaskMixin:
    """What the Dask estimators add to the local ones (module docstring)."""

    _parameter_constraints: dict = {"client": "no_validation"}

    def _client(self):
        if self.client is not None:
            return self.client
        try:
            return default_client()
        except ValueError as error:
            raise ValueError(
                "No Dask client: start one (distributed.Client(...)) or pass client="
            ) from error

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
            sample_weight_val=None):
        """Train on Dask collections where their partitions live (numpy and
        sparse input: the local estimator's fit).

        Parameters
        ----------
        X : dask array of shape (n_samples, n_features), or dask dataframe
            Chunked along rows only (one chunk across the columns), with
            known chunk sizes; float32 trains in float32, else float64.
        y : dask array of shape (n_samples,) or (n_samples, n_outputs), or series
            Row chunks equal to X's. A classifier takes labels (1-D).
        sample_weight : dask array of shape (n_samples,), optional
            Row chunks equal to X's.
        X_val, y_val, sample_weight_val : optional
            Early stopping's validation data: numpy (scored on the client)
            or Dask collections (scored on the workers).

        Returns
        -------
        self : the fitted estimator.

        Raises
        ------
        ValueError
            Columns split among chunks, unknown chunk sizes, partitions of
            y or sample_weight that differ from X's, NaN or inf found in a
            partition, no client; the estimator is left as it was.
        """
        if not _is_dask(X):
            return super().fit(X, y, sample_weight, X_val=X_val, y_val=y_val,
                               sample_weight_val=sample_weight_val)
        return self._fit_on_cluster(X, y, sample_weight, (X_val, y_val, sample_weight_val))

    @exclusive
    def _fit_on_cluster(self, X, y, sample_weight, given):
        """fit on Dask collections; any error leaves the estimator as it was."""
        with restored_on_error(self, self.__dict__.copy()):
            _ClusterTrainer(self, self._client()).fit(X, y, sample_weight, given)
        return self

    def to_local(self):
        """The fitted local estimator.

        Returns
        -------
        estimator : cnn_bp.MLPClassifier or cnn_bp.MLPRegressor
            A copy with this one's parameters and fitted state (weights,
            classes, curves): it predicts the same, needs no cluster, and
            pickles and saves (`cnn_bp.save`) as any local model.
        """
        check_is_fitted(self)
        local = self._local_class.__new__(self._local_class)
        state = copy.deepcopy(self.__getstate__())
        state.pop("client", None)
        local.__setstate__(state)
        return local

    def __getstate__(self):
        state = super().__getstate__()
        if state.get("client") is not None:  # a live connection does not pickle
            state = dict(state, client=None)
        return state

    def __sklearn_clone__(self):
        """A clone shares the client (a live connection is not copied)."""
        params = self.get_params(deep=False)
        client = params.pop("client")
        return type(self)(**{k: clone(v, safe=False) for k, v in params.items()},
                          client=client)

    def _lazy(self, X, method, dtype, columns):
        """`method` of the local model on each partition of dask X, lazily."""
        X = _rows_array("X", X, (2,))
        model = dask.delayed(self.to_local(), pure=True)
        if columns is None:
            return X.map_blocks(_predict_block, model, method, np.empty((0,), dtype),
                                dtype=dtype, drop_axis=1, meta=np.empty((0,), dtype))
        return X.map_blocks(_predict_block, model, method, np.empty((0, columns), dtype),
                            dtype=dtype, chunks=(X.chunks[0], (columns,)),
                            meta=np.empty((0, 0), dtype))

    def predict(self, X):
        """Predictions: for dask X a lazy dask array computed on the workers
        (``to_local().predict`` of each partition), else the local estimator's.

        Parameters
        ----------
        X : dask array or dataframe of shape (n_samples, n_features), or array-like

        Returns
        -------
        y : dask array or ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        if not _is_dask(X):
            return super().predict(X)
        check_is_fitted(self)
        if is_classifier(self):
            return self._lazy(X, "predict", self.classes_.dtype, None)
        outputs = None if self.n_outputs_ == 1 else self.n_outputs_
        return self._lazy(X, "predict", self._engine.dtype, outputs)

    def score(self, X, y, sample_weight=None):
        """Accuracy (classifier) or R^2 (regressor): for dask X a lazy 0-d
        dask array computed on the workers, else the local estimator's float.

        Parameters
        ----------
        X : dask array or dataframe of shape (n_samples, n_features), or array-like
        y : dask array or series of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : dask array of shape (n_samples,), optional

        Returns
        -------
        score : dask array of shape () or float
        """
        if not _is_dask(X):
            return super().score(X, y, sample_weight)
        y = _rows_array("y", y, (1, 2))
        w = (da.ones(y.shape[0], chunks=y.chunks[0]) if sample_weight is None
             else _rows_array("sample_weight", sample_weight, (1,)))
        pred = self.predict(X)
        if is_classifier(self):
            return (w * (pred == y)).sum() / w.sum()
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        p2 = pred.reshape(-1, 1) if pred.ndim == 1 else pred
        wc = w[:, None]
        residual = (wc * (y2 - p2) ** 2).sum(axis=0)
        mean = (wc * y2).sum(axis=0) / w.sum()
        spread = (wc * (y2 - mean) ** 2).sum(axis=0)
        return da.mean(_r2(residual, spread))


def _r2(residual, spread):
    """R^2 per output as scikit-learn's r2_score (force_finite: a constant
    target scores 1 when predicted exactly, else 0); numpy or dask arrays
    (np.where dispatches to dask's)."""
    safe = np.where(spread == 0, 1, spread)
    return np.where(spread == 0, np.where(residual == 0, 1.0, 0.0), 1 - residual / safe)


def _with_client(local_class, name):
    """__init__ of class `name`: local_class's parameters plus keyword-only
    client=None, with the explicit signature scikit-learn's get_params and
    clone read."""
    signature = inspect.signature(local_class.__init__)

    def __init__(self, *args, client=None, **params):
        local_class.__init__(self, *args, **params)
        self.client = client

    client = inspect.Parameter("client", inspect.Parameter.KEYWORD_ONLY, default=None)
    __init__.__signature__ = signature.replace(
        parameters=[*signature.parameters.values(), client])
    __init__.__doc__ = local_class.__init__.__doc__
    __init__.__qualname__ = f"{name}.__init__"
    return __init__


class DaskMLPClassifier(_DaskMixin, MLPClassifier):
    __doc__ = None  # built below from MLPClassifier's

    _local_class = MLPClassifier
    _parameter_constraints = {**MLPClassifier._parameter_constraints,
                              **_DaskMixin._parameter_constraints}
    __init__ = _with_client(MLPClassifier, "DaskMLPClassifier")

    def predict_proba(self, X):
        """Class probabilities: for dask X a lazy dask array of shape
        (n_samples, n_classes) computed on the workers, else the local
        estimator's ndarray.

        Parameters
        ----------
        X : dask array or dataframe of shape (n_samples, n_features), or array-like

        Returns
        -------
        proba : dask array or ndarray of shape (n_samples, n_classes)
        """
        if not _is_dask(X):
            return super().predict_proba(X)
        check_is_fitted(self)
        return self._lazy(X, "predict_proba", self._engine.dtype, len(self.classes_))


class DaskMLPRegressor(_DaskMixin, MLPRegressor):
    __doc__ = None  # built below from MLPRegressor's

    _local_class = MLPRegressor
    _parameter_constraints = {**MLPRegressor._parameter_constraints,
                              **_DaskMixin._parameter_constraints}
    __init__ = _with_client(MLPRegressor, "DaskMLPRegressor")


def _dask_doc(local_class):
    """The Dask estimator's docstring: the local class's, with a first
    paragraph of its own and ``client`` added to its parameters (one text,
    so that the parameters documented are exactly the signature's)."""
    doc = inspect.cleandoc(local_class.__doc__)
    rest = doc[doc.index("Parameters\n----------\n") + len("Parameters\n----------\n"):]
    name = local_class.__name__
    return (
        f"`cnn_bp.{name}` trained on a Dask cluster, where the partitions of its "
        "data live.\n\n"
        f"Every parameter of `cnn_bp.{name}`, plus ``client``; ``fit`` takes Dask "
        "arrays and dataframes chunked along rows (the module docstring of "
        "`cnn_bp.dask` describes the two training schemes), ``to_local`` returns "
        f"the fitted `cnn_bp.{name}`.\n\n"
        "Parameters\n----------\n"
        "client : distributed.Client or None, default=None\n"
        "    The cluster to train on; None: ``distributed.default_client()``.\n"
        + rest
    )


DaskMLPClassifier.__doc__ = _dask_doc(MLPClassifier)
DaskMLPRegressor.__doc__ = _dask_doc(MLPRegressor)
