"""
Learning-rate schedules
=======================

``lr_schedule`` sets each epoch's learning rate for every stochastic solver:
`cnn_bp.schedules` has cosine annealing, step decay and a linear warm-up
(torch's formulas, stepped once per epoch). Left: the rates; right: the
training loss of Adam on the digits with each.
"""

import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from cnn_bp import MLPClassifier
from cnn_bp.schedules import CosineAnnealing, StepDecay, Warmup

# Stopped early by design: each schedule runs a fixed 40 epochs: a schedule
# is defined over a set number of epochs. scikit-learn's ConvergenceWarning
# would say only that, so that one warning is silenced.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)
X = X / 16
epochs = 40
schedules = {
    "constant": None,
    "CosineAnnealing(T_max=40)": CosineAnnealing(T_max=epochs),
    "StepDecay(10, 0.5)": StepDecay(step_size=10, gamma=0.5),
    "Warmup(5)": Warmup(epochs=5),
}
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
for name, schedule in schedules.items():
    rates = [0.003 if schedule is None else schedule(e, 0.003) for e in range(epochs)]
    left.plot(rates, label=name)
    clf = MLPClassifier(hidden_layer_sizes=(64,), learning_rate_init=0.003,
                        lr_schedule=schedule, max_iter=epochs, tol=0,
                        random_state=0).fit(X, y)
    right.semilogy(clf.loss_curve_, label=name)
left.set(xlabel="epoch", ylabel="learning rate")
right.set(xlabel="epoch", ylabel="training loss")
left.legend()
fig.tight_layout()
plt.show()
