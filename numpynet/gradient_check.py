"""The gradient check: backprop against central differences, computed on copies.

``relative_difference`` reads the parameters it is given and never writes
them: backprop writes into a gradient vector of its own, and the central
differences perturb a float64 copy. The network it checks is left exactly
as it was, and nothing else that uses it meanwhile sees other weights.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .losses import output_layer_for
from .propagation import Passes, Workspace


def relative_difference(
    theta: np.ndarray,
    dims: Sequence[int],
    X: np.ndarray,
    Y: np.ndarray,
    *,
    activation: str,
    keep_prob: float,
    lambd: float,
    l2: bool,
    masks_seed: int | None,
    epsilon: float,
) -> float:
    """``||g - g_num|| / (||g|| + ||g_num||)`` of the cost ``mean loss + L2 term`` on (X, Y).

    ``g`` is backprop in the dtype of ``theta`` (X and Y are in it too);
    ``g_num`` is central differences with step ``epsilon`` in float64, at
    the same parameters and data converted exactly. With ``masks_seed`` one
    set of dropout masks, drawn from ``default_rng(masks_seed)``, is held
    fixed for every evaluation; None means no dropout. ``l2`` adds the L2
    term of strength ``lambd``.
    """
    m = len(X)
    dropout = masks_seed is not None
    ws = Workspace(dims, m, theta.dtype, dropout)
    masks = ws.draw_masks(np.random.default_rng(masks_seed), m, keep_prob) if dropout else None
    output = output_layer_for(dims[-1])

    def cost(passes: Passes, Xc: np.ndarray, Yc: np.ndarray, wsc: Workspace) -> float:
        Z = passes.forward(Xc, wsc, m, masks)
        value = output.loss_and_probs(Z, Yc) / m
        return value + (passes.l2_cost(lambd, m) if l2 else 0.0)

    backprop = Passes(theta, dims, activation, keep_prob, grad=np.zeros_like(theta))
    cost(backprop, X, Y, ws)
    Z = ws.Z[-1][:m]
    Z -= Y
    Z *= 1.0 / m
    backprop.backward(X, ws, m, masks, lambd / m if l2 else 0.0)
    analytic = backprop.grad.astype(np.float64)

    # the reference: the same network and data in float64
    theta64 = theta.astype(np.float64)
    reference = Passes(theta64, dims, activation, keep_prob)
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    ws64 = Workspace(dims, m, np.float64, dropout)
    numeric = np.empty_like(analytic)
    for i in range(theta64.size):
        saved = theta64[i]
        theta64[i] = saved + epsilon
        plus = cost(reference, X64, Y64, ws64)
        theta64[i] = saved - epsilon
        minus = cost(reference, X64, Y64, ws64)
        theta64[i] = saved
        numeric[i] = (plus - minus) / (2 * epsilon)
    denom = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return float(np.linalg.norm(analytic - numeric) / denom) if denom else 0.0
