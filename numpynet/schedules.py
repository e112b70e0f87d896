"""Learning-rate schedules: callables ``schedule(epoch) -> learning rate``.

Every schedule is computed from the *initial* rate at each epoch, so the rate
of epoch e does not depend on how many times it was asked for before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Constant:
    lr0: float

    def __call__(self, epoch: int) -> float:
        return self.lr0


@dataclass(frozen=True)
class ContinuousDecay:
    """lr0 / (1 + decay_rate * epoch), applied every epoch."""

    lr0: float
    decay_rate: float

    def __call__(self, epoch: int) -> float:
        return self.lr0 / (1.0 + self.decay_rate * epoch)


@dataclass(frozen=True)
class DiscreteDecay:
    """lr0 / (1 + decay_rate * floor(epoch / interval)): a staircase."""

    lr0: float
    decay_rate: float
    interval: int

    def __call__(self, epoch: int) -> float:
        return self.lr0 / (1.0 + self.decay_rate * math.floor(epoch / self.interval))


SCHEDULES = {
    None: lambda lr0, decay_rate, interval: Constant(lr0),
    "continuous": lambda lr0, decay_rate, interval: ContinuousDecay(lr0, decay_rate),
    "discrete": lambda lr0, decay_rate, interval: DiscreteDecay(lr0, decay_rate, interval),
}


def make_schedule(decay: str | None, lr0: float, decay_rate: float, interval: int):
    """Build the schedule named by ``decay`` (a key of ``SCHEDULES``)."""
    return SCHEDULES[decay](lr0, decay_rate, interval)
