"""The prediction fast path: a plain finite float ndarray skips validate_data,
everything else takes scikit-learn's validation. Results and errors must be
the same either way, and the same as scikit-learn's."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from cnn_bp._checks import all_finite, row_argmax
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.preprocessing import LabelBinarizer

from cnn_bp import MLPClassifier, MLPRegressor, _engine
from cnn_bp import _network as network


def _models(digits):
    X, y = digits
    X, y = X[:300], y[:300]
    Y = np.column_stack([y % 2, y > 4])
    return [
        ("multiclass", MLPClassifier((16,), max_iter=5, random_state=0).fit(X, y)),
        ("binary", MLPClassifier((16,), max_iter=5, random_state=0).fit(X, y > 4)),
        ("multilabel", MLPClassifier((16,), max_iter=5, random_state=0).fit(X, Y)),
        ("regressor",
         MLPRegressor(hidden_layer_sizes=(16,), max_iter=5, random_state=0).fit(X, y * 0.1)),
        ("float32", MLPClassifier((16,), max_iter=5, random_state=0).fit(
            X.astype(np.float32), y)),
    ]


@pytest.mark.parametrize("index", range(5))
def test_fast_and_validated_paths_agree(digits, index):
    name, model = _models(digits)[index]
    X = digits[0][300:400]
    assert model._needs_no_validation(X)
    assert not model._needs_no_validation(X.tolist())
    fast, slow = model.predict(X), model.predict(X.tolist())
    assert fast.dtype == slow.dtype
    np.testing.assert_array_equal(fast, slow)
    if hasattr(model, "predict_proba"):
        np.testing.assert_array_equal(model.predict_proba(X), model.predict_proba(X.tolist()))
    np.testing.assert_array_equal(model.predict(X[:1]), model.predict(X[:1].tolist()))


@pytest.mark.parametrize("classes", [[0, 1], ["no", "yes"], [3, 7, 9], list("abcd")])
def test_label_decoding_matches_label_binarizer(classes):
    rng = np.random.RandomState(0)
    model = MLPClassifier()
    model._label_binarizer = LabelBinarizer().fit(classes)
    model.classes_ = model._label_binarizer.classes_
    model.n_outputs_ = 1 if len(classes) == 2 else len(classes)
    out = rng.rand(50, model.n_outputs_)
    out[:5] = 0.5  # ties, and exactly the binary threshold
    out[5] = np.nan
    expected = model._label_binarizer.inverse_transform(
        out.ravel() if model.n_outputs_ == 1 else out)
    np.testing.assert_array_equal(network.labels(model, out), expected)


def _error(call):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("case", ["nan", "inf", "-inf", "width", "empty", "1-D", "complex"])
def test_bad_input_gives_scikit_learns_error(digits, case):
    X, y = digits[0][:300], digits[1][:300]
    ours = MLPClassifier((16,), max_iter=5, random_state=0).fit(X, y)
    theirs = SkMLPClassifier((16,), max_iter=5, random_state=0).fit(X, y)
    bad = X[:3].copy()
    if case in ("nan", "inf", "-inf"):
        bad[1, 5] = float(case)
    elif case == "width":
        bad = bad[:, :10]
    elif case == "empty":
        bad = bad[:0]
    elif case == "1-D":
        bad = bad[0]
    else:
        bad = bad.astype(complex)
    # inf and NaN take the fast path: the engine finds them
    assert ours._needs_no_validation(bad) == (case in ("nan", "inf", "-inf"))
    for method in ("predict", "predict_proba"):
        kind, message = _error(lambda: getattr(ours, method)(bad))
        their_kind, their_message = _error(lambda: getattr(theirs, method)(bad))
        assert kind is their_kind
        assert message == their_message.replace("SkMLPClassifier", "MLPClassifier")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_inf_or_nan_in_a_later_block_gives_scikit_learns_error(digits, monkeypatch, bad):
    # The fast path checks X block by block as it predicts: a bad value in
    # the last block still stops it with validate_data's error, and the
    # model predicts as before afterwards.
    X, y = digits[0][:300], digits[1][:300]
    ours = MLPClassifier((16,), max_iter=5, random_state=0).fit(X, y)
    theirs = SkMLPClassifier((16,), max_iter=5, random_state=0).fit(X, y)
    monkeypatch.setattr(_engine, "PREDICT_BYTES", 1)  # blocks of PREDICT_MIN_ROWS
    big = np.tile(X, (3, 1))
    assert len(big) > 3 * _engine.PREDICT_MIN_ROWS
    before = ours.predict_proba(big)
    big[-1, 7] = bad
    for method in ("predict", "predict_proba", "hidden_activations"):
        kind, message = _error(lambda: getattr(ours, method)(big))
        their_kind, their_message = _error(lambda: theirs.predict(big))
        assert kind is their_kind
        assert message == their_message.replace("SkMLPClassifier", "MLPClassifier")
    big[-1, 7] = X[-1, 7]
    np.testing.assert_array_equal(ours.predict_proba(big), before)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_inf_or_nan_under_zero_weights_is_still_found(digits, bad):
    # The engine finds bad values through Z^1 = X W^1 (smaller than X and in
    # cache): a feature whose weights are all zero must still spoil its row
    # (inf * 0 is NaN), not vanish from it.
    X, y = digits[0][:300], digits[1][:300]
    model = MLPClassifier((16,), max_iter=5, random_state=0).fit(X, y)
    model.coefs_[0][5] = 0  # the engine's own buffer: feature 5 unused
    rows = X[:3].copy()
    rows[1, 5] = bad
    for method in ("predict", "predict_proba", "hidden_activations"):
        with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
            getattr(model, method)(rows)


def test_finite_input_whose_first_layer_overflows_is_predicted(digits):
    # Finite X whose Z^1 overflows fails the engine's check too; validate_data
    # then passes it and it is predicted unchecked, as scikit-learn would.
    X, y = digits[0][:300], digits[1][:300]
    model = MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(X, y * 0.1)
    model.coefs_[0][3] = -10.0  # feature 3 drives every hidden unit's Z to -inf
    big = X[:2].copy()
    big[:, 3] = 1e308
    assert model._needs_no_validation(big)
    # relu(-inf) = 0: what is left is the output layer's bias
    np.testing.assert_array_equal(model.predict(big), np.full(2, model.intercepts_[-1][0]))


def test_feature_names_are_still_checked(digits):
    X, y = digits[0][:300], digits[1][:300]
    frame = pd.DataFrame(X, columns=[f"pixel{i}" for i in range(64)])
    model = MLPClassifier((16,), max_iter=5, random_state=0).fit(frame, y)
    assert not model._needs_no_validation(X)
    with pytest.warns(UserWarning, match=re.escape("X does not have valid feature names")):
        model.predict(X)


def test_finite_input_whose_sum_overflows_is_predicted(digits):
    # The fast path's finiteness test is exact: values whose sum overflows
    # are finite, take the fast path and are predicted, with no warning.
    X, y = digits[0][:300], digits[1][:300]
    model = MLPRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(X, y * 0.1)
    model.coefs_[0][:2] = 0  # the engine's own buffer: features 0-1 unused
    big = X[:2].copy()
    big[:, :2] = 1e308
    with np.errstate(over="ignore"):
        assert not np.isfinite(big.sum())
    small = big.copy()
    small[:, :2] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no overflow warning of our own
        assert model._needs_no_validation(big)
        np.testing.assert_array_equal(model.predict(big), model.predict(small))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_is_exact(dtype):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(37, 29)).astype(dtype)
    assert all_finite(X) and all_finite(X[:, ::3]) and all_finite(X[:0])
    for bad in (np.nan, np.inf, -np.inf):
        for i, j in ((0, 0), (36, 28), (17, 5)):  # vector body and scalar tail
            Y = X.copy()
            Y[i, j] = bad
            assert not all_finite(Y) and not all_finite(Y.T)
    big = np.full(100, np.finfo(dtype).max, dtype=dtype)
    assert all_finite(big)  # its sum overflows; every value is finite
    with pytest.raises(TypeError):
        all_finite(X.astype(np.int64))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind", ["no hidden layer", "batch_norm", "float32"])
def test_inf_or_nan_is_found_in_every_kind_of_first_layer(digits, kind, bad):
    # Z^1 is checked as it is activated (a hidden layer), after batch
    # normalisation, or as the output layer's (a network without hidden layers).
    X, y = digits[0][:300], digits[1][:300]
    params = {"no hidden layer": {"hidden_layer_sizes": ()},
              "batch_norm": {"batch_norm": True}, "float32": {}}[kind]
    X = X.astype(np.float32) if kind == "float32" else X
    model = MLPClassifier(max_iter=3, random_state=0, **params).fit(X, y)
    rows = np.tile(X, (2, 1))  # its last row is in the last of Z^1's checked parts
    rows[-1, 5] = bad
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        model.predict(rows)
    rows[-1, 5] = 0
    np.testing.assert_array_equal(model.predict(rows), model.predict(rows.tolist()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_columns", [1, 2, 3, 10, 33])
def test_row_argmax_is_numpys(dtype, n_columns):
    # Ties (the first wins), inf, -inf and NaN (the first NaN wins), in more
    # rows than one of the kernel's blocks; and a non-contiguous view.
    rng = np.random.RandomState(0)
    Y = rng.randint(0, 4, size=(300, n_columns)).astype(dtype)
    for value in (np.nan, np.inf, -np.inf):
        Y[rng.rand(*Y.shape) < 0.05] = value
    expected = Y.argmax(axis=1)
    got = row_argmax(Y)
    assert got.dtype == np.intp
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(row_argmax(Y[:, ::-1]), Y[:, ::-1].argmax(axis=1))
    assert row_argmax(Y[:0]).shape == (0,)
    B = Y > 1  # other dtypes: numpy's
    np.testing.assert_array_equal(row_argmax(B), B.argmax(axis=1))


def test_row_argmax_rejects_what_it_cannot_read():
    with pytest.raises(TypeError, match="takes an ndarray, got list"):
        row_argmax([[0.0, 1.0]])
    for shape in ((3,), (3, 0), (2, 2, 2)):
        with pytest.raises(ValueError, match="2-D array with columns"):
            row_argmax(np.zeros(shape))


class _Subclass(np.ndarray):
    pass


@pytest.mark.parametrize("layout", ["byte-swapped", "misaligned", "strided", "subclass"])
def test_every_memory_layout_is_read_as_its_values(digits, misaligned, layout):
    # The engine reads a plain native C-contiguous block in place (numpy's C
    # API checks); any other layout is converted first, never misread.
    X, y = digits[0][:300], digits[1][:300]
    model = MLPClassifier((16,), max_iter=5, random_state=0).fit(X, y)
    rows = digits[0][300:340]
    other = {"byte-swapped": lambda: rows.astype(rows.dtype.newbyteorder()),
             "misaligned": lambda: misaligned(rows),
             "strided": lambda: np.repeat(rows, 2, axis=0)[::2],
             "subclass": lambda: rows.view(_Subclass)}[layout]()
    for n in (1, len(rows)):  # the one-row path, and a batch
        np.testing.assert_array_equal(model.predict_proba(other[:n]),
                                      model.predict_proba(rows[:n]))
        np.testing.assert_array_equal(model.predict(other[:n]), model.predict(rows[:n]))
    if layout != "subclass":  # the engine itself refuses what it cannot read in place
        with pytest.raises((TypeError, ValueError), match="X must"):
            model._engine.predict(other)
    np.testing.assert_array_equal(row_argmax(other), rows.argmax(axis=1))
    if layout == "byte-swapped":
        with pytest.raises(TypeError, match="float32 or float64"):
            all_finite(other)
    else:
        assert all_finite(np.asarray(other))


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-13), (np.float32, 1e-5)])
def test_one_row_is_predicted_as_in_a_batch(digits, dtype, rtol):
    # A single row takes BLAS's matrix-vector product instead of gemm.
    X, y = digits[0].astype(dtype), digits[1]
    model = MLPClassifier((32, 16), max_iter=5, random_state=0).fit(X, y)
    batch = model.predict_proba(X[:20])
    rows = np.vstack([model.predict_proba(X[i : i + 1]) for i in range(20)])
    assert rows.dtype == dtype
    np.testing.assert_allclose(rows, batch, rtol=rtol, atol=rtol * 1e-3)


@pytest.mark.parametrize("labels", [
    [0, 1, 1, 0], ["no", "yes", "yes", "no"], [3, 7, 9, 7, 3], list("badcab"),
    [[0, 1], [1, 1], [1, 0]],  # multilabel
])
def test_label_encoding_matches_label_binarizer(labels):
    X = np.arange(2.0 * len(labels)).reshape(len(labels), 2)
    model = MLPClassifier((3,), max_iter=1).fit(X, labels)
    expected = model._label_binarizer.transform(labels).astype(bool)
    encoded = network.indicator(model, labels)
    assert encoded.dtype == bool
    np.testing.assert_array_equal(encoded, expected.reshape(len(labels), -1))
    np.testing.assert_array_equal(network.labels(model, encoded.astype(float)),
                                  model._label_binarizer.inverse_transform(
                                      expected if expected.shape[1] > 1 else expected.ravel()))


def test_hidden_activations_are_the_forward_pass(digits):
    X, y = digits
    model = MLPClassifier((24, 12), activation=["tanh", "relu"], max_iter=5,
                          random_state=0).fit(X, y)
    A1 = np.tanh(X @ model.coefs_[0] + model.intercepts_[0])
    A2 = np.maximum(A1 @ model.coefs_[1] + model.intercepts_[1], 0)
    np.testing.assert_allclose(model.hidden_activations(X, layer=0), A1, rtol=1e-10, atol=1e-12)
    for layer in (1, -1):
        np.testing.assert_allclose(model.hidden_activations(X, layer=layer), A2,
                                   rtol=1e-10, atol=1e-12)
    # sparse input, lists, one row: the same representation
    import scipy.sparse as sp

    np.testing.assert_allclose(model.hidden_activations(sp.csr_matrix(X[:30])), A2[:30],
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.hidden_activations(X[:1].tolist()), A2[:1],
                               rtol=1e-10, atol=1e-12)
    for bad in (2, -3):
        with pytest.raises(IndexError, match="out of range"):
            model.hidden_activations(X, layer=bad)
    with pytest.raises(ValueError, match="NaN"):
        model.hidden_activations(np.full((1, 64), np.nan))
    with pytest.raises(ValueError, match="layer must be in 1..3"):
        model._engine.predict(X, layer=0)
    # the estimators stay classifiers / regressors: no transform, no set_output
    assert not hasattr(model, "transform")
