r"""
Vanishing gradients, layer by layer
===================================

`cnn_bp.backprop_trace` returns every quantity of one forward and backward
pass: :math:`Z^l`, :math:`A^l` and :math:`\delta^l` of each layer. With
logistic units the error signal :math:`\delta^l` shrinks by an order of
magnitude at every layer on its way back (:math:`f' \le 1/4`); with tanh and
relu (:math:`f'` up to 1) far less. One epoch of Adam, 200 digits.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from cnn_bp import MLPClassifier, backprop_trace

# Stopped early by design: the networks train one epoch: the gradients of a
# network at the start of training are what this example shows.
# scikit-learn's ConvergenceWarning would say only that, so that one warning
# is silenced.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)
X = X / 16

fig, ax = plt.subplots(figsize=(6, 3.5))
for activation in ["logistic", "tanh", "relu"]:
    clf = MLPClassifier(hidden_layer_sizes=(32,) * 6, activation=activation, max_iter=1,
                        random_state=0).fit(X, y)
    trace = backprop_trace(clf, X[:200], y[:200])
    norms = [np.abs(layer.delta).mean() for layer in trace.layers]
    ax.semilogy(range(1, len(norms) + 1), norms, "o-", label=activation)
ax.set_xlabel("layer l")
ax.set_ylabel(r"mean $|\delta^l|$")
ax.legend()
fig.tight_layout()
plt.show()
