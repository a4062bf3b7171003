"""One model trained on a Dask cluster, next to the same model trained in memory.

A LocalCluster of two worker processes loads the training rows as a dask
array of 4 partitions, each read by a worker (never by the client);
`cnn_bp.dask.DaskMLPClassifier` trains where they are (Adam: each worker
an epoch over its partitions, the copies averaged; L-BFGS: the partitions'
gradients summed on the cluster) and hands back a plain
`cnn_bp.MLPClassifier` (`to_local`). The data is Fashion-MNIST
(`apt-get install dataset-fashion-mnist`) when its files are there, else a
generated problem. Only the in-memory reference fit gathers the rows here.
On a real cluster, pass the scheduler's address and read partitions from
storage every worker sees (`dask.array.from_zarr`,
`dask.dataframe.read_parquet`).

    python examples/dask_fit.py [--scheduler ADDRESS] [--data fashion|generated]
        [--epochs 15] [--rows 60000]
"""

import argparse
import os
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from cnn_bp import MLPClassifier
from cnn_bp.datasets import FASHION_MNIST_DIR, load_fashion_mnist

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--scheduler", help="address of a running Dask scheduler")
parser.add_argument("--data", choices=["fashion", "generated"],
                    default="fashion" if os.path.isdir(FASHION_MNIST_DIR) else "generated")
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--rows", type=int, default=60000, help="training rows (at most)")
args = parser.parse_args()
PARTITIONS = 4


def load(data, rows):
    """(X, y, X_test, y_test) of `rows` training rows, float64."""
    if data == "fashion":
        X, y, X_test, y_test = load_fashion_mnist(FASHION_MNIST_DIR, dtype=np.float64)
    else:
        from sklearn.datasets import make_classification

        X, y = make_classification(70000, 100, n_informative=40, n_classes=10,
                                   random_state=0)
        X, y, X_test, y_test = X[10000:], y[10000:], X[:10000], y[:10000]
    return X[:rows], y[:rows], X_test, y_test


def partition(data, rows, i):
    """Rows of partition i, as a worker reads them."""
    X, y = load(data, rows)[:2]
    start, stop = len(X) * i // PARTITIONS, len(X) * (i + 1) // PARTITIONS
    return X[start:stop], y[start:stop]


if __name__ == "__main__":  # worker processes import this file: run once
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    from cnn_bp.dask import DaskMLPClassifier

    warnings.simplefilter("ignore", ConvergenceWarning)
    X, y, X_test, y_test = load(args.data, args.rows)  # the in-memory reference's
    print(f"{args.data}: train {X.shape}, test {X_test.shape}, {X.dtype}")

    cluster = None if args.scheduler else LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with Client(args.scheduler or cluster) as client:
        parts = [dask.delayed(partition, nout=2)(args.data, args.rows, i)
                 for i in range(PARTITIONS)]
        sizes = [len(X) * (i + 1) // PARTITIONS - len(X) * i // PARTITIONS
                 for i in range(PARTITIONS)]
        Xd, yd = client.persist([
            da.concatenate([da.from_delayed(p[0], (n, X.shape[1]), X.dtype)
                            for p, n in zip(parts, sizes)]),
            da.concatenate([da.from_delayed(p[1], (n,), y.dtype)
                            for p, n in zip(parts, sizes)])])
        print(f"dask array: {Xd.numblocks[0]} partitions of {sizes[0]} rows, read by "
              f"{len(client.scheduler_info()['workers'])} workers")
        for solver, epochs in (("adam", args.epochs), ("lbfgs", 3 * args.epochs)):
            params = dict(hidden_layer_sizes=(100,), solver=solver, max_iter=epochs,
                          random_state=0)
            start = time.perf_counter()
            model = DaskMLPClassifier(**params).fit(Xd, yd)
            on_cluster = time.perf_counter() - start
            start = time.perf_counter()
            local = MLPClassifier(**params).fit(X, y)
            in_memory = time.perf_counter() - start
            a, b = model.to_local().score(X_test, y_test), local.score(X_test, y_test)
            print(f"{solver:5s} {epochs:3d} iterations: test accuracy on the cluster "
                  f"{a:.4f} ({on_cluster:.1f} s), in memory {b:.4f} ({in_memory:.1f} s), "
                  f"difference {a - b:+.4f}")
        lazy = model.predict(Xd[:1000])
        print(f"predict on a dask array: {type(lazy).__name__}, equal to the local "
              f"model's: {np.array_equal(lazy.compute(), model.to_local().predict(X[:1000]))}")
    if cluster is not None:
        cluster.close()
