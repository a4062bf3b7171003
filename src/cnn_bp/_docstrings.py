"""The estimators' docstrings, assembled from text and the registry.

Layer: beside the estimators (``_mlp.py`` sets ``__doc__`` from here); imports
only the registry. The parameter entries of the activations, the solvers and
each solver hyperparameter are written from ``cnn_bp._registry``, so that a
new entry there is documented without an edit here (a registry entry without
its ``@name`` line in ``_PARAMETERS_DOC`` raises at import).
"""

import re
import textwrap

from ._registry import ACTIVATIONS, HYPERPARAMETERS, SOLVER_CHOICES, SOLVERS

_PARAMETERS_DOC = """
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer.
    @activation
    @solver
    alpha : float, default=0.0001
        Strength of the L2 penalty alpha / 2 * ||W||^2, divided by the sum of
        sample weights of the batch.
    batch_size : int, default='auto'
        Mini-batch size of the stochastic solvers; 'auto' is
        min(200, n_samples). Larger than n_samples: clipped, with a warning.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Schedule for 'sgd': constant; learning_rate_init / (t + 1) ** power_t
        with t the samples seen; or divided by 5 whenever the loss stalls.
    learning_rate_init : float, default=0.001
        Initial step size of 'sgd' and 'adam'.
    power_t : float, default=0.5
        Exponent of the 'invscaling' schedule.
    max_iter : int, default=200
        Maximum epochs (stochastic solvers) or iterations ('lbfgs').
    shuffle : bool, default=True
        Whether to shuffle the samples every epoch (stochastic solvers).
    random_state : int, RandomState instance, default=None
        Seeds weight initialisation, shuffling and the early-stopping split,
        drawn in scikit-learn's order: the same seed gives the same model.
    tol : float, default=1e-4
        Improvement below which an epoch counts as no progress.
    verbose : bool, default=False
        Print the loss after every epoch.
    warm_start : bool, default=False
        Start from the previous fit's weights instead of new ones.
    @momentum
    @nesterovs_momentum
    early_stopping : bool, default=False
        Hold out validation_fraction of the data and stop when its score does
        not improve by tol for n_iter_no_change epochs.
    validation_fraction : float, default=0.1
        Proportion of the data held out for early stopping.
    @beta_1
    @beta_2
    @epsilon
    n_iter_no_change : int, default=10
        Epochs without improvement tolerated before stopping.
    max_fun : int, default=15000
        Maximum loss evaluations of 'lbfgs'.
    negative_slope : float, default=0.01
        Slope of leaky_relu for z < 0, >= 0 (a cnn_bp extension).
    @weight_decay
    @rho
    lr_schedule : callable or None, default=None
        A schedule for every stochastic solver, ``lr_schedule(epoch, lr_init)
        -> rate`` called before each epoch (epoch 0, 1, ... counted over
        partial_fit calls too): the rate sgd steps with, the base rate of the
        others. ``cnn_bp.schedules`` has CosineAnnealing, StepDecay and Warmup
        (torch's CosineAnnealingLR, StepLR, LinearLR). None keeps
        scikit-learn's behaviour, where learning_rate schedules only sgd; with
        a schedule, learning_rate must stay 'constant'. A rate that is not a
        finite number >= 0 raises ValueError naming the epoch.
    scoring : str, callable or None, default=None
        What early stopping watches on the validation data: None for
        scikit-learn's (accuracy for the classifier, R^2 for the regressor),
        'loss' for the validation loss (negated, so higher is better), or a
        scorer name or callable as in sklearn.metrics.get_scorer.
    init : {'glorot_uniform', 'glorot_normal', 'he_uniform', 'he_normal', \
'lecun_normal'}, default='glorot_uniform'
        How W^l is drawn (from random_state). 'glorot_uniform' is scikit-learn's:
        U(-r, r), r = sqrt(6 / (fan_in + fan_out)) (2 instead of 6 for
        logistic), biases alike (Glorot & Bengio, 2010). The others draw
        zero biases and W^l from N(0, 2 / (fan_in + fan_out)) (glorot_normal),
        U(-r, r) with r = sqrt(6 / fan_in) (he_uniform) or N(0, 2 / fan_in)
        (he_normal; both He et al., 2015, for relu-type units), or
        N(0, 1 / fan_in) (lecun_normal; LeCun et al., 1998; the one selu's
        self-normalisation assumes, Klambauer et al., 2017); N(0, s) meaning
        variance s, untruncated.
    max_norm : float or None, default=None
        Stochastic solvers: after each step, the incoming weights of each unit
        (each column of each W^l) longer than max_norm in L2 norm are scaled
        back to it (Srivastava et al., 2014, Sec. 5.1).
    dropout : float or list of float, default=0.0
        Stochastic solvers: the rate, in [0, 1), at which each hidden unit's
        activation is dropped (set to 0) during training, one rate for all
        hidden layers or a list with one per layer; kept activations are
        scaled by 1 / (1 - rate) ("inverted dropout", Srivastava et al., 2014),
        so prediction uses the network as it is, without dropout. Masks come
        from a counter-based generator (SplitMix64) seeded by one draw from
        random_state, made only when dropout is used.
    batch_norm : bool, default=False
        Stochastic solvers: normalise each hidden layer's A^{l-1} W^l over
        the batch before the activation, Y = gamma (Z - mean) / sqrt(var +
        eps) + beta (Ioffe & Szegedy, 2015), eps = 1e-5. The layer's
        intercept b^l is beta (initially 0); the scale gamma (initially 1) is
        trained by the same solver (without the L2 term). Prediction uses
        running estimates, moved by 0.1 of each batch's mean and unbiased
        variance (PyTorch's BatchNorm1d convention). Sample weights weigh
        the batch statistics as they weigh the loss, as frequencies (a row
        of weight 2 counts as two rows; the running variance's correction is
        S / (S - 1), S the batch's weight sum, and a batch whose weights sum
        to 1 or less leaves the running estimates as they are).
    alpha_l1 : float, default=0.0
        Strength of an L1 penalty alpha_l1 * ||W||_1 on the weights (not the
        biases), divided like alpha's by the batch's sum of sample weights;
        its subgradient is alpha_l1 * sign(W), with sign(0) = 0 (a cnn_bp
        extension; with alpha, an elastic net).
    clip_norm : float or None, default=None
        Stochastic solvers: when the gradient of the objective (L2 term
        included) has a global L2 norm above clip_norm, rescale it to
        clip_norm before the step (Pascanu, Mikolov & Bengio, 2013)."""


def _registry_entries(doc):
    """`doc` with each line ``@name`` replaced by the entry the registry
    (cnn_bp._registry) makes for that parameter: the activations, the
    solvers, and each solver hyperparameter."""

    def paragraph(text):
        # no line starts with an operator (reST could read "- 1" as a list)
        text = re.sub(r" ([-+*/=]) ", "\0\\1\0", text)
        return textwrap.fill(text, 78, initial_indent=" " * 8, subsequent_indent=" " * 8,
                             break_on_hyphens=False).replace("\0", " ")

    activations = "; ".join(f"{a.name}: {a.doc}" for a in ACTIVATIONS if not a.output)
    entries = {
        "activation": "    activation : str or list of str, default='relu'\n" + paragraph(
            "Hidden-layer activation f, one name for all hidden layers or a list with "
            f"one per hidden layer. {activations}. Weights are drawn with scikit-learn's "
            "Glorot bound, sqrt(2 / (fan_in + fan_out)) for logistic layers and "
            "sqrt(6 / (fan_in + fan_out)) otherwise (with a single name: its rule for "
            "every layer, the output layer included, as scikit-learn)."),
        "solver": "    solver : {%s}, default='adam'\n" % ", ".join(
            repr(name) for name in SOLVER_CHOICES) + paragraph(
            "'lbfgs': scipy's L-BFGS-B on the full-batch loss; "
            + "; ".join(f"'{s.name}': {s.doc}" for s in SOLVERS)
            + ". Those beyond scikit-learn's follow their torch.optim namesakes. All "
            "stochastic solvers use learning_rate_init; "
            + "; ".join(f"{s.name} also {', '.join(s.hyperparameters)}" for s in SOLVERS)
            + "."),
    }
    for h in HYPERPARAMETERS:
        kind = "bool" if h.interval == "boolean" else "float"
        entries[h.name] = f"    {h.name} : {kind}, default={h.default!r}\n" + paragraph(h.doc)
    doc = re.sub(r"^    @(\w+)$", lambda m: entries.pop(m.group(1)), doc, flags=re.M)
    if entries:  # a registry entry without its place in the docstring
        raise RuntimeError(f"_PARAMETERS_DOC has no @line for {sorted(entries)}")
    return doc


_PARAMETERS_DOC = _registry_entries(_PARAMETERS_DOC)

# The last parameter of both estimators.
_CHECKPOINT_DOC = """
    checkpoint_dir : str, path-like or None, default=None
        A directory where fit keeps a checkpoint of its training state (a
        model file, as cnn_bp.save writes, named by a hash of the parameters
        and the data): written after an epoch at most once every 5 seconds,
        when the fit ends and when Ctrl-C stops it, atomically. A fit whose
        checkpoint exists resumes from it and ends with the model of a fit
        never stopped (the stochastic solvers); a finished one is returned
        without training. See the user guide's "Long fits and failures".
        ValueError if the directory cannot be written."""

_ATTRIBUTES_DOC = """
    loss_ : float
        The loss at the end of fitting (penalty included).
    best_loss_ : float or None
        Lowest training loss seen (None with early stopping).
    loss_curve_ : list of shape (`n_iter_`,)
        Loss after each epoch (stochastic solvers).
    validation_scores_ : list of shape (`n_iter_`,) or None
        Validation score after each epoch with early stopping.
    validation_loss_curve_ : list of shape (`n_iter_`,) or None
        Mean loss on the validation data after each epoch with early stopping
        (data term only, no penalty; a cnn_bp extension).
    best_validation_score_ : float or None
        Best validation score with early stopping.
    stopped_early_ : bool
        Whether early stopping on validation data ended the last training
        (stochastic solvers): the parameters are then the best ones seen,
        and further partial_fit calls do nothing.
    t_ : int
        Number of training samples seen by the solver.
    coefs_ : list of shape (n_layers - 1,)
        W^l, ndarray (fan_in, fan_out) each: views into the engine's flat
        parameter buffer.
    intercepts_ : list of shape (n_layers - 1,)
        b^l, ndarray (fan_out,) each: views into the same buffer.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Feature names, when X had string column names.
    n_iter_ : int
        Epochs (or L-BFGS iterations) run by the last fit.
    n_layers_ : int
        Number of layers, input and output included.
    n_outputs_ : int
        Number of outputs.
    out_activation_ : str
        Output activation: 'softmax', 'logistic', 'identity' or 'exp'.
    batch_norm_scales_ : list of shape (n_layers - 2,)
        With batch_norm: gamma^l of each hidden layer, ndarray (n_l,), views
        into the parameter buffer (the shifts beta^l are ``intercepts_``).
    running_means_, running_vars_ : list of shape (n_layers - 2,)
        With batch_norm: the running mean and variance of each hidden
        layer's A^{l-1} W^l, ndarray (n_l,), that prediction normalises with."""

_NOTES_DOC = """
    Notes
    -----
    The mathematics (Rumelhart, Hinton & Williams, 1986), for layers
    l = 1..L and a batch of B rows::

        Z^l = A^{l-1} W^l + b^l,  A^l = f(Z^l),  A^0 = X
        delta^L = A^L - Y
        delta^l = (delta^{l+1} (W^{l+1})^T) * f'(Z^l)
        dC/dW^l = ((A^{l-1})^T delta^l + alpha W^l) / B,  dC/db^l = sum(delta^l) / B

    Forward, backward and update of a whole epoch run in one compiled call
    that releases the GIL. Sparse X (CSR, CSC) is never densified.

    Deliberate differences from scikit-learn: the model computes in the dtype
    it was fitted with, so a float32 model returns float32 even for float64
    X (scikit-learn upcasts), and ``solver='lbfgs'`` keeps float32 weights
    float32 (scikit-learn's become float64). During training, probabilities
    and optimizer moments below smallest-normal / epsilon (about 1e-31 in
    float32) are set to zero, as subnormal arithmetic is far slower."""


CLASSIFIER = f"""Multi-layer perceptron classifier trained by backpropagation.

    A drop-in replacement for :class:`sklearn.neural_network.MLPClassifier`:
    the same parameters, attributes and results for the same random_state
    (in float64, to round-off; in float32 the round-off grows chaotically
    over epochs, so long fits end at different, equally good models),
    computed by a compiled engine. Minimises the log-loss (softmax output for
    multiclass, logistic outputs for binary and multilabel targets).

    Parameters
    ----------{_PARAMETERS_DOC}
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, {{label: weight}}, multiplying sample_weight
        as in scikit-learn's linear models; 'balanced' weighs each class by
        n_samples / (n_classes * its count) in the data given to fit, counts
        and n_samples summing sample weights (as LogisticRegression does);
        partial_fit counts the rows of each call. Binary and multiclass
        targets only: ValueError otherwise.{_CHECKPOINT_DOC}

    Attributes
    ----------
    classes_ : ndarray or list of ndarray of shape (n_classes,)
        Class labels.{_ATTRIBUTES_DOC}
{_NOTES_DOC}

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from cnn_bp import MLPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MLPClassifier(random_state=0, max_iter=300).fit(X / 16, y)
    >>> clf.predict(X[:3] / 16)
    array([0, 1, 2])
    """


REGRESSOR = f"""Multi-layer perceptron regressor trained by backpropagation.

    A drop-in replacement for :class:`sklearn.neural_network.MLPRegressor`:
    the same parameters, attributes and results for the same random_state
    (in float64, to round-off; in float32 the round-off grows chaotically
    over epochs, so long fits end at different, equally good models),
    computed by a compiled engine.

    Parameters
    ----------
    loss : {{'squared_error', 'poisson', 'huber', 'absolute_error'}}, \
default='squared_error'
        Half squared error with an identity output, or half Poisson deviance
        with an exp output (requires y >= 0); cnn_bp's robust losses, with an
        identity output and summed over the outputs: 'huber' (Huber, 1964),
        r^2 / 2 for abs(r) <= huber_delta and huber_delta (abs(r) - huber_delta / 2)
        beyond, r = prediction - y, and 'absolute_error' abs(r) (its gradient
        is sign(r), so it fits the conditional median).{_PARAMETERS_DOC}
    huber_delta : float, default=1.0
        Where the 'huber' loss turns from quadratic to linear, > 0, in the
        units of y.{_CHECKPOINT_DOC}

    Attributes
    ----------{_ATTRIBUTES_DOC}
{_NOTES_DOC}

    Examples
    --------
    >>> import numpy as np
    >>> from cnn_bp import MLPRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), activation="tanh", solver="lbfgs",
    ...                    random_state=0).fit(X, np.sin(3 * X).ravel())
    >>> round(reg.score(X, np.sin(3 * X).ravel()), 2)
    1.0
    """
