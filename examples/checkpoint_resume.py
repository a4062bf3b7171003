"""A fit that is killed, then run again: it resumes from its checkpoint.

The fit (digits, a (256, 256) network, Adam) runs in a child process with
``checkpoint_dir`` set. This script kills the child with SIGKILL, as the
OOM killer or a pre-empted machine would, once the child's checkpoint holds
--kill-at epochs. Then it runs
the same fit again: the fit resumes after the epochs in that checkpoint and
ends with the model of a fit that was never stopped. A third run finds the
checkpoint of a finished fit and returns the model without training.

    python examples/checkpoint_resume.py [--epochs 40] [--kill-at 10]
"""

import argparse
import contextlib
import glob
import io
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

import cnn_bp
from cnn_bp import _checkpoint


def fit(directory, epochs):
    """The fit, verbose; returns the model and the epochs it reported."""
    X, y = load_digits(return_X_y=True)
    model = cnn_bp.MLPClassifier((256, 256), max_iter=epochs, random_state=0, verbose=True,
                                 checkpoint_dir=directory)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X / 16, y)
    return model, out.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--kill-at", type=int, default=10,
                        help="kill the child once its checkpoint holds this many epochs")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the directory, in the child
    args = parser.parse_args()
    if args.child:  # a checkpoint after every epoch (not every 5 s): killed mid-fit
        _checkpoint.SECONDS = 0.0
        print(fit(args.child, args.epochs)[1], flush=True)
        return
    with tempfile.TemporaryDirectory() as directory:
        child = subprocess.Popen([sys.executable, __file__, "--child", directory,
                                  "--epochs", str(args.epochs)],
                                 stdout=subprocess.DEVNULL)
        while child.poll() is None and checkpoint_epochs(directory) < args.kill_at:
            time.sleep(0.005)
        child.kill()
        child.wait()
        (path,) = list_checkpoints(directory)
        saved = cnn_bp.load(path)
        print(f"killed the child (SIGKILL); its checkpoint holds {saved.n_iter_} epochs")
        model, report = fit(directory, args.epochs)
        epochs = re.findall(r"^Iteration (\d+),", report, re.M)
        print(report.splitlines()[0])
        print(f"run again: trained epochs {epochs[0]}..{epochs[-1]}")
        reference, _ = fit(None, args.epochs)
        differ = max(np.abs(a - b).max() for a, b in zip(model.coefs_, reference.coefs_))
        print(f"the model of a fit never stopped: weights differ by at most {differ:.1e}")
        again, report = fit(directory, args.epochs)
        print(f"run a third time: {len(re.findall('^Iteration', report, re.M))} epochs "
              f"trained, the model of the second run: "
              f"{all(np.array_equal(a, b) for a, b in zip(again.coefs_, model.coefs_))}")


def list_checkpoints(directory):
    return glob.glob(os.path.join(directory, "MLPClassifier-*.npz"))


def checkpoint_epochs(directory):
    """The epochs the child's checkpoint holds (0: none yet)."""
    paths = list_checkpoints(directory)
    return cnn_bp.load(paths[0]).n_iter_ if paths else 0


if __name__ == "__main__":
    main()
