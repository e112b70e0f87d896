"""Optimizers over one flat parameter vector.

All parameters of the network live in a single contiguous array (weights and
biases are views into it), so each optimizer step is a handful of vectorised
operations regardless of depth. State is allocated once from the size and
updated in place. ``step`` may use ``grads`` as scratch space: the network
recomputes gradients from scratch on every mini-batch.

An optimizer whose update is the gradient times the learning rate
(``folds_learning_rate = True``: plain gradient descent) lets the network
fold the rate into the small output-layer delta, so that backprop yields
``lr * g`` directly and ``apply_update(params, update)`` only subtracts it:
one pass less over the parameters (for the cat network, over the 2 MB
first-layer weights) per mini-batch.

Which decay rate each optimizer uses:

- ``gd``: none.
- ``momentum``: ``beta1`` for the velocity, ``v = beta1 v + (1 - beta1) g``.
- ``rmsprop``: ``beta2`` for the running mean of squared gradients.
- ``adam``: ``beta1`` (first moment) and ``beta2`` (second moment), with bias
  correction; ``epsilon`` is added to ``sqrt(v_hat)``.
"""

from __future__ import annotations

import numpy as np


def _flush_subnormals(*arrays: np.ndarray) -> None:
    """Set subnormal entries to zero.

    Moment estimates of gradients that stay at zero (dead units) decay
    geometrically and end up subnormal, which makes float arithmetic on them
    many times slower. Values this small have no effect on any update.
    """
    for arr in arrays:
        tiny = np.finfo(arr.dtype).tiny
        arr[np.abs(arr) < tiny] = 0


class GradientDescent:
    """params -= lr * grads."""

    folds_learning_rate = True

    def __init__(self, size: int, dtype, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8):
        pass

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        grads *= lr
        params -= grads

    @staticmethod
    def apply_update(params: np.ndarray, update: np.ndarray) -> None:
        """params -= update, where update is already lr * grads."""
        params -= update

    def flush_subnormals(self) -> None:
        return None


class Momentum:
    """Exponentially averaged gradient (``beta1``): v = b1 v + (1 - b1) g; p -= lr v."""

    folds_learning_rate = False

    def __init__(self, size: int, dtype, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8):
        self.beta1 = beta1
        self.v = np.zeros(size, dtype=dtype)

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        v = self.v
        # v += (1 - b1) (g - v)  ==  b1 v + (1 - b1) g
        np.subtract(grads, v, out=grads)
        grads *= 1.0 - self.beta1
        v += grads
        np.multiply(v, lr, out=grads)
        params -= grads

    def flush_subnormals(self) -> None:
        _flush_subnormals(self.v)


class _SecondMoment:
    """Shared code of RMSprop and Adam: s = b2 s + (1 - b2) g^2."""

    folds_learning_rate = False

    def __init__(self, size: int, dtype, beta1: float, beta2: float, epsilon: float):
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.s = np.zeros(size, dtype=dtype)
        self.tmp = np.empty(size, dtype=dtype)

    def _update_second_moment(self, grads: np.ndarray) -> None:
        tmp = self.tmp
        np.square(grads, out=tmp)
        tmp -= self.s
        tmp *= 1.0 - self.beta2
        self.s += tmp


class RMSprop(_SecondMoment):
    """p -= lr * g / (sqrt(s) + eps), with s the running mean of g^2 (``beta2``)."""

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        self._update_second_moment(grads)
        tmp = self.tmp
        np.sqrt(self.s, out=tmp)
        tmp += self.epsilon
        np.divide(grads, tmp, out=tmp)
        tmp *= lr
        params -= tmp

    def flush_subnormals(self) -> None:
        _flush_subnormals(self.s)


class Adam(_SecondMoment):
    """Adam with bias correction; ``t`` counts mini-batch steps from 1."""

    def __init__(self, size: int, dtype, beta1: float, beta2: float, epsilon: float):
        super().__init__(size, dtype, beta1, beta2, epsilon)
        self.m = np.zeros(size, dtype=dtype)
        self.t = 0

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        self.t += 1
        self._update_second_moment(grads)
        m = self.m
        np.subtract(grads, m, out=grads)
        grads *= 1.0 - self.beta1
        m += grads
        # p -= lr * m_hat / (sqrt(s_hat) + eps), with m_hat = m / c1, s_hat = s / c2
        c1 = 1.0 - self.beta1**self.t
        c2 = 1.0 - self.beta2**self.t
        tmp = self.tmp
        np.sqrt(self.s, out=tmp)
        tmp *= 1.0 / np.sqrt(c2)
        tmp += self.epsilon
        np.divide(m, tmp, out=tmp)
        tmp *= lr / c1
        params -= tmp

    def flush_subnormals(self) -> None:
        _flush_subnormals(self.m, self.s)


OPTIMIZERS = {
    "gd": GradientDescent,
    "momentum": Momentum,
    "rmsprop": RMSprop,
    "adam": Adam,
}


def make_optimizer(name: str, size: int, dtype, beta1: float, beta2: float, epsilon: float):
    """Build the optimizer named ``name`` (a key of ``OPTIMIZERS``) for ``size`` parameters."""
    return OPTIMIZERS[name](size, dtype, beta1, beta2, epsilon)
