"""LossCurveDisplay draws exactly the estimator's curves."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from cnn_bp import LossCurveDisplay, MLPClassifier, MLPRegressor

pytest.importorskip("matplotlib")


@pytest.fixture(autouse=True)
def _agg_backend():
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    yield
    plt.close("all")


def test_loss_and_validation_curves_are_the_estimators(digits):
    X, y = digits
    model = MLPClassifier((16,), early_stopping=True, max_iter=15, random_state=0).fit(X, y)
    display = LossCurveDisplay.from_estimator(model)
    epochs, loss = display.line_.get_data()
    np.testing.assert_array_equal(epochs, np.arange(1, model.n_iter_ + 1))
    np.testing.assert_array_equal(loss, model.loss_curve_)
    np.testing.assert_array_equal(display.validation_line_.get_ydata(), model.validation_scores_)
    assert display.ax2_ is not None and display.figure_ is display.ax_.figure
    assert "MLPClassifier: training loss" in [t.get_text() for t in display.ax_.get_legend().texts]


def test_without_validation_and_on_given_axes(digits):
    import matplotlib.pyplot as plt

    X, y = digits
    model = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    _, ax = plt.subplots()
    display = LossCurveDisplay.from_estimator(model, ax=ax, name="small", color="red")
    assert display.ax_ is ax and display.ax2_ is None and display.validation_line_ is None
    assert display.line_.get_color() == "red" and display.line_.get_label().startswith("small")


def test_estimators_without_a_curve_are_rejected(digits):
    X, y = digits
    with pytest.raises(NotFittedError):
        LossCurveDisplay.from_estimator(MLPClassifier())
    lbfgs = MLPClassifier((8,), solver="lbfgs", max_iter=5).fit(X[:100], y[:100])
    with pytest.raises(ValueError, match="records no loss curve"):
        LossCurveDisplay.from_estimator(lbfgs)
