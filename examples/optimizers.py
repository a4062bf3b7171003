"""Every stochastic solver on the digits, loss curves side by side.

scikit-learn's sgd and adam, and cnn_bp's adamw (decoupled weight decay),
nadam (Nesterov-accelerated Adam), rmsprop and adagrad, each training the same
64 -> 64 -> 10 network from the same initial weights (same random_state), with
the gradient clipped to global norm 5 (clip_norm). Prints the final training
loss and the test accuracy of each; writes the loss curves to a PNG.

    python examples/optimizers.py [--epochs 60] [--output optimizers.png]
"""

import argparse
import warnings

import matplotlib

matplotlib.use("Agg")  # write a file, no window needed
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from cnn_bp import MLPClassifier  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=60)
parser.add_argument("--output", default="optimizers.png", help="PNG to write")
args = parser.parse_args()
warnings.simplefilter("ignore", ConvergenceWarning)  # fixed epochs on purpose

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X / 16, y, random_state=0)

# Adaptive methods take scikit-learn's default step; sgd a larger one.
SOLVERS = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3, "nadam": 1e-3,
           "rmsprop": 1e-3, "adagrad": 0.02}
fig, ax = plt.subplots(figsize=(7, 4))
print(f"{'solver':<8} {'final loss':>10} {'test accuracy':>14}")
for solver, rate in SOLVERS.items():
    model = MLPClassifier((64,), solver=solver, learning_rate_init=rate, clip_norm=5.0,
                          max_iter=args.epochs, tol=0, random_state=0)
    model.fit(X_train, y_train)
    print(f"{solver:<8} {model.loss_:>10.4f} {model.score(X_test, y_test):>14.4f}")
    ax.plot(range(1, model.n_iter_ + 1), model.loss_curve_, label=f"{solver} (lr {rate})")
ax.set_yscale("log")
ax.set_xlabel("epoch")
ax.set_ylabel("training loss (log scale)")
ax.set_title("64 -> 64 -> 10 on digits, same initial weights")
ax.legend()
fig.tight_layout()
fig.savefig(args.output, dpi=100)
print(f"plot written to {args.output}")
