"""What checkpoint_dir costs a fit: random 60000 x 784 (bench.py's
workload), hidden (100,) and (512, 256), Adam, float64 and float32, timed with
and without checkpoint_dir in alternation (a fresh directory each time:
a finished checkpoint would skip the fit), best of --repeats. Prints a
markdown table of seconds and their ratio, then the parts of the cost: the
key (joblib.hash of X and y, once per fit), one epoch's snapshot (the state
copied and digested) and one atomic write of the file.

    python benchmarks/bench_checkpoints.py [--quick] [--repeats N] [--epochs N]
"""

import argparse
import tempfile
import time
import warnings

import numpy as np

import cnn_bp
from cnn_bp import _checkpoint


def _seconds(X, y, hidden, epochs, directory):
    model = cnn_bp.MLPClassifier(hidden, max_iter=epochs, tol=0.0, random_state=0,
                                 checkpoint_dir=directory)
    start = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - start, model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    n, repeats, epochs = (2000, 1, 2) if args.quick else (60000, args.repeats, args.epochs)
    warnings.simplefilter("ignore")  # ConvergenceWarning
    rng = np.random.RandomState(0)
    X64, y = rng.rand(n, 784), rng.randint(10, size=n)
    print(f"random {n}x784, Adam, {epochs} epochs, checkpoints every "
          f"{_checkpoint.SECONDS:g} s at most\n")
    print("| hidden | dtype | without (s) | with checkpoint_dir (s) | ratio |")
    print("|---|---|---|---|---|")
    for hidden in ((100,), (512, 256)):
        for X in (X64, X64.astype(np.float32)):
            best = {None: np.inf, "dir": np.inf}
            for _ in range(repeats):
                for kind in best:
                    with tempfile.TemporaryDirectory() as directory:
                        seconds, model = _seconds(X, y, hidden, epochs,
                                                  None if kind is None else directory)
                    best[kind] = min(best[kind], seconds)
            print(f"| {hidden} | {X.dtype} | {best[None]:.3f} | {best['dir']:.3f} | "
                  f"{best['dir'] / best[None]:.3f} |")
            if hidden == (512, 256) and X.dtype == np.float32:
                parts = _parts(model, X, y)
    print("\nthe parts, for (512, 256) float32: " + ", ".join(
        f"{name} {seconds * 1000:.1f} ms" for name, seconds in parts.items()))


def _parts(model, X, y):
    """Seconds of the key, of one epoch's snapshot and of one write."""
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        checkpoints = _checkpoint.Checkpoints(model, directory, X, y, None)
        key = time.perf_counter() - start
        start = time.perf_counter()
        checkpoints.pending = _checkpoint._snapshot(model, {"epochs": 1, "finished": False})
        snapshot = time.perf_counter() - start
        start = time.perf_counter()
        checkpoints.flush()
        write = time.perf_counter() - start
    return {"key (hash of X, y)": key, "snapshot": snapshot, "write": write}


if __name__ == "__main__":
    main()
