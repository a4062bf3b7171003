"""Learning-rate schedules: the published formulas (torch's schedulers where
installed), and the rates really reach every stochastic solver."""

import math

import numpy as np
import pytest
from sklearn.base import clone

from cnn_bp import MLPClassifier
from cnn_bp.schedules import CosineAnnealing, StepDecay, Warmup

LR = 0.01


def _rates(schedule, n=12):
    return np.array([schedule(e, LR) for e in range(n)])


def test_formulas():
    e = np.arange(12)
    np.testing.assert_allclose(_rates(CosineAnnealing(8, 1e-4)), 1e-4 + (LR - 1e-4) * (
        1 + np.cos(np.pi * np.minimum(e, 8) / 8)) / 2, rtol=1e-14)
    np.testing.assert_allclose(_rates(StepDecay(3, 0.5)), LR * 0.5 ** (e // 3), rtol=1e-14)
    warm = _rates(Warmup(4, 0.25, then=StepDecay(2, 0.1)))
    np.testing.assert_allclose(warm[:4], LR * (0.25 + 0.75 * e[:4] / 4), rtol=1e-14)
    np.testing.assert_allclose(warm[4:], LR * 0.1 ** ((e[4:] - 4) // 2), rtol=1e-14)
    assert _rates(Warmup(2))[5] == LR


def test_schedules_match_torch():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))

    def torch_rates(make):
        opt = torch.optim.SGD([p], lr=LR)
        sched = make(opt)
        out = []
        for _ in range(12):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return np.array(out)

    S = torch.optim.lr_scheduler
    # (up to T_max: beyond it torch's cosine rises again, cnn_bp's stays at eta_min)
    np.testing.assert_allclose(_rates(CosineAnnealing(8, 1e-4))[:9],
                               torch_rates(lambda o: S.CosineAnnealingLR(o, 8, 1e-4))[:9],
                               rtol=1e-6)
    np.testing.assert_allclose(_rates(StepDecay(3, 0.5)),
                               torch_rates(lambda o: S.StepLR(o, 3, 0.5)), rtol=1e-6)
    np.testing.assert_allclose(_rates(Warmup(4, 0.25)),
                               torch_rates(lambda o: S.LinearLR(o, 0.25, 1.0, 4)), rtol=1e-6)


@pytest.mark.parametrize("solver", ["sgd", "adam", "rmsprop"])
def test_the_rate_reaches_the_solver(digits, solver):
    """gamma = 0 stops learning after the first epoch: 4 epochs = 1 epoch."""
    X, y = digits[0][:400], digits[1][:400]
    params = dict(hidden_layer_sizes=(16,), solver=solver, momentum=0.0, tol=0,
                  lr_schedule=StepDecay(1, gamma=0.0), random_state=0)
    one = MLPClassifier(max_iter=1, **params).fit(X, y)
    four = MLPClassifier(max_iter=4, **params).fit(X, y)
    np.testing.assert_array_equal(one.coefs_[0], four.coefs_[0])
    plain = MLPClassifier(max_iter=4, **{**params, "lr_schedule": None}).fit(X, y)
    assert not np.array_equal(plain.coefs_[0], four.coefs_[0])


def test_epochs_are_counted_across_partial_fit(digits):
    X, y = digits
    calls = []

    def schedule(epoch, lr_init):
        calls.append((epoch, lr_init))
        return lr_init / (1 + epoch)

    model = MLPClassifier((8,), learning_rate_init=0.002, lr_schedule=schedule)
    for _ in range(3):
        model.partial_fit(X, y, classes=np.arange(10))
    assert calls == [(0, 0.002), (1, 0.002), (2, 0.002)]
    assert math.isclose(model._engine.learning_rate, 0.002 / 3)


def test_schedules_clone_and_conflict_with_sklearn_schedules(digits):
    X, y = digits
    model = MLPClassifier(lr_schedule=Warmup(2, then=CosineAnnealing(10)))
    assert clone(model).get_params()["lr_schedule"] == model.lr_schedule
    with pytest.raises(ValueError, match="lr_schedule replaces"):
        MLPClassifier(solver="sgd", learning_rate="invscaling",
                      lr_schedule=StepDecay(2)).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="step_size"):
        StepDecay(0)


@pytest.mark.parametrize("bad", [-0.01, -1e-300, float("nan"), float("inf"), "0.1", None,
                                 True])
def test_a_schedule_value_that_is_no_learning_rate_is_an_error(digits, bad):
    """A rate < 0, NaN, inf or a non-number raises ValueError naming the
    epoch and the value; at the first epoch nothing trains, so a fitted model
    stays as it was; later, the model is the one of the epochs before."""
    X, y = digits
    model = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, y)
    before = model._engine.params.copy(), model.n_iter_, list(model.loss_curve_)
    model.set_params(lr_schedule=lambda epoch, lr: bad)
    with pytest.raises(ValueError, match=f"lr_schedule returned {bad!r} for epoch 0"):
        model.fit(X, y)
    np.testing.assert_array_equal(model._engine.params, before[0])
    assert (model.n_iter_, model.loss_curve_) == before[1:]
    late = MLPClassifier((8,), max_iter=5, random_state=0,
                         lr_schedule=lambda epoch, lr: lr if epoch < 3 else bad)
    with pytest.raises(ValueError, match=f"returned {bad!r} for epoch 3"):
        late.fit(X, y)
    three = MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y)
    np.testing.assert_array_equal(late._engine.params, three._engine.params)
    assert late.n_iter_ == len(late.loss_curve_) == 3
    # partial_fit numbers epochs over its calls
    chunks = MLPClassifier((8,), random_state=0,
                           lr_schedule=lambda epoch, lr: lr if epoch < 2 else bad)
    for _ in range(2):
        chunks.partial_fit(X, y, classes=np.unique(y))
    with pytest.raises(ValueError, match="for epoch 2"):
        chunks.partial_fit(X, y)
    assert chunks.n_iter_ == 1 and len(chunks.loss_curve_) == 2


def test_a_zero_rate_takes_no_step(digits):
    """0, where CosineAnnealing(T_max) ends (as torch's), is a rate: the
    epoch runs and the weights stay."""
    X, y = digits
    model = MLPClassifier((8,), solver="sgd", momentum=0.0, max_iter=2, random_state=0,
                          lr_schedule=lambda epoch, lr: lr if epoch == 0 else 0.0).fit(X, y)
    one = MLPClassifier((8,), solver="sgd", momentum=0.0, max_iter=1, random_state=0).fit(X, y)
    np.testing.assert_array_equal(model._engine.params, one._engine.params)
    assert model.n_iter_ == 2
