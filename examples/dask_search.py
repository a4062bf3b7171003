"""The same hyper-parameter search on one core, on threads, and on a Dask cluster.

cnn_bp trains without holding the GIL, so joblib's threading backend runs
candidates in parallel inside one process; with dask.distributed the very
same scikit-learn code runs on a cluster (here a local one: two worker
processes on this machine). To use a real cluster, start a scheduler and
workers there (`dask scheduler`, `dask worker tcp://HOST:8786`) and run

    python examples/dask_search.py --scheduler tcp://HOST:8786

Needs `pip install ".[dask]"` (from the checkout).

    python examples/dask_search.py [--scheduler ADDRESS]
"""

import argparse
import time
import warnings

from distributed import Client, LocalCluster
from joblib import parallel_backend
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_limits

from cnn_bp import MLPClassifier

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--scheduler", help="address of a running Dask scheduler")

X, y = load_digits(return_X_y=True)
X = X / 16.0
grid = {"hidden_layer_sizes": [(32,), (64,)], "alpha": [1e-4, 1e-2]}


def search(n_jobs=None):
    model = MLPClassifier(max_iter=50, random_state=0)
    start = time.perf_counter()
    result = GridSearchCV(model, grid, cv=3, n_jobs=n_jobs).fit(X, y)
    return result, time.perf_counter() - start


def main():
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)  # 50 epochs: on purpose
    # 1. One core, one candidate after the other.
    sequential, seconds = search()
    print(f"sequential: best {sequential.best_params_}, {seconds:.1f} s")

    # 2. Threads in this process: no GIL in the way. One BLAS thread per job
    #    avoids oversubscribing the cores.
    with threadpool_limits(1, user_api="blas"), parallel_backend("threading"):
        threaded, seconds = search(n_jobs=2)
    print(f"2 threads:  best {threaded.best_params_}, {seconds:.1f} s")

    # 3. A Dask cluster: the estimator pickles (its flat parameter buffer and
    #    settings) and is fitted on the workers.
    cluster = None if args.scheduler else LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    )
    with Client(args.scheduler or cluster) as client:
        n_workers = len(client.scheduler_info()["workers"])
        print(f"dask: {n_workers} workers at {client.scheduler.address}")
        with parallel_backend("dask"):
            on_dask, seconds = search(n_jobs=-1)
    print(f"dask:       best {on_dask.best_params_}, {seconds:.1f} s")
    if cluster is not None:
        cluster.close()

    scores = [s.cv_results_["mean_test_score"] for s in (on_dask, sequential)]
    same = (scores[0] == scores[1]).all()
    print("the three searches found identical scores:", bool(same))


# Dask starts worker processes by importing this file: keep the work under main.
if __name__ == "__main__":
    main()
