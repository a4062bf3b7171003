"""Fork during fits, many times, and show the stacks of a child that hangs.

    OPENBLAS_CORETYPE=Haswell python tools/fork_stress.py [runs] [solver]

Each run starts a fit in a thread, forks once it trains, and has the child
partial_fit and fit that estimator (as tests/test_threads.py's fork test, which
runs 20 times). A child that does not answer in 20 s is a hang: its Python and
native stacks are printed (py-spy and gdb where installed) and the script
exits 1. OPENBLAS_CORETYPE=Haswell makes the private OpenBLAS take a work
buffer (and its table's lock) for a part's products, as on machines without
AVX-512's small-matrix kernels; without the fork gate (csrc/thread_blas.c)
about one fork in 250 hung there.
"""

import multiprocessing
import shutil
import subprocess
import sys
import threading
import time
import warnings

import numpy as np

from cnn_bp import MLPClassifier


def _in_child(model, X, y, conn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.partial_fit(X[:200], y[:200])
        model.set_params(max_iter=2).fit(X[:200], y[:200])
    conn.send(model.n_iter_)


def _fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)


def _show_stacks(pid):
    if shutil.which("py-spy"):
        subprocess.run(["py-spy", "dump", "--native", "--pid", str(pid)])
    if shutil.which("gdb"):
        subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                       stderr=subprocess.DEVNULL)


def main(runs=1000, solver="adam"):
    rng = np.random.RandomState(0)
    X, y = rng.rand(2000, 64), rng.randint(0, 2, 2000)
    context = multiprocessing.get_context("fork")
    start = time.perf_counter()
    for run in range(runs):
        model = MLPClassifier((64,), solver=solver, max_iter=30, tol=0, random_state=run)
        fit = threading.Thread(target=_fit, args=(model, X, y))
        fit.start()
        while "_engine" not in vars(model) or model._engine.rows_trained == 0:
            time.sleep(0.0005)
        time.sleep((run % 7) * 0.0003)  # land the fork at varied points of a batch
        parent_end, child_end = context.Pipe()
        child = context.Process(target=_in_child, args=(model, X, y, child_end))
        child.start()
        if not parent_end.poll(20):
            print(f"run {run}: the child (pid {child.pid}) hangs", flush=True)
            _show_stacks(child.pid)
            child.kill()
            fit.join()
            return 1
        assert parent_end.recv() == 2
        child.join(20)
        fit.join(60)
    print(f"{runs} forks, no hang ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*(int(a) if a.isdigit() else a for a in sys.argv[1:])))
