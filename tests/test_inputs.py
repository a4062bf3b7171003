"""Every input kind scikit-learn's MLP accepts: sparse CSR/CSC (never
densified), pandas DataFrames, string labels, multilabel and multi-output
targets, sample_weight routed through pipelines, and the meta-estimators."""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn import neural_network as sk
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cnn_bp import MLPClassifier, MLPRegressor


@pytest.fixture
def sparse_digits(digits):
    X, y = digits
    X = X.copy()
    X[X < 0.4] = 0  # about 60 % zeros
    return sp.csr_matrix(X), y


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_sparse_input_gives_sklearn_model(sparse_digits, fmt, solver, assert_same_model):
    X, y = sparse_digits
    X = X.asformat(fmt)
    params = dict(hidden_layer_sizes=(20,), solver=solver, max_iter=6, random_state=0)
    ours = MLPClassifier(**params).fit(X, y)
    theirs = sk.MLPClassifier(**params).fit(X, y)
    assert_same_model(ours, theirs)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-6)
    # the same model as from the dense copy of X
    dense = MLPClassifier(**params).fit(X.toarray(), y)
    assert_same_model(ours, dense, rtol=1e-9)


def test_misaligned_csr_arrays_fit_and_predict_as_aligned_ones(sparse_digits, misaligned):
    # The engine reads CSR's values, column indices and row pointers as C
    # arrays: misaligned ones (int64, so no dtype conversion copies them)
    # are copied first, never misread.
    X, y = sparse_digits[0][:300], sparse_digits[1][:300]
    X.indices, X.indptr = X.indices.astype(np.int64), X.indptr.astype(np.int64)
    odd = X.copy()
    odd.data, odd.indices, odd.indptr = (misaligned(a) for a in (X.data, X.indices, X.indptr))
    assert not any(a.flags.aligned for a in (odd.data, odd.indices, odd.indptr))
    models = [MLPClassifier((8,), max_iter=3, random_state=0).fit(A, y) for A in (X, odd)]
    for a, b in zip(models[0].coefs_, models[1].coefs_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(models[0].predict_proba(odd), models[0].predict_proba(X))


def test_sparse_input_is_never_densified():
    """A 300 x 2,000,000 CSR matrix with 3 nonzeros per row: densified it
    would take 2.4 GB (float32); fit and predict allocate a few copies of
    the 16 MB W^1 (parameters, gradient, Adam moments, best weights)."""
    rng = np.random.RandomState(0)
    n, d = 300, 2_000_000
    indices = np.sort(rng.randint(d, size=(n, 3)), axis=1).ravel()
    X = sp.csr_matrix((rng.rand(3 * n).astype(np.float32), indices, np.arange(0, 3 * n + 1, 3)),
                      shape=(n, d))
    y = rng.randint(2, size=n)
    tracemalloc.start()
    model = MLPClassifier(hidden_layer_sizes=(2,), max_iter=2, random_state=0).fit(X, y)
    model.predict_proba(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 400e6, peak


def test_pandas_dataframe_feature_names(digits):
    pd = pytest.importorskip("pandas")
    X, y = digits
    columns = [f"pixel_{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=columns)
    model = MLPClassifier(hidden_layer_sizes=(10,), max_iter=5, random_state=0).fit(frame, y)
    np.testing.assert_array_equal(model.feature_names_in_, columns)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        np.testing.assert_array_equal(model.predict(frame), model.predict(frame.to_numpy()))
    with pytest.raises(ValueError, match="feature names"):
        model.predict(frame.rename(columns={"pixel_0": "other"}))
    reg = MLPRegressor(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    reg.fit(frame, pd.Series(y.astype(float)))
    assert reg.n_features_in_ == 64


def test_lists_and_integer_features(digits):
    X, y = digits
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    model.fit((X[:100] * 16).astype(int).tolist(), y[:100].tolist())
    assert model.coefs_[0].dtype == np.float64
    assert model.predict((X[:3] * 16).astype(np.int64)).shape == (3,)


@pytest.mark.parametrize("layout", ["misaligned", "byte-swapped", "Fortran"])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_any_memory_layout_fits_the_same_model(digits, misaligned, layout, solver):
    # The engine reads only aligned, native, C-contiguous blocks; fit converts
    # the rest (X, y of a regressor, sample_weight) instead of misreading them.
    X, y = digits[0][:300], digits[1][:300] * 0.1
    w = np.linspace(0.5, 1.5, len(y))
    convert = {"misaligned": misaligned, "Fortran": np.asfortranarray,
               "byte-swapped": lambda a: a.astype(a.dtype.newbyteorder())}[layout]
    models = [MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0, solver=solver)
              for _ in range(2)]
    models[0].fit(X, y, sample_weight=w)
    models[1].fit(convert(X), convert(y), sample_weight=convert(w))
    for a, b in zip(models[0].coefs_, models[1].coefs_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(models[1].predict(convert(X)), models[0].predict(X))


def test_metadata_routing_of_sample_weight(digits):
    X, y = digits
    sw = np.random.RandomState(0).uniform(0.1, 3, size=len(y))
    params = dict(hidden_layer_sizes=(10,), max_iter=4, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        scaler = StandardScaler().set_fit_request(sample_weight=False)
        pipe = make_pipeline(scaler, MLPClassifier(**params).set_fit_request(sample_weight=True))
        pipe.fit(X, y, sample_weight=sw)
    direct = MLPClassifier(**params).fit(StandardScaler().fit_transform(X), y, sample_weight=sw)
    np.testing.assert_allclose(pipe[-1].coefs_[0], direct.coefs_[0])


def test_meta_estimators(digits):
    X, y = digits
    X, y = X[:400], y[:400]
    model = MLPClassifier(hidden_layer_sizes=(10,), max_iter=20, random_state=0)
    scores = cross_val_score(model, X, y, cv=3)
    reference = cross_val_score(sk.MLPClassifier(hidden_layer_sizes=(10,), max_iter=20,
                                                 random_state=0), X, y, cv=3)
    np.testing.assert_allclose(scores, reference)
    search = GridSearchCV(model, {"alpha": [1e-4, 1e-1]}, cv=2).fit(X, y)
    assert search.best_params_["alpha"] in (1e-4, 1e-1)
    assert clone(model).get_params() == model.get_params()
    assert not hasattr(clone(search.best_estimator_), "coefs_")


@pytest.mark.parametrize("as_", ["array", "list", "bytes"])
def test_regressor_refuses_string_targets_as_scikit_learn_does(as_):
    """Strings as regression targets: scikit-learn's MLPRegressor raises a
    TypeError (numpy's UFuncTypeError); so does cnn_bp's, before anything
    trains. Numeric strings in an object array are numbers to both."""
    X = np.random.RandomState(0).rand(20, 3)
    y = {"array": np.array(["1.5", "2"] * 10), "list": ["1.5", "2"] * 10,
         "bytes": np.array([b"1.5", b"2"] * 10)}[as_]
    with pytest.raises(TypeError):
        sk.MLPRegressor(max_iter=2).fit(X, y)
    model = MLPRegressor(max_iter=2)
    with pytest.raises(TypeError, match="y holds strings"):
        model.fit(X, y)
    assert not hasattr(model, "coefs_")
    numeric = np.array(["1.5", "2"] * 10, dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.MLPRegressor(max_iter=2).fit(X, numeric)
        assert MLPRegressor(max_iter=2).fit(X, numeric).predict(X).dtype == np.float64
