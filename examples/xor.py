"""XOR: the classic problem no single-layer perceptron can solve.

The four points (0,0), (1,1) -> 0 and (0,1), (1,0) -> 1 are not linearly
separable; one hidden layer of a few tanh units makes them separable, and
backpropagation finds the weights.

    python examples/xor.py
"""

import numpy as np

from cnn_bp import MLPClassifier

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
y = np.array([0, 1, 1, 0])

model = MLPClassifier(hidden_layer_sizes=(4,), activation="tanh", solver="lbfgs",
                      alpha=0.0, random_state=1, max_iter=500, tol=1e-8)
model.fit(X, y)
proba = model.predict_proba(X)[:, 1]
for point, target, p in zip(X, y, proba):
    print(f"x = {point.astype(int)}  target {target}  P(y = 1) = {p:.4f}")
assert (model.predict(X) == y).all(), "XOR not learned"

# The hidden layer maps the four points where a line separates the classes.
hidden = np.tanh(X @ model.coefs_[0] + model.intercepts_[0])
print("hidden activations A^1 (one row per point):")
print(np.round(hidden, 3))
print(f"learned in {model.n_iter_} L-BFGS iterations, final loss {model.loss_:.2e}")
