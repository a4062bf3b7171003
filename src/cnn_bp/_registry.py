"""The registry: every activation, loss and solver of cnn_bp, in one table each.

Everything that names them comes from here. At build time, setup.py runs
``tools/generate.py``, which renders templates with these tables: the C
enums and the switch helpers of ``csrc/registry.h`` (a name's position is
its C code) and the Cython declarations of ``cnn_bp/_kernels.pxd``. At run
time the estimators' ``_parameter_constraints`` and docstrings, the command
line's choices, the engine's codes and the docs' tables read them.
CONTRIBUTING.md has the recipes for adding one; ``tests/test_registry.py``
checks that everything agrees.

This module imports nothing from cnn_bp (setup.py loads it by path, before
anything is compiled), and nothing beyond the standard library.
"""

from numbers import Real
from typing import NamedTuple


class Activation(NamedTuple):
    """An activation f. `output` marks the ones only an output layer has
    (listed last); `needs_z`, those whose derivative is read off Z^l rather
    than A^l = f(Z^l) (the engine then keeps Z^l); `sklearn`, those
    scikit-learn's MLP has too. `doc` is the estimators' docstring entry;
    `source`, the reference the docs' sources table gives (this holds for
    losses and solvers too)."""

    name: str
    doc: str
    output: bool = False
    needs_z: bool = False
    sklearn: bool = False
    source: str = ""


class Loss(NamedTuple):
    """A loss C and the output activation it pairs with (the canonical link,
    for which delta^L = A^L - Y, or the identity for the robust losses).
    `estimator`: which estimator's ``loss`` parameter offers it ("" when the
    estimator picks it itself)."""

    name: str
    output_activation: str
    estimator: str
    doc: str
    source: str = ""


class Hyperparameter(NamedTuple):
    """A solver's setting: an estimator parameter of this name and default,
    valid in `interval` (``(low, high, closed)`` of sklearn's Interval over
    reals, or "boolean"), documented by `doc`."""

    name: str
    default: object
    interval: object
    doc: str


class Solver(NamedTuple):
    """A stochastic solver: its engine update uses `hyperparameters` (names
    in HYPERPARAMETERS) besides learning_rate_init; `doc` is its entry in
    the estimators' docstring."""

    name: str
    hyperparameters: tuple
    doc: str
    sklearn: bool = False
    source: str = ""


ACTIVATIONS = (
    Activation("identity", "f(z) = z", sklearn=True),
    Activation("logistic", "1 / (1 + exp(-z))", sklearn=True),
    Activation("tanh", "tanh(z)", sklearn=True),
    Activation("relu", "max(0, z)", sklearn=True),
    Activation("elu", "z for z > 0 else exp(z) - 1 (Clevert et al., 2016)",
               source='Clevert, Unterthiner & Hochreiter (2016), "Fast and accurate deep '
               'network learning by exponential linear units"'),
    Activation("leaky_relu", "z for z > 0 else negative_slope * z (Maas et al., 2013)",
               source='Maas, Hannun & Ng (2013), "Rectifier nonlinearities improve neural '
               'network acoustic models"'),
    Activation("selu", "lambda * elu with alpha = 1.6733, lambda = 1.0507 "
               "(Klambauer et al., 2017)",
               source='Klambauer et al. (2017), "Self-normalizing neural networks"'),
    Activation("softplus", "log(1 + exp(z))",
               source='Dugas et al. (2001), "Incorporating second-order functional knowledge '
               'for better option pricing"'),
    Activation("gelu", "z * Phi(z) with Phi the standard normal CDF, exact (erf) "
               "(Hendrycks & Gimpel, 2016)", needs_z=True,
               source='Hendrycks & Gimpel (2016), "Gaussian error linear units"'),
    Activation("gelu_tanh", "gelu's approximation z/2 * (1 + tanh(sqrt(2/pi) "
               "(z + 0.044715 z^3))) (Hendrycks & Gimpel, 2016)", needs_z=True,
               source='Hendrycks & Gimpel (2016), "Gaussian error linear units"'),
    Activation("silu", "z * sigma(z), also called swish (Elfwing et al., 2018)",
               needs_z=True, source='Elfwing, Uchibe & Doya (2018), "Sigmoid-weighted '
               'linear units"'),
    Activation("softmax", "row-wise exp(z_k) / sum_j exp(z_j)", output=True),
    Activation("exp", "exp(z)", output=True),
)

LOSSES = (
    Loss("squared_error", "identity", "regressor",
         "1/2 (a - y)^2, averaged over the outputs"),
    Loss("log_loss", "softmax", "classifier", "-sum_k y_k log a_k"),
    Loss("binary_log_loss", "logistic", "",
         "-sum_k [y_k log a_k + (1 - y_k) log(1 - a_k)] (binary and multilabel)"),
    Loss("poisson", "exp", "regressor",
         "Poisson deviance sum_k [y_k log(y_k / a_k) - y_k + a_k]; y >= 0"),
    Loss("huber", "identity", "regressor",
         "Huber's (1964): r^2 / 2 where |r| <= huber_delta, else huber_delta "
         "(|r| - huber_delta / 2), r = a - y",
         source='Huber (1964), "Robust estimation of a location parameter"'),
    Loss("absolute_error", "identity", "regressor", "|a - y|"),
)

HYPERPARAMETERS = (
    Hyperparameter("momentum", 0.9, (0, 1, "both"), "Momentum of 'sgd', in [0, 1]."),
    Hyperparameter("nesterovs_momentum", True, "boolean",
                   "Use Nesterov's momentum (for 'sgd' with momentum > 0)."),
    Hyperparameter("beta_1", 0.9, (0, 1, "left"),
                   "Adam's decay rate of the first-moment estimate, in [0, 1)."),
    Hyperparameter("beta_2", 0.999, (0, 1, "left"),
                   "Adam's decay rate of the second-moment estimate, in [0, 1)."),
    Hyperparameter("epsilon", 1e-8, (0, None, "neither"),
                   "Adam's numerical-stability constant."),
    Hyperparameter("weight_decay", 0.01, (0, None, "left"),
                   "'adamw' only: each step multiplies the weights (not the biases) by "
                   "1 - learning_rate_init * weight_decay, apart from the gradient "
                   "(alpha's L2 term still enters the gradient)."),
    Hyperparameter("rho", 0.9, (0, 1, "left"),
                   "'rmsprop' only: decay rate of the running mean of squared gradients."),
)

SOLVERS = (
    Solver("sgd", ("momentum", "nesterovs_momentum"),
           "mini-batch gradient descent with (Nesterov) momentum", sklearn=True,
           source='momentum and Nesterov\'s: Sutskever et al. (2013), "On the importance of '
           'initialization and momentum in deep learning"'),
    Solver("adam", ("beta_1", "beta_2", "epsilon"), "Kingma & Ba (2014)", sklearn=True,
           source='Kingma & Ba (2015), "Adam: a method for stochastic optimization"'),
    Solver("adamw", ("beta_1", "beta_2", "epsilon", "weight_decay"),
           "Adam with decoupled weight decay (Loshchilov & Hutter, 2019)",
           source='Loshchilov & Hutter (2019), "Decoupled weight decay regularization"'),
    Solver("nadam", ("beta_1", "beta_2", "epsilon"),
           "Adam with Nesterov momentum and Dozat's momentum schedule (Dozat, 2016)",
           source='Dozat (2016), "Incorporating Nesterov momentum into Adam" (torch\'s '
           'momentum schedule)'),
    Solver("rmsprop", ("rho", "epsilon"),
           "g / sqrt(running mean of g^2) (Tieleman & Hinton, 2012)",
           source="Tieleman & Hinton (2012), Coursera lecture 6.5"),
    Solver("adagrad", ("epsilon",), "g / sqrt(sum of g^2) (Duchi, Hazan & Singer, 2011)",
           source='Duchi, Hazan & Singer (2011), "Adaptive subgradient methods"'),
)

#: The names, in code order.
ACTIVATION_NAMES = tuple(a.name for a in ACTIVATIONS)
HIDDEN_ACTIVATIONS = tuple(a.name for a in ACTIVATIONS if not a.output)
SKLEARN_ACTIVATIONS = tuple(a.name for a in ACTIVATIONS if a.sklearn)
DERIVATIVE_FROM_Z = tuple(a.name for a in ACTIVATIONS if a.needs_z)
LOSS_NAMES = tuple(loss.name for loss in LOSSES)
OUTPUT_ACTIVATION = {loss.name: loss.output_activation for loss in LOSSES}
STOCHASTIC_SOLVERS = tuple(s.name for s in SOLVERS)
#: The ``solver`` parameter's choices: scikit-learn's (L-BFGS by scipy), then cnn_bp's.
SOLVER_CHOICES = ("lbfgs",) + STOCHASTIC_SOLVERS
HYPERPARAMETER_NAMES = tuple(h.name for h in HYPERPARAMETERS)


def _code(names, kind, name):
    if name not in names:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {names}")
    return names.index(name)


def activation_code(name):
    """Integer code of activation `name` (its C enum value); ValueError if
    it is unknown."""
    return _code(ACTIVATION_NAMES, "activation", name)


def loss_code(name):
    """Integer code of loss `name`; ValueError if it is unknown."""
    return _code(LOSS_NAMES, "loss", name)


def solver_code(name):
    """Integer code of stochastic solver `name`; ValueError if it is unknown."""
    return _code(STOCHASTIC_SOLVERS, "solver", name)


def c_name(name):
    """The C enum constant of a registry name: relu -> CNNBP_RELU."""
    return "CNNBP_" + name.upper()


def _check():
    """The tables' own rules (checked on import: a wrong entry fails every build)."""

    def require(condition, message):
        if not condition:
            raise ValueError(f"cnn_bp._registry: {message}")

    output = [a.output for a in ACTIVATIONS]
    require(output == sorted(output), "output-only activations are listed last")
    names = ACTIVATION_NAMES + LOSS_NAMES + STOCHASTIC_SOLVERS + HYPERPARAMETER_NAMES
    require(len(set(names)) == len(names), "every name is used once")
    for loss in LOSSES:
        require(loss.output_activation in ACTIVATION_NAMES, f"{loss.name}'s activation")
    for solver in SOLVERS:
        require(set(solver.hyperparameters) <= set(HYPERPARAMETER_NAMES),
                f"{solver.name}'s hyperparameters are in HYPERPARAMETERS")
    for h in HYPERPARAMETERS:
        require(h.interval == "boolean" or isinstance(h.default, Real), f"{h.name}'s default")


_check()
