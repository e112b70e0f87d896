"""Hidden-layer activations, applied in place.

Each activation overwrites its input with the activated values; each
derivative multiplies an upstream gradient in place by f'(z), computed from
the *activated* values a = f(z) (so the pre-activation never has to be kept).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

LEAKY_SLOPE = 0.01


def _relu(a: np.ndarray) -> None:
    np.maximum(a, 0, out=a)


def _relu_grad(a: np.ndarray, delta: np.ndarray) -> None:
    np.multiply(delta, a > 0, out=delta)


def _leaky_relu(a: np.ndarray) -> None:
    np.multiply(a, LEAKY_SLOPE, out=a, where=a < 0)


def _leaky_relu_grad(a: np.ndarray, delta: np.ndarray) -> None:
    # a > 0 exactly when z > 0, since the negative side is scaled by a positive slope
    np.multiply(delta, LEAKY_SLOPE, out=delta, where=a <= 0)


def _tanh(a: np.ndarray) -> None:
    np.tanh(a, out=a)


def _tanh_grad(a: np.ndarray, delta: np.ndarray) -> None:
    tmp = np.square(a)
    np.subtract(1, tmp, out=tmp)
    delta *= tmp


def sigmoid_inplace(a: np.ndarray) -> None:
    """sigmoid(z) = (1 + tanh(z / 2)) / 2: no overflow for any finite z."""
    a *= 0.5
    np.tanh(a, out=a)
    a += 1
    a *= 0.5


def _sigmoid_grad(a: np.ndarray, delta: np.ndarray) -> None:
    tmp = np.subtract(1, a)
    tmp *= a
    delta *= tmp


ACTIVATIONS: dict[str, Callable[[np.ndarray], None]] = {
    "relu": _relu,
    "leakyrelu": _leaky_relu,
    "tanh": _tanh,
    "sigmoid": sigmoid_inplace,
}

DERIVATIVES: dict[str, Callable[[np.ndarray, np.ndarray], None]] = {
    "relu": _relu_grad,
    "leakyrelu": _leaky_relu_grad,
    "tanh": _tanh_grad,
    "sigmoid": _sigmoid_grad,
}
