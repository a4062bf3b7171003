"""
Hidden activations fitting a sine
=================================

Each hidden activation cnn_bp offers (scikit-learn's four plus elu,
leaky_relu, selu, softplus, gelu and silu) fits y = sin(3x) with one hidden
layer of 16 units, by L-BFGS from the same seed.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from cnn_bp import MLPRegressor

# Stopped early by design: L-BFGS is stopped after 500 iterations: by then
# every fit shows its shape, and more iterations change the picture by
# little. scikit-learn's ConvergenceWarning would say only that, so that one
# warning is silenced.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

x = np.linspace(-1.5, 1.5, 300).reshape(-1, 1)
y = np.sin(3 * x).ravel()

activations = ["logistic", "tanh", "relu", "elu", "leaky_relu", "selu", "softplus",
               "gelu", "silu"]
fig, axes = plt.subplots(3, 3, figsize=(10, 8), sharex=True, sharey=True)
for ax, activation in zip(axes.ravel(), activations):
    reg = MLPRegressor(hidden_layer_sizes=(16,), activation=activation, solver="lbfgs",
                       max_iter=500, random_state=0).fit(x, y)
    mse = np.mean((reg.predict(x) - y) ** 2)
    ax.plot(x, y, color="0.7", lw=3, label="sin(3x)")
    ax.plot(x, reg.predict(x), label="fit")
    ax.set_title(f"{activation}: MSE {mse:.1e}")
axes[0, 0].legend()
fig.tight_layout()
plt.show()
