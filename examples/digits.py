"""Handwritten digits with cnn_bp, read top to bottom.

scikit-learn ships the data (1797 grey-scale 8x8 images, 10 classes), so this
runs anywhere. We train cnn_bp's MLPClassifier, look at what it learned, and
check that scikit-learn's MLPClassifier with the same seed gives the same model.

    python examples/digits.py [--max-iter 200]
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import classification_report
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

from cnn_bp import MLPClassifier

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--max-iter", type=int, default=200, help="epochs (default 200)")
args = parser.parse_args()

# 1. Data: pixel values 0..16, scaled to [0, 1]; a stratified 80/20 split.
X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.2, stratify=y, random_state=0
)

# 2. A network 64 -> 100 (relu) -> 10 (softmax), trained with Adam on
#    mini-batches of 200, exactly scikit-learn's defaults.
params = dict(hidden_layer_sizes=(100,), max_iter=args.max_iter, random_state=0)
model = MLPClassifier(**params)
start = time.perf_counter()
model.fit(X_train, y_train)
print(f"cnn_bp: {model.n_iter_} epochs in {time.perf_counter() - start:.2f} s, "
      f"final training loss {model.loss_:.4f}")

# 3. What it learned: W^1 has one column of 64 weights per hidden unit,
#    W^2 maps the 100 hidden activations to the 10 class scores.
print("W^1", model.coefs_[0].shape, " W^2", model.coefs_[1].shape)
print(classification_report(y_test, model.predict(X_test), digits=3))

# 4. The same seed gives scikit-learn's model, to floating-point round-off.
reference = SklearnMLPClassifier(**params).fit(X_train, y_train)
gap = max(np.abs(a - b).max() for a, b in zip(model.coefs_, reference.coefs_))
print(f"largest weight difference from scikit-learn: {gap:.2e}")
print(f"test accuracy: cnn_bp {model.score(X_test, y_test):.4f}, "
      f"scikit-learn {reference.score(X_test, y_test):.4f}")
