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

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient

from numpynet import NeuralNetwork
from numpynet.metrics import confusion_matrix, precision_recall_f1
from numpynet.sweeps.recording.names import FOLD_WEIGHTS, WEIGHTS_ARTIFACT


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


def weights_digest(network: NeuralNetwork | FoldEnsemble) -> str:
    """SHA-256 of all weights and biases (of every fold model of an ensemble, in fold order): equal
    digests mean bit-identical networks."""
    digest = hashlib.sha256()
    for member in members(network):
        for array in (*member.coefs_, *member.intercepts_):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def load_run_model(client: MlflowClient, run_id: str, folder: str) -> NeuralNetwork | FoldEnsemble:
    """The model a run's weight files hold: its network, or the fold models of a fold ensemble."""
    listed = {f.path for f in client.list_artifacts(run_id, WEIGHTS_ARTIFACT.rsplit("/", 1)[0])}
    if WEIGHTS_ARTIFACT in listed:
        return NeuralNetwork.load(client.download_artifacts(run_id, WEIGHTS_ARTIFACT, folder))
    folds = []
    while FOLD_WEIGHTS.format(k=len(folds)) in listed:
        path = FOLD_WEIGHTS.format(k=len(folds))
        folds.append(NeuralNetwork.load(client.download_artifacts(run_id, path, folder)))
    if not folds:
        raise FileNotFoundError(f"run {run_id} has no weights ({WEIGHTS_ARTIFACT} or {FOLD_WEIGHTS.format(k=0)})")
    return FoldEnsemble(folds)
