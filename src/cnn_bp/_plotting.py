"""LossCurveDisplay: the training loss (and validation score) per epoch."""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._compat import check_matplotlib_support


class LossCurveDisplay:
    """Training loss per epoch, with the validation score on a second axis.

    scikit-learn's Display convention: build it with :meth:`from_estimator`
    (or directly from the curves), draw with :meth:`plot`; the matplotlib
    objects are kept as attributes. Needs matplotlib.

    Parameters
    ----------
    loss_curve : array-like of shape (n_epochs,)
        Training loss after each epoch (an estimator's ``loss_curve_``).
    validation_scores : array-like of shape (n_epochs,) or None
        Validation score after each epoch (``validation_scores_``, with
        ``early_stopping=True``), or None.
    estimator_name : str or None
        Name shown in the legend.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The loss curve.
    validation_line_ : matplotlib Line2D or None
        The validation scores, on ``ax2_`` (a twin of ``ax_``), or None.
    ax_, ax2_ : matplotlib Axes
        The axes of the loss (left) and of the validation score (right; None
        without validation scores).
    figure_ : matplotlib Figure

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from cnn_bp import LossCurveDisplay, MLPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MLPClassifier(early_stopping=True, random_state=0).fit(X / 16, y)
    >>> display = LossCurveDisplay.from_estimator(clf)  # doctest: +SKIP
    """

    def __init__(self, loss_curve, validation_scores=None, *, estimator_name=None):
        self.loss_curve = np.asarray(loss_curve, dtype=float)
        self.validation_scores = (
            None if validation_scores is None else np.asarray(validation_scores, dtype=float)
        )
        self.estimator_name = estimator_name

    def plot(self, ax=None, *, name=None, **kwargs):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        name : str, default=None
            Legend label of the loss curve (default: the estimator's name).
        **kwargs : dict
            Passed to ``ax.plot`` for the loss curve.

        Returns
        -------
        display : LossCurveDisplay
            self, with ``line_``, ``ax_``, ``figure_`` (and the validation
            ones) set.
        """
        check_matplotlib_support("LossCurveDisplay.plot")
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        name = name or self.estimator_name or "model"
        epochs = np.arange(1, len(self.loss_curve) + 1)
        (self.line_,) = ax.plot(epochs, self.loss_curve, label=f"{name}: training loss",
                                **kwargs)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        handles = [self.line_]
        self.ax2_ = self.validation_line_ = None
        if self.validation_scores is not None:
            self.ax2_ = ax.twinx()
            (self.validation_line_,) = self.ax2_.plot(
                epochs[: len(self.validation_scores)], self.validation_scores,
                color="tab:orange", label=f"{name}: validation score")
            self.ax2_.set_ylabel("validation score")
            handles.append(self.validation_line_)
        ax.legend(handles=handles, loc="center right")
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, name=None, **kwargs):
        """Plot a fitted estimator's ``loss_curve_`` and ``validation_scores_``.

        Parameters
        ----------
        estimator : fitted MLPClassifier or MLPRegressor
            Trained by a stochastic solver (L-BFGS records no curve).
        ax, name, **kwargs
            As in :meth:`plot`.

        Returns
        -------
        display : LossCurveDisplay

        Raises
        ------
        NotFittedError
            If the estimator is not fitted.
        ValueError
            If it has no loss curve (``solver='lbfgs'``).
        """
        check_matplotlib_support("LossCurveDisplay.from_estimator")
        check_is_fitted(estimator)
        if getattr(estimator, "loss_curve_", None) is None:
            raise ValueError(
                f"{type(estimator).__name__} fitted with solver={estimator.solver!r} "
                "records no loss curve; use a stochastic solver (adam, sgd, ...)"
            )
        display = cls(estimator.loss_curve_, getattr(estimator, "validation_scores_", None),
                      estimator_name=type(estimator).__name__)
        return display.plot(ax=ax, name=name, **kwargs)
