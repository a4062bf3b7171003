"""The main job: train cnn_bp and scikit-learn's MLPClassifier side by side.

    python -m cnn_bp                            # digits, embedded in scikit-learn
    python -m cnn_bp --dataset fashion-mnist    # needs dataset-fashion-mnist

Both models get the same data, parameters and random_state; the table gives
test accuracy and fit time of each.
"""

import argparse
import sys
import time
import warnings

import numpy as np
import sklearn
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

from . import MLPClassifier, __version__
from ._registry import HIDDEN_ACTIVATIONS, SKLEARN_ACTIVATIONS, SOLVER_CHOICES, SOLVERS
from .datasets import FASHION_MNIST_DIR, load_fashion_mnist

# Why two float32 fits from one seed end apart (docs/drop_in.md says it too).
FLOAT32_NOTE = (
    "In float32 the two fits start from the same weights and batches, but each\n"
    "sums in its own order: round-off of ~1e-7 per step grows chaotically over\n"
    "epochs, so the models, epochs and accuracies differ. In float64 (--dtype\n"
    "float64) cnn_bp's model is scikit-learn's to round-off."
)

SKLEARN_OPTIONS = {
    "activation": SKLEARN_ACTIVATIONS,
    "solver": ("lbfgs", *(s.name for s in SOLVERS if s.sklearn)),
}


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m cnn_bp",
        description="Train cnn_bp's MLPClassifier and scikit-learn's with the same "
        "parameters and seed on real data; print test accuracy and fit time of both.",
    )
    parser.add_argument(
        "--dataset", choices=["digits", "fashion-mnist"], default="digits",
        help="digits: scikit-learn's embedded 8x8 digits (1797 images, 80/20 "
        "split); fashion-mnist: 60000 + 10000 28x28 images (default: digits)",
    )
    parser.add_argument(
        "--data-dir", default=FASHION_MNIST_DIR,
        help="folder of the Fashion-MNIST *-ubyte.gz files (default: %(default)s)",
    )
    parser.add_argument(
        "--hidden", type=int, nargs="+", default=[100], metavar="N",
        help="hidden layer sizes, e.g. --hidden 512 256 (default: 100)",
    )
    parser.add_argument(
        "--activation", choices=HIDDEN_ACTIVATIONS, default="relu",
        help="hidden activation (default: relu); scikit-learn has only identity, "
        "logistic, tanh and relu",
    )
    parser.add_argument(
        "--solver", choices=SOLVER_CHOICES, default="adam",
        help="optimizer (default: adam); scikit-learn has only adam, sgd and lbfgs",
    )
    parser.add_argument(
        "--epochs", type=int, default=200, metavar="N",
        help="max_iter: maximum epochs (default: 200, scikit-learn's)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, metavar="N",
        help="mini-batch size (default: min(200, n_samples))",
    )
    parser.add_argument(
        "--dtype", choices=["float32", "float64"], default=None,
        help="dtype of the data and the model (default: float32 for "
        "fashion-mnist, float64 for digits)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random_state (default: 0)")
    parser.add_argument(
        "--no-sklearn", action="store_true", help="train cnn_bp only",
    )
    parser.add_argument(
        "--progress", choices=["auto", "on", "off"], default="auto",
        help="print the loss after every epoch (auto: on for fashion-mnist)",
    )
    return parser.parse_args(argv)


def _load(args, dtype):
    if args.dataset == "digits":
        X, y = load_digits(return_X_y=True)
        X = (X / 16).astype(dtype)
        return train_test_split(X, y, test_size=0.2, stratify=y, random_state=args.seed)
    X_train, y_train, X_test, y_test = load_fashion_mnist(args.data_dir, dtype)
    return X_train, X_test, y_train, y_test


def _fit_and_score(name, model, X_train, y_train, X_test, y_test, progress):
    if progress:
        print(f"\nTraining {name} ...", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(X_train, y_train)
        seconds = time.perf_counter() - start
    return model.score(X_test, y_test), seconds, model.n_iter_


def main(argv=None):
    args = _parse_args(argv)
    dtype = args.dtype or ("float32" if args.dataset == "fashion-mnist" else "float64")
    try:
        X_train, X_test, y_train, y_test = _load(args, dtype)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    progress = args.progress == "on" or (
        args.progress == "auto" and args.dataset == "fashion-mnist"
    )
    params = dict(
        hidden_layer_sizes=tuple(args.hidden),
        activation=args.activation,
        solver=args.solver,
        max_iter=args.epochs,
        batch_size=args.batch_size or "auto",
        random_state=args.seed,
        verbose=progress,
    )
    print(
        f"cnn_bp {__version__} vs scikit-learn {sklearn.__version__} on {args.dataset}: "
        f"{len(X_train)} train / {len(X_test)} test rows, {X_train.shape[1]} features, "
        f"{len(np.unique(y_train))} classes"
    )
    print(
        f"MLP hidden={tuple(args.hidden)}, activation={args.activation}, "
        f"solver={args.solver}, dtype={dtype}, max_iter={args.epochs}, seed={args.seed}",
        flush=True,
    )
    data = (X_train, y_train, X_test, y_test)
    rows = [("cnn_bp", *_fit_and_score("cnn_bp", MLPClassifier(**params), *data, progress))]
    missing = [name for name, ours in (("activation", args.activation), ("solver", args.solver))
               if ours not in SKLEARN_OPTIONS[name]]
    if missing:
        print(f"scikit-learn has no {missing[0]} {getattr(args, missing[0])}: "
              "training cnn_bp only", flush=True)
    elif not args.no_sklearn:
        sk = SklearnMLPClassifier(**params)
        rows.append(("scikit-learn", *_fit_and_score("scikit-learn", sk, *data, progress)))

    print(f"\n{'system':<14}{'test accuracy':>15}{'fit time (s)':>15}{'epochs':>9}")
    for name, accuracy, seconds, epochs in rows:
        print(f"{name:<14}{accuracy:>15.4f}{seconds:>15.2f}{epochs:>9d}")
    if len(rows) == 2:
        (_, acc, sec, _), (_, sk_acc, sk_sec, _) = rows
        print(
            f"\ncnn_bp fit {sk_sec / sec:.1f}x faster than scikit-learn; "
            f"accuracy difference {acc - sk_acc:+.4f}"
        )
        if dtype == "float32":
            print(FLOAT32_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
