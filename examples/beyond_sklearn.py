"""What cnn_bp adds to scikit-learn's MLP, on the digits, one feature per step.

1. a schedule (warm-up, then cosine annealing) and gradient clipping;
2. regularisation: L1 + L2 (elastic net) and a max-norm constraint;
3. validation data of your own, early stopping on the validation loss;
4. scikit-learn's callbacks: a ScoringMonitor logging accuracy per epoch;
5. class weights for a rare class;
6. the hidden representation, and the model handed back to scikit-learn.

    python examples/beyond_sklearn.py [--epochs 40]
"""

import argparse
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split

from cnn_bp import MLPClassifier
from cnn_bp.schedules import CosineAnnealing, Warmup

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=40)
args = parser.parse_args()
warnings.simplefilter("ignore", ConvergenceWarning)  # fixed epochs on purpose

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X / 16, y, random_state=0)
X_fit, X_val, y_fit, y_val = train_test_split(X_train, y_train, random_state=0)
E = args.epochs

# 1. learning-rate schedule for any stochastic solver, clipped gradients
schedule = Warmup(3, then=CosineAnnealing(E - 3, eta_min=1e-4))
model = MLPClassifier((64,), solver="nadam", learning_rate_init=3e-3, lr_schedule=schedule,
                      clip_norm=5.0, max_iter=E, tol=0, random_state=0).fit(X_train, y_train)
print(f"1. nadam + warm-up/cosine schedule: test accuracy {model.score(X_test, y_test):.4f}, "
      f"final rate {model._engine.learning_rate:.1e}")

# 2. elastic net (alpha: L2, alpha_l1: L1) and max-norm
sparse = MLPClassifier((64,), alpha=1e-3, alpha_l1=0.05, max_norm=2.0, max_iter=E,
                       random_state=0).fit(X_train, y_train)
W = sparse.coefs_[0]
print(f"2. L1 + L2 + max-norm: test accuracy {sparse.score(X_test, y_test):.4f}, "
      f"{np.mean(np.abs(W) < 1e-3):.0%} of W1 below 1e-3, "
      f"largest unit norm {np.linalg.norm(W, axis=0).max():.3f}")

# 3. your own validation data; early stopping on the validation loss
early = MLPClassifier((64,), early_stopping=True, scoring="loss", n_iter_no_change=5,
                      max_iter=200, random_state=0)
early.fit(X_fit, y_fit, X_val=X_val, y_val=y_val)
best = int(np.argmin(early.validation_loss_curve_)) + 1
print(f"3. early stopping on X_val: stopped after {early.n_iter_} epochs, best validation "
      f"loss {min(early.validation_loss_curve_):.4f} at epoch {best}")

# 4. scikit-learn's callbacks (scikit-learn >= 1.9)
try:
    from sklearn.callback import ScoringMonitor
except ImportError:
    print("4. (scikit-learn has no sklearn.callback: skipped)")
else:
    monitor = ScoringMonitor(scoring="accuracy")
    MLPClassifier((64,), max_iter=5, random_state=0).set_callbacks(monitor).fit(X_train, y_train)
    epochs = [row["accuracy"] for row in monitor.get_logs().data if row["task_name"] == "epoch"]
    print("4. ScoringMonitor, training accuracy per epoch:",
          " ".join(f"{a:.3f}" for a in epochs))

# 5. class weights: "is it an 8?" with only a tenth of the training 8s kept (1 in 100)
keep = (y_train != 8) | (np.random.RandomState(0).uniform(size=len(y_train)) < 0.1)
for class_weight in (None, "balanced"):
    clf = MLPClassifier((16,), class_weight=class_weight, max_iter=E, random_state=0)
    clf.fit(X_train[keep], y_train[keep] == 8)
    score = balanced_accuracy_score(y_test == 8, clf.predict(X_test))
    print(f"5. class_weight={class_weight!s:>8}: balanced accuracy {score:.4f}")

# 6. the learned representation, and the same network as scikit-learn's estimator
H = model.hidden_activations(X_test)
sk = model.to_sklearn()
print(f"6. hidden layer: {H.shape}; to_sklearn() -> {type(sk).__module__}.{type(sk).__name__}, "
      f"same predictions: {np.array_equal(sk.predict(X_test), model.predict(X_test))}")
