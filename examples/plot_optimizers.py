"""
The optimizers compared
=======================

cnn_bp runs scikit-learn's solvers and four more (adamw, nadam, rmsprop,
adagrad), each in the compiled update. Training loss per epoch on the
digits, same network and seed.
"""

import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from cnn_bp import MLPClassifier

# Stopped early by design: each optimizer runs a fixed 40 epochs, the same
# budget for all, so that their loss curves compare. scikit-learn's
# ConvergenceWarning would say only that, so that one warning is silenced.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)
X = X / 16

fig, ax = plt.subplots(figsize=(7, 4))
for solver in ["sgd", "adam", "adamw", "nadam", "rmsprop", "adagrad"]:
    rate = 0.1 if solver in ("sgd", "adagrad") else 0.001
    clf = MLPClassifier(hidden_layer_sizes=(64,), solver=solver, learning_rate_init=rate,
                        max_iter=40, tol=0, random_state=0).fit(X, y)
    ax.semilogy(clf.loss_curve_, label=f"{solver} (lr {rate})")
ax.set_xlabel("epoch")
ax.set_ylabel("training loss")
ax.legend()
fig.tight_layout()
plt.show()
