"""Weight initialisation schemes: ``init(rng, fan_in, fan_out, dtype) -> W``.

Weights are drawn from a zero-mean normal; biases start at zero.
"""

from __future__ import annotations

import numpy as np


def he(rng: np.random.Generator, fan_in: int, fan_out: int, dtype) -> np.ndarray:
    """He et al. (2015): std = sqrt(2 / fan_in), for the relu family."""
    return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(dtype)


def xavier(rng: np.random.Generator, fan_in: int, fan_out: int, dtype) -> np.ndarray:
    """Glorot & Bengio (2010), normal form: std = sqrt(2 / (fan_in + fan_out))."""
    return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


INITIALIZERS = {"he": he, "xavier": xavier}

# what ``initialization="auto"`` picks for each hidden activation
AUTO_INITIALIZATION = {"relu": "he", "leakyrelu": "he", "tanh": "xavier", "sigmoid": "xavier"}
