"""A cross-validated training run: K fold models trained in lockstep (``data.folds=K``).

Each fold model is the configured network trained on K-1 folds of the
training data and validated on the remaining one (stratified folds seeded
by ``data.seed``, see :func:`numpynet.sweeps.training.data.stratified_folds`). After every
epoch the run's callback receives:

- the mean over the folds under the usual names (``train_cost``,
  ``train_accuracy``, ``val_cost``, ``val_accuracy``, ``learning_rate``), so
  a sweep reports and prunes on the mean curve;
- the spread, ``<name>_std`` (population standard deviation over folds);
- each fold's own curve, ``fold<k>/<name>``.

The test split is never touched: a cross-validated run is for choosing a
configuration, and the chosen one is refitted on all the training data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from numpynet import NeuralNetwork
from numpynet.sweeps.training.data import Dataset
from numpynet.sweeps.training.lockstep import fit_in_lockstep, mean_and_std
from numpynet.sweeps.training.network import build_network

EpochCallback = Callable[[int, dict[str, float]], None]


def fold_metric(fold: int, name: str) -> str:
    """The MLflow name of one fold's curve, grouped under ``fold<k>/`` in the UI."""
    return f"fold{fold}/{name}"


def fold_networks(cfg: Any, dataset: Dataset) -> list[NeuralNetwork]:
    """One network per fold of ``dataset.folds`` (fold k seeded ``train.seed + k`` with ``train.seed_per_fold``)."""
    return [build_network(cfg, dataset.n_features, dataset.n_classes, fold=k) for k in range(len(dataset.folds))]


def fit_folds(networks: list[NeuralNetwork], dataset: Dataset, callback: EpochCallback | None = None) -> None:
    """Train ``networks[k]`` on fold k of ``dataset.folds``, all in lockstep.

    The networks keep their histories (``costs_``, ``val_accuracies_``...)
    even when the callback stops the training early (a pruned trial).
    """
    if not dataset.folds or len(networks) != len(dataset.folds):
        raise ValueError("fit_folds needs a dataset loaded with data.folds set and one network per fold")
    X, y = dataset.X_train, dataset.y_train

    def fit_of(network: NeuralNetwork, train: np.ndarray, val: np.ndarray):
        return lambda on_epoch: network.fit(*dataset.training_arrays(train), X[val], y[val], callback=on_epoch)

    def on_epoch(epoch: int, per_fold: list[dict[str, float]]) -> None:
        metrics = mean_and_std(per_fold)
        for k, fold in enumerate(per_fold):
            metrics.update({fold_metric(k, name): value for name, value in fold.items() if name != "learning_rate"})
        if callback is not None:
            callback(epoch, metrics)

    fits = [fit_of(net, train, val) for net, (train, val) in zip(networks, dataset.folds, strict=True)]
    fit_in_lockstep(fits, on_epoch)


def summary_metrics(networks: list[NeuralNetwork]) -> dict[str, Any]:
    """Final-epoch means (and spread) over the folds, and the best epoch of the mean validation curve."""
    curves = {
        "train_cost": [n.costs_ for n in networks],
        "train_accuracy": [n.train_accuracies_ for n in networks],
        "val_cost": [n.val_costs_ for n in networks],
        "val_accuracy": [n.val_accuracies_ for n in networks],
    }
    out: dict[str, Any] = {"folds": len(networks)}
    for name, per_fold in curves.items():
        if not per_fold[0]:
            continue
        final = np.array([curve[-1] for curve in per_fold])
        out[name], out[f"{name}_std"] = float(final.mean()), float(final.std())
    if networks[0].val_accuracies_:
        mean_curve = np.mean([n.val_accuracies_ for n in networks], axis=0)
        best = int(np.argmax(mean_curve))
        out.update(best_val_accuracy=float(mean_curve[best]), best_epoch=best)
    return out
