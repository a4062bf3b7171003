"""The trainer: how a fit runs, from the data given to a fitted model.

Layer: below the estimators (``_mlp.py`` calls it from ``fit`` and
``partial_fit``; ``cnn_bp.dask`` subclasses it), above the network
(``_network.py``) and the engine. Imports those, the registry, the thread
count (``_threads.py``), scikit-learn and scipy; never the estimators.

1. Guards: one fit of an estimator at a time (``exclusive``); any error
   before training starts leaves the estimator as it was
   (``restored_on_error``), and so does an error in training before a
   batch trained (``restored_unless_trained``: MemoryError for the
   threads' buffers, L-BFGS's errors).
2. ``Trainer.fit``: the data and network (``network.prepare``), the
   validation data, then the stochastic epoch loop or L-BFGS.
3. The epoch loop (``fit_stochastic``): epochs run in slices of compiled
   work between which Ctrl-C lands (``Epochs``); divergence; early
   stopping and ``n_iter_no_change``; sgd's invscaling and adaptive rates;
   ``lr_schedule``; scikit-learn's callbacks, each epoch a task.
4. L-BFGS (``minimize_lbfgs``): scipy's L-BFGS-B, as scikit-learn runs it.

A trainer of data held elsewhere (``cnn_bp.dask``) replaces three hooks:
``epochs`` (what runs an epoch), ``validation_metrics`` and the
``loss_and_gradient`` it gives ``minimize_lbfgs``.
"""

import contextlib
import functools
import math
import os
import threading
import warnings
from numbers import Real

import numpy as np
import scipy.optimize
from sklearn.base import clone, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import check_scoring
from sklearn.model_selection import train_test_split

from . import _model_file
from . import _network as network
from ._checkpoint import Checkpoints
from ._checks import all_finite, check_solver
from ._compat import _check_optimize_result, _get_additional_lbfgs_options_dict
from ._model_file import ModelFileError
from ._registry import STOCHASTIC_SOLVERS
from ._threads import training_threads

# Training returns to Python this often (seconds of compiled work), so that
# Ctrl-C interrupts a long epoch between two mini-batches.
SLICE_SECONDS = 0.02

NON_FINITE = (
    "Solver produced non-finite parameter weights. The input data may"
    " contain large values and need to be preprocessed."
)

# Estimators being fitted now (their ids), with the lock that guards the set:
# a second fit of the same estimator would rebuild what the first is using.
_fitting = set()
_fitting_lock = threading.Lock()


def _forget_fits_in_child():
    """A forked child runs none of its parent's fits: it may fit any
    estimator (and gets a new lock: the forking thread may not have held it)."""
    global _fitting_lock
    _fitting.clear()
    _fitting_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_fits_in_child)


# -- 1. guards ---------------------------------------------------------------------


def exclusive(fit_method):
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
def restored_on_error(estimator, state):
    """Any error inside leaves the estimator's __dict__ as `state` (a
    snapshot taken before anything changed)."""
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(state)
        raise


@contextlib.contextmanager
def restored_unless_trained(estimator, state):
    """Training: an error inside (Ctrl-C is handled within) before the
    network trained a batch leaves the estimator's __dict__ as `state`: a
    MemoryError as the first slice maps the threads' buffers, an error of
    L-BFGS (which sets the parameters at its end). After batches, the
    error propagates with the epochs before it kept (divergence, a bad
    lr_schedule value), as scikit-learn keeps them."""
    engine = estimator._engine
    rows = engine.rows_trained
    try:
        yield
    except Exception:
        if engine.rows_trained == rows:
            estimator.__dict__.clear()
            estimator.__dict__.update(state)
        raise


def given_validation(model, given):
    """Whether `given` (X_val, y_val, sample_weight_val) holds validation
    data; ValueError where early stopping cannot use them."""
    X_val, y_val, sw_val = given
    if model.solver not in STOCHASTIC_SOLVERS:
        if X_val is not None:
            raise ValueError("X_val is for early stopping, which lbfgs does not do")
        return False
    if X_val is None and y_val is None and sw_val is None:
        return False
    if X_val is None or y_val is None:
        raise ValueError("X_val and y_val must be given together")
    if not model.early_stopping:
        raise ValueError(
            "X_val and y_val are passed while early_stopping is False; "
            "validation data serves early stopping only: set early_stopping=True"
        )
    return True


# -- 3. the epochs of data in memory --------------------------------------------------


def _shuffle(data, random_state):
    """``sklearn.utils.shuffle`` of the row order, in place: the same draws
    and result (shuffle's swaps depend on positions only, so shuffling the
    order is indexing rows by the shuffled arange), without its input
    checks (a fifth of a digits epoch) or copies."""
    data.shuffle(random_state)


class Epochs:
    """The epochs of a fit on rows in memory: `run` trains one, shuffled
    from the estimator's random state when it shuffles, in slices of
    compiled work between which Python sees a pending Ctrl-C. The data are
    checked once, here (``Engine.training_data``), not at every slice."""

    def __init__(self, model, X, Y, sample_weight):
        self.model = model
        self.data = model._engine.training_data(X, network.targets(model, Y), sample_weight,
                                                shuffle=model.shuffle)
        self.n_samples = X.shape[0]
        # for callbacks: the fit's data, its targets computed on demand
        self.hook_data = dict(X=X, y=lambda: network.given_targets(model, Y))

    def run(self, batch_size, n_threads):
        """One epoch; returns the sum over its batches of batch loss x batch rows."""
        model, engine = self.model, self.model._engine
        if model.shuffle:  # indices, not rows: the engine gathers each batch
            _shuffle(self.data, model._random_state)
        total, start = 0.0, 0
        while start < self.n_samples:
            total = engine.train(self.data, batch_size, model.alpha, alpha_l1=model.alpha_l1,
                                 n_threads=n_threads, start=start, total=total,
                                 seconds=SLICE_SECONDS)
            start = engine.stopped_at
        return total

    def skip(self, epochs):
        """Draw what `epochs` epochs draw (their row orders) without training
        them: a resumed fit's random state after those epochs."""
        if self.model.shuffle:
            for _ in range(epochs):
                _shuffle(self.data, self.model._random_state)


class Trainer:
    """The training of one estimator by one fit or partial_fit call."""

    checkpoints = None  # the fit's Checkpoints (checkpoint_dir), set by fit

    def __init__(self, model):
        self.model = model

    # -- 2. a fit ----------------------------------------------------------------

    def fit(self, X, y, sample_weight=None, incremental=False, state=None,
            validation=(None, None, None)):
        """Validate, (re)initialise, train. Until training starts, any error
        leaves the estimator exactly as it was (`state`: a snapshot of its
        __dict__ taken by the caller, else here); in training, any error
        before a batch trained (restored_unless_trained)."""
        model = self.model
        state = model.__dict__.copy() if state is None else state
        if model.early_stopping and incremental and validation[0] is None:
            # scikit-learn's error (its partial_fit has no validation data)
            raise ValueError(
                "partial_fit does not support early_stopping=True without validation "
                "data: pass X_val and y_val, the same on every call"
            )
        if incremental and model.early_stopping and getattr(model, "stopped_early_", False):
            warnings.warn(
                f"Early stopping ended training after {len(model.validation_scores_)} "
                "validated partial_fit calls (the validation score did not improve by tol for "
                f"n_iter_no_change={model.n_iter_no_change} calls) and restored the best "
                "parameters: this call does nothing. Call fit to start afresh, or set "
                "early_stopping=False to train on.",
                UserWarning,
            )
            return model
        stochastic = model.solver in STOCHASTIC_SOLVERS
        with restored_on_error(model, state):
            self.checkpoints = self.checkpoints_of(X, y, sample_weight, incremental)
            X, Y, sample_weight = network.prepare(model, X, y, sample_weight, incremental)
            if stochastic:
                check_solver(model.solver)  # one the compiled core steps
                train, validation = self.validation_split(X, Y, sample_weight, validation)
                # the first epoch's scheduled rate, checked before anything trains
                rate = None if model.lr_schedule is None else self.scheduled_rate()
            else:
                given_validation(model, validation)
        with restored_unless_trained(model, state):
            if stochastic:
                self.fit_stochastic(train, validation, incremental, rate)
            else:
                self.fit_lbfgs(X, Y, sample_weight)
        return model

    def checkpoints_of(self, X, y, sample_weight, incremental):
        """The Checkpoints of this fit (keyed by the data as given), or None:
        no checkpoint_dir, or partial_fit (whose calls each see a chunk)."""
        model = self.model
        if model.checkpoint_dir is None or incremental:
            return None
        return Checkpoints(model, model.checkpoint_dir, X, y, sample_weight)

    def resume(self, epochs=None):
        """Restore this fit's checkpoint, if it has one: (epochs it trained,
        whether it finished), else (0, False); `epochs` (Epochs) draws what
        those epochs drew (their row orders). A damaged or foreign
        checkpoint warns, and the fit starts afresh."""
        model = self.model
        found = None if self.checkpoints is None else self.checkpoints.read()
        if found is None:
            return 0, False
        header, files, extra = found
        scratch = clone(model)  # a restore that fails leaves the model as it was
        try:
            _model_file.restore(scratch, header, files)
            if (scratch._engine.layer_units != model._engine.layer_units
                    or scratch._engine.dtype != model._engine.dtype):
                raise ModelFileError("its network is not this fit's")
        except ModelFileError as exc:
            warnings.warn(f"the checkpoint {self.checkpoints.path} does not fit this fit and "
                          f"was not used; training starts afresh ({exc})", RuntimeWarning)
            return 0, False
        params = model.get_params(deep=False)  # the model's own, not the clone's copies
        model.__dict__.update({k: v for k, v in vars(scratch).items() if k not in params})
        if epochs is not None:
            epochs.skip(extra["epochs"])
        if model.verbose:
            print(f"Resuming from {self.checkpoints.path} after epoch {extra['epochs']}"
                  + (" (finished)" if extra["finished"] else ""))
        return extra["epochs"], extra["finished"]

    def validation_split(self, X, Y, sample_weight, given):
        """(train, validation): (X, Y, sample_weight) to train on and
        (X, labels, sample_weight, targets) to validate on. With early
        stopping: the given validation data (X_val, y_val, sample_weight_val),
        or a split as scikit-learn does (stratified for single-output
        classification, from the same random state, right after the weights
        were drawn); else everything trains and validation is (None,) * 4."""
        model = self.model
        if given_validation(model, given):
            X_val, y_val, sw_val = given
            X_e, Y_e, sw_e = network.engine_data(model, X_val, y_val, sw_val)
            y_val = np.asarray(y_val)
            if is_classifier(model) and y_val.ndim == 2 and y_val.shape[1] == 1:
                y_val = y_val.ravel()
            return (X, Y, sample_weight), (X_e, y_val, sw_e, Y_e)
        if not model.early_stopping:
            return (X, Y, sample_weight), (None, None, None, None)
        stratify = Y if is_classifier(model) and model.n_outputs_ == 1 else None
        arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
        parts = train_test_split(
            *arrays,
            random_state=model._random_state,
            test_size=model.validation_fraction,
            stratify=stratify,
        )
        X_train, X_val, Y_train, Y_val = parts[:4]
        sw_train, sw_val = parts[4:] if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' "
                "or the size of your dataset."
            )
        return (X_train, Y_train, sw_train), (
            X_val, network.given_targets(model, Y_val), sw_val, network.targets(model, Y_val))

    # -- 3. the epoch loop -------------------------------------------------------

    def epochs(self, train):
        """What runs the epochs of `train` (X, Y, sample_weight): Epochs."""
        return Epochs(self.model, *train)

    def fit_stochastic(self, train, validation, incremental, rate=None):
        """The epoch loop; `rate`: lr_schedule's checked rate for the first epoch."""
        model = self.model
        self._begin(incremental)
        epochs = self.epochs(train)
        done, finished = self.resume(epochs)
        engine = model._engine
        batch_size = self._batch_size(epochs.n_samples)
        good = np.empty_like(engine.params)  # parameters after the last finite epoch
        # what this call trained, for an interruption (Ctrl-C) at any point
        before = len(model.loss_curve_), model.t_, engine.rows_trained
        # scikit-learn's callbacks (set_callbacks): the fit is a task, each
        # epoch a subtask; arguments are lazy, so no callbacks cost nothing.
        hooks = epochs.hook_data
        fit_ctx = model._init_callback_context(max_subtasks=1 if incremental else model.max_iter)
        fit_ctx.call_on_fit_task_begin(estimator=model, **hooks)
        try:
            model.n_iter_ = done
            work = epochs.n_samples * engine.params.size * (1 if incremental else model.max_iter)
            with training_threads(work) as n_threads:
                for _ in range(0 if finished else model.max_iter - done):
                    epoch_ctx = fit_ctx.subcontext(task_name="epoch")
                    epoch_ctx.call_on_fit_task_begin(estimator=model, **hooks)
                    if model.lr_schedule is not None:
                        engine.learning_rate = (rate if model.n_iter_ == 0
                                                else self.scheduled_rate())
                    np.copyto(good, engine.params)
                    total = epochs.run(batch_size, n_threads)
                    if not (math.isfinite(total) and all_finite(engine.params)):
                        self._stop_diverged(good, total)
                        break
                    model.n_iter_ += 1
                    stop = self._epoch_ends(total / epochs.n_samples, epochs.n_samples,
                                            validation, incremental, epoch_ctx, hooks)
                    if self.checkpoints is not None:
                        self.checkpoints.epoch_ended(model.n_iter_)
                    if stop:
                        break
        except KeyboardInterrupt:
            self._interrupted(before, good)
            finished = None  # not finished: the checkpoint of its last epoch is written
        if model.early_stopping and (model.stopped_early_ or not incremental):
            engine.params[...] = model._best_params
        if self.checkpoints is not None:
            if finished is None:
                self.checkpoints.flush()
            elif not finished:
                self.checkpoints.finished(model.n_iter_)
        fit_ctx.call_on_fit_task_end(estimator=model, reconstruction_attributes=self._snapshot,
                                     **hooks)

    def _begin(self, incremental):
        """Optimizer, dropout and records as the epoch loop starts."""
        model, engine = self.model, self.model._engine
        if not incremental or engine.solver is None:
            network.start_optimizer(model)
        # dropout may change between fits (warm_start, partial_fit)
        engine.dropout = network.dropout_rates(model, len(engine.layer_units) - 2)
        network.seed_dropout(model)
        model.stopped_early_ = False
        # partial_fit calls may switch early stopping on or off
        if model.early_stopping and model.validation_scores_ is None:
            model.validation_scores_ = []
            model.validation_loss_curve_ = []
            model.best_validation_score_ = -np.inf
            model.best_loss_ = None
            model._no_improvement_count = 0
        elif not model.early_stopping and model.best_loss_ is None:
            model.best_loss_ = np.inf

    def _batch_size(self, n_samples):
        """batch_size for `n_samples` rows, as scikit-learn clips it."""
        batch_size = self.model.batch_size
        if batch_size == "auto":
            return min(200, n_samples)
        if batch_size > n_samples:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than "
                "sample size. It is going to be clipped"
            )
        return int(np.clip(batch_size, 1, n_samples))

    def _epoch_ends(self, loss, n_samples, validation, incremental, epoch_ctx, hooks):
        """Book a finished epoch of mean loss `loss`; True when training stops."""
        model, engine = self.model, self.model._engine
        model.loss_ = loss
        model.t_ += n_samples
        model.loss_curve_.append(loss)
        if model.verbose:
            print("Iteration %d, loss = %.8f" % (model.n_iter_, loss))
        self._update_no_improvement_count(validation)
        if epoch_ctx.call_on_fit_task_end(
            estimator=model, reconstruction_attributes=self._snapshot, **hooks
        ):
            return True  # a callback asked to stop
        if model.solver == "sgd" and model.learning_rate == "invscaling":
            engine.learning_rate = (
                float(model.learning_rate_init) / (model.t_ + 1) ** model.power_t
            )
        if model._no_improvement_count > model.n_iter_no_change:
            if self._trigger_stopping():
                model.stopped_early_ = model.early_stopping
                return True
            model._no_improvement_count = 0
        if incremental:
            return True
        if model.n_iter_ == model.max_iter:
            warnings.warn(
                "Stochastic Optimizer: Maximum iterations (%d) "
                "reached and the optimization hasn't converged yet." % model.max_iter,
                ConvergenceWarning,
            )
        return False

    def _interrupted(self, before, good):
        """Ctrl-C: as scikit-learn, keep what was trained, and warn. The
        mini-batches of an unfinished epoch stay trained: t_ counts their
        rows, while n_iter_ and loss_curve_ count finished epochs only."""
        model, engine = self.model, self.model._engine
        epochs_before, t_before, rows_before = before
        model.n_iter_ = len(model.loss_curve_) - epochs_before
        model.t_ = t_before + (engine.rows_trained - rows_before)
        if not all_finite(engine.params):
            engine.params[...] = good
            network.start_optimizer(model)
        warnings.warn("Training interrupted by user.")

    def scheduled_rate(self):
        """lr_schedule's rate for the next epoch (numbered over all fits and
        partial_fit calls: len(loss_curve_)), checked to be a finite number
        >= 0 (0, where an annealing ends as torch's CosineAnnealingLR does,
        takes no step; a negative rate would climb the loss)."""
        model = self.model
        epoch = len(model.loss_curve_)
        rate = model.lr_schedule(epoch, model.learning_rate_init)
        if (isinstance(rate, Real) and not isinstance(rate, (bool, np.bool_))
                and math.isfinite(rate) and rate >= 0):
            return float(rate)
        raise ValueError(
            f"lr_schedule returned {rate!r} for epoch {epoch} (lr_init="
            f"{model.learning_rate_init}); a learning rate must be a finite number >= 0"
        )

    def _snapshot(self):
        """The fitted state now, for a callback's fitted_estimator (copies:
        the model predicts from them as from user-assigned weights)."""
        return {"coefs_": [c.copy() for c in self.model.coefs_],
                "intercepts_": [b.copy() for b in self.model.intercepts_]}

    def _stop_diverged(self, good, total):
        """The last epoch gave a non-finite loss or weights: put back the
        parameters from before it and restart the optimizer (its state
        holds the overflow). Non-finite weights raise, as in scikit-learn,
        unless early stopping has a best model to return to (scikit-learn
        >= 1.6 returns that one too); a non-finite loss alone warns
        (scikit-learn would go on)."""
        model, engine = self.model, self.model._engine
        weights_finite = all_finite(engine.params)
        engine.params[...] = good
        network.start_optimizer(model)
        kept = f"The model keeps its parameters from after epoch {model.n_iter_}."
        if model.early_stopping:
            # the caller restores the best parameters; later partial_fit
            # calls do nothing, as after any early stop
            model.stopped_early_ = True
            kept = ("Early stopping keeps the parameters of the best validation score, "
                    f"{model.best_validation_score_}.")
        elif not weights_finite:
            raise ValueError(f"{NON_FINITE} {kept}")
        what = f"the loss became {total}" if weights_finite else "the weights overflowed"
        warnings.warn(
            f"Training diverged in epoch {model.n_iter_ + 1} ({what}): training "
            f"stopped; lower learning_rate_init or scale the data. {kept}",
            RuntimeWarning,
        )

    def _trigger_stopping(self):
        """After n_iter_no_change epochs without improvement: stop (True),
        or for sgd's 'adaptive' schedule divide the rate by 5 first."""
        model, engine = self.model, self.model._engine
        what = "Validation score" if model.early_stopping else "Training loss"
        msg = "%s did not improve more than tol=%f for %d consecutive epochs." % (
            what, model.tol, model.n_iter_no_change)
        if not (engine.solver == "sgd" and model.learning_rate == "adaptive"):
            if model.verbose:
                print(msg + " Stopping.")
            return True
        if engine.learning_rate <= 1e-6:
            if model.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        engine.learning_rate /= 5.0
        if model.verbose:
            print(msg + " Setting learning rate to %f" % engine.learning_rate)
        return False

    def validation_metrics(self, validation):
        """(loss, score) of the model now on the validation data: the mean
        data loss (no penalty) and `scoring`'s score (None: scikit-learn's,
        accuracy or R^2; 'loss': minus the loss)."""
        model = self.model
        X_val, y_val, sw_val, Y_val = validation
        # a forward pass, no gradient
        val_loss = model._engine.loss_gradient(X_val, Y_val, sw_val, 0.0, gradient=False)
        if model.scoring is None:
            return val_loss, model._score(X_val, y_val, sample_weight=sw_val)
        if model.scoring == "loss":
            return val_loss, -val_loss
        return val_loss, check_scoring(model, model.scoring)(model, X_val, y_val,
                                                             sample_weight=sw_val)

    def _update_no_improvement_count(self, validation):
        model = self.model
        if model.early_stopping:
            val_loss, val_score = self.validation_metrics(validation)
            model.validation_loss_curve_.append(val_loss)
            model.validation_scores_.append(val_score)
            if model.verbose:
                print("Validation score: %f" % model.validation_scores_[-1])
            if val_score < model.best_validation_score_ + model.tol:
                model._no_improvement_count += 1
            else:
                model._no_improvement_count = 0
            if val_score > model.best_validation_score_:
                model.best_validation_score_ = val_score
                model._best_params = model._engine.params.copy()
        else:
            if model.loss_curve_[-1] > model.best_loss_ - model.tol:
                model._no_improvement_count += 1
            else:
                model._no_improvement_count = 0
            if model.loss_curve_[-1] < model.best_loss_:
                model.best_loss_ = model.loss_curve_[-1]

    # -- 4. L-BFGS ---------------------------------------------------------------

    def fit_lbfgs(self, X, Y, sample_weight):
        """L-BFGS on the full-batch loss of rows in memory."""
        done, finished = self.resume()
        if finished:
            return  # a finished fit's checkpoint: its model
        model, engine = self.model, self.model._engine
        Y = network.targets(model, Y)
        work = X.shape[0] * engine.params.size * (model.max_iter - done)
        with training_threads(work) as n_threads:

            def loss_and_gradient(params):
                loss = engine.loss_gradient(X, Y, sample_weight, model.alpha, params,
                                            alpha_l1=model.alpha_l1, n_threads=n_threads)
                return loss, engine.grads.astype(np.float64)

            self.minimize_lbfgs(loss_and_gradient, done)
        if self.checkpoints is not None:
            self.checkpoints.finished(model.n_iter_)

    def minimize_lbfgs(self, loss_and_gradient, done=0):
        """scipy's L-BFGS-B from the engine's parameters, as scikit-learn
        runs it, for max_iter - `done` iterations (`done`: those of a
        checkpoint it resumes); `loss_and_gradient(params)` gives (loss,
        float64 gradient). Non-finite weights at the end raise ValueError,
        the parameters from before restored."""
        model, engine = self.model, self.model._engine
        start = engine.params.copy()
        iprint = 1 if model.verbose is True or model.verbose >= 1 else -1
        result = scipy.optimize.minimize(
            loss_and_gradient,
            engine.params.astype(np.float64),
            method="L-BFGS-B",
            jac=True,
            callback=self._iterate_kept(done),
            options={
                "maxfun": model.max_fun,
                "maxiter": model.max_iter - done,
                "gtol": model.tol,
                **_get_additional_lbfgs_options_dict("iprint", iprint),
            },
        )
        model.n_iter_ = done + _check_optimize_result("lbfgs", result, model.max_iter - done)
        model.loss_ = result.fun
        engine.params[...] = result.x
        if not np.isfinite(engine.params).all():
            engine.params[...] = start
            raise ValueError(NON_FINITE + " The model keeps its parameters from before fit.")

    def _iterate_kept(self, done):
        """With checkpoints, scipy's callback that keeps each L-BFGS iterate
        in them (written as an epoch's state is: at most every SECONDS), the
        iterations counted from `done`; else None."""
        if self.checkpoints is None:
            return None
        model, engine = self.model, self.model._engine
        iterations = [done]

        def keep(x):
            iterations[0] += 1
            if iterations[0] >= model.max_iter:
                return  # the last: the finished fit's checkpoint follows
            engine.params[...] = x  # loss_and_gradient takes its parameters as given
            model.n_iter_ = iterations[0]
            self.checkpoints.epoch_ended(iterations[0])

        return keep
