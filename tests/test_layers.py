"""The package's layers: estimators -> trainer -> network -> engine -> plan -> passes.

Each module imports only the layers below it, and the modules beside the
estimators (Dask, persistence, inspection) reach the network and the trainer
through their functions, never through an estimator's private methods. The
engine checks a fit's data once (``Engine.training_data``), and an epoch
trained in slices over those checked data is the epoch of one call.
"""

import ast
import importlib.util
import pathlib

import numpy as np
import pytest
import scipy.sparse as sp
from cnn_bp._engine import Engine
from sklearn.datasets import load_digits

from cnn_bp import MLPClassifier, MLPRegressor
from cnn_bp import _training as training
from cnn_bp._registry import activation_code, loss_code

PACKAGE = pathlib.Path(importlib.util.find_spec("cnn_bp").origin).parent

# Each module and the package modules it may import (relative imports);
# the layers from the top: estimators, trainer, network, engine (_engine and
# its checks, _checks), plan, passes.
ENGINE = {"_engine", "_checks"}
ALLOWED = {
    "_mlp": {"_docstrings", "_network", "_compat", "_registry", "_training", "_passes"} | ENGINE,
    "_training": {"_checkpoint", "_model_file", "_network", "_compat", "_registry",
                  "_threads"} | ENGINE,
    "_checkpoint": {"_model_file", "_version"},
    "_model_file": {"_archive", "_network", "_version"},
    "_network": {"_compat", "_registry"} | ENGINE,
    "_docstrings": {"_registry"},
    "_threads": {"_plan", "_passes", "_version"},
}


def _package_imports(name):
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {a.name for a in node.names}
    return found


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_each_module_imports_only_the_layers_below(name):
    assert _package_imports(name) <= ALLOWED[name]


def test_the_compiled_core_imports_nothing_of_the_thread_count():
    """_threads owns the thread count and the process set-up, and imports
    the plan and the passes; none of the compiled modules imports anything
    of it (no import cycle)."""
    from cnn_bp import _checks, _engine, _passes, _plan

    for module in (_engine, _checks, _plan, _passes):
        assert not [name for name, value in vars(module).items()
                    if getattr(value, "__module__", None) == "cnn_bp._threads"]


def _estimator_private_methods():
    names = set()
    for cls in (MLPClassifier, MLPRegressor):
        for klass in cls.__mro__:
            if klass.__module__.startswith("cnn_bp"):
                names |= {n for n, v in vars(klass).items()
                          if n.startswith("_") and not n.startswith("__") and callable(v)}
    return names


@pytest.mark.parametrize("name", ["dask", "_persistence", "_model_file", "_checkpoint",
                                  "_inspection"])
def test_neighbours_call_no_private_method_of_the_estimators(name):
    """Dask, persistence and inspection use the network's and the trainer's
    functions; an estimator's private method is its own."""
    private = _estimator_private_methods()
    assert {"_forward_pass_fast", "_needs_no_validation"} <= private  # the list is real
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    calls = {node.func.attr for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
    own = {node.name for node in ast.walk(tree)
           if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert (calls & private) - own == set()


def _engine(units=(64, 16, 10), dtype=np.float64):
    engine = Engine(list(units), [activation_code("relu")], loss_code("log_loss"), dtype,
                    0.01, 1.0, False, [0.0])
    rng = np.random.RandomState(0)
    engine.params[...] = rng.uniform(-0.3, 0.3, engine.params.size)
    engine.set_optimizer("adam", 1e-3)
    return engine


def _digits(dtype=np.float64, sparse=False):
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(dtype)
    Y = np.ascontiguousarray(np.eye(10, dtype=np.uint8)[y])
    return (sp.csr_matrix(X) if sparse else X), Y


@pytest.mark.parametrize("sparse", [False, True])
def test_slices_over_checked_data_train_as_one_epoch_call(sparse):
    """train() over training_data, shuffled by the data's own order and cut
    into tiny slices, gives the parameters run_epoch gives in one call with
    the same order (RandomState.shuffle of the previous epoch's)."""
    X, Y = _digits(sparse=sparse)
    n = X.shape[0]
    whole, sliced = _engine(), _engine()
    order = np.arange(n, dtype=np.intp)
    for epoch in range(2):
        np.random.RandomState(epoch).shuffle(order)  # each epoch shuffles the last order
        whole.run_epoch(X, Y, None, order, 50, 1e-4)
    data = sliced.training_data(X, Y, None, shuffle=True)
    for epoch in range(2):
        data.shuffle(np.random.RandomState(epoch))
        start, total = 0, 0.0
        while start < n:
            total = sliced.train(data, 50, 1e-4, start=start, total=total, seconds=0.0)
            assert sliced.stopped_at > start  # at least one batch per slice
            start = sliced.stopped_at
    np.testing.assert_array_equal(sliced.params, whole.params)


def test_checked_data_belong_to_their_network():
    X, Y = _digits()
    data = _engine().training_data(X, Y, None)
    with pytest.raises(ValueError, match="another network"):
        _engine(units=(64, 8, 10)).train(data, 50, 0.0)
    with pytest.raises(ValueError, match="another network"):
        _engine(dtype=np.float32).train(data, 50, 0.0)
    with pytest.raises(ValueError, match="no order to shuffle"):
        data.shuffle(np.random.RandomState(0))
    with pytest.raises(ValueError, match="order"):
        _engine().training_data(X, Y, None, order=np.arange(X.shape[0]) + 1)
    with pytest.raises(TypeError):
        _engine().train(None, 50, 0.0)


def test_a_fit_checks_its_data_once_per_fit(monkeypatch):
    """Every slice of every epoch of a fit trains on one TrainingData."""
    X, y = load_digits(return_X_y=True)
    seen = []
    real_run = training.Epochs.run

    def run(self, batch_size, n_threads):
        seen.append(self.data)
        return real_run(self, batch_size, n_threads)

    monkeypatch.setattr(training, "SLICE_SECONDS", 0.0)  # many slices an epoch
    monkeypatch.setattr(training.Epochs, "run", run)
    model = MLPClassifier((8,), max_iter=3, random_state=0, batch_size=64).fit(X / 16, y)
    monkeypatch.undo()
    assert len(seen) == 3 and all(d is seen[0] for d in seen)
    reference = MLPClassifier((8,), max_iter=3, random_state=0, batch_size=64).fit(X / 16, y)
    for a, b in zip(model.coefs_, reference.coefs_):
        np.testing.assert_array_equal(a, b)  # slices change nothing


def test_the_trainer_and_network_are_the_fit():
    """Trainer(model).fit is what the estimator's fit runs."""
    X, y = load_digits(return_X_y=True)
    params = dict(hidden_layer_sizes=(8,), max_iter=4, random_state=0)
    a = MLPClassifier(**params)
    training.Trainer(a).fit(X / 16, y)
    b = MLPClassifier(**params).fit(X / 16, y)
    assert a.loss_curve_ == b.loss_curve_
    for wa, wb in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(wa, wb)
