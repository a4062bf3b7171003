"""Validation data of the user's own (fit(X_val=, y_val=)), the scoring that
early stopping watches, and the validation loss per epoch."""

import pickle

import numpy as np
import pytest
from sklearn.metrics import get_scorer, log_loss

from cnn_bp import MLPClassifier, MLPRegressor


def _split(digits):
    X, y = digits
    return X[:1200], y[:1200], X[1200:], y[1200:]


def test_given_validation_data_is_what_early_stopping_scores(digits):
    X, y, X_val, y_val = _split(digits)
    model = MLPClassifier((16,), early_stopping=True, max_iter=8, n_iter_no_change=50,
                          random_state=0).fit(X, y, X_val=X_val, y_val=y_val)
    assert len(model.validation_scores_) == model.n_iter_ == 8
    # early stopping keeps the best epoch's weights: its score is the best one
    assert model.score(X_val, y_val) == max(model.validation_scores_)
    # the validation loss per epoch is the log-loss of the model at that epoch
    again = MLPClassifier((16,), early_stopping=True, max_iter=3, n_iter_no_change=50,
                          random_state=0).fit(X, y, X_val=X_val, y_val=y_val)
    np.testing.assert_allclose(model.validation_loss_curve_[:3], again.validation_loss_curve_)
    last = MLPClassifier((16,), max_iter=3, random_state=0).fit(X, y)  # no split either way
    np.testing.assert_allclose(again.validation_loss_curve_[-1],
                               log_loss(y_val, last.predict_proba(X_val)), rtol=1e-6)


@pytest.mark.parametrize("scoring", ["loss", "neg_mean_absolute_error"])
def test_scoring_chooses_what_is_watched(digits, scoring):
    X, y, X_val, y_val = _split(digits)
    model = MLPRegressor(hidden_layer_sizes=(16,), early_stopping=True, scoring=scoring,
                         max_iter=6, n_iter_no_change=50, random_state=0)
    model.fit(X, y, X_val=X_val, y_val=y_val)
    if scoring == "loss":
        np.testing.assert_allclose(model.validation_scores_,
                                   -np.array(model.validation_loss_curve_))
    else:
        best = max(model.validation_scores_)
        assert get_scorer(scoring)(model, X_val, y_val) == pytest.approx(best)


def test_sample_weight_val_weighs_the_validation_score(digits):
    X, y, X_val, y_val = _split(digits)
    w = np.where(y_val == 3, 5.0, 1.0)
    params = dict(hidden_layer_sizes=(16,), early_stopping=True, max_iter=4,
                  n_iter_no_change=50, random_state=0)
    weighted = MLPClassifier(**params).fit(X, y, X_val=X_val, y_val=y_val, sample_weight_val=w)
    plain = MLPClassifier(**params).fit(X, y, X_val=X_val, y_val=y_val)
    assert weighted.validation_scores_ != plain.validation_scores_


@pytest.mark.parametrize("case,message", [
    ("no_early_stopping", "early_stopping is False"),
    ("only_X", "given together"),
    ("unseen_label", "labels not in classes_"),
    ("width", "features"),
])
def test_bad_validation_data_is_rejected_and_leaves_the_model(digits, case, message):
    X, y, X_val, y_val = _split(digits)
    model = MLPClassifier((8,), max_iter=2, random_state=0).fit(X, y)
    before = pickle.dumps(model)
    model.set_params(early_stopping=case != "no_early_stopping")
    kwargs = dict(X_val=X_val, y_val=y_val)
    if case == "only_X":
        del kwargs["y_val"]
    elif case == "unseen_label":
        kwargs["y_val"] = y_val + 100
    elif case == "width":
        kwargs["X_val"] = X_val[:, :10]
    with pytest.raises(ValueError, match=message):
        model.fit(X, y, **kwargs)
    model.set_params(early_stopping=False)
    assert pickle.dumps(model) == before


def test_early_stopping_across_partial_fit_calls(digits):
    """Each partial_fit call is one epoch scored on the fixed validation
    data; once n_iter_no_change calls bring no improvement, the model
    returns to its best parameters and later calls do nothing."""
    X, y, X_val, y_val = _split(digits)
    classes = np.unique(y)
    model = MLPClassifier((16,), early_stopping=True, n_iter_no_change=2, tol=0.0,
                          learning_rate_init=0.05, random_state=0)
    chunks = np.array_split(np.arange(len(X)), 40)
    for calls, rows in enumerate(chunks, start=1):
        model.partial_fit(X[rows], y[rows], classes=classes, X_val=X_val, y_val=y_val)
        assert len(model.validation_scores_) == len(model.validation_loss_curve_) == calls
        if model.stopped_early_:
            break
    assert model.stopped_early_ and calls < len(chunks)
    scores = model.validation_scores_
    assert max(scores[-3:]) <= max(scores[:-3])  # the last 3 calls did not improve
    assert model.best_validation_score_ == max(scores)
    assert model.score(X_val, y_val) == max(scores)  # the best parameters are back
    before = model.coefs_[0].copy()
    with pytest.warns(UserWarning, match="this call does nothing"):
        model.partial_fit(X[:50], y[:50], X_val=X_val, y_val=y_val)
    np.testing.assert_array_equal(model.coefs_[0], before)
    assert len(model.validation_scores_) == calls
    # training on is a choice: without early stopping the calls train again
    model.set_params(early_stopping=False).partial_fit(X[:50], y[:50])
    assert not np.array_equal(model.coefs_[0], before) and not model.stopped_early_


def test_partial_fit_early_stopping_needs_validation_data(digits):
    X, y, X_val, y_val = _split(digits)
    model = MLPRegressor(hidden_layer_sizes=(8,), early_stopping=True)
    with pytest.raises(ValueError, match="pass X_val and y_val"):
        model.partial_fit(X, y)
    with pytest.raises(ValueError, match="early_stopping is False"):
        MLPRegressor(hidden_layer_sizes=(8,)).partial_fit(X, y, X_val=X_val, y_val=y_val)
    # the same model, switched to early stopping after plain calls, starts its record then
    model = MLPRegressor(hidden_layer_sizes=(8,), random_state=0).partial_fit(X, y)
    assert model.validation_scores_ is None
    model.set_params(early_stopping=True).partial_fit(X, y, X_val=X_val, y_val=y_val)
    assert len(model.validation_scores_) == 1 and len(model.loss_curve_) == 2


@pytest.mark.parametrize("max_iter", [3, 300])  # ending at max_iter, or stopped early
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_partial_fit_after_an_early_stopping_fit_needs_validation_data(digits, cls, max_iter):
    """scikit-learn's partial_fit raises ValueError("partial_fit does not
    support early_stopping=True") after any fit with early stopping; cnn_bp
    gives that error without validation data (with X_val/y_val it trains),
    whether or not the fit stopped early, and leaves the model as it was."""
    X, y = digits
    params = dict(hidden_layer_sizes=(8,), early_stopping=True, max_iter=max_iter,
                  random_state=0)
    model = cls(**params).fit(X, y)
    assert model.stopped_early_ == (max_iter == 300)
    before = model._engine.params.copy(), model.n_iter_, list(model.loss_curve_)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        model.partial_fit(X, y)
    np.testing.assert_array_equal(model._engine.params, before[0])
    assert (model.n_iter_, model.loss_curve_) == before[1:]
    from sklearn import neural_network as sk

    theirs = getattr(sk, cls.__name__)(**params).fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        theirs.partial_fit(X, y)
