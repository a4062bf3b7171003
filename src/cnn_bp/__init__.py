"""cnn_bp: a multi-layer perceptron trained by backpropagation, with a
compiled core and scikit-learn's API.

>>> from cnn_bp import MLPClassifier, MLPRegressor
"""

from . import schedules
from ._inspection import BackpropTrace, GradientCheckReport, backprop_trace, check_gradients
from ._mlp import MLPClassifier, MLPRegressor
from ._persistence import ModelFileError, load, save
from ._plotting import LossCurveDisplay
from ._version import __version__

__all__ = [
    "BackpropTrace",
    "GradientCheckReport",
    "LossCurveDisplay",
    "MLPClassifier",
    "MLPRegressor",
    "ModelFileError",
    "__version__",
    "backprop_trace",
    "check_gradients",
    "load",
    "save",
    "schedules",
]
