"""Tier 5: scikit-learn's own estimator checks, with no expected failures
(scikit-learn declares none for its MLP either)."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from cnn_bp import MLPClassifier, MLPRegressor


@parametrize_with_checks(
    [MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)],
    # scikit-learn runs this check on its MLPs with these settings
    # (sklearn/utils/_test_common/instance_generator.py)
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
