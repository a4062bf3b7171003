"""Fashion-MNIST with cnn_bp, read top to bottom.

70,000 grey-scale 28x28 images of clothing in 10 classes (Xiao et al., 2017).
Install the data with `apt-get install dataset-fashion-mnist` (Debian), or
point --data-dir at a folder holding the four *-ubyte.gz files.

    python examples/fashion_mnist.py [--data-dir DIR] [--max-iter 30] [--hidden 256 128]
"""

import argparse
import time

import numpy as np
from sklearn.metrics import confusion_matrix

from cnn_bp import MLPClassifier
from cnn_bp.datasets import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_fashion_mnist

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data-dir", default=FASHION_MNIST_DIR)
parser.add_argument("--max-iter", type=int, default=30, help="epochs (default 30)")
parser.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
args = parser.parse_args()

# 1. Data: 60000 training and 10000 test images, pixels scaled to [0, 1],
#    float32 (the model keeps the dtype it is given: half the memory, faster).
X_train, y_train, X_test, y_test = load_fashion_mnist(args.data_dir, dtype=np.float32)
print(f"train {X_train.shape}, test {X_test.shape}, dtype {X_train.dtype}")

# 2. A 784 -> 256 -> 128 -> 10 network; early stopping holds out 10 % of the
#    training images and keeps the weights that scored best on them.
model = MLPClassifier(
    hidden_layer_sizes=tuple(args.hidden),
    max_iter=args.max_iter,
    early_stopping=True,
    n_iter_no_change=5,
    random_state=0,
    verbose=True,
)
start = time.perf_counter()
model.fit(X_train, y_train)
seconds = time.perf_counter() - start
print(f"{model.n_iter_} epochs in {seconds:.1f} s ({seconds / model.n_iter_:.2f} s/epoch); "
      f"best validation accuracy {model.best_validation_score_:.4f}")

# 3. Test accuracy, and which classes it confuses most.
accuracy = model.score(X_test, y_test)
print(f"test accuracy {accuracy:.4f}")
cm = confusion_matrix(y_test, model.predict(X_test))
np.fill_diagonal(cm, 0)
true, pred = np.unravel_index(cm.argmax(), cm.shape)
print(f"most frequent mistake: {FASHION_MNIST_CLASSES[true]} taken for "
      f"{FASHION_MNIST_CLASSES[pred]} ({cm[true, pred]} times)")
