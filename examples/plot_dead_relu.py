"""
Dead relu units
===============

A relu unit whose pre-activation is negative for every input outputs 0 and
receives no gradient (δ = 0 through f'(z) = 0), so it never recovers. Too
large a learning rate kills many of them; `hidden_activations` shows which.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from cnn_bp import MLPClassifier

# Stopped early by design: each fit runs a fixed 30 epochs, the same budget
# for every learning rate, so that the counts of dead units compare.
# scikit-learn's ConvergenceWarning would say only that, so that one warning
# is silenced.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)
X = X / 16

rates = [1e-3, 1e-2, 5e-2, 1e-1, 2e-1]
dead = []
for rate in rates:
    clf = MLPClassifier(hidden_layer_sizes=(128,), solver="sgd", momentum=0.9,
                        learning_rate_init=rate, max_iter=30, random_state=0).fit(X, y)
    a = clf.hidden_activations(X, layer=0)  # A^1, (n_samples, 128)
    dead.append(np.mean((a == 0).all(axis=0)))

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogx(rates, dead, "o-")
ax.set_xlabel("learning rate (sgd, momentum 0.9)")
ax.set_ylabel("fraction of dead units")
ax.set_title("relu units that output 0 for every digit")
fig.tight_layout()
plt.show()
