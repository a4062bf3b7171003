"""cnn_bp side by side with scikit-learn, PyTorch and the GEMM-only bound.

Everything runs in this one process on the same data with the same network
(relu hidden layers, softmax output, Adam, batch 200, alpha 1e-4):

- cnn_bp.MLPClassifier and sklearn.neural_network.MLPClassifier, same
  parameters and random_state;
- PyTorch on the CPU when it is installed: an equivalent nn.Sequential with
  torch.optim.Adam (L2 as weight decay alpha / batch on the weights only, as
  scikit-learn's penalty gives), shuffled mini-batches, all its threads;
- the GEMM-only bound: just the matrix products one epoch of backpropagation
  needs (forward Z = A W, weight gradients A^T delta, backward deltas
  delta W^T), by scipy's BLAS, the library cnn_bp's engine calls, one call
  per product on BLAS's own threads: what an epoch would cost if everything
  but these products were free. (cnn_bp can go below it: its helper thread
  shares each batch's products, which are too small for BLAS's threads.)

Reported per workload and dtype: seconds per epoch (best of --repeats fits of
--epochs epochs: machine noise only ever adds time) and their ratios; the
peak memory a fit adds (resident set sampled every millisecond by a thread,
freed heap returned to the OS before each fit; and numpy's allocations,
exactly, by tracemalloc); prediction latency for one row (median of 5
rounds of 200 calls, each after the same pause and 50 ms of untimed calls),
next to the "GEMV-only bound" (just the one-row products W^T a of each
layer, by the BLAS cnn_bp calls, on BLAS's own threads; cnn_bp goes below it
where it shares a row's products with its helper thread, for networks whose
largest W^l takes 512 KiB to 8 MiB), and time for 10,000 rows (the best of
--repeats rounds of three calls in a row: one call is a few ms, which one
noisy spell of the machine can double), next to two raw numpy matrix
products plus activation with the same weights.

    python benchmarks/bench.py                   # full run (~20 min on 2 cores)
    python benchmarks/bench.py --plot bench.png  # and a bar chart of s/epoch
    python benchmarks/bench.py --quick           # tiny sizes: a smoke run

Prints two markdown tables (training, prediction).
"""

import argparse
import ctypes
import gc
import os
import platform
import threading
import time
import tracemalloc
import warnings

import numpy as np
import sklearn
from scipy.linalg import blas
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

import cnn_bp
from cnn_bp.datasets import FASHION_MNIST_DIR, load_fashion_mnist

try:
    import torch
except ImportError:  # the torch columns stay empty
    torch = None

BATCH, ALPHA, LR = 200, 1e-4, 1e-3
WARM_SECONDS = 0.05  # of untimed one-row predictions before each timed round


def workloads(quick, data_dir, epochs):
    """(name, X float64, y, hidden, epochs per timed fit) for each workload;
    digits, whose epochs take milliseconds, gets 10x the epochs so that the
    one-off cost of a fit (validation, initialisation) does not dominate."""
    X, y = load_digits(return_X_y=True)
    yield "digits 1797x64", X / 16.0, y, (100,), 10 * epochs
    rng = np.random.RandomState(0)
    n = 2000 if quick else 60000
    X, y = rng.rand(n, 784), rng.randint(10, size=n)
    yield f"random {n}x784", X, y, (100,), epochs
    if quick:
        return
    yield f"random {n}x784", X, y, (512, 256), epochs
    try:
        X, y, _, _ = load_fashion_mnist(data_dir, dtype=np.float64)
    except FileNotFoundError:
        return
    yield "Fashion-MNIST 60000x784", X, y, (100,), epochs


# -- the systems: each makes a fitted model and a predict function ------------

def fit_sklearn_like(cls, X, y, hidden, epochs):
    model = cls(hidden_layer_sizes=hidden, max_iter=epochs, tol=0.0, random_state=0,
                batch_size=BATCH, alpha=ALPHA, learning_rate_init=LR)
    model.fit(X, y)
    return model, model.predict


def fit_torch(X, y, hidden, epochs):
    dtype = torch.float32 if X.dtype == np.float32 else torch.float64
    torch.manual_seed(0)
    units = [X.shape[1], *hidden, int(y.max()) + 1]
    layers = []
    for fan_in, fan_out in zip(units, units[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1]).to(dtype)
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in net.named_parameters() if name.endswith("bias")]
    optimizer = torch.optim.Adam(
        [{"params": weights, "weight_decay": ALPHA / BATCH}, {"params": biases}], lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    for _ in range(epochs):
        order = torch.randperm(len(Xt))
        for start in range(0, len(Xt), BATCH):
            rows = order[start : start + BATCH]
            optimizer.zero_grad()
            loss_fn(net(Xt[rows]), yt[rows]).backward()
            optimizer.step()

    def predict(X):
        with torch.no_grad():
            return net(torch.from_numpy(X)).argmax(dim=1).numpy()

    return net, predict


def systems():
    out = {
        "cnn_bp": lambda *a: fit_sklearn_like(cnn_bp.MLPClassifier, *a),
        "sklearn": lambda *a: fit_sklearn_like(SklearnMLPClassifier, *a),
    }
    if torch is not None:
        out["torch"] = fit_torch
    return out


def gemm_bound(X, hidden, n_classes):
    """Seconds of one epoch's matrix products, by scipy's BLAS (no copies:
    row-major operands are passed as their Fortran-order transposes)."""
    gemm = blas.sgemm if X.dtype == np.float32 else blas.dgemm
    units = [X.shape[1], *hidden, n_classes]
    rng = np.random.RandomState(0)
    W = [rng.rand(a, b).astype(X.dtype) for a, b in zip(units, units[1:])]
    start = time.perf_counter()
    for s in range(0, len(X), BATCH):
        A = [X[s : s + BATCH]]
        for w in W:  # Z = A W
            A.append(gemm(1.0, w.T, A[-1].T).T)
        delta = A[-1]
        for layer in range(len(W) - 1, -1, -1):
            gemm(1.0, delta.T, A[layer].T, trans_b=1)  # A^T delta
            if layer:  # delta W^T
                delta = gemm(1.0, W[layer].T, delta.T, trans_a=1).T
    return time.perf_counter() - start


def gemv_bound(model, x):
    """A function of one row x (1, n_features) doing just the products of its
    forward pass, z = (W^l)^T a layer by layer, by scipy's gemv (cnn_bp's
    BLAS, and its call for one row outside SHARED_ROW_BYTES; row-major W^l
    passed as its Fortran-order transpose, no copy): what a one-row
    prediction costs if all but the products were free (each call from
    Python adds ~0.5 us)."""
    gemv = blas.sgemv if x.dtype == np.float32 else blas.dgemv
    weights = [w.T for w in model.coefs_]

    def products(x):
        a = x[0]
        for w in weights:
            a = gemv(1.0, w, a)
        return a

    return products


# -- measurements ---------------------------------------------------------------

def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(call):
    """Peak memory that `call()` adds, in bytes: (resident set, sampled every
    1 ms by a thread; numpy allocations, exactly, by tracemalloc). The first
    counts everything but is coarse; the second sees every numpy array, so
    all of cnn_bp's and scikit-learn's buffers, but none of PyTorch's."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap back to the OS
    except OSError:
        pass
    base = peak = _resident_bytes()
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.wait(0.001):
            peak = max(peak, _resident_bytes())

    sampler = threading.Thread(target=sample)
    tracemalloc.start()
    sampler.start()
    try:
        call()
    finally:
        done.set()
        sampler.join()
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return max(peak, _resident_bytes()) - base, traced


def quiesce():
    """Let the previous run's BLAS threads fall asleep: OpenBLAS's workers
    spin for ~0.1 s (2^28 cycles) after their last product, taking a core
    from whatever runs next, unless it is OpenBLAS itself."""
    gc.collect()
    time.sleep(0.3)


def best_of(repeats, call):
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def latency(predict, x, number):
    """Median seconds of predict(x) over `number` calls, in 5 rounds, each
    after a pause (quiesce: the previous system's threads may still spin)
    and WARM_SECONDS of untimed calls: what a prediction costs in a stream
    of them. The calls after a pause run slow for milliseconds, whatever
    the system, as the machine wakes up (on a 2-core Zen 3 VM, a 784-512-
    256-10 float32 row by cnn_bp: ~280 us the first call, 50 us the 10th,
    39 us the 20th to 50th, 35 us the 100th to 200th, 31 us from the 400th
    on, ~20 ms in); warming up for a time, not a count of calls, treats a
    30 us and a 400 us prediction alike."""
    rounds = []
    for _ in range(5):
        quiesce()
        end = time.perf_counter() + WARM_SECONDS
        while time.perf_counter() < end:
            predict(x)
        start = time.perf_counter()
        for _ in range(number):
            predict(x)
        rounds.append((time.perf_counter() - start) / number)
    return float(np.median(rounds))


def numpy_forward(model, X):
    """The reference for bulk prediction: raw matrix products plus relu."""
    A = X
    for W, b in zip(model.coefs_[:-1], model.intercepts_[:-1]):
        A = np.maximum(A @ W + b, 0)
    return (A @ model.coefs_[-1] + model.intercepts_[-1]).argmax(axis=1)


def run(args):
    fits = systems()
    training, prediction = [], []
    for name, X64, y, hidden, epochs in workloads(args.quick, args.data_dir, args.epochs):
        for dtype in (np.float32, np.float64):
            X = X64.astype(dtype)
            timed = {s: lambda fit=fit: fit(X, y, hidden, epochs) for s, fit in fits.items()}
            timed["bound"] = lambda: [gemm_bound(X, hidden, 10) for _ in range(epochs)]
            # Repeats go round all systems, so a noisy spell of the machine
            # hits each of them rather than one; the best time counts.
            seconds = dict.fromkeys(timed, np.inf)
            # digits' fits take ~0.1 s: more of them, for the same noise
            for _ in range(args.repeats * (5 if name.startswith("digits") else 1)):
                for system, call in timed.items():
                    quiesce()
                    seconds[system] = min(seconds[system], best_of(1, call) / epochs)
            memory, predictors = {}, {}
            for system, fit in fits.items():
                memory[system] = peak_memory(lambda: fit(X, y, hidden, 1))
                model, predictors[system] = fit(X, y, hidden, 1)
                if system == "cnn_bp":
                    ours = model
            training.append((name, hidden, dtype, seconds, memory))
            print_training(training[-1:], header=not training[:-1])
            rows = X[:10000] if len(X) >= 10000 else np.resize(X, (10000, X.shape[1]))
            one = {s: latency(p, X[:1], 200) for s, p in predictors.items()}
            one["gemv"] = latency(gemv_bound(ours, X[:1]), X[:1], 200)
            calls = {s: lambda p=p: p(rows) for s, p in predictors.items()}
            calls["numpy"] = lambda: numpy_forward(ours, rows)
            bulk = dict.fromkeys(calls, np.inf)
            for _ in range(args.repeats):  # interleaved, as the fits
                for system, call in calls.items():
                    quiesce()
                    bulk[system] = min(bulk[system], best_of(3, call))
            prediction.append((name, hidden, dtype, one, bulk))
    print()
    print_prediction(prediction)
    return training, prediction


# -- reporting ------------------------------------------------------------------

def _ratio(a, b):
    return f"{a / b:.2f}" if a and b else "–"


def _fmt(x, scale=1.0, digits=4):
    return "–" if x is None else f"{x * scale:.{digits}f}"


def _mb(x):
    return "–" if x is None else f"{x / 2**20:.1f}"


def print_training(rows, header=True):
    if header:
        print("| workload | hidden | dtype | cnn_bp s/epoch | sklearn | torch | GEMM bound "
              "| sklearn / cnn_bp | torch / cnn_bp | cnn_bp / bound | sklearn / bound "
              "| torch / bound | peak MB: numpy cnn_bp | sklearn | resident cnn_bp "
              "| sklearn | torch |")
        print("|" + "---|" * 17)
    for name, hidden, dtype, s, mem in rows:
        t = s.get("torch")
        rss = {k: v[0] for k, v in mem.items()}
        print(f"| {name} | {hidden} | {np.dtype(dtype).name} | {_fmt(s['cnn_bp'])} "
              f"| {_fmt(s['sklearn'])} | {_fmt(t)} | {_fmt(s['bound'])} "
              f"| {_ratio(s['sklearn'], s['cnn_bp'])} | {_ratio(t, s['cnn_bp'])} "
              f"| {_ratio(s['cnn_bp'], s['bound'])} | {_ratio(s['sklearn'], s['bound'])} "
              f"| {_ratio(t, s['bound'])} | {_mb(mem['cnn_bp'][1])} | {_mb(mem['sklearn'][1])} "
              f"| {_mb(rss['cnn_bp'])} | {_mb(rss['sklearn'])} | {_mb(rss.get('torch'))} |",
              flush=True)


def print_prediction(rows):
    print("| workload | hidden | dtype | 1 row µs cnn_bp | sklearn | torch | GEMV bound "
          "| sklearn / cnn_bp | cnn_bp / bound | 10,000 rows ms cnn_bp | sklearn | torch "
          "| numpy | cnn_bp / numpy |")
    print("|" + "---|" * 14)
    for name, hidden, dtype, one, bulk in rows:
        print(f"| {name} | {hidden} | {np.dtype(dtype).name} | {_fmt(one['cnn_bp'], 1e6, 1)} "
              f"| {_fmt(one['sklearn'], 1e6, 1)} | {_fmt(one.get('torch'), 1e6, 1)} "
              f"| {_fmt(one['gemv'], 1e6, 1)} | {_ratio(one['sklearn'], one['cnn_bp'])} "
              f"| {_ratio(one['cnn_bp'], one['gemv'])} | {_fmt(bulk['cnn_bp'], 1e3, 2)} "
              f"| {_fmt(bulk['sklearn'], 1e3, 2)} | {_fmt(bulk.get('torch'), 1e3, 2)} "
              f"| {_fmt(bulk['numpy'], 1e3, 2)} | {_ratio(bulk['cnn_bp'], bulk['numpy'])} |")


def plot(training, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["cnn_bp", "sklearn", "torch", "bound"]
    # one line per word of the workload's name: long names overlapped
    labels = ["\n".join([*n.split(), f"{h} {np.dtype(d).name}"]) for n, h, d, _, _ in training]
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(labels)), 4.5))
    width = 0.8 / len(names)
    for k, system in enumerate(names):
        values = [s.get(system) or 0 for _, _, _, s, _ in training]
        ax.bar(np.arange(len(labels)) + k * width, values, width,
               label="GEMM-only bound" if system == "bound" else system)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("seconds per epoch (log scale)")
    ax.set_title("Adam, batch 200, relu: one training epoch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per timed fit")
    parser.add_argument("--repeats", type=int, default=5, help="timed fits; the best counts")
    parser.add_argument("--data-dir", default=FASHION_MNIST_DIR,
                        help="Fashion-MNIST idx files (the workload is skipped without them)")
    parser.add_argument("--plot", metavar="PATH", help="save a bar chart of s/epoch here")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.repeats = 1, 1
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; "
          f"cnn_bp {cnn_bp.__version__}, scikit-learn {sklearn.__version__}, "
          f"torch {torch.__version__ if torch else 'not installed'}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        training, prediction = run(args)
    if args.plot:
        plot(training, args.plot)
    return training, prediction


if __name__ == "__main__":
    main()
