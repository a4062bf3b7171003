"""Inactive ReLU units pass no gradient back.

For relu, f'(z) = 0 where z < 0: a unit whose activation is 0 on every
sample of the batch has a zero column in delta^l, so its incoming weights
(a column of dC/dW^l) and its bias get no gradient at all (alpha = 0 here,
so no L2 term either). We switch off three units by giving them a very
negative bias and look at the backprop trace.

    python examples/relu_dead_units.py
"""

import numpy as np
from sklearn.datasets import load_digits

from cnn_bp import MLPClassifier, backprop_trace

X, y = load_digits(return_X_y=True)
X = X / 16.0
model = MLPClassifier(hidden_layer_sizes=(8,), activation="relu", alpha=0.0,
                      max_iter=5, random_state=0).fit(X, y)
dead = [1, 4, 6]
model.intercepts_[0][dead] = -100.0  # z = x W + b < 0 for every input in [0, 1]

trace = backprop_trace(model, X[:50], y[:50])
layer = trace[1]
inactive = np.flatnonzero((layer.a == 0).all(axis=0))
print("units inactive on the whole batch:", inactive)
print("max |delta| per unit:          ", np.round(np.abs(layer.delta).max(axis=0), 4))
print("max |dC/dW| per unit (column): ", np.round(np.abs(layer.dC_dW).max(axis=0), 4))
print("|dC/db| per unit:              ", np.round(np.abs(layer.dC_db), 4))

assert set(dead) <= set(inactive)
assert np.all(layer.delta[:, dead] == 0)
assert np.all(layer.dC_dW[:, dead] == 0) and np.all(layer.dC_db[dead] == 0)
alive = np.setdiff1d(np.arange(8), inactive)
assert np.all(np.abs(layer.dC_dW[:, alive]).max(axis=0) > 0)
print("inactive units: zero delta, zero weight and bias gradients; active units: nonzero")
