"""Every private scikit-learn import of cnn_bp, in one place.

These names are not part of scikit-learn's public API; if a release moves
one, this is the only file to change.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, Options, StrOptions

try:
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
except ImportError:  # scikit-learn < 1.7: its rule, written out
    import scipy
    from sklearn.utils.fixes import parse_version

    def _get_additional_lbfgs_options_dict(key, value):
        """scipy >= 1.15 dropped L-BFGS-B's iprint/disp options."""
        return {} if parse_version(scipy.__version__) >= parse_version("1.15") else {key: value}

from sklearn.utils._optional_dependencies import check_matplotlib_support
from sklearn.utils.multiclass import _check_partial_fit_first_call
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight

try:  # scikit-learn >= 1.9: fit callbacks (ProgressBar, ScoringMonitor, ...)
    from sklearn.callback import CallbackSupportMixin
except ImportError:  # older: the same fits, with no hooks to call

    class _NoCallbacks:
        def subcontext(self, **kwargs):
            return self

        def call_on_fit_task_begin(self, **kwargs):
            return self

        def call_on_fit_task_end(self, **kwargs):
            return False

    class CallbackSupportMixin:
        def _init_callback_context(self, **kwargs):
            return _NoCallbacks()


__all__ = [
    "CallbackSupportMixin",
    "Interval",
    "Options",
    "StrOptions",
    "_check_optimize_result",
    "_check_partial_fit_first_call",
    "_check_sample_weight",
    "_fit_context",
    "_get_additional_lbfgs_options_dict",
    "check_matplotlib_support",
]
