"""
Loss curves and early stopping
==============================

`cnn_bp.LossCurveDisplay` draws an estimator's training loss per epoch and,
with ``early_stopping=True``, its validation score on a second axis. Here
the same network trains on the digits with three solvers.
"""

import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from cnn_bp import LossCurveDisplay, MLPClassifier

# Stopped early by design: the fit without early stopping runs a fixed 60
# epochs, to show the curves past the point where early stopping ends.
# scikit-learn's ConvergenceWarning would say only that, so that one warning
# is silenced.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)
X = X / 16

fig, axes = plt.subplots(1, 3, figsize=(12, 3.5), sharey=True)
for ax, solver in zip(axes, ["sgd", "adam", "nadam"]):
    clf = MLPClassifier(hidden_layer_sizes=(64,), solver=solver, early_stopping=True,
                        max_iter=60, random_state=0).fit(X, y)
    LossCurveDisplay.from_estimator(clf, ax=ax, name=solver)
    ax.set_title(f"{solver}: best validation accuracy {clf.best_validation_score_:.3f}")
fig.tight_layout()
plt.show()
