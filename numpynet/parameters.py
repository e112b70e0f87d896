"""The parameter layout: every weight and bias of a network in one flat vector.

All weight matrices come first, then all bias vectors, layer by layer. Each
weight matrix is stored ``(n_out, n_in)`` row-major (as PyTorch's
``Linear``) and seen ``(n_in, n_out)``: ``unpack`` returns per-layer views
that are transposes of C-ordered blocks. The weight gradient ``dZ.T @ A`` is
then a row-major product, which OpenBLAS computes about a quarter faster
than ``A.T @ dZ`` for the cat network's 12288 x 20 first layer.

A gradient vector has the same layout, so an optimizer updates the whole
network with a few vectorised operations, the L2 term is one dot product
over the leading ``n_weights`` entries, and the gradient check perturbs the
flat vector entry by entry.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def layer_shapes(dims: Sequence[int]) -> list[tuple[int, int]]:
    """``(n_in, n_out)`` of each layer's weight matrix."""
    return list(zip(dims[:-1], dims[1:], strict=True))


def n_weights(dims: Sequence[int]) -> int:
    """How many weights (biases excluded) a network of ``dims`` has: the leading part of the vector."""
    return sum(i * o for i, o in layer_shapes(dims))


def n_parameters(dims: Sequence[int]) -> int:
    """Length of the flat vector of a network of ``dims``: weights and biases."""
    return n_weights(dims) + sum(dims[1:])


def unpack(flat: np.ndarray, dims: Sequence[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-layer weights ``(n_in, n_out)`` and biases: views into ``flat``, not copies."""
    coefs, intercepts, pos = [], [], 0
    for i, o in layer_shapes(dims):
        coefs.append(flat[pos : pos + i * o].reshape(o, i).T)
        pos += i * o
    for o in dims[1:]:
        intercepts.append(flat[pos : pos + o])
        pos += o
    return coefs, intercepts


def from_layout_1(theta: np.ndarray, dims: Sequence[int]) -> np.ndarray:
    """A vector of model format 1 (weights stored ``(n_in, n_out)`` row-major) in this layout."""
    out, pos = theta.copy(), 0
    for i, o in layer_shapes(dims):
        out[pos : pos + i * o] = theta[pos : pos + i * o].reshape(i, o).T.ravel()
        pos += i * o
    return out
