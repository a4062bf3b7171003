"""Fitting sin(x) with each hidden activation, compared and plotted.

A 1-D regression: 200 points of sin(x) on [-pi, pi]. The same network
(1 -> 32 -> 32 -> 1) with each activation cnn_bp offers (scikit-learn's tanh
and relu, and elu, leaky_relu, selu, softplus, gelu, silu), plus one
activation per layer (gelu then tanh), trained by L-BFGS; the plot shows each
fit's shape: piecewise linear for relu and leaky_relu, smooth for the others.

    python examples/activations_sin.py [--output sin_fit.png]
"""

import argparse

import matplotlib

matplotlib.use("Agg")  # write a file, no window needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cnn_bp import MLPRegressor  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--output", default="sin_fit.png", help="PNG to write")
parser.add_argument("--max-iter", type=int, default=2000)
args = parser.parse_args()

x = np.linspace(-np.pi, np.pi, 200).reshape(-1, 1)
y = np.sin(x).ravel()
x_plot = np.linspace(-1.3 * np.pi, 1.3 * np.pi, 500).reshape(-1, 1)

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(x_plot, np.sin(x_plot), color="black", lw=3, alpha=0.3, label="sin(x)")
ACTIVATIONS = ["tanh", "relu", "elu", "leaky_relu", "selu", "softplus", "gelu", "silu",
               ["gelu", "tanh"]]  # the last: one activation per hidden layer
for activation in ACTIVATIONS:
    model = MLPRegressor(hidden_layer_sizes=(32, 32), activation=activation, solver="lbfgs",
                         max_iter=args.max_iter, tol=1e-10, random_state=0)
    model.fit(x, y)
    mse = np.mean((model.predict(x) - y) ** 2)
    name = activation if isinstance(activation, str) else "+".join(activation)
    print(f"{name:>10}: training MSE {mse:.2e} after {model.n_iter_} iterations")
    ax.plot(x_plot, model.predict(x_plot), lw=1, label=f"{name} ({mse:.0e})")
ax.axvspan(-np.pi, np.pi, color="grey", alpha=0.08, label="training range")
ax.set_xlabel("x")
ax.set_ylabel("prediction")
ax.set_title("1 -> 32 -> 32 -> 1 network, L-BFGS")
ax.set_ylim(-1.6, 1.9)
ax.legend(loc="upper center", ncol=4, fontsize="x-small")
fig.tight_layout()
fig.savefig(args.output, dpi=100)
print(f"plot written to {args.output}")
