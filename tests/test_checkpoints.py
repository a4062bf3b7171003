"""checkpoint_dir: a fit killed at any instant resumes to the model of a fit
never stopped; a finished fit is returned without training; clones and
other data never share a checkpoint; bad directories and damaged or
unwritable checkpoints are clear errors or warnings, never a wrong model.
The kills are real (SIGKILL) in processes of their own
(tests/checkpoint_fit.py)."""

import contextlib
import glob
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

import cnn_bp
from cnn_bp import _checkpoint, _model_file

SCRIPT = Path(__file__).with_name("checkpoint_fit.py")


def _run(directory, config, kill_after=None, timeout=120):
    args = [sys.executable, str(SCRIPT), str(directory), config]
    if kill_after is not None:
        args.append(str(kill_after))
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def _fit(directory, config):
    result = _run(directory, config)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def _same_model(a, b):
    for x, y in zip(a["params"], b["params"]):
        np.testing.assert_array_equal(x, y)  # bitwise (JSON keeps every float's bits)


@pytest.fixture(scope="module")
def uninterrupted():
    return {config: _fit("", config) for config in ("adam", "sgd", "adam-4-threads")}


@pytest.mark.parametrize("config", ["adam", "sgd", "adam-4-threads"])
def test_a_fit_killed_after_epoch_8_resumes_to_the_same_model(tmp_path, config,
                                                               uninterrupted):
    killed = _run(tmp_path, config, kill_after=8)
    assert killed.returncode == -signal.SIGKILL
    resumed = _fit(tmp_path, config)
    assert resumed["first_epoch"] == 9  # it resumed after epoch 8
    assert resumed["n_iter"] == uninterrupted[config]["n_iter"]
    _same_model(resumed, uninterrupted[config])
    again = _fit(tmp_path, config)  # finished: returned without training
    assert again["epochs"] == 0
    _same_model(again, uninterrupted[config])


def test_lbfgs_resumes_from_its_last_iterate(tmp_path):
    """L-BFGS's checkpoint holds its iterate after each iteration: killed
    after iteration 5, the fit resumes there, with a fresh curvature memory
    (scipy keeps it to itself), so its model is another good one."""
    reference = _fit("", "lbfgs")
    killed = _run(tmp_path, "lbfgs", kill_after=5)
    assert killed.returncode == -signal.SIGKILL
    resumed = _fit(tmp_path, "lbfgs")
    assert resumed["resumed_after"] == 5 and resumed["n_iter"] == reference["n_iter"] == 40
    assert abs(resumed["score"] - reference["score"]) < 0.02


def test_twenty_kills_at_random_instants_always_resume_to_the_same_model(tmp_path,
                                                                          uninterrupted):
    """Killed anywhere: while importing, setting up, training, or writing a
    checkpoint (written after every epoch here); each run again succeeds
    with the model of the fit never stopped."""
    rng = random.Random(0)
    seconds = []
    for run in range(20):
        directory = tmp_path / str(run)
        process = subprocess.Popen([sys.executable, str(SCRIPT), str(directory), "adam"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        start = time.monotonic()
        time.sleep(rng.uniform(0.5, 2.5))
        process.kill()
        process.communicate(timeout=60)
        seconds.append(time.monotonic() - start)
        resumed = _fit(directory, "adam")
        _same_model(resumed, uninterrupted["adam"])
        assert not glob.glob(str(directory / ".*.tmp"))  # a killed write's is removed
    assert max(seconds) > 1.5  # kills reached training, not only the import


def _digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y


def test_a_finished_fit_is_returned_without_training(tmp_path):
    X, y = _digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        first = cnn_bp.MLPClassifier((16,), max_iter=5, random_state=0,
                                     checkpoint_dir=tmp_path).fit(X, y)
    assert len(os.listdir(tmp_path)) == 1
    again = cnn_bp.MLPClassifier((16,), max_iter=5, random_state=0, checkpoint_dir=tmp_path,
                                 learning_rate_init=1e-3)
    rows = again.fit(X, y)._engine.rows_trained
    assert rows == 0  # nothing trained
    np.testing.assert_array_equal(again.predict_proba(X), first.predict_proba(X))
    assert again.n_iter_ == first.n_iter_ and again.loss_curve_ == first.loss_curve_


def test_other_parameters_or_data_train_from_scratch(tmp_path):
    """Keys: the parameters that shape the model and the data (not
    checkpoint_dir or verbose); each fit below trains, and files differ."""
    X, y = _digits()
    fits = [dict(params=dict(random_state=0), X=X),
            dict(params=dict(random_state=1), X=X),
            dict(params=dict(random_state=0, alpha=1e-3), X=X),
            dict(params=dict(random_state=0), X=X * 0.5)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for fit in fits:
            model = cnn_bp.MLPClassifier((16,), max_iter=3, checkpoint_dir=tmp_path,
                                         **fit["params"])
            assert model.fit(fit["X"], y)._engine.rows_trained == 3 * len(y)
        assert len(os.listdir(tmp_path)) == len(fits)
        verbose = cnn_bp.MLPClassifier((16,), max_iter=3, checkpoint_dir=tmp_path, verbose=0,
                                       random_state=0)
        assert verbose.fit(X, y)._engine.rows_trained == 0  # verbose is not keyed
    assert len(os.listdir(tmp_path)) == len(fits)


def test_warm_start_fits_each_train_on(tmp_path):
    """warm_start starts from the fitted parameters, which key the checkpoint
    too: a loop of warm-start fits trains at every turn, as without
    checkpoints."""
    X, y = _digits()
    models = {}
    for directory in (None, tmp_path):
        model = cnn_bp.MLPClassifier((16,), max_iter=2, random_state=0, warm_start=True,
                                     checkpoint_dir=directory)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for _ in range(3):
                rows = model._engine.rows_trained if hasattr(model, "_engine") else 0
                assert model.fit(X, y)._engine.rows_trained == rows + 2 * len(y)
        models[directory] = model
    np.testing.assert_array_equal(models[None].coefs_[0], models[tmp_path].coefs_[0])
    assert len(os.listdir(tmp_path)) == 3


def test_a_directory_that_cannot_be_written_is_an_error_before_training(tmp_path):
    X, y = _digits()
    blocker = tmp_path / "a file"
    blocker.write_text("not a directory")
    model = cnn_bp.MLPClassifier((16,), max_iter=2, checkpoint_dir=blocker / "sub")
    with pytest.raises(ValueError, match="checkpoint_dir=.*cannot be written"):
        model.fit(X, y)
    assert not hasattr(model, "coefs_")  # left as it was


def test_a_lambda_parameter_cannot_key_a_checkpoint(tmp_path):
    X, y = _digits()
    model = cnn_bp.MLPClassifier((16,), max_iter=2, checkpoint_dir=tmp_path,
                                 lr_schedule=lambda epoch, lr: lr)
    with pytest.raises(ValueError, match="cannot be hashed"):
        model.fit(X, y)


def test_a_damaged_checkpoint_warns_and_trains_afresh(tmp_path):
    X, y = _digits()
    params = dict(hidden_layer_sizes=(16,), max_iter=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cnn_bp.MLPClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
        reference = cnn_bp.MLPClassifier(**params).fit(X, y)
    (path,) = tmp_path.iterdir()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte inside an array
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="damaged and was not used"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = cnn_bp.MLPClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert model._engine.rows_trained == 4 * len(y)  # trained from scratch
    np.testing.assert_array_equal(model.coefs_[0], reference.coefs_[0])
    assert cnn_bp.load(path).n_iter_ == 4  # and its checkpoint written anew


def test_a_full_disk_keeps_the_previous_checkpoint_and_training_goes_on(tmp_path,
                                                                        monkeypatch):
    X, y = _digits()
    params = dict(hidden_layer_sizes=(16,), max_iter=6, random_state=0)
    monkeypatch.setattr(_checkpoint, "SECONDS", 0.0)
    real = _model_file.write_contents
    writes = []

    def disk_full_after_epoch_2(file, header, arrays):
        writes.append(header["extra"]["epochs"])
        if header["extra"]["epochs"] > 2:
            raise OSError(28, "No space left on device")
        real(file, header, arrays)

    monkeypatch.setattr(_model_file, "write_contents", disk_full_after_epoch_2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = cnn_bp.MLPClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert model.n_iter_ == 6 and writes == [1, 2, 3, 4, 5, 6, 6]
    assert sum("No space left" in str(w.message) for w in caught) == 5
    (path,) = tmp_path.iterdir()  # the previous checkpoint, whole; no temporary file
    assert cnn_bp.load(path).n_iter_ == 2


def test_grid_search_run_again_skips_the_candidates_it_finished(tmp_path):
    """GridSearchCV(n_jobs=2) over 6 candidates, killed once 3 have finished
    (their 3 folds each), then run again: it trains only the others, and its
    results are those of a search never stopped."""
    code = """
import json, sys, warnings
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
import cnn_bp
X, y = load_digits(return_X_y=True)
warnings.simplefilter("ignore")
search = GridSearchCV(
    cnn_bp.MLPClassifier((16,), max_iter=15, random_state=0,
                         checkpoint_dir=sys.argv[1] or None),
    {"alpha": [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]}, cv=3, n_jobs=2)
search.fit(X / 16, y)
print(json.dumps({"best": search.best_params_,
                   "scores": search.cv_results_["mean_test_score"].tolist()}))
"""
    def run(directory):
        result = subprocess.run([sys.executable, "-c", code, str(directory)],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.splitlines()[-1])

    reference = run("")
    process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while len(_finished(tmp_path)) < 9 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):  # (unless the search already ended)
        os.killpg(process.pid, signal.SIGKILL)  # the search and its workers
    process.communicate(timeout=60)
    finished_before = _finished(tmp_path)
    assert 9 <= len(finished_before) < 19  # 6 x 3 folds and the refit
    again = run(tmp_path)
    assert again == reference
    # the folds finished before the kill were not trained again: their files
    # are untouched
    assert all(os.stat(p).st_mtime_ns == t for p, t in finished_before.items())


def _finished(directory):
    """{path: mtime} of the finished checkpoints in `directory`."""
    done = {}
    for path in glob.glob(os.path.join(directory, "MLPClassifier-*.npz")):
        try:
            header, _ = _model_file.read(path)
        except _model_file.ModelFileError:
            continue
        if header["extra"]["finished"]:
            done[path] = os.stat(path).st_mtime_ns
    return done
