"""Fit a 784-2048-10 float32 network under an address-space limit: run by
tests/test_memory_limits.py, one process per limit.

    python memory_limit_fit.py HEADROOM_MIB THREADS

The model is fitted once first (one thread, no limit); then RLIMIT_AS is set
HEADROOM_MIB above the address space in use, and the model is fitted again
on T = THREADS threads. Prints one JSON line: the outcome ("fitted" or
"MemoryError") and whether the model after it is the one before it (a
MemoryError must leave it as it was) or a new fit of the right shapes.
"""
import json
import resource
import sys
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from cnn_bp import MLPClassifier


def address_space():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) << 10
    raise RuntimeError("no VmSize in /proc/self/status")


def main(headroom_mib, threads):
    warnings.simplefilter("ignore")  # ConvergenceWarning after two epochs
    rng = np.random.default_rng(0)
    X = rng.random((2000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 2000)
    clf = MLPClassifier((2048,), max_iter=1, random_state=0)
    with threadpool_limits(1, user_api="cnn_bp"):
        clf.fit(X[:200], y[:200])
    before = [c.copy() for c in clf.coefs_ + clf.intercepts_]
    limit = address_space() + (headroom_mib << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        with threadpool_limits(threads, user_api="cnn_bp"):
            clf.set_params(max_iter=2, random_state=1).fit(X, y)
        outcome = "fitted"
    except MemoryError as e:
        outcome = f"MemoryError: {e}"
    after = clf.coefs_ + clf.intercepts_
    unchanged = all(np.array_equal(a, b) for a, b in zip(before, after))
    shapes = [a.shape for a in after] == [(784, 2048), (2048, 10), (2048,), (10,)]
    print(json.dumps({"outcome": outcome, "unchanged": unchanged, "shapes": shapes,
                      "dtype": str(after[0].dtype), "n_iter": clf.n_iter_}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
