"""The K fold models of a cross-validated run as one classifier: ``sweep.refit_rule=fold_ensemble``.

Instead of refitting the chosen configuration once on all the training
rows for a number of epochs read off a noisy curve, the K models that
cross-validation trains (each on K-1 folds, fold k seeded ``train.seed + k``
with ``train.seed_per_fold``) are kept and their class probabilities
averaged. On the synthetic development sets of
``benchmarks/small_protocol.py`` this scored higher, and on its worst seed
higher, than refits on all the rows (docs/search-protocol.md, "The refit
rule"), and one fold model that does not train cannot make the whole
model a constant predictor.

A run of the ensemble is an ordinary cross-validated run (its config is the
fold models', so ``numpynet-reproduce`` re-trains them bit for bit) that also
tests the ensemble once and keeps the K weight files
``weights/fold<k>.npz``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from numpynet import NeuralNetwork
from numpynet.metrics import confusion_matrix, precision_recall_f1

#: the run's weight files, one per fold model, under the run's ``weights/`` folder
FOLD_WEIGHTS = "weights/fold{k}.npz"


class FoldEnsemble:
    """``predict_proba`` is the mean of the fold models' class probabilities; the rest follows from it."""

    def __init__(self, networks: Sequence[NeuralNetwork]):
        if not networks:
            raise ValueError("a fold ensemble needs at least one fitted network")
        self.networks = list(networks)
        self.classes_ = self.networks[0].classes_

    def predict_proba(self, X) -> np.ndarray:
        return np.mean([network.predict_proba(X) for network in self.networks], axis=0)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def evaluate(self, X, y) -> dict[str, Any]:
        """The figures of :meth:`numpynet.NeuralNetwork.evaluate`, for the averaged probabilities."""
        proba = self.predict_proba(X)
        y_idx = np.searchsorted(self.classes_, np.asarray(y))
        predicted = np.argmax(proba, axis=1)
        cm = confusion_matrix(y_idx, predicted, len(self.classes_))
        precision, recall, f1 = precision_recall_f1(cm)
        log_loss = -float(np.mean(np.log(np.clip(proba[np.arange(len(y_idx)), y_idx], 1e-15, 1.0))))
        return {
            "accuracy": float(np.trace(cm)) / len(y_idx),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "log_loss": log_loss,
            "confusion_matrix": cm,
        }

    def save(self, folder: Path) -> list[Path]:
        """Each fold model's own ``.npz`` (``NeuralNetwork.save``), as :data:`FOLD_WEIGHTS` under ``folder``."""
        paths = []
        for k, network in enumerate(self.networks):
            path = folder / FOLD_WEIGHTS.format(k=k)
            path.parent.mkdir(parents=True, exist_ok=True)
            network.save(path)
            paths.append(path)
        return paths


def members(model: NeuralNetwork | FoldEnsemble) -> list[NeuralNetwork]:
    """The networks a model is made of: itself, or the fold models of an ensemble."""
    return model.networks if isinstance(model, FoldEnsemble) else [model]
