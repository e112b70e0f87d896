"""Exceptions raised by the numpynet core."""

from __future__ import annotations


class TrainingDiverged(RuntimeError):
    """The training cost became NaN or infinite.

    Attributes:
        epoch: the epoch (0-based) during which the cost stopped being finite.
        last_finite_cost: the cost of the last completed epoch, or ``None``
            when the first epoch already diverged.
    """

    def __init__(self, epoch: int, last_finite_cost: float | None, detail: str = ""):
        self.epoch = epoch
        self.last_finite_cost = last_finite_cost
        last = "none" if last_finite_cost is None else f"{last_finite_cost:.6g}"
        msg = (
            f"training diverged at epoch {epoch}: the cost is not finite "
            f"(last finite cost: {last}); lower learning_rate or add regularization"
        )
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)

    def __reduce__(self):  # keep it picklable across worker processes
        return (type(self), (self.epoch, self.last_finite_cost))


class NotFittedError(ValueError, AttributeError, RuntimeError):
    """A method that needs a fitted network was called before ``fit`` (or ``load``).

    A ``ValueError`` and ``AttributeError`` like scikit-learn's
    ``NotFittedError``, and a ``RuntimeError`` as numpynet raised before.
    """
