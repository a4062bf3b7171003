"""The same model whatever the thread count T, forced through threadpoolctl.

``threadpool_limits(limits=T, user_api="cnn_bp")`` sets the threads a fit
shares its batches among (the caller and T - 1 helpers), also above the
number of cores (threads beyond them take turns). Each fit here is compared
with the T = 1 fit of the same estimator and data: float64 to rtol 1e-6,
float32 to rtol 1e-4, after 20 epochs.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_info, threadpool_limits

from cnn_bp import MLPClassifier, MLPRegressor, _plan, _threads
from cnn_bp import _engine as engine_module
from cnn_bp import _hooks as hooks

THREADS = [2, 3, 4, 8, 16, 64]
RTOL = {np.float32: 1e-4, np.float64: 1e-6}


@pytest.fixture(autouse=True)
def _share_every_fit(monkeypatch):
    """Share even these small fits' batches (MIN_SHARED_WORK skips fits
    too small to pay for the hand-overs)."""
    if _threads._thread_blas is None:
        pytest.skip("the private one-thread BLAS (scipy-openblas32) is not installed")
    monkeypatch.setattr(_threads, "MIN_SHARED_WORK", 0)


def _data(dtype, n=1000, n_features=30, n_classes=4, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, n_features)).astype(dtype)
    y = (X[:, :n_classes] @ rng.normal(size=n_classes) > 0) + 2 * (X[:, 5] > 0.5)
    return X, y, rng.uniform(0.5, 2, n)


def _fit(make, threads, X, y, **fit_params):
    with threadpool_limits(limits=threads, user_api="cnn_bp"):
        assert _plan.num_threads() == threads
        return make().fit(X, y, **fit_params)


def _assert_same(model, reference, dtype):
    rtol = RTOL[dtype]
    for a, b in zip(model.coefs_ + model.intercepts_,
                    reference.coefs_ + reference.intercepts_):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
    if hasattr(reference, "loss_curve_"):  # (not L-BFGS's)
        np.testing.assert_allclose(model.loss_curve_, reference.loss_curve_, rtol=rtol)
    np.testing.assert_allclose(model.loss_, reference.loss_, rtol=rtol)


def _check(make, dtype, threads, X=None, y=None, **fit_params):
    if X is None:
        X, y, _ = _data(dtype)
    reference = _fit(make, 1, X, y, **fit_params)
    jobs = hooks.helper_jobs()
    model = _fit(make, threads, X, y, **fit_params)
    assert hooks.helper_jobs() > jobs  # the batches really were shared
    _assert_same(model, reference, dtype)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("solver", ["sgd", "adam", "adamw", "nadam", "rmsprop", "adagrad"])
def test_every_solver(threads, solver):
    _check(lambda: MLPClassifier((32, 16), solver=solver, max_iter=20, tol=0,
                                 random_state=0), np.float64, threads)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("hidden", [(), (24,), (24, 16), (24, 16, 8)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_to_three_hidden_layers(threads, hidden, dtype):
    _check(lambda: MLPRegressor(hidden_layer_sizes=hidden, max_iter=20, tol=0,
                                random_state=0), dtype, threads)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_and_csr_with_and_without_weights(threads, sparse, weighted, dtype):
    X, y, sw = _data(dtype)
    X[np.abs(X) < 1] = 0  # ~68 % zeros
    X = sp.csr_matrix(X) if sparse else X
    fit_params = {"sample_weight": sw} if weighted else {}
    _check(lambda: MLPClassifier((32,), max_iter=20, tol=0, random_state=0), dtype,
           threads, X, y, **fit_params)


@pytest.mark.parametrize("threads", THREADS)
def test_a_large_first_layer_splits_dw1_by_rows(threads):
    """dW^1 over SHARED_W1_BYTES is computed by rows after the hand-over."""
    X, y, _ = _data(np.float64, n_features=300)
    _check(lambda: MLPClassifier((200,), max_iter=5, tol=0, random_state=0), np.float64,
           threads, X, y)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("rate", [0.2, [0.5, 0.0, 0.1]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_shares_its_batches(threads, rate, dtype):
    """Each thread draws the masks of its own rows at their places in the
    batch's stream: the masks, so the model, of the one-thread fit."""
    hidden = (32,) if np.ndim(rate) == 0 else (24, 16, 8)
    _check(lambda: MLPClassifier(hidden, dropout=rate, max_iter=20, tol=0,
                                 random_state=0), dtype, threads)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("hidden", [(32,), (24, 16, 8)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_shares_its_batches(threads, hidden, weighted, dtype):
    """The threads stop at each normalised layer for the whole batch's
    statistics (forward) and sums (back): the one-thread model, running
    estimates included."""
    X, y, sw = _data(dtype)
    fit_params = {"sample_weight": sw} if weighted else {}
    def make():
        return MLPClassifier(hidden, batch_norm=True, dropout=0.1, max_iter=20, tol=0,
                             random_state=0)

    _check(make, dtype, threads, X, y, **fit_params)
    reference, model = _fit(make, 1, X, y, **fit_params), _fit(make, threads, X, y, **fit_params)
    for a, b in zip(model.running_means_ + model.running_vars_,
                    reference.running_means_ + reference.running_vars_):
        np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("n", [1000, 9000])  # one block of rows; three (FULL_BATCH_ROWS)
def test_lbfgs_shares_its_full_batch(threads, n):
    """L-BFGS's full-batch loss and gradient run on the pool: each block of
    rows split into the plan's parts, the blocks' sums added in order."""
    def make():
        return MLPClassifier((32,), solver="lbfgs", max_iter=20, tol=0, random_state=0)

    _check(make, np.float64, threads, *_data(np.float64, n=n)[:2])


def test_threadpoolctl_lists_and_limits_the_pool():
    pools = [i for i in threadpool_info() if i["user_api"] == "cnn_bp"]
    assert len(pools) == 1 and pools[0]["num_threads"] == _plan.num_threads()
    default = _plan.num_threads()
    assert default >= 1
    with threadpool_limits(limits=5):
        assert _plan.num_threads() == 5
        with threadpool_limits(limits=1, user_api="cnn_bp"):
            assert _plan.num_threads() == 1
    assert _plan.num_threads() == default


def test_fits_side_by_side_split_the_threads():
    """Each caller takes at most T / (callers now) threads, itself included:
    under T = 4 a lone caller gets 3 helpers, a second one meanwhile 1."""
    with threadpool_limits(limits=4, user_api="cnn_bp"):
        first = hooks.py_take_helpers(8)
        second = hooks.py_take_helpers(8)
        hooks.py_give_helpers(second)
        hooks.py_give_helpers(first)
        assert (len(first), len(second)) == (3, 1)
        assert not set(first) & set(second)
        fitted = MLPClassifier((32,), max_iter=1, random_state=0).fit(*_data(np.float64)[:2])
        engine = fitted._engine
        X, Y = np.zeros((256, 30)), np.eye(4)[np.arange(256) % 4]
        fresh = type(engine)(engine.layer_units, engine.hidden_activation, engine.loss,
                             np.float64)
        fresh.set_optimizer("adam", 1e-3)
        fresh.run_epoch(X, Y, None, None, 256, 0.0, n_threads=4)  # one slice
        assert fresh.last_threads == 4  # alone again: all of T


@pytest.mark.skipif(_threads.available_cores() > 4, reason="needs more threads than cores")
def test_threads_waiting_for_cores_are_given_back():
    """Threads in lockstep are as fast as the slowest: with T = 8 forced on
    at most 4 cores, each thread runs at most half the time: the first
    slice runs one batch on the 8 threads, and the next ones take at most
    the cores, trying no more than them (cnnbp_lockstep_learn, csrc/team.c);
    the model stays the T = 1 model to round-off."""
    rng = np.random.RandomState(0)
    X, Y = rng.normal(size=(20000, 30)), np.eye(4)[rng.randint(4, size=20000)]
    order = np.arange(20000, dtype=np.intp)

    def train(threads):
        engine = engine_module.Engine([30, 64, 4], [3], 1, np.float64)
        engine.params[...] = np.random.RandomState(1).uniform(-0.2, 0.2, engine.params.size)
        engine.set_optimizer("adam", 1e-3)
        used, rows, totals = [], [], []
        for _ in range(3):  # epochs of several slices each
            start, total = 0, 0.0
            while start < len(X):
                total = engine.run_epoch(X, Y, None, order, 256, 0.0, n_threads=threads,
                                         start=start, total=total, seconds=0.001)
                rows.append(engine.stopped_at - start)
                start = engine.stopped_at
                used.append(engine.last_threads)
            totals.append(total)
        return engine.params.copy(), totals, used, rows

    one, one_total, _, _ = train(1)
    with threadpool_limits(limits=8, user_api="cnn_bp"):
        eight, eight_total, used, rows = train(8)
    assert used[0] == 8 and rows[0] == 256 and len(used) >= 10
    assert max(used[1:]) <= _threads.available_cores()
    np.testing.assert_allclose(eight, one, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(eight_total, one_total, rtol=1e-12)


def test_omp_num_threads_sets_t_when_the_module_loads():
    """OMP_NUM_THREADS sets T, read as OpenMP runtimes read it, when the
    module loads: a later change of the process environment (Dask's nanny
    sets OMP_NUM_THREADS=1 for its workers) leaves T alone."""
    code = (
        "import os\n"
        "from threadpoolctl import threadpool_info\n"
        "from cnn_bp import _plan\n"
        "os.environ['OMP_NUM_THREADS'] = '1'\n"
        "pool = [i for i in threadpool_info() if i['user_api'] == 'cnn_bp']\n"
        "print(_plan.num_threads(), pool[0]['num_threads'])\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["3", "3"]
