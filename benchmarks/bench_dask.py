"""Epochs of one model on a Dask LocalCluster against the same fit in memory.

One process times, on the same data (random 60000 x 784 float64 in 4
partitions unless --rows says otherwise, hidden (100,), Adam, batch 200):

- the in-memory cnn_bp.MLPClassifier fit (all of this process's threads);
- cnn_bp.dask.DaskMLPClassifier on LocalCluster(n_workers=1) and (2), one
  thread per worker process, the partitions read by the workers. (Dask's
  nanny starts its workers with OMP_NUM_THREADS=1, so each worker's engine
  trains on one thread: a worker's threads are its task slots.)

Reported per setting: seconds per epoch (in memory: the best of --repeats
fits of --epochs epochs, per epoch; on the cluster: the fastest epoch of as
many fits, the partitions' preparation before the first not counted), the
slowest worker's seconds of training in that epoch, and the communication
share of an epoch: 1 - training / epoch (sending the model, gathering the
trained copies, averaging them). On one machine the workers share its cores
and memory bandwidth, so the 2-worker epoch measures overhead, not speed-up;
on a cluster each worker brings its own.

    python benchmarks/bench_dask.py [--rows 60000] [--epochs 3] [--repeats 3] [--quick]
"""

import argparse
import time
import warnings
from unittest import mock

import numpy as np
from sklearn.exceptions import ConvergenceWarning

import cnn_bp


def partition(rows, features, i, parts):
    """Rows of partition i of the random data, as a worker makes them."""
    rng = np.random.RandomState(i)
    n = rows * (i + 1) // parts - rows * i // parts
    return rng.rand(n, features), rng.randint(10, size=n)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    args = parser.parse_args(argv)
    rows, epochs, repeats = (2000, 1, 1) if args.quick else (args.rows, args.epochs,
                                                             args.repeats)
    warnings.simplefilter("ignore", ConvergenceWarning)

    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    from cnn_bp import dask as cnn_bp_dask

    captured = []

    class TimedTrainer(cnn_bp_dask._ClusterTrainer):
        """Keeps each fit's epochs, whose timings the table reads."""

        def epochs(self, train):
            captured.append(super().epochs(train))
            return captured[-1]

    parts, features = 4, 784
    params = dict(hidden_layer_sizes=(100,), max_iter=epochs, shuffle=True, random_state=0)
    local_parts = [partition(rows, features, i, parts) for i in range(parts)]
    X = np.concatenate([p[0] for p in local_parts])
    y = np.concatenate([p[1] for p in local_parts])
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        cnn_bp.MLPClassifier(**params).fit(X, y)
        best = min(best, (time.perf_counter() - start) / epochs)
    table = [("in memory", best, best, 0.0)]
    for n_workers in (1, 2):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        with cluster, Client(cluster) as client:
            delayed = [dask.delayed(partition, nout=2)(rows, features, i, parts)
                       for i in range(parts)]
            sizes = [rows * (i + 1) // parts - rows * i // parts for i in range(parts)]
            Xd, yd = client.persist([
                da.concatenate([da.from_delayed(d[0], (n, features), np.float64)
                                for d, n in zip(delayed, sizes)]),
                da.concatenate([da.from_delayed(d[1], (n,), int)
                                for d, n in zip(delayed, sizes)])])
            walls, trains = [], []
            for _ in range(repeats):
                captured.clear()
                with mock.patch.object(cnn_bp_dask, "_ClusterTrainer", TimedTrainer):
                    cnn_bp_dask.DaskMLPClassifier(**params).fit(Xd, yd)
                timings = captured[-1].timings
                walls.append(min(t[0] for t in timings))
                trains.append(min(t[1] for t in timings))
            wall, train = min(walls), min(trains)
            table.append((f"LocalCluster, {n_workers} worker(s)", wall, train,
                          1 - train / wall))
    print(f"random {rows} x {features} float64 in {parts} partitions, hidden (100,), "
          f"Adam, batch 200\n")
    print("| setting | s/epoch | training s (slowest worker) | communication share |")
    print("|---|---|---|---|")
    for label, wall, train, share in table:
        print(f"| {label} | {wall:.3f} | {train:.3f} | {share:.0%} |")


if __name__ == "__main__":
    main()
