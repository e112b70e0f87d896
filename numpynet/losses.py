"""Output layers with their cross-entropy losses, computed from logits.

Each output layer turns logits into probabilities in place and returns the
*summed* per-example loss computed stably from the logits (log-sum-exp and
softplus forms: no log(0), no overflow for large |z|). The gradient of the
mean loss with respect to the logits is then ``(P - Y) / m`` for both.
"""

from __future__ import annotations

import numpy as np

from .activations import sigmoid_inplace


class SigmoidBinary:
    """One sigmoid unit with binary cross-entropy; targets Y are (m, 1) of 0/1."""

    n_outputs = 1

    @staticmethod
    def loss_and_probs(z: np.ndarray, y: np.ndarray) -> float:
        """Return sum of BCE over rows; overwrite ``z`` (m, 1) with P(y = 1)."""
        # -[y log s(z) + (1 - y) log(1 - s(z))] = softplus(z) - y z
        loss = np.logaddexp(0, z)
        loss -= y * z
        total = float(loss.sum())
        sigmoid_inplace(z)
        return total

    @staticmethod
    def probs(z: np.ndarray) -> None:
        sigmoid_inplace(z)

    @staticmethod
    def predict_index(p: np.ndarray) -> np.ndarray:
        return (p[:, 0] > 0.5).astype(np.intp)

    @staticmethod
    def full_proba(p: np.ndarray) -> np.ndarray:
        return np.hstack([1 - p, p])


class SoftmaxCategorical:
    """Softmax over k units with categorical cross-entropy; Y is one-hot (m, k)."""

    n_outputs = None  # k >= 2

    @staticmethod
    def _shift(z: np.ndarray) -> None:
        z -= z.max(axis=1, keepdims=True)

    @staticmethod
    def _exp_normalise(z: np.ndarray) -> np.ndarray:
        # exp of shifted logits below log(tiny) would be subnormal (slow, and
        # below any probability that matters): clamp them first.
        np.maximum(z, np.log(np.finfo(z.dtype).tiny) + 1, out=z)
        np.exp(z, out=z)
        sums = z.sum(axis=1, keepdims=True)
        z /= sums
        return sums

    @classmethod
    def loss_and_probs(cls, z: np.ndarray, y: np.ndarray) -> float:
        """Return summed cross-entropy; overwrite ``z`` (m, k) with probabilities."""
        cls._shift(z)
        # loss_i = log(sum_j exp(s_ij)) - s_i,true, with s = z - max(z)
        true_logit_sum = float(np.vdot(z, y))
        sums = cls._exp_normalise(z)
        return float(np.log(sums).sum()) - true_logit_sum

    @classmethod
    def probs(cls, z: np.ndarray) -> None:
        cls._shift(z)
        cls._exp_normalise(z)

    @staticmethod
    def predict_index(p: np.ndarray) -> np.ndarray:
        return p.argmax(axis=1)

    @staticmethod
    def full_proba(p: np.ndarray) -> np.ndarray:
        return p


def output_layer_for(n_outputs: int):
    """The output layer that fits a final layer of ``n_outputs`` units."""
    return SigmoidBinary if n_outputs == 1 else SoftmaxCategorical
