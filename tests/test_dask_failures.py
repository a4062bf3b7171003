"""cnn_bp.dask under failures: a Dask fit survives a worker process killed
at any instant (SIGKILL; its nanny starts it again, at another address),
takes in a worker that joins, raises RuntimeError naming the partitions
only when no worker can run them, and resumes from the checkpoints its
client wrote when the client process itself is killed."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from cnn_bp import MLPClassifier  # noqa: E402
from cnn_bp import dask as cnn_bp_dask  # noqa: E402
from cnn_bp.dask import DaskMLPClassifier  # noqa: E402

SCRIPT = Path(__file__).with_name("checkpoint_fit.py")
LBFGS = dict(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=25, random_state=0)
ADAM = dict(hidden_layer_sizes=(32,), batch_size=50, learning_rate_init=0.01, max_iter=40,
            random_state=0)


pytestmark = pytest.mark.usefixtures("restored_environment")


def _cluster(n_workers, **config):
    return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                    dashboard_address=None, **config)


@pytest.fixture(scope="module")
def client():
    """Three worker processes, each with a nanny that restarts it."""
    with _cluster(3) as cluster, distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X, y = X[:1200] / 16.0, y[:1200]
    return X, y, da.from_array(X, chunks=(200, -1)), da.from_array(y, chunks=200)


def _kill_a_worker(client, rng):
    """SIGKILL the process of a worker drawn by `rng` (none if the cluster
    is between workers)."""
    try:
        pids = sorted(client.run(os.getpid).items())
    except Exception:  # a worker dying as it is asked
        return
    if pids:
        os.kill(rng.choice(pids)[1], signal.SIGKILL)


def _three_workers(client):
    """Wait until the cluster has three workers again. A nanny restarts its
    killed worker within seconds; one whose restart was itself cut short
    (a kill while it started) is replaced by a new nanny."""
    deadline = time.monotonic() + 30
    while len(client.scheduler_info()["workers"]) < 3:
        if time.monotonic() > deadline:
            client.cluster.scale(len(client.cluster.workers) + 1)
            deadline = time.monotonic() + 60
        time.sleep(0.2)


def _fit_killing(client, model, X, y, delays, seed=0):
    """Fit `model` in a thread while a worker is killed `delays` seconds
    after the fit starts; the fit must end within 3 minutes. Returns the
    error it raised, or None."""
    _three_workers(client)
    rng = random.Random(seed)
    errors = []

    def fit():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(X, y)
        except Exception as error:
            errors.append(error)

    timers = [threading.Timer(delay, _kill_a_worker, (client, rng)) for delay in delays]
    thread = threading.Thread(target=fit)
    thread.start()
    for timer in timers:
        timer.start()
    thread.join(180)
    for timer in timers:
        timer.cancel()
    assert not thread.is_alive(), "the fit hangs"
    return errors[0] if errors else None


def test_lbfgs_with_a_killed_worker_is_the_local_fit(client, digits):
    """The sums of a partition do not depend on the worker that computed
    it: after a worker is lost, each of 10 fits is the local fit."""
    X, y, Xd, yd = digits
    local = MLPClassifier(**LBFGS).fit(X, y)
    for run in range(10):
        model = DaskMLPClassifier(**LBFGS, client=client)
        assert _fit_killing(client, model, Xd, yd, [0.3 + 0.2 * run], seed=run) is None
        assert model.n_iter_ == local.n_iter_
        for a, b in zip(model.coefs_ + model.intercepts_, local.coefs_ + local.intercepts_):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())


def test_adam_with_a_killed_worker_learns_as_the_uninterrupted_fit(client, digits):
    """An epoch that loses a worker trains its shard again elsewhere; the
    later epochs mix over the workers there are then. 10 fits end within
    0.01 accuracy of the fit without a loss."""
    X, y, Xd, yd = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = DaskMLPClassifier(**ADAM, client=client).fit(Xd, yd).score(X, y)
    assert reference > 0.98
    for run in range(10):
        model = DaskMLPClassifier(**ADAM, client=client)
        assert _fit_killing(client, model, Xd, yd, [0.2 + 0.2 * run], seed=run) is None
        assert model.n_iter_ == ADAM["max_iter"]
        assert abs(model.score(X, y) - reference) <= 0.01


def test_kills_at_random_instants_never_hang_or_stop_a_fit(client, digits):
    """20 fits, each with one or two workers killed at random instants in
    its first 2.5 s (the set-up included: classes, partitions): each ends
    with a trained model."""
    X, y, Xd, yd = digits
    rng = random.Random(20261207)
    for run in range(20):
        params = LBFGS if run % 2 else ADAM
        delays = sorted(rng.uniform(0, 2.5) for _ in range(1 + run % 3 // 2))
        model = DaskMLPClassifier(**params, client=client)
        assert _fit_killing(client, model, Xd, yd, delays, seed=run) is None, delays
        assert model.n_iter_ > 0 and model.score(X, y) > 0.9


def test_a_worker_that_joins_takes_partitions_from_the_next_epoch(digits, monkeypatch):
    """A third worker started after epoch 5 (while the fit goes on) trains
    a shard from an epoch after it joined: the last epoch mixes three."""
    X, y, Xd, yd = digits
    run = cnn_bp_dask._ShardEpochs.run
    epochs = []

    def counted(self, *args):
        epochs.append(len(self.shards()))
        if len(epochs) == 5:
            threading.Thread(target=cluster.scale, args=(3,)).start()
        return run(self, *args)

    monkeypatch.setattr(cnn_bp_dask._ShardEpochs, "run", counted)
    with _cluster(2) as cluster, distributed.Client(cluster, set_as_default=False) as c:
        before = set(c.scheduler_info()["workers"])
        model = DaskMLPClassifier(**dict(ADAM, max_iter=100), client=c)
        with distributed.get_task_stream(client=c) as stream:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(Xd, yd)
        joined = set(c.scheduler_info()["workers"]) - before
    assert len(joined) == 1 and model.n_iter_ == 100
    assert epochs[:5] == [2] * 5 and epochs[-1] == 3
    tasks = sorted((task["startstops"][0]["start"], task["worker"]) for task in stream.data
                   if str(task["key"]).startswith("_train_shard"))
    assert joined <= {worker for _, worker in tasks[-3:]}


def test_no_worker_left_is_an_error_naming_the_partitions(digits, monkeypatch):
    """The one worker retired mid-fit and none coming: RuntimeError naming
    what waited, after LOST_SECONDS; the estimator is left as it was."""
    X, y, Xd, yd = digits
    monkeypatch.setattr(cnn_bp_dask, "LOST_SECONDS", 2.0)
    with _cluster(1) as cluster, distributed.Client(cluster, set_as_default=False) as c:
        model = DaskMLPClassifier(**dict(ADAM, max_iter=100000, tol=0, n_iter_no_change=10**6),
                                  client=c)
        threading.Timer(2.0, cluster.scale, (0,)).start()
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="no Dask worker is left to run .*partition"):
            model.fit(Xd, yd)
        assert time.monotonic() - start < 60
    assert not hasattr(model, "coefs_")


def test_a_partition_that_kills_its_workers_is_named(digits):
    """Partition 2's task kills every worker process that runs it: after
    Dask's allowed-failures (0 here: the first death), RuntimeError naming
    the partition."""
    import dask

    X, y, _, yd = digits
    poison = da.from_delayed(dask.delayed(os._exit, pure=True)(1), (200, X.shape[1]), X.dtype)
    Xd = da.concatenate([da.from_array(X[:400], chunks=(200, -1)), poison,
                         da.from_array(X[600:], chunks=(200, -1))])
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = _cluster(2)
    with cluster, distributed.Client(cluster, set_as_default=False) as c:
        model = DaskMLPClassifier(**LBFGS, client=c)
        with pytest.raises(RuntimeError, match="every worker that ran its task") as error:
            model.fit(Xd, yd)
    assert "partition 2" in str(error.value)
    assert not hasattr(model, "coefs_")


def _client_fit(address, directory, config, kill_after=None):
    args = [sys.executable, str(SCRIPT), str(directory), config]
    if kill_after is not None:
        args.append(str(kill_after))
    return subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, CNN_BP_SCHEDULER=address))


@pytest.mark.parametrize("config", ["adam", "lbfgs"])
def test_a_killed_client_process_resumes_from_its_checkpoint(tmp_path, config):
    """The client writes a Dask fit's checkpoints: its process SIGKILLed
    after epoch 8 and run again resumes after 8. Adam ends with the model
    of the fit never stopped (rtol 1e-9); L-BFGS, resumed with a fresh
    curvature memory, with its iterations and score."""
    with _cluster(2) as cluster:
        address = cluster.scheduler_address
        whole = _client_fit(address, "", config)
        assert whole.returncode == 0, whole.stderr[-3000:]
        whole = json.loads(whole.stdout.splitlines()[-1])
        killed = _client_fit(address, tmp_path, config, kill_after=8)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        resumed = _client_fit(address, tmp_path, config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    resumed = json.loads(resumed.stdout.splitlines()[-1])
    assert resumed["resumed_after"] == 8 and resumed["n_iter"] == whole["n_iter"]
    if config == "adam":
        assert resumed["first_epoch"] == 9
        for a, b in zip(resumed["params"], whole["params"]):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=0)
    else:
        assert abs(resumed["score"] - whole["score"]) <= 0.02
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
