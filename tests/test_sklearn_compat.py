"""Tier 5: scikit-learn's own estimator checks, on the defaults (with no
expected failures: scikit-learn declares none for its MLP either) and on
instances that use what cnn_bp adds."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from cnn_bp import MLPClassifier, MLPRegressor

# scikit-learn runs its checks on its MLPs with max_iter=100
# (sklearn/utils/_test_common/instance_generator.py)
DEFAULTS = [MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)]

EXTRAS = [
    *(cls(solver=solver, max_iter=100)
      for solver in ("sgd", "adamw", "nadam", "rmsprop", "adagrad")
      for cls in (MLPClassifier, MLPRegressor)),
    MLPClassifier((32, 16), activation=["tanh", "gelu"], max_iter=100),
    MLPRegressor(hidden_layer_sizes=(32, 16), activation=["elu", "silu"], max_iter=100),
    MLPClassifier(dropout=0.2, max_iter=100),
    MLPRegressor(dropout=0.2, max_iter=100),
    MLPClassifier(batch_norm=True, max_iter=100),
    MLPRegressor(batch_norm=True, max_iter=100),
    MLPClassifier(class_weight="balanced", max_iter=100),
    MLPRegressor(loss="huber", max_iter=100),
]


def _expected_failures(estimator):
    if estimator.dropout:
        # A row of weight k draws one dropout mask, k copies of it draw k
        # independent masks: the same only in expectation, as for any
        # randomised regulariser.
        reason = "dropout masks are drawn per row: weights equal repeats in expectation only"
        return {"check_sample_weight_equivalence_on_dense_data": reason,
                "check_sample_weight_equivalence_on_sparse_data": reason}
    return {}


@parametrize_with_checks(DEFAULTS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@parametrize_with_checks(EXTRAS, expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks_beyond_the_defaults(estimator, check):
    check(estimator)
