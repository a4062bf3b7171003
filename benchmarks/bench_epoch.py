"""Seconds per training epoch: cnn_bp vs scikit-learn vs the GEMM-only bound.

All systems run in this one process on the same data, with the same
parameters (Adam, batch 200, relu). The GEMM-only bound times just the matrix
products one epoch of backpropagation needs (forward Z = A W, weight
gradients A^T delta, backward delta W^T) with numpy's BLAS: no activation,
loss, update or data movement. Each figure is the best of --repeats runs of
--epochs epochs (the machine's noise only ever adds time).

    python benchmarks/bench_epoch.py            # digits + 60000x784, float32/64
    python benchmarks/bench_epoch.py --quick    # tiny sizes: a smoke run for CI

Prints a markdown table.
"""

import argparse
import platform
import time
import warnings

import numpy as np
import sklearn
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

import cnn_bp


def _workloads(quick):
    rng = np.random.RandomState(0)
    X, y = load_digits(return_X_y=True)
    yield "digits 1797x64", X / 16.0, y, (100,)
    n = 2000 if quick else 60000
    X = rng.rand(n, 784)
    y = rng.randint(10, size=n)
    yield f"{n}x784 10-class", X, y, (100,)
    if not quick:
        yield f"{n}x784 10-class", X, y, (512, 256)


def _seconds_per_epoch(make, X, y, epochs, repeats):
    best = np.inf
    for _ in range(repeats):
        model = make(max_iter=epochs)
        start = time.perf_counter()
        model.fit(X, y)
        best = min(best, (time.perf_counter() - start) / model.n_iter_)
    return best


def _gemm_bound(X, hidden, n_classes, batch, repeats):
    """Best time of the matrix products of one epoch, by numpy's BLAS."""
    rng = np.random.RandomState(0)
    units = [X.shape[1], *hidden, n_classes]
    W = [rng.rand(a, b).astype(X.dtype) for a, b in zip(units, units[1:])]
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for s in range(0, len(X), batch):
            A = [X[s : s + batch]]
            for w in W:
                A.append(A[-1] @ w)  # forward
            delta = A[-1]
            for layer in range(len(W) - 1, -1, -1):
                A[layer].T @ delta  # weight gradient
                if layer:
                    delta = delta @ W[layer].T  # backward delta
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    epochs, repeats = (2, 1) if args.quick else (args.epochs, args.repeats)

    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}; "
          f"cnn_bp {cnn_bp.__version__}, scikit-learn {sklearn.__version__}\n")  # fmt: skip
    print("| workload | hidden | dtype | cnn_bp s/epoch | sklearn s/epoch | GEMM bound s "
          "| sklearn / cnn_bp | cnn_bp / bound |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for name, X, y, hidden in _workloads(args.quick):
        for dtype in (np.float32, np.float64):
            Xd = X.astype(dtype)
            params = dict(hidden_layer_sizes=hidden, random_state=0, tol=0.0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                ours = _seconds_per_epoch(
                    lambda **kw: cnn_bp.MLPClassifier(**params, **kw), Xd, y, epochs, repeats)
                theirs = _seconds_per_epoch(
                    lambda **kw: SklearnMLPClassifier(**params, **kw), Xd, y, epochs, repeats)
            bound = _gemm_bound(Xd, hidden, len(np.unique(y)), 200, repeats)
            rows.append((name, hidden, dtype, ours, theirs, bound))
            print(f"| {name} | {hidden} | {np.dtype(dtype).name} | {ours:.4f} | {theirs:.4f} "
                  f"| {bound:.4f} | {theirs / ours:.2f} | {ours / bound:.2f} |", flush=True)  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
