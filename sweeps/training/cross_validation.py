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

The lockstep (:func:`fit_in_lockstep`): the core's ``fit`` owns its epoch loop and
hands control back only through its ``on_epoch`` callback, so each fold's
``fit`` runs in its own thread and the callback passes a baton: exactly one
fold computes at any moment (no BLAS oversubscription, bit-identical results
whatever the scheduling), in the fixed order 0, 1, ..., K-1, and the calling
thread sees every epoch's K results together before the next epoch starts.
A pruner thus acts on the mean curve, and a pruned trial stops all K at once.

The calling thread is the only one that runs ``on_epoch`` (so Optuna's
``trial.report`` / ``should_prune`` and the interrupt checks stay on it). An
exception from ``on_epoch`` (a pruned trial, Ctrl-C) or from any fold (a
diverged fold, a bad value) stops every fold at its next epoch boundary,
waits for their threads, and is re-raised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from numpynet import NeuralNetwork
from numpynet.sweeps.training.data import Dataset
from numpynet.sweeps.training.network_from_config import build_network

EpochCallback = Callable[[int, dict[str, float]], None]


#: ``on_epoch(epoch, per_fold)``: one metrics dict per fold, in fold order.
FoldsCallback = Callable[[int, list[dict[str, float]]], None]


class _Stop(BaseException):
    """Raised inside a fold's callback to end its ``fit`` early (not an error)."""


@dataclass
class _Fold:
    turn: threading.Semaphore
    metrics: dict[str, float] | None = None
    epoch: int = -1
    finished: bool = False
    error: BaseException | None = None


def fit_in_lockstep(fits: Sequence[Callable[[Callable[[int, dict], None]], Any]], on_epoch: FoldsCallback) -> None:
    """Run ``fits`` (each ``fit(callback)``, e.g. a bound ``network.fit``) in lockstep.

    Every fit must train the same number of epochs. Returns when all have
    finished; raises the first error of a fold (by fold order) or of
    ``on_epoch``.
    """
    folds = [_Fold(threading.Semaphore(0)) for _ in fits]
    reported = threading.Semaphore(0)  # a fold finished its epoch, its fit, or failed
    stop = threading.Event()

    def run(k: int, fit: Callable[[Callable[[int, dict], None]], Any]) -> None:
        fold = folds[k]

        def callback(epoch: int, metrics: dict) -> None:
            fold.epoch, fold.metrics = epoch, dict(metrics)
            reported.release()
            fold.turn.acquire()  # wait for this fold's next turn
            if stop.is_set():
                raise _Stop

        fold.turn.acquire()  # the first turn
        try:
            if not stop.is_set():
                fit(callback)
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            fold.error = exc
        finally:
            fold.finished = True
            reported.release()

    threads = [
        threading.Thread(target=run, args=(k, fit), name=f"numpynet-fold-{k}", daemon=True)
        for k, fit in enumerate(fits)
    ]
    for thread in threads:
        thread.start()
    try:
        epoch = 0
        while True:
            for fold in folds:
                fold.turn.release()
                reported.acquire()
                if fold.error is not None:
                    raise fold.error
            if all(fold.finished for fold in folds):
                return
            if any(fold.finished or fold.epoch != epoch for fold in folds):
                raise RuntimeError(
                    f"the folds of a cross-validated trial fell out of step at epoch {epoch} "
                    "(every fold must train the same number of epochs)"
                )
            on_epoch(epoch, [fold.metrics for fold in folds])  # type: ignore[misc]
            epoch += 1
    finally:
        stop.set()
        for fold in folds:
            fold.turn.release()  # wake every fold: each ends at its epoch boundary
        for thread in threads:
            thread.join()


def mean_and_std(per_fold: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean over folds under each metric's own name, and ``<name>_std`` (population sd)."""
    out: dict[str, float] = {}
    for name in per_fold[0]:
        values = np.array([m[name] for m in per_fold], dtype=np.float64)
        out[name] = float(values.mean())
        if len(values) > 1 and name != "learning_rate":
            out[f"{name}_std"] = float(values.std())
    return out


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
