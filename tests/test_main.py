"""The main job (python -m cnn_bp), the Fashion-MNIST reader, the examples and
the benchmark, each run as a user would (small sizes)."""

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn_bp.__main__ import main
from cnn_bp.datasets import load_fashion_mnist, read_idx

ROOT = Path(__file__).resolve().parents[1]


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fake_fashion(tmp_path_factory):
    """A Fashion-MNIST folder of the real format, with learnable tiny images."""
    folder = tmp_path_factory.mktemp("fashion")
    rng = np.random.RandomState(0)
    for prefix, n in (("train", 300), ("t10k", 100)):
        labels = rng.randint(10, size=n)
        images = rng.randint(0, 60, size=(n, 28, 28))
        for k in range(10):  # class k brightens row band k
            images[labels == k, 2 * k : 2 * k + 3, :] += 180
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def _rows(text):
    """{system: (accuracy, seconds, epochs)} from the main job's table."""
    found = re.findall(r"^(cnn_bp|scikit-learn)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$", text, re.M)
    return {name: (float(acc), float(sec), int(ep)) for name, acc, sec, ep in found}


def test_main_job_on_digits_matches_sklearn():
    """`python -m cnn_bp` with no arguments, as the README says: both rows,
    cnn_bp's accuracy >= 0.95 and within one point of scikit-learn's."""
    out = subprocess.run([sys.executable, "-m", "cnn_bp"], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    rows = _rows(out)
    assert set(rows) == {"cnn_bp", "scikit-learn"}, out
    ours, theirs = rows["cnn_bp"][0], rows["scikit-learn"][0]
    assert ours >= 0.95 and abs(ours - theirs) <= 0.01, out


def test_main_job_on_fashion_mnist_files(fake_fashion, capsys):
    code = main(["--dataset", "fashion-mnist", "--data-dir", str(fake_fashion),
                 "--epochs", "15", "--hidden", "32", "--dtype", "float64"])
    out = capsys.readouterr().out
    assert code == 0
    rows = _rows(out)
    assert rows["cnn_bp"][0] >= 0.9 and rows["cnn_bp"][2] == rows["scikit-learn"][2]
    assert "Iteration 1, loss = " in out  # progress is shown for fashion-mnist
    assert "300 train / 100 test rows, 784 features" in out
    assert "round-off" not in out  # float64: the same model, nothing to explain


def test_main_job_in_float32_says_why_the_models_differ(fake_fashion, capsys):
    code = main(["--dataset", "fashion-mnist", "--data-dir", str(fake_fashion),
                 "--epochs", "3", "--hidden", "8", "--progress", "off"])  # float32
    out = capsys.readouterr().out
    assert code == 0 and "dtype=float32" in out
    assert out.rstrip().endswith(
        "In float64 (--dtype\nfloat64) cnn_bp's model is scikit-learn's to round-off.")


@pytest.mark.parametrize("option", [["--solver", "nadam"], ["--activation", "gelu"]])
def test_options_scikit_learn_lacks_train_cnn_bp_alone(option, capsys):
    assert main([*option, "--epochs", "20", "--hidden", "32"]) == 0
    out = capsys.readouterr().out
    assert f"scikit-learn has no {option[0][2:]} {option[1]}" in out
    rows = _rows(out)
    assert set(rows) == {"cnn_bp"} and rows["cnn_bp"][0] >= 0.85


def test_main_job_names_the_package_when_files_are_missing(tmp_path, capsys):
    assert main(["--dataset", "fashion-mnist", "--data-dir", str(tmp_path)]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


def test_help_documents_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for option in ("--hidden", "--activation", "--solver", "--epochs", "--dtype", "--seed"):
        assert option in out


def test_reader_returns_scaled_images(fake_fashion):
    X_train, y_train, X_test, y_test = load_fashion_mnist(fake_fashion)
    assert X_train.shape == (300, 784) and X_test.shape == (100, 784)
    assert X_train.dtype == np.float32 and 0 <= X_train.min() and X_train.max() <= 1
    assert y_train.shape == (300,) and set(np.unique(y_test)) <= set(range(10))


def test_reader_rejects_corrupt_files(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + np.array([10], dtype=">i4").tobytes() + b"abc")
    with pytest.raises(ValueError, match="does not match"):
        read_idx(path)
    with gzip.open(path, "wb") as f:
        f.write(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(path)


def _run_script(*args, timeout=300):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_digits_example_runs():
    result = _run_script(ROOT / "examples" / "digits.py", "--max-iter", "30")
    assert result.returncode == 0, result.stderr
    assert "largest weight difference from scikit-learn" in result.stdout


def test_fashion_mnist_example_runs(fake_fashion):
    result = _run_script(ROOT / "examples" / "fashion_mnist.py", "--data-dir", fake_fashion,
                         "--max-iter", "5", "--hidden", "16")
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout


def test_benchmark_smoke_run():
    result = _run_script(ROOT / "benchmarks" / "bench.py", "--quick")
    assert result.returncode == 0, result.stderr
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| digits")]
    assert len(rows) == 4  # training and prediction tables, float32 and float64
    for row in rows[:2]:  # cnn_bp and scikit-learn s/epoch, GEMM bound: positive
        assert all(float(row[k]) > 0 for k in (4, 5, 7, 14, 15))
    for row in rows[2:]:  # 1-row µs of cnn_bp, scikit-learn, the GEMV bound; ratio
        assert all(float(row[k]) > 0 for k in (4, 5, 7, 9))


def test_thread_benchmark_smoke_run():
    result = _run_script(ROOT / "benchmarks" / "bench_threads.py", "--quick")
    assert result.returncode == 0, result.stderr
    assert "ratio" in result.stdout


def test_scaling_benchmark_smoke_run():
    result = _run_script(ROOT / "benchmarks" / "bench_scaling.py", "--quick", "--no-load",
                         "--max-threads", "2")
    assert result.returncode == 0, result.stderr
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| ")]
    scaling = [row for row in rows if row[1].strip() in ("1", "2")]
    plan = [row for row in rows if row[1].strip().startswith("(")]
    splits = [row for row in rows if " x " in row[1]]
    assert len(scaling) == 8 and len(plan) == 4 and len(splits) == 6
    header = next(line for line in result.stdout.splitlines() if line.startswith("| layer"))
    assert all(len(row) == len(header.split("|")) for row in splits)  # a figure a column
    for row in plan + splits:  # every figure a positive number (torch's: where installed)
        assert all(float(cell) > 0 for cell in row[3:-1] if cell.strip() != "–")


def test_interrupt_benchmark_smoke_run():
    result = _run_script(ROOT / "benchmarks" / "bench_interrupt.py", "--quick")
    assert result.returncode == 0, result.stderr
    rows = [line.split("|") for line in result.stdout.splitlines()
            if line.startswith(("| cnn_bp", "| scikit-learn"))]
    assert len(rows) == 6  # fit, one huge batch, then predict
    assert all(float(row[2]) > 0 and float(row[3]) > 0 for row in rows)


def test_checkpoint_benchmark_smoke_run():
    result = _run_script(ROOT / "benchmarks" / "bench_checkpoints.py", "--quick")
    assert result.returncode == 0, result.stderr
    rows = [line.split("|") for line in result.stdout.splitlines()
            if line.startswith("| (")]
    assert len(rows) == 4  # (100,) and (512, 256), float64 and float32
    assert all(float(row[3]) > 0 and float(row[4]) > 0 for row in rows)
    assert "key (hash of X, y)" in result.stdout


def test_dask_benchmark_smoke_run():
    pytest.importorskip("distributed", reason="dask[distributed] not installed")
    result = _run_script(ROOT / "benchmarks" / "bench_dask.py", "--quick")
    assert result.returncode == 0, result.stderr
    rows = [line.split("|") for line in result.stdout.splitlines()
            if line.startswith(("| in memory", "| LocalCluster"))]
    assert len(rows) == 3
    for row in rows:  # seconds per epoch and of training: positive; a share in [0, 1)
        assert float(row[2]) > 0 and float(row[3]) > 0
        assert 0 <= float(row[4].strip(" %")) < 100
