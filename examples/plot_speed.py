"""
Fit time against scikit-learn
=============================

The same network, parameters and seed, fitted by scikit-learn's
`MLPClassifier` and by cnn_bp's, on the digits: both reach the same model
(float64), cnn_bp in a fraction of the time. The full benchmark, with
PyTorch and larger data, is ``benchmarks/bench.py``.
"""

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

from cnn_bp import MLPClassifier

warnings.simplefilter("ignore", ConvergenceWarning)
X, y = load_digits(return_X_y=True)
X = X / 16
params = dict(hidden_layer_sizes=(100,), max_iter=30, tol=0, random_state=0)

seconds, models = {}, {}
for name, cls in [("scikit-learn", SklearnMLPClassifier), ("cnn_bp", MLPClassifier)]:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        models[name] = cls(**params).fit(X, y)
        times.append(time.perf_counter() - start)
    seconds[name] = min(times)
same = np.allclose(models["cnn_bp"].coefs_[0], models["scikit-learn"].coefs_[0], rtol=1e-6)
print(f"same weights (rtol 1e-6): {same}; "
      f"speed-up {seconds['scikit-learn'] / seconds['cnn_bp']:.1f}x")

fig, ax = plt.subplots(figsize=(6, 2.5))
ax.barh(list(seconds), list(seconds.values()), color=["0.6", "tab:blue"])
ax.set_xlabel("seconds for 30 epochs (best of 3)")
fig.tight_layout()
plt.show()
