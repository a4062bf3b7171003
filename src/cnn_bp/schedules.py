"""Learning-rate schedules for every stochastic solver (``lr_schedule=``).

A schedule maps the index of the epoch about to run (0, 1, ...) and the
estimator's ``learning_rate_init`` to that epoch's learning rate, the rate
sgd steps with and the base rate of the adaptive solvers (Adam's alpha).
Each follows its torch.optim.lr_scheduler namesake, stepped once per epoch.
Any callable ``schedule(epoch, lr_init) -> float`` works the same way.
"""

import math

__all__ = ["CosineAnnealing", "StepDecay", "Warmup"]


class _Schedule:
    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):  # equal settings, equal schedules (for clone checks)
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(vars(self).items(), key=str))))


class CosineAnnealing(_Schedule):
    """Cosine annealing (Loshchilov & Hutter, 2017, SGDR without restarts).

    lr(e) = eta_min + (lr_init - eta_min) (1 + cos(pi e / T_max)) / 2 for
    e <= T_max, then eta_min; as torch's CosineAnnealingLR.

    Parameters
    ----------
    T_max : int
        Epochs over which the rate falls from lr_init to eta_min, >= 1.
    eta_min : float, default=0.0
        The final rate, >= 0.
    """

    def __init__(self, T_max, eta_min=0.0):
        if not (isinstance(T_max, int) and T_max >= 1) or not eta_min >= 0:
            raise ValueError(f"need an int T_max >= 1 and eta_min >= 0, got {T_max}, {eta_min}")
        self.T_max = T_max
        self.eta_min = eta_min

    def __call__(self, epoch, lr_init):
        e = min(epoch, self.T_max)
        cosine = math.cos(math.pi * e / self.T_max)
        return self.eta_min + (lr_init - self.eta_min) * (1 + cosine) / 2


class StepDecay(_Schedule):
    """Step decay: lr(e) = lr_init * gamma ** (e // step_size) (torch's StepLR).

    Parameters
    ----------
    step_size : int
        Epochs between decays, >= 1.
    gamma : float, default=0.1
        Factor of each decay, >= 0.
    """

    def __init__(self, step_size, gamma=0.1):
        if not (isinstance(step_size, int) and step_size >= 1) or not gamma >= 0:
            raise ValueError(
                f"need an int step_size >= 1 and gamma >= 0, got {step_size}, {gamma}")
        self.step_size = step_size
        self.gamma = gamma

    def __call__(self, epoch, lr_init):
        return lr_init * self.gamma ** (epoch // self.step_size)


class Warmup(_Schedule):
    """Linear warm-up (Goyal et al., 2017), then another schedule.

    lr(e) = lr_init * (start_factor + (1 - start_factor) e / epochs) for
    e < epochs (torch's LinearLR), then ``then(e - epochs, lr_init)``, or
    lr_init when ``then`` is None.

    Parameters
    ----------
    epochs : int
        Length of the warm-up, >= 1.
    start_factor : float, default=0.1
        Fraction of lr_init in the first epoch, in (0, 1].
    then : schedule or None, default=None
        The schedule after the warm-up, counting its epochs from 0.
    """

    def __init__(self, epochs, start_factor=0.1, then=None):
        if not (isinstance(epochs, int) and epochs >= 1) or not 0 < start_factor <= 1:
            raise ValueError(f"need an int epochs >= 1 and 0 < start_factor <= 1, "
                             f"got {epochs}, {start_factor}")
        self.epochs = epochs
        self.start_factor = start_factor
        self.then = then

    def __call__(self, epoch, lr_init):
        if epoch < self.epochs:
            return lr_init * (self.start_factor + (1 - self.start_factor) * epoch / self.epochs)
        return lr_init if self.then is None else self.then(epoch - self.epochs, lr_init)
