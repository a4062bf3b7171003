"""cnn_bp.save / cnn_bp.load: arrays and plain settings only, checked on load."""

import io
import json
import pickle
import zipfile

import numpy as np
import pytest

import cnn_bp
from cnn_bp import MLPClassifier, MLPRegressor, ModelFileError, load, save


def _round_trip(model, tmp_path):
    path = tmp_path / "model.npz"
    save(model, path)
    return load(path), path


@pytest.mark.parametrize("target", ["multiclass", "binary-strings", "multilabel"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_classifier_round_trip(digits, tmp_path, target, dtype):
    X, y = digits
    X = X.astype(dtype)
    if target == "binary-strings":
        y = np.where(y > 4, "big", "small").astype(object)
    elif target == "multilabel":
        y = np.column_stack([y % 2, y > 4, y == 0]).astype(int)
    model = MLPClassifier((9,), max_iter=4, random_state=0).fit(X, y)
    loaded, _ = _round_trip(model, tmp_path)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.get_params() == model.get_params()
    assert loaded.classes_.dtype == model.classes_.dtype
    for attr in ("n_iter_", "t_", "loss_", "loss_curve_", "n_layers_", "n_outputs_",
                 "out_activation_", "n_features_in_"):
        assert getattr(loaded, attr) == getattr(model, attr), attr
    assert loaded.coefs_[0].dtype == dtype


def test_regressor_round_trip_resumes_training_identically(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(120, 4))
    Y = np.column_stack([X.sum(axis=1), X[:, 0] ** 2])
    model = MLPRegressor(hidden_layer_sizes=(7,), solver="sgd", random_state=0)
    model.partial_fit(X, Y)
    loaded, _ = _round_trip(model, tmp_path)
    for m in (model, loaded):
        m.partial_fit(X, Y)
    np.testing.assert_array_equal(loaded.coefs_[0], model.coefs_[0])
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_feature_names_and_early_stopping_state(digits, tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = digits
    frame = pd.DataFrame(X, columns=[f"p{i}" for i in range(64)])
    model = MLPClassifier((8,), early_stopping=True, max_iter=5, random_state=0).fit(frame, y)
    loaded, _ = _round_trip(model, tmp_path)
    np.testing.assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    assert loaded.validation_scores_ == model.validation_scores_
    assert loaded.best_validation_score_ == model.best_validation_score_
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))


@pytest.fixture
def saved(digits, tmp_path):
    X, y = digits
    model = MLPClassifier((6,), max_iter=2, random_state=0).fit(X, y)
    path = tmp_path / "model.npz"
    save(model, path)
    return path


def _rewrite(path, change):
    """Rewrite the archive with change(name, bytes) -> bytes applied."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, change(name, data))


def _edit_header(path, edit):
    def change(name, data):
        if name != "__header__.npy":
            return data
        array = np.load(io.BytesIO(data))
        header = json.loads(array.tobytes().decode())
        edit(header)
        out = io.BytesIO()
        np.save(out, np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
        return out.getvalue()

    _rewrite(path, change)


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a readable"):
        load(saved)


def test_altered_weights_fail_the_checksum(saved):
    def flip(name, data):
        if name != "params.npy":
            return data
        data = bytearray(data)
        data[-5] ^= 0xFF
        return bytes(data)

    _rewrite(saved, flip)
    with pytest.raises(ModelFileError, match="SHA-256"):
        load(saved)


@pytest.mark.parametrize("edit,error,pattern", [
    (lambda h: h.update(format="other"), ModelFileError, "not a cnn_bp model"),
    (lambda h: h.update(format_version=99), ModelFileError, "newer"),
    (lambda h: h["params"].update(activation="os.system"), ValueError, "activation"),
    (lambda h: h["params"].update(alpha=-5), ValueError, "alpha"),
    (lambda h: h.update(estimator="Popen"), ModelFileError, "inconsistent"),
    (lambda h: h["arrays"]["params"].update(shape=[3]), ModelFileError, "shape"),
    (lambda h: h["fitted"].update(n_features_in_=3), ModelFileError, "do not match"),
])
def test_tampered_header(saved, edit, error, pattern):
    _edit_header(saved, edit)
    with pytest.raises(error, match=pattern):
        load(saved)


def test_loading_never_unpickles(tmp_path):
    """An archive carrying a pickle (whose loading would create a file) is
    refused, and the payload never runs."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.npz"
    np.savez(path, __header__=np.zeros(3, np.uint8), params=np.array([Payload()], dtype=object))
    with pytest.raises(ModelFileError):
        load(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ModelFileError):
        load(path)
    assert not marker.exists()


def test_save_rejects_unfitted_and_foreign_models(tmp_path):
    from sklearn.exceptions import NotFittedError
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    with pytest.raises(NotFittedError):
        save(MLPClassifier(), tmp_path / "a.npz")
    with pytest.raises(TypeError, match=r"got sklearn\.neural_network\._multilayer_perceptron"
                                        r"\.MLPClassifier$"):
        save(SklearnMLP(), tmp_path / "b.npz")
    assert cnn_bp.ModelFileError.__mro__[1] is ValueError


@pytest.mark.parametrize("name", ["model.cnnbp", "model", "model.npz"])
def test_save_writes_exactly_the_path_given(digits, tmp_path, name):
    """save adds no extension (numpy's savez would add .npz), returns the
    path, and load reads that same path back."""
    X, y = digits
    model = MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y)
    path = tmp_path / name
    assert save(model, path) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    np.testing.assert_array_equal(load(path).predict_proba(X), model.predict_proba(X))
    assert load(str(path)).n_iter_ == model.n_iter_


def test_save_to_an_open_binary_file(digits, tmp_path):
    X, y = digits
    model = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    buffer = io.BytesIO()
    assert save(model, buffer) is buffer
    buffer.seek(0)
    np.testing.assert_array_equal(load(buffer).predict(X), model.predict(X))
    with open(tmp_path / "m.bin", "wb") as file:
        save(model, file)
    with open(tmp_path / "m.bin", "rb") as file:
        np.testing.assert_array_equal(load(file).predict(X), model.predict(X))
