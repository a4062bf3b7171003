"""Model files from an attacker: 5,000 mutations of saved models (hypothesis,
tests/fuzz_model_files.py) loaded in a subprocess under an address-space
limit. No crash, no hang, no exception but ModelFileError, no file that
loads and then fails to predict, and a bounded allocation per load."""

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

SCRIPT = Path(__file__).with_name("fuzz_model_files.py")
LIMIT = 4 << 30  # address space: room for a 2 GiB allocation, were one made
# The documented bound (cnn_bp.load's docstring): what a load may allocate is
# its arrays, then the network built from them: a few times the file's size;
# the largest file here is the nested-header one (< 1 MiB, MAX_HEADER_BYTES).
PEAK_BOUND = 32 << 20


def _run(*args, timeout):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))

    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                            text=True, timeout=timeout, preexec_fn=limit)
    assert result.returncode == 0, result.stderr[-3000:]  # a crash ends here
    return json.loads(result.stdout.splitlines()[-1])


def test_five_thousand_mutated_model_files():
    report = _run("5000", timeout=900)
    outcomes = report["outcomes"]
    print(json.dumps(report, indent=1))  # the outcome counts, in the test's output
    findings = {k: v for k, v in outcomes.items() if not k.startswith(("kind ", "loaded",
                                                                       "refused"))}
    findings.update({k: v for k, v in outcomes.items() if k.startswith("loaded, predict")})
    assert not findings, findings
    assert outcomes.get("loaded", 0) + outcomes["refused"] == report["examples"] == 5000
    assert outcomes["refused"] > 1000 and outcomes.get("loaded", 0) > 0  # both are reached
    assert sum(v for k, v in outcomes.items() if k.startswith("kind ")) == 5000
    assert len([k for k in outcomes if k.startswith("kind ")]) == 11  # every mutation ran
    assert report["peak"]["bytes"] < PEAK_BOUND, report["peak"]


def test_the_two_gigabyte_cases_are_refused_in_kilobytes():
    """The 2 MiB file that inflated to 2.2 GB, and the 4 KB file declaring
    [1, 150000000, 1] (checksums recomputed), took gigabytes: now each is
    refused before anything of its size is allocated (under 100 MB)."""
    report = _run("--known-cases", timeout=300)
    for case in ("bomb", "huge_layers"):
        assert report[case]["outcome"].startswith("refused"), report[case]
        assert report[case]["peak_bytes"] < 100 << 20, report[case]
    assert "inflate" in report["bomb"]["outcome"]
    assert "150000000" in report["huge_layers"]["outcome"]
