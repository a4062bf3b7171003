"""cnn_bp.dask: one model trained where a Dask collection's partitions live,
on a LocalCluster of two worker processes, checked against the local fit."""

import pickle
import time
import weakref

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

import cnn_bp  # noqa: E402
from cnn_bp import MLPClassifier, MLPRegressor  # noqa: E402
from cnn_bp.dask import DaskMLPClassifier, DaskMLPRegressor  # noqa: E402

pytestmark = pytest.mark.usefixtures("restored_environment")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:1200] / 16.0, y[:1200]


def _dask(X, y, chunks):
    return da.from_array(X, chunks=(chunks, -1)), da.from_array(y, chunks=chunks)


def _assert_same_model(model, reference, rtol):
    for a, b in zip(model.coefs_ + model.intercepts_,
                    reference.coefs_ + reference.intercepts_):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def test_lbfgs_is_the_local_fit_on_the_same_rows(client, digits):
    """Exact distributed gradient: the partitions' sums, added in a tree."""
    X, y = digits
    params = dict(hidden_layer_sizes=(24,), solver="lbfgs", max_iter=40, random_state=0)
    reference = MLPClassifier(**params).fit(X, y)
    Xd, yd = _dask(X, y, 300)
    assert Xd.numblocks[0] == 4
    model = DaskMLPClassifier(**params).fit(Xd, yd)
    _assert_same_model(model, reference, 1e-6)
    assert model.n_iter_ == reference.n_iter_
    np.testing.assert_allclose(model.loss_, reference.loss_, rtol=1e-9)


def test_lbfgs_regressor_with_sample_weight(client):
    X, y = make_regression(600, 8, noise=1.0, random_state=0)
    y = y / y.std()
    sw = np.random.RandomState(0).uniform(0.5, 2, 600)
    params = dict(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=30, random_state=1)
    reference = MLPRegressor(**params).fit(X, y, sample_weight=sw)
    Xd, yd = _dask(X, y, 150)
    model = DaskMLPRegressor(**params).fit(Xd, yd, sample_weight=da.from_array(sw, 150))
    _assert_same_model(model, reference, 1e-6)


def test_balanced_class_weight_counts_classes_over_all_partitions(client, digits):
    """'balanced' weighs each class by its weighted rows in the whole
    collection (summed over the partitions), as the local fit does."""
    X, y = digits
    y = np.where(y < 2, 1, 0)  # an unbalanced binary problem
    sw = np.random.RandomState(0).uniform(0.5, 2, len(y))
    params = dict(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=20, random_state=0,
                  class_weight="balanced")
    reference = MLPClassifier(**params).fit(X, y, sample_weight=sw)
    Xd, yd = _dask(X, y, 300)
    model = DaskMLPClassifier(**params).fit(Xd, yd, sample_weight=da.from_array(sw, 300))
    _assert_same_model(model, reference, 1e-6)


def test_adam_on_one_partition_is_the_local_fit_without_shuffling(client, digits):
    X, y = digits
    params = dict(hidden_layer_sizes=(32,), max_iter=5, shuffle=False, random_state=0)
    reference = MLPClassifier(**params).fit(X, y)
    model = DaskMLPClassifier(**params).fit(*_dask(X, y, len(X)))
    _assert_same_model(model, reference, 1e-6)
    np.testing.assert_allclose(model.loss_curve_, reference.loss_curve_, rtol=1e-6)
    assert model.t_ == reference.t_ and model._engine.t == reference._engine.t


def test_adam_on_one_worker_is_the_local_fit_without_shuffling(digits):
    """Four partitions held by one worker train as one run over their rows."""
    X, y = digits
    params = dict(hidden_layer_sizes=(32,), max_iter=4, shuffle=False, random_state=0)
    reference = MLPClassifier(**params).fit(X, y)
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                       dashboard_address=None)
    with cluster, distributed.Client(cluster, set_as_default=False) as one:
        model = DaskMLPClassifier(**params, client=one).fit(*_dask(X, y, 300))
    _assert_same_model(model, reference, 1e-6)
    np.testing.assert_allclose(model.loss_curve_, reference.loss_curve_, rtol=1e-9)


def test_the_estimators_client_need_not_be_the_default(client, digits, monkeypatch):
    """Every wait is on the estimator's client: a fit works in a process
    with no default client (Client(..., set_as_default=False) alone)."""
    X, y = digits
    monkeypatch.setattr(distributed.client, "_global_clients", weakref.WeakValueDictionary())
    current = distributed.client._current_client.set(None)  # the fixture's `with`
    try:
        with pytest.raises(ValueError, match="No clients found"):
            distributed.default_client()
        model = DaskMLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0,
                                  client=client).fit(*_dask(X, y, 300))
    finally:
        distributed.client._current_client.reset(current)
    assert model.n_iter_ == 2 and np.isfinite(model.loss_)


def test_adam_mixing_over_two_workers_learns_as_the_local_fit(client, digits):
    """Averaged copies of the model (parameter mixing) train about as well
    as one model over all the rows (in an epoch each copy takes only its
    worker's share of the steps, so a little less far)."""
    X, y = digits
    X_test, y_test = load_digits(return_X_y=True)[0][1200:] / 16.0, load_digits(
        return_X_y=True)[1][1200:]
    params = dict(hidden_layer_sizes=(64,), max_iter=30, random_state=0)
    local = MLPClassifier(**params).fit(X, y).score(X_test, y_test)
    model = DaskMLPClassifier(**params).fit(*_dask(X, y, 300))
    assert len(model.loss_curve_) == model.n_iter_ == 30
    assert model.score(X_test, y_test) > local - 0.05


def test_predictions_are_lazy_and_those_of_the_local_model(client, digits):
    X, y = digits
    Xd, yd = _dask(X, y, 400)
    model = DaskMLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=0)
    model.fit(Xd, yd)
    local = model.to_local()
    assert type(local) is MLPClassifier
    labels = model.predict(Xd)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), local.predict(X))
    proba = model.predict_proba(Xd)
    assert isinstance(proba, da.Array) and proba.shape == (len(X), 10)
    np.testing.assert_allclose(proba.compute(), local.predict_proba(X), rtol=1e-12)
    score = model.score(Xd, yd)
    assert isinstance(score, da.Array)
    assert score.compute() == pytest.approx(local.score(X, y), rel=1e-12)
    np.testing.assert_array_equal(model.predict(X), local.predict(X))  # numpy: local


def test_numpy_input_is_the_local_estimator(digits):
    """On arrays in memory the Dask estimators are the local ones: no cluster
    needed, the same model."""
    X, y = digits
    params = dict(hidden_layer_sizes=(16,), max_iter=5, random_state=0)
    model = DaskMLPClassifier(**params).fit(X, y)
    reference = MLPClassifier(**params).fit(X, y)
    _assert_same_model(model, reference, 1e-12)
    assert model.score(X, y) == reference.score(X, y)
    regressor = DaskMLPRegressor(**params).fit(X, y * 0.1)
    _assert_same_model(regressor, MLPRegressor(**params).fit(X, y * 0.1), 1e-12)


def test_regressor_predict_and_score(client):
    X, y = make_regression(400, 6, n_targets=2, random_state=0)
    y = y / y.std()
    Xd = da.from_array(X, chunks=(100, -1))
    yd = da.from_array(y, chunks=(100, -1))
    model = DaskMLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0)
    model.fit(Xd, yd)
    local = model.to_local()
    np.testing.assert_allclose(model.predict(Xd).compute(), local.predict(X), rtol=1e-12)
    assert model.score(Xd, yd).compute() == pytest.approx(local.score(X, y), rel=1e-9)


def test_dataframes_train_too(client, digits):
    pd = pytest.importorskip("pandas")
    X, y = digits
    frame = dd.from_pandas(pd.DataFrame(X), npartitions=3)
    labels = dd.from_pandas(pd.Series(y), npartitions=3)
    model = DaskMLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=20,
                              random_state=0).fit(frame, labels)
    reference = MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=20,
                              random_state=0).fit(X, y)
    _assert_same_model(model, reference, 1e-6)


def test_early_stopping_on_held_out_partitions_and_on_given_data(client, digits):
    X, y = digits
    Xd, yd = _dask(X, y, 150)
    model = DaskMLPClassifier(hidden_layer_sizes=(16,), early_stopping=True, max_iter=15,
                              n_iter_no_change=100, learning_rate_init=0.01,
                              random_state=0).fit(Xd, yd)
    assert len(model.validation_scores_) == len(model.loss_curve_) == 15
    assert len(model.validation_loss_curve_) == 15
    assert model.best_validation_score_ == max(model.validation_scores_) > 0.8
    # given as dask collections, scored on the workers; as numpy, on the client
    given = DaskMLPClassifier(hidden_layer_sizes=(16,), early_stopping=True, max_iter=6,
                              random_state=0)
    given.fit(Xd[:900], yd[:900], X_val=Xd[900:], y_val=yd[900:])
    on_client = clone(given).fit(Xd[:900], yd[:900], X_val=X[900:], y_val=y[900:])
    np.testing.assert_allclose(given.validation_scores_, on_client.validation_scores_,
                               rtol=1e-12)
    np.testing.assert_allclose(given.validation_loss_curve_,
                               on_client.validation_loss_curve_, rtol=1e-9)


@pytest.mark.parametrize("case", ["columns", "unknown", "mismatch", "nan"])
def test_bad_collections_raise_and_leave_the_model_as_it_was(client, digits, case):
    X, y = digits
    model = DaskMLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    model.fit(*_dask(X, y, 400))
    before = [c.copy() for c in model.coefs_]
    Xd, yd = _dask(X, y, 400)
    message = {"columns": "chunked along its columns", "unknown": "unknown chunk sizes",
               "mismatch": "do not match", "nan": "NaN or infinity"}[case]
    if case == "columns":
        Xd = da.from_array(X, chunks=(400, 32))
    elif case == "unknown":
        Xd = Xd[Xd[:, 0] >= 0]  # a boolean mask: row counts unknown until computed
    elif case == "mismatch":
        yd = da.from_array(y, chunks=300)
    else:
        bad = X.copy()
        bad[1000, 3] = np.nan
        Xd = da.from_array(bad, chunks=(400, -1))
    with pytest.raises(ValueError, match=message):
        model.fit(Xd, yd)
    for a, b in zip(model.coefs_, before):
        np.testing.assert_array_equal(a, b)
    assert model.n_iter_ == 3


def test_pickle_clone_and_save(client, digits, tmp_path):
    X, y = digits
    model = DaskMLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0,
                              client=client)
    assert model.get_params()["client"] is client
    assert clone(model).get_params()["hidden_layer_sizes"] == (8,)
    model.fit(*_dask(X, y, 400))
    again = pickle.loads(pickle.dumps(model))
    assert again.client is None
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    path = cnn_bp.save(model.to_local(), tmp_path / "model.cnnbp")
    np.testing.assert_array_equal(cnn_bp.load(path).predict(X), model.predict(X))


def _interrupted_fit(model, X, y, interrupt):
    """Fit `model` on X, y (4 partitions) in a thread, call `interrupt()`
    3 s in, and return the errors the fit raised (it must end)."""
    import threading

    errors = []

    def fit():
        try:
            model.fit(*_dask(X, y, 300))
        except Exception as error:
            errors.append(error)

    thread = threading.Thread(target=fit)
    thread.start()
    time.sleep(3)
    interrupt()
    thread.join(120)
    assert not thread.is_alive()
    return errors


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
@pytest.mark.parametrize("chunks", [(0, 1200), (1200, 0), (0, 0, 1200), (300, 0, 0, 900)])
def test_empty_partitions_hold_no_rows_and_are_left_out(client, digits, chunks, solver):
    """Empty chunks (common after filtering) change nothing: the model is
    the one fitted without them, and predict and score pass over them."""
    X, y = digits
    params = dict(hidden_layer_sizes=(16,), solver=solver, max_iter=12, shuffle=False,
                  random_state=0)
    reference = DaskMLPClassifier(**params).fit(*_dask(X, y, tuple(c for c in chunks if c)))
    Xd, yd = _dask(X, y, chunks)
    model = DaskMLPClassifier(**params).fit(Xd, yd)
    _assert_same_model(model, reference, 1e-6)
    np.testing.assert_array_equal(model.predict(Xd).compute(), reference.predict(X))
    np.testing.assert_allclose(model.predict_proba(Xd).compute(), reference.predict_proba(X))
    assert float(model.score(Xd, yd).compute()) == pytest.approx(reference.score(X, y))


def test_a_filtered_array_with_empty_blocks_fits_as_its_rows(client, digits):
    X, y = digits
    keep = np.zeros(len(y), bool)
    keep[:300] = keep[600:900] = True  # blocks 2 and 4 of 4 filtered away
    mask = da.from_array(keep, chunks=300)
    Xd, yd = _dask(X, y, 300)
    Xf, yf = Xd[mask], yd[mask]
    Xf.compute_chunk_sizes()
    yf.compute_chunk_sizes()
    assert Xf.chunks[0] == (300, 0, 300, 0)
    params = dict(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=20, random_state=0)
    reference = MLPClassifier(**params).fit(X[keep], y[keep])
    model = DaskMLPClassifier(**params).fit(Xf, yf)
    _assert_same_model(model, reference, 1e-6)


def test_a_client_closed_during_a_fit_is_named_and_leaves_the_model(digits):

    X, y = digits
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with cluster:
        c = distributed.Client(cluster, set_as_default=False)
        model = DaskMLPClassifier(hidden_layer_sizes=(8,), max_iter=100000, tol=0,
                                  n_iter_no_change=100000, random_state=0, client=c)
        errors = _interrupted_fit(model, X, y, c.close)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError), errors
    assert "client" in str(errors[0]), errors
    assert not hasattr(model, "coefs_")
