"""
Backpropagation against finite differences
==========================================

`cnn_bp.check_gradients` compares the gradient backpropagation computes
with centred finite differences, :math:`(C(w + h) - C(w - h)) / 2h`, block
by block (each :math:`W^l` and :math:`b^l`): the relative errors sit at
round-off level, far below the tolerance.
"""

import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from cnn_bp import MLPClassifier, check_gradients

# Stopped early by design: the model trains 5 epochs: the check needs a
# trained network, not a converged one. scikit-learn's ConvergenceWarning
# would say only that, so that one warning is silenced.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)
X = X / 16
clf = MLPClassifier(hidden_layer_sizes=(16, 8), activation="tanh", max_iter=5,
                    random_state=0).fit(X, y)
report = check_gradients(clf, X[:20], y[:20])
print(report)

fig, ax = plt.subplots(figsize=(6, 3.5))
blocks = list(report.errors)
ax.bar(blocks, [report.errors[b] for b in blocks])
ax.axhline(report.tol, color="red", ls="--", label=f"tolerance {report.tol:.0e}")
ax.set_yscale("log")
ax.set_ylabel("relative error")
ax.legend()
fig.tight_layout()
plt.show()
