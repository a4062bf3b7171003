"""cnn_bp: a multi-layer perceptron trained by backpropagation, with a
compiled core and scikit-learn's API.

>>> from cnn_bp import MLPClassifier, MLPRegressor
"""

from ._inspection import BackpropTrace, GradientCheckReport, backprop_trace, check_gradients
from ._mlp import MLPClassifier, MLPRegressor

__version__ = "0.1.0"
__all__ = [
    "BackpropTrace",
    "GradientCheckReport",
    "MLPClassifier",
    "MLPRegressor",
    "__version__",
    "backprop_trace",
    "check_gradients",
]
