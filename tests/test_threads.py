"""Batches shared with helper threads (Engine.run_epoch(n_threads=T)).

Each of T parts takes its rows of a batch forward and back, summing their
gradient in a buffer of its own (a large dW^1: its share of the rows of
dW^1, over all the batch rows, after a hand-over), and its share of the
update; the parameters must come out as the one-thread pass gives them (to
round-off: sums in parts, and OpenBLAS's results depend by an ulp on the
shapes it is handed), whatever the data layout, network, solver, batch
remainder, thread count or competition for the helpers, in both ways of
taking dW^1.
"""

import contextlib
import multiprocessing
import os
import threading
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from cnn_bp._engine import Engine
from cnn_bp._plan import MIN_PART_ROWS
from threadpoolctl import threadpool_limits

from cnn_bp import MLPClassifier, MLPRegressor, _checks, _plan
from cnn_bp import _engine as engine_module
from cnn_bp import _hooks as hooks
from cnn_bp._threads import MIN_SHARED_WORK, training_threads

import reference as act

RTOL = {np.float32: 2e-5, np.float64: 1e-11}


def _engine(dtype, solver="adam", units=(20, 37, 11, 5), activation="tanh", **optimizer):
    engine = Engine(units, act.activation_code(activation), act.loss_code("log_loss"), dtype)
    engine.params[...] = np.random.RandomState(0).uniform(-0.3, 0.3, engine.params.size)
    engine.set_optimizer(solver, 0.01, **optimizer)
    return engine


def _data(dtype, n=1000, n_features=20, n_classes=5):
    rng = np.random.RandomState(1)
    X = rng.normal(size=(n, n_features)).astype(dtype)
    Y = np.eye(n_classes, dtype=np.uint8)[rng.randint(n_classes, size=n)]
    return X, Y, rng.uniform(0.5, 2, n).astype(dtype), rng.permutation(n).astype(np.intp)


def _train(engine, X, Y, sw, order, batch, n_threads, epochs=3):
    """Epochs, n_threads=1 with the process's BLAS on one thread too."""
    with threadpool_limits(1, user_api="blas"):
        return _epochs(engine, X, Y, sw, order, batch, n_threads, epochs)


def _epochs(engine, X, Y, sw, order, batch, n_threads, epochs):
    losses = [engine.run_epoch(X, Y, sw, order, batch, 1e-3, n_threads=n_threads)
              for _ in range(epochs)]
    return engine.params.copy(), np.array(losses)


def _assert_same_training(make, X, Y, sw, order, batch, dtype, n_threads=2):
    one = _train(make(), X, Y, sw, order, batch, 1)
    with threadpool_limits(limits=n_threads, user_api="cnn_bp"):  # the pool's T
        two = _train(make(), X, Y, sw, order, batch, n_threads)
    assert not np.array_equal(one[0], make().params)  # it trained
    np.testing.assert_allclose(two[0], one[0], rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_allclose(two[1], one[1], rtol=RTOL[dtype])


@pytest.fixture(params=["dW1 summed per thread", "dW1 split by rows"])
def w1_mode(request, monkeypatch):
    """The tests' first layers are small, so each thread sums all of dW^1;
    SHARED_W1_BYTES = 0 makes every dW^1 'large': split by rows."""
    if request.param == "dW1 split by rows":
        monkeypatch.setattr(engine_module, "SHARED_W1_BYTES", 0)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["gathered", "in place", "csr", "weighted"])
def test_shared_batches_train_as_one_thread(dtype, layout, w1_mode):
    X, Y, sw, order = _data(dtype)
    if layout == "csr":
        X = sp.csr_matrix(np.where(np.abs(X) > 1, X, 0))
    # 1000 rows in batches of 130: the last batch (90 rows) is shared too
    _assert_same_training(
        lambda: _engine(dtype), X, Y, sw if layout == "weighted" else None,
        None if layout == "in place" else order, 130, dtype)


@pytest.mark.parametrize("units", [(20, 5), (20, 37, 5), (20, 3, 2, 5), (20, 300, 5)])
def test_every_network_shape_trains_as_one_thread(units, w1_mode):
    """Each part's update ranges (its rows of W^1, and a cut through the
    rest) cover every parameter once, and its partial sums reach them, with
    or without hidden layers."""
    X, Y, _, order = _data(np.float64)
    _assert_same_training(lambda: _engine(np.float64, units=units),
                          X, Y, None, order, 130, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["gathered", "in place", "weighted"])
@pytest.mark.parametrize("n_threads", [4, 8])
@pytest.mark.parametrize("units", [(20, 300, 40, 5), (20, 300, 150, 5), (20, 300, 150, 40, 5)],
                         ids=["one", "two", "two of three"])
def test_wide_first_layers_are_made_by_column_tiles(dtype, layout, n_threads, units, w1_mode):
    """Hidden layers wider than the batch (300 and 150 units, batches of
    100), from the first on: each part makes its columns of each such layer
    over all the batch's rows (one hand-over to gather the rows, one per
    such layer), and back, its columns of their deltas and its rows of the
    weight gradients (one hand-over per such layer below the output's
    inputs), and the model is the one-thread model to round-off, in both
    ways of taking dW^1."""
    X, Y, sw, order = _data(dtype, n=400)
    sw = sw if layout == "weighted" else None
    order = None if layout == "in place" else order
    wide = sum(1 for width in units[1:-1] if width > 100)
    make = lambda: _engine(dtype, units=units)  # noqa: E731
    one = _train(make(), X, Y, sw, order, 100, 1)
    engine = make()
    with threadpool_limits(limits=n_threads, user_api="cnn_bp"):
        jobs = hooks.helper_jobs()
        two = _train(engine, X, Y, sw, order, 100, n_threads, epochs=1)
        jobs = hooks.helper_jobs() - jobs
    back = min(wide + 1, len(units) - 2) - 1  # delta^{l-1} and dW^l, l = 2..wide + 1 < L
    assert back == (1 if len(units) == 4 else 2)
    handovers = wide + 2 + back + (order is not None)  # (gather,) columns, rows, back, update
    if engine.last_threads == n_threads:
        assert jobs == 4 * handovers * (n_threads - 1)  # 4 batches
    with threadpool_limits(limits=2, user_api="cnn_bp"):  # 2 parts: by rows
        jobs = hooks.helper_jobs()
        _train(make(), X, Y, sw, order, 100, 2, epochs=1)
        assert hooks.helper_jobs() - jobs in (0, 4 * 2)
    two = _train(engine, X, Y, sw, order, 100, n_threads, epochs=2)
    tol = 1e-4 if dtype == np.float32 else RTOL[dtype]  # float32: the rows' split differs
    np.testing.assert_allclose(two[0], one[0], rtol=tol, atol=tol)  # as much (2.6e-5)


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu", "leaky_relu",
                                        "elu", "selu", "softplus", "gelu", "silu"])
def test_column_tiles_take_every_activation_back(activation):
    """A batch's deltas by column tiles (_columns_of_delta) take f' off A^l;
    a derivative that needs Z (kept per row) keeps the rows' split. Either
    way the model is the one-thread model (float64, T = 4, (20, 300, 150, 5),
    batches of 100)."""
    X, Y, _, order = _data(np.float64, n=400)
    make = lambda: _engine(np.float64, units=(20, 300, 150, 5), activation=activation)  # noqa: E731
    one = _train(make(), X, Y, None, order, 100, 1)
    engine = make()
    with threadpool_limits(limits=4, user_api="cnn_bp"):
        jobs = hooks.helper_jobs()
        four = _train(engine, X, Y, None, order, 100, 4, epochs=1)
        jobs = hooks.helper_jobs() - jobs
    tiles = not _checks.derivative_needs_z(act.activation_code(activation))
    # gather, 2 layers' columns, rows, 1 layer's deltas, update; or rows, update
    handovers = 6 if tiles else 2
    if engine.last_threads == 4:
        assert jobs == 4 * handovers * 3  # 4 batches, 3 helpers
    four = _train(engine, X, Y, None, order, 100, 4, epochs=2)
    np.testing.assert_allclose(four[0], one[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(four[1], one[1][1:], rtol=1e-9)  # epochs 2 and 3


@pytest.mark.parametrize("activation", ["relu", "silu", "gelu", "softplus", "elu"])
def test_every_activation_trains_as_one_thread(activation):
    """Derivatives read off Z (silu, gelu, ...) keep each part's Z rows."""
    X, Y, _, order = _data(np.float64)
    _assert_same_training(lambda: _engine(np.float64, activation=activation),
                          X, Y, None, order, 130, np.float64)


@pytest.mark.parametrize("solver, options", [
    ("sgd", dict(momentum=0.9, nesterov=True)), ("adamw", dict(weight_decay=0.1)),
    ("nadam", {}), ("rmsprop", {}), ("adagrad", {}),
    ("adam", dict(clip_norm=0.5)), ("adam", dict(max_norm=0.8)),
])
def test_every_solver_updates_as_one_thread(solver, options, w1_mode):
    """The update is split at the middle of the parameters (adamw's decay
    must stop at the weights' end there too); clip_norm and max_norm need
    the whole buffer and update on the caller's thread."""
    X, Y, _, order = _data(np.float64)
    _assert_same_training(lambda: _engine(np.float64, solver, **options),
                          X, Y, None, order, 200, np.float64)


def test_small_batches_stay_on_one_thread():
    """A batch under 2 MIN_PART_ROWS rows, and a final remainder under it,
    is one part, run on the caller's thread alone (through the private
    one-thread BLAS: the one-thread result to round-off); no helper runs a
    job for it."""
    X, Y, _, order = _data(np.float64, n=MIN_PART_ROWS * 6 + 1)
    for batch in (2 * MIN_PART_ROWS - 1, 2 * MIN_PART_ROWS):
        one = _train(_engine(np.float64), X, Y, None, order, batch, 1)
        jobs = hooks.helper_jobs()
        two = _train(_engine(np.float64), X, Y, None, order, batch, 2)
        shared = hooks.helper_jobs() > jobs
        assert shared == (batch >= 2 * MIN_PART_ROWS) or not TWO_CORES
        np.testing.assert_allclose(two[0], one[0], rtol=1e-11, atol=1e-11)


def _dropout_or_batch_norm(options, n_threads, sw=None):
    X, Y, _, order = _data(np.float64)
    engine = Engine((20, 37, 11, 5), act.activation_code("relu"),
                    act.loss_code("log_loss"), np.float64, **options)
    engine.params[...] = np.random.RandomState(0).uniform(-0.3, 0.3, engine.params.size)
    engine.set_optimizer("adam", 0.01)
    jobs = hooks.helper_jobs()
    params = _train(engine, X, Y, sw, order, 200, n_threads)[0]
    return params, hooks.helper_jobs() - jobs, engine


@pytest.mark.parametrize("weighted", [False, True])
def test_batch_norm_shares_batches_with_the_whole_batch_statistics(weighted):
    """Each thread stops at every normalised layer, forward and back; the
    caller combines the parts' moments (Chan et al.'s pairwise formula) and
    sums: the one-thread parameters and running estimates, to round-off."""
    sw = np.random.RandomState(3).uniform(0.5, 2, 1000) if weighted else None
    one = _dropout_or_batch_norm(dict(batch_norm=True), 1, sw)
    two = _dropout_or_batch_norm(dict(batch_norm=True), 2, sw)
    np.testing.assert_allclose(two[0], one[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(two[2].running, one[2].running, rtol=1e-10, atol=1e-12)
    assert two[1] > 0 or not TWO_CORES


def test_dropout_shares_batches_with_the_masks_of_one_thread():
    """Each thread draws its rows' masks at their places in the batch's
    stream, which then moves on by the whole batch's masks: the one-thread
    parameters (to round-off) and the same stream position after."""
    one = _dropout_or_batch_norm(dict(dropout=0.3), 1)
    two = _dropout_or_batch_norm(dict(dropout=0.3), 2)
    np.testing.assert_allclose(two[0], one[0], rtol=1e-11, atol=1e-11)
    assert two[2].dropout_rng == one[2].dropout_rng and one[2].dropout_rng[1] > 0
    assert two[1] > 0 or not TWO_CORES


def _run_with_one_blas_thread(threads):
    """Start the threads and wait for them, BLAS limited to one thread (as
    shared epochs need)."""
    with threadpool_limits(1, user_api="blas"):
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)


def test_engines_competing_for_the_helper():
    """One helper serves the process: engines training in four threads at
    once each get it or work alone, and all four match the one-thread pass."""
    X, Y, _, order = _data(np.float64)
    expected = _train(_engine(np.float64), X, Y, None, order, 100, 1, epochs=5)[0]
    results = [None] * 4
    barrier = threading.Barrier(4)

    def run(i):
        engine = _engine(np.float64)
        barrier.wait()
        results[i] = _epochs(engine, X, Y, None, order, 100, 2, epochs=5)[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    _run_with_one_blas_thread(threads)
    for params in results:
        np.testing.assert_allclose(params, expected, rtol=1e-11, atol=1e-11)


def _child(queue):
    X, Y, _, order = _data(np.float64)
    queue.put(_train(_engine(np.float64), X, Y, None, order, 100, 2)[0])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_helper_is_restarted_after_fork():
    """A forked child has no helper thread: its first shared batch must
    start one, not wait forever for the parent's."""
    X, Y, _, order = _data(np.float64)
    expected = _train(_engine(np.float64), X, Y, None, order, 100, 2)[0]  # helper running
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue,))
    child.start()
    params = queue.get(timeout=120)
    child.join(60)
    assert child.exitcode == 0
    np.testing.assert_allclose(params, expected, rtol=1e-11, atol=1e-11)


def test_run_epoch_rejects_thread_counts_below_one():
    X, Y, _, order = _data(np.float64)
    engine = _engine(np.float64)
    before = engine.params.copy()
    for bad in (0, -1):
        with pytest.raises(ValueError, match="n_threads must be >= 1"):
            engine.run_epoch(X, Y, None, order, 100, 0.0, n_threads=bad)
    np.testing.assert_array_equal(engine.params, before)


@pytest.mark.parametrize("n_threads", [3, 4, 8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_more_threads_than_two_give_the_one_thread_model(dtype, n_threads, w1_mode):
    """T parts of a batch, whatever the cores (threads beyond them only take
    turns): the parameters and losses of the one-thread pass, to round-off,
    in both ways of taking dW^1, with a remainder batch of fewer parts."""
    X, Y, sw, order = _data(dtype, n=1000)
    for batch in (256, 200, 20):  # 8 parts, the remainder 232 too; 6 parts of 3 rows
        _assert_same_training(lambda: _engine(dtype), X, Y, sw, order, batch, dtype,
                              n_threads=n_threads)


def _blas_threads():
    """The process's BLAS thread counts (cnn_bp's private one left out)."""
    from cnn_bp._threads import process_blas_threads

    return process_blas_threads()


def test_training_threads_respects_a_blas_limit_and_changes_no_blas():
    """Under threadpool_limits(1) (joblib workers, fits in threads) a fit
    keeps to one thread; otherwise, on two or more cores, it shares batches
    (a second fit meanwhile too: it works alone while the first has the
    helper). The process's BLAS keeps its thread count throughout."""
    with threadpool_limits(1, user_api="blas"):
        with training_threads(MIN_SHARED_WORK) as n_threads:
            assert n_threads == 1
            assert set(_blas_threads()) == {1}
    if not TWO_CORES or min(_blas_threads()) < 2:
        pytest.skip("needs two cores and multi-threaded BLAS")
    before = _blas_threads()
    with training_threads(MIN_SHARED_WORK - 1) as n_threads:  # too small to pay
        assert n_threads == 1
    with training_threads(MIN_SHARED_WORK) as n_threads:
        assert n_threads == 2
        assert _blas_threads() == before
        with training_threads(MIN_SHARED_WORK) as second:
            assert second == 2
    assert _blas_threads() == before


def test_the_private_blas_stays_at_one_thread():
    """threadpoolctl lists the private OpenBLAS like any BLAS, so
    threadpool_limits(k) reaches it; a fit sets it back to one thread."""
    from cnn_bp import _threads

    if _threads._thread_blas is None:
        pytest.skip("scipy-openblas32 is not installed")
    lib = _threads._thread_blas[0]
    with threadpool_limits(2, user_api="blas"):
        assert lib.scipy_openblas_get_num_threads() == 2
        with training_threads(MIN_SHARED_WORK):
            assert lib.scipy_openblas_get_num_threads() == 1
    assert lib.scipy_openblas_get_num_threads() == 1


@pytest.fixture
def chosen(monkeypatch):
    """The n_threads each fit's training_threads yields, in order."""
    import cnn_bp._training as mlp

    chosen = []

    @contextlib.contextmanager
    def spy(work):
        with training_threads(work) as n_threads:
            chosen.append(n_threads)
            yield n_threads

    monkeypatch.setattr(mlp, "training_threads", spy)
    return chosen


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_fit_is_the_same_with_and_without_the_helper(digits, Estimator, chosen):
    """The estimator decides by itself (training_threads); a fit limited to
    one BLAS thread uses no helper. Both give the same model."""
    X, y = digits
    params = dict(hidden_layer_sizes=(100, 50), max_iter=10, random_state=0)
    can_share = len(os.sched_getaffinity(0)) >= 2 and min(_blas_threads()) >= 2
    with threadpool_limits(1, user_api="blas"):
        alone = Estimator(**params).fit(X, y)
    shared = Estimator(**params).fit(X, y)
    assert chosen == [1, 2 if can_share else 1]
    for a, b in zip(shared.coefs_ + shared.intercepts_, alone.coefs_ + alone.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(shared.loss_curve_, alone.loss_curve_, rtol=1e-12)


def test_partial_fit_of_a_small_chunk_keeps_one_thread(digits, chosen):
    """Handing work to the helper costs more than a small chunk's epoch gains."""
    X, y = digits
    MLPClassifier((100,)).partial_fit(X[:200], y[:200], classes=np.arange(10))
    assert chosen == [1]


# One-row predictions shared by inputs: the helper sums the rows of W^l of
# the second half of each layer's inputs while the caller sums the first
# half's (see _forward). SHARED_ROW_BYTES is widened below to take these
# small test networks too.


TWO_CORES = len(os.sched_getaffinity(0)) >= 2


@contextlib.contextmanager
def _row_bytes(lo, hi):
    """SHARED_ROW_BYTES set to (lo, hi) for the block (lo > hi: no sharing)."""
    before = hooks.shared_row_bytes()
    hooks.shared_row_bytes(lo, hi)
    try:
        yield
    finally:
        hooks.shared_row_bytes(*before)


@pytest.fixture
def share_rows():
    """Share the one-row predictions of every network (the default range
    starts at a layer of 2^17 weights, larger than a test needs)."""
    with _row_bytes(1, 1 << 30):
        yield


def _alone(predict):
    """predict() with one-row sharing off."""
    with _row_bytes(1, 0):
        return predict()


def _shared(predict, rows, jobs_per_row):
    """predict(row) for each row, shared: each row is predicted again until
    the helper takes part (a row finding it asleep works alone and wakes
    it; woken, it may wait milliseconds for a core), for up to 5 s, and
    then it must have done one job per split layer (none: a row whose
    layers are all left to BLAS, predicted once)."""
    out = []
    for row in rows:
        deadline = time.monotonic() + 5
        while True:
            jobs = hooks.helper_jobs()
            result = predict(row)
            jobs = hooks.helper_jobs() - jobs
            if jobs or not jobs_per_row or time.monotonic() > deadline:
                break
        assert jobs == jobs_per_row
        out.append(result)
    return np.vstack(out)


@pytest.mark.skipif(not TWO_CORES, reason="sharing needs two cores")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "identity"])
@pytest.mark.parametrize("units", [(30, 400, 5), (50, 197, 48, 33), (20, 40, 300)])
def test_shared_row_is_predicted_as_alone(share_rows, dtype, activation, units):
    """Each row's outputs, and every hidden layer's activations, are those
    of the unshared pass and of a batch (to round-off: BLAS sums a row's
    products in other pieces), and the helper did take part."""
    engine = _engine(dtype, units=units, activation=activation)
    X = np.random.RandomState(2).normal(size=(12, units[0])).astype(dtype)
    rows = [X[i : i + 1] for i in range(len(X))]
    # the layers split (_by_rows): 9216 weights or more
    split = [n_in * n_out >= 9216 for n_in, n_out in zip(units, units[1:])]
    for layer in range(1, len(units)):
        # one job per row and split layer up to `layer`: the pass stops there
        shared = _shared(lambda r: engine.predict(r, layer=layer), rows, sum(split[:layer]))
        alone = _alone(lambda: np.vstack([engine.predict(r, layer=layer) for r in rows]))
        batch = engine.predict(X, layer=layer)
        assert shared.dtype == dtype
        np.testing.assert_allclose(shared, alone, rtol=RTOL[dtype], atol=RTOL[dtype])
        np.testing.assert_allclose(shared, batch, rtol=RTOL[dtype], atol=RTOL[dtype])
    assert any(split)


@pytest.mark.skipif(not TWO_CORES, reason="sharing needs two cores")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_that_finds_the_helper_asleep_is_computed_alone(share_rows, dtype):
    """After 50 ms without a job the helper sleeps (it spins 2 ms): the next
    row is computed by the caller alone (ROW_ALONE: no helper job) and
    equals the batch's row."""
    units = (50, 197, 48, 33)
    engine = _engine(dtype, units=units)
    X = np.random.RandomState(4).normal(size=(4, units[0])).astype(dtype)
    batch = engine.predict(X)
    for i in range(len(X)):
        time.sleep(0.05)
        jobs = hooks.helper_jobs()
        row = engine.predict(X[i : i + 1])
        assert hooks.helper_jobs() == jobs
        np.testing.assert_allclose(row[0], batch[i], rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.skipif(not TWO_CORES, reason="sharing needs two cores")
@pytest.mark.parametrize("kw", [dict(batch_norm=True), dict(dropout=0.3), {}])
def test_shared_rows_of_an_estimator(share_rows, digits, kw):
    """predict_proba and predict of single rows, shared, as in a batch, for
    networks with batch normalisation (an affine map of the units at
    prediction) and dropout (off at prediction)."""
    X, y = digits
    model = MLPClassifier((160, 64), max_iter=3, random_state=0, **kw).fit(X, y)
    rows = [X[i : i + 1] for i in range(15)]
    proba = _shared(model.predict_proba, rows, 2)
    np.testing.assert_allclose(proba, model.predict_proba(X[:15]), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(np.concatenate([model.predict(r) for r in rows]),
                                  model.predict(X[:15]))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_shared_row_with_nan_or_inf_is_rejected(share_rows, digits, bad):
    """The check of Z^1 follows both halves of a shared first layer:
    scikit-learn's error, for a bad value anywhere in the row."""
    X, y = digits
    model = MLPClassifier((160,), max_iter=2, random_state=0).fit(X, y)

    def rejected(row):
        with pytest.raises(ValueError, match="NaN|infinity"):
            model.predict(row)
        return row

    for column in (0, 63):
        row = X[:1].copy()
        row[0, column] = bad
        if TWO_CORES:  # one job: the first layer's, then the check stops the pass
            _shared(rejected, [row], 1)
        else:
            rejected(row)


@pytest.mark.skipif(not TWO_CORES, reason="sharing needs two cores")
def test_shared_rows_while_the_helper_trains_elsewhere(share_rows):
    """Threads predicting single rows (one may have the helper, the others
    work alone) while another thread's epochs hold it now and then: every
    row as predicted alone, and the training as with one thread."""
    X, Y, _, order = _data(np.float64)
    expected_training = _train(_engine(np.float64), X, Y, None, order, 100, 1, epochs=5)[0]
    engine = _engine(np.float64, units=(20, 500, 48, 5))
    rows = [X[i : i + 1] for i in range(40)]
    expected = _alone(lambda: [engine.predict(r) for r in rows])
    results, trained = [None] * 3, [None]
    barrier = threading.Barrier(4)

    def predict(i):
        barrier.wait()
        results[i] = [engine.predict(r) for _ in range(5) for r in rows]

    def train():
        barrier.wait()
        trained[0] = _epochs(_engine(np.float64), X, Y, None, order, 100, 2, epochs=5)[0]

    threads = [threading.Thread(target=predict, args=(i,)) for i in range(3)]
    threads.append(threading.Thread(target=train))
    _run_with_one_blas_thread(threads)
    for got in results:
        for g, want in zip(got, expected * 5):
            np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(trained[0], expected_training, rtol=1e-11, atol=1e-11)


@pytest.mark.skipif(not TWO_CORES, reason="sharing needs two cores")
@pytest.mark.parametrize(
    "units, dtype, jobs",
    [((784, 512, 256, 10), np.float32, 2), ((784, 512, 256, 10), np.float64, 2),
     ((784, 100, 10), np.float64, 1), ((784, 100, 10), np.float32, 0),
     ((784, 2048, 10), np.float64, 0)],
)
def test_default_sharing_range(units, dtype, jobs):
    """The default SHARED_ROW_BYTES shares the rows of 784-512-256-10 and of
    784-100-10 in float64 (627 KB of W^1), not of 784-100-10 in float32
    (314 KB: too little to share) or 784-2048-10 in float64 (12.8 MB:
    OpenBLAS's threads stream it as fast)."""
    assert hooks.shared_row_bytes() == _plan.SHARED_ROW_BYTES
    engine = _engine(dtype, units=units)
    rows = np.random.RandomState(3).uniform(size=(3, units[0])).astype(dtype)
    if jobs:
        _shared(engine.predict, [rows[i : i + 1] for i in range(3)], jobs)
    else:  # for 0.3 s of rows: long enough for a sleeping helper to wake
        before, deadline = hooks.helper_jobs(), time.monotonic() + 0.3
        while time.monotonic() < deadline:
            engine.predict(rows[:1])
        assert hooks.helper_jobs() == before

# -- the process's BLAS is never changed (issue: faults of a global limit) ---

needs_two = pytest.mark.skipif(not TWO_CORES, reason="needs two cores")


def _random_fit_data(n=20000, n_features=200, seed=0):
    rng = np.random.RandomState(seed)
    return rng.rand(n, n_features), rng.randint(0, 2, n)


@needs_two
def test_an_overlapping_threadpool_limit_leaves_blas_as_it_was(chosen):
    """A MiniBatchKMeans (which limits BLAS itself) started 0.1 s into a fit
    in another thread: BLAS's thread count afterwards is what it was, and the
    next fit shares its batches."""
    from sklearn.cluster import MiniBatchKMeans

    X, y = _random_fit_data()
    before = _blas_threads()
    fit = threading.Thread(target=MLPClassifier((256,), max_iter=3, random_state=0).fit,
                           args=(X, y))
    fit.start()
    time.sleep(0.1)
    kmeans = threading.Thread(target=MiniBatchKMeans(20, batch_size=1024, max_iter=15,
                                                     n_init=1, random_state=0).fit,
                              args=(X,))
    kmeans.start()
    fit.join()
    kmeans.join()
    assert _blas_threads() == before
    jobs = hooks.helper_jobs()
    MLPClassifier((256,), max_iter=1, random_state=0).fit(X[:5000], y[:5000])
    assert chosen[-1] == 2 and hooks.helper_jobs() > jobs


@needs_two
def test_other_threads_see_blas_s_own_thread_count_during_a_fit():
    X, y = _random_fit_data(n=5000)
    before = _blas_threads()
    gate, waiting = threading.Event(), threading.Event()

    def held(epoch, lr):  # the fit pauses before its second epoch
        if epoch == 1:
            waiting.set()
            gate.wait()
        return lr

    model = MLPClassifier((256,), max_iter=2, random_state=0, lr_schedule=held)
    fit = threading.Thread(target=model.fit, args=(X, y))
    fit.start()
    try:
        assert waiting.wait(60)
        assert _blas_threads() == before  # the fit is under way, BLAS untouched
    finally:
        gate.set()
        fit.join()


def _fit_in_child(conn):
    """In a forked child: a fit that must share its batches."""
    try:
        X, y = _random_fit_data(n=4000, seed=1)
        jobs = hooks.helper_jobs()
        MLPClassifier((256,), max_iter=2, random_state=0).fit(X, y)
        conn.send(("ok", hooks.helper_jobs() - jobs, _blas_threads()))
    except BaseException as exc:  # pragma: no cover - reported to the parent
        conn.send(("error", repr(exc), None))


@needs_two
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_during_a_fit_shares_its_batches():
    """fork() while a fit in another thread holds the helper: the child
    starts its own helper and trains with two threads, BLAS as the parent's."""
    X, y = _random_fit_data()
    model = MLPClassifier((256,), max_iter=3, random_state=0)
    fit = threading.Thread(target=model.fit, args=(X, y))
    fit.start()
    while "_engine" not in vars(model) or model._engine.rows_trained == 0:
        time.sleep(0.001)
    context = multiprocessing.get_context("fork")
    parent_end, child_end = context.Pipe()
    child = context.Process(target=_fit_in_child, args=(child_end,))
    child.start()
    status, jobs, blas = parent_end.recv()
    child.join()
    fit.join()
    assert status == "ok", jobs
    assert jobs > 0  # the child's fit shared its batches with its own helper
    assert blas == _blas_threads()


def _fit_forked_estimator(model, X, y, conn):
    """In a forked child: partial_fit (on the engine the parent's pass held
    at the fork), then fit, the estimator the parent is fitting."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.partial_fit(X[:200], y[:200])
            model.set_params(max_iter=2).fit(X[:200], y[:200])
        conn.send(("ok", model.n_iter_))
    except BaseException as exc:  # pragma: no cover - reported to the parent
        conn.send(("error", repr(exc)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_during_a_fit_can_fit_that_estimator():
    """The record of fits under way and the engines' busy flags are the
    parent's threads': a forked child starts without them (20 of 20 runs),
    and the parent's fit finishes."""
    X, y = _random_fit_data(n=2000, n_features=64)
    context = multiprocessing.get_context("fork")
    held = 0
    for run in range(20):
        model = MLPClassifier((64,), max_iter=30, tol=0, random_state=run)
        fit = threading.Thread(target=model.fit, args=(X, y))
        fit.start()
        while "_engine" not in vars(model) or model._engine.rows_trained == 0:
            time.sleep(0.0005)
        parent_end, child_end = context.Pipe()
        child = context.Process(target=_fit_forked_estimator, args=(model, X, y, child_end))
        held += fit.is_alive()
        child.start()
        assert parent_end.poll(60), run
        status = parent_end.recv()
        child.join(60)
        fit.join(60)
        assert status == ("ok", 2), (run, status)
        assert not fit.is_alive() and model.n_iter_ == 30
    assert held == 20  # every fork came while the parent's fit ran


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_waits_for_the_private_blas_calls_under_way():
    """The fork gate: a fork while another thread is inside a call of the
    private BLAS returns only after that call has ended (a child must not
    start with OpenBLAS's buffer-table lock held by a thread it lacks: its
    first product would wait for ever), and the child's gate is open."""
    held_at = []
    hold = threading.Thread(target=hooks.py_hold_blas_gate,
                            args=(0.5, lambda: held_at.append(time.monotonic())))
    hold.start()
    while not held_at:
        time.sleep(0.001)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            hooks.py_hold_blas_gate(0.0, lambda: None)
            MLPClassifier((8,), max_iter=2).fit(np.eye(4), [0, 1, 0, 1])
            status = 0
        finally:
            os._exit(status)
    forked_at = time.monotonic()
    hold.join()
    for _ in range(6000):  # the child has 60 s
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:  # pragma: no cover - a hung child
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert forked_at - held_at[0] >= 0.5
    assert done and os.waitstatus_to_exitcode(status) == 0


@needs_two
def test_two_fits_in_two_threads_run_at_once(chosen):
    """Both fits share their batches (one with the helper, the other alone
    while the helper is taken), and neither waits for the other: the
    GIL-free sections of their epochs, stamped by the engine from inside,
    overlap. Each model is the one it would be alone."""
    X, y = _random_fit_data(n=2000, n_features=64)
    intervals = ([], [])

    def model(seed, out):
        def record(epoch, lr):  # called before each epoch, in the fit's thread
            if epoch:
                out.append(models[seed]._engine.last_nogil_interval)
            return lr

        return MLPClassifier((256,), max_iter=30, tol=0, random_state=seed,
                             lr_schedule=record)

    models = [model(0, intervals[0]), model(1, intervals[1])]
    threads = [threading.Thread(target=m.fit, args=(X, y)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert chosen == [2, 2]
    overlaps = sum(a0 < b1 and b0 < a1 for a0, a1 in intervals[0] for b0, b1 in intervals[1])
    assert len(intervals[0]) == len(intervals[1]) == 29 and overlaps > 0
    for seed, m in enumerate(models):
        alone = MLPClassifier((256,), max_iter=30, tol=0, random_state=seed).fit(X, y)
        np.testing.assert_allclose(m.coefs_[0], alone.coefs_[0], rtol=1e-9, atol=1e-12)
