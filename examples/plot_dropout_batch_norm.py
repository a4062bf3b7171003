"""
Dropout and batch normalisation
===============================

``dropout`` (inverted dropout, per hidden layer) and ``batch_norm``
(normalisation over the batch before each hidden activation, running
estimates for prediction) change how a wide network learns the digits:
validation accuracy per epoch, early stopping's held-out 10 %.
"""

import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from cnn_bp import MLPClassifier

# Stopped early by design: each fit runs a fixed budget of epochs, the same
# for every variant, so that their curves compare. scikit-learn's
# ConvergenceWarning would say only that, so that one warning is silenced.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)
X = X / 16

fig, ax = plt.subplots(figsize=(7, 4))
for name, extra in [("plain", {}), ("dropout 0.3", {"dropout": 0.3}),
                    ("batch_norm", {"batch_norm": True}),
                    ("both", {"dropout": 0.3, "batch_norm": True})]:
    clf = MLPClassifier(hidden_layer_sizes=(256, 128), early_stopping=True,
                        n_iter_no_change=100, max_iter=40, random_state=0, **extra)
    clf.fit(X, y)
    ax.plot(clf.validation_scores_, label=f"{name} (best {clf.best_validation_score_:.3f})")
ax.set_xlabel("epoch")
ax.set_ylabel("validation accuracy")
ax.legend()
fig.tight_layout()
plt.show()
