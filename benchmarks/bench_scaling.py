"""Training speed by thread count T: cnn_bp, scikit-learn and PyTorch.

For T = 1, 2, ... up to the cores this process may run on (or --max-threads,
which may exceed them), one process times an epoch of each system on the
data and networks of benchmarks/bench.py (random 60000 x 784, Adam, batch
200), for hidden (100,) and (512, 256), each in float32 and float64 (or the
one --hidden and --dtype name):

- cnn_bp with its pool limited to T threads
  (``threadpool_limits(T, user_api="cnn_bp")``; BLAS is left alone);
- scikit-learn with BLAS limited to T threads;
- PyTorch, when installed, with ``torch.set_num_threads(T)``.

Prints, per configuration, seconds per epoch (best of --repeats fits of
--epochs epochs, the systems taking turns), each system's speed-up over its
own T = 1 and its efficiency (speed-up / T). The T = 1 row compares the
systems per core, across machines; the rest is this machine's scaling.

Then what a plan of many parts costs (a batch split into T parts of rows,
csrc/team.c): on one core (a child process pinned to it), the T = 16 plan's
parts run one after another against the one-thread epoch, which shows the
work the split adds; and T = 16 forced on this machine against T = 2
(oversubscription, when it has fewer than 16 cores). And why: each product
of a 200-row batch on the private one-thread BLAS, split 16 ways (by rows,
by column tiles, by 4 x 4 tiles, by blocks of input features and their sum;
dW by blocks of input features, by 4 x 4 tiles), its parts one after
another, over the whole product, each call's Python overhead taken off (and
the whole product by torch's BLAS at one thread, when torch is installed).

Then the behaviour under load: another process spinning on one core, at the
fit's priority and then at a higher one (nice -5, when permitted), while the
default fit (T = all cores) and a one-thread fit run; their ratio should stay
near 1 (the default fit's waiting threads spin briefly, then sleep).

    python benchmarks/bench_scaling.py [--quick] [--max-threads N]
        [--hidden 512,256] [--dtype float64] [--no-load] [--no-plan]
"""

import argparse
import os
import subprocess
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from threadpoolctl import threadpool_limits

import cnn_bp
from cnn_bp._threads import available_cores

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import best_of, fit_sklearn_like, fit_torch, quiesce, torch  # noqa: E402

HIDDEN = [(100,)]  # set by --hidden


def _cnn_bp(X, y, epochs):
    return fit_sklearn_like(cnn_bp.MLPClassifier, X, y, HIDDEN[0], epochs)


def _sklearn(X, y, epochs):
    return fit_sklearn_like(SklearnMLPClassifier, X, y, HIDDEN[0], epochs)


def _torch(X, y, epochs):
    return fit_torch(X, y, HIDDEN[0], epochs)


def epoch_seconds(system, threads, X, y, epochs, repeats):
    """Best seconds per epoch of `system` limited to `threads` threads."""
    quiesce()
    if system is _torch:
        torch.set_num_threads(threads)
        return best_of(repeats, lambda: system(X, y, epochs)) / epochs
    api = "cnn_bp" if system is _cnn_bp else "blas"
    with threadpool_limits(limits=threads, user_api=api):
        return best_of(repeats, lambda: system(X, y, epochs)) / epochs


def scaling(X, y, max_threads, epochs, repeats):
    systems = {"cnn_bp": _cnn_bp, "scikit-learn": _sklearn}
    if torch is not None:
        systems["torch"] = _torch
    times = {name: {} for name in systems}
    for threads in range(1, max_threads + 1):
        # the systems take turns, repeat after repeat, so that a spell of a
        # slower (shared) machine falls on all of them alike
        for _ in range(repeats):
            for name, system in systems.items():
                seconds = epoch_seconds(system, threads, X, y, epochs, 1)
                times[name][threads] = min(times[name].get(threads, np.inf), seconds)
    names = list(systems)
    print("| T | " + " | ".join(f"{n} s/epoch | speed-up | efficiency" for n in names) + " |")
    print("|---|" + "---|---|---|" * len(names))
    for threads in range(1, max_threads + 1):
        cells = []
        for n in names:
            speed_up = times[n][1] / times[n][threads]
            cells.append(f"{times[n][threads]:.4f} | {speed_up:.2f} | {speed_up / threads:.2f}")
        print(f"| {threads} | " + " | ".join(cells) + " |")
    return times


PLAN_PARTS = 16


def _one_core_child(X, y, epochs, repeats):
    """In a child pinned to one core before any thread of cnn_bp starts:
    seconds per epoch at T = 1 and T = PLAN_PARTS (whose threads then take
    turns on that core), printed as two numbers."""
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    one = epoch_seconds(_cnn_bp, 1, X, y, epochs, repeats)
    many = epoch_seconds(_cnn_bp, PLAN_PARTS, X, y, epochs, repeats)
    print(one, many)


def plan_costs(hidden, dtype, n, epochs, repeats, X, y):
    """One row of the plan's costs: on one core, T = PLAN_PARTS / T = 1; on
    this machine, T = PLAN_PARTS / T = 2."""
    one_core = None
    if hasattr(os, "sched_setaffinity"):
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--one-core-child", "--hidden",
             ",".join(map(str, hidden)), "--dtype", dtype, "--epochs", str(epochs),
             "--repeats", str(repeats), "--rows", str(n)],
            capture_output=True, text=True, check=True).stdout.split()
        one_core = float(out[-2]), float(out[-1])
    two = epoch_seconds(_cnn_bp, 2, X, y, epochs, repeats)
    many = epoch_seconds(_cnn_bp, PLAN_PARTS, X, y, epochs, repeats)
    return one_core, two, many


# The layers (n_in, n_out) of the two networks whose products are timed split
SPLIT_LAYERS = ((784, 100), (784, 512), (512, 256))


def _gemm(dtype):
    """The private one-thread BLAS's sgemm or dgemm (cnn_bp._threads) and a
    maker of its calls, row-major: C (m, n) = A (m, k) @ B (k, n), or A^T @ B
    with `a_t`, each operand a view with its own leading dimension. A call's
    ctypes arguments are made once, so that timing a list of calls times the
    BLAS and ctypes' own call, not Python building the arguments."""
    import ctypes

    from cnn_bp._threads import thread_blas

    scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    ref = ctypes.POINTER
    fn = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p,
                          *[ref(ctypes.c_int)] * 3, ref(scalar), ctypes.c_void_p,
                          ref(ctypes.c_int), ctypes.c_void_p, ref(ctypes.c_int), ref(scalar),
                          ctypes.c_void_p, ref(ctypes.c_int))(
        thread_blas()["sgemm" if dtype == np.float32 else "dgemm"])
    one, zero = scalar(1), scalar(0)

    def call(m, n, k, A, lda, B, ldb, C, ldc, a_t=False):
        # column-major C^T = B^T A^T: BLAS's m is our n
        def i(v):
            return ctypes.byref(ctypes.c_int(v))
        return (b"N", b"T" if a_t else b"N", i(n), i(m), i(k), ctypes.byref(one),
                B.ctypes.data, i(ldb), A.ctypes.data, i(lda), ctypes.byref(zero),
                C.ctypes.data, i(ldc))
    return fn, call


def _best_seconds(fn, repeats):
    times = []
    for _ in range(max(3, repeats)):
        start = time.perf_counter()
        for _ in range(20):
            fn()
        times.append((time.perf_counter() - start) / 20)
    return min(times)


def _cuts(n, parts, align=1):
    """parts + 1 boundaries of n (inner ones rounded down to `align`)."""
    return [n if k == parts else n * k // parts // align * align for k in range(parts + 1)]


def product_splits(dtype, repeats, rows=200, parts=PLAN_PARTS):
    """Per layer of SPLIT_LAYERS, one product of a `rows`-row batch on the
    private one-thread BLAS, split `parts` ways and run one after another,
    over the whole product: Z = A W by parts of rows, by column tiles (cut
    at 16 values, as the plan cuts them), by sqrt(parts) x sqrt(parts) 2-D
    tiles, by blocks of input features over all rows (each block's Z apart,
    then their sum: numpy adding them, as the plan's parts add their rows);
    dW = A^T delta by blocks of input features over all rows, and by 2-D
    tiles (input-feature block x output-feature block). The splits and
    the whole products take turns, best of max(5, repeats) rounds each, so
    that a slow spell of the machine falls on all of them. The time of a
    call that returns at once (m = 0: ctypes and BLAS's argument checks) is
    taken off each call, as the engine calls BLAS from C. Then the whole Z by
    torch's BLAS at one thread, when torch is installed."""
    fn, call = _gemm(dtype)
    rng = np.random.RandomState(0)
    side = int(round(parts ** 0.5))
    cell = np.zeros((1, 1), dtype)
    empty = [call(0, 1, 1, cell, 1, cell, 1, cell, 1)] * 64

    def best(lists):
        """Seconds of each list of calls, the lists taking turns."""
        times = [np.inf] * len(lists)
        for _ in range(max(5, repeats)):
            for j, calls in enumerate(lists):
                start = time.perf_counter()
                for _ in range(20):
                    for c in calls:
                        fn(*c)
                times[j] = min(times[j], (time.perf_counter() - start) / 20)
        return times
    for n_in, n_out in SPLIT_LAYERS:
        A, W = rng.rand(rows, n_in).astype(dtype), rng.rand(n_in, n_out).astype(dtype)
        D = rng.rand(rows, n_out).astype(dtype)
        Z, G = np.empty((rows, n_out), dtype), np.empty((n_in, n_out), dtype)
        P = np.empty((parts, rows, n_out), dtype)  # Z by blocks of input features
        r, c, f = _cuts(rows, parts), _cuts(n_out, parts, 16), _cuts(n_in, parts, 16)
        r2, c2, f2 = _cuts(rows, side), _cuts(n_out, side, 16), _cuts(n_in, side, 16)

        def z_tiles(rc, cc):
            return [call(b - a, v - u, n_in, A[a:], n_in, W[:, u:], n_out, Z[a:, u:], n_out)
                    for a, b in zip(rc, rc[1:]) for u, v in zip(cc, cc[1:])
                    if b > a and v > u]

        def dw_tiles(fc, cc):
            return [call(b - a, v - u, rows, A[:, a:], n_in, D[:, u:], n_out, G[a:, u:],
                         n_out, True)
                    for a, b in zip(fc, fc[1:]) for u, v in zip(cc, cc[1:])
                    if b > a and v > u]
        z_blocks = [call(rows, n_out, b - a, A[:, a:], n_in, W[a:], n_out, P[k], n_out)
                    for k, (a, b) in enumerate(zip(f, f[1:]))]
        lists = [z_tiles([0, rows], [0, n_out]), z_tiles(r, [0, n_out]),
                 z_tiles([0, rows], c), z_tiles(r2, c2), z_blocks,
                 dw_tiles([0, n_in], [0, n_out]), dw_tiles(f, [0, n_out]), dw_tiles(f2, c2),
                 empty]
        times = best(lists)
        per_call = times[-1] / len(empty)
        z, *z_splits, dw, dw_blocks, dw_2d = (t - len(calls) * per_call
                                              for t, calls in zip(times[:-1], lists))
        z_splits[-1] += _best_seconds(lambda: np.sum(P, axis=0, out=Z), repeats)
        ratios = [t / z for t in z_splits] + [dw_blocks / dw, dw_2d / dw]
        theirs = "–"
        if torch is not None:  # the same whole product by torch's BLAS, one thread
            torch.set_num_threads(1)
            tA, tW, tZ = (torch.from_numpy(x) for x in (A, W, Z))
            theirs = f"{_best_seconds(lambda: torch.mm(tA, tW, out=tZ), repeats) * 1e6:.0f}"
        print(f"| {n_in} x {n_out} | {np.dtype(dtype).name} | {z * 1e6:.0f} | "
              + " | ".join(f"{x:.2f}" for x in ratios) + f" | {dw * 1e6:.0f} | {theirs} |")


def _spinner(nice):
    """A process spinning on one core at `nice` (relative to this one)."""
    code = "import os, time\nos.nice(%d)\nwhile True: pass" % nice
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)


def under_load(X, y, epochs, repeats):
    rows = []
    for label, nice in (("same priority", 0), ("higher priority (nice -5)", -5)):
        spinner = _spinner(nice)
        time.sleep(0.2)
        try:
            if spinner.poll() is not None:  # os.nice(-5) needs the privilege
                rows.append((label, None, None))
                continue
            default = epoch_seconds(_cnn_bp, cnn_bp._plan.num_threads(), X, y, epochs,
                                    repeats)
            one = epoch_seconds(_cnn_bp, 1, X, y, epochs, repeats)
            rows.append((label, default, one))
        finally:
            spinner.kill()
            spinner.wait()
    print(f"\nunder load (another process spinning on one core; default T = "
          f"{cnn_bp._plan.num_threads()}):\n")
    print("| load | default s/epoch | T = 1 s/epoch | default / T = 1 |")
    print("|---|---|---|---|")
    for label, default, one in rows:
        if default is None:
            print(f"| {label} | – | – | (not permitted here) |")
        else:
            print(f"| {label} | {default:.4f} | {one:.4f} | {default / one:.2f} |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-threads", type=int, default=available_cores())
    parser.add_argument("--hidden", help="only these hidden widths, e.g. 512,256 "
                        "(default: 100 and 512,256)")
    parser.add_argument("--dtype", choices=["float32", "float64"],
                        help="only this dtype (default: both)")
    parser.add_argument("--no-load", action="store_true", help="skip the runs under load")
    parser.add_argument("--no-plan", action="store_true", help="skip the plan's costs")
    parser.add_argument("--one-core-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    hiddens = ([tuple(int(h) for h in args.hidden.split(","))] if args.hidden
               else [(100,), (512, 256)])
    dtypes = [args.dtype] if args.dtype else ["float32", "float64"]
    n, epochs, repeats = (2000, 1, 1) if args.quick else (60000, args.epochs, args.repeats)
    n = args.rows or n
    rng = np.random.RandomState(0)
    X, y = rng.rand(n, 784), rng.randint(10, size=n)
    if args.one_core_child:
        HIDDEN[0] = hiddens[0]
        _one_core_child(X.astype(dtypes[0]), y, epochs, repeats)
        return
    for hidden in hiddens:
        HIDDEN[0] = hidden
        for dtype in dtypes:
            print(f"\nrandom {n} x 784 {dtype}, hidden {hidden}, Adam, batch 200; "
                  f"{available_cores()} cores\n")
            scaling(X.astype(dtype), y, args.max_threads, epochs, repeats)
    if not args.no_plan:
        print(f"\nthe plan's cost: T = {PLAN_PARTS} parts of each 200-row batch; on one "
              f"core (its parts one after another) and on this machine's "
              f"{available_cores()} cores (threads above them take turns)\n")
        print(f"| hidden | dtype | one core: T = 1 s/epoch | T = {PLAN_PARTS} s/epoch | ratio "
              f"| here: T = 2 s/epoch | T = {PLAN_PARTS} s/epoch | ratio |")
        print("|---|---|---|---|---|---|---|---|")
        for hidden in hiddens:
            HIDDEN[0] = hidden
            for dtype in dtypes:
                one_core, two, many = plan_costs(hidden, dtype, n, epochs, repeats,
                                                 X.astype(dtype), y)
                cells = ("– | – | –" if one_core is None else
                         f"{one_core[0]:.4f} | {one_core[1]:.4f} | "
                         f"{one_core[1] / one_core[0]:.2f}")
                print(f"| {hidden} | {dtype} | {cells} | {two:.4f} | {many:.4f} | "
                      f"{many / two:.2f} |")
        print(f"\nwhy: a {PLAN_PARTS}-way split of one product of a 200-row batch on the "
              f"private one-thread BLAS, its parts one after another, over the whole "
              f"product (each call packs its operands into OpenBLAS's blocked layout, or, "
              f"below its small-matrix threshold, runs unpacked kernels: small parts do "
              f"more per multiply-add either way)\n")
        side = int(round(PLAN_PARTS ** 0.5))
        print(f"| layer | dtype | Z = A W whole (us) | by rows | by column tiles | "
              f"{side}x{side} tiles | by input-feature blocks, summed | "
              f"dW by input-feature blocks | dW by {side}x{side} tiles | dW whole (us) | "
              f"Z whole by torch (us) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for dtype in dtypes:
            product_splits(np.dtype(dtype).type, repeats)
    if not args.no_load:  # the first configuration
        HIDDEN[0] = hiddens[0]
        under_load(X.astype(dtypes[0]), y, epochs, repeats)


if __name__ == "__main__":
    main()
