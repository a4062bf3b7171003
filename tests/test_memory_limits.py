"""Running out of memory is a MemoryError, never a process exit.

OpenBLAS ends the process when a work buffer it maps fails (exit(1) from a
helper thread, "Memory allocation still failed after 10 retries"); the
engine maps the buffers of a fit's threads before training instead
(csrc/thread_blas.c) and raises MemoryError where they cannot be. Each limit
runs in its own process (tests/memory_limit_fit.py): a 784-2048-10 float32
network fitted on T threads with RLIMIT_AS set some MiB above the address
space in use, from too little for anything to enough for all."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("memory_limit_fit.py")
HEADROOM_MIB = [0, 25, 50, 100, 150, 200, 250, 300, 350, 400, 600, 1000]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="RLIMIT_AS and /proc/self/status: Linux")


def _fit_under_limit(headroom, threads):
    result = subprocess.run([sys.executable, str(SCRIPT), str(headroom), str(threads)],
                            capture_output=True, text=True, timeout=300)
    # rc 0: no exit(1) from OpenBLAS, no crash
    assert result.returncode == 0, (headroom, threads, result.stderr[-3000:])
    return json.loads(result.stdout.splitlines()[-1])


def _check(report):
    if report["outcome"] == "fitted":
        assert report["n_iter"] == 2 and not report["unchanged"], report
    else:
        assert report["outcome"].startswith("MemoryError"), report
        assert report["unchanged"] and report["n_iter"] == 1, report  # as it was
    assert report["shapes"] and report["dtype"] == "float32", report


@pytest.mark.parametrize("threads", [4, 16])
def test_a_sweep_of_memory_limits_ends_in_a_model_or_memory_error(threads):
    headrooms = HEADROOM_MIB if threads == 4 else [0, 150, 400, 800, 2000]
    reports = [_fit_under_limit(h, threads) for h in headrooms]
    for report in reports:
        _check(report)
    outcomes = [r["outcome"] for r in reports]
    assert outcomes[0].startswith("MemoryError") and outcomes[-1] == "fitted", outcomes
    # the threads' BLAS buffers are refused where they do not fit: the case
    # that ended the process
    assert any("BLAS work buffers" in o for o in outcomes), outcomes
    # more memory never turns a fit into an error
    fitted = [o == "fitted" for o in outcomes]
    assert fitted == sorted(fitted), outcomes
