"""Dropout and batch normalisation, then early stopping over a data stream.

1. The same network four ways: plain, with dropout, with batch normalisation,
   with both; test accuracy and the gap between training and test accuracy
   (what dropout narrows), and fit time.
2. The training data arriving in chunks (5 passes over 20): one partial_fit
   call per chunk, each scored on a fixed validation set; early stopping
   ends the stream once the score stalls and puts back the best parameters.

Fashion-MNIST when its files are installed (`apt-get install
dataset-fashion-mnist`), else scikit-learn's digits.

    python examples/dropout_batch_norm.py [--dataset digits] [--epochs 15] [--n-train 20000]
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from cnn_bp import MLPClassifier
from cnn_bp.datasets import load_fashion_mnist

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dataset", choices=["fashion-mnist", "digits"], default="fashion-mnist")
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--n-train", type=int, default=20000, help="training rows used")
args = parser.parse_args()
warnings.simplefilter("ignore", ConvergenceWarning)  # fixed epochs on purpose

try:
    if args.dataset != "fashion-mnist":
        raise FileNotFoundError
    X_train, y_train, X_test, y_test = load_fashion_mnist()
    name = "Fashion-MNIST"
except FileNotFoundError:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        (X / 16).astype(np.float32), y, random_state=0
    )
    name = "digits"
X_train, y_train = X_train[: args.n_train], y_train[: args.n_train]
print(f"{name}: {X_train.shape[0]} training rows, {X_test.shape[0]} test rows, float32")

# 1. dropout regularises (drops each hidden unit with probability p while
#    training, rescaling the rest by 1 / (1 - p)); batch normalisation
#    standardises each hidden layer's input over the batch
print(f"\n1. (256, 128) relu, adam, {args.epochs} epochs")
print(f"{'':24}{'train acc':>10}{'test acc':>10}{'gap':>8}{'fit s':>8}")
for label, extra in [("plain", {}), ("dropout 0.2", dict(dropout=0.2)),
                     ("batch_norm", dict(batch_norm=True)),
                     ("batch_norm + dropout", dict(batch_norm=True, dropout=[0.3, 0.2]))]:
    model = MLPClassifier((256, 128), max_iter=args.epochs, random_state=0, **extra)
    start = time.perf_counter()
    model.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    train, test = model.score(X_train, y_train), model.score(X_test, y_test)
    print(f"{label:24}{train:10.4f}{test:10.4f}{train - test:8.4f}{seconds:8.1f}")

# 2. a stream of chunks, read up to 5 times over; early stopping across
#    partial_fit calls needs a fixed validation set, passed with every call
X_fit, X_val, y_fit, y_val = train_test_split(X_train, y_train, test_size=0.1, random_state=0)
model = MLPClassifier((256, 128), batch_norm=True, dropout=0.2, early_stopping=True,
                      n_iter_no_change=5, random_state=0)
chunks = np.array_split(np.arange(len(X_fit)), 20)
stream = [rows for _ in range(5) for rows in chunks]
classes = np.unique(y_train)
calls = 0
for rows in stream:
    calls += 1
    model.partial_fit(X_fit[rows], y_fit[rows], classes=classes, X_val=X_val, y_val=y_val)
    if model.stopped_early_:
        break
best = int(np.argmax(model.validation_scores_)) + 1
print(f"\n2. stream of {len(stream)} chunks: early stopping after {calls} calls "
      f"(stopped_early_={model.stopped_early_}); best validation accuracy "
      f"{model.best_validation_score_:.4f} at call {best}; test accuracy "
      f"{model.score(X_test, y_test):.4f}")
