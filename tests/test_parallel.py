"""Training without the GIL: threads, joblib's threading backend, Dask."""

import threading

import numpy as np
import pytest
from cnn_bp._engine import Engine
from joblib import parallel_backend
from sklearn.model_selection import GridSearchCV, cross_val_score
from threadpoolctl import threadpool_limits

from cnn_bp import MLPClassifier


def _epochs(engine, X, Y, n_epochs, intervals):
    order = np.arange(len(X), dtype=np.intp)
    for _ in range(n_epochs):
        engine.run_epoch(X, Y, None, order, 200, 1e-4)
        intervals.append(engine.last_nogil_interval)


def test_two_threads_train_concurrently():
    """Each thread's epochs run inside a GIL-free section whose start and end
    the engine stamps from inside it. Had either thread kept the GIL there,
    no interval of one thread could overlap an interval of the other."""
    rng = np.random.RandomState(0)
    X = rng.rand(2000, 64)
    Y = np.eye(10)[rng.randint(10, size=2000)]
    engines = []
    for seed in (0, 1):
        engine = Engine((64, 256, 10), 3, 1, np.float64)
        engine.params[...] = np.random.RandomState(seed).uniform(-0.1, 0.1, engine.params.size)
        engine.set_optimizer("adam", 1e-3)
        engines.append(engine)
    intervals = ([], [])
    with threadpool_limits(1, user_api="blas"):
        threads = [threading.Thread(target=_epochs, args=(e, X, Y, 30, out))
                   for e, out in zip(engines, intervals)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    overlaps = sum(a0 < b1 and b0 < a1 for a0, a1 in intervals[0] for b0, b1 in intervals[1])
    assert len(intervals[0]) == len(intervals[1]) == 30
    assert overlaps > 0


def _search(digits, **fit_context):
    X, y = digits
    X, y = X[:500], y[:500]
    search = GridSearchCV(
        MLPClassifier(hidden_layer_sizes=(16,), max_iter=15, random_state=0),
        {"alpha": [1e-4, 1e-2], "activation": ["relu", "tanh"]},
        cv=3,
        n_jobs=fit_context.pop("n_jobs", None),
    )
    return search.fit(X, y)


def test_grid_search_threads_match_sequential(digits):
    sequential = _search(digits)
    with threadpool_limits(1, user_api="blas"), parallel_backend("threading"):
        threaded = _search(digits, n_jobs=2)
    np.testing.assert_array_equal(threaded.cv_results_["mean_test_score"],
                                  sequential.cv_results_["mean_test_score"])
    assert threaded.best_params_ == sequential.best_params_


def test_dask_cluster_runs_the_same_search(digits):
    distributed = pytest.importorskip("distributed", reason="dask[distributed] not installed")
    sequential = _search(digits)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        with parallel_backend("dask"):
            on_cluster = _search(digits, n_jobs=-1)
            X, y = digits
            scores = cross_val_score(MLPClassifier((16,), max_iter=10, random_state=0),
                                     X[:400], y[:400], cv=2)
    np.testing.assert_array_equal(on_cluster.cv_results_["mean_test_score"],
                                  sequential.cv_results_["mean_test_score"])
    reference = cross_val_score(MLPClassifier((16,), max_iter=10, random_state=0),
                                X[:400], y[:400], cv=2)
    np.testing.assert_array_equal(scores, reference)


def test_dask_array_prediction_by_blocks(digits):
    da = pytest.importorskip("dask.array", reason="dask not installed")
    X, y = digits
    model = MLPClassifier(hidden_layer_sizes=(16,), max_iter=10, random_state=0).fit(X, y)
    X_blocks = da.from_array(X, chunks=(256, X.shape[1]))  # split along rows only
    proba = X_blocks.map_blocks(model.predict_proba, dtype=np.float64,
                                chunks=(X_blocks.chunks[0], (len(model.classes_),)))
    labels = X_blocks.map_blocks(model.predict, dtype=y.dtype, drop_axis=1)
    np.testing.assert_allclose(proba.compute(), model.predict_proba(X), rtol=1e-12)
    np.testing.assert_array_equal(labels.compute(), model.predict(X))
