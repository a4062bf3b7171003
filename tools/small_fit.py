"""A small tour of the compiled core for valgrind: every solver, dense and
sparse input, float32 and float64, predict, trace, save and load."""

import tempfile
import warnings

import numpy as np
import scipy.sparse as sp

import cnn_bp

warnings.simplefilter("ignore")
rng = np.random.RandomState(0)
X = rng.normal(size=(120, 6))
y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
for dtype in (np.float64, np.float32):
    for solver in ("adam", "sgd", "lbfgs"):
        for data in (X.astype(dtype), sp.csr_matrix(X.astype(dtype))):
            clf = cnn_bp.MLPClassifier((7, 5), solver=solver, max_iter=5, batch_size=32,
                                       random_state=0).fit(data, y)
            clf.predict_proba(data)
reg = cnn_bp.MLPRegressor(hidden_layer_sizes=(4,), activation="elu", max_iter=5).fit(X, X[:, :2])
reg.predict(X)
print(cnn_bp.check_gradients(clf, X[:5], y[:5]).passed,
      cnn_bp.backprop_trace(reg, X[:4], X[:4, :2]).loss)
with tempfile.TemporaryDirectory() as folder:
    cnn_bp.save(clf, f"{folder}/m.npz")
    assert (cnn_bp.load(f"{folder}/m.npz").predict(X) == clf.predict(X)).all()
print("small fit done")
