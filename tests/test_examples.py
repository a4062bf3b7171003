"""The backpropagation examples run (small sizes) and assert their numbers."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(name, *args):
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)],
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, MPLBACKEND="Agg"))
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_backprop_by_hand_agrees_with_the_hand_computation():
    out = _run("backprop_by_hand.py")
    assert "agrees with the hand computation on all 11 quantities" in out
    assert "GradientCheckReport: passed" in out


def test_xor_is_learned():
    assert "P(y = 1) = 1.0000" in _run("xor.py")


def test_relu_inactive_units_get_no_gradient():
    assert "inactive units: zero delta" in _run("relu_dead_units.py")


def test_activation_comparison_plots(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "sin.png"
    out = _run("activations_sin.py", "--output", png, "--max-iter", "200")
    for activation in ("tanh", "relu", "elu", "leaky_relu", "selu", "softplus", "gelu",
                       "silu", "gelu+tanh"):
        assert any(line.strip().startswith(f"{activation}: training MSE")
                   for line in out.splitlines()), activation
    assert png.stat().st_size > 10_000


def test_dask_search_example_on_a_local_cluster():
    pytest.importorskip("distributed", reason="dask[distributed] not installed")
    assert "the three searches found identical scores: True" in _run("dask_search.py")


def test_optimizer_comparison(tmp_path):
    pytest.importorskip("matplotlib")
    out = _run("optimizers.py", "--epochs", "15", "--output", tmp_path / "opt.png")
    for solver in ("sgd", "adam", "adamw", "nadam", "rmsprop", "adagrad"):
        line = next(line for line in out.splitlines() if line.split()[:1] == [solver])
        assert float(line.split()[-1]) > 0.8, line  # test accuracy
    assert (tmp_path / "opt.png").stat().st_size > 0


def test_beyond_sklearn_tour():
    out = _run("beyond_sklearn.py", "--epochs", "20").splitlines()
    assert [line[:2] for line in out] == ["1.", "2.", "3.", "4.", "5.", "5.", "6."]
    none, balanced = (float(line.split()[-1]) for line in out if line.startswith("5."))
    assert balanced > none + 0.1  # the rare class gets found
    assert out[-1].endswith("same predictions: True")


def test_dropout_batch_norm_example():
    out = _run("dropout_batch_norm.py", "--dataset", "digits", "--epochs", "30").splitlines()
    rows = {line[:24].strip(): line.split()[-4:] for line in out if line[:1].isalpha()}
    for label in ("plain", "dropout 0.2", "batch_norm", "batch_norm + dropout"):
        assert float(rows[label][1]) > 0.95, rows[label]  # test accuracy
    assert "stopped_early_=True" in out[-1]


def test_dask_fit_example_trains_one_model_on_a_local_cluster():
    pytest.importorskip("distributed", reason="dask[distributed] not installed")
    out = _run("dask_fit.py", "--data", "generated", "--epochs", "5", "--rows", "8000")
    lbfgs = next(line for line in out.splitlines() if line.startswith("lbfgs"))
    assert lbfgs.endswith("difference +0.0000"), lbfgs  # the exact distributed gradient
    assert any(line.startswith("adam") for line in out.splitlines())
    assert "predict on a dask array: Array, equal to the local model's: True" in out


def test_a_killed_fit_resumes_from_its_checkpoint():
    out = _run("checkpoint_resume.py", "--epochs", "30", "--kill-at", "5")
    held = int(re.search(r"its checkpoint holds (\d+) epochs", out).group(1))
    assert 5 <= held < 30
    first, last = map(int, re.search(r"trained epochs (\d+)\.\.(\d+)", out).groups())
    assert (first, last) == (held + 1, 30)
    assert float(re.search(r"differ by at most (\S+)", out).group(1)) < 1e-9
    assert "run a third time: 0 epochs trained, the model of the second run: True" in out
