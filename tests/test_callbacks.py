"""scikit-learn's fit callbacks (sklearn.callback): each epoch is a subtask,
a callback sees the model as of that epoch and can stop training."""

import numpy as np
import pytest

from cnn_bp import MLPClassifier, MLPRegressor

callback = pytest.importorskip("sklearn.callback")


class _StopAfter:
    """Records each task's end and asks to stop after `n` epochs."""

    def __init__(self, n):
        self.n, self.ends = n, []

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context, *, X=None, y=None, metadata=None):
        pass

    def on_fit_task_end(self, estimator, context, *, X=None, y=None, metadata=None,
                        fitted_estimator=None):
        self.ends.append((context.task_name, fitted_estimator, y))
        return context.task_name == "epoch" and len(self.ends) >= self.n


def test_scoring_monitor_sees_each_epochs_model(digits):
    X, y = digits
    monitor = callback.ScoringMonitor(scoring="accuracy")
    params = dict(hidden_layer_sizes=(16,), max_iter=4, tol=0, random_state=0)
    MLPClassifier(**params).set_callbacks(monitor).fit(X, y)
    rows = monitor.get_logs().data
    epochs = [r for r in rows if r["task_name"] == "epoch"]
    assert [r["task_id"] for r in epochs] == [0, 1, 2, 3]
    for k, row in enumerate(epochs, start=1):  # the same as a fit stopped there
        alone = MLPClassifier(**{**params, "max_iter": k}).fit(X, y)
        assert row["accuracy"] == alone.score(X, y)
    assert [r["task_name"] for r in rows].count("fit") == 1


def test_a_callback_can_stop_training(digits):
    X, y = digits
    stop = _StopAfter(3)
    model = MLPRegressor(hidden_layer_sizes=(8,), max_iter=50, random_state=0)
    model.set_callbacks(stop).fit(X, y)
    assert model.n_iter_ == 3 and len(model.loss_curve_) == 3
    _, fitted, targets = stop.ends[0]
    np.testing.assert_array_equal(targets, y)  # the targets as given, 1-D
    assert fitted is not model and fitted.predict(X[:5]).shape == (5,)


def test_partial_fit_is_one_epoch_task_and_labels_reach_hooks(digits):
    X, y = digits
    labels = np.array(["even", "odd"])[y % 2]
    stop = _StopAfter(100)
    model = MLPClassifier((8,)).set_callbacks(stop)
    model.partial_fit(X, labels, classes=["even", "odd"])
    assert [name for name, _, _ in stop.ends] == ["epoch", "fit"]
    np.testing.assert_array_equal(stop.ends[0][2], labels)


def test_progress_bar_runs(digits):
    pytest.importorskip("rich")
    X, y = digits
    model = MLPClassifier((8,), max_iter=3).set_callbacks(callback.ProgressBar())
    assert model.fit(X, y).n_iter_ == 3


def test_only_callbacks_are_accepted():
    with pytest.raises(TypeError, match="FitCallback"):
        MLPClassifier().set_callbacks(object())
