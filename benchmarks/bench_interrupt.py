"""How soon Ctrl-C stops a fit: cnn_bp and scikit-learn, in one process.

Each fit trains on random 60000 x 784 float64 data, hidden (512,) (an epoch
of about a second on 2 cores); once it is half-way through an epoch, a thread
sends this process SIGINT, as Ctrl-C does, and the time from the signal to the
return of ``fit`` is the latency. Both estimators catch the KeyboardInterrupt
and return the model trained so far. Prints a markdown table: seconds per
epoch, latency (the median of --repeats interruptions), and how many rows of
the interrupted epoch were trained (cnn_bp's ``t_``). Then the same for
one batch of --batch-rows x 784 float32 rows (``batch_size = n_samples``,
hidden (256,); SIGINT half-way through the first batch): seconds per batch,
and from the signal to the return of ``fit``. Then for ``predict`` on
--predict-rows x 784 float32 rows (hidden (100,); SIGINT half-way through):
seconds to predict, and from the signal to the KeyboardInterrupt.

    python benchmarks/bench_interrupt.py [--quick] [--repeats N] [--batch-rows N]
                                         [--predict-rows N]
"""

import argparse
import functools
import os
import signal
import threading
import time
import warnings

import numpy as np
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

import cnn_bp


def _interrupt_after(seconds, sent):
    def fire():
        time.sleep(seconds)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=fire)
    thread.start()
    return thread


def _epoch_seconds(cls, X, y, hidden):
    model = cls(hidden, max_iter=1, random_state=0)
    start = time.monotonic()
    model.fit(X, y)
    return time.monotonic() - start


def _latency(cls, X, y, hidden, epoch, at=1.5):
    """Seconds from SIGINT, sent `at` epochs into the fit (half-way through
    the second), to the return of fit; and the model."""
    model = cls(hidden, max_iter=100, random_state=0)
    sent = []
    thread = _interrupt_after(at * epoch, sent)
    model.fit(X, y)
    returned = time.monotonic()
    thread.join()
    if not sent or returned < sent[0]:
        raise RuntimeError("the fit ended before the signal: raise max_iter")
    return returned - sent[0], model


def _batch_table(rows, repeats):
    rng = np.random.default_rng(0)
    X = rng.random((rows, 784), dtype=np.float32)
    y = rng.integers(0, 10, rows)
    print(f"\none batch of random {rows} x 784 float32 (batch_size = n_samples), "
          "hidden (256,), SIGINT half-way through it\n")
    print("| system | s/batch | Ctrl-C to return (s, median) |")
    print("|---|---|---|")
    options = dict(batch_size=rows, shuffle=False)
    for name, cls in (("cnn_bp", cnn_bp.MLPClassifier), ("scikit-learn", SklearnMLPClassifier)):
        estimator = functools.partial(cls, **options)
        batch = _epoch_seconds(estimator, X, y, (256,))
        latency = float(np.median([_latency(estimator, X, y, (256,), batch, at=0.5)[0]
                                   for _ in range(repeats)]))
        print(f"| {name} | {batch:.3f} | {latency:.4f} |")


def _predict_latency(model, X, whole):
    """Seconds from SIGINT, sent half-way through predict(X), to the
    KeyboardInterrupt it raises."""
    sent = []
    thread = _interrupt_after(whole / 2, sent)
    try:
        while True:  # again, if a call ends before the signal (a busy machine)
            model.predict(X)
    except KeyboardInterrupt:
        caught = time.monotonic()
    thread.join()
    return caught - sent[0]


def _predict_table(rows, repeats):
    rng = np.random.RandomState(0)
    X = rng.rand(rows, 784).astype(np.float32)
    fit_X, fit_y = X[:2000], rng.randint(0, 10, 2000)
    print(f"\npredict on random {rows} x 784 float32, hidden (100,), SIGINT half-way\n")
    print("| system | predict (s) | Ctrl-C to KeyboardInterrupt (s, median) |")
    print("|---|---|---|")
    for name, cls in (("cnn_bp", cnn_bp.MLPClassifier), ("scikit-learn", SklearnMLPClassifier)):
        model = cls((100,), max_iter=2, random_state=0).fit(fit_X, fit_y)
        start = time.monotonic()
        model.predict(X)
        whole = time.monotonic() - start
        latency = float(np.median([_predict_latency(model, X, whole) for _ in range(repeats)]))
        print(f"| {name} | {whole:.3f} | {latency:.4f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-rows", type=int, default=200_000)
    parser.add_argument("--predict-rows", type=int, default=2_000_000)
    args = parser.parse_args(argv)
    # SIGINT raises KeyboardInterrupt here even where this process was started
    # with it ignored (a shell's background job): the benchmark sends it itself
    signal.signal(signal.SIGINT, signal.default_int_handler)
    n, hidden, repeats = (4000, (64,), 1) if args.quick else (60000, (512,), args.repeats)
    rng = np.random.RandomState(0)
    X, y = rng.rand(n, 784), rng.randint(0, 10, n)
    warnings.simplefilter("ignore")  # "Training interrupted by user.", convergence
    print(f"random {n} x 784 float64, hidden {hidden}, SIGINT half-way through epoch 2\n")
    print("| system | s/epoch | Ctrl-C to return (s, median) | rows of the epoch trained |")
    print("|---|---|---|---|")
    for name, cls in (("cnn_bp", cnn_bp.MLPClassifier), ("scikit-learn", SklearnMLPClassifier)):
        epoch = _epoch_seconds(cls, X, y, hidden)
        results = [_latency(cls, X, y, hidden, epoch) for _ in range(repeats)]
        latency = float(np.median([r[0] for r in results]))
        model = results[-1][1]
        rows = f"{model.t_ - n * model.n_iter_}" if name == "cnn_bp" else "(not counted)"
        print(f"| {name} | {epoch:.3f} | {latency:.4f} | {rows} |")
    _batch_table(20000 if args.quick else args.batch_rows, repeats)
    _predict_table(20000 if args.quick else args.predict_rows, repeats)


if __name__ == "__main__":
    main()
