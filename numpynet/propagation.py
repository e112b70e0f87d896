"""Forward and backward passes over preallocated buffers: the hot path of ``fit``.

``Passes`` computes with one set of parameters: per-layer views into a flat
vector and into its gradient (``parameters.py``). It copies nothing, so it
reads the weights as they are at each call and writes the gradient where
its owner's optimizer looks for it. The network builds one on its own
parameters; the gradient check builds one on its copy.

One ``Workspace`` of buffers sized for a mini-batch is allocated per fit;
each batch is gathered into it, the passes write into its arrays (``out=``),
activations run in place, and the gradient with respect to the input data is
never computed.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from . import parameters
from .activations import ACTIVATIONS, DERIVATIVES

PREDICT_CHUNK = 8192  # rows per forward pass at prediction time


class Workspace:
    """Buffers for forward and backward passes over at most ``rows`` examples."""

    def __init__(self, dims: Sequence[int], rows: int, dtype, dropout: bool):
        hidden = dims[1:-1]
        self.X = np.empty((rows, dims[0]), dtype=dtype)
        self.Y = np.empty((rows, dims[-1]), dtype=dtype)
        self.Z = [np.empty((rows, d), dtype=dtype) for d in dims[1:]]
        self.dA = [np.empty((rows, d), dtype=dtype) for d in hidden]
        self.D = [np.empty((rows, d), dtype=dtype) for d in hidden] if dropout else None
        self.R = [np.empty((rows, d), dtype=dtype) for d in hidden] if dropout else None
        self.M = [np.empty((rows, d), dtype=bool) for d in hidden] if dropout else None

    def draw_masks(self, rng: np.random.Generator, mb: int, keep_prob: float) -> list[np.ndarray]:
        """Dropout masks of the first ``mb`` rows, one per hidden layer: True keeps a unit."""
        masks = []
        for R, M in zip(self.R, self.M, strict=True):
            r = R[:mb]
            rng.random(dtype=r.dtype, out=r)
            np.less(r, keep_prob, out=M[:mb])
            masks.append(M[:mb])
        return masks


class Passes:
    """Forward and backward passes of the network of sizes ``dims`` whose parameters are ``theta``.

    ``activation`` names the hidden activation and ``keep_prob`` rescales
    the units kept by dropout masks. ``grad`` (same layout and dtype as
    ``theta``) receives the gradient of each backward pass; without it the
    passes only go forward. ``views``: the ``(coefs, intercepts)`` already
    unpacked from ``theta`` (a fitted network's own), so that a prediction
    does not unpack them again.
    """

    def __init__(
        self,
        theta: np.ndarray,
        dims: Sequence[int],
        activation: str,
        keep_prob: float,
        grad: np.ndarray | None = None,
        views: tuple[list, list] | None = None,
    ):
        self.theta, self.dims = theta, dims
        self.coefs, self.intercepts = views if views is not None else parameters.unpack(theta, dims)
        self.grad = grad
        if grad is not None:
            self.grad_coefs, self.grad_intercepts = parameters.unpack(grad, dims)
        self.activation, self.keep_prob = activation, keep_prob

    @functools.cached_property
    def n_weights(self) -> int:
        """The leading entries of ``theta`` that are weights (the L2 term's)."""
        return parameters.n_weights(self.dims)

    def forward(self, Xb: np.ndarray, ws: Workspace, mb: int, masks: list | None) -> np.ndarray:
        """Logits of the output layer; hidden activations stay in ``ws``."""
        act = ACTIVATIONS[self.activation]
        last = len(self.coefs) - 1
        inv_keep = 1.0 / self.keep_prob
        A = Xb
        for layer, (W, b) in enumerate(zip(self.coefs, self.intercepts, strict=True)):  # equal lengths
            Z = ws.Z[layer][:mb]
            np.matmul(A, W, out=Z)
            Z += b
            if layer == last:
                return Z
            act(Z)
            if masks is not None:
                D = ws.D[layer][:mb]
                np.multiply(Z, masks[layer], out=D)
                D *= inv_keep
                A = D
            else:
                A = Z
        raise AssertionError("unreachable")

    def backward(self, Xb: np.ndarray, ws: Workspace, mb: int, masks: list | None, l2_coef: float) -> None:
        """Gradients into ``grad``; the output buffer must hold dL/dZ.

        ``l2_coef`` times the weights is added to their gradient (0: none).
        """
        deriv = DERIVATIVES[self.activation]
        inv_keep = 1.0 / self.keep_prob
        dZ = ws.Z[-1][:mb]
        for layer in range(len(self.coefs) - 1, -1, -1):
            if layer == 0:
                A_prev = Xb
            elif masks is not None:
                A_prev = ws.D[layer - 1][:mb]
            else:
                A_prev = ws.Z[layer - 1][:mb]
            np.matmul(dZ.T, A_prev, out=self.grad_coefs[layer].T)
            np.sum(dZ, axis=0, out=self.grad_intercepts[layer])
            if layer == 0:
                break  # the gradient with respect to the data is never needed
            dA = ws.dA[layer - 1][:mb]
            np.matmul(dZ, self.coefs[layer].T, out=dA)
            if masks is not None:
                dA *= masks[layer - 1]
                dA *= inv_keep
            deriv(ws.Z[layer - 1][:mb], dA)
            dZ = dA
        if l2_coef:
            nW = self.n_weights
            self.grad[:nW] += l2_coef * self.theta[:nW]

    def l2_cost(self, lambd: float, m: int) -> float:
        """The L2 term of the cost, ``lambd / (2 m) * sum ||W||^2``."""
        W = self.theta[: self.n_weights]
        return float(lambd / (2 * m) * np.dot(W, W))

    def logits(self, X: np.ndarray) -> np.ndarray:
        """Output-layer logits for all rows of X (no dropout), in chunks."""
        dims, dtype = self.dims, self.theta.dtype
        out = np.empty((len(X), dims[-1]), dtype=dtype)
        rows = min(len(X), PREDICT_CHUNK)
        ws = Workspace(dims, rows, dtype, dropout=False)
        for start in range(0, len(X), rows):
            chunk = X[start : start + rows]
            out[start : start + len(chunk)] = self.forward(chunk, ws, len(chunk), None)
        return out
