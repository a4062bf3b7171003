"""Bad input gets a clear error and leaves a fitted model exactly as it was;
faults during training leave a consistent model; concurrent predictions agree."""

import json
import pickle
import subprocess
import sys
import textwrap
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from threadpoolctl import threadpool_limits

import cnn_bp
from cnn_bp import MLPClassifier, MLPRegressor


@pytest.fixture
def fitted(digits):
    X, y = digits
    model = MLPClassifier(hidden_layer_sizes=(12,), max_iter=3, random_state=0)
    return model.fit(X[:300], y[:300])


def _snapshot(model):
    return pickle.dumps(model)


def _with(X, i, j, value):
    X = X.copy()
    X[i, j] = value
    return X


# (description, call, exception type, message pattern) -- `call(model, X, y)`
BAD_FIT = [
    ("NaN in X", lambda m, X, y: m.fit(_with(X, 3, 4, np.nan), y), ValueError, "NaN"),
    ("inf in X", lambda m, X, y: m.fit(_with(X, 0, 0, np.inf), y), ValueError, "infinity"),
    ("empty X", lambda m, X, y: m.fit(X[:0], y[:0]), ValueError, "0 sample"),
    ("1-D X", lambda m, X, y: m.fit(X[:, 0], y), ValueError, "Expected 2D array"),
    ("3-D X", lambda m, X, y: m.fit(X.reshape(len(X), 8, 8), y), ValueError, "dim 3"),
    ("string features", lambda m, X, y: m.fit(np.full(X.shape, "a"), y), ValueError,
     "could not convert|Unable to convert|dtype='numeric'"),
    ("object features", lambda m, X, y: m.fit(np.array([[object()] * 64] * 300), y),
     TypeError, "float|number"),
    ("complex X", lambda m, X, y: m.fit(X + 1j, y), ValueError, "Complex data"),
    ("X and y lengths differ", lambda m, X, y: m.fit(X, y[:-1]), ValueError,
     "inconsistent numbers of samples"),
    ("NaN in y",
     lambda m, X, y: MLPRegressor(max_iter=2).fit(X, _with(y[:, None] * 1.0, 0, 0, np.nan)),
     ValueError, "NaN"),
    ("negative layer size", lambda m, X, y: m.set_params(hidden_layer_sizes=(5, -3)).fit(X, y),
     ValueError, "must be > 0"),
    ("non-integer layer size", lambda m, X, y: m.set_params(hidden_layer_sizes=(5.5,)).fit(X, y),
     TypeError, "integers"),
    ("huge layer size", lambda m, X, y: m.set_params(hidden_layer_sizes=(10**10,)).fit(X, y),
     (ValueError, MemoryError), "2\\*\\*31|memory|Unable to allocate"),
    ("huge network memory",
     lambda m, X, y: m.set_params(hidden_layer_sizes=(30000,) * 4).fit(X, y),
     MemoryError, "needs 80.5 GiB"),
    ("unseen label in partial_fit",
     lambda m, X, y: m.partial_fit(X[:5], np.array([0, 1, 2, 3, 99])),
     ValueError, "not in `self.classes_`"),
    ("wrong features in partial_fit", lambda m, X, y: m.partial_fit(X[:, :10], y), ValueError,
     "features"),
    ("early stopping in partial_fit",
     lambda m, X, y: m.set_params(early_stopping=True).partial_fit(X, y),
     ValueError, "early_stopping"),
    ("validation set too small",
     lambda m, X, y: m.set_params(early_stopping=True, validation_fraction=0.001).fit(X, y),
     ValueError, "validation set is too small"),
    ("bad sample_weight shape", lambda m, X, y: m.fit(X, y, sample_weight=np.ones(3)), ValueError,
     "sample_weight"),
    ("unknown activation", lambda m, X, y: m.set_params(activation="swish").fit(X, y), ValueError,
     "activation"),
]


@pytest.mark.parametrize("case", BAD_FIT, ids=[c[0] for c in BAD_FIT])
def test_bad_fit_input_is_rejected_and_leaves_the_model_unchanged(fitted, digits, case):
    _, call, error, pattern = case
    X, y = digits
    X, y = X[:300], y[:300]
    before = _snapshot(fitted)
    params = fitted.get_params()
    with pytest.raises(error, match=pattern):
        call(fitted, X, y)
    fitted.set_params(**params)
    assert _snapshot(fitted) == before


BAD_PREDICT = [
    ("wrong number of features", lambda m, X: m.predict(X[:, :10]), ValueError, "features"),
    ("NaN", lambda m, X: m.predict_proba(_with(X, 0, 0, np.nan)), ValueError, "NaN"),
    ("empty", lambda m, X: m.predict(X[:0]), ValueError, "0 sample"),
    ("1-D", lambda m, X: m.predict(X[0]), ValueError, "Expected 2D array"),
    ("complex", lambda m, X: m.predict(X + 1j), ValueError, "Complex data"),
    ("sparse with wrong features", lambda m, X: m.predict(sp.csr_matrix(X[:, :5])), ValueError,
     "features"),
]


@pytest.mark.parametrize("case", BAD_PREDICT, ids=[c[0] for c in BAD_PREDICT])
def test_bad_predict_input_is_rejected(fitted, digits, case):
    _, call, error, pattern = case
    before = _snapshot(fitted)
    with pytest.raises(error, match=pattern):
        call(fitted, digits[0])
    assert _snapshot(fitted) == before


def test_overflowing_outputs_are_an_error_not_nan(digits):
    X, y = digits
    model = MLPRegressor(hidden_layer_sizes=(4,), activation="identity", max_iter=2,
                         random_state=0).fit(X, y)
    model.coefs_[0][...] = 1e307  # 64 features x 1e307 overflows float64
    with pytest.raises(ValueError, match="overflows"):
        model.predict(X)
    assert np.isnan(model._score(X, y))  # internal scoring sees NaN, as scikit-learn's


def test_batch_size_larger_than_data_is_clipped_with_a_warning(digits):
    X, y = digits
    with pytest.warns(UserWarning, match="clipped"):
        model = MLPClassifier((5,), batch_size=10_000, max_iter=2, random_state=0).fit(X, y)
    assert model.n_iter_ == 2


@pytest.mark.parametrize("kind", ["fortran", "strided", "readonly", "memmap", "int8", "uint8",
                                  "float16"])
def test_unusual_arrays_are_accepted_and_give_the_plain_result(digits, kind, tmp_path):
    X, y = digits
    X = X[:300]
    y = y[:300]
    if kind == "fortran":
        Xk = np.asfortranarray(X)
    elif kind == "strided":
        Xk = np.repeat(X, 2, axis=1)[:, ::2]
    elif kind == "readonly":
        Xk = X.copy()
        Xk.setflags(write=False)
    elif kind == "memmap":
        Xk = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=X.dtype, shape=X.shape)
        Xk[...] = X
        Xk.flush()
        Xk = np.load(tmp_path / "X.npy", mmap_mode="r")
    else:
        X = np.round(X * 16)
        Xk = X.astype(kind)
    plain = MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y)
    model = MLPClassifier((8,), max_iter=3, random_state=0).fit(Xk, y)
    np.testing.assert_allclose(model.coefs_[0], plain.coefs_[0], rtol=1e-12)
    np.testing.assert_allclose(model.predict_proba(Xk), plain.predict_proba(X), rtol=1e-12)


def test_nonfinite_weights_undo_the_epoch_and_raise(digits):
    X, y = digits
    model = MLPRegressor(hidden_layer_sizes=(8,), activation="identity", solver="sgd",
                         learning_rate_init=10.0, momentum=0.0, max_iter=20, random_state=0)
    with pytest.raises(ValueError, match="non-finite parameter weights.*keeps its parameters"):
        model.fit(X, y * 1e3)
    assert np.isfinite(model._engine.params).all()
    assert model.n_iter_ == len(model.loss_curve_) and model.n_iter_ < 20
    assert np.isfinite(model.predict(X)).all()


def test_nonfinite_loss_with_finite_weights_stops_with_a_warning(digits):
    X, y = digits
    model = MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=1e6,
                         momentum=0.0, max_iter=20, random_state=0)
    with pytest.warns(RuntimeWarning, match="the loss became inf"):
        model.fit(X * 1e3, y * 1e3)
    assert np.isfinite(model.loss_curve_).all() and model.n_iter_ < 20
    assert np.isfinite(model._engine.params).all()


def test_keyboard_interrupt_between_epochs_leaves_a_consistent_model(digits, monkeypatch):
    """Ctrl-C reaches Python between two epochs (an epoch is one call without
    the GIL); simulate it arriving before epoch 4."""
    import cnn_bp._training as mlp

    X, y = digits
    calls = []
    real_shuffle = mlp._shuffle

    def interrupting_shuffle(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_shuffle(*args, **kwargs)

    monkeypatch.setattr(mlp, "_shuffle", interrupting_shuffle)
    model = MLPClassifier((10,), max_iter=50, random_state=0)
    with pytest.warns(UserWarning, match="interrupted by user"):
        model.fit(X, y)
    assert model.n_iter_ == 3 == len(model.loss_curve_)
    monkeypatch.undo()
    three_epochs = MLPClassifier((10,), max_iter=3, random_state=0).fit(X, y)
    np.testing.assert_array_equal(model._engine.params, three_epochs._engine.params)


def test_concurrent_predictions_match_sequential(digits):
    X, y = digits
    model = MLPClassifier((30,), max_iter=5, random_state=0).fit(X, y)
    chunks = [X[i::8] for i in range(8)]
    expected = [model.predict_proba(c) for c in chunks]
    barrier = threading.Barrier(8)

    def predict(c):
        barrier.wait()
        return [model.predict_proba(c) for _ in range(20)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(predict, chunks))
    for got, want in zip(results, expected):
        for g in got:
            np.testing.assert_array_equal(g, want)
    assert isinstance(cnn_bp.__version__, str)


# -- one estimator, two threads: the second fit raises, nothing crashes ------

def test_a_second_fit_while_training_raises_and_leaves_the_fit_alone():
    rng = np.random.RandomState(0)
    X, y = rng.rand(2000, 50), rng.randint(0, 2, 2000)
    gate, waiting = threading.Event(), threading.Event()

    def held(epoch, lr):  # the fit waits before its second epoch until released
        if epoch == 1:
            waiting.set()
            gate.wait()
        return lr

    params = dict(hidden_layer_sizes=(16,), batch_size=20, max_iter=3, random_state=0,
                  lr_schedule=held)
    model = MLPClassifier(**params)
    thread = threading.Thread(target=model.fit, args=(X, y))
    thread.start()
    try:
        assert waiting.wait(60)
        model.set_params(batch_size=2000)  # parameters may change: the fit keeps its own
        with pytest.raises(RuntimeError, match="being fitted in another thread"):
            model.partial_fit(X[:1000], y[:1000])
        with pytest.raises(RuntimeError, match="being fitted in another thread"):
            model.set_params(warm_start=True).fit(X[:100], y[:100])
        assert model.predict_proba(X[:5]).shape == (5, 2)  # predict works meanwhile
    finally:
        gate.set()
        thread.join()
    gate.set()
    alone = MLPClassifier(**params).fit(X, y)
    np.testing.assert_array_equal(model._engine.params, alone._engine.params)
    assert model.n_iter_ == alone.n_iter_ == 3
    model.set_params(warm_start=False, batch_size=20).fit(X[:100], y[:100])  # free again


def test_the_engine_refuses_a_second_pass_while_one_runs():
    """A pass without the GIL holds the engine's buffers: a second pass,
    new optimizer state or dropout rates from another thread raise."""
    from cnn_bp._engine import Engine

    import reference as act

    rng = np.random.RandomState(0)
    X = rng.rand(20000, 200)
    Y = np.eye(2)[rng.randint(0, 2, 20000)]
    engine = Engine([200, 256, 2], [act.activation_code("relu")], act.loss_code("log_loss"),
                    np.float64)
    engine.set_optimizer("adam", 1e-3)
    thread = threading.Thread(target=engine.run_epoch, args=(X, Y, None, None, 20, 0.0))
    thread.start()
    while True:  # until the pass holds the engine (setting dropout to 0 is harmless)
        assert thread.is_alive()
        try:
            engine.dropout = 0.0
        except RuntimeError as exc:
            assert "being trained in another thread" in str(exc)
            break
    with pytest.raises(RuntimeError, match="being trained in another thread"):
        engine.run_epoch(X, Y, None, None, 2000, 0.0)
    with pytest.raises(RuntimeError, match="being trained in another thread"):
        engine.set_optimizer("sgd", 0.1)
    assert thread.is_alive()  # the pass takes ~1 s: all of the above ran during it
    thread.join()
    engine.set_optimizer("sgd", 0.1)  # free again
    engine.dropout = 0.0


def test_concurrent_partial_fit_reproduction_never_crashes():
    """The reported crash, 20 times in a subprocess: a partial_fit in a
    thread, then set_params(batch_size=...) and partial_fit from another
    (which reallocated the work blocks mid-epoch: SIGSEGV)."""
    code = textwrap.dedent("""
        import threading, time
        import numpy as np
        import cnn_bp
        rng = np.random.RandomState(0)
        X, y = rng.rand(4000, 200), rng.randint(0, 2, 4000)
        refused = 0
        for _ in range(20):
            m = cnn_bp.MLPClassifier((256,), batch_size=20, random_state=0)
            m.partial_fit(X[:40], y[:40], classes=[0, 1])
            t = threading.Thread(target=m.partial_fit, args=(X, y))
            t.start()
            time.sleep(0.02)
            m.set_params(batch_size=2000)
            try:
                m.partial_fit(X[:2000], y[:2000])
            except RuntimeError:
                refused += 1
            t.join()
            assert np.isfinite(m.predict_proba(X[:10])).all()
        print("refused", refused)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) > 0  # the race was really run


# -- Ctrl-C within an epoch ---------------------------------------------------

def test_ctrl_c_interrupts_an_epoch_between_mini_batches():
    """SIGINT during a long epoch returns from fit between two mini-batches
    (the compiled epoch runs in slices of ~20 ms), with scikit-learn's
    warning and a usable model: n_iter_ and loss_curve_ count finished
    epochs, t_ the rows trained. Run in a subprocess, which signals itself
    once training is under way."""
    code = textwrap.dedent("""
        import json, os, signal, threading, time, warnings
        import numpy as np
        import cnn_bp
        # Ctrl-C as a terminal sends it: Python's handler, whatever this
        # child inherited (a parent that ignores SIGINT, as the test runner
        # sometimes does, passes SIG_IGN on, and the signal would be lost)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        rng = np.random.RandomState(0)
        X, y = rng.rand(30000, 200), rng.randint(0, 3, 30000)
        model = cnn_bp.MLPClassifier((256,), batch_size=50, max_iter=50, random_state=0)
        sent = []

        def interrupt():
            while "_engine" not in vars(model) or model._engine.rows_trained == 0:
                time.sleep(0.001)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt).start()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(X, y)
        latency = time.monotonic() - sent[0]
        print(json.dumps(dict(
            t=model.t_, n_iter=model.n_iter_, curve=len(model.loss_curve_),
            warnings=[str(w.message) for w in caught], latency=latency,
            finite=bool(np.isfinite(model.predict_proba(X[:100])).all()))))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert "Training interrupted by user." in out["warnings"]
    assert out["n_iter"] == out["curve"] == out["t"] // 30000
    assert out["t"] % 30000 != 0  # stopped inside an epoch, between two batches
    assert out["t"] % 50 == 0 and out["finite"]


def test_ctrl_c_interrupts_one_huge_batch_within_a_fifth_of_a_second():
    """batch_size = n_samples = 200,000: one batch of seconds, taken forward
    and back in blocks of rows between which the caller looks for a signal
    (SIGNAL_WORK multiply-adds each). SIGINT inside it returns from fit
    within 0.2 s with scikit-learn's warning, the batch dropped (t_ = 0, no
    epoch) and the model usable. In a subprocess that signals itself once
    the batch is under way."""
    code = textwrap.dedent("""
        import json, os, signal, threading, time, warnings
        import numpy as np
        import cnn_bp
        signal.signal(signal.SIGINT, signal.default_int_handler)
        rng = np.random.default_rng(0)
        X = rng.random((200_000, 784), dtype=np.float32)
        y = rng.integers(0, 10, 200_000)
        model = cnn_bp.MLPClassifier((256,), batch_size=200_000, shuffle=False,
                                     max_iter=5, random_state=0)
        sent = []

        def interrupt():
            while "_engine" not in vars(model):
                time.sleep(0.001)
            time.sleep(0.5)  # inside the first batch, which takes seconds
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt).start()
        start = time.monotonic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(X, y)
        returned = time.monotonic()
        print(json.dumps(dict(
            latency=returned - sent[0], elapsed=returned - start, t=model.t_,
            n_iter=model.n_iter_, curve=len(model.loss_curve_),
            warnings=[str(w.message) for w in caught],
            finite=bool(np.isfinite(model.predict_proba(X[:100])).all()))))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert "Training interrupted by user." in out["warnings"], out
    assert out["t"] == out["n_iter"] == out["curve"] == 0 and out["finite"], out
    assert out["latency"] < 0.2, out


def test_a_large_batch_in_blocks_is_the_whole_batch():
    """A batch larger than a block (SIGNAL_WORK / parameters rows) goes
    forward and back block by block, its gradient summed over them (its
    split dW^1 too, in a hand-over of its own): the model is scikit-learn's,
    float64, on one thread and shared."""
    rng = np.random.RandomState(0)
    X, y = rng.rand(700, 64), rng.randint(0, 3, 700)
    params = dict(hidden_layer_sizes=(1024, 1024), batch_size=700, max_iter=3,
                  random_state=0, learning_rate_init=1e-3)
    assert 700 > (1 << 26) // (64 * 1024 + 1024 * 1024 + 1024 * 3)  # blocks of rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = SklearnMLPClassifier(**params).fit(X, y)
        for threads in (1, 2):
            with threadpool_limits(threads, user_api="cnn_bp"):
                model = cnn_bp.MLPClassifier(**params).fit(X, y)
            for ours, theirs in zip(model.coefs_, reference.coefs_):
                np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("case", ["dropout", "csr", "weights", "float32"])
def test_blocks_change_no_model(case, monkeypatch):
    """Dropout masks (drawn at each row's place in the batch), CSR rows,
    sample weights and float32: the model of batches in blocks of 64 rows is
    that of whole batches (SIGNAL_WORK large), on one thread and two."""
    import cnn_bp._engine as engine

    rng = np.random.RandomState(0)
    X, y = rng.rand(600, 300), rng.randint(0, 3, 600)
    fit_params, params = {}, dict(hidden_layer_sizes=(256,), batch_size=600, max_iter=3,
                                  random_state=0)
    if case == "dropout":
        params["dropout"] = 0.3
    elif case == "csr":
        X = sp.csr_matrix(X * (rng.rand(*X.shape) < 0.1))
    elif case == "weights":
        fit_params["sample_weight"] = rng.rand(600) + 0.5
    else:
        X = X.astype(np.float32)
    models = {}
    for block_work in (1, 1 << 40):  # blocks of _MIN_SIGNAL_BLOCK (64) rows; none
        monkeypatch.setattr(engine, "SIGNAL_WORK", block_work)
        for threads in (1, 2):
            with threadpool_limits(threads, user_api="cnn_bp"), warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                models[block_work, threads] = cnn_bp.MLPClassifier(**params).fit(X, y,
                                                                                **fit_params)
    rtol = 1e-4 if case == "float32" else 1e-9
    for key, model in models.items():
        for ours, whole in zip(model.coefs_, models[1 << 40, 1].coefs_):
            np.testing.assert_allclose(ours, whole, rtol=rtol, atol=rtol * 1e-3,
                                       err_msg=str(key))


@pytest.mark.parametrize("method", ["predict", "predict_proba", "hidden_activations"])
def test_ctrl_c_interrupts_a_long_prediction_within_a_tenth_of_a_second(method):
    """Prediction returns to Python every few ms of compiled work (chunks of
    rows), so SIGINT stops it at once: KeyboardInterrupt within 0.1 s of the
    signal, in a subprocess that signals itself mid-prediction."""
    code = textwrap.dedent(f"""
        import json, os, signal, threading, time, warnings
        import numpy as np
        import cnn_bp
        signal.signal(signal.SIGINT, signal.default_int_handler)
        rng = np.random.RandomState(0)
        model = cnn_bp.MLPClassifier((1024, 1024), random_state=0)
        model.partial_fit(rng.rand(200, 200), rng.randint(0, 3, 200), classes=[0, 1, 2])
        X = rng.rand(40000, 200)  # seconds of work: far longer than the signal's wait
        sent = []

        def interrupt():
            time.sleep(0.3)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt).start()
        start = time.monotonic()
        try:
            getattr(model, "{method}")(X)
            outcome = "finished"
        except KeyboardInterrupt:
            outcome = "interrupted"
        caught = time.monotonic()
        print(json.dumps(dict(outcome=outcome, latency=caught - sent[0],
                              elapsed=caught - start)))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["outcome"] == "interrupted", out
    assert out["latency"] < 0.1, out
