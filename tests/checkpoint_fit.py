"""A fit with checkpoint_dir, in a process of its own: run by
tests/test_checkpoints.py, which kills it and runs it again.

    python checkpoint_fit.py DIRECTORY CONFIG [KILL_AFTER_EPOCH]

CONFIG: "adam", "sgd" (with dropout and early stopping) or "lbfgs" (its
iterations count as epochs); "adam-4-threads": adam with its batches split
among T = 4 threads (threadpool_limits), small as the fit is. With the environment variable
CNN_BP_SCHEDULER (a Dask scheduler's address), the fit is a
DaskMLPClassifier's on that cluster, the digits in partitions of 300 rows,
and this process is its client. Checkpoints are
written after every epoch (cnn_bp._checkpoint.SECONDS = 0). With
KILL_AFTER_EPOCH, the process kills itself (SIGKILL) once that epoch's
checkpoint is written. Prints one JSON line: the first epoch the fit
reported (verbose), the epoch it resumed after, n_iter_, the training
score, and the fitted coefs_ and intercepts_.
"""
import contextlib
import io
import json
import os
import re
import signal
import sys
import warnings

from sklearn.datasets import load_digits

import cnn_bp
from cnn_bp import _checkpoint

CONFIGS = {
    "adam": dict(hidden_layer_sizes=(32,), max_iter=30, random_state=0),
    "sgd": dict(hidden_layer_sizes=(32,), solver="sgd", learning_rate_init=0.05,
                dropout=0.2, early_stopping=True, n_iter_no_change=30, max_iter=30,
                random_state=0),
    "lbfgs": dict(hidden_layer_sizes=(32,), solver="lbfgs", max_iter=40, random_state=0),
}
CONFIGS["adam-4-threads"] = CONFIGS["adam"]
THREADS = {"adam-4-threads": 4}


def main(directory, config, kill_after=None):
    _checkpoint.SECONDS = 0.0
    if kill_after is not None:
        written = _checkpoint.Checkpoints.epoch_ended

        def epoch_ended(self, epochs):
            written(self, epochs)
            if epochs == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

        _checkpoint.Checkpoints.epoch_ended = epoch_ended
    X, y = load_digits(return_X_y=True)
    X = X / 16
    out = io.StringIO()
    with contextlib.ExitStack() as stack:
        if os.environ.get("CNN_BP_SCHEDULER"):
            import dask.array as da
            import distributed

            from cnn_bp.dask import DaskMLPClassifier

            client = stack.enter_context(distributed.Client(os.environ["CNN_BP_SCHEDULER"]))
            model = DaskMLPClassifier(**CONFIGS[config], checkpoint_dir=directory or None,
                                      verbose=True, client=client)
            data = da.from_array(X, chunks=(300, -1)), da.from_array(y, chunks=300)
        else:
            model = cnn_bp.MLPClassifier(**CONFIGS[config], checkpoint_dir=directory or None,
                                         verbose=True)
            data = X, y
        if config in THREADS:
            from threadpoolctl import threadpool_limits

            from cnn_bp import _threads

            _threads.MIN_SHARED_WORK = 0  # share even this small fit's batches
            stack.enter_context(threadpool_limits(THREADS[config], user_api="cnn_bp"))
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(*data)
    epochs = [int(k) for k in re.findall(r"^Iteration (\d+),", out.getvalue(), re.M)]
    resumed = re.findall(r"^Resuming from .* after epoch (\d+)", out.getvalue(), re.M)
    print(json.dumps({"first_epoch": epochs[0] if epochs else None, "epochs": len(epochs),
                      "resumed_after": int(resumed[0]) if resumed else None,
                      "score": model.score(X, y),
                      "n_iter": model.n_iter_,
                      "params": [a.tolist() for a in model.coefs_ + model.intercepts_]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
