"""Two fits in two threads vs one after the other (BLAS limited to 1 thread).

Training releases the GIL for each whole epoch, so two models fitted from two
threads of one process run on two cores at once. Prints the ratio
threaded / sequential (0.5 is perfect scaling on 2 cores).

    python benchmarks/bench_threads.py [--quick]
"""

import argparse
import threading
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from cnn_bp import MLPClassifier


def _fit(X, y, seed, epochs):
    MLPClassifier(hidden_layer_sizes=(100,), max_iter=epochs, tol=0.0,
                  random_state=seed).fit(X, y)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    # process-wide: catch_warnings() is not thread-safe
    warnings.simplefilter("ignore", ConvergenceWarning)
    n, epochs, repeats = (1000, 2, 1) if args.quick else (20000, 5, args.repeats)
    rng = np.random.RandomState(0)
    X = rng.rand(n, 784).astype(np.float32)
    y = rng.randint(10, size=n)
    best_seq = best_par = np.inf
    with threadpool_limits(1, user_api="blas"):
        for _ in range(repeats):
            start = time.perf_counter()
            _fit(X, y, 0, epochs)
            _fit(X, y, 1, epochs)
            best_seq = min(best_seq, time.perf_counter() - start)
            threads = [threading.Thread(target=_fit, args=(X, y, s, epochs)) for s in (0, 1)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            best_par = min(best_par, time.perf_counter() - start)
    print(f"two fits of {n}x784, (100,), {epochs} epochs, BLAS 1 thread each:")
    print(f"sequential {best_seq:.3f} s, two threads {best_par:.3f} s, "
          f"ratio {best_par / best_seq:.2f}")
    return best_par / best_seq


if __name__ == "__main__":
    main()
