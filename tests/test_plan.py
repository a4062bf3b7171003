"""One plan per fit: a batch's parts are fixed by T and the batch size.

The plan (cnnbp_plan_parts, csrc/team.c) splits each batch into T parts of
rows; the threads a slice gets run them, a thread taking several in turn
when fewer are free, and the parts' gradient sums are added in the plan's
order. So for a given T the model is the same to the bit whether the fit
runs alone, beside other fits, with its helpers taken by others, or on a
machine busy with another process; and under ``threadpool_limits(k)`` a fit
runs k threads at once (on these 2 cores too, taking turns).
"""

import contextlib
import multiprocessing
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from cnn_bp import MLPClassifier, _plan, _threads
from cnn_bp import _hooks as hooks

RUNS = 20


@pytest.fixture(autouse=True)
def _share_every_fit(monkeypatch):
    """Share these small fits' batches (MIN_SHARED_WORK skips fits too small
    to pay for the hand-overs)."""
    if _threads._thread_blas is None:
        pytest.skip("the private one-thread BLAS (scipy-openblas32) is not installed")
    monkeypatch.setattr(_threads, "MIN_SHARED_WORK", 0)


def _data(dtype, n=1200, n_features=40, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, n_features)).astype(dtype)
    y = (X[:, :3] @ rng.normal(size=3) > 0) + 2 * (X[:, 5] > 0.5)
    return X, y


def _fit(X, y, seed=0, epochs=8):
    return MLPClassifier((64, 32), max_iter=epochs, tol=0, random_state=seed).fit(X, y)


def _coefs(model):
    return [a.copy() for a in model.coefs_ + model.intercepts_]


def _assert_bitwise(coefs, reference):
    for a, b in zip(coefs, reference):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rows", [1, 5, 6, 200, 10_000])
@pytest.mark.parametrize("threads", [1, 2, 3, 16, 64, 1000])
def test_the_plan_is_t_parts_of_at_least_min_part_rows(threads, rows):
    parts = _plan.plan_parts(threads, rows)
    most = max(1, min(rows // _plan.MIN_PART_ROWS, 256))
    assert parts == min(threads, most)


@pytest.mark.parametrize("k", [1, 2, 4, 8, 16, 64])
def test_a_default_batch_runs_on_k_threads_at_once(k):
    """Under threadpool_limits(k) a slice of 200-row batches takes k
    threads (the caller and k - 1 helpers), forced above the cores."""
    X, y = _data(np.float64, n=400)
    engine = _fit(X, y, epochs=1)._engine
    fresh = type(engine)(engine.layer_units, engine.hidden_activation, engine.loss,
                         np.float64)
    fresh.set_optimizer("adam", 1e-3)
    Y = np.eye(engine.layer_units[-1])[y]
    with threadpool_limits(limits=k, user_api="cnn_bp"):
        jobs = hooks.helper_jobs()
        fresh.run_epoch(X, Y, None, None, 200, 0.0, n_threads=k)  # one slice
    assert _plan.plan_parts(k, 200) == k
    assert fresh.last_threads == k
    assert hooks.helper_jobs() - jobs == 2 * 2 * (k - 1)  # 2 hand-overs a batch


def _beside(make, others):
    """make() while `others` fits train in threads of their own."""
    stop = threading.Event()

    def train(seed):
        X, y = _data(np.float32, seed=seed)
        while not stop.is_set():
            _fit(X, y, seed=seed, epochs=2)

    threads = [threading.Thread(target=train, args=(seed,)) for seed in range(1, others + 1)]
    for t in threads:
        t.start()
    try:
        return make()
    finally:
        stop.set()
        for t in threads:
            t.join()


@contextlib.contextmanager
def _busy_core():
    """Another process spinning on one core meanwhile."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spin.kill()
        spin.wait()


def _helpers_taken(make):
    """make() while another caller holds every helper but the fit's share
    (T / 2 threads, itself included): its parts run several to a thread."""
    held = hooks.py_take_helpers(255)
    try:
        return make()
    finally:
        hooks.py_give_helpers(held)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_fit_is_bitwise_the_same_alone_beside_fits_and_on_a_busy_machine(dtype):
    """T = 4, 20 runs each: alone; beside two other fits training in
    threads; while another process spins on a core (which also sets off
    the back-off); with the helpers taken by another caller. Every run's
    parameters are the first run's, bit for bit."""
    X, y = _data(dtype)
    with threadpool_limits(limits=4, user_api="cnn_bp"):
        reference = _coefs(_fit(X, y))
        for _ in range(RUNS):
            _assert_bitwise(_coefs(_fit(X, y)), reference)
        for _ in range(RUNS):
            _assert_bitwise(_beside(lambda: _coefs(_fit(X, y)), 2), reference)
        with _busy_core():
            for _ in range(RUNS):
                _assert_bitwise(_coefs(_fit(X, y)), reference)
        for _ in range(RUNS):
            _assert_bitwise(_helpers_taken(lambda: _coefs(_fit(X, y))), reference)


@pytest.mark.parametrize("k", [2, 8])
def test_fewer_threads_than_parts_give_the_same_bits(k):
    """A T = k fit whose slices find no helper free (another caller holds
    them) runs all k parts on its own thread: the same parameters, bit for
    bit, as when k threads ran them."""
    X, y = _data(np.float64)
    with threadpool_limits(limits=k, user_api="cnn_bp"):
        jobs = hooks.helper_jobs()
        reference = _coefs(_fit(X, y))
        assert hooks.helper_jobs() > jobs
    with threadpool_limits(limits=256, user_api="cnn_bp"):
        held = hooks.py_take_helpers(255)
    try:
        with threadpool_limits(limits=k, user_api="cnn_bp"):
            model = _fit(X, y)
    finally:
        hooks.py_give_helpers(held)
    assert model._engine.last_threads == 1
    _assert_bitwise(_coefs(model), reference)


@pytest.mark.parametrize("n_in, n1, parts, m, expected", [
    (784, 100, 16, 200, True),    # parts of 12 rows, blocks of 49 features
    (400, 64, 4, 200, True),
    (784, 100, 2, 200, False),    # parts of 100 rows pack W^1 twice only
    (784, 100, 32, 200, False),   # blocks of 24 features
    (784, 300, 16, 200, False),   # wider than the batch: column tiles
    (784, 100, 16, 4096, False),  # an L-BFGS block: parts of 256 rows
    (784, 100, 1, 200, False),
])
def test_which_batches_make_z1_by_blocks_of_input_features(n_in, n1, parts, m, expected):
    assert _plan.by_inputs(n_in, n1, parts, m) is expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [4, 8])
@pytest.mark.parametrize("how", ["shuffled", "in order", "weighted"])
def test_z1_by_blocks_of_input_features_keeps_the_model(dtype, k, how):
    """Under k threads the 200-row batches of 400 features into 64 units
    make Z^1 by blocks of input features, each part then adding up its rows
    in the plan's order: float64 gives the one-thread model (rtol 1e-6), and
    both dtypes the same bits on k threads, beside two other fits and on one
    thread taking all k parts."""
    assert _plan.by_inputs(400, 64, k, 200)
    X, y = _data(dtype, n_features=400)
    weight = np.random.RandomState(1).uniform(0.5, 2, size=len(y)) if how == "weighted" else None

    def fit():
        model = MLPClassifier((64, 32), max_iter=4, tol=0, random_state=0,
                              shuffle=how != "in order")
        return _coefs(model.fit(X, y, sample_weight=weight))
    if dtype == np.float64:
        one = fit()
    with threadpool_limits(limits=k, user_api="cnn_bp"):
        reference = fit()
        _assert_bitwise(fit(), reference)
        _assert_bitwise(_beside(fit, 2), reference)
        _assert_bitwise(_helpers_taken(fit), reference)
    if dtype == np.float64:
        for a, b in zip(reference, one):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def _fit_new_model_in_child(solver, conn):
    """In a forked child: fit a new model (its own helpers, its own BLAS
    buffers) and report."""
    try:
        X, y = _data(np.float64, n=600, seed=3)
        model = MLPClassifier((16,), solver=solver, max_iter=5, tol=0, random_state=0)
        with threadpool_limits(limits=4, user_api="cnn_bp"):
            model.fit(X, y)
        conn.send(("ok", model.n_iter_))
    except BaseException as exc:  # pragma: no cover - reported to the parent
        conn.send(("error", repr(exc)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("solver", ["lbfgs", "adam", "sgd"])
def test_a_fork_during_a_fit_is_safe(solver):
    """fork() from another thread while a fit shares its batches (L-BFGS:
    its full batch) among T = 4 threads, 20 of 20 runs: no hang; the child
    fits a new model and the parent's fit finishes. No fit runs on the
    process's BLAS threads, whose fork handler waits for them."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    X, y = _data(np.float64, n=3000, n_features=64)
    context = multiprocessing.get_context("fork")
    during = 0
    with threadpool_limits(limits=4, user_api="cnn_bp"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for run in range(RUNS):
            model = MLPClassifier((64,), solver=solver, max_iter=15, tol=0, random_state=run)
            jobs = hooks.helper_jobs()
            fit = threading.Thread(target=model.fit, args=(X, y))
            fit.start()
            while hooks.helper_jobs() == jobs and fit.is_alive():
                time.sleep(0.0005)  # until its first shared pass
            parent_end, child_end = context.Pipe()
            child = context.Process(target=_fit_new_model_in_child, args=(solver, child_end))
            during += fit.is_alive()
            child.start()
            assert parent_end.poll(60), (run, "the child hung")
            status = parent_end.recv()
            child.join(60)
            fit.join(60)
            assert status == ("ok", 5), (run, status)
            assert not fit.is_alive() and model.n_iter_ == 15, run
    assert during >= RUNS - 2  # the forks came while the parent's fit ran
